//! Soak: the real gateway binary (release build of the root workspace, SQLite spool in a temp
//! directory) under wrk for a long run, with the receiver down for the middle part. Reports spans
//! recorded vs delivered, peak resident memory against the configured ceiling, and throughput
//! during the outage as a ratio of throughput while healthy.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::apps::{http_get, BoxError};
use crate::load::{free_port, run_wrk_on, Wrk, WrkResult};
use crate::procstat;
use crate::receiver::Receiver;
use crate::report::{count, mib, ratio, Table};

/// The route every request takes: one server span each, no database work.
const SOAK_PATH: &str = "/health/live";
/// The service name the gateway reports, so the receiver counts its spans apart.
const SERVICE: &str = "soak-gateway";
/// Length of one wrk run; the phases are made of such slices so RSS and rates show over time.
const SLICE: Duration = Duration::from_secs(30);
/// After the load: how long without a new span before the drain counts as over…
const DRAIN_QUIET: Duration = Duration::from_secs(30);
/// …and the longest drain.
const DRAIN_MAX: Duration = Duration::from_secs(1800);

/// The memory bounds the soak configures (and the ceiling they make).
const QUEUE_MAX_BYTES: u64 = 16 << 20;
const PENDING_MAX_BYTES: u64 = 16 << 20;
const MEMORY_SPOOL_MAX_BYTES: u64 = 16 << 20;

/// How the soak runs.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Whole length of the load.
    pub total: Duration,
    /// Share of it with the receiver down, in the middle.
    pub outage_share: f64,
    /// wrk connections.
    pub connections: u32,
    /// Spool bound for the run.
    pub spool_max_bytes: u64,
    /// Spool replay rate for the run.
    pub replay_batches_per_second: u32,
}

struct Gateway {
    child: Child,
    port: u16,
    metrics_port: u16,
    data: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn binary() -> Result<PathBuf, BoxError> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let path = target.join("release").join("metamcp-telemetry");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing: comparison/run.sh soak builds it", path.display()).into())
    }
}

impl Gateway {
    fn spawn(otlp: &str, config: &SoakConfig) -> Result<Self, BoxError> {
        let data = std::env::temp_dir().join(format!("metamcp-soak-{}", std::process::id()));
        std::fs::create_dir_all(&data)?;
        let port = free_port()?;
        let metrics_port = free_port()?;
        let child = Command::new(binary()?)
            .args(["--bind", &format!("127.0.0.1:{port}"), "--metrics-port", &metrics_port.to_string()])
            .env("OTLP_ENDPOINT", otlp)
            .env("OTEL_SERVICE_NAME", SERVICE)
            .env("DATABASE_URL", format!("sqlite://{}", data.join("metamcp.db").display()))
            .env("RUST_LOG", "warn")
            .env("METAMCP_SPAN_BUFFER__QUEUE_MAX_BYTES", QUEUE_MAX_BYTES.to_string())
            .env("METAMCP_EXPORTER__MAX_PENDING_BYTES", PENDING_MAX_BYTES.to_string())
            .env("METAMCP_SPOOL__MEMORY_MAX_BYTES", MEMORY_SPOOL_MAX_BYTES.to_string())
            .env("METAMCP_SPOOL__MAX_BYTES", config.spool_max_bytes.to_string())
            .env("METAMCP_SPOOL__REPLAY_BATCHES_PER_SECOND", config.replay_batches_per_second.to_string())
            .env("METAMCP_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/../config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut gateway = Gateway { child, port, metrics_port, data };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = gateway.child.try_wait()? {
                return Err(format!("the gateway exited early: {status}").into());
            }
            if let Ok((200, _)) = http_get(port, SOAK_PATH) {
                return Ok(gateway);
            }
            if Instant::now() > deadline {
                return Err("the gateway did not answer within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sum of the samples of `name` whose label text contains every one of `labels`.
    fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let Ok((200, text)) = http_get(self.metrics_port, "/metrics") else { return f64::NAN };
        text.lines()
            .filter(|line| {
                line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                    && labels.iter().all(|l| line.contains(l))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn served(&self) -> f64 {
        self.metric("metamcp_requests_total", &["route=\"/health/live\""])
    }
}

struct Phase {
    receiver_up: bool,
    slices: Vec<WrkResult>,
    rss_kib: Vec<u64>,
}

impl Phase {
    fn requests(&self) -> u64 {
        self.slices.iter().map(|s| s.requests).sum()
    }

    fn rps(&self) -> f64 {
        let secs = self.slices.len() as f64 * SLICE.as_secs_f64();
        self.requests() as f64 / secs.max(1.0)
    }

    fn errors(&self) -> u64 {
        self.slices.iter().map(|s| s.errors).sum()
    }
}

fn run_phase(gateway: &Gateway, receiver_up: bool, length: Duration, connections: u32) -> Result<Phase, BoxError> {
    let slices = (length.as_secs_f64() / SLICE.as_secs_f64()).round().max(1.0) as usize;
    let wrk = Wrk { threads: 2, connections, duration: SLICE };
    let mut phase = Phase { receiver_up, slices: Vec::new(), rss_kib: Vec::new() };
    for i in 0..slices {
        let result = run_wrk_on(gateway.port, SOAK_PATH, wrk)?;
        let rss = procstat::rss_kib(gateway.pid())?;
        eprintln!(
            "soak: receiver {} slice {}/{slices}: {} req/s, RSS {}, spool {} spans",
            if receiver_up { "up" } else { "down" },
            i + 1,
            count(result.rps),
            mib(rss as f64),
            count(gateway.metric("metamcp_telemetry_spool_items", &["signal=\"traces\""])),
        );
        phase.slices.push(result);
        phase.rss_kib.push(rss);
    }
    Ok(phase)
}

/// `soak`: one long run of the gateway through a receiver outage.
pub fn soak(receiver: &mut Receiver, config: SoakConfig) -> Result<(), BoxError> {
    let gateway = Gateway::spawn(&receiver.endpoint(), &config)?;
    let before = receiver.spans(SERVICE);
    let idle_rss = procstat::rss_kib(gateway.pid())?;
    let outage = config.total.mul_f64(config.outage_share);
    let healthy = (config.total.saturating_sub(outage)) / 2;
    eprintln!(
        "soak: {} s healthy, {} s receiver down, {} s healthy",
        healthy.as_secs(),
        outage.as_secs(),
        healthy.as_secs()
    );
    let first = run_phase(&gateway, true, healthy, config.connections)?;
    receiver.stop();
    let second = run_phase(&gateway, false, outage, config.connections)?;
    receiver.restart()?;
    let third = run_phase(&gateway, true, healthy, config.connections)?;
    let recorded_requests = gateway.served();
    let drain_started = Instant::now();
    let received = receiver.wait_for_spans(SERVICE, before + recorded_requests as u64, DRAIN_QUIET, DRAIN_MAX) - before;
    let drain = drain_started.elapsed();
    let peak = procstat::peak_rss_kib(gateway.pid())?;
    let dropped: Vec<(String, f64)> =
        ["queue_full", "spool_full", "spool_expired", "retry_exhausted", "shutdown_timeout", "export_failed_permanent"]
            .iter()
            .map(|reason| {
                (
                    reason.to_string(),
                    gateway.metric(
                        "metamcp_telemetry_dropped_total",
                        &["signal=\"traces\"", &format!("reason=\"{reason}\"")],
                    ),
                )
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
    let spooled = gateway.metric("metamcp_telemetry_spooled_total", &["signal=\"traces\""]);
    let replayed = gateway.metric("metamcp_telemetry_replayed_total", &["signal=\"traces\""]);
    let exported = gateway.metric("metamcp_telemetry_exported_total", &["signal=\"traces\""]);
    let spans_recorded = exported
        + dropped.iter().map(|(_, n)| n).sum::<f64>()
        + gateway.metric("metamcp_telemetry_spool_items", &["signal=\"traces\""]);

    let ceiling_kib = idle_rss + (QUEUE_MAX_BYTES + PENDING_MAX_BYTES * 3 / 2 + MEMORY_SPOOL_MAX_BYTES) / 1024;
    let phases = [&first, &second, &third];
    let healthy_rps = (first.rps() + third.rps()) / 2.0;

    println!(
        "\n### Soak: the gateway, {} min under wrk -t2 -c{} on `GET {SOAK_PATH}`, receiver down for the middle {} min\n",
        config.total.as_secs() / 60,
        config.connections,
        outage.as_secs() / 60
    );
    let mut table =
        Table::new(&["phase", "receiver", "requests", "req/s", "vs healthy", "errors", "peak RSS in phase"]);
    for (i, phase) in phases.iter().enumerate() {
        table.row(vec![
            (i + 1).to_string(),
            if phase.receiver_up { "up" } else { "down" }.to_owned(),
            count(phase.requests() as f64),
            count(phase.rps()),
            ratio(phase.rps(), healthy_rps),
            phase.errors().to_string(),
            mib(phase.rss_kib.iter().copied().max().unwrap_or(0) as f64),
        ]);
    }
    println!("{}", table.render());
    let mut table = Table::new(&["figure", "value"]);
    table.row(vec!["requests served (server spans recorded)".into(), count(recorded_requests)]);
    table.row(vec!["spans the pipeline accounted for (exported + dropped + spooled)".into(), count(spans_recorded)]);
    table.row(vec![
        "spans delivered to the receiver".into(),
        format!("{} ({:.3} % of served)", count(received as f64), received as f64 / recorded_requests.max(1.0) * 100.0),
    ]);
    table
        .row(vec!["spans written to the spool / replayed".into(), format!("{} / {}", count(spooled), count(replayed))]);
    table.row(vec!["drops by reason".into(), if dropped.is_empty() { "none".into() } else { format!("{dropped:?}") }]);
    table.row(vec!["drain after the load".into(), format!("{:.0} s", drain.as_secs_f64())]);
    table.row(vec!["RSS idle at start".into(), mib(idle_rss as f64)]);
    table.row(vec!["configured ceiling (idle + queue + 1.5 × pending + memory spool)".into(), mib(ceiling_kib as f64)]);
    table.row(vec![
        "peak RSS (VmHWM)".into(),
        format!("{} ({})", mib(peak as f64), ratio(peak as f64, ceiling_kib as f64)),
    ]);
    table.row(vec!["throughput while down vs healthy".into(), ratio(second.rps(), healthy_rps)]);
    println!("{}", table.render());
    Ok(())
}
