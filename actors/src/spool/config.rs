//! Tunables of the spool (`[spool]`) and the per-signal overflow policy (`[exporter.when_full]`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::self_metrics::Signal;

/// Default bound of the spool, in bytes of encoded requests.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Default bound of the in-memory fallback spool used while the database is unavailable.
pub const DEFAULT_MEMORY_MAX_BYTES: u64 = 32 << 20;
/// Default number of spooled batches replayed per second once the collector answers again.
pub const DEFAULT_REPLAY_BATCHES_PER_SECOND: u32 = 20;

/// What the exporter does with a batch that does not fit in its in-memory buffer (Vector's
/// `when_full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Drop the batch that arrives (`reason="queue_full"`).
    DropNewest,
    /// Drop the oldest batch waiting to make room (`reason="queue_full"`).
    DropOldest,
    /// Write the oldest batch waiting to the spool; also spool everything while the collector is
    /// unreachable and batches whose retries ran out.
    Spool,
}

impl fmt::Display for OverflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverflowPolicy::DropNewest => "drop_newest",
            OverflowPolicy::DropOldest => "drop_oldest",
            OverflowPolicy::Spool => "spool",
        })
    }
}

/// The overflow policy of each signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhenFull {
    /// Policy for span batches.
    pub traces: OverflowPolicy,
    /// Policy for metric batches.
    pub metrics: OverflowPolicy,
    /// Policy for log record batches.
    pub logs: OverflowPolicy,
}

impl Default for WhenFull {
    fn default() -> Self {
        Self { traces: OverflowPolicy::Spool, metrics: OverflowPolicy::Spool, logs: OverflowPolicy::Spool }
    }
}

impl WhenFull {
    /// The policy of `signal`.
    pub fn of(&self, signal: Signal) -> OverflowPolicy {
        match signal {
            Signal::Traces => self.traces,
            Signal::Metrics => self.metrics,
            Signal::Logs => self.logs,
        }
    }
}

/// Configuration of the spool (`[spool]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Most bytes of encoded requests the spool keeps; beyond it the oldest batches are removed
    /// and counted (`reason="spool_full"`).
    #[serde(with = "crate::byte_size")]
    pub max_bytes: u64,
    /// Batches older than this are removed and counted (`reason="spool_expired"`); `"0s"` keeps
    /// them until the size bound removes them.
    #[serde(with = "crate::serde_duration")]
    pub max_age: Duration,
    /// Bound of the in-memory spool used while the database spool is unavailable (or when the
    /// service runs without one).
    #[serde(with = "crate::byte_size")]
    pub memory_max_bytes: u64,
    /// Spooled batches replayed per second once the collector answers; replay only uses export
    /// slots that fresh batches leave free.
    pub replay_batches_per_second: u32,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: Duration::ZERO,
            memory_max_bytes: DEFAULT_MEMORY_MAX_BYTES,
            replay_batches_per_second: DEFAULT_REPLAY_BATCHES_PER_SECOND,
        }
    }
}

impl SpoolConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        bytes("spool.max_bytes", self.max_bytes, 1 << 20, 1 << 40)?;
        bytes("spool.memory_max_bytes", self.memory_max_bytes, 1 << 16, 1 << 36)?;
        if !self.max_age.is_zero() {
            crate::config_check::duration(
                "spool.max_age",
                self.max_age,
                Duration::from_secs(1),
                Duration::from_secs(365 * 86_400),
            )?;
        }
        crate::config_check::range(
            "spool.replay_batches_per_second",
            self.replay_batches_per_second as usize,
            1,
            10_000,
        )
    }
}

/// `value` must lie in `min..=max` bytes.
pub(crate) fn bytes(key: &str, value: u64, min: u64, max: u64) -> Result<(), crate::ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(crate::ConfigError::new(
            key,
            crate::byte_size::format(value),
            format!("a size from {} to {}", crate::byte_size::format(min), crate::byte_size::format(max)),
        ))
    }
}
