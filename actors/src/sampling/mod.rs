//! Sampling decisions taken inside the pipeline.
//!
//! [`decisions`] is the table of kept traces that exemplar readers consult; [`config`] holds the
//! `[sampling]` settings of tail sampling, whose decisions the span buffer takes
//! ([`span_buffer::tail`](crate::span_buffer::tail)) and [`metrics`] counts.

pub mod config;
pub mod decisions;
pub mod metrics;

pub use config::{SamplingConfig, SamplingMode};
pub use decisions::{TraceDecisions, TraceIdBytes};
pub use metrics::{Reason, SamplingMetrics};
