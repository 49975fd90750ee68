//! The legacy HTTP+SSE transport (protocol revision 2024-11-05) on the server side, for clients
//! that speak only it, as MetaMCP serves it: `GET /metamcp/{endpoint}/sse` opens a session and
//! its event stream, whose first event (`endpoint`) names where to post messages,
//! `/metamcp/{endpoint}/message?sessionId=…`. A `POST` there is answered `202 Accepted` at once;
//! the answer to a request travels as a `message` event on the stream, as do the session's
//! notifications. The session lives as long as its stream. Auth, the Host/Origin gate and the
//! body limits are those of every route.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use metamcp_telemetry::http::ApiError;
use opentelemetry::trace::FutureExt as _;
use opentelemetry::Context;
use rmcp::model::{
    ClientRequest, ErrorCode, JsonRpcMessage, JsonRpcRequest, RequestId, ServerJsonRpcMessage, ServerResult,
};
use serde::Deserialize;

use super::dispatch::{self, Caller, ProgressSink};
use super::observe::{self, Operation, ServerSpan};
use super::rpc::{self, Body};
use super::state::McpState;
use super::stream;
use super::transport::{admit, initialize_result, initialize_version, lists_of, notified, read_body, rpc_response};
use crate::auth::challenge;

/// Adds `GET /metamcp/{endpoint}/sse` and `POST /metamcp/{endpoint}/message`.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metamcp/{endpoint}/sse").route(web::get().to(open)))
        .service(web::resource("/metamcp/{endpoint}/message").route(web::post().to(post)));
}

/// Where the client posts its messages: an absolute path, resolved against the stream's URL.
fn message_path(endpoint: &str, session: &str) -> String {
    format!("/metamcp/{endpoint}/message?sessionId={session}")
}

/// `GET …/sse`: a new session and its event stream, opening with the `endpoint` event.
async fn open(req: HttpRequest, path: web::Path<String>, state: web::Data<McpState>) -> HttpResponse {
    let endpoint = path.into_inner();
    let key = match admit(&state, &endpoint, req.headers()).await {
        Ok(key) => key,
        Err(err) => return challenge(&err),
    };
    let (session, receiver) = state.sessions.create_legacy(&endpoint, key);
    // The queue is empty: the first event always fits.
    state.sessions.send(&session, &endpoint, stream::named_event("endpoint", message_path(&endpoint, &session)));
    tracing::debug!(endpoint = %endpoint, "legacy SSE session opened");
    stream::response(receiver, None)
}

/// The query of `POST …/message`.
#[derive(Debug, Deserialize)]
struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

/// `POST …/message?sessionId=…`: one JSON-RPC message of the session, answered `202` at once;
/// a request's answer goes on the session's stream.
async fn post(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<MessageQuery>,
    payload: web::Payload,
    state: web::Data<McpState>,
) -> HttpResponse {
    let endpoint = path.into_inner();
    let key = match admit(&state, &endpoint, req.headers()).await {
        Ok(key) => key,
        Err(err) => return challenge(&err),
    };
    let Some(session_id) = query.into_inner().session_id.filter(|id| !id.is_empty()) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_session",
            "POST the messages of a legacy SSE session to the URL of its endpoint event (…/message?sessionId=…)",
        )
        .error_response();
    };
    let Some(session) = state.sessions.touch(&session_id, &endpoint, key).filter(|s| s.legacy) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_session",
            "no such SSE session on this endpoint (its stream closed?)",
        )
        .error_response();
    };
    let body = match read_body(payload, state.gateway.settings().max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let message = match rpc::parse(&body) {
        Ok(Body::Single(message)) => *message,
        Ok(Body::Batch(_)) => {
            let error = rpc::error(ErrorCode::INVALID_REQUEST, "Invalid Request: batches are not supported", None);
            return rpc_response(StatusCode::BAD_REQUEST, &ServerJsonRpcMessage::error(error, None), None);
        }
        Err(refused) => return rpc_response(StatusCode::BAD_REQUEST, &refused.into_message(), None),
    };
    let (id, request) = match message {
        JsonRpcMessage::Request(JsonRpcRequest { id, request, .. }) => (id, request),
        JsonRpcMessage::Notification(notification) => {
            notified(&state, &session_id, &notification.notification);
            return HttpResponse::Accepted().finish();
        }
        // Responses to requests the gateway never sends its clients.
        JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_) => return HttpResponse::Accepted().finish(),
    };
    let state = state.into_inner();
    let protocol_version = session.protocol_version;
    let session_fingerprint = session.fingerprint;
    // The answer is written to the stream when it is ready; the POST is done now.
    actix_rt::spawn(
        async move {
            let answer = if let Some(requested) = initialize_version(&request) {
                initialize(&state, &endpoint, (&session_id, &session_fingerprint), id, &request, requested).await
            } else {
                let progress = Some(ProgressSink::Session);
                let caller = Caller {
                    endpoint: &endpoint,
                    session_id: &session_id,
                    session_fingerprint: &session_fingerprint,
                    protocol_version: &protocol_version,
                    progress,
                };
                let outcome = dispatch::handle(&state, &caller, &id, request).await;
                if dispatch::was_cancelled(&outcome) {
                    return;
                }
                rpc::answer(id, outcome)
            };
            if !state.sessions.send(&session_id, &endpoint, stream::event(&answer)) {
                tracing::debug!(endpoint = %endpoint, "a legacy SSE answer was dropped: the stream is closed or full");
            }
        }
        // Its spans are children of this POST's (or of the client's `_meta.traceparent`).
        .with_context(Context::current()),
    );
    HttpResponse::Accepted().finish()
}

/// `initialize` of a legacy session: the revision it negotiates and the lists it hears of.
async fn initialize(
    state: &McpState,
    endpoint: &str,
    (session, fingerprint): (&str, &Arc<str>),
    id: RequestId,
    request: &ClientRequest,
    requested: Result<String, rmcp::model::ErrorData>,
) -> ServerJsonRpcMessage {
    let parent = observe::parent_of(request);
    let span = ServerSpan::start(
        state.gateway.telemetry(),
        &parent,
        &Operation::of(request),
        (endpoint, &id),
        None,
        Some(fingerprint),
    );
    let outcome = match requested {
        Ok(requested) => {
            let version = rpc::negotiate(&requested);
            let result = initialize_result(state, endpoint, version.clone()).await;
            state.sessions.initialized(session, endpoint, version, lists_of(&result.capabilities));
            Ok(ServerResult::InitializeResult(result))
        }
        Err(error) => Err(error),
    };
    span.finish(&outcome);
    rpc::answer(id, outcome)
}
