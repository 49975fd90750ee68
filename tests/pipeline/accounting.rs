//! The accounting property over the real actors and a real OTLP receiver: whatever the
//! interleaving of load, collector outages, permanent refusals and recoveries, and whatever the
//! bounds and `when_full` policies, once the pipeline settles
//! `exported + dropped + spooled == recorded`, and every exported span reached the collector.
//!
//! Scenarios are drawn from fixed seeds (printed on failure) so a failing one can be replayed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use metamcp_telemetry::actors::exporter::GetStatus;
use metamcp_telemetry::actors::self_metrics::Signal;
use metamcp_telemetry::actors::spool::{OverflowPolicy, SpoolConfig};
use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::Tracer as _;
use support::app::settings_for;
use support::collector::Behavior;
use support::wait::wait_until_async;
use support::{TestCollector, Transport};

const SEEDS: std::ops::RangeInclusive<u64> = 1..=8;

fn policy(rng: &mut fastrand::Rng) -> OverflowPolicy {
    [OverflowPolicy::DropNewest, OverflowPolicy::DropOldest, OverflowPolicy::Spool, OverflowPolicy::Spool]
        [rng.usize(..4)]
}

/// What the pipeline says it did with the spans, and what it still holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Books {
    exported: u64,
    dropped: u64,
    spooled: u64,
    held: u64,
}

async fn books(manager: &TelemetryManager) -> Books {
    let pipeline = manager.pipeline().unwrap();
    let metrics = &pipeline.self_metrics;
    let status = pipeline.exporter.send(GetStatus).await.unwrap();
    let buffer = pipeline.span_buffer.send(metamcp_telemetry::actors::span_buffer::GetStatus).await.unwrap();
    Books {
        exported: metrics.exported(Signal::Traces).get(),
        dropped: metrics.dropped_total(Signal::Traces),
        spooled: status.spool.items[Signal::Traces as usize],
        held: status.pending_items
            + status.in_flight as u64
            + status.spool.replaying as u64
            + buffer.queue_depth as u64
            + buffer.buffered as u64,
    }
}

async fn scenario(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let transport = if rng.bool() { Transport::Grpc } else { Transport::Http };
    let mut collector = TestCollector::start(transport);
    let protocol = match transport {
        Transport::Grpc => Protocol::Grpc,
        Transport::Http => Protocol::HttpProtobuf,
    };
    let mut settings = settings_for(&collector.endpoint(), protocol);
    settings.metrics.otlp_export = false;
    settings.span_buffer.queue_capacity = rng.usize(64..=1024);
    settings.span_buffer.max_batch_size = rng.usize(4..=64);
    settings.span_buffer.flush_interval = Duration::from_millis(20);
    settings.exporter.timeout = Duration::from_millis(500);
    settings.exporter.retry.initial_interval = Duration::from_millis(20);
    settings.exporter.retry.max_interval = Duration::from_millis(100);
    settings.exporter.retry.max_elapsed_time = Duration::from_millis(rng.u64(200..=5_000));
    settings.exporter.max_pending_batches = rng.usize(2..=16);
    settings.exporter.max_pending_bytes = rng.u64(64 << 10..=1 << 20);
    settings.exporter.unreachable_after = rng.u32(1..=3);
    settings.exporter.when_full.traces = policy(&mut rng);
    settings.spool = SpoolConfig {
        // Sometimes small enough that the spool's own bound drops batches.
        memory_max_bytes: if rng.bool() { 64 << 10 } else { 32 << 20 },
        replay_batches_per_second: 1_000,
        ..SpoolConfig::default()
    };
    let described = format!(
        "seed {seed}: {transport} queue {} batch {} pending {}/{}B unreachable_after {} retry budget {:?} when_full {} spool {}B",
        settings.span_buffer.queue_capacity,
        settings.span_buffer.max_batch_size,
        settings.exporter.max_pending_batches,
        settings.exporter.max_pending_bytes,
        settings.exporter.unreachable_after,
        settings.exporter.retry.max_elapsed_time,
        settings.exporter.when_full.traces,
        settings.spool.memory_max_bytes,
    );
    let manager = TelemetryManager::initialize(&settings).unwrap();
    let tracer = manager.tracer().unwrap().clone();
    let metrics = manager.pipeline().unwrap().self_metrics.clone();
    let mut recorded = 0u64;
    let mut steps = Vec::new();
    for _ in 0..rng.usize(8..=16) {
        match rng.u8(..10) {
            0..=4 => {
                let n = rng.u64(1..=400);
                let payload = "p".repeat(rng.usize(0..=2048));
                for i in 0..n {
                    tracer.in_span(format!("seed {seed} span {i}"), |cx| {
                        use opentelemetry::trace::TraceContextExt as _;
                        cx.span().set_attribute(opentelemetry::KeyValue::new("payload", payload.clone()));
                    });
                }
                recorded += n;
                steps.push(format!("record {n}×{}B", payload.len()));
            }
            5 | 6 if collector.is_running() => {
                collector.stop();
                // Let the exporter find out, sometimes.
                if rng.bool() {
                    let metrics = metrics.clone();
                    let noticed = wait_until_async(Duration::from_secs(3), move || {
                        let up = metrics.collector_up().get();
                        async move { up == 0 }
                    })
                    .await;
                    steps.push(format!("outage noticed: {noticed}"));
                }
                steps.push("collector down".into());
            }
            5..=7 if !collector.is_running() => {
                collector.restart();
                steps.push("collector up".into());
            }
            _ => {
                let n = rng.usize(1..=3);
                let refusal = match transport {
                    Transport::Grpc => Behavior::FailGrpc(tonic::Code::InvalidArgument),
                    Transport::Http => Behavior::FailHttp { status: 400, retry_after: None },
                };
                collector.fail_next(n, refusal);
                steps.push(format!("refuse next {n}"));
            }
        }
    }
    if !collector.is_running() {
        collector.restart();
    }
    collector.set_behavior(Behavior::Accept);

    // Settled: nothing held in memory and the books balance (a spool replay or a retry may take
    // a moment after the collector's return).
    let deadline = Instant::now() + Duration::from_secs(30);
    let final_books = loop {
        let b = books(&manager).await;
        if b.held == 0 && b.exported + b.dropped + b.spooled == recorded && b.spooled == 0 {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "{described}\nsteps {steps:?}\nnever settled: recorded {recorded}, {b:?}, by reason {:?}",
            metrics.dropped_by_reason(Signal::Traces)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        final_books.exported + final_books.dropped + final_books.spooled,
        recorded,
        "{described}\nsteps {steps:?}"
    );
    let reasons: Vec<(&str, u64)> = metrics
        .dropped_by_reason(Signal::Traces)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.as_str(), n))
        .collect();
    eprintln!(
        "{described}
  steps {steps:?}
  recorded {recorded}: exported {}, dropped {reasons:?}, spooled on the way {}",
        final_books.exported,
        metrics.spool().spooled[Signal::Traces as usize].get()
    );
    // Every span counted as exported reached the collector (duplicates count once).
    let spans = collector.spans();
    let unique: HashSet<String> = spans.iter().map(|s| s.span_id_hex()).collect();
    assert_eq!(unique.len() as u64, final_books.exported, "{described}\nsteps {steps:?}");
    manager.shutdown().await;
}

#[actix_rt::test]
async fn exported_plus_dropped_plus_spooled_equals_recorded_for_every_interleaving_tried() {
    for seed in SEEDS {
        scenario(seed).await;
    }
}
