//! `tools/call` at saturation through the gateway binary: one endpoint over a stdio upstream (this
//! bench's own executable, serving the `rmcp` test upstream's tools on stdin/stdout) and a
//! Streamable HTTP upstream (the same tools on `rmcp`'s server, in-process), called over
//! `CONCURRENCY` MCP sessions in a closed loop (one JSON-RPC POST per call) for `SECONDS` after a one-second warm-up; with
//! telemetry on (exporting to a loopback OTLP receiver) and off (`TELEMETRY_ENABLED=false`), in one
//! run. Prints req/s, p50 and p99 per (telemetry, upstream transport).
//!
//! `cargo bench --bench gateway_upstream` (`BENCH_CONCURRENCY`, default 16; `BENCH_SECONDS`,
//! default 5)
//!
//! The load generator shares the machine with the gateway and the upstream: the figures are what
//! the three together reach, a floor for the gateway alone. Last figures: see BENCHMARKS.md
//! (issue 13 section).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::mcp_peers::McpUpstream;
use support::service::{client, Binary, Service};
use support::{TestCollector, Transport};

/// Set in the environment of this executable when the gateway runs it as a stdio upstream.
const STDIO_UPSTREAM_VAR: &str = "METAMCP_BENCH_STDIO_UPSTREAM";
/// The endpoint the clients call.
const ENDPOINT: &str = "bench";

/// The gateway binary of this package.
struct Gateway;

impl Binary for Gateway {
    const PATH: &'static str = env!("CARGO_BIN_EXE_metamcp-telemetry");
    const CONFIG_DIR: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
}

/// One measured run.
struct Measured {
    calls: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::var_os(STDIO_UPSTREAM_VAR).is_some() {
        if let Err(err) = support::mcp_peers::serve_stdio("bench-stdio") {
            eprintln!("{err}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo test --benches` runs benches once as a smoke test: nothing to measure then.
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    let concurrency = env_or("BENCH_CONCURRENCY", 16) as usize;
    let seconds = Duration::from_secs(env_or("BENCH_SECONDS", 5));
    let http_upstream = McpUpstream::start("bench-http");
    let exe = std::env::current_exe().expect("this executable's path").display().to_string();
    println!("tools/call through the gateway, {concurrency} clients in a closed loop, {}s per row", seconds.as_secs());
    println!("| telemetry | upstream | req/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|");
    for telemetry in [true, false] {
        let collector = telemetry.then(|| TestCollector::start(Transport::Grpc));
        let endpoint = collector.as_ref().map(TestCollector::endpoint);
        let envs: Vec<(&str, &str)> = match &endpoint {
            Some(endpoint) => vec![("OTLP_ENDPOINT", endpoint.as_str())],
            None => vec![("TELEMETRY_ENABLED", "false")],
        };
        let service = Service::<Gateway>::start(&envs, &[]);
        register(
            &service,
            json!({"name": "stdio", "transport": "stdio", "command": exe, "args": [], "env": {STDIO_UPSTREAM_VAR: "1"}}),
        );
        register(&service, json!({"name": "http", "url": http_upstream.url()}));
        let (status, body) = post(
            &service,
            "/api/endpoints",
            &json!({"name": ENDPOINT, "servers": ["stdio", "http"], "auth_required": false}),
        );
        assert!(status.is_success(), "creating the endpoint: {status} {body}");
        let url = service.url(&format!("/metamcp/{ENDPOINT}/mcp"));
        for (label, tool) in [("stdio", "stdio__echo"), ("streamable_http", "http__echo")] {
            saturate(&url, tool, concurrency, Duration::from_secs(1));
            let m = saturate(&url, tool, concurrency, seconds);
            println!(
                "| {} | {label} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                if telemetry { "on" } else { "off" },
                m.calls as f64 / m.elapsed.as_secs_f64(),
                m.p50.as_secs_f64() * 1e3,
                m.p99.as_secs_f64() * 1e3,
                m.errors
            );
        }
        drop(service);
        drop(collector);
    }
}

fn post(service: &Service<Gateway>, path: &str, body: &Value) -> (reqwest::StatusCode, Value) {
    let response = client().post(service.url(path)).json(body).send().expect("admin API");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn register(service: &Service<Gateway>, body: Value) {
    let (status, created) = post(service, "/api/servers", &body);
    assert!(status.is_success() && created["discovery_error"].is_null(), "registering {body}: {status} {created}");
}

/// Opens an MCP session on `url` (`initialize` + `notifications/initialized`): its id.
async fn open_session(http: &reqwest::Client, url: &str) -> String {
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}});
    let response = http.post(url).json(&initialize).send().await.expect("initialize");
    let session =
        response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("an Mcp-Session-Id").to_owned();
    let _ = response.bytes().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    http.post(url).header("mcp-session-id", &session).json(&initialized).send().await.expect("initialized");
    session
}

/// `concurrency` sessions calling `tool` back to back for `duration` (one JSON-RPC POST per call,
/// on a runtime of two worker threads, as wrk would).
fn saturate(url: &str, tool: &str, concurrency: usize, duration: Duration) -> Measured {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("accept", reqwest::header::HeaderValue::from_static("application/json, text/event-stream"));
        headers.insert("mcp-protocol-version", reqwest::header::HeaderValue::from_static("2025-11-25"));
        let http = reqwest::Client::builder().default_headers(headers).build().expect("HTTP client");
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": "saturation"}}})
        .to_string();
        let began = Instant::now();
        let deadline = began + duration;
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, url, body) = (http.clone(), url.to_owned(), body.clone());
                tokio::spawn(async move {
                    let session = open_session(&http, &url).await;
                    let (mut latencies, mut errors) = (Vec::new(), 0usize);
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        let answer = http
                            .post(&url)
                            .header("mcp-session-id", &session)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        let ok = match answer {
                            Ok(response) if response.status().is_success() => match response.bytes().await {
                                Ok(bytes) => {
                                    let text = String::from_utf8_lossy(&bytes);
                                    text.contains("\"result\"") && !text.contains("\"isError\":true")
                                }
                                Err(_) => false,
                            },
                            _ => false,
                        };
                        if ok {
                            latencies.push(sent.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        let (mut latencies, mut errors) = (Vec::new(), 0);
        for task in tasks {
            let (l, e) = task.await.expect("a client task");
            latencies.extend(l);
            errors += e;
        }
        let elapsed = began.elapsed();
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied()
        };
        Measured {
            calls: latencies.len(),
            errors,
            elapsed,
            p50: at(0.50).unwrap_or_default(),
            p99: at(0.99).unwrap_or_default(),
        }
    })
}
