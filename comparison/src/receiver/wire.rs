//! Counting OTLP export requests by walking their protobuf wire form: spans per resource and
//! resources per metric export, each with the resource's `service.name`, borrowed from the
//! request's bytes. Nothing is decoded into structs and nothing is allocated, so the receiver
//! costs the cores it shares with the app under test as little as it can; only the fields on
//! the way to a count are read (a span is skipped by its length).
//!
//! Field numbers (opentelemetry-proto):
//! - `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }`
//! - `ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }`
//! - `ScopeSpans { repeated Span spans = 2; }`
//! - `ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1; }`
//! - `ResourceMetrics { Resource resource = 1; }`
//! - `Resource { repeated KeyValue attributes = 1; }`, `KeyValue { string key = 1; AnyValue value = 2; }`,
//!   `AnyValue { oneof value { string string_value = 1; … } }`

use std::fmt;

/// A request that is not well-formed protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError(&'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed protobuf: {}", self.0)
    }
}

impl std::error::Error for WireError {}

/// The `service.name` of a resource without one (or with a non-string one), as the struct-based
/// receiver reported it.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// One field of a message.
enum Field<'a> {
    /// Varint, 64-bit or 32-bit: nothing on the way to a count is one of these.
    Scalar,
    /// Length-delimited: a string, bytes or a nested message.
    Bytes(&'a [u8]),
}

/// The fields of one message, in wire order.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(message: &'a [u8]) -> Self {
        Self { rest: message }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError("truncated or overlong varint"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError("field runs past its message"));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Field<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let number = key >> 3;
            if number == 0 {
                return Err(WireError("field number 0"));
            }
            let field = match key & 7 {
                0 => self.varint().map(|_| Field::Scalar)?,
                1 => self.take(8).map(|_| Field::Scalar)?,
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| WireError("length too large"))?;
                    Field::Bytes(self.take(len)?)
                }
                5 => self.take(4).map(|_| Field::Scalar)?,
                _ => return Err(WireError("group or unknown wire type")),
            };
            Ok((number, field))
        })();
        if field.is_err() {
            self.rest = &[];
        }
        Some(field)
    }
}

/// The length-delimited occurrences of field `number` in `message`, in order.
fn each<'a>(
    message: &'a [u8],
    number: u64,
    mut f: impl FnMut(&'a [u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    for field in Fields::new(message) {
        match field? {
            (n, Field::Bytes(bytes)) if n == number => f(bytes)?,
            (n, Field::Scalar) if n == number => return Err(WireError("scalar where a message belongs")),
            _ => {}
        }
    }
    Ok(())
}

/// Occurrences of field `number` in `message` (each element of a repeated message field).
fn count(message: &[u8], number: u64) -> Result<u64, WireError> {
    let mut n = 0;
    each(message, number, |_| {
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// The string value of the first `service.name` attribute of the `Resource` in `parent`, decoded
/// as prost would: repeated occurrences of the resource merge (their attributes are read in
/// order); within a `KeyValue` the last key wins, and across its `AnyValue`s the last member of
/// the oneof.
fn service_name<'a>(parent: &'a [u8]) -> Result<Option<&'a str>, WireError> {
    let mut found: Option<Option<&'a str>> = None;
    each(parent, 1, |resource| {
        each(resource, 1, |key_value| {
            if found.is_some() {
                return Ok(());
            }
            let mut key: &[u8] = b"";
            let mut string = None;
            for field in Fields::new(key_value) {
                match field? {
                    (1, Field::Bytes(bytes)) => key = bytes,
                    (2, Field::Bytes(any_value)) => {
                        for member in Fields::new(any_value) {
                            string = match member? {
                                (1, Field::Bytes(bytes)) => {
                                    Some(std::str::from_utf8(bytes).map_err(|_| WireError("string not UTF-8"))?)
                                }
                                (1..=7, _) => None,
                                _ => string,
                            };
                        }
                    }
                    _ => {}
                }
            }
            if key == b"service.name" {
                found = Some(string);
            }
            Ok(())
        })
    })?;
    Ok(found.flatten())
}

/// Calls `f(service_name, spans)` for each `ResourceSpans` of an `ExportTraceServiceRequest`.
pub fn spans_by_service<'a>(request: &'a [u8], mut f: impl FnMut(&'a str, u64)) -> Result<(), WireError> {
    each(request, 1, |resource_spans| {
        let mut spans = 0;
        each(resource_spans, 2, |scope_spans| {
            spans += count(scope_spans, 2)?;
            Ok(())
        })?;
        f(service_name(resource_spans)?.unwrap_or(UNKNOWN_SERVICE), spans);
        Ok(())
    })
}

/// Calls `f(service_name)` for each `ResourceMetrics` of an `ExportMetricsServiceRequest`.
pub fn metric_resources<'a>(request: &'a [u8], mut f: impl FnMut(&'a str)) -> Result<(), WireError> {
    each(request, 1, |resource_metrics| {
        f(service_name(resource_metrics)?.unwrap_or(UNKNOWN_SERVICE));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message as _;

    /// The struct-based count: what the receiver computed before it walked the wire.
    fn decoded_service(resource: Option<&Resource>) -> String {
        resource
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned())
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    fn span(rng: &mut fastrand_lite::Rng) -> Span {
        let n = rng.below(12);
        Span {
            trace_id: vec![7; 16],
            span_id: vec![3; 8],
            parent_span_id: if rng.below(2) == 0 { vec![] } else { vec![1; 8] },
            name: "GET /items/{id}".repeat(rng.below(3) as usize),
            kind: rng.below(6) as i32,
            start_time_unix_nano: rng.next_u64(),
            end_time_unix_nano: rng.next_u64(),
            attributes: (0..n)
                .map(|i| match i % 5 {
                    0 => kv("http.route", Value::StringValue("/items/{id}".into())),
                    1 => kv("http.response.status_code", Value::IntValue(200)),
                    2 => kv("ratio", Value::DoubleValue(0.5)),
                    3 => kv("ok", Value::BoolValue(true)),
                    _ => kv("service.name", Value::StringValue("a span attribute, not the resource's".into())),
                })
                .collect(),
            events: (0..rng.below(3)).map(|_| Event { name: "e".into(), ..Default::default() }).collect(),
            links: (0..rng.below(2)).map(|_| Link { trace_id: vec![9; 16], ..Default::default() }).collect(),
            status: Some(Status { message: "ünïcode".into(), code: 2 }),
            ..Default::default()
        }
    }

    fn resource(rng: &mut fastrand_lite::Rng, name: &str) -> Option<Resource> {
        let mut attributes = vec![kv("host.name", Value::StringValue("h".into()))];
        match rng.below(6) {
            0 => return None,
            1 => {}
            2 => attributes.push(kv("service.name", Value::IntValue(4))),
            3 => attributes.insert(0, kv("service.name", Value::StringValue(name.into()))),
            _ => attributes.push(kv("service.name", Value::StringValue(name.into()))),
        }
        if rng.below(3) == 0 {
            attributes.push(kv("service.name", Value::StringValue("a later duplicate".into())));
        }
        Some(Resource { attributes, ..Default::default() })
    }

    /// A tiny deterministic generator (xorshift), so the test needs no extra crate.
    mod fastrand_lite {
        pub struct Rng(pub u64);
        impl Rng {
            pub fn next_u64(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            pub fn below(&mut self, n: u64) -> u64 {
                self.next_u64() % n
            }
        }
    }

    #[test]
    fn span_counts_match_the_decoded_request_exactly() {
        let mut rng = fastrand_lite::Rng(0x9e37_79b9_7f4a_7c15);
        let names = ["cmp-bare", "cmp-ours", "cmp-eco", "ß-ünïcode", ""];
        for _ in 0..500 {
            let request = ExportTraceServiceRequest {
                resource_spans: (0..rng.below(4))
                    .map(|_| ResourceSpans {
                        resource: {
                            let name = names[rng.below(names.len() as u64) as usize];
                            resource(&mut rng, name)
                        },
                        scope_spans: (0..rng.below(3))
                            .map(|_| ScopeSpans {
                                scope: Some(InstrumentationScope { name: "s".into(), ..Default::default() }),
                                spans: (0..rng.below(40)).map(|_| span(&mut rng)).collect(),
                                schema_url: String::new(),
                            })
                            .collect(),
                        schema_url: "https://opentelemetry.io/schemas/1.0".into(),
                    })
                    .collect(),
            };
            let expected: Vec<(String, u64)> = request
                .resource_spans
                .iter()
                .map(|rs| {
                    (decoded_service(rs.resource.as_ref()), rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum())
                })
                .collect();
            let bytes = request.encode_to_vec();
            let mut walked = Vec::new();
            spans_by_service(&bytes, |service, spans| walked.push((service.to_owned(), spans))).unwrap();
            assert_eq!(walked, expected);
        }
    }

    #[test]
    fn metric_resources_match_the_decoded_request() {
        let mut rng = fastrand_lite::Rng(42);
        for _ in 0..200 {
            let request = ExportMetricsServiceRequest {
                resource_metrics: (0..rng.below(4))
                    .map(|i| ResourceMetrics {
                        resource: resource(&mut rng, &format!("svc-{i}")),
                        ..Default::default()
                    })
                    .collect(),
            };
            let expected: Vec<String> =
                request.resource_metrics.iter().map(|rm| decoded_service(rm.resource.as_ref())).collect();
            let bytes = request.encode_to_vec();
            let mut walked = Vec::new();
            metric_resources(&bytes, |service| walked.push(service.to_owned())).unwrap();
            assert_eq!(walked, expected);
        }
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(&mut fastrand_lite::Rng(5), "x"),
                scope_spans: vec![ScopeSpans { spans: vec![Span::default(); 3], ..Default::default() }],
                schema_url: String::new(),
            }],
        };
        let bytes = request.encode_to_vec();
        for cut in 1..bytes.len() {
            let _ = spans_by_service(&bytes[..cut], |_, _| {});
        }
        assert!(spans_by_service(&[0x0a, 0x05, 0x01], |_, _| {}).is_err());
        assert!(spans_by_service(&[0x0b], |_, _| {}).is_err(), "groups are refused");
        assert_eq!(spans_by_service(&[], |_, _| panic!("no resource")), Ok(()));
    }
}
