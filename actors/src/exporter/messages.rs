//! Messages the exporter answers.

use std::time::{Duration, Instant};

use actix::Message;
use prost::bytes::Bytes;

use crate::self_metrics::Signal;

/// A finished batch ready for export: one prost-encoded OTLP export request.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ExportBatch {
    /// Which signal the request carries.
    pub signal: Signal,
    /// Items in the request (spans, or metric data points).
    pub items: u64,
    /// The encoded `ExportTraceServiceRequest` or `ExportMetricsServiceRequest`.
    pub body: Bytes,
}

/// Waits until nothing is pending or in flight, or until `deadline`.
///
/// With `give_up`, what is still pending at the deadline is dropped and counted
/// (`reason="shutdown_timeout"`); this is how shutdown ends. Without it, the answer only reports
/// what is left (a `force_flush`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "DrainReport")]
pub struct Drain {
    /// When to stop waiting.
    pub deadline: Instant,
    /// Drop what is left at the deadline.
    pub give_up: bool,
}

/// What a [`Drain`] left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Batches still pending or in flight when the drain ended; for a drain that gives up,
    /// the batches dropped at the deadline (spooled ones are kept, not left behind).
    pub batches_left: usize,
    /// Items in those batches.
    pub items_left: u64,
}

/// Asks for the exporter's current state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ExporterStatus")]
pub struct GetStatus;

/// The exporter's state, for `/health`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterStatus {
    /// Whether the collector currently answers.
    pub collector_reachable: bool,
    /// Batches waiting for a slot or a retry.
    pub pending_batches: usize,
    /// Items in those batches.
    pub pending_items: u64,
    /// Capacity of the pending queue, in batches.
    pub pending_capacity: usize,
    /// Exports in flight.
    pub in_flight: usize,
    /// The last failure's description, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the collector was judged unreachable, if it is.
    pub unreachable_for: Option<Duration>,
    /// Bytes of encoded batches held in memory (waiting, in flight, on their way to the spool).
    pub held_bytes: u64,
    /// The bound of batches waiting or in flight (`exporter.max_pending_bytes`).
    pub max_held_bytes: u64,
    /// The spool.
    pub spool: SpoolStatus,
}

/// Hands the exporter a durable spool (the service's database). Until one is attached, and while
/// it fails, batches are spooled in memory.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachSpool(pub std::sync::Arc<dyn crate::spool::Spool>);

impl std::fmt::Debug for AttachSpool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AttachSpool").field(&self.0.kind()).finish()
    }
}

/// The spool's state, for `/health`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolStatus {
    /// Where spooled batches live: `sqlite`, `postgresql`, or `memory` when no database spool is
    /// attached.
    pub backend: &'static str,
    /// True while batches are kept in memory because the database spool fails.
    pub fallback: bool,
    /// The database spool's last error while it fails.
    pub error: Option<String>,
    /// Batches spooled (database and memory together).
    pub batches: u64,
    /// Bytes of those batches.
    pub bytes: u64,
    /// The spool's bound in bytes.
    pub max_bytes: u64,
    /// Of those batches, the ones kept in memory.
    pub memory_batches: u64,
    /// Items spooled, by signal (indexed as [`Signal::ALL`]).
    pub items: [u64; crate::self_metrics::SIGNALS],
    /// Spooled batches being replayed now.
    pub replaying: usize,
    /// The `when_full` policy of each signal.
    pub policies: [crate::spool::OverflowPolicy; crate::self_metrics::SIGNALS],
}
