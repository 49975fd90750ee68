//! The log buffer: drains the log record channel, batches records by size or time, encodes each
//! batch as an OTLP `ExportLogsServiceRequest` once, and hands it to the exporter.
//!
//! Records come from a `tracing` layer through [`LogIngress`], which never blocks: a full queue
//! (by count or by bytes) drops the record and counts it at once.
//!
//! The pipeline logs about itself (export failures, spool trouble, restarts) through `tracing`
//! too. A layer that turns events into records must skip those, or an export failure would
//! produce a record whose export fails again: see [`is_pipeline_event`].

mod actor;
pub mod config;
mod ingress;
pub mod messages;

#[cfg(test)]
pub(crate) mod tests;

pub use crate::log_record::{estimated_size, LogRecord, LogValue, Severity};
pub use actor::LogBuffer;
pub use config::LogBufferConfig;
pub use ingress::{log_channel, LogIngress};
pub use messages::{Flush, GetStatus, LogBufferStatus, SendBuffered};

/// Target prefixes of the events a log layer must not turn into records: this crate's own
/// (every internal event, export failures included, has a target under this crate's name) and
/// the transport stacks the exporter runs on, whose events describe an export in progress.
/// Compare with [`is_pipeline_event`].
pub const PIPELINE_LOG_TARGETS: &[&str] =
    &[env!("CARGO_CRATE_NAME"), "tonic", "h2", "hyper", "hyper_util", "tower", "reqwest"];

/// The prefix of the pipeline's thread names (an application may name threads of its own with
/// it too, so [`pipeline::is_pipeline_thread`](crate::pipeline::is_pipeline_thread) is the exact
/// test).
pub const PIPELINE_THREAD_PREFIX: &str = "mmcp-";

/// True when an event with `target` belongs to the pipeline and must not become a log record
/// (it could feed an export loop): its target is one of [`PIPELINE_LOG_TARGETS`] or a module
/// below one. A layer may also skip every event emitted on a thread for which
/// [`pipeline::is_pipeline_thread`](crate::pipeline::is_pipeline_thread) holds, and should skip the targets of whatever implements the
/// [`Spool`](crate::spool::Spool) it attaches (a database spool's connection warnings would
/// otherwise be spooled while the database is away).
#[inline]
pub fn is_pipeline_event(target: &str) -> bool {
    PIPELINE_LOG_TARGETS
        .iter()
        .any(|prefix| target.starts_with(prefix) && matches!(target.as_bytes().get(prefix.len()), None | Some(b':')))
}
