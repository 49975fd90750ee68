//! What the end-to-end tests on the Python MCP SDK peers share: the gateway binary (exporting to a
//! loopback OTLP receiver when given one), `server.py` registered over each transport, an endpoint
//! over them, and the `rmcp` client's runtime.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::Service;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::mcp_peers::{stdio_command, PeerTransport, PythonServer};
use support::TestCollector;

/// Bound on every wait of these tests.
pub const WAIT: Duration = Duration::from_secs(30);
/// Poll interval of the bounded waits.
pub const POLL: Duration = Duration::from_millis(50);
/// The tools `server.py` offers.
pub const PEER_TOOLS: &[&str] = &["add", "add_tool", "echo", "echo_meta", "fail", "shout", "slow"];

/// A current-thread runtime for the `rmcp` client's futures.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// The gateway, exporting to `collector` when given one (spans flushed every 100 ms, metrics every
/// 200 ms).
pub fn gateway(collector: Option<&TestCollector>, extra: &[(&str, &str)]) -> Service {
    let endpoint = collector.map(TestCollector::endpoint);
    let mut envs: Vec<(&str, &str)> = match &endpoint {
        Some(endpoint) => vec![
            ("OTLP_ENDPOINT", endpoint.as_str()),
            ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms"),
            ("METAMCP_METRICS__EXPORT_INTERVAL", "200ms"),
            ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
        ],
        None => Vec::new(),
    };
    envs.extend_from_slice(extra);
    Service::start(&envs, &[])
}

/// `POST path` with a JSON body: the status and the JSON answer.
pub fn admin_post(service: &Service, path: &str, body: &Value) -> (StatusCode, Value) {
    // Registering a stdio server waits for its process to start and answer discovery.
    let admin = reqwest::blocking::Client::builder().timeout(WAIT * 2).build().expect("client");
    let response = admin.post(service.url(path)).json(body).send().expect("admin API");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// Registers `body` as a server and checks that its tools were discovered.
pub fn register(service: &Service, body: Value) -> Value {
    let (status, created) = admin_post(service, "/api/servers", &body);
    assert_eq!(status, StatusCode::CREATED, "{body} -> {created}");
    assert_eq!(created["discovery_error"], Value::Null, "{created}");
    let mut tools: Vec<&str> =
        created["tools"].as_array().into_iter().flatten().filter_map(|t| t["tool"].as_str()).collect();
    tools.sort_unstable();
    assert_eq!(tools, PEER_TOOLS, "the tools of {}: {created}", body["name"]);
    created
}

/// Registers `server.py` run over stdio by the gateway as `name`, with `env` for the child.
pub fn register_stdio(service: &Service, python: &Path, name: &str, env: Value) -> Value {
    let (command, args) = stdio_command(python, name);
    register(
        service,
        json!({"name": name, "transport": "stdio", "command": command, "args": args, "env": env, "timeout_ms": 20000}),
    )
}

/// Registers the HTTP `server` as `name` over `transport`.
pub fn register_http(service: &Service, name: &str, transport: PeerTransport, server: &PythonServer) -> Value {
    register(
        service,
        json!({"name": name, "transport": transport.gateway_name(), "url": server.url(), "timeout_ms": 20000}),
    )
}

/// Creates the endpoint `name` over `servers`, open to anyone on loopback.
pub fn create_endpoint(service: &Service, name: &str, servers: &[&str]) {
    let (status, body) =
        admin_post(service, "/api/endpoints", &json!({"name": name, "servers": servers, "auth_required": false}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A file in a fresh temporary directory (kept as long as the returned guard lives).
pub fn temp_file(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    (dir, path)
}
