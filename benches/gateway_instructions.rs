//! Instructions per `tools/call calculator` through `/metamcp/default/mcp`, telemetry on vs off,
//! counted by `valgrind --tool=callgrind` (issue 14's measure: counts do not move with the
//! machine's noise the way req/s does).
//!
//! Builds nothing: it runs an already built release binary (`METAMCP_GATEWAY_BIN`, default
//! `<target dir of this bench>/release/metamcp-telemetry`; `scripts/callgrind_gateway.sh` builds
//! both). For each mode (on: `TELEMETRY_ENABLED=true`, exporting over gRPC to the loopback
//! `TestCollector` of test-support; off: `TELEMETRY_ENABLED=false`) and each of two call counts
//! N1 < N2, it starts the binary under callgrind with a fresh SQLite database, waits for
//! `/health/live`, opens an MCP session (`initialize`, `notifications/initialized`), sends N
//! `tools/call calculator` POSTs (the body of `scripts/bench_gateway.sh`) one after the other on
//! ONE keep-alive connection, checks every answer is a tool success, sends SIGTERM, waits for the
//! exit and reads the `totals:` line of the callgrind file. Everything that does not depend on N
//! (start, migrations, session, shutdown, the final flush) cancels in the slope:
//!
//!   per call = (I(N2) - I(N1)) / (N2 - N1)
//!
//! Knobs (environment): `BENCH_CALLS=300,1500`, `BENCH_REPEAT=1` (runs each point that many times
//! and reports the spread of the slope), `BENCH_MODES=on,off`, `BENCH_PACE_MS=0` (a pause after
//! each answer), `METAMCP_GATEWAY_BIN`, `BENCH_CALLGRIND_DIR` (default `<target dir>/callgrind`,
//! where every run's callgrind file is kept as `{on,off}-{N}[-rR].out`).
//!
//! Noise. Work that follows wall time rather than calls — the audit writer's batches (one
//! multi-row INSERT per 200 ms window), the metric drain every 100 ms, the span flush every 1 s,
//! the metric export every 10 s, the health check, cache refreshes — weighs ~50x more per call
//! under callgrind than natively, because a call takes ~50x longer. Calls go back to back (the
//! issue's method), which keeps that share smallest: an audit INSERT per ~110 calls here (the
//! bench prints it), where natively a window fills its 512 rows. We keep the shipped configuration
//! (config/default.toml) in both modes rather than stretching intervals: the drain and the flush
//! batch per-call work, and stretching them would measure a configuration nobody runs. Two repeats
//! agree within 0.5 %. (Before the audit writer had its window, it batched whatever queued during
//! its previous transaction, which made back-to-back runs move 5.7 %; `BENCH_PACE_MS=20` was the
//! cure then. With the window, a pause only adds timer work: ×1.201 paced against ×1.181.)
//!
//! `cargo bench --bench gateway_instructions` (or `scripts/callgrind_gateway.sh`). Last figures:
//! see the header of scripts/callgrind_gateway.sh and BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use support::{TestCollector, Transport};

/// The endpoint the calls go to (created by the gateway at start).
const MCP_PATH: &str = "/metamcp/default/mcp";
/// The body of every call: the one `scripts/bench_gateway.sh` sends.
const CALL_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"calculator","arguments":{"expression":"(2 + 3) * 4 - sqrt(16) / 2 ^ 2"}}}"#;
/// The session's opening request.
const INITIALIZE_BODY: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"callgrind-bench","version":"1"}}}"#;
/// The notification that completes the handshake.
const INITIALIZED_BODY: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
/// How long the binary under callgrind may take to answer `/health/live`.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long it may take to exit after SIGTERM (it flushes telemetry on the way out).
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between two health probes.
const PROBE_PERIOD: Duration = Duration::from_millis(250);
/// Pause after each answer, in milliseconds (see the header).
const DEFAULT_PACE_MS: u64 = 0;
/// Longest wait for one answer (a call under callgrind takes milliseconds).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    On,
    Off,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
        }
    }
}

/// What the bench was asked to do.
struct Options {
    binary: PathBuf,
    config_dir: PathBuf,
    out_dir: PathBuf,
    calls: (usize, usize),
    repeat: usize,
    modes: Vec<Mode>,
    /// Pause after each call's answer, so the audit writer is idle when the next row comes.
    pace: Duration,
}

/// One run of the binary under callgrind.
struct Run {
    instructions: u64,
    call_phase: Duration,
    /// Spans the receiver decoded, by name (on mode only).
    spans: BTreeMap<String, usize>,
    out_file: PathBuf,
}

fn main() {
    // `cargo test --benches` runs benches once as a smoke test: nothing to measure then.
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    let options = Options::from_env();
    if !options.binary.is_file() {
        eprintln!(
            "no gateway binary at {} (build it: cargo build --release --bin metamcp-telemetry, or set METAMCP_GATEWAY_BIN)",
            options.binary.display()
        );
        std::process::exit(2);
    }
    fs::create_dir_all(&options.out_dir).expect("create the callgrind output directory");
    let (n1, n2) = options.calls;
    println!(
        "callgrind: tools/call calculator on {MCP_PATH}, N1={n1} and N2={n2} calls, {} ms pause after each, {} repeat(s), binary {}",
        options.pace.as_millis(),
        options.repeat,
        options.binary.display()
    );

    let mut results: BTreeMap<Mode, Vec<(Run, Run)>> = BTreeMap::new();
    for round in 0..options.repeat {
        for &mode in &options.modes {
            let small = run(&options, mode, n1, round);
            let large = run(&options, mode, n2, round);
            results.entry(mode).or_default().push((small, large));
        }
    }
    report(&options, &results);
}

impl Options {
    fn from_env() -> Options {
        let target_dir = target_dir();
        let binary = std::env::var_os("METAMCP_GATEWAY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir.join("release/metamcp-telemetry"));
        let out_dir =
            std::env::var_os("BENCH_CALLGRIND_DIR").map(PathBuf::from).unwrap_or_else(|| target_dir.join("callgrind"));
        let calls = std::env::var("BENCH_CALLS").unwrap_or_else(|_| "300,1500".to_owned());
        let calls: Vec<usize> = calls.split(',').map(|c| c.trim().parse().expect("BENCH_CALLS: N1,N2")).collect();
        assert!(calls.len() == 2 && calls[0] < calls[1], "BENCH_CALLS takes two counts N1,N2 with N1 < N2");
        let repeat = std::env::var("BENCH_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(1usize).max(1);
        let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "on,off".to_owned());
        let modes = modes
            .split(',')
            .map(|m| match m.trim() {
                "on" => Mode::On,
                "off" => Mode::Off,
                other => panic!("BENCH_MODES: on and/or off, not {other:?}"),
            })
            .collect();
        let pace = Duration::from_millis(
            std::env::var("BENCH_PACE_MS").ok().and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PACE_MS),
        );
        Options {
            pace,
            binary,
            config_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
            out_dir,
            calls: (calls[0], calls[1]),
            repeat,
            modes,
        }
    }
}

/// The target directory this bench was built into: `<target>/release/deps/<bench exe>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("this executable's path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// One run: start under callgrind, `calls` calls, SIGTERM, read the total.
fn run(options: &Options, mode: Mode, calls: usize, round: usize) -> Run {
    let work = tempfile::tempdir().expect("a temp dir");
    let suffix = if options.repeat > 1 { format!("-r{}", round + 1) } else { String::new() };
    let out_file = options.out_dir.join(format!("{}-{calls}{suffix}.out", mode.name()));
    let _ = fs::remove_file(&out_file);
    let collector = (mode == Mode::On).then(|| TestCollector::start(Transport::Grpc));
    let port = free_port();
    let log_path = work.path().join("service.log");
    let log = fs::File::create(&log_path).expect("create the service log");

    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(&options.binary)
        .args(["--bind", &format!("127.0.0.1:{port}"), "--metrics-port", "0", "--log-format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("METAMCP_CONFIG_DIR", &options.config_dir)
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", format!("sqlite://{}", work.path().join("metamcp.db").display()))
        .env("TELEMETRY_ENABLED", if mode == Mode::On { "true" } else { "false" })
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log);
    if let Some(collector) = &collector {
        command.env("OTLP_ENDPOINT", collector.endpoint());
    }
    let mut child = command.spawn().expect("start valgrind (is it installed?)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(&mut child, addr, calls, options.pace)));
    let call_phase = match outcome {
        Ok(elapsed) => elapsed,
        Err(panic) => {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("--- service log ({} {calls}) ---\n{}", mode.name(), tail(&log_path, 40));
            std::panic::resume_unwind(panic);
        }
    };
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the service") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the service did not exit within {EXIT_TIMEOUT:?} of SIGTERM:\n{}", tail(&log_path, 40));
        }
        std::thread::sleep(PROBE_PERIOD);
    };
    assert!(status.success(), "the service exited with {status}:\n{}", tail(&log_path, 40));
    let instructions = read_total(&out_file);
    let spans = collector
        .as_ref()
        .map(|c| {
            c.snapshot(|r| {
                let mut names = BTreeMap::new();
                for span in r.spans() {
                    *names.entry(span.name).or_insert(0) += 1;
                }
                names
            })
        })
        .unwrap_or_default();
    let total_spans: usize = spans.values().sum();
    println!(
        "  {:<3} N={calls:<5} {:>15} instructions, call phase {:>6.1} s{}",
        mode.name(),
        group(instructions),
        call_phase.as_secs_f64(),
        if mode == Mode::On { format!(", {total_spans} spans received") } else { String::new() }
    );
    Run { instructions, call_phase, spans, out_file }
}

/// Waits for the service, opens a session and makes `calls` calls; returns the calls' wall time.
fn drive(child: &mut Child, addr: SocketAddr, calls: usize, pace: Duration) -> Duration {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll the service") {
            panic!("the service exited with {status} before answering /health/live");
        }
        if let Ok(mut probe) = Connection::open(addr) {
            if probe.send("GET", "/health/live", &[], "").is_ok_and(|r| r.status == 200) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "/health/live did not answer 200 within {START_TIMEOUT:?}");
        std::thread::sleep(PROBE_PERIOD);
    }
    let mut connection = Connection::open(addr).expect("connect to the service");
    let headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")];
    let init = connection.send("POST", MCP_PATH, &headers, INITIALIZE_BODY).expect("initialize");
    assert_eq!(init.status, 200, "initialize: {}", init.body);
    let session = init.header("mcp-session-id").expect("an Mcp-Session-Id header").to_owned();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let initialized = connection.send("POST", MCP_PATH, &headers, INITIALIZED_BODY).expect("notifications/initialized");
    assert!(initialized.status == 202 || initialized.status == 200, "initialized: {}", initialized.status);
    let started = Instant::now();
    for i in 0..calls {
        let answer = connection.send("POST", MCP_PATH, &headers, CALL_BODY).expect("tools/call");
        assert_eq!(answer.status, 200, "call {i}: {}", answer.body);
        let message = answer.message();
        assert!(
            message["result"]["content"].is_array() && message["result"]["isError"] != Value::Bool(true),
            "call {i} did not succeed: {}",
            answer.body
        );
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    started.elapsed()
}

/// The table, the ratio, the spans and the kept files.
fn report(options: &Options, results: &BTreeMap<Mode, Vec<(Run, Run)>>) {
    let (n1, n2) = options.calls;
    let slope =
        |(small, large): &(Run, Run)| (large.instructions as f64 - small.instructions as f64) / (n2 - n1) as f64;
    println!();
    println!("| telemetry | I(N1={n1}) | I(N2={n2}) | per call | spread over repeats |");
    println!("|---|---:|---:|---:|---|");
    let mut per_call = BTreeMap::new();
    for (mode, runs) in results {
        let slopes: Vec<f64> = runs.iter().map(slope).collect();
        let mean = slopes.iter().sum::<f64>() / slopes.len() as f64;
        let spread = if slopes.len() > 1 {
            let min = slopes.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = slopes.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            format!("{} .. {} ({:.2} %)", group(min as u64), group(max as u64), (max - min) / mean * 100.0)
        } else {
            "-".to_owned()
        };
        let (small, large) = &runs[0];
        println!(
            "| {} | {} | {} | {} | {} |",
            mode.name(),
            group(small.instructions),
            group(large.instructions),
            group(mean.round() as u64),
            spread
        );
        per_call.insert(*mode, mean);
    }
    if let (Some(on), Some(off)) = (per_call.get(&Mode::On), per_call.get(&Mode::Off)) {
        println!(
            "\non / off per call: x{:.3}   (telemetry adds {} instructions per call)",
            on / off,
            group((on - off) as u64)
        );
    }
    for (mode, runs) in results {
        let (small, large) = &runs[0];
        let per_second = |run: &Run, calls: usize| calls as f64 / run.call_phase.as_secs_f64();
        println!(
            "{}: {:.0} calls/s under callgrind at N1, {:.0} at N2",
            mode.name(),
            per_second(small, n1),
            per_second(large, n2)
        );
    }
    if let Some(runs) = results.get(&Mode::On) {
        let (small, large) = &runs[0];
        let total = |run: &Run| run.spans.values().sum::<usize>();
        println!(
            "\nspans received (on): {} at N1, {} at N2 -> {:.3} per call",
            total(small),
            total(large),
            (total(large) as f64 - total(small) as f64) / (n2 - n1) as f64
        );
        let audit = |run: &Run| run.spans.get("INSERT tool_executions").copied().unwrap_or(0);
        println!(
            "audit INSERT statements per call (on): {:.3} (the audit writer batches over a time window, so this follows wall time per call)",
            (audit(large) as f64 - audit(small) as f64) / (n2 - n1) as f64
        );
        println!("by name at N2 (N1):");
        for (name, count) in &large.spans {
            println!("  {count:>6} ({:>5})  {name}", small.spans.get(name).copied().unwrap_or(0));
        }
    }
    println!("\ncallgrind files of the N2 runs:");
    for runs in results.values() {
        let (_, large) = &runs[runs.len() - 1];
        println!("  {}", large.out_file.display());
    }
    if let Some(runs) = results.values().next() {
        let (_, large) = &runs[runs.len() - 1];
        println!("annotate: callgrind_annotate --inclusive=yes {} | head -60", large.out_file.display());
    }
}

/// The `totals:` (or `summary:`) count of a callgrind output file: instructions, all threads.
fn read_total(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))
        .unwrap_or_else(|| panic!("no totals: line in {}", path.display()));
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a count after totals:")
}

/// A free loopback port (bound and released; the service binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `1234567` as `1 234 567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// An HTTP/1.1 keep-alive connection: requests one after the other, answers framed by
/// `Content-Length` or chunked encoding.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// One answer.
struct Answer {
    status: u16,
    /// Header lines, names lower case.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC message: the body, or the last `data:` line of an event stream.
    fn message(&self) -> Value {
        let text = if self.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")) {
            self.body.lines().filter_map(|l| l.strip_prefix("data:")).next_back().unwrap_or_default()
        } else {
            self.body.as_str()
        };
        serde_json::from_str(text.trim()).unwrap_or(Value::Null)
    }
}

impl Connection {
    fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buffer: Vec::new() })
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<Answer> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if method != "GET" {
            request.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.write_all(request.as_bytes())?;
        self.read_answer()
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16384];
        let read = self.stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the service closed the connection"));
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    fn take_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn take_bytes(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buffer.len() < n {
            self.fill()?;
        }
        Ok(self.buffer.drain(..n).collect())
    }

    fn read_answer(&mut self) -> std::io::Result<Answer> {
        let status_line = self.take_line()?;
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            let line = self.take_line()?;
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let body = if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let size = self.take_line()?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
                if size == 0 {
                    self.take_line()?;
                    break;
                }
                body.extend(self.take_bytes(size)?);
                self.take_line()?;
            }
            body
        } else {
            let length = find("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            self.take_bytes(length)?
        };
        Ok(Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
    }
}
