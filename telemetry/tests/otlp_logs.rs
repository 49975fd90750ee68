//! `tracing` events as OTLP log records, in-process, through the subscriber the library installs
//! (`logging::init_with_otlp_sink`, `logs.level = "info"`) and a real pipeline, decoded by the
//! loopback receiver:
//!
//! - a known workload gives exact counts per severity (none below `info`), every record inside a
//!   span in that span's trace, with the spans' resource — over gRPC and over HTTP/protobuf;
//! - records emitted while the collector is down are spooled, then delivered once it is back;
//! - a full log queue drops, and `metamcp_telemetry_dropped_total{signal="logs",reason="queue_full"}`
//!   counts exactly the records that did not arrive.
//!
//! The subscriber is process-wide and so is the slot it sends to: the tests run one at a time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::settings::Settings;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use support::app::settings_for;
use support::prom::{scrape_blocking, sum, value};
use support::wait::assert_eventually;
use support::{TestCollector, Transport};

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// One test at a time: they share the global subscriber and its slot.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Installs the library's subscriber once for this binary, its stdout lines into a buffer.
fn install_subscriber() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let sink: metamcp_telemetry::logging::LogSink = Arc::new(Mutex::new(Vec::<u8>::new()));
        assert!(metamcp_telemetry::logging::init_with_otlp_sink(&Settings::default(), sink), "first subscriber");
    });
}

fn settings(collector: &TestCollector) -> Settings {
    let protocol = match collector.transport() {
        Transport::Grpc => Protocol::Grpc,
        Transport::Http => Protocol::HttpProtobuf,
    };
    let mut settings = settings_for(&collector.endpoint(), protocol);
    settings.logs.flush_interval = Duration::from_millis(50);
    settings
}

/// Every record the receiver decoded under scope (target) `scope`.
fn records(collector: &TestCollector, scope: &str) -> Vec<LogRecord> {
    collector
        .log_requests()
        .into_iter()
        .flat_map(|request| request.resource_logs)
        .flat_map(|resource| resource.scope_logs)
        .filter(|logs| logs.scope.as_ref().is_some_and(|s| s.name == scope))
        .flat_map(|logs| logs.log_records)
        .collect()
}

fn int_attr(record: &LogRecord, key: &str) -> Option<i64> {
    match record.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()).and_then(|v| v.value) {
        Some(Any::IntValue(value)) => Some(value),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Per round: 1 trace, 2 debug, 3 info, 2 warn, 1 error event of target `workload`.
const ROUNDS: usize = 10;

fn workload() {
    for round in 0..ROUNDS {
        tracing::trace!(target: "workload", round, "trace");
        for _ in 0..2 {
            tracing::debug!(target: "workload", round, "debug");
        }
        for _ in 0..3 {
            tracing::info!(target: "workload", round, "info");
        }
        for _ in 0..2 {
            tracing::warn!(target: "workload", round, "warn");
        }
        tracing::error!(target: "workload", round, "error");
    }
}

fn exact_counts_per_severity_in_the_spans_trace(transport: Transport) {
    let _serial = serial();
    install_subscriber();
    let collector = TestCollector::start(transport);
    let manager = TelemetryManager::initialize(&settings(&collector)).expect("telemetry starts");
    let cx = manager.child_context("log workload", Vec::new());
    {
        let _attached = cx.clone().attach();
        workload();
    }
    cx.span().end();
    // Outside any span: the same counts again, without a trace.
    workload();

    let expected = ROUNDS * 2 * (3 + 2 + 1);
    assert_eventually(WAIT, POLL, "every workload record and the span arrive", || {
        records(&collector, "workload").len() >= expected && collector.find_span("log workload").is_some()
    });
    let received = records(&collector, "workload");
    assert_eq!(received.len(), expected, "none twice, none below info");
    let count = |number: i32, text: &str| {
        received.iter().filter(|r| r.severity_number == number && r.severity_text == text).count()
    };
    assert_eq!(count(9, "INFO"), ROUNDS * 2 * 3);
    assert_eq!(count(13, "WARN"), ROUNDS * 2 * 2);
    assert_eq!(count(17, "ERROR"), ROUNDS * 2);

    let span = collector.find_span("log workload").expect("the span");
    let (inside, outside): (Vec<&LogRecord>, Vec<&LogRecord>) = received.iter().partition(|r| !r.trace_id.is_empty());
    assert_eq!(inside.len(), expected / 2);
    assert_eq!(outside.len(), expected / 2);
    for record in inside {
        assert_eq!(hex(&record.trace_id), span.trace_id_hex());
        assert_eq!(hex(&record.span_id), span.span_id_hex());
        assert_eq!(record.flags & 0xff, 1, "sampled");
    }
    for record in &received {
        assert!(record.time_unix_nano > 0 && record.observed_time_unix_nano >= record.time_unix_nano);
        assert!(int_attr(record, "round").is_some_and(|round| (0..ROUNDS as i64).contains(&round)));
    }
    let resource_names: BTreeSet<String> = collector
        .log_requests()
        .into_iter()
        .flat_map(|request| request.resource_logs)
        .filter_map(|logs| logs.resource)
        .flat_map(|resource| resource.attributes)
        .filter(|kv| kv.key == "service.name")
        .filter_map(|kv| kv.value.and_then(|v| v.value))
        .filter_map(|v| if let Any::StringValue(name) = v { Some(name) } else { None })
        .collect();
    assert_eq!(resource_names, BTreeSet::from([span.resource_attr("service.name").expect("span resource")]));

    actix_rt::System::new().block_on(manager.shutdown());
}

#[test]
fn over_grpc_a_workload_gives_exact_counts_per_severity_in_the_spans_trace() {
    exact_counts_per_severity_in_the_spans_trace(Transport::Grpc);
}

#[test]
fn over_http_a_workload_gives_exact_counts_per_severity_in_the_spans_trace() {
    exact_counts_per_severity_in_the_spans_trace(Transport::Http);
}

#[test]
fn records_emitted_while_the_collector_is_down_are_spooled_then_delivered() {
    const RECORDS: i64 = 40;
    let _serial = serial();
    install_subscriber();
    let mut collector = TestCollector::start(Transport::Grpc);
    collector.stop();
    let manager = TelemetryManager::initialize(&settings(&collector)).expect("telemetry starts");
    let metrics = format!("http://{}/metrics", manager.metrics_addr().expect("a metrics listener"));
    for seq in 0..RECORDS {
        tracing::info!(target: "spooled", seq, "while the collector is down");
    }
    assert_eventually(WAIT, POLL, "the log batches are spooled", || {
        value(&scrape_blocking(&metrics), "metamcp_telemetry_spooled_total", &[("signal", "logs")])
            .is_some_and(|spooled| spooled >= 1.0)
    });
    assert!(records(&collector, "spooled").is_empty());

    collector.restart();
    assert_eventually(WAIT, POLL, "every spooled record is delivered", || {
        let seen: BTreeSet<i64> = records(&collector, "spooled").iter().filter_map(|r| int_attr(r, "seq")).collect();
        seen.len() == RECORDS as usize
    });
    let seen: BTreeSet<i64> = records(&collector, "spooled").iter().filter_map(|r| int_attr(r, "seq")).collect();
    assert_eq!(seen, (0..RECORDS).collect::<BTreeSet<_>>());
    let dropped = sum(&scrape_blocking(&metrics), "metamcp_telemetry_dropped_total", &[("signal", "logs")]);
    assert_eq!(dropped.unwrap_or(0.0), 0.0, "nothing dropped on the way");
    actix_rt::System::new().block_on(manager.shutdown());
}

#[test]
fn a_full_log_queue_drops_and_counts_exactly() {
    const BURST: usize = 3000;
    let _serial = serial();
    install_subscriber();
    let collector = TestCollector::start(Transport::Grpc);
    let mut settings = settings(&collector);
    settings.logs.queue_capacity = 8;
    settings.logs.max_batch_size = 8;
    let manager = TelemetryManager::initialize(&settings).expect("telemetry starts");
    let metrics = format!("http://{}/metrics", manager.metrics_addr().expect("a metrics listener"));
    for seq in 0..BURST {
        tracing::info!(target: "burst", seq, "a burst past the queue");
    }
    let dropped = || {
        value(
            &scrape_blocking(&metrics),
            "metamcp_telemetry_dropped_total",
            &[("signal", "logs"), ("reason", "queue_full")],
        )
        .unwrap_or(0.0) as usize
    };
    let refused = dropped();
    assert!(refused > 0, "a queue of 8 took a burst of {BURST}");
    assert!(refused < BURST, "the log buffer drained some");
    // Delivery is at least once: a batch whose answer came late under load may arrive twice, so
    // the records are counted by their distinct `seq`.
    let delivered =
        || -> BTreeSet<i64> { records(&collector, "burst").iter().filter_map(|r| int_attr(r, "seq")).collect() };
    assert_eventually(WAIT, POLL, "every accepted record arrives", || delivered().len() + refused >= BURST);
    assert_eq!(delivered().len() + refused, BURST, "received + dropped = emitted");
    assert_eq!(dropped(), refused, "counted once, at the door");
    let all = sum(&scrape_blocking(&metrics), "metamcp_telemetry_dropped_total", &[("signal", "logs")]);
    assert_eq!(all.unwrap_or(0.0) as usize, refused, "no other reason");
    actix_rt::System::new().block_on(manager.shutdown());
}
