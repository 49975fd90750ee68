//! The Prometheus endpoint: `/metrics` on its own listener, served from its own named thread and
//! actix system so scrapes never take a worker of the application, behind the
//! [gate](crate::gate) and an optional bearer token.
//!
//! A scrape whose `Accept` asks for `application/openmetrics-text` gets OpenMetrics 1.0 text with
//! exemplars on the bucket lines of the latency histograms (each pointing at a sampled trace the
//! pipeline exports); every other scrape gets the Prometheus text format 0.0.4, as before.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use metamcp_telemetry_actors::metric_aggregator::openmetrics;
use metamcp_telemetry_actors::pipeline::Pipeline;
use prometheus::{Encoder, TextEncoder};

use crate::api_error::{not_found, ApiError};
use crate::gate::{Gate, GatePolicy};

/// The Content-Type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The Content-Type of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str = openmetrics::OPENMETRICS_CONTENT_TYPE;
/// How long a scrape waits for queued metric events to be folded in.
pub(crate) const SCRAPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the registry could not be rendered as Prometheus text.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The text encoder refused a family.
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] prometheus::Error),
    /// The encoder wrote bytes that are not UTF-8.
    #[error("the encoded metrics are not UTF-8: {0}")]
    NotUtf8(#[from] std::string::FromUtf8Error),
}

/// Renders the registry in the Prometheus text format, after folding queued events in.
pub async fn render_metrics(pipeline: &Pipeline) -> Result<String, RenderError> {
    pipeline.drain_metrics(SCRAPE_DRAIN_TIMEOUT).await;
    let families = pipeline.registry.gather();
    let mut buffer = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&families, &mut buffer)?;
    Ok(String::from_utf8(buffer)?)
}

/// Renders the registry as OpenMetrics 1.0 text with exemplars, after folding queued events in.
/// Exemplars point only at traces the pipeline's trace decisions let them refer to.
pub async fn render_openmetrics(pipeline: &Pipeline) -> String {
    let exemplars = pipeline.exemplars(SCRAPE_DRAIN_TIMEOUT).await;
    let families = pipeline.registry.gather();
    openmetrics::encode(&families, &exemplars, &pipeline.trace_decisions)
}

/// Whether an `Accept` header value asks for OpenMetrics text: one of its media ranges is
/// `application/openmetrics-text` with a quality above zero.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        media.eq_ignore_ascii_case("application/openmetrics-text")
            && parts.all(|param| match param.split_once('=') {
                Some((name, value)) if name.trim().eq_ignore_ascii_case("q") => {
                    value.trim().parse::<f32>().is_ok_and(|q| q > 0.0)
                }
                _ => true,
            })
    })
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
    let accept = req.headers().get(actix_web::http::header::ACCEPT).and_then(|value| value.to_str().ok());
    if accept.is_some_and(wants_openmetrics) {
        let text = render_openmetrics(&pipeline).await;
        return HttpResponse::Ok().insert_header(("content-type", OPENMETRICS_CONTENT_TYPE)).body(text);
    }
    match render_metrics(&pipeline).await {
        Ok(text) => HttpResponse::Ok().insert_header(("content-type", PROMETHEUS_CONTENT_TYPE)).body(text),
        Err(err) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "encode_failed", err.to_string()).error_response(),
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

#[cfg(test)]
mod tests {
    use super::wants_openmetrics;

    #[test]
    fn openmetrics_is_chosen_when_the_accept_header_asks_for_it() {
        // What Prometheus sends by default.
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
             text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(wants_openmetrics("application/openmetrics-text"));
        assert!(wants_openmetrics("text/plain, Application/OpenMetrics-Text; q=0.3"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics(""));
    }
}
