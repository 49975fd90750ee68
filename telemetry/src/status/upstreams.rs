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
    component.details.get(key).and_then(serde_json::Value::as_str).map(super::text::shorten)
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
                name: super::text::shorten(name),
                state: if failing { "failing" } else { "connected" },
                transport: text(component, "transport"),
                last_error_kind: text(component, "last_error_kind"),
                consecutive_failures: component
                    .details
                    .get("consecutive_failures")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
                restarts: component.restarts,
                reason: component.reason.as_deref().map(super::text::shorten),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn component(status: HealthStatus, details: serde_json::Value, restarts: u64) -> ComponentHealth {
        let mut c = ComponentHealth::new(restarts);
        c.status = status;
        if let serde_json::Value::Object(map) = details {
            for (key, value) in map {
                let key: &'static str = Box::leak(key.into_boxed_str());
                c.details.insert(key, value);
            }
        }
        c
    }

    #[test]
    fn upstream_components_become_rows_and_the_others_do_not() {
        let mut components = BTreeMap::new();
        components.insert("exporter".to_owned(), ComponentHealth::new(0));
        components.insert(
            "upstream:b".to_owned(),
            component(HealthStatus::Degraded, serde_json::json!({"transport": "sse", "consecutive_failures": 4}), 0),
        );
        // Reported healthy but not connected: still failing on the page.
        components.insert(
            "upstream:a".to_owned(),
            component(HealthStatus::Healthy, serde_json::json!({"connected": false, "transport": "stdio"}), 3),
        );
        components.insert("upstream:c".to_owned(), component(HealthStatus::Healthy, serde_json::json!({}), 0));
        let report = HealthReport {
            status: HealthStatus::Degraded,
            uptime_seconds: 1,
            version: "test",
            checked_at_unix: 0,
            ready: true,
            components,
        };
        let rows = upstreams(Some(&report));
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!((rows[0].state, rows[0].restarts, rows[0].transport.as_deref()), ("failing", 3, Some("stdio")));
        assert_eq!((rows[1].state, rows[1].consecutive_failures), ("failing", 4));
        assert_eq!((rows[2].state, rows[2].transport.as_deref()), ("connected", None));
        assert!(upstreams(None).is_empty());
    }
}
