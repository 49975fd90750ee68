//! Model-based property test of the exporter's state machine, in the manner of Vector's disk
//! buffer model: random sequences of operations (batches of any signal and any size, exports
//! accepted in full or in part, retryable and permanent failures, throttling with a delay, the
//! collector going away and coming back, the database spool failing and returning, actor
//! restarts after a panic, flushes, shutdowns with a deadline followed by a new process on the
//! same database, time passing) drive the real [`ExporterState`]; this harness plays its shell,
//! its collector and its database (an in-memory spool with leases on the simulated clock), and
//! keeps the reference figures. After every step it checks:
//!
//! - per signal, in items: `recorded + duplicated == exported + dropped + spooled + in memory`,
//!   where `duplicated` is what a crash copied (an export under way that was delivered all the
//!   same, a spool write that landed though its answer was lost), `exported` is every delivery
//!   the collector accepted, `dropped` what the state machine counted, `spooled` the database's
//!   rows (less those being deleted) and the memory spool, `in memory` the queue, the exports
//!   under way and the database's write queue;
//! - no batch is delivered twice unless a crash or a shutdown left it under way;
//! - the bounds: `max_concurrent_exports`, `max_pending_batches` (+ exports under way),
//!   `max_pending_bytes` at admission, the write queue (half of `max_pending_bytes`), the memory
//!   spool, one spool call at a time, replays in flight ≤ `max(1, max_concurrent_exports - 1)`
//!   (a slot left to fresh batches) and no fresh batch left waiting while a slot is free;
//! - replay takes the oldest available row of each spool first, and starts no more batches in
//!   any window than the token bucket allows (`replay_batches_per_second`);
//! - at the end, with the collector and the database back, everything drains: every item is
//!   exported or counted dropped, and nothing is left anywhere.
//!
//! Cases: 256, or `PROPTEST_CASES`. The run prints its seed (`exporter model seed: …`);
//! `EXPORTER_MODEL_SEED=<that number> cargo test -p metamcp-telemetry-actors --lib exporter_model`
//! runs the same cases again. A failing case is also shrunk and saved to
//! `actors/proptest-regressions/exporter/state/model.txt`, which every later run replays first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use prost::bytes::Bytes;

use super::spool::{Op, Source};
use super::*;
use crate::exporter::messages::ExportBatch;
use crate::exporter::transport::Outcome;
use crate::internal_events::ExporterEvent;
use crate::self_metrics::SIGNALS;
use crate::spool::{merge_evicted, Evicted, SpoolConfig, SpoolRecord, SpoolStats, SpooledBatch, WhenFull};

mod database;
mod steps;

use database::Database;
use steps::{setup, step, How, Setup, Step, MAX_SIZE};

/// Longest a spool call takes: the database spool waits at most a second for a connection, and
/// its statements are short. (A call that outlived the lease of rows being deleted could let a
/// bound remove and count a row that was already delivered.)
const SPOOL_CALL_BOUND: Duration = Duration::from_secs(1);

fn batch_id(body: &Bytes) -> u64 {
    u64::from_le_bytes(body[..8].try_into().unwrap_or_default())
}

/// The harness: shell, collector, database and reference figures.
struct Harness {
    setup: Setup,
    now: Instant,
    unix_base: i64,
    sm: ExporterState,
    process: u32,
    database: Option<Database>,
    attached: bool,
    collector_down: bool,
    /// Exports under way: id, start, body.
    flights: Vec<(FlightId, Instant, Bytes)>,
    call: Option<(CallId, SpoolCall)>,
    call_started: Instant,
    wake: Option<Instant>,
    next_waiter: WaiterId,
    replies: HashMap<WaiterId, DrainReport>,
    next_batch: u64,
    items: HashMap<u64, (Signal, u64)>,
    recorded: [u64; SIGNALS],
    duplicated: [u64; SIGNALS],
    exported: [u64; SIGNALS],
    dropped: [u64; SIGNALS],
    /// Items a crash removed from the database without a count: evicted or expired by a spool
    /// call whose answer was lost.
    uncounted: [u64; SIGNALS],
    deliveries: HashMap<u64, u32>,
    /// Batches a crash or a shutdown left under way: they may be delivered twice.
    exposed: HashSet<u64>,
    /// Replays started while the collector was reachable, this process.
    replay_starts: Vec<Instant>,
    known_flights: HashSet<FlightId>,
}

impl Harness {
    fn new(setup: Setup) -> Self {
        let now = Instant::now();
        let sm = ExporterState::new(setup.exporter.clone(), setup.spool.clone(), now, 1_700_000_000_000, setup.seed);
        let database = setup.database.then(Database::default);
        let mut harness = Harness {
            setup,
            now,
            unix_base: 1_700_000_000_000,
            sm,
            process: 1,
            database,
            attached: false,
            collector_down: false,
            flights: Vec::new(),
            call: None,
            call_started: now,
            wake: None,
            next_waiter: 0,
            replies: HashMap::new(),
            next_batch: 0,
            items: HashMap::new(),
            recorded: [0; SIGNALS],
            duplicated: [0; SIGNALS],
            exported: [0; SIGNALS],
            dropped: [0; SIGNALS],
            uncounted: [0; SIGNALS],
            deliveries: HashMap::new(),
            exposed: HashSet::new(),
            replay_starts: Vec::new(),
            known_flights: HashSet::new(),
        };
        harness.attach();
        harness
    }

    fn attach(&mut self) {
        if self.database.is_some() {
            self.attached = true;
            self.feed(Event::SpoolAttached { backend: "sqlite" }).ok();
        }
    }

    /// Feeds an event and performs the actions, as the actor does.
    fn feed(&mut self, event: Event) -> Result<(), TestCaseError> {
        let reachable_before = self.sm.reachable;
        let claimed_before: HashSet<(Source, i64)> = self.replaying().into_iter().collect();
        let mut started: Vec<FlightId> = Vec::new();
        let mut work: std::collections::VecDeque<Action> = self.sm.handle(self.now, event).into();
        while let Some(action) = work.pop_front() {
            match action {
                Action::StartExport { id, signal, body } => {
                    prop_assert!(self.known_flights.insert(id), "flight id {id} reused");
                    prop_assert_eq!(self.items[&batch_id(&body)].0, signal);
                    started.push(id);
                    self.flights.push((id, self.now, body));
                }
                Action::CallSpool { call, op } => {
                    prop_assert!(self.call.is_none(), "two spool calls at once: {:?} and {op:?}", self.call);
                    prop_assert!(self.attached, "a spool call without a database: {op:?}");
                    if let SpoolCall::Append { max_bytes, .. } | SpoolCall::Refresh { max_bytes, .. } = &op {
                        prop_assert_eq!(*max_bytes, self.setup.spool.max_bytes);
                    }
                    self.call = Some((call, op));
                    self.call_started = self.now;
                }
                Action::WriteAtDeadline(write) => {
                    prop_assert_eq!(write.max_bytes, self.setup.spool.max_bytes);
                    let result = match self.database.as_mut() {
                        Some(db) if !db.down => {
                            for id in &write.remove {
                                db.rows.remove(id);
                            }
                            Ok(db.append(write.records, write.max_bytes, self.now))
                        }
                        _ => Err(crate::spool::SpoolError::Unavailable("connection refused".into())),
                    };
                    let mut next: std::collections::VecDeque<Action> =
                        self.sm.handle(self.now, Event::DeadlineWriteAnswered(result)).into();
                    next.extend(work);
                    work = next;
                }
                Action::Emit(event) => self.count(event),
                Action::ReplyDrain { waiter, report } => {
                    prop_assert!(self.replies.insert(waiter, report).is_none(), "drain {waiter} answered twice");
                }
                Action::ScheduleWake(at) => {
                    prop_assert!(at > self.now, "a wake-up in the past");
                    self.wake = Some(at);
                }
            }
        }
        self.check_claims(&claimed_before)?;
        self.check_starts(&started, reachable_before)?;
        self.check()
    }

    fn count(&mut self, event: ExporterEvent) {
        match event {
            ExporterEvent::Dropped(e) => self.dropped[e.signal as usize] += e.items,
            ExporterEvent::Rejected(e) => self.dropped[e.signal as usize] += e.items,
            ExporterEvent::Exported(e) => self.dropped[e.signal as usize] += e.rejected,
            _ => {}
        }
    }

    /// Checks the batches claimed by the step: each spool's oldest available first.
    fn check_claims(&self, before: &HashSet<(Source, i64)>) -> Result<(), TestCaseError> {
        let claimed: HashSet<(Source, i64)> = self.replaying().into_iter().collect();
        let removing = self.removing();
        for &(source, id) in claimed.difference(before) {
            match source {
                Source::Memory => {
                    let older = self.sm.spool.memory.iter().find(|(b, claimed)| b.id < id && !claimed);
                    prop_assert!(older.is_none(), "memory row {id} claimed before the older {older:?}");
                }
                Source::Durable => {
                    let Some(db) = &self.database else { continue };
                    let older = db.rows.values().find(|r| {
                        r.batch.id < id
                            && !Database::leased(r, self.now)
                            && !removing.contains(&r.batch.id)
                            && !claimed.contains(&(Source::Durable, r.batch.id))
                    });
                    prop_assert!(older.is_none(), "database row {id} claimed before the older {older:?}");
                }
            }
        }
        Ok(())
    }

    /// Checks the replays that just started: no more than the replay rate allows.
    fn check_starts(&mut self, started: &[FlightId], reachable_before: bool) -> Result<(), TestCaseError> {
        let replays = self.sm.in_flight.iter().filter(|f| !f.flight.is_fresh() && started.contains(&f.id)).count();
        if reachable_before && self.sm.reachable {
            self.replay_starts.extend(std::iter::repeat_n(self.now, replays));
        }
        let rate = f64::from(self.setup.spool.replay_batches_per_second);
        let slack =
            (rate.max(1.0) + self.setup.exporter.max_concurrent_exports.saturating_sub(1).max(1) as f64) as usize;
        let starts = &self.replay_starts;
        for i in 0..starts.len() {
            for j in i..starts.len() {
                let window = starts[j].duration_since(starts[i]).as_secs_f64();
                let allowed = slack as f64 + rate * window;
                prop_assert!(
                    (j - i + 1) as f64 <= allowed + 1e-9,
                    "{} replays in {window:.3} s at {rate}/s",
                    j - i + 1
                );
            }
        }
        Ok(())
    }

    /// Database rows the state machine is deleting (exported or refused for good).
    fn removing(&self) -> HashSet<i64> {
        let queued = self.sm.spool.ops.iter().chain(self.sm.spool.current.as_ref().map(|c| &c.op));
        let rows = queued.flat_map(|op| match op {
            Op::Remove(rows) => rows.clone(),
            _ => Vec::new(),
        });
        rows.chain(self.sm.spool.unremoved.iter().copied()).map(|(id, _)| id).collect()
    }

    /// Rows claimed by the state machine: waiting for a slot, or being replayed.
    fn replaying(&self) -> Vec<(Source, i64)> {
        let ready = self.sm.spool.ready.iter().map(|(s, b)| (*s, b.id));
        let flying = self.sm.in_flight.iter().filter_map(|f| match &f.flight {
            Flight::Replay(s, b) => Some((*s, b.id)),
            Flight::Fresh(_) => None,
        });
        ready.chain(flying).collect()
    }

    /// Items still held anywhere, per signal, each copy once.
    fn live(&self) -> [u64; SIGNALS] {
        let mut live = [0u64; SIGNALS];
        for p in &self.sm.pending {
            live[p.batch.signal as usize] += p.batch.items;
        }
        for f in &self.sm.in_flight {
            if let Flight::Fresh(p) = &f.flight {
                live[p.batch.signal as usize] += p.batch.items;
            }
        }
        for r in self.sm.spool.queued_appends() {
            live[r.signal as usize] += r.items;
        }
        for (b, _) in self.sm.spool.memory.iter() {
            live[b.signal as usize] += b.items;
        }
        if let Some(db) = &self.database {
            let removing = self.removing();
            for row in db.rows.values().filter(|r| !removing.contains(&r.batch.id)) {
                live[row.batch.signal as usize] += row.batch.items;
            }
        }
        live
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let live = self.live();
        for signal in Signal::ALL {
            let s = signal as usize;
            prop_assert_eq!(
                self.recorded[s] + self.duplicated[s],
                self.exported[s] + self.dropped[s] + live[s] + self.uncounted[s],
                "{:?}: recorded {} + duplicated {} != exported {} + dropped {} + spooled and in memory {} + lost count {}",
                signal,
                self.recorded[s],
                self.duplicated[s],
                self.exported[s],
                self.dropped[s],
                live[s],
                self.uncounted[s]
            );
        }
        let config = &self.setup.exporter;
        let sm = &self.sm;
        let cap = config.max_concurrent_exports;
        prop_assert!(sm.in_flight.len() <= cap, "{} exports under way, at most {cap}", sm.in_flight.len());
        let replays = sm.in_flight.iter().filter(|f| !f.flight.is_fresh()).count();
        prop_assert!(replays <= cap.saturating_sub(1).max(1), "{replays} replays take every slot of {cap}");
        if sm.in_flight.len() < cap {
            let due = sm.pending.iter().find(|p| p.not_before.is_none_or(|t| t <= self.now));
            prop_assert!(due.is_none(), "a due batch waits while a slot is free");
            prop_assert!(sm.spool.ready.is_empty(), "a claimed batch waits while a slot is free");
        }
        let fresh = sm.in_flight.iter().filter(|f| f.flight.is_fresh()).count();
        prop_assert!(
            sm.pending.len() + fresh <= config.max_pending_batches + cap,
            "{} waiting and {fresh} under way, bound {} + {cap}",
            sm.pending.len(),
            config.max_pending_batches
        );
        let queued: u64 = sm.spool.queued_appends().map(|r| r.body.len() as u64).sum();
        prop_assert!(
            queued <= config.max_pending_bytes / 2,
            "write queue {queued} B over half of {}",
            config.max_pending_bytes
        );
        let memory = sm.spool.memory_stats().bytes;
        let claimed: u64 = sm.spool.memory.iter().filter(|(_, c)| *c).map(|(b, _)| b.body.len() as u64).sum();
        prop_assert!(
            memory - claimed <= self.setup.spool.memory_max_bytes || claimed > 0,
            "memory spool holds {memory} B, bound {}",
            self.setup.spool.memory_max_bytes
        );
        prop_assert!(
            memory <= 2 * self.setup.spool.memory_max_bytes + ((cap + MAX_CLAIM) * MAX_SIZE) as u64,
            "memory spool holds {memory} B, bound {}",
            self.setup.spool.memory_max_bytes
        );
        Ok(())
    }

    /// A one-line picture of where every batch is, for `EXPORTER_MODEL_TRACE=1`.
    fn trace(&self, step: &Step) {
        if std::env::var_os("EXPORTER_MODEL_TRACE").is_none() {
            return;
        }
        let ids = |it: &mut dyn Iterator<Item = &Bytes>| it.map(batch_id).collect::<Vec<_>>();
        let sm = &self.sm;
        println!(
            "{step:?}\n  pending {:?} flying {:?} ready {:?} ops {:?} current {:?} memory {:?} db {:?} exported {:?} dropped {:?} dup {:?}",
            ids(&mut sm.pending.iter().map(|p| &p.batch.body)),
            sm.in_flight.iter().map(|f| match &f.flight {
                Flight::Fresh(p) => format!("f{}", batch_id(&p.batch.body)),
                Flight::Replay(s, b) => format!("{s:?}{}:{}", b.id, batch_id(&b.body)),
            }).collect::<Vec<_>>(),
            sm.spool.ready.iter().map(|(s, b)| format!("{s:?}{}:{}", b.id, batch_id(&b.body))).collect::<Vec<_>>(),
            sm.spool.ops,
            sm.spool.current.as_ref().map(|c| &c.op),
            sm.spool.memory.iter().map(|(b, c)| format!("{}:{}{}", b.id, batch_id(&b.body), if c { "*" } else { "" })).collect::<Vec<_>>(),
            self.database.as_ref().map(|db| db.rows.values().map(|r| format!("{}:{}", r.batch.id, batch_id(&r.batch.body))).collect::<Vec<_>>()),
            self.deliveries,
            self.dropped,
            self.duplicated,
        );
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        let result = self.run_step(step.clone());
        self.trace(&step);
        if let (Err(err), Some(_)) = (&result, std::env::var_os("EXPORTER_MODEL_TRACE")) {
            println!("  FAILED: {err}");
        }
        result
    }

    fn run_step(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Batch { signal, items, size } => {
                self.next_batch += 1;
                let id = self.next_batch;
                let mut body = id.to_le_bytes().to_vec();
                body.resize(size.max(8), 0);
                self.items.insert(id, (signal, items));
                self.recorded[signal as usize] += items;
                self.feed(Event::BatchArrived(ExportBatch { signal, items, body: body.into() }))?;
                // Admission keeps the queue's bytes within the bound, unless the batch is alone.
                let sm = &self.sm;
                if sm.pending.back().is_some_and(|p| batch_id(&p.batch.body) == id) && sm.pending.len() > 1 {
                    prop_assert!(
                        sm.queue_bytes() <= self.setup.exporter.max_pending_bytes,
                        "queue holds {} B, bound {}",
                        sm.queue_bytes(),
                        self.setup.exporter.max_pending_bytes
                    );
                }
            }
            Step::Advance(ms) => self.advance(Duration::from_millis(ms))?,
            Step::Finish { pick, how } => {
                if self.flights.is_empty() {
                    return Ok(());
                }
                let (id, _, body) = self.flights.remove(pick % self.flights.len());
                let outcome = if self.collector_down {
                    Outcome::Retryable { reason: "connection refused".into(), retry_after: None }
                } else {
                    match how {
                        How::Accept => Outcome::Accepted { rejected: 0 },
                        How::Partial(n) => Outcome::Accepted { rejected: n },
                        How::Retryable => Outcome::Retryable { reason: "unavailable".into(), retry_after: None },
                        How::Throttle(ms) => Outcome::Retryable {
                            reason: "HTTP 429".into(),
                            retry_after: Some(Duration::from_millis(ms)),
                        },
                        How::Permanent => Outcome::Permanent { reason: "HTTP 400".into() },
                    }
                };
                if let Outcome::Accepted { rejected } = outcome {
                    self.deliver(&body, rejected)?;
                }
                self.feed(Event::ExportFinished { id, outcome })?;
            }
            Step::SpoolAnswer => self.answer_call()?,
            Step::Collector(up) => self.collector_down = !up,
            Step::Database(up) => {
                if let Some(db) = self.database.as_mut() {
                    db.down = !up;
                }
            }
            Step::Panic { deliver, apply } => {
                self.crash(deliver, apply)?;
                self.wake = None;
                self.feed(Event::Restarted)?;
            }
            Step::Flush(ms) => {
                let waiter = self.next_waiter;
                self.next_waiter += 1;
                self.feed(Event::DrainRequested {
                    waiter,
                    deadline: self.now + Duration::from_millis(ms),
                    give_up: false,
                })?;
                if let Some(report) = self.replies.get(&waiter) {
                    if *report == DrainReport::default() && self.exposed.is_empty() {
                        prop_assert_eq!(self.live(), [0; SIGNALS], "a flush answered while data was left");
                    }
                }
            }
            Step::Shutdown { after_ms, answer_call, deliver, apply } => {
                self.shutdown(Duration::from_millis(after_ms), answer_call, deliver, apply)?;
            }
        }
        Ok(())
    }

    /// The collector accepts a delivery of `body`, `rejected` items refused.
    fn deliver(&mut self, body: &Bytes, rejected: u64) -> Result<(), TestCaseError> {
        let id = batch_id(body);
        let (signal, items) = self.items[&id];
        self.exported[signal as usize] += items - rejected.min(items);
        let seen = self.deliveries.entry(id).or_insert(0);
        *seen += 1;
        prop_assert!(*seen == 1 || self.exposed.contains(&id), "batch {id} exported twice without a crash");
        Ok(())
    }

    fn answer_call(&mut self) -> Result<(), TestCaseError> {
        let Some((call, op)) = self.call.take() else { return Ok(()) };
        let (now, process) = (self.now, self.process);
        let reply = match self.database.as_mut() {
            Some(db) => db.call(op, now, process),
            None => SpoolReply::from_error(&op, crate::spool::SpoolError::Unavailable("none".into())),
        };
        self.feed(Event::SpoolAnswered { call, reply })
    }

    /// Time passes: wake-ups are delivered, and exports time out (the transport's bound).
    fn advance(&mut self, by: Duration) -> Result<(), TestCaseError> {
        let target = self.now + by;
        let timeout = self.setup.exporter.timeout;
        loop {
            let expiry = self.flights.iter().map(|(_, started, _)| *started + timeout).min();
            let call_end = self.call.as_ref().map(|_| self.call_started + SPOOL_CALL_BOUND);
            let next = [self.wake, expiry, call_end].into_iter().flatten().min().filter(|at| *at <= target);
            let Some(at) = next else { break };
            self.now = at;
            if call_end == Some(at) {
                self.answer_call()?;
            } else if expiry == Some(at) {
                let index = self.flights.iter().position(|(_, started, _)| *started + timeout == at).unwrap_or(0);
                let (id, _, _) = self.flights.remove(index);
                let outcome = Outcome::Retryable { reason: "export timed out".into(), retry_after: None };
                self.feed(Event::ExportFinished { id, outcome })?;
            } else {
                self.wake = None;
                self.feed(Event::Tick)?;
            }
        }
        self.now = target;
        Ok(())
    }

    /// What a crash does to what was under way: exports are delivered (per `deliver`) or lost;
    /// the spool call under way lands (with `apply`) or not. Either way its answer is lost.
    fn crash(&mut self, deliver: u8, apply: bool) -> Result<(), TestCaseError> {
        for (i, (_, _, body)) in std::mem::take(&mut self.flights).into_iter().enumerate() {
            let id = batch_id(&body);
            self.exposed.insert(id);
            if deliver & (1 << (i % 8)) != 0 {
                let (signal, items) = self.items[&id];
                self.duplicated[signal as usize] += items;
                self.deliver(&body, 0)?;
            }
        }
        if let Some((_, op)) = self.call.take() {
            let copied: Vec<SpoolRecord> = match &op {
                SpoolCall::Append { records, .. } => records.clone(),
                SpoolCall::Refresh { moved, .. } => moved.clone(),
                _ => Vec::new(),
            };
            for record in &copied {
                self.exposed.insert(batch_id(&record.body));
            }
            let (now, process) = (self.now, self.process);
            let removing = self.removing();
            if let Some(db) = self.database.as_mut().filter(|db| apply && !db.down) {
                db.removed.clear();
                db.call(op, now, process);
                // Rows the lost call removed by a bound: gone without a count (unless they were
                // being deleted anyway).
                for (id, signal, items) in std::mem::take(&mut db.removed) {
                    if !removing.contains(&id) {
                        self.uncounted[signal as usize] += items;
                    }
                }
                for record in copied {
                    self.duplicated[record.signal as usize] += record.items;
                }
            }
        }
        Ok(())
    }

    /// A shutdown: a drain that gives up at `after`, then a new process on the same database.
    fn shutdown(&mut self, after: Duration, answer_call: bool, deliver: u8, apply: bool) -> Result<(), TestCaseError> {
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        self.feed(Event::DrainRequested { waiter, deadline: self.now + after, give_up: true })?;
        if answer_call {
            self.answer_call()?;
        }
        for _ in 0..10_000 {
            if self.replies.contains_key(&waiter) {
                break;
            }
            let Some(at) = self.wake else { break };
            self.advance(at.saturating_duration_since(self.now))?;
        }
        prop_assert!(self.replies.contains_key(&waiter), "a shutdown drain never answered");
        // What is left in memory was written to the database or counted dropped.
        prop_assert!(self.sm.pending.is_empty() && self.sm.spool.queued_appends().next().is_none());
        prop_assert!(self.sm.in_flight.iter().all(|f| !f.flight.is_fresh()));
        prop_assert_eq!(self.sm.spool.memory.iter().count(), 0, "the memory spool outlived a shutdown");
        // The process ends: anything under way may still land; rows it was deleting come back.
        let removing = self.removing();
        self.crash(deliver, apply)?;
        if let Some(db) = &self.database {
            for row in db.rows.values().filter(|r| removing.contains(&r.batch.id)) {
                self.exposed.insert(batch_id(&row.batch.body));
                self.duplicated[row.batch.signal as usize] += row.batch.items;
            }
        }
        self.check_nothing_left_in_memory()?;
        self.process += 1;
        self.now += Duration::from_millis(100);
        self.sm = ExporterState::new(
            self.setup.exporter.clone(),
            self.setup.spool.clone(),
            self.now,
            self.unix_ms(),
            self.setup.seed.wrapping_add(u64::from(self.process)),
        );
        self.wake = None;
        self.replay_starts.clear();
        self.known_flights.clear();
        self.attached = false;
        self.attach();
        self.check()
    }

    fn unix_ms(&self) -> i64 {
        self.sm.unix_ms(self.now).max(self.unix_base)
    }

    /// After a shutdown: only database rows (and replays of them) remain.
    fn check_nothing_left_in_memory(&self) -> Result<(), TestCaseError> {
        prop_assert!(self.flights.is_empty());
        Ok(())
    }

    /// With the collector and the database back, everything drains.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        self.collector_down = false;
        if let Some(db) = self.database.as_mut() {
            db.down = false;
        }
        for _ in 0..20_000 {
            if self.call.is_some() {
                let result = self.answer_call();
                self.trace(&Step::SpoolAnswer);
                result?;
                continue;
            }
            if let Some((id, _, body)) = self.flights.first().cloned() {
                self.flights.remove(0);
                self.deliver(&body, 0)?;
                let result = self.feed(Event::ExportFinished { id, outcome: Outcome::Accepted { rejected: 0 } });
                self.trace(&Step::Finish { pick: 0, how: How::Accept });
                result?;
                continue;
            }
            if self.live() == [0; SIGNALS] {
                break;
            }
            match self.wake {
                Some(at) => self.advance(at.saturating_duration_since(self.now))?,
                None => prop_assert!(false, "stalled with {:?} left and no wake-up asked for", self.live()),
            }
        }
        prop_assert_eq!(self.live(), [0; SIGNALS], "nothing drains");
        for signal in Signal::ALL {
            let s = signal as usize;
            prop_assert_eq!(
                self.recorded[s] + self.duplicated[s],
                self.exported[s] + self.dropped[s] + self.uncounted[s]
            );
        }
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

#[test]
fn exporter_model() {
    let seed = std::env::var("EXPORTER_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("exporter model seed: {seed} (EXPORTER_MODEL_SEED={seed} replays this run), {} cases", cases());
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        source_file: Some(file!()),
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let strategy = (setup(), prop::collection::vec(step(), 1..300));
    let result = runner.run(&strategy, |(setup, steps)| {
        if std::env::var_os("EXPORTER_MODEL_TRACE").is_some() {
            println!("=== case {setup:?}");
        }
        let mut harness = Harness::new(setup);
        for step in steps {
            harness.run(step)?;
        }
        harness.settle()
    });
    if let Err(err) = result {
        panic!("exporter model failed (seed {seed}): {err}");
    }
}
