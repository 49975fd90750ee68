//! Executing a tool: a built-in one (the calculator, `search_tools`) or `{server}__{tool}` on its
//! upstream, resolved from the database (or, while it is unavailable, as last resolved), with
//! arguments validated against the tool's schema. Every call gets its span, metric and audit row.

use std::time::Instant;

use opentelemetry::trace::{FutureExt as _, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue, StringValue};
use serde_json::{json, Map, Value};

use super::{
    builtins, interned, CallOrigin, ExecuteError, Gateway, ResolvedKey, BUILTIN_NAMES, CALCULATOR, MAX_RESOLVED,
    SEARCH_TOOLS, TOOL_SEPARATOR,
};
use rmcp::model::{CallToolResult, ContentBlock, RequestId};

use crate::mcp::schema;
use crate::storage::{self, NewExecution, StorageError};
use crate::tools::calculator;

/// Longest error message kept in an audit row.
const MAX_ERROR_MESSAGE: usize = 1024;

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Gateway {
    /// Runs a tool: a built-in one, or `{server}__{tool}` on its upstream. Every call gets a span
    /// `tools/call {tool}`, one `metamcp_tool_executions_total` and duration observation, and one
    /// audit row. A tool's own failure is an `Ok` result with `is_error`.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        origin: &CallOrigin,
    ) -> Result<CallToolResult, ExecuteError> {
        let started = Instant::now();
        // Nothing to build when no span is recorded.
        let cx = self.inner.telemetry.tracer().map(|_| {
            self.inner.telemetry.child_context(super::joined("tools/call", name), tool_span_attributes(name, origin))
        });
        let dispatched = match &cx {
            Some(cx) => self.dispatch(name, arguments, origin).with_context(cx.clone()).await,
            None => self.dispatch(name, arguments, origin).await,
        };
        let duration = started.elapsed();
        // The audit row gets the gateway's own words only: never the result's text (a tool's
        // error text may echo its arguments) nor what an upstream said.
        let (success, error_type, error_message) = match &dispatched {
            Ok(Dispatched { result, note }) if result.is_error == Some(true) => (
                false,
                Some("tool_error"),
                Some(note.clone().unwrap_or_else(|| "the tool returned an error result".to_owned())),
            ),
            Ok(_) => (true, None, None),
            Err(err) => (false, Some(err.kind()), Some(err.audit_message())),
        };
        // `isError` is always written, `false` too, as the gateway always answered.
        let outcome = dispatched.map(|Dispatched { mut result, .. }| {
            result.is_error = Some(result.is_error == Some(true));
            result
        });
        let trace_id = cx.as_ref().and_then(|cx| end_tool_span(cx, error_type, &outcome));
        // Unknown tools are not executions: no metric label for a name a client made up.
        if !matches!(outcome, Err(ExecuteError::UnknownTool(_))) {
            {
                // The tool's span is the exemplar of its duration.
                let _in_tool_span = cx.map(Context::attach);
                self.inner.telemetry.record_tool_execution(name, success, duration);
            }
            let row = NewExecution {
                endpoint: origin.endpoint.clone(),
                tool_name: name.to_owned(),
                success,
                duration_ms: duration.as_secs_f64() * 1000.0,
                error_message: error_message.map(|m| truncate(&m, MAX_ERROR_MESSAGE)),
                trace_id,
            };
            self.inner.audit.record(row);
        }
        outcome
    }

    async fn dispatch(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        origin: &CallOrigin,
    ) -> Result<Dispatched, ExecuteError> {
        match name {
            CALCULATOR => {
                validate_builtin(name, &arguments)?;
                let expression = arguments.get("expression").and_then(Value::as_str).unwrap_or_default();
                Ok(match calculator::evaluate(expression) {
                    Ok(value) => text_result(format_number(value)).into(),
                    // The caller reads the whole message (it quotes their own expression); the
                    // audit row gets the summary, which quotes nothing of it.
                    Err(err) => Dispatched {
                        result: CallToolResult::error(vec![ContentBlock::text(err.to_string())]),
                        note: Some(format!("calculator: {}", err.summary())),
                    },
                })
            }
            SEARCH_TOOLS => {
                validate_builtin(name, &arguments)?;
                let query = arguments.get("query").and_then(Value::as_str).unwrap_or_default();
                let limit = arguments.get("limit").and_then(Value::as_u64).map(|l| l as usize);
                let threshold = arguments.get("threshold").and_then(Value::as_f64);
                let results = self.search(query, limit, threshold, origin.endpoint.as_deref()).await?;
                let text = serde_json::to_string_pretty(&results).unwrap_or_default();
                let mut result = text_result(text);
                result.structured_content = Some(json!({ "results": results }));
                Ok(result.into())
            }
            _ => self.call_upstream(name, arguments, origin).await.map(Dispatched::from),
        }
    }

    async fn call_upstream(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        origin: &CallOrigin,
    ) -> Result<CallToolResult, ExecuteError> {
        let Some((server_name, tool_name)) = name.split_once(TOOL_SEPARATOR) else {
            return Err(ExecuteError::UnknownTool(name.to_owned()));
        };
        let (s, t, endpoint) = (server_name.to_owned(), tool_name.to_owned(), origin.endpoint.clone());
        let key: ResolvedKey = (origin.endpoint.clone(), name.to_owned());
        let lookup = self
            .inner
            .store
            .run(move |c| {
                let server = match storage::get_server(c, &s) {
                    Ok(server) => server,
                    Err(StorageError::NotFound(_)) => return Ok(None),
                    Err(err) => return Err(err),
                };
                if let Some(endpoint) = endpoint {
                    if !storage::endpoint_servers(c, &endpoint)?.iter().any(|e| e.id == server.id) {
                        return Ok(None);
                    }
                }
                match storage::get_tool(c, &s, &t) {
                    Ok(tool) => Ok(Some((server, tool))),
                    Err(StorageError::NotFound(_)) => Ok(None),
                    Err(err) => Err(err),
                }
            })
            .await;
        let found = match lookup {
            Ok(found) => {
                let mut resolved = self.inner.resolved.lock();
                match &found {
                    Some(pair) => {
                        if resolved.len() >= MAX_RESOLVED {
                            resolved.clear();
                        }
                        resolved.insert(key, pair.clone());
                    }
                    None => {
                        resolved.remove(&key);
                    }
                }
                found
            }
            // The database is away: call the upstream as it was last resolved, so MCP clients
            // keep working on what needs no database write.
            Err(err) if err.is_unavailable() => match self.inner.resolved.lock().get(&key) {
                Some(pair) => {
                    tracing::debug!(tool = name, error = %err, "database unavailable; using the last resolution");
                    Some(pair.clone())
                }
                None => return Err(err.into()),
            },
            Err(err) => return Err(err.into()),
        };
        let Some((server, tool)) = found.filter(|(server, tool)| server.enabled && tool.enabled) else {
            return Err(ExecuteError::UnknownTool(name.to_owned()));
        };
        schema::validate_text(&tool.input_schema, &Value::Object(arguments.clone()))
            .map_err(|errors| ExecuteError::InvalidArguments { tool: name.to_owned(), errors })?;
        self.ensure_connected(&server).await?;
        self.inner
            .upstreams
            .call_tool(&server.name, tool_name, arguments, origin.call_context())
            .await
            .map_err(|source| ExecuteError::Upstream { server: server.name.clone(), source })
    }
}

/// The attributes of a tool's execution span (the MCP semantic conventions' names).
fn tool_span_attributes(name: &str, origin: &CallOrigin) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(7);
    attributes.push(KeyValue::new("mcp.method.name", "tools/call"));
    attributes.push(KeyValue::new("gen_ai.tool.name", interned(name, BUILTIN_NAMES)));
    attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
    if let Some(fingerprint) = &origin.session_fingerprint {
        attributes.push(KeyValue::new("mcp.session.id", fingerprint.clone()));
    }
    if let Some(id) = &origin.request_id {
        let id: StringValue = match id {
            RequestId::Number(n) => n.to_string().into(),
            RequestId::String(s) => s.clone().into(),
        };
        attributes.push(KeyValue::new("jsonrpc.request.id", id));
    }
    if let Some(version) = &origin.protocol_version {
        attributes.push(KeyValue::new("mcp.protocol.version", version.clone()));
    }
    if let Some(endpoint) = &origin.endpoint {
        attributes.push(KeyValue::new("metamcp.endpoint", endpoint.clone()));
    }
    attributes
}

/// Ends the tool span of `cx` with the call's outcome; returns its trace id (as hex) for the
/// audit row.
fn end_tool_span(
    cx: &Context,
    error_type: Option<&'static str>,
    outcome: &Result<CallToolResult, ExecuteError>,
) -> Option<String> {
    let span = cx.span();
    if let Some(kind) = error_type {
        span.set_attribute(KeyValue::new("error.type", kind));
        // What an upstream or a tool says can echo its arguments: the span names only the kind;
        // the audit row keeps the message.
        let description = match outcome {
            Ok(_) => "the tool returned an error result".to_owned(),
            Err(ExecuteError::Upstream { server, source }) => format!("upstream {server}: {}", source.kind()),
            // Violations quote argument values and property names.
            Err(ExecuteError::InvalidArguments { tool, errors }) => {
                format!("invalid arguments for {tool}: {} violation(s)", errors.len())
            }
            Err(err) => err.audit_message(),
        };
        span.set_status(Status::error(description));
    }
    let context = span.span_context();
    let trace_id = context.is_valid().then(|| hex(&context.trace_id().to_bytes()));
    span.end();
    trace_id
}

/// `bytes` in lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// A tool's result, and for an error result what the audit row may say of it.
struct Dispatched {
    result: CallToolResult,
    /// The gateway's own description of an error result; `None` says only that there was one.
    note: Option<String>,
}

impl From<CallToolResult> for Dispatched {
    fn from(result: CallToolResult) -> Self {
        Self { result, note: None }
    }
}

/// A successful result with one text block.
fn text_result(text: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// Validates a built-in tool's arguments against its own schema.
fn validate_builtin(name: &str, arguments: &Map<String, Value>) -> Result<(), ExecuteError> {
    let schema = builtins()
        .iter()
        .find(|t| t.name == name)
        .map_or(Value::Null, |t| Value::Object(t.input_schema.as_ref().clone()));
    schema::validate(&schema, &Value::Object(arguments.clone()))
        .map_err(|errors| ExecuteError::InvalidArguments { tool: name.to_owned(), errors })
}

/// An integer-valued result without a fraction (`4`, not `4.0`); others as Rust prints them.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}
