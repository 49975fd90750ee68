//! Runs the real service binary for end-to-end tests: start, wait for its "listening" line,
//! read its JSON logs, signal it, and kill it if a test leaves it behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the binary may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running service process.
pub struct Service {
    child: Child,
    /// Holds the SQLite file of a service started without `DATABASE_URL`.
    _data: Option<tempfile::TempDir>,
    pub api: SocketAddr,
    pub metrics: Option<SocketAddr>,
    lines: Arc<(Mutex<Output>, Condvar)>,
}

/// What the service printed, and how many of its two streams have ended.
#[derive(Default)]
struct Output {
    lines: Vec<String>,
    closed: usize,
}

fn find_listening(lines: &[String]) -> Option<(SocketAddr, Option<SocketAddr>)> {
    lines.iter().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        if value["message"] != "metamcp-telemetry listening" {
            return None;
        }
        let api = value["api"].as_str()?.parse().ok()?;
        let metrics = value["metrics"].as_str().and_then(|m| m.parse().ok());
        Some((api, metrics))
    })
}

impl Service {
    /// Starts the binary with `envs` and `args` (API and metrics on free ports unless the args
    /// say otherwise) and waits until it listens.
    pub fn start(envs: &[(&str, &str)], args: &[&str]) -> Service {
        let mut command = Command::new(env!("CARGO_BIN_EXE_metamcp-telemetry"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("METAMCP_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
            .env("RUST_LOG", "info")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (flag, default) in [("--bind", "127.0.0.1:0"), ("--metrics-port", "0"), ("--log-format", "json")] {
            if !args.contains(&flag) {
                command.args([flag, default]);
            }
        }
        for (key, value) in envs {
            command.env(key, value);
        }
        // Each service gets its own database unless the test names one.
        let data = if envs.iter().any(|(key, _)| *key == "DATABASE_URL" || *key == "METAMCP_DATABASE__URL") {
            None
        } else {
            let dir = tempfile::tempdir().expect("temp dir for the database");
            command.env("DATABASE_URL", format!("sqlite://{}", dir.path().join("metamcp.db").display()));
            Some(dir)
        };
        let mut child = command.spawn().expect("the service binary starts");
        let lines = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let (store, ready) = &*lines;
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    store.lock().unwrap().lines.push(line);
                    ready.notify_all();
                }
                store.lock().unwrap().closed += 1;
                ready.notify_all();
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let (api, metrics) = {
            let (store, ready) = &*lines;
            let mut guard = store.lock().unwrap();
            loop {
                if let Some(found) = find_listening(&guard.lines) {
                    break found;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the service exited with {status} before listening:\n{}", guard.lines.join("\n"));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "the service did not listen within {START_TIMEOUT:?}:\n{}",
                    guard.lines.join("\n")
                );
                guard = ready.wait_timeout(guard, left.min(Duration::from_millis(100))).unwrap().0;
            }
        };
        Service { child, _data: data, api, metrics, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (reaping it), `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("wait for the service process")?;
        self.wait_for_output_end(Instant::now() + Duration::from_secs(10));
        Some(status)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics.expect("metrics endpoint enabled"))
    }

    /// Every output line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().lines.clone()
    }

    /// Output lines parsed as JSON (non-JSON lines are skipped).
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits (until `deadline`) for both output streams to end, so that the last lines the
    /// process printed before it exited are in [`Service::logs`].
    fn wait_for_output_end(&self, deadline: Instant) {
        let (store, ended) = &*self.lines;
        let mut guard = store.lock().unwrap();
        while guard.closed < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the service's output did not end after it exited:\n{}", guard.lines.join("\n"));
            guard = ended.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: nix::sys::signal::Signal, timeout: Duration) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal delivered");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                self.wait_for_output_end(deadline);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {timeout:?} of {signal}:\n{}",
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Names of the process's threads (`/proc/PID/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/{}/task", self.pid())).expect("proc").flatten() {
            if let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) {
                names.push(name.trim().to_owned());
            }
        }
        names
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `Accept` header an MCP Streamable HTTP client sends.
pub const MCP_ACCEPT: &str = "application/json, text/event-stream";

impl Service {
    /// One JSON-RPC POST to the `default` MCP endpoint, in the session `session` if given.
    pub fn mcp_post(&self, session: Option<&str>, body: serde_json::Value) -> reqwest::blocking::Response {
        let mut request = client()
            .post(self.url("/metamcp/default/mcp"))
            .header("content-type", "application/json")
            .header("accept", MCP_ACCEPT)
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send().expect("POST to the MCP endpoint")
    }
}

/// A blocking HTTP client with a bounded timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

/// Settings for an in-process app exporting to `endpoint` over `protocol`, with short intervals
/// so tests wait little, and a Prometheus endpoint on a free port.
pub fn settings_for(
    endpoint: &str,
    protocol: metamcp_telemetry::actors::Protocol,
) -> metamcp_gateway::settings::Settings {
    let mut settings = metamcp_gateway::settings::Settings::default();
    settings.exporter.endpoint = endpoint.to_owned();
    settings.exporter.protocol = protocol;
    settings.exporter.timeout = Duration::from_secs(2);
    settings.exporter.retry.initial_interval = Duration::from_millis(100);
    settings.exporter.retry.max_interval = Duration::from_millis(500);
    settings.span_buffer.flush_interval = Duration::from_millis(100);
    settings.metrics.export_interval = Duration::from_millis(200);
    settings.health.check_interval = Duration::from_millis(100);
    settings.prometheus.port = 0;
    settings.telemetry.install_global = false;
    settings
}

/// An instrumented actix-web app on a loopback socket.
pub struct TestApp {
    pub base: String,
    pub handle: actix_web::dev::ServerHandle,
}

mod handlers {
    use actix_web::{error, web, HttpResponse};

    pub(super) async fn ok() -> HttpResponse {
        HttpResponse::Ok().body("ok")
    }

    pub(super) async fn fail() -> HttpResponse {
        HttpResponse::InternalServerError().body("boom")
    }

    pub(super) async fn create(path: web::Path<u32>) -> HttpResponse {
        HttpResponse::Created().body(path.into_inner().to_string())
    }

    pub(super) async fn unavailable() -> Result<HttpResponse, actix_web::Error> {
        Err(error::ErrorServiceUnavailable("not now"))
    }
}

impl TestApp {
    /// Starts the app: `GET /ok` (200), `GET /fail` (500), `POST /items/{id}` (201),
    /// `GET /unavailable` (handler `Err`, 503), the health routes, and a JSON 404 otherwise.
    pub async fn start(manager: &metamcp_telemetry::TelemetryManager) -> TestApp {
        use actix_web::{web, App, HttpServer};
        let manager = manager.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(manager.middleware())
                .app_data(web::Data::new(manager.clone()))
                .configure(metamcp_telemetry::http::health_routes)
                .route("/ok", web::get().to(handlers::ok))
                .route("/fail", web::get().to(handlers::fail))
                .route("/items/{id}", web::post().to(handlers::create))
                .route("/unavailable", web::get().to(handlers::unavailable))
                .default_service(web::to(metamcp_telemetry::http::not_found))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        TestApp { base: format!("http://{addr}"), handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers, lower case.
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Writes `request` as is on a fresh connection to `addr` and reads one answer: the head, then the
/// body up to its `Content-Length` (or to the end of the connection). Every read waits at most
/// 10 s.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    stream.write_all(request).expect("write the request");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut chunk).expect("an answer");
        assert!(read > 0, "the connection closed without an answer: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let length =
        head.lines().find_map(|line| line.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = buf.split_off(head_end);
    loop {
        if length.is_some_and(|n| body.len() >= n) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => body.extend_from_slice(&chunk[..read]),
        }
    }
    RawResponse { status, head, body: String::from_utf8_lossy(&body).into_owned() }
}

/// A request with `method`, `target`, the `Host` header `host` (none when empty), `headers` and
/// `body` (with its `Content-Length`), closing the connection after the answer.
pub fn raw_request(method: &str, target: &str, host: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {target} HTTP/1.1\r\n");
    if !host.is_empty() {
        text.push_str(&format!("host: {host}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        text.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    text.push_str("connection: close\r\n\r\n");
    text.push_str(body);
    text.into_bytes()
}
