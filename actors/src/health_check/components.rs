//! Components an application adds to `/health` beside the pipeline's own (the upstream servers
//! of a gateway, say): a [`ComponentSource`] answers its current list at every gathering, and a
//! failing component makes the report `degraded` — never `unhealthy`, since the service still
//! serves — while `/health/live` and `/health/ready` do not look at it.

use std::collections::BTreeMap;

use super::report::{ComponentHealth, HealthStatus};

/// Names the pipeline's own components take; a source's component of the same name is ignored.
const RESERVED: &[&str] = &["span_buffer", "metric_aggregator", "exporter", "health_check", "log_buffer"];

/// Something that answers a list of components at every health gathering. Called on the health
/// check's thread: it must answer from state it already holds, without blocking.
pub trait ComponentSource: Send + Sync {
    /// The components as they are now.
    fn components(&self) -> Vec<Component>;
}

/// One component of `/health` and a row of the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Its name in `/health` (`upstream:weather`, say).
    pub name: String,
    /// Whether it works; a failing component makes the report degraded.
    pub healthy: bool,
    /// Its figures, a JSON object. Only the keys of [`DETAIL_KEYS`] are shown; a `restarts`
    /// number becomes the component's restart count, a `reason` string the reason it is failing.
    pub details: serde_json::Value,
}

/// Detail keys a component may show (the report's maps use static keys, and a fixed list keeps
/// anything credential-like — an environment, a header — off the surface).
pub const DETAIL_KEYS: &[&str] = &[
    "connected",
    "transport",
    "last_error_kind",
    "consecutive_failures",
    "restarts",
    "protocol_version",
    "tools",
    "prompts",
    "resources",
    "resource_templates",
    "pid",
];

/// The health of `component` as the report shows it.
pub(crate) fn component_health(component: &Component) -> ComponentHealth {
    let mut health = ComponentHealth::new(0);
    let mut reason = None;
    if let serde_json::Value::Object(map) = &component.details {
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            if key == "reason" {
                reason = value.as_str().map(str::to_owned);
            } else if let Some(key) = DETAIL_KEYS.iter().copied().find(|k| *k == key) {
                if key == "restarts" {
                    health.restarts = value.as_u64().unwrap_or(0);
                }
                health.details.insert(key, value.clone());
            }
        }
    }
    if !component.healthy {
        health.status = HealthStatus::Degraded;
        let kind = health.details.get("last_error_kind").and_then(|v| v.as_str()).map(str::to_owned);
        health.reason =
            Some(reason.or(kind.map(|kind| format!("failing: {kind}"))).unwrap_or_else(|| "failing".into()));
    }
    health
}

/// Adds the components of `sources` to `components`, keeping the pipeline's own names.
pub(crate) fn add_components(
    components: &mut BTreeMap<String, ComponentHealth>,
    sources: &[std::sync::Arc<dyn ComponentSource>],
) {
    for source in sources {
        for component in source.components() {
            if RESERVED.contains(&component.name.as_str()) || components.contains_key(&component.name) {
                continue;
            }
            let health = component_health(&component);
            components.insert(component.name, health);
        }
    }
}
