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
use crate::ratelimit::RateLimit;

/// Name of the endpoint that always exists: the gateway's built-in tools.
pub const DEFAULT_ENDPOINT: &str = "default";
/// Description of the [`DEFAULT_ENDPOINT`].
pub const DEFAULT_ENDPOINT_DESCRIPTION: &str = "Built-in tools";
/// Longest stored `error_message` of a tool execution, in bytes; longer ones are cut.
pub const MAX_ERROR_MESSAGE: usize = 4096;
/// Longest accepted tool name, in bytes.
const MAX_TOOL_NAME: usize = 1024;

#[diesel::declare_sql_function]
extern "SQL" {
    /// SQL `lower(text)`, on both backends.
    fn lower(x: Text) -> Text;
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
    /// Requests per second it admits on average; `None`: unlimited.
    pub rate_limit_rps: Option<f64>,
    /// Requests it admits at once.
    pub rate_limit_burst: Option<i64>,
}

impl Endpoint {
    /// Its rate limit, if any.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        stored_rate_limit(self.rate_limit_rps, self.rate_limit_burst)
    }
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
    /// Requests per second it opens on average; `None`: unlimited.
    pub rate_limit_rps: Option<f64>,
    /// Requests it opens at once.
    pub rate_limit_burst: Option<i64>,
}

/// An API key as the endpoint check needs it: its row id, hash, prefix and rate limit.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct KeyHash {
    /// Row id.
    pub id: i64,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// The key's first characters (shown, and the name of its rate-limit metric).
    pub prefix: String,
    /// Requests per second it opens on average; `None`: unlimited.
    pub rate_limit_rps: Option<f64>,
    /// Requests it opens at once.
    pub rate_limit_burst: Option<i64>,
}

impl KeyHash {
    /// Its rate limit, if any.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        stored_rate_limit(self.rate_limit_rps, self.rate_limit_burst)
    }
}

/// The limit of stored fields (checked when written; a row that breaks the rule is unlimited).
fn stored_rate_limit(rps: Option<f64>, burst: Option<i64>) -> Option<RateLimit> {
    RateLimit::from_fields(rps, burst).ok().flatten()
}

/// The limit of fields to store, or [`Invalid`](StorageError::Invalid) naming the field.
fn checked_rate_limit(rps: Option<f64>, burst: Option<i64>) -> Result<Option<RateLimit>, StorageError> {
    RateLimit::from_fields(rps, burst).map_err(|err| StorageError::Invalid(err.to_string()))
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
    /// Requests per second it admits on average (above 0); `None`: unlimited.
    #[serde(default)]
    pub rate_limit_rps: Option<f64>,
    /// Requests it admits at once (at least 1; default `rate_limit_rps` rounded up).
    #[serde(default)]
    pub rate_limit_burst: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = endpoints)]
struct EndpointRow<'a> {
    name: &'a str,
    description: &'a str,
    auth_required: bool,
    created_at: i64,
    rate_limit_rps: Option<f64>,
    rate_limit_burst: Option<i64>,
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

// `None` inserts NULL rather than DEFAULT (the nullable columns have no other default): with no
// defaultable value, diesel writes a batch as one multi-row `INSERT` on SQLite too, instead of a
// savepoint and one `INSERT` per row.
#[derive(Insertable)]
#[diesel(table_name = executions, treat_none_as_default_value = false)]
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
const ENDPOINT_COLUMNS: (
    endpoints::id,
    endpoints::name,
    endpoints::description,
    endpoints::auth_required,
    endpoints::created_at,
    endpoints::rate_limit_rps,
    endpoints::rate_limit_burst,
) = (
    endpoints::id,
    endpoints::name,
    endpoints::description,
    endpoints::auth_required,
    endpoints::created_at,
    endpoints::rate_limit_rps,
    endpoints::rate_limit_burst,
);
const API_KEY_COLUMNS: (
    keys::id,
    keys::prefix,
    keys::created_at,
    keys::last_used_at,
    keys::rate_limit_rps,
    keys::rate_limit_burst,
) = (keys::id, keys::prefix, keys::created_at, keys::last_used_at, keys::rate_limit_rps, keys::rate_limit_burst);

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

// One file per table. The modules' names differ from the files' because the tables' own names
// (`servers`, `endpoints`, `tools`) are taken by the schema imports above.
mod api_keys;
#[path = "endpoints.rs"]
mod endpoint_records;
#[path = "audit.rs"]
mod execution_records;
#[path = "servers.rs"]
mod server_records;
#[path = "tools.rs"]
mod tool_records;

pub use api_keys::*;
pub use endpoint_records::*;
pub use execution_records::*;
pub use server_records::*;
pub use tool_records::*;

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
