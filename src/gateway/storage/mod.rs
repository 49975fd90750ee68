//! Storage of the gateway with diesel: SQLite (bundled) or PostgreSQL, migrations embedded and run
//! at start, an r2d2 pool, and a CLIENT span plus a duration metric for every query.
//!
//! [`Store`] owns the pool; handlers call [`Store::run`] with a closure over a [`DbConnection`]
//! and the repository functions re-exported here ([`create_server`], [`list_tools`], …), which
//! use diesel's query builder only and so run on both backends.

mod connection;
mod error;
mod instrument;
mod repo;
mod schema;
mod spool;
mod store;
#[cfg(test)]
mod tests;

pub use connection::{write_transaction, Backend, DbConnection, MultiBackend};
pub use error::StorageError;
pub use instrument::{sanitize_query, MAX_QUERY_TEXT};
pub use repo::{
    add_api_key, all_tools, api_key_hashes, attach_server, create_endpoint, create_server, delete_endpoint,
    delete_server, detach_server, endpoint_servers, ensure_default_endpoint, get_endpoint, get_server, get_tool,
    insert_execution, insert_executions, list_endpoints, list_executions, list_servers, list_tools,
    replace_server_tools, set_tool_enabled, ApiKeyInfo, Endpoint, EndpointDetail, Execution, ExecutionFilter, Listed,
    NewEndpoint, NewExecution, NewServer, NewTool, Page, Server, Tool, ToolFilter, DEFAULT_ENDPOINT,
    DEFAULT_ENDPOINT_DESCRIPTION, MAX_ERROR_MESSAGE,
};
pub use spool::DbSpool;
pub use store::Store;

/// `url` with any password replaced by `***`, for logs and error messages: the one in the
/// user information (which may itself hold `@`, `/` or `:`) and a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The user information ends at the last `@` before the query string that follows it.
    let (userinfo, after) = match rest.find('@') {
        Some(first) => {
            let query = rest[first..].find('?').map_or(rest.len(), |at| first + at);
            match rest[..query].rfind('@') {
                Some(last) => (Some(&rest[..last]), &rest[last + 1..]),
                None => (None, rest),
            }
        }
        None => (None, rest),
    };
    let mut redacted = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => redacted.push_str(&format!("{user}:***@")),
            None => redacted.push_str(&format!("{userinfo}@")),
        }
    }
    match after.split_once('?') {
        Some((location, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            redacted.push_str(location);
            redacted.push('?');
            redacted.push_str(&params.join("&"));
        }
        None => redacted.push_str(after),
    }
    redacted
}
