//! Drains: a flush waits until every fresh batch is exported and the spool replayed; a shutdown
//! waits until every fresh batch is exported or spooled, and at its deadline writes what is left
//! to the database spool (its policy permitting) and drops and counts the rest.

use std::time::Instant;

use super::{Action, ExporterState, Flight, WaiterId, SPOOL_SHUTDOWN_GRACE};
use crate::exporter::messages::DrainReport;
use crate::internal_events::{BatchDropped, BatchSpooled, ShutdownSpoolFailed};
use crate::self_metrics::{DropReason, Signal};
use crate::spool::{Evicted, OverflowPolicy, SpoolError, SpoolRecord, SpoolStats};

/// A caller waiting for the exporter to run dry.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) id: WaiterId,
    pub(super) deadline: Instant,
    pub(super) give_up: bool,
}

/// The last write at a shutdown deadline: blocking, on the actor's thread.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadlineWrite {
    /// Rows to delete first (delivered, their deletion still queued).
    pub remove: Vec<i64>,
    /// Oldest first.
    pub records: Vec<SpoolRecord>,
    /// The spool's bound.
    pub max_bytes: u64,
}

/// A deadline write waiting for its answer.
#[derive(Debug)]
pub(super) struct PendingDeadline {
    waiter: WaiterId,
    records: Vec<SpoolRecord>,
    /// The deletions made first (given back when the write fails).
    removals: Vec<(i64, SpoolStats)>,
    /// The first `fresh` records were never spooled before (the rest were counted then).
    fresh: usize,
    dropped: Vec<(Signal, u64)>,
}

impl ExporterState {
    /// Fresh batches still in memory: waiting, in flight, or on their way to the spool.
    pub(super) fn left(&self) -> DrainReport {
        let flights = self.in_flight.iter().filter(|f| f.flight.is_fresh());
        let appends: Vec<&SpoolRecord> = self.spool.queued_appends().collect();
        DrainReport {
            batches_left: self.pending.len() + flights.clone().count() + appends.len(),
            items_left: self.pending.iter().map(|p| p.batch.items).sum::<u64>()
                + flights.map(|f| f.flight.items()).sum::<u64>()
                + appends.iter().map(|r| r.items).sum::<u64>(),
        }
    }

    /// Whether a drain is complete: every fresh batch exported, and (unless shutting down, when
    /// being spooled is enough) the spool replayed.
    fn settled(&self, give_up: bool) -> bool {
        let fresh_done = self.left().batches_left == 0;
        if give_up {
            return fresh_done;
        }
        fresh_done
            && self.in_flight.is_empty()
            && self.spool.figures_known()
            && self.spool.total().batches == 0
            && self.spool.ready_len() == 0
    }

    /// Answers every waiter whose condition is met: nothing left, or its deadline passed.
    pub(super) fn answer_waiters(&mut self, now: Instant) {
        for waiter in std::mem::take(&mut self.waiters) {
            if self.deadline_write.is_some() {
                // One deadline write at a time; the others wait for its answer.
                self.waiters.push(waiter);
                continue;
            }
            let settled = self.settled(waiter.give_up);
            if !settled && waiter.deadline > now {
                self.waiters.push(waiter);
                continue;
            }
            if !waiter.give_up {
                let report = if settled { DrainReport::default() } else { self.left() };
                self.out.push(Action::ReplyDrain { waiter: waiter.id, report });
                continue;
            }
            // A spool call under way (a write, or batches moving from memory to the database)
            // gets a short grace; then what is left is spooled here (blocking: the exporter is
            // about to stop) or dropped.
            if self.spool.call_under_way() && now < waiter.deadline + SPOOL_SHUTDOWN_GRACE {
                self.waiters.push(waiter);
                continue;
            }
            self.spool_or_drop_at_deadline(waiter.id);
        }
    }

    /// At the shutdown deadline: every fresh batch still in memory, the database's write queue
    /// and the memory spool go to the database spool in one write (the policy permitting, and the
    /// database answering); the rest is dropped and counted.
    fn spool_or_drop_at_deadline(&mut self, waiter: WaiterId) {
        let mut records: Vec<SpoolRecord> = Vec::new();
        let mut dropped: Vec<(Signal, u64)> = Vec::new();
        let mut keep = |records: &mut Vec<SpoolRecord>, policy: OverflowPolicy, record: SpoolRecord| {
            if policy == OverflowPolicy::Spool {
                records.push(record);
            } else {
                dropped.push((record.signal, record.items));
            }
        };
        for pending in std::mem::take(&mut self.pending) {
            keep(&mut records, self.config.when_full.of(pending.batch.signal), pending.record());
        }
        for flight in std::mem::take(&mut self.in_flight) {
            // A replayed batch keeps its row: a database row comes back when its lease ends, a
            // memory row joins the write below.
            if let Flight::Fresh(pending) = flight.flight {
                keep(&mut records, self.config.when_full.of(pending.batch.signal), pending.record());
            }
        }
        let fresh = records.len();
        records.extend(self.spool.take_for_deadline());
        if !records.is_empty() && self.spool.durable_usable() {
            // Delivered rows whose deletion still waits go first, so that the write's bound
            // does not remove (and count) them.
            let removals = self.spool.take_removals();
            let remove = removals.iter().map(|(id, _)| *id).collect();
            let write =
                super::DeadlineWrite { remove, records: records.clone(), max_bytes: self.spool.config().max_bytes };
            self.out.push(Action::WriteAtDeadline(write));
            self.deadline_write = Some(PendingDeadline { waiter, records, removals, fresh, dropped });
            return;
        }
        // Memory does not outlive the process: these are lost.
        dropped.extend(records.iter().map(|r| (r.signal, r.items)));
        self.dropped_at_deadline(waiter, dropped);
    }

    /// The deadline write answered.
    pub(super) fn deadline_written(&mut self, result: Result<Vec<Evicted>, SpoolError>) {
        let Some(PendingDeadline { waiter, records, removals, fresh, mut dropped }) = self.deadline_write.take() else {
            return;
        };
        match result {
            Ok(evicted) => {
                let removed = removals.iter().fold(SpoolStats::default(), |s, (_, f)| s.plus(f));
                let gone = removed.plus(&SpoolStats::of_evicted(&evicted));
                self.spool.add_durable(&SpoolStats::of_records(&records), &gone);
                self.dropped_from_spool(evicted, DropReason::SpoolFull);
                for record in &records[..fresh] {
                    self.emit(BatchSpooled { signal: record.signal, items: record.items });
                }
            }
            Err(error) => {
                self.spool.unremoved.extend(removals);
                self.emit(ShutdownSpoolFailed { error });
                dropped.extend(records.iter().map(|r| (r.signal, r.items)));
            }
        }
        self.dropped_at_deadline(waiter, dropped);
    }

    /// Counts what a shutdown left behind and answers its waiter.
    fn dropped_at_deadline(&mut self, waiter: WaiterId, dropped: Vec<(Signal, u64)>) {
        let mut report = DrainReport::default();
        for signal in Signal::ALL {
            let (batches, items) = dropped
                .iter()
                .filter(|(s, _)| *s == signal)
                .fold((0u64, 0u64), |(batches, items), (_, n)| (batches + 1, items + n));
            if batches > 0 {
                self.emit(BatchDropped { signal, batches, items, reason: DropReason::ShutdownTimeout });
            }
            report.batches_left += usize::try_from(batches).unwrap_or(usize::MAX);
            report.items_left += items;
        }
        self.out.push(Action::ReplyDrain { waiter, report });
    }
}
