//! Messages the span buffer answers.

use std::time::Instant;

use actix::Message;

use super::tail::TailStatus;
use crate::exporter::DrainReport;
pub use crate::ingress::FlushError;

/// Sends every buffered span on and waits until the exporter has delivered it (`force_flush`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), FlushError>")]
pub struct Flush {
    /// When to stop waiting.
    pub deadline: Instant,
}

/// Drains the channel, exports what is buffered and drops what cannot be exported by `deadline`.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "DrainReport")]
pub struct Shutdown {
    /// When to give up.
    pub deadline: Instant,
}

/// Asks for the buffer's current state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "SpanBufferStatus")]
pub struct GetStatus;

/// What tail sampling holds and decided, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingStatus {
    /// Traces and spans waiting for their local root.
    pub pending: TailStatus,
    /// Traces decided since start, by reason in [`Reason::ALL`](crate::sampling::Reason::ALL) order.
    pub decisions: [u64; 5],
    /// Spans not exported because their trace was dropped, since start.
    pub sampled_out_spans: u64,
}

/// The buffer's state, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanBufferStatus {
    /// Spans waiting in the ingress channel.
    pub queue_depth: usize,
    /// Capacity of the ingress channel.
    pub queue_capacity: usize,
    /// Spans drained into the current, unsent batch.
    pub buffered: usize,
    /// Batches handed to the exporter since start.
    pub batches_sent: u64,
    /// Tail sampling's figures; `None` under head sampling.
    pub sampling: Option<SamplingStatus>,
}

impl SpanBufferStatus {
    /// The `sampling` figures of the span buffer in `/health`: the mode, and under tail sampling
    /// what waits for its root and how many traces were kept and dropped, by reason.
    pub fn sampling_details(&self) -> serde_json::Value {
        use crate::sampling::{Reason, SamplingMode};
        let Some(tail) = &self.sampling else {
            return serde_json::json!({ "mode": SamplingMode::Head.as_str() });
        };
        let by_reason = |kept: bool| {
            Reason::ALL
                .iter()
                .filter(|reason| reason.keeps() == kept)
                .map(|reason| (reason.as_str().to_owned(), tail.decisions[reason.index()].into()))
                .collect::<serde_json::Map<String, serde_json::Value>>()
        };
        serde_json::json!({
            "mode": SamplingMode::Tail.as_str(),
            "pending_traces": tail.pending.pending_traces,
            "pending_spans": tail.pending.pending_spans,
            "pending_bytes": tail.pending.pending_bytes,
            "remembered_decisions": tail.pending.remembered,
            "kept": by_reason(true),
            "dropped": by_reason(false),
            "sampled_out_spans": tail.sampled_out_spans,
        })
    }
}

/// What a buffer's [`Flush`] answers once it has asked the exporter to drain: done when nothing
/// was left, a timeout naming what was, or the exporter gone. Shared by the span and log buffers.
pub(crate) fn flush_result(drained: Result<DrainReport, actix::MailboxError>) -> Result<(), FlushError> {
    match drained {
        Ok(DrainReport { batches_left: 0, .. }) => Ok(()),
        Ok(DrainReport { batches_left, items_left }) => Err(FlushError::Timeout { batches_left, items_left }),
        Err(err) => Err(FlushError::ExporterGone(err.to_string())),
    }
}
