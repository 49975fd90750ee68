//! The exporter against a collector that misbehaves on a real OTLP wire: permanent answers are
//! not retried and are counted as permanent; throttling delays (HTTP `Retry-After`, gRPC
//! `RetryInfo`) are honoured; a collector that goes away and comes back gets everything.

mod common;
mod support;

use std::time::Duration;

use common::settings_for;
use metamcp_telemetry::actors::self_metrics::{DropReason, FailureKind, Signal};
use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::Tracer as _;
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
    let down = support::wait::wait_until_async(Duration::from_secs(10), || {
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
