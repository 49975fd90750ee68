//! The status page: `GET /status` serves one self-contained HTML page (inline CSS and JS, nothing
//! fetched from elsewhere) that polls `GET /status.json` every two seconds; `GET /` redirects to it.
//!
//! `/status.json` is built on the server from what the telemetry already has: the health report
//! (overall and per-component status, queues, export state) and the Prometheus registry, read by
//! metric name so a family that does not exist yet (a `*Vec` before its first observation, or a
//! metric a later version adds) comes out as `null` and the page shows "—".
//!
//! **Rates and quantiles are computed here, over a sliding window of samples.** Every
//! `/status.json` request takes a sample of the cumulative counters and the histogram buckets
//! (at most one per [`MIN_SAMPLE_SPACING`], at most [`MAX_SAMPLES`], none older than [`WINDOW`]).
//! The answer compares the current values with the oldest sample still in the window: rates are
//! counter deltas over elapsed time, p50/p95 come from the deltas of the histogram buckets with
//! the linear interpolation of Prometheus' `histogram_quantile`. With no usable earlier sample
//! (the first poll, or the first after an idle spell) the baseline is the pipeline's start, when
//! every counter was zero, and the answer says `since_start: true`. One window serves every
//! client, so the page itself stays a dumb renderer and `curl` sees the same figures.
//!
//! Like `/health` the endpoints are unauthenticated; they carry no secrets (every string passes
//! through [`redact`](crate::redact::redact)), no tool arguments and no raw request paths (routes are the matched templates the metrics already use).

mod families;
mod json;
mod text;
mod upstreams;
mod window;

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use parking_lot::Mutex;

use crate::manager::TelemetryManager;

pub use families::{Buckets, Families};
pub use json::{
    build, disabled_json, ComponentJson, DropsJson, ExportJson, HealthJson, ProcessJson, QueueJson, RateJson,
    RouteJson, SpoolJson, StatusJson, TrafficJson,
};
#[cfg(test)]
use text::MAX_ERROR_CHARS;
pub use upstreams::{UpstreamJson, UPSTREAM_PREFIX};
pub use window::{Baseline, Sample, Window, MAX_SAMPLES, MIN_BASELINE_AGE, MIN_SAMPLE_SPACING, WINDOW};

/// The page, embedded in the binary.
pub const STATUS_HTML: &str = include_str!("status.html");
/// How often the page polls, in seconds (sent in the JSON so the page and the server agree).
pub const REFRESH_SECONDS: u64 = 2;
/// The Content-Security-Policy of the page: inline code only, and requests to this origin only.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                        connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                        frame-ancestors 'none'";

/// The status page and its JSON, with the window of samples every client shares. Create one per
/// server (outside the `HttpServer::new` factory) and add its routes with [`configure`](Self::configure).
#[derive(Debug, Clone, Default)]
pub struct StatusPage {
    window: Arc<Mutex<Window>>,
}

impl StatusPage {
    /// A page with an empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `GET /` (a redirect), `GET /status` and `GET /status.json`. The handlers read the
    /// [`TelemetryManager`] from app data, as the health routes do.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.clone()))
            .route("/", web::get().to(redirect))
            .route("/status", web::get().to(page))
            .route("/status.json", web::get().to(status_json));
    }

    /// Gathers everything and answers the JSON (what `/status.json` serves).
    pub async fn snapshot(&self, manager: &TelemetryManager) -> StatusJson {
        let Some(pipeline) = manager.pipeline() else {
            return disabled_json(manager.uptime());
        };
        let (_, report) = futures_util::future::join(
            pipeline.drain_metrics(crate::metrics_server::SCRAPE_DRAIN_TIMEOUT),
            pipeline.health(crate::http::HEALTH_TIMEOUT),
        )
        .await;
        let gathered = pipeline.registry.gather();
        let families = Families::new(&gathered);
        let sample = Sample::read(families);
        let now = Instant::now();
        let started = now.checked_sub(manager.uptime()).unwrap_or(now);
        let baseline = self.window.lock().observe(now, started, &sample);
        build(report.as_ref(), families, &sample, &baseline, manager.uptime())
    }
}

async fn redirect() -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, "status")).finish()
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(STATUS_HTML)
}

async fn status_json(status: web::Data<StatusPage>, manager: web::Data<TelemetryManager>) -> HttpResponse {
    let body = status.snapshot(&manager).await;
    let mut response = crate::http::redacted_json(actix_web::http::StatusCode::OK, &body);
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests;
