//! The audit log's events about itself, one type each: rows written, a row dropped at the full
//! queue, rows lost to a failed write, rows pruned by retention, a pruning that failed.
//!
//! `emit()` both counts the event in the audit metrics (names and labels unchanged:
//! `metamcp_audit_rows_total{outcome}`, `metamcp_audit_pruned_rows_total{rule}`, and
//! `metamcp_audit_prune_failures_total`) and logs it, with the actors' rule
//! ([`LogLimit`]): a warning at the first occurrence of its kind, then at most one a minute,
//! saying how many were left out meanwhile. Counting is never rate-limited.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, Opts};

use metamcp_telemetry_actors::internal_events::LogLimit;

/// The audit metrics, their children resolved once.
#[derive(Clone)]
pub struct AuditMetrics {
    rows: IntCounterVec,
    written: IntCounter,
    dropped_queue_full: IntCounter,
    dropped_failed: IntCounter,
    pruned: IntCounterVec,
    pruned_by_age: IntCounter,
    pruned_by_rows: IntCounter,
    prune_failures: IntCounter,
}

impl std::fmt::Debug for AuditMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditMetrics").finish_non_exhaustive()
    }
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditMetrics {
    /// Every family and child made, so they show at 0 from the first scrape.
    pub fn new() -> Self {
        // Names and labels are constants: creation cannot fail.
        #[allow(clippy::expect_used)]
        let rows = IntCounterVec::new(
            Opts::new("metamcp_audit_rows_total", "tool_executions rows by outcome: written, or dropped and why."),
            &["outcome"],
        )
        .expect("a valid metric definition");
        #[allow(clippy::expect_used)]
        let pruned = IntCounterVec::new(
            Opts::new("metamcp_audit_pruned_rows_total", "tool_executions rows deleted by the retention rules."),
            &["rule"],
        )
        .expect("a valid metric definition");
        #[allow(clippy::expect_used)]
        let prune_failures = IntCounter::new(
            "metamcp_audit_prune_failures_total",
            "Prunings of the audit log (audit.retention) that failed; the next interval tries again.",
        )
        .expect("a valid metric definition");
        Self {
            written: rows.with_label_values(&["written"]),
            dropped_queue_full: rows.with_label_values(&["dropped_queue_full"]),
            dropped_failed: rows.with_label_values(&["dropped_failed"]),
            rows,
            pruned_by_age: pruned.with_label_values(&["max_age"]),
            pruned_by_rows: pruned.with_label_values(&["max_rows"]),
            pruned,
            prune_failures,
        }
    }

    /// `metamcp_audit_rows_total{outcome}`, to register with the telemetry.
    pub fn rows_collector(&self) -> Box<dyn Collector> {
        Box::new(self.rows.clone())
    }

    /// `metamcp_audit_pruned_rows_total{rule}` and `metamcp_audit_prune_failures_total`.
    pub fn retention_collector(&self) -> Box<dyn Collector> {
        Box::new(RetentionFamilies { pruned: self.pruned.clone(), failures: self.prune_failures.clone() })
    }

    /// Rows counted under `outcome` so far (tests).
    pub fn rows(&self, outcome: &str) -> u64 {
        self.rows.with_label_values(&[outcome]).get()
    }

    /// Failed prunings so far (tests).
    pub fn prune_failures(&self) -> u64 {
        self.prune_failures.get()
    }
}

/// The retention's two families as one collector.
struct RetentionFamilies {
    pruned: IntCounterVec,
    failures: IntCounter,
}

impl Collector for RetentionFamilies {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.pruned.desc();
        descs.extend(self.failures.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.pruned.collect();
        families.extend(self.failures.collect());
        families
    }
}

/// Something that happened to the audit log, counted and logged by [`emit`](AuditEvent::emit).
pub trait AuditEvent {
    /// Counts the event in `metrics` and logs it (rate-limited per kind).
    fn emit(self, metrics: &AuditMetrics);
}

/// A batch of rows reached the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRowsWritten {
    /// Rows written.
    pub rows: u64,
}

impl AuditEvent for AuditRowsWritten {
    fn emit(self, metrics: &AuditMetrics) {
        metrics.written.inc_by(self.rows);
    }
}

/// A row arrived at a full audit queue and was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRowDropped;

impl AuditEvent for AuditRowDropped {
    fn emit(self, metrics: &AuditMetrics) {
        metrics.dropped_queue_full.inc();
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(
                suppressed,
                "the audit queue is full; tool_executions rows are dropped (metamcp_audit_rows_total{{outcome=\"dropped_queue_full\"}})"
            );
        }
    }
}

/// A batch could not be written after its retries: its rows are lost.
#[derive(Debug)]
pub struct AuditRowsLost<'a> {
    /// Rows lost.
    pub rows: u64,
    /// Why the last attempt failed.
    pub error: &'a crate::storage::StorageError,
}

impl AuditEvent for AuditRowsLost<'_> {
    fn emit(self, metrics: &AuditMetrics) {
        metrics.dropped_failed.inc_by(self.rows);
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(
                error = %self.error,
                rows = self.rows,
                suppressed,
                "tool_executions rows could not be written and are lost"
            );
        }
    }
}

/// A write was refused for a moment (the database busy or away) and will be tried again.
#[derive(Debug)]
pub struct AuditWriteRetried<'a> {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// Why.
    pub error: &'a crate::storage::StorageError,
}

impl AuditEvent for AuditWriteRetried<'_> {
    fn emit(self, _metrics: &AuditMetrics) {
        tracing::debug!(error = %self.error, attempt = self.attempt, "audit rows not written yet; retrying");
    }
}

/// One pruning of the audit log by the retention rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRowsPruned {
    /// Rows older than `max_age`.
    pub by_age: u64,
    /// Rows beyond `max_rows`.
    pub by_rows: u64,
}

impl AuditEvent for AuditRowsPruned {
    fn emit(self, metrics: &AuditMetrics) {
        metrics.pruned_by_age.inc_by(self.by_age);
        metrics.pruned_by_rows.inc_by(self.by_rows);
        if self.by_age + self.by_rows > 0 {
            tracing::info!(
                older_than_max_age = self.by_age,
                beyond_max_rows = self.by_rows,
                "audit rows pruned (audit.retention)"
            );
        }
    }
}

/// A pruning failed; the next interval tries again.
#[derive(Debug)]
pub struct AuditPruningFailed<'a> {
    /// Why.
    pub error: &'a crate::storage::StorageError,
}

impl AuditEvent for AuditPruningFailed<'_> {
    fn emit(self, metrics: &AuditMetrics) {
        metrics.prune_failures.inc();
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(error = %self.error, suppressed, "the audit log could not be pruned; trying again later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families(collector: Box<dyn Collector>) -> Vec<(String, usize)> {
        collector.collect().iter().map(|f| (f.name().to_owned(), f.get_metric().len())).collect()
    }

    #[test]
    fn every_family_and_child_shows_from_the_start() {
        let metrics = AuditMetrics::new();
        assert_eq!(families(metrics.rows_collector()), [("metamcp_audit_rows_total".to_owned(), 3)]);
        assert_eq!(
            families(metrics.retention_collector()),
            [("metamcp_audit_pruned_rows_total".to_owned(), 2), ("metamcp_audit_prune_failures_total".to_owned(), 1)]
        );
    }

    #[test]
    fn events_count_every_occurrence_though_their_lines_are_rate_limited() {
        let metrics = AuditMetrics::new();
        for _ in 0..5 {
            AuditRowDropped.emit(&metrics);
        }
        let error = crate::storage::StorageError::Unavailable("down".to_owned());
        AuditRowsLost { rows: 3, error: &error }.emit(&metrics);
        AuditRowsLost { rows: 4, error: &error }.emit(&metrics);
        AuditRowsWritten { rows: 2 }.emit(&metrics);
        AuditPruningFailed { error: &error }.emit(&metrics);
        AuditPruningFailed { error: &error }.emit(&metrics);
        AuditRowsPruned { by_age: 1, by_rows: 6 }.emit(&metrics);
        assert_eq!(metrics.rows("dropped_queue_full"), 5);
        assert_eq!(metrics.rows("dropped_failed"), 7);
        assert_eq!(metrics.rows("written"), 2);
        assert_eq!(metrics.prune_failures(), 2);
        assert_eq!((metrics.pruned_by_age.get(), metrics.pruned_by_rows.get()), (1, 6));
    }
}
