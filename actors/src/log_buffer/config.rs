//! Tunables of the log buffer: the ingress queue and the batching policy (`[logs]`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default capacity of the log record queue (the OpenTelemetry `BatchLogRecordProcessor`'s
/// `OTEL_BLRP_MAX_QUEUE_SIZE`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 2048;
/// Default number of records in one export batch (`OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`).
pub const DEFAULT_MAX_BATCH_SIZE: usize = 512;
/// Default bound of the log record queue in bytes (estimated from each record's parts).
pub const DEFAULT_QUEUE_MAX_BYTES: u64 = 8 << 20;
/// Default longest time a record waits before its batch is exported (`OTEL_BLRP_SCHEDULE_DELAY`).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Configuration of the [`LogBuffer`](super::LogBuffer) actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogBufferConfig {
    /// Capacity of the bounded channel between the logging layer and the buffer. When it is
    /// full a record is dropped and counted (`signal="logs", reason="queue_full"`); the caller
    /// never blocks.
    pub queue_capacity: usize,
    /// Bound of the same queue in bytes, estimated from each record's body and attributes: a
    /// record that would pass it is dropped and counted (`reason="queue_full"`).
    #[serde(with = "crate::byte_size")]
    pub queue_max_bytes: u64,
    /// Records per export batch. A full batch is handed to the exporter at once.
    pub max_batch_size: usize,
    /// Longest time a record waits before a partial batch is exported.
    #[serde(with = "crate::serde_duration")]
    pub flush_interval: Duration,
}

impl Default for LogBufferConfig {
    fn default() -> Self {
        Self {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

impl LogBufferConfig {
    /// Checks ranges and cross-field rules; the error names the key (under `[logs]`).
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        crate::config_check::range("logs.queue_capacity", self.queue_capacity, 1, 1 << 24)?;
        crate::spool::config::bytes("logs.queue_max_bytes", self.queue_max_bytes, 1 << 16, 1 << 36)?;
        crate::config_check::range("logs.max_batch_size", self.max_batch_size, 1, 1 << 20)?;
        if self.max_batch_size > self.queue_capacity {
            return Err(crate::ConfigError::new(
                "logs.max_batch_size",
                self.max_batch_size.to_string(),
                format!("at most logs.queue_capacity ({})", self.queue_capacity),
            ));
        }
        crate::config_check::duration(
            "logs.flush_interval",
            self.flush_interval,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        )
    }
}
