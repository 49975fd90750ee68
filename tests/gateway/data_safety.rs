//! What callers and upstreams send stays where it belongs, over the real binary and real sockets:
//!
//! - the audit log (`/api/executions` and the SQLite files themselves), spans, JSON-RPC errors,
//!   admin API errors and `discovery_error` hold none of a marker that travelled in arguments,
//!   in a tool's error result, in an upstream's HTTP error body or in its JSON-RPC error message;
//! - upstream URLs pointing at link-local or cloud metadata addresses are refused with 400, and a
//!   name that resolves to a denied address is refused at registration and at connect time;
//! - a 16 MiB event line trickled by a hostile upstream costs the gateway linear CPU (read from
//!   `/proc/PID/stat`) and is refused at the event bound;
//! - client-chosen tool names are cut in span names; `baggage` reaches upstreams only with
//!   `telemetry.propagate_baggage`, while `traceparent` and `tracestate` always do; spans carry
//!   a fingerprint of the MCP session id, never the id.
//!
//! The upstreams are the SDK peer of `tests/mcp_peers` and, for what no well-behaved server
//! sends, a hand-written HTTP server on a raw TCP socket ([`RawUpstream`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::Service;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::mcp_peers;
use support::mcp_peers::McpUpstream;
use support::service::client;
use support::wait::assert_eventually;
use support::{ReceivedSpan, TestCollector, Transport};

/// Travels in arguments, tool results, upstream bodies and error messages; must reach no record.
const MARKER: &str = "Zq7SecretMarker";
/// The same, as a number a validator would quote.
const NUMBER_MARKER: i64 = 987_654_321;
/// The JSON-RPC error code the raw upstream answers `rpc` with.
const RAW_RPC_CODE: i64 = -32042;
/// Bytes of the event line the raw upstream trickles: past the gateway's 16 MiB bound.
const TRICKLE_BYTES: usize = 16 * 1024 * 1024 + 256 * 1024;
/// Bytes per write of the trickle.
const TRICKLE_CHUNK: usize = 4096;
/// Linux's `USER_HZ`: the unit of `utime` and `stime` in `/proc/PID/stat`.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

// --- a raw upstream ------------------------------------------------------------------------

/// A hand-written MCP upstream on a raw TCP socket, one thread per connection, every answer
/// closing its connection. `/mcp` speaks enough MCP (no sessions, JSON answers) to list three
/// tools: `boom` answers HTTP 500 with the marker in its body, `rpc` a JSON-RPC error whose
/// message is the marker, `trickle` an event stream whose one line never ends, written
/// [`TRICKLE_CHUNK`] bytes at a time. `/broken` answers every request HTTP 500 with the marker.
struct RawUpstream {
    addr: SocketAddr,
    /// Bytes of the trickled line written so far.
    trickled: Arc<AtomicUsize>,
}

impl RawUpstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the raw upstream");
        let addr = listener.local_addr().expect("its address");
        let trickled = Arc::new(AtomicUsize::new(0));
        let for_thread = trickled.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let trickled = for_thread.clone();
                std::thread::spawn(move || serve(stream, &trickled));
            }
        });
        RawUpstream { addr, trickled }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Reads one request: its path and body.
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((path, buffer[head_end..head_end + length].to_vec()))
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} Whatever\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
}

fn serve(mut stream: TcpStream, trickled: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let Some((path, body)) = read_request(&mut stream) else { return };
    let secret_body = format!("internal error; the metadata token is {MARKER}");
    if path == "/broken" {
        return respond(&mut stream, 500, "text/plain", &secret_body);
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = message["id"].clone();
    let result = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    match message["method"].as_str().unwrap_or_default() {
        "initialize" => respond(
            &mut stream,
            200,
            "application/json",
            &result(json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "raw", "version": "1.0.0"}
            })),
        ),
        "notifications/initialized" => respond(&mut stream, 202, "text/plain", ""),
        "tools/list" => {
            let tool =
                |name: &str| json!({"name": name, "description": "a raw tool", "inputSchema": {"type": "object"}});
            respond(
                &mut stream,
                200,
                "application/json",
                &result(json!({"tools": [tool("boom"), tool("rpc"), tool("trickle")]})),
            );
        }
        "tools/call" => match message["params"]["name"].as_str().unwrap_or_default() {
            "boom" => respond(&mut stream, 500, "text/plain", &secret_body),
            "rpc" => {
                let error =
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": RAW_RPC_CODE, "message": secret_body}});
                respond(&mut stream, 200, "application/json", &error.to_string());
            }
            "trickle" => trickle(&mut stream, trickled),
            _ => respond(&mut stream, 404, "text/plain", "no such tool"),
        },
        _ => respond(&mut stream, 400, "text/plain", "unexpected"),
    }
}

/// An event stream whose first line never ends: `data: xxxx…`, a chunk at a time, until the
/// line is [`TRICKLE_BYTES`] long or the gateway hangs up.
fn trickle(stream: &mut TcpStream, trickled: &AtomicUsize) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: ";
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = vec![b'x'; TRICKLE_CHUNK];
    while trickled.load(Ordering::SeqCst) < TRICKLE_BYTES {
        if stream.write_all(&chunk).is_err() {
            return;
        }
        trickled.fetch_add(chunk.len(), Ordering::SeqCst);
        // A slow upstream: small pieces, each arriving on its own (what made the old parser
        // rescan the whole line per piece).
        std::thread::sleep(Duration::from_micros(500));
    }
}

// --- the gateway ---------------------------------------------------------------------------

/// A gateway exporting to `collector`, its SQLite database in `data`.
fn gateway(collector: &TestCollector, data: &Path, extra: &[(&str, &str)]) -> Service {
    let endpoint = collector.endpoint();
    let database = format!("sqlite://{}", data.join("metamcp.db").display());
    let mut envs = vec![
        ("OTLP_ENDPOINT", endpoint.as_str()),
        ("DATABASE_URL", database.as_str()),
        ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms"),
        ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
    ];
    envs.extend_from_slice(extra);
    Service::start(&envs, &[])
}

fn post_json(service: &Service, path: &str, body: Value) -> (StatusCode, Value) {
    let response = client().post(service.url(path)).json(&body).send().expect("POST");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn register(service: &Service, name: &str, url: &str) -> (StatusCode, Value) {
    post_json(service, "/api/servers", json!({"name": name, "url": url}))
}

/// An MCP session on `endpoint`, opened with `initialize`.
struct Session<'a> {
    service: &'a Service,
    endpoint: String,
    id: String,
    headers: Vec<(&'static str, String)>,
    next: i64,
}

impl<'a> Session<'a> {
    fn open(service: &'a Service, endpoint: &str, headers: Vec<(&'static str, String)>) -> Self {
        let mut session = Session { service, endpoint: endpoint.to_owned(), id: String::new(), headers, next: 1 };
        let response = session.post(json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        }));
        assert_eq!(response.status(), StatusCode::OK);
        session.id = response.headers()["mcp-session-id"].to_str().expect("session id").to_owned();
        let accepted = session.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        session
    }

    fn post(&self, body: Value) -> reqwest::blocking::Response {
        let mut request = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client")
            .post(self.service.url(&format!("/metamcp/{}/mcp", self.endpoint)))
            .header("content-type", "application/json")
            .header("accept", support::service::MCP_ACCEPT)
            .body(body.to_string());
        if !self.id.is_empty() {
            request = request.header("mcp-session-id", &self.id);
        }
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        request.send().expect("POST to the MCP endpoint")
    }

    /// `tools/call` of `name`; the whole JSON-RPC answer.
    fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.next += 1;
        let body = json!({"jsonrpc": "2.0", "id": self.next, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}});
        let response = self.post(body);
        assert_eq!(response.status(), StatusCode::OK);
        response.json().expect("a JSON-RPC answer")
    }
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect()
}

/// Every file of `dir` (the database, its WAL and shared memory) as bytes.
fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("data dir")
        .flatten()
        .map(|entry| (entry.path(), std::fs::read(entry.path()).unwrap_or_default()))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// Everything a span shows: name, status message, attribute and event values.
fn span_text(span: &ReceivedSpan) -> String {
    let mut text = format!("{} {} ", span.name, span.status_message);
    for (key, value) in span.attrs() {
        text.push_str(&format!("{key}={value} "));
    }
    text.push_str(&span.events.join(" "));
    text
}

fn assert_no_marker(what: &str, text: &str) {
    assert!(!text.contains(MARKER), "{what} holds the marker: {text}");
    assert!(!text.contains(&NUMBER_MARKER.to_string()), "{what} holds the number marker: {text}");
}

// --- part 3: the audit log and errors hold no arguments, results or upstream bodies ---------

#[test]
fn audit_rows_errors_and_spans_hold_no_argument_result_or_upstream_body() {
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start("sdk-upstream");
    let raw = RawUpstream::start();
    let data = tempfile::tempdir().expect("data dir");
    let mut service = gateway(&collector, data.path(), &[]);

    assert_eq!(register(&service, "up", &upstream.url()).0, StatusCode::CREATED);
    let (status, created) = register(&service, "raw", &raw.url("/mcp"));
    assert_eq!((status, &created["discovery_error"]), (StatusCode::CREATED, &Value::Null), "{created}");
    // Discovery against an upstream that answers 500 with a body: the status, not the body.
    let (status, broken) = register(&service, "broken", &raw.url("/broken"));
    assert_eq!(status, StatusCode::CREATED, "{broken}");
    let discovery_error = broken["discovery_error"].as_str().expect("a discovery error").to_owned();
    assert!(discovery_error.contains("HTTP 500"), "{discovery_error}");
    assert_no_marker("discovery_error", &discovery_error);
    let (status, body) = post_json(
        &service,
        "/api/endpoints",
        json!({"name": "team", "servers": ["up", "raw"], "auth_required": false}),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let mut session = Session::open(&service, "team", Vec::new());
    // The calculator quotes the caller's own expression back to the caller, and only there.
    let calculated = session.call("calculator", json!({"expression": format!("{MARKER} + 1")}));
    assert_eq!(calculated["result"]["isError"], true, "{calculated}");
    assert!(text_of(&calculated).contains(MARKER), "the caller reads its own expression: {calculated}");
    // A validator names the path and the keyword, not the value.
    let invalid = session.call("search_tools", json!({"query": MARKER, "limit": NUMBER_MARKER}));
    assert_eq!(invalid["error"]["code"], -32602, "{invalid}");
    let message = invalid["error"].to_string();
    assert!(message.contains("/limit") && message.contains("maximum 100"), "{message}");
    assert_no_marker("a validation error", &message);
    // An upstream tool's error result goes to the caller, and nowhere else.
    let failed = session.call("up__fail", json!({"text": MARKER}));
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    assert!(text_of(&failed).contains(MARKER), "{failed}");
    // An upstream's HTTP error body and JSON-RPC error message are not relayed.
    let boom = session.call("raw__boom", json!({}));
    let boom_error = boom["error"].to_string();
    assert!(boom_error.contains("HTTP 500") && boom["error"]["data"]["kind"] == "http", "{boom}");
    assert_no_marker("the error of an upstream's HTTP 500", &boom_error);
    let rpc = session.call("raw__rpc", json!({}));
    let rpc_error = rpc["error"].to_string();
    assert!(rpc_error.contains(&RAW_RPC_CODE.to_string()) && rpc["error"]["data"]["kind"] == "rpc", "{rpc}");
    assert_no_marker("the error of an upstream's JSON-RPC error", &rpc_error);
    // Nor through the admin API.
    let (status, executed) = post_json(&service, "/api/tools/raw__boom/execute", json!({"arguments": {"k": MARKER}}));
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{executed}");
    assert_no_marker("the admin API's error", &executed.to_string());

    // The audit log: the gateway's own words for each failure.
    let rows = client().get(service.url("/api/executions?limit=50")).send().expect("executions");
    let rows: Value = rows.json().expect("JSON");
    assert_no_marker("/api/executions", &rows.to_string());
    let message_of = |tool: &str| -> String {
        let row = rows["items"].as_array().unwrap().iter().find(|r| r["tool_name"] == tool);
        row.and_then(|r| r["error_message"].as_str())
            .unwrap_or_else(|| panic!("no failed row of {tool}: {rows}"))
            .to_owned()
    };
    assert_eq!(message_of("calculator"), "calculator: syntax error at column 1");
    assert_eq!(message_of("search_tools"), "invalid arguments for search_tools: /properties/limit/maximum");
    assert_eq!(message_of("up__fail"), "the tool returned an error result");
    assert!(message_of("raw__boom").ends_with("the upstream server answered HTTP 500"), "{rows}");
    assert!(message_of("raw__rpc").ends_with(&format!("JSON-RPC error {RAW_RPC_CODE}")), "{rows}");
    assert_eq!(rows["total"], 6, "{rows}");

    // Spans: nothing of it either.
    assert_eventually(WAIT, POLL, "the span of the admin API's call", || {
        // The MCP call's server span and execution span, and the admin API's execution span.
        collector.spans().iter().filter(|s| s.name == "tools/call raw__boom").count() == 3
    });
    for span in collector.spans() {
        assert_no_marker(&format!("span {}", span.name), &span_text(&span));
    }

    // The database files themselves (the audit table, the tools, the telemetry spool), once the
    // service flushed and stopped: the marker is in no byte of them.
    let status = service.signal_and_wait(nix::sys::signal::Signal::SIGTERM, WAIT);
    assert!(status.success(), "{status}");
    let files = files_of(data.path());
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, "calculator: syntax error at column 1")),
        "rows are in the files"
    );
    for (path, bytes) in files {
        assert!(!contains(&bytes, MARKER), "{} holds the marker", path.display());
        assert!(!contains(&bytes, &NUMBER_MARKER.to_string()), "{} holds the number marker", path.display());
    }
}

// --- part 4: the outbound policy ------------------------------------------------------------

#[test]
fn metadata_and_link_local_upstream_urls_are_refused_with_400() {
    let collector = TestCollector::start(Transport::Grpc);
    let data = tempfile::tempdir().expect("data dir");
    let service = gateway(&collector, data.path(), &[]);
    for (i, url) in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/mcp",
        "http://2852039166/mcp",
        "http://[fe80::1]:8080/mcp",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = register(&service, &format!("metadata{i}"), url);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["error"]["code"], "upstream_address_refused", "{url}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("outbound policy")), "{body}");
    }
    let listed: Value = client().get(service.url("/api/servers")).send().expect("servers").json().expect("JSON");
    assert_eq!(listed["total"], 0, "nothing was registered: {listed}");
}

#[test]
fn a_name_resolving_to_a_denied_address_is_refused_at_registration_and_at_connect_time() {
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start("loopback-upstream");
    let data = tempfile::tempdir().expect("data dir");
    let by_name = format!("http://localhost:{}/mcp", upstream.port());

    // Registered while loopback is allowed (the default)…
    let mut first = gateway(&collector, data.path(), &[]);
    let (status, created) = register(&first, "up", &by_name);
    assert_eq!((status, &created["discovery_error"]), (StatusCode::CREATED, &Value::Null), "{created}");
    assert!(first.signal_and_wait(nix::sys::signal::Signal::SIGTERM, WAIT).success());

    // …and called after the policy denied loopback: the name resolves to a denied address at
    // connect time, and no request reaches the upstream.
    let deny = [("METAMCP_GATEWAY__UPSTREAM_DENY_CIDRS", "127.0.0.0/8,::1/128")];
    let second = gateway(&collector, data.path(), &deny);
    let before = upstream.requests().len();
    let (status, body) = post_json(&second, "/api/endpoints", json!({"name": "team", "servers": ["up"]}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut session = Session::open(&second, "team", Vec::new());
    let refused = session.call("up__echo", json!({"text": "hello"}));
    assert_eq!(refused["error"]["data"]["kind"], "outbound_policy", "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("outbound policy")), "{refused}");
    assert_eq!(upstream.requests().len(), before, "no request reached the upstream");
    let span = || collector.spans().into_iter().find(|s| s.name == "tools/call up__echo");
    assert_eventually(WAIT, POLL, "the refused call's span", || span().is_some());
    assert_eq!(span().and_then(|s| s.attr("error.type")).as_deref(), Some("outbound_policy"));

    // Refreshing it, or registering the name anew, is refused with 400.
    let (status, body) = post_json(&second, "/api/servers/up/refresh", json!({}));
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("upstream_address_refused")),
        "{body}"
    );
    let (status, body) = register(&second, "again", &by_name);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("localhost")), "{body}");
    assert_eq!(upstream.requests().len(), before);
}

#[test]
fn an_invalid_range_stops_start_up_naming_the_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_metamcp-telemetry"))
        .env_clear()
        .env("METAMCP_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .env("METAMCP_GATEWAY__UPSTREAM_ALLOW_CIDRS", "10.0.0.0/8,10.0.0.0/99")
        .arg("--check-config")
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gateway.upstream_allow_cidrs") && stderr.contains("10.0.0.0/99"), "{stderr}");
}

// --- part 5: hostile upstreams and clients --------------------------------------------------

/// CPU seconds (user + system) the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces: state is the
    // first, utime the 12th, stime the 13th (fields 14 and 15 of proc(5)).
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 1..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / CLOCK_TICKS_PER_SECOND
}

#[test]
fn a_trickled_16_mib_event_line_costs_linear_cpu_and_stops_at_the_bound() {
    let collector = TestCollector::start(Transport::Grpc);
    let raw = RawUpstream::start();
    let data = tempfile::tempdir().expect("data dir");
    let service = gateway(&collector, data.path(), &[]);
    let (status, created) =
        post_json(&service, "/api/servers", json!({"name": "raw", "url": raw.url("/mcp"), "timeout_ms": 60_000}));
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, body) = post_json(&service, "/api/endpoints", json!({"name": "team", "servers": ["raw"]}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut session = Session::open(&service, "team", Vec::new());

    let (cpu_before, started) = (cpu_seconds(service.pid()), Instant::now());
    let answer = session.call("raw__trickle", json!({}));
    let (cpu, elapsed) = (cpu_seconds(service.pid()) - cpu_before, started.elapsed());
    let trickled = raw.trickled.load(Ordering::SeqCst);
    eprintln!("trickled {trickled} bytes in {elapsed:?}; the gateway used {cpu:.2} s of CPU");

    assert_eq!(answer["error"]["data"]["kind"], "too_large", "{answer}");
    assert!(trickled >= 16 * 1024 * 1024 - 1024 * 1024, "the line reached the bound: {trickled} bytes");
    // Linear: reading 16 MiB in 4 KiB pieces takes about 0.6 s of CPU in this unoptimized test
    // build (hyper and reqwest included). The rescanning parser this replaces fell behind within
    // the first megabytes and was still scanning when the call timed out a minute later.
    assert!(cpu < 1.5, "the gateway used {cpu:.2} s of CPU for {trickled} bytes over {elapsed:?}");
}

#[test]
fn client_chosen_tool_names_are_cut_in_span_names() {
    let collector = TestCollector::start(Transport::Grpc);
    let data = tempfile::tempdir().expect("data dir");
    let service = gateway(&collector, data.path(), &[("METAMCP_SPAN_LIMITS__MAX_ATTRIBUTE_VALUE_LENGTH", "64")]);
    let mut session = Session::open(&service, "default", Vec::new());
    let name = format!("made_up_{}", "n".repeat(20_000));
    let answer = session.call(&name, json!({}));
    assert_eq!(answer["error"]["code"], -32602, "an unknown tool");

    let span = || collector.spans().into_iter().find(|s| s.name.starts_with("tools/call made_up_"));
    assert_eventually(WAIT, POLL, "the span of the made-up tool", || span().is_some());
    let span = span().expect("span");
    assert_eq!(span.name, format!("tools/call made_up_{}", "n".repeat(64 - "tools/call made_up_".len())));
    assert!(span.status_message.len() <= 64, "{}", span.status_message);
    assert!(span.attr("gen_ai.tool.name").is_some_and(|n| n.len() == 64));
    for other in collector.spans() {
        assert!(other.name.len() <= 64 && other.status_message.len() <= 64, "{}", other.name);
    }
}

/// The requests of the upstream that carried a `tools/call`.
fn tool_calls(upstream: &McpUpstream) -> Vec<mcp_peers::ReceivedRequest> {
    upstream.requests_for("tools/call")
}

#[test]
fn baggage_reaches_upstreams_only_when_propagate_baggage_is_set() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const TRACESTATE: &str = "vendor=opaque-value";
    let baggage = format!("user.id={MARKER},tenant=acme");
    let headers = vec![
        ("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01")),
        ("tracestate", TRACESTATE.to_owned()),
        ("baggage", baggage.clone()),
    ];
    for propagate in [false, true] {
        let collector = TestCollector::start(Transport::Grpc);
        let upstream = McpUpstream::start("baggage-upstream");
        let data = tempfile::tempdir().expect("data dir");
        let flag = propagate.to_string();
        let service = gateway(&collector, data.path(), &[("METAMCP_TELEMETRY__PROPAGATE_BAGGAGE", flag.as_str())]);
        assert_eq!(register(&service, "up", &upstream.url()).0, StatusCode::CREATED);
        let (status, body) = post_json(&service, "/api/endpoints", json!({"name": "team", "servers": ["up"]}));
        assert_eq!(status, StatusCode::CREATED, "{body}");

        let mut session = Session::open(&service, "team", headers.clone());
        let answer = session.call("up__echo", json!({"text": "hi"}));
        assert_eq!(text_of(&answer), "hi", "{answer}");

        let calls = tool_calls(&upstream);
        assert_eq!(calls.len(), 1, "propagate_baggage = {propagate}");
        let call = &calls[0];
        let traceparent = call.traceparent.as_deref().expect("traceparent reaches the upstream");
        assert!(traceparent.starts_with(&format!("00-{TRACE_ID}-")), "{traceparent}");
        assert_eq!(call.header("tracestate"), Some(TRACESTATE), "tracestate reaches the upstream");
        let meta = &call.body.as_ref().expect("body")["params"]["_meta"];
        assert_eq!(meta["tracestate"], TRACESTATE, "{meta}");
        if propagate {
            assert!(
                call.header("baggage").is_some_and(|b| b.contains(MARKER) && b.contains("tenant=acme")),
                "{call:?}"
            );
            assert!(meta["baggage"].as_str().is_some_and(|b| b.contains("tenant=acme")), "{meta}");
        } else {
            assert_eq!(call.header("baggage"), None, "baggage stays home by default");
            assert_eq!(meta.get("baggage"), None, "{meta}");
            for request in upstream.requests() {
                assert!(!request.headers.iter().any(|(k, v)| k == "baggage" || v.contains(MARKER)), "{request:?}");
            }
        }

        // The server span carries the caller's tracestate.
        let server = || {
            collector
                .spans()
                .into_iter()
                .find(|s| s.name == "POST /metamcp/{endpoint}/mcp" && s.trace_id_hex() == TRACE_ID)
        };
        assert_eventually(WAIT, POLL, "the server span of the call", || server().is_some());
        assert_eq!(server().expect("server span").span.trace_state, TRACESTATE);
    }
}

#[test]
fn spans_and_logs_carry_a_fingerprint_of_the_session_id_never_the_id() {
    use sha2::Digest as _;
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start("session-upstream");
    let data = tempfile::tempdir().expect("data dir");
    let service = gateway(&collector, data.path(), &[("RUST_LOG", "debug")]);
    assert_eq!(register(&service, "up", &upstream.url()).0, StatusCode::CREATED);
    let (status, body) = post_json(&service, "/api/endpoints", json!({"name": "team", "servers": ["up"]}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut session = Session::open(&service, "team", Vec::new());
    assert_eq!(text_of(&session.call("up__echo", json!({"text": "hi"}))), "hi");
    assert_eq!(text_of(&session.call("calculator", json!({"expression": "6 * 7"}))), "42");

    let fingerprint =
        |id: &str| -> String { sha2::Sha256::digest(id.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect() };
    let ours = session.id.clone();
    let theirs = tool_calls(&upstream)[0].session_id.clone().expect("the upstream issued a session");
    let span = |name: &str| collector.spans().into_iter().find(|s| s.name == name);
    assert_eventually(WAIT, POLL, "the tool spans", || {
        span("tools/call calculator").is_some() && span("tools/call echo").is_some()
    });
    assert_eq!(span("tools/call calculator").and_then(|s| s.attr("mcp.session.id")), Some(fingerprint(&ours)));
    assert_eq!(span("tools/call up__echo").and_then(|s| s.attr("mcp.session.id")), Some(fingerprint(&ours)));
    // The upstream's session id is a capability at the upstream: its client spans get the
    // fingerprint too.
    assert_eq!(span("tools/call echo").and_then(|s| s.attr("mcp.session.id")), Some(fingerprint(&theirs)));
    for span in collector.spans() {
        let text = span_text(&span);
        assert!(!text.contains(&ours) && !text.contains(&theirs), "span {} shows a session id: {text}", span.name);
    }
    let logs = service.logs().join("\n");
    assert!(!logs.contains(&ours) && !logs.contains(&theirs), "a log line shows a session id");
}
