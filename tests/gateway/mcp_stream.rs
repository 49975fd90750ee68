//! The server stream of an endpoint over the real binary: the session's `GET` event stream
//! (one per session, its 4xx answers, the Host/Origin gate) hears `tools/list_changed` within
//! seconds of an admin attach; progress notifications of a slow upstream tool reach the caller
//! on its `POST`'s event stream under the caller's own token; a call the client cancels is
//! cancelled upstream (the official Python MCP SDK on both sides).

use std::io::{BufRead as _, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::Service;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::mcp_peers::McpUpstream;
use support::mcp_peers::{records, run_client, PeerTransport, PythonServer};
use support::raw::{raw_exchange, raw_request};
use support::service::client;
use support::wait::assert_eventually;

const MCP_ACCEPT: &str = "application/json, text/event-stream";

/// A client with a bound on every exchange, streams included.
fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

fn admin(service: &Service, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = client().request(method, service.url(path)).header("content-type", "application/json");
    let request = match body {
        Some(body) => request.body(body.to_string()),
        None => request,
    };
    let response = request.send().expect("admin API");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// Registers `url` as the server `name` over `transport` and makes the endpoint `endpoint` with
/// `servers`.
pub(crate) fn register(service: &Service, name: &str, transport: &str, url: &str) {
    let body = json!({"name": name, "transport": transport, "url": url, "timeout_ms": 10_000});
    let (status, created) = admin(service, reqwest::Method::POST, "/api/servers", Some(body));
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["discovery_error"], Value::Null, "{created}");
}

pub(crate) fn create_endpoint(service: &Service, endpoint: &str, servers: &[&str]) {
    let body = json!({"name": endpoint, "servers": servers, "auth_required": false});
    let (status, created) = admin(service, reqwest::Method::POST, "/api/endpoints", Some(body));
    assert_eq!(status, StatusCode::CREATED, "{created}");
}

/// `initialize` on `endpoint`; the session id.
fn open_session(service: &Service, endpoint: &str) -> String {
    let response = http()
        .post(service.url(&format!("/metamcp/{endpoint}/mcp")))
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .body(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "stream-test", "version": "1"}}})
            .to_string(),
        )
        .send()
        .expect("initialize");
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

/// The SSE events (`(event, data)`) of `response`, read on a thread, and how the stream ended.
fn events(response: reqwest::blocking::Response) -> mpsc::Receiver<Option<(String, String)>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(response);
        let (mut name, mut data) = (String::new(), String::new());
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    let _ = sender.send(None);
                    return;
                }
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned();
            if let Some(value) = text.strip_prefix("event:") {
                name = value.trim().to_owned();
            } else if let Some(value) = text.strip_prefix("data:") {
                data = value.trim().to_owned();
            } else if text.is_empty() && !data.is_empty() {
                if name.is_empty() {
                    name = "message".to_owned();
                }
                if sender.send(Some((std::mem::take(&mut name), std::mem::take(&mut data)))).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

fn get_stream(service: &Service, endpoint: &str, session: Option<&str>, accept: &str) -> reqwest::blocking::Response {
    let mut request = http().get(service.url(&format!("/metamcp/{endpoint}/mcp"))).header("accept", accept);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().expect("GET")
}

#[test]
fn the_get_stream_hears_tools_list_changed_within_seconds_of_an_admin_attach() {
    let service = Service::start(&[], &[]);
    let upstream = McpUpstream::start("attached");
    register(&service, "up", "streamable_http", &upstream.url());
    create_endpoint(&service, "team", &[]);
    let session = open_session(&service, "team");

    // The stream's own refusals: no event-stream Accept, no session, an unknown one.
    let error_code = |response: reqwest::blocking::Response| {
        let status = response.status();
        (status, response.json::<Value>().unwrap()["error"]["code"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        error_code(get_stream(&service, "team", Some(&session), "application/json")),
        (StatusCode::NOT_ACCEPTABLE, "not_acceptable".to_owned())
    );
    assert_eq!(
        error_code(get_stream(&service, "team", None, "text/event-stream")),
        (StatusCode::BAD_REQUEST, "missing_session".to_owned())
    );
    assert_eq!(
        error_code(get_stream(&service, "team", Some("0123456789abcdef"), "text/event-stream")),
        (StatusCode::NOT_FOUND, "unknown_session".to_owned())
    );
    assert_eq!(
        error_code(get_stream(&service, "default", Some(&session), "text/event-stream")),
        (StatusCode::NOT_FOUND, "unknown_session".to_owned()),
        "a session belongs to its endpoint"
    );

    let stream = get_stream(&service, "team", Some(&session), "text/event-stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(
        error_code(get_stream(&service, "team", Some(&session), "text/event-stream")),
        (StatusCode::CONFLICT, "stream_open".to_owned()),
        "one stream per session"
    );
    let received = events(stream);

    let attached = Instant::now();
    let (status, body) = admin(&service, reqwest::Method::PUT, "/api/endpoints/team/servers/up", None);
    assert_eq!(status, StatusCode::OK, "{body}");
    let (name, data) = received.recv_timeout(Duration::from_secs(5)).expect("an event within 5 s").expect("an event");
    let elapsed = attached.elapsed();
    assert_eq!(name, "message");
    let notification: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(notification["method"], "notifications/tools/list_changed", "{notification}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    eprintln!("tools/list_changed arrived {elapsed:?} after the attach");

    // Listing again shows the attached server's tools.
    let listed: Value = http()
        .post(service.url("/metamcp/team/mcp"))
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .header("mcp-session-id", &session)
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"up__add"), "{names:?}");

    // Detaching is a change too; ending the session ends its stream.
    let (status, _) = admin(&service, reqwest::Method::DELETE, "/api/endpoints/team/servers/up", None);
    assert_eq!(status, StatusCode::OK);
    let (_, data) = received.recv_timeout(Duration::from_secs(5)).expect("an event within 5 s").expect("an event");
    assert!(data.contains("notifications/tools/list_changed"), "{data}");
    let deleted = http().delete(service.url("/metamcp/team/mcp")).header("mcp-session-id", &session).send().unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(received.recv_timeout(Duration::from_secs(5)).expect("the stream ends"), None);
}

#[test]
fn the_get_stream_passes_the_host_and_origin_gate() {
    let service = Service::start(&[], &[]);
    let session = open_session(&service, "default");
    let (addr, port) = (service.api, service.api.port());
    let headers = [("accept", "text/event-stream"), ("mcp-session-id", session.as_str())];
    let answer =
        raw_exchange(addr, &raw_request("GET", "/metamcp/default/mcp", &format!("evil.example:{port}"), &headers, ""));
    assert_eq!((answer.status, answer.error_code().as_str()), (403, "host_not_allowed"));
    let cross_site = [headers[0], headers[1], ("origin", "http://evil.example")];
    let answer =
        raw_exchange(addr, &raw_request("GET", "/metamcp/default/mcp", &format!("127.0.0.1:{port}"), &cross_site, ""));
    assert_eq!((answer.status, answer.error_code().as_str()), (403, "origin_not_allowed"));
}

#[test]
fn progress_of_a_slow_upstream_tool_reaches_the_caller_under_its_token() {
    let Some(python) = support::prereq::python_mcp_sdk() else { return };
    let service = Service::start(&[], &[]);
    let peer = PythonServer::start(&python, PeerTransport::StreamableHttp, "slowpoke", &[]);
    register(&service, "py", "streamable_http", peer.url());
    create_endpoint(&service, "progress", &["py"]);
    let session = open_session(&service, "progress");

    // Raw: the POST that carries a progress token is answered with an event stream.
    let response = http()
        .post(service.url("/metamcp/progress/mcp"))
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .header("mcp-session-id", &session)
        .body(
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
                "name": "py__slow", "arguments": {"steps": 3, "interval_ms": 50}, "_meta": {"progressToken": "client-token-7"}}})
            .to_string(),
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let received = events(response);
    let mut messages = Vec::new();
    while let Some((_, data)) = received.recv_timeout(Duration::from_secs(20)).expect("events until the stream ends") {
        messages.push(serde_json::from_str::<Value>(&data).unwrap());
    }
    let (progress, answers): (Vec<&Value>, Vec<&Value>) =
        messages.iter().partition(|m| m["method"] == "notifications/progress");
    assert_eq!(progress.len(), 3, "{messages:?}");
    for (i, update) in progress.iter().enumerate() {
        assert_eq!(update["params"]["progressToken"], "client-token-7", "the caller's own token: {update}");
        assert_eq!(update["params"]["progress"].as_f64(), Some((i + 1) as f64), "{update}");
        assert_eq!(update["params"]["total"].as_f64(), Some(3.0));
    }
    assert_eq!(answers.len(), 1, "then the answer, last: {messages:?}");
    assert_eq!(answers[0]["id"], 5);
    assert_eq!(answers[0]["result"]["content"][0]["text"], "counted to 3", "{}", answers[0]);
    assert_eq!(messages.last().unwrap()["id"], 5, "the answer comes last");

    // The official client sees the same through the gateway.
    let run = run_client(
        &python,
        &service.url("/metamcp/progress/mcp"),
        &["--call".into(), "py__slow".into(), r#"{"steps": 3, "interval_ms": 50}"#.into()],
        Duration::from_secs(60),
    );
    assert!(run.success, "{}", run.stderr);
    let call = run.result("call", "py__slow");
    assert_eq!(call["ok"], true, "{call}");
    let steps: Vec<f64> = call["progress"].as_array().unwrap().iter().filter_map(|p| p["progress"].as_f64()).collect();
    assert_eq!(steps, [1.0, 2.0, 3.0], "{call}");
}

#[test]
fn a_call_the_client_cancels_is_cancelled_upstream() {
    let Some(python) = support::prereq::python_mcp_sdk() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("cancelled.jsonl");
    let service = Service::start(&[], &[]);
    let peer = PythonServer::start(
        &python,
        PeerTransport::StreamableHttp,
        "cancellable",
        &[("PEER_CANCEL_LOG", log.to_str().unwrap())],
    );
    register(&service, "py", "streamable_http", peer.url());
    create_endpoint(&service, "cancel", &["py"]);

    let started = Instant::now();
    let run = run_client(
        &python,
        &service.url("/metamcp/cancel/mcp"),
        &["--cancel".into(), "py__slow".into(), r#"{"steps": 50, "interval_ms": 200}"#.into()],
        Duration::from_secs(60),
    );
    assert!(run.success, "{}", run.stderr);
    let cancelled = run.result("cancel", "py__slow");
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    assert!(!cancelled["progress"].as_array().unwrap().is_empty(), "cancelled on its first progress: {cancelled}");
    assert_eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "the upstream records the cancellation",
        || records(&log).iter().any(|r| r["event"] == "cancelled" && r["tool"] == "slow"),
    );
    let record = records(&log).into_iter().find(|r| r["event"] == "cancelled").unwrap();
    assert!(record["steps_done"].as_u64().is_some_and(|done| done < 50), "stopped early: {record}");
    assert!(started.elapsed() < Duration::from_secs(9), "not run to its end (50 × 200 ms): {:?}", started.elapsed());

    // The gateway goes on serving the session's endpoint.
    let (status, _) = admin(&service, reqwest::Method::GET, "/api/endpoints/cancel", None);
    assert_eq!(status, StatusCode::OK);
}
