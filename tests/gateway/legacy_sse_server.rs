//! The legacy HTTP+SSE transport (protocol revision 2024-11-05) served by the endpoints, end to
//! end with the official Python MCP SDK's SSE client, and over raw HTTP: the `endpoint` event,
//! `202` answers with the responses as `message` events, the endpoint's API key, the
//! Host/Origin gate and the session checks of `POST …/message`.

use std::io::{BufRead as _, BufReader};
use std::process::Command;
use std::time::Duration;

use crate::common::Service;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::raw::{raw_exchange, raw_request};
use support::service::client;

/// Runs the Python SDK's client (`tests/peers/python/client.py`) with `args`; its summary line.
/// `None` when the SDK is not installed (the test is skipped, or fails under `METAMCP_CI=1`).
pub(crate) fn python_client(args: &[&str]) -> Option<Value> {
    let python = support::prereq::python_mcp_sdk()?;
    let script = support::repo_root().join("tests/peers/python/client.py");
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .args(["--timeout", "20", "--deadline", "60"])
        .output()
        .expect("the Python client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line).ok().filter(|v| v["event"] == "summary"))
        .unwrap_or_else(|| {
            panic!("no summary from the Python client: {stdout}\n{}", String::from_utf8_lossy(&output.stderr))
        });
    assert!(output.status.success(), "the Python client failed: {summary}");
    Some(summary)
}

fn text_of(result: &Value) -> String {
    result["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n")
}

fn admin(service: &Service, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::blocking::Response {
    let request = client().request(method, service.url(path)).header("content-type", "application/json");
    let request = match body {
        Some(body) => request.body(body.to_string()),
        None => request,
    };
    request.send().expect("admin API")
}

#[test]
fn the_python_sdks_sse_client_lists_and_calls_through_an_endpoint() {
    let service = Service::start(&[], &[]);
    let url = service.url("/metamcp/default/sse");
    let Some(summary) = python_client(&[
        &url,
        "--call",
        "calculator",
        r#"{"expression": "6 * 7"}"#,
        "--call",
        "calculator",
        r#"{"expression": "1/0"}"#,
        "--call",
        "nope__missing",
        "{}",
    ]) else {
        return;
    };
    assert_eq!(summary["transport"], "sse", "{summary}");
    // The SDK's SSE client asks for its newest revision over the old transport, and gets it.
    assert_eq!(summary["protocol_version"], "2025-11-25", "{summary}");
    assert_eq!(summary["server_info"]["name"], "metamcp-telemetry");
    let tools: Vec<&str> = summary["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(tools.contains(&"calculator") && tools.contains(&"search_tools"), "{tools:?}");
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results[0]["ok"], true, "{summary}");
    assert_eq!(text_of(&results[0]["result"]), "42");
    assert_eq!(results[1]["result"]["isError"], true, "a tool error is a result: {summary}");
    assert_eq!(results[2]["ok"], false);
    assert_eq!(results[2]["error"]["code"], -32602, "an unknown tool is invalid params: {summary}");
}

#[test]
fn an_endpoint_key_guards_the_legacy_transport_too() {
    let service = Service::start(&[], &[]);
    let created = admin(
        &service,
        reqwest::Method::POST,
        "/api/endpoints",
        Some(json!({"name": "locked", "servers": [], "auth_required": true})),
    );
    assert_eq!(created.status(), StatusCode::CREATED);
    let issued: Value = admin(&service, reqwest::Method::POST, "/api/endpoints/locked/keys", None).json().unwrap();
    let key = issued["key"].as_str().expect("a key").to_owned();

    let response =
        client().get(service.url("/metamcp/locked/sse")).header("accept", "text/event-stream").send().unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let response = client().post(service.url("/metamcp/locked/message?sessionId=x")).body("{}").send().unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let url = service.url("/metamcp/locked/sse");
    let header = format!("Authorization:Bearer {key}");
    let Some(summary) =
        python_client(&[&url, "--header", &header, "--call", "calculator", r#"{"expression": "2 + 2"}"#])
    else {
        return;
    };
    assert_eq!(text_of(&summary["results"][0]["result"]), "4", "{summary}");
}

#[test]
fn the_stream_names_where_to_post_and_carries_the_answers() {
    let service = Service::start(&[], &[]);
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let stream = http.get(service.url("/metamcp/default/sse")).header("accept", "text/event-stream").send().unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // The events are read on a thread; the posts go from here.
    let (sender, events) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buffer).trim_end_matches(['\r', '\n']).to_owned();
            if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                data = value.trim().to_owned();
            } else if line.is_empty()
                && !name.is_empty()
                && sender.send((std::mem::take(&mut name), std::mem::take(&mut data))).is_err()
            {
                return;
            }
        }
    });
    let next = || events.recv_timeout(Duration::from_secs(10)).expect("an event within 10 s");
    let (name, path) = next();
    assert_eq!(name, "endpoint");
    assert!(path.starts_with("/metamcp/default/message?sessionId="), "{path}");

    let post = |body: Value| {
        http.post(service.url(&path)).header("content-type", "application/json").body(body.to_string()).send().unwrap()
    };
    let init = post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}));
    assert_eq!(init.status(), StatusCode::ACCEPTED, "answered on the stream, not in the POST");
    let (name, data) = next();
    assert_eq!(name, "message");
    let answer: Value = serde_json::from_str(&data).unwrap();
    assert_eq!((answer["id"].clone(), answer["result"]["protocolVersion"].clone()), (json!(1), json!("2024-11-05")));
    assert_eq!(post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).status(), StatusCode::ACCEPTED);
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": "c", "method": "tools/call", "params": {"name": "calculator", "arguments": {"expression": "3^3"}}})).status(),
        StatusCode::ACCEPTED
    );
    let (_, data) = next();
    let answer: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(answer["id"], "c");
    assert_eq!(text_of(&answer["result"]), "27", "{answer}");

    // A malformed message is refused in the POST itself.
    let broken = post(json!({"jsonrpc": "1.0", "id": 2, "method": "ping"}));
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    assert_eq!(broken.json::<Value>().unwrap()["error"]["code"], -32600);

    // Posts need the session the stream opened.
    let missing = http.post(service.url("/metamcp/default/message")).body("{}").send().unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(missing.json::<Value>().unwrap()["error"]["code"], "missing_session");
    let unknown = http.post(service.url("/metamcp/default/message?sessionId=0123abcd")).body("{}").send().unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let elsewhere = path.replace("/default/", "/other/");
    assert_eq!(http.post(service.url(&elsewhere)).body("{}").send().unwrap().status(), StatusCode::NOT_FOUND);
    drop(events);
    drop(reader);
}

#[test]
fn the_legacy_routes_pass_the_host_and_origin_gate() {
    let service = Service::start(&[], &[]);
    let (addr, port) = (service.api, service.api.port());
    let own = format!("127.0.0.1:{port}");
    let headers = [("accept", "text/event-stream"), ("content-type", "application/json")];
    for (method, target) in [("GET", "/metamcp/default/sse"), ("POST", "/metamcp/default/message?sessionId=x")] {
        let answer = raw_exchange(addr, &raw_request(method, target, &format!("evil.example:{port}"), &headers, "{}"));
        assert_eq!((answer.status, answer.error_code().as_str()), (403, "host_not_allowed"), "{method} {target}");
        let cross_site = [headers[0], headers[1], ("origin", "http://evil.example")];
        let answer = raw_exchange(addr, &raw_request(method, target, &own, &cross_site, "{}"));
        assert_eq!((answer.status, answer.error_code().as_str()), (403, "origin_not_allowed"), "{method} {target}");
    }
    // The same request from the page's own origin is let through (to the session check).
    let same = [headers[0], headers[1], ("origin", &format!("http://127.0.0.1:{port}") as &str)];
    let answer = raw_exchange(addr, &raw_request("POST", "/metamcp/default/message?sessionId=x", &own, &same, "{}"));
    assert_eq!((answer.status, answer.error_code().as_str()), (404, "unknown_session"));
}
