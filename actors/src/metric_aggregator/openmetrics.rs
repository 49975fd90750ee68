//! The registry in the OpenMetrics 1.0 text format, with exemplars on histogram bucket lines.
//!
//! The `prometheus` crate encodes the Prometheus text format 0.0.4 only; this writes OpenMetrics
//! from the same gathered families, in one pass over them (linear in the output):
//!
//! - a counter's family is named without `_total` (`# TYPE http_requests counter`) and its
//!   sample carries it (`http_requests_total{…} 12`); `_created` is not written;
//! - `le` values are canonical numbers (`0.005`, `1.0`, `1e+06`, `+Inf`), as the specification
//!   asks, and bucket lines carry the latest exemplar of their bucket when its trace may be
//!   referred to: `…_bucket{le="0.1",…} 12 # {trace_id="…",span_id="…"} 0.073 1733320000.123`;
//! - label values and help texts escape `\`, `"` and line feeds; untyped families are `unknown`;
//! - the exposition ends with `# EOF`.

use std::fmt::Write as _;

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

use super::exemplars::{Exemplar, ExemplarTable};
use crate::sampling::TraceDecisions;

/// The Content-Type of an OpenMetrics 1.0 text exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes `families` as OpenMetrics text, with the exemplars of `exemplars` whose traces
/// `decisions` lets us refer to.
pub fn encode(families: &[MetricFamily], exemplars: &ExemplarTable, decisions: &TraceDecisions) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let mut key = Vec::new();
    for family in families {
        let name = family.name();
        let (kind, base) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            MetricType::SUMMARY => ("summary", name),
            MetricType::UNTYPED => ("unknown", name),
        };
        let _ = writeln!(out, "# TYPE {base} {kind}");
        if !family.help().is_empty() {
            out.push_str("# HELP ");
            out.push_str(base);
            out.push(' ');
            escape_into(family.help(), &mut out);
            out.push('\n');
        }
        for metric in family.get_metric() {
            match family.get_field_type() {
                MetricType::COUNTER => {
                    sample(&mut out, base, "_total", metric, None, metric.get_counter().get_value());
                }
                MetricType::GAUGE => sample(&mut out, base, "", metric, None, metric.get_gauge().get_value()),
                // No collector of the `prometheus` crate produces untyped samples (its text
                // encoder refuses them): the family is declared, without samples.
                MetricType::UNTYPED => {}
                MetricType::SUMMARY => {
                    let summary = metric.get_summary();
                    for quantile in summary.get_quantile() {
                        let q = canonical(quantile.quantile());
                        sample(&mut out, base, "", metric, Some(("quantile", q.as_str())), quantile.value());
                    }
                    sample(&mut out, base, "_sum", metric, None, summary.sample_sum());
                    sample(&mut out, base, "_count", metric, None, summary.sample_count() as f64);
                }
                MetricType::HISTOGRAM => {
                    let slots = exemplars.find(name, metric.get_label(), &mut key);
                    histogram(&mut out, base, metric, slots, decisions);
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn histogram(
    out: &mut String,
    name: &str,
    metric: &Metric,
    slots: Option<&[Option<Exemplar>]>,
    decisions: &TraceDecisions,
) {
    let histogram = metric.get_histogram();
    let finite = histogram.get_bucket().iter().filter(|bucket| bucket.upper_bound().is_finite());
    // The slots follow the family's bounds, which are the registry's finite buckets.
    let slots = slots.filter(|slots| slots.len() == finite.clone().count() + 1);
    let exemplar_at = |index: usize| {
        slots.and_then(|slots| slots[index]).filter(|exemplar| decisions.may_refer_to(&exemplar.span.trace_id()))
    };
    let mut index = 0;
    for bucket in finite {
        let le = canonical(bucket.upper_bound());
        sample_line(out, name, "_bucket", metric, Some(("le", le.as_str())), bucket.cumulative_count() as f64);
        end_line(out, metric, exemplar_at(index));
        index += 1;
    }
    let count = histogram.get_sample_count() as f64;
    sample_line(out, name, "_bucket", metric, Some(("le", "+Inf")), count);
    end_line(out, metric, exemplar_at(index));
    sample(out, name, "_count", metric, None, count);
    sample(out, name, "_sum", metric, None, histogram.get_sample_sum());
}

/// One whole sample line.
fn sample(out: &mut String, name: &str, suffix: &str, metric: &Metric, extra: Option<(&str, &str)>, value: f64) {
    sample_line(out, name, suffix, metric, extra, value);
    end_line(out, metric, None);
}

/// A sample line up to its value (the caller ends it).
fn sample_line(out: &mut String, name: &str, suffix: &str, metric: &Metric, extra: Option<(&str, &str)>, value: f64) {
    out.push_str(name);
    out.push_str(suffix);
    labels(out, metric.get_label(), extra);
    out.push(' ');
    number(value, out);
}

/// The sample's timestamp if it has one, its exemplar if given, and the line feed.
fn end_line(out: &mut String, metric: &Metric, exemplar: Option<Exemplar>) {
    let timestamp_ms = metric.timestamp_ms();
    if timestamp_ms != 0 {
        let _ = write!(out, " {}.{:03}", timestamp_ms.div_euclid(1000), timestamp_ms.rem_euclid(1000));
    }
    if let Some(exemplar) = exemplar {
        out.push_str(" # {trace_id=\"");
        exemplar.span.write_trace_id_hex(out);
        out.push_str("\",span_id=\"");
        exemplar.span.write_span_id_hex(out);
        out.push_str("\"} ");
        float(exemplar.value, out);
        let seconds = exemplar.time_unix_nano / 1_000_000_000;
        let millis = exemplar.time_unix_nano % 1_000_000_000 / 1_000_000;
        let _ = write!(out, " {seconds}.{millis:03}");
    }
    out.push('\n');
}

fn labels(out: &mut String, pairs: &[LabelPair], extra: Option<(&str, &str)>) {
    if pairs.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in pairs.iter().map(|pair| (pair.name(), pair.value())).chain(extra) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        escape_into(value, out);
        out.push('"');
    }
    out.push('}');
}

/// Escapes a label value or help text: `\` → `\\`, `"` → `\"`, line feed → `\n`.
fn escape_into(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(at) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// A sample value: integers without a decimal point, other numbers as Rust writes them (no
/// exponent), and `NaN`, `+Inf`, `-Inf`.
fn number(value: f64, out: &mut String) {
    if !special(value, out) {
        let _ = write!(out, "{value}");
    }
}

/// An exemplar value, which is a float: always with a decimal point or an exponent.
fn float(value: f64, out: &mut String) {
    if !special(value, out) {
        let _ = write!(out, "{value:?}");
    }
}

fn special(value: f64, out: &mut String) -> bool {
    let text = if value.is_nan() {
        "NaN"
    } else if value == f64::INFINITY {
        "+Inf"
    } else if value == f64::NEG_INFINITY {
        "-Inf"
    } else {
        return false;
    };
    out.push_str(text);
    true
}

/// The canonical rendering of an `le` or `quantile` value: Go's shortest `%g` (an exponent below
/// 1e-4 and from 1e+06 on, at least two exponent digits) with `.0` added when it has neither a
/// decimal point nor an exponent.
pub fn canonical(value: f64) -> String {
    let mut out = String::new();
    if special(value, &mut out) {
        return out;
    }
    if value == 0.0 {
        return "0.0".to_owned();
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs());
    }
    let plain = format!("{value}");
    if plain.contains('.') {
        plain
    } else {
        plain + ".0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_ref::SpanRef;
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    #[test]
    fn canonical_numbers_follow_the_specification_examples() {
        let cases = [
            (0.0, "0.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.001, "0.001"),
            (0.005, "0.005"),
            (0.1, "0.1"),
            (0.95, "0.95"),
            (1.0, "1.0"),
            (1.7, "1.7"),
            (10.0, "10.0"),
            (300.0, "300.0"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1e10, "1e+10"),
            (1e-10, "1e-10"),
            (1.1e23, "1.1e+23"),
            (f64::INFINITY, "+Inf"),
        ];
        for (value, text) in cases {
            assert_eq!(canonical(value), text, "{value}");
        }
    }

    #[test]
    fn counters_histograms_escaping_and_exemplars_render_as_openmetrics() {
        let registry = Registry::new();
        let requests =
            IntCounterVec::new(Opts::new("app_requests_total", "Requests \"served\".\nAll."), &["route"]).unwrap();
        let duration =
            HistogramVec::new(HistogramOpts::new("app_seconds", "Duration.").buckets(vec![0.1, 1.0]), &["route"])
                .unwrap();
        registry.register(Box::new(requests.clone())).unwrap();
        registry.register(Box::new(duration.clone())).unwrap();
        requests.with_label_values(&["/a\\b\"c\n"]).inc_by(3);
        duration.with_label_values(&["/x"]).observe(0.0625);
        duration.with_label_values(&["/x"]).observe(4.0);
        let mut table = ExemplarTable::default();
        let family = table.add_family("app_seconds", &["route"], &[0.1, 1.0]);
        let span = SpanRef::new([0xab; 16], [0xcd; 8]).unwrap();
        table.record(
            family,
            [b"/x".as_slice()],
            Exemplar { value: 0.0625, span, time_unix_nano: 1_733_320_000_123_456_789 },
        );
        let kept = SpanRef::new([0x11; 16], [0x22; 8]).unwrap();
        table.record(family, [b"/x".as_slice()], Exemplar { value: 4.0, span: kept, time_unix_nano: 2_000_000_000 });
        let text = encode(&registry.gather(), &table, &TraceDecisions::head());
        let expected = "# TYPE app_requests counter\n\
# HELP app_requests Requests \\\"served\\\".\\nAll.\n\
app_requests_total{route=\"/a\\\\b\\\"c\\n\"} 3\n\
# TYPE app_seconds histogram\n\
# HELP app_seconds Duration.\n\
app_seconds_bucket{route=\"/x\",le=\"0.1\"} 1 # {trace_id=\"abababababababababababababababab\",span_id=\"cdcdcdcdcdcdcdcd\"} 0.0625 1733320000.123\n\
app_seconds_bucket{route=\"/x\",le=\"1.0\"} 1\n\
app_seconds_bucket{route=\"/x\",le=\"+Inf\"} 2 # {trace_id=\"11111111111111111111111111111111\",span_id=\"2222222222222222\"} 4.0 2.000\n\
app_seconds_count{route=\"/x\"} 2\n\
app_seconds_sum{route=\"/x\"} 4.0625\n\
# EOF\n";
        assert_eq!(text, expected);

        // Under tail sampling only kept traces are referred to.
        let decisions = TraceDecisions::tail(8);
        decisions.record_kept([0x11; 16]);
        let text = encode(&registry.gather(), &table, &decisions);
        assert!(!text.contains("abababab"), "{text}");
        assert!(text.contains("trace_id=\"11111111111111111111111111111111\""), "{text}");
    }
}
