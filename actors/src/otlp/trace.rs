//! Finished spans straight to the bytes of an OTLP `ExportTraceServiceRequest`.
//!
//! The request this writes decodes to exactly the message the SDK conversion
//! (`opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope`) builds from
//! the same spans: one `ResourceSpans`, one `ScopeSpans` per distinct instrumentation scope in the
//! order the scopes first appear, spans in batch order inside each, the span flags with the
//! W3C trace flags and the "has is_remote"/"is_remote" bits, a status on every span. What it
//! does not do is build that message: every field is written once, every nested length is
//! computed once (patched in after its body, see [`wire`](super::wire)), the resource is encoded
//! once per encoder and each instrumentation scope once until it leaves a small cache, and no
//! attribute is copied into a heap string on the way.
//!
//! The span limits' value length is applied while writing: a string longer than the limit is
//! written cut at a UTF-8 character boundary (what
//! [`limits::apply`](crate::span_buffer::limits::apply) would have left in the span), and the cuts
//! and the SDK's drops by count are returned for the self-metrics.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::trace::SpanData;

use super::wire::{self, key, Writer, I32, I64, LEN, VARINT};

// ExportTraceServiceRequest
const REQUEST_RESOURCE_SPANS: u8 = key(1, LEN);
// ResourceSpans (fields 1 and 3: wire::resource_fields)
const RESOURCE_SPANS_SCOPE_SPANS: u8 = key(2, LEN);
// ScopeSpans
const SCOPE_SPANS_SCOPE: u8 = key(1, LEN);
const SCOPE_SPANS_SPANS: u8 = key(2, LEN);
const SCOPE_SPANS_SCHEMA_URL: u8 = key(3, LEN);
// InstrumentationScope
const SCOPE_NAME: u8 = key(1, LEN);
const SCOPE_VERSION: u8 = key(2, LEN);
const SCOPE_ATTRIBUTES: u8 = key(3, LEN);
// Span
const SPAN_TRACE_ID: u8 = key(1, LEN);
const SPAN_SPAN_ID: u8 = key(2, LEN);
const SPAN_TRACE_STATE: u8 = key(3, LEN);
const SPAN_PARENT_SPAN_ID: u8 = key(4, LEN);
const SPAN_NAME: u8 = key(5, LEN);
const SPAN_KIND: u8 = key(6, VARINT);
const SPAN_START_TIME: u8 = key(7, I64);
const SPAN_END_TIME: u8 = key(8, I64);
const SPAN_ATTRIBUTES: u8 = key(9, LEN);
const SPAN_DROPPED_ATTRIBUTES: u8 = key(10, VARINT);
const SPAN_EVENTS: u8 = key(11, LEN);
const SPAN_DROPPED_EVENTS: u8 = key(12, VARINT);
const SPAN_LINKS: u8 = key(13, LEN);
const SPAN_DROPPED_LINKS: u8 = key(14, VARINT);
const SPAN_STATUS: u8 = key(15, LEN);
/// Field 16 (`flags`, fixed32): the key takes two varint bytes.
const SPAN_FLAGS: [u8; 2] = [(16 << 3 | I32) as u8 | 0x80, 1];
// Span.Event
const EVENT_TIME: u8 = key(1, I64);
const EVENT_NAME: u8 = key(2, LEN);
const EVENT_ATTRIBUTES: u8 = key(3, LEN);
const EVENT_DROPPED_ATTRIBUTES: u8 = key(4, VARINT);
// Span.Link
const LINK_TRACE_ID: u8 = key(1, LEN);
const LINK_SPAN_ID: u8 = key(2, LEN);
const LINK_TRACE_STATE: u8 = key(3, LEN);
const LINK_ATTRIBUTES: u8 = key(4, LEN);
const LINK_DROPPED_ATTRIBUTES: u8 = key(5, VARINT);
const LINK_FLAGS: u8 = key(6, I32);
// Status
const STATUS_MESSAGE: u8 = key(2, LEN);
const STATUS_CODE: u8 = key(3, VARINT);
// KeyValue
const KEY_VALUE_KEY: u8 = key(1, LEN);
const KEY_VALUE_VALUE: u8 = key(2, LEN);
// AnyValue (a oneof: the member is written even when it holds its default)
const ANY_STRING: u8 = key(1, LEN);
const ANY_BOOL: u8 = key(2, VARINT);
const ANY_INT: u8 = key(3, VARINT);
const ANY_DOUBLE: u8 = key(4, I64);
const ANY_ARRAY: u8 = key(5, LEN);
// ArrayValue
const ARRAY_VALUES: u8 = key(1, LEN);

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`: whether the parent is remote is known.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`: the parent (or linked) context is remote.
const FLAG_IS_REMOTE: u32 = 0x200;

/// Distinct instrumentation scopes whose encoding is kept between batches. Past this, the cache
/// starts over (a batch may still hold more scopes than this; each is encoded once per batch).
const SCOPE_CACHE: usize = 64;
/// The first guess of a span's encoded size, before a batch has been measured.
const INITIAL_BYTES_PER_SPAN: usize = 256;

/// Turns batches of finished spans into encoded `ExportTraceServiceRequest`s for one resource.
///
/// Keep one per span buffer: it holds the resource's encoding, the encodings of the scopes it
/// has seen, scratch space for grouping, and the size of the last batch as the guess for the
/// next.
#[derive(Debug)]
pub struct TraceEncoder {
    /// `ResourceSpans.resource`, key and length included.
    resource: Vec<u8>,
    /// `ResourceSpans.schema_url`, key and length included, or nothing.
    resource_schema_url: Vec<u8>,
    scopes: Vec<EncodedScope>,
    groups: Vec<Group>,
    /// The group of each span of the batch being encoded (only filled with two groups or more).
    membership: Vec<u32>,
    max_value_length: usize,
    bytes_per_span: usize,
}

/// An instrumentation scope and its encoding as `ScopeSpans.scope` and `ScopeSpans.schema_url`.
#[derive(Debug)]
struct EncodedScope {
    scope: InstrumentationScope,
    head: Vec<u8>,
    tail: Vec<u8>,
}

/// The spans of one batch that share an instrumentation scope.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// The first span with this scope; the SDK conversion keeps that span's scope for the group.
    first: usize,
    spans: usize,
    /// Index in [`TraceEncoder::scopes`].
    encoded: usize,
}

/// What the span limits took from one batch: strings the encoder cut, and what the SDK dropped
/// by count before the spans reached it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LimitCounts {
    /// Strings cut to the value length limit: attribute values, string array elements, span and
    /// event names, status messages.
    pub truncated: u64,
    /// Attributes of spans, events and links the SDK dropped by count.
    pub dropped_attributes: u64,
    /// Events the SDK dropped by count.
    pub dropped_events: u64,
    /// Links the SDK dropped by count.
    pub dropped_links: u64,
}

/// One encoded batch.
#[derive(Debug)]
pub struct EncodedSpans {
    /// The `ExportTraceServiceRequest`, ready to send or spool.
    pub body: Vec<u8>,
    /// What the span limits took from the batch.
    pub limits: LimitCounts,
}

impl TraceEncoder {
    /// An encoder for spans of `resource`, with no value length limit.
    pub fn new(resource: &ResourceAttributesWithSchema) -> Self {
        let (encoded, schema_url) = wire::resource_fields(resource);
        Self {
            resource: encoded,
            resource_schema_url: schema_url,
            scopes: Vec::new(),
            groups: Vec::new(),
            membership: Vec::new(),
            max_value_length: usize::MAX,
            bytes_per_span: INITIAL_BYTES_PER_SPAN,
        }
    }

    /// The encoder with string values, span and event names and status messages longer than
    /// `max` bytes cut at a UTF-8 character boundary (`span_limits.max_attribute_value_length`).
    pub fn with_max_value_length(mut self, max: usize) -> Self {
        self.max_value_length = max;
        self
    }

    /// Encodes `spans` as one `ExportTraceServiceRequest`.
    pub fn encode(&mut self, spans: &[SpanData]) -> EncodedSpans {
        self.group(spans);
        self.resolve_scopes(spans);

        let per_span = self.bytes_per_span;
        let estimate = self.resource.len() + spans.len() * per_span + self.groups.len() * 64;
        let mut writer = SpanWriter {
            out: Writer::with_capacity(estimate + estimate / 8 + 64),
            cut: Cut { max: self.max_value_length, count: 0 },
            limits: LimitCounts::default(),
        };

        let resource_spans = writer.out.open(REQUEST_RESOURCE_SPANS, room_for(estimate));
        writer.out.put_slice(&self.resource);
        let single = self.groups.len() == 1;
        for (index, group) in self.groups.iter().enumerate() {
            let scope = &self.scopes[group.encoded];
            let room = room_for(scope.head.len() + scope.tail.len() + group.spans * per_span);
            let scope_spans = writer.out.open(RESOURCE_SPANS_SCOPE_SPANS, room);
            writer.out.put_slice(&scope.head);
            if single {
                for span in spans {
                    writer.span(span);
                }
            } else {
                for (span, &member) in spans.iter().zip(&self.membership) {
                    if member as usize == index {
                        writer.span(span);
                    }
                }
            }
            writer.out.put_slice(&scope.tail);
            writer.out.close(scope_spans);
        }
        writer.out.put_slice(&self.resource_schema_url);
        writer.out.close(resource_spans);

        if !spans.is_empty() {
            self.bytes_per_span = (writer.out.len() / spans.len()).max(32);
        }
        let mut limits = writer.limits;
        limits.truncated = writer.cut.count;
        EncodedSpans { body: writer.out.into_bytes(), limits }
    }

    /// Groups the batch by instrumentation scope as the SDK conversion does: scopes equal as
    /// `InstrumentationScope`s share a group (attribute order aside), groups in order of first
    /// appearance.
    fn group(&mut self, spans: &[SpanData]) {
        self.groups.clear();
        self.membership.clear();
        let mut last: Option<usize> = None;
        for (index, span) in spans.iter().enumerate() {
            let scope = &span.instrumentation_scope;
            let same = |group: &Group| same_scope(&spans[group.first].instrumentation_scope, scope);
            let found = match last {
                Some(last) if same(&self.groups[last]) => Some(last),
                _ => self.groups.iter().position(same),
            };
            let group = match found {
                Some(group) => group,
                None => {
                    if self.groups.len() == 1 {
                        // A second scope: from now on each span's group is written down.
                        self.membership.resize(index, 0);
                    }
                    self.groups.push(Group { first: index, spans: 0, encoded: 0 });
                    self.groups.len() - 1
                }
            };
            self.groups[group].spans += 1;
            if self.groups.len() > 1 {
                self.membership.push(group as u32);
            }
            last = Some(group);
        }
    }

    /// Points every group at the encoding of its scope, encoding the scopes not cached yet.
    fn resolve_scopes(&mut self, spans: &[SpanData]) {
        if self.scopes.len() + self.groups.len() > SCOPE_CACHE {
            self.scopes.clear();
        }
        let Self { scopes, groups, .. } = self;
        for group in groups.iter_mut() {
            let scope = &spans[group.first].instrumentation_scope;
            // The cached encoding is reused only for a scope equal attribute for attribute, in
            // order: the SDK conversion writes the group's first scope as it is.
            group.encoded = match scopes.iter().position(|cached| same_scope_in_order(&cached.scope, scope)) {
                Some(index) => index,
                None => {
                    scopes.push(EncodedScope::new(scope));
                    scopes.len() - 1
                }
            };
        }
    }
}

impl EncodedScope {
    fn new(scope: &InstrumentationScope) -> Self {
        let mut head = Writer::with_capacity(64);
        let field = head.open(SCOPE_SPANS_SCOPE, 1);
        head.put_nonempty(SCOPE_NAME, scope.name().as_bytes());
        head.put_nonempty(SCOPE_VERSION, scope.version().unwrap_or_default().as_bytes());
        let mut uncut = Cut { max: usize::MAX, count: 0 };
        for attribute in scope.attributes() {
            put_key_value(&mut head, SCOPE_ATTRIBUTES, attribute, &mut uncut);
        }
        head.close(field);
        let mut tail = Writer::with_capacity(0);
        tail.put_nonempty(SCOPE_SPANS_SCHEMA_URL, scope.schema_url().unwrap_or_default().as_bytes());
        Self { scope: scope.clone(), head: head.into_bytes(), tail: tail.into_bytes() }
    }
}

/// Equal as the SDK conversion groups scopes (`InstrumentationScope`'s `==`, which ignores the
/// order of attributes), checked first attribute for attribute without allocating.
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    same_scope_in_order(a, b) || a == b
}

/// Equal name, version, schema URL and attributes in the same order.
fn same_scope_in_order(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    same_text(a.name(), b.name())
        && same_optional_text(a.version(), b.version())
        && same_optional_text(a.schema_url(), b.schema_url())
        && a.attributes().eq(b.attributes())
}

/// Equal strings; the same static string (the usual case for scope names) is recognised without
/// comparing bytes.
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

#[inline]
fn same_optional_text(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_text(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Bytes to set aside for the length of a message of about `estimate` bytes.
fn room_for(estimate: usize) -> usize {
    wire::varint_len(estimate as u64).min(5)
}

/// Nanoseconds since the Unix epoch, 0 before it, wrapping past `u64` as the SDK conversion's
/// `as_nanos() as u64` does.
#[inline]
fn unix_nanos(time: SystemTime) -> u64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs().wrapping_mul(1_000_000_000).wrapping_add(u64::from(since.subsec_nanos())),
        Err(_) => 0,
    }
}

/// The OTLP `Span.SpanKind` number.
#[inline]
fn kind_number(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Cuts strings to the value length limit and counts the cuts.
#[derive(Debug)]
struct Cut {
    max: usize,
    count: u64,
}

impl Cut {
    #[inline]
    fn text<'a>(&mut self, text: &'a str) -> &'a str {
        if text.len() <= self.max {
            return text;
        }
        self.count += 1;
        let mut end = self.max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    }
}

/// Writes the spans of one batch; carries the limit state of the batch.
#[derive(Debug)]
struct SpanWriter {
    out: Writer,
    cut: Cut,
    limits: LimitCounts,
}

impl SpanWriter {
    fn span(&mut self, span: &SpanData) {
        let (out, cut) = (&mut self.out, &mut self.cut);
        // Almost every span is between 128 and 16 383 bytes long.
        let field = out.open(SCOPE_SPANS_SPANS, 2);
        let context = &span.span_context;
        let ids = out.slot(38);
        ids[..2].copy_from_slice(&[SPAN_TRACE_ID, 16]);
        ids[2..18].copy_from_slice(&context.trace_id().to_bytes());
        ids[18..20].copy_from_slice(&[SPAN_SPAN_ID, 8]);
        ids[20..28].copy_from_slice(&context.span_id().to_bytes());
        if span.parent_span_id != SpanId::INVALID {
            // The trace state (field 3) comes between the span id and the parent id: write the
            // parent id here only when there is no trace state to write first.
            ids[28..30].copy_from_slice(&[SPAN_PARENT_SPAN_ID, 8]);
            ids[30..38].copy_from_slice(&span.parent_span_id.to_bytes());
        }
        let state = context.trace_state();
        if trace_state_is_empty(state) {
            out.advance(if span.parent_span_id != SpanId::INVALID { 38 } else { 28 });
        } else {
            out.advance(28);
            put_trace_state(out, SPAN_TRACE_STATE, state);
            if span.parent_span_id != SpanId::INVALID {
                let slot = out.slot(10);
                slot[..2].copy_from_slice(&[SPAN_PARENT_SPAN_ID, 8]);
                slot[2..].copy_from_slice(&span.parent_span_id.to_bytes());
                out.advance(10);
            }
        }
        out.put_nonempty(SPAN_NAME, cut.text(&span.name).as_bytes());
        out.put([SPAN_KIND, kind_number(&span.span_kind)]);
        out.put_nonzero_fixed64(SPAN_START_TIME, unix_nanos(span.start_time));
        out.put_nonzero_fixed64(SPAN_END_TIME, unix_nanos(span.end_time));
        for attribute in &span.attributes {
            put_key_value(out, SPAN_ATTRIBUTES, attribute, cut);
        }
        out.put_nonzero_varint(SPAN_DROPPED_ATTRIBUTES, u64::from(span.dropped_attributes_count));
        let mut dropped_attributes = u64::from(span.dropped_attributes_count);
        for event in span.events.iter() {
            let field = out.open(SPAN_EVENTS, 1);
            out.put_nonzero_fixed64(EVENT_TIME, unix_nanos(event.timestamp));
            out.put_nonempty(EVENT_NAME, cut.text(&event.name).as_bytes());
            for attribute in &event.attributes {
                put_key_value(out, EVENT_ATTRIBUTES, attribute, cut);
            }
            out.put_nonzero_varint(EVENT_DROPPED_ATTRIBUTES, u64::from(event.dropped_attributes_count));
            out.close(field);
            dropped_attributes += u64::from(event.dropped_attributes_count);
        }
        out.put_nonzero_varint(SPAN_DROPPED_EVENTS, u64::from(span.events.dropped_count));
        for link in span.links.iter() {
            let field = out.open(SPAN_LINKS, 1);
            let context = &link.span_context;
            out.put_bytes(LINK_TRACE_ID, &context.trace_id().to_bytes());
            out.put_bytes(LINK_SPAN_ID, &context.span_id().to_bytes());
            put_trace_state(out, LINK_TRACE_STATE, context.trace_state());
            for attribute in &link.attributes {
                put_key_value(out, LINK_ATTRIBUTES, attribute, cut);
            }
            out.put_nonzero_varint(LINK_DROPPED_ATTRIBUTES, u64::from(link.dropped_attributes_count));
            let [a, b, c, d] = flags(context.trace_flags().to_u8(), context.is_remote()).to_le_bytes();
            out.put([LINK_FLAGS, a, b, c, d]);
            out.close(field);
            dropped_attributes += u64::from(link.dropped_attributes_count);
        }
        out.put_nonzero_varint(SPAN_DROPPED_LINKS, u64::from(span.links.dropped_count));
        put_status(out, &span.status, cut);
        let [a, b, c, d] = flags(context.trace_flags().to_u8(), span.parent_span_is_remote).to_le_bytes();
        out.put([SPAN_FLAGS[0], SPAN_FLAGS[1], a, b, c, d]);
        out.close(field);

        self.limits.dropped_attributes += dropped_attributes;
        self.limits.dropped_events += u64::from(span.events.dropped_count);
        self.limits.dropped_links += u64::from(span.links.dropped_count);
    }
}

/// The OTLP span flags: the W3C trace flags, with the "is_remote is known" bit always set (the SDK
/// records it for every span and link) and the "is_remote" bit when `remote`.
#[inline]
fn flags(trace_flags: u8, remote: bool) -> u32 {
    let mut flags = u32::from(trace_flags) | FLAG_HAS_IS_REMOTE;
    if remote {
        flags |= FLAG_IS_REMOTE;
    }
    flags
}

/// `Span.status`, always present (the SDK conversion sets it on every span, `Unset` included).
#[inline]
fn put_status(out: &mut Writer, status: &Status, cut: &mut Cut) {
    match status {
        Status::Unset => out.put([SPAN_STATUS, 0]),
        Status::Ok => out.put([SPAN_STATUS, 2, STATUS_CODE, 1]),
        Status::Error { description } => {
            let message = cut.text(description);
            let message_len =
                if message.is_empty() { 0 } else { 1 + wire::varint_len(message.len() as u64) + message.len() };
            out.put_varint_field(SPAN_STATUS, (message_len + 2) as u64);
            out.put_nonempty(STATUS_MESSAGE, message.as_bytes());
            out.put([STATUS_CODE, 2]);
        }
    }
}

/// Whether the `tracestate` header of `state` is empty.
#[inline]
fn trace_state_is_empty(state: &TraceState) -> bool {
    state.into_iter().len() == 0
}

/// A W3C `tracestate` header (`k=v,k=v`), written without building the string.
fn put_trace_state(out: &mut Writer, key: u8, state: &TraceState) {
    let members = state.into_iter();
    if members.len() == 0 {
        return;
    }
    let len: usize = state.into_iter().map(|(k, v)| k.len() + 1 + v.len()).sum::<usize>() + members.len() - 1;
    out.put_varint_field(key, len as u64);
    for (index, (k, v)) in members.enumerate() {
        if index > 0 {
            out.put([b',']);
        }
        out.put_slice(k.as_bytes());
        out.put([b'=']);
        out.put_slice(v.as_bytes());
    }
}

/// A `KeyValue` field. Lengths of scalar and string values are computed up front, and in the
/// common case (every length below 128, a key) the field goes into one slot; arrays are patched
/// in after their elements.
#[inline(always)]
fn put_key_value(out: &mut Writer, field: u8, attribute: &KeyValue, cut: &mut Cut) {
    let key = attribute.key.as_str();
    let k = key.len();
    match &attribute.value {
        Value::String(text) => {
            let text = cut.text(text.as_str());
            let t = text.len();
            let len = 2 + k + 4 + t;
            if len < 0x80 && k != 0 {
                let slot = out.slot(2 + len);
                slot[..4].copy_from_slice(&[field, len as u8, KEY_VALUE_KEY, k as u8]);
                wire::copy_short(&mut slot[4..4 + k], key.as_bytes());
                slot[4 + k..8 + k].copy_from_slice(&[KEY_VALUE_VALUE, 2 + t as u8, ANY_STRING, t as u8]);
                wire::copy_short(&mut slot[8 + k..], text.as_bytes());
                out.advance(2 + len);
            } else {
                key_value_head(out, field, key, 1 + wire::varint_len(t as u64) + t);
                out.put_bytes(ANY_STRING, text.as_bytes());
            }
        }
        Value::I64(number) => {
            let number = *number as u64;
            let n = wire::varint_len(number);
            let len = 2 + k + 3 + n;
            if len < 0x80 && k != 0 {
                let slot = out.slot(2 + len);
                slot[..4].copy_from_slice(&[field, len as u8, KEY_VALUE_KEY, k as u8]);
                wire::copy_short(&mut slot[4..4 + k], key.as_bytes());
                slot[4 + k..7 + k].copy_from_slice(&[KEY_VALUE_VALUE, 1 + n as u8, ANY_INT]);
                wire::write_varint(&mut slot[7 + k..], number);
                out.advance(2 + len);
            } else {
                key_value_head(out, field, key, 1 + n);
                out.put_varint_field(ANY_INT, number);
            }
        }
        Value::Bool(flag) => {
            key_value_head(out, field, key, 2);
            out.put([ANY_BOOL, u8::from(*flag)]);
        }
        Value::F64(number) => {
            key_value_head(out, field, key, 9);
            let [a, b, c, d, e, f, g, h] = number.to_le_bytes();
            out.put([ANY_DOUBLE, a, b, c, d, e, f, g, h]);
        }
        Value::Array(array) => {
            let key_value = out.open(field, 1);
            out.put_nonempty(KEY_VALUE_KEY, key.as_bytes());
            let value = out.open(KEY_VALUE_VALUE, 1);
            put_array(out, array, cut);
            out.close(value);
            out.close(key_value);
        }
        // A value kind newer than this encoder: an empty AnyValue (OTLP's "no value").
        _ => key_value_head(out, field, key, 0),
    }
}

/// The key, length and key field of a `KeyValue`, and the key and length of its `AnyValue`
/// (`value_len` bytes long) — everything but the value's member.
fn key_value_head(out: &mut Writer, field: u8, key: &str, value_len: usize) {
    let key_len = if key.is_empty() { 0 } else { 1 + wire::varint_len(key.len() as u64) + key.len() };
    let len = key_len + 1 + wire::varint_len(value_len as u64) + value_len;
    out.put_varint_field(field, len as u64);
    out.put_nonempty(KEY_VALUE_KEY, key.as_bytes());
    out.put_varint_field(KEY_VALUE_VALUE, value_len as u64);
}

/// `AnyValue.array_value`: one `AnyValue` per element.
fn put_array(out: &mut Writer, array: &Array, cut: &mut Cut) {
    let field = out.open(ANY_ARRAY, 1);
    match array {
        Array::Bool(items) => {
            for item in items {
                out.put([ARRAY_VALUES, 2, ANY_BOOL, u8::from(*item)]);
            }
        }
        Array::I64(items) => {
            for item in items {
                let item = *item as u64;
                out.put([ARRAY_VALUES, 1 + wire::varint_len(item) as u8]);
                out.put_varint_field(ANY_INT, item);
            }
        }
        Array::F64(items) => {
            for item in items {
                let [a, b, c, d, e, f, g, h] = item.to_le_bytes();
                out.put([ARRAY_VALUES, 9, ANY_DOUBLE, a, b, c, d, e, f, g, h]);
            }
        }
        Array::String(items) => {
            for item in items {
                let text = cut.text(item.as_str());
                out.put_varint_field(ARRAY_VALUES, (1 + wire::varint_len(text.len() as u64) + text.len()) as u64);
                out.put_bytes(ANY_STRING, text.as_bytes());
            }
        }
        // An array kind newer than this encoder: an empty array.
        _ => {}
    }
    out.close(field);
}
