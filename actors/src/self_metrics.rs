//! The pipeline's metrics about itself (`{prefix}_*`, the prefix handed in by the library): drops
//! by signal and reason, exports, failures, latency, batch sizes, queue depth and actor restarts.
//!
//! Every handle is resolved once at start-up, so counting on any path is one atomic add, and
//! every label combination is present (at zero) from the first scrape on.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// A kind of telemetry flowing through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Finished spans.
    Traces,
    /// Metric events and metric snapshots.
    Metrics,
    /// Log records.
    Logs,
}

/// How many signals there are: the length of every per-signal table.
pub const SIGNALS: usize = 3;

impl Signal {
    /// Every signal, in index order.
    pub const ALL: [Signal; SIGNALS] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Why an item left the pipeline without being exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A bounded queue was full when the item arrived (or, for pending batches, the oldest made room).
    QueueFull,
    /// The collector rejected the data with a non-retryable answer, or rejected part of it.
    ExportFailedPermanent,
    /// Retryable failures went on past the retry budget.
    RetryExhausted,
    /// The spool was full: its oldest batches made room for newer ones.
    SpoolFull,
    /// A spooled batch outlived `spool.max_age`.
    SpoolExpired,
    /// Shutdown's deadline passed before the item could be exported.
    ShutdownTimeout,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::ExportFailedPermanent,
        DropReason::RetryExhausted,
        DropReason::SpoolFull,
        DropReason::SpoolExpired,
        DropReason::ShutdownTimeout,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ExportFailedPermanent => "export_failed_permanent",
            DropReason::RetryExhausted => "retry_exhausted",
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolExpired => "spool_expired",
            DropReason::ShutdownTimeout => "shutdown_timeout",
        }
    }
}

/// One of the pipeline actors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// The span buffer.
    SpanBuffer,
    /// The metric aggregator.
    MetricAggregator,
    /// The exporter.
    Exporter,
    /// The health check.
    HealthCheck,
    /// The log buffer.
    LogBuffer,
}

impl ActorKind {
    /// Every actor, in index order.
    pub const ALL: [ActorKind; 5] = [
        ActorKind::SpanBuffer,
        ActorKind::MetricAggregator,
        ActorKind::Exporter,
        ActorKind::HealthCheck,
        ActorKind::LogBuffer,
    ];

    /// The label value and the component name in `/health`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActorKind::SpanBuffer => "span_buffer",
            ActorKind::MetricAggregator => "metric_aggregator",
            ActorKind::Exporter => "exporter",
            ActorKind::HealthCheck => "health_check",
            ActorKind::LogBuffer => "log_buffer",
        }
    }
}

/// How an export attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Worth retrying (unavailable, timeout, throttled).
    Retryable,
    /// Not worth retrying; the data is dropped.
    Permanent,
}

impl FailureKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Retryable => "retryable",
            FailureKind::Permanent => "permanent",
        }
    }
}

/// What a span limit drops: attributes (of spans, events and links), events or links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitedItem {
    /// Attributes beyond `max_attributes_per_span`, `_per_event` or `_per_link`.
    Attribute,
    /// Events beyond `max_events_per_span`.
    Event,
    /// Links beyond `max_links_per_span`.
    Link,
}

impl LimitedItem {
    /// Every item kind, in index order.
    pub const ALL: [LimitedItem; 3] = [LimitedItem::Attribute, LimitedItem::Event, LimitedItem::Link];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitedItem::Attribute => "attribute",
            LimitedItem::Event => "event",
            LimitedItem::Link => "link",
        }
    }
}

/// A metric label whose values are capped; values beyond the cap are counted under `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CappedLabel {
    /// `tool_name`, capped by `metrics.max_tool_names`.
    ToolName,
    /// `route`, capped by `metrics.max_routes`.
    Route,
    /// A label of a labelled family (the library's semantic-convention, upstream and rate limit
    /// families), each capped as the family describes.
    Attribute,
}

impl CappedLabel {
    /// Every capped label, in index order.
    pub const ALL: [CappedLabel; 3] = [CappedLabel::ToolName, CappedLabel::Route, CappedLabel::Attribute];

    /// The label value (the name of the capped label).
    pub const fn as_str(self) -> &'static str {
        match self {
            CappedLabel::ToolName => "tool_name",
            CappedLabel::Route => "route",
            CappedLabel::Attribute => "attribute",
        }
    }
}

/// Export latency buckets, in seconds.
pub const EXPORT_DURATION_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Batch size buckets, in items.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 8.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 8192.0];

/// Resolved handles of every self-metric.
#[derive(Debug)]
pub struct SelfMetrics {
    dropped: [[IntCounter; 6]; SIGNALS],
    exported: [IntCounter; SIGNALS],
    export_failures: [[IntCounter; 2]; SIGNALS],
    export_duration: [Histogram; SIGNALS],
    batch_size: [Histogram; SIGNALS],
    consecutive_failures: [IntGauge; SIGNALS],
    last_success: [IntGauge; SIGNALS],
    restarts: [IntCounter; 5],
    collector_up: IntGauge,
    spool: SpoolGauges,
    attributes_truncated: IntCounter,
    span_limit_dropped: [IntCounter; 3],
    label_overflow: [IntCounter; 3],
}

/// The spool's and the exporter's memory figures.
#[derive(Debug)]
pub struct SpoolGauges {
    /// Bytes of encoded requests in the spool (durable and memory fallback together).
    pub bytes: IntGauge,
    /// The spool's configured bound, in bytes.
    pub max_bytes: IntGauge,
    /// Batches in the spool.
    pub batches: IntGauge,
    /// Items in the spool, by signal.
    pub items: [IntGauge; SIGNALS],
    /// Items written to the spool, by signal.
    pub spooled: [IntCounter; SIGNALS],
    /// Spooled items the collector accepted on replay, by signal.
    pub replayed: [IntCounter; SIGNALS],
    /// 1 while batches go to the in-memory spool because the database spool is unavailable.
    pub fallback: IntGauge,
    /// Bytes of encoded batches the exporter holds in memory (waiting or in flight).
    pub buffered_bytes: IntGauge,
    /// The bound of those bytes.
    pub buffered_max_bytes: IntGauge,
}

fn per_signal<T>(f: impl Fn(Signal) -> T) -> [T; SIGNALS] {
    Signal::ALL.map(f)
}

impl SelfMetrics {
    /// Creates every self-metric, named `{prefix}_…`, and registers it in `registry`.
    pub fn register(registry: &Registry, prefix: &str) -> Result<Arc<Self>, prometheus::Error> {
        let name = |suffix: &str| format!("{prefix}_{suffix}");
        let dropped = IntCounterVec::new(
            Opts::new(name("dropped_total"), "Telemetry items dropped, by signal and reason."),
            &["signal", "reason"],
        )?;
        let exported = IntCounterVec::new(
            Opts::new(name("exported_total"), "Telemetry items the collector accepted, by signal."),
            &["signal"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(name("export_failures_total"), "Failed export attempts, by signal and kind."),
            &["signal", "kind"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(name("export_duration_seconds"), "Duration of one export attempt.")
                .buckets(EXPORT_DURATION_BUCKETS.to_vec()),
            &["signal"],
        )?;
        let batch = HistogramVec::new(
            HistogramOpts::new(name("batch_size"), "Items per export batch.").buckets(BATCH_SIZE_BUCKETS.to_vec()),
            &["signal"],
        )?;
        let consecutive = IntGaugeVec::new(
            Opts::new(
                name("export_consecutive_failures"),
                "Export attempts that failed in a row, by signal (0 after a success).",
            ),
            &["signal"],
        )?;
        let last_success = IntGaugeVec::new(
            Opts::new(
                name("last_export_success_timestamp_seconds"),
                "Unix time of the last accepted export, by signal (0: none yet).",
            ),
            &["signal"],
        )?;
        let restarts = IntCounterVec::new(
            Opts::new(name("actor_restarts_total"), "Pipeline actor restarts after a panic."),
            &["actor"],
        )?;
        let collector_up = IntGauge::new(
            name("collector_up"),
            "1 while the OTLP collector answers, 0 once it is judged unreachable.",
        )?;
        let attributes_truncated = IntCounter::new(
            name("attributes_truncated_total"),
            "Span attribute values, span and event names and status messages cut to span_limits.max_attribute_value_length before export.",
        )?;
        let span_limit_dropped = IntCounterVec::new(
            Opts::new(
                name("span_limit_dropped_total"),
                "Span attributes, events and links dropped by the span_limits count limits, by item.",
            ),
            &["item"],
        )?;
        let label_overflow = IntCounterVec::new(
            Opts::new(
                name("label_overflow_total"),
                "Metric events whose label value was counted under \"other\" because its cap was reached, by label.",
            ),
            &["label"],
        )?;
        registry.register(Box::new(attributes_truncated.clone()))?;
        registry.register(Box::new(span_limit_dropped.clone()))?;
        registry.register(Box::new(label_overflow.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(exported.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(batch.clone()))?;
        registry.register(Box::new(consecutive.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(collector_up.clone()))?;
        collector_up.set(1);
        let spool = SpoolGauges::register(registry, prefix)?;
        Ok(Arc::new(Self {
            dropped: per_signal(|s| DropReason::ALL.map(|r| dropped.with_label_values(&[s.as_str(), r.as_str()]))),
            exported: per_signal(|s| exported.with_label_values(&[s.as_str()])),
            export_failures: per_signal(|s| {
                [FailureKind::Retryable, FailureKind::Permanent]
                    .map(|k| failures.with_label_values(&[s.as_str(), k.as_str()]))
            }),
            export_duration: per_signal(|s| duration.with_label_values(&[s.as_str()])),
            batch_size: per_signal(|s| batch.with_label_values(&[s.as_str()])),
            consecutive_failures: per_signal(|s| consecutive.with_label_values(&[s.as_str()])),
            last_success: per_signal(|s| last_success.with_label_values(&[s.as_str()])),
            restarts: ActorKind::ALL.map(|a| restarts.with_label_values(&[a.as_str()])),
            collector_up,
            spool,
            attributes_truncated,
            span_limit_dropped: LimitedItem::ALL.map(|i| span_limit_dropped.with_label_values(&[i.as_str()])),
            label_overflow: CappedLabel::ALL.map(|l| label_overflow.with_label_values(&[l.as_str()])),
        }))
    }

    /// Handles registered nowhere, for tests and for callers that keep no registry.
    pub fn unregistered() -> Arc<Self> {
        // A private registry cannot collide with anything; registration cannot fail.
        Self::register(&Registry::new(), "pipeline")
            .unwrap_or_else(|err| unreachable!("fresh registry rejected a metric: {err}"))
    }

    /// The drop counter for `signal` and `reason`.
    pub fn dropped(&self, signal: Signal, reason: DropReason) -> &IntCounter {
        &self.dropped[signal.index()][reason as usize]
    }

    /// Items dropped for `signal`, by reason.
    pub fn dropped_by_reason(&self, signal: Signal) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().map(|&r| (r, self.dropped(signal, r).get())).collect()
    }

    /// Items dropped for `signal`, all reasons together.
    pub fn dropped_total(&self, signal: Signal) -> u64 {
        self.dropped[signal.index()].iter().map(IntCounter::get).sum()
    }

    /// The exported-items counter for `signal`.
    pub fn exported(&self, signal: Signal) -> &IntCounter {
        &self.exported[signal.index()]
    }

    /// The failed-attempts counter for `signal` and `kind`.
    pub fn export_failures(&self, signal: Signal, kind: FailureKind) -> &IntCounter {
        &self.export_failures[signal.index()][kind as usize]
    }

    /// The export latency histogram for `signal`.
    pub fn export_duration(&self, signal: Signal) -> &Histogram {
        &self.export_duration[signal.index()]
    }

    /// The batch size histogram for `signal`.
    pub fn batch_size(&self, signal: Signal) -> &Histogram {
        &self.batch_size[signal.index()]
    }

    /// Consecutive failed attempts for `signal`.
    pub fn consecutive_failures(&self, signal: Signal) -> &IntGauge {
        &self.consecutive_failures[signal.index()]
    }

    /// Unix time (seconds) of the last accepted export for `signal`.
    pub fn last_success(&self, signal: Signal) -> &IntGauge {
        &self.last_success[signal.index()]
    }

    /// The restart counter of `actor`.
    pub fn restarts(&self, actor: ActorKind) -> &IntCounter {
        &self.restarts[actor as usize]
    }

    /// Span attribute values cut to the length limit.
    pub fn attributes_truncated(&self) -> &IntCounter {
        &self.attributes_truncated
    }

    /// Items of `kind` dropped by the span count limits.
    pub fn span_limit_dropped(&self, kind: LimitedItem) -> &IntCounter {
        &self.span_limit_dropped[kind as usize]
    }

    /// Metric events whose `label` was folded into `other`.
    pub fn label_overflow(&self, label: CappedLabel) -> &IntCounter {
        &self.label_overflow[label as usize]
    }

    /// 1 while the collector answers, 0 while it is judged unreachable.
    pub fn collector_up(&self) -> &IntGauge {
        &self.collector_up
    }

    /// The spool and memory figures.
    pub fn spool(&self) -> &SpoolGauges {
        &self.spool
    }
}

impl SpoolGauges {
    fn register(registry: &Registry, prefix: &str) -> Result<Self, prometheus::Error> {
        let name = |suffix: &str| format!("{prefix}_{suffix}");
        let gauge = |name: String, help: &str| -> Result<IntGauge, prometheus::Error> {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let items = IntGaugeVec::new(
            Opts::new(name("spool_items"), "Telemetry items waiting in the spool, by signal."),
            &["signal"],
        )?;
        let spooled = IntCounterVec::new(
            Opts::new(name("spooled_total"), "Telemetry items written to the spool, by signal."),
            &["signal"],
        )?;
        let replayed = IntCounterVec::new(
            Opts::new(name("replayed_total"), "Spooled telemetry items the collector accepted on replay, by signal."),
            &["signal"],
        )?;
        registry.register(Box::new(items.clone()))?;
        registry.register(Box::new(spooled.clone()))?;
        registry.register(Box::new(replayed.clone()))?;
        Ok(Self {
            bytes: gauge(name("spool_bytes"), "Bytes of encoded export requests in the spool.")?,
            max_bytes: gauge(name("spool_max_bytes"), "The spool's bound, in bytes (spool.max_bytes).")?,
            batches: gauge(name("spool_batches"), "Export batches waiting in the spool.")?,
            items: per_signal(|s| items.with_label_values(&[s.as_str()])),
            spooled: per_signal(|s| spooled.with_label_values(&[s.as_str()])),
            replayed: per_signal(|s| replayed.with_label_values(&[s.as_str()])),
            fallback: gauge(
                name("spool_fallback"),
                "1 while the spool keeps batches in memory because its database is unavailable.",
            )?,
            buffered_bytes: gauge(
                name("buffered_bytes"),
                "Bytes of encoded export batches the exporter holds in memory (waiting or in flight).",
            )?,
            buffered_max_bytes: gauge(
                name("buffered_max_bytes"),
                "The bound of the exporter's in-memory batches, in bytes (exporter.max_pending_bytes).",
            )?,
        })
    }
}

/// A probe that reads a queue's current depth.
pub type DepthProbe = Box<dyn Fn() -> usize + Send + Sync>;

/// Queue depth and capacity gauges, read from the queues themselves at scrape time.
pub struct QueueGauges {
    depth: IntGaugeVec,
    capacity: IntGaugeVec,
    bytes: IntGaugeVec,
    max_bytes: IntGaugeVec,
    probes: Vec<(&'static str, usize, DepthProbe)>,
    byte_probes: Vec<(&'static str, usize, DepthProbe)>,
}

impl std::fmt::Debug for QueueGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueGauges").field("queues", &self.probes.iter().map(|p| p.0).collect::<Vec<_>>()).finish()
    }
}

impl QueueGauges {
    /// Gauges named `{prefix}_queue_*` for the given queues: `(name, capacity, depth probe)`.
    pub fn new(prefix: &str, probes: Vec<(&'static str, usize, DepthProbe)>) -> Result<Self, prometheus::Error> {
        let name = |suffix: &str| format!("{prefix}_{suffix}");
        Ok(Self {
            depth: IntGaugeVec::new(Opts::new(name("queue_depth"), "Items waiting in a pipeline queue."), &["queue"])?,
            capacity: IntGaugeVec::new(Opts::new(name("queue_capacity"), "Capacity of a pipeline queue."), &["queue"])?,
            bytes: IntGaugeVec::new(
                Opts::new(name("queue_bytes"), "Estimated bytes of the items waiting in a pipeline queue."),
                &["queue"],
            )?,
            max_bytes: IntGaugeVec::new(
                Opts::new(name("queue_max_bytes"), "Bound of a pipeline queue in bytes."),
                &["queue"],
            )?,
            probes,
            byte_probes: Vec::new(),
        })
    }

    /// Adds byte gauges for the given queues: `(name, bound in bytes, bytes probe)`.
    pub fn with_bytes(mut self, probes: Vec<(&'static str, usize, DepthProbe)>) -> Self {
        self.byte_probes = probes;
        self
    }
}

impl Collector for QueueGauges {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.depth.desc();
        descs.extend(self.capacity.desc());
        descs.extend(self.bytes.desc());
        descs.extend(self.max_bytes.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for (name, capacity, probe) in &self.probes {
            self.depth.with_label_values(&[name]).set(probe() as i64);
            self.capacity.with_label_values(&[name]).set(*capacity as i64);
        }
        for (name, bound, probe) in &self.byte_probes {
            self.bytes.with_label_values(&[name]).set(probe() as i64);
            self.max_bytes.with_label_values(&[name]).set(*bound as i64);
        }
        let mut families = self.depth.collect();
        families.extend(self.capacity.collect());
        if !self.byte_probes.is_empty() {
            families.extend(self.bytes.collect());
            families.extend(self.max_bytes.collect());
        }
        families
    }
}
