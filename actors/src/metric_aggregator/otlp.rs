//! Prometheus registry → OTLP metrics request (cumulative temporality), so the OTLP export and
//! `/metrics` are two renderings of the same numbers. A labelled family with an OTLP identity is
//! exported under its OpenTelemetry instrument name, unit and attribute keys, and a label with an
//! empty value (an absent attribute) is left out of its data points. Histogram points carry the
//! latest exemplar of each bucket whose trace may be referred to, as `/metrics` does.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use prometheus::proto::{LabelPair, MetricFamily, MetricType};

use super::exemplars::ExemplarTable;
use super::labelled::{LabelledFamily, OtlpName};
use crate::sampling::TraceDecisions;

/// The instrumentation scope the metrics are exported under.
pub const SCOPE_NAME: &str = "metamcp-telemetry";

/// The exemplars histogram points carry, and which traces they may point at.
#[derive(Debug, Clone, Copy)]
pub struct Exemplars<'a> {
    /// The latest exemplar per bucket and series.
    pub table: &'a ExemplarTable,
    /// Which traces may be referred to.
    pub decisions: &'a TraceDecisions,
}

/// Builds one OTLP request from gathered families, renaming those `renames` gives an OTLP
/// identity, with the exemplars of `exemplars` on histogram points; returns it with its data
/// point count.
pub fn to_request(
    families: &[MetricFamily],
    renames: &[LabelledFamily],
    resource: &ResourceAttributesWithSchema,
    start_time_unix_nano: u64,
    now_unix_nano: u64,
    exemplars: Option<&Exemplars<'_>>,
) -> (ExportMetricsServiceRequest, u64) {
    let mut key = Vec::new();
    let mut points = 0u64;
    let metrics: Vec<Metric> = families
        .iter()
        .filter_map(|family| {
            let rename = renames
                .iter()
                .find(|r| r.family.name == family.name())
                .and_then(|r| r.otlp.map(|otlp| Rename { otlp, labels: r.family.labels }));
            let (data, count) =
                convert(family, rename.as_ref(), start_time_unix_nano, now_unix_nano, exemplars, &mut key)?;
            points += count;
            Some(Metric {
                name: rename.as_ref().map_or(family.name(), |r| r.otlp.name).to_owned(),
                description: family.help().to_owned(),
                unit: rename.as_ref().map_or(unit_of(family.name()), |r| r.otlp.unit).to_owned(),
                data: Some(data),
                ..Default::default()
            })
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: resource.attributes.0.clone(), ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: resource.schema_url.clone().unwrap_or_default(),
        }],
    };
    (request, points)
}

fn unit_of(name: &str) -> &'static str {
    if name.ends_with("_seconds") || name.contains("_seconds_") {
        "s"
    } else if name.ends_with("_bytes") {
        "By"
    } else {
        ""
    }
}

/// The OTLP identity of one family and its Prometheus label names.
struct Rename {
    otlp: OtlpName,
    labels: &'static [&'static str],
}

impl Rename {
    fn key<'a>(&self, label: &'a str) -> &'a str {
        match self.labels.iter().position(|name| *name == label) {
            Some(index) => self.otlp.attributes[index],
            None => label,
        }
    }
}

fn attributes(labels: &[LabelPair], rename: Option<&Rename>) -> Vec<KeyValue> {
    labels
        .iter()
        .filter(|label| rename.is_none() || !label.value().is_empty())
        .map(|label| {
            let key = rename.map_or(label.name(), |r| r.key(label.name()));
            let integer =
                rename.filter(|r| r.otlp.integers.contains(&key)).and_then(|_| label.value().parse::<i64>().ok());
            let value = match integer {
                Some(number) => any_value::Value::IntValue(number),
                None => any_value::Value::StringValue(label.value().to_owned()),
            };
            KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
        })
        .collect()
}

/// The exemplars of one histogram series, bucket by bucket, that may be referred to.
fn point_exemplars(
    family: &MetricFamily,
    labels: &[LabelPair],
    exemplars: Option<&Exemplars<'_>>,
    key: &mut Vec<u8>,
) -> Vec<Exemplar> {
    let Some(Exemplars { table, decisions }) = exemplars else { return Vec::new() };
    let Some(slots) = table.find(family.name(), labels, key) else { return Vec::new() };
    slots
        .iter()
        .flatten()
        .filter(|kept| decisions.may_refer_to(&kept.span.trace_id()))
        .map(|kept| Exemplar {
            filtered_attributes: Vec::new(),
            time_unix_nano: kept.time_unix_nano,
            span_id: kept.span.span_id().to_vec(),
            trace_id: kept.span.trace_id().to_vec(),
            value: Some(exemplar::Value::AsDouble(kept.value)),
        })
        .collect()
}

fn convert(
    family: &MetricFamily,
    rename: Option<&Rename>,
    start: u64,
    now: u64,
    exemplars: Option<&Exemplars<'_>>,
    key: &mut Vec<u8>,
) -> Option<(metric::Data, u64)> {
    let series = family.get_metric();
    let count = series.len() as u64;
    let number = |labels: &[LabelPair], value: f64| NumberDataPoint {
        attributes: attributes(labels, rename),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    };
    let data = match family.get_field_type() {
        MetricType::COUNTER => metric::Data::Sum(Sum {
            data_points: series.iter().map(|m| number(m.get_label(), m.get_counter().get_value())).collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        MetricType::GAUGE => metric::Data::Gauge(Gauge {
            data_points: series.iter().map(|m| number(m.get_label(), m.get_gauge().get_value())).collect(),
        }),
        MetricType::HISTOGRAM => metric::Data::Histogram(Histogram {
            data_points: series
                .iter()
                .map(|m| {
                    let histogram = m.get_histogram();
                    let buckets = histogram.get_bucket();
                    let mut bucket_counts = Vec::with_capacity(buckets.len() + 1);
                    let mut explicit_bounds = Vec::with_capacity(buckets.len());
                    let mut previous = 0u64;
                    for bucket in buckets.iter().filter(|b| b.upper_bound().is_finite()) {
                        let cumulative = bucket.cumulative_count();
                        bucket_counts.push(cumulative.saturating_sub(previous));
                        explicit_bounds.push(bucket.upper_bound());
                        previous = cumulative;
                    }
                    bucket_counts.push(histogram.get_sample_count().saturating_sub(previous));
                    HistogramDataPoint {
                        attributes: attributes(m.get_label(), rename),
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count: histogram.get_sample_count(),
                        sum: Some(histogram.get_sample_sum()),
                        bucket_counts,
                        explicit_bounds,
                        exemplars: point_exemplars(family, m.get_label(), exemplars, key),
                        ..Default::default()
                    }
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        // Summaries and untyped families are not produced by this service.
        _ => return None,
    };
    Some((data, count))
}
