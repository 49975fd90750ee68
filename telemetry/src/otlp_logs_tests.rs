//! The layer against a real log channel: what an event becomes, what is masked, what is skipped,
//! and the early buffer of the global slot.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use metamcp_telemetry_actors::log_buffer::log_channel;
use metamcp_telemetry_actors::self_metrics::SelfMetrics;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

use super::*;

const TRACE: [u8; 16] = [0xab; 16];
const SPAN: [u8; 8] = [0x12; 8];

fn channel(capacity: usize) -> (LogIngress, Receiver<LogRecord>) {
    let (ingress, rx, _wake, _bytes) = log_channel(capacity, 1 << 20, capacity, SelfMetrics::unregistered());
    (ingress, rx)
}

/// Runs `emit` under a subscriber holding only the layer (filtered at `level`), and returns the
/// records it produced.
fn records_of(level: &str, emit: impl FnOnce()) -> Vec<LogRecord> {
    let (ingress, rx) = channel(1024);
    let layer = OtlpLogLayer::to_ingress(ingress).with_filter(tracing_subscriber::EnvFilter::new(level));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
    rx.try_iter().collect()
}

fn attr<'r>(record: &'r LogRecord, key: &str) -> Option<&'r LogValue> {
    record.attributes.iter().find(|(name, _)| *name == key).map(|(_, value)| value)
}

fn in_span(f: impl FnOnce()) {
    let span_context = SpanContext::new(
        TraceId::from_bytes(TRACE),
        SpanId::from_bytes(SPAN),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _attached = Context::new().with_remote_span_context(span_context).attach();
    f();
}

#[test]
fn an_event_becomes_a_record_with_body_fields_severity_scope_and_context() {
    let before = unix_nanos();
    let records = records_of("info", || {
        in_span(|| tracing::warn!(answer = 42, ratio = 0.5, ok = true, who = "ada", "hello {}", "world"));
        tracing::info!(big = u64::MAX, "outside any span");
    });
    assert_eq!(records.len(), 2, "{records:#?}");
    let record = &records[0];
    assert_eq!(record.severity, Severity::Warn);
    assert_eq!(record.body, LogValue::Str("hello world".to_owned()));
    assert_eq!(attr(record, "answer"), Some(&LogValue::I64(42)));
    assert_eq!(attr(record, "ratio"), Some(&LogValue::F64(0.5)));
    assert_eq!(attr(record, "ok"), Some(&LogValue::Bool(true)));
    assert_eq!(attr(record, "who"), Some(&LogValue::Str("ada".to_owned())));
    assert_eq!(attr(record, "message"), None, "the message is the body only");
    assert_eq!((record.trace_id, record.span_id, record.trace_flags), (TRACE, SPAN, 1));
    assert_eq!(record.scope, module_path!());
    assert_eq!(record.event_name, None);
    assert!(record.time_unix_nano >= before && record.time_unix_nano == record.observed_time_unix_nano);

    let outside = &records[1];
    assert_eq!((outside.trace_id, outside.span_id, outside.trace_flags), ([0; 16], [0; 8], 0));
    assert_eq!(attr(outside, "big"), Some(&LogValue::Str(u64::MAX.to_string())));
}

#[test]
fn the_filter_decides_and_named_events_keep_their_name() {
    let records = records_of("warn", || {
        tracing::debug!("not at warn");
        tracing::info!("not at warn either");
        tracing::warn!(name: "cache.miss", "named");
        tracing::error!(target: "custom_target", "an error");
    });
    let summary: Vec<(Severity, Option<&str>, &str)> =
        records.iter().map(|r| (r.severity, r.event_name, r.scope)).collect();
    assert_eq!(
        summary,
        vec![(Severity::Warn, Some("cache.miss"), module_path!()), (Severity::Error, None, "custom_target")]
    );
    assert_eq!(severity(Level::TRACE).number(), 1);
    assert_eq!(severity(Level::DEBUG).number(), 5);
}

#[test]
fn credentials_are_masked_by_field_name_and_in_urls() {
    let records = records_of("info", || {
        for _ in 0..2 {
            tracing::info!(
                api_key = "k-123",
                token = %"t-456",
                url = "postgres://app:pw-789@db/app",
                link = %"https://h/x?sig=s-000&page=2",
                "calling postgres://u:pw-111@db"
            );
        }
    });
    assert_eq!(records.len(), 2);
    for record in &records {
        let text = format!("{record:?}");
        for secret in ["k-123", "t-456", "pw-789", "s-000", "pw-111"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(attr(record, "api_key"), Some(&LogValue::Static(MASK)));
        assert_eq!(attr(record, "token"), Some(&LogValue::Static(MASK)));
        assert_eq!(attr(record, "url"), Some(&LogValue::Str("postgres://app:***@db/app".to_owned())));
        assert_eq!(record.body, LogValue::Str("calling postgres://u:***@db".to_owned()));
    }
}

#[test]
fn the_pipelines_own_events_are_never_records() {
    let records = records_of("trace", || {
        tracing::warn!(target: "metamcp_telemetry_actors::internal_events", "an export failed");
        tracing::debug!(target: "h2::codec", "frame");
        tracing::info!(target: "tonic::transport", "connected");
        tracing::info!("kept");
    });
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].body, LogValue::Str("kept".to_owned()));

    // Anything emitted on a pipeline thread is skipped, whatever its target; an application
    // thread with the same prefix is not the pipeline's.
    let (ingress, rx) = channel(16);
    let subscriber = Arc::new(tracing_subscriber::registry().with(OtlpLogLayer::to_ingress(ingress)));
    for (thread, message) in [("mmcp-exporter", "from the pipeline"), ("mmcp-db", "from the database thread")] {
        let for_thread = subscriber.clone();
        std::thread::Builder::new()
            .name(thread.to_owned())
            .spawn(move || tracing::subscriber::with_default(for_thread, || tracing::error!("{message}")))
            .expect("thread")
            .join()
            .expect("joined");
    }
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(target: "metamcp_telemetry::spool::pool", "spool database connection failed");
        tracing::error!("from a request thread");
    });
    let bodies: Vec<LogValue> = rx.try_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        vec![LogValue::Str("from the database thread".to_owned()), LogValue::Str("from a request thread".to_owned())]
    );
}

#[test]
fn a_full_queue_refuses_without_blocking() {
    let (ingress, rx) = channel(3);
    let layer = OtlpLogLayer::to_ingress(ingress);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..10 {
            tracing::info!(i, "burst");
        }
    });
    assert_eq!(rx.try_iter().count(), 3);
}

fn record(n: i64) -> LogRecord {
    LogRecord {
        time_unix_nano: 1,
        observed_time_unix_nano: 1,
        severity: Severity::Info,
        body: LogValue::I64(n),
        attributes: Vec::new(),
        trace_id: [0; 16],
        span_id: [0; 8],
        trace_flags: 0,
        scope: "test",
        event_name: None,
    }
}

#[test]
fn records_before_the_pipeline_wait_bounded_and_the_rest_are_counted() {
    let mut slot = Slot { ingress: None, early: Vec::new(), early_dropped: 0 };
    let total = EARLY_CAPACITY as i64 + 5;
    let kept = (0..total).filter(|&n| slot.submit(record(n))).count();
    assert_eq!(kept, EARLY_CAPACITY);
    let (ingress, rx) = channel(EARLY_CAPACITY * 2);
    let dropped = prometheus::IntCounter::new("dropped", "test").expect("counter");
    slot.attach(ingress, &dropped);
    assert_eq!(dropped.get(), 5);
    assert!(slot.submit(record(-1)), "after attach records go straight through");
    let received: Vec<LogValue> = rx.try_iter().map(|r| r.body).collect();
    assert_eq!(received.len(), EARLY_CAPACITY + 1);
    assert_eq!(received[0], LogValue::I64(0), "in order");
    assert_eq!(received[EARLY_CAPACITY], LogValue::I64(-1));
    assert!(slot.early.is_empty() && slot.early.capacity() == 0);
}
