use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use metamcp_telemetry_actors::health_check::{ComponentHealth, HealthReport, HealthStatus};
use metamcp_telemetry_actors::metric_aggregator::ServiceMetrics;
use metamcp_telemetry_actors::self_metrics::{DepthProbe, DropReason, QueueGauges, SelfMetrics, Signal};
use prometheus::Registry;
use serde_json::{json, Value};

use super::*;

fn buckets(bounds: &[f64], cumulative: &[u64], count: u64) -> Buckets {
    Buckets { bounds: bounds.to_vec(), cumulative: cumulative.to_vec(), count, sum: 0.0 }
}

/// A registry laid out as the pipeline lays it out: self-metrics, service metrics, queue gauges.
struct Fixture {
    registry: Registry,
    service: ServiceMetrics,
    pipeline: std::sync::Arc<SelfMetrics>,
}

impl Fixture {
    fn new() -> Self {
        let registry = Registry::new();
        let pipeline = SelfMetrics::register(&registry, crate::catalogue::SELF_METRICS_PREFIX).unwrap();
        let service = ServiceMetrics::register(&registry, &crate::catalogue::METAMCP).unwrap();
        let probes: Vec<(&'static str, usize, DepthProbe)> =
            vec![("spans", 8192, Box::new(|| 12)), ("metric_events", 4096, Box::new(|| 0))];
        let byte_probes: Vec<(&'static str, usize, DepthProbe)> = vec![("spans", 1 << 20, Box::new(|| 4096))];
        registry
            .register(Box::new(
                QueueGauges::new(crate::catalogue::SELF_METRICS_PREFIX, probes).unwrap().with_bytes(byte_probes),
            ))
            .unwrap();
        Self { registry, service, pipeline }
    }

    fn request(&self, route: &str, status: &str, seconds: f64) {
        self.service.requests_total.with_label_values(&["GET", route, status]).inc();
        self.service.request_duration.with_label_values(&["GET", route]).observe(seconds);
    }

    /// Builds the JSON as the handler does, with `window` choosing the baseline at `now`.
    fn json(&self, window: &mut Window, now: Instant, started: Instant, report: Option<&HealthReport>) -> Value {
        let gathered = self.registry.gather();
        let families = Families::new(&gathered);
        let sample = Sample::read(families);
        let baseline = window.observe(now, started, &sample);
        serde_json::to_value(build(report, families, &sample, &baseline, now - started)).unwrap()
    }
}

fn report_with_exporter(details: &[(&'static str, Value)]) -> HealthReport {
    let mut exporter = ComponentHealth::new(0);
    exporter.status = HealthStatus::Degraded;
    exporter.reason = Some("collector unreachable for 3s".to_owned());
    exporter.queue_depth = Some(3);
    exporter.queue_capacity = Some(64);
    for (key, value) in details {
        exporter.details.insert(*key, value.clone());
    }
    let mut components = BTreeMap::new();
    components.insert("exporter".to_owned(), exporter);
    components.insert("span_buffer".to_owned(), ComponentHealth::new(1));
    HealthReport {
        status: HealthReport::overall(&components),
        uptime_seconds: 5,
        version: "test",
        checked_at_unix: 1_700_000_000,
        ready: true,
        components,
    }
}

#[test]
fn quantiles_interpolate_inside_the_bucket_like_histogram_quantile() {
    let b = buckets(&[0.1, 0.5, 1.0], &[2, 8, 10], 10);
    // Rank 5 falls in (0.1, 0.5] holding observations 3..=8: 0.1 + 0.4 * 3/6.
    assert!((b.quantile(0.5).unwrap() - 0.3).abs() < 1e-12);
    // Rank 9.5 falls in (0.5, 1.0] holding 9..=10: 0.5 + 0.5 * 1.5/2.
    assert!((b.quantile(0.95).unwrap() - 0.875).abs() < 1e-12);
    // The first bucket interpolates from zero.
    assert!((buckets(&[0.1, 0.5], &[4, 4], 4).quantile(0.5).unwrap() - 0.05).abs() < 1e-12);
    // A rank in the +Inf bucket answers the highest finite bound.
    assert_eq!(buckets(&[0.1, 0.5, 1.0], &[2, 8, 10], 20).quantile(0.95), Some(1.0));
    assert_eq!(Buckets::default().quantile(0.5), None, "no observations, no quantile");
    assert_eq!(b.quantile(1.5), None);
}

#[test]
fn bucket_deltas_keep_only_what_was_observed_since() {
    let earlier = Buckets { sum: 1.0, ..buckets(&[0.1, 0.5, 1.0], &[2, 8, 10], 10) };
    let now = Buckets { sum: 5.0, ..buckets(&[0.1, 0.5, 1.0], &[2, 8, 20], 20) };
    let delta = now.since(Some(&earlier));
    assert_eq!(delta.cumulative, vec![0, 0, 10]);
    assert_eq!(delta.count, 10);
    assert_eq!(delta.mean(), Some(0.4));
    // Only the new (slow) observations count: every one is in (0.5, 1.0].
    assert!(delta.quantile(0.5).unwrap() > 0.5);
    assert_eq!(now.since(None), now, "no baseline: everything since start");
}

#[test]
fn the_window_compares_with_its_oldest_sample_and_falls_back_to_the_start() {
    let started = Instant::now();
    let t0 = started + Duration::from_secs(30);
    let mut window = Window::default();
    let sample = Sample::default();

    let first = window.observe(t0, started, &sample);
    assert_eq!(first.sample, None, "the first poll compares with the start");
    assert!((first.seconds - 30.0).abs() < 1e-9);

    let soon = window.observe(t0 + Duration::from_millis(100), started, &sample);
    assert_eq!(soon.sample, None, "a sample younger than the minimum age is no baseline");
    assert_eq!(window.len(), 1, "samples closer than the spacing are not kept");

    let second = window.observe(t0 + Duration::from_secs(2), started, &sample);
    assert!(second.sample.is_some());
    assert!((second.seconds - 2.0).abs() < 1e-9);
    let third = window.observe(t0 + Duration::from_secs(4), started, &sample);
    assert!((third.seconds - 4.0).abs() < 1e-9, "the oldest sample in the window is the baseline");

    let idle = window.observe(t0 + Duration::from_secs(60), started, &sample);
    assert_eq!(idle.sample, None, "after an idle spell every sample has left the window");
    assert_eq!(window.len(), 1);

    let mut busy = Window::default();
    for i in 0..(MAX_SAMPLES as u64 * 2) {
        busy.observe(t0 + Duration::from_millis(30 * i), started, &sample);
    }
    let spaced = (WINDOW.as_millis() / MIN_SAMPLE_SPACING.as_millis()) as usize + 1;
    assert!(busy.len() <= spaced.min(MAX_SAMPLES), "bounded by spacing and window: {}", busy.len());
    assert!(busy.len() >= 2);
}

#[test]
fn requests_tools_and_searches_come_with_rates_and_quantiles_over_the_window() {
    let fixture = Fixture::new();
    let started = Instant::now();
    let t0 = started + Duration::from_secs(10);
    let mut window = Window::default();
    for _ in 0..10 {
        fixture.request("/health", "200", 0.002);
    }
    let first = fixture.json(&mut window, t0, started, None);
    let traffic = &first["traffic"];
    assert_eq!(traffic["since_start"], true);
    assert_eq!(traffic["requests"]["total"], 10.0);
    assert_eq!(traffic["requests"]["rate_per_second"], 1.0, "10 requests over the 10 s since start");
    assert_eq!(traffic["requests"]["window_count"], 10);
    let p50 = traffic["requests"]["p50_seconds"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= 0.005, "in the first HTTP bucket: {p50}");
    assert_eq!(traffic["tool_executions"]["total"], Value::Null, "no tool ran: the family is absent");
    assert_eq!(traffic["tool_executions"]["p50_seconds"], Value::Null);
    assert_eq!(traffic["vector_searches"]["total"], 0.0, "a plain counter exists from the start");
    assert!(traffic["requests"]["errors"].as_f64().unwrap().is_sign_positive(), "no 5xx is 0, not -0");

    for _ in 0..18 {
        fixture.request("/api/tools/{name}", "200", 0.3);
    }
    fixture.request("/api/tools/{name}", "503", 0.3);
    fixture.request("/api/tools/{name}", "500", 0.3);
    fixture.service.tool_executions_total.with_label_values(&["calculator", "true"]).inc_by(3);
    fixture.service.tool_executions_total.with_label_values(&["calculator", "false"]).inc();
    fixture.service.tool_execution_duration.with_label_values(&["calculator"]).observe(0.02);
    fixture.service.vector_searches_total.inc();
    fixture.service.vector_search_duration.observe(0.004);

    let second = fixture.json(&mut window, t0 + Duration::from_secs(2), started, None);
    let traffic = &second["traffic"];
    assert_eq!(traffic["since_start"], false);
    assert_eq!(traffic["window_seconds"], 2.0);
    let requests = &traffic["requests"];
    assert_eq!(requests["total"], 30.0);
    assert_eq!(requests["errors"], 2.0, "5xx answers are errors");
    assert_eq!(requests["rate_per_second"], 10.0, "20 requests in 2 s");
    assert_eq!(requests["errors_per_second"], 1.0);
    assert_eq!(requests["window_count"], 20);
    let p95 = requests["p95_seconds"].as_f64().unwrap();
    assert!(p95 > 0.25 && p95 <= 0.5, "only the window's slow requests count: {p95}");
    assert!((requests["mean_seconds"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    let tools = &traffic["tool_executions"];
    assert_eq!(tools["total"], 4.0);
    assert_eq!(tools["errors"], 1.0, "success=false is a failure");
    assert_eq!(tools["rate_per_second"], 2.0, "the baseline had no tool family: counted from zero");
    assert_eq!(traffic["vector_searches"]["total"], 1.0);
    assert!(traffic["vector_searches"]["p50_seconds"].as_f64().unwrap() <= 0.005);
    assert_eq!(traffic["vector_searches"]["errors"], Value::Null);

    let routes = traffic["routes"].as_array().unwrap();
    assert_eq!(routes[0], json!({"route": "/api/tools/{name}", "requests": 20.0, "errors": 2.0}), "busiest first");
    assert_eq!(routes[1], json!({"route": "/health", "requests": 10.0, "errors": 0.0}));
}

#[test]
fn pipeline_queues_drops_and_export_state_are_read_by_name() {
    let fixture = Fixture::new();
    fixture.pipeline.dropped(Signal::Traces, DropReason::QueueFull).inc_by(7);
    fixture.pipeline.dropped(Signal::Metrics, DropReason::RetryExhausted).inc_by(2);
    fixture.pipeline.exported(Signal::Traces).inc_by(100);
    fixture.pipeline.collector_up().set(0);
    let started = Instant::now();
    let report = report_with_exporter(&[
        ("collector_reachable", json!(false)),
        ("pending_items", json!(42)),
        ("in_flight", json!(1)),
        ("last_error", json!("x".repeat(1000))),
    ]);
    let mut window = Window::default();
    let status = fixture.json(&mut window, started + Duration::from_secs(4), started, Some(&report));

    assert_eq!(status["telemetry"], "enabled");
    assert_eq!(status["uptime_seconds"], 4);
    assert_eq!(status["health"]["status"], "degraded");
    let exporter = status["health"]["components"].as_array().unwrap().iter().find(|c| c["name"] == "exporter").unwrap();
    assert_eq!(exporter["reason"], "collector unreachable for 3s");
    assert_eq!(exporter["queue_depth"], 3);

    let queues = status["queues"].as_array().unwrap();
    assert!(
        queues.contains(&json!({"name": "spans", "unit": "items", "depth": 12.0, "capacity": 8192.0})),
        "{queues:?}"
    );
    assert!(queues.contains(&json!({"name": "metric_events", "unit": "items", "depth": 0.0, "capacity": 4096.0})));
    assert!(queues.contains(&json!({"name": "spans", "unit": "bytes", "depth": 4096.0, "capacity": 1048576.0})));
    assert!(!queues.iter().any(|q| q["name"] == "metric_events" && q["unit"] == "bytes"), "no byte bound there");
    assert!(queues.contains(&json!({"name": "export_batches", "unit": "batches", "depth": 3.0, "capacity": 64.0})));

    let drops = &status["drops"];
    assert_eq!(drops["total"], 9.0);
    assert_eq!(drops["by_signal"]["traces"]["queue_full"], 7.0);
    assert_eq!(drops["by_signal"]["metrics"]["retry_exhausted"], 2.0);
    assert_eq!(drops["by_signal"]["metrics"]["spool_full"], 0.0, "every reason is listed, at zero too");
    assert_eq!(drops["rate_per_second"], 9.0 / 4.0);

    let export = &status["export"];
    assert_eq!(export["collector_reachable"], false);
    assert_eq!(export["collector_up"], 0.0);
    assert_eq!(export["pending_batches"], 3);
    assert_eq!(export["pending_items"], 42);
    assert_eq!(export["in_flight"], 1);
    assert_eq!(export["exported"]["traces"], 100.0);
    assert_eq!(export["failures_total"], 0.0);
    assert_eq!(export["failures"]["traces"]["retryable"], 0.0);
    assert_eq!(export["last_success_unix"]["metrics"], 0.0);
    let error = export["last_error"].as_str().unwrap();
    assert!(error.chars().count() <= MAX_ERROR_CHARS + 1, "long errors are shortened");
    assert_eq!(export["spool"]["bytes"], 0.0, "the spool gauges exist from the start");
    assert_eq!(export["spool"]["health"], Value::Null, "this report has no spool figures");
}

#[test]
fn absent_families_come_out_as_null() {
    // Only the service metrics: none of the pipeline's families exist.
    let registry = Registry::new();
    ServiceMetrics::register(&registry, &crate::catalogue::METAMCP).unwrap();
    let gathered = registry.gather();
    let families = Families::new(&gathered);
    let sample = Sample::read(families);
    let baseline = Baseline { sample: None, seconds: 1.0 };
    let status = serde_json::to_value(build(None, families, &sample, &baseline, Duration::from_secs(1))).unwrap();
    let spool = &status["export"]["spool"];
    for key in ["bytes", "max_bytes", "batches", "items", "spooled", "replayed", "fallback", "health"] {
        assert_eq!(spool[key], Value::Null, "spool.{key}");
    }
    assert_eq!(status["export"]["held_bytes"], Value::Null);
    assert_eq!(status["export"]["collector_up"], Value::Null);
    assert_eq!(status["export"]["exported"], Value::Null);
    assert_eq!(status["drops"]["total"], Value::Null);
    assert_eq!(status["queues"], json!([]), "no queue gauges, no health report: no queues");
    assert_eq!(status["health"], Value::Null);
    assert_eq!(status["traffic"]["requests"]["total"], Value::Null, "a *Vec family before its first child");
}

#[test]
fn spool_figures_come_from_the_registry_and_the_report() {
    let fixture = Fixture::new();
    let spool = fixture.pipeline.spool();
    spool.bytes.set(3072);
    spool.max_bytes.set(1 << 20);
    spool.batches.set(5);
    spool.items[Signal::Traces as usize].set(40);
    spool.spooled[Signal::Traces as usize].inc_by(50);
    spool.replayed[Signal::Traces as usize].inc_by(10);
    spool.fallback.set(1);
    spool.buffered_bytes.set(2048);
    spool.buffered_max_bytes.set(4096);
    let report = report_with_exporter(&[
        ("held_bytes", json!(2048)),
        (
            "spool",
            json!({"backend": "sqlite", "fallback": true, "error": "e".repeat(1000), "batches": 5, "replaying": false}),
        ),
    ]);
    let started = Instant::now();
    let status = fixture.json(&mut Window::default(), started + Duration::from_secs(1), started, Some(&report));
    let export = &status["export"];
    assert_eq!(export["held_bytes"], 2048.0);
    assert_eq!(export["max_held_bytes"], 4096.0);
    let spool = &export["spool"];
    assert_eq!(spool["bytes"], 3072.0);
    assert_eq!(spool["max_bytes"], 1048576.0);
    assert_eq!(spool["batches"], 5.0);
    assert_eq!(spool["items"]["traces"], 40.0);
    assert_eq!(spool["spooled"]["traces"], 50.0);
    assert_eq!(spool["replayed"]["traces"], 10.0);
    assert_eq!(spool["fallback"], 1.0);
    assert_eq!(spool["health"]["backend"], "sqlite");
    assert_eq!(spool["health"]["fallback"], true);
    assert!(spool["health"]["error"].as_str().unwrap().chars().count() <= MAX_ERROR_CHARS + 1, "shortened");
    let queues = status["queues"].as_array().unwrap();
    assert!(queues.contains(&json!({"name": "spool", "unit": "bytes", "depth": 3072.0, "capacity": 1048576.0})));
    assert!(queues.contains(&json!({"name": "export_memory", "unit": "bytes", "depth": 2048.0, "capacity": 4096.0})));

    // A `spool` component, if a report has one, is read too.
    let mut components = report.components.clone();
    components.get_mut("exporter").unwrap().details.remove("spool");
    let mut spool_component = ComponentHealth::new(0);
    spool_component.details.insert("backend", json!("postgres"));
    components.insert("spool".to_owned(), spool_component);
    let with_component = HealthReport { components, ..report };
    let status = fixture.json(&mut Window::default(), started + Duration::from_secs(1), started, Some(&with_component));
    assert_eq!(status["export"]["spool"]["health"], json!({"backend": "postgres", "status": "healthy"}));
}

#[test]
fn disabled_telemetry_says_so_and_nothing_else() {
    let status = serde_json::to_value(disabled_json(Duration::from_secs(3))).unwrap();
    assert_eq!(status["telemetry"], "disabled");
    assert_eq!(status["uptime_seconds"], 3);
    assert_eq!(status["health"], Value::Null);
    assert_eq!(status["traffic"], Value::Null);
    assert_eq!(status["export"], Value::Null);
    assert_eq!(status["queues"], json!([]));
}

#[test]
fn the_page_is_self_contained() {
    let html = STATUS_HTML.to_ascii_lowercase();
    for needle in ["http://", "https://", "<script src", " src=", "@import", "url(", "<link"] {
        assert!(!html.contains(needle), "the page must load nothing from elsewhere: found {needle:?}");
    }
    assert!(html.contains("fetch(\"status.json\""), "the page polls the JSON next to it");
}

#[test]
fn every_element_the_script_fills_exists() {
    let ids: Vec<&str> = STATUS_HTML.split("id=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
    let script = STATUS_HTML.split("<script>").nth(1).unwrap();
    for call in ["text(\"", "$(\""] {
        for rest in script.split(call).skip(1) {
            let id = rest.split('"').next().unwrap();
            assert!(ids.contains(&id), "the script fills #{id}, which the page lacks");
        }
    }
    for op in ["requests", "tools", "searches"] {
        for field in ["total", "errors", "rate", "errors-rate", "window", "p50", "p95", "mean"] {
            let id = format!("{op}-{field}");
            assert!(ids.contains(&id.as_str()), "#{id} missing");
        }
    }
}
