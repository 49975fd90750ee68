//! HTTP faces of the telemetry: `/health`, `/health/live`, `/health/ready` on the API server,
//! `/metrics` on its own server, and the JSON error type every endpoint answers with.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use metamcp_telemetry_actors::health_check::HealthStatus;
use metamcp_telemetry_actors::pipeline::Pipeline;
use metamcp_telemetry_actors::self_metrics::ActorKind;
use prometheus::{Encoder, TextEncoder};
use serde_json::json;

use crate::gate::{Gate, GatePolicy};
use crate::manager::TelemetryManager;

/// The Content-Type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long a scrape waits for queued metric events to be folded in.
pub(crate) const SCRAPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a health request waits for the health check actor.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// An error answered as `{"error": {"code", "message"}}` with a 4xx or 5xx status. The message
/// is shown with the credentials of any URL in it masked ([`redact`](crate::redact::redact)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    close_connection: bool,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match crate::redact::redact(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(masked) => masked,
        };
        Self { status, code, message, close_connection: false }
    }

    /// The same error, answered with `Connection: close`.
    pub fn closing_connection(mut self) -> Self {
        self.close_connection = true;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `code` of the JSON body.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 404 for a path no route serves.
    pub fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {path}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.close_connection {
            response.force_close();
        }
        response
            .content_type(ContentType::json())
            .body(json!({ "error": { "code": self.code, "message": self.message } }).to_string())
    }
}

/// 413 when a request declares (`Content-Length`) a body larger than `max_bytes`, whatever its
/// route: routes that read bodies enforce the same limit while reading; this answers the rest
/// (health, unknown paths) at once instead of draining the body.
pub fn check_declared_length(headers: &actix_web::http::header::HeaderMap, max_bytes: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > max_bytes as u64 => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {max_bytes} bytes (gateway.max_body_bytes)"),
        )),
        _ => Ok(()),
    }
}

/// The default service: a JSON 404 (405 would need the route table; 404 names the path).
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::not_found(req.path()).error_response()
}

/// Adds `/health`, `/health/live` and `/health/ready` (handlers read the manager from app data).
pub fn health_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}

fn disabled_report(manager: &TelemetryManager) -> serde_json::Value {
    json!({
        "status": "healthy",
        "telemetry": "disabled",
        "uptime_seconds": manager.uptime().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "ready": true,
        "components": {},
    })
}

/// `value` as a JSON answer with the credentials of any URL in it masked: component details
/// quote errors, and errors quote URLs.
pub(crate) fn redacted_json(status: StatusCode, value: &impl serde::Serialize) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(text) => HttpResponse::build(status)
            .content_type(ContentType::json())
            .body(crate::redact::redact(&text).into_owned()),
        Err(err) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "encode_failed", err.to_string()).error_response(),
    }
}

async fn health(manager: web::Data<TelemetryManager>) -> HttpResponse {
    let Some(pipeline) = manager.pipeline() else {
        return HttpResponse::Ok().json(disabled_report(&manager));
    };
    match pipeline.health(HEALTH_TIMEOUT).await {
        Some(report) => {
            let status =
                if report.status == HealthStatus::Unhealthy { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            redacted_json(status, &report)
        }
        None => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "health_unavailable", "the health check did not answer")
            .error_response(),
    }
}

async fn live(manager: web::Data<TelemetryManager>) -> HttpResponse {
    let Some(pipeline) = manager.pipeline() else {
        return HttpResponse::Ok().json(json!({ "status": "live" }));
    };
    match pipeline.health(HEALTH_TIMEOUT).await {
        Some(report) => {
            // Live while every pipeline actor answers; readiness probes (a database) do not count.
            let dead: Vec<&'static str> = ActorKind::ALL
                .iter()
                .map(|kind| kind.as_str())
                .filter(|name| report.components.get(*name).is_some_and(|c| c.status == HealthStatus::Unhealthy))
                .collect();
            if dead.is_empty() {
                HttpResponse::Ok().json(json!({ "status": "live" }))
            } else {
                HttpResponse::ServiceUnavailable().json(json!({ "status": "dead", "components": dead }))
            }
        }
        None => HttpResponse::ServiceUnavailable().json(json!({ "status": "dead", "components": ["health_check"] })),
    }
}

async fn ready(manager: web::Data<TelemetryManager>) -> HttpResponse {
    let Some(pipeline) = manager.pipeline() else {
        return HttpResponse::Ok().json(json!({ "status": "ready" }));
    };
    match pipeline.health(HEALTH_TIMEOUT).await {
        Some(report) if report.ready => HttpResponse::Ok().json(json!({ "status": "ready", "health": report.status })),
        Some(report) => {
            redacted_json(StatusCode::SERVICE_UNAVAILABLE, &json!({ "status": "not_ready", "health": report }))
        }
        None => HttpResponse::ServiceUnavailable().json(json!({ "status": "not_ready" })),
    }
}

/// Renders the registry in the Prometheus text format, after folding queued events in.
pub async fn render_metrics(pipeline: &Pipeline) -> Result<String, String> {
    pipeline.drain_metrics(SCRAPE_DRAIN_TIMEOUT).await;
    let families = pipeline.registry.gather();
    let mut buffer = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&families, &mut buffer).map_err(|e| e.to_string())?;
    String::from_utf8(buffer).map_err(|e| e.to_string())
}

/// The bearer token `/metrics` asks for (`prometheus.bearer_token`); empty asks for none.
#[derive(Clone)]
struct ScrapeToken(String);

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Whether `req` carries `Authorization: Bearer <token>`.
fn bearer_matches(req: &actix_web::HttpRequest, token: &str) -> bool {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else { return false };
    let value = value.as_bytes();
    let scheme = b"bearer ";
    if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return false;
    }
    constant_time_eq(value[scheme.len()..].trim_ascii(), token.as_bytes())
}

async fn metrics(
    req: actix_web::HttpRequest,
    pipeline: web::Data<Pipeline>,
    token: web::Data<ScrapeToken>,
) -> HttpResponse {
    if !token.0.is_empty() && !bearer_matches(&req, &token.0) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "/metrics requires Authorization: Bearer <prometheus.bearer_token>",
        )
        .error_response();
        response.headers_mut().insert(
            actix_web::http::header::WWW_AUTHENTICATE,
            actix_web::http::header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    match render_metrics(&pipeline).await {
        Ok(text) => HttpResponse::Ok().insert_header(("content-type", PROMETHEUS_CONTENT_TYPE)).body(text),
        Err(err) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "encode_failed", err).error_response(),
    }
}

/// Name of the thread that serves `/metrics`.
pub const METRICS_THREAD: &str = "mmcp-metrics";

/// Binds the Prometheus endpoint and serves it from its own named thread and actix system, so
/// scrapes never take a worker of the application. A non-empty `prometheus.bearer_token` is
/// required of every scrape; the [gate](crate::gate::GatePolicy::for_metrics) checks `Origin`
/// (and `Host` on a loopback listener without a token).
pub(crate) fn start_metrics_server(
    addr: SocketAddr,
    pipeline: Pipeline,
    settings: &crate::settings::Settings,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let bearer_token = settings.prometheus.bearer_token.clone();
    let settings = settings.clone();
    std::thread::Builder::new().name(METRICS_THREAD.to_owned()).spawn(move || {
        let system = actix_rt::System::new();
        let data = web::Data::new(pipeline);
        let token = web::Data::new(ScrapeToken(bearer_token));
        // Workers start after the bind below: the policy knows the port actually bound.
        let policy: Arc<OnceLock<Arc<GatePolicy>>> = Arc::default();
        let for_workers = policy.clone();
        let server = HttpServer::new(move || {
            let policy = for_workers.get().cloned().unwrap_or_else(|| Arc::new(GatePolicy::strictest()));
            App::new()
                .wrap(Gate::new(policy))
                .app_data(data.clone())
                .app_data(token.clone())
                .route("/metrics", web::get().to(metrics))
                .default_service(web::to(not_found))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(addr);
        let server = match server {
            Ok(server) => server,
            Err(err) => {
                let _ = tx.send(Err(err));
                return;
            }
        };
        let bound = server.addrs().first().copied().unwrap_or(addr);
        let _ = policy.set(Arc::new(GatePolicy::for_metrics(bound, &settings)));
        system.block_on(async move {
            let server = server.run();
            let _ = tx.send(Ok((server.handle(), bound)));
            // Ends when the manager stops the server at shutdown.
            let _ = server.await;
        });
    })?;
    rx.recv().map_err(|_| std::io::Error::other("the metrics thread exited at start"))?
}
