//! The exporter's decisions, apart from its effects: a plain struct, no actix, no clock, no I/O.
//!
//! [`ExporterState`] takes [`Event`]s (a batch arrived, an export finished, the spool answered,
//! time passed, a drain began, the actor restarted) with the time they happened, and returns
//! [`Action`]s (start an export, call the spool, count and log an event, answer a drain, wake me
//! at…). The [`Exporter`](super::Exporter) actor is a thin shell that feeds it events and performs
//! its actions; tests drive it step by step, and against a reference model (`model.rs`).
//!
//! What it decides: fresh batches wait in a bounded queue (by count and by bytes) for an export
//! slot or a retry (`queue.rs`); what does not fit, what runs out of retries and everything that
//! arrives while the collector is unreachable goes, per the signal's `when_full` policy, to the
//! spool or is dropped and counted; the spool is the database (one blocking call at a time,
//! performed off the actor's thread) with a bounded memory fallback kept here while the database
//! fails; once the collector answers, the spool is replayed oldest first at a bounded rate, only
//! through slots fresh batches leave free (`spool.rs`); a shutdown drain exports, spools or drops
//! what is left by its deadline (`drain.rs`).

mod drain;
mod memory;
mod queue;
mod spool;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use prost::bytes::Bytes;

use super::config::ExporterConfig;
use super::messages::{DrainReport, ExportBatch, ExporterStatus, SpoolStatus};
use super::retry::backoff;
use super::transport::Outcome;
use crate::internal_events::{
    BatchExported, CollectorBack, CollectorUnreachable, ExportFailed, ExportRejected, ExportThrottled, ExporterEvent,
};
use crate::self_metrics::Signal;
use crate::spool::{Evicted, OverflowPolicy, SpoolConfig, SpoolError, SpoolRecord, SpoolStats, SpooledBatch};

use drain::Waiter;
use queue::Pending;
use spool::{Source, SpoolSide};

pub use drain::DeadlineWrite;

/// Longest pause between retries while shutting down: the deadline matters more than politeness.
pub const DRAIN_RETRY_CAP: Duration = Duration::from_millis(200);
/// How often the spool's figures are read again (and the database spool retried after a fault).
pub const SPOOL_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// How long a shutdown waits past its deadline for a spool call already under way.
pub const SPOOL_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Most batches claimed from the spool in one call.
pub const MAX_CLAIM: usize = 8;

/// Identifies an export under way.
pub type FlightId = u64;
/// Identifies a caller waiting in a drain (chosen by the caller).
pub type WaiterId = u64;
/// Identifies a spool call, so that an answer from before a restart is not taken for a newer one.
pub type CallId = u64;

/// Something that happened to the exporter.
#[derive(Debug)]
pub enum Event {
    /// A fresh batch from the span buffer or the metric aggregator.
    BatchArrived(ExportBatch),
    /// An export started by [`Action::StartExport`] came to an end.
    ExportFinished {
        /// The export.
        id: FlightId,
        /// The collector's answer.
        outcome: Outcome,
    },
    /// The spool call started by [`Action::CallSpool`] answered.
    SpoolAnswered {
        /// The call.
        call: CallId,
        /// Its result.
        reply: SpoolReply,
    },
    /// The spool call under way panicked; it is made again.
    SpoolCallLost {
        /// The call.
        call: CallId,
    },
    /// A durable spool was attached: `backend` is `sqlite` or `postgresql`.
    SpoolAttached {
        /// The spool's backend.
        backend: &'static str,
    },
    /// The OTLP transport could not be built: nothing will be exported.
    TransportUnavailable {
        /// Why.
        reason: String,
    },
    /// A caller waits until nothing is left, or until `deadline`. With `give_up` (shutdown),
    /// what is still in memory at the deadline is spooled or dropped and counted.
    DrainRequested {
        /// Who waits.
        waiter: WaiterId,
        /// Until when.
        deadline: Instant,
        /// Spool or drop what is left at the deadline.
        give_up: bool,
    },
    /// The actor restarted after a panic: its exports and its spool call under way are lost
    /// (their requests may have been delivered or written all the same).
    Restarted,
    /// Time passed (the wake-up asked for by [`Action::ScheduleWake`], or any other).
    Tick,
    /// The blocking write of [`Action::WriteAtDeadline`] answered.
    DeadlineWriteAnswered(Result<Vec<Evicted>, SpoolError>),
}

/// Something the exporter's shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `body` to the collector; answer with [`Event::ExportFinished`].
    StartExport {
        /// The export.
        id: FlightId,
        /// What the body carries.
        signal: Signal,
        /// The encoded export request.
        body: Bytes,
    },
    /// Make one call on the durable spool, off the actor's thread; answer with
    /// [`Event::SpoolAnswered`] (or [`Event::SpoolCallLost`] if it panicked). Never more than
    /// one at a time.
    CallSpool {
        /// The call.
        call: CallId,
        /// What to do.
        op: SpoolCall,
    },
    /// Write `records` to the durable spool now, blocking (the exporter is about to stop at a
    /// shutdown deadline); answer with [`Event::DeadlineWriteAnswered`] before anything else.
    WriteAtDeadline(DeadlineWrite),
    /// Count and log.
    Emit(ExporterEvent),
    /// Answer a drain.
    ReplyDrain {
        /// Who waits.
        waiter: WaiterId,
        /// What was left behind.
        report: DrainReport,
    },
    /// Deliver [`Event::Tick`] at `at`, instead of any wake-up asked for before.
    ScheduleWake(Instant),
}

/// One blocking call on the durable spool.
#[derive(Debug, Clone, PartialEq)]
pub enum SpoolCall {
    /// [`Spool::append`](crate::spool::Spool::append).
    Append {
        /// Oldest first.
        records: Vec<SpoolRecord>,
        /// The spool's bound.
        max_bytes: u64,
    },
    /// [`Spool::claim_oldest`](crate::spool::Spool::claim_oldest).
    Claim {
        /// Most batches.
        limit: usize,
        /// How long no one else may claim them.
        lease: Duration,
    },
    /// [`Spool::remove`](crate::spool::Spool::remove).
    Remove {
        /// Row ids.
        ids: Vec<i64>,
    },
    /// [`Spool::release`](crate::spool::Spool::release).
    Release {
        /// Row id.
        id: i64,
        /// Its new attempt count.
        attempts: u32,
    },
    /// Delete the rows `remove` (replayed while the database failed), expire old rows (when
    /// `expire_before` is set), append the batches the memory fallback kept while the database
    /// failed, and read the spool's figures; stops at the first error.
    Refresh {
        /// Row ids to delete first.
        remove: Vec<i64>,
        /// Unix milliseconds: rows made before are removed.
        expire_before: Option<i64>,
        /// Batches moving from memory to the database, oldest first.
        moved: Vec<SpoolRecord>,
        /// The spool's bound.
        max_bytes: u64,
    },
}

/// What a [`SpoolCall`] came to.
#[derive(Debug, Clone, PartialEq)]
pub enum SpoolReply {
    /// Answer to [`SpoolCall::Append`]: what the bound removed.
    Appended(Result<Vec<Evicted>, SpoolError>),
    /// Answer to [`SpoolCall::Claim`]: the claimed batches, oldest first.
    Claimed(Result<Vec<SpooledBatch>, SpoolError>),
    /// Answer to [`SpoolCall::Remove`].
    Removed(Result<(), SpoolError>),
    /// Answer to [`SpoolCall::Release`].
    Released(Result<(), SpoolError>),
    /// Answer to [`SpoolCall::Refresh`].
    Refreshed(Refreshed),
}

impl SpoolReply {
    /// The answer `call` gets when the spool cannot be reached at all.
    pub fn from_error(call: &SpoolCall, error: SpoolError) -> Self {
        match call {
            SpoolCall::Append { .. } => SpoolReply::Appended(Err(error)),
            SpoolCall::Claim { .. } => SpoolReply::Claimed(Err(error)),
            SpoolCall::Remove { .. } => SpoolReply::Removed(Err(error)),
            SpoolCall::Release { .. } => SpoolReply::Released(Err(error)),
            SpoolCall::Refresh { .. } => {
                SpoolReply::Refreshed(Refreshed { error: Some(error), ..Refreshed::default() })
            }
        }
    }
}

/// What a [`SpoolCall::Refresh`] came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refreshed {
    /// The rows to delete were deleted.
    pub removed: bool,
    /// Rows removed for their age.
    pub expired: Vec<Evicted>,
    /// When the moved batches were written: what the bound removed.
    pub moved: Option<Vec<Evicted>>,
    /// The spool's figures, when read.
    pub stats: Option<SpoolStats>,
    /// The error that stopped the call.
    pub error: Option<SpoolError>,
}

/// An export under way: a fresh batch, or a batch replayed from the spool.
#[derive(Debug)]
enum Flight {
    Fresh(Pending),
    Replay(Source, SpooledBatch),
}

impl Flight {
    fn signal(&self) -> Signal {
        match self {
            Flight::Fresh(p) => p.batch.signal,
            Flight::Replay(_, b) => b.signal,
        }
    }

    fn items(&self) -> u64 {
        match self {
            Flight::Fresh(p) => p.batch.items,
            Flight::Replay(_, b) => b.items,
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Flight::Fresh(p) => p.batch.body.len() as u64,
            Flight::Replay(_, b) => b.body.len() as u64,
        }
    }

    fn is_fresh(&self) -> bool {
        matches!(self, Flight::Fresh(_))
    }
}

/// An export under way and when it started.
#[derive(Debug)]
struct InFlight {
    id: FlightId,
    started: Instant,
    flight: Flight,
}

/// The exporter's state and decisions.
pub struct ExporterState {
    config: ExporterConfig,
    rng: fastrand::Rng,
    /// An instant and the Unix milliseconds it corresponds to (spool rows carry wall time).
    clock: (Instant, i64),
    pending: std::collections::VecDeque<Pending>,
    in_flight: Vec<InFlight>,
    next_flight: FlightId,
    reachable: bool,
    unreachable_since: Option<Instant>,
    consecutive_failures: u32,
    last_error: Option<String>,
    exports_enabled: bool,
    waiters: Vec<Waiter>,
    deadline_write: Option<drain::PendingDeadline>,
    spool: SpoolSide,
    next_refresh: Instant,
    armed: Option<Instant>,
    out: Vec<Action>,
}

impl std::fmt::Debug for ExporterState {
    /// Figures only: the batches' bodies stay out of any log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterState")
            .field("pending", &self.pending.len())
            .field("in_flight", &self.in_flight.len())
            .field("reachable", &self.reachable)
            .field("spooled_batches", &self.spool.total().batches)
            .finish_non_exhaustive()
    }
}

impl ExporterState {
    /// A new state at `now` (`unix_ms` is the same instant in Unix milliseconds); `seed` drives
    /// the retry jitter. It spools to memory until a durable spool is attached.
    pub fn new(config: ExporterConfig, spool: SpoolConfig, now: Instant, unix_ms: i64, seed: u64) -> Self {
        Self {
            config,
            rng: fastrand::Rng::with_seed(seed),
            clock: (now, unix_ms),
            pending: Default::default(),
            in_flight: Vec::new(),
            next_flight: 0,
            reachable: true,
            unreachable_since: None,
            consecutive_failures: 0,
            last_error: None,
            exports_enabled: true,
            waiters: Vec::new(),
            deadline_write: None,
            spool: SpoolSide::new(spool, now),
            next_refresh: now + SPOOL_REFRESH_INTERVAL,
            armed: None,
            out: Vec::new(),
        }
    }

    /// The exporter's configuration.
    pub fn config(&self) -> &ExporterConfig {
        &self.config
    }

    /// Takes `event`, which happened at `now`, and returns what to do about it, in order.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        match event {
            Event::BatchArrived(batch) => {
                self.enqueue(batch, now);
                self.pump(now);
            }
            Event::ExportFinished { id, outcome } => {
                self.finish(id, outcome, now);
                self.pump(now);
            }
            Event::SpoolAnswered { call, reply } => {
                self.spool_answered(call, reply, now);
                self.pump(now);
            }
            Event::SpoolCallLost { call } => {
                self.spool_call_lost(call);
                self.pump(now);
            }
            Event::SpoolAttached { backend } => {
                self.spool_attached(backend);
                self.pump(now);
            }
            Event::TransportUnavailable { reason } => {
                self.exports_enabled = false;
                self.last_error = Some(reason);
            }
            Event::DrainRequested { waiter, deadline, give_up } => {
                self.waiters.push(Waiter { id: waiter, deadline, give_up });
                if give_up {
                    self.cap_retries(now);
                }
                self.pump(now);
            }
            Event::Restarted => {
                self.armed = None;
                // Exports under way died with the old context: fresh batches go first again.
                for flight in std::mem::take(&mut self.in_flight).into_iter().rev() {
                    match flight.flight {
                        Flight::Fresh(mut pending) => {
                            pending.not_before = None;
                            self.pending.push_front(pending);
                        }
                        Flight::Replay(source, batch) => self.spool.give_back(source, batch),
                    }
                }
                self.spool.restarted();
                self.pump(now);
            }
            Event::Tick => {
                if self.draining() {
                    self.cap_retries(now);
                }
                if now >= self.next_refresh {
                    self.next_refresh = now + SPOOL_REFRESH_INTERVAL;
                    self.spool.queue_refresh();
                }
                self.pump(now);
            }
            Event::DeadlineWriteAnswered(result) => self.deadline_written(result),
        }
        self.answer_waiters(now);
        if self.armed.is_some_and(|at| at <= now) {
            self.armed = None;
        }
        if let Some(at) = self.next_wake(now) {
            if self.armed.is_none_or(|armed| at < armed) {
                self.armed = Some(at);
                self.out.push(Action::ScheduleWake(at));
            }
        }
        std::mem::take(&mut self.out)
    }

    fn emit(&mut self, event: impl Into<ExporterEvent>) {
        self.out.push(Action::Emit(event.into()));
    }

    /// `now` in Unix milliseconds.
    fn unix_ms(&self, now: Instant) -> i64 {
        let (at, unix) = self.clock;
        let since = now.saturating_duration_since(at).as_millis();
        let before = at.saturating_duration_since(now).as_millis();
        unix.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
            .saturating_sub(i64::try_from(before).unwrap_or(i64::MAX))
    }

    fn policy(&self, signal: Signal) -> OverflowPolicy {
        self.config.when_full.of(signal)
    }

    /// True while batches of `signal` go straight to the spool.
    fn spooling(&self, signal: Signal) -> bool {
        !self.reachable && self.policy(signal) == OverflowPolicy::Spool
    }

    fn draining(&self) -> bool {
        self.waiters.iter().any(|w| w.give_up)
    }

    /// While shutting down, no retry waits longer than [`DRAIN_RETRY_CAP`].
    fn cap_retries(&mut self, now: Instant) {
        let cap = now + DRAIN_RETRY_CAP;
        for pending in &mut self.pending {
            pending.not_before = pending.not_before.map(|t| t.min(cap));
        }
    }

    /// Bytes of batches waiting or in flight.
    fn queue_bytes(&self) -> u64 {
        let pending: u64 = self.pending.iter().map(|p| p.batch.body.len() as u64).sum();
        pending + self.in_flight.iter().map(|f| f.flight.bytes()).sum::<u64>()
    }

    /// Bytes of encoded batches held in memory: waiting, in flight, on their way to the spool.
    pub fn held_bytes(&self) -> u64 {
        self.queue_bytes() + self.spool.queued_bytes()
    }

    /// What both spools hold together.
    pub fn spool_stats(&self) -> SpoolStats {
        self.spool.total()
    }

    /// True while a database spool is attached but failing.
    pub fn spool_fallback(&self) -> bool {
        self.spool.fallback()
    }

    /// Starts every export that may start now and asks the spool for batches to replay.
    fn pump(&mut self, now: Instant) {
        if self.exports_enabled {
            self.start_exports(now);
            self.claim_for_replay(now);
            // Batches claimed from memory are ready at once.
            self.start_exports(now);
        }
        self.run_spool_ops(now);
    }

    /// Fills the free export slots: fresh batches that are due first, then claimed replays.
    fn start_exports(&mut self, now: Instant) {
        while self.in_flight.len() < self.config.max_concurrent_exports {
            let flight = match self.pending.iter().position(|p| p.not_before.is_none_or(|t| t <= now)) {
                Some(index) => match self.pending.remove(index) {
                    Some(mut pending) => {
                        pending.first_attempt.get_or_insert(now);
                        Flight::Fresh(pending)
                    }
                    None => break,
                },
                None => match self.spool.next_ready(now, self.config.timeout) {
                    Some((source, batch)) => Flight::Replay(source, batch),
                    None => break,
                },
            };
            self.start_export(flight, now);
        }
    }

    fn start_export(&mut self, flight: Flight, now: Instant) {
        let id = self.next_flight;
        self.next_flight += 1;
        let (signal, body) = match &flight {
            Flight::Fresh(p) => (p.batch.signal, p.batch.body.clone()),
            Flight::Replay(_, b) => (b.signal, b.body.clone()),
        };
        self.in_flight.push(InFlight { id, started: now, flight });
        self.out.push(Action::StartExport { id, signal, body });
    }

    /// Asks the spool for batches when a replay may start: the collector answers, a slot is left
    /// free by fresh batches, and the replay rate allows it; or, while the collector is
    /// unreachable, one batch at a time as a probe, on the retry schedule.
    fn claim_for_replay(&mut self, now: Instant) {
        if !self.spool.may_claim(now) || self.draining() {
            return;
        }
        let replays = self.in_flight.iter().filter(|f| !f.flight.is_fresh()).count();
        let limit = if self.reachable {
            if self.pending.iter().any(|p| p.not_before.is_none_or(|t| t <= now)) {
                return;
            }
            // One slot always stays free for fresh batches.
            let slots = self.config.max_concurrent_exports.saturating_sub(1).max(1).saturating_sub(replays);
            let free = slots.min(self.config.max_concurrent_exports.saturating_sub(self.in_flight.len()));
            let Some(limit) = self.spool.take_tokens(free.min(MAX_CLAIM), now) else { return };
            limit
        } else {
            if replays > 0 || self.in_flight.len() >= self.config.max_concurrent_exports {
                return;
            }
            1
        };
        self.spool_claim(limit, now);
    }

    fn finish(&mut self, id: FlightId, outcome: Outcome, now: Instant) {
        let Some(index) = self.in_flight.iter().position(|f| f.id == id) else {
            // Given up at a shutdown deadline or lost in a restart while it was under way.
            return;
        };
        let InFlight { started, flight, .. } = self.in_flight.swap_remove(index);
        let (signal, items) = (flight.signal(), flight.items());
        let duration = now.saturating_duration_since(started);
        match outcome {
            Outcome::Accepted { rejected } => {
                let rejected = rejected.min(items);
                let replayed = !flight.is_fresh();
                self.emit(BatchExported { signal, items: items - rejected, rejected, duration, replayed });
                self.consecutive_failures = 0;
                self.last_error = None;
                if let Flight::Replay(source, batch) = flight {
                    self.spool.remove(source, &batch);
                }
                self.mark_reachable(now);
            }
            Outcome::Permanent { reason } => {
                self.emit(ExportRejected { signal, items, reason: reason.clone(), duration });
                if let Flight::Replay(source, batch) = flight {
                    self.spool.remove(source, &batch);
                }
                self.mark_reachable(now);
                self.last_error = Some(reason);
            }
            Outcome::Retryable { reason, retry_after } => {
                match retry_after {
                    // A collector that says when to come back (429 with Retry-After, RetryInfo)
                    // is answering: throttled, not unreachable.
                    Some(delay) => {
                        self.emit(ExportThrottled { signal, reason: reason.clone(), retry_after: delay, duration })
                    }
                    None => {
                        self.emit(ExportFailed { signal, reason: reason.clone(), duration });
                        self.consecutive_failures += 1;
                        if self.consecutive_failures >= self.config.unreachable_after {
                            self.mark_unreachable(&reason, now);
                        }
                    }
                }
                self.last_error = Some(reason);
                match flight {
                    Flight::Fresh(mut pending) => {
                        pending.retries += 1;
                        if self.spooling(signal) {
                            self.spool_pending(vec![pending], now);
                        } else {
                            self.schedule_retry(pending, retry_after, now);
                        }
                    }
                    Flight::Replay(source, batch) => {
                        let delay = self.spool.probe_failed(retry_after, &self.config.retry, &mut self.rng);
                        self.spool.set_next_probe(now + delay);
                        // Claimed batches not yet sent go back too, so the order stays oldest first.
                        self.spool.release(source, batch, 1);
                        self.spool.release_ready();
                    }
                }
            }
        }
    }

    fn mark_unreachable(&mut self, reason: &str, now: Instant) {
        if !self.reachable {
            return;
        }
        self.reachable = false;
        self.unreachable_since = Some(now);
        self.emit(CollectorUnreachable { endpoint: self.config.endpoint.clone(), reason: reason.to_owned() });
        // Batches waiting in memory go to the spool; the spool's oldest batch probes the
        // collector from now on.
        let (to_spool, keep): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| self.policy(p.batch.signal) == OverflowPolicy::Spool);
        self.pending = keep.into();
        self.spool_pending(to_spool, now);
        let first = backoff(&self.config.retry, 1, self.rng.f64());
        self.spool.start_probing(now + first);
    }

    fn mark_reachable(&mut self, now: Instant) {
        self.spool.stop_probing();
        if self.reachable {
            return;
        }
        let down_for = self.unreachable_since.map(|t| now.saturating_duration_since(t)).unwrap_or_default();
        self.reachable = true;
        self.unreachable_since = None;
        let spooled_batches = self.spool.total().batches;
        self.emit(CollectorBack { endpoint: self.config.endpoint.clone(), down_for, spooled_batches });
    }

    /// When the state machine next has something to do without an event.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let retry = self.pending.iter().filter_map(|p| p.not_before).filter(|t| *t > now).min();
        let waiters = self.waiters.iter().flat_map(|w| {
            let grace = w.give_up.then_some(w.deadline + SPOOL_SHUTDOWN_GRACE);
            [Some(w.deadline), grace].into_iter().flatten()
        });
        let spool = self.spool.next_wake(now, self.reachable);
        [retry, spool, Some(self.next_refresh)].into_iter().flatten().chain(waiters).filter(|t| *t > now).min()
    }

    /// The exporter's state, for `/health`.
    pub fn status(&self, now: Instant) -> ExporterStatus {
        let s = &self.spool;
        let total = s.total();
        ExporterStatus {
            collector_reachable: self.reachable,
            pending_batches: self.pending.len(),
            pending_items: self.pending.iter().map(|p| p.batch.items).sum(),
            pending_capacity: self.config.max_pending_batches,
            in_flight: self.in_flight.len(),
            last_error: self.last_error.clone(),
            unreachable_for: self.unreachable_since.map(|t| now.saturating_duration_since(t)),
            held_bytes: self.held_bytes(),
            max_held_bytes: self.config.max_pending_bytes,
            spool: SpoolStatus {
                backend: s.backend(),
                fallback: s.fallback(),
                error: s.error(),
                batches: total.batches,
                bytes: total.bytes,
                max_bytes: s.config().max_bytes,
                memory_batches: s.memory_stats().batches,
                items: Signal::ALL.map(|sig| total.items_of(sig)),
                replaying: self.in_flight.iter().filter(|f| !f.flight.is_fresh()).count() + s.ready_len(),
                policies: Signal::ALL.map(|sig| self.policy(sig)),
            },
        }
    }
}
