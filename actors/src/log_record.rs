//! One log record on its way to the log buffer (re-exported by [`log_buffer`](crate::log_buffer)):
//! what a `tracing` event becomes, with the trace context it happened in. Field names and the
//! scope are `'static` (tracing's callsite metadata), so building a record copies no key and no
//! module path. A module of its own, so that the log buffer and the OTLP encoder both use it
//! without importing each other.

/// One log record on its way to the log buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// When the event happened, in nanoseconds since the Unix epoch (0 = unknown).
    pub time_unix_nano: u64,
    /// When the pipeline saw it, in nanoseconds since the Unix epoch.
    pub observed_time_unix_nano: u64,
    /// The event's level.
    pub severity: Severity,
    /// The event's message.
    pub body: LogValue,
    /// The event's fields (tracing field names are `'static`).
    pub attributes: Vec<(&'static str, LogValue)>,
    /// The trace the event happened in; all zero = none.
    pub trace_id: [u8; 16],
    /// The span the event happened in; all zero = none.
    pub span_id: [u8; 8],
    /// W3C flags of the context (1 = sampled).
    pub trace_flags: u8,
    /// Instrumentation scope: the event's module path or target.
    pub scope: &'static str,
    /// OTLP `LogRecord.event_name` when the event names one (`mcp.access`, say).
    pub event_name: Option<&'static str>,
}

/// A body or attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum LogValue {
    /// An owned string (a formatted message, a field recorded with `%` or `?`).
    Str(String),
    /// A string known for the life of the program.
    Static(&'static str),
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// A floating-point number.
    F64(f64),
}

impl LogValue {
    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            LogValue::Str(text) => Some(text),
            LogValue::Static(text) => Some(text),
            _ => None,
        }
    }

    /// Heap bytes the value holds beyond its own size.
    #[inline]
    fn heap_size(&self) -> usize {
        match self {
            LogValue::Str(text) => text.capacity(),
            _ => 0,
        }
    }
}

impl From<String> for LogValue {
    fn from(text: String) -> Self {
        LogValue::Str(text)
    }
}

impl From<&'static str> for LogValue {
    fn from(text: &'static str) -> Self {
        LogValue::Static(text)
    }
}

impl From<bool> for LogValue {
    fn from(value: bool) -> Self {
        LogValue::Bool(value)
    }
}

impl From<i64> for LogValue {
    fn from(value: i64) -> Self {
        LogValue::I64(value)
    }
}

impl From<f64> for LogValue {
    fn from(value: f64) -> Self {
        LogValue::F64(value)
    }
}

/// A log record's level, as `tracing` knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// `TRACE` (OTLP severity number 1).
    Trace,
    /// `DEBUG` (5).
    Debug,
    /// `INFO` (9).
    Info,
    /// `WARN` (13).
    Warn,
    /// `ERROR` (17).
    Error,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [Severity::Trace, Severity::Debug, Severity::Info, Severity::Warn, Severity::Error];

    /// The OTLP `SeverityNumber`: the first number of the level's range.
    pub const fn number(self) -> i32 {
        match self {
            Severity::Trace => 1,
            Severity::Debug => 5,
            Severity::Info => 9,
            Severity::Warn => 13,
            Severity::Error => 17,
        }
    }

    /// The OTLP `severity_text`.
    pub const fn text(self) -> &'static str {
        match self {
            Severity::Trace => "TRACE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
        }
    }
}

/// Per-record overhead besides the struct itself: the channel slot and bookkeeping.
const RECORD_OVERHEAD: usize = 16;

/// What a record takes in memory, estimated from its parts: the fixed struct, its body, its
/// attribute slots and their string values. Deterministic, so the producer and the consumer
/// compute the same figure.
#[inline]
pub fn estimated_size(record: &LogRecord) -> usize {
    let attributes: usize = record.attributes.iter().map(|(_, value)| value.heap_size()).sum();
    std::mem::size_of::<LogRecord>()
        + RECORD_OVERHEAD
        + record.body.heap_size()
        + record.attributes.capacity() * std::mem::size_of::<(&'static str, LogValue)>()
        + attributes
}
