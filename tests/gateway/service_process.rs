//! The real binary, over real sockets and real signals: no collector, shutdown flush, and log
//! lines that lead to their trace.

use std::time::{Duration, Instant};

use crate::common::Service;
use nix::sys::signal::Signal;
use support::service::client;
use support::{prom, TestCollector, Transport};

fn fast_pipeline() -> Vec<(&'static str, &'static str)> {
    vec![
        ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms"),
        ("METAMCP_METRICS__EXPORT_INTERVAL", "200ms"),
        ("METAMCP_HEALTH__CHECK_INTERVAL", "100ms"),
        ("METAMCP_EXPORTER__TIMEOUT", "1s"),
        ("METAMCP_EXPORTER__RETRY__INITIAL_INTERVAL", "100ms"),
        ("METAMCP_EXPORTER__RETRY__MAX_INTERVAL", "300ms"),
        ("METAMCP_SERVER__SHUTDOWN_TIMEOUT", "2s"),
    ]
}

fn failures(service: &Service) -> f64 {
    let scrape = prom::scrape_blocking(&service.metrics_url());
    prom::sum(&scrape, "metamcp_telemetry_export_failures_total", &[("kind", "retryable")]).unwrap_or(0.0)
}

#[test]
fn without_a_collector_requests_are_served_health_degrades_and_one_warning_is_logged() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut envs = fast_pipeline();
    envs.push(("OTLP_ENDPOINT", &endpoint));
    let mut service = Service::start(&envs, &[]);
    let http = client();
    for _ in 0..20 {
        assert_eq!(http.get(service.url("/health/live")).send().unwrap().status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report: serde_json::Value = http.get(service.url("/health")).send().unwrap().json().unwrap();
        if report["status"] == "degraded" {
            break report;
        }
        assert!(Instant::now() < deadline, "never degraded: {report}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(report["components"]["exporter"]["details"]["collector_reachable"], false);
    assert_eq!(http.get(service.url("/health/ready")).send().unwrap().status(), 200, "degraded is still ready");
    let first = failures(&service);
    assert!(first >= 1.0);
    let rising =
        support::wait::wait_until(Duration::from_secs(20), Duration::from_millis(20), || failures(&service) > first);
    assert!(rising, "retryable failures keep rising while the collector is away");
    assert_eq!(
        prom::value(&prom::scrape_blocking(&service.metrics_url()), "metamcp_telemetry_collector_up", &[]),
        Some(0.0)
    );

    let status = service.signal_and_wait(Signal::SIGTERM, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let warnings = service
        .json_logs()
        .into_iter()
        .filter(|line| line["message"].as_str().is_some_and(|m| m.contains("collector unreachable")))
        .count();
    assert_eq!(warnings, 1, "one warning for the outage, not one per attempt:\n{}", service.logs().join("\n"));
}

/// The service stopped by `signal` with spans buffered: it exits 0, and every span accepted
/// before the signal and a last metrics snapshot reach the collector.
fn a_stop_signal_exports_every_span_accepted_before_it(signal: Signal) {
    let collector = TestCollector::start(Transport::Grpc);
    let endpoint = collector.endpoint();
    let envs = [
        ("OTLP_ENDPOINT", endpoint.as_str()),
        // Nothing leaves before the signal: only shutdown's drain can deliver these spans.
        ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "1h"),
        ("METAMCP_SPAN_BUFFER__MAX_BATCH_SIZE", "4096"),
        ("METAMCP_METRICS__EXPORT_INTERVAL", "1h"),
    ];
    let mut service = Service::start(&envs, &[]);
    let http = client();
    const REQUESTS: usize = 50;
    for _ in 0..REQUESTS {
        assert_eq!(http.get(service.url("/health/live")).send().unwrap().status(), 200);
    }
    assert_eq!(collector.span_count(), 0, "the flush interval holds the spans back");
    let status = service.signal_and_wait(signal, Duration::from_secs(20));
    assert!(status.success(), "{signal}: {status}\n{}", service.logs().join("\n"));
    let spans = collector.spans();
    let served = spans.iter().filter(|s| s.attr("http.route").as_deref() == Some("/health/live")).count();
    assert_eq!(served, REQUESTS);
    assert!(!collector.metric_points("metamcp_requests_total").is_empty(), "a final metrics snapshot is exported too");
    let logged = service.json_logs().iter().any(|line| {
        line["message"].as_str().is_some_and(|m| m.starts_with("shutting down")) && line["signal"] == signal.as_str()
    });
    assert!(logged, "the shutdown names {signal}:\n{}", service.logs().join("\n"));
}

#[test]
fn sigterm_exports_every_span_accepted_before_it() {
    a_stop_signal_exports_every_span_accepted_before_it(Signal::SIGTERM);
}

#[test]
fn sigint_shuts_down_like_sigterm() {
    a_stop_signal_exports_every_span_accepted_before_it(Signal::SIGINT);
}

#[test]
fn log_lines_of_a_request_carry_its_trace_span_and_request_ids() {
    let envs = [("OTLP_ENDPOINT", "http://127.0.0.1:9"), ("RUST_LOG", "metamcp_telemetry=debug,info")];
    let service = Service::start(&envs, &[]);
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let response = client()
        .get(service.url("/health/live"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .header("x-request-id", "corr-42")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let found = support::wait::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        service.json_logs().iter().any(|l| l["message"] == "request served" && l["request_id"] == "corr-42")
    });
    assert!(found, "no access log line:\n{}", service.logs().join("\n"));
    let line = service.json_logs().into_iter().find(|l| l["request_id"] == "corr-42").unwrap();
    assert_eq!(line["trace_id"], trace_id);
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    assert_ne!(line["span_id"], "b7ad6b7169203331", "the line belongs to the server span, not the caller's");
    assert_eq!(line["route"], "/health/live");
    assert!(line["timestamp"].is_string() && line["level"] == "DEBUG");
}

/// `DATABASE_URL` takes diesel's forms: a bare SQLite path and a `file:` URI open (and create)
/// that file; nonsense stops start-up with exit code 2, naming the key.
#[test]
fn database_url_takes_a_bare_path_and_a_file_uri() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("data").join("x.db");
    let uri_file = dir.path().join("uri.db");
    let uri = format!("file:{}?mode=rwc", uri_file.display());
    for (url, file) in [(bare.display().to_string(), &bare), (uri, &uri_file)] {
        let service = Service::start(&[("DATABASE_URL", url.as_str())], &[]);
        let ready = client().get(service.url("/health/ready")).send().unwrap();
        assert_eq!(ready.status(), 200, "{url}");
        let report: serde_json::Value = client().get(service.url("/health")).send().unwrap().json().unwrap();
        assert_eq!(report["components"]["database"]["details"]["backend"], "sqlite", "{report}");
        drop(service);
        assert!(file.is_file(), "{url} created {}", file.display());
        assert!(std::fs::metadata(file).unwrap().len() > 0, "{url}: the schema was written");
    }
    for nonsense in ["ftp://x", "mysql://u@h/db", "sqlite://"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_metamcp-telemetry"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("METAMCP_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
            .env("DATABASE_URL", nonsense)
            .arg("--check-config")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(2), "{nonsense:?}: {text}");
        assert!(text.contains("database.url"), "{nonsense:?}: {text}");
    }
}
