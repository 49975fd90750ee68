//! What tail sampling decided, as metrics: `{prefix}_sampled_total{decision, reason}` (one per
//! decided trace) and `{prefix}_sampled_out_spans_total` (spans not exported because their trace
//! was not kept). Registered only when `sampling.mode = "tail"`, every series at zero from the
//! start.

use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Why a trace was kept, or that nothing asked for it to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A span had an error status or an `error.type` attribute: kept.
    Error,
    /// The local root lasted at least `sampling.keep_slower_than`: kept.
    Slow,
    /// The trace id fell under `sampling.keep_ratio`: kept.
    Ratio,
    /// The pending bounds were reached, the trace waited past `sampling.max_decision_wait`, or
    /// the pipeline flushed before its root ended: kept (fail open).
    Overflow,
    /// No reason to keep it: dropped.
    None,
}

impl Reason {
    /// Every reason, in index order.
    pub const ALL: [Reason; 5] = [Reason::Error, Reason::Slow, Reason::Ratio, Reason::Overflow, Reason::None];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Error => "error",
            Reason::Slow => "slow",
            Reason::Ratio => "ratio",
            Reason::Overflow => "overflow",
            Reason::None => "none",
        }
    }

    /// Whether a trace decided for this reason is exported.
    pub const fn keeps(self) -> bool {
        !matches!(self, Reason::None)
    }

    /// The `decision` label value.
    pub const fn decision(self) -> &'static str {
        if self.keeps() {
            "kept"
        } else {
            "dropped"
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Resolved handles of the tail sampling metrics.
#[derive(Debug)]
pub struct SamplingMetrics {
    decisions: [IntCounter; 5],
    sampled_out_spans: IntCounter,
}

impl SamplingMetrics {
    /// Creates the metrics, named `{prefix}_…`, every series at zero, and registers them.
    pub fn register(registry: &Registry, prefix: &str) -> Result<Arc<Self>, prometheus::Error> {
        let metrics = Self::unregistered_with(prefix)?;
        registry.register(Box::new(metrics.0))?;
        registry.register(Box::new(metrics.1.sampled_out_spans.clone()))?;
        Ok(Arc::new(metrics.1))
    }

    /// Metrics registered nowhere (for tests).
    pub fn unregistered() -> Arc<Self> {
        match Self::unregistered_with("pipeline") {
            Ok((_, metrics)) => Arc::new(metrics),
            // The names and labels above are valid; creation cannot fail.
            Err(err) => unreachable!("the sampling metrics are well-formed: {err}"),
        }
    }

    fn unregistered_with(prefix: &str) -> Result<(IntCounterVec, Self), prometheus::Error> {
        let decisions = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_sampled_total"),
                "Local traces the tail sampler decided on, by decision and reason.",
            ),
            &["decision", "reason"],
        )?;
        let sampled_out_spans = IntCounter::new(
            format!("{prefix}_sampled_out_spans_total"),
            "Spans not exported because the tail sampler dropped their trace.",
        )?;
        let handles = Reason::ALL.map(|reason| decisions.with_label_values(&[reason.decision(), reason.as_str()]));
        Ok((decisions, Self { decisions: handles, sampled_out_spans }))
    }

    /// Counts one decided trace.
    pub fn decided(&self, reason: Reason) {
        self.decisions[reason.index()].inc();
    }

    /// Counts spans not exported because their trace was dropped.
    pub fn sampled_out(&self, spans: u64) {
        self.sampled_out_spans.inc_by(spans);
    }

    /// Traces decided for `reason` since start.
    pub fn decisions(&self, reason: Reason) -> u64 {
        self.decisions[reason.index()].get()
    }

    /// Spans not exported because their trace was dropped, since start.
    pub fn sampled_out_spans(&self) -> u64 {
        self.sampled_out_spans.get()
    }
}
