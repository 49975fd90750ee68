//! The span buffer: drains the span ingress channel, batches spans by size or time, encodes each
//! batch as an OTLP request once, and hands it to the exporter.

mod actor;
pub mod config;
pub mod limits;
pub mod messages;

#[cfg(test)]
mod tests;

pub use actor::SpanBuffer;
pub use messages::{Flush, FlushError, GetStatus, Shutdown, SpanBufferStatus};
