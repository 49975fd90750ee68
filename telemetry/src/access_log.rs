//! Access records: one OTLP log record per MCP request answered (`logs.mcp_access`, on by
//! default, `event_name = "mcp.access"`) and, when asked for, one per HTTP request served
//! (`logs.http_access`, `event_name = "http.access"`). They are built straight from what the
//! request's telemetry already knows — names, outcome, duration, the span's ids — and sent with
//! one `try_send`; they never hold arguments, results, session ids or credentials. Attribute
//! names follow the OpenTelemetry semantic conventions where one exists.

use std::time::Duration;

use metamcp_telemetry_actors::log_buffer::{LogRecord, LogValue, Severity};
use opentelemetry::Context;

use crate::manager::TelemetryManager;
use crate::otlp_logs::{ids_of, redact_value, unix_nanos};

/// `event_name` of an MCP access record.
pub const MCP_ACCESS_EVENT: &str = "mcp.access";
/// `event_name` of an HTTP access record.
pub const HTTP_ACCESS_EVENT: &str = "http.access";
/// Instrumentation scope of the access records.
pub const ACCESS_SCOPE: &str = "metamcp_telemetry::access";
/// Longest tool or prompt name, endpoint name, route or request id carried (longer ones are cut):
/// a name a client made up is bounded like any other input.
pub(crate) const MAX_ACCESS_VALUE: usize = 256;

/// One MCP request answered, as its access record tells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct McpAccess<'a> {
    /// `mcp.method.name`: `tools/call`, `prompts/get`, `initialize`, ….
    pub method: &'a str,
    /// `gen_ai.tool.name`, for `tools/call`.
    pub tool_name: Option<&'a str>,
    /// `gen_ai.prompt.name`, for `prompts/get`.
    pub prompt_name: Option<&'a str>,
    /// `metamcp.endpoint`: the endpoint's name.
    pub endpoint: &'a str,
    /// `error.type` when the request failed (a JSON-RPC error code, `tool_error`, …); the
    /// `outcome` attribute is `error` then, else `ok`.
    pub error_type: Option<&'a str>,
    /// `jsonrpc.request.id`, as text.
    pub request_id: Option<&'a str>,
}

/// `text` cut to [`MAX_ACCESS_VALUE`] bytes at a character boundary, credentials masked.
fn bounded(text: &str) -> LogValue {
    let mut end = text.len().min(MAX_ACCESS_VALUE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    LogValue::Str(redact_value(&text[..end]).into_owned())
}

/// A record of `event` at INFO with `body` and `attributes`, in the trace of `cx`'s span.
fn access_record(
    event: &'static str,
    body: String,
    attributes: Vec<(&'static str, LogValue)>,
    cx: &Context,
) -> LogRecord {
    let now = unix_nanos();
    let (trace_id, span_id, trace_flags) = ids_of(cx);
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        severity: Severity::Info,
        body: LogValue::Str(body),
        attributes,
        trace_id,
        span_id,
        trace_flags,
        scope: ACCESS_SCOPE,
        event_name: Some(event),
    }
}

/// The MCP access record of `access`, which took `duration`, in the trace of `cx`'s span.
pub(crate) fn mcp_access_record(access: &McpAccess<'_>, duration: Duration, cx: &Context) -> LogRecord {
    let mut attributes = Vec::with_capacity(7);
    attributes.push(("mcp.method.name", bounded(access.method)));
    let mut body = String::with_capacity(64);
    body.push_str(access.method);
    if let Some(tool) = access.tool_name {
        attributes.push(("gen_ai.tool.name", bounded(tool)));
    }
    if let Some(prompt) = access.prompt_name {
        attributes.push(("gen_ai.prompt.name", bounded(prompt)));
    }
    if let Some(LogValue::Str(target)) = attributes.get(1).map(|(_, value)| value) {
        body.push(' ');
        body.push_str(target);
    }
    attributes.push(("metamcp.endpoint", bounded(access.endpoint)));
    attributes.push(("outcome", LogValue::Static(if access.error_type.is_some() { "error" } else { "ok" })));
    if let Some(error_type) = access.error_type {
        attributes.push(("error.type", bounded(error_type)));
    }
    attributes.push(("mcp.server.operation.duration", LogValue::F64(duration.as_secs_f64())));
    if let Some(id) = access.request_id {
        attributes.push(("jsonrpc.request.id", bounded(id)));
    }
    access_record(MCP_ACCESS_EVENT, body, attributes, cx)
}

/// The HTTP access record of a request served, in the trace of `cx`'s span.
pub(crate) fn http_access_record(
    method: &str,
    route: &str,
    status: u16,
    duration: Duration,
    cx: &Context,
) -> LogRecord {
    let attributes = vec![
        ("http.request.method", bounded(method)),
        ("http.route", bounded(route)),
        ("http.response.status_code", LogValue::I64(i64::from(status))),
        ("http.server.request.duration", LogValue::F64(duration.as_secs_f64())),
    ];
    let body = format!("{method} {route} {status}");
    access_record(HTTP_ACCESS_EVENT, body, attributes, cx)
}

impl TelemetryManager {
    /// Sends the access record of one MCP request answered (`logs.mcp_access`), in the trace of
    /// `cx`'s span (the request's server span). Never blocks; a no-op when MCP access records
    /// are off or telemetry is disabled.
    pub fn record_mcp_access(&self, access: &McpAccess<'_>, duration: Duration, cx: &Context) {
        if let Some(ingress) = &self.inner.access.mcp {
            ingress.submit(mcp_access_record(access, duration, cx));
        }
    }

    /// Whether MCP access records are sent (`logs.mcp_access`, with `logs.otlp` and telemetry
    /// on): a caller can skip preparing one otherwise.
    #[inline]
    pub fn mcp_access_enabled(&self) -> bool {
        self.inner.access.mcp.is_some()
    }

    /// Whether HTTP access records are sent (`logs.http_access`).
    #[inline]
    pub(crate) fn http_access_enabled(&self) -> bool {
        self.inner.access.http.is_some()
    }

    /// Sends the access record of one HTTP request served (`logs.http_access`). Never blocks.
    pub(crate) fn record_http_access(&self, method: &str, route: &str, status: u16, duration: Duration, cx: &Context) {
        if let Some(ingress) = &self.inner.access.http {
            ingress.submit(http_access_record(method, route, status, duration, cx));
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};

    use super::*;

    fn attr<'r>(record: &'r LogRecord, key: &str) -> Option<&'r LogValue> {
        record.attributes.iter().find(|(name, _)| *name == key).map(|(_, value)| value)
    }

    fn text(value: &str) -> LogValue {
        LogValue::Str(value.to_owned())
    }

    #[test]
    fn an_mcp_access_record_names_the_request_and_its_outcome() {
        let span_context = SpanContext::new(
            TraceId::from_bytes([7; 16]),
            SpanId::from_bytes([9; 8]),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(span_context);
        let access = McpAccess {
            method: "tools/call",
            tool_name: Some("calc"),
            endpoint: "default",
            error_type: Some("tool_error"),
            request_id: Some("12"),
            ..McpAccess::default()
        };
        let record = mcp_access_record(&access, Duration::from_millis(250), &cx);
        assert_eq!(record.event_name, Some(MCP_ACCESS_EVENT));
        assert_eq!(record.severity, Severity::Info);
        assert_eq!(record.body, text("tools/call calc"));
        assert_eq!((record.trace_id, record.span_id, record.trace_flags), ([7; 16], [9; 8], 1));
        assert_eq!(attr(&record, "mcp.method.name"), Some(&text("tools/call")));
        assert_eq!(attr(&record, "gen_ai.tool.name"), Some(&text("calc")));
        assert_eq!(attr(&record, "metamcp.endpoint"), Some(&text("default")));
        assert_eq!(attr(&record, "outcome"), Some(&LogValue::Static("error")));
        assert_eq!(attr(&record, "error.type"), Some(&text("tool_error")));
        assert_eq!(attr(&record, "jsonrpc.request.id"), Some(&text("12")));
        assert_eq!(attr(&record, "mcp.server.operation.duration"), Some(&LogValue::F64(0.25)));

        let ok = mcp_access_record(
            &McpAccess { method: "ping", endpoint: "e", ..McpAccess::default() },
            Duration::ZERO,
            &Context::new(),
        );
        assert_eq!(ok.body, text("ping"));
        assert_eq!(attr(&ok, "outcome"), Some(&LogValue::Static("ok")));
        assert_eq!(attr(&ok, "error.type"), None);
        assert_eq!(ok.trace_id, [0; 16]);
    }

    #[test]
    fn made_up_names_are_bounded() {
        let long = "é".repeat(MAX_ACCESS_VALUE);
        let access = McpAccess { method: "tools/call", tool_name: Some(&long), endpoint: "e", ..McpAccess::default() };
        let record = mcp_access_record(&access, Duration::ZERO, &Context::new());
        let Some(LogValue::Str(name)) = attr(&record, "gen_ai.tool.name") else { panic!("{record:?}") };
        assert!(name.len() <= MAX_ACCESS_VALUE && name.chars().all(|c| c == 'é'), "{name}");
    }

    #[test]
    fn an_http_access_record_has_the_http_conventions() {
        let record = http_access_record("GET", "/items/{id}", 404, Duration::from_millis(5), &Context::new());
        assert_eq!(record.event_name, Some(HTTP_ACCESS_EVENT));
        assert_eq!(attr(&record, "http.request.method"), Some(&text("GET")));
        assert_eq!(attr(&record, "http.route"), Some(&text("/items/{id}")));
        assert_eq!(attr(&record, "http.response.status_code"), Some(&LogValue::I64(404)));
        assert_eq!(attr(&record, "http.server.request.duration"), Some(&LogValue::F64(0.005)));
    }
}
