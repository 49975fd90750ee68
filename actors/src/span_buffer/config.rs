//! Tunables of the span buffer: the ingress queue and the batching policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default capacity of the span ingress queue (the OpenTelemetry SDK's 2048, raised: a full queue drops).
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;
/// Default number of spans in one export batch (the OpenTelemetry SDK's default).
pub const DEFAULT_MAX_BATCH_SIZE: usize = 512;
/// Default bound of the span queue in bytes (estimated from each span's parts).
pub const DEFAULT_QUEUE_MAX_BYTES: u64 = 32 << 20;
/// Default longest time a span waits in the buffer before its batch is exported.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Configuration of the [`SpanBuffer`](super::SpanBuffer) actor (`[span_buffer]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanBufferConfig {
    /// Capacity of the bounded channel between finished spans and the buffer. When it is full a
    /// finished span is dropped and counted (`reason="queue_full"`); the caller never blocks.
    pub queue_capacity: usize,
    /// Bound of the same queue in bytes, estimated from each span's name, attributes, events and
    /// links: a span that would pass it is dropped and counted (`reason="queue_full"`), so large
    /// spans cannot take more memory than this.
    #[serde(with = "crate::byte_size")]
    pub queue_max_bytes: u64,
    /// Spans per export batch. A full batch is handed to the exporter at once.
    pub max_batch_size: usize,
    /// Longest time a span waits before a partial batch is exported.
    #[serde(with = "crate::serde_duration")]
    pub flush_interval: Duration,
}

impl Default for SpanBufferConfig {
    fn default() -> Self {
        Self {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

impl SpanBufferConfig {
    /// Checks ranges and cross-field rules; the error names the key (relative to `[span_buffer]`).
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        crate::config_check::range("span_buffer.queue_capacity", self.queue_capacity, 1, 1 << 24)?;
        crate::spool::config::bytes("span_buffer.queue_max_bytes", self.queue_max_bytes, 1 << 16, 1 << 36)?;
        crate::config_check::range("span_buffer.max_batch_size", self.max_batch_size, 1, 1 << 20)?;
        if self.max_batch_size > self.queue_capacity {
            return Err(crate::ConfigError::new(
                "span_buffer.max_batch_size",
                self.max_batch_size.to_string(),
                format!("at most span_buffer.queue_capacity ({})", self.queue_capacity),
            ));
        }
        crate::config_check::duration(
            "span_buffer.flush_interval",
            self.flush_interval,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        )
    }
}
