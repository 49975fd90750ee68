//! Messages the span buffer answers.

use std::time::Instant;

use actix::Message;

use crate::exporter::DrainReport;

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

/// A flush that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// The deadline passed with data still waiting.
    #[error("flush timed out with {items_left} items in {batches_left} batches still waiting")]
    Timeout {
        /// Batches still waiting.
        batches_left: usize,
        /// Items in them.
        items_left: u64,
    },
    /// The exporter did not answer.
    #[error("the exporter is gone: {0}")]
    ExporterGone(String),
    /// The span buffer's thread is gone (the pipeline shut down).
    #[error("the arbiter is gone")]
    ArbiterGone,
    /// No answer came within the flush's timeout.
    #[error("force_flush timed out")]
    NoAnswer,
}

/// Asks for the buffer's current state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "SpanBufferStatus")]
pub struct GetStatus;

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
}
