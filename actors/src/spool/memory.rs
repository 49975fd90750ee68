//! The in-memory spool: for tests, for a service without a database, and the exporter's fallback
//! while the database spool is unavailable. It survives nothing but keeps the same contract.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{merge_evicted, Evicted, Spool, SpoolError, SpoolRecord, SpoolStats, SpooledBatch};

#[derive(Debug)]
struct Row {
    batch: SpooledBatch,
    leased_until: Option<Instant>,
}

impl Row {
    /// Whether a replay holds the batch at `now`: the size bound and expiry leave it alone.
    fn is_leased(&self, now: Instant) -> bool {
        self.leased_until.is_some_and(|until| until > now)
    }
}

#[derive(Debug, Default)]
struct Inner {
    rows: VecDeque<Row>,
    next_id: i64,
    bytes: u64,
}

/// Batches in a bounded in-memory queue.
#[derive(Debug, Default)]
pub struct MemorySpool {
    inner: Mutex<Inner>,
}

impl MemorySpool {
    /// An empty spool.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one push or pop).
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Spool for MemorySpool {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn append(&self, records: Vec<SpoolRecord>, max_bytes: u64) -> Result<Vec<Evicted>, SpoolError> {
        let mut inner = self.lock();
        for record in records {
            inner.next_id += 1;
            inner.bytes += record.body.len() as u64;
            let batch = SpooledBatch {
                id: inner.next_id,
                signal: record.signal,
                items: record.items,
                attempts: record.attempts,
                created_unix_ms: record.created_unix_ms,
                body: record.body,
            };
            inner.rows.push_back(Row { batch, leased_until: None });
        }
        let mut evicted = Vec::new();
        if inner.bytes <= max_bytes {
            return Ok(evicted);
        }
        // The oldest batches no replay holds go first; a leased one stays (its replay delivers
        // or releases it), so the spool may stay above the bound by what replays hold.
        let (excess, now) = (inner.bytes - max_bytes, Instant::now());
        let mut freed = 0u64;
        inner.rows.retain(|row| {
            if freed >= excess || row.is_leased(now) {
                return true;
            }
            let size = row.batch.body.len() as u64;
            freed += size;
            merge_evicted(&mut evicted, row.batch.signal, row.batch.items, size);
            false
        });
        inner.bytes -= freed;
        Ok(evicted)
    }

    fn claim_oldest(&self, limit: usize, lease: Duration) -> Result<Vec<SpooledBatch>, SpoolError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut claimed = Vec::new();
        for row in inner.rows.iter_mut() {
            if claimed.len() >= limit {
                break;
            }
            if row.is_leased(now) {
                continue;
            }
            row.leased_until = Some(now + lease);
            claimed.push(row.batch.clone());
        }
        Ok(claimed)
    }

    fn remove(&self, ids: &[i64]) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        let before = inner.rows.len();
        let mut freed = 0u64;
        inner.rows.retain(|row| {
            let keep = !ids.contains(&row.batch.id);
            if !keep {
                freed += row.batch.body.len() as u64;
            }
            keep
        });
        debug_assert!(inner.rows.len() <= before);
        inner.bytes -= freed;
        Ok(())
    }

    fn release(&self, id: i64, attempts: u32) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        if let Some(row) = inner.rows.iter_mut().find(|row| row.batch.id == id) {
            row.batch.attempts = attempts;
            row.leased_until = None;
        }
        Ok(())
    }

    fn expire(&self, cutoff_unix_ms: i64) -> Result<Vec<Evicted>, SpoolError> {
        let mut inner = self.lock();
        let mut evicted = Vec::new();
        let mut freed = 0u64;
        let now = Instant::now();
        inner.rows.retain(|row| {
            let keep = row.batch.created_unix_ms >= cutoff_unix_ms || row.is_leased(now);
            if !keep {
                freed += row.batch.body.len() as u64;
                merge_evicted(&mut evicted, row.batch.signal, row.batch.items, row.batch.body.len() as u64);
            }
            keep
        });
        inner.bytes -= freed;
        Ok(evicted)
    }

    fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let inner = self.lock();
        let mut stats = SpoolStats::default();
        for row in &inner.rows {
            stats.add(row.batch.signal, 1, row.batch.items, row.batch.body.len() as u64);
        }
        debug_assert_eq!(stats.bytes, inner.bytes);
        Ok(stats)
    }
}
