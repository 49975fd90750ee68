//! Logs: JSON lines on stdout, or a human format when stdout is a terminal (`logging.format =
//! "auto"`, the default; `json` and `pretty` force one). A line written while a
//! request is handled carries `trace_id`, `span_id` and `request_id`, read from the current
//! OpenTelemetry context, so a log line leads to its trace. Every line passes through
//! [`redact`](crate::redact::redact) on its way out: whatever a field holds, no URL's
//! credentials reach the log.
//!
//! [`init_with_otlp`] also installs the OTLP log layer ([`OtlpLogLayer`]), with a filter of its
//! own (`logs.level`), so the same events travel as OTLP log records through the pipeline.

use std::io::{IsTerminal, Write};
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
use crate::otlp_logs::OtlpLogLayer;
use crate::redact::redact;
use crate::settings::{LogFormat, LoggingSettings, Settings};

/// Where log lines go.
pub type LogSink = Arc<Mutex<dyn Write + Send>>;

/// The format lines are written in: `format` itself, or for [`LogFormat::Auto`] `pretty` when
/// the output is a terminal and `json` otherwise. Never returns `Auto`.
pub fn effective_format(format: LogFormat, output_is_terminal: bool) -> LogFormat {
    match format {
        LogFormat::Auto if output_is_terminal => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        forced => forced,
    }
}

/// Installs the global subscriber as `settings` say, writing to stdout (`auto`: human lines on a
/// terminal, JSON lines otherwise). Returns false if a subscriber was already installed (the
/// first one stays).
pub fn init(settings: &LoggingSettings) -> bool {
    let format = effective_format(settings.format, std::io::stdout().is_terminal());
    install(&settings.level, format, Arc::new(Mutex::new(std::io::stdout())), None)
}

/// As [`init`], writing to `sink`, which is taken for no terminal: `auto` writes JSON lines.
pub fn init_with_sink(settings: &LoggingSettings, sink: LogSink) -> bool {
    install(&settings.level, effective_format(settings.format, false), sink, None)
}

/// As [`init`] with `settings.logging`, and with the OTLP log layer beside the stdout lines when
/// telemetry and `logs.otlp` are on: events at or above `logs.level` become OTLP log records,
/// sent to the pipeline of the [`TelemetryManager`](crate::TelemetryManager) started next (see
/// [`OtlpLogLayer::global`]). Each output has its own filter.
pub fn init_with_otlp(settings: &Settings) -> bool {
    let format = effective_format(settings.logging.format, std::io::stdout().is_terminal());
    install(&settings.logging.level, format, Arc::new(Mutex::new(std::io::stdout())), otlp_level(settings))
}

/// As [`init_with_otlp`], writing the lines to `sink` (taken for no terminal).
pub fn init_with_otlp_sink(settings: &Settings, sink: LogSink) -> bool {
    let format = effective_format(settings.logging.format, false);
    install(&settings.logging.level, format, sink, otlp_level(settings))
}

/// The filter of the OTLP log layer, when there is one to install.
fn otlp_level(settings: &Settings) -> Option<&str> {
    (settings.telemetry.enabled && settings.logs.otlp).then_some(settings.logs.level.as_str())
}

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

fn install(level: &str, format: LogFormat, sink: LogSink, otlp: Option<&str>) -> bool {
    let otlp = otlp.map(|level| OtlpLogLayer::global().with_filter(filter(level)));
    let registry = tracing_subscriber::registry().with(otlp);
    match format {
        LogFormat::Pretty => registry.with(PrettyLayer { sink }.with_filter(filter(level))).try_init().is_ok(),
        LogFormat::Json | LogFormat::Auto => {
            registry.with(JsonLayer { sink }.with_filter(filter(level))).try_init().is_ok()
        }
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

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// Set in the environment of the child process that [`auto_writes_json_lines_to_a_pipe`]
    /// starts; the child then installs the logger and writes one line.
    const CHILD_ENV: &str = "METAMCP_LOGGING_TEST_CHILD";
    const CHILD_TEST: &str = "logging::tests::child_logs_one_line";

    #[test]
    fn auto_means_pretty_on_a_terminal_and_json_elsewhere() {
        assert_eq!(effective_format(LogFormat::Auto, true), LogFormat::Pretty);
        assert_eq!(effective_format(LogFormat::Auto, false), LogFormat::Json);
        for terminal in [true, false] {
            assert_eq!(effective_format(LogFormat::Json, terminal), LogFormat::Json, "json wins");
            assert_eq!(effective_format(LogFormat::Pretty, terminal), LogFormat::Pretty, "pretty wins");
        }
        assert_eq!(LoggingSettings::default().format, LogFormat::Auto);
    }

    /// Runs in the child only: `init` with the default settings, then one event.
    #[test]
    fn child_logs_one_line() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        assert!(init(&LoggingSettings::default()), "no subscriber installed before");
        tracing::info!(answer = 42, "hello from the child");
    }

    #[test]
    fn auto_writes_json_lines_to_a_pipe() {
        // The test binary itself, running only the child test, with its stdout a pipe.
        let output = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("the child runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        // The harness writes `test … ` on the same line before the test's own output.
        let line = stdout
            .lines()
            .find(|line| line.contains("hello from the child"))
            .and_then(|line| line.find('{').map(|start| &line[start..]))
            .unwrap_or_else(|| panic!("no log line in the child's stdout:\n{stdout}"));
        let value: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert_eq!(value["message"], "hello from the child");
        assert_eq!(value["answer"], 42);
        assert_eq!(value["level"], "INFO");
    }
}
