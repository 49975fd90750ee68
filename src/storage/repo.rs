//! The gateway's records: servers, endpoints (with their servers and API keys), tools and tool
//! executions. Every function takes a [`DbConnection`] and uses diesel's query builder only, so
//! it runs unchanged on SQLite and PostgreSQL. Names are validated here ([`Invalid`]), missing
//! records are [`NotFound`] and duplicates [`Conflict`], each with a message naming the record.
//!
//! [`Invalid`]: StorageError::Invalid
//! [`NotFound`]: StorageError::NotFound
//! [`Conflict`]: StorageError::Conflict

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

use super::connection::{write_transaction, DbConnection, MultiBackend};
use super::error::{conflict_as, StorageError};
use super::schema::{
    endpoint_api_keys as keys, endpoint_servers as links, endpoints, mcp_servers as servers,
    tool_executions as executions, tools,
};

/// Name of the endpoint that always exists: the gateway's built-in tools.
pub const DEFAULT_ENDPOINT: &str = "default";
/// Description of the [`DEFAULT_ENDPOINT`].
pub const DEFAULT_ENDPOINT_DESCRIPTION: &str = "Built-in tools";
/// Longest stored `error_message` of a tool execution, in bytes; longer ones are cut.
pub const MAX_ERROR_MESSAGE: usize = 4096;
/// Longest accepted server URL, in bytes.
const MAX_URL: usize = 2048;
/// Longest accepted tool name, in bytes.
const MAX_TOOL_NAME: usize = 1024;

#[diesel::declare_sql_function]
extern "SQL" {
    /// SQL `lower(text)`, on both backends.
    fn lower(x: Text) -> Text;
}

/// An upstream MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Queryable, Selectable)]
#[diesel(table_name = servers)]
pub struct Server {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Streamable HTTP URL (serialized with its credentials masked).
    #[serde(serialize_with = "redacted")]
    pub url: String,
    /// Whether the gateway calls it.
    pub enabled: bool,
    /// Per-call timeout in milliseconds; `None`: the gateway's default.
    pub timeout_ms: Option<i64>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A URL as shown: its user information and credential-like query values masked.
fn redacted<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&metamcp_telemetry::redact::redact(url))
}

/// A server to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewServer {
    /// `^[A-Za-z0-9_-]{1,64}$`, without `__` (which separates server and tool in tool names).
    pub name: String,
    /// Streamable HTTP URL.
    pub url: String,
    /// Whether the gateway calls it (default `true`).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Per-call timeout in milliseconds (positive); `None`: the gateway's default.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
}

const fn enabled_by_default() -> bool {
    true
}

#[derive(Insertable)]
#[diesel(table_name = servers)]
struct ServerRow<'a> {
    name: &'a str,
    url: &'a str,
    enabled: bool,
    timeout_ms: Option<i64>,
    created_at: i64,
}

/// An MCP endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Queryable, Selectable)]
#[diesel(table_name = endpoints)]
pub struct Endpoint {
    /// Row id.
    pub id: i64,
    /// Unique name, `^[A-Za-z0-9_-]{1,64}$`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Whether requests need one of its API keys.
    pub auth_required: bool,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// An API key of an endpoint as shown to operators: never the key nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Queryable, Selectable)]
#[diesel(table_name = keys)]
pub struct ApiKeyInfo {
    /// Row id.
    pub id: i64,
    /// The key's first characters.
    pub prefix: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last request it opened (to the minute); `None` if never used.
    pub last_used_at: Option<i64>,
}

/// An API key as the endpoint check needs it: its row id and hash.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct KeyHash {
    /// Row id.
    pub id: i64,
    /// Hex SHA-256 of the key.
    pub hash: String,
}

/// Longest `prefix` [`revoke_api_key`] takes.
pub const MAX_KEY_PREFIX: usize = 64;
/// Rows one pruning statement deletes at most, so a large backlog is deleted in short
/// transactions that leave the database to others in between.
pub const PRUNE_CHUNK: i64 = 10_000;

/// An endpoint with the names of its servers (sorted) and its API keys (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointDetail {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// Names of the servers it aggregates.
    pub servers: Vec<String>,
    /// Its API keys.
    pub api_keys: Vec<ApiKeyInfo>,
}

/// An endpoint to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEndpoint {
    /// `^[A-Za-z0-9_-]{1,64}$`.
    pub name: String,
    /// Free text (default empty).
    #[serde(default)]
    pub description: String,
    /// Whether requests need one of its API keys.
    pub auth_required: bool,
}

#[derive(Insertable)]
#[diesel(table_name = endpoints)]
struct EndpointRow<'a> {
    name: &'a str,
    description: &'a str,
    auth_required: bool,
    created_at: i64,
}

/// A tool of an upstream server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    /// Row id.
    pub id: i64,
    /// The server's row id.
    pub server_id: i64,
    /// The server's name.
    pub server_name: String,
    /// Tool name, unique per server.
    pub name: String,
    /// Description from the server.
    pub description: String,
    /// JSON Schema of the arguments, as JSON text.
    pub input_schema: String,
    /// Whether endpoints expose it.
    pub enabled: bool,
    /// Embedding of the description, when loaded and present (not serialized).
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
    /// Unix milliseconds of the last change.
    pub updated_at: i64,
}

/// A tool as an upstream server lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTool {
    /// Tool name.
    pub name: String,
    /// Description (default empty).
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments, as JSON text.
    pub input_schema: String,
    /// Embedding of the description.
    pub embedding: Option<Vec<f32>>,
}

#[derive(Insertable)]
#[diesel(table_name = tools)]
struct ToolRow<'a> {
    server_id: i64,
    name: &'a str,
    description: &'a str,
    input_schema: &'a str,
    enabled: bool,
    embedding: Option<Vec<u8>>,
    updated_at: i64,
}

/// A tool as stored, for [`replace_server_tools`] to compare with the listed one.
#[derive(Queryable)]
struct StoredTool {
    id: i64,
    name: String,
    description: String,
    input_schema: String,
    embedding: Option<Vec<u8>>,
}

/// A recorded tool execution: outcome and timing, never arguments or results.
#[derive(Debug, Clone, PartialEq, Serialize, Queryable, Selectable)]
#[diesel(table_name = executions)]
pub struct Execution {
    /// Row id.
    pub id: i64,
    /// The endpoint it came through.
    pub endpoint: Option<String>,
    /// The tool as the client named it.
    pub tool_name: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// The error, when it failed.
    pub error_message: Option<String>,
    /// The trace of the call.
    pub trace_id: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A tool execution to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExecution {
    /// The endpoint it came through.
    pub endpoint: Option<String>,
    /// The tool as the client named it.
    pub tool_name: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Duration in milliseconds (finite, not negative).
    pub duration_ms: f64,
    /// The error, when it failed (cut at [`MAX_ERROR_MESSAGE`] bytes).
    pub error_message: Option<String>,
    /// The trace of the call.
    pub trace_id: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = executions)]
struct ExecutionRow<'a> {
    endpoint: Option<&'a str>,
    tool_name: &'a str,
    success: bool,
    duration_ms: f64,
    error_message: Option<&'a str>,
    trace_id: Option<&'a str>,
    created_at: i64,
}

/// A page of a list: at most `limit` items after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Most items returned (not negative).
    pub limit: i64,
    /// Items skipped (not negative).
    pub offset: i64,
}

impl Page {
    /// Every item.
    pub const ALL: Page = Page { limit: i64::MAX, offset: 0 };

    /// `limit` items after `offset`.
    pub const fn new(limit: i64, offset: i64) -> Self {
        Self { limit, offset }
    }

    fn check(self) -> Result<Self, StorageError> {
        if self.limit < 0 || self.offset < 0 {
            return Err(StorageError::Invalid(format!(
                "limit ({}) and offset ({}) must not be negative",
                self.limit, self.offset
            )));
        }
        Ok(self)
    }
}

/// One page of a list and how many items the whole list holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed<T> {
    /// The page.
    pub items: Vec<T>,
    /// Items in the whole list (with the same filter).
    pub total: i64,
}

/// Which tools [`list_tools`] returns; every field set narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolFilter {
    /// Tools of this server.
    pub server: Option<String>,
    /// Tools of the servers this endpoint aggregates.
    pub endpoint: Option<String>,
    /// Enabled or disabled tools.
    pub enabled: Option<bool>,
    /// Tools whose name or description contains this text, ignoring case.
    pub query: Option<String>,
}

/// Which executions [`list_executions`] returns; every field set narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutionFilter {
    /// Executions of this tool.
    pub tool: Option<String>,
    /// Executions through this endpoint.
    pub endpoint: Option<String>,
    /// Successful or failed executions.
    pub success: Option<bool>,
}

// `RETURNING` through the multi-backend connection takes plain columns (not `as_returning()`),
// in the field order of the `Queryable` struct.
const SERVER_COLUMNS: (
    servers::id,
    servers::name,
    servers::url,
    servers::enabled,
    servers::timeout_ms,
    servers::created_at,
) = (servers::id, servers::name, servers::url, servers::enabled, servers::timeout_ms, servers::created_at);
const ENDPOINT_COLUMNS: (
    endpoints::id,
    endpoints::name,
    endpoints::description,
    endpoints::auth_required,
    endpoints::created_at,
) = (endpoints::id, endpoints::name, endpoints::description, endpoints::auth_required, endpoints::created_at);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `text` quoted for a message, cut when long (names in messages come from requests).
fn quoted(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        return format!("{text:?}");
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut:?}...")
}

fn check_name(kind: &str, name: &str) -> Result<(), StorageError> {
    let valid =
        (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!("{kind} name {} must be 1 to 64 letters, digits, '_' or '-'", quoted(name))))
    }
}

fn check_server_name(name: &str) -> Result<(), StorageError> {
    check_name("server", name)?;
    if name.contains("__") {
        return Err(StorageError::Invalid(format!(
            "server name {} must not contain \"__\", which separates server and tool names",
            quoted(name)
        )));
    }
    Ok(())
}

fn encode_embedding(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|value| value.to_le_bytes()).collect()
}

/// The stored bytes as `f32`s; a length that is no multiple of 4 is a damaged value, read as
/// none (the tool is then embedded again at the next sync).
fn decode_embedding(bytes: Option<Vec<u8>>) -> Option<Vec<f32>> {
    let bytes = bytes?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn server_not_found(name: &str) -> StorageError {
    StorageError::NotFound(format!("server {} not found", quoted(name)))
}

fn endpoint_not_found(name: &str) -> StorageError {
    StorageError::NotFound(format!("endpoint {} not found", quoted(name)))
}

fn server_id(conn: &mut DbConnection, name: &str) -> Result<i64, StorageError> {
    servers::table
        .filter(servers::name.eq(name))
        .select(servers::id)
        .first::<i64>(conn)
        .optional()?
        .ok_or_else(|| server_not_found(name))
}

fn find_endpoint(conn: &mut DbConnection, name: &str) -> Result<Endpoint, StorageError> {
    endpoints::table
        .filter(endpoints::name.eq(name))
        .select(Endpoint::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| endpoint_not_found(name))
}

// ---- servers ---------------------------------------------------------------------------------

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

// ---- endpoints -------------------------------------------------------------------------------

/// The details of `endpoints`, in their order, with three queries whatever their number.
fn details(conn: &mut DbConnection, endpoints: Vec<Endpoint>) -> Result<Vec<EndpointDetail>, StorageError> {
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

fn detail(conn: &mut DbConnection, endpoint: Endpoint) -> Result<EndpointDetail, StorageError> {
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
    write_transaction(conn, |conn| {
        let row = EndpointRow {
            name: &new.name,
            description: &new.description,
            auth_required: new.auth_required,
            created_at: now_ms(),
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

/// Stores an API key of `endpoint` as its hex SHA-256 `key_hash` (64 hex digits, kept in lower
/// case) and its first characters `prefix` (at most 16) for display and revocation. A hash already stored is
/// [`Conflict`](StorageError::Conflict).
pub fn add_api_key(
    conn: &mut DbConnection,
    endpoint: &str,
    key_hash: &str,
    prefix: &str,
) -> Result<ApiKeyInfo, StorageError> {
    if key_hash.len() != 64 || !key_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StorageError::Invalid("an API key hash must be 64 hex digits (SHA-256)".to_owned()));
    }
    if prefix.chars().count() > 16 || prefix.chars().any(char::is_control) {
        return Err(StorageError::Invalid("an API key prefix must be at most 16 printable characters".to_owned()));
    }
    let found = find_endpoint(conn, endpoint)?;
    diesel::insert_into(keys::table)
        .values((
            keys::endpoint_id.eq(found.id),
            keys::key_hash.eq(key_hash.to_ascii_lowercase()),
            keys::prefix.eq(prefix),
            keys::created_at.eq(now_ms()),
        ))
        .returning((keys::id, keys::prefix, keys::created_at, keys::last_used_at))
        .get_result::<ApiKeyInfo>(conn)
        .map_err(|e| conflict_as(e, || "this API key is already stored".to_owned()))
}

/// The key hashes of `endpoint`, to check a presented key against.
pub fn api_key_hashes(conn: &mut DbConnection, endpoint: &str) -> Result<Vec<String>, StorageError> {
    Ok(api_keys(conn, endpoint)?.into_iter().map(|key| key.hash).collect())
}

/// The keys of `endpoint` with their row ids, oldest first, to check a presented key against
/// and bind a session to the key that opened it.
pub fn api_keys(conn: &mut DbConnection, endpoint: &str) -> Result<Vec<KeyHash>, StorageError> {
    let found = find_endpoint(conn, endpoint)?;
    Ok(keys::table
        .filter(keys::endpoint_id.eq(found.id))
        .select((keys::id, keys::key_hash))
        .order(keys::id.asc())
        .load(conn)?)
}

/// A page of the keys of `endpoint`, oldest first: prefix, creation and last use, never the
/// key or its hash.
pub fn list_api_keys(conn: &mut DbConnection, endpoint: &str, page: Page) -> Result<Listed<ApiKeyInfo>, StorageError> {
    let page = page.check()?;
    let found = find_endpoint(conn, endpoint)?;
    let total = keys::table.filter(keys::endpoint_id.eq(found.id)).count().get_result::<i64>(conn)?;
    let items = keys::table
        .filter(keys::endpoint_id.eq(found.id))
        .select(ApiKeyInfo::as_select())
        .order(keys::id.asc())
        .limit(page.limit)
        .offset(page.offset)
        .load(conn)?;
    Ok(Listed { items, total })
}

/// Deletes the key of `endpoint` whose prefix starts with `prefix` and returns it. No such key
/// is [`NotFound`](StorageError::NotFound); more than one is
/// [`Conflict`](StorageError::Conflict) and nothing is deleted.
pub fn revoke_api_key(conn: &mut DbConnection, endpoint: &str, prefix: &str) -> Result<ApiKeyInfo, StorageError> {
    if prefix.is_empty()
        || prefix.len() > MAX_KEY_PREFIX
        || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(StorageError::Invalid(format!(
            "a key prefix must be 1 to {MAX_KEY_PREFIX} letters, digits, '_' or '-'"
        )));
    }
    write_transaction(conn, |conn| {
        let found = find_endpoint(conn, endpoint)?;
        // Prefixes are short: compare in Rust rather than with LIKE and its escapes.
        let matching: Vec<ApiKeyInfo> = keys::table
            .filter(keys::endpoint_id.eq(found.id))
            .select(ApiKeyInfo::as_select())
            .order(keys::id.asc())
            .load::<ApiKeyInfo>(conn)?
            .into_iter()
            .filter(|key| key.prefix.starts_with(prefix))
            .collect();
        match matching.as_slice() {
            [] => Err(StorageError::NotFound(format!(
                "endpoint {} has no API key with the prefix {}",
                quoted(endpoint),
                quoted(prefix)
            ))),
            [key] => {
                diesel::delete(keys::table.filter(keys::id.eq(key.id))).execute(conn)?;
                Ok(key.clone())
            }
            several => Err(StorageError::Conflict(format!(
                "the prefix {} matches {} API keys of endpoint {}; give more of it",
                quoted(prefix),
                several.len(),
                quoted(endpoint)
            ))),
        }
    })
}

/// Records that the key `id` opened a request at `at_ms` (Unix milliseconds). A key revoked
/// meanwhile is no error.
pub fn touch_api_key(conn: &mut DbConnection, id: i64, at_ms: i64) -> Result<(), StorageError> {
    diesel::update(keys::table.filter(keys::id.eq(id))).set(keys::last_used_at.eq(at_ms)).execute(conn)?;
    Ok(())
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
    };
    match diesel::insert_into(endpoints::table).values(&row).execute(conn) {
        Ok(_) => Ok(()),
        // Another gateway created it between our check and our insert.
        Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

// ---- tools -----------------------------------------------------------------------------------

/// The columns of a [`Tool`] but its embedding.
type ToolColumns = (
    tools::id,
    tools::server_id,
    servers::name,
    tools::name,
    tools::description,
    tools::input_schema,
    tools::enabled,
    tools::updated_at,
);
const TOOL_COLUMNS: ToolColumns = (
    tools::id,
    tools::server_id,
    servers::name,
    tools::name,
    tools::description,
    tools::input_schema,
    tools::enabled,
    tools::updated_at,
);
type ToolValues = (i64, i64, String, String, String, String, bool, i64);

fn tool(values: ToolValues, embedding: Option<Vec<u8>>) -> Tool {
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

type ToolQuery<'a> = diesel::dsl::IntoBoxed<'a, diesel::dsl::InnerJoin<tools::table, servers::table>, MultiBackend>;

/// `%text%` for `LIKE … ESCAPE '\'`, in lower case, with `%`, `_` and `\` taken literally.
fn contains_pattern(text: &str) -> String {
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

fn tool_query(filter: &ToolFilter) -> ToolQuery<'_> {
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

fn tools_of_server(conn: &mut DbConnection, server_id: i64) -> Result<Vec<Tool>, StorageError> {
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

// ---- executions ------------------------------------------------------------------------------

fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    &text[..end]
}

/// The row of `new`, checked: its duration must be finite and not negative, and its error
/// message is cut at [`MAX_ERROR_MESSAGE`] bytes.
fn execution_row(new: &NewExecution, created_at: i64) -> Result<ExecutionRow<'_>, StorageError> {
    if !new.duration_ms.is_finite() || new.duration_ms < 0.0 {
        return Err(StorageError::Invalid(format!(
            "an execution's duration_ms must be finite and not negative, not {}",
            new.duration_ms
        )));
    }
    Ok(ExecutionRow {
        endpoint: new.endpoint.as_deref(),
        tool_name: &new.tool_name,
        success: new.success,
        duration_ms: new.duration_ms,
        error_message: new.error_message.as_deref().map(|message| cut(message, MAX_ERROR_MESSAGE)),
        trace_id: new.trace_id.as_deref(),
        created_at,
    })
}

/// Records one tool execution; returns its id.
pub fn insert_execution(conn: &mut DbConnection, new: &NewExecution) -> Result<i64, StorageError> {
    let row = execution_row(new, now_ms())?;
    Ok(diesel::insert_into(executions::table).values(&row).returning(executions::id).get_result(conn)?)
}

/// Records many tool executions in one statement (one query span, one round trip).
pub fn insert_executions(conn: &mut DbConnection, new: &[NewExecution]) -> Result<usize, StorageError> {
    let created_at = now_ms();
    let rows = new.iter().map(|new| execution_row(new, created_at)).collect::<Result<Vec<_>, _>>()?;
    let mut written = 0;
    // Bounded statements: SQLite allows at most 32766 bound values (7 per row).
    for chunk in rows.chunks(1000) {
        // Multi-row VALUES is backend-specific in diesel: run it on the concrete connection
        // (its instrumentation is the same).
        let insert = diesel::insert_into(executions::table).values(chunk);
        written += match conn {
            DbConnection::Sqlite(sqlite) => insert.execute(sqlite)?,
            DbConnection::Postgres(pg) => insert.execute(pg)?,
        };
    }
    Ok(written)
}

/// Deletes at most `limit` of the oldest executions created before `cutoff_ms` (Unix
/// milliseconds); returns how many. Call again while it returns `limit`.
pub fn delete_executions_before(conn: &mut DbConnection, cutoff_ms: i64, limit: i64) -> Result<usize, StorageError> {
    let ids: Vec<i64> = executions::table
        .filter(executions::created_at.lt(cutoff_ms))
        .select(executions::id)
        .order(executions::id.asc())
        .limit(limit)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(executions::table.filter(executions::id.eq_any(&ids))).execute(conn)?)
}

/// Deletes at most `limit` of the oldest executions beyond the newest `keep` (by id, which
/// grows with insertion); returns how many. Call again while it returns `limit`.
pub fn delete_executions_beyond(conn: &mut DbConnection, keep: i64, limit: i64) -> Result<usize, StorageError> {
    let newest_dropped: Option<i64> = executions::table
        .select(executions::id)
        .order(executions::id.desc())
        .offset(keep)
        .limit(1)
        .first(conn)
        .optional()?;
    let Some(newest_dropped) = newest_dropped else { return Ok(0) };
    let ids: Vec<i64> = executions::table
        .filter(executions::id.le(newest_dropped))
        .select(executions::id)
        .order(executions::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(executions::table.filter(executions::id.eq_any(&ids))).execute(conn)?)
}

type ExecutionQuery<'a> = diesel::dsl::IntoBoxed<'a, executions::table, MultiBackend>;

fn execution_query(filter: &ExecutionFilter) -> ExecutionQuery<'_> {
    let mut query = executions::table.into_boxed::<MultiBackend>();
    if let Some(tool) = &filter.tool {
        query = query.filter(executions::tool_name.eq(tool));
    }
    if let Some(endpoint) = &filter.endpoint {
        query = query.filter(executions::endpoint.eq(endpoint));
    }
    if let Some(success) = filter.success {
        query = query.filter(executions::success.eq(success));
    }
    query
}

/// A page of executions matching `filter`, newest first.
pub fn list_executions(
    conn: &mut DbConnection,
    filter: &ExecutionFilter,
    page: Page,
) -> Result<Listed<Execution>, StorageError> {
    let page = page.check()?;
    let total = execution_query(filter).count().get_result::<i64>(conn)?;
    let items = execution_query(filter)
        .select(Execution::as_select())
        .order((executions::created_at.desc(), executions::id.desc()))
        .limit(page.limit)
        .offset(page.offset)
        .load(conn)?;
    Ok(Listed { items, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "my-server_2", &"x".repeat(64)] {
            assert!(check_server_name(good).is_ok(), "{good}");
            assert!(check_name("endpoint", good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "dot.ted", "ünï", &"x".repeat(65), "slash/"] {
            assert!(matches!(check_name("endpoint", bad), Err(StorageError::Invalid(_))), "{bad}");
        }
        assert!(check_name("endpoint", "a__b").is_ok());
        let err = check_server_name("a__b").unwrap_err();
        assert!(err.to_string().contains("__"), "{err}");
    }

    #[test]
    fn embeddings_and_patterns() {
        let values = vec![0.0, -1.5, f32::MAX, 1e-7];
        let bytes = encode_embedding(&values);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[4..8], &(-1.5f32).to_le_bytes());
        assert_eq!(decode_embedding(Some(bytes)), Some(values));
        assert_eq!(decode_embedding(Some(vec![1, 2, 3])), None);
        assert_eq!(decode_embedding(None), None);
        assert_eq!(contains_pattern("50%_Off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(quoted(&"y".repeat(100)).len(), 80 + 2 + 3);
    }
}
