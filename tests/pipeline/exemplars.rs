//! Exemplars from the latency histograms to the traces: a scrape that asks for OpenMetrics parses
//! with an OpenMetrics parser and carries exemplars whose spans the receiver got; a scrape that
//! does not is today's text format, byte for byte apart from the values; the OTLP histogram points
//! carry the same exemplars; and a real Prometheus server stores them.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::{McpOperation, McpSide, TelemetryManager};
use support::app::{settings_for, TestApp};
use support::prom::{self, ScrapedExemplar};
use support::wait::assert_eventually_async;
use support::{prereq, TestCollector, Transport};

const REQUESTS: &str = "metamcp_request_duration_seconds";
const TOOLS: &str = "metamcp_tool_execution_duration_seconds";
const MCP: &str = "mcp_server_operation_duration_seconds";

/// Requests on three routes, then a tool call and an MCP operation, each inside a span.
async fn workload(manager: &TelemetryManager, app: &TestApp) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for path in ["/ok", "/fail", "/ok", "/unavailable"] {
        client.get(app.url(path)).send().await.unwrap();
    }
    client.post(app.url("/items/7")).send().await.unwrap();
    let recorder = manager.clone();
    manager
        .trace_operation("tools/call calculator", Vec::new(), async move {
            recorder.record_tool_execution("calculator", true, Duration::from_millis(3));
            let op = McpOperation {
                method: "tools/call",
                tool_name: Some("calculator"),
                network_transport: "tcp",
                ..McpOperation::default()
            };
            recorder.record_mcp_operation(McpSide::Server, &op, Duration::from_millis(4));
            Ok::<_, std::convert::Infallible>(())
        })
        .await
        .unwrap();
}

/// `(trace id, span id)` of every span the receiver got, after a flush.
async fn exported_spans(manager: &TelemetryManager, collector: &TestCollector) -> BTreeSet<(String, String)> {
    manager.force_flush(Duration::from_secs(10)).await.unwrap();
    collector.spans().iter().map(|span| (span.trace_id_hex(), span.span_id_hex())).collect()
}

fn ids(exemplar: &ScrapedExemplar) -> (String, String) {
    let get = |key: &str| exemplar.exemplar_labels.get(key).cloned().unwrap_or_default();
    (get("trace_id"), get("span_id"))
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[actix_rt::test]
async fn an_openmetrics_scrape_and_the_otlp_points_carry_exemplars_of_exported_spans() {
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&settings_for(&collector.endpoint(), Protocol::Grpc)).unwrap();
    let app = TestApp::start(&manager).await;
    workload(&manager, &app).await;

    let url = format!("http://{}/metrics", manager.metrics_addr().unwrap());
    let scrape = prom::scrape_openmetrics_async(&url).await;
    assert!(scrape.body.ends_with("\n# EOF\n"), "{}", scrape.body);
    // Counters: the family without `_total`, the sample with it.
    assert_eq!(scrape.types.get("metamcp_requests").map(String::as_str), Some("counter"));
    assert!(scrape.body.contains("\n# TYPE metamcp_requests counter\n"), "{}", scrape.body);
    assert!(scrape.body.contains("\nmetamcp_requests_total{"), "{}", scrape.body);
    assert_eq!(scrape.types.get(REQUESTS).map(String::as_str), Some("histogram"));

    let families: BTreeSet<&str> = scrape.exemplars.iter().map(|e| e.family.as_str()).collect();
    assert_eq!(families, BTreeSet::from([MCP, REQUESTS, TOOLS]), "{}", scrape.body);
    let routes: BTreeSet<&str> = scrape
        .exemplars
        .iter()
        .filter(|e| e.family == REQUESTS)
        .filter_map(|e| e.labels.get("route").map(String::as_str))
        .collect();
    assert_eq!(routes, BTreeSet::from(["/fail", "/items/{id}", "/ok", "/unavailable"]));
    let now = now_seconds();
    for exemplar in &scrape.exemplars {
        let (trace, span) = ids(exemplar);
        assert_eq!(exemplar.exemplar_labels.len(), 2, "{exemplar:?}");
        assert!(trace.len() == 32 && span.len() == 16, "{exemplar:?}");
        let le = exemplar.le.expect("exemplars sit on bucket lines");
        assert!(exemplar.value > 0.0 && exemplar.value <= le, "{exemplar:?}");
        let timestamp = exemplar.timestamp.expect("exemplars carry their time");
        assert!((now - 60.0..=now + 1.0).contains(&timestamp), "{exemplar:?} at {now}");
    }
    let spans = exported_spans(&manager, &collector).await;
    for exemplar in &scrape.exemplars {
        assert!(spans.contains(&ids(exemplar)), "exemplar of a span the receiver never got: {exemplar:?}");
    }
    // The server spans of the requests (5) and the tool call's span.
    let referred: BTreeSet<(String, String)> = scrape.exemplars.iter().map(ids).collect();
    assert!(referred.len() >= 5, "{referred:?}");

    // The OTLP histogram points carry the same kind of exemplars, on each of the three families.
    for name in [REQUESTS, TOOLS, "mcp.server.operation.duration"] {
        let found = collector
            .wait_for_async(Duration::from_secs(10), |received| {
                received.metric_points(name).iter().any(|p| p.histogram().is_some_and(|h| !h.exemplars.is_empty()))
            })
            .await;
        assert!(found, "no OTLP exemplar on {name}");
        for point in collector.metric_points(name) {
            for exemplar in &point.histogram().unwrap().exemplars {
                let id = (exemplar.trace_id.clone(), exemplar.span_id.clone());
                assert!(spans.contains(&id), "OTLP exemplar of a span the receiver never got: {exemplar:?}");
                assert!(exemplar.value.is_some_and(|v| v > 0.0) && exemplar.time_unix_nano > 0, "{exemplar:?}");
            }
        }
    }
    let _ = manager.shutdown().await;
    app.handle.stop(true).await;
}

#[actix_rt::test]
async fn under_tail_sampling_exemplars_refer_only_to_kept_traces() {
    use metamcp_telemetry::actors::SamplingMode;
    let collector = TestCollector::start(Transport::Grpc);
    let mut settings = settings_for(&collector.endpoint(), Protocol::Grpc);
    // Only errors are kept: `/fail` (500) and `/unavailable` (503); `/ok`, `/items/{id}` and the
    // tool call's trace are not exported, so no exemplar may point at them.
    settings.sampling.mode = SamplingMode::Tail;
    settings.sampling.keep_ratio = 0.0;
    settings.sampling.keep_slower_than = Duration::from_secs(60);
    let manager = TelemetryManager::initialize(&settings).unwrap();
    let app = TestApp::start(&manager).await;
    workload(&manager, &app).await;
    // The decisions are taken as the span buffer folds the spans: flush first.
    let spans = exported_spans(&manager, &collector).await;
    let exported_traces: BTreeSet<&str> = spans.iter().map(|(trace, _)| trace.as_str()).collect();
    assert_eq!(exported_traces.len(), 2, "only the two failed requests' traces are kept: {spans:?}");

    let url = format!("http://{}/metrics", manager.metrics_addr().unwrap());
    let scrape = prom::scrape_openmetrics_async(&url).await;
    let routes: BTreeSet<&str> =
        scrape.exemplars.iter().filter_map(|e| e.labels.get("route").map(String::as_str)).collect();
    assert_eq!(routes, BTreeSet::from(["/fail", "/unavailable"]), "{}", scrape.body);
    assert!(scrape.exemplars.iter().all(|e| e.family == REQUESTS), "{}", scrape.body);
    for exemplar in &scrape.exemplars {
        assert!(spans.contains(&ids(exemplar)), "exemplar of a trace that was not kept: {exemplar:?}");
    }
    // The OTLP export asks the same decisions.
    let found = collector
        .wait_for_async(Duration::from_secs(10), |received| {
            received.metric_points(REQUESTS).iter().any(|p| p.histogram().is_some_and(|h| !h.exemplars.is_empty()))
        })
        .await;
    assert!(found, "no OTLP exemplar on {REQUESTS}");
    for name in [REQUESTS, TOOLS, "mcp.server.operation.duration"] {
        for point in collector.metric_points(name) {
            for exemplar in &point.histogram().unwrap().exemplars {
                let id = (exemplar.trace_id.clone(), exemplar.span_id.clone());
                assert!(spans.contains(&id), "OTLP exemplar of a trace that was not kept: {name} {exemplar:?}");
            }
        }
    }
    let _ = manager.shutdown().await;
    app.handle.stop(true).await;
}

/// Each sample line with its value replaced: what stays is names, labels, order and comments.
fn masked(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| match line.rsplit_once(' ') {
            Some((series, _)) if !line.starts_with('#') => format!("{series} <value>"),
            _ => line.to_owned(),
        })
        .collect()
}

#[actix_rt::test]
async fn a_scrape_that_does_not_ask_for_openmetrics_gets_the_text_format_unchanged() {
    use prometheus::Encoder as _;
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&settings_for(&collector.endpoint(), Protocol::Grpc)).unwrap();
    let app = TestApp::start(&manager).await;
    workload(&manager, &app).await;
    let url = format!("http://{}/metrics", manager.metrics_addr().unwrap());
    let registry = manager.pipeline().unwrap().registry.clone();
    let encode = || {
        let mut text = Vec::new();
        prometheus::TextEncoder::new().encode(&registry.gather(), &mut text).unwrap();
        masked(&String::from_utf8(text).unwrap())
    };
    for accept in [None, Some("text/plain;version=0.0.4"), Some("text/plain"), Some("*/*")] {
        // New series (a first export, say) may appear between the scrape and the encoding: compare
        // a scrape taken while the registry held still.
        let still = std::rc::Rc::new(std::cell::RefCell::new(None));
        assert_eventually_async(Duration::from_secs(10), "a scrape while the registry held still", || {
            let (before, url, still) = (encode(), url.clone(), still.clone());
            let encode = &encode;
            async move {
                let answer = prom::get_async(&url, accept).await;
                let held = before == encode();
                if held {
                    *still.borrow_mut() = Some((answer, before));
                }
                held
            }
        })
        .await;
        let ((status, content_type, body), expected) = still.take().unwrap();
        assert_eq!(status, 200);
        assert_eq!(content_type, metamcp_telemetry::http::PROMETHEUS_CONTENT_TYPE, "Accept {accept:?}");
        assert!(!body.contains("# EOF") && !body.contains(" # {"), "Accept {accept:?}: {body}");
        assert_eq!(masked(&body), expected, "Accept {accept:?}");
    }
    let _ = manager.shutdown().await;
    app.handle.stop(true).await;
}

/// A Prometheus server process, killed when dropped.
struct PrometheusServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PrometheusServer {
    /// Starts `binary` scraping `target` every second, exemplar storage on, in a temporary
    /// directory. Prometheus negotiates OpenMetrics first by default.
    fn start(binary: &std::path::Path, target: std::net::SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: metamcp\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        PrometheusServer { child, port, _dir: dir }
    }

    /// The exemplars `/api/v1/query_exemplars` returns for `query` over the last ten minutes:
    /// `(series labels, exemplar labels, value)`.
    async fn exemplars(&self, query: &str) -> Vec<(serde_json::Value, serde_json::Value, f64)> {
        let now = now_seconds();
        let url = format!("http://127.0.0.1:{}/api/v1/query_exemplars", self.port);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let request = client.get(url).query(&[
            ("query", query.to_owned()),
            ("start", format!("{:.3}", now - 600.0)),
            ("end", format!("{:.3}", now + 60.0)),
        ]);
        let Ok(response) = request.send().await else { return Vec::new() };
        let Ok(body) = response.json::<serde_json::Value>().await else { return Vec::new() };
        let mut found = Vec::new();
        for series in body["data"].as_array().into_iter().flatten() {
            for exemplar in series["exemplars"].as_array().into_iter().flatten() {
                let value = exemplar["value"].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                found.push((series["seriesLabels"].clone(), exemplar["labels"].clone(), value));
            }
        }
        found
    }
}

#[actix_rt::test]
async fn a_prometheus_server_stores_the_exemplars_it_scrapes() {
    let Some(binary) = prereq::prometheus() else { return };
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&settings_for(&collector.endpoint(), Protocol::Grpc)).unwrap();
    let app = TestApp::start(&manager).await;
    workload(&manager, &app).await;
    let server = PrometheusServer::start(&binary, manager.metrics_addr().unwrap());

    let query = format!("{REQUESTS}_bucket");
    let stored = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    assert_eventually_async(Duration::from_secs(60), "Prometheus to return the request exemplars", || {
        let (server, query, stored) = (&server, query.clone(), stored.clone());
        async move {
            let found = server.exemplars(&query).await;
            // One exemplar per route at least: /ok, /fail, /unavailable, /items/{id}.
            let enough = found.len() >= 4;
            *stored.borrow_mut() = found;
            enough
        }
    })
    .await;
    let stored = stored.take();
    let spans = exported_spans(&manager, &collector).await;
    for (series, labels, value) in &stored {
        assert_eq!(series["__name__"], format!("{REQUESTS}_bucket"), "{series}");
        assert_eq!(series["job"], "metamcp", "{series}");
        let id =
            (labels["trace_id"].as_str().unwrap_or("").to_owned(), labels["span_id"].as_str().unwrap_or("").to_owned());
        assert!(spans.contains(&id), "Prometheus holds an exemplar of a span the receiver never got: {labels}");
        assert!(*value > 0.0, "{value}");
    }
    let tools = server.exemplars(&format!("{TOOLS}_bucket")).await;
    assert!(!tools.is_empty(), "no tool execution exemplar stored");
    drop(server);
    let _ = manager.shutdown().await;
    app.handle.stop(true).await;
}
