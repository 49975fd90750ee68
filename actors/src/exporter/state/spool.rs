//! The spool side of the exporter: the durable spool's call queue (one call at a time, each an
//! [`Action::CallSpool`]), the memory fallback kept here while the database fails or is absent,
//! the replay (claims oldest first at `spool.replay_batches_per_second`) and the probes of an
//! unreachable collector.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Action, CallId, ExporterState, Refreshed, SpoolCall, SpoolReply, SPOOL_REFRESH_INTERVAL};
use crate::exporter::config::RetryConfig;
use crate::exporter::retry::backoff;
use crate::internal_events::{BatchDropped, BatchSpooled, SpoolAttached, SpoolFallback, SpoolRecovered};
use crate::self_metrics::DropReason;
use crate::spool::{Evicted, SpoolConfig, SpoolError, SpoolRecord, SpoolStats, SpooledBatch};

use super::memory::{figures, MemoryRows};
use super::queue::Pending;

/// Which spool a replayed batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Source {
    Durable,
    Memory,
}

/// A spool call waiting for its turn.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Append(Vec<SpoolRecord>),
    /// Claim `limit` from the database; `from_memory` came from memory with the same claim.
    Claim {
        limit: usize,
        from_memory: usize,
    },
    /// Deletes replayed batches; carries their figures to keep the spool's totals without a scan.
    Remove(Vec<(i64, SpoolStats)>),
    Release(i64, u32),
    Refresh,
    /// A call whose work a shutdown deadline took over; its answer is awaited, and ignored,
    /// before the next call starts (never two calls at once).
    Abandoned,
}

/// The call under way.
#[derive(Debug)]
pub(super) struct Current {
    call: CallId,
    issued: Instant,
    pub(super) op: Op,
    /// The memory rows a refresh is moving to the database, and their figures.
    moving: Vec<i64>,
    moving_stats: SpoolStats,
}

/// The spool's state.
#[derive(Debug)]
pub(super) struct SpoolSide {
    config: SpoolConfig,
    backend: Option<&'static str>,
    /// False while the database spool is failing: batches go to memory.
    durable_ok: bool,
    durable_error: Option<String>,
    durable_stats: SpoolStats,
    /// The database's figures were read since it was attached (before, it may hold batches of
    /// an earlier run that no figure shows yet).
    durable_known: bool,
    pub(super) memory: MemoryRows,
    pub(super) ops: VecDeque<Op>,
    pub(super) current: Option<Current>,
    next_call: CallId,
    claiming: bool,
    /// Claimed batches waiting for an export slot.
    pub(super) ready: VecDeque<(Source, SpooledBatch)>,
    /// When the lease of the database batches in `ready` ends, at the earliest.
    ready_lease_end: Option<Instant>,
    /// Removals the database refused; made again, before anything else, once it answers.
    pub(super) unremoved: Vec<(i64, SpoolStats)>,
    tokens: f64,
    last_refill: Instant,
    /// While the collector is unreachable (or everything is leased): when to claim again.
    next_probe: Option<Instant>,
    probe_failures: u32,
}

impl SpoolSide {
    pub(super) fn new(config: SpoolConfig, now: Instant) -> Self {
        Self {
            config,
            backend: None,
            durable_ok: false,
            durable_error: None,
            durable_stats: SpoolStats::default(),
            durable_known: false,
            memory: MemoryRows::default(),
            ops: VecDeque::new(),
            current: None,
            next_call: 0,
            claiming: false,
            ready: VecDeque::new(),
            ready_lease_end: None,
            unremoved: Vec::new(),
            tokens: 1.0,
            last_refill: now,
            next_probe: None,
            probe_failures: 0,
        }
    }

    pub(super) fn config(&self) -> &SpoolConfig {
        &self.config
    }

    pub(super) fn backend(&self) -> &'static str {
        self.backend.unwrap_or("memory")
    }

    pub(super) fn error(&self) -> Option<String> {
        self.durable_error.clone()
    }

    /// The database spool is attached and answering.
    pub(super) fn durable_usable(&self) -> bool {
        self.backend.is_some() && self.durable_ok
    }

    /// True while a database spool is attached but failing.
    pub(super) fn fallback(&self) -> bool {
        self.backend.is_some() && !self.durable_ok
    }

    /// Whether the spool's figures cover everything it holds.
    pub(super) fn figures_known(&self) -> bool {
        self.backend.is_none() || self.durable_known
    }

    pub(super) fn memory_stats(&self) -> SpoolStats {
        self.memory.stats
    }

    /// What both spools hold together.
    pub(super) fn total(&self) -> SpoolStats {
        self.durable_stats.plus(&self.memory.stats)
    }

    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The next claimed batch to replay. Database batches whose lease could end before an
    /// export started now (`timeout`) ends go back instead: another claim could take them.
    pub(super) fn next_ready(&mut self, now: Instant, timeout: Duration) -> Option<(Source, SpooledBatch)> {
        let (source, _) = self.ready.front()?;
        if *source == Source::Durable && self.ready_lease_end.is_some_and(|end| now + timeout >= end) {
            self.release_ready();
            return None;
        }
        self.ready.pop_front()
    }

    pub(super) fn call_under_way(&self) -> bool {
        self.current.is_some()
    }

    /// The batches of the queued (and the current) appends.
    pub(super) fn queued_appends(&self) -> impl Iterator<Item = &SpoolRecord> {
        self.ops.iter().chain(self.current.as_ref().map(|c| &c.op)).flat_map(|op| match op {
            Op::Append(records) => records.iter(),
            _ => [].iter(),
        })
    }

    /// Bytes on their way to the database, and claimed batches waiting for a slot.
    pub(super) fn queued_bytes(&self) -> u64 {
        let appends: u64 = self.queued_appends().map(|r| r.body.len() as u64).sum();
        appends + self.ready.iter().map(|(_, b)| b.body.len() as u64).sum::<u64>()
    }

    /// Whether a claim may start now.
    pub(super) fn may_claim(&self, now: Instant) -> bool {
        !self.claiming
            && self.ready.is_empty()
            && self.total().batches > 0
            && self.next_probe.is_none_or(|at| at <= now)
    }

    /// Takes up to `wanted` replay tokens (refilled at the replay rate); `None` when none is left.
    pub(super) fn take_tokens(&mut self, wanted: usize, now: Instant) -> Option<usize> {
        let rate = f64::from(self.config.replay_batches_per_second);
        let elapsed = now.saturating_duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate.max(1.0));
        let limit = wanted.min(self.tokens.floor() as usize);
        if limit == 0 {
            return None;
        }
        self.tokens -= limit as f64;
        Some(limit)
    }

    pub(super) fn start_probing(&mut self, at: Instant) {
        self.probe_failures = 1;
        self.next_probe = Some(at);
    }

    pub(super) fn stop_probing(&mut self) {
        self.probe_failures = 0;
        self.next_probe = None;
    }

    /// A probe failed: the delay before the next one.
    pub(super) fn probe_failed(
        &mut self,
        hint: Option<Duration>,
        retry: &RetryConfig,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        self.probe_failures += 1;
        hint.unwrap_or_else(|| backoff(retry, self.probe_failures, rng.f64()))
    }

    pub(super) fn set_next_probe(&mut self, at: Instant) {
        self.next_probe = Some(at);
    }

    /// When the replay rate or the probe schedule next allows a claim.
    pub(super) fn next_wake(&self, now: Instant, reachable: bool) -> Option<Instant> {
        if self.total().batches == 0 || self.claiming {
            return None;
        }
        match self.next_probe {
            Some(at) if at > now => Some(at),
            _ if reachable && self.tokens < 1.0 => {
                let rate = f64::from(self.config.replay_batches_per_second.max(1));
                let at = self.last_refill + Duration::from_secs_f64(((1.0 - self.tokens) / rate).max(0.001));
                Some(at.max(now + Duration::from_millis(1)))
            }
            _ => None,
        }
    }

    /// A replayed batch was delivered or refused for good: its row goes.
    pub(super) fn remove(&mut self, source: Source, batch: &SpooledBatch) {
        match source {
            Source::Memory => self.memory.remove(&[batch.id]),
            // Deletions go first: a queued write must not evict a row already delivered.
            Source::Durable => match self.ops.front_mut() {
                Some(Op::Remove(rows)) => rows.push((batch.id, figures(batch))),
                _ => self.ops.push_front(Op::Remove(vec![(batch.id, figures(batch))])),
            },
        }
    }

    /// A claimed batch goes back to its spool with `more` attempts.
    pub(super) fn release(&mut self, source: Source, batch: SpooledBatch, more: u32) {
        let attempts = batch.attempts.saturating_add(more);
        match source {
            Source::Memory => self.memory.release(batch.id, attempts),
            // Before any claim: a claim must not find it leased, nor a late release free it
            // while a newer claim replays it.
            Source::Durable => {
                let at = self.ops.iter().take_while(|op| matches!(op, Op::Remove(_) | Op::Release(..))).count();
                self.ops.insert(at, Op::Release(batch.id, attempts));
            }
        }
    }

    /// Every claimed batch not yet sent goes back.
    pub(super) fn release_ready(&mut self) {
        for (source, batch) in std::mem::take(&mut self.ready) {
            self.release(source, batch, 0);
        }
    }

    /// A replay lost in a restart goes back to its spool.
    pub(super) fn give_back(&mut self, source: Source, batch: SpooledBatch) {
        self.release(source, batch, 0);
    }

    /// The call under way was lost (the actor restarted, or the call panicked): it is made
    /// again, except a claim, whose batches come back when their lease ends.
    fn requeue_current(&mut self) {
        let Some(current) = self.current.take() else { return };
        self.memory.unclaim(&current.moving);
        match current.op {
            Op::Claim { .. } => self.claiming = false,
            Op::Abandoned => {}
            op @ Op::Remove(_) => self.ops.push_front(op),
            // Behind the deletions, which go first.
            op => {
                let at = self.ops.iter().take_while(|op| matches!(op, Op::Remove(_))).count();
                self.ops.insert(at, op);
            }
        }
    }

    /// After a restart: claimed batches go back, the call under way is made again.
    pub(super) fn restarted(&mut self) {
        self.release_ready();
        self.requeue_current();
        // A claim still queued keeps its place; its batches come after this restart.
        self.claiming = self.ops.iter().any(|op| matches!(op, Op::Claim { .. }));
    }

    pub(super) fn queue_refresh(&mut self) {
        if !self.ops.iter().any(|op| matches!(op, Op::Refresh)) {
            self.ops.push_back(Op::Refresh);
        }
    }

    /// At a shutdown deadline: the batches queued for the database and those in the memory
    /// spool, as records; the memory spool and the claims are given up.
    pub(super) fn take_for_deadline(&mut self) -> Vec<SpoolRecord> {
        let mut records = Vec::new();
        if let Some(current) = self.current.as_mut().filter(|c| matches!(c.op, Op::Append(_))) {
            if let Op::Append(queued) = std::mem::replace(&mut current.op, Op::Abandoned) {
                records.extend(queued);
            }
        }
        let ops = std::mem::take(&mut self.ops);
        for op in ops {
            match op {
                Op::Append(queued) => records.extend(queued),
                Op::Claim { .. } => self.claiming = false,
                other => self.ops.push_back(other),
            }
        }
        self.ready.clear();
        records.extend(self.memory.take_all());
        records
    }

    /// The deletions queued, refused or under way, taken out of the queue (an answer of the one
    /// under way is ignored from now on).
    pub(super) fn take_removals(&mut self) -> Vec<(i64, SpoolStats)> {
        let mut rows = std::mem::take(&mut self.unremoved);
        if let Some(current) = self.current.as_mut().filter(|c| matches!(c.op, Op::Remove(_))) {
            if let Op::Remove(under_way) = std::mem::replace(&mut current.op, Op::Abandoned) {
                rows.extend(under_way);
            }
        }
        let ops = std::mem::take(&mut self.ops);
        for op in ops {
            match op {
                Op::Remove(queued) => rows.extend(queued),
                other => self.ops.push_back(other),
            }
        }
        rows
    }

    pub(super) fn add_durable(&mut self, added: &SpoolStats, removed: &SpoolStats) {
        self.durable_stats = self.durable_stats.plus(added).minus(removed);
    }
}

impl ExporterState {
    /// Counts what a spool bound removed.
    pub(super) fn dropped_from_spool(&mut self, evicted: Vec<Evicted>, reason: DropReason) {
        for e in evicted {
            if let Some(signal) = e.signal {
                self.emit(BatchDropped { signal, batches: e.batches, items: e.items, reason });
            }
        }
    }

    pub(super) fn memory_append(&mut self, records: Vec<SpoolRecord>) {
        if records.is_empty() {
            return;
        }
        let evicted = self.spool.memory.append(records, self.spool.config.memory_max_bytes);
        self.dropped_from_spool(evicted, DropReason::SpoolFull);
    }

    /// Sends batches to the spool (counted as spooled once they are on their way). The database
    /// spool's write queue holds at most half of `exporter.max_pending_bytes`; what does not fit
    /// (the database is slower than the input for a moment, or it is unavailable) goes to the
    /// memory spool, whose batches move to the database at the next refresh. Only when the memory
    /// spool is full too are its oldest batches dropped, counted as `spool_full`.
    pub(super) fn spool_pending(&mut self, batches: Vec<Pending>, _now: Instant) {
        if batches.is_empty() {
            return;
        }
        let durable = self.spool.durable_usable();
        let mut queued = self.spool.queued_bytes();
        let (mut to_durable, mut to_memory) = (Vec::new(), Vec::new());
        for pending in batches {
            let size = pending.batch.body.len() as u64;
            self.emit(BatchSpooled { signal: pending.batch.signal, items: pending.batch.items });
            if durable && queued + size <= self.config.max_pending_bytes / 2 {
                queued += size;
                to_durable.push(pending.record());
            } else {
                to_memory.push(pending.record());
            }
        }
        self.memory_append(to_memory);
        if to_durable.is_empty() {
            return;
        }
        match self.spool.ops.back_mut() {
            Some(Op::Append(queued)) => queued.extend(to_durable),
            _ => self.spool.ops.push_back(Op::Append(to_durable)),
        }
    }

    /// Claims up to `limit` batches: from memory at once, the rest from the database.
    pub(super) fn spool_claim(&mut self, limit: usize, now: Instant) {
        let from_memory = self.spool.memory.claim(limit);
        let taken = from_memory.len();
        self.spool.ready.extend(from_memory.into_iter().map(|b| (Source::Memory, b)));
        if taken < limit && self.spool.durable_usable() {
            self.spool.claiming = true;
            self.spool.ops.push_back(Op::Claim { limit: limit - taken, from_memory: taken });
        } else if taken == 0 {
            self.claimed_nothing(now);
        }
    }

    /// Everything left is leased (a replay under way elsewhere): look again later.
    fn claimed_nothing(&mut self, now: Instant) {
        if self.spool.total().batches > 0 {
            self.spool.next_probe = Some(now + SPOOL_REFRESH_INTERVAL);
        }
    }

    fn lease(&self) -> Duration {
        (self.config.timeout * 3).max(Duration::from_secs(5))
    }

    /// Starts the next spool call if none is under way; what needs no database is done at once.
    pub(super) fn run_spool_ops(&mut self, now: Instant) {
        while self.spool.current.is_none() {
            let Some(op) = self.spool.ops.pop_front() else { return };
            let usable = self.spool.durable_usable();
            let max_bytes = self.spool.config.max_bytes;
            let (call, moving, moving_stats) = match &op {
                Op::Append(records) if usable => {
                    (SpoolCall::Append { records: records.clone(), max_bytes }, Vec::new(), SpoolStats::default())
                }
                Op::Append(_) => {
                    if let Op::Append(records) = op {
                        self.memory_append(records);
                    }
                    continue;
                }
                Op::Claim { limit, .. } if usable => {
                    (SpoolCall::Claim { limit: *limit, lease: self.lease() }, Vec::new(), SpoolStats::default())
                }
                Op::Claim { from_memory, .. } => {
                    self.spool.claiming = false;
                    if *from_memory == 0 {
                        self.claimed_nothing(now);
                    }
                    continue;
                }
                Op::Remove(rows) if usable => (
                    SpoolCall::Remove { ids: rows.iter().map(|(id, _)| *id).collect() },
                    Vec::new(),
                    SpoolStats::default(),
                ),
                Op::Remove(rows) => {
                    self.spool.unremoved.extend(rows.iter().copied());
                    continue;
                }
                // A release the database cannot take is not needed: the lease ends on its own.
                Op::Release(id, attempts) if usable => {
                    (SpoolCall::Release { id: *id, attempts: *attempts }, Vec::new(), SpoolStats::default())
                }
                Op::Release(..) | Op::Abandoned => continue,
                Op::Refresh => {
                    let max_age = self.spool.config.max_age;
                    let cutoff = (!max_age.is_zero()).then(|| {
                        self.unix_ms(now).saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX))
                    });
                    if let Some(cutoff) = cutoff {
                        let expired = self.spool.memory.expire(cutoff);
                        self.dropped_from_spool(expired, DropReason::SpoolExpired);
                    }
                    // A failing database is only tried again here.
                    if self.spool.backend.is_none() {
                        continue;
                    }
                    // Batches kept in memory while the database was away move to it now.
                    let moved = self.spool.memory.claim(usize::MAX);
                    let stats = moved.iter().fold(SpoolStats::default(), |s, b| s.plus(&figures(b)));
                    let ids = moved.iter().map(|b| b.id).collect();
                    let records = moved.iter().map(SpooledBatch::to_record).collect();
                    let remove = self.spool.unremoved.iter().map(|(id, _)| *id).collect();
                    (SpoolCall::Refresh { remove, expire_before: cutoff, moved: records, max_bytes }, ids, stats)
                }
            };
            let id = self.spool.next_call;
            self.spool.next_call += 1;
            self.spool.current = Some(Current { call: id, issued: now, op, moving, moving_stats });
            self.out.push(Action::CallSpool { call: id, op: call });
        }
    }

    fn durable_answered(&mut self) {
        if !self.spool.durable_ok && self.spool.backend.is_some() {
            self.emit(SpoolRecovered);
        }
        self.spool.durable_ok = true;
        self.spool.durable_error = None;
        if !self.spool.unremoved.is_empty() {
            let rows = std::mem::take(&mut self.spool.unremoved);
            self.spool.ops.push_front(Op::Remove(rows));
        }
    }

    fn durable_failed(&mut self, error: SpoolError) {
        if self.spool.durable_ok {
            self.emit(SpoolFallback { error: error.clone() });
        }
        self.spool.durable_ok = false;
        self.spool.durable_error = Some(error.to_string());
    }

    /// Takes a spool call's answer into the state.
    pub(super) fn spool_answered(&mut self, call: CallId, reply: SpoolReply, now: Instant) {
        let Some(current) = self.spool.current.take_if(|c| c.call == call) else {
            // An answer from before a restart, or after a shutdown deadline gave the call up.
            return;
        };
        match (current.op, reply) {
            (Op::Append(records), SpoolReply::Appended(Ok(evicted))) => {
                self.durable_answered();
                self.spool.add_durable(&SpoolStats::of_records(&records), &SpoolStats::of_evicted(&evicted));
                self.dropped_from_spool(evicted, DropReason::SpoolFull);
            }
            (Op::Append(records), SpoolReply::Appended(Err(err))) => {
                self.durable_failed(err);
                self.memory_append(records);
            }
            (Op::Claim { from_memory, .. }, SpoolReply::Claimed(result)) => {
                self.spool.claiming = false;
                match result {
                    Ok(batches) => {
                        self.durable_answered();
                        if batches.is_empty() && from_memory == 0 {
                            self.claimed_nothing(now);
                        }
                        self.spool.ready_lease_end = Some(current.issued + self.lease());
                        // A batch already being replayed (its lease ended meanwhile) is not sent twice.
                        let replaying: Vec<i64> = self
                            .in_flight
                            .iter()
                            .filter_map(|f| match &f.flight {
                                super::Flight::Replay(Source::Durable, b) => Some(b.id),
                                _ => None,
                            })
                            .collect();
                        let fresh = batches.into_iter().filter(|b| !replaying.contains(&b.id));
                        self.spool.ready.extend(fresh.map(|b| (Source::Durable, b)));
                    }
                    Err(err) => self.durable_failed(err),
                }
            }
            (Op::Remove(rows), SpoolReply::Removed(result)) => match result {
                Ok(()) => {
                    self.durable_answered();
                    let removed = rows.iter().fold(SpoolStats::default(), |s, (_, f)| s.plus(f));
                    self.spool.add_durable(&SpoolStats::default(), &removed);
                }
                Err(err) => {
                    self.durable_failed(err);
                    self.spool.unremoved.extend(rows);
                }
            },
            (Op::Release(..), SpoolReply::Released(result)) => match result {
                Ok(()) => self.durable_answered(),
                Err(err) => self.durable_failed(err),
            },
            (Op::Refresh, SpoolReply::Refreshed(Refreshed { removed, expired, moved, stats, error })) => {
                if removed {
                    let rows = std::mem::take(&mut self.spool.unremoved);
                    let gone = rows.iter().fold(SpoolStats::default(), |s, (_, f)| s.plus(f));
                    self.spool.add_durable(&SpoolStats::default(), &gone);
                }
                self.dropped_from_spool(expired, DropReason::SpoolExpired);
                match moved {
                    Some(evicted) => {
                        self.spool.memory.remove(&current.moving);
                        if stats.is_none() {
                            self.spool.add_durable(&current.moving_stats, &SpoolStats::of_evicted(&evicted));
                        }
                        self.dropped_from_spool(evicted, DropReason::SpoolFull);
                    }
                    None => self.spool.memory.unclaim(&current.moving),
                }
                if let Some(stats) = stats {
                    self.spool.durable_stats = stats;
                    self.spool.durable_known = true;
                }
                match error {
                    Some(err) => self.durable_failed(err),
                    None => self.durable_answered(),
                }
            }
            (Op::Abandoned, _) => {}
            (op, reply) => {
                // A reply that does not fit its call is a bug of the shell: make the call again.
                debug_assert!(false, "spool reply {reply:?} to {op:?}");
                self.spool.ops.push_front(op);
            }
        }
    }

    /// The call under way panicked: it is made again.
    pub(super) fn spool_call_lost(&mut self, call: CallId) {
        if self.spool.current.as_ref().is_some_and(|c| c.call == call) {
            self.spool.requeue_current();
        }
    }

    pub(super) fn spool_attached(&mut self, backend: &'static str) {
        self.emit(SpoolAttached { backend });
        self.spool.backend = Some(backend);
        self.spool.durable_known = false;
        self.spool.durable_ok = true;
        self.spool.durable_error = None;
        self.spool.ops.push_back(Op::Refresh);
    }

    /// The items the spool holds of `signal` (both spools).
    #[cfg(test)]
    pub(super) fn spooled_items(&self, signal: crate::self_metrics::Signal) -> u64 {
        self.spool.total().items_of(signal)
    }
}
