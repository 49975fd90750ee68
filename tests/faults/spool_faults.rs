//! No telemetry lost to collector faults, with the real binary, a real OTLP receiver on loopback,
//! a real SQLite spool and real signals: a collector absent at start, killed mid-stream, slow;
//! the service killed with SIGKILL while spans sit in the spool; SIGTERM under load. And the
//! spool's own rules: replayed oldest first at `spool.replay_batches_per_second`, and emptied of
//! batches older than `spool.max_age` (counted as `spool_expired`).
//!
//! Every request carries its own trace id (`traceparent`), so each test knows exactly which
//! server spans must arrive, and can tell a loss from a duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Service;
use nix::sys::signal::Signal;
use support::service::client;
use support::wait::{assert_eventually, wait_until};
use support::{prom, TestCollector, Transport};

const ROUTE: &str = "/health/live";
/// Spans per batch in these tests: small, so that an outage spans many batches.
const BATCH: usize = 64;
/// Exports in flight at once (the default); with `BATCH`, the most spans a crash or a collector
/// kill may deliver twice.
const IN_FLIGHT: usize = 2;

fn envs(endpoint: &str, protocol: &str) -> Vec<(String, String)> {
    [
        ("OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "50ms"),
        ("METAMCP_SPAN_BUFFER__MAX_BATCH_SIZE", "64"),
        ("METAMCP_METRICS__OTLP_EXPORT", "false"),
        ("METAMCP_HEALTH__CHECK_INTERVAL", "100ms"),
        ("METAMCP_EXPORTER__TIMEOUT", "1s"),
        ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
        ("METAMCP_EXPORTER__RETRY__MAX_INTERVAL", "300ms"),
        ("METAMCP_SPOOL__REPLAY_BATCHES_PER_SECOND", "200"),
        ("METAMCP_SERVER__SHUTDOWN_TIMEOUT", "3s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `envs` with `key` set to `value` (replaced if present).
fn with(mut envs: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    envs.retain(|(k, _)| k != key);
    envs.push((key.to_owned(), value.to_owned()));
    envs
}

fn start(envs: &[(String, String)]) -> Service {
    let borrowed: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Service::start(&borrowed, &[])
}

/// A loopback port nothing listens on (it was free a moment ago).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The trace id of request `i` of a test tagged `tag`.
fn trace_id(tag: u32, i: usize) -> String {
    format!("{tag:08x}{:024x}", i + 1)
}

/// Sends one traced request; true when it was served.
fn traced(http: &reqwest::blocking::Client, service: &Service, id: &str) -> bool {
    http.get(service.url(ROUTE))
        .header("traceparent", format!("00-{id}-00f067aa0ba902b7-01"))
        .send()
        .is_ok_and(|r| r.status() == 200)
}

fn send(http: &reqwest::blocking::Client, service: &Service, tag: u32, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| {
            let id = trace_id(tag, i);
            assert!(traced(http, service, &id), "request {i} was not served");
            id
        })
        .collect()
}

/// How often each trace id of the test's server spans arrived.
fn arrivals(collector: &TestCollector, tag: u32) -> HashMap<String, usize> {
    let prefix = format!("{tag:08x}");
    let mut seen = HashMap::new();
    for span in collector.spans() {
        let id = span.trace_id_hex();
        if id.starts_with(&prefix) && span.attr("http.route").as_deref() == Some(ROUTE) {
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

fn wait_for_all(collector: &TestCollector, tag: u32, expected: &[String], timeout: Duration) -> HashMap<String, usize> {
    let complete = wait_until(timeout, Duration::from_millis(50), || {
        let seen = arrivals(collector, tag);
        expected.iter().all(|id| seen.contains_key(id))
    });
    let seen = arrivals(collector, tag);
    let missing: Vec<&String> = expected.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(complete, "{} of {} spans never arrived, e.g. {:?}", missing.len(), expected.len(), missing.first());
    seen
}

fn duplicates(seen: &HashMap<String, usize>) -> usize {
    seen.values().map(|n| n - 1).sum()
}

fn metric(service: &Service, name: &str, labels: &[(&str, &str)]) -> f64 {
    prom::sum(&prom::scrape_blocking(&service.metrics_url()), name, labels).unwrap_or(0.0)
}

fn spooled_spans(service: &Service) -> f64 {
    metric(service, "metamcp_telemetry_spool_items", &[("signal", "traces")])
}

fn health(service: &Service) -> serde_json::Value {
    client().get(service.url("/health")).send().unwrap().json().unwrap()
}

#[test]
fn a_collector_absent_at_start_receives_every_span_once_it_appears() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let service = start(&envs(&endpoint, "grpc"));
    let http = client();
    let sent = send(&http, &service, 0xa1, 0..300);
    assert_eventually(Duration::from_secs(20), Duration::from_millis(50), "the spans reach the spool", || {
        spooled_spans(&service) >= 300.0
            && health(&service)["components"]["exporter"]["details"]["spool"]["items"]["traces"]
                .as_u64()
                .is_some_and(|n| n >= 300)
    });
    let report = health(&service);
    let spool = &report["components"]["exporter"]["details"]["spool"];
    assert_eq!(spool["backend"], "sqlite", "{report}");
    assert_eq!(spool["fallback"], false, "{report}");

    let collector = TestCollector::start_on(Transport::Grpc, port);
    let seen = wait_for_all(&collector, 0xa1, &sent, Duration::from_secs(30));
    assert_eq!(duplicates(&seen), 0, "nothing was in flight to a collector that was not there");
    assert_eventually(Duration::from_secs(20), Duration::from_millis(50), "the spool empties", || {
        spooled_spans(&service) == 0.0
    });
    assert!(metric(&service, "metamcp_telemetry_replayed_total", &[("signal", "traces")]) >= 300.0);
    assert_eq!(metric(&service, "metamcp_telemetry_dropped_total", &[("signal", "traces")]), 0.0);
    assert_eq!(metric(&service, "metamcp_telemetry_collector_up", &[]), 1.0);
}

#[test]
fn a_collector_killed_mid_stream_and_restarted_loses_nothing() {
    let mut collector = TestCollector::start(Transport::Http);
    let service = start(&envs(&collector.endpoint(), "http/protobuf"));
    let http = client();
    let mut sent = send(&http, &service, 0xb2, 0..150);
    collector.stop();
    sent.extend(send(&http, &service, 0xb2, 150..300));
    assert_eventually(Duration::from_secs(20), Duration::from_millis(50), "the outage is noticed", || {
        metric(&service, "metamcp_telemetry_collector_up", &[]) == 0.0
    });
    sent.extend(send(&http, &service, 0xb2, 300..350));
    collector.restart();
    sent.extend(send(&http, &service, 0xb2, 350..400));
    let seen = wait_for_all(&collector, 0xb2, &sent, Duration::from_secs(30));
    assert!(
        duplicates(&seen) <= IN_FLIGHT * BATCH,
        "{} duplicates: more than the batches in flight at the kill",
        duplicates(&seen)
    );
    assert_eq!(metric(&service, "metamcp_telemetry_dropped_total", &[("signal", "traces")]), 0.0);
}

#[test]
fn a_slow_collector_times_out_and_retries_while_requests_are_served_at_once() {
    let collector = TestCollector::start(Transport::Grpc);
    // Every export takes 3 s to answer, past the 1 s export timeout.
    collector.set_behavior(support::collector::Behavior::Delay(Duration::from_secs(3)));
    let service = start(&envs(&collector.endpoint(), "grpc"));
    let http = client();
    let mut slowest = Duration::ZERO;
    let mut sent = Vec::new();
    for i in 0..200 {
        let id = trace_id(0xc3, i);
        let started = Instant::now();
        assert!(traced(&http, &service, &id));
        slowest = slowest.max(started.elapsed());
        sent.push(id);
    }
    // Not a speed measurement: a request that waited for an export would take seconds.
    assert!(slowest < Duration::from_millis(900), "a request waited {slowest:?}: it waited for an export");
    assert_eventually(Duration::from_secs(20), Duration::from_millis(50), "exports time out and are retried", || {
        metric(&service, "metamcp_telemetry_export_failures_total", &[("signal", "traces"), ("kind", "retryable")])
            >= 2.0
    });
    let timed_out = service.json_logs().iter().any(|line| line.to_string().contains("timed out"))
        || health(&service)["components"]["exporter"]["details"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out"));
    assert!(timed_out, "the failures are timeouts");
    collector.set_behavior(support::collector::Behavior::Accept);
    let seen = wait_for_all(&collector, 0xc3, &sent, Duration::from_secs(30));
    // A delayed export is recorded by the collector even after our timeout, as a real one does:
    // those batches may arrive twice, never more often than once per attempt. An attempt carries
    // one batch of at most BATCH spans, and every attempt but the last of a batch timed out.
    let attempts_timed_out =
        metric(&service, "metamcp_telemetry_export_failures_total", &[("signal", "traces"), ("kind", "retryable")]);
    assert!(
        duplicates(&seen) as f64 <= attempts_timed_out * BATCH as f64,
        "{} duplicates from {attempts_timed_out} timed-out attempts of at most {BATCH} spans",
        duplicates(&seen)
    );
    assert_eq!(metric(&service, "metamcp_telemetry_dropped_total", &[("signal", "traces")]), 0.0);
}

/// Settings for two service runs that share one SQLite spool file and one collector port, with
/// nothing listening there yet.
fn shared_spool() -> (tempfile::TempDir, u16, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("metamcp.db").display());
    let port = free_port();
    let mut settings = envs(&format!("http://127.0.0.1:{port}"), "grpc");
    settings.push(("DATABASE_URL".into(), url));
    (dir, port, settings)
}

#[test]
fn spans_in_the_spool_survive_sigkill_and_are_delivered_after_a_restart() {
    let (_dir, port, settings) = shared_spool();
    let mut first = start(&settings);
    let http = client();
    let sent = send(&http, &first, 0xd4, 0..250);
    // Every span of the 250 requests reaches the database spool. Polled on `/metrics`, served
    // untraced: a `/health` poll adds a span of its own, so a count of 250 could be reached
    // while the last requests' spans were still on their way (and died with the kill). Settled:
    // the spool's count stands still with nothing in the span queue or the exporter's memory.
    let mut last = -1.0;
    assert_eventually(
        Duration::from_secs(20),
        Duration::from_millis(300),
        "the spans reach the database spool",
        || {
            let items = metric(&first, "metamcp_telemetry_spool_items", &[("signal", "traces")]);
            let queued = metric(&first, "metamcp_telemetry_queue_depth", &[("queue", "spans")]);
            let held = metric(&first, "metamcp_telemetry_buffered_bytes", &[]);
            let settled = items >= 250.0 && items == last && queued == 0.0 && held == 0.0;
            last = items;
            settled
        },
    );
    assert_eventually(Duration::from_secs(20), Duration::from_millis(50), "nothing waits in the memory spool", || {
        health(&first)["components"]["exporter"]["details"]["spool"]["memory_batches"] == 0
    });
    let status = first.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
    assert!(!status.success(), "killed, not exited: {status}");

    let collector = TestCollector::start_on(Transport::Grpc, port);
    let second = start(&settings);
    let seen = wait_for_all(&collector, 0xd4, &sent, Duration::from_secs(30));
    assert_eq!(duplicates(&seen), 0, "nothing was in flight at the kill");
    assert_eventually(Duration::from_secs(20), Duration::from_millis(50), "the spool empties", || {
        spooled_spans(&second) == 0.0
    });
    assert!(metric(&second, "metamcp_telemetry_replayed_total", &[("signal", "traces")]) >= 250.0);
}

#[test]
fn sigterm_under_load_spools_everything_accepted_for_the_next_run() {
    let (_dir, port, settings) = shared_spool();
    let mut first = start(&settings);

    // Four clients keep sending until the service goes away; what it answered 200 was accepted.
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = first.url(ROUTE);
    let loaders: Vec<_> = (0..4)
        .map(|worker| {
            let (accepted, stop, url) = (accepted.clone(), stop.clone(), url.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = trace_id(0xe5, worker * 1_000_000 + i);
                    i += 1;
                    let served = http
                        .get(&url)
                        .header("traceparent", format!("00-{id}-00f067aa0ba902b7-01"))
                        .send()
                        .is_ok_and(|r| r.status() == 200);
                    if served {
                        accepted.lock().unwrap().push(id);
                    } else {
                        break;
                    }
                }
            })
        })
        .collect();
    let loaded =
        wait_until(Duration::from_secs(20), Duration::from_millis(20), || accepted.lock().unwrap().len() >= 400);
    assert!(loaded, "the load never got going");
    let status = first.signal_and_wait(Signal::SIGTERM, Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.join().unwrap();
    }
    assert!(status.success(), "{status}:\n{}", first.logs().join("\n"));
    let dropped = first
        .json_logs()
        .into_iter()
        .find(|line| line["message"].as_str().is_some_and(|m| m.contains("dropped")))
        .map(|line| line.to_string());
    assert_eq!(dropped, None, "nothing accepted may be dropped at shutdown");

    let accepted = accepted.lock().unwrap().clone();
    let collector = TestCollector::start_on(Transport::Grpc, port);
    let _second = start(&settings);
    let seen = wait_for_all(&collector, 0xe5, &accepted, Duration::from_secs(60));
    assert!(duplicates(&seen) <= IN_FLIGHT * BATCH, "{} duplicates", duplicates(&seen));
}

/// The trace-id index of a span of test `tag` served on [`ROUTE`], if it is one.
fn index_of(span: &support::ReceivedSpan, tag: u32) -> Option<usize> {
    let id = span.trace_id_hex();
    let index = id.strip_prefix(&format!("{tag:08x}"))?;
    (span.attr("http.route").as_deref() == Some(ROUTE)).then(|| usize::from_str_radix(index, 16).ok())?.map(|i| i - 1)
}

/// A service whose collector at `port` is not there, already judged unreachable (a first request
/// found it so), and `n` batches of one span each (trace ids `tag`, 0..n) in its spool after
/// that first one.
fn spool_after_an_outage(envs: &[(String, String)], tag: u32, n: usize) -> (Service, Vec<String>) {
    let service = start(envs);
    let http = client();
    let warm_up = trace_id(tag, 1_000_000);
    assert!(traced(&http, &service, &warm_up));
    assert_eventually(Duration::from_secs(20), Duration::from_millis(20), "the outage is noticed", || {
        metric(&service, "metamcp_telemetry_collector_up", &[]) == 0.0
    });
    let sent = send(&http, &service, tag, 0..n);
    assert_eventually(Duration::from_secs(20), Duration::from_millis(20), "every batch is spooled", || {
        spooled_spans(&service) >= (n + 1) as f64
    });
    (service, sent)
}

#[test]
fn the_spool_is_replayed_oldest_first_at_the_configured_rate() {
    const RATE: usize = 5;
    const N: usize = 20;
    let port = free_port();
    let envs = envs(&format!("http://127.0.0.1:{port}"), "grpc");
    let envs = with(envs, "METAMCP_SPAN_BUFFER__MAX_BATCH_SIZE", "1");
    let envs = with(envs, "METAMCP_SPOOL__REPLAY_BATCHES_PER_SECOND", &RATE.to_string());
    let (_service, sent) = spool_after_an_outage(&envs, 0xf6, N);

    let collector = TestCollector::start_on(Transport::Grpc, port);
    let poll = Duration::from_millis(10);
    let first_seen = wait_until(Duration::from_secs(30), poll, || {
        collector.spans().iter().any(|s| index_of(s, 0xf6).is_some_and(|i| i < N))
    });
    let first = Instant::now();
    assert!(first_seen, "the replay never began");
    wait_for_all(&collector, 0xf6, &sent, Duration::from_secs(60));
    let last = Instant::now();

    // Oldest first: the spans arrive in the order they were spooled (the warm-up one first).
    let order: Vec<usize> = collector.spans().iter().filter_map(|s| index_of(s, 0xf6)).collect();
    assert_eq!(order[0], 1_000_000, "the oldest batch, the warm-up, comes first: {order:?}");
    assert_eq!(order[1..], (0..N).collect::<Vec<_>>(), "replayed out of order");
    // At the rate: after a burst of at most RATE batches, RATE a second. A lower bound only; a
    // slow machine replays more slowly, never faster.
    let least = Duration::from_secs_f64((N - 1 - RATE) as f64 / RATE as f64) - poll;
    assert!(last - first >= least, "{N} batches replayed in {:?}, faster than {RATE} a second", last - first);
}

#[test]
fn spooled_batches_older_than_max_age_expire_and_are_counted() {
    let port = free_port();
    let envs = with(envs(&format!("http://127.0.0.1:{port}"), "grpc"), "METAMCP_SPOOL__MAX_AGE", "1s");
    let service = start(&envs);
    let http = client();
    let sent = send(&http, &service, 0xb9, 0..30);
    let spooled = || metric(&service, "metamcp_telemetry_spooled_total", &[("signal", "traces")]);
    let expired =
        || metric(&service, "metamcp_telemetry_dropped_total", &[("signal", "traces"), ("reason", "spool_expired")]);
    assert_eventually(Duration::from_secs(20), Duration::from_millis(50), "the spans are spooled", || {
        spooled() >= 30.0
    });
    // The spool's periodic refresh removes what is older than a second.
    assert_eventually(Duration::from_secs(30), Duration::from_millis(50), "every spooled span expires", || {
        spooled_spans(&service) == 0.0 && expired() == spooled()
    });
    assert_eq!(
        metric(&service, "metamcp_telemetry_dropped_total", &[("signal", "traces")]),
        expired(),
        "spool_expired is the only reason"
    );
    assert_eq!(metric(&service, "metamcp_telemetry_replayed_total", &[("signal", "traces")]), 0.0);

    // Expired means gone: a collector that appears gets a new span, none of the expired ones.
    let collector = TestCollector::start_on(Transport::Grpc, port);
    let marker = trace_id(0xba, 0);
    assert!(traced(&http, &service, &marker));
    assert!(
        collector.wait_for(Duration::from_secs(30), |r| r.spans().iter().any(|s| s.trace_id_hex() == marker)),
        "the new span arrives"
    );
    let resurrected: Vec<&String> = sent.iter().filter(|id| arrivals(&collector, 0xb9).contains_key(*id)).collect();
    assert!(resurrected.is_empty(), "expired spans were exported: {resurrected:?}");
}
