//! The span buffer actor.

use actix::prelude::*;
use crossbeam_channel::Receiver;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::trace::SpanData;
use std::sync::Arc;
use std::time::Instant;

use super::config::SpanBufferConfig;
use super::messages::{flush_result, Flush, FlushError, GetStatus, SamplingStatus, Shutdown, SpanBufferStatus};
use super::tail::{Actions, Decision, TailSampler};
use crate::exporter::{Drain, DrainReport, ExportBatch, Exporter};
use crate::ingress::{estimated_size, QueueBytes, Wake};
use crate::otlp::TraceEncoder;
use crate::sampling::{Reason, SamplingConfig, SamplingMetrics, TraceDecisions};
use crate::self_metrics::{ActorKind, SelfMetrics, Signal};
use crate::supervision::{guarded, injected_fault, InjectPanic};

/// Batches finished spans and hands them to the [`Exporter`].
pub struct SpanBuffer {
    config: SpanBufferConfig,
    rx: Receiver<SpanData>,
    bytes: Arc<QueueBytes>,
    wake: Arc<Wake>,
    exporter: Addr<Exporter>,
    /// Encodes batches for the resource, with the value length limit.
    encoder: TraceEncoder,
    metrics: Arc<SelfMetrics>,
    batch: Vec<SpanData>,
    batches_sent: u64,
    /// Tail sampling, when `sampling.mode = "tail"`; `None` exports every span.
    tail: Option<Box<Tail>>,
}

/// Tail sampling in the span buffer: the decisions and the handles their effects go to.
struct Tail {
    sampler: TailSampler<SpanData>,
    metrics: Arc<SamplingMetrics>,
    kept: Arc<TraceDecisions>,
    decided: Vec<Decision>,
}

impl Tail {
    /// Runs `step` on the sampler with the batch as the export target, then counts what it
    /// decided and records the kept traces.
    fn step(
        &mut self,
        batch: &mut Vec<SpanData>,
        step: impl FnOnce(&mut TailSampler<SpanData>, &mut Actions<'_, SpanData>),
    ) {
        let mut sampled_out = 0;
        step(
            &mut self.sampler,
            &mut Actions { export: batch, decisions: &mut self.decided, sampled_out: &mut sampled_out },
        );
        if sampled_out > 0 {
            self.metrics.sampled_out(sampled_out);
        }
        for decision in self.decided.drain(..) {
            self.metrics.decided(decision.reason);
            if decision.reason.keeps() {
                self.kept.record_kept(decision.trace_id);
            }
        }
    }
}

impl std::fmt::Debug for SpanBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanBuffer").field("queued", &self.rx.len()).field("buffered", &self.batch.len()).finish()
    }
}

impl SpanBuffer {
    /// A buffer draining `rx`, woken by `wake` when a batch is ready, sending to `exporter`.
    pub fn new(
        config: SpanBufferConfig,
        rx: Receiver<SpanData>,
        bytes: Arc<QueueBytes>,
        wake: Arc<Wake>,
        exporter: Addr<Exporter>,
        resource: Arc<ResourceAttributesWithSchema>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        let batch = Vec::with_capacity(config.max_batch_size);
        let encoder =
            TraceEncoder::new(&resource).with_max_value_length(super::limits::DEFAULT_MAX_ATTRIBUTE_VALUE_LENGTH);
        Self { config, rx, bytes, wake, exporter, encoder, metrics, batch, batches_sent: 0, tail: None }
    }

    /// The buffer deciding which traces leave when their local root ends (`sampling.mode =
    /// "tail"`), counting decisions in `metrics` and recording kept traces in `kept`. In head
    /// mode it is left as it is.
    pub fn with_sampling(
        mut self,
        config: &SamplingConfig,
        metrics: Arc<SamplingMetrics>,
        kept: Arc<TraceDecisions>,
    ) -> Self {
        self.tail = config
            .is_tail()
            .then(|| Box::new(Tail { sampler: TailSampler::new(config), metrics, kept, decided: Vec::new() }));
        self
    }

    /// The buffer with `limits.max_attribute_value_length` applied to every batch.
    pub fn with_span_limits(mut self, limits: &super::limits::SpanLimitsConfig) -> Self {
        self.encoder = self.encoder.with_max_value_length(limits.max_attribute_value_length);
        self
    }

    /// Moves spans from the channel into batches (through the tail sampler in tail mode); full
    /// batches leave at once. With `all`, traces that waited too long are decided and the
    /// partial batch at the end leaves too.
    fn drain(&mut self, all: bool) {
        let now = Instant::now();
        loop {
            let mut taken = 0;
            while self.batch.len() < self.config.max_batch_size {
                match self.rx.try_recv() {
                    Ok(span) => {
                        let size = estimated_size(&span);
                        taken += size;
                        match self.tail.as_deref_mut() {
                            None => self.batch.push(span),
                            Some(tail) => {
                                tail.step(&mut self.batch, |sampler, actions| sampler.offer(span, size, now, actions))
                            }
                        }
                    }
                    Err(_) => break,
                }
            }
            self.bytes.release(taken);
            if self.batch.len() >= self.config.max_batch_size {
                self.send_full_batches();
            } else {
                break;
            }
        }
        if all {
            if let Some(tail) = self.tail.as_deref_mut() {
                tail.step(&mut self.batch, |sampler, actions| sampler.expire(now, actions));
                self.send_full_batches();
            }
            if !self.batch.is_empty() {
                self.send_batch();
            }
        }
    }

    /// Drains everything, then keeps every trace still waiting for its root (a flush or
    /// shutdown loses nothing) and sends it all.
    fn drain_everything(&mut self) {
        self.drain(true);
        if let Some(tail) = self.tail.as_deref_mut() {
            tail.step(&mut self.batch, |sampler, actions| sampler.flush(actions));
            while !self.batch.is_empty() {
                self.send_batch();
            }
        }
    }

    fn send_full_batches(&mut self) {
        while self.batch.len() >= self.config.max_batch_size {
            self.send_batch();
        }
    }

    /// Encodes up to a batch's worth of spans straight to the request's bytes (the value length
    /// limit applied on the way) and hands it to the exporter; the batch's vector is kept for the
    /// next one.
    fn send_batch(&mut self) {
        let count = self.batch.len().min(self.config.max_batch_size);
        let encoded = self.encoder.encode(&self.batch[..count]);
        super::limits::count(&encoded.limits, &self.metrics);
        self.batch.drain(..count);
        self.batches_sent += 1;
        self.exporter.do_send(ExportBatch { signal: Signal::Traces, items: count as u64, body: encoded.body.into() });
    }

    fn sampling_status(&self) -> Option<SamplingStatus> {
        self.tail.as_deref().map(|tail| SamplingStatus {
            pending: tail.sampler.status(),
            decisions: Reason::ALL.map(|reason| tail.metrics.decisions(reason)),
            sampled_out_spans: tail.metrics.sampled_out_spans(),
        })
    }
}

impl Actor for SpanBuffer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(crate::ingress::woken_stream(self.wake.clone()));
        ctx.run_interval(self.config.flush_interval, |act, ctx| {
            guarded(ActorKind::SpanBuffer, act, ctx, |act, _| act.drain(true));
        });
    }
}

impl StreamHandler<()> for SpanBuffer {
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        guarded(ActorKind::SpanBuffer, self, ctx, |act, _| act.drain(false));
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Supervised for SpanBuffer {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        crate::internal_events::InternalEvent::emit(
            crate::internal_events::ActorRestarted { actor: ActorKind::SpanBuffer },
            &self.metrics,
        );
    }
}

impl Handler<Flush> for SpanBuffer {
    type Result = ResponseFuture<Result<(), FlushError>>;

    fn handle(&mut self, flush: Flush, ctx: &mut Context<Self>) -> Self::Result {
        guarded(ActorKind::SpanBuffer, self, ctx, |act, _| act.drain_everything());
        let drained = self.exporter.send(Drain { deadline: flush.deadline, give_up: false });
        Box::pin(async move { flush_result(drained.await) })
    }
}

impl Handler<Shutdown> for SpanBuffer {
    type Result = ResponseFuture<DrainReport>;

    fn handle(&mut self, shutdown: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        guarded(ActorKind::SpanBuffer, self, ctx, |act, _| act.drain_everything());
        let drained = self.exporter.send(Drain { deadline: shutdown.deadline, give_up: true });
        Box::pin(async move { drained.await.unwrap_or_default() })
    }
}

impl Handler<GetStatus> for SpanBuffer {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(SpanBufferStatus {
            queue_depth: self.rx.len(),
            queue_capacity: self.config.queue_capacity,
            buffered: self.batch.len(),
            batches_sent: self.batches_sent,
            sampling: self.sampling_status(),
        })
    }
}

impl Handler<InjectPanic> for SpanBuffer {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guarded(ActorKind::SpanBuffer, self, ctx, |_, _| injected_fault("injected fault in the span buffer"));
    }
}
