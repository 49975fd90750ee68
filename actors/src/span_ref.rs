//! The sampled span a measurement was taken in ([`SpanRef`]): what a metric event carries so the
//! aggregator can keep an exemplar (OpenMetrics and OTLP) that leads from a histogram bucket to a
//! trace. Taken on the request thread, so it is plain bytes: no allocation, 24 bytes, and `None`
//! costs nothing more (the span id is never zero).

use std::fmt;
use std::num::NonZeroU64;

use opentelemetry::trace::SpanContext;

/// A sampled span: its trace id and span id, as on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanRef {
    trace_id: [u8; 16],
    span_id: NonZeroU64,
}

impl SpanRef {
    /// The span of `context` when it is valid and sampled (an unsampled span is never exported,
    /// so an exemplar must not point at it).
    #[inline]
    pub fn sampled(context: &SpanContext) -> Option<Self> {
        if !context.is_valid() || !context.is_sampled() {
            return None;
        }
        Self::new(context.trace_id().to_bytes(), context.span_id().to_bytes())
    }

    /// A reference from raw ids; `None` when either is all zero (invalid).
    #[inline]
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8]) -> Option<Self> {
        if trace_id == [0; 16] {
            return None;
        }
        Some(Self { trace_id, span_id: NonZeroU64::new(u64::from_be_bytes(span_id))? })
    }

    /// The trace id bytes.
    #[inline]
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The span id bytes.
    #[inline]
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id.get().to_be_bytes()
    }

    /// The trace id as 32 lowercase hex digits, written into `out`.
    pub fn write_trace_id_hex(&self, out: &mut String) {
        write_hex(&self.trace_id, out);
    }

    /// The span id as 16 lowercase hex digits, written into `out`.
    pub fn write_span_id_hex(&self, out: &mut String) {
        write_hex(&self.span_id(), out);
    }
}

fn write_hex(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
}

impl fmt::Debug for SpanRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut trace, mut span) = (String::with_capacity(32), String::with_capacity(16));
        self.write_trace_id_hex(&mut trace);
        self.write_span_id_hex(&mut span);
        f.debug_struct("SpanRef").field("trace_id", &trace).field("span_id", &span).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn only_valid_sampled_contexts_give_a_reference_and_none_costs_no_space() {
        let trace = TraceId::from_bytes([0xab; 16]);
        let span = SpanId::from_bytes([0, 0, 0, 0, 0, 0, 1, 0xcd]);
        let sampled = SpanContext::new(trace, span, TraceFlags::SAMPLED, false, TraceState::default());
        let unsampled = SpanContext::new(trace, span, TraceFlags::default(), false, TraceState::default());
        let reference = SpanRef::sampled(&sampled).unwrap();
        assert_eq!(reference.trace_id(), [0xab; 16]);
        assert_eq!(reference.span_id(), [0, 0, 0, 0, 0, 0, 1, 0xcd]);
        let mut text = String::new();
        reference.write_span_id_hex(&mut text);
        assert_eq!(text, "00000000000001cd");
        assert_eq!(SpanRef::sampled(&unsampled), None);
        assert_eq!(SpanRef::sampled(&SpanContext::empty_context()), None);
        assert_eq!(SpanRef::new([1; 16], [0; 8]), None);
        assert_eq!(std::mem::size_of::<Option<SpanRef>>(), 24);
    }
}
