//! The HTTP side of the MCP endpoints, Streamable HTTP: `POST` carries JSON-RPC messages
//! (`initialize`, `ping`, `tools/list`, `tools/call`; notifications and responses are accepted),
//! `DELETE` ends a session, `GET` offers no stream. Every request is admitted by the endpoint's
//! auth first.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use serde_json::{json, Map, Value};

use super::auth::{authorize, Refusal};
use super::state::McpState;
use crate::api_error;
use crate::auth::challenge;
use crate::mcp::jsonrpc::{self, Incoming, Request, RequestId};
use crate::mcp::protocol::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, SUPPORTED_VERSIONS};
use crate::service::{violations_text, CallOrigin, ExecuteError};
use crate::storage::StorageError;
use metamcp_telemetry::http::ApiError;

/// JSON-RPC error code of a failed upstream call (implementation-defined server error range).
pub const UPSTREAM_ERROR: i64 = -32000;
/// JSON-RPC error code when the gateway's own storage is unavailable.
pub const UNAVAILABLE_ERROR: i64 = -32001;

/// Adds `POST`, `GET` and `DELETE /metamcp/{endpoint}/mcp`.
pub fn routes(cfg: &mut web::ServiceConfig) {
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
async fn admit(state: &McpState, endpoint: &str, headers: &HeaderMap) -> Result<Option<i64>, Refusal> {
    let entry = state.endpoints.get(&state.gateway, endpoint).await.map_err(|e| storage_error(e, endpoint))?;
    let key = authorize(endpoint, &entry, headers)?;
    state.endpoints.check_rate(&state.gateway, endpoint, &entry, key)?;
    if let Some(id) = key {
        state.key_usage.note(&state.gateway, id);
    }
    Ok(key)
}

fn rpc_response(status: StatusCode, body: Value, session: Option<&str>) -> HttpResponse {
    let mut builder = HttpResponse::build(status);
    builder.content_type(header::ContentType::json());
    if let Some(id) = session {
        builder.insert_header((MCP_SESSION_ID, id));
    }
    builder.body(body.to_string())
}

/// Reads the body up to `limit` bytes; a larger one is a JSON 413, a broken one a JSON 400.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, HttpResponse> {
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
    let message = match jsonrpc::parse_message(&body) {
        Ok(message) => message,
        Err(err) => return rpc_response(StatusCode::BAD_REQUEST, err.into_value(), None),
    };
    let request = match message {
        Incoming::Request(request) => request,
        Incoming::Notification(notification) => {
            // Notifications (`notifications/initialized`, cancellations) and responses are
            // accepted without a body; a known session is kept alive by them.
            if let Some(id) = header_str(req.headers(), MCP_SESSION_ID) {
                state.sessions.touch(id, &endpoint, key);
            }
            tracing::debug!(method = %notification.method, "MCP notification accepted");
            return HttpResponse::Accepted().finish();
        }
        Incoming::Response(_) => return HttpResponse::Accepted().finish(),
    };
    if request.method == "initialize" {
        return initialize(&state, &endpoint, &request, key);
    }
    let Some(session_id) = header_str(req.headers(), MCP_SESSION_ID) else {
        let body = jsonrpc::error(
            Some(request.id.clone()),
            jsonrpc::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required; send initialize first",
            None,
        );
        return rpc_response(StatusCode::BAD_REQUEST, body, None);
    };
    // A session opened with another key (or a session of another endpoint) is not this
    // client's: it is answered as unknown.
    let Some(session) = state.sessions.touch(session_id, &endpoint, key) else {
        let body = jsonrpc::error(
            Some(request.id.clone()),
            jsonrpc::INVALID_REQUEST,
            "Session not found: it ended or expired; send initialize to start a new one",
            None,
        );
        return rpc_response(StatusCode::NOT_FOUND, body, None);
    };
    if let Some(version) = header_str(req.headers(), MCP_PROTOCOL_VERSION) {
        if !SUPPORTED_VERSIONS.contains(&version) {
            let body = jsonrpc::error(
                Some(request.id.clone()),
                jsonrpc::INVALID_REQUEST,
                &format!("Unsupported MCP-Protocol-Version {version:?}; supported: {}", SUPPORTED_VERSIONS.join(", ")),
                None,
            );
            return rpc_response(StatusCode::BAD_REQUEST, body, Some(session_id));
        }
    }
    let origin = CallOrigin {
        endpoint: Some(endpoint.clone()),
        session_id: Some(session_id.to_owned()),
        request_id: Some(request_id_text(&request.id)),
        protocol_version: Some(session.protocol_version.to_owned()),
    };
    let body = handle_request(&state, &endpoint, request, &origin).await;
    rpc_response(StatusCode::OK, body, Some(session_id))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn request_id_text(id: &RequestId) -> String {
    match id {
        RequestId::String(s) => s.clone(),
        RequestId::Number(n) => n.to_string(),
    }
}

fn initialize(state: &McpState, endpoint: &str, request: &Request, key: Option<i64>) -> HttpResponse {
    let requested = request.params.as_ref().and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
    let Some(requested) = requested else {
        let body = jsonrpc::error(
            Some(request.id.clone()),
            jsonrpc::INVALID_PARAMS,
            "initialize needs params.protocolVersion (a string)",
            None,
        );
        return rpc_response(StatusCode::OK, body, None);
    };
    let version = protocol::negotiate(requested);
    let session = state.sessions.create(endpoint, version, key);
    let instructions = format!(
        "MetaMCP endpoint {endpoint:?}: the tools of its upstream servers as server__tool, plus the built-in \
         calculator and search_tools (find a tool by describing the task)."
    );
    let result =
        protocol::initialize_result(version, "metamcp-telemetry", env!("CARGO_PKG_VERSION"), Some(&instructions));
    rpc_response(StatusCode::OK, jsonrpc::success(request.id.clone(), result), Some(&session))
}

async fn handle_request(state: &McpState, endpoint: &str, request: Request, origin: &CallOrigin) -> Value {
    let id = request.id.clone();
    match request.method.as_str() {
        "ping" => jsonrpc::success(id, json!({})),
        "tools/list" => match state.gateway.endpoint_tools(endpoint).await {
            Ok(tools) => jsonrpc::success(id, json!({ "tools": tools })),
            Err(err) => execute_error(id, &err),
        },
        "tools/call" => {
            let params = request.params.unwrap_or_default();
            let Some(name) = params.get("name").and_then(Value::as_str) else {
                return jsonrpc::error(
                    Some(id),
                    jsonrpc::INVALID_PARAMS,
                    "tools/call needs params.name (a string)",
                    None,
                );
            };
            let arguments = match params.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(arguments)) => arguments.clone(),
                Some(_) => {
                    return jsonrpc::error(
                        Some(id),
                        jsonrpc::INVALID_PARAMS,
                        "tools/call params.arguments must be an object",
                        None,
                    )
                }
            };
            match state.gateway.call_tool(name, arguments, origin).await {
                Ok(result) => jsonrpc::success(id, serde_json::to_value(&result).unwrap_or(Value::Null)),
                Err(err) => execute_error(id, &err),
            }
        }
        other => jsonrpc::error(Some(id), jsonrpc::METHOD_NOT_FOUND, &format!("Method not found: {other}"), None),
    }
}

/// The JSON-RPC error of a failed call.
fn execute_error(id: RequestId, err: &ExecuteError) -> Value {
    match err {
        ExecuteError::UnknownTool(name) => {
            jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, &format!("Unknown tool: {name}"), None)
        }
        ExecuteError::InvalidArguments { tool, errors } => jsonrpc::error(
            Some(id),
            jsonrpc::INVALID_PARAMS,
            &format!("Invalid arguments for tool {tool}: {}", violations_text(errors)),
            Some(json!({ "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>() })),
        ),
        ExecuteError::Upstream { server, source } => jsonrpc::error(
            Some(id),
            UPSTREAM_ERROR,
            &format!("Upstream server {server} failed: {source}"),
            Some(json!({ "server": server, "kind": source.kind() })),
        ),
        ExecuteError::Storage(err) if err.is_unavailable() => {
            jsonrpc::error(Some(id), UNAVAILABLE_ERROR, &format!("The gateway's database is unavailable: {err}"), None)
        }
        ExecuteError::Storage(StorageError::NotFound(what)) => {
            jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, &format!("Not found: {what}"), None)
        }
        other => {
            tracing::error!(error = %other, "an MCP request failed inside the gateway");
            jsonrpc::error(Some(id), jsonrpc::INTERNAL_ERROR, &format!("Internal error: {other}"), None)
        }
    }
}

async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<McpState>) -> HttpResponse {
    let endpoint = path.into_inner();
    if let Err(err) = admit(&state, &endpoint, req.headers()).await {
        return challenge(&err);
    }
    method_not_allowed().await
}

async fn method_not_allowed() -> HttpResponse {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this MCP endpoint takes POST (JSON-RPC messages) and DELETE (end the session); it offers no SSE stream",
    )
    .error_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
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
        HttpResponse::NoContent().finish()
    } else {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_session", "no such session on this endpoint").error_response()
    }
}
