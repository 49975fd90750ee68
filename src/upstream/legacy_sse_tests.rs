//! Tests of the legacy SSE transport: the event-size bound and the origin rule on their own, then
//! an `rmcp` client over the transport against a small legacy server written here (on a loopback
//! socket, so every refusal is checked against what really reached the wire), and against the
//! official Python MCP SDK's SSE server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, MetaObject, RequestMetaObject,
};
use rmcp::service::RunningService;
use rmcp::ServiceExt as _;
use serde_json::json;
use tokio::sync::mpsc;

use super::*;
use crate::test_prereq;

/// The upstreams' HTTP client (no redirects), with the default outbound policy.
fn http_client() -> reqwest_upstream::Client {
    crate::upstream::http::client(Arc::new(crate::mcp::outbound::OutboundPolicy::default())).unwrap()
}

/// Bound on every wait in this file; generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(20);
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

// ---------------------------------------------------------------------------------------------
// The event-size bound and the origin rule, without a socket.

/// Feeds `chunks` to a fresh limit; the index of the chunk that passed the bound, if one did.
fn first_refused(max: usize, chunks: &[&[u8]]) -> Option<usize> {
    let mut limit = EventSizeLimit::new(max);
    chunks.iter().position(|chunk| !limit.observe(chunk))
}

#[test]
fn an_event_of_exactly_the_bound_passes_and_one_byte_more_does_not() {
    // "data: " + 9 bytes = 15 bytes of line, plus the newline the parser joins lines with = 16.
    assert_eq!(first_refused(16, &[b"data: 123456789\n\n"]), None);
    assert_eq!(first_refused(15, &[b"data: 123456789\n\n"]), Some(0));
    // Two data lines add up; the blank line ends the event and starts the count afresh.
    assert_eq!(first_refused(32, &[b"data: 123456789\ndata: 123456789\n\n"]), None);
    assert_eq!(first_refused(31, &[b"data: 123456789\ndata: 123456789\n\n"]), Some(0));
    assert_eq!(first_refused(16, &[b"data: 123456789\n\n", b"data: 123456789\n\n", b"data: 123456789\n\n"]), None);
}

#[test]
fn a_line_trickled_byte_by_byte_is_refused_as_soon_as_it_passes_the_bound() {
    let line = [b'x'; 100];
    let mut limit = EventSizeLimit::new(64);
    let refused_at = line.iter().position(|byte| !limit.observe(std::slice::from_ref(byte)));
    assert_eq!(refused_at, Some(64), "the 65th byte of an unfinished line passes a 64-byte bound");
}

#[test]
fn comments_are_bounded_per_line_but_do_not_accumulate() {
    // The parser keeps nothing of a comment line once it ends: keep-alives never add up.
    let pings: Vec<&[u8]> = std::iter::repeat_n(&b": ping\n"[..], 1000).collect();
    assert_eq!(first_refused(16, &pings), None);
    assert_eq!(first_refused(16, &[b": a comment line longer than sixteen bytes\n"]), Some(0));
}

#[test]
fn every_line_ending_of_the_sse_grammar_ends_lines_and_events() {
    // CR alone, LF alone and CRLF, also with CRLF split across two chunks.
    assert_eq!(first_refused(16, &[b"data: 123456789\r\rdata: 123456789\r\r"]), None);
    assert_eq!(first_refused(16, &[b"data: 123456789\r\n\r\ndata: 123456789\r\n\r\n"]), None);
    assert_eq!(first_refused(16, &[b"data: 123456789\r", b"\n\r", b"\ndata: 123456789\r\n\r\n"]), None);
    // Without the blank line, the second event's line adds to the first.
    assert_eq!(first_refused(16, &[b"data: 123456789\r\ndata: 1\r\n"]), Some(0));
}

#[test]
fn the_endpoint_must_keep_the_streams_origin_and_credentials() {
    let stream = Url::parse("http://127.0.0.1:8000/sse").unwrap();
    let ok = |endpoint: &str| same_origin_endpoint(&stream, endpoint).map(|url| url.to_string());
    assert_eq!(ok("/messages/?session_id=abc").unwrap(), "http://127.0.0.1:8000/messages/?session_id=abc");
    assert_eq!(ok("messages?s=1").unwrap(), "http://127.0.0.1:8000/messages?s=1");
    assert_eq!(ok("http://127.0.0.1:8000/m#frag").unwrap(), "http://127.0.0.1:8000/m");
    for foreign in [
        "http://127.0.0.1:8001/messages",
        "https://127.0.0.1:8000/messages",
        "http://localhost:8000/messages",
        "//evil.example/messages",
        "http://evil.example/messages",
        "file:///etc/passwd",
    ] {
        match same_origin_endpoint(&stream, foreign) {
            Err(LegacySseError::CrossOriginEndpoint { endpoint, stream }) => {
                assert_eq!(stream, "http://127.0.0.1:8000");
                assert_ne!(endpoint, stream, "{foreign}");
            }
            other => panic!("{foreign} must be refused as another origin, got {other:?}"),
        }
    }
    assert!(matches!(
        same_origin_endpoint(&stream, "http://user:secret@127.0.0.1:8000/messages"),
        Err(LegacySseError::EndpointCredentials)
    ));
    // The default port is the same origin written either way.
    let default_port = Url::parse("http://example.test/sse").unwrap();
    assert!(same_origin_endpoint(&default_port, "http://example.test:80/messages").is_ok());
}

#[test]
fn trace_context_headers_come_from_the_messages_meta_and_only_when_well_formed() {
    let message = |meta: Value| json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "_meta": meta}});
    let headers = trace_context_from_meta(Some(&message(json!({"traceparent": TRACEPARENT, "tracestate": "k=v"}))));
    assert_eq!(headers.get("traceparent").unwrap(), TRACEPARENT);
    assert_eq!(headers.get("tracestate").unwrap(), "k=v");
    assert!(trace_context_from_meta(None).is_empty(), "the GET gets none");
    assert!(trace_context_from_meta(Some(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))).is_empty());
    for bad in ["00-short-b7ad6b7169203331-01", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x\r\ny"] {
        assert!(
            trace_context_from_meta(Some(&message(json!({"traceparent": bad, "tracestate": "k=v"})))).is_empty(),
            "{bad}"
        );
    }
    let long_state = "k=".to_owned() + &"v".repeat(600);
    let headers =
        trace_context_from_meta(Some(&message(json!({"traceparent": TRACEPARENT, "tracestate": long_state}))));
    assert!(headers.get("tracestate").is_none() && headers.get("traceparent").is_some());
}

// ---------------------------------------------------------------------------------------------
// A legacy SSE server on a loopback socket.

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One POST the server received.
#[derive(Debug, Clone)]
struct Posted {
    headers: http::HeaderMap,
    body: Value,
}

/// How the server behaves.
#[derive(Debug, Clone)]
struct Behaviour {
    /// What the stream sends first, before anything else; `{session}` becomes the session id.
    prelude: String,
    /// How long each POST waits before answering.
    post_delay: Duration,
    /// The status of each POST (202 in the protocol).
    post_status: u16,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            prelude: "event: endpoint\ndata: /messages/?session_id={session}\n\n".to_owned(),
            post_delay: Duration::ZERO,
            post_status: 202,
        }
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, mpsc::UnboundedSender<Bytes>>,
    posts: Vec<Posted>,
    streams_opened: usize,
    stream_requests: Vec<http::HeaderMap>,
}

/// A legacy (2024-11-05) MCP server: `GET /sse`, `POST /messages/?session_id=…`, one tool
/// `echo` that returns its arguments as text.
struct LegacyServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Streams whose body was dropped: the client went away.
    streams_closed: Arc<AtomicUsize>,
    /// TCP connections accepted, on any path.
    connections: Arc<AtomicUsize>,
}

impl LegacyServer {
    async fn start(behaviour: Behaviour) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let streams_closed = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shared, closed, accepted) = (state.clone(), streams_closed.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (state, closed, behaviour) = (shared.clone(), closed.clone(), behaviour.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request| handle(state.clone(), closed.clone(), behaviour.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, streams_closed, connections }
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://{}/sse", self.addr)).unwrap()
    }

    fn posts(&self) -> Vec<Posted> {
        self.state.lock().unwrap().posts.clone()
    }

    fn post_of(&self, method: &str) -> Option<Posted> {
        self.posts().into_iter().find(|p| p.body["method"] == method)
    }

    /// Sends raw SSE text on every open stream.
    fn push(&self, text: &str) {
        for sender in self.state.lock().unwrap().sessions.values() {
            let _ = sender.send(Bytes::from(text.to_owned()));
        }
    }
}

/// Counts the stream as closed when hyper drops its body.
struct ClosedOnDrop(Arc<AtomicUsize>);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn plain(status: u16, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response
}

async fn handle(
    state: Arc<Mutex<State>>,
    streams_closed: Arc<AtomicUsize>,
    behaviour: Behaviour,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    if parts.method == http::Method::GET && parts.uri.path() == "/sse" {
        let (sender, receiver) = mpsc::unbounded_channel::<Bytes>();
        let session = {
            let mut state = state.lock().unwrap();
            state.streams_opened += 1;
            state.stream_requests.push(parts.headers.clone());
            let session = format!("s{}", state.streams_opened);
            state.sessions.insert(session.clone(), sender.clone());
            session
        };
        let _ = sender.send(Bytes::from(behaviour.prelude.replace("{session}", &session)));
        // Keep-alives let the server notice a client that went away (a write fails).
        let pinger = sender.downgrade();
        tokio::spawn(async move {
            while let Some(sender) = pinger.upgrade() {
                if sender.send(Bytes::from_static(b": ping\n\n")).is_err() {
                    break;
                }
                drop(sender);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        drop(sender);
        let guard = ClosedOnDrop(streams_closed);
        let frames = futures_util::stream::unfold((receiver, guard), |(mut receiver, guard)| async move {
            let bytes = receiver.recv().await?;
            Some((Ok::<_, Infallible>(Frame::data(bytes)), (receiver, guard)))
        });
        let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
        response.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
        return Ok(response);
    }
    if parts.method != http::Method::POST || parts.uri.path() != "/messages/" {
        return Ok(plain(404, "not found"));
    }
    let session = parts.uri.query().and_then(|q| q.strip_prefix("session_id=")).unwrap_or_default().to_owned();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let sender = {
        let mut state = state.lock().unwrap();
        state.posts.push(Posted { headers: parts.headers.clone(), body: message.clone() });
        state.sessions.get(&session).cloned()
    };
    tokio::time::sleep(behaviour.post_delay).await;
    let Some(sender) = sender else { return Ok(plain(404, "Could not find session")) };
    if behaviour.post_status != 202 {
        return Ok(plain(behaviour.post_status, "refused"));
    }
    if let Some(reply) = reply_to(&message) {
        let _ = sender.send(Bytes::from(format!("event: message\ndata: {reply}\n\n")));
    }
    Ok(plain(202, "Accepted"))
}

/// The answer to a request, `None` for a notification.
fn reply_to(message: &Value) -> Option<Value> {
    let id = message.get("id")?.clone();
    let result = match message["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": "2024-11-05",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "legacy", "version": "1.0.0"}
        }),
        "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
        "tools/call" => json!({"content": [{"type": "text", "text": message["params"]["arguments"].to_string()}]}),
        _ => return Some(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no such method"}})),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn config(url: Url) -> LegacySseConfig {
    LegacySseConfig {
        endpoint_timeout: Duration::from_secs(5),
        post_timeout: Duration::from_secs(5),
        ..LegacySseConfig::new(url)
    }
}

async fn connect(config: LegacySseConfig) -> Result<LegacySseTransport, LegacySseError> {
    LegacySseTransport::connect(http_client(), config).await
}

async fn serve(transport: LegacySseTransport) -> RunningService<RoleClient, ClientConfig> {
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new("legacy-sse-test", "1.0.0"));
    tokio::time::timeout(WAIT, info.serve(transport)).await.expect("initialize in time").expect("initialize")
}

fn call(name: &str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = arguments else { panic!("arguments must be an object") };
    CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect()
}

/// Polls `condition` every 10 ms until it holds, failing with `what` after [`WAIT`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_rmcp_client_initializes_lists_and_calls_over_the_transport() {
    let server = LegacyServer::start(Behaviour::default()).await;
    let mut config = config(server.url());
    config.headers.insert("x-upstream-key", HeaderValue::from_static("k1"));
    let transport = connect(config).await.unwrap();
    assert_eq!(transport.endpoint_origin(), format!("http://{}", server.addr));
    let end = transport.stream_end();
    let client = serve(transport).await;
    assert_eq!(client.peer_info().unwrap().server_info.as_ref().unwrap().name, "legacy");

    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>(), ["echo"]);

    let mut params = call("echo", json!({"word": "hi"}));
    let mut meta = serde_json::Map::new();
    meta.insert("traceparent".into(), json!(TRACEPARENT));
    meta.insert("tracestate".into(), json!("vendor=1"));
    params.meta = Some(RequestMetaObject(MetaObject(meta)));
    let result = tokio::time::timeout(WAIT, client.call_tool(params)).await.unwrap().unwrap();
    assert_eq!(text_of(&result), r#"{"word":"hi"}"#);

    // The wire: every POST went to the announced endpoint with the configured header; the call
    // carried its trace context both in `_meta` and as HTTP headers, the others none.
    let methods: Vec<String> = server.posts().iter().map(|p| p.body["method"].as_str().unwrap().to_owned()).collect();
    assert_eq!(methods, ["initialize", "notifications/initialized", "tools/list", "tools/call"]);
    assert!(server.posts().iter().all(|p| p.headers.get("x-upstream-key").is_some_and(|v| v == "k1")));
    assert!(server.posts().iter().all(|p| p.headers.get("content-type").is_some_and(|v| v == "application/json")));
    let called = server.post_of("tools/call").unwrap();
    assert_eq!(called.headers.get("traceparent").unwrap(), TRACEPARENT);
    assert_eq!(called.headers.get("tracestate").unwrap(), "vendor=1");
    assert_eq!(called.body["params"]["_meta"]["traceparent"], TRACEPARENT);
    assert!(server.post_of("tools/list").unwrap().headers.get("traceparent").is_none());
    let stream_request = server.state.lock().unwrap().stream_requests[0].clone();
    assert_eq!(stream_request.get("accept").unwrap(), "text/event-stream");
    assert_eq!(stream_request.get("x-upstream-key").unwrap(), "k1");

    // Closing ends the stream on our side, and the server sees the client go.
    assert_eq!(end.get(), None);
    let mut client = client;
    tokio::time::timeout(WAIT, client.close()).await.unwrap().unwrap();
    assert_eq!(end.get(), Some(StreamEnd::Closed));
    let closed = server.streams_closed.clone();
    eventually("the server notices the stream closed", || closed.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused_before_anything_is_posted() {
    // The "other origin" is a real listener on another port: it must never see a connection.
    let elsewhere = LegacyServer::start(Behaviour::default()).await;
    let prelude = format!("event: endpoint\ndata: http://{}/messages/?session_id=stolen\n\n", elsewhere.addr);
    let server = LegacyServer::start(Behaviour { prelude, ..Behaviour::default() }).await;
    match connect(config(server.url())).await {
        Err(LegacySseError::CrossOriginEndpoint { endpoint, stream }) => {
            assert_eq!(endpoint, format!("http://{}", elsewhere.addr));
            assert_eq!(stream, format!("http://{}", server.addr));
        }
        other => panic!("expected a cross-origin refusal, got {other:?}"),
    }
    assert!(server.posts().is_empty());
    assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0, "nothing may reach the other origin");
    // The refused stream is not left open.
    let closed = server.streams_closed.clone();
    eventually("the refused stream is closed", || closed.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test]
async fn an_oversized_event_is_refused_before_and_after_the_endpoint() {
    const MAX: usize = 1024;
    // Before the endpoint: connecting fails.
    let huge = format!("event: endpoint\ndata: /messages/?session_id={}\n\n", "x".repeat(2 * MAX));
    let server = LegacyServer::start(Behaviour { prelude: huge, ..Behaviour::default() }).await;
    let refused = connect(LegacySseConfig { max_event_bytes: MAX, ..config(server.url()) }).await;
    assert!(matches!(refused, Err(LegacySseError::EventTooLarge { max: MAX })), "{refused:?}");

    // After it: an event just under the bound arrives, one over it ends the stream, even sent
    // in pieces that never complete a line.
    let server = LegacyServer::start(Behaviour::default()).await;
    let mut transport = connect(LegacySseConfig { max_event_bytes: MAX, ..config(server.url()) }).await.unwrap();
    let end = transport.stream_end();
    let fits = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "y".repeat(MAX - 150)}});
    server.push(&format!("event: message\ndata: {fits}\n\n"));
    let received = tokio::time::timeout(WAIT, transport.receive()).await.unwrap();
    assert!(matches!(received, Some(ServerJsonRpcMessage::Notification(_))), "{received:?}");
    server.push("event: message\ndata: ");
    for _ in 0..(MAX / 64 + 1) {
        server.push(&"z".repeat(64));
    }
    let received = tokio::time::timeout(WAIT, transport.receive()).await.unwrap();
    assert!(received.is_none(), "the stream ends instead of buffering: {received:?}");
    assert_eq!(end.get(), Some(StreamEnd::EventTooLarge));
    // Once ended it stays ended, and sends fail.
    assert!(transport.receive().await.is_none());
    let sent = transport
        .send(ClientJsonRpcMessage::notification(rmcp::model::InitializedNotification::default().into()))
        .await;
    assert!(matches!(sent, Err(LegacySseError::Closed)), "{sent:?}");
}

#[tokio::test]
async fn a_post_is_bounded_in_time_and_must_be_accepted() {
    let slow = LegacyServer::start(Behaviour { post_delay: Duration::from_secs(30), ..Behaviour::default() }).await;
    let mut transport =
        connect(LegacySseConfig { post_timeout: Duration::from_millis(300), ..config(slow.url()) }).await.unwrap();
    let started = Instant::now();
    let sent = transport.send(ping(1)).await;
    assert!(matches!(sent, Err(LegacySseError::PostTimeout { .. })), "{sent:?}");
    assert!(started.elapsed() < WAIT);

    let refusing = LegacyServer::start(Behaviour { post_status: 404, ..Behaviour::default() }).await;
    let mut transport = connect(config(refusing.url())).await.unwrap();
    let sent = transport.send(ping(1)).await;
    match sent {
        Err(LegacySseError::PostStatus { status }) => assert_eq!(status, StatusCode::NOT_FOUND),
        other => panic!("expected HTTP 404, got {other:?}"),
    }
}

#[tokio::test]
async fn close_abandons_posts_in_flight_and_refuses_new_ones() {
    let server = LegacyServer::start(Behaviour { post_delay: Duration::from_secs(30), ..Behaviour::default() }).await;
    let mut transport = connect(config(server.url())).await.unwrap();
    let in_flight = tokio::spawn(transport.send(ping(1)));
    let posted = || !server.posts().is_empty();
    eventually("the POST reaches the server", posted).await;
    transport.close().await.unwrap();
    let outcome = tokio::time::timeout(WAIT, in_flight).await.unwrap().unwrap();
    assert!(matches!(outcome, Err(LegacySseError::Closed)), "{outcome:?}");
    assert!(matches!(transport.send(ping(2)).await, Err(LegacySseError::Closed)));
    assert!(transport.receive().await.is_none());
}

#[tokio::test]
async fn a_stream_that_never_names_its_endpoint_times_out() {
    let server = LegacyServer::start(Behaviour { prelude: ": hello\n\n".to_owned(), ..Behaviour::default() }).await;
    let started = Instant::now();
    let outcome =
        connect(LegacySseConfig { endpoint_timeout: Duration::from_millis(300), ..config(server.url()) }).await;
    assert!(matches!(outcome, Err(LegacySseError::EndpointTimeout { .. })), "{outcome:?}");
    assert!(started.elapsed() >= Duration::from_millis(300) && started.elapsed() < WAIT);
}

#[tokio::test]
async fn a_message_before_the_endpoint_or_a_wrong_answer_to_the_get_is_refused() {
    let early = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\n\n".to_owned();
    let server = LegacyServer::start(Behaviour { prelude: early, ..Behaviour::default() }).await;
    assert!(matches!(connect(config(server.url())).await, Err(LegacySseError::MessageBeforeEndpoint)));

    let server = LegacyServer::start(Behaviour::default()).await;
    let mut wrong_path = server.url();
    wrong_path.set_path("/not-sse");
    let outcome = connect(config(wrong_path)).await;
    assert!(
        matches!(outcome, Err(LegacySseError::OpenStatus { status }) if status == StatusCode::NOT_FOUND),
        "{outcome:?}"
    );

    let ftp = Url::parse("ftp://127.0.0.1/sse").unwrap();
    assert!(matches!(connect(config(ftp)).await, Err(LegacySseError::UnsupportedScheme { .. })));
}

fn ping(id: i64) -> ClientJsonRpcMessage {
    serde_json::from_value(json!({"jsonrpc": "2.0", "id": id, "method": "ping"})).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Against the official Python MCP SDK's SSE server (tests/peers/python/server.py).

/// The Python peer, killed when dropped.
struct PythonPeer {
    child: Child,
    url: Url,
}

impl PythonPeer {
    /// Starts `server.py --transport sse` and waits (bounded) for its ready line.
    fn start(python: &Path, env: &[(&str, &Path)]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python/server.py");
        let mut command = Command::new(python);
        command.arg(&script).args(["--transport", "sse", "--name", "py-legacy"]);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the Python peer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = match receiver.recv_timeout(WAIT * 2) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the Python peer printed no ready line within {:?}", WAIT * 2);
            }
        };
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        assert_eq!(ready["transport"], "sse", "{ready}");
        let url = Url::parse(ready["url"].as_str().unwrap()).unwrap();
        Self { child, url }
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_rmcp_client_lists_and_calls_tools_of_the_python_sdk_sse_server() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let records = tempfile::NamedTempFile::new().unwrap();
    let peer = PythonPeer::start(&python, &[("PEER_REQUEST_LOG", records.path())]);
    assert_eq!(peer.url.path(), "/sse");

    let transport = connect(config(peer.url.clone())).await.unwrap();
    assert_eq!(transport.endpoint_origin(), peer.url.origin().ascii_serialization());
    let client = serve(transport).await;
    assert_eq!(client.peer_info().unwrap().server_info.as_ref().unwrap().name, "py-legacy");

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    for expected in ["echo", "add", "shout", "fail", "slow", "echo_meta", "add_tool"] {
        assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
    }
    let shout = tools.iter().find(|t| t.name == "shout").unwrap();
    assert_eq!(shout.input_schema["properties"]["word"]["pattern"], "^[a-z]+$");

    let sum =
        tokio::time::timeout(WAIT, client.call_tool(call("add", json!({"a": 2, "b": 3})))).await.unwrap().unwrap();
    assert_eq!(text_of(&sum), "5");
    assert_ne!(sum.is_error, Some(true));
    let failed =
        tokio::time::timeout(WAIT, client.call_tool(call("fail", json!({"message": "no"})))).await.unwrap().unwrap();
    assert_eq!(failed.is_error, Some(true));

    // The trace context travels in `_meta` (the peer echoes it) and as HTTP headers (the peer
    // records those of each POST).
    let mut params = call("echo_meta", json!({}));
    let mut meta = serde_json::Map::new();
    meta.insert("traceparent".into(), json!(TRACEPARENT));
    params.meta = Some(RequestMetaObject(MetaObject(meta)));
    let echoed = tokio::time::timeout(WAIT, client.call_tool(params)).await.unwrap().unwrap();
    assert_eq!(echoed.structured_content.as_ref().unwrap()["meta"]["traceparent"], TRACEPARENT);
    let logged = std::fs::read_to_string(records.path()).unwrap();
    let call_record = logged
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record["method"] == "tools/call" && record["meta"]["traceparent"] == TRACEPARENT)
        .unwrap_or_else(|| panic!("no record of the traced call in {logged}"));
    assert_eq!(call_record["headers"]["traceparent"], TRACEPARENT);

    let mut client = client;
    tokio::time::timeout(WAIT, client.close()).await.unwrap().unwrap();
    drop(peer);
}
