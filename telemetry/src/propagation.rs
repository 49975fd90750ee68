//! W3C Trace Context and Baggage over actix-web headers.

use actix_web::http::header::{HeaderMap, HeaderName};
use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
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

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // The propagators ask for these three by name: look them up by their prebuilt header
        // names rather than parsing the key on every request.
        let value = match key {
            "traceparent" => self.0.get(&TRACEPARENT),
            "tracestate" => self.0.get(&TRACESTATE),
            "baggage" => self.0.get(&BAGGAGE),
            other => self.0.get(other),
        };
        value.and_then(|v| v.to_str().ok()).filter(|v| v.len() <= MAX_CONTEXT_HEADER)
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
    let has_baggage = headers.contains_key(&BAGGAGE);
    if !has_baggage && !headers.contains_key(&TRACEPARENT) {
        // What the propagator answers without a `traceparent`: the current context as it is.
        return Context::current();
    }
    if !has_baggage && !headers.contains_key(&TRACESTATE) {
        if let Some(parent) = headers.get(&TRACEPARENT).and_then(|value| canonical_traceparent(value.as_bytes())) {
            return Context::current().with_remote_span_context(parent);
        }
    }
    let extractor = HeaderExtractor(headers);
    let cx = propagator.extract(&extractor);
    if has_baggage {
        baggage.extract_with_context(&cx, &extractor)
    } else {
        cx
    }
}

/// The remote parent of a canonical version-00 `traceparent` (`00-{32 hex}-{16 hex}-{2 hex}`, all
/// lowercase, valid ids), exactly as the SDK's propagator reads it, without its general parser
/// (which splits into a vector and parses each part with `from_str_radix`). `None` for any other
/// value, which then goes through the propagator.
fn canonical_traceparent(value: &[u8]) -> Option<SpanContext> {
    if value.len() != 55 || !value.starts_with(b"00-") || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = hex(&value[3..35])?;
    let span_id = hex(&value[36..52])?;
    let flags = hex(&value[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    // Only the sampled bit is kept, as the propagator does with flags it does not know.
    let flags = TraceFlags::new(flags as u8) & TraceFlags::SAMPLED;
    Some(SpanContext::new(TraceId::from(trace_id), SpanId::from(span_id as u64), flags, true, TraceState::NONE))
}

/// The number written in lowercase hex `digits` (at most 32 of them).
#[inline]
fn hex(digits: &[u8]) -> Option<u128> {
    let mut number = 0u128;
    for &digit in digits {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        number = number << 4 | u128::from(nibble);
    }
    Some(number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    /// What the SDK's propagators make of `headers`, the fast path bypassed.
    fn reference(headers: &HeaderMap) -> Context {
        let extractor = HeaderExtractor(headers);
        let cx = TraceContextPropagator::new().extract(&extractor);
        if headers.contains_key("baggage") {
            BaggagePropagator::new().extract_with_context(&cx, &extractor)
        } else {
            cx
        }
    }

    #[test]
    fn the_fast_paths_read_what_the_propagators_read() {
        use opentelemetry::baggage::BaggageExt as _;
        let traceparents = [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
            "",
        ];
        let mut cases: Vec<HeaderMap> = vec![HeaderMap::new()];
        for traceparent in traceparents {
            for (tracestate, baggage) in
                [(None, None), (Some("a=1,b=2"), None), (None, Some("k=v")), (Some("x=y"), Some("k=v"))]
            {
                let mut headers = HeaderMap::new();
                headers.insert(TRACEPARENT, HeaderValue::from_str(traceparent).expect("a header value"));
                if let Some(state) = tracestate {
                    headers.insert(TRACESTATE, HeaderValue::from_static(state));
                }
                if let Some(baggage) = baggage {
                    headers.insert(BAGGAGE, HeaderValue::from_static(baggage));
                }
                cases.push(headers);
            }
        }
        let mut only_baggage = HeaderMap::new();
        only_baggage.insert(BAGGAGE, HeaderValue::from_static("k=v"));
        cases.push(only_baggage);
        for headers in cases {
            let fast = extract(&TraceContextPropagator::new(), &BaggagePropagator::new(), &headers);
            let slow = reference(&headers);
            assert_eq!(fast.span().span_context(), slow.span().span_context(), "{headers:?}");
            assert_eq!(fast.has_active_span(), slow.has_active_span(), "{headers:?}");
            let baggage = |cx: &Context| {
                let mut items: Vec<String> = cx.baggage().iter().map(|(k, (v, _))| format!("{k}={v}")).collect();
                items.sort();
                items
            };
            assert_eq!(baggage(&fast), baggage(&slow), "{headers:?}");
        }
    }
}
