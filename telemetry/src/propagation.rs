//! W3C Trace Context and Baggage over actix-web headers.

use actix_web::http::header::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

/// Longest `traceparent`, `tracestate` or `baggage` value that is parsed at all; longer values
/// are ignored (the W3C limits are 55, 512 and 8192 bytes).
const MAX_CONTEXT_HEADER: usize = 8192;

/// `traceparent`/`tracestate` and `baggage`, in that order.
pub fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![Box::new(TraceContextPropagator::new()), Box::new(BaggagePropagator::new())])
}

/// What outgoing calls carry: `traceparent`/`tracestate`, and `baggage` only with
/// `propagate_baggage` (`telemetry.propagate_baggage`). Baggage is whatever a caller put in the
/// incoming header; passing it on by default would hand it to every service called next.
pub fn outgoing(propagate_baggage: bool) -> TextMapCompositePropagator {
    if propagate_baggage {
        propagator()
    } else {
        TextMapCompositePropagator::new(vec![Box::new(TraceContextPropagator::new())])
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok()).filter(|v| v.len() <= MAX_CONTEXT_HEADER)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The remote parent context carried by `headers`, if any.
pub(crate) fn extract(
    propagator: &TraceContextPropagator,
    baggage: &BaggagePropagator,
    headers: &HeaderMap,
) -> Context {
    let extractor = HeaderExtractor(headers);
    let cx = propagator.extract(&extractor);
    if headers.contains_key("baggage") {
        baggage.extract_with_context(&cx, &extractor)
    } else {
        cx
    }
}
