//! Security and hygiene of the real binary: `/metrics` behind a bearer token; credentials, API
//! keys, cookies and tool arguments never in the spans a loopback OTLP receiver decodes, in the
//! log lines or in `/metrics`; allow-listed request headers on the server span; attribute values
//! cut to `span_limits.max_attribute_value_length` and counted; oversized bodies refused on every
//! route.

use std::time::Duration;

use crate::common::Service;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::prom::{self, Scrape};
use support::service::client;
use support::wait::assert_eventually;
use support::{TestCollector, Transport};

const SCRAPE_TOKEN: &str = "scrape-t0ken-Q7";
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const VALUE_LIMIT: usize = 64;

/// Strings that must never leave the process in telemetry.
const MARKERS: [&str; 6] =
    ["s3cr3t-bearer-9f2", "cookie-9f2", "apikey-9f2", "proxy-9f2", "argument-marker-9f2", "argname9f2"];

fn start(collector: &TestCollector) -> Service {
    let endpoint = collector.endpoint();
    let limit = VALUE_LIMIT.to_string();
    Service::start(
        &[
            ("OTLP_ENDPOINT", endpoint.as_str()),
            ("RUST_LOG", "debug"),
            ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms"),
            ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
            ("METAMCP_PROMETHEUS__BEARER_TOKEN", SCRAPE_TOKEN),
            ("METAMCP_TELEMETRY__CAPTURE_REQUEST_HEADERS", "User-Agent,x-forwarded-for"),
            ("METAMCP_SPAN_LIMITS__MAX_ATTRIBUTE_VALUE_LENGTH", limit.as_str()),
        ],
        &[],
    )
}

fn scrape_with(service: &Service, authorization: Option<&str>) -> reqwest::blocking::Response {
    let mut request = client().get(service.metrics_url());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().expect("scrape")
}

fn scrape(service: &Service) -> Scrape {
    let response = scrape_with(service, Some(&format!("Bearer {SCRAPE_TOKEN}")));
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    Scrape::from_text(&content_type, &response.text().unwrap())
}

/// A POST carrying every kind of credential header, each with its marker.
fn post_with_secrets(service: &Service, path: &str, session: Option<&str>, body: Value) -> reqwest::blocking::Response {
    let mut request = client()
        .post(service.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer s3cr3t-bearer-9f2")
        .header("cookie", "session=cookie-9f2; theme=dark")
        .header("x-api-key", "apikey-9f2")
        .header("proxy-authorization", "Basic proxy-9f2")
        .header("user-agent", "hygiene-agent/1.0")
        .header("x-forwarded-for", format!("10.0.0.1, {}", "9".repeat(300)))
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().expect("POST")
}

fn attribute<'a>(span: &'a opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

#[test]
fn metrics_require_the_bearer_token_when_one_is_set() {
    let collector = TestCollector::start(Transport::Grpc);
    let service = start(&collector);
    for authorization in [None, Some("Bearer wrong-token"), Some("Basic c2NyYXBl"), Some("Bearer "), Some(SCRAPE_TOKEN)]
    {
        let response = scrape_with(&service, authorization);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().expect("a JSON error");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert!(!body.to_string().contains(SCRAPE_TOKEN), "{body}");
    }
    // The scheme is case-insensitive, as RFC 9110 says.
    for authorization in [format!("Bearer {SCRAPE_TOKEN}"), format!("bearer {SCRAPE_TOKEN}")] {
        let response = scrape_with(&service, Some(&authorization));
        assert_eq!(response.status(), StatusCode::OK, "{authorization}");
        assert!(response.text().unwrap().contains("metamcp_telemetry_collector_up"));
    }
    assert!(service.logs().iter().all(|line| !line.contains(SCRAPE_TOKEN)), "the token is never logged");
}

#[test]
fn secrets_and_tool_arguments_never_reach_spans_logs_or_metrics() {
    let collector = TestCollector::start(Transport::Grpc);
    let service = start(&collector);

    // An endpoint that takes an API key: the key is a secret too.
    let created = client()
        .post(service.url("/api/endpoints"))
        .json(&json!({"name": "locked", "servers": [], "auth_required": true}))
        .send()
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let key: Value = client()
        .post(service.url("/api/endpoints/locked/keys"))
        .header("content-type", "application/json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let api_key = key["key"].as_str().expect("an API key").to_owned();

    // MCP on the open endpoint, every request carrying the credential headers.
    let init = post_with_secrets(
        &service,
        "/metamcp/default/mcp",
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "hygiene", "version": "1"}}}),
    );
    assert_eq!(init.status(), StatusCode::OK);
    let session = init.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let calls = [
        // A tool error: the expression does not parse, and the error text quotes it.
        json!({"name": "calculator", "arguments": {"expression": "2 * argument-marker-9f2"}}),
        // Refused by the schema: the violation names the unexpected property and quotes values.
        json!({"name": "calculator", "arguments": {"expression": "1 + 1", "argname9f2": "argument-marker-9f2"}}),
        json!({"name": "calculator", "arguments": {"expression": "6 * 7"}}),
        json!({"name": "search_tools", "arguments": {"query": "argument-marker-9f2 calculator"}}),
    ];
    for (index, params) in calls.into_iter().enumerate() {
        let response = post_with_secrets(
            &service,
            "/metamcp/default/mcp",
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 10 + index, "method": "tools/call", "params": params}),
        );
        assert_eq!(response.status(), StatusCode::OK, "call {index}");
    }
    // The REST face and the locked endpoint, with the real API key.
    let rest = post_with_secrets(
        &service,
        "/api/tools/calculator/execute",
        None,
        json!({"arguments": {"expression": "argument-marker-9f2 + 1"}}),
    );
    assert_eq!(rest.status(), StatusCode::OK);
    let locked = client()
        .post(service.url("/metamcp/locked/mcp"))
        .header("authorization", format!("Bearer {api_key}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .unwrap();
    assert_ne!(locked.status(), StatusCode::UNAUTHORIZED);

    // Every tool call's span arrived (three calculator calls and the REST one, one search).
    assert_eventually(WAIT, POLL, "the tools/call spans reach the receiver", || {
        collector.spans().iter().filter(|s| s.name.starts_with("tools/call")).count() >= 5
    });
    let spans = collector.spans();
    let exported = format!("{:?}", collector.trace_requests());
    let logs = service.logs().join("\n");
    let metrics = scrape(&service).body;
    for marker in MARKERS.iter().copied().chain([api_key.as_str()]) {
        assert!(!exported.contains(marker), "{marker} reached the exported spans");
        assert!(!logs.contains(marker), "{marker} reached the log lines");
        assert!(!metrics.contains(marker), "{marker} reached /metrics");
    }
    // The tool spans still say what failed, without the text.
    let refused = spans
        .iter()
        .find(|s| s.name == "tools/call calculator" && s.status_message.starts_with("invalid arguments"))
        .expect("the refused call's span");
    assert!(refused.status_message.contains("violation"), "{}", refused.status_message);

    // Allow-listed headers are on the server span; the long one is cut to the value limit.
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.name == "POST /metamcp/{endpoint}/mcp")
        .expect("a server span of the MCP endpoint");
    let Some(AnyValue::ArrayValue(agent)) = attribute(&server.span, "http.request.header.user-agent") else {
        panic!("no user-agent header attribute: {:?}", server.span.attributes)
    };
    assert_eq!(agent.values[0].value, Some(AnyValue::StringValue("hygiene-agent/1.0".to_owned())));
    let Some(AnyValue::ArrayValue(forwarded)) = attribute(&server.span, "http.request.header.x-forwarded-for") else {
        panic!("no x-forwarded-for header attribute")
    };
    let Some(AnyValue::StringValue(forwarded)) = &forwarded.values[0].value else { panic!("not a string") };
    assert_eq!(forwarded.len(), VALUE_LIMIT, "{forwarded}");
    assert!(forwarded.starts_with("10.0.0.1, 999"));
    for denied in ["authorization", "cookie", "x-api-key", "proxy-authorization", "mcp-session-id"] {
        let key = format!("http.request.header.{denied}");
        assert!(spans.iter().all(|s| attribute(&s.span, &key).is_none()), "{key} recorded");
    }
}

#[test]
fn long_attribute_values_are_cut_and_counted_and_oversized_bodies_refused_on_every_route() {
    let collector = TestCollector::start(Transport::Grpc);
    let service = start(&collector);
    // A long path: url.path is cut to the value limit, at a character boundary.
    let path = format!("/nowhere/{}", "é".repeat(200));
    let response = client().get(service.url(&path)).send().unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eventually(WAIT, POLL, "the 404 span reaches the receiver", || {
        collector.spans().iter().any(|s| s.kind == SpanKind::Server && s.name == "GET")
    });
    let span = collector.spans().into_iter().find(|s| s.kind == SpanKind::Server && s.name == "GET").unwrap();
    let Some(AnyValue::StringValue(url_path)) = attribute(&span.span, "url.path") else { panic!("no url.path") };
    assert!(url_path.len() <= VALUE_LIMIT && url_path.len() > VALUE_LIMIT - 4, "{url_path}");
    assert!(url_path.starts_with("/nowhere/%C3%A9") || url_path.starts_with("/nowhere/é"), "{url_path}");
    let truncated = prom::value(&scrape(&service), "metamcp_telemetry_attributes_truncated_total", &[]).unwrap();
    assert!(truncated >= 1.0, "{truncated}");

    // A declared body over gateway.max_body_bytes is refused with 413 on routes that never read
    // bodies too, before the body is sent.
    for path in ["/health/live", "/nowhere", "/api/tools", "/metamcp/default/mcp"] {
        let response = client()
            .post(service.url(path))
            .header("content-type", "application/json")
            .body(vec![b' '; 2 * 1024 * 1024])
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let body: Value = response.json().expect("a JSON error");
        assert_eq!(body["error"]["code"], "body_too_large", "{path}: {body}");
    }
    assert_eq!(client().get(service.url("/health/ready")).send().unwrap().status(), StatusCode::OK);
}
