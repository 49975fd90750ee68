//! The pipeline actors of metamcp-telemetry.
//!
//! Finished spans, log records and metric events enter through bounded crossbeam channels
//! ([`ingress`]) that never block the caller. Five actors, each on its own arbiter, do the rest:
//! [`SpanBuffer`](span_buffer::SpanBuffer) batches spans, [`LogBuffer`](log_buffer::LogBuffer)
//! batches log records, [`MetricAggregator`](metric_aggregator::MetricAggregator)
//! folds metric events into the Prometheus registry and snapshots them for OTLP,
//! [`Exporter`](exporter::Exporter) sends OTLP over gRPC or HTTP with retries, and
//! [`HealthCheck`](health_check::HealthCheck) gathers everyone's status. This crate knows no
//! route, no table and no MCP.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod byte_size;
mod config_check;
pub mod exporter;
pub mod health_check;
pub mod ingress;
pub mod internal_events;
pub mod labels;
pub mod log_buffer;
pub mod log_record;
pub mod metric_aggregator;
pub mod otlp;
pub mod pipeline;
pub mod redact;
pub mod sampling;
pub mod self_metrics;
pub mod serde_duration;
pub mod span_buffer;
pub mod span_ref;
pub mod spool;
pub mod supervision;
#[cfg(test)]
mod test_support;

pub use config_check::ConfigError;
pub use exporter::config::{ExporterConfig, Protocol, RetryConfig};
pub use health_check::config::HealthConfig;
pub use log_buffer::LogBufferConfig;
pub use metric_aggregator::config::MetricsConfig;
pub use sampling::config::{SamplingConfig, SamplingMode};
pub use span_buffer::config::SpanBufferConfig;
pub use span_buffer::limits::SpanLimitsConfig;
pub use spool::{OverflowPolicy, SpoolConfig, WhenFull};
