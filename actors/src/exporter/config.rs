//! Tunables of the exporter: where and how to send OTLP, timeouts, concurrency and retries.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spool::WhenFull;

/// Default OTLP/gRPC endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default OTLP/HTTP endpoint (the `/v1/traces`, `/v1/metrics` and `/v1/logs` paths are appended).
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// Default per-attempt export timeout (the OTLP specification's 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of exports in flight at once.
pub const DEFAULT_MAX_CONCURRENT_EXPORTS: usize = 2;
/// Default number of batches waiting for a free export slot or a retry.
pub const DEFAULT_MAX_PENDING_BATCHES: usize = 256;
/// Default bound of the encoded batches held in memory (waiting or in flight), in bytes.
pub const DEFAULT_MAX_PENDING_BYTES: u64 = 32 << 20;

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// OTLP over gRPC (`grpc`).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        })
    }
}

/// Retry policy for retryable export failures (exponential backoff with jitter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry retryable failures at all. Off: a failed batch is dropped (`retry_exhausted`).
    pub enabled: bool,
    /// Delay before the first retry.
    #[serde(with = "crate::serde_duration")]
    pub initial_interval: Duration,
    /// Longest delay between two attempts (a server's Retry-After or RetryInfo may ask for more).
    #[serde(with = "crate::serde_duration")]
    pub max_interval: Duration,
    /// Give up on a batch once this long has passed since its first attempt (`retry_exhausted`).
    #[serde(with = "crate::serde_duration")]
    pub max_elapsed_time: Duration,
    /// Factor by which the delay grows after each failed attempt.
    pub multiplier: f64,
    /// Random spread of each delay: 0.5 means ±50 %.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

/// Configuration of the [`Exporter`](super::Exporter) actor (`[exporter]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExporterConfig {
    /// Collector endpoint: `http://host:4317` for gRPC, `http://host:4318` for HTTP/protobuf
    /// (the signal paths `/v1/traces`, `/v1/metrics` and `/v1/logs` are appended unless already
    /// present; an endpoint ending in one signal's path has it replaced for the others).
    pub endpoint: String,
    /// Transport: `grpc` or `http/protobuf`.
    pub protocol: Protocol,
    /// Plain-text connection. When false the connection uses TLS (webpki roots), also for an
    /// `http://` endpoint.
    pub insecure: bool,
    /// Extra request headers (gRPC metadata), for example an API key. Masked in `--check-config`.
    pub headers: BTreeMap<String, String>,
    /// Timeout of one export attempt.
    #[serde(with = "crate::serde_duration")]
    pub timeout: Duration,
    /// Exports in flight at once; further batches wait in the pending queue.
    pub max_concurrent_exports: usize,
    /// Batches waiting for an export slot or a retry. When this or `max_pending_bytes` is
    /// reached, the signal's `when_full` policy decides what happens.
    pub max_pending_batches: usize,
    /// Bytes of encoded batches held in memory, waiting or in flight. Bounds the exporter's
    /// memory whatever the batch size.
    #[serde(with = "crate::byte_size")]
    pub max_pending_bytes: u64,
    /// What to do, per signal, with a batch that does not fit in memory: `drop_newest`,
    /// `drop_oldest` or `spool` (write the oldest waiting batch to the spool; also spool while
    /// the collector is unreachable and when retries run out).
    pub when_full: WhenFull,
    /// Consecutive retryable failures after which the collector counts as unreachable (one
    /// warning in the log, `degraded` in `/health`).
    pub unreachable_after: u32,
    /// Retry policy for retryable failures.
    pub retry: RetryConfig,
}

impl fmt::Debug for ExporterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterConfig")
            .field("endpoint", &crate::redact::redact(&self.endpoint))
            .field("protocol", &self.protocol)
            .field("insecure", &self.insecure)
            .field("headers", &self.headers.keys().map(|k| (k, "***")).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("max_concurrent_exports", &self.max_concurrent_exports)
            .field("max_pending_batches", &self.max_pending_batches)
            .field("max_pending_bytes", &self.max_pending_bytes)
            .field("when_full", &self.when_full)
            .field("unreachable_after", &self.unreachable_after)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Default for ExporterConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_GRPC_ENDPOINT.to_owned(),
            protocol: Protocol::Grpc,
            insecure: true,
            headers: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            max_concurrent_exports: DEFAULT_MAX_CONCURRENT_EXPORTS,
            max_pending_batches: DEFAULT_MAX_PENDING_BATCHES,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            when_full: WhenFull::default(),
            unreachable_after: 1,
            retry: RetryConfig::default(),
        }
    }
}

impl ExporterConfig {
    /// Checks ranges and the endpoint's form; the error names the key.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        let uri: http::Uri = self.endpoint.parse().map_err(|err| {
            crate::ConfigError::new(
                "exporter.endpoint",
                self.endpoint.clone(),
                format!("an absolute http:// or https:// URL ({err})"),
            )
        })?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => {}
            _ => {
                return Err(crate::ConfigError::new(
                    "exporter.endpoint",
                    self.endpoint.clone(),
                    "an absolute http:// or https:// URL with a host",
                ))
            }
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err() {
                return Err(crate::ConfigError::new(
                    format!("exporter.headers.{name}"),
                    "***",
                    "a valid HTTP header name and a visible-ASCII value",
                ));
            }
        }
        crate::config_check::duration(
            "exporter.timeout",
            self.timeout,
            Duration::from_millis(1),
            Duration::from_secs(600),
        )?;
        crate::config_check::range("exporter.max_concurrent_exports", self.max_concurrent_exports, 1, 64)?;
        crate::config_check::range("exporter.max_pending_batches", self.max_pending_batches, 1, 1 << 20)?;
        crate::spool::config::bytes("exporter.max_pending_bytes", self.max_pending_bytes, 1 << 16, 1 << 36)?;
        crate::config_check::range("exporter.unreachable_after", self.unreachable_after as usize, 1, 1000)?;
        let retry = &self.retry;
        crate::config_check::duration(
            "exporter.retry.initial_interval",
            retry.initial_interval,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        )?;
        crate::config_check::duration(
            "exporter.retry.max_elapsed_time",
            retry.max_elapsed_time,
            Duration::from_millis(1),
            Duration::from_secs(7 * 86_400),
        )?;
        if retry.max_interval < retry.initial_interval {
            return Err(crate::ConfigError::new(
                "exporter.retry.max_interval",
                humantime::format_duration(retry.max_interval).to_string(),
                "at least exporter.retry.initial_interval",
            ));
        }
        if !(retry.multiplier.is_finite() && (1.0..=10.0).contains(&retry.multiplier)) {
            return Err(crate::ConfigError::new(
                "exporter.retry.multiplier",
                retry.multiplier.to_string(),
                "a number from 1.0 to 10.0",
            ));
        }
        if !(retry.randomization_factor.is_finite() && (0.0..=1.0).contains(&retry.randomization_factor)) {
            return Err(crate::ConfigError::new(
                "exporter.retry.randomization_factor",
                retry.randomization_factor.to_string(),
                "a number from 0.0 to 1.0",
            ));
        }
        Ok(())
    }
}
