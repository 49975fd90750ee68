//! Protobuf wire primitives: field keys, varints, fixed-width values, and length-delimited fields
//! whose length is written once, after their body, into room set aside in front of it.
//!
//! A nested message is opened with a guess of how many bytes its length will take
//! ([`open`]) and closed once its body is written ([`close`]): the length is computed once, from
//! the buffer's position, and patched into the room in front of the body. When the guess was
//! wrong the body moves by the difference, so the output is always the canonical (shortest)
//! encoding; a good guess makes that move rare.

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
    // The number of significant bits, rounded up to groups of 7 (prost's formula).
    (((63 - (value | 1).leading_zeros()) * 9 + 73) / 64) as usize
}

/// Appends `value` as a varint.
#[inline]
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Appends a varint field (`key` already holds the field number and [`VARINT`]).
#[inline]
pub(crate) fn put_varint_field(buf: &mut Vec<u8>, key: u8, value: u64) {
    buf.push(key);
    put_varint(buf, value);
}

/// Appends a varint field unless `value` is zero (proto3 leaves default scalars out).
#[inline]
pub(crate) fn put_nonzero_varint(buf: &mut Vec<u8>, key: u8, value: u64) {
    if value != 0 {
        put_varint_field(buf, key, value);
    }
}

/// Appends a `fixed64` field unless `value` is zero.
#[inline]
pub(crate) fn put_nonzero_fixed64(buf: &mut Vec<u8>, key: u8, value: u64) {
    if value != 0 {
        buf.push(key);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

/// Appends a length-delimited field holding `bytes`, even when it is empty (a oneof member, or a
/// field that must be present).
#[inline]
pub(crate) fn put_bytes(buf: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    buf.push(key);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Appends a string or bytes field unless it is empty (proto3 leaves default scalars out).
#[inline]
pub(crate) fn put_nonempty(buf: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_bytes(buf, key, bytes);
    }
}

/// A length-delimited field whose body is being written: where the body starts and how many
/// bytes in front of it were set aside for its length.
#[derive(Debug, Clone, Copy)]
#[must_use = "an open field must be closed to get its length"]
pub(crate) struct Open {
    body: usize,
    room: usize,
}

/// Starts a length-delimited field: appends `key` and sets aside `room` bytes (1 to 5) for the
/// length. Write the body, then [`close`] it.
#[inline]
pub(crate) fn open(buf: &mut Vec<u8>, key: u8, room: usize) -> Open {
    debug_assert!((1..=5).contains(&room));
    buf.push(key);
    buf.extend_from_slice(&[0u8; 5][..room]);
    Open { body: buf.len(), room }
}

/// Ends the field `field` opened: writes its length in front of its body, moving the body when
/// the length needs more or fewer bytes than were set aside.
#[inline]
pub(crate) fn close(buf: &mut Vec<u8>, field: Open) {
    let len = buf.len() - field.body;
    if field.room == 1 && len < 0x80 {
        buf[field.body - 1] = len as u8;
        return;
    }
    close_slow(buf, field, len);
}

#[inline(never)]
fn close_slow(buf: &mut Vec<u8>, field: Open, len: usize) {
    let need = varint_len(len as u64);
    let at = field.body - field.room;
    if need > field.room {
        let grow = need - field.room;
        buf.resize(buf.len() + grow, 0);
        buf.copy_within(field.body..field.body + len, field.body + grow);
    } else if need < field.room {
        buf.copy_within(field.body..field.body + len, at + need);
        buf.truncate(at + need + len);
    }
    let mut value = len as u64;
    for slot in &mut buf[at..at + need - 1] {
        *slot = (value as u8) | 0x80;
        value >>= 7;
    }
    buf[at + need - 1] = value as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// prost's own encoding of the same values is the oracle.
    #[test]
    fn varints_match_prost() {
        for value in [0u64, 1, 127, 128, 300, 16_383, 16_384, 1 << 21, u32::MAX as u64, 1 << 56, u64::MAX] {
            let mut ours = Vec::new();
            put_varint(&mut ours, value);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(value, &mut theirs);
            assert_eq!(ours, theirs, "{value}");
            assert_eq!(varint_len(value), theirs.len(), "{value}");
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

    /// Whatever room was set aside, the field comes out in its canonical encoding.
    #[test]
    fn a_closed_field_is_canonical_whatever_the_guess() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut expected = vec![0xff];
            put_bytes(&mut expected, key(2, LEN), &body);
            for room in 1..=5 {
                let mut buf = vec![0xff];
                let field = open(&mut buf, key(2, LEN), room);
                buf.extend_from_slice(&body);
                close(&mut buf, field);
                assert!(buf == expected, "length {len}, room {room}");
            }
        }
    }

    #[test]
    fn nested_fields_close_inside_out() {
        let mut buf = Vec::new();
        let outer = open(&mut buf, key(1, LEN), 1);
        let inner = open(&mut buf, key(2, LEN), 2);
        buf.extend_from_slice(&[7; 200]);
        close(&mut buf, inner);
        put_varint_field(&mut buf, key(3, VARINT), 5);
        close(&mut buf, outer);
        let mut inner_expected = Vec::new();
        put_bytes(&mut inner_expected, key(2, LEN), &[7; 200]);
        inner_expected.extend_from_slice(&[0x18, 5]);
        let mut expected = Vec::new();
        put_bytes(&mut expected, key(1, LEN), &inner_expected);
        assert_eq!(buf, expected);
    }
}
