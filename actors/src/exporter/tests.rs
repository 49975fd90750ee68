use std::time::{Duration, Instant};

use actix::Actor;

use super::*;
use crate::self_metrics::{DropReason, FailureKind, SelfMetrics, Signal};
use crate::test_support::{eventually, unreachable_exporter};

fn batch(items: u64) -> ExportBatch {
    ExportBatch { signal: Signal::Traces, items, body: prost::bytes::Bytes::from_static(b"") }
}

#[actix_rt::test]
async fn unreachable_collector_is_retried_then_dropped_at_the_shutdown_deadline() {
    let metrics = SelfMetrics::unregistered();
    let exporter = Exporter::new(unreachable_exporter(), metrics.clone()).start();
    exporter.do_send(batch(5));
    exporter.do_send(batch(7));
    let failed = eventually(Duration::from_secs(5), || {
        let metrics = metrics.clone();
        async move { metrics.export_failures(Signal::Traces, FailureKind::Retryable).get() >= 2 }
    })
    .await;
    assert!(failed, "connection refused counts as a retryable failure");
    let status = exporter.send(GetStatus).await.unwrap();
    assert!(!status.collector_reachable);
    assert_eq!(metrics.collector_up().get(), 0);

    let report =
        exporter.send(Drain { deadline: Instant::now() + Duration::from_millis(300), give_up: true }).await.unwrap();
    assert_eq!(report.items_left, 12);
    assert_eq!(metrics.dropped(Signal::Traces, DropReason::ShutdownTimeout).get(), 12);
    assert_eq!(metrics.exported(Signal::Traces).get(), 0);
}

#[actix_rt::test]
async fn retries_disabled_drop_at_the_first_retryable_failure() {
    let metrics = SelfMetrics::unregistered();
    let mut config = unreachable_exporter();
    config.retry.enabled = false;
    let exporter = Exporter::new(config, metrics.clone()).start();
    exporter.do_send(batch(3));
    let dropped = eventually(Duration::from_secs(5), || {
        let metrics = metrics.clone();
        async move { metrics.dropped(Signal::Traces, DropReason::RetryExhausted).get() == 3 }
    })
    .await;
    assert!(dropped);
    let report =
        exporter.send(Drain { deadline: Instant::now() + Duration::from_secs(1), give_up: false }).await.unwrap();
    assert_eq!(report, DrainReport::default());
}

#[actix_rt::test]
async fn a_full_pending_queue_drops_the_oldest_batch() {
    let metrics = SelfMetrics::unregistered();
    let mut config = unreachable_exporter();
    config.max_pending_batches = 2;
    config.max_concurrent_exports = 1;
    config.retry.initial_interval = Duration::from_secs(60);
    config.retry.max_interval = Duration::from_secs(60);
    let exporter = Exporter::new(config, metrics.clone()).start();
    for items in [1, 2, 4, 8, 16] {
        exporter.do_send(batch(items));
    }
    let status = exporter.send(GetStatus).await.unwrap();
    assert!(status.pending_batches <= 2 + 1, "{status:?}");
    let dropped = metrics.dropped(Signal::Traces, DropReason::QueueFull).get();
    assert!(dropped > 0, "something must have made room");
    let report =
        exporter.send(Drain { deadline: Instant::now() + Duration::from_millis(200), give_up: true }).await.unwrap();
    assert_eq!(dropped + report.items_left, 31, "every item is either dropped for room or left at the deadline");
}
