//! The HTTP side of the MCP endpoints, Streamable HTTP: `POST` carries JSON-RPC messages (a
//! request is answered with JSON, or with an event stream when it asked for progress and the
//! client takes one; notifications and responses get `202`), `GET` opens the session's event
//! stream, `DELETE` ends the session. Every request is admitted by the endpoint's auth first.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use opentelemetry::trace::FutureExt as _;
use opentelemetry::Context;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, ConstString as _, ErrorCode, ErrorData, GetMeta as _,
    Implementation, InitializeResult, JsonRpcMessage, JsonRpcRequest, ProtocolVersion, RequestId, ServerCapabilities,
    ServerJsonRpcMessage, ServerResult,
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::aggregate;
use super::auth::{authorize, Refusal};
use super::content::Offer;
use super::dispatch::{self, Caller, ProgressSink};
use super::observe::{self, Operation, ServerSpan};
use super::rpc::{self, Body, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use super::sessions::{Lists, StreamRefused, STREAM_QUEUE};
use super::state::McpState;
use super::stream;
use crate::api_error;
use crate::auth::challenge;
use crate::storage::StorageError;
use metamcp_telemetry::http::ApiError;

/// Adds `POST`, `GET` and `DELETE /metamcp/{endpoint}/mcp`.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metamcp/{endpoint}/mcp")
            .route(web::post().to(post))
            .route(web::get().to(get))
            .route(web::delete().to(delete))
            .route(web::route().to(method_not_allowed)),
    );
}

/// The answer to a request for `endpoint` the storage could not serve: 404 for an endpoint that
/// does not exist, the admin API's answer otherwise.
fn storage_error(err: StorageError, endpoint: &str) -> ApiError {
    match err {
        StorageError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_endpoint", format!("no MCP endpoint named {endpoint:?}"))
        }
        err => api_error::storage_error(err),
    }
}

/// Resolves the endpoint and checks its auth; returns the row id of the API key presented on an
/// endpoint that requires one (and notes its use).
pub(super) async fn admit(state: &McpState, endpoint: &str, headers: &HeaderMap) -> Result<Option<i64>, Refusal> {
    let entry = state.endpoints.get(&state.gateway, endpoint).await.map_err(|e| storage_error(e, endpoint))?;
    let key = authorize(endpoint, &entry, headers)?;
    state.endpoints.check_rate(&state.gateway, endpoint, &entry, key)?;
    if let Some(id) = key {
        state.key_usage.note(&state.gateway, id);
    }
    Ok(key)
}

pub(super) fn rpc_response(status: StatusCode, message: &ServerJsonRpcMessage, session: Option<&str>) -> HttpResponse {
    let mut builder = HttpResponse::build(status);
    builder.content_type(header::ContentType::json());
    if let Some(id) = session {
        builder.insert_header((MCP_SESSION_ID, id));
    }
    builder.body(rpc::to_bytes(message))
}

/// Reads the body up to `limit` bytes; a larger one is a JSON 413, a broken one a JSON 400.
pub(super) async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, HttpResponse> {
    use futures_util::StreamExt as _;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("the request body could not be read: {err}"))
                .error_response()
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {limit} bytes (gateway.max_body_bytes)"),
            )
            .error_response());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn post(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<McpState>,
) -> HttpResponse {
    let endpoint = path.into_inner();
    let key = match admit(&state, &endpoint, req.headers()).await {
        Ok(key) => key,
        Err(err) => return challenge(&err),
    };
    let body = match read_body(payload, state.gateway.settings().max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let message = match rpc::parse(&body) {
        Ok(Body::Single(message)) => *message,
        Ok(Body::Batch(items)) => return batch(&state, &endpoint, key, req.headers(), items).await,
        Err(refused) => return rpc_response(StatusCode::BAD_REQUEST, &refused.into_message(), None),
    };
    let (id, request) = match message {
        JsonRpcMessage::Request(JsonRpcRequest { id, request, .. }) => (id, request),
        JsonRpcMessage::Notification(notification) => {
            // Notifications (`notifications/initialized`, cancellations) are accepted without a
            // body; a known session is kept alive by them.
            if let Some(id) = header_str(req.headers(), MCP_SESSION_ID) {
                if state.sessions.touch(id, &endpoint, key).is_some() {
                    notified(&state, id, &notification.notification);
                }
            }
            tracing::debug!(method = %notification_method(&notification.notification), "MCP notification accepted");
            return HttpResponse::Accepted().finish();
        }
        // Responses to requests the gateway never sends its clients.
        JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_) => return HttpResponse::Accepted().finish(),
    };
    if let Some(requested) = initialize_version(&request) {
        let parent = observe::parent_of(&request);
        let span = ServerSpan::start(
            state.gateway.telemetry(),
            &parent,
            &Operation::of(&request),
            (endpoint.as_str(), &id),
            None,
            None,
        );
        let (response, outcome) = initialize(&state, &endpoint, id, requested, key).await;
        span.finish(&outcome);
        return response;
    }
    let session = match session_of(&state, &endpoint, key, req.headers()) {
        Ok(session) => session,
        Err(refused) => return refused.respond(Some(id)),
    };
    let wants_progress = request.get_meta().get_progress_token().is_some();
    if wants_progress && stream::accepts_events(req.headers()) {
        return answer_on_stream(state.into_inner(), endpoint, session, id, request);
    }
    // Progress a JSON answer cannot carry goes on the session's stream, when one is open.
    let progress = wants_progress.then_some(ProgressSink::Session);
    let caller = Caller {
        endpoint: &endpoint,
        session_id: &session.id,
        session_fingerprint: &session.fingerprint,
        protocol_version: &session.protocol_version,
        progress,
    };
    let outcome = dispatch::handle(&state, &caller, &id, request).await;
    rpc_response(StatusCode::OK, &rpc::answer(id, outcome), Some(&session.id))
}

/// A request that asked for progress, answered with an event stream: the progress
/// notifications under the client's token, then the answer (none when the client cancelled the
/// request), then the end of the stream.
fn answer_on_stream(
    state: Arc<McpState>,
    endpoint: String,
    session: OpenSession,
    id: RequestId,
    request: ClientRequest,
) -> HttpResponse {
    let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
    let response = stream::response(receiver, Some(&session.id));
    actix_rt::spawn(
        async move {
            let progress = Some(ProgressSink::Stream(sender.clone()));
            let caller = Caller {
                endpoint: &endpoint,
                session_id: &session.id,
                session_fingerprint: &session.fingerprint,
                protocol_version: &session.protocol_version,
                progress,
            };
            let outcome = dispatch::handle(&state, &caller, &id, request).await;
            if !dispatch::was_cancelled(&outcome) {
                // A client that went away no longer reads: nothing to do about it.
                let _ = sender.send(stream::event(&rpc::answer(id, outcome))).await;
            }
        }
        // Its spans are children of this request's (or of the client's `_meta.traceparent`).
        .with_context(Context::current()),
    );
    response
}

/// What a client's notification does: `notifications/cancelled` stops the request it names.
pub(super) fn notified(state: &McpState, session: &str, notification: &ClientNotification) {
    if let ClientNotification::CancelledNotification(cancelled) = notification {
        if let Some(id) = &cancelled.params.request_id {
            let stopped = state.inflight.cancel(session, id);
            tracing::debug!(request = %rpc::id_text(id), stopped, "the client cancelled a request");
        }
    }
}

/// A session a request names, checked: its id header, the session itself (of this endpoint, and
/// opened with this key), and the revision header when sent.
struct OpenSession {
    id: String,
    /// What telemetry shows of the id.
    fingerprint: Arc<str>,
    protocol_version: ProtocolVersion,
}

/// Why a request has no session to run in: the HTTP status and the JSON-RPC error to answer.
struct NoSession {
    status: StatusCode,
    error: ErrorData,
    session: Option<String>,
}

impl NoSession {
    fn respond(self, request: Option<RequestId>) -> HttpResponse {
        rpc_response(self.status, &ServerJsonRpcMessage::error(self.error, request), self.session.as_deref())
    }
}

fn session_of(
    state: &McpState,
    endpoint: &str,
    key: Option<i64>,
    headers: &HeaderMap,
) -> Result<OpenSession, NoSession> {
    let Some(session_id) = header_str(headers, MCP_SESSION_ID) else {
        return Err(NoSession {
            status: StatusCode::BAD_REQUEST,
            error: rpc::error(
                ErrorCode::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required; send initialize first",
                None,
            ),
            session: None,
        });
    };
    // A session opened with another key (or a session of another endpoint) is not this
    // client's: it is answered as unknown.
    let Some(session) = state.sessions.touch(session_id, endpoint, key) else {
        return Err(NoSession {
            status: StatusCode::NOT_FOUND,
            error: rpc::error(
                ErrorCode::INVALID_REQUEST,
                "Session not found: it ended or expired; send initialize to start a new one",
                None,
            ),
            session: None,
        });
    };
    if let Some(version) = header_str(headers, MCP_PROTOCOL_VERSION) {
        if !rpc::is_supported(version) {
            let supported: Vec<&str> = rpc::SUPPORTED_VERSIONS.iter().map(ProtocolVersion::as_str).collect();
            return Err(NoSession {
                status: StatusCode::BAD_REQUEST,
                error: rpc::error(
                    ErrorCode::INVALID_REQUEST,
                    format!("Unsupported MCP-Protocol-Version {version:?}; supported: {}", supported.join(", ")),
                    None,
                ),
                session: Some(session_id.to_owned()),
            });
        }
    }
    Ok(OpenSession {
        id: session_id.to_owned(),
        fingerprint: session.fingerprint,
        protocol_version: session.protocol_version,
    })
}

/// A JSON-RPC batch: only sessions of the revision that had them (2025-03-26) may send one.
/// Each element is answered in order; notifications and responses get no answer, and a batch
/// of only those is a 202.
async fn batch(
    state: &McpState,
    endpoint: &str,
    key: Option<i64>,
    headers: &HeaderMap,
    items: Vec<Result<ClientJsonRpcMessage, rpc::Refused>>,
) -> HttpResponse {
    let session = match session_of(state, endpoint, key, headers) {
        Ok(session) => session,
        Err(refused) => return refused.respond(None),
    };
    if !rpc::allows_batches(&session.protocol_version) {
        let error = rpc::error(
            ErrorCode::INVALID_REQUEST,
            format!(
                "Invalid Request: batches are not supported in protocol revision {} (only in 2025-03-26)",
                session.protocol_version
            ),
            None,
        );
        return rpc_response(StatusCode::BAD_REQUEST, &ServerJsonRpcMessage::error(error, None), Some(&session.id));
    }
    let progress = Some(ProgressSink::Session);
    let caller = Caller {
        endpoint,
        session_id: &session.id,
        session_fingerprint: &session.fingerprint,
        protocol_version: &session.protocol_version,
        progress,
    };
    let mut answers = Vec::new();
    for item in items {
        match item {
            Err(refused) => answers.push(refused.into_message()),
            Ok(JsonRpcMessage::Request(JsonRpcRequest { id, request, .. })) => {
                let outcome = if initialize_version(&request).is_some() {
                    Err(rpc::error(ErrorCode::INVALID_REQUEST, "initialize cannot be part of a batch", None))
                } else {
                    dispatch::handle(state, &caller, &id, request).await
                };
                answers.push(rpc::answer(id, outcome));
            }
            Ok(_) => {}
        }
    }
    if answers.is_empty() {
        return HttpResponse::Accepted().finish();
    }
    let mut body = Vec::with_capacity(64 * answers.len());
    body.push(b'[');
    for (i, answer) in answers.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&rpc::to_bytes(answer));
    }
    body.push(b']');
    let mut builder = HttpResponse::Ok();
    builder.content_type(header::ContentType::json()).insert_header((MCP_SESSION_ID, session.id.as_str()));
    builder.body(body)
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn notification_method(notification: &ClientNotification) -> &str {
    match notification {
        ClientNotification::CancelledNotification(n) => n.method.as_str(),
        ClientNotification::ProgressNotification(n) => n.method.as_str(),
        ClientNotification::InitializedNotification(n) => n.method.as_str(),
        ClientNotification::RootsListChangedNotification(n) => n.method.as_str(),
        ClientNotification::CustomNotification(n) => n.method.as_str(),
        _ => "(other)",
    }
}

/// The revision an `initialize` request asks for: `Some(Ok(version))` for an `initialize`,
/// `Some(Err(error))` for one without `params.protocolVersion`, `None` for other methods. Only
/// `protocolVersion` is needed: a client that sends less than the rest still gets a session.
pub(super) fn initialize_version(request: &ClientRequest) -> Option<Result<String, ErrorData>> {
    match request {
        ClientRequest::InitializeRequest(init) => Some(Ok(init.params.protocol_version.as_str().to_owned())),
        ClientRequest::CustomRequest(custom) if custom.method == "initialize" => {
            let version = custom.params.as_ref().and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
            Some(
                version
                    .map(str::to_owned)
                    .ok_or_else(|| rpc::invalid_params("initialize needs params.protocolVersion (a string)")),
            )
        }
        _ => None,
    }
}

/// Opens a session; the answer, and the outcome for the span.
async fn initialize(
    state: &McpState,
    endpoint: &str,
    id: RequestId,
    requested: Result<String, ErrorData>,
    key: Option<i64>,
) -> (HttpResponse, Result<ServerResult, ErrorData>) {
    let requested = match requested {
        Ok(requested) => requested,
        Err(error) => {
            let response = rpc_response(StatusCode::OK, &ServerJsonRpcMessage::error(error.clone(), Some(id)), None);
            return (response, Err(error));
        }
    };
    let version = rpc::negotiate(&requested);
    let result = initialize_result(state, endpoint, version.clone()).await;
    let session = state.sessions.create(endpoint, version, key, lists_of(&result.capabilities));
    let result = ServerResult::InitializeResult(result);
    let response = rpc_response(StatusCode::OK, &rpc::answer(id, Ok(result.clone())), Some(&session));
    (response, Ok(result))
}

/// The lists whose changes a session hears of: those its capabilities advertise.
pub(super) fn lists_of(capabilities: &ServerCapabilities) -> Lists {
    Lists {
        tools: capabilities.tools.is_some(),
        prompts: capabilities.prompts.is_some(),
        resources: capabilities.resources.is_some(),
    }
}

/// What `initialize` answers: the revision, the capabilities the endpoint's servers provide
/// (tools always, for the built-ins), the gateway's name and version, and instructions.
pub(super) async fn initialize_result(state: &McpState, endpoint: &str, version: ProtocolVersion) -> InitializeResult {
    let capabilities = match Offer::of(state, endpoint).await {
        Ok(offer) => offer.capabilities(),
        Err(error) => {
            tracing::warn!(endpoint, error = %error.message, "the endpoint's servers are unknown; initialize offers tools only");
            aggregate::capabilities([])
        }
    };
    let instructions = format!(
        "MetaMCP endpoint {endpoint:?}: the tools, prompts and resources of its upstream servers (tools and \
         prompts as server__name), plus the built-in calculator and search_tools (find a tool by describing the \
         task)."
    );
    InitializeResult::new(capabilities)
        .with_protocol_version(version)
        .with_server_info(Implementation::new("metamcp-telemetry", env!("CARGO_PKG_VERSION")))
        .with_instructions(instructions)
}

/// `GET`: the session's stream of server messages (list changes), `text/event-stream`, one per
/// session.
async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<McpState>) -> HttpResponse {
    let endpoint = path.into_inner();
    let key = match admit(&state, &endpoint, req.headers()).await {
        Ok(key) => key,
        Err(err) => return challenge(&err),
    };
    if !stream::accepts_events(req.headers()) {
        return ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "GET opens the session's event stream: it needs Accept: text/event-stream",
        )
        .error_response();
    }
    let Some(session_id) = header_str(req.headers(), MCP_SESSION_ID) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_session",
            "GET opens a session's event stream: it needs the Mcp-Session-Id header; send initialize first",
        )
        .error_response();
    };
    if let Some(version) = header_str(req.headers(), MCP_PROTOCOL_VERSION).filter(|v| !rpc::is_supported(v)) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_protocol_version",
            format!("unsupported MCP-Protocol-Version {version:?}"),
        )
        .error_response();
    }
    match state.sessions.open_stream(session_id, &endpoint, key) {
        Ok(receiver) => stream::response(receiver, Some(session_id)),
        Err(StreamRefused::Unknown) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_session", "no such session on this endpoint").error_response()
        }
        Err(StreamRefused::AlreadyOpen) => ApiError::new(
            StatusCode::CONFLICT,
            "stream_open",
            "this session's event stream is already open (one per session)",
        )
        .error_response(),
    }
}

async fn method_not_allowed() -> HttpResponse {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this MCP endpoint takes POST (JSON-RPC messages), GET (the session's event stream) and DELETE (end the \
         session)",
    )
    .error_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    response
}

async fn delete(req: HttpRequest, path: web::Path<String>, state: web::Data<McpState>) -> HttpResponse {
    let endpoint = path.into_inner();
    let key = match admit(&state, &endpoint, req.headers()).await {
        Ok(key) => key,
        Err(err) => return challenge(&err),
    };
    let Some(session_id) = header_str(req.headers(), MCP_SESSION_ID) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "missing_session", "DELETE needs the Mcp-Session-Id header")
            .error_response();
    };
    if state.sessions.end(session_id, &endpoint, key) {
        // Nobody is left to answer: what the session still runs upstream is cancelled.
        let cancelled = state.inflight.cancel_session(session_id);
        if cancelled > 0 {
            tracing::debug!(cancelled, "a deleted session's running requests were cancelled");
        }
        HttpResponse::NoContent().finish()
    } else {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_session", "no such session on this endpoint").error_response()
    }
}
