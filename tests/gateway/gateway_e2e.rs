//! End to end with official MCP SDKs on both sides: an `rmcp` upstream server, the real gateway
//! binary exporting to a loopback OTLP receiver, and an `rmcp` client. One trace runs from the
//! client's `traceparent` through the gateway's server span and tool span to the upstream client
//! span, whose `traceparent` (and the caller's `tracestate`) the upstream receives; the metrics
//! and the audit rows match. Upstream faults (slow, failing, gone) come back as JSON-RPC errors or
//! tool errors with failure metrics.

use std::time::Duration;

use crate::common::Service;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::mcp_peers::{text_of, McpTestClient, McpUpstream, UpstreamOptions};
use support::service::client;
use support::wait::assert_eventually;
use support::{ReceivedSpan, TestCollector, Transport};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn gateway(collector: &TestCollector, extra: &[(&str, &str)]) -> Service {
    let endpoint = collector.endpoint();
    let mut envs = vec![
        ("OTLP_ENDPOINT", endpoint.as_str()),
        ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms"),
        ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
    ];
    envs.extend_from_slice(extra);
    Service::start(&envs, &[])
}

fn admin_post(service: &Service, path: &str, body: Value) -> (StatusCode, Value) {
    let response = client().post(service.url(path)).json(&body).send().expect("admin API");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn register(service: &Service, name: &str, url: &str, extra: Value) -> Value {
    let mut body = json!({"name": name, "url": url});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, created) = admin_post(service, "/api/servers", body);
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["discovery_error"], Value::Null, "{created}");
    created
}

fn create_endpoint(service: &Service, name: &str, servers: &[&str], auth_required: bool) {
    let (status, body) = admin_post(
        service,
        "/api/endpoints",
        json!({"name": name, "servers": servers, "auth_required": auth_required}),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn spans_named(collector: &TestCollector, name: &str) -> Vec<ReceivedSpan> {
    collector.spans().into_iter().filter(|s| s.name == name).collect()
}

/// The span with `name` and `kind` (the MCP server span and the tool's execution span share
/// the name `tools/call {tool}`), and its parent.
fn span_of_kind(collector: &TestCollector, name: &str, kind: SpanKind) -> ReceivedSpan {
    spans_named(collector, name)
        .into_iter()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} span {name}"))
}

fn parent_of(collector: &TestCollector, span: &ReceivedSpan) -> ReceivedSpan {
    collector
        .spans()
        .into_iter()
        .find(|s| Some(s.span_id_hex()) == span.parent_span_id_hex())
        .unwrap_or_else(|| panic!("the parent of {} arrives", span.name))
}

fn executions(service: &Service, query: &str) -> Value {
    client().get(service.url(&format!("/api/executions{query}"))).send().expect("executions").json().expect("JSON")
}

#[test]
fn official_sdks_on_both_sides_see_one_trace_and_matching_metrics_and_audit() {
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start("weather-upstream");
    let service = gateway(&collector, &[]);
    let created = register(&service, "up", &upstream.url(), json!({}));
    let discovered: Vec<&str> =
        created["tools"].as_array().unwrap().iter().map(|t| t["tool"].as_str().unwrap()).collect();
    assert_eq!(discovered.len(), 5, "{created}");
    create_endpoint(&service, "team", &["up"], false);

    let rt = runtime();
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let mcp = rt
        .block_on(McpTestClient::connect(
            &service.url("/metamcp/team/mcp"),
            vec![("traceparent".to_owned(), traceparent.clone())],
        ))
        .expect("the SDK client connects to the gateway");
    assert_eq!(mcp.protocol_version(), "2025-11-25");
    assert_eq!(mcp.server_name(), "metamcp-telemetry");

    let tools = rt.block_on(mcp.list_tools()).expect("tools/list");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["calculator", "search_tools", "up__add", "up__echo", "up__fail", "up__slow", "up__weather"]);
    let add = tools.iter().find(|t| t.name == "up__add").unwrap();
    assert!(add.input_schema.get("properties").and_then(|p| p.get("a")).is_some(), "the SDK's schema passes through");

    let sum = rt.block_on(mcp.call_tool("up__add", json!({"a": 2, "b": 3}))).expect("upstream tool");
    assert_eq!(text_of(&sum), "5");
    assert_ne!(sum.is_error, Some(true));
    let product = rt.block_on(mcp.call_tool("calculator", json!({"expression": "6 * 7"}))).expect("built-in tool");
    assert_eq!(text_of(&product), "42");
    let found = rt
        .block_on(mcp.call_tool("search_tools", json!({"query": "weather forecast for a city", "limit": 3})))
        .expect("search_tools");
    let found: Value = serde_json::from_str(&text_of(&found)).expect("search results as JSON text");
    assert_eq!(found[0]["name"], "up__weather", "{found}");

    // Arguments the upstream's schema refuses never reach it.
    let refused = rt.block_on(mcp.call_tool("up__add", json!({"a": "two", "b": 3})));
    assert!(refused.as_ref().is_err_and(|e| e.contains("-32602") || e.contains("Invalid arguments")), "{refused:?}");
    assert_eq!(upstream.tool_calls(), vec![("add".to_owned(), json!({"a": 2, "b": 3}))]);

    // The upstream saw our traceparent, in the headers and in params._meta.
    let calls = upstream.requests_for("tools/call");
    assert_eq!(calls.len(), 1);
    let upstream_parent = calls[0].traceparent.clone().expect("traceparent header at the upstream");
    assert_eq!(calls[0].meta_traceparent.as_deref(), Some(upstream_parent.as_str()));
    let parts: Vec<&str> = upstream_parent.split('-').collect();
    assert_eq!(parts[1], TRACE_ID, "the upstream call continues the client's trace");

    // One trace: client → gateway HTTP SERVER span → MCP SERVER span → tool span → upstream
    // CLIENT span.
    // Two calls of up__add (one refused for its arguments), each an MCP server span and an
    // execution span.
    assert_eventually(WAIT, POLL, "the upstream client span and the MCP server spans arrive", || {
        spans_named(&collector, "tools/call add").len() == 1 && spans_named(&collector, "tools/call up__add").len() == 4
    });
    let upstream_span = spans_named(&collector, "tools/call add").remove(0);
    assert_eq!(upstream_span.trace_id_hex(), TRACE_ID);
    assert_eq!(upstream_span.span_id_hex(), parts[2], "the upstream's parent is our CLIENT span");
    assert_eq!(upstream_span.kind, SpanKind::Client);
    assert_eq!(upstream_span.attr("mcp.method.name").as_deref(), Some("tools/call"));
    let tool_span = parent_of(&collector, &upstream_span);
    assert_eq!((tool_span.name.as_str(), tool_span.kind), ("tools/call up__add", SpanKind::Internal));
    assert_eq!(tool_span.attr("gen_ai.tool.name").as_deref(), Some("up__add"));
    assert!(tool_span.attr("mcp.session.id").is_some_and(|s| !s.is_empty()));
    let mcp_span = parent_of(&collector, &tool_span);
    assert_eq!((mcp_span.name.as_str(), mcp_span.kind), ("tools/call up__add", SpanKind::Server));
    assert_eq!(mcp_span.attr("mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(mcp_span.attr("gen_ai.tool.name").as_deref(), Some("up__add"));
    assert_eq!(mcp_span.attr("network.transport").as_deref(), Some("tcp"));
    assert_eq!(mcp_span.attr("mcp.protocol.version").as_deref(), Some("2025-11-25"));
    assert!(mcp_span.attr("jsonrpc.request.id").is_some());
    let server_span = parent_of(&collector, &mcp_span);
    assert_eq!(server_span.name, "POST /metamcp/{endpoint}/mcp");
    assert_eq!(server_span.kind, SpanKind::Server);
    assert_eq!(server_span.trace_id_hex(), TRACE_ID);
    assert_eq!(server_span.parent_span_id_hex().as_deref(), Some(CLIENT_SPAN), "child of the client's traceparent");
    // The gateway's database queries are CLIENT spans in the same trace.
    assert_eventually(WAIT, POLL, "database spans arrive", || {
        collector.spans().iter().any(|s| s.trace_id_hex() == TRACE_ID && s.attr("db.system.name").is_some())
    });

    // Metrics and the audit rows match what was called.
    let scrape = support::prom::scrape_blocking(&service.metrics_url());
    let count = |tool: &str, success: &str| {
        support::prom::value(&scrape, "metamcp_tool_executions_total", &[("tool_name", tool), ("success", success)])
    };
    assert_eq!(count("up__add", "true"), Some(1.0));
    assert_eq!(count("calculator", "true"), Some(1.0));
    assert_eq!(count("search_tools", "true"), Some(1.0));
    assert_eq!(count("up__add", "false"), Some(1.0), "the call refused for its arguments");
    assert_eq!(
        support::prom::histogram_count(&scrape, "metamcp_tool_execution_duration_seconds", &[("tool_name", "up__add")]),
        Some(2.0)
    );
    let rows = executions(&service, "?tool=up__add&success=true");
    assert_eq!(rows["total"], 1, "{rows}");
    assert_eq!(rows["items"][0]["endpoint"], "team");
    assert_eq!(rows["items"][0]["success"], true);
    assert_eq!(rows["items"][0]["trace_id"], TRACE_ID);
    assert_eq!(executions(&service, "?endpoint=team")["total"], 4, "add twice, calculator, search_tools");
    rt.block_on(mcp.close());
}

#[test]
fn an_incoming_tracestate_reaches_the_server_span_and_the_upstream() {
    const TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
    // Two vendors' entries, as W3C Trace Context's examples write them.
    const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start("tracestate-upstream");
    let service = gateway(&collector, &[]);
    register(&service, "up", &upstream.url(), json!({}));
    create_endpoint(&service, "team", &["up"], false);

    let rt = runtime();
    let headers = vec![
        ("traceparent".to_owned(), format!("00-{TRACE}-{CLIENT_SPAN}-01")),
        ("tracestate".to_owned(), TRACESTATE.to_owned()),
    ];
    let mcp = rt.block_on(McpTestClient::connect(&service.url("/metamcp/team/mcp"), headers)).expect("connects");
    let sum = rt.block_on(mcp.call_tool("up__add", json!({"a": 20, "b": 22}))).expect("upstream tool");
    assert_eq!(text_of(&sum), "42");

    // The upstream receives the caller's tracestate, in the header and in params._meta, beside
    // a traceparent of the same trace.
    let calls = upstream.requests_for("tools/call");
    assert_eq!(calls.len(), 1);
    assert!(calls[0].traceparent.as_deref().is_some_and(|p| p.contains(TRACE)), "{:?}", calls[0].traceparent);
    assert_eq!(calls[0].header("tracestate"), Some(TRACESTATE), "the tracestate header at the upstream");
    let meta = calls[0].body.as_ref().and_then(|b| b["params"]["_meta"]["tracestate"].as_str().map(str::to_owned));
    assert_eq!(meta.as_deref(), Some(TRACESTATE), "params._meta.tracestate at the upstream");

    // The server span, and the spans under it, carry it too.
    assert_eventually(WAIT, POLL, "the upstream client span and the MCP server span arrive", || {
        spans_named(&collector, "tools/call add").len() == 1 && spans_named(&collector, "tools/call up__add").len() == 2
    });
    let tool_span = span_of_kind(&collector, "tools/call up__add", SpanKind::Internal);
    let server_span = parent_of(&collector, &tool_span);
    assert_eq!(server_span.kind, SpanKind::Server);
    assert_eq!(server_span.trace_id_hex(), TRACE);
    assert_eq!(server_span.span.trace_state, TRACESTATE, "the server span's trace_state");
    assert_eq!(tool_span.span.trace_state, TRACESTATE);
    assert_eq!(spans_named(&collector, "tools/call add")[0].span.trace_state, TRACESTATE);
    rt.block_on(mcp.close());
}

#[test]
fn upstream_faults_become_json_rpc_errors_with_failure_metrics() {
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start("flaky");
    let service = gateway(&collector, &[]);
    register(&service, "flaky", &upstream.url(), json!({"timeout_ms": 300}));
    create_endpoint(&service, "ops", &["flaky"], false);
    let rt = runtime();
    let mcp = rt.block_on(McpTestClient::connect(&service.url("/metamcp/ops/mcp"), Vec::new())).expect("connect");

    // A tool's own failure is a tool result with isError, counted as a failure.
    let failed = rt.block_on(mcp.call_tool("flaky__fail", json!({}))).expect("a tool error is a result");
    assert_eq!(failed.is_error, Some(true));

    // Slow upstream: the per-server timeout turns into a JSON-RPC error naming it.
    let started = std::time::Instant::now();
    let slow = rt.block_on(mcp.call_tool("flaky__slow", json!({"ms": 5000})));
    let message = slow.expect_err("a timed-out upstream call is a JSON-RPC error");
    assert!(message.contains("timed out") || message.contains("timeout"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(4), "the timeout was honoured: {:?}", started.elapsed());

    // Upstream gone: a JSON-RPC error naming the server, and the gateway keeps serving.
    upstream.stop();
    let gone = rt.block_on(mcp.call_tool("flaky__echo", json!({"text": "hi"})));
    let message = gone.expect_err("a call to a stopped upstream is a JSON-RPC error");
    assert!(message.contains("flaky"), "{message}");
    let still = rt.block_on(mcp.call_tool("calculator", json!({"expression": "1+1"}))).expect("built-ins still work");
    assert_eq!(text_of(&still), "2");

    let scrape = support::prom::scrape_blocking(&service.metrics_url());
    for tool in ["flaky__fail", "flaky__slow", "flaky__echo"] {
        assert_eq!(
            support::prom::value(
                &scrape,
                "metamcp_tool_executions_total",
                &[("tool_name", tool), ("success", "false")]
            ),
            Some(1.0),
            "{tool}"
        );
    }
    let rows = executions(&service, "?success=false");
    assert_eq!(rows["total"], 3, "{rows}");
    let slow_row = rows["items"].as_array().unwrap().iter().find(|r| r["tool_name"] == "flaky__slow").unwrap();
    assert!(
        slow_row["error_message"].as_str().is_some_and(|m| m.contains("did not answer within 300ms")),
        "{slow_row}"
    );

    // The tool spans carry error.type: the execution's the kind of failure, the MCP server
    // span's the JSON-RPC error code (or tool_error).
    assert_eventually(WAIT, POLL, "the failed tool spans arrive", || {
        spans_named(&collector, "tools/call flaky__slow").len() == 2
            && spans_named(&collector, "tools/call flaky__echo").len() == 2
            && spans_named(&collector, "tools/call flaky__fail").len() == 2
    });
    let error_type = |name: &str, kind: SpanKind| span_of_kind(&collector, name, kind).attr("error.type");
    assert_eq!(error_type("tools/call flaky__slow", SpanKind::Internal).as_deref(), Some("timeout"));
    assert_eq!(error_type("tools/call flaky__slow", SpanKind::Server).as_deref(), Some("-32000"));
    let slow = span_of_kind(&collector, "tools/call flaky__slow", SpanKind::Server);
    assert_eq!(slow.attr("rpc.response.status_code").as_deref(), Some("-32000"));
    assert_eq!(error_type("tools/call flaky__fail", SpanKind::Internal).as_deref(), Some("tool_error"));
    assert_eq!(error_type("tools/call flaky__fail", SpanKind::Server).as_deref(), Some("tool_error"));
}

#[test]
fn the_official_client_needs_the_endpoint_key_and_upstream_pages_are_followed() {
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start_with(UpstreamOptions::named("paged").page_size(2).extra_tools(5));
    let service = gateway(&collector, &[]);
    let created = register(&service, "paged", &upstream.url(), json!({}));
    assert_eq!(created["tools"].as_array().unwrap().len(), 10, "every page was followed: {created}");
    assert!(upstream.requests_for("tools/list").len() >= 5);
    create_endpoint(&service, "locked", &["paged"], true);
    let (status, key) = admin_post(&service, "/api/endpoints/locked/keys", json!({}));
    assert_eq!(status, StatusCode::CREATED);
    let key = key["key"].as_str().unwrap().to_owned();

    let rt = runtime();
    let url = service.url("/metamcp/locked/mcp");
    let refused = rt.block_on(McpTestClient::connect(&url, Vec::new()));
    assert!(refused.is_err(), "no key, no session");
    let wrong =
        rt.block_on(McpTestClient::connect(&url, vec![("authorization".to_owned(), "Bearer mmcp_nope".to_owned())]));
    assert!(wrong.is_err(), "a wrong key is refused");
    let mcp = rt
        .block_on(McpTestClient::connect(&url, vec![("authorization".to_owned(), format!("Bearer {key}"))]))
        .expect("the right key opens a session");
    assert_eq!(rt.block_on(mcp.list_tools()).unwrap().len(), 12, "10 upstream tools and 2 built-ins");
}

/// A fresh database on the machine's PostgreSQL, dropped at the end.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> PgDatabase {
        use diesel::{Connection, RunQueryDsl};
        let name = format!("mmcp_e2e_{}", fastrand::u64(..));
        let mut conn = diesel::PgConnection::establish(admin_url).expect("PostgreSQL reachable");
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).expect("create database");
        PgDatabase { admin_url: admin_url.to_owned(), name }
    }

    fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').map_or(self.admin_url.as_str(), |(base, _)| base);
        format!("{base}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use diesel::{Connection, RunQueryDsl};
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}

#[test]
fn the_gateway_runs_the_same_on_postgresql() {
    let Some(admin_url) = support::prereq::postgres_url() else { return };
    let database = PgDatabase::create(&admin_url);
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start("pg-upstream");
    let url = database.url();
    let service = gateway(&collector, &[("DATABASE_URL", url.as_str())]);
    register(&service, "up", &upstream.url(), json!({}));
    create_endpoint(&service, "pg", &["up"], false);
    let rt = runtime();
    let mcp = rt.block_on(McpTestClient::connect(&service.url("/metamcp/pg/mcp"), Vec::new())).expect("connect");
    let echoed = rt.block_on(mcp.call_tool("up__echo", json!({"text": "from postgres"}))).expect("echo");
    assert_eq!(text_of(&echoed), "from postgres");
    assert_eq!(executions(&service, "?tool=up__echo")["total"], 1);
    let health: Value = client().get(service.url("/health")).send().unwrap().json().unwrap();
    assert_eq!(health["components"]["database"]["details"]["backend"], "postgresql", "{health}");
    assert_eventually(WAIT, POLL, "postgresql query spans arrive", || {
        collector.spans().iter().any(|s| s.attr("db.system.name").as_deref() == Some("postgresql"))
    });
    rt.block_on(mcp.close());
    drop(service);
}

#[test]
fn a_built_in_call_costs_exactly_three_spans_in_its_trace() {
    let collector = TestCollector::start(Transport::Grpc);
    let service = gateway(&collector, &[]);
    let url = service.url("/metamcp/default/mcp");
    let http = client();
    let init = http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .unwrap();
    let session = init.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let response: Value = http
        .post(&url)
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"calculator","arguments":{"expression":"2^10"}}}"#)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(response["result"]["content"][0]["text"], "1024");
    // The HTTP server span ends last; once it is here, everything of this request is.
    assert_eventually(WAIT, POLL, "the request's HTTP server span arrives", || {
        collector.spans().iter().any(|s| s.trace_id_hex() == trace && s.name.starts_with("POST "))
    });
    let spans: Vec<_> = collector.spans().into_iter().filter(|s| s.trace_id_hex() == trace).collect();
    let mut kinds: Vec<(SpanKind, String)> = spans.iter().map(|s| (s.kind, s.name.clone())).collect();
    kinds.sort_by(|a, b| a.1.cmp(&b.1).then((a.0 as i32).cmp(&(b.0 as i32))));
    // The HTTP request, the MCP request (the semantic conventions' server span) and the tool's
    // execution inside it; no database span on the request path.
    assert_eq!(spans.len(), 3, "{kinds:?}");
    assert!(kinds.contains(&(SpanKind::Server, "POST /metamcp/{endpoint}/mcp".to_owned())), "{kinds:?}");
    assert!(kinds.contains(&(SpanKind::Server, "tools/call calculator".to_owned())), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|(kind, _)| *kind == SpanKind::Internal).count(), 1, "{kinds:?}");
}
