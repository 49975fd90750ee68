//! The durable spool: where export batches wait while the collector cannot take them.
//!
//! The exporter writes whole OTLP export requests (the prost-encoded bytes it would have sent) to a
//! [`Spool`] once the collector is judged unreachable, when its in-memory buffer is full and the
//! signal's policy is `spool`, when a batch runs out of retries, and at a shutdown deadline. When
//! the collector answers again it replays the spool oldest first and removes each batch only after
//! the collector accepted it, so delivery is at least once.
//!
//! This crate defines the trait and an in-memory implementation ([`MemorySpool`], also the
//! fallback while the database is unavailable); the service implements it over its database.

pub mod config;
#[doc(hidden)]
pub mod conformance;
mod memory;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::bytes::Bytes;

use crate::self_metrics::Signal;

pub use config::{OverflowPolicy, SpoolConfig, WhenFull};
pub use memory::MemorySpool;

/// A batch to be written to the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolRecord {
    /// The signal the request carries.
    pub signal: Signal,
    /// Items in the request (spans, or metric data points).
    pub items: u64,
    /// Export attempts already made.
    pub attempts: u32,
    /// When the batch was first made, in Unix milliseconds.
    pub created_unix_ms: i64,
    /// The encoded OTLP export request.
    pub body: Bytes,
}

/// A batch read back from the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct SpooledBatch {
    /// The row's id; ids grow with insertion order, so the smallest is the oldest.
    pub id: i64,
    /// The signal the request carries.
    pub signal: Signal,
    /// Items in the request.
    pub items: u64,
    /// Export attempts already made.
    pub attempts: u32,
    /// When the batch was first made, in Unix milliseconds.
    pub created_unix_ms: i64,
    /// The encoded OTLP export request.
    pub body: Bytes,
}

impl SpooledBatch {
    /// The batch as a record to store again (in another spool).
    pub fn to_record(&self) -> SpoolRecord {
        SpoolRecord {
            signal: self.signal,
            items: self.items,
            attempts: self.attempts,
            created_unix_ms: self.created_unix_ms,
            body: self.body.clone(),
        }
    }
}

/// Batches a spool removed without exporting them (size or age bound), per signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// The signal of the removed batches.
    pub signal: Option<Signal>,
    /// Batches removed.
    pub batches: u64,
    /// Items in them.
    pub items: u64,
    /// Bytes of their encoded requests.
    pub bytes: u64,
}

/// What a spool holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches stored.
    pub batches: u64,
    /// Bytes of encoded requests stored.
    pub bytes: u64,
    /// Items stored, by signal (indexed as [`Signal::ALL`]).
    pub items: [u64; crate::self_metrics::SIGNALS],
}

impl SpoolStats {
    /// Items of `signal` stored.
    pub fn items_of(&self, signal: Signal) -> u64 {
        self.items[signal as usize]
    }

    /// Counts `batches` more batches of `signal` with `items` items and `bytes` bytes.
    pub fn add(&mut self, signal: Signal, batches: u64, items: u64, bytes: u64) {
        self.batches += batches;
        self.bytes += bytes;
        self.items[signal as usize] += items;
    }

    /// The figures of both spools together.
    pub fn plus(&self, other: &SpoolStats) -> SpoolStats {
        SpoolStats {
            batches: self.batches + other.batches,
            bytes: self.bytes + other.bytes,
            items: std::array::from_fn(|i| self.items[i] + other.items[i]),
        }
    }

    /// These figures less `other`'s, never below zero.
    pub fn minus(&self, other: &SpoolStats) -> SpoolStats {
        SpoolStats {
            batches: self.batches.saturating_sub(other.batches),
            bytes: self.bytes.saturating_sub(other.bytes),
            items: std::array::from_fn(|i| self.items[i].saturating_sub(other.items[i])),
        }
    }

    /// The figures of `records`.
    pub fn of_records(records: &[SpoolRecord]) -> SpoolStats {
        let mut stats = SpoolStats::default();
        for record in records {
            stats.add(record.signal, 1, record.items, record.body.len() as u64);
        }
        stats
    }

    /// The figures of what `evicted` reports removed.
    pub fn of_evicted(evicted: &[Evicted]) -> SpoolStats {
        let mut stats = SpoolStats::default();
        for e in evicted {
            if let Some(signal) = e.signal {
                stats.add(signal, e.batches, e.items, e.bytes);
            }
        }
        stats
    }
}

/// A spool operation that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The storage behind the spool cannot be reached (database down, pool exhausted); the
    /// exporter falls back to memory and tries again later.
    #[error("spool storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a failed statement, a corrupt row).
    #[error("spool error: {0}")]
    Failed(String),
}

/// Storage for export batches. Every method blocks; the exporter calls them off its own thread.
///
/// Implementations must keep insertion order (the smallest id is the oldest batch) and make
/// [`append`](Spool::append) atomic: either every record is stored, or none.
pub trait Spool: Send + Sync + fmt::Debug + 'static {
    /// Where the batches live: `sqlite`, `postgresql` or `memory`.
    fn kind(&self) -> &'static str;

    /// Stores `records` (oldest first). Then, while the spool holds more than `max_bytes` of
    /// request bytes, removes the oldest batches that are not leased and returns what was
    /// removed, per signal. A leased batch is never removed here: its replay delivers it or
    /// releases it, and counting it `spool_full` too would count it twice.
    fn append(&self, records: Vec<SpoolRecord>, max_bytes: u64) -> Result<Vec<Evicted>, SpoolError>;

    /// Up to `limit` of the oldest batches that no one else is replaying, leased for `lease`:
    /// no other caller (another replica sharing the database) gets them until the lease ends.
    fn claim_oldest(&self, limit: usize, lease: Duration) -> Result<Vec<SpooledBatch>, SpoolError>;

    /// Deletes batches for good: the collector accepted them, or refused them permanently.
    fn remove(&self, ids: &[i64]) -> Result<(), SpoolError>;

    /// Hands a claimed batch back after a failed attempt, with its new attempt count; the lease
    /// ends, so the next claim may take it again.
    fn release(&self, id: i64, attempts: u32) -> Result<(), SpoolError>;

    /// Deletes every batch made before `cutoff_unix_ms` that is not leased and returns what was
    /// removed.
    fn expire(&self, cutoff_unix_ms: i64) -> Result<Vec<Evicted>, SpoolError>;

    /// What the spool holds now.
    fn stats(&self) -> Result<SpoolStats, SpoolError>;
}

/// Now, in Unix milliseconds.
pub fn unix_millis_now() -> i64 {
    unix_millis(SystemTime::now())
}

/// `at` in Unix milliseconds (0 before the epoch).
pub fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Adds one removed batch to the evictions of its signal (helper for implementations).
pub fn merge_evicted(into: &mut Vec<Evicted>, signal: Signal, items: u64, bytes: u64) {
    match into.iter_mut().find(|e| e.signal == Some(signal)) {
        Some(entry) => {
            entry.batches += 1;
            entry.items += items;
            entry.bytes += bytes;
        }
        None => into.push(Evicted { signal: Some(signal), batches: 1, items, bytes }),
    }
}
