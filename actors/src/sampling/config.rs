//! Tunables of tail sampling (`[sampling]`): which traces the span buffer keeps when their local
//! root ends, and the bounds of what waits for that moment.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default `sampling.keep_ratio`: one trace in ten of those with no error and no slow root.
pub const DEFAULT_KEEP_RATIO: f64 = 0.1;
/// Default `sampling.keep_slower_than`.
pub const DEFAULT_KEEP_SLOWER_THAN: Duration = Duration::from_millis(500);
/// Default `sampling.max_pending_traces`.
pub const DEFAULT_MAX_PENDING_TRACES: usize = 10_000;
/// Default `sampling.max_pending_bytes`.
pub const DEFAULT_MAX_PENDING_BYTES: u64 = 32 << 20;
/// Default `sampling.max_decision_wait` (the OpenTelemetry Collector's `decision_wait`).
pub const DEFAULT_MAX_DECISION_WAIT: Duration = Duration::from_secs(30);
/// How many decisions are remembered for late spans (and kept traces for exemplars), as a
/// multiple of `sampling.max_pending_traces`.
pub const DECISION_MEMORY_FACTOR: usize = 4;

/// Who decides which sampled traces are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplingMode {
    /// The tracer's sampler decides when a trace starts (`telemetry.sampler`); every sampled span
    /// is exported (`head`).
    #[default]
    Head,
    /// The span buffer decides when a trace's local root ends, from the whole local trace (`tail`).
    Tail,
}

impl SamplingMode {
    /// The name used in configuration and in `/health`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SamplingMode::Head => "head",
            SamplingMode::Tail => "tail",
        }
    }
}

/// Configuration of tail sampling (`[sampling]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// `head` (the default): every span the tracer's sampler records is exported. `tail`: the
    /// spans of a local trace wait in the span buffer until its local root (a span without a
    /// parent or with a remote parent) ends; the trace is then kept when any of its spans has an
    /// error status or an `error.type` attribute, when the root lasted at least
    /// `keep_slower_than`, or when its trace id falls under `keep_ratio`; otherwise its spans are
    /// not exported (counted in `{prefix}_sampled_total`, not as drops). Tail sampling
    /// needs every trace recorded: `telemetry.sampler` must be `always_on` or
    /// `parentbased_always_on`.
    pub mode: SamplingMode,
    /// Share of the remaining traces kept, from 0.0 to 1.0, decided by the trace id alone (the
    /// same trace is kept by every process that uses the same ratio): a trace is kept when the
    /// low 56 bits of its id (the W3C random part) are at least `(1 - keep_ratio) × 2^56`, the
    /// rejection threshold of the OpenTelemetry probability sampler.
    pub keep_ratio: f64,
    /// A trace whose local root lasted at least this long is kept, from 0s (keep every trace)
    /// to 1h.
    #[serde(with = "crate::serde_duration")]
    pub keep_slower_than: Duration,
    /// Local traces waiting for their root at most, from 1 to 1048576; a trace beyond it makes
    /// the oldest waiting trace be kept and exported at once (fail open, `reason="overflow"`).
    /// The last `4 × max_pending_traces` decisions are remembered for spans that end after their
    /// root.
    pub max_pending_traces: usize,
    /// Bytes of waiting spans at most (estimated as for `span_buffer.queue_max_bytes`), from
    /// 64KiB to 64GiB; beyond it the oldest waiting traces are kept and exported at once (fail
    /// open, `reason="overflow"`).
    #[serde(with = "crate::byte_size")]
    pub max_pending_bytes: u64,
    /// Longest time a trace waits for its local root, from 1ms to 1h; then it is kept and
    /// exported (fail open, `reason="overflow"`), and its later spans follow.
    #[serde(with = "crate::serde_duration")]
    pub max_decision_wait: Duration,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            mode: SamplingMode::default(),
            keep_ratio: DEFAULT_KEEP_RATIO,
            keep_slower_than: DEFAULT_KEEP_SLOWER_THAN,
            max_pending_traces: DEFAULT_MAX_PENDING_TRACES,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            max_decision_wait: DEFAULT_MAX_DECISION_WAIT,
        }
    }
}

impl SamplingConfig {
    /// Whether the span buffer decides (`mode = "tail"`).
    pub fn is_tail(&self) -> bool {
        self.mode == SamplingMode::Tail
    }

    /// How many decisions are remembered for late spans.
    pub fn decision_memory(&self) -> usize {
        self.max_pending_traces.saturating_mul(DECISION_MEMORY_FACTOR)
    }

    /// Checks ranges; the error names the key (`sampling.*`).
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        if !(self.keep_ratio.is_finite() && (0.0..=1.0).contains(&self.keep_ratio)) {
            return Err(crate::ConfigError::new(
                "sampling.keep_ratio",
                self.keep_ratio.to_string(),
                "a number from 0.0 to 1.0",
            ));
        }
        crate::config_check::duration(
            "sampling.keep_slower_than",
            self.keep_slower_than,
            Duration::ZERO,
            Duration::from_secs(3600),
        )?;
        crate::config_check::range("sampling.max_pending_traces", self.max_pending_traces, 1, 1 << 20)?;
        crate::spool::config::bytes("sampling.max_pending_bytes", self.max_pending_bytes, 1 << 16, 1 << 36)?;
        crate::config_check::duration(
            "sampling.max_decision_wait",
            self.max_decision_wait,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_head_sampling() {
        let config = SamplingConfig::default();
        config.validate().expect("defaults are valid");
        assert!(!config.is_tail());
        assert_eq!(config.decision_memory(), 40_000);
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let cases: [(&str, SamplingConfig); 5] = [
            ("sampling.keep_ratio", SamplingConfig { keep_ratio: 1.5, ..Default::default() }),
            ("sampling.keep_ratio", SamplingConfig { keep_ratio: f64::NAN, ..Default::default() }),
            ("sampling.max_pending_traces", SamplingConfig { max_pending_traces: 0, ..Default::default() }),
            ("sampling.max_pending_bytes", SamplingConfig { max_pending_bytes: 10, ..Default::default() }),
            ("sampling.max_decision_wait", SamplingConfig { max_decision_wait: Duration::ZERO, ..Default::default() }),
        ];
        for (key, config) in cases {
            assert_eq!(config.validate().expect_err(key).key, key);
        }
    }

    #[test]
    fn the_mode_reads_as_lowercase_words() {
        let config: SamplingConfig =
            serde_json::from_str(r#"{"mode": "tail", "keep_slower_than": "250ms"}"#).expect("parses");
        assert!(config.is_tail());
        assert_eq!(config.keep_slower_than, Duration::from_millis(250));
        assert!(serde_json::from_str::<SamplingConfig>(r#"{"mode": "sometimes"}"#).is_err());
    }
}
