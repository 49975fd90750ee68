//! The MCP semantic conventions for a known mixed workload — tool calls that succeed, a tool
//! error, arguments refused by the schema, prompts, resources and a failed read — through an
//! endpoint over a stdio upstream and a Streamable HTTP upstream (the Python SDK's server): the
//! exact number of spans `{mcp.method.name} {target}` on both sides with their attributes, and the
//! exact counts of `mcp.{server,client}.operation.duration` over OTLP and of
//! `mcp_{server,client}_operation_duration_seconds` in a scrape.

use crate::mcp_fixture::{create_endpoint, gateway, register_http, register_stdio, runtime, POLL, WAIT};
use crate::mcp_python_e2e::published_uri;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;
use support::mcp_peers::{McpTestClient, PeerTransport, PythonServer};
use support::prom::Scrape;
use support::wait::assert_eventually;
use support::{ReceivedSpan, TestCollector, Transport};

/// One expected count: side, method, target attribute (tool or prompt name), error type (`None`:
/// any), count.
struct Expect {
    side: SpanKind,
    method: &'static str,
    target: Option<(&'static str, &'static str)>,
    error: Option<&'static str>,
    count: u64,
}

const fn expect(
    side: SpanKind,
    method: &'static str,
    target: Option<(&'static str, &'static str)>,
    error: Option<&'static str>,
    count: u64,
) -> Expect {
    Expect { side, method, target, error, count }
}

const TOOL: &str = "gen_ai.tool.name";
const PROMPT: &str = "gen_ai.prompt.name";

/// The workload's operations, counted.
const EXPECTED: &[Expect] = &[
    expect(SpanKind::Server, "tools/call", Some((TOOL, "sh__echo")), None, 3),
    expect(SpanKind::Client, "tools/call", Some((TOOL, "echo")), None, 3),
    expect(SpanKind::Server, "tools/call", Some((TOOL, "st__add")), None, 2),
    expect(SpanKind::Client, "tools/call", Some((TOOL, "add")), None, 2),
    expect(SpanKind::Server, "tools/call", Some((TOOL, "st__fail")), None, 1),
    expect(SpanKind::Server, "tools/call", Some((TOOL, "st__fail")), Some("tool_error"), 1),
    expect(SpanKind::Client, "tools/call", Some((TOOL, "fail")), Some("tool_error"), 1),
    // Refused by the gateway's validation: a server operation with an error, no upstream call.
    expect(SpanKind::Server, "tools/call", Some((TOOL, "sh__shout")), None, 1),
    expect(SpanKind::Client, "tools/call", Some((TOOL, "shout")), None, 0),
    expect(SpanKind::Server, "prompts/get", Some((PROMPT, "sh__greeting")), None, 2),
    expect(SpanKind::Client, "prompts/get", Some((PROMPT, "greeting")), None, 2),
    expect(SpanKind::Server, "resources/read", None, None, 2),
    expect(SpanKind::Client, "resources/read", None, None, 2),
];

fn side_name(side: SpanKind) -> &'static str {
    if side == SpanKind::Client {
        "client"
    } else {
        "server"
    }
}

/// The span name the conventions give an operation.
fn span_name(e: &Expect) -> String {
    match e.target {
        Some((_, target)) => format!("{} {target}", e.method),
        None => e.method.to_owned(),
    }
}

/// The MCP spans of `side`, of exactly that kind: the gateway's own INTERNAL tool-execution span
/// shares the SERVER span's name and is not counted.
fn mcp_spans(spans: &[ReceivedSpan], e: &Expect) -> Vec<ReceivedSpan> {
    let name = span_name(e);
    spans
        .iter()
        .filter(|s| s.name == name && s.attr("mcp.method.name").as_deref() == Some(e.method))
        .filter(|s| s.kind == e.side)
        .filter(|s| e.error.is_none_or(|error| s.attr("error.type").as_deref() == Some(error)))
        .cloned()
        .collect()
}

/// The OTLP histogram count of `e`, summed over its series.
fn otlp_count(collector: &TestCollector, e: &Expect) -> u64 {
    let metric = format!("mcp.{}.operation.duration", side_name(e.side));
    collector
        .metric_points(&metric)
        .iter()
        .filter(|p| p.attr("mcp.method.name") == Some(e.method))
        .filter(|p| e.target.is_none_or(|(key, value)| p.attr(key) == Some(value)))
        .filter(|p| e.error.is_none_or(|error| p.attr("error.type") == Some(error)))
        .filter_map(|p| p.count())
        .sum()
}

/// The scraped histogram count of `e`, summed over its series.
fn scraped_count(scrape: &Scrape, e: &Expect) -> u64 {
    let name = format!("mcp_{}_operation_duration_seconds_count", side_name(e.side));
    let mut labels = vec![("mcp_method_name", e.method)];
    if let Some((key, value)) = e.target {
        labels.push((if key == TOOL { "gen_ai_tool_name" } else { "gen_ai_prompt_name" }, value));
    }
    if let Some(error) = e.error {
        labels.push(("error_type", error));
    }
    support::prom::sum(scrape, &name, &labels).unwrap_or(0.0) as u64
}

#[test]
fn a_known_mixed_workload_gives_exact_semconv_spans_and_metrics() {
    let Some(python) = support::prereq::python_mcp_sdk() else { return };
    let http = PythonServer::start(&python, PeerTransport::StreamableHttp, "py-http", &[]);
    let port = url::Url::parse(http.url()).ok().and_then(|u| u.port()).expect("the server's port").to_string();
    let collector = TestCollector::start(Transport::Grpc);
    let service = gateway(Some(&collector), &[]);
    register_stdio(&service, &python, "st", json!({}));
    register_http(&service, "sh", PeerTransport::StreamableHttp, &http);
    create_endpoint(&service, "work", &["st", "sh"]);

    let rt = runtime();
    let mcp = rt.block_on(McpTestClient::connect(&service.url("/metamcp/work/mcp"), Vec::new())).expect("connects");
    for _ in 0..3 {
        rt.block_on(mcp.call_tool("sh__echo", json!({"text": "x"}))).expect("sh__echo");
    }
    for _ in 0..2 {
        rt.block_on(mcp.call_tool("st__add", json!({"a": 1, "b": 2}))).expect("st__add");
    }
    let failed = rt.block_on(mcp.call_tool("st__fail", json!({}))).expect("st__fail answers");
    assert_eq!(failed.is_error, Some(true));
    let refused = rt.block_on(mcp.call_tool("sh__shout", json!({"word": "NOT LOWER"})));
    assert!(refused.as_ref().is_err_and(|e| e.contains("-32602") || e.contains("nvalid")), "{refused:?}");
    for _ in 0..2 {
        rt.block_on(mcp.get_prompt("sh__greeting", json!({"name": "Ada"}))).expect("prompts/get");
    }
    rt.block_on(mcp.read_resource(&published_uri("st", "peer://readme"))).expect("resources/read");
    let unknown = rt.block_on(mcp.read_resource(&published_uri("sh", "peer://no-such-resource")));
    assert!(unknown.is_err(), "{unknown:?}");
    rt.block_on(mcp.close());

    // Spans: exact counts, and the attributes of each side.
    assert_eventually(WAIT, POLL, "every span of the workload arrives", || {
        let spans = collector.spans();
        EXPECTED.iter().all(|e| mcp_spans(&spans, e).len() as u64 >= e.count)
    });
    let spans = collector.spans();
    for e in EXPECTED {
        let found = mcp_spans(&spans, e);
        assert_eq!(found.len() as u64, e.count, "{} spans {:?} error {:?}", side_name(e.side), span_name(e), e.error);
        for span in &found {
            let transport = span.attr("network.transport");
            if e.side == SpanKind::Client {
                let upstream_is_http = e.target.is_some_and(|(_, t)| t == "echo" || t == "greeting");
                if upstream_is_http {
                    assert_eq!(transport.as_deref(), Some("tcp"), "{span:?}");
                    assert_eq!(span.attr("server.address").as_deref(), Some("127.0.0.1"), "{span:?}");
                    assert_eq!(span.int_attr("server.port").map(|p| p.to_string()), Some(port.clone()), "{span:?}");
                } else if e.target.is_some() {
                    assert_eq!(transport.as_deref(), Some("pipe"), "{span:?}");
                }
            } else {
                assert_eq!(transport.as_deref(), Some("tcp"), "{span:?}");
                assert_eq!(span.attr("mcp.protocol.version").as_deref(), Some("2025-11-25"), "{span:?}");
            }
            assert!(span.attr("jsonrpc.request.id").is_some(), "{span:?}");
        }
    }
    let shout = mcp_spans(&spans, &EXPECTED[7]).remove(0);
    assert!(shout.attr("error.type").is_some(), "{shout:?}");
    assert_eq!(shout.attr("rpc.response.status_code").as_deref(), Some("-32602"), "{shout:?}");
    let reads = mcp_spans(&spans, &EXPECTED[11]);
    assert_eq!(reads.iter().filter(|s| s.attr("error.type").is_some()).count(), 1, "one failed read: {reads:#?}");

    // Metrics over OTLP (cumulative: the latest export holds the totals) and in a scrape.
    // The call refused as invalid params is measured without its tool name (a name a client made
    // up is no label value: docs/metrics.md), under its error type.
    let refused_metric = Expect { target: None, error: Some("-32602"), ..EXPECTED[7] };
    let measured = || EXPECTED.iter().filter(|e| !std::ptr::eq(*e, &EXPECTED[7])).chain([&refused_metric]);
    assert_eventually(WAIT, POLL, "the operation histograms reach the receiver with every count", || {
        measured().all(|e| otlp_count(&collector, e) == e.count)
    });
    let refused_points = collector.metric_points("mcp.server.operation.duration");
    let refused_point =
        refused_points.iter().find(|p| p.attr("error.type") == Some("-32602")).expect("the refused call's series");
    assert_eq!(refused_point.attr("gen_ai.tool.name"), None, "no made-up name as a label: {refused_point:?}");
    let scrape = support::prom::scrape_blocking(&service.metrics_url());
    for e in measured() {
        assert_eq!(
            scraped_count(&scrape, e),
            e.count,
            "scraped {} {:?} error {:?}",
            side_name(e.side),
            span_name(e),
            e.error
        );
    }
    let server_points = collector.metric_points("mcp.server.operation.duration");
    let point =
        server_points.iter().find(|p| p.attr("gen_ai.tool.name") == Some("sh__echo")).expect("the sh__echo series");
    assert_eq!(point.unit, "s");
    let bounds = &point.histogram().expect("a histogram").explicit_bounds;
    assert_eq!(bounds, &[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]);
}
