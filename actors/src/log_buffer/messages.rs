//! Messages the log buffer answers.

use std::time::Instant;

use actix::Message;

pub use crate::ingress::FlushError;

/// Sends every buffered record on and waits until the exporter has delivered it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), FlushError>")]
pub struct Flush {
    /// When to stop waiting.
    pub deadline: Instant,
}

/// Drains the channel and hands every buffered record to the exporter without waiting for the
/// export (shutdown sends this before the exporter's final drain).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SendBuffered;

/// Asks for the buffer's current state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "LogBufferStatus")]
pub struct GetStatus;

/// The buffer's state, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBufferStatus {
    /// Records waiting in the ingress channel.
    pub queue_depth: usize,
    /// Capacity of the ingress channel.
    pub queue_capacity: usize,
    /// Records drained into the current, unsent batch.
    pub buffered: usize,
    /// Batches handed to the exporter since start.
    pub batches_sent: u64,
    /// Records handed to the exporter since start.
    pub records_sent: u64,
}
