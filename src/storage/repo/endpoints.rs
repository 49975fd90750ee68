//! The `endpoints` and `endpoint_servers` tables: MCP endpoints and the servers they aggregate.

#[allow(unused_imports)]
use super::*;

/// The details of `endpoints`, in their order, with three queries whatever their number.
pub(super) fn details(conn: &mut DbConnection, endpoints: Vec<Endpoint>) -> Result<Vec<EndpointDetail>, StorageError> {
    if endpoints.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = endpoints.iter().map(|endpoint| endpoint.id).collect();
    let names: Vec<(i64, String)> = links::table
        .inner_join(servers::table)
        .filter(links::endpoint_id.eq_any(&ids))
        .select((links::endpoint_id, servers::name))
        .order((links::endpoint_id.asc(), servers::name.asc()))
        .load(conn)?;
    let api_keys: Vec<(i64, ApiKeyInfo)> = keys::table
        .filter(keys::endpoint_id.eq_any(&ids))
        .select((keys::endpoint_id, ApiKeyInfo::as_select()))
        .order(keys::id.asc())
        .load(conn)?;
    let mut names_of: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, name) in names {
        names_of.entry(id).or_default().push(name);
    }
    let mut keys_of: HashMap<i64, Vec<ApiKeyInfo>> = HashMap::new();
    for (id, key) in api_keys {
        keys_of.entry(id).or_default().push(key);
    }
    Ok(endpoints
        .into_iter()
        .map(|endpoint| EndpointDetail {
            servers: names_of.remove(&endpoint.id).unwrap_or_default(),
            api_keys: keys_of.remove(&endpoint.id).unwrap_or_default(),
            endpoint,
        })
        .collect())
}

pub(super) fn detail(conn: &mut DbConnection, endpoint: Endpoint) -> Result<EndpointDetail, StorageError> {
    let name = endpoint.name.clone();
    details(conn, vec![endpoint])?.pop().ok_or_else(|| endpoint_not_found(&name))
}

/// Creates an endpoint aggregating `servers`, in one transaction: an unknown server is
/// [`NotFound`](StorageError::NotFound) and nothing is written.
pub fn create_endpoint(
    conn: &mut DbConnection,
    new: &NewEndpoint,
    servers: &[String],
) -> Result<EndpointDetail, StorageError> {
    check_name("endpoint", &new.name)?;
    let limit = checked_rate_limit(new.rate_limit_rps, new.rate_limit_burst)?;
    write_transaction(conn, |conn| {
        let row = EndpointRow {
            name: &new.name,
            description: &new.description,
            auth_required: new.auth_required,
            created_at: now_ms(),
            rate_limit_rps: limit.map(|limit| limit.rps()),
            rate_limit_burst: limit.map(|limit| i64::from(limit.burst())),
        };
        let endpoint = diesel::insert_into(endpoints::table)
            .values(&row)
            .returning(ENDPOINT_COLUMNS)
            .get_result::<Endpoint>(conn)
            .map_err(|e| conflict_as(e, || format!("endpoint {} already exists", quoted(&new.name))))?;
        let mut seen = HashSet::new();
        let mut server_ids = Vec::new();
        for server in servers.iter().filter(|server| seen.insert(server.as_str())) {
            server_ids.push(server_id(conn, server)?);
        }
        for id in server_ids {
            diesel::insert_into(links::table)
                .values((links::endpoint_id.eq(endpoint.id), links::server_id.eq(id)))
                .execute(conn)?;
        }
        detail(conn, endpoint)
    })
}

/// A page of endpoints, by name, with their servers and keys.
pub fn list_endpoints(conn: &mut DbConnection, page: Page) -> Result<Listed<EndpointDetail>, StorageError> {
    let page = page.check()?;
    let total = endpoints::table.count().get_result::<i64>(conn)?;
    let rows = endpoints::table
        .select(Endpoint::as_select())
        .order(endpoints::name.asc())
        .limit(page.limit)
        .offset(page.offset)
        .load(conn)?;
    Ok(Listed { items: details(conn, rows)?, total })
}

/// The endpoint named `name`, with its servers and keys.
pub fn get_endpoint(conn: &mut DbConnection, name: &str) -> Result<EndpointDetail, StorageError> {
    let endpoint = find_endpoint(conn, name)?;
    detail(conn, endpoint)
}

/// Deletes an endpoint with its keys (its servers stay).
pub fn delete_endpoint(conn: &mut DbConnection, name: &str) -> Result<(), StorageError> {
    let deleted = diesel::delete(endpoints::table.filter(endpoints::name.eq(name))).execute(conn)?;
    if deleted == 0 {
        return Err(endpoint_not_found(name));
    }
    Ok(())
}

/// Sets (or with `None` removes) the rate limit of `endpoint`.
pub fn set_endpoint_rate_limit(
    conn: &mut DbConnection,
    endpoint: &str,
    limit: Option<RateLimit>,
) -> Result<EndpointDetail, StorageError> {
    write_transaction(conn, |conn| {
        let found = find_endpoint(conn, endpoint)?;
        let updated = diesel::update(endpoints::table.filter(endpoints::id.eq(found.id)))
            .set((
                endpoints::rate_limit_rps.eq(limit.map(|limit| limit.rps())),
                endpoints::rate_limit_burst.eq(limit.map(|limit| i64::from(limit.burst()))),
            ))
            .returning(ENDPOINT_COLUMNS)
            .get_result::<Endpoint>(conn)?;
        detail(conn, updated)
    })
}

/// Adds `server` to `endpoint`; attaching an attached server changes nothing.
pub fn attach_server(conn: &mut DbConnection, endpoint: &str, server: &str) -> Result<EndpointDetail, StorageError> {
    write_transaction(conn, |conn| {
        let found = find_endpoint(conn, endpoint)?;
        let id = server_id(conn, server)?;
        let attached = links::table
            .filter(links::endpoint_id.eq(found.id).and(links::server_id.eq(id)))
            .count()
            .get_result::<i64>(conn)?;
        if attached == 0 {
            // In a savepoint: a concurrent attach of the same pair leaves the transaction usable.
            let inserted = conn.transaction(|conn| {
                diesel::insert_into(links::table)
                    .values((links::endpoint_id.eq(found.id), links::server_id.eq(id)))
                    .execute(conn)
            });
            match inserted {
                Ok(_) | Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {}
                Err(other) => return Err(other.into()),
            }
        }
        detail(conn, found)
    })
}

/// Removes `server` from `endpoint`; [`NotFound`](StorageError::NotFound) when it was not
/// attached.
pub fn detach_server(conn: &mut DbConnection, endpoint: &str, server: &str) -> Result<EndpointDetail, StorageError> {
    write_transaction(conn, |conn| {
        let found = find_endpoint(conn, endpoint)?;
        let id = server_id(conn, server)?;
        let deleted = diesel::delete(links::table.filter(links::endpoint_id.eq(found.id).and(links::server_id.eq(id))))
            .execute(conn)?;
        if deleted == 0 {
            return Err(StorageError::NotFound(format!(
                "server {} is not attached to endpoint {}",
                quoted(server),
                quoted(endpoint)
            )));
        }
        detail(conn, found)
    })
}

/// The servers `endpoint` aggregates, by name.
pub fn endpoint_servers(conn: &mut DbConnection, endpoint: &str) -> Result<Vec<Server>, StorageError> {
    let found = find_endpoint(conn, endpoint)?;
    Ok(links::table
        .inner_join(servers::table)
        .filter(links::endpoint_id.eq(found.id))
        .select(Server::as_select())
        .order(servers::name.asc())
        .load(conn)?)
}

/// Creates the [`DEFAULT_ENDPOINT`] ("Built-in tools", no authentication) when missing.
/// Idempotent, also when two gateways start at once.
pub fn ensure_default_endpoint(conn: &mut DbConnection) -> Result<(), StorageError> {
    let present = endpoints::table.filter(endpoints::name.eq(DEFAULT_ENDPOINT)).count().get_result::<i64>(conn)?;
    if present > 0 {
        return Ok(());
    }
    let row = EndpointRow {
        name: DEFAULT_ENDPOINT,
        description: DEFAULT_ENDPOINT_DESCRIPTION,
        auth_required: false,
        created_at: now_ms(),
        rate_limit_rps: None,
        rate_limit_burst: None,
    };
    match diesel::insert_into(endpoints::table).values(&row).execute(conn) {
        Ok(_) => Ok(()),
        // Another gateway created it between our check and our insert.
        Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}
