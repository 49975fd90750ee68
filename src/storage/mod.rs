//! Storage of the gateway with diesel: SQLite (bundled) or PostgreSQL, migrations embedded and run
//! at start, an r2d2 pool, and a CLIENT span plus a duration metric for every query.
//!
//! [`Store`] owns the pool; handlers call [`Store::run`] with a closure over a [`DbConnection`]
//! and the repository functions re-exported here ([`create_server`], [`list_tools`], …), which
//! use diesel's query builder only and so run on both backends.

mod connection;
mod error;
mod instrument;
mod pool;
mod repo;
mod schema;
mod store;
#[cfg(test)]
mod tests;

pub use connection::{write_transaction, Backend, DbConnection, MultiBackend};
pub use error::StorageError;
pub use instrument::{sanitize_query, MAX_QUERY_TEXT};
pub use repo::{
    add_api_key, all_tools, api_key_hashes, api_keys, attach_server, create_endpoint, create_server, delete_endpoint,
    delete_executions_before, delete_executions_beyond, delete_server, detach_server, endpoint_servers,
    ensure_default_endpoint, get_endpoint, get_server, get_tool, insert_execution, insert_executions, list_api_keys,
    list_endpoints, list_executions, list_servers, list_tools, replace_server_tools, revoke_api_key,
    set_api_key_rate_limit, set_endpoint_rate_limit, set_tool_enabled, touch_api_key, ApiKeyInfo, Endpoint,
    EndpointDetail, Execution, ExecutionFilter, InvalidServerField, KeyHash, Listed, NewEndpoint, NewExecution,
    NewServer, NewTool, Page, Server, Tool, ToolFilter, DEFAULT_ENDPOINT, DEFAULT_ENDPOINT_DESCRIPTION,
    MAX_ERROR_MESSAGE, MAX_KEY_PREFIX, MAX_ROWS_PER_INSERT, MAX_TIMEOUT_MS, PRUNE_CHUNK,
};
pub use store::Store;
