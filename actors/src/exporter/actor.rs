//! The exporter actor.
//!
//! Fresh batches wait in a bounded in-memory queue (by count and by bytes) for an export slot or a
//! retry. What does not fit, what runs out of retries, and everything that arrives while the
//! collector is unreachable goes, per the signal's `when_full` policy, to the spool (or is dropped
//! and counted). Once the collector answers, the spool is replayed oldest first at a bounded rate,
//! only through slots fresh batches leave free. Spool calls block, so they run one at a time on
//! the runtime's blocking pool and report back to the actor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures_util::FutureExt as _;
use tokio::sync::oneshot;

use super::config::ExporterConfig;
use super::messages::{AttachSpool, Drain, DrainReport, ExportBatch, ExporterStatus, GetStatus, SpoolStatus};
use super::retry::backoff;
use super::transport::{Outcome, Transport};
use crate::self_metrics::{ActorKind, DropReason, FailureKind, SelfMetrics, Signal};
use crate::spool::{
    unix_millis_now, Evicted, MemorySpool, OverflowPolicy, Spool, SpoolConfig, SpoolError, SpoolRecord, SpoolStats,
    SpooledBatch,
};
use crate::supervision::{guarded, panic_message, InjectPanic};

/// Longest pause between retries while shutting down: the deadline matters more than politeness.
const DRAIN_RETRY_CAP: Duration = Duration::from_millis(200);
/// Minimum interval between two log lines about permanent failures.
const PERMANENT_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How often the spool's figures are read again (and the database spool retried after a fault).
const SPOOL_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// How long a shutdown waits past its deadline for a spool write already under way.
const SPOOL_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Most batches claimed from the spool in one call.
const MAX_CLAIM: usize = 8;

/// A batch waiting for an export slot or for its retry time.
#[derive(Debug)]
struct Pending {
    batch: ExportBatch,
    retries: u32,
    first_attempt: Option<Instant>,
    not_before: Option<Instant>,
    created_unix_ms: i64,
}

impl Pending {
    fn new(batch: ExportBatch) -> Self {
        Self { batch, retries: 0, first_attempt: None, not_before: None, created_unix_ms: unix_millis_now() }
    }

    fn record(&self) -> SpoolRecord {
        SpoolRecord {
            signal: self.batch.signal,
            items: self.batch.items,
            attempts: self.retries,
            created_unix_ms: self.created_unix_ms,
            body: self.batch.body.clone(),
        }
    }
}

/// Which spool a replayed batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Durable,
    Memory,
}

/// An export under way: a fresh batch, or a batch replayed from the spool.
#[derive(Debug)]
enum Flight {
    Fresh(Pending),
    Replay(Source, SpooledBatch),
}

impl Flight {
    fn batch_items(&self) -> (Signal, u64, usize) {
        match self {
            Flight::Fresh(p) => (p.batch.signal, p.batch.items, p.batch.body.len()),
            Flight::Replay(_, b) => (b.signal, b.items, b.body.len()),
        }
    }
}

/// A blocking call on the spool, run on the blocking pool.
#[derive(Debug, Clone)]
enum SpoolOp {
    Append(Vec<SpoolRecord>),
    Claim(usize),
    /// Deletes a replayed batch; carries its figures to keep the spool's totals without a scan.
    Remove(Source, i64, SpoolStats),
    Release(Source, i64, u32),
    Refresh,
}

/// What a spool call came to.
#[derive(Debug, Default)]
struct SpoolDone {
    /// Batches removed by a bound, and why.
    evicted: Vec<(Evicted, DropReason)>,
    /// Claimed batches, oldest first.
    claimed: Vec<(Source, SpooledBatch)>,
    /// Fresh figures of the database spool, when it was read.
    durable_stats: Option<SpoolStats>,
    /// What a write added to and removed from the database spool, when its figures were not read.
    durable_change: Option<(SpoolStats, SpoolStats)>,
    /// Fresh figures of the memory spool.
    memory_stats: Option<SpoolStats>,
    /// The database spool failed (the exporter falls back to memory).
    durable_error: Option<SpoolError>,
    /// The database spool answered.
    durable_ok: bool,
}

/// The spool side of the exporter.
#[derive(Debug)]
struct SpoolState {
    config: SpoolConfig,
    durable: Option<Arc<dyn Spool>>,
    memory: Arc<MemorySpool>,
    /// False while the database spool is failing: batches go to memory.
    durable_ok: bool,
    durable_error: Option<String>,
    durable_stats: SpoolStats,
    memory_stats: SpoolStats,
    ops: VecDeque<SpoolOp>,
    /// The call under way, kept so that a restart can run it again.
    current: Option<SpoolOp>,
    claiming: bool,
    /// Claimed batches waiting for an export slot.
    ready: VecDeque<(Source, SpooledBatch)>,
    tokens: f64,
    last_refill: Instant,
    /// While the collector is unreachable: when the next spooled batch may probe it.
    next_probe: Option<Instant>,
    probe_failures: u32,
    wake_timer: Option<(Instant, SpawnHandle)>,
}

impl SpoolState {
    fn new(config: SpoolConfig) -> Self {
        Self {
            config,
            durable: None,
            memory: Arc::new(MemorySpool::new()),
            durable_ok: false,
            durable_error: None,
            durable_stats: SpoolStats::default(),
            memory_stats: SpoolStats::default(),
            ops: VecDeque::new(),
            current: None,
            claiming: false,
            ready: VecDeque::new(),
            tokens: 1.0,
            last_refill: Instant::now(),
            next_probe: None,
            probe_failures: 0,
            wake_timer: None,
        }
    }

    /// What both spools hold together.
    fn total(&self) -> SpoolStats {
        self.durable_stats.plus(&self.memory_stats)
    }

    fn batches(&self) -> u64 {
        self.total().batches
    }

    /// True while a database spool is attached but failing.
    fn fallback(&self) -> bool {
        self.durable.is_some() && !self.durable_ok
    }

    fn lease(&self, export_timeout: Duration) -> Duration {
        (export_timeout * 3).max(Duration::from_secs(5))
    }

    fn refill(&mut self) {
        let rate = f64::from(self.config.replay_batches_per_second);
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate.max(1.0));
    }

    fn queued_bytes(&self) -> u64 {
        let queued: u64 = self
            .ops
            .iter()
            .chain(self.current.iter())
            .map(|op| match op {
                SpoolOp::Append(records) => records.iter().map(|r| r.body.len() as u64).sum(),
                _ => 0,
            })
            .sum();
        queued + self.ready.iter().map(|(_, b)| b.body.len() as u64).sum::<u64>()
    }
}

/// Runs one spool call. Blocking; called on the blocking pool (or on the actor's own thread at
/// the shutdown deadline).
fn execute(
    op: SpoolOp,
    durable: Option<Arc<dyn Spool>>,
    use_durable: bool,
    memory: &MemorySpool,
    config: &SpoolConfig,
    lease: Duration,
) -> SpoolDone {
    let mut done = SpoolDone::default();
    let durable = durable.filter(|_| use_durable);
    let fail = |done: &mut SpoolDone, err: SpoolError| {
        done.durable_error = Some(err);
        done.durable_ok = false;
    };
    match op {
        SpoolOp::Append(records) => {
            let mut to_memory = Some(records);
            if let Some(spool) = &durable {
                let records = to_memory.take().unwrap_or_default();
                let added = SpoolStats::of_records(&records);
                match spool.append(records.clone(), config.max_bytes) {
                    Ok(evicted) => {
                        done.durable_ok = true;
                        done.durable_change = Some((added, SpoolStats::of_evicted(&evicted)));
                        done.evicted.extend(evicted.into_iter().map(|e| (e, DropReason::SpoolFull)));
                    }
                    Err(err) => {
                        fail(&mut done, err);
                        to_memory = Some(records);
                    }
                }
            }
            if let Some(records) = to_memory {
                if let Ok(evicted) = memory.append(records, config.memory_max_bytes) {
                    done.evicted.extend(evicted.into_iter().map(|e| (e, DropReason::SpoolFull)));
                }
            }
        }
        SpoolOp::Claim(limit) => {
            if let Ok(batches) = memory.claim_oldest(limit, lease) {
                done.claimed.extend(batches.into_iter().map(|b| (Source::Memory, b)));
            }
            if let (Some(spool), true) = (&durable, done.claimed.len() < limit) {
                match spool.claim_oldest(limit - done.claimed.len(), lease) {
                    Ok(batches) => {
                        done.durable_ok = true;
                        done.claimed.extend(batches.into_iter().map(|b| (Source::Durable, b)));
                    }
                    Err(err) => fail(&mut done, err),
                }
            }
        }
        SpoolOp::Remove(source, id, _) | SpoolOp::Release(source, id, _) => {
            let (release, removed) = match op {
                SpoolOp::Release(_, _, attempts) => (Some(attempts), None),
                SpoolOp::Remove(_, _, figures) => (None, Some(figures)),
                _ => (None, None),
            };
            let call = |spool: &dyn Spool| match release {
                Some(attempts) => spool.release(id, attempts),
                None => spool.remove(&[id]),
            };
            match source {
                Source::Memory => {
                    let _ = call(memory);
                }
                Source::Durable => {
                    if let Some(spool) = &durable {
                        match call(spool.as_ref()) {
                            Ok(()) => {
                                done.durable_ok = true;
                                done.durable_change = removed.map(|r| (SpoolStats::default(), r));
                            }
                            Err(err) => fail(&mut done, err),
                        }
                    }
                }
            }
        }
        SpoolOp::Refresh => {
            let cutoff = (!config.max_age.is_zero())
                .then(|| unix_millis_now().saturating_sub(i64::try_from(config.max_age.as_millis()).unwrap_or(0)));
            if let Some(cutoff) = cutoff {
                if let Ok(expired) = memory.expire(cutoff) {
                    done.evicted.extend(expired.into_iter().map(|e| (e, DropReason::SpoolExpired)));
                }
            }
            if let Some(spool) = &durable {
                let refreshed = (|| {
                    if let Some(cutoff) = cutoff {
                        let expired = spool.expire(cutoff)?;
                        done.evicted.extend(expired.into_iter().map(|e| (e, DropReason::SpoolExpired)));
                    }
                    // Batches kept in memory while the database was away move to it now.
                    let moved = memory.claim_oldest(usize::MAX, lease).unwrap_or_default();
                    if !moved.is_empty() {
                        let records = moved.iter().map(SpooledBatch::to_record).collect();
                        let ids: Vec<i64> = moved.iter().map(|b| b.id).collect();
                        match spool.append(records, config.max_bytes) {
                            Ok(evicted) => {
                                let _ = memory.remove(&ids);
                                done.evicted.extend(evicted.into_iter().map(|e| (e, DropReason::SpoolFull)));
                            }
                            Err(err) => {
                                for id in ids {
                                    let _ = memory.release(id, 0);
                                }
                                return Err(err);
                            }
                        }
                    }
                    spool.stats()
                })();
                match refreshed {
                    Ok(stats) => {
                        done.durable_ok = true;
                        done.durable_stats = Some(stats);
                    }
                    Err(err) => fail(&mut done, err),
                }
            }
        }
    }
    done.memory_stats = memory.stats().ok();
    done
}

/// A caller waiting for the exporter to run dry.
#[derive(Debug)]
struct Waiter {
    deadline: Instant,
    give_up: bool,
    reply: oneshot::Sender<DrainReport>,
}

/// Sends OTLP batches to the collector, spooling what it cannot send.
pub struct Exporter {
    config: ExporterConfig,
    transport: Option<Transport>,
    metrics: Arc<SelfMetrics>,
    pending: VecDeque<Pending>,
    in_flight: Vec<(u64, Flight)>,
    next_flight_id: u64,
    reachable: bool,
    unreachable_since: Option<Instant>,
    consecutive_failures: u32,
    last_error: Option<String>,
    last_permanent_log: Option<Instant>,
    retry_timer: Option<(Instant, SpawnHandle)>,
    waiters: Vec<Waiter>,
    spool: SpoolState,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("pending", &self.pending.len())
            .field("in_flight", &self.in_flight.len())
            .field("reachable", &self.reachable)
            .field("spooled_batches", &self.spool.batches())
            .finish()
    }
}

impl Exporter {
    /// A new exporter with the default spool settings; the transport is built once the actor
    /// runs on its arbiter.
    pub fn new(config: ExporterConfig, metrics: Arc<SelfMetrics>) -> Self {
        Self::with_spool(config, SpoolConfig::default(), metrics)
    }

    /// A new exporter; it spools to memory until a durable spool is attached ([`AttachSpool`]).
    pub fn with_spool(config: ExporterConfig, spool: SpoolConfig, metrics: Arc<SelfMetrics>) -> Self {
        metrics.spool().max_bytes.set(i64::try_from(spool.max_bytes).unwrap_or(i64::MAX));
        metrics.spool().buffered_max_bytes.set(i64::try_from(config.max_pending_bytes).unwrap_or(i64::MAX));
        metrics.spool().fallback.set(0);
        Self {
            config,
            transport: None,
            metrics,
            pending: VecDeque::new(),
            in_flight: Vec::new(),
            next_flight_id: 0,
            reachable: true,
            unreachable_since: None,
            consecutive_failures: 0,
            last_error: None,
            last_permanent_log: None,
            retry_timer: None,
            waiters: Vec::new(),
            spool: SpoolState::new(spool),
        }
    }

    fn draining(&self) -> bool {
        self.waiters.iter().any(|w| w.give_up)
    }

    fn policy(&self, signal: Signal) -> OverflowPolicy {
        self.config.when_full.of(signal)
    }

    /// True while batches of `signal` go straight to the spool.
    fn spooling(&self, signal: Signal) -> bool {
        !self.reachable && self.policy(signal) == OverflowPolicy::Spool
    }

    /// Bytes of encoded batches held in memory: waiting, in flight, on their way to the spool.
    fn held_bytes(&self) -> u64 {
        self.queue_bytes() + self.spool.queued_bytes()
    }

    /// Bytes of batches waiting or in flight (the spool's write queue is bounded apart).
    fn queue_bytes(&self) -> u64 {
        let pending: u64 = self.pending.iter().map(|p| p.batch.body.len() as u64).sum();
        let flying: u64 = self.in_flight.iter().map(|(_, f)| f.batch_items().2 as u64).sum();
        pending + flying
    }

    fn enqueue(&mut self, batch: ExportBatch) {
        self.metrics.batch_size(batch.signal).observe(batch.items as f64);
        let signal = batch.signal;
        if self.spooling(signal) {
            self.spool_pending(vec![Pending::new(batch)]);
            return;
        }
        let size = batch.body.len() as u64;
        while self.pending.len() >= self.config.max_pending_batches
            || self.queue_bytes() + size > self.config.max_pending_bytes
        {
            if self.policy(signal) == OverflowPolicy::DropNewest {
                self.drop_batch(&batch, DropReason::QueueFull);
                return;
            }
            let Some(oldest) = self.pending.pop_front() else { break };
            if self.policy(oldest.batch.signal) == OverflowPolicy::Spool {
                self.spool_pending(vec![oldest]);
            } else {
                self.drop_batch(&oldest.batch, DropReason::QueueFull);
            }
        }
        self.pending.push_back(Pending::new(batch));
        self.publish_memory();
    }

    fn drop_batch(&self, batch: &ExportBatch, reason: DropReason) {
        self.metrics.dropped(batch.signal, reason).inc_by(batch.items);
    }

    /// Sends batches to the spool (counted as spooled once they are on their way). The database
    /// spool's write queue holds at most half of `exporter.max_pending_bytes`; what does not fit
    /// (the database is slower than the input for a moment, or it is unavailable) goes to the
    /// memory spool, which never blocks and whose batches move to the database at the next
    /// refresh. Only when the memory spool is full too are its oldest batches dropped, counted
    /// as `spool_full`.
    fn spool_pending(&mut self, batches: Vec<Pending>) {
        if batches.is_empty() {
            return;
        }
        let durable = self.spool.durable.is_some() && self.spool.durable_ok;
        let mut queued = self.spool.queued_bytes();
        let (mut to_durable, mut to_memory) = (Vec::new(), Vec::new());
        for pending in batches {
            let size = pending.batch.body.len() as u64;
            self.metrics.spool().spooled[pending.batch.signal as usize].inc_by(pending.batch.items);
            if durable && queued + size <= self.config.max_pending_bytes / 2 {
                queued += size;
                to_durable.push(pending.record());
            } else {
                to_memory.push(pending.record());
            }
        }
        if !to_memory.is_empty() {
            let evicted = self.spool.memory.append(to_memory, self.spool.config.memory_max_bytes).unwrap_or_default();
            let done = SpoolDone {
                evicted: evicted.into_iter().map(|e| (e, DropReason::SpoolFull)).collect(),
                memory_stats: self.spool.memory.stats().ok(),
                ..SpoolDone::default()
            };
            self.apply_spool(done, None);
        }
        if to_durable.is_empty() {
            return;
        }
        match self.spool.ops.back_mut() {
            Some(SpoolOp::Append(queued)) => queued.extend(to_durable),
            _ => self.spool.ops.push_back(SpoolOp::Append(to_durable)),
        }
    }

    /// Starts the next spool call if none is under way.
    fn run_spool_ops(&mut self, ctx: &mut Context<Self>) {
        if self.spool.current.is_some() {
            return;
        }
        let Some(op) = self.spool.ops.pop_front() else { return };
        self.spool.current = Some(op.clone());
        let durable = self.spool.durable.clone();
        // A failing database spool is only tried again by the periodic refresh.
        let use_durable = self.spool.durable_ok || matches!(op, SpoolOp::Refresh);
        let memory = self.spool.memory.clone();
        let config = self.spool.config.clone();
        let lease = self.spool.lease(self.config.timeout);
        let task = actix_rt::task::spawn_blocking(move || execute(op, durable, use_durable, &memory, &config, lease));
        ctx.spawn(task.into_actor(self).map(|result, act, ctx| {
            let op = act.spool.current.take();
            guarded(ActorKind::Exporter, act, ctx, |act, ctx| {
                match result {
                    Ok(done) => act.apply_spool(done, op),
                    Err(err) => {
                        tracing::error!(error = %err, "a spool call panicked; it is retried");
                        if let Some(op) = op {
                            act.spool.ops.push_front(op);
                        }
                    }
                }
                act.run_spool_ops(ctx);
                act.pump(ctx);
                act.answer_waiters();
            });
        }));
    }

    /// Takes a spool call's result into the actor's state.
    fn apply_spool(&mut self, done: SpoolDone, op: Option<SpoolOp>) {
        if matches!(op, Some(SpoolOp::Claim(_))) {
            self.spool.claiming = false;
            if done.claimed.is_empty() && self.spool.batches() > 0 && done.durable_error.is_none() {
                // Everything left is leased (a replay under way elsewhere): look again later.
                self.spool.next_probe = Some(Instant::now() + SPOOL_REFRESH_INTERVAL);
            }
        }
        for (evicted, reason) in &done.evicted {
            if let Some(signal) = evicted.signal {
                self.metrics.dropped(signal, *reason).inc_by(evicted.items);
                tracing::warn!(
                    signal = signal.as_str(),
                    batches = evicted.batches,
                    items = evicted.items,
                    reason = reason.as_str(),
                    "spooled telemetry removed by the spool's bound"
                );
            }
        }
        if let Some(stats) = done.durable_stats {
            self.spool.durable_stats = stats;
        } else if let Some((added, removed)) = done.durable_change {
            self.spool.durable_stats = self.spool.durable_stats.plus(&added).minus(&removed);
        }
        if let Some(stats) = done.memory_stats {
            self.spool.memory_stats = stats;
        }
        if let Some(err) = done.durable_error {
            if self.spool.durable_ok {
                tracing::warn!(error = %err, "the spool's database is unavailable; batches are kept in memory");
            }
            self.spool.durable_ok = false;
            self.spool.durable_error = Some(err.to_string());
        } else if done.durable_ok {
            if !self.spool.durable_ok && self.spool.durable.is_some() {
                tracing::warn!("the spool's database answers again");
            }
            self.spool.durable_ok = true;
            self.spool.durable_error = None;
        }
        self.spool.ready.extend(done.claimed);
        self.publish_spool();
    }

    fn publish_spool(&self) {
        let gauges = self.metrics.spool();
        let total = self.spool.total();
        gauges.bytes.set(i64::try_from(total.bytes).unwrap_or(i64::MAX));
        gauges.batches.set(i64::try_from(total.batches).unwrap_or(i64::MAX));
        for signal in Signal::ALL {
            gauges.items[signal as usize].set(i64::try_from(total.items_of(signal)).unwrap_or(i64::MAX));
        }
        gauges.fallback.set(i64::from(self.spool.fallback()));
        self.publish_memory();
    }

    fn publish_memory(&self) {
        self.metrics.spool().buffered_bytes.set(i64::try_from(self.held_bytes()).unwrap_or(i64::MAX));
    }

    /// Starts every export that may start now, asks the spool for batches to replay, and arms
    /// the timers for what comes next.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let Some(transport) = self.transport.clone() else { return };
        let draining = self.draining();
        let now = Instant::now();
        while self.in_flight.len() < self.config.max_concurrent_exports {
            let flight = match self.pending.iter().position(|p| p.not_before.is_none_or(|t| t <= now)) {
                Some(index) => match self.pending.remove(index) {
                    Some(mut pending) => {
                        pending.first_attempt.get_or_insert(now);
                        Flight::Fresh(pending)
                    }
                    None => break,
                },
                None => match self.spool.ready.pop_front() {
                    Some((source, batch)) => Flight::Replay(source, batch),
                    None => break,
                },
            };
            self.start_export(ctx, &transport, flight, now);
        }
        self.claim_for_replay(now);
        self.run_spool_ops(ctx);
        self.arm_retry_timer(ctx, draining);
        self.arm_spool_timer(ctx);
        self.publish_memory();
    }

    fn start_export(&mut self, ctx: &mut Context<Self>, transport: &Transport, flight: Flight, now: Instant) {
        let id = self.next_flight_id;
        self.next_flight_id += 1;
        let (signal, body) = match &flight {
            Flight::Fresh(p) => (p.batch.signal, p.batch.body.clone()),
            Flight::Replay(_, b) => (b.signal, b.body.clone()),
        };
        self.in_flight.push((id, flight));
        let send = transport.clone().send(signal, body, self.config.timeout);
        let contained = std::panic::AssertUnwindSafe(send).catch_unwind().map(|result| {
            result.unwrap_or_else(|payload| Outcome::Retryable {
                reason: format!("export panicked: {}", panic_message(payload.as_ref())),
                retry_after: None,
            })
        });
        ctx.spawn(contained.into_actor(self).map(move |outcome, act, ctx| {
            let elapsed = now.elapsed();
            guarded(ActorKind::Exporter, act, ctx, |act, ctx| {
                act.finish(id, outcome, elapsed);
                act.pump(ctx);
                act.answer_waiters();
            });
        }));
    }

    /// Asks the spool for batches when a replay may start: the collector answers, a slot is left
    /// free by fresh batches, and the replay rate allows it; or, while the collector is
    /// unreachable, one batch at a time as a probe, on the retry schedule.
    fn claim_for_replay(&mut self, now: Instant) {
        if self.spool.claiming || !self.spool.ready.is_empty() || self.spool.batches() == 0 || self.draining() {
            return;
        }
        if self.spool.next_probe.is_some_and(|at| at > now) {
            return;
        }
        let fresh_ready = self.pending.iter().any(|p| p.not_before.is_none_or(|t| t <= now));
        let replays = self.in_flight.iter().filter(|(_, f)| matches!(f, Flight::Replay(..))).count();
        let limit = if self.reachable {
            if fresh_ready {
                return;
            }
            // One slot always stays free for fresh batches.
            let slots = self.config.max_concurrent_exports.saturating_sub(1).max(1).saturating_sub(replays);
            let free = slots.min(self.config.max_concurrent_exports - self.in_flight.len());
            self.spool.refill();
            let tokens = self.spool.tokens.floor() as usize;
            let limit = free.min(tokens).min(MAX_CLAIM);
            if limit == 0 {
                return;
            }
            self.spool.tokens -= limit as f64;
            limit
        } else {
            if replays > 0 || self.in_flight.len() >= self.config.max_concurrent_exports {
                return;
            }
            1
        };
        self.spool.claiming = true;
        self.spool.ops.push_back(SpoolOp::Claim(limit));
    }

    /// Wakes the actor when the replay rate or the probe schedule next allows a claim.
    fn arm_spool_timer(&mut self, ctx: &mut Context<Self>) {
        if self.spool.batches() == 0 || self.spool.claiming {
            return;
        }
        let now = Instant::now();
        let at = match self.spool.next_probe {
            Some(at) if at > now => at,
            _ if self.reachable && self.spool.tokens < 1.0 => {
                let rate = f64::from(self.spool.config.replay_batches_per_second);
                now + Duration::from_secs_f64(((1.0 - self.spool.tokens) / rate).max(0.001))
            }
            _ => return,
        };
        if let Some((armed_at, handle)) = self.spool.wake_timer {
            if armed_at <= at && armed_at > now {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(at.saturating_duration_since(now), |act, ctx| {
            act.spool.wake_timer = None;
            guarded(ActorKind::Exporter, act, ctx, |act, ctx| act.pump(ctx));
        });
        self.spool.wake_timer = Some((at, handle));
    }

    fn arm_retry_timer(&mut self, ctx: &mut Context<Self>, draining: bool) {
        let next = self.pending.iter().filter_map(|p| p.not_before).min();
        let Some(mut at) = next else { return };
        if draining {
            at = at.min(Instant::now() + DRAIN_RETRY_CAP);
        }
        if let Some((armed_at, handle)) = self.retry_timer {
            if armed_at <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.retry_timer = None;
            if act.draining() {
                let cap = Instant::now() + DRAIN_RETRY_CAP;
                for pending in &mut act.pending {
                    pending.not_before = pending.not_before.map(|t| t.min(cap));
                }
            }
            guarded(ActorKind::Exporter, act, ctx, |act, ctx| act.pump(ctx));
        });
        self.retry_timer = Some((at, handle));
    }

    fn finish(&mut self, id: u64, outcome: Outcome, elapsed: Duration) {
        let Some(index) = self.in_flight.iter().position(|(flight, _)| *flight == id) else {
            // Dropped at a shutdown deadline or by a restart while it was under way.
            return;
        };
        let (_, flight) = self.in_flight.swap_remove(index);
        let (signal, items, _) = flight.batch_items();
        self.metrics.export_duration(signal).observe(elapsed.as_secs_f64());
        match outcome {
            Outcome::Accepted { rejected } => {
                let rejected = rejected.min(items);
                self.metrics.exported(signal).inc_by(items - rejected);
                self.metrics.dropped(signal, DropReason::ExportFailedPermanent).inc_by(rejected);
                self.metrics.consecutive_failures(signal).set(0);
                let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                self.metrics.last_success(signal).set(now_unix as i64);
                self.consecutive_failures = 0;
                self.last_error = None;
                if let Flight::Replay(source, batch) = flight {
                    self.metrics.spool().replayed[signal as usize].inc_by(items - rejected);
                    self.spool.ops.push_back(SpoolOp::Remove(source, batch.id, figures(&batch)));
                }
                self.mark_reachable();
            }
            Outcome::Permanent { reason } => {
                // Transport errors may quote the endpoint, credentials and all.
                let reason = crate::redact::redact(&reason).into_owned();
                self.metrics.export_failures(signal, FailureKind::Permanent).inc();
                self.metrics.dropped(signal, DropReason::ExportFailedPermanent).inc_by(items);
                if let Flight::Replay(source, batch) = flight {
                    self.spool.ops.push_back(SpoolOp::Remove(source, batch.id, figures(&batch)));
                }
                self.mark_reachable();
                let quiet = self.last_permanent_log.is_some_and(|at| at.elapsed() < PERMANENT_LOG_INTERVAL);
                if !quiet {
                    self.last_permanent_log = Some(Instant::now());
                    tracing::warn!(signal = signal.as_str(), items, reason = %reason, "collector rejected an export; the batch is dropped");
                }
                self.last_error = Some(reason);
            }
            Outcome::Retryable { reason, retry_after } => {
                let reason = crate::redact::redact(&reason).into_owned();
                self.metrics.export_failures(signal, FailureKind::Retryable).inc();
                self.metrics.consecutive_failures(signal).inc();
                // A collector that says when to come back (429 with Retry-After, RetryInfo) is
                // answering: throttled, not unreachable.
                if retry_after.is_none() {
                    self.consecutive_failures += 1;
                    if self.consecutive_failures >= self.config.unreachable_after {
                        self.mark_unreachable(&reason);
                    }
                }
                self.last_error = Some(reason);
                match flight {
                    Flight::Fresh(mut pending) => {
                        pending.retries += 1;
                        if self.spooling(signal) {
                            self.spool_pending(vec![pending]);
                        } else {
                            self.schedule_retry(pending, retry_after);
                        }
                    }
                    Flight::Replay(source, batch) => {
                        self.spool.probe_failures += 1;
                        let delay = retry_after
                            .unwrap_or_else(|| backoff(&self.config.retry, self.spool.probe_failures, fastrand::f64()));
                        self.spool.next_probe = Some(Instant::now() + delay);
                        // Claimed batches not yet sent go back too, so the order stays oldest first.
                        self.spool.ops.push_back(SpoolOp::Release(source, batch.id, batch.attempts + 1));
                        for (source, batch) in std::mem::take(&mut self.spool.ready) {
                            self.spool.ops.push_back(SpoolOp::Release(source, batch.id, batch.attempts));
                        }
                    }
                }
            }
        }
    }

    fn schedule_retry(&mut self, mut pending: Pending, hint: Option<Duration>) {
        let policy = self.policy(pending.batch.signal);
        if !self.config.retry.enabled {
            if policy == OverflowPolicy::Spool {
                self.spool_pending(vec![pending]);
            } else {
                self.drop_batch(&pending.batch, DropReason::RetryExhausted);
            }
            return;
        }
        let delay = hint.unwrap_or_else(|| backoff(&self.config.retry, pending.retries, fastrand::f64()));
        let first = pending.first_attempt.unwrap_or_else(Instant::now);
        if first.elapsed() + delay > self.config.retry.max_elapsed_time {
            if policy == OverflowPolicy::Spool {
                self.spool_pending(vec![pending]);
            } else {
                self.drop_batch(&pending.batch, DropReason::RetryExhausted);
            }
            return;
        }
        let delay = if self.draining() { delay.min(DRAIN_RETRY_CAP) } else { delay };
        pending.not_before = Some(Instant::now() + delay);
        self.pending.push_front(pending);
    }

    fn mark_unreachable(&mut self, reason: &str) {
        if self.reachable {
            self.reachable = false;
            self.unreachable_since = Some(Instant::now());
            self.metrics.collector_up().set(0);
            tracing::warn!(
                endpoint = %crate::redact::redact(&self.config.endpoint),
                reason = %reason,
                "OTLP collector unreachable; telemetry is kept and retried until it answers"
            );
            // Batches waiting in memory go to the spool; the spool's oldest batch probes the
            // collector from now on.
            let (spool, keep): (VecDeque<Pending>, VecDeque<Pending>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| self.config.when_full.of(p.batch.signal) == OverflowPolicy::Spool);
            self.pending = keep;
            self.spool_pending(spool.into_iter().collect());
            self.spool.probe_failures = 1;
            self.spool.next_probe =
                Some(Instant::now() + backoff(&self.config.retry, self.spool.probe_failures, fastrand::f64()));
        }
    }

    fn mark_reachable(&mut self) {
        self.spool.probe_failures = 0;
        self.spool.next_probe = None;
        if !self.reachable {
            let down_for = self.unreachable_since.map(|t| t.elapsed()).unwrap_or_default();
            self.reachable = true;
            self.unreachable_since = None;
            self.metrics.collector_up().set(1);
            tracing::warn!(
                endpoint = %crate::redact::redact(&self.config.endpoint),
                unreachable_for = %humantime::format_duration(Duration::from_secs(down_for.as_secs())),
                spooled_batches = self.spool.batches(),
                "OTLP collector reachable again; replaying the spool"
            );
        }
    }

    /// Fresh batches still in memory: waiting, in flight, or on their way to the spool.
    fn left(&self) -> DrainReport {
        let pending_items: u64 = self.pending.iter().map(|p| p.batch.items).sum();
        let flight_items: u64 =
            self.in_flight.iter().filter(|(_, f)| matches!(f, Flight::Fresh(_))).map(|(_, f)| f.batch_items().1).sum();
        let flights = self.in_flight.iter().filter(|(_, f)| matches!(f, Flight::Fresh(_))).count();
        let appends: Vec<&SpoolRecord> = self
            .spool
            .ops
            .iter()
            .chain(self.spool.current.iter())
            .filter_map(|op| match op {
                SpoolOp::Append(records) => Some(records.iter()),
                _ => None,
            })
            .flatten()
            .collect();
        DrainReport {
            batches_left: self.pending.len() + flights + appends.len(),
            items_left: pending_items + flight_items + appends.iter().map(|r| r.items).sum::<u64>(),
        }
    }

    /// Whether a flush is complete: every fresh batch exported, and (unless shutting down, when
    /// being spooled is enough) the spool replayed.
    fn settled(&self, give_up: bool) -> bool {
        let fresh_done = self.left().batches_left == 0;
        if give_up {
            return fresh_done;
        }
        fresh_done && self.in_flight.is_empty() && self.spool.batches() == 0 && self.spool.ready.is_empty()
    }

    /// Answers every waiter whose condition is met: nothing left, or its deadline passed.
    fn answer_waiters(&mut self) {
        let now = Instant::now();
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            let settled = self.settled(waiter.give_up);
            if !settled && waiter.deadline > now {
                self.waiters.push(waiter);
                continue;
            }
            if !waiter.give_up {
                let _ = waiter.reply.send(if settled { DrainReport::default() } else { self.left() });
                continue;
            }
            // A spool write under way gets a short grace; then what is left is spooled here
            // (blocking: the exporter is about to stop) or dropped.
            if !settled && self.spool.current.is_some() && now < waiter.deadline + SPOOL_SHUTDOWN_GRACE {
                self.waiters.push(waiter);
                continue;
            }
            // What is left behind is what had to be dropped; spooled batches are kept.
            let report = self.spool_or_drop_at_deadline();
            let _ = waiter.reply.send(report);
        }
    }

    /// At the shutdown deadline: writes every fresh batch still in memory to the database spool
    /// (its policy permitting, and the database answering), drops and counts the rest, and
    /// reports what was dropped.
    fn spool_or_drop_at_deadline(&mut self) -> DrainReport {
        let mut records: Vec<SpoolRecord> = Vec::new();
        let mut dropped: Vec<(Signal, u64)> = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            if self.policy(pending.batch.signal) == OverflowPolicy::Spool {
                records.push(pending.record());
            } else {
                dropped.push((pending.batch.signal, pending.batch.items));
            }
        }
        for (_, flight) in std::mem::take(&mut self.in_flight) {
            match flight {
                Flight::Fresh(pending) if self.policy(pending.batch.signal) == OverflowPolicy::Spool => {
                    records.push(pending.record());
                }
                Flight::Fresh(pending) => dropped.push((pending.batch.signal, pending.batch.items)),
                // Its row stays in the spool; the lease ends and it is replayed after a restart.
                Flight::Replay(..) => {}
            }
        }
        let fresh = records.len();
        for op in std::mem::take(&mut self.spool.ops).into_iter().chain(self.spool.current.take()) {
            if let SpoolOp::Append(queued) = op {
                records.extend(queued);
            }
        }
        self.spool.ready.clear();
        // The memory spool does not outlive the process: its batches join the last write.
        let kept = self.spool.memory.claim_oldest(usize::MAX, Duration::from_secs(3600)).unwrap_or_default();
        let _ = self.spool.memory.remove(&kept.iter().map(|b| b.id).collect::<Vec<_>>());
        self.spool.memory_stats = SpoolStats::default();
        records.extend(kept.iter().map(SpooledBatch::to_record));
        if !records.is_empty() {
            let durable = self.spool.durable.clone().filter(|_| self.spool.durable_ok);
            let written = match &durable {
                Some(spool) => match spool.append(records.clone(), self.spool.config.max_bytes) {
                    Ok(evicted) => {
                        for e in evicted {
                            if let Some(signal) = e.signal {
                                self.metrics.dropped(signal, DropReason::SpoolFull).inc_by(e.items);
                            }
                        }
                        self.spool.durable_stats = spool.stats().unwrap_or(self.spool.durable_stats);
                        for record in &records[..fresh] {
                            self.metrics.spool().spooled[record.signal as usize].inc_by(record.items);
                        }
                        true
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot spool at shutdown; the batches are dropped");
                        false
                    }
                },
                None => false,
            };
            if !written {
                // Memory does not outlive the process: these are lost.
                dropped.extend(records.iter().map(|r| (r.signal, r.items)));
            }
        }
        let mut report = DrainReport::default();
        for (signal, items) in dropped {
            self.metrics.dropped(signal, DropReason::ShutdownTimeout).inc_by(items);
            report.batches_left += 1;
            report.items_left += items;
        }
        self.publish_spool();
        report
    }

    fn status(&self) -> ExporterStatus {
        let s = &self.spool;
        ExporterStatus {
            collector_reachable: self.reachable,
            pending_batches: self.pending.len(),
            pending_items: self.pending.iter().map(|p| p.batch.items).sum(),
            pending_capacity: self.config.max_pending_batches,
            in_flight: self.in_flight.len(),
            last_error: self.last_error.clone(),
            unreachable_for: self.unreachable_since.map(|t| t.elapsed()),
            held_bytes: self.held_bytes(),
            max_held_bytes: self.config.max_pending_bytes,
            spool: SpoolStatus {
                backend: s.durable.as_ref().map_or("memory", |d| d.kind()),
                fallback: s.fallback(),
                error: s.durable_error.clone(),
                batches: s.batches(),
                bytes: s.total().bytes,
                max_bytes: s.config.max_bytes,
                memory_batches: s.memory_stats.batches,
                items: Signal::ALL.map(|sig| s.total().items_of(sig)),
                replaying: self.in_flight.iter().filter(|(_, f)| matches!(f, Flight::Replay(..))).count()
                    + s.ready.len(),
                policies: Signal::ALL.map(|sig| self.policy(sig)),
            },
        }
    }
}

/// The spool figures of one batch.
fn figures(batch: &SpooledBatch) -> SpoolStats {
    let mut stats = SpoolStats::default();
    stats.add(batch.signal, 1, batch.items, batch.body.len() as u64);
    stats
}

impl Actor for Exporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.transport.is_none() {
            match Transport::new(&self.config) {
                Ok(transport) => self.transport = Some(transport),
                Err(err) => {
                    // Settings were validated; reaching this is a bug, and exports cannot run.
                    tracing::error!(error = %err, "cannot build the OTLP transport; exports are disabled");
                    self.last_error = Some(crate::redact::redact(&err.to_string()).into_owned());
                }
            }
        }
        ctx.run_interval(SPOOL_REFRESH_INTERVAL, |act, ctx| {
            guarded(ActorKind::Exporter, act, ctx, |act, ctx| {
                if !act.spool.ops.iter().any(|op| matches!(op, SpoolOp::Refresh)) {
                    act.spool.ops.push_back(SpoolOp::Refresh);
                }
                act.run_spool_ops(ctx);
            });
        });
        self.pump(ctx);
    }
}

impl Supervised for Exporter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.metrics.restarts(ActorKind::Exporter).inc();
        // Exports in flight died with the old context; send fresh ones again first. Replayed
        // batches stay in the spool and come back when their lease ends.
        for (_, flight) in std::mem::take(&mut self.in_flight).into_iter().rev() {
            if let Flight::Fresh(mut pending) = flight {
                pending.not_before = None;
                self.pending.push_front(pending);
            }
        }
        self.retry_timer = None;
        self.spool.wake_timer = None;
        self.spool.ready.clear();
        self.spool.claiming = false;
        if let Some(op) = self.spool.current.take() {
            if !matches!(op, SpoolOp::Claim(_)) {
                self.spool.ops.push_front(op);
            }
        }
    }
}

impl Handler<ExportBatch> for Exporter {
    type Result = ();

    fn handle(&mut self, batch: ExportBatch, ctx: &mut Context<Self>) {
        guarded(ActorKind::Exporter, self, ctx, |act, ctx| {
            act.enqueue(batch);
            act.pump(ctx);
        });
    }
}

impl Handler<AttachSpool> for Exporter {
    type Result = ();

    fn handle(&mut self, attach: AttachSpool, ctx: &mut Context<Self>) {
        guarded(ActorKind::Exporter, self, ctx, |act, ctx| {
            tracing::info!(backend = attach.0.kind(), "durable spool attached");
            act.spool.durable = Some(attach.0);
            act.spool.durable_ok = true;
            act.spool.ops.push_back(SpoolOp::Refresh);
            act.pump(ctx);
        });
    }
}

impl Handler<Drain> for Exporter {
    type Result = ResponseFuture<DrainReport>;

    fn handle(&mut self, drain: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.waiters.push(Waiter { deadline: drain.deadline, give_up: drain.give_up, reply });
        if drain.give_up {
            let cap = Instant::now() + DRAIN_RETRY_CAP;
            for pending in &mut self.pending {
                pending.not_before = pending.not_before.map(|t| t.min(cap));
            }
        }
        guarded(ActorKind::Exporter, self, ctx, |act, ctx| act.pump(ctx));
        self.answer_waiters();
        let wait = drain.deadline.saturating_duration_since(Instant::now());
        ctx.run_later(wait, |act, _ctx| act.answer_waiters());
        if drain.give_up {
            ctx.run_later(wait + SPOOL_SHUTDOWN_GRACE, |act, _ctx| act.answer_waiters());
        }
        Box::pin(async move { answer.await.unwrap_or_default() })
    }
}

impl Handler<GetStatus> for Exporter {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<InjectPanic> for Exporter {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guarded(ActorKind::Exporter, self, ctx, |_, _| panic!("injected fault in the exporter"));
    }
}
