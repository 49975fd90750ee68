//! The exporter: sends encoded OTLP batches to the collector over gRPC or HTTP/protobuf, with a
//! timeout per attempt, bounded concurrency, and retries with backoff and jitter on retryable
//! answers only. Runs on its own arbiter; nothing here ever blocks a thread.
//!
//! The decisions (queue, retries, spool, replay, probes, throttling, shutdown drain) live in
//! [`state::ExporterState`], a state machine without actix, clock or I/O; the [`Exporter`] actor
//! feeds it events and performs the actions it returns.

mod actor;
pub mod config;
pub mod messages;
pub mod retry;
mod spool_io;
pub mod state;
pub mod transport;

#[cfg(test)]
mod tests;

pub use actor::Exporter;
pub use messages::{AttachSpool, Drain, DrainReport, ExportBatch, ExporterStatus, GetStatus, SpoolStatus};
pub use transport::{Outcome, Transport, TransportError};
