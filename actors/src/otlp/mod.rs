//! OTLP encoding straight to protobuf bytes, without building the opentelemetry-proto messages
//! first: [`TraceEncoder`] turns a batch of finished spans into the body of an
//! `ExportTraceServiceRequest` that the exporter sends and the spool stores as they are, and
//! [`LogEncoder`] does the same for log records and `ExportLogsServiceRequest`.

mod logs;
mod trace;
mod wire;

#[cfg(test)]
mod logs_tests;
#[cfg(test)]
mod tests;

pub use logs::LogEncoder;
pub use trace::{EncodedSpans, LimitCounts, TraceEncoder};
