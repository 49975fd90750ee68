//! PostgreSQL stopped and started again under load. The gateway runs on a private PostgreSQL
//! server this test starts (`initdb` + `pg_ctl` on a free port, in a temporary directory, never
//! the shared server), exports to a loopback OTLP receiver and aggregates an `rmcp` upstream.
//! While a steady trickle of MCP tool calls goes on, the server stops: readiness turns 503, the
//! admin API answers 503 with a JSON error, tool calls to the upstream still succeed (they need no
//! database write; their audit rows wait or are counted as lost), spans keep reaching the
//! receiver and `/health` shows the exporter's spool fallen back to memory. Then the server starts again and everything recovers: readiness 200, the admin API
//! answers, new audit rows are written, and the audit counters account for every call.
//!
//! Without the PostgreSQL server binaries it is skipped with a `SKIP` line, or fails under
//! `METAMCP_CI=1` (scripts/setup.sh installs them).

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::Service;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::mcp_peers::McpUpstream;
use support::service::client;
use support::wait::{assert_eventually, wait_until};
use support::{TestCollector, Transport};

const ADMIN_TOKEN: &str = "pg-faults-admin-token";
const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
/// Pause between two calls of the trickle (pacing the load, not waiting for a condition).
const TRICKLE_PAUSE: Duration = Duration::from_millis(50);

/// A PostgreSQL server of this test alone: its data directory and socket in a temporary
/// directory, listening on 127.0.0.1 on a free port, trust authentication. Stopped on drop.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Run the server binaries as `postgres` (they refuse to run as root).
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Starts a server on the newest installed binaries; without them the test is skipped, or
    /// fails under `METAMCP_CI=1`.
    fn start() -> Option<Self> {
        let bin = support::prereq::postgres_server_bin()?;
        // `/proc/self` belongs to the process's effective user.
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let dir = tempfile::Builder::new().prefix("mmcp-pg-").tempdir().expect("temp dir");
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown of the data directory to postgres");
        }
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let server = Self { bin, dir, port, as_postgres };
        let data = server.data();
        server.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
        server.start_server();
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(args).current_dir(self.dir.path());
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program, args).output().expect("the PostgreSQL binary runs");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server and waits (bounded by `pg_ctl -t`) until it accepts connections.
    fn start_server(&self) {
        let options = format!(
            "-k {} -c listen_addresses=127.0.0.1 -p {} -c fsync=off -c max_connections=50",
            self.dir.path().display(),
            self.port
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &options, "-w", "-t", "30", "start"]);
    }

    /// Stops the server (fast shutdown: open connections are ended) and waits until it is down.
    fn stop_server(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Whatever state the test left it in: stop it (an error just means it is down already).
        let _ = self.command("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "-t", "30", "stop"]).output();
    }
}

fn admin(client: &Client, service: &Service, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
    client.request(method, service.url(path)).bearer_auth(ADMIN_TOKEN)
}

fn admin_post(client: &Client, service: &Service, path: &str, body: Value) -> (StatusCode, Value) {
    let response = admin(client, service, reqwest::Method::POST, path).json(&body).send().expect("admin API");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn admin_get(client: &Client, service: &Service, path: &str) -> (StatusCode, Value) {
    match admin(client, service, reqwest::Method::GET, path).send() {
        Ok(response) => {
            let status = response.status();
            (status, response.json().unwrap_or(Value::Null))
        }
        Err(err) => panic!("GET {path}: {err}"),
    }
}

fn status_of(client: &Client, url: &str) -> Option<StatusCode> {
    client.get(url).send().ok().map(|r| r.status())
}

/// A raw MCP session with the gateway (one JSON-RPC request per `POST`).
struct McpSession {
    client: Client,
    url: String,
    session: String,
    next_id: u64,
}

impl McpSession {
    fn open(url: String) -> Self {
        let client = client();
        let response = client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "pg-faults", "version": "1"}}}))
            .send()
            .expect("initialize");
        assert_eq!(response.status(), StatusCode::OK);
        let session = response.headers()["mcp-session-id"].to_str().expect("ascii").to_owned();
        Self { client, url, session, next_id: 0 }
    }

    /// `tools/call`: the HTTP status and the JSON-RPC answer (null when the body is not JSON);
    /// `None` when no answer came.
    fn try_call_tool(&mut self, name: &str, arguments: Value) -> Option<(StatusCode, Value)> {
        self.next_id += 1;
        let response = self
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}}))
            .send()
            .ok()?;
        let status = response.status();
        Some((status, response.json().unwrap_or(Value::Null)))
    }

    fn call_tool(&mut self, name: &str, arguments: Value) -> (StatusCode, Value) {
        self.try_call_tool(name, arguments).unwrap_or_else(|| panic!("tools/call {name}: no answer"))
    }
}

/// The text of a successful tool result, if the answer is one.
fn result_text(answer: &Value) -> Option<&str> {
    if answer["result"]["isError"] == true {
        return None;
    }
    answer["result"]["content"][0]["text"].as_str()
}

/// Phases of the trickle.
const BEFORE: u8 = 0;
const OUTAGE: u8 = 1;
const RECOVERED: u8 = 2;

/// One call of the trickle: the phase it started in, its HTTP status (none without an answer)
/// and whether the tool answered.
#[derive(Debug, Clone, Copy)]
struct Call {
    phase: u8,
    status: Option<StatusCode>,
    succeeded: bool,
}

/// Calls `up__add` over and over on its own thread until stopped.
struct Trickle {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trickle {
    fn start(mut session: McpSession) -> Self {
        let phase = Arc::new(AtomicU8::new(BEFORE));
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (phase, stop, calls) = (phase.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let started_in = phase.load(Ordering::SeqCst);
                    let answer = session.try_call_tool("up__add", json!({"a": 20, "b": 22}));
                    let succeeded =
                        answer.as_ref().is_some_and(|(s, a)| *s == StatusCode::OK && result_text(a) == Some("42"));
                    let status = answer.map(|(status, _)| status);
                    calls.lock().unwrap().push(Call { phase: started_in, status, succeeded });
                    std::thread::sleep(TRICKLE_PAUSE);
                }
            })
        };
        Self { phase, stop, calls, thread: Some(thread) }
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn succeeded_in(&self, phase: u8) -> usize {
        self.calls().iter().filter(|c| c.phase == phase && c.succeeded).count()
    }

    /// Stops the trickle and returns every call it made.
    fn finish(mut self) -> Vec<Call> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the trickle thread");
        }
        self.calls()
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The exporter's spool as `/health` reports it.
fn spool_health(client: &Client, service: &Service) -> Value {
    let health: Value = client.get(service.url("/health")).send().expect("health").json().expect("JSON");
    health["components"]["exporter"]["details"]["spool"].clone()
}

fn tool_spans(collector: &TestCollector) -> usize {
    collector.spans().iter().filter(|s| s.name == "tools/call up__add").count()
}

fn audit_rows(service: &Service, outcome: &str) -> f64 {
    let scrape = support::prom::scrape_blocking(&service.metrics_url());
    support::prom::value(&scrape, "metamcp_audit_rows_total", &[("outcome", outcome)]).unwrap_or(0.0)
}

#[test]
fn postgres_stopped_and_started_again_under_load() {
    let Some(pg) = PrivatePostgres::start() else { return };
    let collector = TestCollector::start(Transport::Grpc);
    let upstream = McpUpstream::start("pg-faults-upstream");
    let endpoint = collector.endpoint();
    let database_url = pg.url();
    let service = Service::start(
        &[
            ("DATABASE_URL", database_url.as_str()),
            ("METAMCP_DATABASE__CONNECT_TIMEOUT", "500ms"),
            ("METAMCP_ADMIN__TOKEN", ADMIN_TOKEN),
            ("OTLP_ENDPOINT", endpoint.as_str()),
            ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms"),
            ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
            ("METAMCP_HEALTH__CHECK_INTERVAL", "200ms"),
        ],
        &[],
    );
    let http = client();

    let (status, created) = admin_post(&http, &service, "/api/servers", json!({"name": "up", "url": upstream.url()}));
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["discovery_error"], Value::Null, "{created}");
    let (status, body) = admin_post(
        &http,
        &service,
        "/api/endpoints",
        json!({"name": "team", "servers": ["up"], "auth_required": false}),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eventually(WAIT, POLL, "readiness 200 with the database up", || {
        status_of(&http, &service.url("/health/ready")) == Some(StatusCode::OK)
    });
    let on_database = wait_until(WAIT, POLL, || {
        let spool = spool_health(&http, &service);
        spool["backend"] == "postgresql" && spool["fallback"] == false
    });
    assert!(on_database, "the exporter spools to the database: {}", spool_health(&http, &service));

    // The trickle runs before, during and after the outage.
    let trickle = Trickle::start(McpSession::open(service.url("/metamcp/team/mcp")));
    assert_eventually(WAIT, POLL, "tool calls succeed with the database up", || trickle.succeeded_in(BEFORE) >= 3);

    // PostgreSQL stops.
    pg.stop_server();
    trickle.set_phase(OUTAGE);
    let spans_at_stop = tool_spans(&collector);

    assert_eventually(WAIT, POLL, "readiness 503 with the database down", || {
        status_of(&http, &service.url("/health/ready")) == Some(StatusCode::SERVICE_UNAVAILABLE)
    });
    let ready: Value = http.get(service.url("/health/ready")).send().expect("ready").json().expect("JSON");
    assert_eq!(ready["status"], "not_ready", "{ready}");

    let (status, body) = admin_get(&http, &service, "/api/servers");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");

    // Upstream tool calls go on, on what the gateway last read from the database.
    let going_on = wait_until(WAIT, POLL, || trickle.succeeded_in(OUTAGE) >= 5);
    assert!(going_on, "tool calls succeed while the database is down: {:?}", trickle.calls());
    // Their spans still reach the collector.
    assert_eventually(WAIT, POLL, "tool spans arrive during the outage", || {
        tool_spans(&collector) >= spans_at_stop + 5
    });

    // The spool falls back to memory and says so.
    assert_eventually(WAIT, POLL, "/health shows the spool in its memory fallback", || {
        spool_health(&http, &service)["fallback"] == true
    });
    let spool = spool_health(&http, &service);
    assert!(spool["error"].as_str().is_some_and(|e| !e.is_empty()), "the spool says why: {spool}");
    let health: Value = http.get(service.url("/health")).send().expect("health").json().expect("JSON");
    assert_ne!(health["status"], "healthy", "{health}");
    let exporter = &health["components"]["exporter"];
    assert!(exporter["reason"].as_str().is_some_and(|r| r.contains("spool")), "{exporter}");
    let database = &health["components"]["database"];
    assert!(!database.is_null(), "the database component is reported: {health}");
    assert_ne!(database["status"], "healthy", "{health}");

    // PostgreSQL starts again: full recovery.
    pg.start_server();
    trickle.set_phase(RECOVERED);
    assert_eventually(WAIT, POLL, "readiness 200 after the database returned", || {
        status_of(&http, &service.url("/health/ready")) == Some(StatusCode::OK)
    });
    assert_eventually(WAIT, POLL, "the admin API answers again", || {
        admin_get(&http, &service, "/api/servers").0 == StatusCode::OK
    });
    assert_eventually(WAIT, POLL, "the spool is back on the database", || {
        let spool = spool_health(&http, &service);
        spool["fallback"] == false && spool["backend"] == "postgresql"
    });
    let (_, servers) = admin_get(&http, &service, "/api/servers");
    assert_eq!(servers["total"], 1, "{servers}");
    assert_eventually(WAIT, POLL, "tool calls succeed after recovery", || trickle.succeeded_in(RECOVERED) >= 3);

    // Calls of another tool after recovery: each gets its audit row.
    let mut session = McpSession::open(service.url("/metamcp/team/mcp"));
    const ECHOES: usize = 4;
    for i in 0..ECHOES {
        let (status, answer) = session.call_tool("up__echo", json!({"text": format!("after {i}")}));
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(result_text(&answer).is_some(), "{answer}");
    }
    let calls = trickle.finish();
    let outage_calls: Vec<&Call> = calls.iter().filter(|c| c.phase == OUTAGE).collect();
    assert!(
        outage_calls.iter().all(|c| c.succeeded),
        "every call during the outage succeeded: {:?}",
        outage_calls.iter().filter(|c| !c.succeeded).collect::<Vec<_>>()
    );
    assert_eventually(WAIT, POLL, "the audit rows of the calls after recovery are written", || {
        let (status, rows) = admin_get(&http, &service, "/api/executions?tool=up__echo");
        status == StatusCode::OK && rows["total"] == ECHOES
    });

    // Every call that reached the tool has its audit row accounted for: written (at once, or
    // later by the writer's retries) or counted as lost.
    let answered = calls.iter().filter(|c| c.status == Some(StatusCode::OK)).count() + ECHOES;
    let accounted = || {
        audit_rows(&service, "written")
            + audit_rows(&service, "dropped_failed")
            + audit_rows(&service, "dropped_queue_full")
    };
    let settled = wait_until(WAIT, POLL, || accounted() == answered as f64);
    assert!(
        settled,
        "audit rows: {} written, {} lost to failures, {} lost to a full queue; {answered} calls",
        audit_rows(&service, "written"),
        audit_rows(&service, "dropped_failed"),
        audit_rows(&service, "dropped_queue_full")
    );
    let (status, rows) = admin_get(&http, &service, "/api/executions?limit=1");
    assert_eq!(status, StatusCode::OK, "{rows}");
    assert_eq!(rows["total"].as_f64(), Some(audit_rows(&service, "written")), "the table holds what was written");
    let lost = audit_rows(&service, "dropped_failed");
    eprintln!(
        "calls: {} before, {} during the outage, {} after; audit rows lost: {lost}",
        calls.iter().filter(|c| c.phase == BEFORE).count(),
        outage_calls.len(),
        calls.iter().filter(|c| c.phase == RECOVERED).count() + ECHOES
    );
}
