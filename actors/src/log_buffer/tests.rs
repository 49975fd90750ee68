use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;

use super::*;
use crate::exporter::Exporter;
use crate::self_metrics::{DropReason, SelfMetrics, Signal};
use crate::test_support::{eventually, unreachable_exporter};

/// A record of `scope` with a message of `len` bytes.
pub(crate) fn record(scope: &'static str, len: usize) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        observed_time_unix_nano: 1_700_000_000_000_000_001,
        severity: Severity::Info,
        body: LogValue::Str("m".repeat(len)),
        attributes: vec![("mcp.method.name", LogValue::Static("tools/call")), ("attempt", LogValue::I64(2))],
        trace_id: [7; 16],
        span_id: [9; 8],
        trace_flags: 1,
        scope,
        event_name: None,
    }
}

fn start(config: LogBufferConfig) -> (actix::Addr<LogBuffer>, LogIngress, Arc<SelfMetrics>) {
    let metrics = SelfMetrics::unregistered();
    let (ingress, rx, wake, bytes) =
        log_channel(config.queue_capacity, config.queue_max_bytes as usize, config.max_batch_size, metrics.clone());
    let exporter = Exporter::new(unreachable_exporter(), metrics.clone()).start();
    let resource = Arc::new(ResourceAttributesWithSchema::from(&opentelemetry_sdk::Resource::builder_empty().build()));
    let buffer = LogBuffer::new(config, rx, bytes, wake, exporter, resource, metrics.clone()).start();
    (buffer, ingress, metrics)
}

#[test]
fn severities_map_to_the_otlp_numbers_and_texts() {
    let numbers: Vec<(i32, &str)> = Severity::ALL.iter().map(|s| (s.number(), s.text())).collect();
    assert_eq!(numbers, [(1, "TRACE"), (5, "DEBUG"), (9, "INFO"), (13, "WARN"), (17, "ERROR")]);
}

#[test]
fn a_full_queue_drops_and_counts_exactly_without_blocking() {
    let metrics = SelfMetrics::unregistered();
    let (ingress, rx, _wake, _bytes) = log_channel(10, 1 << 20, 4, metrics.clone());
    let accepted = (0..250).filter(|_| ingress.submit(record("app", 10))).count();
    assert_eq!(accepted, 10);
    assert_eq!(rx.len(), 10);
    assert_eq!(metrics.dropped(Signal::Logs, DropReason::QueueFull).get(), 240);
    assert_eq!(metrics.dropped_total(Signal::Traces) + metrics.dropped_total(Signal::Metrics), 0);
}

#[test]
fn the_byte_bound_drops_large_records_and_gives_the_bytes_back() {
    let metrics = SelfMetrics::unregistered();
    let one = estimated_size(&record("app", 10_000));
    let small = estimated_size(&record("app", 10));
    let (ingress, rx, _wake, bytes) = log_channel(100, 3 * one + small, 4, metrics.clone());
    let accepted = (0..5).filter(|_| ingress.submit(record("app", 10_000))).count();
    assert_eq!(accepted, 3, "three records of {one} bytes fit in {}", 3 * one + small);
    assert_eq!(metrics.dropped(Signal::Logs, DropReason::QueueFull).get(), 2);
    assert_eq!(bytes.used(), 3 * one);
    assert!(ingress.submit(record("app", 10)), "a small record still fits");
    // What the consumer takes out it gives back.
    let taken: usize = rx.try_iter().map(|r| estimated_size(&r)).sum();
    bytes.release(taken);
    assert_eq!(bytes.used(), 0);
}

#[test]
fn pipeline_events_are_recognised_by_target() {
    assert!(is_pipeline_event("metamcp_telemetry_actors"));
    assert!(is_pipeline_event("metamcp_telemetry_actors::internal_events"));
    assert!(is_pipeline_event("h2::proto::connection"));
    assert!(is_pipeline_event("tonic"));
    assert!(!is_pipeline_event("metamcp_telemetry_actorsx"));
    assert!(!is_pipeline_event("h2o::app"));
    assert!(!is_pipeline_event("metamcp_gateway::mcp"));
    assert!(!is_pipeline_event("metamcp_telemetry::middleware"));
    use crate::pipeline::is_pipeline_thread;
    assert!(is_pipeline_thread("mmcp-exporter") && is_pipeline_thread("mmcp-logbuffer"));
    assert!(!is_pipeline_thread("mmcp-db"), "an application thread with the prefix is not the pipeline's");
    assert!(!is_pipeline_thread("actix-rt|system:0|arbiter:0"));
}

#[test]
fn settings_name_the_logs_keys() {
    assert!(LogBufferConfig::default().validate().is_ok());
    let defaults = LogBufferConfig::default();
    assert_eq!((defaults.queue_capacity, defaults.max_batch_size), (2048, 512));
    assert_eq!(defaults.flush_interval, Duration::from_secs(1));
    let too_big = LogBufferConfig { max_batch_size: 4096, ..LogBufferConfig::default() };
    assert_eq!(too_big.validate().unwrap_err().key, "logs.max_batch_size");
    let empty = LogBufferConfig { queue_capacity: 0, ..LogBufferConfig::default() };
    assert_eq!(empty.validate().unwrap_err().key, "logs.queue_capacity");
    let tiny = LogBufferConfig { queue_max_bytes: 10, ..LogBufferConfig::default() };
    assert_eq!(tiny.validate().unwrap_err().key, "logs.queue_max_bytes");
    let instant = LogBufferConfig { flush_interval: Duration::ZERO, ..LogBufferConfig::default() };
    assert_eq!(instant.validate().unwrap_err().key, "logs.flush_interval");
}

#[actix_rt::test]
async fn a_full_batch_leaves_at_once_not_at_the_next_tick() {
    let config = LogBufferConfig {
        queue_capacity: 64,
        max_batch_size: 4,
        flush_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let (buffer, ingress, _metrics) = start(config);
    for _ in 0..9 {
        assert!(ingress.submit(record("app", 10)));
    }
    let sent = eventually(Duration::from_secs(5), || {
        let buffer = buffer.clone();
        async move { buffer.send(GetStatus).await.is_ok_and(|s| s.batches_sent == 2 && s.records_sent == 8) }
    })
    .await;
    assert!(sent, "two full batches of four leave without waiting an hour");
    let status = buffer.send(GetStatus).await.unwrap();
    assert_eq!(status.buffered + status.queue_depth, 1, "the ninth waits for the tick: {status:?}");
    buffer.send(SendBuffered).await.unwrap();
    let status = buffer.send(GetStatus).await.unwrap();
    assert_eq!((status.batches_sent, status.records_sent, status.buffered), (3, 9, 0));
}

#[actix_rt::test]
async fn a_partial_batch_leaves_at_the_interval() {
    let config = LogBufferConfig {
        queue_capacity: 64,
        max_batch_size: 64,
        flush_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let (buffer, ingress, _metrics) = start(config);
    let started = Instant::now();
    assert!(ingress.submit(record("app", 10)));
    let sent = eventually(Duration::from_secs(5), || {
        let buffer = buffer.clone();
        async move { buffer.send(GetStatus).await.is_ok_and(|s| s.records_sent == 1) }
    })
    .await;
    assert!(sent, "the lone record leaves at the tick ({:?})", started.elapsed());
}

/// The door goes wherever a logging layer goes: shared between threads, cloned per layer.
#[test]
fn the_log_door_is_clone_send_and_sync() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<LogIngress>();
    fn sendable<T: Send + 'static>() {}
    sendable::<LogRecord>();
}
