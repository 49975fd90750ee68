//! Messages the metric aggregator answers.

use actix::Message;

/// Folds every queued event into the registry now (a scrape sends this first, so it sees every
/// event recorded before it).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Folds every queued event, then answers a copy of the exemplar table (an OpenMetrics scrape
/// sends this instead of [`Drain`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "super::exemplars::ExemplarTable")]
pub struct DrainExemplars;

/// Drains, then hands a snapshot to the exporter at once (used at shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ExportNow;

/// Tool names known before any execution (an application's built-in tools): their series are
/// created at zero, for both outcomes, and each takes a slot under `metrics.max_tool_names`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DeclareTools {
    /// The tool names.
    pub names: Vec<crate::ingress::LabelValue>,
}

/// The database system an application queries: its query duration series are created at zero,
/// for every operation and both outcomes.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct DeclareDbSystem(pub crate::ingress::DbSystem);

/// Asks for the aggregator's current state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "AggregatorStatus")]
pub struct GetStatus;

/// The aggregator's state, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregatorStatus {
    /// Events waiting in the channel.
    pub queue_depth: usize,
    /// Capacity of the channel.
    pub queue_capacity: usize,
    /// Events folded since start.
    pub events_folded: u64,
    /// Distinct routes seen (capped by `metrics.max_routes`).
    pub routes: usize,
    /// Distinct tool names seen (capped by `metrics.max_tool_names`).
    pub tools: usize,
    /// OTLP snapshots handed to the exporter.
    pub snapshots_sent: u64,
}
