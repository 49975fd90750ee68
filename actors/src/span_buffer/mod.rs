//! The span buffer: drains the span ingress channel, batches spans by size or time, encodes each
//! batch as an OTLP request once, and hands it to the exporter. Under tail sampling
//! (`sampling.mode = "tail"`) the spans of each local trace wait in [`tail`] until its root
//! ends, and only the kept traces are batched.

mod actor;
pub mod config;
pub mod limits;
pub mod messages;
pub mod tail;

#[cfg(test)]
mod tests;

pub use actor::SpanBuffer;
pub use messages::{Flush, FlushError, GetStatus, SamplingStatus, Shutdown, SpanBufferStatus};
