//! The server side of MCP's Streamable HTTP transport at `/metamcp/{endpoint}/mcp`: sessions,
//! `initialize` with version negotiation, `ping`, the aggregated `tools/list`, and `tools/call`
//! routed to the built-in tools or the upstream servers. Requests that require auth carry
//! `Authorization: Bearer <key>`; keys are compared by their SHA-256.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::mcp::jsonrpc::{self, Incoming, Request, RequestId};
use super::mcp::protocol::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, SUPPORTED_VERSIONS};
use super::service::{CallOrigin, ExecuteError, Gateway};
use super::storage::{self, StorageError};
use crate::http::ApiError;

/// JSON-RPC error code of a failed upstream call (implementation-defined server error range).
pub const UPSTREAM_ERROR: i64 = -32000;
/// JSON-RPC error code when the gateway's own storage is unavailable.
pub const UNAVAILABLE_ERROR: i64 = -32001;
/// How long a looked-up endpoint (auth flag and key hashes) is trusted before it is read again.
const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(2);

/// One MCP session.
#[derive(Debug, Clone)]
struct Session {
    endpoint: String,
    protocol_version: &'static str,
    last_seen: Instant,
}

/// The MCP sessions, bounded in number and idle time.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    max: usize,
    idle: Duration,
}

impl Sessions {
    /// At most `max` sessions, each forgotten after `idle` without a request.
    pub fn new(max: usize, idle: Duration) -> Self {
        Self { map: Mutex::new(HashMap::new()), max: max.max(1), idle }
    }

    fn create(&self, endpoint: &str, protocol_version: &'static str) -> String {
        let id = random_token(16);
        let mut map = self.map.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_seen) < self.idle);
        if map.len() >= self.max {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(id, _)| id.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), Session { endpoint: endpoint.to_owned(), protocol_version, last_seen: now });
        id
    }

    /// The session `id` of `endpoint`, refreshed; `None` when unknown, idle too long, or of
    /// another endpoint.
    fn touch(&self, id: &str, endpoint: &str) -> Option<Session> {
        let mut map = self.map.lock();
        let now = Instant::now();
        let session = map.get_mut(id)?;
        if now.duration_since(session.last_seen) >= self.idle {
            map.remove(id);
            return None;
        }
        if session.endpoint != endpoint {
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    fn end(&self, id: &str, endpoint: &str) -> bool {
        let mut map = self.map.lock();
        if map.get(id).is_some_and(|s| s.endpoint == endpoint) {
            map.remove(id);
            return true;
        }
        false
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hex of `bytes` random bytes from the operating system's generator.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // The OS generator failing is not recoverable in a meaningful way; mix time and fastrand.
        for byte in &mut buf {
            *byte = fastrand::u8(..);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of an API key, as stored.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality that takes the same time wherever the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone)]
struct EndpointEntry {
    auth_required: bool,
    key_hashes: Vec<String>,
    fetched: Instant,
}

/// Endpoint lookups (existence, auth flag, key hashes), cached for a short time so a call does
/// not read them on every request. The admin API drops an entry when it changes the endpoint.
/// While the database is unavailable the last good entry is served.
#[derive(Debug, Default)]
pub struct EndpointCache {
    map: Mutex<HashMap<String, EndpointEntry>>,
}

impl EndpointCache {
    /// Forgets `endpoint` (after the admin API changed or deleted it).
    pub fn invalidate(&self, endpoint: &str) {
        self.map.lock().remove(endpoint);
    }

    async fn get(&self, gateway: &Gateway, endpoint: &str) -> Result<EndpointEntry, StorageError> {
        if let Some(entry) = self.map.lock().get(endpoint) {
            if entry.fetched.elapsed() < ENDPOINT_CACHE_TTL {
                return Ok(entry.clone());
            }
        }
        let owned = endpoint.to_owned();
        let fetched = gateway
            .store()
            .run(move |c| {
                let detail = storage::get_endpoint(c, &owned)?;
                let key_hashes = storage::api_key_hashes(c, &owned)?;
                Ok(EndpointEntry { auth_required: detail.endpoint.auth_required, key_hashes, fetched: Instant::now() })
            })
            .await;
        let entry = match fetched {
            Ok(entry) => entry,
            // The database is away: keep serving the last good entry, asked again after another
            // TTL, so MCP calls that need no database write keep working.
            Err(err) if err.is_unavailable() => {
                let mut map = self.map.lock();
                let Some(stale) = map.get_mut(endpoint) else { return Err(err) };
                stale.fetched = Instant::now();
                tracing::debug!(endpoint, error = %err, "database unavailable; using the last endpoint lookup");
                return Ok(stale.clone());
            }
            Err(err) => return Err(err),
        };
        let mut map = self.map.lock();
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(endpoint.to_owned(), entry.clone());
        Ok(entry)
    }
}

/// State of the MCP endpoints.
#[derive(Debug, Clone)]
pub struct McpState {
    /// The gateway.
    pub gateway: Gateway,
    /// The sessions.
    pub sessions: Arc<Sessions>,
    /// The endpoint cache.
    pub endpoints: Arc<EndpointCache>,
}

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

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn storage_error(err: StorageError, endpoint: &str) -> ApiError {
    match err {
        StorageError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_endpoint", format!("no MCP endpoint named {endpoint:?}"))
        }
        err => super::api::storage_error(err),
    }
}

/// Resolves the endpoint and checks its auth.
async fn admit(state: &McpState, endpoint: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let entry = state.endpoints.get(&state.gateway, endpoint).await.map_err(|e| storage_error(e, endpoint))?;
    if !entry.auth_required {
        return Ok(());
    }
    let Some(key) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("endpoint {endpoint:?} requires Authorization: Bearer <api key>"),
        ));
    };
    let hash = hash_key(key);
    if entry.key_hashes.iter().any(|known| constant_time_eq(known.as_bytes(), hash.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the API key is not valid for this endpoint"))
    }
}

fn with_auth_challenge(err: ApiError) -> HttpResponse {
    let mut response = err.error_response();
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
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
    if let Err(err) = admit(&state, &endpoint, req.headers()).await {
        return with_auth_challenge(err);
    }
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
                state.sessions.touch(id, &endpoint);
            }
            tracing::debug!(method = %notification.method, "MCP notification accepted");
            return HttpResponse::Accepted().finish();
        }
        Incoming::Response(_) => return HttpResponse::Accepted().finish(),
    };
    if request.method == "initialize" {
        return initialize(&state, &endpoint, &request);
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
    let Some(session) = state.sessions.touch(session_id, &endpoint) else {
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

fn initialize(state: &McpState, endpoint: &str, request: &Request) -> HttpResponse {
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
    let session = state.sessions.create(endpoint, version);
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
            &format!("Invalid arguments for tool {tool}: {}", super::service::violations_text(errors)),
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
        return with_auth_challenge(err);
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
    if let Err(err) = admit(&state, &endpoint, req.headers()).await {
        return with_auth_challenge(err);
    }
    let Some(session_id) = header_str(req.headers(), MCP_SESSION_ID) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "missing_session", "DELETE needs the Mcp-Session-Id header")
            .error_response();
    };
    if state.sessions.end(session_id, &endpoint) {
        HttpResponse::NoContent().finish()
    } else {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_session", "no such session on this endpoint").error_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_bound_to_their_endpoint() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let a = sessions.create("one", "2025-11-25");
        let b = sessions.create("one", "2025-11-25");
        assert!(sessions.touch(&a, "one").is_some());
        assert!(sessions.touch(&a, "two").is_none(), "a session belongs to its endpoint");
        let c = sessions.create("two", "2025-06-18");
        assert_eq!(sessions.len(), 2);
        assert!(sessions.touch(&b, "one").is_none(), "the least recently used session went first");
        assert_eq!(sessions.touch(&c, "two").map(|s| s.protocol_version), Some("2025-06-18"));
        assert!(sessions.end(&c, "two"));
        assert!(!sessions.end(&c, "two"));
    }

    #[test]
    fn idle_sessions_expire() {
        let sessions = Sessions::new(10, Duration::from_millis(1));
        let a = sessions.create("one", "2025-11-25");
        let deadline = Instant::now() + Duration::from_secs(5);
        while sessions.touch(&a, "one").is_some() {
            assert!(Instant::now() < deadline, "the session never expired");
            std::thread::yield_now();
        }
    }

    #[test]
    fn keys_hash_and_compare() {
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"sane"));
        assert!(!constant_time_eq(b"short", b"longer"));
        let token = random_token(16);
        assert_eq!(token.len(), 32);
        assert_ne!(token, random_token(16));
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  k1 "));
        assert_eq!(bearer(&headers), Some("k1"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
