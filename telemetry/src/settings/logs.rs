//! `[logs]`: the service's log events as the third OTLP signal, beside the stdout lines of
//! `[logging]`. Which events become OTLP log records (`level`, a filter of its own), the access
//! records of MCP and HTTP requests, and the log buffer's queue and batching, which the pipeline
//! takes as its `LogBufferConfig`.

use std::time::Duration;

use metamcp_telemetry_actors::log_buffer::config::{
    DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BATCH_SIZE, DEFAULT_QUEUE_CAPACITY, DEFAULT_QUEUE_MAX_BYTES,
};
use metamcp_telemetry_actors::log_buffer::LogBufferConfig;
use metamcp_telemetry_actors::ConfigError;
use serde::{Deserialize, Serialize};

/// Default `logs.level`: events at `info` and above become OTLP log records.
pub const DEFAULT_LOGS_LEVEL: &str = "info";

/// OTLP log export (`[logs]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSettings {
    /// Export log records over OTLP through the pipeline (log buffer, exporter, spool), to the
    /// collector of `[exporter]`. Only while telemetry is enabled. `OTEL_LOGS_EXPORTER=otlp`
    /// sets it, `OTEL_LOGS_EXPORTER=none` clears it.
    pub otlp: bool,
    /// Which `tracing` events become OTLP log records: a filter in `RUST_LOG` syntax, such as
    /// `info` or `warn,metamcp_gateway=debug`, independent of `logging.level` (stdout). The
    /// pipeline's own events are never exported (no export loop).
    pub level: String,
    /// One log record per MCP request answered (`event_name = "mcp.access"`): method, tool or
    /// prompt name, endpoint, outcome, `error.type`, duration and JSON-RPC request id; never
    /// arguments, results or credentials.
    pub mcp_access: bool,
    /// One log record per HTTP request served (`event_name = "http.access"`): method, route,
    /// status code and duration.
    pub http_access: bool,
    /// Capacity of the bounded channel between the log events and the log buffer. When it is
    /// full a record is dropped and counted (`signal="logs", reason="queue_full"`); the caller
    /// never blocks.
    pub queue_capacity: usize,
    /// Bound of the same queue in bytes, estimated from each record's body and attributes; a
    /// record that would pass it is dropped and counted (`reason="queue_full"`).
    #[serde(with = "metamcp_telemetry_actors::byte_size")]
    pub queue_max_bytes: u64,
    /// Log records per export batch. A full batch is handed to the exporter at once.
    pub max_batch_size: usize,
    /// Longest time a record waits before a partial batch is exported.
    #[serde(with = "metamcp_telemetry_actors::serde_duration")]
    pub flush_interval: Duration,
}

impl Default for LogsSettings {
    fn default() -> Self {
        Self {
            otlp: true,
            level: DEFAULT_LOGS_LEVEL.to_owned(),
            mcp_access: true,
            http_access: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

impl LogsSettings {
    /// The log buffer's tunables, as the pipeline takes them.
    pub fn buffer(&self) -> LogBufferConfig {
        LogBufferConfig {
            queue_capacity: self.queue_capacity,
            queue_max_bytes: self.queue_max_bytes,
            max_batch_size: self.max_batch_size,
            flush_interval: self.flush_interval,
        }
    }

    /// Checks the filter and the buffer's ranges; the error names the key (`logs.*`).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level).map_err(|err| {
            ConfigError::new(
                "logs.level",
                format!("{:?}", self.level),
                format!("a filter in RUST_LOG syntax such as \"info\" or \"warn,metamcp_gateway=debug\" ({err})"),
            )
        })?;
        self.buffer().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_log_buffers_and_valid() {
        let logs = LogsSettings::default();
        assert!(logs.otlp && logs.mcp_access && !logs.http_access);
        assert_eq!(logs.level, "info");
        assert_eq!(logs.buffer(), LogBufferConfig::default());
        logs.validate().expect("the defaults are valid");
    }

    #[test]
    fn a_bad_filter_or_range_names_its_key() {
        let logs = LogsSettings { level: "info,[=".to_owned(), ..LogsSettings::default() };
        assert_eq!(logs.validate().expect_err("a bad filter").key, "logs.level");
        let logs = LogsSettings { max_batch_size: 10, queue_capacity: 5, ..LogsSettings::default() };
        assert_eq!(logs.validate().expect_err("batch above the queue").key, "logs.max_batch_size");
        let logs = LogsSettings { flush_interval: Duration::ZERO, ..LogsSettings::default() };
        assert_eq!(logs.validate().expect_err("no interval").key, "logs.flush_interval");
    }
}
