//! The socket runs: each build as its own process, driven by wrk in turn (A B C A B C …), with
//! CPU and peak memory read from `/proc` and the spans counted by the receiver. Ours runs with
//! its durable spool as the overflow, and gets the time it needs to deliver the backlog after
//! the load (bounded), so "spans received" counts what the spool kept too.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::apps::{http_get, BoxError, Kind, SERVED_PATH};
use crate::procstat;
use crate::receiver::Receiver;
use crate::report::{count, median, mib, ratio, Table};

/// The path every run requests.
pub const PATH: &str = "/items/42";
/// How long an app gets to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// After a run, the app has this long of silence to flush its last spans…
pub const FLUSH_QUIET: Duration = Duration::from_secs(7);
/// …and at most this long in all (the SDK's batch processor exports every 5 s).
pub const FLUSH_MAX: Duration = Duration::from_secs(30);
/// Ours, with its spool, gets at most this long to replay its backlog after the load.
pub const SPOOL_DRAIN_MAX: Duration = Duration::from_secs(120);

/// How wrk drives an app.
#[derive(Clone, Copy, Debug)]
pub struct Wrk {
    /// wrk threads.
    pub threads: u32,
    /// Open connections.
    pub connections: u32,
    /// Length of one run.
    pub duration: Duration,
}

/// What wrk's `done()` hook printed.
#[derive(Clone, Copy, Debug, Default)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Socket errors and non-2xx/3xx answers.
    pub errors: u64,
}

const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.status + e.connect + e.read + e.write + e.timeout))
end
"#;

fn wrk_script_path() -> PathBuf {
    std::env::temp_dir().join(format!("metamcp-comparison-{}.lua", std::process::id()))
}

/// Removes the wrk script this process wrote, if any.
pub fn remove_wrk_script() {
    let _ = std::fs::remove_file(wrk_script_path());
}

fn wrk_script() -> Result<PathBuf, BoxError> {
    let path = wrk_script_path();
    if !path.exists() {
        std::fs::write(&path, WRK_SCRIPT)?;
    }
    Ok(path)
}

/// Runs wrk against `GET PATH` on `port` and parses its result line.
pub fn run_wrk(port: u16, wrk: Wrk) -> Result<WrkResult, BoxError> {
    run_wrk_on(port, PATH, wrk)
}

/// Runs wrk against `GET path` on `port` and parses its result line.
pub fn run_wrk_on(port: u16, path: &str, wrk: Wrk) -> Result<WrkResult, BoxError> {
    let script = wrk_script()?;
    let output = Command::new("wrk")
        .arg(format!("-t{}", wrk.threads))
        .arg(format!("-c{}", wrk.connections))
        .arg(format!("-d{}s", wrk.duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run wrk (comparison/run.sh installs it): {err}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("RESULT "))
        .ok_or_else(|| format!("wrk printed no result: {stdout} {}", String::from_utf8_lossy(&output.stderr)))?;
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let requests = field("requests");
    let duration_s = field("duration_us") / 1e6;
    Ok(WrkResult {
        requests: requests as u64,
        rps: requests / duration_s,
        p50_us: field("p50_us"),
        p99_us: field("p99_us"),
        errors: field("errors") as u64,
    })
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// One build running as a child process (`serve KIND`); killed on drop (its spool with it).
pub struct AppProcess {
    child: Child,
    /// The directory of ours' SQLite spool, removed on drop.
    spool_dir: Option<PathBuf>,
    /// The app's port.
    pub port: u16,
    /// Port of our Prometheus listener (ours only).
    pub metrics_port: u16,
}

impl AppProcess {
    /// Starts `kind` exporting to `otlp` and waits until it answers `GET PATH`. With `durable`,
    /// ours runs with a SQLite spool in a fresh temporary directory (`serve --spool`).
    pub fn spawn(kind: Kind, otlp: &str, durable: bool) -> Result<Self, BoxError> {
        let port = free_port()?;
        let metrics_port = free_port()?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["serve", kind.label(), "--port", &port.to_string(), "--metrics-port", &metrics_port.to_string()])
            .args(["--otlp", otlp]);
        let spool_dir = if durable && kind == Kind::Ours {
            let dir = std::env::temp_dir().join(format!("metamcp-comparison-spool-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            command.arg("--spool").arg(dir.join("spool.sqlite"));
            Some(dir)
        } else {
            None
        };
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).spawn()?;
        let mut app = AppProcess { child, spool_dir, port, metrics_port };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = app.child.try_wait()? {
                return Err(format!("serve {} exited early: {status}", kind.label()).into());
            }
            if let Ok((200, _)) = http_get(port, PATH) {
                return Ok(app);
            }
            if Instant::now() >= deadline {
                return Err(format!("serve {} did not answer within {READY_TIMEOUT:?}", kind.label()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The spans this app has to deliver by now: the requests its handler answered (the
    /// readiness probe's included) plus the request that asks for that count, for the builds
    /// that export spans. Exact, where wrk's own count leaves out the requests it abandons when
    /// it stops.
    pub fn spans_due(&self, kind: Kind) -> Result<u64, BoxError> {
        match http_get(self.port, SERVED_PATH)? {
            (200, body) => Ok(body.trim().parse::<u64>()? + u64::from(kind.exports_spans())),
            (status, _) => Err(format!("GET {SERVED_PATH} answered {status}").into()),
        }
    }

    /// Our pipeline's own figures for its spans, scraped from its `/metrics` (ours only; empty
    /// for the other builds or when the scrape fails).
    pub fn pipeline_figures(&self) -> PipelineFigures {
        let Ok((200, text)) = http_get(self.metrics_port, "/metrics") else { return PipelineFigures::default() };
        let traces = |line: &&str| line.contains("signal=\"traces\"");
        let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        let dropped = text
            .lines()
            .filter(|line| line.starts_with("metamcp_telemetry_dropped_total{"))
            .filter(traces)
            .filter_map(|line| {
                let reason = line.split("reason=\"").nth(1)?.split('"').next()?.to_owned();
                let n = value(line);
                (n > 0).then_some((reason, n))
            })
            .collect();
        let spooled = text
            .lines()
            .filter(|line| line.starts_with("metamcp_telemetry_spooled_total{"))
            .filter(traces)
            .map(value)
            .sum();
        PipelineFigures { dropped, spooled }
    }
}

/// What our pipeline says of its spans.
#[derive(Clone, Debug, Default)]
pub struct PipelineFigures {
    /// `metamcp_telemetry_dropped_total{signal="traces"}` by reason, the non-zero ones.
    pub dropped: Vec<(String, u64)>,
    /// `metamcp_telemetry_spooled_total{signal="traces"}`: spans written to the spool.
    pub spooled: u64,
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.spool_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One run of one build.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The build.
    pub kind: Kind,
    /// wrk's figures.
    pub wrk: WrkResult,
    /// CPU seconds of the app from the start of the load to the end of the flush.
    pub cpu_s: f64,
    /// Peak RSS of the app, KiB.
    pub peak_rss_kib: u64,
    /// Spans the receiver got from this run.
    pub spans_received: u64,
    /// Spans the app had to deliver: the requests its handler answered, counted in the app.
    pub spans_expected: u64,
    /// Seconds from the end of the load to the last span received (builds that export spans).
    pub drain_s: f64,
    /// Our pipeline's own drop and spool counts (ours only).
    pub pipeline: PipelineFigures,
}

impl RunResult {
    /// CPU seconds per 10 000 requests.
    pub fn cpu_per_10k(&self) -> f64 {
        self.cpu_s / self.wrk.requests.max(1) as f64 * 10_000.0
    }
}

/// Starts `kind`, loads it with wrk, waits (bounded) for its spans, reads `/proc`, stops it.
pub fn run_one(kind: Kind, receiver: &Receiver, wrk: Wrk) -> Result<RunResult, BoxError> {
    let service = kind.service_name();
    let spans_before = receiver.spans(service);
    let app = AppProcess::spawn(kind, &receiver.endpoint(), true)?;
    let pid = app.pid();
    let cpu_before = procstat::cpu_seconds(pid)?;
    let result = run_wrk(app.port, wrk)?;
    let spans_expected = app.spans_due(kind)?;
    let max = if kind == Kind::Ours { SPOOL_DRAIN_MAX } else { FLUSH_MAX };
    let (spans_received, drain_s) = if kind.exports_spans() {
        let drained = receiver.drain(service, spans_before + spans_expected, FLUSH_QUIET, max);
        (drained.count - spans_before, drained.last_arrival.as_secs_f64())
    } else {
        (0, 0.0)
    };
    let cpu_s = procstat::cpu_seconds(pid)? - cpu_before;
    let peak_rss_kib = procstat::peak_rss_kib(pid)?;
    let pipeline = if kind == Kind::Ours { app.pipeline_figures() } else { PipelineFigures::default() };
    drop(app);
    Ok(RunResult { kind, wrk: result, cpu_s, peak_rss_kib, spans_received, spans_expected, drain_s, pipeline })
}

fn spans_cell(received: u64, expected: u64, exports: bool) -> String {
    if !exports {
        return "—".to_owned();
    }
    format!(
        "{} / {} ({:.1} %)",
        count(received as f64),
        count(expected as f64),
        received as f64 / expected.max(1) as f64 * 100.0
    )
}

/// `load`: `rounds` rounds of bare, ours, eco; prints each run and the medians as markdown.
pub fn load(receiver: &Receiver, wrk: Wrk, rounds: usize) -> Result<Vec<RunResult>, BoxError> {
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for kind in Kind::ALL {
            eprintln!("load: round {round}/{rounds}, {} ({} s)…", kind.label(), wrk.duration.as_secs());
            let run = run_one(kind, receiver, wrk)?;
            eprintln!(
                "load:   {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} errors, spans {} / {} (last {:.1} s after the \
                 load, {} spooled)",
                run.wrk.rps,
                run.wrk.p50_us,
                run.wrk.p99_us,
                run.wrk.errors,
                run.spans_received,
                run.spans_expected,
                run.drain_s,
                run.pipeline.spooled
            );
            runs.push((round, run));
        }
    }

    println!(
        "\n### Load: wrk -t{} -c{} -d{}s, GET {PATH}, {} app workers, {rounds} rounds (A B C order)\n",
        wrk.threads,
        wrk.connections,
        wrk.duration.as_secs(),
        crate::apps::WORKERS
    );
    let mut table = Table::new(&[
        "round",
        "build",
        "req/s",
        "p50 µs",
        "p99 µs",
        "errors",
        "CPU s / 10k req",
        "peak RSS",
        "spans received / expected",
        "last span after the load",
        "spooled",
    ]);
    for (round, run) in &runs {
        table.row(vec![
            round.to_string(),
            run.kind.label().to_owned(),
            count(run.wrk.rps),
            format!("{:.0}", run.wrk.p50_us),
            format!("{:.0}", run.wrk.p99_us),
            run.wrk.errors.to_string(),
            format!("{:.3}", run.cpu_per_10k()),
            mib(run.peak_rss_kib as f64),
            spans_cell(run.spans_received, run.spans_expected, run.kind.exports_spans()),
            if run.kind.exports_spans() { format!("{:.1} s", run.drain_s) } else { "—".to_owned() },
            if run.kind == Kind::Ours { count(run.pipeline.spooled as f64) } else { "—".to_owned() },
        ]);
    }
    println!("{}", table.render());
    println!(
        "Ours runs with its durable spool (a SQLite file) as the overflow, `span_buffer.queue_capacity` {} and \
         `spool.replay_batches_per_second` {} (see comparison/README.md); after the load each build gets until its \
         spans are all in, or {} s without a new one, or {} s in all (ours: {} s, to replay its spool).\n",
        crate::apps::DURABLE_QUEUE_CAPACITY,
        crate::apps::DURABLE_REPLAY_BATCHES_PER_SECOND,
        FLUSH_QUIET.as_secs(),
        FLUSH_MAX.as_secs(),
        SPOOL_DRAIN_MAX.as_secs()
    );

    for (round, run) in &runs {
        if !run.pipeline.dropped.is_empty() {
            let reasons: Vec<String> =
                run.pipeline.dropped.iter().map(|(reason, n)| format!("{} `{reason}`", count(*n as f64))).collect();
            println!(
                "Round {round}, {}: the pipeline's own `metamcp_telemetry_dropped_total{{signal=\"traces\"}}`: {}.",
                run.kind.label(),
                reasons.join(", ")
            );
        }
    }
    println!();
    let runs: Vec<RunResult> = runs.into_iter().map(|(_, run)| run).collect();
    let medians = |kind: Kind| {
        let of =
            |f: &dyn Fn(&RunResult) -> f64| median(&runs.iter().filter(|r| r.kind == kind).map(f).collect::<Vec<_>>());
        [
            of(&|r| r.wrk.rps),
            of(&|r| r.wrk.p50_us),
            of(&|r| r.wrk.p99_us),
            of(&|r| r.cpu_per_10k()),
            of(&|r| r.peak_rss_kib as f64),
        ]
    };
    let bare = medians(Kind::Bare);
    println!("Medians over {rounds} rounds; ratios are to bare.\n");
    let mut table = Table::new(&[
        "build",
        "req/s",
        "vs bare",
        "p50 µs",
        "vs bare",
        "p99 µs",
        "vs bare",
        "CPU s / 10k req",
        "vs bare",
        "peak RSS",
        "vs bare",
        "spans received / expected (all rounds)",
    ]);
    for kind in Kind::ALL {
        let m = medians(kind);
        let received: u64 = runs.iter().filter(|r| r.kind == kind).map(|r| r.spans_received).sum();
        let expected: u64 = runs.iter().filter(|r| r.kind == kind).map(|r| r.spans_expected).sum();
        table.row(vec![
            kind.label().to_owned(),
            count(m[0]),
            ratio(m[0], bare[0]),
            format!("{:.0}", m[1]),
            ratio(m[1], bare[1]),
            format!("{:.0}", m[2]),
            ratio(m[2], bare[2]),
            format!("{:.3}", m[3]),
            ratio(m[3], bare[3]),
            mib(m[4]),
            ratio(m[4], bare[4]),
            spans_cell(received, expected, kind.exports_spans()),
        ]);
    }
    println!("{}", table.render());
    println!(
        "OTLP metric export calls received over all rounds: ours {}, eco {} (ours exports every 10 s, the SDK's \
         periodic reader every 60 s).\n",
        receiver.metric_exports(Kind::Ours.service_name()),
        receiver.metric_exports(Kind::Eco.service_name())
    );
    Ok(runs)
}
