//! The spans the span-encoding bench and the instruction-count example encode: a typical server
//! span of an actix-web request (10 attributes, remote parent, sampled), distinct ids per span,
//! one instrumentation scope, and the resource the service exports with.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;

/// The service's resource: name, version, instance and the SDK's own attributes.
pub fn resource() -> ResourceAttributesWithSchema {
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "metamcp-telemetry"),
            KeyValue::new("service.version", "0.1.0"),
            KeyValue::new("service.instance.id", "3f1c9a52-8d4e-4b7a-9c1e-5a2f7d8e9b10"),
            KeyValue::new("deployment.environment.name", "production"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.version", "0.33.1"),
        ])
        .build();
    ResourceAttributesWithSchema::from(&resource)
}

/// A server span as the middleware records it for `POST /metamcp/default/mcp`, with the route
/// and status the end of the request adds: 10 attributes.
pub fn server_span(index: u64) -> SpanData {
    let scope = InstrumentationScope::builder("metamcp-telemetry").with_version("0.1.0").build();
    let start = UNIX_EPOCH + Duration::from_nanos(1_767_225_600_000_000_000 + index * 1_000_000);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736 ^ u128::from(index)),
            SpanId::from(0x00f0_67aa_0ba9_02b7 ^ index),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(0x5377_8e4a_1b2c_3d4e ^ index),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: Cow::Borrowed("POST /metamcp/{namespace}/mcp"),
        start_time: start,
        end_time: start + Duration::from_micros(850),
        attributes: vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.path", "/metamcp/default/mcp"),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("network.protocol.version", "1.1"),
            KeyValue::new("client.address", "127.0.0.1"),
            KeyValue::new("user_agent.original", "python-httpx/0.28.1"),
            KeyValue::new("http.request.header.x-request-id", "01JH6Y8V3K4M5N6P7Q8R9S0T1U"),
            KeyValue::new("http.route", "/metamcp/{namespace}/mcp"),
            KeyValue::new("http.response.status_code", 200_i64),
            KeyValue::new("mcp.method.name", "tools/call"),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope,
    }
}

/// `count` server spans with distinct ids and times.
pub fn server_spans(count: usize) -> Vec<SpanData> {
    (0..count as u64).map(server_span).collect()
}
