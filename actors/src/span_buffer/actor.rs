//! The span buffer actor.

use actix::prelude::*;
use crossbeam_channel::Receiver;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::trace::SpanData;
use std::sync::Arc;

use super::config::SpanBufferConfig;
use super::messages::{Flush, FlushError, GetStatus, Shutdown, SpanBufferStatus};
use crate::exporter::{Drain, DrainReport, ExportBatch, Exporter};
use crate::ingress::{estimated_size, QueueBytes, Wake};
use crate::otlp::TraceEncoder;
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
        Self { config, rx, bytes, wake, exporter, encoder, metrics, batch, batches_sent: 0 }
    }

    /// The buffer with `limits.max_attribute_value_length` applied to every batch.
    pub fn with_span_limits(mut self, limits: &super::limits::SpanLimitsConfig) -> Self {
        self.encoder = self.encoder.with_max_value_length(limits.max_attribute_value_length);
        self
    }

    /// Moves spans from the channel into batches; full batches leave at once. With `all`, the
    /// partial batch at the end leaves too.
    fn drain(&mut self, all: bool) {
        loop {
            let mut taken = 0;
            while self.batch.len() < self.config.max_batch_size {
                match self.rx.try_recv() {
                    Ok(span) => {
                        taken += estimated_size(&span);
                        self.batch.push(span);
                    }
                    Err(_) => break,
                }
            }
            self.bytes.release(taken);
            if self.batch.len() >= self.config.max_batch_size {
                self.send_batch();
            } else {
                break;
            }
        }
        if all && !self.batch.is_empty() {
            self.send_batch();
        }
    }

    /// Encodes the batch straight to the request's bytes (the value length limit applied on the
    /// way) and hands it to the exporter; the batch's vector is kept for the next one.
    fn send_batch(&mut self) {
        let encoded = self.encoder.encode(&self.batch);
        super::limits::count(&encoded.limits, &self.metrics);
        let items = self.batch.len() as u64;
        self.batch.clear();
        self.batches_sent += 1;
        self.exporter.do_send(ExportBatch { signal: Signal::Traces, items, body: encoded.body.into() });
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
        guarded(ActorKind::SpanBuffer, self, ctx, |act, _| act.drain(true));
        let drained = self.exporter.send(Drain { deadline: flush.deadline, give_up: false });
        Box::pin(async move {
            match drained.await {
                Ok(DrainReport { batches_left: 0, .. }) => Ok(()),
                Ok(DrainReport { batches_left, items_left }) => Err(FlushError::Timeout { batches_left, items_left }),
                Err(err) => Err(FlushError::ExporterGone(err.to_string())),
            }
        })
    }
}

impl Handler<Shutdown> for SpanBuffer {
    type Result = ResponseFuture<DrainReport>;

    fn handle(&mut self, shutdown: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        guarded(ActorKind::SpanBuffer, self, ctx, |act, _| act.drain(true));
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
        })
    }
}

impl Handler<InjectPanic> for SpanBuffer {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guarded(ActorKind::SpanBuffer, self, ctx, |_, _| injected_fault("injected fault in the span buffer"));
    }
}
