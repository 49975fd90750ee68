//! The health report served as JSON on `/health`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Overall or per-component status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything works.
    Healthy,
    /// Serving, but telemetry is at risk (collector unreachable, drops, failures).
    Degraded,
    /// A part of the pipeline does not answer.
    Unhealthy,
}

/// Export state of one signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalHealth {
    /// Items the collector accepted since start.
    pub exported: u64,
    /// Items dropped since start, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Failed export attempts since start, by kind (`retryable`, `permanent`).
    pub export_failures: BTreeMap<&'static str, u64>,
    /// Failed attempts in a row (0 after a success).
    pub consecutive_failures: u64,
    /// Unix time (seconds) of the last accepted export, if any.
    pub last_successful_export_unix: Option<u64>,
}

/// One component's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentHealth {
    /// Its status.
    pub status: HealthStatus,
    /// Items waiting in its queue, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// Capacity of that queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<u64>,
    /// Restarts after a panic since start.
    pub restarts: u64,
    /// Component-specific figures (buffered spans, pending batches, reachability…).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<&'static str, serde_json::Value>,
    /// Per-signal export state (exporter only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub signals: BTreeMap<&'static str, SignalHealth>,
    /// Why the status is not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ComponentHealth {
    /// A healthy component with no figures yet.
    pub fn new(restarts: u64) -> Self {
        Self {
            status: HealthStatus::Healthy,
            queue_depth: None,
            queue_capacity: None,
            restarts,
            details: BTreeMap::new(),
            signals: BTreeMap::new(),
            reason: None,
        }
    }

    /// Marks the component unresponsive.
    pub fn unresponsive(restarts: u64, why: String) -> Self {
        Self { status: HealthStatus::Unhealthy, reason: Some(why), ..Self::new(restarts) }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The worst component status.
    pub status: HealthStatus,
    /// Seconds since the pipeline started.
    pub uptime_seconds: u64,
    /// The service version.
    pub version: &'static str,
    /// Unix time (seconds) of the gathering this report comes from.
    pub checked_at_unix: u64,
    /// Whether the pipeline (and every readiness probe) is up.
    pub ready: bool,
    /// Every component, by name.
    pub components: BTreeMap<String, ComponentHealth>,
}

impl HealthReport {
    /// Computes the overall status from the components.
    pub fn overall(components: &BTreeMap<String, ComponentHealth>) -> HealthStatus {
        components.values().map(|c| c.status).max().unwrap_or(HealthStatus::Healthy)
    }
}
