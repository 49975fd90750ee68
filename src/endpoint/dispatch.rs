//! The MCP methods of an endpoint, after `initialize`: each request of a session answered with a
//! [`ServerResult`] or a JSON-RPC error ([`ErrorData`]), in `rmcp`'s model types, inside its
//! server span. A request that reaches an upstream (`tools/call`, `prompts/get`,
//! `resources/read`, `completion/complete`) can be cancelled by the client while it runs, and
//! the upstream's progress notifications reach the client under the client's own token.

use std::sync::Arc;

use actix_web::web::Bytes;
use opentelemetry::trace::FutureExt as _;
use rmcp::model::{
    CallToolRequestParams, ClientRequest, CompleteRequestParams, ErrorCode, ErrorData, GetMeta as _,
    GetPromptRequestParams, ListToolsResult, PaginatedRequestParams, ProgressNotification, ProgressNotificationParam,
    ProgressToken, ProtocolVersion, ReadResourceRequestParams, RequestId, ServerJsonRpcMessage, ServerResult,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::aggregate::{self, ListName};
use super::content;
use super::failure::execute_error;
use super::observe::{self, Operation, ServerSpan};
use super::rpc::{self, invalid_params};
use super::state::McpState;
use super::stream;
use crate::service::CallOrigin;

/// JSON-RPC error code of a request the client cancelled (sent only where an answer is owed:
/// a plain JSON `POST`; an event stream ends without one).
pub const REQUEST_CANCELLED: i32 = -32800;

/// Where the progress notifications of a request go.
#[derive(Debug, Clone)]
pub(super) enum ProgressSink {
    /// The `POST`'s own event stream.
    Stream(mpsc::Sender<Bytes>),
    /// The session's stream (the `GET` stream, or the legacy transport's).
    Session,
}

/// Who asks: the endpoint and session a request came through.
#[derive(Debug, Clone)]
pub(super) struct Caller<'a> {
    /// The endpoint.
    pub(super) endpoint: &'a str,
    /// The session id (a bearer capability: spans see only its fingerprint).
    pub(super) session_id: &'a str,
    /// The session id's fingerprint, what spans show of it.
    pub(super) session_fingerprint: &'a Arc<str>,
    /// The revision the session negotiated.
    pub(super) protocol_version: &'a ProtocolVersion,
    /// Where the request's progress goes, if anywhere.
    pub(super) progress: Option<ProgressSink>,
}

impl Caller<'_> {
    fn origin(&self, id: &RequestId) -> CallOrigin {
        CallOrigin {
            endpoint: Some(self.endpoint.to_owned()),
            session_fingerprint: Some(self.session_fingerprint.clone()),
            request_id: Some(id.clone()),
            protocol_version: Some(rpc::version_name(self.protocol_version)),
            ..CallOrigin::default()
        }
    }
}

/// Whether a request's outcome says the client cancelled it.
pub(super) fn was_cancelled(outcome: &Result<ServerResult, ErrorData>) -> bool {
    matches!(outcome, Err(error) if error.code == ErrorCode(REQUEST_CANCELLED))
}

/// Whether `request` goes to an upstream (and so may report progress and be cancelled).
fn reaches_upstream(request: &ClientRequest) -> bool {
    matches!(
        request,
        ClientRequest::CallToolRequest(_)
            | ClientRequest::GetPromptRequest(_)
            | ClientRequest::ReadResourceRequest(_)
            | ClientRequest::CompleteRequest(_)
    )
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
        (caller.endpoint, id),
        Some(caller.protocol_version),
        Some(caller.session_fingerprint),
    );
    let outcome = if reaches_upstream(&request) {
        upstream_bound(state, caller, id, request).with_context(span.context()).await
    } else {
        run(state, caller, request, CallOrigin::default()).with_context(span.context()).await
    };
    span.finish(&outcome);
    outcome
}

/// A request bound for an upstream: registered for cancellation, its progress forwarded.
async fn upstream_bound(
    state: &McpState,
    caller: &Caller<'_>,
    id: &RequestId,
    request: ClientRequest,
) -> Result<ServerResult, ErrorData> {
    let running = state.inflight.start(caller.session_id, id);
    let mut origin = caller.origin(id);
    origin.cancel = Some(running.token().clone());
    let token = request.get_meta().get_progress_token();
    let route = token.zip(caller.progress.clone());
    let (sender, mut progress) = mpsc::unbounded_channel();
    if route.is_some() {
        origin.progress = Some(sender);
    } else {
        drop(sender);
    }
    let work = run(state, caller, request, origin);
    let mut work = std::pin::pin!(work);
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => {
                while let Ok(update) = progress.try_recv() {
                    forward(state, caller, route.as_ref(), update);
                }
                break outcome;
            }
            Some(update) = progress.recv() => forward(state, caller, route.as_ref(), update),
        }
    };
    if running.token().is_cancelled() {
        return Err(rpc::error(ErrorCode(REQUEST_CANCELLED), "Request cancelled by the client", None));
    }
    outcome
}

/// One upstream progress notification, under the client's token, to where it goes.
fn forward(
    state: &McpState,
    caller: &Caller<'_>,
    route: Option<&(ProgressToken, ProgressSink)>,
    mut update: ProgressNotificationParam,
) {
    let Some((token, sink)) = route else { return };
    update.progress_token = token.clone();
    let message = ServerJsonRpcMessage::notification(ProgressNotification::new(update).into());
    let event = stream::event(&message);
    let delivered = match sink {
        ProgressSink::Stream(stream) => stream.try_send(event).is_ok(),
        ProgressSink::Session => state.sessions.send(caller.session_id, caller.endpoint, event),
    };
    if !delivered {
        tracing::debug!(endpoint = caller.endpoint, "a progress notification was dropped: its stream is full or gone");
    }
}

async fn run(
    state: &McpState,
    caller: &Caller<'_>,
    request: ClientRequest,
    origin: CallOrigin,
) -> Result<ServerResult, ErrorData> {
    let page_size = page_size(state);
    let endpoint = caller.endpoint;
    match request {
        ClientRequest::PingRequest(_) => Ok(ServerResult::empty(())),
        ClientRequest::ListToolsRequest(request) => list_tools(state, endpoint, request.params.as_ref()).await,
        ClientRequest::CallToolRequest(request) => call_tool(state, request.params, &origin).await,
        ClientRequest::ListPromptsRequest(request) => {
            content::list_prompts(state, endpoint, request.params.as_ref(), page_size).await
        }
        ClientRequest::GetPromptRequest(request) => content::get_prompt(state, endpoint, request.params, &origin).await,
        ClientRequest::ListResourcesRequest(request) => {
            content::list_resources(state, endpoint, request.params.as_ref(), page_size).await
        }
        ClientRequest::ListResourceTemplatesRequest(request) => {
            content::list_resource_templates(state, endpoint, request.params.as_ref(), page_size).await
        }
        ClientRequest::ReadResourceRequest(request) => {
            content::read_resource(state, endpoint, request.params, &origin).await
        }
        ClientRequest::CompleteRequest(request) => content::complete(state, endpoint, request.params, &origin).await,
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

/// The page size of the endpoints' lists (`gateway.list_page_size`).
fn page_size(state: &McpState) -> usize {
    usize::try_from(state.gateway.settings().list_page_size).unwrap_or(aggregate::DEFAULT_LIST_PAGE_SIZE).max(1)
}

async fn list_tools(
    state: &McpState,
    endpoint: &str,
    params: Option<&PaginatedRequestParams>,
) -> Result<ServerResult, ErrorData> {
    let tools = state.gateway.endpoint_tools(endpoint).await.map_err(|err| execute_error(&err))?;
    let cursor = params.and_then(|p| p.cursor.as_deref());
    let (page, next) = aggregate::paginate(ListName::Tools, tools, cursor, page_size(state))
        .map_err(|err| invalid_params(err.to_string()))?;
    let mut result = ListToolsResult::with_all_items(page);
    result.next_cursor = next;
    Ok(ServerResult::ListToolsResult(result))
}

async fn call_tool(
    state: &McpState,
    params: CallToolRequestParams,
    origin: &CallOrigin,
) -> Result<ServerResult, ErrorData> {
    let arguments = params.arguments.unwrap_or_default();
    match state.gateway.call_tool(&params.name, arguments, origin).await {
        Ok(result) => Ok(ServerResult::CallToolResult(result)),
        Err(err) => Err(execute_error(&err)),
    }
}
