//! Tests of the upstream client against a fake MCP server on a loopback socket: sessions,
//! pagination, event streams, failure classes, time bounds, spans and trace propagation.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::Context;
use opentelemetry_sdk::trace::SpanData;
use serde_json::{json, Map, Value};

use super::answer::{find_response, Found};
use super::propagation::inject_meta;
use super::sse::SseParser;
use super::*;
use crate::mcp::outbound::OutboundPolicy;
use crate::mcp::protocol::session_fingerprint;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One POST the fake server received.
#[derive(Debug, Clone)]
struct Posted {
    headers: http::HeaderMap,
    body: Value,
}

impl Posted {
    fn method(&self) -> &str {
        self.body["method"].as_str().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug)]
struct FakeState {
    /// Whether `initialize` issues an `Mcp-Session-Id` (and later requests must carry it).
    issue_sessions: bool,
    /// The session requests must carry; `None` after [`FakeUpstream::expire`].
    valid_session: Option<String>,
    /// The revision `initialize` answers with.
    protocol_version: String,
    initializations: usize,
    posts: Vec<Posted>,
    /// The session ids of the DELETE requests received.
    deletes: Vec<String>,
}

/// A small Streamable HTTP MCP server whose tools behave as their names say.
struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

impl FakeUpstream {
    async fn start() -> Self {
        Self::start_with(true, "2025-11-25").await
    }

    async fn start_with(issue_sessions: bool, protocol_version: &str) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            issue_sessions,
            valid_session: None,
            protocol_version: protocol_version.to_owned(),
            initializations: 0,
            posts: Vec::new(),
            deletes: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    fn posts(&self) -> Vec<Posted> {
        self.state.lock().unwrap().posts.clone()
    }

    fn methods(&self) -> Vec<String> {
        self.posts().iter().map(|p| p.method().to_owned()).collect()
    }

    fn initializations(&self) -> usize {
        self.state.lock().unwrap().initializations
    }

    fn deletes(&self) -> Vec<String> {
        self.state.lock().unwrap().deletes.clone()
    }

    /// Forgets the current session: requests carrying it get 404 from now on.
    fn expire(&self) {
        self.state.lock().unwrap().valid_session = None;
    }
}

fn target<'a>(url: &'a str, timeout: Duration) -> UpstreamTarget<'a> {
    UpstreamTarget { name: "fake", url, timeout }
}

fn plain(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    if !content_type.is_empty() {
        response.headers_mut().insert("content-type", http::HeaderValue::from_str(content_type).unwrap());
    }
    response
}

fn json_response(message: Value) -> Response<Body> {
    plain(200, "application/json", message.to_string())
}

/// An event stream that stays open after its events, as a server pushing more would.
fn open_event_stream(events: String) -> Response<Body> {
    let frames = futures_util::stream::iter(vec![Ok::<_, Infallible>(Frame::data(Bytes::from(events)))])
        .chain(futures_util::stream::pending());
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
    response
}

fn tool(name: &str) -> Value {
    json!({"name": name, "description": format!("tool {name}"), "inputSchema": {"type": "object"}})
}

async fn handle(
    state: Arc<Mutex<FakeState>>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let session = parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if parts.method == http::Method::DELETE {
        state.lock().unwrap().deletes.push(session.unwrap_or_default());
        return Ok(plain(200, "", ""));
    }
    let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    let params = message.get("params").cloned().unwrap_or(json!({}));
    let (issue_sessions, valid_session, protocol_version) = {
        let mut state = state.lock().unwrap();
        state.posts.push(Posted { headers: parts.headers.clone(), body: message.clone() });
        (state.issue_sessions, state.valid_session.clone(), state.protocol_version.clone())
    };
    let result = |result: Value| json_response(json!({"jsonrpc": "2.0", "id": id, "result": result}));

    if method == "initialize" {
        let mut state = state.lock().unwrap();
        state.initializations += 1;
        let mut response = result(json!({
            "protocolVersion": protocol_version,
            "capabilities": {"tools": {"listChanged": true}},
            "serverInfo": {"name": "fake", "version": "1.0.0"}
        }));
        if issue_sessions {
            let session = format!("session-{}", state.initializations);
            response.headers_mut().insert("mcp-session-id", http::HeaderValue::from_str(&session).unwrap());
            state.valid_session = Some(session);
        }
        return Ok(response);
    }
    if issue_sessions {
        match &session {
            None => return Ok(plain(400, "text/plain", "Bad Request: missing session")),
            Some(session) if Some(session) != valid_session.as_ref() => {
                return Ok(plain(404, "text/plain", "session not found"))
            }
            Some(_) => {}
        }
    }
    let mut response = match method.as_str() {
        "notifications/initialized" => plain(202, "", ""),
        "tools/list" => match params.get("cursor").and_then(Value::as_str) {
            None => result(json!({
                "tools": [tool("a1"), {"name": "a2", "inputSchema": {}, "annotations": {"readOnlyHint": true}}],
                "nextCursor": "page-2"
            })),
            Some("page-2") => result(json!({"tools": [tool("b1")], "nextCursor": "page-3"})),
            Some("page-3") => result(json!({"tools": [tool("c1")]})),
            Some(_) => {
                json_response(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "bad cursor"}}))
            }
        },
        "tools/call" => {
            let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
            let text = json!({"type": "text", "text": arguments.to_string()});
            match params["name"].as_str().unwrap_or_default() {
                "echo" => result(json!({"content": [text], "structuredContent": arguments})),
                "failing" => result(json!({"content": [{"type": "text", "text": "it broke"}], "isError": true})),
                "sse" => {
                    let response = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [text]}});
                    let response = response.to_string();
                    // Split across two `data:` lines, which the client joins with a newline.
                    let (head, tail) = response.split_at(response.find(',').unwrap() + 1);
                    let events = format!(
                        ": keep-alive comment\n\n\
                         event: message\nid: 1\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1}}}}\n\n\
                         data: {{\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"ping\"}}\n\n\
                         data: {{\"jsonrpc\":\"2.0\",\"id\":999999999,\"result\":{{}}}}\n\n\
                         id: 2\r\ndata:\r\n\r\n\
                         data: {head}\r\ndata: {tail}\r\n\r\n"
                    );
                    open_event_stream(events)
                }
                "silent_sse" => {
                    let events = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n";
                    plain(200, "text/event-stream", events)
                }
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    result(json!({"content": [text]}))
                }
                "garbage" => plain(200, "application/json", "<<< this is not json"),
                "boom" => plain(500, "text/plain", "upstream exploded"),
                "redirect" => {
                    let mut response = plain(307, "text/plain", "moved");
                    response.headers_mut().insert("location", http::HeaderValue::from_static("/redirected"));
                    response
                }
                "wrong_shape" => result(json!({"content": "MARKER is not a list", "isError": "MARKER"})),
                "sse_garbage" => plain(200, "text/event-stream", "data: MARKER not json\n\n"),
                "html" => plain(200, "text/html; charset=utf-8", "<html></html>"),
                "big" => result(json!({"content": [{"type": "text", "text": "x".repeat(64 * 1024)}]})),
                "reject" => json_response(
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "bad arguments"}}),
                ),
                other => json_response(
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("no tool {other}")}}),
                ),
            }
        }
        _ => json_response(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "unknown"}})),
    };
    // Some servers repeat the session id on every answer.
    if let Some(session) = session {
        response.headers_mut().insert("mcp-session-id", http::HeaderValue::from_str(&session).unwrap());
    }
    Ok(response)
}

fn arguments(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned())
}

/// Polls `condition` every 10ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn lists_tools_across_pages() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());

    let tools = client.list_tools(&target(&url, TIMEOUT)).await.unwrap();

    let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a1", "a2", "b1", "c1"]);
    assert_eq!(tools[1].annotations(), Some(&json!({"readOnlyHint": true})), "unknown fields are kept");
    let cursors: Vec<_> = fake
        .posts()
        .iter()
        .filter(|p| p.method() == "tools/list")
        .map(|p| p.body["params"].get("cursor").cloned())
        .collect();
    assert_eq!(cursors, [None, Some(json!("page-2")), Some(json!("page-3"))]);
}

#[tokio::test]
async fn initializes_once_and_sends_the_session_and_version_afterwards() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    let target = target(&url, TIMEOUT);

    client.list_tools(&target).await.unwrap();
    let result = client.call_tool(&target, "echo", arguments(json!({"q": "rust"}))).await.unwrap();

    assert_eq!(result.structured_content, Some(json!({"q": "rust"})));
    assert_eq!(fake.initializations(), 1, "one session for every call");
    let posts = fake.posts();
    assert_eq!(posts[0].method(), "initialize");
    assert_eq!(posts[0].body["params"]["protocolVersion"], "2025-11-25");
    assert_eq!(posts[0].body["params"]["clientInfo"]["name"], CLIENT_NAME);
    assert_eq!(posts[0].body["params"]["capabilities"], json!({}));
    assert_eq!(posts[0].header("mcp-session-id"), None);
    assert_eq!(posts[0].header("mcp-protocol-version"), None);
    assert_eq!(posts[1].method(), "notifications/initialized");
    assert!(posts[1].body.get("id").is_none(), "a notification has no id");
    for post in &posts {
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(post.header("accept"), Some("application/json, text/event-stream"));
    }
    for post in &posts[1..] {
        assert_eq!(post.header("mcp-session-id"), Some("session-1"), "{}", post.method());
        assert_eq!(post.header("mcp-protocol-version"), Some("2025-11-25"), "{}", post.method());
    }
    let ids: Vec<_> = posts.iter().filter_map(|p| p.body.get("id").and_then(Value::as_i64)).collect();
    assert!(ids.len() >= 2, "more than one request carries an id: {ids:?}");
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "every request has its own id: {ids:?}");
}

#[tokio::test]
async fn speaks_an_older_version_and_refuses_an_unknown_one() {
    let older = FakeUpstream::start_with(true, "2025-06-18").await;
    let url = older.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    client.list_tools(&target(&url, TIMEOUT)).await.unwrap();
    assert!(older.posts()[1..].iter().all(|p| p.header("mcp-protocol-version") == Some("2025-06-18")));

    let unknown = FakeUpstream::start_with(true, "1999-01-01").await;
    let url = unknown.url();
    let err = client.list_tools(&target(&url, TIMEOUT)).await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Protocol(m) if m.contains("unsupported protocol version")), "{err}");
    assert!(!err.to_string().contains("1999-01-01"), "the upstream's value is not quoted: {err}");
    assert_eq!(unknown.methods(), ["initialize"], "nothing is sent after a failed negotiation");
}

#[tokio::test]
async fn stateless_servers_get_no_session_header() {
    let fake = FakeUpstream::start_with(false, "2025-11-25").await;
    let url = fake.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    // An unbounded timeout is accepted too.
    client.call_tool(&target(&url, Duration::MAX), "echo", Map::new()).await.unwrap();
    assert_eq!(fake.methods(), ["initialize", "notifications/initialized", "tools/call"]);
    assert!(fake.posts().iter().all(|p| p.header("mcp-session-id").is_none()));
    assert_eq!(fake.posts()[2].header("mcp-protocol-version"), Some("2025-11-25"));
}

#[tokio::test]
async fn reads_the_response_out_of_an_event_stream() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    let started = Instant::now();

    let result = client.call_tool(&target(&url, TIMEOUT), "sse", arguments(json!({"n": 1}))).await.unwrap();

    assert_eq!(result.content, vec![json!({"type": "text", "text": "{\"n\":1}"})]);
    assert!(!result.is_error);
    assert!(started.elapsed() < Duration::from_secs(5), "returns without waiting for the stream to end");
}

#[tokio::test]
async fn reinitializes_once_when_the_upstream_forgot_the_session() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    let target = target(&url, TIMEOUT);
    client.list_tools(&target).await.unwrap();

    fake.expire();
    client.call_tool(&target, "echo", Map::new()).await.unwrap();

    assert_eq!(fake.initializations(), 2);
    let calls: Vec<_> = fake
        .posts()
        .into_iter()
        .filter(|p| p.method() == "tools/call")
        .map(|p| p.header("mcp-session-id").map(str::to_owned))
        .collect();
    assert_eq!(calls, [Some("session-1".to_owned()), Some("session-2".to_owned())]);
}

#[tokio::test]
async fn a_slow_upstream_times_out_within_the_bound() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    let timeout = Duration::from_millis(300);
    let started = Instant::now();

    let err = client.call_tool(&target(&url, timeout), "slow", Map::new()).await.unwrap_err();

    assert!(matches!(err, UpstreamError::Timeout(t) if t == timeout), "{err}");
    assert_eq!(err.kind(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn failures_are_classified() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let client = UpstreamClient::with_max_response_bytes(TelemetryManager::disabled(), 16 * 1024);
    let target = target(&url, TIMEOUT);

    for (tool, kind) in [
        ("garbage", "protocol"),
        ("html", "protocol"),
        ("silent_sse", "protocol"),
        ("big", "too_large"),
        ("boom", "http"),
        ("reject", "rpc"),
        ("wrong_shape", "protocol"),
        ("sse_garbage", "protocol"),
        ("redirect", "http"),
    ] {
        let err = client.call_tool(&target, tool, Map::new()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{tool}: {err}");
        match (tool, &err) {
            ("boom", UpstreamError::Http { status }) => assert_eq!(*status, 500),
            ("redirect", UpstreamError::Http { status }) => assert_eq!(*status, 307, "redirects are not followed"),
            ("reject", UpstreamError::Rpc { code }) => assert_eq!(*code, -32602),
            ("big", UpstreamError::TooLarge { limit }) => assert_eq!(*limit, 16384),
            ("html", UpstreamError::Protocol(message)) => assert!(message.contains("text/html"), "{message}"),
            _ => {}
        }
        // Nothing the upstream sent is quoted back: not its body, its error message, a value.
        let shown = err.to_string();
        for sent in ["exploded", "bad arguments", "not json", "MARKER", "<html>"] {
            assert!(!shown.contains(sent), "{tool}: {shown}");
        }
    }
    assert_eq!(
        fake.posts().iter().filter(|p| p.body["params"]["name"] == "redirected").count(),
        0,
        "the redirect's target was never called"
    );
    assert_eq!(fake.initializations(), 1, "failed calls keep the session");
}

#[tokio::test]
async fn unreachable_upstreams_are_connect_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    for url in [format!("http://127.0.0.1:{port}/mcp"), "not a url".to_owned(), "ftp://127.0.0.1/mcp".to_owned()] {
        let started = Instant::now();
        let err = client.list_tools(&target(&url, TIMEOUT)).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Connect(_)), "{url}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[tokio::test]
async fn tool_failures_are_results() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let client = UpstreamClient::new(telemetry);

    let result = client.call_tool(&target(&url, TIMEOUT), "failing", Map::new()).await.unwrap();

    assert!(result.is_error);
    let span = recorded.span("tools/call failing").unwrap();
    assert_eq!(attribute(&span, "error.type").as_deref(), Some("tool_error"));
    assert!(matches!(span.status, Status::Error { .. }));
}

#[tokio::test]
async fn spans_carry_the_mcp_attributes_and_their_context_travels() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let client = UpstreamClient::new(telemetry.clone());
    let tracer = telemetry.tracer().unwrap();
    let parent = Context::current_with_span(tracer.start("gateway request"));
    let parent_ids = parent.span().span_context().clone();

    client
        .call_tool(&target(&url, TIMEOUT), "echo", arguments(json!({"password": "s3cret-value"})))
        .with_context(parent.clone())
        .await
        .unwrap();
    parent.span().end();

    assert_eq!(
        recorded.span_names(),
        ["initialize", "notifications/initialized", "tools/call echo", "gateway request"]
    );
    let call = recorded.span("tools/call echo").unwrap();
    assert_eq!(call.span_kind, SpanKind::Client);
    assert_eq!(call.span_context.trace_id(), parent_ids.trace_id());
    assert_eq!(call.parent_span_id, parent_ids.span_id());
    assert_eq!(call.status, Status::Unset);
    let post = fake.posts().into_iter().find(|p| p.method() == "tools/call").unwrap();
    let expected = [
        ("mcp.method.name", "tools/call".to_owned()),
        ("gen_ai.tool.name", "echo".to_owned()),
        ("gen_ai.operation.name", "execute_tool".to_owned()),
        ("mcp.session.id", session_fingerprint("session-1")),
        ("mcp.protocol.version", "2025-11-25".to_owned()),
        ("jsonrpc.request.id", post.body["id"].to_string()),
        ("server.address", "127.0.0.1".to_owned()),
        ("server.port", fake.addr.port().to_string()),
        ("url.full", url.clone()),
        ("http.request.method", "POST".to_owned()),
        ("http.response.status_code", "200".to_owned()),
        ("network.protocol.name", "http".to_owned()),
        ("network.protocol.version", "1.1".to_owned()),
    ];
    for (key, value) in expected {
        assert_eq!(attribute(&call, key).as_deref(), Some(value.as_str()), "{key}");
    }
    assert_eq!(attribute(&call, "error.type"), None);

    // The span's own context, in the header and in `_meta`.
    let traceparent = format!("00-{}-{}-01", call.span_context.trace_id(), call.span_context.span_id());
    assert_eq!(post.header("traceparent"), Some(traceparent.as_str()));
    assert_eq!(post.body["params"]["_meta"]["traceparent"], traceparent.as_str());
    assert_eq!(post.body["params"]["arguments"], json!({"password": "s3cret-value"}), "arguments go through");

    let initialize = recorded.span("initialize").unwrap();
    assert_eq!(initialize.parent_span_id, parent_ids.span_id());
    assert_eq!(
        attribute(&initialize, "mcp.session.id"),
        Some(session_fingerprint("session-1")),
        "read from the answer, shown as its fingerprint"
    );
    let init_post = &fake.posts()[0];
    let init_parent = format!("00-{}-{}-01", initialize.span_context.trace_id(), initialize.span_context.span_id());
    assert_eq!(init_post.header("traceparent"), Some(init_parent.as_str()));

    for span in recorded.spans() {
        let mut keys: Vec<_> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        keys.sort_unstable();
        let count = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), count, "{} sets an attribute twice", span.name);
        for kv in &span.attributes {
            assert!(!kv.value.as_str().contains("s3cret"), "{} carries an argument", kv.key);
            assert!(!kv.value.as_str().contains("session-1"), "{} carries the session id", kv.key);
        }
    }
}

#[tokio::test]
async fn failed_calls_mark_their_spans() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let client = UpstreamClient::new(telemetry);

    let _ = client.call_tool(&target(&url, TIMEOUT), "boom", Map::new()).await.unwrap_err();
    let _ = client.call_tool(&target(&url, TIMEOUT), "reject", Map::new()).await.unwrap_err();
    let _ = client.call_tool(&target(&url, Duration::from_millis(200)), "slow", Map::new()).await.unwrap_err();

    let boom = recorded.span("tools/call boom").unwrap();
    assert_eq!(attribute(&boom, "error.type").as_deref(), Some("http"));
    assert_eq!(attribute(&boom, "http.response.status_code").as_deref(), Some("500"));
    assert_eq!(boom.status, Status::error("HTTP 500"));
    let reject = recorded.span("tools/call reject").unwrap();
    assert_eq!(attribute(&reject, "error.type").as_deref(), Some("rpc"));
    assert_eq!(attribute(&reject, "rpc.response.status_code").as_deref(), Some("-32602"));
    let slow = recorded.span("tools/call slow").unwrap();
    assert_eq!(attribute(&slow, "error.type").as_deref(), Some("timeout"));
    assert!(matches!(slow.status, Status::Error { .. }));
}

#[tokio::test]
async fn forgetting_a_server_deletes_its_session() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    let target = target(&url, TIMEOUT);
    client.list_tools(&target).await.unwrap();

    client.forget("fake");

    assert!(eventually(Duration::from_secs(5), || fake.deletes() == ["session-1"]).await, "{:?}", fake.deletes());
    client.list_tools(&target).await.unwrap();
    assert_eq!(fake.initializations(), 2, "a forgotten server gets a new session");
    client.forget("never-seen");
}

#[tokio::test]
async fn concurrent_first_calls_share_one_session() {
    let fake = FakeUpstream::start().await;
    let url = fake.url();
    let client = UpstreamClient::new(TelemetryManager::disabled());
    let target = target(&url, TIMEOUT);

    let (a, b, c) = tokio::join!(
        client.list_tools(&target),
        client.call_tool(&target, "echo", Map::new()),
        client.call_tool(&target, "sse", Map::new())
    );

    assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");
    assert_eq!(fake.initializations(), 1);
}

#[tokio::test]
async fn a_new_url_for_a_server_starts_a_new_session() {
    let first = FakeUpstream::start().await;
    let second = FakeUpstream::start().await;
    let (first_url, second_url) = (first.url(), second.url());
    let client = UpstreamClient::new(TelemetryManager::disabled());

    client.list_tools(&target(&first_url, TIMEOUT)).await.unwrap();
    client.list_tools(&target(&second_url, TIMEOUT)).await.unwrap();

    assert_eq!((first.initializations(), second.initializations()), (1, 1));
    assert!(eventually(Duration::from_secs(5), || first.deletes() == ["session-1"]).await);
    assert_eq!(second.posts()[2].header("mcp-session-id"), Some("session-1"));
}

#[test]
fn event_streams_parse_across_any_chunking() {
    let stream =
        b": comment\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nid: 7\ndata:x\n\ndata: \r\rdata: last";
    let expected = vec!["{\"a\":\n1}".to_owned(), "x".to_owned(), String::new(), "last".to_owned()];
    for size in 1..=stream.len() {
        let mut parser = SseParser::new(MAX_EVENT_BYTES);
        let mut events = Vec::new();
        for chunk in stream.chunks(size) {
            parser.feed(chunk, &mut events).unwrap();
        }
        parser.finish(&mut events).unwrap();
        assert_eq!(events, expected, "chunks of {size} bytes");
    }
}

#[test]
fn finding_the_response_skips_other_messages() {
    let others = [
        json!({"jsonrpc": "2.0", "method": "notifications/progress"}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 6, "result": {}}),
        json!({"jsonrpc": "2.0", "id": "5", "result": {}}),
        json!(42),
    ];
    for message in others {
        assert!(matches!(find_response(message.clone(), 5), Found::Other), "{message}");
    }
    let Found::Response(Ok(result)) = find_response(json!({"jsonrpc": "2.0", "id": 5, "result": {"k": 1}}), 5) else {
        panic!("the response was not found");
    };
    assert_eq!(result, json!({"k": 1}));
    let batch =
        json!([{"jsonrpc": "2.0", "method": "x"}, {"jsonrpc": "2.0", "id": 5, "error": {"code": 1, "message": "m"}}]);
    assert!(matches!(find_response(batch, 5), Found::Response(Err(UpstreamError::Rpc { code: 1, .. }))));
    let unreadable = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}});
    assert!(matches!(find_response(unreadable, 5), Found::Response(Err(UpstreamError::Rpc { code: -32700, .. }))));
    assert!(matches!(
        find_response(json!({"jsonrpc": "1.0", "id": 5, "result": 1}), 5),
        Found::Response(Err(UpstreamError::Protocol(_)))
    ));
}

#[test]
fn the_trace_context_joins_existing_meta_keys() {
    let (telemetry, _recorded) = TelemetryManager::for_testing();
    let tracer = telemetry.tracer().unwrap();
    let cx = Context::current_with_span(tracer.start("s"));
    let propagator = metamcp_telemetry::propagation::propagator();

    let mut params = arguments(json!({"_meta": {"progressToken": 3}}));
    inject_meta(&propagator, &cx, &mut params);
    let meta = params["_meta"].as_object().unwrap();
    assert_eq!(meta["progressToken"], 3);
    let expected = format!("00-{}-{}-01", cx.span().span_context().trace_id(), cx.span().span_context().span_id());
    assert_eq!(meta["traceparent"], expected.as_str());
    assert!(!meta.contains_key("tracestate"), "an empty tracestate is left out");

    let mut odd = arguments(json!({"_meta": "not an object"}));
    inject_meta(&propagator, &cx, &mut odd);
    assert_eq!(odd["_meta"], "not an object");

    let mut none = Map::new();
    inject_meta(&propagator, &Context::new(), &mut none);
    assert!(none.is_empty(), "no context, no _meta");
}

#[test]
fn the_client_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let client = UpstreamClient::new(TelemetryManager::disabled());
    let target = target("http://127.0.0.1:1/mcp", TIMEOUT);
    assert_send(&client.list_tools(&target));
    assert_send(&client.call_tool(&target, "t", Map::new()));
}

#[test]
fn an_event_larger_than_the_bound_is_refused_however_it_is_cut() {
    let line = format!("data: {}", "x".repeat(10_000));
    for size in [1, 7, 1000, 20_000] {
        let mut parser = SseParser::new(8 * 1024);
        let mut events = Vec::new();
        let outcome = line.as_bytes().chunks(size).try_for_each(|chunk| parser.feed(chunk, &mut events));
        let err = outcome.expect_err("an event over the bound");
        assert!(matches!(err, UpstreamError::TooLarge { limit: 8192 }), "{err}");
        assert!(parser.pending.len() <= 8 * 1024, "chunks of {size}: {} bytes kept", parser.pending.len());
    }
    // Many small lines of one event count together; a blank line starts the count again.
    let mut parser = SseParser::new(1024);
    let mut events = Vec::new();
    for _ in 0..100 {
        parser.feed(b"data: 0123456789\n\n", &mut events).unwrap();
    }
    assert_eq!(events.len(), 100);
    let err = (0..100).try_for_each(|_| parser.feed(b"data: 0123456789\n", &mut events)).unwrap_err();
    assert_eq!(err.kind(), "too_large");
}

#[test]
fn a_long_line_is_read_once_whatever_the_chunking() {
    // 1 MiB in one line, fed 64 bytes at a time, then ended: one event, every byte kept.
    let payload = "y".repeat(1 << 20);
    let stream = format!("data: {payload}\r\n\r\n");
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    let mut events = Vec::new();
    for chunk in stream.as_bytes().chunks(64) {
        parser.feed(chunk, &mut events).unwrap();
    }
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].len(), payload.len());
    assert!(parser.pending.is_empty());
}

#[tokio::test]
async fn addresses_the_outbound_policy_refuses_are_never_connected_to() {
    let fake = FakeUpstream::start().await;
    let port = fake.addr.port();
    let deny_loopback = OutboundPolicy::new(&[], &["127.0.0.0/8".to_owned(), "::1/128".to_owned()]).unwrap();
    let client = UpstreamClient::with_config(
        TelemetryManager::disabled(),
        ClientConfig { policy: Arc::new(deny_loopback), ..ClientConfig::default() },
    );
    for url in [
        format!("http://127.0.0.1:{port}/mcp"),
        format!("http://localhost:{port}/mcp"),
        format!("http://[::ffff:127.0.0.1]:{port}/mcp"),
    ] {
        let err = client.list_tools(&target(&url, TIMEOUT)).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Refused), "{url}: {err}");
        assert_eq!(err.kind(), "outbound_policy");
    }
    assert!(fake.posts().is_empty(), "no request reached the upstream");

    // The default policy refuses the metadata address before any connection is tried.
    let client = UpstreamClient::new(TelemetryManager::disabled());
    for url in ["http://169.254.169.254/mcp", "http://[fd00:ec2::254]/mcp", "http://2852039166/mcp"] {
        let err = client.list_tools(&target(url, TIMEOUT)).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Refused), "{url}: {err}");
    }
    client.list_tools(&target(&fake.url(), TIMEOUT)).await.expect("loopback upstreams stay reachable");
}
