//! A full queue drops and counts at once, and the caller never waits: with capacity 8 and a
//! stalled receiver, 10 000 recordings return in bounded time and the dropped counters equal
//! exactly what was not delivered.

use std::time::{Duration, Instant};

use metamcp_telemetry::actors::self_metrics::{DropReason, Signal};
use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::Tracer as _;
use support::app::settings_for;
use support::{Behavior, TestCollector, Transport};

const RECORDINGS: u64 = 10_000;

#[actix_rt::test]
async fn ten_thousand_recordings_against_a_stalled_receiver_are_counted_to_the_item() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.set_behavior(Behavior::Stall);
    let mut settings = settings_for(&collector.endpoint(), Protocol::Grpc);
    settings.span_buffer.queue_capacity = 8;
    settings.span_buffer.max_batch_size = 8;
    settings.metrics.queue_capacity = 8;
    settings.metrics.otlp_export = false;
    settings.exporter.max_concurrent_exports = 1;
    settings.exporter.max_pending_batches = 2;
    settings.exporter.timeout = Duration::from_secs(1);
    let manager = TelemetryManager::initialize(&settings).unwrap();
    let tracer = manager.tracer().unwrap().clone();
    let pipeline = manager.pipeline().unwrap().clone();

    let started = Instant::now();
    for i in 0..RECORDINGS {
        tracer.in_span("work", |_| {});
        manager.record_request("GET", "/ok", 200, Duration::from_micros(i));
    }
    let elapsed = started.elapsed();
    // 20 000 calls that never wait: generous bound for a debug build on a loaded 2-core machine.
    assert!(elapsed < Duration::from_secs(5), "recording took {elapsed:?}");
    let span_drops_at_ingress = pipeline.self_metrics.dropped(Signal::Traces, DropReason::QueueFull).get();
    assert!(span_drops_at_ingress > 0, "a stalled receiver with capacity 8 must drop");

    // Release the receiver; everything not dropped must arrive.
    collector.set_behavior(Behavior::Accept);
    let metrics = pipeline.self_metrics.clone();
    let settled = support::wait::wait_until_async(Duration::from_secs(30), || {
        let metrics = metrics.clone();
        async move { metrics.exported(Signal::Traces).get() + metrics.dropped_total(Signal::Traces) == RECORDINGS }
    })
    .await;
    assert!(
        settled,
        "exported {} + dropped {:?} never reached {RECORDINGS}",
        metrics.exported(Signal::Traces).get(),
        metrics.dropped_by_reason(Signal::Traces)
    );
    manager.force_flush(Duration::from_secs(10)).await.unwrap();
    let received = collector.span_count() as u64;
    assert_eq!(received, metrics.exported(Signal::Traces).get(), "exported means received");
    assert_eq!(metrics.dropped_total(Signal::Traces), RECORDINGS - received, "every span not delivered is counted");

    // Metric events: what the aggregator folded plus what was dropped is exactly what was recorded.
    pipeline.drain_metrics(Duration::from_secs(5)).await;
    let folded = pipeline.service_metrics.requests_total.with_label_values(&["GET", "/ok", "200"]).get();
    let dropped = metrics.dropped(Signal::Metrics, DropReason::QueueFull).get();
    assert!(dropped > 0);
    assert_eq!(folded + dropped, RECORDINGS);
    manager.shutdown().await;
}
