//! The label values that travel with metric events: short values kept in place
//! ([`LabelValue`]), the values of a labelled family ([`LabelSet`]) and its one generic event
//! ([`LabelledEvent`]). Plain data, shared by the ingress and the metric aggregator.

use std::fmt;
use std::sync::Arc;

/// Longest label value kept inline (no allocation on the hot path).
const INLINE_CAPACITY: usize = 46;
/// Most labels a labelled family carries.
pub const MAX_LABELS: usize = 8;

/// A label value that crosses the channel without allocating when it is short.
#[derive(Clone)]
pub enum LabelValue {
    /// Up to 46 bytes kept in place.
    Inline {
        /// Bytes used.
        len: u8,
        /// UTF-8 bytes; only the first `len` count.
        buf: [u8; INLINE_CAPACITY],
    },
    /// A longer value.
    Heap(Arc<str>),
}

impl LabelValue {
    /// Copies `value`; allocates only beyond 46 bytes.
    #[inline]
    pub fn new(value: &str) -> Self {
        let bytes = value.as_bytes();
        if bytes.len() <= INLINE_CAPACITY {
            let mut buf = [0u8; INLINE_CAPACITY];
            buf[..bytes.len()].copy_from_slice(bytes);
            LabelValue::Inline { len: bytes.len() as u8, buf }
        } else {
            LabelValue::Heap(Arc::from(value))
        }
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        match self {
            // The bytes were copied from a `&str` whole, so they are valid UTF-8.
            LabelValue::Inline { len, buf } => std::str::from_utf8(&buf[..*len as usize]).unwrap_or(""),
            LabelValue::Heap(value) => value,
        }
    }

    /// The value's UTF-8 bytes (without the validation [`as_str`](Self::as_str) pays for).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            LabelValue::Inline { len, buf } => &buf[..*len as usize],
            LabelValue::Heap(value) => value.as_bytes(),
        }
    }
}

impl fmt::Debug for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

// Equality and hashing read the bytes: the aggregator compares and hashes label values on every
// event, and `as_str`'s UTF-8 check would run each time.
impl PartialEq for LabelValue {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for LabelValue {}

impl std::hash::Hash for LabelValue {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // What `str`'s `Hash` writes, so a value hashes as its text does.
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

/// What a labelled event does to its series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelledOp {
    /// Records one observation (histograms).
    Observe(f64),
    /// Adds to the count (counters).
    Inc(u64),
    /// Sets the value (gauges).
    Set(f64),
    /// Creates the series at zero if it does not exist (counters, histograms, gauges).
    Touch,
    /// Removes the series and frees the label values it alone used.
    Forget,
}

/// One measurement of a labelled family.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledEvent {
    /// Index of the family in the catalogue's `labelled` list.
    pub family: u16,
    /// Label values in label order; an empty value is an absent attribute.
    pub labels: LabelSet,
    /// What to do.
    pub op: LabelledOp,
    /// The sampled span an observation was taken in, for an exemplar (histograms only).
    pub exemplar: Option<crate::span_ref::SpanRef>,
}

/// Up to [`MAX_LABELS`] label values, kept in place. Equality and hashing see only the values
/// in use.
#[derive(Debug, Clone)]
pub struct LabelSet {
    len: u8,
    values: [LabelValue; MAX_LABELS],
}

impl LabelSet {
    /// The values of `labels` (at most [`MAX_LABELS`]; further values are ignored).
    #[inline]
    pub fn new(labels: &[&str]) -> Self {
        let len = labels.len().min(MAX_LABELS);
        let values = std::array::from_fn(|i| LabelValue::new(labels.get(i).copied().unwrap_or("")));
        Self { len: len as u8, values }
    }

    /// The values.
    #[inline]
    pub fn as_slice(&self) -> &[LabelValue] {
        &self.values[..self.len as usize]
    }
}

impl PartialEq for LabelSet {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for LabelSet {}

impl std::hash::Hash for LabelSet {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}
