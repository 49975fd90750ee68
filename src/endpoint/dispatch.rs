//! The MCP methods of an endpoint, after `initialize`: each request of a session answered with a
//! [`ServerResult`] or a JSON-RPC error ([`ErrorData`]), in `rmcp`'s model types.

use rmcp::model::{
    CallToolRequestParams, ClientRequest, CompleteRequestParams, ErrorCode, ErrorData, GetPromptRequestParams,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, RequestId, ServerResult, Tool,
};
use serde_json::{json, Map, Value};

use opentelemetry::trace::FutureExt as _;

use super::aggregate::{self, ListName};
use super::observe::{self, Operation, ServerSpan};
use super::rpc::{self, invalid_params};
use super::state::McpState;
use crate::service::{violations_text, CallOrigin, ExecuteError};
use crate::storage::StorageError;

/// JSON-RPC error code of a failed upstream call (implementation-defined server error range).
pub const UPSTREAM_ERROR: i32 = -32000;
/// JSON-RPC error code when the gateway's own storage is unavailable.
pub const UNAVAILABLE_ERROR: i32 = -32001;

/// Who asks: the endpoint and session a request came through.
#[derive(Debug, Clone)]
pub(super) struct Caller<'a> {
    /// The endpoint.
    pub(super) endpoint: &'a str,
    /// The session id (a bearer capability: spans see only its fingerprint).
    pub(super) session_id: &'a str,
    /// The revision the session negotiated.
    pub(super) protocol_version: &'a ProtocolVersion,
}

impl Caller<'_> {
    fn origin(&self, id: &RequestId) -> CallOrigin {
        CallOrigin {
            endpoint: Some(self.endpoint.to_owned()),
            session_id: Some(self.session_id.to_owned()),
            request_id: Some(rpc::id_text(id)),
            protocol_version: Some(self.protocol_version.as_str().to_owned()),
            ..CallOrigin::default()
        }
    }
}

/// Answers `request` (anything but `initialize`, which opens the session) inside its server
/// span.
pub(super) async fn handle(
    state: &McpState,
    caller: &Caller<'_>,
    id: &RequestId,
    request: ClientRequest,
) -> Result<ServerResult, ErrorData> {
    let operation = Operation::of(&request);
    let parent = observe::parent_of(&request);
    let span = ServerSpan::start(
        state.gateway.telemetry(),
        &parent,
        &operation,
        id,
        Some(caller.protocol_version),
        Some(caller.session_id),
    );
    let outcome = run(state, caller, id, request).with_context(span.context()).await;
    span.finish(&outcome);
    outcome
}

async fn run(
    state: &McpState,
    caller: &Caller<'_>,
    id: &RequestId,
    request: ClientRequest,
) -> Result<ServerResult, ErrorData> {
    match request {
        ClientRequest::PingRequest(_) => Ok(ServerResult::empty(())),
        ClientRequest::ListToolsRequest(request) => list_tools(state, caller, request.params.as_ref()).await,
        ClientRequest::CallToolRequest(request) => call_tool(state, caller, id, request.params).await,
        ClientRequest::InitializeRequest(_) => {
            Err(rpc::error(ErrorCode::INVALID_REQUEST, "initialize was already sent: this session is open", None))
        }
        ClientRequest::CustomRequest(custom) => Err(unreadable(&custom.method, custom.params)),
        other => Err(method_not_found(other.method())),
    }
}

/// The answer to a request `rmcp` could not read as any method it knows: invalid params for a
/// method of MCP (naming what is wrong), method not found otherwise.
fn unreadable(method: &str, params: Option<Value>) -> ErrorData {
    let params = params.unwrap_or_else(|| Value::Object(Map::new()));
    let why = match method {
        "tools/call" => why_not::<CallToolRequestParams>(params),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            why_not::<PaginatedRequestParams>(params)
        }
        "prompts/get" => why_not::<GetPromptRequestParams>(params),
        "resources/read" => why_not::<ReadResourceRequestParams>(params),
        "completion/complete" => why_not::<CompleteRequestParams>(params),
        "initialize" => Some("initialize was already sent: this session is open".to_owned()),
        _ => None,
    };
    match why {
        Some(why) => invalid_params(format!("Invalid params for {method}: {why}")),
        None => method_not_found(method),
    }
}

/// What serde says of `params` as a `T` (the field and what it expected, never the value).
fn why_not<T: serde::de::DeserializeOwned>(params: Value) -> Option<String> {
    Some(match serde_json::from_value::<T>(params) {
        Ok(_) => "they do not match the method".to_owned(),
        Err(err) => err.to_string(),
    })
}

fn method_not_found(method: &str) -> ErrorData {
    rpc::error(ErrorCode::METHOD_NOT_FOUND, format!("Method not found: {method}"), None)
}

/// The page size of the endpoints' lists.
fn page_size(_state: &McpState) -> usize {
    aggregate::DEFAULT_LIST_PAGE_SIZE
}

fn cursor_of(params: Option<&PaginatedRequestParams>) -> Option<&str> {
    params.and_then(|p| p.cursor.as_deref())
}

async fn list_tools(
    state: &McpState,
    caller: &Caller<'_>,
    params: Option<&PaginatedRequestParams>,
) -> Result<ServerResult, ErrorData> {
    let tools = state.gateway.endpoint_tools(caller.endpoint).await.map_err(|err| execute_error(&err))?;
    let tools: Vec<Tool> = tools.into_iter().map(convert).collect::<Result<_, _>>()?;
    let (page, next) = aggregate::paginate(ListName::Tools, tools, cursor_of(params), page_size(state))
        .map_err(|err| invalid_params(err.to_string()))?;
    let mut result = ListToolsResult::with_all_items(page);
    result.next_cursor = next;
    Ok(ServerResult::ListToolsResult(result))
}

async fn call_tool(
    state: &McpState,
    caller: &Caller<'_>,
    id: &RequestId,
    params: CallToolRequestParams,
) -> Result<ServerResult, ErrorData> {
    let arguments = params.arguments.unwrap_or_default();
    let origin = caller.origin(id);
    match state.gateway.call_tool(&params.name, arguments, &origin).await {
        Ok(result) => Ok(ServerResult::CallToolResult(convert(result)?)),
        Err(err) => Err(execute_error(&err)),
    }
}

/// The same value in `rmcp`'s type (the service speaks the gateway's own types until it moves
/// onto `rmcp`'s; both read and write the same JSON).
fn convert<T: serde::Serialize, U: serde::de::DeserializeOwned>(value: T) -> Result<U, ErrorData> {
    serde_json::to_value(value).and_then(serde_json::from_value).map_err(|err| {
        tracing::error!(error = %err, "a result could not be carried over into the MCP model");
        rpc::error(ErrorCode::INTERNAL_ERROR, "Internal error: a result could not be encoded", None)
    })
}

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
