//! Log records pushed through the pipeline's `LogIngress` reach a real OTLP receiver over gRPC
//! (`LogsService/Export`) and HTTP/protobuf (`/v1/logs`) with every field intact; while the
//! collector is down they are spooled (as `logs` rows of a SQLite spool) and delivered when it
//! returns; a full log queue drops and
//! counts to the record; a partial success is counted as a permanent drop.

use std::sync::Arc;
use std::time::Duration;

use metamcp_telemetry::actors::exporter::GetStatus;
use metamcp_telemetry::actors::log_buffer::{LogRecord, LogValue, Severity};
use metamcp_telemetry::actors::pipeline::{Pipeline, PipelineConfig};
use metamcp_telemetry::actors::self_metrics::{DropReason, Signal};
use metamcp_telemetry::actors::spool::Spool as _;
use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::spool::DbSpool;
use opentelemetry::KeyValue;
use support::{Behavior, TestCollector, Transport};

fn config(collector: &TestCollector) -> PipelineConfig {
    let mut config = PipelineConfig::new(metamcp_telemetry::catalogue::METAMCP);
    config.exporter.endpoint = collector.endpoint();
    config.exporter.protocol = match collector.transport() {
        Transport::Grpc => Protocol::Grpc,
        Transport::Http => Protocol::HttpProtobuf,
    };
    config.exporter.timeout = Duration::from_secs(2);
    config.exporter.retry.initial_interval = Duration::from_millis(50);
    config.exporter.retry.max_interval = Duration::from_millis(200);
    config.logs.flush_interval = Duration::from_millis(50);
    config.metrics.otlp_export = false;
    config.health.check_interval = Duration::from_millis(100);
    config
}

fn start(config: PipelineConfig) -> Pipeline {
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes([KeyValue::new("service.name", "logs-test")])
        .build();
    Pipeline::start(config, &resource, prometheus::Registry::new(), Vec::new()).expect("the pipeline starts")
}

/// Record `i` of a known workload: severities in turn, every other record in a trace, two scopes.
fn record(i: usize) -> LogRecord {
    let in_trace = i.is_multiple_of(2);
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
        observed_time_unix_nano: 1_700_000_000_000_000_500 + i as u64,
        severity: Severity::ALL[i % 5],
        body: LogValue::Str(format!("record {i}")),
        attributes: vec![
            ("index", LogValue::I64(i as i64)),
            ("mcp.method.name", LogValue::Static("tools/call")),
            ("success", LogValue::Bool(!i.is_multiple_of(3))),
            ("duration", LogValue::F64(0.25)),
        ],
        trace_id: if in_trace { [0xab; 16] } else { [0; 16] },
        span_id: if in_trace { (i as u64 + 1).to_be_bytes() } else { [0; 8] },
        trace_flags: u8::from(in_trace),
        scope: if i.is_multiple_of(4) { "metamcp_gateway::mcp" } else { "metamcp_telemetry::middleware" },
        event_name: i.is_multiple_of(10).then_some("mcp.access"),
    }
}

async fn records_arrive_intact(transport: Transport) {
    const RECORDS: usize = 100;
    let collector = TestCollector::start(transport);
    let pipeline = start(config(&collector));
    for i in 0..RECORDS {
        assert!(pipeline.log_ingress.submit(record(i)), "record {i} accepted");
    }
    let received = collector.wait_for_logs_async(RECORDS, Duration::from_secs(20)).await;
    assert_eq!(received.len(), RECORDS, "exactly once each over {transport}");
    for severity in Severity::ALL {
        let count = received.iter().filter(|r| r.severity_text() == severity.text()).count();
        assert_eq!(count, RECORDS / 5, "{severity:?} over {transport}");
    }
    for log in &received {
        let i = log.int_attr("index").expect("the index attribute") as usize;
        let sent = record(i);
        assert_eq!(log.body(), format!("record {i}"));
        assert_eq!(log.severity_number(), sent.severity.number());
        assert_eq!(log.scope_name, sent.scope);
        assert_eq!(log.resource_attr("service.name").as_deref(), Some("logs-test"));
        assert_eq!(log.attr("mcp.method.name").as_deref(), Some("tools/call"));
        assert_eq!(log.attr("success").as_deref(), Some(if !i.is_multiple_of(3) { "true" } else { "false" }));
        assert_eq!(log.record.time_unix_nano, sent.time_unix_nano);
        assert_eq!(log.record.observed_time_unix_nano, sent.observed_time_unix_nano);
        assert_eq!(log.event_name(), sent.event_name.unwrap_or(""));
        if i.is_multiple_of(2) {
            assert_eq!(log.trace_id_hex().as_deref(), Some("ab".repeat(16).as_str()));
            assert_eq!(log.span_id_hex(), Some(format!("{:016x}", i + 1)));
            assert_eq!(log.record.flags, 1);
        } else {
            assert_eq!((log.trace_id_hex(), log.span_id_hex(), log.record.flags), (None, None, 0));
        }
    }
    let metrics = pipeline.self_metrics.clone();
    let counted = support::wait::wait_until_async(Duration::from_secs(10), || {
        let metrics = metrics.clone();
        async move { metrics.exported(Signal::Logs).get() == RECORDS as u64 }
    })
    .await;
    assert!(counted, "exported {} of {RECORDS}", metrics.exported(Signal::Logs).get());
    assert_eq!(metrics.dropped_total(Signal::Logs), 0);
    let report = pipeline.check_health(Duration::from_secs(5)).await.expect("a health report");
    let component = &report.components["log_buffer"];
    assert_eq!(component.details["records_sent"], serde_json::json!(RECORDS));
    assert_eq!(report.components["exporter"].signals["logs"].exported, RECORDS as u64);
    let left = pipeline.shutdown(Duration::from_secs(5)).await;
    assert!(!left.timed_out);
}

#[actix_rt::test]
async fn log_records_reach_the_collector_over_grpc() {
    records_arrive_intact(Transport::Grpc).await;
}

#[actix_rt::test]
async fn log_records_reach_the_collector_over_http() {
    records_arrive_intact(Transport::Http).await;
}

#[actix_rt::test]
async fn log_records_are_spooled_while_the_collector_is_down_and_delivered_when_it_returns() {
    const RECORDS: u64 = 30;
    let mut collector = TestCollector::start(Transport::Grpc);
    collector.stop();
    let pipeline = start(config(&collector));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let durable = Arc::new(DbSpool::open(path.to_str().unwrap(), Duration::from_secs(5)).unwrap());
    pipeline.attach_spool(durable.clone());
    let exporter = pipeline.exporter.clone();
    let attached = support::wait::wait_until_async(Duration::from_secs(10), || {
        let exporter = exporter.clone();
        async move { exporter.send(GetStatus).await.is_ok_and(|status| status.spool.backend == "sqlite") }
    })
    .await;
    assert!(attached, "the SQLite spool is attached");
    let metrics = pipeline.self_metrics.clone();
    for i in 0..RECORDS as usize {
        assert!(pipeline.log_ingress.submit(record(i)));
    }
    // The rows become visible in the database before the exporter hears back from the write and
    // counts them: wait for both.
    let spooled = support::wait::wait_until_async(Duration::from_secs(20), || {
        let (durable, metrics) = (durable.clone(), metrics.clone());
        async move {
            durable.stats().is_ok_and(|stats| stats.items_of(Signal::Logs) == RECORDS)
                && metrics.spool().spooled[Signal::Logs as usize].get() == RECORDS
        }
    })
    .await;
    assert!(
        spooled,
        "in the database: {:?}; counted as spooled: {}",
        durable.stats(),
        metrics.spool().spooled[Signal::Logs as usize].get()
    );
    assert_eq!(metrics.spool().items[Signal::Logs as usize].get(), RECORDS as i64);
    assert_eq!(collector.log_record_count(), 0);

    collector.restart();
    let received = collector.wait_for_logs_async(RECORDS as usize, Duration::from_secs(30)).await;
    let mut indexes: Vec<i64> = received.iter().filter_map(|r| r.int_attr("index")).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..RECORDS as i64).collect::<Vec<_>>(), "each record once");
    let replayed = support::wait::wait_until_async(Duration::from_secs(10), || {
        let metrics = metrics.clone();
        async move {
            metrics.spool().replayed[Signal::Logs as usize].get() == RECORDS
                && metrics.spool().items[Signal::Logs as usize].get() == 0
        }
    })
    .await;
    assert!(replayed, "replayed {}", metrics.spool().replayed[Signal::Logs as usize].get());
    assert_eq!(durable.stats().unwrap().batches, 0, "the rows are gone once delivered");
    assert_eq!(metrics.dropped_total(Signal::Logs), 0, "{:?}", metrics.dropped_by_reason(Signal::Logs));
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn a_full_log_queue_drops_and_counts_exactly() {
    const SUBMITTED: u64 = 5_000;
    let collector = TestCollector::start(Transport::Http);
    let mut config = config(&collector);
    config.logs.queue_capacity = 16;
    config.logs.max_batch_size = 16;
    config.logs.flush_interval = Duration::from_secs(3600);
    let pipeline = start(config);
    let metrics = pipeline.self_metrics.clone();
    let accepted = (0..SUBMITTED as usize).filter(|&i| pipeline.log_ingress.submit(record(i))).count() as u64;
    let refused = SUBMITTED - accepted;
    assert!(refused > 0, "a queue of 16 refuses some of {SUBMITTED} records sent at once");
    assert_eq!(metrics.dropped(Signal::Logs, DropReason::QueueFull).get(), refused, "every refusal counted");

    pipeline.force_flush(Duration::from_secs(20)).await.expect("the accepted records are delivered");
    let received = collector.wait_for_logs_async(accepted as usize, Duration::from_secs(20)).await;
    assert_eq!(received.len() as u64, accepted, "what was accepted arrives, once");
    assert_eq!(metrics.exported(Signal::Logs).get(), accepted);
    assert_eq!(metrics.dropped_total(Signal::Logs), refused, "{:?}", metrics.dropped_by_reason(Signal::Logs));
    assert_eq!(metrics.dropped_total(Signal::Traces) + metrics.dropped_total(Signal::Metrics), 0);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn a_partial_success_for_logs_counts_the_rejected_records() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.set_behavior(Behavior::PartialSuccess { rejected: 3, message: "3 records refused".into() });
    let mut config = config(&collector);
    // One batch of ten, sent when full.
    config.logs.max_batch_size = 10;
    config.logs.flush_interval = Duration::from_secs(3600);
    let pipeline = start(config);
    for i in 0..10 {
        assert!(pipeline.log_ingress.submit(record(i)));
    }
    collector.wait_for_logs_async(10, Duration::from_secs(20)).await;
    let metrics = pipeline.self_metrics.clone();
    let counted = support::wait::wait_until_async(Duration::from_secs(10), || {
        let metrics = metrics.clone();
        async move { metrics.dropped(Signal::Logs, DropReason::ExportFailedPermanent).get() == 3 }
    })
    .await;
    assert!(counted, "{:?}", metrics.dropped_by_reason(Signal::Logs));
    assert_eq!(metrics.exported(Signal::Logs).get(), 7);
    pipeline.shutdown(Duration::from_secs(5)).await;
}
