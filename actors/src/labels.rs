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
}

impl fmt::Debug for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for LabelValue {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for LabelValue {}

impl std::hash::Hash for LabelValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
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
}

/// Up to [`MAX_LABELS`] label values, kept in place.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelSet {
    len: u8,
    values: [LabelValue; MAX_LABELS],
}

impl LabelSet {
    /// The values of `labels` (at most [`MAX_LABELS`]; further values are ignored).
    pub fn new(labels: &[&str]) -> Self {
        let mut values: [LabelValue; MAX_LABELS] = std::array::from_fn(|_| LabelValue::new(""));
        let len = labels.len().min(MAX_LABELS);
        for (slot, value) in values.iter_mut().zip(&labels[..len]) {
            *slot = LabelValue::new(value);
        }
        Self { len: len as u8, values }
    }

    /// The values.
    pub fn as_slice(&self) -> &[LabelValue] {
        &self.values[..self.len as usize]
    }
}
