//! The REST admin API under `/api`: upstream servers, endpoints and their API keys, the tools
//! registry with search and execution, and the execution audit log. JSON in and out, paginated
//! lists (`limit`, `offset`), errors as `{"error": {"code", "message"}}`.
//!
//! With `admin.token` set every request needs `Authorization: Bearer <token>`; without one the API
//! answers only clients that connect from a loopback address (IPv4-mapped ones included), and a
//! request that changes something (POST, PUT, PATCH, DELETE) needs `Content-Type:
//! application/json` even without a body, so no cross-site HTML form can send it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api_error::{execute_error, storage_error};
use crate::auth::{bearer, challenge, constant_time_eq, hash_key, random_token};
use crate::endpoint::McpState;
use crate::service::Change;
use crate::service::{aggregated_name, builtin_tools, CallOrigin, TOOL_SEPARATOR};
use crate::storage::{self, ExecutionFilter, NewEndpoint, Page, StorageError, ToolFilter};
use crate::upstream::{ListKind, Transport};
use metamcp_telemetry::http::ApiError;

mod limits;
mod server_body;

/// Prefix of the API keys the gateway issues.
pub const API_KEY_PREFIX: &str = "mmcp_";
/// Characters of a key kept (and shown) as its prefix: `mmcp_` and seven hex digits.
pub const KEY_PREFIX_CHARS: usize = 12;
/// Default `limit` of a list.
const DEFAULT_PAGE: i64 = 50;

/// The admin API's settings, as app data.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// The bearer token; empty means loopback clients only.
    pub token: String,
}

/// Adds the `/api` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .wrap(from_fn(authorize))
            .route("/servers", web::get().to(list_servers))
            .route("/servers", web::post().to(create_server))
            .route("/servers/{name}", web::get().to(get_server))
            .route("/servers/{name}", web::delete().to(delete_server))
            .route("/servers/{name}/refresh", web::post().to(refresh_server))
            .route("/endpoints", web::get().to(list_endpoints))
            .route("/endpoints", web::post().to(create_endpoint))
            .route("/endpoints/{name}", web::get().to(get_endpoint))
            .route("/endpoints/{name}", web::delete().to(delete_endpoint))
            .route("/endpoints/{name}", web::patch().to(patch_endpoint))
            .route("/endpoints/{name}/servers/{server}", web::put().to(attach_server))
            .route("/endpoints/{name}/servers/{server}", web::delete().to(detach_server))
            .route("/endpoints/{name}/keys", web::get().to(list_keys))
            .route("/endpoints/{name}/keys", web::post().to(issue_key))
            .route("/endpoints/{name}/keys/{prefix}", web::delete().to(revoke_key))
            .route("/endpoints/{name}/keys/{prefix}", web::patch().to(patch_key))
            .route("/tools", web::get().to(list_tools))
            .route("/tools/search", web::post().to(search_tools))
            .route("/tools/{name}", web::get().to(get_tool))
            .route("/tools/{name}", web::patch().to(patch_tool))
            .route("/tools/{name}/execute", web::post().to(execute_tool))
            .route("/executions", web::get().to(list_executions))
            .default_service(web::to(metamcp_telemetry::http::not_found)),
    );
}

/// Whether `req` may change state through the admin API without a token: POST, PUT, PATCH and
/// DELETE need `Content-Type: application/json`, which no HTML form can send and which makes a
/// browser ask first (CORS preflight) before any cross-site request.
fn json_content_type(req: &ServiceRequest) -> bool {
    use actix_web::http::Method;
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return true;
    }
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Bearer token check; or, when no token is configured, loopback clients only and JSON on every
/// state-changing request (Host and Origin are checked by the [gate](metamcp_telemetry::gate) before).
async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let token = req.app_data::<web::Data<AdminAuth>>().map(|auth| auth.token.clone()).unwrap_or_default();
    let refusal = if token.is_empty() {
        let loopback = req.peer_addr().is_some_and(|addr| metamcp_telemetry::gate::is_loopback_peer(addr.ip()));
        if !loopback {
            Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_loopback_only",
                "no admin token is configured (admin.token), so the admin API answers loopback clients only",
            ))
        } else if !json_content_type(&req) {
            Some(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "without an admin token, a request that changes something needs Content-Type: application/json \
                 (even without a body), so no cross-site form can send it",
            ))
        } else {
            None
        }
    } else {
        match bearer(req.headers()) {
            Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => None,
            Some(_) => Some(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the admin token is not valid")),
            None => Some(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin API requires Authorization: Bearer <admin token>",
            )),
        }
    };
    match refusal {
        Some(err) => Ok(req.into_response(challenge(&err))),
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// `limit` and `offset` of a list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

fn page(state: &McpState, limit: Option<i64>, offset: Option<i64>) -> Result<Page, ApiError> {
    let max = i64::from(state.gateway.settings().max_page_size);
    let limit = limit.unwrap_or(DEFAULT_PAGE.min(max));
    if !(1..=max).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_limit", format!("limit must be from 1 to {max}")));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_offset", "offset must be 0 or more"));
    }
    Ok(Page { limit, offset })
}

fn listed<T: serde::Serialize>(items: storage::Listed<T>, page: Page) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "items": items.items, "total": items.total, "limit": page.limit, "offset": page.offset
    }))
}

async fn run<T, F>(state: &McpState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut storage::DbConnection) -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    state.gateway.store().run(f).await.map_err(storage_error)
}

// --- servers ---------------------------------------------------------------------------------

async fn list_servers(state: web::Data<McpState>, query: web::Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    let page = page(&state, query.limit, query.offset)?;
    Ok(listed(run(&state, move |c| storage::list_servers(c, page)).await?, page))
}

async fn create_server(
    state: web::Data<McpState>,
    body: web::Json<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    let new = server_body::parse(body.into_inner())?;
    if let Some(command) = new.command.as_deref().filter(|_| new.transport == Transport::Stdio) {
        state
            .gateway
            .settings()
            .check_stdio_command(command)
            .map_err(|refusal| ApiError::new(StatusCode::FORBIDDEN, refusal.code(), refusal.to_string()))?;
    }
    let (server, discovered) = state.gateway.register_server(new).await.map_err(execute_error)?;
    let (tools, discovery_error) = match discovered {
        Ok(tools) => (tools.into_iter().map(tool_json).collect::<Vec<_>>(), Value::Null),
        Err(err) => (Vec::new(), Value::String(metamcp_telemetry::redact::redact(&err.to_string()).into_owned())),
    };
    Ok(HttpResponse::Created().json(json!({ "server": server, "tools": tools, "discovery_error": discovery_error })))
}

async fn get_server(state: web::Data<McpState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let (server, tools) = run(&state, move |c| {
        let server = storage::get_server(c, &name)?;
        let filter = ToolFilter { server: Some(name.clone()), ..Default::default() };
        let tools = storage::list_tools(c, &filter, Page { limit: i64::MAX, offset: 0 })?;
        Ok((server, tools.items))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "server": server, "tools": tools.into_iter().map(tool_json).collect::<Vec<_>>() })))
}

async fn delete_server(state: web::Data<McpState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.gateway.delete_server(&path.into_inner()).await.map_err(execute_error)?;
    Ok(HttpResponse::NoContent().finish())
}

async fn refresh_server(state: web::Data<McpState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tools = state.gateway.refresh_server(&path.into_inner()).await.map_err(execute_error)?;
    Ok(HttpResponse::Ok().json(json!({ "tools": tools.into_iter().map(tool_json).collect::<Vec<_>>() })))
}

// --- endpoints -------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    servers: Vec<String>,
    #[serde(default)]
    auth_required: bool,
    rate_limit_rps: Option<f64>,
    rate_limit_burst: Option<i64>,
}

async fn list_endpoints(state: web::Data<McpState>, query: web::Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    let page = page(&state, query.limit, query.offset)?;
    Ok(listed(run(&state, move |c| storage::list_endpoints(c, page)).await?, page))
}

async fn create_endpoint(
    state: web::Data<McpState>,
    body: web::Json<CreateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let limit = limits::from_fields(body.rate_limit_rps, body.rate_limit_burst)?;
    let new = NewEndpoint {
        name: body.name,
        description: body.description,
        auth_required: body.auth_required,
        rate_limit_rps: limit.map(|limit| limit.rps()),
        rate_limit_burst: limit.map(|limit| i64::from(limit.burst())),
    };
    let servers = body.servers;
    let detail = run(&state, move |c| storage::create_endpoint(c, &new, &servers)).await?;
    state.endpoints.invalidate(&detail.endpoint.name);
    Ok(HttpResponse::Created().json(detail))
}

async fn get_endpoint(state: web::Data<McpState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    Ok(HttpResponse::Ok().json(run(&state, move |c| storage::get_endpoint(c, &name)).await?))
}

async fn delete_endpoint(state: web::Data<McpState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let owned = name.clone();
    run(&state, move |c| storage::delete_endpoint(c, &owned)).await?;
    state.endpoints.invalidate(&name);
    state.sessions.end_endpoint(&name);
    state.gateway.forget_resolved_tools();
    Ok(HttpResponse::NoContent().finish())
}

async fn attach_server(
    state: web::Data<McpState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, server) = path.into_inner();
    let owned = name.clone();
    let detail = run(&state, move |c| storage::attach_server(c, &owned, &server)).await?;
    state.endpoints.invalidate(&name);
    announce_lists_of(&state, name);
    Ok(HttpResponse::Ok().json(detail))
}

async fn detach_server(
    state: web::Data<McpState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, server) = path.into_inner();
    let owned = name.clone();
    let detail = run(&state, move |c| storage::detach_server(c, &owned, &server)).await?;
    state.endpoints.invalidate(&name);
    state.gateway.forget_resolved_tools();
    announce_lists_of(&state, name);
    Ok(HttpResponse::Ok().json(detail))
}

/// Tells the sessions of `endpoint` that its tools, prompts and resources changed (a server was
/// attached or detached): `notifications/*/list_changed` on their streams.
fn announce_lists_of(state: &McpState, endpoint: String) {
    let kinds = vec![ListKind::Tools, ListKind::Prompts, ListKind::Resources];
    state.gateway.announce(Change { server: None, endpoint: Some(endpoint), kinds });
}

/// `PATCH /api/endpoints/{name}`: sets or removes the endpoint's rate limit.
async fn patch_endpoint(
    state: web::Data<McpState>,
    path: web::Path<String>,
    body: web::Json<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let limit = limits::from_body(&body, true)?;
    let owned = name.clone();
    let detail = run(&state, move |c| storage::set_endpoint_rate_limit(c, &owned, limit)).await?;
    state.endpoints.invalidate(&name);
    Ok(HttpResponse::Ok().json(detail))
}

/// `PATCH /api/endpoints/{name}/keys/{prefix}`: sets or removes the key's rate limit.
async fn patch_key(
    state: web::Data<McpState>,
    path: web::Path<(String, String)>,
    body: web::Json<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    let (name, prefix) = path.into_inner();
    let limit = limits::from_body(&body, true)?;
    let owned = name.clone();
    let key = run(&state, move |c| storage::set_api_key_rate_limit(c, &owned, &prefix, limit)).await?;
    state.endpoints.invalidate(&name);
    Ok(HttpResponse::Ok().json(key))
}

/// `POST /api/endpoints/{name}/keys`, with an optional body giving the key's rate limit.
async fn issue_key(
    state: web::Data<McpState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let limit = limits::from_body(&limits::optional_object(&body)?, false)?;
    let name = path.into_inner();
    let key = format!("{API_KEY_PREFIX}{}", random_token(24));
    let hash = hash_key(&key);
    // "mmcp_" and seven hex digits (28 of the key's 192 random bits): enough to tell keys apart
    // in a list and to revoke one by it, useless to an attacker.
    let prefix: String = key.chars().take(KEY_PREFIX_CHARS).collect();
    let owned = name.clone();
    let info = run(&state, move |c| storage::add_api_key(c, &owned, &hash, &prefix, limit)).await?;
    state.endpoints.invalidate(&name);
    Ok(HttpResponse::Created().json(json!({
        "key": key,
        "id": info.id,
        "prefix": info.prefix,
        "created_at": info.created_at,
        "rate_limit_rps": info.rate_limit_rps,
        "rate_limit_burst": info.rate_limit_burst,
        "note": "the key is shown only once; the gateway keeps its SHA-256 hash"
    })))
}

async fn list_keys(
    state: web::Data<McpState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page(&state, query.limit, query.offset)?;
    let name = path.into_inner();
    Ok(listed(run(&state, move |c| storage::list_api_keys(c, &name, page)).await?, page))
}

async fn revoke_key(state: web::Data<McpState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (name, prefix) = path.into_inner();
    let owned = name.clone();
    let revoked = run(&state, move |c| storage::revoke_api_key(c, &owned, &prefix)).await?;
    // At once on this gateway: the cached keys and the key's sessions go (other replicas stop
    // taking it when their cache entry expires, within seconds).
    state.endpoints.invalidate(&name);
    let sessions = state.sessions.end_for_key(&name, revoked.id);
    tracing::info!(endpoint = %name, prefix = %revoked.prefix, sessions, "API key revoked");
    Ok(HttpResponse::Ok().json(json!({ "revoked": revoked, "sessions_ended": sessions })))
}

// --- tools -----------------------------------------------------------------------------------

fn tool_json(tool: storage::Tool) -> Value {
    let schema: Value = serde_json::from_str(&tool.input_schema).unwrap_or(Value::Null);
    json!({
        "name": aggregated_name(&tool.server_name, &tool.name),
        "server": tool.server_name,
        "tool": tool.name,
        "description": tool.description,
        "input_schema": schema,
        "enabled": tool.enabled,
        "updated_at": tool.updated_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolQuery {
    server: Option<String>,
    endpoint: Option<String>,
    enabled: Option<bool>,
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list_tools(state: web::Data<McpState>, query: web::Query<ToolQuery>) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = page(&state, query.limit, query.offset)?;
    let filter = ToolFilter { server: query.server, endpoint: query.endpoint, enabled: query.enabled, query: query.q };
    let tools = run(&state, move |c| storage::list_tools(c, &filter, page)).await?;
    let items =
        storage::Listed { items: tools.items.into_iter().map(tool_json).collect::<Vec<_>>(), total: tools.total };
    Ok(listed(items, page))
}

fn split_tool_name(name: &str) -> Result<(String, String), ApiError> {
    name.split_once(TOOL_SEPARATOR).map(|(s, t)| (s.to_owned(), t.to_owned())).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_tool", format!("no tool named {name:?} (expected server__tool)"))
    })
}

async fn get_tool(state: web::Data<McpState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    if let Some(builtin) = builtin_tools().into_iter().find(|t| t.name == name) {
        return Ok(HttpResponse::Ok().json(json!({
            "name": builtin.name, "server": "builtin", "tool": builtin.name,
            "description": builtin.description, "input_schema": builtin.input_schema, "enabled": true
        })));
    }
    let (server, tool) = split_tool_name(&name)?;
    let tool = run(&state, move |c| storage::get_tool(c, &server, &tool)).await?;
    Ok(HttpResponse::Ok().json(tool_json(tool)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchTool {
    enabled: bool,
}

async fn patch_tool(
    state: web::Data<McpState>,
    path: web::Path<String>,
    body: web::Json<PatchTool>,
) -> Result<HttpResponse, ApiError> {
    let (server, tool) = split_tool_name(&path.into_inner())?;
    let updated = state.gateway.set_tool_enabled(&server, &tool, body.enabled).await.map_err(execute_error)?;
    Ok(HttpResponse::Ok().json(tool_json(updated)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    query: String,
    limit: Option<usize>,
    threshold: Option<f64>,
    endpoint: Option<String>,
}

async fn search_tools(state: web::Data<McpState>, body: web::Json<SearchBody>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let chars = body.query.chars().count();
    if body.query.trim().is_empty() || chars > crate::service::MAX_QUERY_CHARS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("query must be 1 to {} characters", crate::service::MAX_QUERY_CHARS),
        ));
    }
    if body.limit.is_some_and(|l| !(1..=1000).contains(&l)) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_limit", "limit must be from 1 to 1000"));
    }
    if body.threshold.is_some_and(|t| !(t.is_finite() && (-1.0..=1.0).contains(&t))) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_threshold", "threshold must be from -1.0 to 1.0"));
    }
    if let Some(endpoint) = &body.endpoint {
        let owned = endpoint.clone();
        run(&state, move |c| storage::get_endpoint(c, &owned)).await?;
    }
    let results = state
        .gateway
        .search(&body.query, body.limit, body.threshold, body.endpoint.as_deref())
        .await
        .map_err(execute_error)?;
    Ok(HttpResponse::Ok().json(json!({ "results": results })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    #[serde(default)]
    arguments: Map<String, Value>,
    endpoint: Option<String>,
}

async fn execute_tool(
    state: web::Data<McpState>,
    path: web::Path<String>,
    body: web::Json<ExecuteBody>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let body = body.into_inner();
    if let Some(endpoint) = &body.endpoint {
        let owned = endpoint.clone();
        run(&state, move |c| storage::get_endpoint(c, &owned)).await?;
    }
    let origin = CallOrigin { endpoint: body.endpoint, ..Default::default() };
    let result = state.gateway.call_tool(&name, body.arguments, &origin).await.map_err(execute_error)?;
    Ok(HttpResponse::Ok().json(result))
}

// --- executions ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutionQuery {
    tool: Option<String>,
    endpoint: Option<String>,
    success: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list_executions(
    state: web::Data<McpState>,
    query: web::Query<ExecutionQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = page(&state, query.limit, query.offset)?;
    // Rows of calls that already answered may still sit in the audit queue: write them first.
    state.gateway.audit().flush(std::time::Duration::from_secs(5)).await;
    let filter = ExecutionFilter { tool: query.tool, endpoint: query.endpoint, success: query.success };
    Ok(listed(run(&state, move |c| storage::list_executions(c, &filter, page)).await?, page))
}

#[cfg(test)]
mod tests {
    use actix_web::test;

    use super::*;
    use crate::settings::Settings;
    use crate::upstream::ServerSpec;
    use metamcp_telemetry::TelemetryManager;

    /// Attaching and detaching a server announces that endpoint's lists as changed, for its
    /// sessions' streams.
    #[actix_rt::test]
    async fn attach_and_detach_announce_the_endpoint_lists() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.database.url = format!("sqlite://{}", dir.path().join("api.db").display());
        settings.admin.token = "admin-token".to_owned();
        let gateway = crate::GatewayApp::start(&settings, &TelemetryManager::disabled()).await.unwrap();
        let spec = ServerSpec::StreamableHttp { url: "http://127.0.0.1:9/mcp".to_owned() };
        gateway
            .state
            .gateway
            .store()
            .run(move |c| storage::create_server(c, &storage::NewServer::with_spec("up", spec)))
            .await
            .unwrap();
        let mut changes = gateway.state.gateway.changes();
        let app = test::init_service(actix_web::App::new().configure(|cfg| gateway.configure(cfg))).await;

        for method in [actix_web::http::Method::PUT, actix_web::http::Method::DELETE] {
            let request = test::TestRequest::default()
                .method(method.clone())
                .uri("/api/endpoints/default/servers/up")
                .insert_header(("authorization", "Bearer admin-token"))
                .insert_header(("content-type", "application/json"))
                .to_request();
            let response = test::call_service(&app, request).await;
            assert_eq!(response.status(), StatusCode::OK, "{method}");
            let change = tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv())
                .await
                .expect("a change within seconds")
                .expect("the change bus is open");
            assert_eq!(change.endpoint.as_deref(), Some("default"), "{method}: {change:?}");
            assert_eq!(change.kinds, [ListKind::Tools, ListKind::Prompts, ListKind::Resources]);
        }
    }
}
