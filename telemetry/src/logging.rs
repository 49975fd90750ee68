//! Logs: JSON lines on stdout (or a human format for development). A line written while a
//! request is handled carries `trace_id`, `span_id` and `request_id`, read from the current
//! OpenTelemetry context, so a log line leads to its trace. Every line passes through
//! [`redact`](crate::redact::redact) on its way out: whatever a field holds, no URL's
//! credentials reach the log.

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::middleware::RequestId;
use crate::redact::redact;
use crate::settings::{LogFormat, LoggingSettings};

/// Where log lines go.
pub type LogSink = Arc<Mutex<dyn Write + Send>>;

/// Installs the global subscriber as `settings` say, writing to stdout. Returns false if a
/// subscriber was already installed (the first one stays).
pub fn init(settings: &LoggingSettings) -> bool {
    init_with_sink(settings, Arc::new(Mutex::new(std::io::stdout())))
}

/// As [`init`], writing to `sink`.
pub fn init_with_sink(settings: &LoggingSettings, sink: LogSink) -> bool {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    match settings.format {
        LogFormat::Json => tracing_subscriber::registry().with(filter).with(JsonLayer { sink }).try_init().is_ok(),
        LogFormat::Pretty => tracing_subscriber::registry().with(filter).with(PrettyLayer { sink }).try_init().is_ok(),
    }
}

/// The correlation fields of the current context.
fn correlation(fields: &mut Map<String, Value>) {
    let cx = Context::current();
    let span = cx.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        fields.insert("trace_id".into(), span_context.trace_id().to_string().into());
        fields.insert("span_id".into(), span_context.span_id().to_string().into());
    }
    if let Some(id) = cx.get::<RequestId>() {
        fields.insert("request_id".into(), id.as_str().into());
    }
}

struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

fn timestamp() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

struct JsonLayer {
    sink: LogSink,
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        let mut fields = Map::new();
        fields.insert("timestamp".into(), timestamp().into());
        fields.insert("level".into(), meta.level().as_str().into());
        fields.insert("target".into(), meta.target().into());
        event.record(&mut FieldVisitor(&mut fields));
        correlation(&mut fields);
        let mut line = Value::Object(fields).to_string();
        line.push('\n');
        let line = redact(&line);
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(line.as_bytes());
            let _ = sink.flush();
        }
    }
}

struct PrettyLayer {
    sink: LogSink,
}

impl<S: Subscriber> Layer<S> for PrettyLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        let mut fields = Map::new();
        event.record(&mut FieldVisitor(&mut fields));
        correlation(&mut fields);
        let message = fields.remove("message").and_then(|m| m.as_str().map(str::to_owned)).unwrap_or_default();
        let mut line = format!("{} {:>5} {}: {}", timestamp(), meta.level(), meta.target(), message);
        for (key, value) in fields {
            match value {
                Value::String(text) => line.push_str(&format!(" {key}={text}")),
                other => line.push_str(&format!(" {key}={other}")),
            }
        }
        line.push('\n');
        let line = redact(&line);
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(line.as_bytes());
            let _ = sink.flush();
        }
    }
}
