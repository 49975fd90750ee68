//! The log buffer actor.

use std::sync::Arc;

use actix::prelude::*;
use crossbeam_channel::Receiver;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;

use super::config::LogBufferConfig;
use super::messages::{Flush, FlushError, GetStatus, LogBufferStatus, SendBuffered};
use crate::exporter::{Drain, ExportBatch, Exporter};
use crate::ingress::{QueueBytes, Wake};
use crate::log_record::{estimated_size, LogRecord};
use crate::otlp::LogEncoder;
use crate::self_metrics::{ActorKind, SelfMetrics, Signal};
use crate::span_buffer::messages::flush_result;
use crate::supervision::{guarded, injected_fault, InjectPanic};

/// Batches log records and hands them to the [`Exporter`].
pub struct LogBuffer {
    config: LogBufferConfig,
    rx: Receiver<LogRecord>,
    bytes: Arc<QueueBytes>,
    wake: Arc<Wake>,
    exporter: Addr<Exporter>,
    encoder: LogEncoder,
    metrics: Arc<SelfMetrics>,
    batch: Vec<LogRecord>,
    batches_sent: u64,
    records_sent: u64,
}

impl std::fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBuffer").field("queued", &self.rx.len()).field("buffered", &self.batch.len()).finish()
    }
}

impl LogBuffer {
    /// A buffer draining `rx`, woken by `wake` when a batch is ready, sending to `exporter`.
    pub fn new(
        config: LogBufferConfig,
        rx: Receiver<LogRecord>,
        bytes: Arc<QueueBytes>,
        wake: Arc<Wake>,
        exporter: Addr<Exporter>,
        resource: Arc<ResourceAttributesWithSchema>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        let batch = Vec::with_capacity(config.max_batch_size);
        let encoder = LogEncoder::new(&resource);
        Self { config, rx, bytes, wake, exporter, encoder, metrics, batch, batches_sent: 0, records_sent: 0 }
    }

    /// Moves records from the channel into batches; full batches leave at once. With `all`, the
    /// partial batch at the end leaves too.
    fn drain(&mut self, all: bool) {
        loop {
            let mut taken = 0;
            while self.batch.len() < self.config.max_batch_size {
                match self.rx.try_recv() {
                    Ok(record) => {
                        taken += estimated_size(&record);
                        self.batch.push(record);
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

    /// Encodes the batch straight to the request's bytes and hands it to the exporter; the
    /// batch's vector is kept for the next one.
    fn send_batch(&mut self) {
        let body = self.encoder.encode(&self.batch);
        let items = self.batch.len() as u64;
        self.batch.clear();
        self.batches_sent += 1;
        self.records_sent += items;
        self.exporter.do_send(ExportBatch { signal: Signal::Logs, items, body: body.into() });
    }
}

impl Actor for LogBuffer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(crate::ingress::woken_stream(self.wake.clone()));
        ctx.run_interval(self.config.flush_interval, |act, ctx| {
            guarded(ActorKind::LogBuffer, act, ctx, |act, _| act.drain(true));
        });
    }
}

impl StreamHandler<()> for LogBuffer {
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        guarded(ActorKind::LogBuffer, self, ctx, |act, _| act.drain(false));
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Supervised for LogBuffer {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        crate::internal_events::InternalEvent::emit(
            crate::internal_events::ActorRestarted { actor: ActorKind::LogBuffer },
            &self.metrics,
        );
    }
}

impl Handler<Flush> for LogBuffer {
    type Result = ResponseFuture<Result<(), FlushError>>;

    fn handle(&mut self, flush: Flush, ctx: &mut Context<Self>) -> Self::Result {
        guarded(ActorKind::LogBuffer, self, ctx, |act, _| act.drain(true));
        let drained = self.exporter.send(Drain { deadline: flush.deadline, give_up: false });
        Box::pin(async move { flush_result(drained.await) })
    }
}

impl Handler<SendBuffered> for LogBuffer {
    type Result = ();

    fn handle(&mut self, _: SendBuffered, ctx: &mut Context<Self>) {
        guarded(ActorKind::LogBuffer, self, ctx, |act, _| act.drain(true));
    }
}

impl Handler<GetStatus> for LogBuffer {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(LogBufferStatus {
            queue_depth: self.rx.len(),
            queue_capacity: self.config.queue_capacity,
            buffered: self.batch.len(),
            batches_sent: self.batches_sent,
            records_sent: self.records_sent,
        })
    }
}

impl Handler<InjectPanic> for LogBuffer {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guarded(ActorKind::LogBuffer, self, ctx, |_, _| injected_fault("injected fault in the log buffer"));
    }
}
