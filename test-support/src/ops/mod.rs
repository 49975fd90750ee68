//! Shared by the tests of the operator material under `docker/`: where the files are, reading
//! the PromQL out of the Grafana dashboards and the alert rules, traffic that gives every metric
//! family of the service a sample.

pub mod promql;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::service::{client, Binary, Service, ServiceProcess};

/// The repository root.
pub fn repo() -> &'static Path {
    crate::repo_root()
}

/// `docker/` and everything under it.
pub fn docker_dir() -> PathBuf {
    repo().join("docker")
}

/// One PromQL expression of a dashboard or a rule file, with where it came from.
#[derive(Debug, Clone)]
pub struct Query {
    /// File, and panel title / variable name / alert name.
    pub origin: String,
    /// The expression as written.
    pub expr: String,
}

/// Every `*.json` file under `docker/grafana/dashboards/`, sorted, with its text.
pub fn dashboard_files() -> Vec<(PathBuf, String)> {
    let dir = docker_dir().join("grafana/dashboards");
    let mut files: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard JSON under {}", dir.display());
    files
}

/// Every panel of a dashboard, the panels nested in collapsed rows included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The PromQL of a dashboard: every panel target's `expr` and every query variable's query.
pub fn dashboard_queries(file: &Path, dashboard: &Value) -> Vec<Query> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push(Query {
                    origin: format!("{name}: panel {:?} target {}", panel["title"], target["refId"]),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"].as_str().or_else(|| variable["query"].as_str());
        if let Some(expr) = query {
            queries.push(Query { origin: format!("{name}: variable {:?}", variable["name"]), expr: expr.to_owned() });
        }
    }
    queries
}

/// The `expr` of every rule in a Prometheus rule file, read line by line: `expr: TEXT` on one
/// line, or a block scalar (`expr: |`, `expr: >-`, …) whose lines are indented deeper than the
/// key. The rule's `alert:` or `record:` name goes into [`Query::origin`].
pub fn rule_queries(file: &Path) -> Vec<Query> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut queries = Vec::new();
    let mut rule = String::from("?");
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(name) = trimmed.strip_prefix("alert:").or_else(|| trimmed.strip_prefix("record:")) {
            rule = name.trim().to_owned();
        }
        if let Some(value) = trimmed.strip_prefix("expr:") {
            let value = value.trim();
            let indent = line.len() - line.trim_start().len();
            let expr = if value.starts_with('|') || value.starts_with('>') {
                let mut block = Vec::new();
                while let Some(next) = lines.get(i + 1) {
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                block.join("\n").trim().to_owned()
            } else {
                value.trim_matches(|c| c == '\'' || c == '"').to_owned()
            };
            let shown = file.strip_prefix(repo()).unwrap_or(file);
            queries.push(Query { origin: format!("{}: rule {rule}", shown.display()), expr });
        }
        i += 1;
    }
    queries
}

/// The `uid` of every datasource provisioned under `docker/grafana/provisioning/datasources/`.
pub fn provisioned_datasource_uids() -> Vec<String> {
    let dir = docker_dir().join("grafana/provisioning/datasources");
    let mut uids = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let text = std::fs::read_to_string(entry.expect("directory entry").path()).expect("datasource file");
        for line in text.lines() {
            if let Some(uid) = line.trim().strip_prefix("uid:") {
                uids.push(uid.trim().trim_matches('"').to_owned());
            }
        }
    }
    uids
}

/// Starts the service so that it exports to a closed port (export attempts fail fast and are
/// measured) with short flush and retry intervals.
pub fn start_service<B: Binary>() -> Service<B> {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
        listener.local_addr().expect("local address").port()
    };
    let endpoint = format!("http://127.0.0.1:{closed}");
    Service::start(
        &[("OTLP_ENDPOINT", endpoint.as_str())],
        &[
            "--set",
            "span_buffer.flush_interval=100ms",
            "--set",
            "exporter.retry.initial_interval=100ms",
            "--set",
            "exporter.retry.max_interval=200ms",
            "--set",
            "metrics.export_interval=200ms",
        ],
    )
}

/// One JSON-RPC POST to the `default` MCP endpoint; returns the answer's JSON (if any).
fn mcp(service: &ServiceProcess, session: Option<&str>, body: Value) -> (Option<String>, Value) {
    let response = service.mcp_post(session, body);
    assert!(response.status().is_success(), "MCP answered {}", response.status());
    let session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().expect("MCP body");
    (session, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Requests that give the service's histograms and labelled families their first samples:
/// MCP `initialize`, `tools/call` of `calculator` (a success and a failure) and of
/// `search_tools` (a vector search), `POST /api/tools/search`, a 404, and the health endpoints.
pub fn drive_traffic(service: &ServiceProcess) {
    let (session, init) = mcp(
        service,
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "ops-test", "version": "1"}}}),
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "metamcp-telemetry", "{init}");
    let session = session.expect("a session id");
    mcp(service, Some(&session), json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let calls = [
        ("calculator", json!({"expression": "2 * (3 + 4)"}), false),
        ("calculator", json!({"expression": "1/0"}), true),
        ("search_tools", json!({"query": "evaluate an arithmetic expression"}), false),
    ];
    for (id, (tool, arguments, is_error)) in calls.into_iter().enumerate() {
        let (_, answer) = mcp(
            service,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": id + 1, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}}),
        );
        assert_eq!(answer["result"]["isError"], is_error, "tools/call {tool}: {answer}");
    }
    let search = client()
        .post(service.url("/api/tools/search"))
        .header("content-type", "application/json")
        .body(r#"{"query": "calculator"}"#)
        .send()
        .expect("POST /api/tools/search");
    assert_eq!(search.status(), 200);
    assert_eq!(client().get(service.url("/no/such/route")).send().expect("GET").status(), 404);
    for path in ["/health", "/health/live", "/health/ready"] {
        client().get(service.url(path)).send().expect("GET health");
    }
}

/// How long a test waits for the scrape to show what the traffic caused (metric events are
/// folded every `metrics.drain_interval`, exports fail and are measured within a second).
pub const SCRAPE_WAIT: Duration = Duration::from_secs(30);
