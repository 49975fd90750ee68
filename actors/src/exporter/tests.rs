use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;

use super::*;
use crate::self_metrics::{DropReason, FailureKind, SelfMetrics, Signal};
use crate::spool::{MemorySpool, OverflowPolicy, Spool, SpoolConfig, WhenFull};
use crate::test_support::{eventually, unreachable_exporter};

fn batch(items: u64) -> ExportBatch {
    ExportBatch { signal: Signal::Traces, items, body: prost::bytes::Bytes::from_static(b"") }
}

fn sized(items: u64, bytes: usize) -> ExportBatch {
    ExportBatch { signal: Signal::Traces, items, body: prost::bytes::Bytes::from(vec![7u8; bytes]) }
}

/// The exporter behaviour before the spool: retry in memory, drop the oldest when full.
fn in_memory_only() -> crate::ExporterConfig {
    crate::ExporterConfig {
        when_full: WhenFull {
            traces: OverflowPolicy::DropOldest,
            metrics: OverflowPolicy::DropOldest,
            logs: OverflowPolicy::DropOldest,
        },
        ..unreachable_exporter()
    }
}

#[actix_rt::test]
async fn unreachable_collector_is_retried_then_dropped_at_the_shutdown_deadline() {
    let metrics = SelfMetrics::unregistered();
    let exporter = Exporter::new(in_memory_only(), metrics.clone()).start();
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
    let mut config = in_memory_only();
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

/// A collector that takes connections and never answers: an export to it stays in flight until
/// the exporter's timeout (60 s here), so a test decides which batch holds the export slot.
fn silent_collector() -> (std::net::TcpListener, crate::ExporterConfig) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = crate::ExporterConfig {
        endpoint: format!("http://{}", listener.local_addr().unwrap()),
        timeout: Duration::from_secs(60),
        ..in_memory_only()
    };
    (listener, config)
}

#[actix_rt::test]
async fn a_full_pending_queue_drops_the_oldest_batch() {
    let metrics = SelfMetrics::unregistered();
    let (_silent, mut config) = silent_collector();
    config.max_pending_batches = 2;
    config.max_concurrent_exports = 1;
    let exporter = Exporter::new(config, metrics.clone()).start();
    // The first batch takes the only export slot and keeps it; the next four queue for two places.
    for items in [1, 2, 4, 8, 16] {
        exporter.do_send(batch(items));
    }
    let status = exporter.send(GetStatus).await.unwrap();
    assert_eq!(status.in_flight, 1, "{status:?}");
    assert_eq!((status.pending_batches, status.pending_items), (2, 8 + 16), "the two newest wait: {status:?}");
    assert_eq!(metrics.dropped(Signal::Traces, DropReason::QueueFull).get(), 2 + 4, "the two oldest made room");
    let report =
        exporter.send(Drain { deadline: Instant::now() + Duration::from_millis(200), give_up: true }).await.unwrap();
    assert_eq!(report.items_left, 1 + 8 + 16, "the batch in flight and the two newest are left at the deadline");
    assert_eq!(metrics.dropped(Signal::Traces, DropReason::ShutdownTimeout).get(), 1 + 8 + 16);
}

/// A spool over memory that can be switched to failing like a database that went away.
#[derive(Debug, Default)]
struct FlakySpool {
    inner: MemorySpool,
    down: std::sync::atomic::AtomicBool,
    /// Milliseconds every append takes, like a database busy with a checkpoint.
    append_delay_ms: std::sync::atomic::AtomicU64,
}

impl FlakySpool {
    fn check(&self) -> Result<(), crate::spool::SpoolError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(crate::spool::SpoolError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

impl Spool for FlakySpool {
    fn kind(&self) -> &'static str {
        "sqlite"
    }
    fn append(
        &self,
        records: Vec<crate::spool::SpoolRecord>,
        max_bytes: u64,
    ) -> Result<Vec<crate::spool::Evicted>, crate::spool::SpoolError> {
        self.check()?;
        let delay = self.append_delay_ms.load(std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(delay));
        self.inner.append(records, max_bytes)
    }
    fn claim_oldest(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<crate::spool::SpooledBatch>, crate::spool::SpoolError> {
        self.check()?;
        self.inner.claim_oldest(limit, lease)
    }
    fn remove(&self, ids: &[i64]) -> Result<(), crate::spool::SpoolError> {
        self.check()?;
        self.inner.remove(ids)
    }
    fn release(&self, id: i64, attempts: u32) -> Result<(), crate::spool::SpoolError> {
        self.check()?;
        self.inner.release(id, attempts)
    }
    fn expire(&self, cutoff_unix_ms: i64) -> Result<Vec<crate::spool::Evicted>, crate::spool::SpoolError> {
        self.check()?;
        self.inner.expire(cutoff_unix_ms)
    }
    fn stats(&self) -> Result<crate::spool::SpoolStats, crate::spool::SpoolError> {
        self.check()?;
        self.inner.stats()
    }
}

/// A config whose probes of the dead collector are rare, so the spool's content stays put.
fn spooling_exporter() -> crate::ExporterConfig {
    let mut config = unreachable_exporter();
    config.retry.initial_interval = Duration::from_secs(60);
    config.retry.max_interval = Duration::from_secs(60);
    config
}

async fn spooled_items(exporter: &actix::Addr<Exporter>) -> u64 {
    exporter.send(GetStatus).await.map(|s| s.spool.items[Signal::Traces as usize]).unwrap_or(0)
}

#[actix_rt::test]
async fn an_unreachable_collector_sends_every_batch_to_the_durable_spool() {
    let metrics = SelfMetrics::unregistered();
    let durable = Arc::new(FlakySpool::default());
    let exporter = Exporter::new(spooling_exporter(), metrics.clone()).start();
    exporter.do_send(AttachSpool(durable.clone()));
    for items in [5, 7, 11, 13] {
        exporter.do_send(batch(items));
    }
    let spooled = eventually(Duration::from_secs(5), || {
        let exporter = exporter.clone();
        async move { spooled_items(&exporter).await == 36 }
    })
    .await;
    assert!(spooled, "all 36 items end up in the spool: {:?}", exporter.send(GetStatus).await.unwrap());
    let status = exporter.send(GetStatus).await.unwrap();
    assert_eq!((status.pending_batches, status.spool.backend, status.spool.fallback), (0, "sqlite", false));
    assert_eq!(durable.inner.stats().unwrap().items_of(Signal::Traces), 36);
    assert_eq!(metrics.spool().spooled[Signal::Traces as usize].get(), 36);
    assert_eq!(metrics.spool().items[Signal::Traces as usize].get(), 36);
    assert_eq!(metrics.dropped_total(Signal::Traces), 0);

    let report =
        exporter.send(Drain { deadline: Instant::now() + Duration::from_millis(200), give_up: true }).await.unwrap();
    assert_eq!(report, DrainReport::default(), "spooled is as good as delivered for a shutdown");
    assert_eq!(metrics.dropped_total(Signal::Traces), 0);
    assert_eq!(durable.inner.stats().unwrap().items_of(Signal::Traces), 36, "the spool keeps them for the restart");
}

#[actix_rt::test]
async fn a_failing_database_spool_falls_back_to_memory_and_catches_up_when_it_returns() {
    let metrics = SelfMetrics::unregistered();
    let durable = Arc::new(FlakySpool::default());
    durable.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let exporter = Exporter::new(spooling_exporter(), metrics.clone()).start();
    exporter.do_send(AttachSpool(durable.clone()));
    exporter.do_send(batch(4));
    exporter.do_send(batch(6));
    let fell_back = eventually(Duration::from_secs(5), || {
        let exporter = exporter.clone();
        async move {
            let status = exporter.send(GetStatus).await.unwrap();
            status.spool.fallback && status.spool.memory_batches == 2
        }
    })
    .await;
    assert!(fell_back, "{:?}", exporter.send(GetStatus).await.unwrap());
    assert_eq!(metrics.spool().fallback.get(), 1);
    assert!(exporter.send(GetStatus).await.unwrap().spool.error.unwrap().contains("connection refused"));

    durable.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let moved = eventually(Duration::from_secs(8), || {
        let durable = durable.clone();
        async move { durable.inner.stats().unwrap().items_of(Signal::Traces) == 10 }
    })
    .await;
    assert!(moved, "the periodic refresh moves memory batches to the database");
    // The database holds them before the refresh's answer reaches the exporter.
    let caught_up = eventually(Duration::from_secs(5), || {
        let exporter = exporter.clone();
        async move { !exporter.send(GetStatus).await.unwrap().spool.fallback }
    })
    .await;
    let status = exporter.send(GetStatus).await.unwrap();
    assert!(caught_up, "{status:?}");
    assert!(!status.spool.fallback);
    assert_eq!((status.spool.memory_batches, status.spool.items[Signal::Traces as usize]), (0, 10));
    assert_eq!(metrics.spool().fallback.get(), 0);
    assert_eq!(metrics.dropped_total(Signal::Traces), 0);
}

#[actix_rt::test]
async fn without_a_database_the_memory_spool_is_dropped_and_counted_at_shutdown() {
    let metrics = SelfMetrics::unregistered();
    let exporter = Exporter::new(spooling_exporter(), metrics.clone()).start();
    exporter.do_send(batch(3));
    exporter.do_send(batch(9));
    let spooled = eventually(Duration::from_secs(5), || {
        let exporter = exporter.clone();
        async move { spooled_items(&exporter).await == 12 }
    })
    .await;
    assert!(spooled);
    assert_eq!(exporter.send(GetStatus).await.unwrap().spool.backend, "memory");
    exporter.send(Drain { deadline: Instant::now() + Duration::from_millis(100), give_up: true }).await.unwrap();
    assert_eq!(metrics.dropped(Signal::Traces, DropReason::ShutdownTimeout).get(), 12);
    assert_eq!(metrics.spool().items[Signal::Traces as usize].get(), 0);
}

#[actix_rt::test]
async fn the_spool_bound_removes_the_oldest_batches_and_counts_them() {
    let metrics = SelfMetrics::unregistered();
    let spool = SpoolConfig { memory_max_bytes: 1 << 16, ..Default::default() };
    let exporter = Exporter::with_spool(spooling_exporter(), spool, metrics.clone()).start();
    // An empty batch of 1000 items finds the collector unreachable; from then on every batch goes
    // straight to the spool, in the order it arrives.
    exporter.do_send(batch(1000));
    let unreachable = eventually(Duration::from_secs(5), || {
        let exporter = exporter.clone();
        async move {
            let status = exporter.send(GetStatus).await.unwrap();
            !status.collector_reachable && status.spool.items[Signal::Traces as usize] == 1000
        }
    })
    .await;
    assert!(unreachable, "{:?}", exporter.send(GetStatus).await.unwrap());
    // Ten batches of 16 KiB, told apart by their item counts 1..=10, into a 64 KiB memory spool:
    // the empty one and the six oldest go, 7, 8, 9 and 10 stay.
    for items in 1..=10 {
        exporter.do_send(sized(items, 16 << 10));
    }
    // Answered after the ten batches (one mailbox, in order), each spooled as it was handled.
    let status = exporter.send(GetStatus).await.unwrap();
    assert_eq!(metrics.dropped(Signal::Traces, DropReason::SpoolFull).get(), 1000 + (1..=6).sum::<u64>());
    assert_eq!((status.spool.batches, status.spool.bytes), (4, 4 << 14));
    assert_eq!(status.spool.items[Signal::Traces as usize], 7 + 8 + 9 + 10, "the four newest are kept");
    assert_eq!(metrics.spool().items[Signal::Traces as usize].get(), 7 + 8 + 9 + 10);
}

#[actix_rt::test]
async fn drop_newest_refuses_the_arriving_batch_when_memory_is_full() {
    let metrics = SelfMetrics::unregistered();
    let mut config = spooling_exporter();
    config.when_full = WhenFull {
        traces: OverflowPolicy::DropNewest,
        metrics: OverflowPolicy::DropNewest,
        logs: OverflowPolicy::DropNewest,
    };
    config.max_pending_bytes = 64 << 10;
    config.max_concurrent_exports = 1;
    let exporter = Exporter::new(config, metrics.clone()).start();
    // 20 KiB each: three fit in 64 KiB (one in flight, two waiting), the rest are refused.
    for items in 1..=6 {
        exporter.do_send(sized(items, 20 << 10));
    }
    let status = exporter.send(GetStatus).await.unwrap();
    assert!(status.held_bytes <= 64 << 10, "{status:?}");
    assert_eq!(metrics.dropped(Signal::Traces, DropReason::QueueFull).get(), 4 + 5 + 6);
    assert_eq!(status.spool.batches, 0, "drop_newest never spools");
}

#[actix_rt::test]
async fn a_slow_database_spool_overflows_into_memory_and_catches_up_without_a_drop() {
    let metrics = SelfMetrics::unregistered();
    let durable = Arc::new(FlakySpool::default());
    durable.append_delay_ms.store(300, std::sync::atomic::Ordering::SeqCst);
    let mut config = spooling_exporter();
    // A 32 KiB write queue: three 16 KiB batches already overflow it while an append sleeps.
    config.max_pending_bytes = 64 << 10;
    let exporter = Exporter::new(config, metrics.clone()).start();
    exporter.do_send(AttachSpool(durable.clone()));
    for _ in 0..20 {
        exporter.do_send(sized(3, 16 << 10));
    }
    let overflowed = eventually(Duration::from_secs(5), || {
        let exporter = exporter.clone();
        async move { exporter.send(GetStatus).await.unwrap().spool.memory_batches > 0 }
    })
    .await;
    assert!(overflowed, "batches that do not fit in the write queue wait in the memory spool");
    durable.append_delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    let all_durable = eventually(Duration::from_secs(10), || {
        let durable = durable.clone();
        async move { durable.inner.stats().unwrap().items_of(Signal::Traces) == 60 }
    })
    .await;
    assert!(all_durable, "{:?}", exporter.send(GetStatus).await.unwrap());
    assert_eq!(metrics.dropped_total(Signal::Traces), 0);
    // The database holds them before the refresh's answer reaches the exporter.
    let memory_empty = eventually(Duration::from_secs(5), || {
        let exporter = exporter.clone();
        async move { exporter.send(GetStatus).await.unwrap().spool.memory_batches == 0 }
    })
    .await;
    assert!(memory_empty, "{:?}", exporter.send(GetStatus).await.unwrap());
    assert_eq!(metrics.dropped_total(Signal::Traces), 0);
}
