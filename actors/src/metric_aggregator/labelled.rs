//! Labelled families: counters, gauges and histograms whose label names, label bounds and OTLP
//! identity the library describes ([`LabelledFamily`]), fed by one generic event
//! ([`LabelledEvent`]). The aggregator caps every label value as it caps tool names (the first
//! values keep their own series, later ones fold into `other`), caches the resolved children, and
//! the OTLP export renames the family and its attributes to their OpenTelemetry names
//! (`mcp.server.operation.duration`, `mcp.method.name`, …) where the Prometheus names are
//! `mcp_server_operation_duration_seconds`, `mcp_method_name`, ….

use prometheus::{Gauge, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use rustc_hash::FxHashMap as HashMap;

use super::config::MetricsConfig;
use super::family::{Family, OTHER};
pub use crate::labels::{LabelSet, LabelValue, LabelledEvent, LabelledOp, MAX_LABELS};

/// Cached raw label sets per family, beyond which new sets take the slow path (still counted).
const MAX_CACHED_KEYS: usize = 4096;

/// What kind of metric a labelled family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    /// A monotonic integer counter.
    Counter,
    /// A gauge set to a value.
    Gauge,
    /// A histogram over the family's buckets.
    Histogram,
}

/// How many distinct values a label keeps before further values fold into `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelCap {
    /// As many as `metrics.max_tool_names` (names: tools, prompts, servers, endpoints).
    Names,
    /// A fixed number (enumerations that a peer could still stretch: methods, versions).
    Values(usize),
}

impl LabelCap {
    /// The cap under `config`.
    pub fn resolve(self, config: &MetricsConfig) -> usize {
        match self {
            LabelCap::Names => config.max_tool_names,
            LabelCap::Values(n) => n,
        }
    }
}

/// The OpenTelemetry identity of a family in the OTLP export, where it differs from the
/// Prometheus one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OtlpName {
    /// The instrument name (`mcp.server.operation.duration`).
    pub name: &'static str,
    /// The unit (`s`).
    pub unit: &'static str,
    /// The attribute key of each label, in label order (`mcp.method.name`, …).
    pub attributes: &'static [&'static str],
    /// Attribute keys whose values are integers (`server.port`): exported as integer attributes
    /// when the label value parses as one.
    pub integers: &'static [&'static str],
}

/// A family the library describes entirely: Prometheus shape, label bounds, OTLP identity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelledFamily {
    /// Name, help, label names and buckets as Prometheus shows them.
    pub family: Family,
    /// Counter, gauge or histogram.
    pub kind: FamilyKind,
    /// The cap of each label, in label order.
    pub caps: &'static [LabelCap],
    /// The OTLP name, unit and attribute keys; `None` exports the Prometheus names.
    pub otlp: Option<OtlpName>,
    /// Most distinct series (label combinations) kept, `0` for no bound beyond the label caps;
    /// further combinations are counted under one series whose labels all read `other`.
    pub max_series: usize,
}

impl LabelledFamily {
    /// Checks that caps and OTLP attributes match the labels, and the label count fits events.
    pub fn check(&self) -> Result<(), prometheus::Error> {
        let labels = self.family.labels.len();
        let fits = labels <= MAX_LABELS
            && self.caps.len() == labels
            && self.otlp.is_none_or(|otlp| otlp.attributes.len() == labels)
            && (self.kind == FamilyKind::Histogram) != self.family.buckets.is_empty();
        if fits {
            Ok(())
        } else {
            Err(prometheus::Error::Msg(format!(
                "labelled family {}: {labels} label(s) (at most {MAX_LABELS}), {} cap(s), {} OTLP attribute(s), \
                 {} bucket(s) for a {:?}",
                self.family.name,
                self.caps.len(),
                self.otlp.map_or(labels, |otlp| otlp.attributes.len()),
                self.family.buckets.len(),
                self.kind
            )))
        }
    }

    /// The most series lines this family can show under `config`: the product of its label caps
    /// (each plus `other`), or its `max_series` plus the all-`other` series when that is smaller,
    /// times the lines of one histogram series.
    pub fn max_series(&self, config: &MetricsConfig) -> usize {
        let lines = match self.kind {
            FamilyKind::Histogram => self.family.buckets.len() + 3,
            _ => 1,
        };
        let combinations = self.caps.iter().fold(1usize, |n, cap| n.saturating_mul(cap.resolve(config) + 1));
        let series = if self.max_series == 0 { combinations } else { combinations.min(self.max_series + 1) };
        series.saturating_mul(lines)
    }

    fn register(&self, registry: &Registry) -> Result<LabelledMetric, prometheus::Error> {
        self.check()?;
        let opts = Opts::new(self.family.name, self.family.help);
        let labels = self.family.labels;
        let metric = match self.kind {
            FamilyKind::Counter => {
                let vec = IntCounterVec::new(opts, labels)?;
                registry.register(Box::new(vec.clone()))?;
                LabelledMetric::Counter(vec)
            }
            FamilyKind::Gauge => {
                let vec = GaugeVec::new(opts, labels)?;
                registry.register(Box::new(vec.clone()))?;
                LabelledMetric::Gauge(vec)
            }
            FamilyKind::Histogram => {
                let opts = prometheus::HistogramOpts::from(opts).buckets(self.family.buckets.to_vec());
                let vec = HistogramVec::new(opts, labels)?;
                registry.register(Box::new(vec.clone()))?;
                LabelledMetric::Histogram(vec)
            }
        };
        Ok(metric)
    }
}

/// The registered family behind a [`LabelledFamily`].
#[derive(Debug, Clone)]
pub enum LabelledMetric {
    /// A counter family.
    Counter(IntCounterVec),
    /// A gauge family.
    Gauge(GaugeVec),
    /// A histogram family.
    Histogram(HistogramVec),
}

/// One labelled family, described and registered.
#[derive(Debug, Clone)]
pub struct LabelledHandle {
    /// Its description.
    pub family: LabelledFamily,
    /// Its Prometheus family.
    pub metric: LabelledMetric,
}

/// Registers every family of `families` in `registry`, in order (an event names a family by
/// its index here).
pub fn register_all(
    registry: &Registry,
    families: &'static [LabelledFamily],
) -> Result<Vec<LabelledHandle>, prometheus::Error> {
    families.iter().map(|family| Ok(LabelledHandle { family: *family, metric: family.register(registry)? })).collect()
}

enum Child {
    Counter(IntCounter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// The aggregator's state for one family: the label values kept per label and the cached
/// children per raw label set.
pub(crate) struct LabelledState {
    handle: LabelledHandle,
    caps: Vec<usize>,
    /// Per label: raw value → kept value (itself, or `other`).
    kept: Vec<HashMap<LabelValue, LabelValue>>,
    /// Per label: distinct kept values other than `other`.
    distinct: Vec<usize>,
    /// Raw label set → (child, kept label values, whether a value was folded).
    children: HashMap<LabelSet, (Child, Vec<LabelValue>, bool)>,
    /// The kept label combinations that have a series (bounded by `max_series` + 1).
    series: rustc_hash::FxHashSet<Vec<LabelValue>>,
}

/// What folding one event did, for the overflow counter.
pub(crate) struct Folded {
    /// Label values folded into `other` by this event.
    pub(crate) overflowed: u64,
}

impl LabelledState {
    pub(crate) fn new(handle: LabelledHandle, config: &MetricsConfig) -> Self {
        let caps: Vec<usize> = handle.family.caps.iter().map(|cap| cap.resolve(config)).collect();
        let labels = caps.len();
        Self {
            handle,
            caps,
            kept: vec![HashMap::default(); labels],
            distinct: vec![0; labels],
            children: HashMap::default(),
            series: Default::default(),
        }
    }

    /// The family's description.
    pub(crate) fn family(&self) -> &LabelledFamily {
        &self.handle.family
    }

    fn keep(&mut self, index: usize, raw: &LabelValue) -> (LabelValue, bool) {
        if let Some(kept) = self.kept[index].get(raw) {
            let folded = kept.as_str() == OTHER && raw.as_str() != OTHER;
            return (kept.clone(), folded);
        }
        // An empty value is an absent attribute: it never takes a slot.
        if raw.as_str().is_empty() || raw.as_str() == OTHER {
            return (raw.clone(), false);
        }
        let cap = self.caps[index];
        let kept = if self.distinct[index] < cap {
            self.distinct[index] += 1;
            raw.clone()
        } else {
            LabelValue::new(OTHER)
        };
        let folded = kept.as_str() == OTHER;
        // Remember kept values always (so a freed slot is found again), folded ones up to a bound.
        if !folded || self.kept[index].len() < cap.saturating_mul(4) {
            self.kept[index].insert(raw.clone(), kept.clone());
        }
        (kept, folded)
    }

    fn resolve(&mut self, labels: &LabelSet) -> Option<(Child, Vec<LabelValue>, bool)> {
        if labels.as_slice().len() != self.caps.len() {
            return None;
        }
        let mut folded = false;
        let mut kept = Vec::with_capacity(self.caps.len());
        for (index, raw) in labels.as_slice().iter().enumerate() {
            let (value, overflow) = self.keep(index, raw);
            folded |= overflow;
            kept.push(value);
        }
        let max_series = self.handle.family.max_series;
        if max_series > 0 && !self.series.contains(&kept) {
            if self.series.len() >= max_series {
                for value in kept.iter_mut().filter(|v| !v.as_str().is_empty()) {
                    *value = LabelValue::new(OTHER);
                }
                folded = true;
            }
            self.series.insert(kept.clone());
        }
        let values: Vec<&str> = kept.iter().map(LabelValue::as_str).collect();
        let child = match &self.handle.metric {
            LabelledMetric::Counter(vec) => Child::Counter(vec.with_label_values(&values)),
            LabelledMetric::Gauge(vec) => Child::Gauge(vec.with_label_values(&values)),
            LabelledMetric::Histogram(vec) => Child::Histogram(vec.with_label_values(&values)),
        };
        Some((child, kept, folded))
    }

    /// Applies `op` to the series of `labels`. `series` hears of an observation (the series'
    /// kept labels and the value) and of a removed series (its labels and `None`).
    pub(crate) fn apply(
        &mut self,
        labels: LabelSet,
        op: LabelledOp,
        series: impl FnOnce(&[LabelValue], Option<f64>),
    ) -> Folded {
        if op == LabelledOp::Forget {
            if let Some(kept) = self.forget(&labels) {
                series(&kept, None);
            }
            return Folded { overflowed: 0 };
        }
        let observed = match op {
            LabelledOp::Observe(value) => Some(value),
            _ => None,
        };
        let folded = if let Some((child, kept, folded)) = self.children.get(&labels) {
            perform(child, op);
            if observed.is_some() {
                series(kept, observed);
            }
            *folded
        } else {
            let Some((child, kept, folded)) = self.resolve(&labels) else { return Folded { overflowed: 0 } };
            perform(&child, op);
            if observed.is_some() {
                series(&kept, observed);
            }
            if self.children.len() < MAX_CACHED_KEYS {
                self.children.insert(labels, (child, kept, folded));
            }
            folded
        };
        Folded { overflowed: u64::from(folded && op != LabelledOp::Touch) }
    }

    /// Removes the series of `labels` (and every cached raw set that resolved to it); a label
    /// value no remaining series uses gives its slot back. Only a series of its own is removed:
    /// labels that were never seen, or that fold into `other`, leave everything as it is.
    /// Returns the labels of the removed series.
    fn forget(&mut self, labels: &LabelSet) -> Option<Vec<LabelValue>> {
        if labels.as_slice().len() != self.caps.len() {
            return None;
        }
        let mut kept = Vec::with_capacity(self.caps.len());
        for (index, raw) in labels.as_slice().iter().enumerate() {
            let own = raw.as_str().is_empty() || self.kept[index].get(raw).is_some_and(|k| k == raw);
            if !own || raw.as_str() == OTHER {
                return None;
            }
            kept.push(raw.clone());
        }
        if self.handle.family.max_series > 0 && !self.series.contains(&kept) {
            return None;
        }
        let values: Vec<&str> = kept.iter().map(LabelValue::as_str).collect();
        // An error only says the series did not exist (never observed since its values were kept).
        let _ = match &self.handle.metric {
            LabelledMetric::Counter(vec) => vec.remove_label_values(&values),
            LabelledMetric::Gauge(vec) => vec.remove_label_values(&values),
            LabelledMetric::Histogram(vec) => vec.remove_label_values(&values),
        };
        self.children.retain(|_, (_, cached, _)| cached != &kept);
        self.series.remove(&kept);
        for (index, value) in kept.iter().enumerate() {
            if value.as_str().is_empty() {
                continue;
            }
            let still_used = self.children.values().any(|(_, cached, _)| &cached[index] == value);
            if !still_used && self.kept[index].remove(value).is_some() {
                self.distinct[index] = self.distinct[index].saturating_sub(1);
                // Raw values that folded while the cap was full may take the slot from now on.
                self.kept[index].retain(|_, kept| kept.as_str() != OTHER);
                self.children.retain(|_, (_, _, folded)| !*folded);
            }
        }
        Some(kept)
    }
}

fn perform(child: &Child, op: LabelledOp) {
    match (child, op) {
        (Child::Counter(counter), LabelledOp::Inc(n)) => counter.inc_by(n),
        (Child::Gauge(gauge), LabelledOp::Set(value)) => gauge.set(value),
        (Child::Gauge(gauge), LabelledOp::Inc(n)) => gauge.add(n as f64),
        (Child::Histogram(histogram), LabelledOp::Observe(value)) => histogram.observe(value),
        // Touch creates the series (done by resolving it); a mismatched op is ignored.
        _ => {}
    }
}
