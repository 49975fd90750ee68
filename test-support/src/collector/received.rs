//! What the [`TestCollector`](super::TestCollector) recorded, and the flattened views tests assert
//! on: [`ReceivedSpan`] (resource + scope + span) and [`ReceivedPoint`] (the latest value of one
//! metric series).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::Transport;

/// Which OTLP signal an export request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `TraceService/Export` or `POST /v1/traces`.
    Traces,
    /// `MetricsService/Export` or `POST /v1/metrics`.
    Metrics,
    /// `LogsService/Export` or `POST /v1/logs`.
    Logs,
}

/// One export call as it arrived, whatever its fate (recorded, failed, stalled, malformed).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// When the collector saw the request (after the body was read).
    pub at: Instant,
    /// Traces, metrics or logs.
    pub signal: Signal,
    /// The transport it came over.
    pub transport: Transport,
    /// Request headers (gRPC metadata for gRPC), names lower-case; binary values as `<binary>`.
    pub headers: Vec<(String, String)>,
}

impl RequestRecord {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Everything the collector recorded; handed to [`TestCollector::wait_for`](super::TestCollector::wait_for)
/// conditions and [`TestCollector::snapshot`](super::TestCollector::snapshot) while the lock is held.
#[derive(Debug, Default)]
pub struct Received {
    pub(super) trace_requests: Vec<ExportTraceServiceRequest>,
    pub(super) metric_requests: Vec<ExportMetricsServiceRequest>,
    pub(super) log_requests: Vec<ExportLogsServiceRequest>,
    pub(super) requests: Vec<RequestRecord>,
    pub(super) rejected: usize,
}

impl Received {
    /// Decoded trace export requests whose data was recorded, in arrival order.
    pub fn trace_requests(&self) -> &[ExportTraceServiceRequest] {
        &self.trace_requests
    }

    /// Decoded metric export requests whose data was recorded, in arrival order.
    pub fn metric_requests(&self) -> &[ExportMetricsServiceRequest] {
        &self.metric_requests
    }

    /// Every export call received, including rejected, stalled and malformed ones.
    pub fn requests(&self) -> &[RequestRecord] {
        &self.requests
    }

    /// Number of export calls received, including rejected ones.
    pub fn request_count(&self) -> usize {
        self.requests.len()
    }

    /// Number of export calls whose data was not recorded (failed, stalled or malformed).
    pub fn rejected_count(&self) -> usize {
        self.rejected
    }

    /// Number of spans recorded, without building [`ReceivedSpan`]s.
    pub fn span_count(&self) -> usize {
        self.trace_requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }

    /// All recorded spans, flattened, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for request in &self.trace_requests {
            for rs in &request.resource_spans {
                let resource = rs.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
                for ss in &rs.scope_spans {
                    let (scope_name, scope_version) =
                        ss.scope.as_ref().map(|s| (s.name.clone(), s.version.clone())).unwrap_or_default();
                    for span in &ss.spans {
                        out.push(ReceivedSpan::new(
                            span.clone(),
                            resource.clone(),
                            scope_name.clone(),
                            scope_version.clone(),
                        ));
                    }
                }
            }
        }
        out
    }

    /// Names of every metric seen in recorded requests, sorted and deduplicated.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .metric_requests
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The latest point of each series of metric `name`: one entry per distinct
    /// (resource, scope, attributes), holding the value from the most recent request that carried
    /// it. That is the current value for cumulative temporality; for delta it is only the last
    /// delta. Series appear in the order they were first seen.
    pub fn metric_points(&self, name: &str) -> Vec<ReceivedPoint> {
        let mut points: Vec<ReceivedPoint> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for request in &self.metric_requests {
            for rm in &request.resource_metrics {
                let resource = attr_map(rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default());
                for sm in &rm.scope_metrics {
                    let scope = sm.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    for m in sm.metrics.iter().filter(|m| m.name == name) {
                        for point in flatten_metric(m, &resource, &scope) {
                            let key = format!("{:?}|{}|{:?}", point.resource, scope, point.attributes);
                            match index.get(&key) {
                                Some(&i) => points[i] = point,
                                None => {
                                    index.insert(key, points.len());
                                    points.push(point);
                                }
                            }
                        }
                    }
                }
            }
        }
        points
    }
}

/// One recorded span with its resource and instrumentation scope.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Status code (`Unset` when the span carried no status).
    pub status_code: StatusCode,
    /// Status message.
    pub status_message: String,
    /// Names of the span's events, in order.
    pub events: Vec<String>,
    /// Instrumentation scope name.
    pub scope_name: String,
    /// Instrumentation scope version.
    pub scope_version: String,
    /// Resource attributes of the batch the span came in.
    pub resource: Vec<KeyValue>,
    /// The span exactly as decoded.
    pub span: Span,
}

impl ReceivedSpan {
    fn new(span: Span, resource: Vec<KeyValue>, scope_name: String, scope_version: String) -> Self {
        let (status_code, status_message) =
            span.status.as_ref().map(|s| (s.code(), s.message.clone())).unwrap_or((StatusCode::Unset, String::new()));
        ReceivedSpan {
            name: span.name.clone(),
            kind: span.kind(),
            status_code,
            status_message,
            events: span.events.iter().map(|e| e.name.clone()).collect(),
            scope_name,
            scope_version,
            resource,
            span,
        }
    }

    /// Trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// Span id as 16 lower-case hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Parent span id as hex, `None` for a root span.
    pub fn parent_span_id_hex(&self) -> Option<String> {
        (!self.span.parent_span_id.is_empty()).then(|| hex(&self.span.parent_span_id))
    }

    /// True when the span has no parent.
    pub fn is_root(&self) -> bool {
        self.span.parent_span_id.is_empty()
    }

    /// Span attribute `key` in string form, whatever its type (see [`any_value_string`]).
    pub fn attr(&self, key: &str) -> Option<String> {
        find(&self.span.attributes, key).map(any_value_string)
    }

    /// Span attribute `key` if it is an integer.
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        match find(&self.span.attributes, key)?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            _ => None,
        }
    }

    /// Span attribute `key` if it is a double.
    pub fn double_attr(&self, key: &str) -> Option<f64> {
        match find(&self.span.attributes, key)?.value.as_ref()? {
            any_value::Value::DoubleValue(d) => Some(*d),
            _ => None,
        }
    }

    /// Span attribute `key` if it is a boolean.
    pub fn bool_attr(&self, key: &str) -> Option<bool> {
        match find(&self.span.attributes, key)?.value.as_ref()? {
            any_value::Value::BoolValue(b) => Some(*b),
            _ => None,
        }
    }

    /// All span attributes in string form, sorted by key.
    pub fn attrs(&self) -> BTreeMap<String, String> {
        attr_map(&self.span.attributes)
    }

    /// Resource attribute `key` in string form.
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        find(&self.resource, key).map(any_value_string)
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<&Event> {
        self.span.events.iter().find(|e| e.name == name)
    }

    /// Attribute `key` of the first event named `event`, in string form.
    pub fn event_attr(&self, event: &str, key: &str) -> Option<String> {
        find(&self.event(event)?.attributes, key).map(any_value_string)
    }

    /// End minus start time (zero if the span ends before it starts).
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.span.end_time_unix_nano.saturating_sub(self.span.start_time_unix_nano))
    }
}

/// A number as carried by a Sum or Gauge point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// `as_int`.
    Int(i64),
    /// `as_double`.
    Double(f64),
}

impl Number {
    /// The value as `f64`.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Double(d) => d,
        }
    }
}

/// A histogram point's data.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramPoint {
    /// Number of observations.
    pub count: u64,
    /// Sum of observations, if sent.
    pub sum: Option<f64>,
    /// Per-bucket counts; one more than `explicit_bounds`.
    pub bucket_counts: Vec<u64>,
    /// Upper bounds of the buckets.
    pub explicit_bounds: Vec<f64>,
    /// Minimum observation, if sent.
    pub min: Option<f64>,
    /// Maximum observation, if sent.
    pub max: Option<f64>,
    /// Cumulative or delta.
    pub temporality: AggregationTemporality,
    /// The point's exemplars.
    pub exemplars: Vec<ReceivedExemplar>,
}

/// An exemplar of a histogram point.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedExemplar {
    /// The trace id as 32 hex digits.
    pub trace_id: String,
    /// The span id as 16 hex digits.
    pub span_id: String,
    /// The observed value (`as_double`, or `as_int` converted).
    pub value: Option<f64>,
    /// When it was observed.
    pub time_unix_nano: u64,
}

/// The value of one metric point, by metric type.
#[derive(Clone, Debug, PartialEq)]
pub enum PointValue {
    /// A Sum (counter or up-down counter).
    Sum {
        /// The value.
        value: Number,
        /// Whether the sum is monotonic.
        monotonic: bool,
        /// Cumulative or delta.
        temporality: AggregationTemporality,
    },
    /// A Gauge.
    Gauge {
        /// The value.
        value: Number,
    },
    /// An explicit-bucket Histogram.
    Histogram(HistogramPoint),
    /// An exponential histogram (only count and sum are kept).
    ExponentialHistogram {
        /// Number of observations.
        count: u64,
        /// Sum of observations, if sent.
        sum: Option<f64>,
    },
    /// A Summary (only count and sum are kept).
    Summary {
        /// Number of observations.
        count: u64,
        /// Sum of observations.
        sum: f64,
    },
}

/// The latest point of one metric series.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedPoint {
    /// Metric name.
    pub metric: String,
    /// Metric unit.
    pub unit: String,
    /// Point attributes in string form.
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes in string form.
    pub resource: BTreeMap<String, String>,
    /// Instrumentation scope name.
    pub scope: String,
    /// Point start time.
    pub start_time_unix_nano: u64,
    /// Point time.
    pub time_unix_nano: u64,
    /// The value.
    pub value: PointValue,
}

impl ReceivedPoint {
    /// Point attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// True when every `(key, value)` pair is among the point's attributes.
    pub fn has_attrs(&self, attrs: &[(&str, &str)]) -> bool {
        attrs.iter().all(|(k, v)| self.attr(k) == Some(*v))
    }

    /// The value of a Sum or Gauge point.
    pub fn value(&self) -> Option<f64> {
        match &self.value {
            PointValue::Sum { value, .. } | PointValue::Gauge { value } => Some(value.as_f64()),
            _ => None,
        }
    }

    /// The data of a Histogram point.
    pub fn histogram(&self) -> Option<&HistogramPoint> {
        match &self.value {
            PointValue::Histogram(h) => Some(h),
            _ => None,
        }
    }

    /// Observation count of a histogram or summary point.
    pub fn count(&self) -> Option<u64> {
        match &self.value {
            PointValue::Histogram(h) => Some(h.count),
            PointValue::ExponentialHistogram { count, .. } | PointValue::Summary { count, .. } => Some(*count),
            _ => None,
        }
    }

    /// Observation sum of a histogram or summary point.
    pub fn sum(&self) -> Option<f64> {
        match &self.value {
            PointValue::Histogram(h) => h.sum,
            PointValue::ExponentialHistogram { sum, .. } => *sum,
            PointValue::Summary { sum, .. } => Some(*sum),
            _ => None,
        }
    }
}

/// String form of an `AnyValue`: strings as-is, numbers and booleans via `Display`, bytes as hex,
/// arrays as `[a, b]`, key-value lists as `{k: v}`; an empty value as `""`.
pub fn any_value_string(value: &AnyValue) -> String {
    use any_value::Value;
    match &value.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(Value::ArrayValue(a)) => {
            format!("[{}]", a.values.iter().map(any_value_string).collect::<Vec<_>>().join(", "))
        }
        Some(Value::KvlistValue(kv)) => format!(
            "{{{}}}",
            kv.values
                .iter()
                .map(|kv| format!("{}: {}", kv.key, kv.value.as_ref().map(any_value_string).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(other) => format!("{other:?}"),
    }
}

/// Attributes as a sorted map of string forms.
pub fn attr_map(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(any_value_string).unwrap_or_default())).collect()
}

pub(super) fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key)?.value.as_ref()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn temporality(raw: i32) -> AggregationTemporality {
    AggregationTemporality::try_from(raw).unwrap_or(AggregationTemporality::Unspecified)
}

fn number(value: Option<&number_data_point::Value>) -> Number {
    match value {
        Some(number_data_point::Value::AsInt(i)) => Number::Int(*i),
        Some(number_data_point::Value::AsDouble(d)) => Number::Double(*d),
        None => Number::Double(f64::NAN),
    }
}

fn flatten_metric(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    resource: &BTreeMap<String, String>,
    scope: &str,
) -> Vec<ReceivedPoint> {
    let point = |attributes: &[KeyValue], start: u64, time: u64, value: PointValue| ReceivedPoint {
        metric: m.name.clone(),
        unit: m.unit.clone(),
        attributes: attr_map(attributes),
        resource: resource.clone(),
        scope: scope.to_string(),
        start_time_unix_nano: start,
        time_unix_nano: time,
        value,
    };
    match &m.data {
        None => Vec::new(),
        Some(metric::Data::Sum(sum)) => sum
            .data_points
            .iter()
            .map(|p| {
                point(
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    PointValue::Sum {
                        value: number(p.value.as_ref()),
                        monotonic: sum.is_monotonic,
                        temporality: temporality(sum.aggregation_temporality),
                    },
                )
            })
            .collect(),
        Some(metric::Data::Gauge(gauge)) => gauge
            .data_points
            .iter()
            .map(|p| {
                point(
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    PointValue::Gauge { value: number(p.value.as_ref()) },
                )
            })
            .collect(),
        Some(metric::Data::Histogram(h)) => h
            .data_points
            .iter()
            .map(|p| {
                point(
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    PointValue::Histogram(HistogramPoint {
                        count: p.count,
                        sum: p.sum,
                        bucket_counts: p.bucket_counts.clone(),
                        explicit_bounds: p.explicit_bounds.clone(),
                        min: p.min,
                        max: p.max,
                        temporality: temporality(h.aggregation_temporality),
                        exemplars: p
                            .exemplars
                            .iter()
                            .map(|e| ReceivedExemplar {
                                trace_id: hex(&e.trace_id),
                                span_id: hex(&e.span_id),
                                value: e.value.map(|v| match v {
                                    opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(d) => d,
                                    opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsInt(i) => i as f64,
                                }),
                                time_unix_nano: e.time_unix_nano,
                            })
                            .collect(),
                    }),
                )
            })
            .collect(),
        Some(metric::Data::ExponentialHistogram(h)) => h
            .data_points
            .iter()
            .map(|p| {
                point(
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    PointValue::ExponentialHistogram { count: p.count, sum: p.sum },
                )
            })
            .collect(),
        Some(metric::Data::Summary(s)) => s
            .data_points
            .iter()
            .map(|p| {
                point(
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    PointValue::Summary { count: p.count, sum: p.sum },
                )
            })
            .collect(),
    }
}
