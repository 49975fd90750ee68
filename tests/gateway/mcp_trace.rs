//! One trace across the gateway and a stdio upstream: the client's `traceparent` (sent in
//! `params._meta`, as MCP carries it) parents the gateway's server span `tools/call
//! st__echo_meta`; the gateway's client span `tools/call echo_meta` to the upstream follows in
//! the same trace; and the upstream — the Python SDK's server over stdio, which has no headers —
//! reads that client span's id from `params._meta.traceparent`.

use crate::mcp_fixture::{create_endpoint, gateway, register_stdio, runtime, temp_file, POLL, WAIT};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{json, Map, Value};
use support::mcp_peers::{records, McpTestClient};
use support::wait::assert_eventually;
use support::{ReceivedSpan, TestCollector, Transport};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";
const TRACESTATE: &str = "vendor=opaque-value";

#[test]
fn one_trace_runs_from_the_client_through_the_gateway_to_a_stdio_upstream() {
    let Some(python) = support::prereq::python_mcp_sdk() else { return };
    let (_dir, request_log) = temp_file("requests.jsonl");
    let collector = TestCollector::start(Transport::Grpc);
    let service = gateway(Some(&collector), &[]);
    register_stdio(&service, &python, "st", json!({"PEER_REQUEST_LOG": request_log.display().to_string()}));
    create_endpoint(&service, "traced", &["st"]);

    let rt = runtime();
    let mcp = rt
        .block_on(McpTestClient::connect(&service.url("/metamcp/traced/mcp"), Vec::new()))
        .expect("the rmcp client connects");
    let mut meta = Map::new();
    meta.insert("traceparent".into(), json!(format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")));
    meta.insert("tracestate".into(), json!(TRACESTATE));
    let result = rt.block_on(mcp.call_tool_with_meta("st__echo_meta", json!({}), meta)).expect("tools/call");
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let seen = result.structured_content.clone().expect("echo_meta answers structured content");
    let upstream_parent = seen["meta"]["traceparent"].as_str().expect("a traceparent in the upstream's _meta");
    let parts: Vec<&str> = upstream_parent.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream_parent}");
    assert_eq!(parts[1], TRACE_ID, "the upstream call continues the client's trace");
    assert_ne!(parts[2], CLIENT_SPAN, "the upstream's parent is the gateway's span, not the caller's");
    assert_eq!(seen["meta"]["tracestate"], TRACESTATE, "the caller's tracestate travels on: {seen}");
    rt.block_on(mcp.close());

    // The stdio upstream read the same from its request (nothing came as a header: there are none).
    let calls: Vec<Value> = records(&request_log).into_iter().filter(|r| r["method"] == "tools/call").collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["meta"]["traceparent"], upstream_parent);
    assert_eq!(calls[0]["headers"], json!({}));

    // The gateway's client span to the upstream is the span the upstream names as its parent.
    let named = |name: &str| -> Vec<ReceivedSpan> {
        collector.spans().into_iter().filter(|s| s.name == name && s.trace_id_hex() == TRACE_ID).collect()
    };
    assert_eventually(WAIT, POLL, "the client and server spans of the call arrive", || {
        !named("tools/call echo_meta").is_empty() && !named("tools/call st__echo_meta").is_empty()
    });
    let client_spans = named("tools/call echo_meta");
    assert_eq!(client_spans.len(), 1, "{client_spans:#?}");
    let client_span = &client_spans[0];
    assert_eq!(client_span.kind, SpanKind::Client);
    assert_eq!(client_span.span_id_hex(), parts[2], "the upstream's parent is our client span");
    assert_eq!(client_span.attr("mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(client_span.attr("gen_ai.tool.name").as_deref(), Some("echo_meta"));
    assert_eq!(client_span.attr("network.transport").as_deref(), Some("pipe"));
    assert!(client_span.attr("jsonrpc.request.id").is_some(), "{:?}", client_span.attrs());
    assert_eq!(client_span.attr("error.type"), None);

    let server_spans: Vec<ReceivedSpan> =
        named("tools/call st__echo_meta").into_iter().filter(|s| s.kind == SpanKind::Server).collect();
    assert_eq!(server_spans.len(), 1, "{server_spans:#?}");
    let server_span = &server_spans[0];
    assert_eq!(server_span.parent_span_id_hex().as_deref(), Some(CLIENT_SPAN), "parented by _meta.traceparent");
    assert_eq!(server_span.attr("mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(server_span.attr("gen_ai.tool.name").as_deref(), Some("st__echo_meta"));
    assert_eq!(server_span.attr("network.transport").as_deref(), Some("tcp"));
    assert_eq!(server_span.attr("mcp.protocol.version").as_deref(), Some("2025-11-25"));
    assert!(server_span.attr("jsonrpc.request.id").is_some(), "{:?}", server_span.attrs());

    // The client span descends from the server span: follow its parents within the trace.
    let trace: Vec<ReceivedSpan> = collector.spans().into_iter().filter(|s| s.trace_id_hex() == TRACE_ID).collect();
    let mut ancestor = client_span.parent_span_id_hex();
    let mut path = Vec::new();
    loop {
        let Some(id) = ancestor else { panic!("the client span does not descend from the server span: {path:?}") };
        if id == server_span.span_id_hex() {
            break;
        }
        let parent = trace.iter().find(|s| s.span_id_hex() == id).unwrap_or_else(|| {
            panic!("the client span's ancestor {id} is not in the trace (path {path:?}): {trace:#?}")
        });
        path.push(parent.name.clone());
        assert!(path.len() < 8, "no path to the server span: {path:?}");
        ancestor = parent.parent_span_id_hex();
    }
}
