//! Span limits (`[span_limits]`): how many attributes, events and links a span keeps (enforced
//! by the SDK's tracer provider when a span records them) and how long an attribute value may be
//! (enforced in the span buffer while the batch is encoded — off the request path — by the
//! [`TraceEncoder`](crate::otlp::TraceEncoder); [`apply`] makes the same cuts on the spans
//! themselves).
//!
//! Truncation cuts a string value, or each string of a string array, at the last UTF-8 character
//! boundary at or below the limit, as the OpenTelemetry specification's
//! `AttributeValueLengthLimit` says. Span and event names and a span's status message are cut the
//! same way: they can carry names a client chose (`tools/call {tool}`), so they get the bound
//! attribute values get. Every truncated string and every attribute, event or link the SDK
//! dropped by count is counted in a self-metric.

use opentelemetry::trace::Status;
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;
use serde::{Deserialize, Serialize};

use crate::otlp::LimitCounts;
use crate::self_metrics::{LimitedItem, SelfMetrics};

/// Default `span_limits.max_attributes_per_span` (the OpenTelemetry specification's 128).
pub const DEFAULT_MAX_ATTRIBUTES_PER_SPAN: u32 = 128;
/// Default `span_limits.max_events_per_span` (the specification's 128).
pub const DEFAULT_MAX_EVENTS_PER_SPAN: u32 = 128;
/// Default `span_limits.max_links_per_span` (the specification's 128).
pub const DEFAULT_MAX_LINKS_PER_SPAN: u32 = 128;
/// Default `span_limits.max_attributes_per_event` (the specification's 128).
pub const DEFAULT_MAX_ATTRIBUTES_PER_EVENT: u32 = 128;
/// Default `span_limits.max_attributes_per_link` (the specification's 128).
pub const DEFAULT_MAX_ATTRIBUTES_PER_LINK: u32 = 128;
/// Default `span_limits.max_attribute_value_length`, in bytes. The specification sets no
/// default (unlimited); 4 KiB keeps a stray payload from inflating every batch.
pub const DEFAULT_MAX_ATTRIBUTE_VALUE_LENGTH: usize = 4096;
/// Largest accepted count limit.
const MAX_COUNT_LIMIT: u32 = 65_536;
/// Largest accepted value length limit (1 MiB).
const MAX_VALUE_LENGTH: usize = 1 << 20;

/// Limits on what one span carries (`[span_limits]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanLimitsConfig {
    /// Attributes kept per span; further attributes are dropped and counted.
    pub max_attributes_per_span: u32,
    /// Events kept per span; further events are dropped and counted.
    pub max_events_per_span: u32,
    /// Links kept per span; further links are dropped and counted.
    pub max_links_per_span: u32,
    /// Attributes kept per span event.
    pub max_attributes_per_event: u32,
    /// Attributes kept per span link.
    pub max_attributes_per_link: u32,
    /// Longest string attribute value (and string array element), span or event name and span
    /// status message, in bytes; longer ones are cut at a UTF-8 character boundary before export
    /// and counted.
    pub max_attribute_value_length: usize,
}

impl Default for SpanLimitsConfig {
    fn default() -> Self {
        Self {
            max_attributes_per_span: DEFAULT_MAX_ATTRIBUTES_PER_SPAN,
            max_events_per_span: DEFAULT_MAX_EVENTS_PER_SPAN,
            max_links_per_span: DEFAULT_MAX_LINKS_PER_SPAN,
            max_attributes_per_event: DEFAULT_MAX_ATTRIBUTES_PER_EVENT,
            max_attributes_per_link: DEFAULT_MAX_ATTRIBUTES_PER_LINK,
            max_attribute_value_length: DEFAULT_MAX_ATTRIBUTE_VALUE_LENGTH,
        }
    }
}

impl SpanLimitsConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        let max = MAX_COUNT_LIMIT as usize;
        for (key, value) in [
            ("span_limits.max_attributes_per_span", self.max_attributes_per_span),
            ("span_limits.max_events_per_span", self.max_events_per_span),
            ("span_limits.max_links_per_span", self.max_links_per_span),
            ("span_limits.max_attributes_per_event", self.max_attributes_per_event),
            ("span_limits.max_attributes_per_link", self.max_attributes_per_link),
        ] {
            crate::config_check::range(key, value as usize, 0, max)?;
        }
        crate::config_check::range(
            "span_limits.max_attribute_value_length",
            self.max_attribute_value_length,
            16,
            MAX_VALUE_LENGTH,
        )
    }

    /// The count limits as the SDK's tracer provider takes them.
    pub fn sdk_limits(&self) -> opentelemetry_sdk::trace::SpanLimits {
        opentelemetry_sdk::trace::SpanLimits {
            max_events_per_span: self.max_events_per_span,
            max_attributes_per_span: self.max_attributes_per_span,
            max_links_per_span: self.max_links_per_span,
            max_attributes_per_event: self.max_attributes_per_event,
            max_attributes_per_link: self.max_attributes_per_link,
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary, or `None` when it fits.
fn cut(text: &str, max: usize) -> Option<String> {
    if text.len() <= max {
        return None;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_owned())
}

/// Truncates one attribute's value in place; returns how many strings were cut.
fn limit_value(value: &mut Value, max: usize) -> u64 {
    match value {
        Value::String(text) => match cut(text.as_str(), max) {
            Some(short) => {
                *text = StringValue::from(short);
                1
            }
            None => 0,
        },
        Value::Array(Array::String(items)) => {
            let mut cut_count = 0;
            for item in items.iter_mut() {
                if let Some(short) = cut(item.as_str(), max) {
                    *item = StringValue::from(short);
                    cut_count += 1;
                }
            }
            cut_count
        }
        _ => 0,
    }
}

fn limit_attributes(attributes: &mut [KeyValue], max: usize) -> u64 {
    attributes.iter_mut().map(|kv| limit_value(&mut kv.value, max)).sum()
}

/// Cuts a span or event name, or a status message, in place; returns 1 when it was cut.
fn limit_text(text: &mut std::borrow::Cow<'static, str>, max: usize) -> u64 {
    match cut(text, max) {
        Some(short) => {
            *text = short.into();
            1
        }
        None => 0,
    }
}

/// Cuts every string attribute value (span, event and link attributes, and string array
/// elements), every span and event name and every status message longer than
/// `max_value_length` bytes, and counts in `metrics` the strings cut and the attributes, events
/// and links the SDK dropped by count. Returns the number of strings cut.
pub fn apply(spans: &mut [SpanData], max_value_length: usize, metrics: &SelfMetrics) -> u64 {
    let (mut truncated, mut attributes, mut events, mut links) = (0u64, 0u64, 0u64, 0u64);
    for span in spans.iter_mut() {
        truncated += limit_text(&mut span.name, max_value_length);
        if let Status::Error { description } = &mut span.status {
            truncated += limit_text(description, max_value_length);
        }
        truncated += limit_attributes(&mut span.attributes, max_value_length);
        attributes += u64::from(span.dropped_attributes_count);
        events += u64::from(span.events.dropped_count);
        links += u64::from(span.links.dropped_count);
        for event in span.events.events.iter_mut() {
            truncated += limit_text(&mut event.name, max_value_length);
            truncated += limit_attributes(&mut event.attributes, max_value_length);
            attributes += u64::from(event.dropped_attributes_count);
        }
        for link in span.links.links.iter_mut() {
            truncated += limit_attributes(&mut link.attributes, max_value_length);
            attributes += u64::from(link.dropped_attributes_count);
        }
    }
    count(
        &LimitCounts { truncated, dropped_attributes: attributes, dropped_events: events, dropped_links: links },
        metrics,
    );
    truncated
}

/// Counts in `metrics` the strings cut and the attributes, events and links the SDK dropped by
/// count, as one batch's `counts` report them.
pub fn count(counts: &LimitCounts, metrics: &SelfMetrics) {
    for (item, count) in [
        (LimitedItem::Attribute, counts.dropped_attributes),
        (LimitedItem::Event, counts.dropped_events),
        (LimitedItem::Link, counts.dropped_links),
    ] {
        if count > 0 {
            metrics.span_limit_dropped(item).inc_by(count);
        }
    }
    if counts.truncated > 0 {
        metrics.attributes_truncated().inc_by(counts.truncated);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    #[test]
    fn cuts_at_character_boundaries() {
        assert_eq!(cut("short", 16), None);
        assert_eq!(cut("abcdef", 3).as_deref(), Some("abc"));
        // "é" is two bytes: a cut inside it moves back to the boundary before it.
        assert_eq!(cut("aé", 2).as_deref(), Some("a"));
        assert_eq!(cut("€€", 4).as_deref(), Some("€"));
        assert_eq!(cut("€", 2).as_deref(), Some(""));
    }

    fn spans_with(
        limits: &SpanLimitsConfig,
        record: impl FnOnce(&mut opentelemetry_sdk::trace::Span),
    ) -> Vec<SpanData> {
        let (ingress, rx, _wake, _bytes) = crate::ingress::span_channel(16, 1 << 20, 16, SelfMetrics::unregistered());
        let provider =
            SdkTracerProvider::builder().with_span_processor(ingress).with_span_limits(limits.sdk_limits()).build();
        let tracer = provider.tracer("limits");
        let mut span = tracer.start("span");
        record(&mut span);
        span.end();
        rx.try_iter().collect()
    }

    #[test]
    fn truncates_strings_and_string_arrays_and_counts_them() {
        let limits = SpanLimitsConfig { max_attribute_value_length: 16, ..SpanLimitsConfig::default() };
        let long = "x".repeat(100);
        let mut spans = spans_with(&limits, |span| {
            span.set_attribute(KeyValue::new("long", long.clone()));
            span.set_attribute(KeyValue::new("short", "fits"));
            span.set_attribute(KeyValue::new("number", 12345i64));
            span.set_attribute(KeyValue::new(
                "list",
                Value::Array(Array::String(vec![long.clone().into(), "ok".into(), "ü".repeat(20).into()])),
            ));
            span.add_event("event", vec![KeyValue::new("payload", long.clone())]);
        });
        let metrics = SelfMetrics::unregistered();
        assert_eq!(apply(&mut spans, 16, &metrics), 4);
        assert_eq!(metrics.attributes_truncated().get(), 4);
        let span = &spans[0];
        let get = |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone());
        assert_eq!(get("long"), Some(Value::from("x".repeat(16))));
        assert_eq!(get("short"), Some(Value::from("fits")));
        assert_eq!(get("number"), Some(Value::I64(12345)));
        assert_eq!(
            get("list"),
            Some(Value::Array(Array::String(vec!["x".repeat(16).into(), "ok".into(), "ü".repeat(8).into()])))
        );
        assert_eq!(span.events.events[0].attributes[0].value, Value::from("x".repeat(16)));
        // A second pass finds nothing left to cut.
        assert_eq!(apply(&mut spans, 16, &metrics), 0);
    }

    #[test]
    fn truncates_span_and_event_names_and_the_status_message() {
        let limits = SpanLimitsConfig { max_attribute_value_length: 16, ..SpanLimitsConfig::default() };
        let long = format!("tools/call {}", "n".repeat(1000));
        let mut spans = spans_with(&limits, |span| {
            span.update_name(long.clone());
            span.add_event(long.clone(), Vec::new());
            span.set_status(opentelemetry::trace::Status::error(format!("unknown tool {}", "é".repeat(500))));
        });
        let metrics = SelfMetrics::unregistered();
        assert_eq!(apply(&mut spans, 16, &metrics), 3);
        assert_eq!(metrics.attributes_truncated().get(), 3);
        let span = &spans[0];
        assert_eq!(span.name, "tools/call nnnnn");
        assert_eq!(span.events.events[0].name, "tools/call nnnnn");
        // "unknown tool " is 13 bytes; "é" is two: the cut moves back to a character boundary.
        assert_eq!(span.status, Status::error("unknown tool é"));
        assert_eq!(apply(&mut spans, 16, &metrics), 0);
    }

    #[test]
    fn the_sdk_enforces_the_count_limits_and_its_drops_are_counted() {
        let limits =
            SpanLimitsConfig { max_attributes_per_span: 3, max_events_per_span: 2, ..SpanLimitsConfig::default() };
        let mut spans = spans_with(&limits, |span| {
            for i in 0..10 {
                span.set_attribute(KeyValue::new(format!("key{i}"), i64::from(i)));
            }
            for i in 0..5 {
                span.add_event(format!("event {i}"), Vec::new());
            }
        });
        assert_eq!(spans[0].attributes.len(), 3);
        assert_eq!(spans[0].events.len(), 2);
        let metrics = SelfMetrics::unregistered();
        apply(&mut spans, 4096, &metrics);
        assert_eq!(metrics.span_limit_dropped(LimitedItem::Attribute).get(), 7);
        assert_eq!(metrics.span_limit_dropped(LimitedItem::Event).get(), 3);
        assert_eq!(metrics.span_limit_dropped(LimitedItem::Link).get(), 0);
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(SpanLimitsConfig::default().validate(), Ok(()));
        let err =
            SpanLimitsConfig { max_attribute_value_length: 0, ..SpanLimitsConfig::default() }.validate().unwrap_err();
        assert_eq!(err.key, "span_limits.max_attribute_value_length");
        let err =
            SpanLimitsConfig { max_links_per_span: 1_000_000, ..SpanLimitsConfig::default() }.validate().unwrap_err();
        assert_eq!(err.key, "span_limits.max_links_per_span");
    }
}
