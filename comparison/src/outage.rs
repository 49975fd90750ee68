//! Outage: ours and the ecosystem stack under load for three equal thirds, with the receiver
//! stopped (port closed, connections dropped) during the middle third and restarted after it.
//! Throughput and p99 of each third against the healthy thirds, and the app's RSS sampled every
//! second.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::apps::{BoxError, Kind};
use crate::load::{run_wrk, AppProcess, Wrk, WrkResult};
use crate::procstat;
use crate::receiver::Receiver;
use crate::report::{count, mib, ratio, Table};

/// After the load, how long the app gets to deliver what it kept through the outage: until this
/// long passes without a span arriving…
const DRAIN_QUIET: Duration = Duration::from_secs(10);
/// …or this long in all (our exporter's retry backoff reaches 30 s).
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// RSS samples every second until told to stop.
struct RssSampler {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            loop {
                if let Ok(kib) = procstat::rss_kib(pid) {
                    samples.push((started.elapsed().as_secs_f64(), kib));
                }
                match stopped.recv_timeout(Duration::from_secs(1)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return samples,
                }
            }
        });
        RssSampler { stop, thread }
    }

    fn finish(self) -> Vec<(f64, u64)> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

struct OutageRun {
    kind: Kind,
    thirds: [WrkResult; 3],
    rss: Vec<(f64, u64)>,
    rss_end_of_load: u64,
    rss_after_drain: u64,
    peak_rss: u64,
    received_during: [u64; 3],
    received: u64,
    expected: u64,
    dropped: Vec<(String, u64)>,
}

fn run(kind: Kind, receiver: &mut Receiver, wrk: Wrk) -> Result<OutageRun, BoxError> {
    let service = kind.service_name();
    let before = receiver.spans(service);
    let app = AppProcess::spawn(kind, &receiver.endpoint(), false)?;
    let pid = app.pid();
    let sampler = RssSampler::start(pid);
    eprintln!("outage: {}: healthy third…", kind.label());
    let first = run_wrk(app.port, wrk)?;
    let at_stop = receiver.spans(service);
    receiver.stop();
    eprintln!("outage: {}: receiver stopped…", kind.label());
    let second = run_wrk(app.port, wrk)?;
    receiver.restart()?;
    let at_restart = receiver.spans(service);
    eprintln!("outage: {}: receiver restarted…", kind.label());
    let third = run_wrk(app.port, wrk)?;
    let at_end = receiver.spans(service);
    let rss_end_of_load = procstat::rss_kib(pid)?;
    let expected = app.spans_due(kind)?;
    let received = receiver.wait_for_spans(service, before + expected, DRAIN_QUIET, DRAIN_MAX) - before;
    let rss_after_drain = procstat::rss_kib(pid)?;
    let peak_rss = procstat::peak_rss_kib(pid)?;
    let dropped = app.pipeline_figures().dropped;
    let rss = sampler.finish();
    drop(app);
    Ok(OutageRun {
        kind,
        thirds: [first, second, third],
        rss,
        rss_end_of_load,
        rss_after_drain,
        peak_rss,
        received_during: [at_stop - before, at_restart - at_stop, at_end - at_restart],
        received,
        expected,
        dropped,
    })
}

/// `outage`: ours, then eco, each for three thirds of `wrk.duration`.
pub fn outage(receiver: &mut Receiver, wrk: Wrk) -> Result<(), BoxError> {
    let mut runs = Vec::new();
    for kind in [Kind::Ours, Kind::Eco] {
        runs.push(run(kind, receiver, wrk)?);
    }

    println!(
        "\n### Outage: wrk -t{} -c{}, three thirds of {} s each, receiver down during the middle third\n",
        wrk.threads,
        wrk.connections,
        wrk.duration.as_secs()
    );
    println!("Ratios are to the mean of the two healthy thirds (1 and 3).\n");
    let mut table = Table::new(&[
        "build",
        "third",
        "receiver",
        "req/s",
        "vs healthy",
        "p99 µs",
        "vs healthy",
        "errors",
        "spans arrived in the third",
    ]);
    for run in &runs {
        let healthy_rps = (run.thirds[0].rps + run.thirds[2].rps) / 2.0;
        let healthy_p99 = (run.thirds[0].p99_us + run.thirds[2].p99_us) / 2.0;
        for (i, third) in run.thirds.iter().enumerate() {
            table.row(vec![
                run.kind.label().to_owned(),
                (i + 1).to_string(),
                if i == 1 { "down" } else { "up" }.to_owned(),
                count(third.rps),
                ratio(third.rps, healthy_rps),
                format!("{:.0}", third.p99_us),
                ratio(third.p99_us, healthy_p99),
                third.errors.to_string(),
                count(run.received_during[i] as f64),
            ]);
        }
    }
    println!("{}", table.render());

    let mut table = Table::new(&[
        "build",
        "RSS at start",
        "peak RSS (sampled)",
        "VmHWM",
        "RSS at end of load",
        "RSS after drain",
        "spans received / expected after drain",
    ]);
    for run in &runs {
        let sampled_peak = run.rss.iter().map(|(_, kib)| *kib).max().unwrap_or(0);
        table.row(vec![
            run.kind.label().to_owned(),
            run.rss.first().map_or("—".to_owned(), |(_, kib)| mib(*kib as f64)),
            mib(sampled_peak as f64),
            mib(run.peak_rss as f64),
            mib(run.rss_end_of_load as f64),
            mib(run.rss_after_drain as f64),
            format!(
                "{} / {} ({:.1} %)",
                count(run.received as f64),
                count(run.expected as f64),
                run.received as f64 / run.expected.max(1) as f64 * 100.0
            ),
        ]);
    }
    println!("{}", table.render());
    for run in &runs {
        let series: Vec<String> = run.rss.iter().map(|(_, kib)| format!("{:.1}", *kib as f64 / 1024.0)).collect();
        println!("RSS of {} every second (MiB): {}\n", run.kind.label(), series.join(" "));
        if !run.dropped.is_empty() {
            let reasons: Vec<String> =
                run.dropped.iter().map(|(reason, n)| format!("{} `{reason}`", count(*n as f64))).collect();
            println!(
                "{}: the pipeline's own `metamcp_telemetry_dropped_total{{signal=\"traces\"}}`: {}.\n",
                run.kind.label(),
                reasons.join(", ")
            );
        }
    }
    Ok(())
}
