//! HTTP faces of the telemetry on the application's API server: `/health`, `/health/live`,
//! `/health/ready`. The `/metrics` server and the JSON error type live in modules of their own;
//! their public items are re-exported here.

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use metamcp_telemetry_actors::health_check::HealthStatus;
use metamcp_telemetry_actors::self_metrics::ActorKind;
use serde_json::json;

use crate::manager::TelemetryManager;

pub use crate::api_error::{check_declared_length, not_found, ApiError};
pub use crate::metrics_server::{
    render_metrics, render_openmetrics, wants_openmetrics, RenderError, METRICS_THREAD, OPENMETRICS_CONTENT_TYPE,
    PROMETHEUS_CONTENT_TYPE,
};

/// How long a health request waits for the health check actor.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

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
