//! One metric family as a catalogue describes it, and the label value every capped label folds
//! into.

/// One metric family: its name, help text, label names and (for histograms) bucket bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Family {
    /// The metric name, as Prometheus shows it.
    pub name: &'static str,
    /// The help text (`# HELP`, and the OTLP description).
    pub help: &'static str,
    /// Label names, in the order the family's event fields fill them.
    pub labels: &'static [&'static str],
    /// Upper bucket bounds of a histogram, ascending; empty for counters.
    pub buckets: &'static [f64],
}

/// The label value that stands for every value beyond a cardinality cap.
pub const OTHER: &str = "other";
