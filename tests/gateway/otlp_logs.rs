//! OTLP log records from the real binary, decoded by the loopback receiver over gRPC and over
//! HTTP/protobuf:
//!
//! - a `tools/call` sent with a `traceparent` header gets one `mcp.access` record in the trace of
//!   the exported MCP server span (its span id too), with the method, tool, endpoint, outcome,
//!   `error.type`, duration and JSON-RPC id — and a failing call its `error.type`; a secret that
//!   travelled in the arguments appears nowhere in the bytes the receiver got;
//! - a log event of the request (the middleware's `request served`, at `logs.level = "debug"`)
//!   becomes a record in the trace of the exported HTTP server span;
//! - `logs.http_access = true` gives exactly one `http.access` record per HTTP request, the
//!   default none;
//! - `OTEL_LOGS_EXPORTER=none` sends no log record at all while spans still arrive.

use std::time::Duration;

use crate::common::Service;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::{json, Value};
use support::service::{client, MCP_ACCEPT};
use support::wait::assert_eventually;
use support::{ReceivedSpan, TestCollector, Transport};

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// Travels in a tool's arguments; must reach no record.
const MARKER: &str = "Lg7SecretArgument";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// The gateway exporting to `collector` with short intervals, and `extra` settings.
fn gateway(collector: &TestCollector, extra: &[(&str, &str)]) -> Service {
    let endpoint = collector.endpoint();
    let protocol = match collector.transport() {
        Transport::Grpc => "grpc",
        Transport::Http => "http/protobuf",
    };
    let mut envs = vec![
        ("OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms"),
        ("METAMCP_LOGS__FLUSH_INTERVAL", "100ms"),
        ("METAMCP_METRICS__EXPORT_INTERVAL", "200ms"),
        ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
    ];
    envs.extend_from_slice(extra);
    Service::start(&envs, &[])
}

/// Every log record the receiver decoded, with its scope name.
fn records(collector: &TestCollector) -> Vec<(String, LogRecord)> {
    collector
        .log_requests()
        .into_iter()
        .flat_map(|request| request.resource_logs)
        .flat_map(|resource| resource.scope_logs)
        .flat_map(|scope| {
            let name = scope.scope.map(|s| s.name).unwrap_or_default();
            scope.log_records.into_iter().map(move |record| (name.clone(), record))
        })
        .collect()
}

fn events(collector: &TestCollector, event_name: &str) -> Vec<LogRecord> {
    records(collector).into_iter().map(|(_, r)| r).filter(|r| r.event_name == event_name).collect()
}

/// The MCP server spans of the calculator's calls (its tool span has the same name).
fn calls(collector: &TestCollector) -> Vec<ReceivedSpan> {
    collector.spans().into_iter().filter(|s| s.name == "tools/call calculator" && s.kind == SpanKind::Server).collect()
}

fn attr(record: &LogRecord, key: &str) -> Option<Any> {
    record.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()).and_then(|v| v.value)
}

fn text(record: &LogRecord, key: &str) -> Option<String> {
    match attr(record, key) {
        Some(Any::StringValue(text)) => Some(text),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An MCP session on the `default` endpoint: its id.
fn open_session(service: &Service) -> String {
    let response = service.mcp_post(
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    assert_eq!(response.status().as_u16(), 200);
    let session = response.headers()["mcp-session-id"].to_str().expect("session id").to_owned();
    let accepted = service.mcp_post(Some(&session), json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(accepted.status().as_u16(), 202);
    session
}

/// `tools/call` of the calculator with `arguments`, sent with a `traceparent` header.
fn call_calculator(service: &Service, session: &str, id: i64, arguments: Value, span: &str) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": "calculator", "arguments": arguments}});
    let response = client()
        .post(service.url("/metamcp/default/mcp"))
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .header("mcp-session-id", session)
        .header("traceparent", format!("00-{TRACE_ID}-{span}-01"))
        .body(body.to_string())
        .send()
        .expect("tools/call");
    assert_eq!(response.status().as_u16(), 200);
    response.json().expect("a JSON-RPC answer")
}

fn mcp_access_records_join_the_request_trace_and_hold_no_argument(transport: Transport) {
    let collector = TestCollector::start(transport);
    let service = gateway(&collector, &[("METAMCP_LOGS__LEVEL", "debug")]);
    let session = open_session(&service);
    let ok = call_calculator(&service, &session, 7, json!({"expression": "6 * 7"}), PARENT_SPAN);
    assert_ne!(ok["result"]["isError"], true, "{ok}");
    let failing =
        call_calculator(&service, &session, 8, json!({"expression": format!("{MARKER} +")}), "00f067aa0ba902b8");
    assert_eq!(failing["result"]["isError"], true, "{failing}");

    let arrived = || {
        events(&collector, "mcp.access")
            .iter()
            .filter(|r| text(r, "mcp.method.name").as_deref() == Some("tools/call"))
            .count()
            == 2
            && calls(&collector).len() == 2
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !arrived() && std::time::Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    assert!(
        arrived(),
        "two tools/call access records and the calls' server spans: records {:#?}, spans {:?}",
        events(&collector, "mcp.access"),
        collector.spans().iter().map(|s| s.name.clone()).collect::<Vec<_>>()
    );
    let mut access: Vec<LogRecord> = events(&collector, "mcp.access")
        .into_iter()
        .filter(|r| text(r, "mcp.method.name").as_deref() == Some("tools/call"))
        .collect();
    // Two batches may be exported at once: in request order again.
    access.sort_by_key(|r| text(r, "jsonrpc.request.id"));
    let spans = calls(&collector);
    for (record, error) in [(&access[0], None), (&access[1], Some("tool_error"))] {
        assert_eq!(record.severity_text, "INFO");
        assert_eq!(text(record, "gen_ai.tool.name").as_deref(), Some("calculator"));
        assert_eq!(text(record, "metamcp.endpoint").as_deref(), Some("default"));
        assert_eq!(text(record, "outcome").as_deref(), Some(if error.is_some() { "error" } else { "ok" }));
        assert_eq!(text(record, "error.type").as_deref(), error);
        assert!(matches!(attr(record, "mcp.server.operation.duration"), Some(Any::DoubleValue(d)) if d > 0.0));
        assert_eq!(attr(record, "mcp.session.id"), None, "the session id is a bearer credential");
        assert_eq!(hex(&record.trace_id), TRACE_ID, "the record is in the caller's trace");
        let span = spans
            .iter()
            .find(|s| s.span_id_hex() == hex(&record.span_id))
            .unwrap_or_else(|| panic!("no exported span {} for {record:?}", hex(&record.span_id)));
        assert_eq!(span.trace_id_hex(), hex(&record.trace_id));
        assert_eq!(span.attr("jsonrpc.request.id"), text(record, "jsonrpc.request.id"));
    }
    let ids: Vec<Option<String>> = access.iter().map(|r| text(r, "jsonrpc.request.id")).collect();
    assert_eq!(ids, [Some("7".to_owned()), Some("8".to_owned())]);

    // The middleware's debug line of each request travels too, in the HTTP server span's trace.
    let served: Vec<LogRecord> = records(&collector)
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| matches!(&r.body, Some(b) if b.value == Some(Any::StringValue("request served".to_owned()))))
        .filter(|r| hex(&r.trace_id) == TRACE_ID)
        .collect();
    assert_eq!(served.len(), 2, "{served:#?}");
    for record in &served {
        assert_eq!(record.severity_text, "DEBUG");
        let span = collector
            .spans()
            .into_iter()
            .find(|s| s.span_id_hex() == hex(&record.span_id))
            .expect("the HTTP server span of the line is exported");
        assert_eq!(span.attr("http.request.method").as_deref(), Some("POST"));
    }

    // Not one byte of what the receiver got holds the argument.
    let bytes: Vec<u8> = collector.log_requests().iter().flat_map(|request| request.encode_to_vec()).collect();
    assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "the argument reached a log record");
    let spans: Vec<u8> = collector.trace_requests().iter().flat_map(|request| request.encode_to_vec()).collect();
    assert!(!spans.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "the argument reached a span");
}

#[test]
fn over_grpc_mcp_access_records_join_the_request_trace_and_hold_no_argument() {
    mcp_access_records_join_the_request_trace_and_hold_no_argument(Transport::Grpc);
}

#[test]
fn over_http_mcp_access_records_join_the_request_trace_and_hold_no_argument() {
    mcp_access_records_join_the_request_trace_and_hold_no_argument(Transport::Http);
}

/// `requests` GETs of `/health/live`, then one MCP `ping` whose access record, once it arrives,
/// says every record sent before it has arrived too (one queue, batches in order).
fn workload_then_marker(service: &Service, collector: &TestCollector, requests: usize) {
    for _ in 0..requests {
        let response = client().get(service.url("/health/live")).send().expect("GET /health/live");
        assert_eq!(response.status().as_u16(), 200);
    }
    let session = open_session(service);
    let ping = service.mcp_post(Some(&session), json!({"jsonrpc": "2.0", "id": 99, "method": "ping"}));
    assert_eq!(ping.status().as_u16(), 200);
    assert_eventually(WAIT, POLL, "the ping's access record arrives", || {
        events(collector, "mcp.access").iter().any(|r| text(r, "mcp.method.name").as_deref() == Some("ping"))
    });
}

#[test]
fn http_access_records_come_one_per_request_only_when_asked_for() {
    const REQUESTS: usize = 5;
    let collector = TestCollector::start(Transport::Grpc);
    let service = gateway(&collector, &[("METAMCP_LOGS__HTTP_ACCESS", "true")]);
    workload_then_marker(&service, &collector, REQUESTS);
    // The health checks, the MCP initialize, initialized and ping: every HTTP request the test made.
    let expected = REQUESTS + 3;
    assert_eventually(WAIT, POLL, "one http.access record per request", || {
        events(&collector, "http.access").len() >= expected
    });
    let access = events(&collector, "http.access");
    assert_eq!(access.len(), expected, "{access:#?}");
    let health: Vec<&LogRecord> =
        access.iter().filter(|r| text(r, "http.route").as_deref() == Some("/health/live")).collect();
    assert_eq!(health.len(), REQUESTS);
    for record in health {
        assert_eq!(text(record, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(attr(record, "http.response.status_code"), Some(Any::IntValue(200)));
        assert!(matches!(attr(record, "http.server.request.duration"), Some(Any::DoubleValue(d)) if d >= 0.0));
        assert_eq!(record.trace_id.len(), 16);
    }

    let collector = TestCollector::start(Transport::Grpc);
    let service = gateway(&collector, &[]);
    workload_then_marker(&service, &collector, REQUESTS);
    assert_eq!(events(&collector, "http.access").len(), 0, "logs.http_access is off by default");
}

#[test]
fn otel_logs_exporter_none_sends_no_log_record() {
    let collector = TestCollector::start(Transport::Grpc);
    let service = gateway(&collector, &[("OTEL_LOGS_EXPORTER", "none"), ("METAMCP_LOGS__LEVEL", "debug")]);
    let session = open_session(&service);
    let answer = call_calculator(&service, &session, 3, json!({"expression": "1 + 1"}), PARENT_SPAN);
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    // Spans and metrics flow; once two metric exports followed the call's span, any record
    // queued with it would have gone out too (the log buffer flushes every 100 ms).
    assert_eventually(WAIT, POLL, "the call's span arrives", || !calls(&collector).is_empty());
    let metrics_seen = collector.metric_requests().len();
    assert_eventually(WAIT, POLL, "two more metric exports", || collector.metric_requests().len() >= metrics_seen + 2);
    assert_eq!(collector.log_requests().len(), 0, "OTEL_LOGS_EXPORTER=none");
    assert!(service.json_logs().iter().any(|line| line["message"] == "metamcp-telemetry listening"), "stdout stays");
}
