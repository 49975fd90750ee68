//! The exporter actor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures_util::FutureExt as _;
use tokio::sync::oneshot;

use super::config::ExporterConfig;
use super::messages::{Drain, DrainReport, ExportBatch, ExporterStatus, GetStatus};
use super::retry::backoff;
use super::transport::{Outcome, Transport};
use crate::self_metrics::{ActorKind, DropReason, FailureKind, SelfMetrics};
use crate::supervision::{guarded, panic_message, InjectPanic};

/// Longest pause between retries while shutting down: the deadline matters more than politeness.
const DRAIN_RETRY_CAP: Duration = Duration::from_millis(200);
/// Minimum interval between two log lines about permanent failures.
const PERMANENT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A batch waiting for an export slot or for its retry time.
#[derive(Debug)]
struct Pending {
    batch: ExportBatch,
    retries: u32,
    first_attempt: Option<Instant>,
    not_before: Option<Instant>,
}

/// A caller waiting for the exporter to run dry.
#[derive(Debug)]
struct Waiter {
    deadline: Instant,
    give_up: bool,
    reply: oneshot::Sender<DrainReport>,
}

/// Sends OTLP batches to the collector.
pub struct Exporter {
    config: ExporterConfig,
    transport: Option<Transport>,
    metrics: Arc<SelfMetrics>,
    pending: VecDeque<Pending>,
    in_flight: Vec<(u64, ExportBatch)>,
    next_flight_id: u64,
    reachable: bool,
    unreachable_since: Option<Instant>,
    consecutive_failures: u32,
    last_error: Option<String>,
    last_permanent_log: Option<Instant>,
    retry_timer: Option<(Instant, SpawnHandle)>,
    waiters: Vec<Waiter>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("pending", &self.pending.len())
            .field("in_flight", &self.in_flight.len())
            .field("reachable", &self.reachable)
            .finish()
    }
}

impl Exporter {
    /// A new exporter; the transport is built once the actor runs on its arbiter.
    pub fn new(config: ExporterConfig, metrics: Arc<SelfMetrics>) -> Self {
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
        }
    }

    fn draining(&self) -> bool {
        self.waiters.iter().any(|w| w.give_up)
    }

    fn enqueue(&mut self, batch: ExportBatch) {
        self.metrics.batch_size(batch.signal).observe(batch.items as f64);
        while self.pending.len() >= self.config.max_pending_batches {
            let Some(oldest) = self.pending.pop_front() else { break };
            self.drop_batch(&oldest.batch, DropReason::QueueFull);
        }
        self.pending.push_back(Pending { batch, retries: 0, first_attempt: None, not_before: None });
    }

    fn drop_batch(&self, batch: &ExportBatch, reason: DropReason) {
        self.metrics.dropped(batch.signal, reason).inc_by(batch.items);
    }

    /// Starts every export that may start now and arms the timer for the next retry.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let Some(transport) = self.transport.clone() else { return };
        let draining = self.draining();
        while self.in_flight.len() < self.config.max_concurrent_exports {
            let now = Instant::now();
            let Some(index) = self.pending.iter().position(|p| p.not_before.is_none_or(|t| t <= now)) else {
                break;
            };
            let Some(mut pending) = self.pending.remove(index) else { break };
            pending.first_attempt.get_or_insert(now);
            let id = self.next_flight_id;
            self.next_flight_id += 1;
            self.in_flight.push((id, pending.batch.clone()));
            let send = transport.clone().send(pending.batch.signal, pending.batch.body.clone(), self.config.timeout);
            let contained = std::panic::AssertUnwindSafe(send).catch_unwind().map(|result| {
                result.unwrap_or_else(|payload| Outcome::Retryable {
                    reason: format!("export panicked: {}", panic_message(payload.as_ref())),
                    retry_after: None,
                })
            });
            ctx.spawn(contained.into_actor(self).map(move |outcome, act, ctx| {
                let elapsed = now.elapsed();
                guarded(ActorKind::Exporter, act, ctx, |act, ctx| {
                    act.finish(id, pending, outcome, elapsed);
                    act.pump(ctx);
                    act.answer_waiters();
                });
            }));
        }
        self.arm_retry_timer(ctx, draining);
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

    fn finish(&mut self, id: u64, mut pending: Pending, outcome: Outcome, elapsed: Duration) {
        self.in_flight.retain(|(flight, _)| *flight != id);
        let signal = pending.batch.signal;
        let items = pending.batch.items;
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
                self.mark_reachable();
            }
            Outcome::Permanent { reason } => {
                self.metrics.export_failures(signal, FailureKind::Permanent).inc();
                self.drop_batch(&pending.batch, DropReason::ExportFailedPermanent);
                self.mark_reachable();
                let quiet = self.last_permanent_log.is_some_and(|at| at.elapsed() < PERMANENT_LOG_INTERVAL);
                if !quiet {
                    self.last_permanent_log = Some(Instant::now());
                    tracing::warn!(signal = signal.as_str(), items, reason = %reason, "collector rejected an export; the batch is dropped");
                }
                self.last_error = Some(reason);
            }
            Outcome::Retryable { reason, retry_after } => {
                self.metrics.export_failures(signal, FailureKind::Retryable).inc();
                self.metrics.consecutive_failures(signal).inc();
                self.consecutive_failures += 1;
                if self.consecutive_failures >= self.config.unreachable_after {
                    self.mark_unreachable(&reason);
                }
                self.last_error = Some(reason);
                self.schedule_retry(&mut pending, retry_after);
            }
        }
    }

    fn schedule_retry(&mut self, pending: &mut Pending, hint: Option<Duration>) {
        if !self.config.retry.enabled {
            self.drop_batch(&pending.batch, DropReason::RetryExhausted);
            return;
        }
        pending.retries += 1;
        let delay = hint.unwrap_or_else(|| backoff(&self.config.retry, pending.retries, fastrand::f64()));
        let first = pending.first_attempt.unwrap_or_else(Instant::now);
        if first.elapsed() + delay > self.config.retry.max_elapsed_time {
            self.drop_batch(&pending.batch, DropReason::RetryExhausted);
            return;
        }
        let delay = if self.draining() { delay.min(DRAIN_RETRY_CAP) } else { delay };
        let retry = Pending {
            batch: pending.batch.clone(),
            retries: pending.retries,
            first_attempt: pending.first_attempt,
            not_before: Some(Instant::now() + delay),
        };
        self.pending.push_front(retry);
    }

    fn mark_unreachable(&mut self, reason: &str) {
        if self.reachable {
            self.reachable = false;
            self.unreachable_since = Some(Instant::now());
            self.metrics.collector_up().set(0);
            tracing::warn!(
                endpoint = %self.config.endpoint,
                reason = %reason,
                "OTLP collector unreachable; telemetry is kept and retried until it answers"
            );
        }
    }

    fn mark_reachable(&mut self) {
        if !self.reachable {
            let down_for = self.unreachable_since.map(|t| t.elapsed()).unwrap_or_default();
            self.reachable = true;
            self.unreachable_since = None;
            self.metrics.collector_up().set(1);
            tracing::warn!(
                endpoint = %self.config.endpoint,
                unreachable_for = %humantime::format_duration(Duration::from_secs(down_for.as_secs())),
                "OTLP collector reachable again"
            );
        }
    }

    fn left(&self) -> DrainReport {
        let pending_items: u64 = self.pending.iter().map(|p| p.batch.items).sum();
        let flight_items: u64 = self.in_flight.iter().map(|(_, batch)| batch.items).sum();
        DrainReport {
            batches_left: self.pending.len() + self.in_flight.len(),
            items_left: pending_items + flight_items,
        }
    }

    /// Answers every waiter whose condition is met: nothing left, or its deadline passed.
    fn answer_waiters(&mut self) {
        let now = Instant::now();
        let idle = self.pending.is_empty() && self.in_flight.is_empty();
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.waiters).into_iter().partition(|w| idle || w.deadline <= now);
        self.waiters = waiting;
        for waiter in done {
            let report = self.left();
            if waiter.give_up && !idle {
                for pending in std::mem::take(&mut self.pending) {
                    self.drop_batch(&pending.batch, DropReason::ShutdownTimeout);
                }
                for (_, batch) in std::mem::take(&mut self.in_flight) {
                    self.drop_batch(&batch, DropReason::ShutdownTimeout);
                }
            }
            let _ = waiter.reply.send(report);
        }
    }
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
                    self.last_error = Some(err.to_string());
                }
            }
        }
        self.pump(ctx);
    }
}

impl Supervised for Exporter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.metrics.restarts(ActorKind::Exporter).inc();
        // Exports in flight died with the old context; send them again first.
        for (_, batch) in std::mem::take(&mut self.in_flight).into_iter().rev() {
            self.pending.push_front(Pending { batch, retries: 0, first_attempt: None, not_before: None });
        }
        self.retry_timer = None;
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
        Box::pin(async move { answer.await.unwrap_or_default() })
    }
}

impl Handler<GetStatus> for Exporter {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(ExporterStatus {
            collector_reachable: self.reachable,
            pending_batches: self.pending.len(),
            pending_items: self.pending.iter().map(|p| p.batch.items).sum(),
            pending_capacity: self.config.max_pending_batches,
            in_flight: self.in_flight.len(),
            last_error: self.last_error.clone(),
            unreachable_for: self.unreachable_since.map(|t| t.elapsed()),
        })
    }
}

impl Handler<InjectPanic> for Exporter {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guarded(ActorKind::Exporter, self, ctx, |_, _| panic!("injected fault in the exporter"));
    }
}
