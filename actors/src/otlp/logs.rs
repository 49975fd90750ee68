//! Log records straight to the bytes of an OTLP `ExportLogsServiceRequest`.
//!
//! The request this writes decodes to exactly the message one would build from the records with
//! the opentelemetry-proto types: one `ResourceLogs` with the pipeline's resource, one
//! `ScopeLogs` per distinct scope in the order the scopes first appear (scope name only), records
//! in batch order inside each, every field proto3 leaves out when it holds its default left out.
//! The bytes are also the ones prost writes for that message (fields in number order, canonical
//! lengths), which the property test in `logs_tests` checks.
//!
//! As in [`trace`](super::trace), the resource is encoded once per encoder and each scope once
//! until it leaves a small cache; nested lengths are patched in after their bodies.

use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;

use super::wire::{self, key, Writer, I32, I64, LEN, VARINT};
use crate::log_record::{LogRecord, LogValue};

// ExportLogsServiceRequest
const REQUEST_RESOURCE_LOGS: u8 = key(1, LEN);
// ResourceLogs (fields 1 and 3: wire::resource_fields)
const RESOURCE_LOGS_SCOPE_LOGS: u8 = key(2, LEN);
// ScopeLogs
const SCOPE_LOGS_SCOPE: u8 = key(1, LEN);
const SCOPE_LOGS_LOG_RECORDS: u8 = key(2, LEN);
// InstrumentationScope
const SCOPE_NAME: u8 = key(1, LEN);
// LogRecord
const LOG_TIME: u8 = key(1, I64);
const LOG_SEVERITY_NUMBER: u8 = key(2, VARINT);
const LOG_SEVERITY_TEXT: u8 = key(3, LEN);
const LOG_BODY: u8 = key(5, LEN);
const LOG_ATTRIBUTES: u8 = key(6, LEN);
const LOG_FLAGS: u8 = key(8, I32);
const LOG_TRACE_ID: u8 = key(9, LEN);
const LOG_SPAN_ID: u8 = key(10, LEN);
const LOG_OBSERVED_TIME: u8 = key(11, I64);
const LOG_EVENT_NAME: u8 = key(12, LEN);
// KeyValue
const KEY_VALUE_KEY: u8 = key(1, LEN);
const KEY_VALUE_VALUE: u8 = key(2, LEN);
// AnyValue (a oneof: the member is written even when it holds its default)
const ANY_STRING: u8 = key(1, LEN);
const ANY_BOOL: u8 = key(2, VARINT);
const ANY_INT: u8 = key(3, VARINT);
const ANY_DOUBLE: u8 = key(4, I64);

/// Distinct scopes whose encoding is kept between batches; past this the cache starts over.
const SCOPE_CACHE: usize = 128;
/// The first guess of a record's encoded size, before a batch has been measured.
const INITIAL_BYTES_PER_RECORD: usize = 160;

/// Turns batches of log records into encoded `ExportLogsServiceRequest`s for one resource.
///
/// Keep one per log buffer: it holds the resource's encoding, the encodings of the scopes it has
/// seen, scratch space for grouping, and the size of the last batch as the guess for the next.
#[derive(Debug)]
pub struct LogEncoder {
    /// `ResourceLogs.resource`, key and length included.
    resource: Vec<u8>,
    /// `ResourceLogs.schema_url`, key and length included, or nothing.
    resource_schema_url: Vec<u8>,
    /// Scope names and their encoding as `ScopeLogs.scope`.
    scopes: Vec<(&'static str, Vec<u8>)>,
    /// Per group of the batch being encoded: index in `scopes` and records in it.
    groups: Vec<(usize, usize)>,
    /// The group of each record (only filled with two groups or more).
    membership: Vec<u32>,
    bytes_per_record: usize,
}

impl LogEncoder {
    /// An encoder for records of `resource`.
    pub fn new(resource: &ResourceAttributesWithSchema) -> Self {
        let (encoded, schema_url) = wire::resource_fields(resource);
        Self {
            resource: encoded,
            resource_schema_url: schema_url,
            scopes: Vec::new(),
            groups: Vec::new(),
            membership: Vec::new(),
            bytes_per_record: INITIAL_BYTES_PER_RECORD,
        }
    }

    /// Encodes `records` as one `ExportLogsServiceRequest`.
    pub fn encode(&mut self, records: &[LogRecord]) -> Vec<u8> {
        self.group(records);
        let per_record = self.bytes_per_record;
        let estimate = self.resource.len() + records.len() * per_record + self.groups.len() * 48;
        let mut out = Writer::with_capacity(estimate + estimate / 8 + 64);
        let resource_logs = out.open(REQUEST_RESOURCE_LOGS, room_for(estimate));
        out.put_slice(&self.resource);
        let single = self.groups.len() == 1;
        for (index, &(scope, count)) in self.groups.iter().enumerate() {
            let head = &self.scopes[scope].1;
            let scope_logs = out.open(RESOURCE_LOGS_SCOPE_LOGS, room_for(head.len() + count * per_record));
            out.put_slice(head);
            if single {
                records.iter().for_each(|record| put_record(&mut out, record));
            } else {
                for (record, &member) in records.iter().zip(&self.membership) {
                    if member as usize == index {
                        put_record(&mut out, record);
                    }
                }
            }
            out.close(scope_logs);
        }
        out.put_slice(&self.resource_schema_url);
        out.close(resource_logs);
        if !records.is_empty() {
            self.bytes_per_record = (out.len() / records.len()).max(32);
        }
        out.into_bytes()
    }

    /// Groups the batch by scope, groups in order of first appearance, and points each group at
    /// its scope's encoding (encoding the scopes not cached yet).
    fn group(&mut self, records: &[LogRecord]) {
        self.groups.clear();
        self.membership.clear();
        if self.scopes.len() >= SCOPE_CACHE {
            // A batch may still hold more scopes than this; each is encoded once per batch.
            self.scopes.clear();
        }
        let mut last: Option<usize> = None;
        for (index, record) in records.iter().enumerate() {
            let scopes = &self.scopes;
            let same = |group: &(usize, usize)| same_text(scopes[group.0].0, record.scope);
            let found = match last {
                Some(last) if same(&self.groups[last]) => Some(last),
                _ => self.groups.iter().position(same),
            };
            let group = match found {
                Some(group) => group,
                None => {
                    let scope = self.scope(record.scope);
                    if self.groups.len() == 1 {
                        // A second scope: from now on each record's group is written down.
                        self.membership.resize(index, 0);
                    }
                    self.groups.push((scope, 0));
                    self.groups.len() - 1
                }
            };
            self.groups[group].1 += 1;
            if self.groups.len() > 1 {
                self.membership.push(group as u32);
            }
            last = Some(group);
        }
    }

    /// The index of `name`'s encoding in the cache, encoding it if needed.
    fn scope(&mut self, name: &'static str) -> usize {
        if let Some(index) = self.scopes.iter().position(|(known, _)| same_text(known, name)) {
            return index;
        }
        let mut head = Writer::with_capacity(name.len() + 8);
        let field = head.open(SCOPE_LOGS_SCOPE, 1);
        head.put_nonempty(SCOPE_NAME, name.as_bytes());
        head.close(field);
        self.scopes.push((name, head.into_bytes()));
        self.scopes.len() - 1
    }
}

/// Equal strings; the same static string (the usual case for scopes) is recognised without
/// comparing bytes.
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// Bytes to set aside for the length of a message of about `estimate` bytes.
fn room_for(estimate: usize) -> usize {
    wire::varint_len(estimate as u64).min(5)
}

/// Writes one `LogRecord`, fields in number order (as prost writes them).
fn put_record(out: &mut Writer, record: &LogRecord) {
    let field = out.open(SCOPE_LOGS_LOG_RECORDS, 2);
    out.put_nonzero_fixed64(LOG_TIME, record.time_unix_nano);
    out.put_varint_field(LOG_SEVERITY_NUMBER, record.severity.number() as u64);
    out.put_bytes(LOG_SEVERITY_TEXT, record.severity.text().as_bytes());
    let body = out.open(LOG_BODY, 1);
    put_any_value(out, &record.body);
    out.close(body);
    for (name, value) in &record.attributes {
        let pair = out.open(LOG_ATTRIBUTES, 1);
        out.put_nonempty(KEY_VALUE_KEY, name.as_bytes());
        let any = out.open(KEY_VALUE_VALUE, 1);
        put_any_value(out, value);
        out.close(any);
        out.close(pair);
    }
    if record.trace_flags != 0 {
        out.put([LOG_FLAGS, record.trace_flags, 0, 0, 0]);
    }
    if record.trace_id != [0; 16] {
        let ids = out.slot(18);
        ids[..2].copy_from_slice(&[LOG_TRACE_ID, 16]);
        ids[2..].copy_from_slice(&record.trace_id);
        out.advance(18);
    }
    if record.span_id != [0; 8] {
        let ids = out.slot(10);
        ids[..2].copy_from_slice(&[LOG_SPAN_ID, 8]);
        ids[2..].copy_from_slice(&record.span_id);
        out.advance(10);
    }
    out.put_nonzero_fixed64(LOG_OBSERVED_TIME, record.observed_time_unix_nano);
    if let Some(name) = record.event_name {
        out.put_nonempty(LOG_EVENT_NAME, name.as_bytes());
    }
    out.close(field);
}

/// Writes the member of an `AnyValue` (the oneof member is written even when it is a default).
#[inline]
fn put_any_value(out: &mut Writer, value: &LogValue) {
    match value {
        LogValue::Str(text) => out.put_bytes(ANY_STRING, text.as_bytes()),
        LogValue::Static(text) => out.put_bytes(ANY_STRING, text.as_bytes()),
        LogValue::Bool(flag) => out.put_varint_field(ANY_BOOL, u64::from(*flag)),
        LogValue::I64(number) => out.put_varint_field(ANY_INT, *number as u64),
        LogValue::F64(number) => {
            let slot = out.slot(9);
            slot[0] = ANY_DOUBLE;
            slot[1..9].copy_from_slice(&number.to_bits().to_le_bytes());
            out.advance(9);
        }
    }
}
