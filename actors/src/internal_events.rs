//! The pipeline's events about itself, one type each: a batch received, exported, rejected or
//! dropped, an export failed or throttled, the collector gone or back, the spool falling back to
//! memory or recovering, a batch spooled or replayed, an actor restarted.
//!
//! `emit()` both counts the event in the self-metrics (`{prefix}_*`, names and labels
//! unchanged) and logs it. A log line is written at the first occurrence of its kind and then at
//! most once per [`LOG_INTERVAL`], saying how many were left out meanwhile: an outage that fails
//! a thousand exports writes a line a minute, not a thousand. Counting is never rate-limited.
//!
//! The exporter's state machine returns these events as actions; its actor emits them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::self_metrics::{ActorKind, DropReason, FailureKind, SelfMetrics, Signal};
use crate::spool::SpoolError;

/// Shortest interval between two log lines of one kind.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Something that happened in the pipeline, counted and logged by [`emit`](InternalEvent::emit).
pub trait InternalEvent {
    /// Counts the event in `metrics` and logs it (rate-limited per kind).
    fn emit(self, metrics: &SelfMetrics);
}

/// The rate limit of one kind of log line: the first line passes, then one per [`LOG_INTERVAL`].
#[derive(Debug)]
pub struct LogLimit {
    /// Milliseconds since [`epoch`] of the last line, plus one (0: no line yet).
    last_ms: AtomicU64,
    /// Lines left out since the last one written.
    suppressed: AtomicU64,
}

impl LogLimit {
    /// A limit that lets the next line through.
    pub const fn new() -> Self {
        Self { last_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(lines left out since the last one)` when a line may be written now.
    pub fn check(&self) -> Option<u64> {
        self.check_at(epoch().elapsed())
    }

    /// [`check`](Self::check) at `since_epoch`.
    fn check_at(&self, since_epoch: Duration) -> Option<u64> {
        let now = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval
            || self.last_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl Default for LogLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// The instant the rate limits measure from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn unix_seconds_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A batch reached the exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReceived {
    /// Its signal.
    pub signal: Signal,
    /// Items in it.
    pub items: u64,
}

impl InternalEvent for BatchReceived {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.batch_size(self.signal).observe(self.items as f64);
    }
}

/// Items left the pipeline without being exported.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchDropped {
    /// Their signal.
    pub signal: Signal,
    /// Batches they were in.
    pub batches: u64,
    /// Items dropped.
    pub items: u64,
    /// Why.
    pub reason: DropReason,
}

impl InternalEvent for BatchDropped {
    fn emit(self, metrics: &SelfMetrics) {
        if self.items == 0 {
            return;
        }
        metrics.dropped(self.signal, self.reason).inc_by(self.items);
        static LIMITS: [[LogLimit; 6]; crate::self_metrics::SIGNALS] =
            [const { [const { LogLimit::new() }; 6] }; crate::self_metrics::SIGNALS];
        let Some(suppressed) = LIMITS[self.signal as usize][self.reason as usize].check() else { return };
        let message = match self.reason {
            DropReason::QueueFull => "the exporter's memory is full; telemetry dropped per exporter.when_full",
            DropReason::ExportFailedPermanent => "the collector rejected part of an export; those items are dropped",
            DropReason::RetryExhausted => "retries ran out; the batch is dropped",
            DropReason::SpoolFull | DropReason::SpoolExpired => "spooled telemetry removed by the spool's bound",
            DropReason::ShutdownTimeout => "shutdown deadline passed; telemetry left unexported is dropped",
        };
        tracing::warn!(
            signal = self.signal.as_str(),
            batches = self.batches,
            items = self.items,
            reason = self.reason.as_str(),
            suppressed,
            "{message}"
        );
    }
}

/// The collector accepted an export (maybe in part).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchExported {
    /// Its signal.
    pub signal: Signal,
    /// Items the collector accepted.
    pub items: u64,
    /// Items it rejected (partial success); dropped as `export_failed_permanent`.
    pub rejected: u64,
    /// How long the attempt took.
    pub duration: Duration,
    /// The batch came from the spool.
    pub replayed: bool,
}

impl InternalEvent for BatchExported {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.export_duration(self.signal).observe(self.duration.as_secs_f64());
        metrics.exported(self.signal).inc_by(self.items);
        metrics.consecutive_failures(self.signal).set(0);
        metrics.last_success(self.signal).set(unix_seconds_now());
        if self.replayed {
            metrics.spool().replayed[self.signal as usize].inc_by(self.items);
        }
        BatchDropped {
            signal: self.signal,
            batches: 1,
            items: self.rejected,
            reason: DropReason::ExportFailedPermanent,
        }
        .emit(metrics);
    }
}

/// The collector refused an export for good: the batch is dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRejected {
    /// Its signal.
    pub signal: Signal,
    /// Items in the batch.
    pub items: u64,
    /// The collector's answer.
    pub reason: String,
    /// How long the attempt took.
    pub duration: Duration,
}

impl InternalEvent for ExportRejected {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.export_duration(self.signal).observe(self.duration.as_secs_f64());
        metrics.export_failures(self.signal, FailureKind::Permanent).inc();
        metrics.dropped(self.signal, DropReason::ExportFailedPermanent).inc_by(self.items);
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(
                signal = self.signal.as_str(),
                items = self.items,
                reason = %self.reason,
                suppressed,
                "collector rejected an export; the batch is dropped"
            );
        }
    }
}

/// An export failed in a way worth retrying (no answer, timeout, unavailable).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportFailed {
    /// Its signal.
    pub signal: Signal,
    /// What went wrong.
    pub reason: String,
    /// How long the attempt took.
    pub duration: Duration,
}

impl InternalEvent for ExportFailed {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.export_duration(self.signal).observe(self.duration.as_secs_f64());
        metrics.export_failures(self.signal, FailureKind::Retryable).inc();
        metrics.consecutive_failures(self.signal).inc();
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(signal = self.signal.as_str(), reason = %self.reason, suppressed, "an export failed; it is retried");
        }
    }
}

/// The collector asked to come back later (HTTP 429 with `Retry-After`, gRPC `RetryInfo`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportThrottled {
    /// Its signal.
    pub signal: Signal,
    /// The collector's answer.
    pub reason: String,
    /// The delay it asked for.
    pub retry_after: Duration,
    /// How long the attempt took.
    pub duration: Duration,
}

impl InternalEvent for ExportThrottled {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.export_duration(self.signal).observe(self.duration.as_secs_f64());
        metrics.export_failures(self.signal, FailureKind::Retryable).inc();
        metrics.consecutive_failures(self.signal).inc();
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(
                signal = self.signal.as_str(),
                reason = %self.reason,
                retry_after = %humantime::format_duration(self.retry_after),
                suppressed,
                "the collector asks to slow down; the batch is retried after its delay"
            );
        }
    }
}

/// The collector is judged unreachable (`exporter.unreachable_after` failures in a row).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorUnreachable {
    /// The configured endpoint.
    pub endpoint: String,
    /// The last failure.
    pub reason: String,
}

impl InternalEvent for CollectorUnreachable {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.collector_up().set(0);
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(
                endpoint = %crate::redact::redact(&self.endpoint),
                reason = %self.reason,
                suppressed,
                "OTLP collector unreachable; telemetry is kept and retried until it answers"
            );
        }
    }
}

/// The collector answers again.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorBack {
    /// The configured endpoint.
    pub endpoint: String,
    /// How long it was unreachable.
    pub down_for: Duration,
    /// Batches waiting in the spool.
    pub spooled_batches: u64,
}

impl InternalEvent for CollectorBack {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.collector_up().set(1);
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(
                endpoint = %crate::redact::redact(&self.endpoint),
                unreachable_for = %humantime::format_duration(Duration::from_secs(self.down_for.as_secs())),
                spooled_batches = self.spooled_batches,
                suppressed,
                "OTLP collector reachable again; replaying the spool"
            );
        }
    }
}

/// Items were written to the spool (or are on their way to it).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpooled {
    /// Their signal.
    pub signal: Signal,
    /// Items spooled.
    pub items: u64,
}

impl InternalEvent for BatchSpooled {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.spool().spooled[self.signal as usize].inc_by(self.items);
    }
}

/// The spool's database failed: batches are kept in memory until it answers again.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolFallback {
    /// The database's error.
    pub error: SpoolError,
}

impl InternalEvent for SpoolFallback {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.spool().fallback.set(1);
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(
                error = %self.error,
                suppressed,
                "the spool's database is unavailable; batches are kept in memory"
            );
        }
    }
}

/// The spool's database answers again.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolRecovered;

impl InternalEvent for SpoolRecovered {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.spool().fallback.set(0);
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(suppressed, "the spool's database answers again");
        }
    }
}

/// The last write at the shutdown deadline failed: its batches are dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownSpoolFailed {
    /// The database's error.
    pub error: SpoolError,
}

impl InternalEvent for ShutdownSpoolFailed {
    fn emit(self, _metrics: &SelfMetrics) {
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(error = %self.error, suppressed, "cannot spool at shutdown; the batches are dropped");
        }
    }
}

/// A durable spool was attached to the exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolAttached {
    /// Its backend (`sqlite`, `postgresql`).
    pub backend: &'static str,
}

impl InternalEvent for SpoolAttached {
    fn emit(self, _metrics: &SelfMetrics) {
        tracing::info!(backend = self.backend, "durable spool attached");
    }
}

/// A blocking spool call panicked; the exporter makes it again.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolCallPanicked {
    /// The panic's text.
    pub error: String,
}

impl InternalEvent for SpoolCallPanicked {
    fn emit(self, _metrics: &SelfMetrics) {
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.check() {
            tracing::error!(error = %self.error, suppressed, "a spool call panicked; it is retried");
        }
    }
}

/// The OTLP transport could not be built: nothing is exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportUnavailable {
    /// Why.
    pub error: String,
}

impl InternalEvent for TransportUnavailable {
    fn emit(self, _metrics: &SelfMetrics) {
        tracing::error!(error = %self.error, "cannot build the OTLP transport; exports are disabled");
    }
}

/// A pipeline actor panicked inside a handler; its supervisor restarts it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorPanicked {
    /// Which actor.
    pub actor: ActorKind,
    /// The panic's text.
    pub panic: String,
}

impl ActorPanicked {
    /// Logs the panic (it has no metric of its own: the restart that follows is counted).
    pub fn log(self) {
        static LIMITS: [LogLimit; ActorKind::ALL.len()] = [const { LogLimit::new() }; ActorKind::ALL.len()];
        if let Some(suppressed) = LIMITS[self.actor as usize].check() {
            tracing::error!(
                actor = self.actor.as_str(),
                panic = %self.panic,
                suppressed,
                "pipeline actor panicked; restarting it"
            );
        }
    }
}

impl InternalEvent for ActorPanicked {
    fn emit(self, _metrics: &SelfMetrics) {
        self.log();
    }
}

/// A pipeline actor was restarted by its supervisor.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorRestarted {
    /// Which actor.
    pub actor: ActorKind,
}

impl InternalEvent for ActorRestarted {
    fn emit(self, metrics: &SelfMetrics) {
        metrics.restarts(self.actor).inc();
    }
}

/// Every event the exporter reports, as the value its state machine returns.
#[derive(Debug, Clone, PartialEq)]
pub enum ExporterEvent {
    /// See [`BatchReceived`].
    Received(BatchReceived),
    /// See [`BatchDropped`].
    Dropped(BatchDropped),
    /// See [`BatchExported`].
    Exported(BatchExported),
    /// See [`ExportRejected`].
    Rejected(ExportRejected),
    /// See [`ExportFailed`].
    Failed(ExportFailed),
    /// See [`ExportThrottled`].
    Throttled(ExportThrottled),
    /// See [`CollectorUnreachable`].
    Unreachable(CollectorUnreachable),
    /// See [`CollectorBack`].
    Back(CollectorBack),
    /// See [`BatchSpooled`].
    Spooled(BatchSpooled),
    /// See [`SpoolFallback`].
    Fallback(SpoolFallback),
    /// See [`SpoolRecovered`].
    Recovered(SpoolRecovered),
    /// See [`ShutdownSpoolFailed`].
    ShutdownSpoolFailed(ShutdownSpoolFailed),
    /// See [`SpoolAttached`].
    Attached(SpoolAttached),
}

impl InternalEvent for ExporterEvent {
    fn emit(self, metrics: &SelfMetrics) {
        match self {
            ExporterEvent::Received(e) => e.emit(metrics),
            ExporterEvent::Dropped(e) => e.emit(metrics),
            ExporterEvent::Exported(e) => e.emit(metrics),
            ExporterEvent::Rejected(e) => e.emit(metrics),
            ExporterEvent::Failed(e) => e.emit(metrics),
            ExporterEvent::Throttled(e) => e.emit(metrics),
            ExporterEvent::Unreachable(e) => e.emit(metrics),
            ExporterEvent::Back(e) => e.emit(metrics),
            ExporterEvent::Spooled(e) => e.emit(metrics),
            ExporterEvent::Fallback(e) => e.emit(metrics),
            ExporterEvent::Recovered(e) => e.emit(metrics),
            ExporterEvent::ShutdownSpoolFailed(e) => e.emit(metrics),
            ExporterEvent::Attached(e) => e.emit(metrics),
        }
    }
}

macro_rules! into_exporter_event {
    ($($variant:ident($ty:ident)),* $(,)?) => {
        $(impl From<$ty> for ExporterEvent {
            fn from(event: $ty) -> Self {
                ExporterEvent::$variant(event)
            }
        })*
    };
}

into_exporter_event!(
    Received(BatchReceived),
    Dropped(BatchDropped),
    Exported(BatchExported),
    Rejected(ExportRejected),
    Failed(ExportFailed),
    Throttled(ExportThrottled),
    Unreachable(CollectorUnreachable),
    Back(CollectorBack),
    Spooled(BatchSpooled),
    Fallback(SpoolFallback),
    Recovered(SpoolRecovered),
    ShutdownSpoolFailed(ShutdownSpoolFailed),
    Attached(SpoolAttached),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_passes_then_one_per_interval_with_the_count_left_out() {
        let limit = LogLimit::new();
        assert_eq!(limit.check_at(Duration::from_secs(5)), Some(0), "the first occurrence is logged");
        assert_eq!(limit.check_at(Duration::from_secs(6)), None);
        assert_eq!(limit.check_at(Duration::from_secs(64)), None, "59 s after the last line");
        assert_eq!(limit.check_at(Duration::from_secs(65)), Some(2), "a minute later, with the two left out");
        assert_eq!(limit.check_at(Duration::from_secs(66)), None);
    }

    #[test]
    fn emit_counts_every_occurrence_whatever_the_log_limit() {
        let metrics = SelfMetrics::unregistered();
        for _ in 0..3 {
            BatchDropped { signal: Signal::Metrics, batches: 1, items: 4, reason: DropReason::RetryExhausted }
                .emit(&metrics);
        }
        assert_eq!(metrics.dropped(Signal::Metrics, DropReason::RetryExhausted).get(), 12);
        ExporterEvent::from(BatchExported {
            signal: Signal::Traces,
            items: 7,
            rejected: 3,
            duration: Duration::from_millis(5),
            replayed: true,
        })
        .emit(&metrics);
        assert_eq!(metrics.exported(Signal::Traces).get(), 7);
        assert_eq!(metrics.spool().replayed[Signal::Traces as usize].get(), 7);
        assert_eq!(metrics.dropped(Signal::Traces, DropReason::ExportFailedPermanent).get(), 3);
        ExportRejected { signal: Signal::Traces, items: 2, reason: "HTTP 400".into(), duration: Duration::ZERO }
            .emit(&metrics);
        assert_eq!(metrics.export_failures(Signal::Traces, FailureKind::Permanent).get(), 1);
        assert_eq!(metrics.dropped(Signal::Traces, DropReason::ExportFailedPermanent).get(), 5);
        CollectorUnreachable { endpoint: "http://c:4317".into(), reason: "refused".into() }.emit(&metrics);
        assert_eq!(metrics.collector_up().get(), 0);
        CollectorBack { endpoint: "http://c:4317".into(), down_for: Duration::from_secs(3), spooled_batches: 0 }
            .emit(&metrics);
        assert_eq!(metrics.collector_up().get(), 1);
    }
}
