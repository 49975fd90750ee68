//! The trace context of an upstream request, written twice: into the HTTP headers
//! (`traceparent`, `tracestate`, `baggage` when propagated) and into the message's `params._meta`.

use opentelemetry::propagation::{Injector, TextMapCompositePropagator, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::Context;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

/// Writes propagation fields into HTTP headers; empty values (an empty `tracestate`) are left
/// out.
pub(super) struct HeaderInjector<'a>(pub(super) &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

/// Writes propagation fields into a `_meta` object.
pub(super) struct MetaInjector<'a>(&'a mut Map<String, Value>);

impl Injector for MetaInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.insert(key.to_owned(), Value::String(value));
        }
    }
}

/// Puts the context of `cx` into `params._meta`, keeping the keys already there. A `_meta`
/// that is not an object is left alone.
pub(super) fn inject_meta(propagator: &TextMapCompositePropagator, cx: &Context, params: &mut Map<String, Value>) {
    if !cx.span().span_context().is_valid() {
        return;
    }
    if let Value::Object(meta) = params.entry("_meta").or_insert_with(|| Value::Object(Map::new())) {
        propagator.inject_context(cx, &mut MetaInjector(meta));
    }
}
