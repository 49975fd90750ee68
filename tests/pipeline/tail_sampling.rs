//! Tail sampling over the real actors and a real OTLP receiver: a mixed workload of requests
//! whose tool step succeeds fast, fails, or runs slow. With `keep_ratio = 0` only the traces with
//! a failed step or a slow request reach the receiver, whole, and the scraped
//! `metamcp_telemetry_sampled_total` counts every decision exactly; with `keep_ratio = 1` every
//! trace arrives. Flushes and shutdown keep what still waits; log records keep their trace ids
//! whatever the decision. Head sampling (the default) shows no sampling family at all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use metamcp_telemetry::actors::{Protocol, SamplingMode};
use metamcp_telemetry::settings::Settings;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::KeyValue;
use support::app::settings_for;
use support::prom::{self, Scrape};
use support::{ReceivedSpan, TestCollector, Transport};

/// The slow tool step, well past `keep_slower_than` so that no fast request comes near it.
const SLOW_STEP: Duration = Duration::from_millis(1200);
const KEEP_SLOWER_THAN: Duration = Duration::from_millis(800);
const WAIT: Duration = Duration::from_secs(20);

/// `GET /tool/{outcome}`: a server span with one `tool.run` child that succeeds (`ok`), fails
/// (`fail`: the child has an error status, the response is still 200) or takes `SLOW_STEP`
/// (`slow`). `GET /plain`: a server span alone.
async fn tool(manager: web::Data<TelemetryManager>, outcome: web::Path<String>) -> HttpResponse {
    let outcome = outcome.into_inner();
    let attributes = vec![KeyValue::new("test.outcome", outcome.clone())];
    let result: Result<(), String> = manager
        .trace_operation("tool.run", attributes, async move {
            match outcome.as_str() {
                "fail" => Err("the tool failed".to_owned()),
                "slow" => {
                    actix_rt::time::sleep(SLOW_STEP).await;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
        .await;
    HttpResponse::Ok().body(if result.is_ok() { "done" } else { "failed" })
}

async fn plain() -> HttpResponse {
    HttpResponse::Ok().body("plain")
}

/// Starts the app; returns its base URL and the server's handle.
fn start_app(manager: &TelemetryManager) -> (String, actix_web::dev::ServerHandle) {
    let manager = manager.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(manager.middleware())
            .app_data(web::Data::new(manager.clone()))
            .route("/tool/{outcome}", web::get().to(tool))
            .route("/plain", web::get().to(plain))
    })
    .workers(2)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind");
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (base, handle)
}

/// The workload: paths in request order. 6 fast tool calls, 1 failing, 1 slow, 3 plain requests.
const WORKLOAD: &[&str] = &[
    "/tool/ok",
    "/plain",
    "/tool/ok",
    "/tool/fail",
    "/tool/ok",
    "/plain",
    "/tool/slow",
    "/tool/ok",
    "/tool/ok",
    "/plain",
    "/tool/ok",
];

fn tail_settings(collector: &TestCollector, keep_ratio: f64) -> Settings {
    let mut settings = settings_for(&collector.endpoint(), Protocol::Grpc);
    settings.metrics.otlp_export = false;
    settings.sampling.mode = SamplingMode::Tail;
    settings.sampling.keep_ratio = keep_ratio;
    settings.sampling.keep_slower_than = KEEP_SLOWER_THAN;
    settings
}

/// Runs the workload and flushes; returns every span the receiver got.
async fn run_workload(manager: &TelemetryManager, collector: &TestCollector, base: &str) -> Vec<ReceivedSpan> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    for (index, path) in WORKLOAD.iter().enumerate() {
        let response = client
            .get(format!("{base}{path}"))
            .header("x-request-id", format!("req-{index}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    manager.force_flush(WAIT).await.expect("flush");
    collector.spans()
}

fn sampled(scrape: &Scrape, decision: &str, reason: &str) -> Option<f64> {
    prom::value(scrape, "metamcp_telemetry_sampled_total", &[("decision", decision), ("reason", reason)])
}

/// Spans grouped by trace id.
fn traces(spans: &[ReceivedSpan]) -> BTreeMap<String, Vec<ReceivedSpan>> {
    let mut traces: BTreeMap<String, Vec<ReceivedSpan>> = BTreeMap::new();
    for span in spans {
        traces.entry(span.trace_id_hex()).or_default().push(span.clone());
    }
    traces
}

/// The outcome of the tool step in a trace (`plain` for a request without one).
fn outcome(trace: &[ReceivedSpan]) -> String {
    trace.iter().find_map(|span| span.attr("test.outcome")).unwrap_or_else(|| "plain".to_owned())
}

#[actix_rt::test]
async fn with_keep_ratio_zero_only_failed_and_slow_traces_are_exported_and_every_decision_is_counted() {
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&tail_settings(&collector, 0.0)).expect("telemetry starts");
    let url = format!("http://{}/metrics", manager.metrics_addr().expect("metrics listener"));
    let before = prom::scrape_async(&url).await;
    for (decision, reason) in
        [("kept", "error"), ("kept", "slow"), ("kept", "ratio"), ("kept", "overflow"), ("dropped", "none")]
    {
        assert_eq!(sampled(&before, decision, reason), Some(0.0), "{decision}/{reason} exists at zero from the start");
    }
    let (base, handle) = start_app(&manager);
    let spans = run_workload(&manager, &collector, &base).await;

    // The kept traces arrive whole: the failed one and the slow one, two spans each.
    let traces = traces(&spans);
    let outcomes: BTreeSet<String> = traces.values().map(|trace| outcome(trace)).collect();
    assert_eq!(outcomes, BTreeSet::from(["fail".to_owned(), "slow".to_owned()]), "{traces:#?}");
    assert_eq!(traces.len(), 2, "{traces:#?}");
    for trace in traces.values() {
        let names: BTreeSet<&str> = trace.iter().map(|span| span.name.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["GET /tool/{outcome}", "tool.run"]), "{trace:#?}");
    }

    let scrape = prom::scrape_async(&url).await;
    assert_eq!(sampled(&scrape, "kept", "error"), Some(1.0));
    assert_eq!(sampled(&scrape, "kept", "slow"), Some(1.0));
    assert_eq!(sampled(&scrape, "kept", "ratio"), Some(0.0));
    assert_eq!(sampled(&scrape, "kept", "overflow"), Some(0.0));
    assert_eq!(sampled(&scrape, "dropped", "none"), Some(9.0));
    // 6 fast tool traces of two spans, 3 plain traces of one.
    assert_eq!(prom::value(&scrape, "metamcp_telemetry_sampled_out_spans_total", &[]), Some(15.0));
    assert_eq!(
        prom::value(&scrape, "metamcp_telemetry_dropped_total", &[("signal", "traces"), ("reason", "queue_full")]),
        Some(0.0)
    );
    assert_eq!(prom::value(&scrape, "metamcp_telemetry_exported_total", &[("signal", "traces")]), Some(4.0));

    // /health shows the mode, nothing waiting, and the same counts.
    let report = manager.pipeline().expect("running").check_health(WAIT).await.expect("a health report");
    let sampling = &report.components["span_buffer"].details["sampling"];
    assert_eq!(sampling["mode"], "tail", "{sampling}");
    assert_eq!(sampling["pending_traces"], 0, "{sampling}");
    assert_eq!(sampling["kept"]["error"], 1, "{sampling}");
    assert_eq!(sampling["kept"]["slow"], 1, "{sampling}");
    assert_eq!(sampling["dropped"]["none"], 9, "{sampling}");
    assert_eq!(sampling["sampled_out_spans"], 15, "{sampling}");

    // Exemplars may point at the kept traces only.
    let kept = &manager.pipeline().expect("running").trace_decisions;
    assert!(kept.is_tail());
    for trace_id in traces.keys() {
        let bytes: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap()).collect();
        assert!(kept.may_refer_to(&bytes.try_into().unwrap()), "{trace_id}");
    }
    handle.stop(true).await;
    manager.shutdown().await;
}

#[actix_rt::test]
async fn with_keep_ratio_one_every_trace_is_exported() {
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&tail_settings(&collector, 1.0)).expect("telemetry starts");
    let (base, handle) = start_app(&manager);
    let spans = run_workload(&manager, &collector, &base).await;
    let traces = traces(&spans);
    assert_eq!(traces.len(), WORKLOAD.len(), "{traces:#?}");
    assert_eq!(spans.len(), 8 * 2 + 3, "every span of every trace");

    let url = format!("http://{}/metrics", manager.metrics_addr().expect("metrics listener"));
    let scrape = prom::scrape_async(&url).await;
    assert_eq!(sampled(&scrape, "kept", "error"), Some(1.0));
    assert_eq!(sampled(&scrape, "kept", "slow"), Some(1.0));
    assert_eq!(sampled(&scrape, "kept", "ratio"), Some(9.0));
    assert_eq!(sampled(&scrape, "dropped", "none"), Some(0.0));
    assert_eq!(prom::value(&scrape, "metamcp_telemetry_sampled_out_spans_total", &[]), Some(0.0));
    handle.stop(true).await;
    manager.shutdown().await;
}

/// Spans of a trace whose root has not ended at a flush, or at shutdown, are kept and exported
/// (fail open, `reason="overflow"`): neither loses anything.
#[actix_rt::test]
async fn flush_and_shutdown_export_the_traces_still_waiting_for_their_root() {
    use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _};
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&tail_settings(&collector, 0.0)).expect("telemetry starts");
    let tracer = manager.tracer().expect("a tracer").clone();
    let open_child = |name: &'static str| {
        let cx = opentelemetry::Context::current_with_span(tracer.start("a root that has not ended"));
        tracer.start_with_context(name, &cx).end();
        cx
    };
    let _first = open_child("before the flush");
    manager.force_flush(WAIT).await.expect("flush");
    let names = |spans: Vec<ReceivedSpan>| spans.into_iter().map(|s| s.name).collect::<BTreeSet<String>>();
    assert_eq!(names(collector.spans()), BTreeSet::from(["before the flush".to_owned()]));
    let url = format!("http://{}/metrics", manager.metrics_addr().expect("metrics listener"));
    let scrape = prom::scrape_async(&url).await;
    assert_eq!(sampled(&scrape, "kept", "overflow"), Some(1.0), "the waiting trace is kept as overflow");

    let _second = open_child("before shutdown");
    let report = manager.shutdown().await;
    assert!(!report.timed_out, "{report:?}");
    let spans = collector.wait_for_spans_async(2, WAIT).await;
    assert_eq!(names(spans), BTreeSet::from(["before the flush".to_owned(), "before shutdown".to_owned()]));
}

#[actix_rt::test]
async fn head_sampling_shows_no_sampling_family_and_says_so_in_health() {
    let collector = TestCollector::start(Transport::Grpc);
    let mut settings = settings_for(&collector.endpoint(), Protocol::Grpc);
    settings.metrics.otlp_export = false;
    let manager = TelemetryManager::initialize(&settings).expect("telemetry starts");
    let url = format!("http://{}/metrics", manager.metrics_addr().expect("metrics listener"));
    let scrape = prom::scrape_async(&url).await;
    assert!(!scrape.samples().iter().any(|line| line.family.starts_with("metamcp_telemetry_sampled")));
    let report = manager.pipeline().expect("running").check_health(WAIT).await.expect("a health report");
    assert_eq!(report.components["span_buffer"].details["sampling"], serde_json::json!({"mode": "head"}));
    assert!(!manager.pipeline().expect("running").trace_decisions.is_tail());
    manager.shutdown().await;
}

/// A log record keeps its trace and span ids whatever the tail sampler decides for that trace:
/// logs travel on their own door and are never sampled.
#[actix_rt::test]
async fn log_records_keep_their_trace_ids_when_the_trace_is_dropped() {
    use metamcp_telemetry::actors::log_buffer::{LogRecord, LogValue, Severity};
    use opentelemetry::trace::{Span as _, Tracer as _};
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&tail_settings(&collector, 0.0)).expect("telemetry starts");
    let pipeline = manager.pipeline().expect("running");
    let mut span = manager.tracer().expect("a tracer").start("fast and fine");
    let context = span.span_context().clone();
    let submitted = pipeline.log_ingress.submit(LogRecord {
        time_unix_nano: 1,
        observed_time_unix_nano: 1,
        severity: Severity::Info,
        body: LogValue::Static("inside a trace the sampler drops"),
        attributes: Vec::new(),
        trace_id: context.trace_id().to_bytes(),
        span_id: context.span_id().to_bytes(),
        trace_flags: context.trace_flags().to_u8(),
        scope: "tail_sampling_test",
        event_name: None,
    });
    assert!(submitted);
    span.end();
    manager.force_flush(WAIT).await.expect("flush");
    let logs = collector.wait_for_logs_async(1, WAIT).await;
    assert_eq!(logs.len(), 1, "{logs:#?}");
    assert_eq!(logs[0].trace_id_hex(), Some(format!("{:032x}", context.trace_id())));
    assert_eq!(logs[0].record.span_id, context.span_id().to_bytes().to_vec());
    let url = format!("http://{}/metrics", manager.metrics_addr().expect("metrics listener"));
    let scrape = prom::scrape_async(&url).await;
    assert_eq!(sampled(&scrape, "dropped", "none"), Some(1.0), "the trace itself was dropped");
    assert!(collector.spans().is_empty(), "{:#?}", collector.spans());
    manager.shutdown().await;
}
