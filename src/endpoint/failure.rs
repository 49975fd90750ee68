//! The JSON-RPC errors of what failed inside the gateway or upstream (a call, a lookup), in
//! the endpoints' own codes beside JSON-RPC's.

use rmcp::model::{ErrorCode, ErrorData};
use serde_json::json;

use super::rpc::{self, invalid_params};
use crate::service::{violations_text, ExecuteError};
use crate::storage::StorageError;

/// JSON-RPC error code of a failed upstream call (implementation-defined server error range).
pub const UPSTREAM_ERROR: i32 = -32000;
/// JSON-RPC error code when the gateway's own storage is unavailable.
pub const UNAVAILABLE_ERROR: i32 = -32001;
/// The JSON-RPC error of a failed call.
pub(super) fn execute_error(err: &ExecuteError) -> ErrorData {
    match err {
        ExecuteError::UnknownTool(name) => invalid_params(format!("Unknown tool: {name}")),
        ExecuteError::InvalidArguments { tool, errors } => rpc::error(
            ErrorCode::INVALID_PARAMS,
            format!("Invalid arguments for tool {tool}: {}", violations_text(errors)),
            Some(json!({ "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>() })),
        ),
        ExecuteError::Upstream { server, source } => rpc::error(
            ErrorCode(UPSTREAM_ERROR),
            format!("Upstream server {server} failed: {source}"),
            Some(json!({ "server": server, "kind": source.kind() })),
        ),
        ExecuteError::Storage(err) if err.is_unavailable() => {
            rpc::error(ErrorCode(UNAVAILABLE_ERROR), format!("The gateway's database is unavailable: {err}"), None)
        }
        ExecuteError::Storage(StorageError::NotFound(what)) => invalid_params(format!("Not found: {what}")),
        other => {
            tracing::error!(error = %other, "an MCP request failed inside the gateway");
            rpc::error(ErrorCode::INTERNAL_ERROR, format!("Internal error: {other}"), None)
        }
    }
}
