//! Sampling decisions taken inside the pipeline.
//!
//! [`decisions`] is the table of kept traces that exemplar readers consult.

pub mod decisions;

pub use decisions::{TraceDecisions, TraceIdBytes};
