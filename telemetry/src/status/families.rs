//! Reading the gathered Prometheus registry by metric name: sums, per-label breakdowns and merged
//! histogram buckets, with the quantile estimate of Prometheus' `histogram_quantile`. A family
//! that does not exist reads as `None`.

use std::collections::BTreeMap;

use prometheus::proto::{MetricFamily, MetricType};

/// The metric names the page reads.
pub(super) mod names {
    pub(in crate::status) const REQUESTS: &str = "metamcp_requests_total";
    pub(in crate::status) const REQUEST_DURATION: &str = "metamcp_request_duration_seconds";
    pub(in crate::status) const TOOLS: &str = "metamcp_tool_executions_total";
    pub(in crate::status) const TOOL_DURATION: &str = "metamcp_tool_execution_duration_seconds";
    pub(in crate::status) const SEARCHES: &str = "metamcp_vector_searches_total";
    pub(in crate::status) const SEARCH_DURATION: &str = "metamcp_vector_search_duration_seconds";
    pub(in crate::status) const DROPPED: &str = "metamcp_telemetry_dropped_total";
    pub(in crate::status) const EXPORTED: &str = "metamcp_telemetry_exported_total";
    pub(in crate::status) const EXPORT_FAILURES: &str = "metamcp_telemetry_export_failures_total";
    pub(in crate::status) const CONSECUTIVE_FAILURES: &str = "metamcp_telemetry_export_consecutive_failures";
    pub(in crate::status) const LAST_SUCCESS: &str = "metamcp_telemetry_last_export_success_timestamp_seconds";
    pub(in crate::status) const COLLECTOR_UP: &str = "metamcp_telemetry_collector_up";
    pub(in crate::status) const RESTARTS: &str = "metamcp_telemetry_actor_restarts_total";
    pub(in crate::status) const QUEUE_DEPTH: &str = "metamcp_telemetry_queue_depth";
    pub(in crate::status) const QUEUE_CAPACITY: &str = "metamcp_telemetry_queue_capacity";
    pub(in crate::status) const QUEUE_BYTES: &str = "metamcp_telemetry_queue_bytes";
    pub(in crate::status) const QUEUE_MAX_BYTES: &str = "metamcp_telemetry_queue_max_bytes";
    pub(in crate::status) const SPOOL_BYTES: &str = "metamcp_telemetry_spool_bytes";
    pub(in crate::status) const SPOOL_BATCHES: &str = "metamcp_telemetry_spool_batches";
    pub(in crate::status) const SPOOL_MAX_BYTES: &str = "metamcp_telemetry_spool_max_bytes";
    pub(in crate::status) const SPOOL_ITEMS: &str = "metamcp_telemetry_spool_items";
    pub(in crate::status) const SPOOLED: &str = "metamcp_telemetry_spooled_total";
    pub(in crate::status) const REPLAYED: &str = "metamcp_telemetry_replayed_total";
    pub(in crate::status) const SPOOL_FALLBACK: &str = "metamcp_telemetry_spool_fallback";
    pub(in crate::status) const BUFFERED_BYTES: &str = "metamcp_telemetry_buffered_bytes";
    pub(in crate::status) const BUFFERED_MAX_BYTES: &str = "metamcp_telemetry_buffered_max_bytes";
    pub(in crate::status) const RSS: &str = "process_resident_memory_bytes";
    pub(in crate::status) const CPU: &str = "process_cpu_seconds_total";
    pub(in crate::status) const OPEN_FDS: &str = "process_open_fds";
    pub(in crate::status) const THREADS: &str = "process_threads";
}

/// Gathered metric families, looked up by name.
#[derive(Debug, Clone, Copy)]
pub struct Families<'a> {
    families: &'a [MetricFamily],
}

/// `+` for folds: `Iterator::sum` of no `f64`s is `-0.0`, which would show as "-0".
pub(super) fn add(a: f64, b: f64) -> f64 {
    a + b
}

fn labels_match(metric: &prometheus::proto::Metric, wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(name, value)| metric.get_label().iter().any(|l| l.name() == *name && l.value() == *value))
}

pub(super) fn label_of<'m>(metric: &'m prometheus::proto::Metric, name: &str) -> Option<&'m str> {
    metric.get_label().iter().find(|l| l.name() == name).map(|l| l.value())
}

pub(super) fn scalar(family: &MetricFamily, metric: &prometheus::proto::Metric) -> Option<f64> {
    match family.get_field_type() {
        MetricType::COUNTER => Some(metric.get_counter().get_value()),
        MetricType::GAUGE => Some(metric.get_gauge().get_value()),
        _ => None,
    }
}

impl<'a> Families<'a> {
    /// Wraps what `Registry::gather` returned.
    pub fn new(families: &'a [MetricFamily]) -> Self {
        Self { families }
    }

    pub(super) fn family(&self, name: &str) -> Option<&'a MetricFamily> {
        self.families.iter().find(|f| f.name() == name)
    }

    /// The sum of a counter or gauge over the series whose labels include `wanted`; `None` when
    /// the family does not exist.
    pub fn sum(&self, name: &str, wanted: &[(&str, &str)]) -> Option<f64> {
        let family = self.family(name)?;
        Some(
            family
                .get_metric()
                .iter()
                .filter(|m| labels_match(m, wanted))
                .filter_map(|m| scalar(family, m))
                .fold(0.0, add),
        )
    }

    /// A counter or gauge summed by the value of `label`; `None` when the family does not exist.
    pub fn by_label(&self, name: &str, label: &str) -> Option<BTreeMap<String, f64>> {
        let family = self.family(name)?;
        let mut out = BTreeMap::new();
        for metric in family.get_metric() {
            if let (Some(key), Some(value)) = (label_of(metric, label), scalar(family, metric)) {
                *out.entry(key.to_owned()).or_insert(0.0) += value;
            }
        }
        Some(out)
    }

    /// A histogram with every series merged (their bounds are the family's); `None` when the
    /// family does not exist or is not a histogram.
    pub fn histogram(&self, name: &str) -> Option<Buckets> {
        let family = self.family(name)?;
        if family.get_field_type() != MetricType::HISTOGRAM {
            return None;
        }
        let mut merged = Buckets::default();
        for metric in family.get_metric() {
            let histogram = metric.get_histogram();
            let finite = histogram.get_bucket().iter().filter(|b| b.upper_bound().is_finite());
            let series = Buckets {
                bounds: finite.clone().map(|b| b.upper_bound()).collect(),
                cumulative: finite.map(|b| b.cumulative_count()).collect(),
                count: histogram.get_sample_count(),
                sum: histogram.get_sample_sum(),
            };
            merged = merged.plus(&series);
        }
        Some(merged)
    }
}

/// A histogram's cumulative buckets (finite upper bounds; the `+Inf` bucket is `count`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// Finite upper bounds, ascending.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound.
    pub cumulative: Vec<u64>,
    /// Every observation.
    pub count: u64,
    /// Sum of the observed values.
    pub sum: f64,
}

impl Buckets {
    fn plus(self, other: &Buckets) -> Buckets {
        if self.bounds.is_empty() && self.count == 0 {
            return other.clone();
        }
        if self.bounds != other.bounds {
            // Series of one family share bounds; if not, keep what is comparable.
            return self;
        }
        Buckets {
            cumulative: self.cumulative.iter().zip(&other.cumulative).map(|(a, b)| a + b).collect(),
            count: self.count + other.count,
            sum: self.sum + other.sum,
            bounds: self.bounds,
        }
    }

    /// What was observed since `earlier` (a zero baseline when `earlier` is `None` or has other
    /// bounds).
    pub fn since(&self, earlier: Option<&Buckets>) -> Buckets {
        match earlier {
            Some(earlier) if earlier.bounds == self.bounds => Buckets {
                bounds: self.bounds.clone(),
                cumulative: self
                    .cumulative
                    .iter()
                    .zip(&earlier.cumulative)
                    .map(|(a, b)| a.saturating_sub(*b))
                    .collect(),
                count: self.count.saturating_sub(earlier.count),
                sum: (self.sum - earlier.sum).max(0.0),
            },
            _ => self.clone(),
        }
    }

    /// The `q` quantile (0 ≤ q ≤ 1) as Prometheus' `histogram_quantile` estimates it: linear
    /// interpolation inside the bucket that holds the rank, 0 as the lower edge of the first
    /// bucket, and the highest finite bound when the rank falls in the `+Inf` bucket. `None`
    /// without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let mut lower = 0.0;
        let mut below = 0u64;
        for (bound, &cumulative) in self.bounds.iter().zip(&self.cumulative) {
            if cumulative as f64 >= rank && cumulative > below {
                let in_bucket = (cumulative - below) as f64;
                return Some(lower + (bound - lower) * ((rank - below as f64) / in_bucket));
            }
            lower = *bound;
            below = cumulative;
        }
        self.bounds.last().copied().or(Some(0.0))
    }

    /// The mean observed value; `None` without observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}
