//! The model's database: the spool contract (leases, the size bound, expiry) on the simulated
//! clock, recording what its bounds removed.

use super::*;

/// A row of the simulated database spool.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) batch: SpooledBatch,
    pub(super) leased_until: Option<Instant>,
    /// The process that holds the lease.
    pub(super) owner: u32,
}

/// The database spool: the [`Spool`](crate::spool::Spool) contract on the simulated clock.
#[derive(Debug, Default)]
pub(super) struct Database {
    pub(super) rows: BTreeMap<i64, Row>,
    pub(super) next_id: i64,
    pub(super) down: bool,
    /// Rows the size bound or the age bound removed, with their signal and items.
    pub(super) removed: Vec<(i64, Signal, u64)>,
}

impl Database {
    pub(super) fn leased(row: &Row, now: Instant) -> bool {
        row.leased_until.is_some_and(|until| until > now)
    }

    pub(super) fn bytes(&self) -> u64 {
        self.rows.values().map(|r| r.batch.body.len() as u64).sum()
    }

    pub(super) fn append(&mut self, records: Vec<SpoolRecord>, max_bytes: u64, now: Instant) -> Vec<Evicted> {
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
            self.rows.insert(self.next_id, Row { batch, leased_until: None, owner: 0 });
        }
        let mut evicted = Vec::new();
        let mut bytes = self.bytes();
        let ids: Vec<i64> = self.rows.keys().copied().collect();
        for id in ids {
            if bytes <= max_bytes {
                break;
            }
            if Self::leased(&self.rows[&id], now) {
                continue;
            }
            if let Some(row) = self.rows.remove(&id) {
                self.removed.push((id, row.batch.signal, row.batch.items));
                bytes -= row.batch.body.len() as u64;
                merge_evicted(&mut evicted, row.batch.signal, row.batch.items, row.batch.body.len() as u64);
            }
        }
        evicted
    }

    pub(super) fn call(&mut self, op: SpoolCall, now: Instant, owner: u32) -> SpoolReply {
        let down = || crate::spool::SpoolError::Unavailable("connection refused".into());
        if self.down {
            return SpoolReply::from_error(&op, down());
        }
        match op {
            SpoolCall::Append { records, max_bytes } => SpoolReply::Appended(Ok(self.append(records, max_bytes, now))),
            SpoolCall::Claim { limit, lease } => {
                let mut claimed = Vec::new();
                for row in self.rows.values_mut() {
                    if claimed.len() >= limit {
                        break;
                    }
                    if Self::leased(row, now) {
                        continue;
                    }
                    row.leased_until = Some(now + lease);
                    row.owner = owner;
                    claimed.push(row.batch.clone());
                }
                SpoolReply::Claimed(Ok(claimed))
            }
            SpoolCall::Remove { ids } => {
                for id in ids {
                    self.rows.remove(&id);
                }
                SpoolReply::Removed(Ok(()))
            }
            SpoolCall::Release { id, attempts } => {
                if let Some(row) = self.rows.get_mut(&id) {
                    row.batch.attempts = attempts;
                    row.leased_until = None;
                }
                SpoolReply::Released(Ok(()))
            }
            SpoolCall::Refresh { remove, expire_before, moved, max_bytes } => {
                let mut done = Refreshed { removed: true, ..Refreshed::default() };
                for id in remove {
                    self.rows.remove(&id);
                }
                if let Some(cutoff) = expire_before {
                    let doomed: Vec<i64> = self
                        .rows
                        .iter()
                        .filter(|(_, r)| r.batch.created_unix_ms < cutoff && !Self::leased(r, now))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in doomed {
                        if let Some(row) = self.rows.remove(&id) {
                            self.removed.push((id, row.batch.signal, row.batch.items));
                            let b = row.batch;
                            merge_evicted(&mut done.expired, b.signal, b.items, b.body.len() as u64);
                        }
                    }
                }
                done.moved = Some(self.append(moved, max_bytes, now));
                let mut stats = SpoolStats::default();
                for row in self.rows.values() {
                    stats.add(row.batch.signal, 1, row.batch.items, row.batch.body.len() as u64);
                }
                done.stats = Some(stats);
                SpoolReply::Refreshed(done)
            }
        }
    }
}
