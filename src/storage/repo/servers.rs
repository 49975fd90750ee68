//! The `mcp_servers` table: upstream MCP servers.

#[allow(unused_imports)]
use super::*;

/// Creates a server. A taken name is [`Conflict`](StorageError::Conflict).
pub fn create_server(conn: &mut DbConnection, new: &NewServer) -> Result<Server, StorageError> {
    check_server_name(&new.name)?;
    let url = new.url.trim();
    if url.is_empty() || url.len() > MAX_URL || url.chars().any(char::is_control) {
        return Err(StorageError::Invalid(format!(
            "server URL must be 1 to {MAX_URL} bytes without control characters"
        )));
    }
    if new.timeout_ms.is_some_and(|ms| ms <= 0) {
        return Err(StorageError::Invalid("server timeout_ms must be positive".to_owned()));
    }
    let row =
        ServerRow { name: &new.name, url, enabled: new.enabled, timeout_ms: new.timeout_ms, created_at: now_ms() };
    diesel::insert_into(servers::table)
        .values(&row)
        .returning(SERVER_COLUMNS)
        .get_result::<Server>(conn)
        .map_err(|e| conflict_as(e, || format!("server {} already exists", quoted(&new.name))))
}

/// A page of servers, by name.
pub fn list_servers(conn: &mut DbConnection, page: Page) -> Result<Listed<Server>, StorageError> {
    let page = page.check()?;
    let total = servers::table.count().get_result::<i64>(conn)?;
    let items = servers::table
        .select(Server::as_select())
        .order(servers::name.asc())
        .limit(page.limit)
        .offset(page.offset)
        .load(conn)?;
    Ok(Listed { items, total })
}

/// The server named `name`.
pub fn get_server(conn: &mut DbConnection, name: &str) -> Result<Server, StorageError> {
    servers::table
        .filter(servers::name.eq(name))
        .select(Server::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| server_not_found(name))
}

/// Deletes a server with its tools and its place in endpoints.
pub fn delete_server(conn: &mut DbConnection, name: &str) -> Result<(), StorageError> {
    let deleted = diesel::delete(servers::table.filter(servers::name.eq(name))).execute(conn)?;
    if deleted == 0 {
        return Err(server_not_found(name));
    }
    Ok(())
}
