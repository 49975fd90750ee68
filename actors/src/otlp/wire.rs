//! Protobuf wire primitives: field keys, varints, fixed-width values, and length-delimited fields
//! whose length is written once, after their body, into room set aside in front of it.
//!
//! A nested message is opened with a guess of how many bytes its length will take
//! ([`Writer::open`]) and closed once its body is written ([`Writer::close`]): the length is
//! computed once, from the write position, and patched into the room in front of the body. When
//! the guess was wrong the body moves by the difference, so the output is always the canonical
//! (shortest) encoding; a good guess makes that move rare.
//!
//! The [`Writer`] keeps a little zeroed room ahead of its position, so a field made of several
//! pieces is written into one slot with one capacity check ([`Writer::slot`]). The room is
//! zeroed two kilobytes at a time, just before it is written, while it is in cache.

use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;

/// Wire type of varint fields (`int64`, `uint32`, `bool`, enums).
pub(crate) const VARINT: u32 = 0;
/// Wire type of 8-byte little-endian fields (`fixed64`, `double`).
pub(crate) const I64: u32 = 1;
/// Wire type of length-delimited fields (strings, bytes, nested messages).
pub(crate) const LEN: u32 = 2;
/// Wire type of 4-byte little-endian fields (`fixed32`).
pub(crate) const I32: u32 = 5;

/// The one-byte key of field `number` (1 to 15) with `wire_type`.
pub(crate) const fn key(number: u32, wire_type: u32) -> u8 {
    assert!(number >= 1 && number <= 15, "a one-byte key holds fields 1 to 15");
    ((number << 3) | wire_type) as u8
}

/// How many bytes `value` takes as a varint (1 to 10).
#[inline]
pub(crate) const fn varint_len(value: u64) -> usize {
    // The index of the highest set bit, rounded up to groups of 7 bits (prost's formula).
    (((63 - (value | 1).leading_zeros()) * 9 + 73) / 64) as usize
}

/// A length-delimited field whose body is being written: where the body starts and how many
/// bytes in front of it were set aside for its length.
#[derive(Debug, Clone, Copy)]
#[must_use = "an open field must be closed to get its length"]
pub(crate) struct Open {
    body: usize,
    room: usize,
}

/// Bytes of room zeroed at a time (below the size at which `memset` switches to `rep stosb`).
const ROOM_CHUNK: usize = 2000;

/// An output buffer: bytes before `pos` are written, bytes from `pos` to the end of `buf` are
/// room to write into.
#[derive(Debug)]
pub(crate) struct Writer {
    buf: Vec<u8>,
    pos: usize,
}

impl Writer {
    /// A writer that can take `capacity` bytes before it reallocates.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { buf: Vec::with_capacity(capacity), pos: 0 }
    }

    /// Bytes written so far.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.pos
    }

    /// The bytes written, in a vector no more than half again as large as they are.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        self.buf.truncate(self.pos);
        if self.buf.capacity() > self.pos + self.pos / 2 {
            self.buf.shrink_to_fit();
        }
        self.buf
    }

    /// The next `n` bytes of room, to fill and then [`advance`](Self::advance) over.
    #[inline]
    pub(crate) fn slot(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() - self.pos < n {
            self.grow(n);
        }
        &mut self.buf[self.pos..self.pos + n]
    }

    /// Counts `n` bytes of the slot as written.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        self.pos += n;
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        // Zero a chunk, but not past the capacity when `n` fits in it: a batch encoded in the
        // capacity it was given leaves in that allocation.
        let (have, spare) = (self.buf.len() - self.pos, self.buf.capacity() - self.buf.len());
        let more = (n - have).max(ROOM_CHUNK.min(spare));
        self.buf.resize(self.buf.len() + more, 0);
    }

    /// Appends a few bytes known at compile time.
    #[inline]
    pub(crate) fn put<const N: usize>(&mut self, bytes: [u8; N]) {
        self.slot(N).copy_from_slice(&bytes);
        self.pos += N;
    }

    /// Appends `bytes` as they are.
    #[inline]
    pub(crate) fn put_slice(&mut self, bytes: &[u8]) {
        self.slot(bytes.len()).copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    /// Appends a varint field (`key` holds the field number and [`VARINT`]).
    #[inline]
    pub(crate) fn put_varint_field(&mut self, key: u8, value: u64) {
        let slot = self.slot(11);
        slot[0] = key;
        let n = write_varint(&mut slot[1..], value);
        self.pos += 1 + n;
    }

    /// Appends a varint field unless `value` is zero (proto3 leaves default scalars out).
    #[inline]
    pub(crate) fn put_nonzero_varint(&mut self, key: u8, value: u64) {
        if value != 0 {
            self.put_varint_field(key, value);
        }
    }

    /// Appends a `fixed64` field unless `value` is zero.
    #[inline]
    pub(crate) fn put_nonzero_fixed64(&mut self, key: u8, value: u64) {
        if value != 0 {
            let slot = self.slot(9);
            slot[0] = key;
            slot[1..9].copy_from_slice(&value.to_le_bytes());
            self.pos += 9;
        }
    }

    /// Appends a length-delimited field holding `bytes`, even when it is empty (a oneof member,
    /// or a field that must be present).
    #[inline(always)]
    pub(crate) fn put_bytes(&mut self, key: u8, bytes: &[u8]) {
        let n = bytes.len();
        if n < 0x80 {
            let slot = self.slot(2 + n);
            slot[0] = key;
            slot[1] = n as u8;
            slot[2..].copy_from_slice(bytes);
            self.pos += 2 + n;
        } else {
            self.put_varint_field(key, n as u64);
            self.put_slice(bytes);
        }
    }

    /// Appends a string or bytes field unless it is empty (proto3 leaves default scalars out).
    #[inline]
    pub(crate) fn put_nonempty(&mut self, key: u8, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.put_bytes(key, bytes);
        }
    }

    /// Starts a length-delimited field: appends `key` and sets aside `room` bytes (1 to 5) for
    /// the length. Write the body, then [`close`](Self::close) it.
    #[inline]
    pub(crate) fn open(&mut self, key: u8, room: usize) -> Open {
        debug_assert!((1..=5).contains(&room));
        self.slot(1 + room)[0] = key;
        self.pos += 1 + room;
        Open { body: self.pos, room }
    }

    /// Ends the field `field` opened: writes its length in front of its body, moving the body
    /// when the length needs more or fewer bytes than were set aside.
    #[inline]
    pub(crate) fn close(&mut self, field: Open) {
        let len = self.pos - field.body;
        match field.room {
            1 if len < 0x80 => self.buf[field.body - 1] = len as u8,
            2 if (0x80..0x4000).contains(&len) => {
                self.buf[field.body - 2] = (len as u8) | 0x80;
                self.buf[field.body - 1] = (len >> 7) as u8;
            }
            _ => self.close_slow(field, len),
        }
    }

    #[inline(never)]
    fn close_slow(&mut self, field: Open, len: usize) {
        let need = varint_len(len as u64);
        let at = field.body - field.room;
        if need != field.room {
            let end = at + need + len;
            if end > self.buf.len() {
                self.grow(end - self.pos);
            }
            self.buf.copy_within(field.body..field.body + len, at + need);
            self.pos = end;
        }
        write_varint(&mut self.buf[at..at + need], len as u64);
    }
}

/// The `resource` (field 1) and `schema_url` (field 3) of a `ResourceSpans`, `ResourceLogs` or
/// `ResourceMetrics`, keys and lengths included: encoded once per encoder and copied into every
/// request (the schema URL part is empty when there is none).
pub(crate) fn resource_fields(resource: &ResourceAttributesWithSchema) -> (Vec<u8>, Vec<u8>) {
    let mut encoded = Vec::new();
    let message =
        Resource { attributes: resource.attributes.0.clone(), dropped_attributes_count: 0, entity_refs: vec![] };
    prost::encoding::message::encode(1, &message, &mut encoded);
    let mut schema_url = Writer::with_capacity(0);
    schema_url.put_nonempty(key(3, LEN), resource.schema_url.as_deref().unwrap_or_default().as_bytes());
    (encoded, schema_url.into_bytes())
}

/// Copies `src` into `dst` (of the same length). Attribute keys and values are mostly 4 to 32
/// bytes long: those take two overlapping fixed-size moves instead of a call to `memcpy`.
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (8..=16).contains(&n) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..n].copy_from_slice(&src[n - 8..]);
    } else if (17..=32).contains(&n) {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..n].copy_from_slice(&src[n - 16..]);
    } else if (4..8).contains(&n) {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..n].copy_from_slice(&src[n - 4..]);
    } else {
        dst[..n].copy_from_slice(src);
    }
}

/// Writes `value` as a varint at the start of `out` (at least [`varint_len`] bytes long);
/// returns how many bytes it took.
#[inline]
pub(crate) fn write_varint(out: &mut [u8], mut value: u64) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        out[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    out[n] = value as u8;
    n + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Writer)) -> Vec<u8> {
        // Start small so that growing is exercised too.
        let mut writer = Writer::with_capacity(3);
        write(&mut writer);
        writer.into_bytes()
    }

    /// prost's own encoding of the same values is the oracle.
    #[test]
    fn varints_match_prost() {
        for value in [0u64, 1, 127, 128, 300, 16_383, 16_384, 1 << 21, u32::MAX as u64, 1 << 56, u64::MAX] {
            let mut theirs = vec![0x18];
            prost::encoding::encode_varint(value, &mut theirs);
            assert_eq!(written(|w| w.put_varint_field(0x18, value)), theirs, "{value}");
            assert_eq!(1 + varint_len(value), theirs.len(), "{value}");
        }
    }

    #[test]
    fn keys_put_the_field_number_above_the_wire_type() {
        assert_eq!(key(1, LEN), 0x0a);
        assert_eq!(key(2, VARINT), 0x10);
        assert_eq!(key(4, I64), 0x21);
        assert_eq!(key(15, LEN), 0x7a);
        assert_eq!(key(6, I32), 0x35);
    }

    #[test]
    fn byte_fields_match_prost_at_every_length_boundary() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384] {
            let body = vec![b'x'; len];
            let mut theirs = Vec::new();
            prost::encoding::bytes::encode(2, &body, &mut theirs);
            assert_eq!(written(|w| w.put_bytes(key(2, LEN), &body)), theirs, "{len}");
        }
        assert!(written(|w| w.put_nonempty(key(2, LEN), b"")).is_empty());
        assert!(written(|w| w.put_nonzero_varint(0x10, 0)).is_empty());
        assert!(written(|w| w.put_nonzero_fixed64(0x21, 0)).is_empty());
        assert_eq!(written(|w| w.put_nonzero_fixed64(0x21, 0x0102)), [0x21, 2, 1, 0, 0, 0, 0, 0, 0]);
    }

    /// Whatever room was set aside, the field comes out in its canonical encoding.
    #[test]
    fn a_closed_field_is_canonical_whatever_the_guess() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let expected = written(|w| {
                w.put([0xff]);
                w.put_bytes(key(2, LEN), &body);
                w.put([0xee]);
            });
            for room in 1..=5 {
                let ours = written(|w| {
                    w.put([0xff]);
                    let field = w.open(key(2, LEN), room);
                    w.put_slice(&body);
                    w.close(field);
                    w.put([0xee]);
                });
                assert!(ours == expected, "length {len}, room {room}");
            }
        }
    }

    #[test]
    fn nested_fields_close_inside_out() {
        let ours = written(|w| {
            let outer = w.open(key(1, LEN), 1);
            let inner = w.open(key(2, LEN), 2);
            w.put_slice(&[7; 200]);
            w.close(inner);
            w.put_varint_field(key(3, VARINT), 5);
            w.close(outer);
        });
        let mut inner = Vec::new();
        prost::encoding::bytes::encode(2, &vec![7u8; 200], &mut inner);
        inner.extend_from_slice(&[0x18, 5]);
        let mut expected = Vec::new();
        prost::encoding::bytes::encode(1, &inner, &mut expected);
        assert_eq!(ours, expected);
    }
}
