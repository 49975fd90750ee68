//! The status page of the real binary: `/status.json` counts what the service did, `/status` is a
//! self-contained page, and a headless Chromium renders the page with live figures and saves a
//! screenshot (`target/test-output/status-page.png`).
//!
//! The browser tests need Debian's `chromium` (`scripts/setup.sh` installs it). Without it they
//! are skipped with a `SKIP` line, or fail under `METAMCP_CI=1`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Service;
use serde_json::{json, Value};
use support::service::client;
use support::{TestCollector, Transport};

/// Longest a Chromium run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// Virtual time the page gets before the DOM or the screenshot is taken (the page polls every
/// 2 s; fetches pause virtual time until they answer).
const VIRTUAL_TIME_MS: u32 = 5000;
/// The screenshot's size.
const WINDOW: (u32, u32) = (1280, 1400);
/// Requests the tests send to `/health/live`, to find again on the page.
const LIVE_REQUESTS: usize = 7;

fn fast_pipeline(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTLP_ENDPOINT", endpoint.to_owned()),
        ("METAMCP_SPAN_BUFFER__FLUSH_INTERVAL", "100ms".to_owned()),
        ("METAMCP_METRICS__EXPORT_INTERVAL", "200ms".to_owned()),
        ("METAMCP_HEALTH__CHECK_INTERVAL", "100ms".to_owned()),
    ]
}

fn start(envs: &[(&'static str, String)]) -> Service {
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start(&envs, &[])
}

/// Traffic every test can find again: health probes, tool executions (one failing), a search,
/// and a 404 with a path that must not show up anywhere.
fn send_traffic(service: &Service) {
    let http = client();
    for _ in 0..LIVE_REQUESTS {
        assert_eq!(http.get(service.url("/health/live")).send().unwrap().status(), 200);
    }
    for (expression, ok) in [("6 * 7", true), ("1/0", false)] {
        let response = http
            .post(service.url("/api/tools/calculator/execute"))
            .json(&json!({"arguments": {"expression": expression}}))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().unwrap();
        assert_eq!(body["isError"], !ok, "{body}");
    }
    let search = http
        .post(service.url("/api/tools/search"))
        .json(&json!({"query": "evaluate an arithmetic expression"}))
        .send()
        .unwrap();
    assert_eq!(search.status(), 200);
    assert_eq!(http.get(service.url("/no-such-page-4711")).send().unwrap().status(), 404);
}

fn status_json(service: &Service) -> Value {
    let response = client().get(service.url("/status.json")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"].to_str().unwrap().starts_with("application/json"),
        "{:?}",
        response.headers()
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().unwrap()
}

fn route_count(status: &Value, route: &str) -> Option<f64> {
    status["traffic"]["routes"].as_array()?.iter().find(|r| r["route"] == route)?["requests"].as_f64()
}

#[test]
fn status_json_counts_what_the_service_did_and_hides_paths_and_arguments() {
    let collector = TestCollector::start(Transport::Grpc);
    let service = start(&fast_pipeline(&collector.endpoint()));
    send_traffic(&service);

    let status = status_json(&service);
    assert_eq!(status["telemetry"], "enabled");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["refresh_seconds"], 2);
    assert_eq!(route_count(&status, "/health/live"), Some(LIVE_REQUESTS as f64), "{status:#}");
    assert_eq!(route_count(&status, "/api/tools/{name}/execute"), Some(2.0));
    assert_eq!(route_count(&status, "unmatched"), Some(1.0), "404s fold into one label");
    let traffic = &status["traffic"];
    assert_eq!(traffic["since_start"], true, "the first poll compares with the start");
    let requests = &traffic["requests"];
    assert!(requests["total"].as_f64().unwrap() >= (LIVE_REQUESTS + 4) as f64, "{requests}");
    assert_eq!(requests["errors"], 0.0, "no 5xx was answered");
    assert!(requests["errors"].as_f64().unwrap().is_sign_positive(), "0, not -0");
    assert!(requests["rate_per_second"].as_f64().unwrap() > 0.0);
    let p50 = requests["p50_seconds"].as_f64().unwrap();
    let p95 = requests["p95_seconds"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p95 && p95 <= 10.0, "p50 {p50}, p95 {p95}");
    assert_eq!(traffic["tool_executions"]["total"], 2.0);
    assert_eq!(traffic["tool_executions"]["errors"], 1.0, "1/0 is a failed execution");
    assert_eq!(traffic["tool_executions"]["window_count"], 2);
    assert!(traffic["tool_executions"]["p95_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(traffic["vector_searches"]["total"], 1.0);
    assert!(traffic["vector_searches"]["p50_seconds"].as_f64().unwrap() > 0.0);

    let health = &status["health"];
    assert!(["healthy", "degraded"].contains(&health["status"].as_str().unwrap()), "{health}");
    let components: Vec<&str> =
        health["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for name in ["span_buffer", "metric_aggregator", "exporter", "health_check"] {
        assert!(components.contains(&name), "{name} missing from {components:?}");
    }
    let queues = status["queues"].as_array().unwrap();
    let spans = queues.iter().find(|q| q["name"] == "spans").expect("the span queue");
    assert!(spans["capacity"].as_f64().unwrap() > 0.0, "{spans}");
    assert!(queues.iter().any(|q| q["name"] == "export_batches"), "{queues:?}");
    assert!(
        queues.iter().any(|q| q["name"] == "spans" && q["unit"] == "bytes"),
        "the span queue's byte bound: {queues:?}"
    );
    for signal in ["traces", "metrics"] {
        assert_eq!(status["drops"]["by_signal"][signal]["queue_full"], 0.0, "{:#}", status["drops"]);
    }
    assert!(status["process"]["resident_memory_bytes"].as_f64().unwrap() > 0.0);
    let spool = &status["export"]["spool"];
    assert_eq!(spool["bytes"], 0.0, "nothing spooled while the collector answers: {spool}");
    assert!(spool["max_bytes"].as_f64().unwrap() > 0.0, "{spool}");
    assert!(spool["health"]["backend"].is_string(), "the health report's spool figures: {spool}");
    assert!(queues.iter().any(|q| q["name"] == "spool" && q["unit"] == "bytes"), "{queues:?}");

    // The collector answers: export state says so once the first batches went through.
    support::wait::assert_eventually(Duration::from_secs(20), Duration::from_millis(50), "spans exported", || {
        let status = status_json(&service);
        status["export"]["exported"]["traces"].as_f64().unwrap_or(0.0) > 0.0
            && status["export"]["collector_reachable"] == true
    });

    // Later polls compare with an earlier sample instead of the start.
    support::wait::assert_eventually(Duration::from_secs(10), Duration::from_millis(100), "a windowed answer", || {
        status_json(&service)["traffic"]["since_start"] == false
    });
    let windowed = status_json(&service);
    let seconds = windowed["traffic"]["window_seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds <= 10.5, "{seconds}");
    assert_eq!(windowed["traffic"]["tool_executions"]["window_count"], 0, "no tool ran within the window");
    assert_eq!(windowed["traffic"]["tool_executions"]["total"], 2.0, "totals stay cumulative");

    let text = windowed.to_string();
    assert!(!text.contains("no-such-page-4711"), "raw paths never show: {text}");
    assert!(!text.contains("6 * 7") && !text.contains("1/0"), "tool arguments never show");
}

#[test]
fn the_page_is_served_self_contained_and_the_root_leads_to_it() {
    let service = Service::start(&[], &[]);
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let root = http.get(service.url("/")).send().unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "status");

    let page = http.get(service.url("/status")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text().unwrap();
    assert!(html.contains("<title>metamcp-telemetry"));
    let lower = html.to_ascii_lowercase();
    for needle in ["http://", "https://", "<script src", " src=", "<link", "@import", "url("] {
        assert!(!lower.contains(needle), "the page loads nothing from elsewhere: {needle:?}");
    }
    // The redirect, followed, ends on the page.
    assert_eq!(client().get(service.url("/")).send().unwrap().text().unwrap(), html);
}

#[test]
fn status_json_says_when_telemetry_is_disabled() {
    let service = Service::start(&[("TELEMETRY_ENABLED", "false")], &[]);
    let status = status_json(&service);
    assert_eq!(status["telemetry"], "disabled");
    assert_eq!(status["health"], Value::Null);
    assert_eq!(status["traffic"], Value::Null);
    assert_eq!(client().get(service.url("/status")).send().unwrap().status(), 200);
}

// --- the browser ---------------------------------------------------------------------------------

/// `target/test-output`, found from this test executable (`target/<profile>/deps/…`).
fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let target = exe
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let dir = target.join("test-output");
    std::fs::create_dir_all(&dir).expect("the test output directory");
    dir
}

/// Runs headless Chromium on `url` with `extra` flags and a fresh profile; returns its stdout.
/// Killed if it runs past [`BROWSER_TIMEOUT`].
fn run_chromium(browser: &Path, url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("a fresh profile directory");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {BROWSER_TIMEOUT:?}:\n{}", err.join().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    assert!(status.success(), "chromium exited with {status}:\n{stderr}");
    stdout
}

/// The text of the element carrying `marker` (an attribute such as `id="x"`), up to its first child tag.
fn text_after<'a>(dom: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &dom[dom.find(marker)? + marker.len()..];
    let start = rest.find('>')? + 1;
    let end = start + rest[start..].find('<')?;
    Some(&rest[start..end])
}

fn number_after(dom: &str, marker: &str) -> Option<f64> {
    text_after(dom, marker)?.replace(',', "").parse().ok()
}

#[test]
fn chromium_renders_live_figures_and_a_screenshot() {
    let Some(browser) = support::prereq::chromium() else { return };
    let collector = TestCollector::start(Transport::Grpc);
    let service = start(&fast_pipeline(&collector.endpoint()));
    send_traffic(&service);
    let url = service.url("/status");

    let dom = run_chromium(&browser, &url, &["--dump-dom".to_owned()]);
    assert!(dom.contains("data-state=\"live\""), "the page rendered an answer:\n{dom}");
    assert!(dom.contains("data-telemetry=\"enabled\""));
    assert_eq!(
        number_after(&dom, "data-route-requests=\"/health/live\""),
        Some(LIVE_REQUESTS as f64),
        "the route table shows the requests sent:\n{dom}"
    );
    assert_eq!(number_after(&dom, "id=\"tools-total\""), Some(2.0), "{dom}");
    assert_eq!(number_after(&dom, "id=\"tools-errors\""), Some(1.0));
    assert_eq!(text_after(&dom, "id=\"requests-errors\""), Some("0"));
    assert_eq!(number_after(&dom, "id=\"searches-total\""), Some(1.0));
    let total = number_after(&dom, "id=\"requests-total\"").expect("a request total");
    assert!(total >= (LIVE_REQUESTS + 4) as f64, "{total}");
    let p50 = text_after(&dom, "id=\"requests-p50\"").unwrap();
    assert!(p50.ends_with("ms") || p50.ends_with("µs"), "a latency, not a dash: {p50:?}");
    let overall = text_after(&dom, "id=\"overall\"").unwrap();
    assert!(["healthy", "degraded"].contains(&overall), "{overall:?}");
    assert!(dom.contains("data-component=\"exporter\"") && dom.contains("data-queue=\"spans\""));
    assert!(text_after(&dom, "id=\"rss\"").is_some_and(|rss| rss.ends_with("MiB")), "{dom}");
    assert!(text_after(&dom, "id=\"spool\"").is_some_and(|spool| spool.starts_with("0 B / ")), "{dom}");
    assert!(!dom.contains("no-such-page-4711"), "raw paths never show");

    let png = output_dir().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(&browser, &url, &[format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), WINDOW, "the window's size");
    assert!(bytes.len() > 30_000, "a rendered page, not a blank one: {} bytes", bytes.len());
    eprintln!("screenshot: {}", png.display());
}

#[test]
fn chromium_shows_when_telemetry_is_disabled() {
    let Some(browser) = support::prereq::chromium() else { return };
    let service = Service::start(&[("TELEMETRY_ENABLED", "false")], &[]);
    let dom = run_chromium(&browser, &service.url("/status"), &["--dump-dom".to_owned()]);
    assert!(dom.contains("data-telemetry=\"disabled\""), "{dom}");
    assert_eq!(text_after(&dom, "id=\"overall\""), Some("telemetry disabled"));
    assert!(text_after(&dom, "id=\"banner\"").is_some_and(|b| b.contains("TELEMETRY_ENABLED=false")), "{dom}");
    assert!(dom.contains("no pipeline: telemetry is disabled"), "{dom}");
    assert_eq!(text_after(&dom, "id=\"requests-total\""), Some("—"), "no figures to show");
}
