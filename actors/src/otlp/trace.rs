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
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::trace::SpanData;

use super::wire::{self, key, I32, I64, LEN, VARINT};

// ExportTraceServiceRequest
const REQUEST_RESOURCE_SPANS: u8 = key(1, LEN);
// ResourceSpans
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u8 = key(2, LEN);
const RESOURCE_SPANS_SCHEMA_URL: u8 = key(3, LEN);
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
        let mut encoded = Vec::new();
        let message = Resource { attributes: resource.attributes.0.clone(), dropped_attributes_count: 0, entity_refs: vec![] };
        prost::encoding::message::encode(RESOURCE_SPANS_RESOURCE, &message, &mut encoded);
        let mut resource_schema_url = Vec::new();
        if let Some(url) = &resource.schema_url {
            wire::put_nonempty(&mut resource_schema_url, RESOURCE_SPANS_SCHEMA_URL, url.as_bytes());
        }
        Self {
            resource: encoded,
            resource_schema_url,
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
        let mut buf = Vec::with_capacity(estimate + estimate / 8 + 16);
        let mut writer = SpanWriter { cut: Cut { max: self.max_value_length, count: 0 }, limits: LimitCounts::default() };

        let resource_spans = wire::open(&mut buf, REQUEST_RESOURCE_SPANS, room_for(estimate));
        buf.extend_from_slice(&self.resource);
        let single = self.groups.len() == 1;
        for (index, group) in self.groups.iter().enumerate() {
            let scope = &self.scopes[group.encoded];
            let room = room_for(scope.head.len() + scope.tail.len() + group.spans * per_span);
            let scope_spans = wire::open(&mut buf, RESOURCE_SPANS_SCOPE_SPANS, room);
            buf.extend_from_slice(&scope.head);
            if single {
                for span in spans {
                    writer.span(&mut buf, span);
                }
            } else {
                for (span, &member) in spans.iter().zip(&self.membership) {
                    if member as usize == index {
                        writer.span(&mut buf, span);
                    }
                }
            }
            buf.extend_from_slice(&scope.tail);
            wire::close(&mut buf, scope_spans);
        }
        buf.extend_from_slice(&self.resource_schema_url);
        wire::close(&mut buf, resource_spans);

        if !spans.is_empty() {
            self.bytes_per_span = (buf.len() / spans.len()).max(32);
        }
        let mut limits = writer.limits;
        limits.truncated = writer.cut.count;
        EncodedSpans { body: buf, limits }
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
        let mut head = Vec::new();
        let field = wire::open(&mut head, SCOPE_SPANS_SCOPE, 1);
        wire::put_nonempty(&mut head, SCOPE_NAME, scope.name().as_bytes());
        wire::put_nonempty(&mut head, SCOPE_VERSION, scope.version().unwrap_or_default().as_bytes());
        let mut uncut = Cut { max: usize::MAX, count: 0 };
        for attribute in scope.attributes() {
            put_key_value(&mut head, SCOPE_ATTRIBUTES, attribute, &mut uncut);
        }
        wire::close(&mut head, field);
        let mut tail = Vec::new();
        wire::put_nonempty(&mut tail, SCOPE_SPANS_SCHEMA_URL, scope.schema_url().unwrap_or_default().as_bytes());
        Self { scope: scope.clone(), head, tail }
    }
}

/// Equal as the SDK conversion groups scopes (`InstrumentationScope`'s `==`, which ignores the
/// order of attributes), checked first attribute for attribute without allocating.
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    same_scope_in_order(a, b) || a == b
}

/// Equal name, version, schema URL and attributes in the same order.
fn same_scope_in_order(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    a.name() == b.name()
        && a.version() == b.version()
        && a.schema_url() == b.schema_url()
        && a.attributes().eq(b.attributes())
}

/// Bytes to set aside for the length of a message of about `estimate` bytes.
fn room_for(estimate: usize) -> usize {
    wire::varint_len(estimate as u64).min(5)
}

/// Nanoseconds since the Unix epoch, 0 before it, wrapping past `u64` as the SDK conversion's
/// `as_nanos() as u64` does.
fn unix_nanos(time: SystemTime) -> u64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs().wrapping_mul(1_000_000_000).wrapping_add(u64::from(since.subsec_nanos())),
        Err(_) => 0,
    }
}

/// The OTLP `Span.SpanKind` number.
fn kind_number(kind: &SpanKind) -> u64 {
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

/// Writes spans; carries the limit state of the batch.
#[derive(Debug)]
struct SpanWriter {
    cut: Cut,
    limits: LimitCounts,
}

impl SpanWriter {
    fn span(&mut self, buf: &mut Vec<u8>, span: &SpanData) {
        let cut = &mut self.cut;
        // Almost every span is between 128 and 16 383 bytes long.
        let field = wire::open(buf, SCOPE_SPANS_SPANS, 2);
        let context = &span.span_context;
        wire::put_bytes(buf, SPAN_TRACE_ID, &context.trace_id().to_bytes());
        wire::put_bytes(buf, SPAN_SPAN_ID, &context.span_id().to_bytes());
        put_trace_state(buf, SPAN_TRACE_STATE, context.trace_state());
        if span.parent_span_id != SpanId::INVALID {
            wire::put_bytes(buf, SPAN_PARENT_SPAN_ID, &span.parent_span_id.to_bytes());
        }
        wire::put_nonempty(buf, SPAN_NAME, cut.text(&span.name).as_bytes());
        wire::put_varint_field(buf, SPAN_KIND, kind_number(&span.span_kind));
        wire::put_nonzero_fixed64(buf, SPAN_START_TIME, unix_nanos(span.start_time));
        wire::put_nonzero_fixed64(buf, SPAN_END_TIME, unix_nanos(span.end_time));
        for attribute in &span.attributes {
            put_key_value(buf, SPAN_ATTRIBUTES, attribute, cut);
        }
        wire::put_nonzero_varint(buf, SPAN_DROPPED_ATTRIBUTES, u64::from(span.dropped_attributes_count));
        let mut dropped_attributes = u64::from(span.dropped_attributes_count);
        for event in span.events.iter() {
            let field = wire::open(buf, SPAN_EVENTS, 1);
            wire::put_nonzero_fixed64(buf, EVENT_TIME, unix_nanos(event.timestamp));
            wire::put_nonempty(buf, EVENT_NAME, cut.text(&event.name).as_bytes());
            for attribute in &event.attributes {
                put_key_value(buf, EVENT_ATTRIBUTES, attribute, cut);
            }
            wire::put_nonzero_varint(buf, EVENT_DROPPED_ATTRIBUTES, u64::from(event.dropped_attributes_count));
            wire::close(buf, field);
            dropped_attributes += u64::from(event.dropped_attributes_count);
        }
        wire::put_nonzero_varint(buf, SPAN_DROPPED_EVENTS, u64::from(span.events.dropped_count));
        for link in span.links.iter() {
            let field = wire::open(buf, SPAN_LINKS, 1);
            let context = &link.span_context;
            wire::put_bytes(buf, LINK_TRACE_ID, &context.trace_id().to_bytes());
            wire::put_bytes(buf, LINK_SPAN_ID, &context.span_id().to_bytes());
            put_trace_state(buf, LINK_TRACE_STATE, context.trace_state());
            for attribute in &link.attributes {
                put_key_value(buf, LINK_ATTRIBUTES, attribute, cut);
            }
            wire::put_nonzero_varint(buf, LINK_DROPPED_ATTRIBUTES, u64::from(link.dropped_attributes_count));
            let flags = flags(context.trace_flags().to_u8(), context.is_remote());
            buf.push(LINK_FLAGS);
            buf.extend_from_slice(&flags.to_le_bytes());
            wire::close(buf, field);
            dropped_attributes += u64::from(link.dropped_attributes_count);
        }
        wire::put_nonzero_varint(buf, SPAN_DROPPED_LINKS, u64::from(span.links.dropped_count));
        put_status(buf, &span.status, cut);
        let flags = flags(context.trace_flags().to_u8(), span.parent_span_is_remote);
        buf.extend_from_slice(&SPAN_FLAGS);
        buf.extend_from_slice(&flags.to_le_bytes());
        wire::close(buf, field);

        self.limits.dropped_attributes += dropped_attributes;
        self.limits.dropped_events += u64::from(span.events.dropped_count);
        self.limits.dropped_links += u64::from(span.links.dropped_count);
    }
}

/// The OTLP span flags: the W3C trace flags, with the "is_remote is known" bit always set (the SDK
/// records it for every span and link) and the "is_remote" bit when `remote`.
fn flags(trace_flags: u8, remote: bool) -> u32 {
    let mut flags = u32::from(trace_flags) | FLAG_HAS_IS_REMOTE;
    if remote {
        flags |= FLAG_IS_REMOTE;
    }
    flags
}

/// `Span.status`, always present (the SDK conversion sets it on every span, `Unset` included).
fn put_status(buf: &mut Vec<u8>, status: &Status, cut: &mut Cut) {
    let (code, message) = match status {
        Status::Unset => (0u64, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, cut.text(description)),
    };
    let mut len = if message.is_empty() { 0 } else { 1 + wire::varint_len(message.len() as u64) + message.len() };
    if code != 0 {
        len += 2;
    }
    buf.push(SPAN_STATUS);
    wire::put_varint(buf, len as u64);
    wire::put_nonempty(buf, STATUS_MESSAGE, message.as_bytes());
    wire::put_nonzero_varint(buf, STATUS_CODE, code);
}

/// A W3C `tracestate` header (`k=v,k=v`), written without building the string.
fn put_trace_state(buf: &mut Vec<u8>, key: u8, state: &TraceState) {
    let members = state.into_iter();
    if members.len() == 0 {
        return;
    }
    let len: usize = state.into_iter().map(|(k, v)| k.len() + 1 + v.len()).sum::<usize>() + members.len() - 1;
    buf.push(key);
    wire::put_varint(buf, len as u64);
    for (index, (k, v)) in members.enumerate() {
        if index > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(k.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(v.as_bytes());
    }
}

/// A `KeyValue` field: lengths of scalar and string values are computed up front; arrays are
/// patched in after their elements.
#[inline]
fn put_key_value(buf: &mut Vec<u8>, field: u8, attribute: &KeyValue, cut: &mut Cut) {
    let key = attribute.key.as_str();
    let key_len = if key.is_empty() { 0 } else { 1 + wire::varint_len(key.len() as u64) + key.len() };
    match &attribute.value {
        Value::String(text) => {
            let text = cut.text(text.as_str());
            let value_len = 1 + wire::varint_len(text.len() as u64) + text.len();
            key_value_head(buf, field, key, key_len, value_len);
            wire::put_bytes(buf, ANY_STRING, text.as_bytes());
        }
        Value::Bool(flag) => {
            key_value_head(buf, field, key, key_len, 2);
            buf.extend_from_slice(&[ANY_BOOL, u8::from(*flag)]);
        }
        Value::I64(number) => {
            let number = *number as u64;
            key_value_head(buf, field, key, key_len, 1 + wire::varint_len(number));
            wire::put_varint_field(buf, ANY_INT, number);
        }
        Value::F64(number) => {
            key_value_head(buf, field, key, key_len, 9);
            buf.push(ANY_DOUBLE);
            buf.extend_from_slice(&number.to_le_bytes());
        }
        Value::Array(array) => {
            let key_value = wire::open(buf, field, 1);
            wire::put_nonempty(buf, KEY_VALUE_KEY, key.as_bytes());
            let value = wire::open(buf, KEY_VALUE_VALUE, 1);
            put_array(buf, array, cut);
            wire::close(buf, value);
            wire::close(buf, key_value);
        }
        // A value kind newer than this encoder: an empty AnyValue (OTLP's "no value").
        _ => key_value_head(buf, field, key, key_len, 0),
    }
}

/// The key, length and key field of a `KeyValue`, and the key and length of its `AnyValue`
/// (`value_len` bytes long) — everything but the value's member.
#[inline]
fn key_value_head(buf: &mut Vec<u8>, field: u8, key: &str, key_len: usize, value_len: usize) {
    let len = key_len + 1 + wire::varint_len(value_len as u64) + value_len;
    buf.push(field);
    wire::put_varint(buf, len as u64);
    wire::put_nonempty(buf, KEY_VALUE_KEY, key.as_bytes());
    buf.push(KEY_VALUE_VALUE);
    wire::put_varint(buf, value_len as u64);
}

/// `AnyValue.array_value`: one `AnyValue` per element.
fn put_array(buf: &mut Vec<u8>, array: &Array, cut: &mut Cut) {
    let field = wire::open(buf, ANY_ARRAY, 1);
    match array {
        Array::Bool(items) => {
            for item in items {
                buf.extend_from_slice(&[ARRAY_VALUES, 2, ANY_BOOL, u8::from(*item)]);
            }
        }
        Array::I64(items) => {
            for item in items {
                let item = *item as u64;
                buf.extend_from_slice(&[ARRAY_VALUES, 1 + wire::varint_len(item) as u8]);
                wire::put_varint_field(buf, ANY_INT, item);
            }
        }
        Array::F64(items) => {
            for item in items {
                buf.extend_from_slice(&[ARRAY_VALUES, 9, ANY_DOUBLE]);
                buf.extend_from_slice(&item.to_le_bytes());
            }
        }
        Array::String(items) => {
            for item in items {
                let text = cut.text(item.as_str());
                buf.push(ARRAY_VALUES);
                wire::put_varint(buf, (1 + wire::varint_len(text.len() as u64) + text.len()) as u64);
                wire::put_bytes(buf, ANY_STRING, text.as_bytes());
            }
        }
        // An array kind newer than this encoder: an empty array.
        _ => {}
    }
    wire::close(buf, field);
}
