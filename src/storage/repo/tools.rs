//! The `tools` table: the tools registry of each server, with embeddings for vector search.

#[allow(unused_imports)]
use super::*;

/// The columns of a [`Tool`] but its embedding.
pub(super) type ToolColumns = (
    tools::id,
    tools::server_id,
    servers::name,
    tools::name,
    tools::description,
    tools::input_schema,
    tools::enabled,
    tools::updated_at,
);
pub(super) const TOOL_COLUMNS: ToolColumns = (
    tools::id,
    tools::server_id,
    servers::name,
    tools::name,
    tools::description,
    tools::input_schema,
    tools::enabled,
    tools::updated_at,
);
pub(super) type ToolValues = (i64, i64, String, String, String, String, bool, i64);

pub(super) fn tool(values: ToolValues, embedding: Option<Vec<u8>>) -> Tool {
    let (id, server_id, server_name, name, description, input_schema, enabled, updated_at) = values;
    Tool {
        id,
        server_id,
        server_name,
        name,
        description,
        input_schema,
        enabled,
        embedding: decode_embedding(embedding),
        updated_at,
    }
}

pub(super) type ToolQuery<'a> =
    diesel::dsl::IntoBoxed<'a, diesel::dsl::InnerJoin<tools::table, servers::table>, MultiBackend>;

/// `%text%` for `LIKE … ESCAPE '\'`, in lower case, with `%`, `_` and `\` taken literally.
pub(super) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

pub(super) fn tool_query(filter: &ToolFilter) -> ToolQuery<'_> {
    let mut query = tools::table.inner_join(servers::table).into_boxed::<MultiBackend>();
    if let Some(server) = &filter.server {
        query = query.filter(servers::name.eq(server));
    }
    if let Some(endpoint) = &filter.endpoint {
        let servers_of_endpoint =
            links::table.inner_join(endpoints::table).filter(endpoints::name.eq(endpoint)).select(links::server_id);
        query = query.filter(tools::server_id.eq_any(servers_of_endpoint));
    }
    if let Some(enabled) = filter.enabled {
        query = query.filter(tools::enabled.eq(enabled));
    }
    if let Some(text) = &filter.query {
        let pattern = contains_pattern(text);
        query = query.filter(
            lower(tools::name)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(tools::description).like(pattern).escape('\\')),
        );
    }
    query
}

pub(super) fn tools_of_server(conn: &mut DbConnection, server_id: i64) -> Result<Vec<Tool>, StorageError> {
    let rows: Vec<(ToolValues, Option<Vec<u8>>)> = tools::table
        .inner_join(servers::table)
        .filter(tools::server_id.eq(server_id))
        .select((TOOL_COLUMNS, tools::embedding))
        .order(tools::name.asc())
        .load(conn)?;
    Ok(rows.into_iter().map(|(values, embedding)| tool(values, embedding)).collect())
}

/// Makes the stored tools of `server_name` exactly `new_tools`, in one transaction: new names
/// are inserted (enabled), listed ones updated when they changed (their `enabled` is kept), the
/// others deleted. A name listed twice counts once (the first). Returns the server's tools by
/// name, with embeddings.
pub fn replace_server_tools(
    conn: &mut DbConnection,
    server_name: &str,
    new_tools: &[NewTool],
) -> Result<Vec<Tool>, StorageError> {
    for new in new_tools {
        if new.name.is_empty() || new.name.len() > MAX_TOOL_NAME {
            return Err(StorageError::Invalid(format!("tool names must be 1 to {MAX_TOOL_NAME} bytes")));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&new.input_schema).is_err() {
            return Err(StorageError::Invalid(format!("the input schema of tool {} is not JSON", quoted(&new.name))));
        }
    }
    write_transaction(conn, |conn| {
        let server = server_id(conn, server_name)?;
        let stored: HashMap<String, StoredTool> = tools::table
            .filter(tools::server_id.eq(server))
            .select((tools::id, tools::name, tools::description, tools::input_schema, tools::embedding))
            .load::<StoredTool>(conn)?
            .into_iter()
            .map(|tool| (tool.name.clone(), tool))
            .collect();
        let now = now_ms();
        let mut listed = HashSet::new();
        for new in new_tools.iter().filter(|new| listed.insert(new.name.as_str())) {
            let embedding = new.embedding.as_deref().map(encode_embedding);
            match stored.get(&new.name) {
                Some(old) => {
                    if old.description == new.description
                        && old.input_schema == new.input_schema
                        && old.embedding == embedding
                    {
                        continue;
                    }
                    diesel::update(tools::table.filter(tools::id.eq(old.id)))
                        .set((
                            tools::description.eq(&new.description),
                            tools::input_schema.eq(&new.input_schema),
                            tools::embedding.eq(embedding),
                            tools::updated_at.eq(now),
                        ))
                        .execute(conn)?;
                }
                None => {
                    let row = ToolRow {
                        server_id: server,
                        name: &new.name,
                        description: &new.description,
                        input_schema: &new.input_schema,
                        enabled: true,
                        embedding,
                        updated_at: now,
                    };
                    diesel::insert_into(tools::table).values(&row).execute(conn)?;
                }
            }
        }
        let stale: Vec<i64> =
            stored.values().filter(|old| !listed.contains(old.name.as_str())).map(|old| old.id).collect();
        if !stale.is_empty() {
            diesel::delete(tools::table.filter(tools::id.eq_any(&stale))).execute(conn)?;
        }
        tools_of_server(conn, server)
    })
}

/// A page of tools matching `filter`, by server and name, without embeddings.
pub fn list_tools(conn: &mut DbConnection, filter: &ToolFilter, page: Page) -> Result<Listed<Tool>, StorageError> {
    let page = page.check()?;
    let total = tool_query(filter).count().get_result::<i64>(conn)?;
    let rows: Vec<ToolValues> = tool_query(filter)
        .select(TOOL_COLUMNS)
        .order((servers::name.asc(), tools::name.asc()))
        .limit(page.limit)
        .offset(page.offset)
        .load(conn)?;
    Ok(Listed { items: rows.into_iter().map(|values| tool(values, None)).collect(), total })
}

/// The tool `name` of `server`, with its embedding.
pub fn get_tool(conn: &mut DbConnection, server: &str, name: &str) -> Result<Tool, StorageError> {
    tools::table
        .inner_join(servers::table)
        .filter(servers::name.eq(server).and(tools::name.eq(name)))
        .select((TOOL_COLUMNS, tools::embedding))
        .first::<(ToolValues, Option<Vec<u8>>)>(conn)
        .optional()?
        .map(|(values, embedding)| tool(values, embedding))
        .ok_or_else(|| StorageError::NotFound(format!("tool {} of server {} not found", quoted(name), quoted(server))))
}

/// Every tool, enabled or not, by server and name, with embeddings (what the vector index
/// loads).
pub fn all_tools(conn: &mut DbConnection) -> Result<Vec<Tool>, StorageError> {
    let rows: Vec<(ToolValues, Option<Vec<u8>>)> = tools::table
        .inner_join(servers::table)
        .select((TOOL_COLUMNS, tools::embedding))
        .order((servers::name.asc(), tools::name.asc()))
        .load(conn)?;
    Ok(rows.into_iter().map(|(values, embedding)| tool(values, embedding)).collect())
}

/// Enables or disables the tool `name` of `server`; a later sync keeps the choice.
pub fn set_tool_enabled(
    conn: &mut DbConnection,
    server: &str,
    name: &str,
    enabled: bool,
) -> Result<Tool, StorageError> {
    write_transaction(conn, |conn| {
        let id = server_id(conn, server)?;
        let updated = diesel::update(tools::table.filter(tools::server_id.eq(id).and(tools::name.eq(name))))
            .set(tools::enabled.eq(enabled))
            .execute(conn)?;
        if updated == 0 {
            return Err(StorageError::NotFound(format!(
                "tool {} of server {} not found",
                quoted(name),
                quoted(server)
            )));
        }
        get_tool(conn, server, name)
    })
}
