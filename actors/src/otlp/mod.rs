//! OTLP encoding straight to protobuf bytes, without building the opentelemetry-proto messages
//! first: [`TraceEncoder`] turns a batch of finished spans into the body of an
//! `ExportTraceServiceRequest` that the exporter sends and the spool stores as they are.

mod trace;
mod wire;

#[cfg(test)]
mod tests;

pub use trace::{EncodedSpans, LimitCounts, TraceEncoder};
