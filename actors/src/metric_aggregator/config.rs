//! Tunables of the metric aggregator: the event queue, draining, OTLP export and label bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default capacity of the metric event queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;
/// Default interval between OTLP metric exports (the OpenTelemetry SDK's 60 s is too slow for dashboards).
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Default interval at which queued events are folded into the registry when the queue is quiet.
pub const DEFAULT_DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// Default number of distinct tool names before further names fold into `other`.
pub const DEFAULT_MAX_TOOL_NAMES: usize = 200;
/// Default number of distinct route templates before further routes fold into `other`.
pub const DEFAULT_MAX_ROUTES: usize = 200;

/// Configuration of the [`MetricAggregator`](super::MetricAggregator) actor (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Capacity of the bounded channel of metric events (`record_*` calls). When it is full an
    /// event is dropped and counted (`signal="metrics", reason="queue_full"`).
    pub queue_capacity: usize,
    /// Interval between OTLP metric exports (cumulative temporality).
    #[serde(with = "crate::serde_duration")]
    pub export_interval: Duration,
    /// Longest time an event waits in the queue before it is folded into the registry.
    #[serde(with = "crate::serde_duration")]
    pub drain_interval: Duration,
    /// Export metrics over OTLP as well as serving them on `/metrics`.
    pub otlp_export: bool,
    /// Distinct `tool_name` label values kept; further tools are counted under `other`.
    pub max_tool_names: usize,
    /// Distinct `route` label values kept; further routes are counted under `other`.
    pub max_routes: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            export_interval: DEFAULT_EXPORT_INTERVAL,
            drain_interval: DEFAULT_DRAIN_INTERVAL,
            otlp_export: true,
            max_tool_names: DEFAULT_MAX_TOOL_NAMES,
            max_routes: DEFAULT_MAX_ROUTES,
        }
    }
}

impl MetricsConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        crate::config_check::range("metrics.queue_capacity", self.queue_capacity, 1, 1 << 24)?;
        crate::config_check::duration(
            "metrics.export_interval",
            self.export_interval,
            Duration::from_millis(10),
            Duration::from_secs(86_400),
        )?;
        crate::config_check::duration(
            "metrics.drain_interval",
            self.drain_interval,
            Duration::from_millis(1),
            Duration::from_secs(60),
        )?;
        crate::config_check::range("metrics.max_tool_names", self.max_tool_names, 1, 100_000)?;
        crate::config_check::range("metrics.max_routes", self.max_routes, 1, 100_000)
    }
}
