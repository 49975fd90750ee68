//! The metric aggregator: drains metric events into the Prometheus registry it owns (which
//! `/metrics` renders), and every `export_interval` turns the registry into an OTLP metrics
//! request for the exporter, so both paths carry the same numbers. Beside the registry it keeps
//! the latest exemplar of every histogram bucket ([`exemplars`]), which the OpenMetrics rendering
//! ([`openmetrics`]) and the OTLP export show.

mod actor;
pub mod catalogue;
pub mod config;
pub mod exemplars;
pub mod family;
pub mod labelled;
pub mod messages;
pub mod openmetrics;
pub mod otlp;

#[cfg(test)]
mod tests;

pub use actor::MetricAggregator;
pub use catalogue::{Catalogue, Family, ServiceMetrics};
pub use exemplars::{Exemplar, ExemplarTable};
pub use labelled::{FamilyKind, LabelCap, LabelSet, LabelledEvent, LabelledFamily, LabelledOp, OtlpName};
pub use messages::{AggregatorStatus, DeclareDbSystem, DeclareTools, Drain, DrainExemplars, ExportNow, GetStatus};
