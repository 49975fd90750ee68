//! The server side of the OpenTelemetry MCP semantic conventions: one SERVER span per request a
//! client sends an endpoint, named `{mcp.method.name} {target}` (the tool or prompt name, else
//! just the method), with `mcp.method.name`, `gen_ai.tool.name` / `gen_ai.prompt.name`,
//! `jsonrpc.request.id`, `mcp.protocol.version`, `mcp.session.id` (a fingerprint, never the id),
//! `network.transport` and, on failure, `error.type` and `rpc.response.status_code` (a tool's
//! `isError` result is `error.type = tool_error`). Its parent is the `traceparent` (and
//! `tracestate`) the client put in `params._meta` when it sent one, else the HTTP request's span.
//! The same request gets one OTLP access record (`event_name = "mcp.access"`, `logs.mcp_access`)
//! in that span's trace.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rmcp::model::{ClientRequest, ErrorCode, ErrorData, GetMeta as _, ProtocolVersion, RequestId, ServerResult};

use super::rpc;
use crate::service::interned;
use metamcp_telemetry::{McpAccess, McpOperation, McpSide, TelemetryManager};

/// Longest `traceparent` or `tracestate` read from `_meta` (the W3C limits are 55 and 512).
const MAX_META_CONTEXT: usize = 1024;

/// The MCP methods, so a request's method name is shared rather than copied.
const METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "prompts/get",
    "prompts/list",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "ping",
    "initialize",
];

/// What names and describes a request's span. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Operation {
    /// `mcp.method.name`.
    pub(super) method: Cow<'static, str>,
    /// The tool of a `tools/call`.
    pub(super) tool: Option<Arc<str>>,
    /// The prompt of a `prompts/get`.
    pub(super) prompt: Option<Arc<str>>,
}

impl Operation {
    /// The operation of `request`.
    pub(super) fn of(request: &ClientRequest) -> Self {
        let (tool, prompt) = match request {
            ClientRequest::CallToolRequest(call) => (Some(Arc::from(&*call.params.name)), None),
            ClientRequest::GetPromptRequest(get) => (None, Some(Arc::from(get.params.name.as_str()))),
            ClientRequest::CustomRequest(custom) => {
                let name =
                    || custom.params.as_ref().and_then(|p| p.get("name")).and_then(|n| n.as_str()).map(Arc::from);
                match custom.method.as_str() {
                    "tools/call" => (name(), None),
                    "prompts/get" => (None, name()),
                    _ => (None, None),
                }
            }
            _ => (None, None),
        };
        Self { method: interned(request.method(), METHODS), tool, prompt }
    }

    fn span_name(&self) -> Cow<'static, str> {
        match self.tool.as_deref().or(self.prompt.as_deref()) {
            Some(target) => Cow::Owned(crate::service::joined(&self.method, target)),
            None => self.method.clone(),
        }
    }
}

/// The `_meta` of a request as a W3C trace-context carrier.
struct MetaCarrier<'a>(&'a serde_json::Map<String, serde_json::Value>);

impl Extractor for MetaCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_str()).filter(|v| v.len() <= MAX_META_CONTEXT)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The parent a request's span takes: the client's `params._meta.traceparent` when valid, else
/// the current context (the HTTP request's span).
pub(super) fn parent_of(request: &ClientRequest) -> Context {
    let meta = request.get_meta();
    if meta.get_traceparent().is_some() {
        let cx = TraceContextPropagator::new().extract_with_context(&Context::current(), &MetaCarrier(&meta.0 .0));
        if cx.span().span_context().is_valid() {
            return cx;
        }
    }
    Context::current()
}

/// A started server span (or nothing, when telemetry records no spans), and the clock of the
/// request's `mcp.server.operation.duration` and of its access record.
pub(super) struct ServerSpan<'a> {
    cx: Option<Context>,
    telemetry: TelemetryManager,
    operation: Operation,
    protocol_version: Option<ProtocolVersion>,
    /// The endpoint the request came through, for the access record.
    endpoint: &'a str,
    /// The request's JSON-RPC id, for the access record.
    id: RequestId,
    started: Instant,
}

impl<'a> ServerSpan<'a> {
    /// Starts the span of `operation`, a request to `endpoint`, under `parent`.
    pub(super) fn start(
        telemetry: &TelemetryManager,
        parent: &Context,
        operation: &Operation,
        (endpoint, id): (&'a str, &RequestId),
        version: Option<&ProtocolVersion>,
        session_fingerprint: Option<&Arc<str>>,
    ) -> Self {
        let mut started = Self {
            cx: None,
            telemetry: telemetry.clone(),
            operation: operation.clone(),
            protocol_version: version.cloned(),
            endpoint,
            id: id.clone(),
            started: Instant::now(),
        };
        let Some(tracer) = telemetry.tracer() else { return started };
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new("mcp.method.name", operation.method.clone()));
        if let Some(tool) = &operation.tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool.clone()));
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(prompt) = &operation.prompt {
            attributes.push(KeyValue::new("gen_ai.prompt.name", prompt.clone()));
        }
        attributes.push(KeyValue::new("jsonrpc.request.id", rpc::id_value(id)));
        if let Some(version) = version {
            attributes.push(KeyValue::new("mcp.protocol.version", rpc::version_name(version)));
        }
        if let Some(fingerprint) = session_fingerprint {
            attributes.push(KeyValue::new("mcp.session.id", fingerprint.clone()));
        }
        attributes.push(KeyValue::new("network.transport", "tcp"));
        let span = tracer
            .span_builder(operation.span_name())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        started.cx = Some(parent.with_span(span));
        started
    }

    /// The context to run the request in (its spans become children of this one).
    pub(super) fn context(&self) -> Context {
        self.cx.clone().unwrap_or_else(Context::current)
    }

    /// Ends the span with the request's outcome, records its duration and sends its access record
    /// (`logs.mcp_access`: names, outcome and duration, never arguments or results); returns the
    /// `error.type` it recorded.
    pub(super) fn finish(self, outcome: &Result<ServerResult, ErrorData>) -> Option<String> {
        let error_type = error_type(outcome);
        // A name the client made up (an unknown tool or prompt, refused as invalid params) is
        // no metric label.
        let named = !matches!(outcome, Err(error) if error.code == ErrorCode::INVALID_PARAMS || error.code == ErrorCode::METHOD_NOT_FOUND);
        // Nor is a method it made up.
        let known = !matches!(outcome, Err(error) if error.code == ErrorCode::METHOD_NOT_FOUND);
        let measured = McpOperation {
            method: if known { &self.operation.method } else { "_OTHER" },
            tool_name: self.operation.tool.as_deref().filter(|_| named),
            prompt_name: self.operation.prompt.as_deref().filter(|_| named),
            protocol_version: self.protocol_version.as_ref().map(ProtocolVersion::as_str),
            network_transport: "tcp",
            error_type: error_type.as_deref(),
            server_address: None,
            server_port: None,
        };
        let elapsed = self.started.elapsed();
        {
            // The request's span is the exemplar of its duration.
            let _in_span = self.cx.clone().map(Context::attach);
            self.telemetry.record_mcp_operation(McpSide::Server, &measured, elapsed);
        }
        if self.telemetry.mcp_access_enabled() {
            let id = rpc::id_value(&self.id);
            let access = McpAccess {
                method: measured.method,
                tool_name: self.operation.tool.as_deref(),
                prompt_name: self.operation.prompt.as_deref(),
                endpoint: self.endpoint,
                error_type: error_type.as_deref(),
                request_id: Some(id.as_str()),
            };
            match &self.cx {
                Some(cx) => self.telemetry.record_mcp_access(&access, elapsed, cx),
                None => Context::map_current(|cx| self.telemetry.record_mcp_access(&access, elapsed, cx)),
            }
        }
        let Some(cx) = self.cx else { return error_type };
        let span = cx.span();
        match outcome {
            Err(error) => {
                let code = error.code.0.to_string();
                span.set_attribute(KeyValue::new("error.type", code.clone()));
                span.set_attribute(KeyValue::new("rpc.response.status_code", code));
                // The message can quote what the client sent: the span keeps the code only.
                span.set_status(Status::error(format!("JSON-RPC error {}", error.code.0)));
            }
            Ok(ServerResult::CallToolResult(result)) if result.is_error == Some(true) => {
                span.set_attribute(KeyValue::new("error.type", "tool_error"));
                span.set_status(Status::error("the tool returned an error result"));
            }
            Ok(_) => {}
        }
        span.end();
        error_type
    }
}

/// The `error.type` of an outcome: the JSON-RPC error code, `tool_error` for an `isError`
/// result, none for a success.
pub(super) fn error_type(outcome: &Result<ServerResult, ErrorData>) -> Option<String> {
    match outcome {
        Err(error) => Some(error.code.0.to_string()),
        Ok(ServerResult::CallToolResult(result)) if result.is_error == Some(true) => Some("tool_error".to_owned()),
        Ok(_) => None,
    }
}
