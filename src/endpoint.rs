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
use metamcp_telemetry::http::ApiError;

/// JSON-RPC error code of a failed upstream call (implementation-defined server error range).
pub const UPSTREAM_ERROR: i64 = -32000;
/// JSON-RPC error code when the gateway's own storage is unavailable.
pub const UNAVAILABLE_ERROR: i64 = -32001;
/// How long a looked-up endpoint (auth flag and key hashes) is trusted before it is read again.
const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(2);

/// One MCP session.
#[derive(Debug, Clone)]
struct Session {
    protocol_version: &'static str,
    last_seen: Instant,
    /// The API key (row id) that opened it, on an endpoint that requires one: only that key may
    /// use it.
    key: Option<i64>,
}

/// The MCP sessions, bounded in number per endpoint and in idle time. Each endpoint has its own
/// cap and its own eviction: clients of one endpoint (say the open `default`) cannot push out the
/// sessions of another.
#[derive(Debug)]
pub struct Sessions {
    /// Sessions by endpoint, then by id.
    map: Mutex<HashMap<String, HashMap<String, Session>>>,
    max_per_endpoint: usize,
    idle: Duration,
}

impl Sessions {
    /// At most `max_per_endpoint` sessions on each endpoint, each forgotten after `idle` without
    /// a request.
    pub fn new(max_per_endpoint: usize, idle: Duration) -> Self {
        Self { map: Mutex::new(HashMap::new()), max_per_endpoint: max_per_endpoint.max(1), idle }
    }

    /// A new session of `endpoint`, opened with the API key `key` (its row id) if any. The
    /// endpoint's idle sessions are forgotten first; at its cap, its least recently used one.
    fn create(&self, endpoint: &str, protocol_version: &'static str, key: Option<i64>) -> String {
        let id = random_token(16);
        let mut map = self.map.lock();
        let now = Instant::now();
        let sessions = map.entry(endpoint.to_owned()).or_default();
        sessions.retain(|_, s| now.duration_since(s.last_seen) < self.idle);
        if sessions.len() >= self.max_per_endpoint {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(id, _)| id.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), Session { protocol_version, last_seen: now, key });
        id
    }

    /// The session `id` of `endpoint`, refreshed; `None` when unknown, idle too long, of another
    /// endpoint, or opened with another API key than `key`.
    fn touch(&self, id: &str, endpoint: &str, key: Option<i64>) -> Option<Session> {
        let mut map = self.map.lock();
        let now = Instant::now();
        let sessions = map.get_mut(endpoint)?;
        let session = sessions.get_mut(id)?;
        if now.duration_since(session.last_seen) >= self.idle {
            sessions.remove(id);
            return None;
        }
        if session.key != key {
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends the session `id` of `endpoint` if `key` opened it.
    fn end(&self, id: &str, endpoint: &str, key: Option<i64>) -> bool {
        let mut map = self.map.lock();
        let Some(sessions) = map.get_mut(endpoint) else { return false };
        if sessions.get(id).is_none_or(|s| s.key != key) {
            return false;
        }
        sessions.remove(id);
        if sessions.is_empty() {
            map.remove(endpoint);
        }
        true
    }

    /// Ends every session of `endpoint` that the API key `key` opened (the key was revoked);
    /// returns how many.
    pub fn end_for_key(&self, endpoint: &str, key: i64) -> usize {
        let mut map = self.map.lock();
        let Some(sessions) = map.get_mut(endpoint) else { return 0 };
        let before = sessions.len();
        sessions.retain(|_, s| s.key != Some(key));
        before - sessions.len()
    }

    /// Ends every session of `endpoint` (it was deleted).
    pub fn end_endpoint(&self, endpoint: &str) {
        self.map.lock().remove(endpoint);
    }

    /// Sessions held now, over every endpoint.
    pub fn len(&self) -> usize {
        self.map.lock().values().map(HashMap::len).sum()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// When each API key was last recorded as used, so `last_used_at` is written at most once per
/// [`KEY_USE_RESOLUTION`] per key, off the request: the write is spawned, never awaited.
#[derive(Debug, Default)]
pub struct KeyUsage {
    recorded: Mutex<HashMap<i64, Instant>>,
}

/// How precise `last_used_at` is: a key's use is written at most once per this interval.
pub const KEY_USE_RESOLUTION: Duration = Duration::from_secs(60);
/// Keys remembered at most; past it the memory starts over (and each key is written once more).
const MAX_TRACKED_KEYS: usize = 100_000;

impl KeyUsage {
    /// Whether the use of `key` now is due to be written (and notes it as written).
    fn due(&self, key: i64) -> bool {
        let now = Instant::now();
        let mut recorded = self.recorded.lock();
        if recorded.get(&key).is_some_and(|at| now.duration_since(*at) < KEY_USE_RESOLUTION) {
            return false;
        }
        if recorded.len() >= MAX_TRACKED_KEYS {
            recorded.clear();
        }
        recorded.insert(key, now);
        true
    }

    /// Writes `last_used_at` of `key` in the background when due.
    fn note(&self, gateway: &Gateway, key: i64) {
        if !self.due(key) {
            return;
        }
        let store = gateway.store().clone();
        actix_rt::spawn(async move {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            if let Err(err) = store.run(move |c| storage::touch_api_key(c, key, now_ms)).await {
                tracing::debug!(error = %err, "the last use of an API key was not recorded");
            }
        });
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
    keys: Vec<storage::KeyHash>,
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
                let keys = storage::api_keys(c, &owned)?;
                Ok(EndpointEntry { auth_required: detail.endpoint.auth_required, keys, fetched: Instant::now() })
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
    /// When the API keys were last used.
    pub key_usage: Arc<KeyUsage>,
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

/// Resolves the endpoint and checks its auth; returns the row id of the API key presented on an
/// endpoint that requires one.
async fn admit(state: &McpState, endpoint: &str, headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let entry = state.endpoints.get(&state.gateway, endpoint).await.map_err(|e| storage_error(e, endpoint))?;
    if !entry.auth_required {
        return Ok(None);
    }
    let Some(key) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("endpoint {endpoint:?} requires Authorization: Bearer <api key>"),
        ));
    };
    let hash = hash_key(key);
    // Every stored hash is compared, so the time taken does not tell which key matched.
    let matched = entry.keys.iter().fold(None, |found, known| {
        if constant_time_eq(known.hash.as_bytes(), hash.as_bytes()) {
            Some(known.id)
        } else {
            found
        }
    });
    match matched {
        Some(id) => {
            state.key_usage.note(&state.gateway, id);
            Ok(Some(id))
        }
        None => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the API key is not valid for this endpoint"))
        }
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
    let key = match admit(&state, &endpoint, req.headers()).await {
        Ok(key) => key,
        Err(err) => return with_auth_challenge(err),
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
    let key = match admit(&state, &endpoint, req.headers()).await {
        Ok(key) => key,
        Err(err) => return with_auth_challenge(err),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_bound_to_their_endpoint() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let a = sessions.create("one", "2025-11-25", None);
        let b = sessions.create("one", "2025-11-25", None);
        assert!(sessions.touch(&a, "one", None).is_some());
        assert!(sessions.touch(&a, "two", None).is_none(), "a session belongs to its endpoint");
        let c = sessions.create("one", "2025-06-18", None);
        assert_eq!(sessions.len(), 2);
        assert!(sessions.touch(&b, "one", None).is_none(), "the least recently used session went first");
        assert_eq!(sessions.touch(&c, "one", None).map(|s| s.protocol_version), Some("2025-06-18"));
        assert!(sessions.end(&c, "one", None));
        assert!(!sessions.end(&c, "one", None));
    }

    #[test]
    fn the_cap_and_its_eviction_are_per_endpoint() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let locked = sessions.create("locked", "2025-11-25", Some(7));
        for _ in 0..100 {
            sessions.create("default", "2025-11-25", None);
        }
        assert_eq!(sessions.len(), 3, "two on default, one on locked");
        assert!(sessions.touch(&locked, "locked", Some(7)).is_some(), "default's clients cannot evict it");
    }

    #[test]
    fn a_session_is_bound_to_the_key_that_opened_it() {
        let sessions = Sessions::new(10, Duration::from_secs(60));
        let a = sessions.create("locked", "2025-11-25", Some(1));
        let b = sessions.create("locked", "2025-11-25", Some(2));
        assert!(sessions.touch(&a, "locked", Some(2)).is_none(), "another key of the endpoint");
        assert!(sessions.touch(&a, "locked", None).is_none(), "no key");
        assert!(!sessions.end(&a, "locked", Some(2)), "another key cannot end it");
        assert!(sessions.touch(&a, "locked", Some(1)).is_some());
        assert_eq!(sessions.end_for_key("locked", 1), 1, "revoking the key ends its sessions");
        assert!(sessions.touch(&a, "locked", Some(1)).is_none());
        assert!(sessions.touch(&b, "locked", Some(2)).is_some(), "other keys' sessions stay");
        sessions.end_endpoint("locked");
        assert!(sessions.is_empty());
    }

    #[test]
    fn idle_sessions_expire() {
        let idle = Duration::from_millis(50);
        let sessions = Sessions::new(10, idle);
        let a = sessions.create("one", "2025-11-25", None);
        // Past the idle limit, one touch finds it expired (a touch in time would refresh it).
        std::thread::sleep(idle * 2);
        assert!(sessions.touch(&a, "one", None).is_none(), "the session never expired");
        assert!(sessions.is_empty(), "the expired session is forgotten");
    }

    #[test]
    fn key_use_is_due_once_per_resolution() {
        let usage = KeyUsage::default();
        assert!(usage.due(1));
        assert!(!usage.due(1), "within the minute: not written again");
        assert!(usage.due(2));
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
