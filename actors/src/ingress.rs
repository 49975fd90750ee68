//! The doors into the pipeline: bounded crossbeam channels fed with `try_send`.
//!
//! [`SpanIngress`] is an `opentelemetry_sdk` span processor whose `on_end` hands the finished
//! span to the span buffer; [`MetricIngress`] takes the events behind `record_request`,
//! `record_tool_execution` and `record_vector_search`. Neither ever blocks nor awaits: a full
//! channel drops the item and counts it at once.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use prometheus::IntCounter;
use tokio::sync::Notify;

pub use crate::labels::LabelValue;
use crate::self_metrics::{DropReason, SelfMetrics, Signal};
pub use crate::span_ref::SpanRef;

/// How often (in sends, per thread) a producer looks at the queue depth to decide whether to wake
/// the consumer early. Reading the depth touches the consumer's cache line, so it is not done on
/// every send; a full batch therefore leaves within this many sends of filling, or at the tick.
const DEPTH_CHECK_EVERY: u32 = 16;

thread_local! {
    /// Sends on this thread, per signal: one count shared by the signals would let a request's
    /// span and metric event (always sent in the same order) fall on fixed parities, so that one
    /// signal's depth check never ran and its consumer was woken only by a full queue or its tick.
    static SENDS: [std::cell::Cell<u32>; crate::self_metrics::SIGNALS] =
        const { [const { std::cell::Cell::new(0) }; crate::self_metrics::SIGNALS] };
}

/// True on every `every`-th send of `signal` on this thread.
#[inline]
fn depth_check_due(signal: Signal, every: u32) -> bool {
    SENDS.with(|sends| {
        let sends = &sends[signal as usize];
        let n = sends.get().wrapping_add(1);
        sends.set(n);
        n % every == 0
    })
}

/// A database system, as in the `db.system.name` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbSystem {
    /// `sqlite`
    Sqlite,
    /// `postgresql`
    Postgresql,
}

impl DbSystem {
    /// The attribute and label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgresql => "postgresql",
        }
    }
}

/// A database operation, a bounded label: the first keyword of the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbOperation {
    /// `SELECT`
    Select,
    /// `INSERT`
    Insert,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`
    Transaction,
    /// Anything else (DDL, `PRAGMA`, …).
    Other,
}

impl DbOperation {
    /// Every operation, in declaration order.
    pub const ALL: [DbOperation; 6] = [
        DbOperation::Select,
        DbOperation::Insert,
        DbOperation::Update,
        DbOperation::Delete,
        DbOperation::Transaction,
        DbOperation::Other,
    ];

    /// The operation of `sql`, from its first keyword (a leading `WITH` counts as `SELECT`).
    pub fn of_statement(sql: &str) -> Self {
        let word = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
        match word.to_ascii_uppercase().as_str() {
            "SELECT" | "WITH" => Self::Select,
            "INSERT" => Self::Insert,
            "UPDATE" => Self::Update,
            "DELETE" => Self::Delete,
            "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "END" => Self::Transaction,
            _ => Self::Other,
        }
    }

    /// The attribute and label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Select => "SELECT",
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Transaction => "TRANSACTION",
            Self::Other => "other",
        }
    }
}

/// An HTTP request method, with every non-standard method folded into `_OTHER` (HTTP semantic
/// conventions), so the label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// CONNECT
    Connect,
    /// OPTIONS
    Options,
    /// TRACE
    Trace,
    /// PATCH
    Patch,
    /// Anything else.
    Other,
}

impl HttpMethod {
    /// Classifies a method name (case-sensitive, as HTTP methods are).
    #[inline]
    pub fn parse(method: &str) -> Self {
        match method {
            "GET" => HttpMethod::Get,
            "HEAD" => HttpMethod::Head,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "DELETE" => HttpMethod::Delete,
            "CONNECT" => HttpMethod::Connect,
            "OPTIONS" => HttpMethod::Options,
            "TRACE" => HttpMethod::Trace,
            "PATCH" => HttpMethod::Patch,
            _ => HttpMethod::Other,
        }
    }

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Connect => "CONNECT",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Trace => "TRACE",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Other => "_OTHER",
        }
    }
}

/// One measurement on its way to the metric aggregator.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricEvent {
    /// A served HTTP request.
    Request {
        /// Request method.
        method: HttpMethod,
        /// Matched route template (`unmatched` when none matched).
        route: LabelValue,
        /// Response status code.
        status_code: u16,
        /// Time from request to response, in seconds.
        duration: f64,
        /// The request's sampled server span, for an exemplar.
        exemplar: Option<SpanRef>,
    },
    /// A tool call.
    ToolExecution {
        /// Tool name.
        tool_name: LabelValue,
        /// Whether the call succeeded.
        success: bool,
        /// Duration in seconds.
        duration: f64,
        /// The call's sampled span, for an exemplar.
        exemplar: Option<SpanRef>,
    },
    /// A database query.
    DbQuery {
        /// The database system, as in `db.system.name` (`sqlite`, `postgresql`).
        system: DbSystem,
        /// The operation, as in `db.operation.name` (`SELECT`, `INSERT`, …; `other` beyond them).
        operation: DbOperation,
        /// Whether the query succeeded.
        success: bool,
        /// Duration in seconds.
        duration: f64,
    },
    /// A measurement of a family the library describes (boxed: it carries up to eight labels,
    /// and the other events stay small).
    Labelled(Box<crate::labels::LabelledEvent>),
    /// A vector search over the tools registry.
    VectorSearch {
        /// Length of the query in characters.
        query_length: u32,
        /// Number of results returned.
        result_count: u32,
        /// Duration in seconds.
        duration: f64,
    },
}

/// Wakes an actor that waits for its queue to reach a threshold, without busy polling.
#[derive(Debug, Default)]
pub struct Wake {
    notify: Notify,
    pending: AtomicBool,
}

impl Wake {
    /// Wakes the waiting actor once; further calls before it drains are free.
    #[inline]
    pub fn wake(&self) {
        // A plain load first: while a wake-up is pending, callers only read the shared flag.
        if !self.pending.load(Ordering::Relaxed) && !self.pending.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Waits for the next wake-up and re-arms.
    pub async fn woken(&self) {
        self.notify.notified().await;
        self.pending.store(false, Ordering::Release);
    }
}

/// Depth checks often enough that a threshold smaller than the usual interval still wakes the
/// consumer on time.
fn check_interval(wake_threshold: usize) -> u32 {
    (wake_threshold.clamp(1, DEPTH_CHECK_EVERY as usize)) as u32
}

/// The sending side of one bounded channel: `try_send`, a drop counted at once when it is full,
/// and a wake-up for the consumer once the queue reaches its threshold.
pub struct Door<T> {
    tx: Sender<T>,
    signal: Signal,
    wake: Arc<Wake>,
    wake_threshold: usize,
    check_every: u32,
    dropped_full: IntCounter,
    dropped_closed: IntCounter,
}

impl<T> Clone for Door<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            signal: self.signal,
            wake: self.wake.clone(),
            wake_threshold: self.wake_threshold,
            check_every: self.check_every,
            dropped_full: self.dropped_full.clone(),
            dropped_closed: self.dropped_closed.clone(),
        }
    }
}

impl<T> fmt::Debug for Door<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Door").field("queued", &self.tx.len()).field("capacity", &self.tx.capacity()).finish()
    }
}

impl<T> Door<T> {
    /// A bounded channel of `capacity` for `signal`: its door, its receiving end, and the wake-up
    /// the consumer waits on.
    pub(crate) fn open(
        capacity: usize,
        wake_threshold: usize,
        signal: Signal,
        metrics: &SelfMetrics,
    ) -> (Self, Receiver<T>, Arc<Wake>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let wake = Arc::new(Wake::default());
        let door = Self {
            tx,
            signal,
            wake: wake.clone(),
            wake_threshold: wake_threshold.max(1),
            check_every: check_interval(wake_threshold),
            dropped_full: metrics.dropped(signal, DropReason::QueueFull).clone(),
            dropped_closed: metrics.dropped(signal, DropReason::ShutdownTimeout).clone(),
        };
        (door, rx, wake)
    }

    /// Hands `item` to the consumer; never blocks. Returns false if it was dropped (and counted).
    #[inline]
    pub fn send(&self, item: T) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => {
                if depth_check_due(self.signal, self.check_every) && self.tx.len() >= self.wake_threshold {
                    self.wake.wake();
                }
                true
            }
            Err(TrySendError::Full(_)) => {
                self.dropped_full.inc();
                self.wake.wake();
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped_closed.inc();
                false
            }
        }
    }

    /// Items waiting in the channel.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Counts an item refused before it reached the channel (a byte bound), as a full queue.
    #[inline]
    pub(crate) fn refuse(&self) {
        self.dropped_full.inc();
        self.wake.wake();
    }
}

/// A stream that yields once per wake-up, for an actor's `add_stream`.
pub fn woken_stream(wake: Arc<Wake>) -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold(wake, |wake| async move {
        wake.woken().await;
        Some(((), wake))
    })
}

/// The bytes the spans in the span channel take, against a bound: the channel is bounded by count
/// and by bytes, so a burst of large spans cannot take more memory than configured.
#[derive(Debug)]
pub struct QueueBytes {
    used: AtomicUsize,
    limit: usize,
}

impl QueueBytes {
    /// An empty account with a bound of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { used: AtomicUsize::new(0), limit }
    }

    /// Reserves `size` bytes; false (and nothing reserved) when that would pass the bound.
    #[inline]
    pub fn reserve(&self, size: usize) -> bool {
        let before = self.used.fetch_add(size, Ordering::Relaxed);
        if before + size > self.limit {
            self.used.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back `size` bytes (spans that left the channel).
    #[inline]
    pub fn release(&self, size: usize) {
        self.used.fetch_sub(size, Ordering::Relaxed);
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// What a finished span takes in memory, estimated from its parts: the fixed struct, its name
/// and status message, and every attribute, event and link with their keys and string values.
/// Deterministic, so the producer and the consumer compute the same figure.
pub fn estimated_size(span: &SpanData) -> usize {
    use opentelemetry::{Array, Value};
    fn value_size(value: &Value) -> usize {
        match value {
            Value::String(s) => s.as_str().len(),
            Value::Array(Array::String(items)) => items.iter().map(|s| s.as_str().len() + 24).sum(),
            Value::Array(Array::I64(items)) => items.len() * 8,
            Value::Array(Array::F64(items)) => items.len() * 8,
            Value::Array(Array::Bool(items)) => items.len(),
            _ => 0,
        }
    }
    fn attributes_size(attributes: &[opentelemetry::KeyValue]) -> usize {
        attributes
            .iter()
            .map(|kv| std::mem::size_of::<opentelemetry::KeyValue>() + kv.key.as_str().len() + value_size(&kv.value))
            .sum()
    }
    let events: usize = span
        .events
        .iter()
        .map(|e| std::mem::size_of::<opentelemetry::trace::Event>() + e.name.len() + attributes_size(&e.attributes))
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|l| std::mem::size_of::<opentelemetry::trace::Link>() + attributes_size(&l.attributes))
        .sum();
    let status = match &span.status {
        opentelemetry::trace::Status::Error { description } => description.len(),
        _ => 0,
    };
    std::mem::size_of::<SpanData>() + span.name.len() + status + attributes_size(&span.attributes) + events + links
}

/// Creates the span channel, bounded by `capacity` spans and `max_bytes` bytes: the processor to
/// install in the tracer provider, the receiving end for the span buffer, its wake-up, and the
/// byte account the span buffer gives back to as it takes spans out.
pub fn span_channel(
    capacity: usize,
    max_bytes: usize,
    wake_threshold: usize,
    metrics: Arc<SelfMetrics>,
) -> (SpanIngress, Receiver<SpanData>, Arc<Wake>, Arc<QueueBytes>) {
    let (door, rx, wake) = Door::open(capacity, wake_threshold, Signal::Traces, &metrics);
    let bytes = Arc::new(QueueBytes::new(max_bytes));
    (SpanIngress { door, bytes: bytes.clone(), flush: None }, rx, wake, bytes)
}

/// A flush that did not complete (the answer of the span buffer's `Flush`; defined here, where
/// the span processor's `force_flush` hook returns it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// The deadline passed with data still waiting.
    #[error("flush timed out with {items_left} items in {batches_left} batches still waiting")]
    Timeout {
        /// Batches still waiting.
        batches_left: usize,
        /// Items in them.
        items_left: u64,
    },
    /// The exporter did not answer.
    #[error("the exporter is gone: {0}")]
    ExporterGone(String),
    /// The span buffer's thread is gone (the pipeline shut down).
    #[error("the arbiter is gone")]
    ArbiterGone,
    /// No answer came within the flush's timeout.
    #[error("force_flush timed out")]
    NoAnswer,
}

/// Asks the span buffer to flush and waits for the answer, from any thread.
pub type FlushHook = Arc<dyn Fn(Duration) -> Result<(), FlushError> + Send + Sync>;

/// The span processor that feeds the pipeline.
#[derive(Clone)]
pub struct SpanIngress {
    door: Door<SpanData>,
    bytes: Arc<QueueBytes>,
    flush: Option<FlushHook>,
}

impl fmt::Debug for SpanIngress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanIngress").field("door", &self.door).field("flush_hook", &self.flush.is_some()).finish()
    }
}

impl SpanIngress {
    /// Sets how `force_flush` reaches the span buffer.
    pub fn with_flush_hook(mut self, hook: FlushHook) -> Self {
        self.flush = Some(hook);
        self
    }

    /// Hands a finished span to the pipeline; never blocks. Returns false if it was dropped
    /// (the channel full by count or by bytes), which is counted.
    #[inline]
    pub fn submit(&self, span: SpanData) -> bool {
        let size = estimated_size(&span);
        if !self.bytes.reserve(size) {
            self.door.dropped_full.inc();
            self.door.wake.wake();
            return false;
        }
        let sent = self.door.send(span);
        if !sent {
            self.bytes.release(size);
        }
        sent
    }
}

impl SpanProcessor for SpanIngress {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.submit(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        match &self.flush {
            Some(hook) => hook(Duration::from_secs(30)).map_err(|err| OTelSdkError::InternalFailure(err.to_string())),
            None => Ok(()),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match &self.flush {
            Some(hook) => hook(timeout).map_err(|err| OTelSdkError::InternalFailure(err.to_string())),
            None => Ok(()),
        }
    }
}

/// Creates the metric event channel.
pub fn metric_channel(
    capacity: usize,
    wake_threshold: usize,
    metrics: Arc<SelfMetrics>,
) -> (MetricIngress, Receiver<MetricEvent>, Arc<Wake>) {
    let (door, rx, wake) = Door::open(capacity, wake_threshold, Signal::Metrics, &metrics);
    (MetricIngress { door }, rx, wake)
}

/// The sending side of the metric event channel.
#[derive(Clone, Debug)]
pub struct MetricIngress {
    door: Door<MetricEvent>,
}

impl MetricIngress {
    /// Events waiting in the channel.
    pub fn queued(&self) -> usize {
        self.door.queued()
    }

    /// Hands an event to the aggregator; never blocks. Returns false if it was dropped.
    #[inline]
    pub fn record(&self, event: MetricEvent) -> bool {
        self.door.send(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_round_trip_inline_and_heap() {
        let short = LabelValue::new("/metamcp/{endpoint}/mcp");
        assert!(matches!(short, LabelValue::Inline { .. }));
        assert_eq!(short.as_str(), "/metamcp/{endpoint}/mcp");
        let long_text = "x".repeat(100);
        let long = LabelValue::new(&long_text);
        assert!(matches!(long, LabelValue::Heap(_)));
        assert_eq!(long.as_str(), long_text);
        assert_eq!(LabelValue::new("ü€"), LabelValue::new("ü€"));
    }

    #[test]
    fn unknown_methods_fold_into_other() {
        assert_eq!(HttpMethod::parse("GET").as_str(), "GET");
        assert_eq!(HttpMethod::parse("get"), HttpMethod::Other);
        assert_eq!(HttpMethod::parse("PROPFIND").as_str(), "_OTHER");
    }

    #[test]
    fn a_full_metric_channel_drops_and_counts_without_blocking() {
        let metrics = SelfMetrics::unregistered();
        let (ingress, rx, _wake) = metric_channel(8, 4, metrics.clone());
        let event = MetricEvent::VectorSearch { query_length: 3, result_count: 1, duration: 0.01 };
        let accepted = (0..100).filter(|_| ingress.record(event.clone())).count();
        assert_eq!(accepted, 8);
        assert_eq!(rx.len(), 8);
        assert_eq!(metrics.dropped(Signal::Metrics, DropReason::QueueFull).get(), 92);
    }

    /// A request ends its span and records its metric event on the same thread, one after the
    /// other: whichever comes first, each queue's depth check still runs and wakes its consumer
    /// at the threshold (not only when the queue is full, which drops).
    #[test]
    fn interleaved_span_and_metric_sends_each_wake_their_consumer_at_the_threshold() {
        use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
        for span_first in [true, false] {
            std::thread::spawn(move || {
                let metrics = SelfMetrics::unregistered();
                let (spans, _span_rx, span_wake, _bytes) = span_channel(1000, 1 << 20, 64, metrics.clone());
                let (events, _event_rx, event_wake) = metric_channel(1000, 64, metrics);
                let provider =
                    opentelemetry_sdk::trace::SdkTracerProvider::builder().with_span_processor(spans).build();
                let tracer = provider.tracer("interleaved");
                let event = MetricEvent::VectorSearch { query_length: 3, result_count: 1, duration: 0.01 };
                for _ in 0..100 {
                    if span_first {
                        tracer.start("request").end();
                        events.record(event.clone());
                    } else {
                        events.record(event.clone());
                        tracer.start("request").end();
                    }
                }
                assert!(
                    span_wake.pending.load(Ordering::Acquire),
                    "span consumer not woken (span first: {span_first})"
                );
                assert!(
                    event_wake.pending.load(Ordering::Acquire),
                    "metric consumer not woken (span first: {span_first})"
                );
            })
            .join()
            .unwrap();
        }
    }

    #[test]
    fn the_size_estimate_counts_the_name_and_the_status_message() {
        use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};
        let (ingress, rx, _wake, _bytes) = span_channel(16, 1 << 20, 16, SelfMetrics::unregistered());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_span_processor(ingress).build();
        let tracer = provider.tracer("size");
        tracer.start("tools/call x").end();
        let mut long = tracer.start(format!("tools/call x{}", "n".repeat(10_000)));
        long.set_status(Status::error("e".repeat(5_000)));
        long.end();
        let sizes: Vec<usize> = rx.try_iter().map(|span| estimated_size(&span)).collect();
        assert_eq!(sizes[1] - sizes[0], 10_000 + 5_000, "{sizes:?}");
    }
}
