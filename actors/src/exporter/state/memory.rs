//! The memory fallback spool, kept inside the state machine: batches in insertion order, bounded
//! by `spool.memory_max_bytes`, claimed for replay or for the move to the database. Claimed
//! batches are never evicted or expired (their replay decides), so nothing is counted twice.

use std::collections::VecDeque;

use crate::spool::{merge_evicted, Evicted, SpoolRecord, SpoolStats, SpooledBatch};

/// The spool figures of one batch.
pub(super) fn figures(batch: &SpooledBatch) -> SpoolStats {
    let mut stats = SpoolStats::default();
    stats.add(batch.signal, 1, batch.items, batch.body.len() as u64);
    stats
}

#[derive(Debug)]
struct MemoryRow {
    batch: SpooledBatch,
    /// Being replayed, or moving to the database.
    claimed: bool,
}

/// The memory fallback: batches in insertion order, bounded by `spool.memory_max_bytes`. Claimed
/// batches are never evicted or expired (their replay decides), so nothing is counted twice.
#[derive(Debug, Default)]
pub(super) struct MemoryRows {
    rows: VecDeque<MemoryRow>,
    next_id: i64,
    pub(super) stats: SpoolStats,
}

impl MemoryRows {
    pub(super) fn append(&mut self, records: Vec<SpoolRecord>, max_bytes: u64) -> Vec<Evicted> {
        for record in records {
            self.next_id += 1;
            let batch = SpooledBatch {
                id: self.next_id,
                signal: record.signal,
                items: record.items,
                attempts: record.attempts,
                created_unix_ms: record.created_unix_ms,
                body: record.body,
            };
            self.stats = self.stats.plus(&figures(&batch));
            self.rows.push_back(MemoryRow { batch, claimed: false });
        }
        self.remove_where(|row, stats| stats.bytes > max_bytes && !row.claimed)
    }

    /// Removes the rows `doomed` picks, oldest first, and returns their figures.
    fn remove_where(&mut self, mut doomed: impl FnMut(&MemoryRow, &SpoolStats) -> bool) -> Vec<Evicted> {
        let mut evicted = Vec::new();
        let mut stats = self.stats;
        self.rows.retain(|row| {
            if !doomed(row, &stats) {
                return true;
            }
            let b = &row.batch;
            stats = stats.minus(&figures(b));
            merge_evicted(&mut evicted, b.signal, b.items, b.body.len() as u64);
            false
        });
        self.stats = stats;
        evicted
    }

    pub(super) fn claim(&mut self, limit: usize) -> Vec<SpooledBatch> {
        let idle = self.rows.iter_mut().filter(|row| !row.claimed).take(limit);
        idle.map(|row| {
            row.claimed = true;
            row.batch.clone()
        })
        .collect()
    }

    pub(super) fn remove(&mut self, ids: &[i64]) {
        self.remove_where(|row, _| ids.contains(&row.batch.id));
    }

    pub(super) fn release(&mut self, id: i64, attempts: u32) {
        if let Some(row) = self.rows.iter_mut().find(|row| row.batch.id == id) {
            row.batch.attempts = attempts;
            row.claimed = false;
        }
    }

    pub(super) fn unclaim(&mut self, ids: &[i64]) {
        for row in self.rows.iter_mut().filter(|row| ids.contains(&row.batch.id)) {
            row.claimed = false;
        }
    }

    pub(super) fn expire(&mut self, cutoff_unix_ms: i64) -> Vec<Evicted> {
        self.remove_where(|row, _| !row.claimed && row.batch.created_unix_ms < cutoff_unix_ms)
    }

    /// Every batch, claimed or not, as records; the memory spool is empty afterwards.
    pub(super) fn take_all(&mut self) -> Vec<SpoolRecord> {
        self.stats = SpoolStats::default();
        std::mem::take(&mut self.rows).into_iter().map(|row| row.batch.to_record()).collect()
    }

    /// The batches of the memory spool, oldest first, and whether each is claimed.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&SpooledBatch, bool)> {
        self.rows.iter().map(|row| (&row.batch, row.claimed))
    }
}
