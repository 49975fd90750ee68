//! OTLP logs from `tracing` events: [`OtlpLogLayer`] turns each event its filter lets through
//! (`logs.level`) into a [`LogRecord`] — time, severity, the message as body, the other fields as
//! attributes, the trace and span ids of the current OpenTelemetry context (read as the stdout
//! lines read them), the event's target as scope — and hands it to the log buffer with a
//! `try_send` that never blocks.
//!
//! The global subscriber is installed before any [`TelemetryManager`](crate::TelemetryManager)
//! exists ([`logging::init_with_otlp`](crate::logging::init_with_otlp)), so the layer it holds
//! ([`OtlpLogLayer::global`]) sends to a process-wide slot that the manager fills when its pipeline
//! starts. Until then records wait in a buffer of [`EARLY_CAPACITY`]; past it they are dropped,
//! and counted (`reason="queue_full"`) once the pipeline exists. A request thread reads the slot
//! through a per-thread copy checked against a generation number: one atomic load per event.
//!
//! Never exported: the pipeline's own events (its crate's targets, the transport stacks it
//! exports with and the database spool's, and anything emitted on its actors' threads), so an
//! export failure cannot feed an export loop. Every string value passes through [`redact`](crate::redact::redact), and a
//! field named like a credential (`token`, `api_key`, …) is sent as `"***"`.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use metamcp_telemetry_actors::log_buffer::{is_pipeline_event, LogIngress, LogRecord, LogValue, Severity};
use metamcp_telemetry_actors::pipeline::is_pipeline_thread;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::Layer;

use crate::redact::{is_credential_name, redact, MASK};

/// Records kept from before the pipeline starts (start-up lines); later ones are dropped.
pub const EARLY_CAPACITY: usize = 256;

/// A `tracing` layer that sends events as OTLP log records to the pipeline. Filter it with
/// `logs.level` (`layer.with_filter(EnvFilter::new(level))`); cheap to clone.
#[derive(Clone)]
pub struct OtlpLogLayer {
    target: Target,
}

#[derive(Clone)]
enum Target {
    /// The process-wide slot a manager fills.
    Global,
    /// One pipeline's ingress.
    Ingress(LogIngress),
}

impl fmt::Debug for OtlpLogLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Global => "global",
            Target::Ingress(_) => "ingress",
        };
        f.debug_struct("OtlpLogLayer").field("target", &target).finish()
    }
}

impl OtlpLogLayer {
    /// A layer sending to the pipeline of the latest [`TelemetryManager`](crate::TelemetryManager)
    /// started with `logs.otlp` (records from before it starts wait in a bounded buffer).
    pub fn global() -> Self {
        Self { target: Target::Global }
    }

    /// A layer sending to `ingress` (a manager's: [`TelemetryManager::log_layer`](crate::TelemetryManager::log_layer)).
    pub fn to_ingress(ingress: LogIngress) -> Self {
        Self { target: Target::Ingress(ingress) }
    }

    fn submit(&self, record: LogRecord) -> bool {
        match &self.target {
            Target::Global => submit_global(record),
            Target::Ingress(ingress) => ingress.submit(record),
        }
    }
}

impl<S: Subscriber> Layer<S> for OtlpLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if is_pipeline_event(meta.target()) || is_spool_event(meta.target()) || on_pipeline_thread() {
            return;
        }
        let now = unix_nanos();
        let mut fields = Fields {
            body: None,
            attributes: Vec::with_capacity(meta.fields().len().saturating_sub(1)),
            masked: credential_fields(meta),
        };
        event.record(&mut fields);
        let (trace_id, span_id, trace_flags) = current_ids();
        let name = meta.name();
        self.submit(LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity: severity(*meta.level()),
            body: fields.body.unwrap_or(LogValue::Static("")),
            attributes: fields.attributes,
            trace_id,
            span_id,
            trace_flags,
            scope: meta.target(),
            // `tracing` names unnamed events `event file:line`; a name given with `name:` is kept.
            event_name: (!name.starts_with("event ")).then_some(name),
        });
    }
}

/// Target of this crate's database spool, whose connection warnings come while the database is
/// away: as records they would be spooled into the very database that is missing.
const SPOOL_TARGET: &str = "metamcp_telemetry::spool";

/// Whether `target` is the database spool's (or a module below it).
#[inline]
fn is_spool_event(target: &str) -> bool {
    target.starts_with(SPOOL_TARGET) && matches!(target.as_bytes().get(SPOOL_TARGET.len()), None | Some(b':'))
}

/// The OTLP severity of a `tracing` level.
pub(crate) fn severity(level: Level) -> Severity {
    match level {
        Level::TRACE => Severity::Trace,
        Level::DEBUG => Severity::Debug,
        Level::INFO => Severity::Info,
        Level::WARN => Severity::Warn,
        _ => Severity::Error,
    }
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The trace id, span id and W3C flags of the current OpenTelemetry context (zeros without one).
pub(crate) fn current_ids() -> ([u8; 16], [u8; 8], u8) {
    Context::map_current(ids_of)
}

/// The trace id, span id and W3C flags of `cx`'s span (zeros when it has no valid one).
pub(crate) fn ids_of(cx: &Context) -> ([u8; 16], [u8; 8], u8) {
    let span = cx.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        (span_context.trace_id().to_bytes(), span_context.span_id().to_bytes(), span_context.trace_flags().to_u8())
    } else {
        ([0; 16], [0; 8], 0)
    }
}

/// [`redact`], with a `memchr` for `:` first: text without one holds no URL, and most values
/// (names, messages, numbers as text) have none, so they skip the substring search.
#[inline]
pub(crate) fn redact_value(text: &str) -> Cow<'_, str> {
    if text.as_bytes().contains(&b':') {
        redact(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// `text` with its credentials masked, without a copy when there are none.
fn redacted(text: String) -> String {
    match redact_value(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(masked) => masked,
    }
}

/// Bytes reserved for a formatted value before formatting it: most messages and values fit, so
/// the string is not grown on the way.
const FORMATTED_CAPACITY: usize = 64;

/// `value` formatted with `Debug` (a message's `format_args!`, a `%` or `?` field).
fn formatted(value: &dyn fmt::Debug) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(FORMATTED_CAPACITY);
    // Writing into a String fails only if the value's own formatting does; keep what it wrote.
    let _ = write!(text, "{value:?}");
    text
}

/// Collects an event's fields: `message` becomes the body, the rest attributes.
struct Fields {
    body: Option<LogValue>,
    attributes: Vec<(&'static str, LogValue)>,
    /// Bit `i` set: field `i` is named like a credential.
    masked: u64,
}

impl Fields {
    fn is_masked(&self, field: &Field) -> bool {
        field.index() < 64 && (self.masked & (1 << field.index())) != 0
    }

    fn push(&mut self, field: &Field, value: LogValue) {
        if self.body.is_none() && field.name() == "message" {
            self.body = Some(value);
        } else if self.is_masked(field) {
            self.attributes.push((field.name(), LogValue::Static(MASK)));
        } else {
            self.attributes.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let value =
            if self.is_masked(field) { LogValue::Static(MASK) } else { LogValue::Str(redacted(formatted(value))) };
        self.push(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let value = if self.is_masked(field) {
            LogValue::Static(MASK)
        } else {
            LogValue::Str(redact_value(value).into_owned())
        };
        self.push(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, LogValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).map_or_else(|_| LogValue::Str(value.to_string()), LogValue::I64);
        self.push(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, LogValue::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, LogValue::F64(value));
    }
}

/// Hashes a callsite's address: keys are distinct pointers already.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8 | u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, value: usize) {
        self.0 = (value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_right(29);
    }
}

thread_local! {
    /// Per callsite (its metadata's address), the fields named like credentials, as bits. The
    /// callsites of a program are a fixed set, so this stays small.
    static CREDENTIAL_FIELDS: RefCell<HashMap<usize, u64, BuildHasherDefault<AddressHasher>>> =
        RefCell::new(HashMap::default());
    /// Whether this thread is one of the pipeline's: 0 not known yet, 1 yes, 2 no.
    static PIPELINE_THREAD: Cell<u8> = const { Cell::new(0) };
    /// This thread's copy of the global slot, and the generation it was taken at.
    static CACHED: RefCell<(u64, Option<LogIngress>)> = const { RefCell::new((0, None)) };
}

/// The bits of `meta`'s fields named like credentials (looked up once per callsite and thread).
fn credential_fields(meta: &'static Metadata<'static>) -> u64 {
    let key = std::ptr::from_ref(meta) as usize;
    let compute = || {
        meta.fields()
            .iter()
            .filter(|field| field.index() < 64 && field.name() != "message" && is_credential_name(field.name()))
            .fold(0u64, |bits, field| bits | (1 << field.index()))
    };
    CREDENTIAL_FIELDS
        .try_with(|cache| match cache.try_borrow_mut() {
            Ok(mut cache) => *cache.entry(key).or_insert_with(compute),
            Err(_) => compute(),
        })
        .unwrap_or_else(|_| compute())
}

/// Whether the current thread is one of the pipeline's actors' (`mmcp-exporter`, …).
fn on_pipeline_thread() -> bool {
    PIPELINE_THREAD
        .try_with(|known| match known.get() {
            1 => true,
            2 => false,
            _ => {
                let pipeline = std::thread::current().name().is_some_and(is_pipeline_thread);
                known.set(if pipeline { 1 } else { 2 });
                pipeline
            }
        })
        .unwrap_or(false)
}

/// The process-wide slot [`OtlpLogLayer::global`] sends to.
struct Slot {
    ingress: Option<LogIngress>,
    /// Records from before the first pipeline, at most [`EARLY_CAPACITY`].
    early: Vec<LogRecord>,
    /// Records dropped because `early` was full, not yet counted.
    early_dropped: u64,
}

static SLOT: Mutex<Slot> = parking_lot::const_mutex(Slot { ingress: None, early: Vec::new(), early_dropped: 0 });
/// Bumped each time the slot's ingress changes; 0 while it has none.
static GENERATION: AtomicU64 = AtomicU64::new(0);

impl Slot {
    /// Sends the records waiting from before to `ingress` (a refused one is counted by it),
    /// counts those that did not fit on `dropped`, and keeps `ingress` for what follows.
    fn attach(&mut self, ingress: LogIngress, dropped: &prometheus::IntCounter) {
        for record in self.early.drain(..) {
            ingress.submit(record);
        }
        dropped.inc_by(std::mem::take(&mut self.early_dropped));
        self.early = Vec::new();
        self.ingress = Some(ingress);
    }

    /// Sends `record` to the ingress, or keeps it in the bounded early buffer while there is none.
    fn submit(&mut self, record: LogRecord) -> bool {
        if let Some(ingress) = &self.ingress {
            return ingress.submit(record);
        }
        if self.early.len() < EARLY_CAPACITY {
            self.early.push(record);
            true
        } else {
            self.early_dropped += 1;
            false
        }
    }
}

/// Makes `ingress` the destination of [`OtlpLogLayer::global`]: the records waiting from before
/// are sent to it, and those that did not fit are counted on `dropped`.
pub(crate) fn attach_global(ingress: LogIngress, dropped: &prometheus::IntCounter) {
    let mut slot = SLOT.lock();
    slot.attach(ingress, dropped);
    GENERATION.fetch_add(1, Ordering::Release);
}

fn submit_global(record: LogRecord) -> bool {
    let generation = GENERATION.load(Ordering::Acquire);
    if generation == 0 {
        return SLOT.lock().submit(record);
    }
    let mut record = Some(record);
    let sent = CACHED.try_with(|cached| {
        let Ok(mut cached) = cached.try_borrow_mut() else { return None };
        if cached.0 != generation {
            *cached = (generation, SLOT.lock().ingress.clone());
        }
        let ingress = cached.1.as_ref()?;
        record.take().map(|record| ingress.submit(record))
    });
    match (sent, record) {
        (Ok(Some(sent)), _) => sent,
        // No per-thread copy (the thread is ending): the slot itself.
        (_, Some(record)) => SLOT.lock().submit(record),
        (_, None) => false,
    }
}

#[cfg(test)]
#[path = "otlp_logs_tests.rs"]
mod tests;
