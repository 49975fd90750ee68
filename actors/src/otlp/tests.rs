//! The encoder against its oracle: the SDK conversion (`group_spans_by_resource_and_scope`, after
//! `limits::apply` when a value length limit is set) encoded by prost. Our bytes, decoded by
//! prost, must give exactly that message — repeated fields in the same order, floats bit for bit
//! (compared through `Debug`, which tells `-0.0` from `0.0` and shows NaN).

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, InstrumentationScope, Key, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope as ProtoScope, KeyValue as ProtoKeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status as ProtoStatus};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;
use proptest::prelude::*;
use prost::Message as _;

use super::{LimitCounts, TraceEncoder};
use crate::self_metrics::{LimitedItem, SelfMetrics};
use crate::span_buffer::limits;

/// What the SDK path produces from `spans`, and the limit counts `limits::apply` reports.
fn oracle(
    mut spans: Vec<SpanData>,
    resource: &ResourceAttributesWithSchema,
    max_value_length: Option<usize>,
) -> (ExportTraceServiceRequest, LimitCounts) {
    let mut counts = LimitCounts::default();
    if let Some(max) = max_value_length {
        let metrics = SelfMetrics::unregistered();
        counts.truncated = limits::apply(&mut spans, max, &metrics);
        counts.dropped_attributes = metrics.span_limit_dropped(LimitedItem::Attribute).get();
        counts.dropped_events = metrics.span_limit_dropped(LimitedItem::Event).get();
        counts.dropped_links = metrics.span_limit_dropped(LimitedItem::Link).get();
    }
    (ExportTraceServiceRequest { resource_spans: group_spans_by_resource_and_scope(spans, resource) }, counts)
}

/// Encodes with `encoder`, checks the result against the oracle, returns our bytes.
fn check(
    encoder: &mut TraceEncoder,
    spans: &[SpanData],
    resource: &ResourceAttributesWithSchema,
    max: Option<usize>,
) -> Vec<u8> {
    let encoded = encoder.encode(spans);
    let (expected, counts) = oracle(spans.to_vec(), resource, max);
    let decoded = ExportTraceServiceRequest::decode(encoded.body.as_slice()).expect("our bytes decode");
    assert_eq!(format!("{decoded:#?}"), format!("{expected:#?}"));
    if max.is_some() {
        assert_eq!(encoded.limits, counts);
    } else {
        assert_eq!(encoded.limits.truncated, 0);
    }
    // Stronger than the contract: fields come in prost's order with canonical lengths, so today
    // the bytes are prost's bytes too.
    assert!(encoded.body == expected.encode_to_vec(), "the bytes differ from prost's");
    encoded.body
}

fn resource_of(attributes: Vec<KeyValue>, schema_url: Option<&'static str>) -> ResourceAttributesWithSchema {
    let resource = match schema_url {
        Some(url) => Resource::builder_empty().with_schema_url(attributes, url).build(),
        None => Resource::builder_empty().with_attributes(attributes).build(),
    };
    ResourceAttributesWithSchema::from(&resource)
}

fn proto_attribute(key: &str, value: any_value::Value) -> ProtoKeyValue {
    ProtoKeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), key_strindex: 0 }
}

fn plain_span(id: u64, scope: InstrumentationScope) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from(id),
            TraceFlags::default(),
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: "span".into(),
        start_time: UNIX_EPOCH + Duration::from_nanos(1_000),
        end_time: UNIX_EPOCH + Duration::from_nanos(2_500),
        attributes: vec![],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope,
    }
}

/// Every field of a span, checked against a message written out by hand (not against the SDK).
#[test]
fn golden_a_span_with_every_field() {
    let scope = InstrumentationScope::builder("contract-lib")
        .with_version("2.1.0")
        .with_schema_url("https://example.com/scope/1")
        .with_attributes([KeyValue::new("scope.attr", true)])
        .build();
    let mut events = SpanEvents::default();
    events.events = vec![Event::new(
        "exception",
        UNIX_EPOCH + Duration::from_nanos(1_500),
        vec![KeyValue::new("handled", false)],
        3,
    )];
    events.dropped_count = 4;
    let mut links = SpanLinks::default();
    links.links = vec![Link::new(
        SpanContext::new(
            TraceId::from(0x2233_4455_6677_8899_aabb_ccdd_eeff_0011),
            SpanId::from(0x2030_4050_6070_8090),
            TraceFlags::SAMPLED,
            true,
            "vendor=link,other=x".parse().unwrap(),
        ),
        vec![KeyValue::new("link.attr", "linked")],
        5,
    )];
    links.dropped_count = 6;
    let span = SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00),
            SpanId::from(0x1020_3040_5060_7080),
            TraceFlags::SAMPLED,
            false,
            "vendor=span".parse().unwrap(),
        ),
        parent_span_id: SpanId::from(0x8877_6655_4433_2211),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: Cow::Borrowed("GET /items/{id}"),
        start_time: UNIX_EPOCH + Duration::from_nanos(1_000),
        end_time: UNIX_EPOCH + Duration::from_nanos(2_500),
        attributes: vec![
            KeyValue::new("str", "value"),
            KeyValue::new("bool", true),
            KeyValue::new("int", -42_i64),
            KeyValue::new("float", 3.5_f64),
            KeyValue::new("ints", Value::Array(Array::I64(vec![1, -1, i64::MAX]))),
            KeyValue::new("strs", Value::Array(Array::String(vec!["a".into(), "".into()]))),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![-0.0, f64::INFINITY]))),
            KeyValue::new("empty", Value::Array(Array::String(vec![]))),
        ],
        dropped_attributes_count: 2,
        events,
        links,
        status: Status::Error { description: "failed".into() },
        instrumentation_scope: scope,
    };
    let resource = resource_of(vec![KeyValue::new("service.name", "checkout")], Some("https://example.com/resource/1"));
    let array = |values: Vec<any_value::Value>| {
        any_value::Value::ArrayValue(ArrayValue {
            values: values.into_iter().map(|value| AnyValue { value: Some(value) }).collect(),
        })
    };
    use any_value::Value::{BoolValue, DoubleValue, IntValue, StringValue as Str};
    let expected = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(ProtoResource {
                attributes: vec![proto_attribute("service.name", Str("checkout".into()))],
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }),
            schema_url: "https://example.com/resource/1".into(),
            scope_spans: vec![ScopeSpans {
                scope: Some(ProtoScope {
                    name: "contract-lib".into(),
                    version: "2.1.0".into(),
                    attributes: vec![proto_attribute("scope.attr", BoolValue(true))],
                    dropped_attributes_count: 0,
                }),
                schema_url: "https://example.com/scope/1".into(),
                spans: vec![Span {
                    trace_id: 0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00_u128.to_be_bytes().to_vec(),
                    span_id: 0x1020_3040_5060_7080_u64.to_be_bytes().to_vec(),
                    trace_state: "vendor=span".into(),
                    parent_span_id: 0x8877_6655_4433_2211_u64.to_be_bytes().to_vec(),
                    // Sampled, "is_remote known", remote parent.
                    flags: 0x301,
                    name: "GET /items/{id}".into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: 1_000,
                    end_time_unix_nano: 2_500,
                    attributes: vec![
                        proto_attribute("str", Str("value".into())),
                        proto_attribute("bool", BoolValue(true)),
                        proto_attribute("int", IntValue(-42)),
                        proto_attribute("float", DoubleValue(3.5)),
                        proto_attribute("ints", array(vec![IntValue(1), IntValue(-1), IntValue(i64::MAX)])),
                        proto_attribute("strs", array(vec![Str("a".into()), Str(String::new())])),
                        proto_attribute("bools", array(vec![BoolValue(true), BoolValue(false)])),
                        proto_attribute("floats", array(vec![DoubleValue(-0.0), DoubleValue(f64::INFINITY)])),
                        proto_attribute("empty", array(vec![])),
                    ],
                    dropped_attributes_count: 2,
                    events: vec![span::Event {
                        time_unix_nano: 1_500,
                        name: "exception".into(),
                        attributes: vec![proto_attribute("handled", BoolValue(false))],
                        dropped_attributes_count: 3,
                    }],
                    dropped_events_count: 4,
                    links: vec![span::Link {
                        trace_id: 0x2233_4455_6677_8899_aabb_ccdd_eeff_0011_u128.to_be_bytes().to_vec(),
                        span_id: 0x2030_4050_6070_8090_u64.to_be_bytes().to_vec(),
                        trace_state: "vendor=link,other=x".into(),
                        attributes: vec![proto_attribute("link.attr", Str("linked".into()))],
                        dropped_attributes_count: 5,
                        flags: 0x301,
                    }],
                    dropped_links_count: 6,
                    status: Some(ProtoStatus { code: status::StatusCode::Error as i32, message: "failed".into() }),
                }],
            }],
        }],
    };
    let mut encoder = TraceEncoder::new(&resource);
    let encoded = encoder.encode(std::slice::from_ref(&span));
    let decoded = ExportTraceServiceRequest::decode(encoded.body.as_slice()).unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{expected:?}"));
    assert_eq!(
        encoded.limits,
        LimitCounts { truncated: 0, dropped_attributes: 10, dropped_events: 4, dropped_links: 6 }
    );
    // And the SDK path agrees.
    check(&mut encoder, &[span], &resource, None);
}

/// Defaults the proto3 encoding leaves out, and the members it must not leave out: a status on
/// every span, the resource and scope messages even when empty, an empty string value.
#[test]
fn golden_defaults_are_left_out_but_required_messages_are_not() {
    let resource = resource_of(vec![], None);
    let mut span = plain_span(7, InstrumentationScope::builder("").build());
    span.name = "".into();
    span.start_time = UNIX_EPOCH;
    span.end_time = UNIX_EPOCH - Duration::from_secs(5);
    span.attributes = vec![KeyValue::new("", ""), KeyValue::new("zero", 0_i64), KeyValue::new("no", false)];
    let mut encoder = TraceEncoder::new(&resource);
    let bytes = check(&mut encoder, std::slice::from_ref(&span), &resource, None);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    let resource_spans = &decoded.resource_spans[0];
    assert_eq!(resource_spans.resource, Some(ProtoResource::default()));
    assert_eq!(resource_spans.scope_spans[0].scope, Some(ProtoScope::default()));
    let span = &resource_spans.scope_spans[0].spans[0];
    assert_eq!(span.status, Some(ProtoStatus::default()));
    assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (0, 0));
    assert_eq!(span.attributes[0], proto_attribute("", any_value::Value::StringValue(String::new())));
    assert_eq!(span.attributes[1], proto_attribute("zero", any_value::Value::IntValue(0)));
    assert_eq!(span.attributes[2], proto_attribute("no", any_value::Value::BoolValue(false)));
}

/// An empty batch gives what the SDK gives: one `ResourceSpans` with the resource and no scopes.
#[test]
fn golden_an_empty_batch() {
    let resource = resource_of(vec![KeyValue::new("service.name", "svc")], Some("https://example.com/r"));
    let bytes = check(&mut TraceEncoder::new(&resource), &[], &resource, None);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.resource_spans.len(), 1);
    assert!(decoded.resource_spans[0].scope_spans.is_empty());
}

/// Scopes group as the SDK groups them — by `InstrumentationScope` equality, whatever the order
/// of their attributes — in order of first appearance, each group keeping its first scope's
/// attribute order; a scope that appears in a later batch with its attributes in another order
/// is written in that order, not from the cache.
#[test]
fn golden_scope_grouping_and_the_scope_cache() {
    let scope = |name: &'static str, attributes: Vec<KeyValue>| {
        InstrumentationScope::builder(name).with_version("1").with_attributes(attributes).build()
    };
    let ab = scope("lib", vec![KeyValue::new("a", 1_i64), KeyValue::new("b", 2_i64)]);
    let ba = scope("lib", vec![KeyValue::new("b", 2_i64), KeyValue::new("a", 1_i64)]);
    let other = scope("other", vec![]);
    let resource = resource_of(vec![KeyValue::new("service.name", "svc")], None);
    let mut encoder = TraceEncoder::new(&resource);
    let first = vec![
        plain_span(1, ab.clone()),
        plain_span(2, other.clone()),
        plain_span(3, ba.clone()),
        plain_span(4, other.clone()),
        plain_span(5, ab.clone()),
    ];
    let bytes = check(&mut encoder, &first, &resource, None);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    let groups: Vec<Vec<u8>> = decoded.resource_spans[0]
        .scope_spans
        .iter()
        .map(|group| group.spans.iter().map(|span| span.span_id[7]).collect())
        .collect();
    assert_eq!(groups, vec![vec![1, 3, 5], vec![2, 4]]);
    // The next batch starts with the other attribute order: the SDK writes it as it comes.
    check(&mut encoder, &[plain_span(6, ba.clone()), plain_span(7, ab.clone())], &resource, None);
    check(&mut encoder, &[plain_span(8, ab)], &resource, None);
}

/// More distinct scopes than the cache holds, over several batches.
#[test]
fn golden_many_scopes_over_many_batches() {
    let resource = resource_of(vec![KeyValue::new("service.name", "svc")], None);
    let mut encoder = TraceEncoder::new(&resource);
    for round in 0..4u64 {
        let spans: Vec<SpanData> = (0..300u64)
            .map(|i| {
                let scope = InstrumentationScope::builder(format!("scope-{}", (i * 7 + round) % 100))
                    .with_attributes([KeyValue::new("n", (i % 3) as i64)])
                    .build();
                plain_span(i, scope)
            })
            .collect();
        check(&mut encoder, &spans, &resource, None);
    }
}

/// A NaN in a scope attribute makes the scope unequal to itself: the SDK puts every span with it
/// in a group of its own, and so do we.
#[test]
fn golden_a_scope_unequal_to_itself() {
    let nan = InstrumentationScope::builder("nan").with_attributes([KeyValue::new("x", f64::NAN)]).build();
    let resource = resource_of(vec![], None);
    let spans = vec![plain_span(1, nan.clone()), plain_span(2, nan.clone()), plain_span(3, nan)];
    let bytes = check(&mut TraceEncoder::new(&resource), &spans, &resource, None);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.resource_spans[0].scope_spans.len(), 3);
}

/// Values past the limit are cut where `limits::apply` cuts them, and counted alike.
#[test]
fn golden_the_value_length_limit() {
    let resource = resource_of(vec![], None);
    let mut span = plain_span(1, InstrumentationScope::builder("lib").build());
    span.name = format!("tools/call {}", "n".repeat(100)).into();
    span.attributes = vec![
        KeyValue::new("long", "x".repeat(100)),
        KeyValue::new("list", Value::Array(Array::String(vec!["ü".repeat(20).into(), "ok".into()]))),
        KeyValue::new("key-is-not-cut-".repeat(4), 1_i64),
    ];
    span.status = Status::error("é".repeat(50));
    span.events.events = vec![Event::new("e".repeat(40), UNIX_EPOCH, vec![KeyValue::new("v", "y".repeat(17))], 1)];
    span.links.links = vec![Link::new(SpanContext::empty_context(), vec![KeyValue::new("v", "z".repeat(30))], 2)];
    let mut encoder = TraceEncoder::new(&resource).with_max_value_length(16);
    check(&mut encoder, std::slice::from_ref(&span), &resource, Some(16));
    let encoded = encoder.encode(&[span]);
    assert_eq!(encoded.limits.truncated, 7);
    assert_eq!(encoded.limits.dropped_attributes, 3);
}

/// The size guess moves between batches of very different spans; whatever it guessed, the
/// lengths come out right.
#[test]
fn golden_batches_of_tiny_then_huge_spans() {
    let resource = resource_of(vec![], None);
    let mut encoder = TraceEncoder::new(&resource);
    let scope = InstrumentationScope::builder("lib").build();
    let tiny: Vec<SpanData> = (0..50).map(|i| plain_span(i, scope.clone())).collect();
    let huge: Vec<SpanData> = (0..3)
        .map(|i| {
            let mut span = plain_span(i, scope.clone());
            span.attributes = vec![KeyValue::new("payload", "p".repeat(300_000))];
            span
        })
        .collect();
    for batch in [&tiny, &huge, &tiny, &huge, &huge, &tiny] {
        check(&mut encoder, batch, &resource, None);
    }
}

// ---- the property ----

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z._/{} ]{0,12}",
        2 => "\\PC{0,20}",
        1 => Just(String::new()),
        1 => ("\\PC{0,3}", 100usize..600).prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::I64),
        prop_oneof![Just(0i64), Just(-1), Just(i64::MIN), Just(i64::MAX)].prop_map(Value::I64),
        any::<f64>().prop_map(Value::F64),
        text().prop_map(|s| Value::String(s.into())),
    ];
    let array = prop_oneof![
        prop::collection::vec(any::<bool>(), 0..4).prop_map(|v| Value::Array(Array::Bool(v))),
        prop::collection::vec(any::<i64>(), 0..4).prop_map(|v| Value::Array(Array::I64(v))),
        prop::collection::vec(any::<f64>(), 0..4).prop_map(|v| Value::Array(Array::F64(v))),
        prop::collection::vec(text(), 0..4)
            .prop_map(|v| Value::Array(Array::String(v.into_iter().map(StringValue::from).collect()))),
    ];
    prop_oneof![4 => scalar, 1 => array]
}

fn attributes(max: usize) -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec((text(), value()).prop_map(|(k, v)| KeyValue::new(Key::new(k), v)), 0..max)
}

fn time() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        Just(UNIX_EPOCH),
        (1u64..1 << 40).prop_map(|s| UNIX_EPOCH - Duration::from_secs(s)),
        (0u64..4_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| UNIX_EPOCH + Duration::new(s, n)),
        // Past 2554 the nanoseconds no longer fit in 64 bits; the SDK conversion wraps them.
        (0u64..i64::MAX as u64, 0u32..1_000_000_000)
            .prop_map(|(s, n)| UNIX_EPOCH.checked_add(Duration::new(s, n)).unwrap_or(UNIX_EPOCH)),
        Just(UNIX_EPOCH.checked_add(Duration::new(i64::MAX as u64, 999_999_999)).unwrap_or(UNIX_EPOCH)),
    ]
}

fn trace_state() -> impl Strategy<Value = TraceState> {
    prop_oneof![
        Just(TraceState::default()),
        prop::collection::vec(("[a-z][a-z0-9_*/-]{0,8}", "[ -+--<>-~]{0,10}"), 0..4)
            .prop_map(|members| TraceState::from_key_value(members).unwrap_or_default()),
    ]
}

fn span_context() -> impl Strategy<Value = SpanContext> {
    (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>(), any::<bool>(), trace_state()).prop_map(
        |(trace, span, flags, remote, state)| {
            SpanContext::new(
                TraceId::from_bytes(trace),
                SpanId::from_bytes(span),
                TraceFlags::new(flags),
                remote,
                state,
            )
        },
    )
}

fn scope() -> impl Strategy<Value = InstrumentationScope> {
    (text(), prop::option::of(text()), prop::option::of(text()), attributes(3)).prop_map(
        |(name, version, schema_url, attributes)| {
            let mut builder = InstrumentationScope::builder(name).with_attributes(attributes);
            if let Some(version) = version {
                builder = builder.with_version(version);
            }
            if let Some(url) = schema_url {
                builder = builder.with_schema_url(url);
            }
            builder.build()
        },
    )
}

/// Scopes to draw from, with each multi-attribute scope also in reversed attribute order (equal
/// to it as the SDK compares scopes).
fn scopes() -> impl Strategy<Value = Vec<InstrumentationScope>> {
    prop::collection::vec(scope(), 1..6).prop_map(|scopes| {
        let mut all = scopes.clone();
        for scope in scopes {
            let attributes: Vec<KeyValue> = scope.attributes().cloned().collect();
            if attributes.len() > 1 {
                let mut builder = InstrumentationScope::builder(scope.name().to_owned())
                    .with_attributes(attributes.into_iter().rev());
                if let Some(version) = scope.version() {
                    builder = builder.with_version(version.to_owned());
                }
                if let Some(url) = scope.schema_url() {
                    builder = builder.with_schema_url(url.to_owned());
                }
                all.push(builder.build());
            }
        }
        all
    })
}

fn event() -> impl Strategy<Value = Event> {
    (text(), time(), attributes(4), any::<u32>())
        .prop_map(|(name, time, attributes, dropped)| Event::new(name, time, attributes, dropped))
}

fn link() -> impl Strategy<Value = Link> {
    (span_context(), attributes(4), any::<u32>())
        .prop_map(|(context, attributes, dropped)| Link::new(context, attributes, dropped))
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Unset), Just(Status::Ok), text().prop_map(Status::error)]
}

fn kind() -> impl Strategy<Value = SpanKind> {
    prop_oneof![
        Just(SpanKind::Internal),
        Just(SpanKind::Server),
        Just(SpanKind::Client),
        Just(SpanKind::Producer),
        Just(SpanKind::Consumer),
    ]
}

/// A span, with the index of its scope in the pool.
fn span() -> impl Strategy<Value = (usize, SpanData)> {
    let head = (span_context(), prop_oneof![Just(0u64), any::<u64>()], any::<bool>(), kind(), text(), time(), time());
    let body = (
        attributes(12),
        any::<u32>(),
        prop::collection::vec(event(), 0..3),
        any::<u32>(),
        prop::collection::vec(link(), 0..3),
        any::<u32>(),
        status(),
        any::<usize>(),
    );
    (head, body).prop_map(
        |(
            (context, parent, parent_remote, kind, name, start, end),
            (attributes, dropped_attributes, events, dropped_events, links, dropped_links, status, scope),
        )| {
            let span = SpanData {
                span_context: context,
                parent_span_id: SpanId::from(parent),
                parent_span_is_remote: parent_remote,
                span_kind: kind,
                name: name.into(),
                start_time: start,
                end_time: end,
                attributes,
                dropped_attributes_count: dropped_attributes,
                events: {
                    let mut all = SpanEvents::default();
                    all.events = events;
                    all.dropped_count = dropped_events;
                    all
                },
                links: {
                    let mut all = SpanLinks::default();
                    all.links = links;
                    all.dropped_count = dropped_links;
                    all
                },
                status,
                instrumentation_scope: InstrumentationScope::builder("placeholder").build(),
            };
            (scope, span)
        },
    )
}

fn batch(pool: &[InstrumentationScope], spans: Vec<(usize, SpanData)>) -> Vec<SpanData> {
    spans
        .into_iter()
        .map(|(scope, mut span)| {
            span.instrumentation_scope = pool[scope % pool.len()].clone();
            span
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Two batches through one encoder (the second meets the first's scopes in the cache), with
    /// or without a value length limit: each decodes to exactly what the SDK path builds.
    #[test]
    fn decodes_to_what_the_sdk_conversion_builds(
        resource_attributes in attributes(4),
        schema_url in prop::option::of(Just("https://opentelemetry.io/schemas/1.30.0")),
        pool in scopes(),
        first in prop::collection::vec(span(), 0..12),
        second in prop::collection::vec(span(), 0..12),
        max in prop_oneof![Just(None), (0usize..48).prop_map(Some)],
    ) {
        let resource = resource_of(resource_attributes, schema_url);
        let mut encoder = TraceEncoder::new(&resource);
        if let Some(max) = max {
            encoder = encoder.with_max_value_length(max);
        }
        check(&mut encoder, &batch(&pool, first), &resource, max);
        check(&mut encoder, &batch(&pool, second), &resource, max);
    }
}
