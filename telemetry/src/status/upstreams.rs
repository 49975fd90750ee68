//! The upstream servers' rows of `/status.json`: every `/health` component named
//! `upstream:<name>` (as a gateway registers them with
//! [`register_components`](crate::TelemetryManager::register_components)), read from the same
//! report, so the page and `/health` always agree.

use metamcp_telemetry_actors::health_check::{ComponentHealth, HealthReport, HealthStatus};
use serde::Serialize;

/// The prefix of an upstream server's component name in `/health`.
pub const UPSTREAM_PREFIX: &str = "upstream:";

/// One upstream server.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpstreamJson {
    /// The server's name.
    pub name: String,
    /// `connected` or `failing`.
    pub state: &'static str,
    /// Its transport (`stdio`, `sse`, `streamable_http`), if reported.
    pub transport: Option<String>,
    /// The kind of the last error (`connect`, `timeout`, `exited`, …), if any.
    pub last_error_kind: Option<String>,
    /// Failed attempts in a row.
    pub consecutive_failures: u64,
    /// Restarts of its session or process.
    pub restarts: u64,
    /// Why it is failing (redacted and shortened).
    pub reason: Option<String>,
}

fn text(component: &ComponentHealth, key: &str) -> Option<String> {
    component.details.get(key).and_then(serde_json::Value::as_str).map(super::json::shorten)
}

/// The upstream servers of `report`, by name.
pub(super) fn upstreams(report: Option<&HealthReport>) -> Vec<UpstreamJson> {
    let Some(report) = report else { return Vec::new() };
    report
        .components
        .iter()
        .filter_map(|(name, component)| {
            let name = name.strip_prefix(UPSTREAM_PREFIX)?;
            let connected = component.details.get("connected").and_then(serde_json::Value::as_bool);
            let failing = component.status != HealthStatus::Healthy || connected == Some(false);
            Some(UpstreamJson {
                name: super::json::shorten(name),
                state: if failing { "failing" } else { "connected" },
                transport: text(component, "transport"),
                last_error_kind: text(component, "last_error_kind"),
                consecutive_failures: component
                    .details
                    .get("consecutive_failures")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
                restarts: component.restarts,
                reason: component.reason.as_deref().map(super::json::shorten),
            })
        })
        .collect()
}
