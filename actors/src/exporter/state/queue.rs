//! The queue of fresh batches: admission within `max_pending_batches` and `max_pending_bytes`
//! per the signal's `when_full` policy, and the retry schedule.

use std::time::{Duration, Instant};

use super::{ExporterState, DRAIN_RETRY_CAP};
use crate::exporter::messages::ExportBatch;
use crate::exporter::retry::backoff;
use crate::internal_events::{BatchDropped, BatchReceived};
use crate::self_metrics::DropReason;
use crate::spool::{OverflowPolicy, SpoolRecord};

/// A batch waiting for an export slot or for its retry time.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) batch: ExportBatch,
    pub(super) retries: u32,
    pub(super) first_attempt: Option<Instant>,
    pub(super) not_before: Option<Instant>,
    pub(super) created_unix_ms: i64,
}

impl Pending {
    pub(super) fn record(&self) -> SpoolRecord {
        SpoolRecord {
            signal: self.batch.signal,
            items: self.batch.items,
            attempts: self.retries,
            created_unix_ms: self.created_unix_ms,
            body: self.batch.body.clone(),
        }
    }
}

impl ExporterState {
    /// Admits a fresh batch: to the spool while the collector is unreachable (policy `spool`),
    /// else to the queue, making room per the policy when it is full.
    pub(super) fn enqueue(&mut self, batch: ExportBatch, now: Instant) {
        self.emit(BatchReceived { signal: batch.signal, items: batch.items });
        let signal = batch.signal;
        let pending =
            Pending { batch, retries: 0, first_attempt: None, not_before: None, created_unix_ms: self.unix_ms(now) };
        if self.spooling(signal) {
            self.spool_pending(vec![pending], now);
            return;
        }
        let size = pending.batch.body.len() as u64;
        while self.pending.len() >= self.config.max_pending_batches
            || self.queue_bytes() + size > self.config.max_pending_bytes
        {
            if self.policy(signal) == OverflowPolicy::DropNewest {
                self.drop_pending(&pending, DropReason::QueueFull);
                return;
            }
            let Some(oldest) = self.pending.pop_front() else { break };
            if self.policy(oldest.batch.signal) == OverflowPolicy::Spool {
                self.spool_pending(vec![oldest], now);
            } else {
                self.drop_pending(&oldest, DropReason::QueueFull);
            }
        }
        self.pending.push_back(pending);
    }

    pub(super) fn drop_pending(&mut self, pending: &Pending, reason: DropReason) {
        self.emit(BatchDropped { signal: pending.batch.signal, batches: 1, items: pending.batch.items, reason });
    }

    /// Spools a batch whose retries ran out (policy `spool`), or drops it.
    fn retries_exhausted(&mut self, pending: Pending, now: Instant) {
        if self.policy(pending.batch.signal) == OverflowPolicy::Spool {
            self.spool_pending(vec![pending], now);
        } else {
            self.drop_pending(&pending, DropReason::RetryExhausted);
        }
    }

    /// Puts a batch whose attempt failed back at the head of the queue with its retry time:
    /// the server's delay when it gave one, else the backoff; past the retry budget it is
    /// spooled or dropped.
    pub(super) fn schedule_retry(&mut self, mut pending: Pending, hint: Option<Duration>, now: Instant) {
        if !self.config.retry.enabled {
            self.retries_exhausted(pending, now);
            return;
        }
        let delay = match hint {
            Some(delay) => delay,
            None => backoff(&self.config.retry, pending.retries, self.rng.f64()),
        };
        let first = pending.first_attempt.unwrap_or(now);
        if now.saturating_duration_since(first) + delay > self.config.retry.max_elapsed_time {
            self.retries_exhausted(pending, now);
            return;
        }
        let delay = if self.draining() { delay.min(DRAIN_RETRY_CAP) } else { delay };
        pending.not_before = Some(now + delay);
        self.pending.push_front(pending);
    }
}
