use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::*;
use crate::exporter::Exporter;
use crate::ingress::span_channel;
use crate::self_metrics::SelfMetrics;
use crate::test_support::{eventually, unreachable_exporter};

fn start(config: config::SpanBufferConfig) -> (actix::Addr<SpanBuffer>, SdkTracerProvider) {
    let (buffer, provider, _) = start_with_limits(config, &limits::SpanLimitsConfig::default());
    (buffer, provider)
}

fn start_with_limits(
    config: config::SpanBufferConfig,
    limits: &limits::SpanLimitsConfig,
) -> (actix::Addr<SpanBuffer>, SdkTracerProvider, Arc<SelfMetrics>) {
    let metrics = SelfMetrics::unregistered();
    let (ingress, rx, wake, bytes) =
        span_channel(config.queue_capacity, config.queue_max_bytes as usize, config.max_batch_size, metrics.clone());
    let exporter = Exporter::new(unreachable_exporter(), metrics.clone()).start();
    let resource = Arc::new(ResourceAttributesWithSchema::from(&opentelemetry_sdk::Resource::builder_empty().build()));
    let buffer =
        SpanBuffer::new(config, rx, bytes, wake, exporter, resource, metrics.clone()).with_span_limits(limits).start();
    let provider =
        SdkTracerProvider::builder().with_span_processor(ingress).with_span_limits(limits.sdk_limits()).build();
    (buffer, provider, metrics)
}

/// The configured value length limit reaches the encoder, and what it cuts and what the SDK
/// dropped by count land in the self-metrics when the batch leaves.
#[actix_rt::test]
async fn the_span_limits_are_applied_and_counted_when_a_batch_is_encoded() {
    use crate::self_metrics::LimitedItem;
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry::KeyValue;
    let config = config::SpanBufferConfig {
        queue_capacity: 64,
        max_batch_size: 2,
        flush_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let limits = limits::SpanLimitsConfig {
        max_attribute_value_length: 16,
        max_attributes_per_span: 2,
        ..limits::SpanLimitsConfig::default()
    };
    let (buffer, provider, metrics) = start_with_limits(config, &limits);
    let tracer = provider.tracer("test");
    for _ in 0..2 {
        tracer.in_span("limited", |cx| {
            let span = cx.span();
            span.set_attribute(KeyValue::new("long", "x".repeat(100)));
            span.set_attribute(KeyValue::new("short", "fits"));
            span.set_attribute(KeyValue::new("dropped", 1_i64));
        });
    }
    let sent = eventually(Duration::from_secs(5), || {
        let buffer = buffer.clone();
        async move { buffer.send(GetStatus).await.unwrap().batches_sent == 1 }
    })
    .await;
    assert!(sent, "a full batch of two leaves at once");
    assert_eq!(metrics.attributes_truncated().get(), 2);
    assert_eq!(metrics.span_limit_dropped(LimitedItem::Attribute).get(), 2);
}

#[actix_rt::test]
async fn a_full_batch_leaves_at_once_not_at_the_next_tick() {
    let config = config::SpanBufferConfig {
        queue_capacity: 64,
        max_batch_size: 4,
        flush_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let (buffer, provider) = start(config);
    let tracer = provider.tracer("test");
    for i in 0..9 {
        tracer.in_span(format!("span {i}"), |_| {});
    }
    let sent_two = eventually(Duration::from_secs(5), || {
        let buffer = buffer.clone();
        async move { buffer.send(GetStatus).await.unwrap().batches_sent == 2 }
    })
    .await;
    assert!(sent_two, "two full batches should leave without waiting for the hour-long tick");
    let status = buffer.send(GetStatus).await.unwrap();
    assert_eq!(status.buffered + status.queue_depth, 1, "the ninth span waits for its batch");
}

#[actix_rt::test]
async fn a_partial_batch_waits_for_the_flush_interval() {
    let config = config::SpanBufferConfig {
        queue_capacity: 64,
        max_batch_size: 100,
        flush_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let (buffer, provider) = start(config);
    let tracer = provider.tracer("test");
    let started = Instant::now();
    tracer.in_span("lonely", |_| {});
    let sent = eventually(Duration::from_secs(5), || {
        let buffer = buffer.clone();
        async move { buffer.send(GetStatus).await.unwrap().batches_sent == 1 }
    })
    .await;
    assert!(sent);
    assert!(started.elapsed() >= Duration::from_millis(150), "left before the interval: {:?}", started.elapsed());
}

#[test]
fn the_span_queue_is_bounded_by_bytes_as_well_as_by_count() {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    let metrics = crate::self_metrics::SelfMetrics::unregistered();
    let (ingress, rx, _wake, bytes) = span_channel(1000, 64 << 10, 1000, metrics.clone());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_span_processor(ingress).build();
    let tracer = provider.tracer("test");
    let big = "x".repeat(10 << 10);
    let record = |n: usize| {
        for _ in 0..n {
            tracer.in_span("large", |cx| {
                use opentelemetry::trace::TraceContextExt as _;
                cx.span().set_attribute(opentelemetry::KeyValue::new("payload", big.clone()));
            });
        }
    };
    record(20);
    let queued = rx.len();
    assert!((5..=6).contains(&queued), "64 KiB hold six spans of 10 KiB, not {queued}");
    let dropped = metrics.dropped(crate::self_metrics::Signal::Traces, crate::self_metrics::DropReason::QueueFull);
    assert_eq!(dropped.get(), 20 - queued as u64, "every refused span is counted");
    assert!(bytes.used() <= 64 << 10 && bytes.used() > 50 << 10, "{}", bytes.used());
    // Taking the spans out gives their bytes back, and the queue accepts again.
    let taken: usize = rx.try_iter().map(|span| crate::ingress::estimated_size(&span)).sum();
    bytes.release(taken);
    assert_eq!(bytes.used(), 0);
    record(3);
    assert_eq!(rx.len(), 3);
}
