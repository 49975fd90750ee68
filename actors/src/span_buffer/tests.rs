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
    let metrics = SelfMetrics::unregistered();
    let (ingress, rx, wake) = span_channel(config.queue_capacity, config.max_batch_size, metrics.clone());
    let exporter = Exporter::new(unreachable_exporter(), metrics.clone()).start();
    let resource = Arc::new(ResourceAttributesWithSchema::from(&opentelemetry_sdk::Resource::builder_empty().build()));
    let buffer = SpanBuffer::new(config, rx, wake, exporter, resource, metrics).start();
    let provider = SdkTracerProvider::builder().with_span_processor(ingress).build();
    (buffer, provider)
}

#[actix_rt::test]
async fn a_full_batch_leaves_at_once_not_at_the_next_tick() {
    let config =
        config::SpanBufferConfig { queue_capacity: 64, max_batch_size: 4, flush_interval: Duration::from_secs(3600) };
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
