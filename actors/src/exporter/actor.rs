//! The exporter actor: a thin shell around [`ExporterState`]. It turns messages, finished
//! exports, spool answers and timers into [`Event`]s with the time they happened, and performs
//! the [`Action`]s that come back: exports on the transport, spool calls on the runtime's
//! blocking pool (one at a time, never on the actor's thread, except the last write at a
//! shutdown deadline), self-metrics and logs through the typed internal events, drain answers,
//! and one timer for the next wake-up.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures_util::FutureExt as _;
use tokio::sync::oneshot;

use super::config::ExporterConfig;
use super::messages::{AttachSpool, Drain, DrainReport, ExportBatch, GetStatus};
use super::spool_io::execute;
use super::state::{Action, Event, ExporterState, WaiterId};
use super::transport::{Outcome, Transport};
use crate::internal_events::{ActorRestarted, InternalEvent, SpoolCallPanicked, TransportUnavailable};
use crate::self_metrics::{ActorKind, SelfMetrics, Signal};
use crate::spool::{unix_millis_now, Spool, SpoolConfig, SpoolError};
use crate::supervision::{guarded, injected_fault, panic_message, InjectPanic};

/// Sends OTLP batches to the collector, spooling what it cannot send.
pub struct Exporter {
    state: ExporterState,
    transport: Option<Transport>,
    durable: Option<Arc<dyn Spool>>,
    metrics: Arc<SelfMetrics>,
    replies: HashMap<WaiterId, oneshot::Sender<DrainReport>>,
    next_waiter: WaiterId,
    wake: Option<SpawnHandle>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("state", &self.state).finish_non_exhaustive()
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
        let state = ExporterState::new(config, spool, Instant::now(), unix_millis_now(), fastrand::u64(..));
        Self { state, transport: None, durable: None, metrics, replies: HashMap::new(), next_waiter: 0, wake: None }
    }

    /// Feeds `event` to the state machine and performs what it asks for.
    fn step(&mut self, ctx: &mut Context<Self>, event: Event) {
        let mut work: VecDeque<Action> = self.state.handle(Instant::now(), event).into();
        while let Some(action) = work.pop_front() {
            if let Some(event) = self.perform(ctx, action) {
                // The answer of a blocking write comes before anything else.
                let mut next: VecDeque<Action> = self.state.handle(Instant::now(), event).into();
                next.extend(work);
                work = next;
            }
        }
        self.publish();
    }

    /// Performs one action; returns the event that answers it at once, if any.
    fn perform(&mut self, ctx: &mut Context<Self>, action: Action) -> Option<Event> {
        match action {
            Action::StartExport { id, signal, body } => {
                let Some(transport) = self.transport.clone() else {
                    let outcome = Outcome::Retryable { reason: "no OTLP transport".into(), retry_after: None };
                    return Some(Event::ExportFinished { id, outcome });
                };
                let send = transport.send(signal, body, self.state.config().timeout);
                let contained = std::panic::AssertUnwindSafe(send).catch_unwind().map(|result| {
                    result.unwrap_or_else(|payload| Outcome::Retryable {
                        reason: format!("export panicked: {}", panic_message(payload.as_ref())),
                        retry_after: None,
                    })
                });
                ctx.spawn(contained.into_actor(self).map(move |outcome, act, ctx| {
                    guarded(ActorKind::Exporter, act, ctx, |act, ctx| {
                        act.step(ctx, Event::ExportFinished { id, outcome: outcome.redacted() });
                    });
                }));
                None
            }
            Action::CallSpool { call, op } => {
                let Some(spool) = self.durable.clone() else {
                    let reply = super::state::SpoolReply::from_error(
                        &op,
                        SpoolError::Unavailable("no durable spool attached".into()),
                    );
                    return Some(Event::SpoolAnswered { call, reply });
                };
                let task = actix_rt::task::spawn_blocking(move || execute(spool.as_ref(), op));
                ctx.spawn(task.into_actor(self).map(move |result, act, ctx| {
                    guarded(ActorKind::Exporter, act, ctx, |act, ctx| match result {
                        Ok(reply) => act.step(ctx, Event::SpoolAnswered { call, reply }),
                        Err(err) => {
                            SpoolCallPanicked { error: err.to_string() }.emit(&act.metrics);
                            act.step(ctx, Event::SpoolCallLost { call });
                        }
                    });
                }));
                None
            }
            Action::WriteAtDeadline(write) => {
                // The exporter is about to stop: this one write blocks its thread.
                let result = match &self.durable {
                    Some(spool) => {
                        spool.remove(&write.remove).and_then(|()| spool.append(write.records, write.max_bytes))
                    }
                    None => Err(SpoolError::Unavailable("no durable spool attached".into())),
                };
                Some(Event::DeadlineWriteAnswered(result))
            }
            Action::Emit(event) => {
                event.emit(&self.metrics);
                None
            }
            Action::ReplyDrain { waiter, report } => {
                if let Some(reply) = self.replies.remove(&waiter) {
                    let _ = reply.send(report);
                }
                None
            }
            Action::ScheduleWake(at) => {
                if let Some(handle) = self.wake.take() {
                    ctx.cancel_future(handle);
                }
                let handle = ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
                    act.wake = None;
                    guarded(ActorKind::Exporter, act, ctx, |act, ctx| act.step(ctx, Event::Tick));
                });
                self.wake = Some(handle);
                None
            }
        }
    }

    /// Sets the spool and memory gauges from the state.
    fn publish(&self) {
        let gauges = self.metrics.spool();
        let total = self.state.spool_stats();
        gauges.bytes.set(i64::try_from(total.bytes).unwrap_or(i64::MAX));
        gauges.batches.set(i64::try_from(total.batches).unwrap_or(i64::MAX));
        for signal in Signal::ALL {
            gauges.items[signal as usize].set(i64::try_from(total.items_of(signal)).unwrap_or(i64::MAX));
        }
        gauges.fallback.set(i64::from(self.state.spool_fallback()));
        gauges.buffered_bytes.set(i64::try_from(self.state.held_bytes()).unwrap_or(i64::MAX));
    }
}

impl Actor for Exporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.transport.is_none() {
            match Transport::new(self.state.config()) {
                Ok(transport) => self.transport = Some(transport),
                Err(err) => {
                    // Settings were validated; reaching this is a bug, and exports cannot run.
                    let error = crate::redact::redact(&err.to_string()).into_owned();
                    TransportUnavailable { error: error.clone() }.emit(&self.metrics);
                    let event = Event::TransportUnavailable { reason: error };
                    guarded(ActorKind::Exporter, self, ctx, |act, ctx| act.step(ctx, event));
                }
            }
        }
        guarded(ActorKind::Exporter, self, ctx, |act, ctx| act.step(ctx, Event::Tick));
    }
}

impl Supervised for Exporter {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        ActorRestarted { actor: ActorKind::Exporter }.emit(&self.metrics);
        // The old context's timers and futures are gone; `started` arms a new wake-up.
        self.wake = None;
        guarded(ActorKind::Exporter, self, ctx, |act, ctx| act.step(ctx, Event::Restarted));
    }
}

impl Handler<ExportBatch> for Exporter {
    type Result = ();

    fn handle(&mut self, batch: ExportBatch, ctx: &mut Context<Self>) {
        guarded(ActorKind::Exporter, self, ctx, |act, ctx| act.step(ctx, Event::BatchArrived(batch)));
    }
}

impl Handler<AttachSpool> for Exporter {
    type Result = ();

    fn handle(&mut self, attach: AttachSpool, ctx: &mut Context<Self>) {
        guarded(ActorKind::Exporter, self, ctx, |act, ctx| {
            let backend = attach.0.kind();
            act.durable = Some(attach.0);
            act.step(ctx, Event::SpoolAttached { backend });
        });
    }
}

impl Handler<Drain> for Exporter {
    type Result = ResponseFuture<DrainReport>;

    fn handle(&mut self, drain: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        self.replies.insert(waiter, reply);
        let event = Event::DrainRequested { waiter, deadline: drain.deadline, give_up: drain.give_up };
        guarded(ActorKind::Exporter, self, ctx, |act, ctx| act.step(ctx, event));
        Box::pin(async move { answer.await.unwrap_or_default() })
    }
}

impl Handler<GetStatus> for Exporter {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.status(Instant::now()))
    }
}

impl Handler<InjectPanic> for Exporter {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guarded(ActorKind::Exporter, self, ctx, |_, _| injected_fault("injected fault in the exporter"));
    }
}
