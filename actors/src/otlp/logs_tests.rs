//! The log encoder against its oracle: the `ExportLogsServiceRequest` built the straightforward
//! way with the opentelemetry-proto types, encoded by prost. Our bytes, decoded by prost, must
//! give exactly that message (floats compared bit for bit through `Debug`), and today they are
//! prost's bytes too.

use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue as ProtoKeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as ProtoRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use proptest::prelude::*;
use prost::Message as _;

use super::LogEncoder;
use crate::log_buffer::{LogRecord, LogValue, Severity};

fn any_value_of(value: &LogValue) -> AnyValue {
    let value = match value {
        LogValue::Str(text) => any_value::Value::StringValue(text.clone()),
        LogValue::Static(text) => any_value::Value::StringValue((*text).to_owned()),
        LogValue::Bool(flag) => any_value::Value::BoolValue(*flag),
        LogValue::I64(number) => any_value::Value::IntValue(*number),
        LogValue::F64(number) => any_value::Value::DoubleValue(*number),
    };
    AnyValue { value: Some(value) }
}

fn proto_record(record: &LogRecord) -> ProtoRecord {
    ProtoRecord {
        time_unix_nano: record.time_unix_nano,
        observed_time_unix_nano: record.observed_time_unix_nano,
        severity_number: record.severity.number(),
        severity_text: record.severity.text().to_owned(),
        body: Some(any_value_of(&record.body)),
        attributes: record
            .attributes
            .iter()
            .map(|(key, value)| ProtoKeyValue {
                key: (*key).to_owned(),
                value: Some(any_value_of(value)),
                ..Default::default()
            })
            .collect(),
        dropped_attributes_count: 0,
        flags: u32::from(record.trace_flags),
        trace_id: if record.trace_id == [0; 16] { Vec::new() } else { record.trace_id.to_vec() },
        span_id: if record.span_id == [0; 8] { Vec::new() } else { record.span_id.to_vec() },
        event_name: record.event_name.unwrap_or_default().to_owned(),
    }
}

/// The request built the straightforward way: one `ScopeLogs` per scope in order of first
/// appearance, records in batch order inside each.
fn oracle(records: &[LogRecord], resource: &ResourceAttributesWithSchema) -> ExportLogsServiceRequest {
    let mut scopes: Vec<ScopeLogs> = Vec::new();
    for record in records {
        let index = match scopes.iter().position(|s| s.scope.as_ref().is_some_and(|s| s.name == record.scope)) {
            Some(index) => index,
            None => {
                scopes.push(ScopeLogs {
                    scope: Some(InstrumentationScope { name: record.scope.to_owned(), ..Default::default() }),
                    log_records: Vec::new(),
                    schema_url: String::new(),
                });
                scopes.len() - 1
            }
        };
        scopes[index].log_records.push(proto_record(record));
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(ProtoResource {
                attributes: resource.attributes.0.clone(),
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }),
            scope_logs: scopes,
            schema_url: resource.schema_url.clone().unwrap_or_default(),
        }],
    }
}

fn check(encoder: &mut LogEncoder, records: &[LogRecord], resource: &ResourceAttributesWithSchema) {
    let body = encoder.encode(records);
    let expected = oracle(records, resource);
    let decoded = ExportLogsServiceRequest::decode(body.as_slice()).expect("our bytes decode");
    assert_eq!(format!("{decoded:#?}"), format!("{expected:#?}"));
    assert!(body == expected.encode_to_vec(), "the bytes differ from prost's");
}

fn resource(schema_url: Option<&'static str>) -> ResourceAttributesWithSchema {
    let attributes = vec![KeyValue::new("service.name", "metamcp"), KeyValue::new("service.instance.id", "i-1")];
    let resource = match schema_url {
        Some(url) => Resource::builder_empty().with_schema_url(attributes, url).build(),
        None => Resource::builder_empty().with_attributes(attributes).build(),
    };
    ResourceAttributesWithSchema::from(&resource)
}

const SCOPES: [&str; 4] = ["gateway::mcp", "telemetry::middleware", "app", ""];
const KEYS: [&str; 5] = ["mcp.method.name", "error.type", "duration", "jsonrpc.request.id", ""];

fn value() -> impl Strategy<Value = LogValue> {
    prop_oneof![
        ".{0,40}".prop_map(LogValue::Str),
        "x{0,300}".prop_map(LogValue::Str),
        prop::sample::select(vec!["", "tools/call", "ok"]).prop_map(LogValue::Static),
        any::<bool>().prop_map(LogValue::Bool),
        any::<i64>().prop_map(LogValue::I64),
        any::<f64>().prop_map(LogValue::F64),
    ]
}

fn record() -> impl Strategy<Value = LogRecord> {
    (
        (prop_oneof![Just(0u64), any::<u64>()], prop_oneof![Just(0u64), any::<u64>()], 0..5usize),
        value(),
        prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..6),
        (prop_oneof![Just([0u8; 16]), any::<[u8; 16]>()], prop_oneof![Just([0u8; 8]), any::<[u8; 8]>()], any::<u8>()),
        prop::sample::select(SCOPES.to_vec()),
        prop::option::of(prop::sample::select(vec!["mcp.access", "http.access", ""])),
    )
        .prop_map(
            |((time, observed, severity), body, attributes, (trace_id, span_id, flags), scope, event_name)| LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: observed,
                severity: Severity::ALL[severity],
                body,
                attributes,
                trace_id,
                span_id,
                trace_flags: flags,
                scope,
                event_name,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any batch, encoded twice by the same encoder (the second time from its caches), decodes
    /// to the oracle's message and equals prost's bytes.
    #[test]
    fn encoded_batches_decode_to_the_straightforward_message(
        batches in prop::collection::vec(prop::collection::vec(record(), 0..40), 1..4),
        schema in prop::option::of(Just("https://opentelemetry.io/schemas/1.26.0")),
    ) {
        let resource = resource(schema);
        let mut encoder = LogEncoder::new(&resource);
        for batch in &batches {
            check(&mut encoder, batch, &resource);
        }
    }
}

/// A scope string equal to a cached one but at another address joins the same group.
#[test]
fn equal_scopes_at_different_addresses_share_a_group() {
    let resource = resource(None);
    let mut encoder = LogEncoder::new(&resource);
    let owned: &'static str = Box::leak(String::from("app").into_boxed_str());
    let mut records = vec![crate::log_buffer::tests::record("app", 4), crate::log_buffer::tests::record(owned, 5)];
    records[1].severity = Severity::Error;
    check(&mut encoder, &records, &resource);
    let decoded = ExportLogsServiceRequest::decode(encoder.encode(&records).as_slice()).unwrap();
    assert_eq!(decoded.resource_logs[0].scope_logs.len(), 1);
    assert_eq!(decoded.resource_logs[0].scope_logs[0].log_records.len(), 2);
}

/// More scopes than the cache holds, in one batch and across batches.
#[test]
fn many_scopes_pass_the_cache_bound() {
    let resource = resource(None);
    let mut encoder = LogEncoder::new(&resource);
    let names: Vec<&'static str> = (0..300).map(|i| &*Box::leak(format!("scope{i}").into_boxed_str())).collect();
    let records: Vec<LogRecord> = names.iter().map(|name| crate::log_buffer::tests::record(name, 3)).collect();
    check(&mut encoder, &records, &resource);
    check(&mut encoder, &records[..10], &resource);
    check(&mut encoder, &records, &resource);
}
