//! Messages the span buffer answers.

use std::time::Instant;

use actix::Message;

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
