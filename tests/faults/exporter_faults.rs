//! The exporter against a collector that misbehaves on a real OTLP wire: permanent answers are
//! not retried and are counted as permanent; a partial success counts the rejected items as
//! dropped and only the rest as exported; throttling delays (HTTP `Retry-After`, gRPC
//! `RetryInfo`) are honoured; a collector that goes away and comes back gets everything, its
//! spool replayed through one export slot so that fresh batches keep the other; an exporter that
//! panics with batches in flight loses none of them.

use std::collections::BTreeSet;
use std::time::Duration;

use metamcp_telemetry::actors::exporter::GetStatus;
use metamcp_telemetry::actors::self_metrics::{ActorKind, DropReason, FailureKind, Signal};
use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::Tracer as _;
use support::app::settings_for;
use support::wait::wait_until_async;
use support::{Behavior, TestCollector, Transport};

fn protocol(transport: Transport) -> Protocol {
    match transport {
        Transport::Grpc => Protocol::Grpc,
        Transport::Http => Protocol::HttpProtobuf,
    }
}

fn start(collector: &TestCollector) -> TelemetryManager {
    let mut settings = settings_for(&collector.endpoint(), protocol(collector.transport()));
    settings.metrics.otlp_export = false;
    TelemetryManager::initialize(&settings).unwrap()
}

fn record_spans(manager: &TelemetryManager, n: usize) {
    let tracer = manager.tracer().unwrap();
    for i in 0..n {
        tracer.in_span(format!("op {i}"), |_| {});
    }
}

async fn permanent_failure_is_not_retried(transport: Transport, behavior: Behavior) {
    let collector = TestCollector::start(transport);
    collector.set_behavior(behavior);
    let manager = start(&collector);
    record_spans(&manager, 5);
    manager.force_flush(Duration::from_secs(10)).await.unwrap();
    let metrics = manager.pipeline().unwrap().self_metrics.clone();
    assert_eq!(metrics.dropped(Signal::Traces, DropReason::ExportFailedPermanent).get(), 5);
    assert_eq!(metrics.export_failures(Signal::Traces, FailureKind::Permanent).get(), 1);
    assert_eq!(metrics.export_failures(Signal::Traces, FailureKind::Retryable).get(), 0);
    assert_eq!(collector.request_count(), 1, "a permanent answer is never retried");
    assert_eq!(collector.span_count(), 0);
    manager.shutdown().await;
}

#[actix_rt::test]
async fn grpc_invalid_argument_is_permanent() {
    permanent_failure_is_not_retried(Transport::Grpc, Behavior::FailGrpc(tonic::Code::InvalidArgument)).await;
}

#[actix_rt::test]
async fn grpc_resource_exhausted_without_retry_info_is_permanent() {
    permanent_failure_is_not_retried(Transport::Grpc, Behavior::FailGrpc(tonic::Code::ResourceExhausted)).await;
}

#[actix_rt::test]
async fn http_400_is_permanent() {
    permanent_failure_is_not_retried(Transport::Http, Behavior::FailHttp { status: 400, retry_after: None }).await;
}

async fn partial_success_counts_the_rejected_spans_as_dropped(transport: Transport) {
    let collector = TestCollector::start(transport);
    collector.set_behavior(Behavior::PartialSuccess { rejected: 2, message: "2 spans refused: too old".into() });
    let mut settings = settings_for(&collector.endpoint(), protocol(transport));
    settings.metrics.otlp_export = false;
    // The five spans leave as one batch, when the fifth arrives.
    settings.span_buffer.max_batch_size = 5;
    settings.span_buffer.flush_interval = Duration::from_secs(3600);
    let manager = TelemetryManager::initialize(&settings).unwrap();
    record_spans(&manager, 5);
    manager.force_flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(collector.request_count(), 1, "a partial success is an answer, not a failure to retry");
    assert_eq!(collector.span_count(), 5);
    let metrics = manager.pipeline().unwrap().self_metrics.clone();
    assert_eq!(metrics.exported(Signal::Traces).get(), 3, "the rejected spans are not counted as exported");
    assert_eq!(metrics.dropped(Signal::Traces, DropReason::ExportFailedPermanent).get(), 2);
    assert_eq!(metrics.dropped_total(Signal::Traces), 2, "{:?}", metrics.dropped_by_reason(Signal::Traces));
    assert_eq!(metrics.export_failures(Signal::Traces, FailureKind::Permanent).get(), 0);
    assert_eq!(metrics.export_failures(Signal::Traces, FailureKind::Retryable).get(), 0);
    manager.shutdown().await;
}

#[actix_rt::test]
async fn grpc_partial_success_counts_the_rejected_spans_as_dropped() {
    partial_success_counts_the_rejected_spans_as_dropped(Transport::Grpc).await;
}

#[actix_rt::test]
async fn http_partial_success_counts_the_rejected_spans_as_dropped() {
    partial_success_counts_the_rejected_spans_as_dropped(Transport::Http).await;
}

/// Data points of one metrics export request.
fn data_points(request: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    request
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

#[actix_rt::test]
async fn partial_success_counts_the_rejected_data_points_as_dropped() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.set_behavior(Behavior::PartialSuccess { rejected: 1, message: "1 data point refused".into() });
    let manager = TelemetryManager::initialize(&settings_for(&collector.endpoint(), Protocol::Grpc)).unwrap();
    manager.record_request("GET", "/items/{id}", 200, Duration::from_millis(3));
    let snapshots = collector.wait_for_async(Duration::from_secs(20), |r| r.metric_requests().len() >= 3).await;
    assert!(snapshots, "three metric snapshots arrive");
    manager.shutdown().await;
    // Every snapshot had one point rejected; the rest of its points were exported.
    let requests = collector.metric_requests();
    let points: u64 = requests.iter().map(data_points).sum();
    let metrics = manager.pipeline().unwrap().self_metrics.clone();
    let rejected = metrics.dropped(Signal::Metrics, DropReason::ExportFailedPermanent).get();
    assert_eq!(rejected, requests.len() as u64, "one point dropped per snapshot");
    assert_eq!(metrics.dropped_total(Signal::Metrics), rejected, "{:?}", metrics.dropped_by_reason(Signal::Metrics));
    assert_eq!(
        metrics.exported(Signal::Metrics).get(),
        points - rejected,
        "{} snapshots of {points} points",
        requests.len()
    );
    assert_eq!(metrics.export_failures(Signal::Metrics, FailureKind::Permanent).get(), 0);
}

async fn throttling_delay_is_honoured(transport: Transport, behavior: Behavior) {
    let collector = TestCollector::start(transport);
    collector.fail_next(1, behavior);
    let manager = start(&collector);
    record_spans(&manager, 3);
    manager.force_flush(Duration::from_secs(15)).await.unwrap();
    assert_eq!(collector.span_count(), 3);
    let times = collector.request_times();
    assert_eq!(times.len(), 2, "one throttled attempt, one accepted retry");
    let waited = times[1].duration_since(times[0]);
    // The configured backoff is 100 ms; only the server's 1 s hint explains a longer wait.
    assert!(waited >= Duration::from_millis(950), "retried after {waited:?}, before the server's delay");
    assert!(waited < Duration::from_secs(5), "retried after {waited:?}");
    let metrics = manager.pipeline().unwrap().self_metrics.clone();
    assert_eq!(metrics.export_failures(Signal::Traces, FailureKind::Retryable).get(), 1);
    assert_eq!(metrics.exported(Signal::Traces).get(), 3);
    manager.shutdown().await;
}

#[actix_rt::test]
async fn http_429_retry_after_is_honoured() {
    throttling_delay_is_honoured(Transport::Http, Behavior::FailHttp { status: 429, retry_after: Some("1".into()) })
        .await;
}

#[actix_rt::test]
async fn grpc_retry_info_is_honoured() {
    throttling_delay_is_honoured(
        Transport::Grpc,
        Behavior::FailGrpcRetryInfo(tonic::Code::ResourceExhausted, Duration::from_secs(1)),
    )
    .await;
}

#[actix_rt::test]
async fn a_collector_that_comes_back_gets_everything_recorded_meanwhile() {
    let mut collector = TestCollector::start(Transport::Grpc);
    collector.stop();
    let manager = start(&collector);
    let metrics = manager.pipeline().unwrap().self_metrics.clone();
    record_spans(&manager, 40);
    // A guard, not a timing: refused connects fail at once, but a loaded machine may take a
    // while to run the exporter's first attempts.
    let down = support::wait::wait_until_async(Duration::from_secs(30), || {
        let metrics = metrics.clone();
        async move { metrics.collector_up().get() == 0 }
    })
    .await;
    assert!(down, "the collector is judged unreachable");
    collector.restart();
    manager.force_flush(Duration::from_secs(20)).await.unwrap();
    assert_eq!(collector.span_count(), 40);
    assert_eq!(metrics.collector_up().get(), 1, "reachable again");
    assert_eq!(metrics.dropped_total(Signal::Traces), 0);
    manager.shutdown().await;
}

#[actix_rt::test]
async fn an_exporter_panic_while_batches_are_in_flight_loses_none_of_them() {
    let collector = TestCollector::start(Transport::Grpc);
    // Exports are held open, unanswered and unrecorded, until the behaviour changes.
    collector.set_behavior(Behavior::Stall);
    let mut settings = settings_for(&collector.endpoint(), Protocol::Grpc);
    settings.metrics.otlp_export = false;
    settings.exporter.timeout = Duration::from_secs(30);
    settings.span_buffer.max_batch_size = 4;
    let manager = TelemetryManager::initialize(&settings).unwrap();
    let pipeline = manager.pipeline().unwrap();
    let metrics = pipeline.self_metrics.clone();
    // Four batches: two in flight (the export slots), two waiting.
    record_spans(&manager, 16);
    let exporter = pipeline.exporter.clone();
    let held = wait_until_async(Duration::from_secs(10), || {
        let exporter = exporter.clone();
        async move { exporter.send(GetStatus).await.is_ok_and(|s| s.in_flight == 2 && s.pending_batches == 2) }
    })
    .await;
    assert!(held, "two exports in flight and two batches waiting: {:?}", exporter.send(GetStatus).await);
    assert!(collector.wait_for_async(Duration::from_secs(10), |r| r.request_count() >= 2).await, "both reached it");

    pipeline.inject_panic(ActorKind::Exporter);
    // The mailbox keeps its order across the restart: a message sent after the fault is answered
    // by the restarted exporter, so the restart is counted by the time the answer comes.
    let after = tokio::time::timeout(Duration::from_secs(10), exporter.send(GetStatus)).await;
    assert!(matches!(after, Ok(Ok(_))), "the exporter answers after the fault: {after:?}");
    assert_eq!(metrics.restarts(ActorKind::Exporter).get(), 1, "the supervisor restarts the exporter once");
    collector.set_behavior(Behavior::Accept);
    manager.force_flush(Duration::from_secs(20)).await.unwrap();

    let names: BTreeSet<String> = collector.spans().into_iter().map(|s| s.name).collect();
    let missing: Vec<String> = (0..16).map(|i| format!("op {i}")).filter(|name| !names.contains(name)).collect();
    assert!(missing.is_empty(), "lost in the restart: {missing:?}");
    assert_eq!(metrics.exported(Signal::Traces).get(), 16, "each span counted once");
    assert_eq!(metrics.dropped_total(Signal::Traces), 0, "{:?}", metrics.dropped_by_reason(Signal::Traces));
    manager.shutdown().await;
}

#[actix_rt::test]
async fn a_replay_leaves_one_export_slot_to_fresh_batches() {
    const N: usize = 12;
    let mut collector = TestCollector::start(Transport::Grpc);
    collector.stop();
    let mut settings = settings_for(&collector.endpoint(), Protocol::Grpc);
    settings.metrics.otlp_export = false;
    settings.span_buffer.max_batch_size = 1;
    settings.exporter.max_concurrent_exports = 2;
    settings.spool.replay_batches_per_second = 1_000;
    let manager = TelemetryManager::initialize(&settings).unwrap();
    let pipeline = manager.pipeline().unwrap();
    let (metrics, exporter) = (pipeline.self_metrics.clone(), pipeline.exporter.clone());
    let tracer = manager.tracer().unwrap().clone();
    // A first span finds the collector away; then N batches of one span go to the spool.
    tracer.in_span("warm-up", |_| {});
    let down = wait_until_async(Duration::from_secs(10), || {
        let metrics = metrics.clone();
        async move { metrics.collector_up().get() == 0 }
    })
    .await;
    assert!(down, "the collector is judged unreachable");
    for i in 0..N {
        tracer.in_span(format!("spooled {i}"), |_| {});
    }
    let spooled =
        wait_until_async(Duration::from_secs(10), || {
            let exporter = exporter.clone();
            async move {
                exporter.send(GetStatus).await.is_ok_and(|s| s.spool.items[Signal::Traces as usize] == N as u64 + 1)
            }
        })
        .await;
    assert!(spooled, "{:?}", exporter.send(GetStatus).await);

    // The collector returns, answering every export after 300 ms: the replay takes seconds.
    collector.set_behavior(Behavior::Delay(Duration::from_millis(300)));
    collector.restart();
    let (mut most_replaying, mut most_in_flight) = (0, 0);
    let replayed =
        |collector: &TestCollector| collector.spans().iter().filter(|s| s.name.starts_with("spooled")).count();
    let mut fresh_sent = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let replayed_before_fresh = loop {
        let status = exporter.send(GetStatus).await.unwrap();
        most_replaying = most_replaying.max(status.spool.replaying);
        most_in_flight = most_in_flight.max(status.in_flight);
        if !fresh_sent && replayed(&collector) >= 2 {
            // A fresh span while the replay runs: its batch takes the slot the replay leaves free.
            tracer.in_span("fresh", |_| {});
            fresh_sent = true;
        }
        if let Some(at) = collector.spans().iter().position(|s| s.name == "fresh") {
            break collector.spans()[..at].iter().filter(|s| s.name.starts_with("spooled")).count();
        }
        assert!(std::time::Instant::now() < deadline, "the fresh span never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(replayed_before_fresh < N, "the fresh batch waited for the whole replay");
    manager.force_flush(Duration::from_secs(30)).await.unwrap();
    assert_eq!(replayed(&collector), N, "the whole spool is replayed");
    assert_eq!(most_replaying, 1, "one replay at a time: one of the two slots stays free for fresh batches");
    assert_eq!(most_in_flight, 2, "the fresh batch ran beside a replay");
    assert_eq!(metrics.dropped_total(Signal::Traces), 0);
    manager.shutdown().await;
}

#[actix_rt::test]
async fn the_global_tracer_joins_the_same_pipeline() {
    let collector = TestCollector::start(Transport::Grpc);
    let mut settings = settings_for(&collector.endpoint(), Protocol::Grpc);
    settings.telemetry.install_global = true;
    let manager = TelemetryManager::initialize(&settings).unwrap();
    opentelemetry::global::tracer("user-code").in_span("manual span", |_| {});
    manager.force_flush(Duration::from_secs(10)).await.unwrap();
    let span = collector.find_span("manual span").expect("the global tracer's span arrives");
    assert_eq!(span.scope_name, "user-code");
    manager.shutdown().await;
}

#[actix_rt::test]
async fn insecure_false_speaks_tls_even_to_an_http_endpoint() {
    // The receiver speaks plain HTTP/2: a TLS client cannot complete a handshake with it, so
    // nothing may arrive, and the failures are retryable (the collector may be fixed).
    let collector = TestCollector::start(Transport::Grpc);
    let mut settings = settings_for(&collector.endpoint(), Protocol::Grpc);
    settings.exporter.insecure = false;
    settings.metrics.otlp_export = false;
    settings.server.shutdown_timeout = Duration::from_millis(300);
    let manager = TelemetryManager::initialize(&settings).unwrap();
    record_spans(&manager, 2);
    let metrics = manager.pipeline().unwrap().self_metrics.clone();
    let failed = support::wait::wait_until_async(Duration::from_secs(10), || {
        let metrics = metrics.clone();
        async move { metrics.export_failures(Signal::Traces, FailureKind::Retryable).get() >= 1 }
    })
    .await;
    assert!(failed, "a TLS handshake against a plain-text receiver fails");
    assert_eq!(collector.span_count(), 0);
    let report = manager.pipeline().unwrap().check_health(Duration::from_secs(2)).await.unwrap();
    let last_error = report.components["exporter"].details["last_error"].to_string();
    // rustls's words for a peer that answered a ClientHello with plain text.
    assert!(last_error.contains("corrupt message"), "not a TLS failure: {last_error}");
    manager.shutdown().await;
}
