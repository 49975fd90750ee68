//! The latest exemplar of every histogram bucket, per series, kept by the aggregator beside its
//! registry: the observed value, the sampled span it was taken in and when it was folded.
//! `/metrics` (OpenMetrics) and the OTLP export read it; both ask the
//! [`TraceDecisions`](crate::sampling::TraceDecisions) before they show one, so an exemplar only
//! ever points at a trace that is exported.
//!
//! Bound: entries exist only for series that exist in the registry and received an observation
//! that carried a sampled span, one slot per bucket (the bounds plus `+Inf`) of 40 bytes; a series
//! removed from the registry (`LabelledOp::Forget`) takes its exemplars with it (its place is
//! reused by the next new series). The label caps
//! that bound the series therefore bound the table: at most `series × (buckets + 1)` exemplars.

use prometheus::proto::LabelPair;
use rustc_hash::FxHashMap as HashMap;

use crate::span_ref::SpanRef;

/// One kept exemplar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// The observed value.
    pub value: f64,
    /// The sampled span the observation was taken in.
    pub span: SpanRef,
    /// When the aggregator folded the observation (within `metrics.drain_interval` of it), in
    /// nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
}

/// The exemplars of one histogram family.
#[derive(Debug, Clone)]
struct FamilyExemplars {
    name: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    /// Encoded label values (declared order) → index of the series in `slots`.
    series: HashMap<Box<[u8]>, usize>,
    /// Per series, one exemplar per bucket, `+Inf` last (empty: a forgotten series' place).
    slots: Vec<Box<[Option<Exemplar>]>>,
    /// Places of forgotten series, for the next new one.
    free: Vec<usize>,
}

/// Where one series' exemplars live in an [`ExemplarTable`] (stable for the series' life, so the
/// aggregator can keep it beside its cached label children).
pub type SeriesSlot = usize;

/// Exemplars of the histogram families that take them, by family.
#[derive(Debug, Clone, Default)]
pub struct ExemplarTable {
    families: Vec<FamilyExemplars>,
    /// Reused to encode a series key without allocating.
    key: Vec<u8>,
}

/// Index of a family in an [`ExemplarTable`].
pub type FamilyId = usize;

/// Appends `value` to a series key: its length, then its bytes, so no two label sets share a key.
fn push_value(key: &mut Vec<u8>, value: &[u8]) {
    key.extend_from_slice(&(value.len() as u32).to_le_bytes());
    key.extend_from_slice(value);
}

impl ExemplarTable {
    /// Adds a histogram family (`name`, label names in declared order, bucket bounds) and returns
    /// its id.
    pub fn add_family(
        &mut self,
        name: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> FamilyId {
        self.families.push(FamilyExemplars {
            name,
            labels,
            bounds,
            series: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        });
        self.families.len() - 1
    }

    /// The slot of the series `labels` (values in declared order) of `family`, created if new.
    pub fn slot<'a>(&mut self, family: FamilyId, labels: impl IntoIterator<Item = &'a [u8]>) -> Option<SeriesSlot> {
        let table = self.families.get_mut(family)?;
        self.key.clear();
        for value in labels {
            push_value(&mut self.key, value);
        }
        if let Some(slot) = table.series.get(self.key.as_slice()) {
            return Some(*slot);
        }
        let buckets = vec![None; table.bounds.len() + 1].into_boxed_slice();
        let slot = match table.free.pop() {
            Some(slot) => {
                table.slots[slot] = buckets;
                slot
            }
            None => {
                table.slots.push(buckets);
                table.slots.len() - 1
            }
        };
        table.series.insert(self.key.as_slice().into(), slot);
        Some(slot)
    }

    /// Keeps `exemplar` as the latest of its bucket in the series at `slot` of `family`.
    pub fn record_at(&mut self, family: FamilyId, slot: SeriesSlot, exemplar: Exemplar) {
        let Some(table) = self.families.get_mut(family) else { return };
        if exemplar.value.is_nan() {
            return;
        }
        // `le` semantics: the first bucket whose upper bound is at least the value.
        let bucket = table.bounds.partition_point(|bound| *bound < exemplar.value);
        if let Some(place) = table.slots.get_mut(slot).and_then(|buckets| buckets.get_mut(bucket)) {
            *place = Some(exemplar);
        }
    }

    /// Keeps `exemplar` as the latest of its bucket in the series `labels` (values in declared
    /// order) of `family`.
    pub fn record<'a>(&mut self, family: FamilyId, labels: impl IntoIterator<Item = &'a [u8]>, exemplar: Exemplar) {
        if let Some(slot) = self.slot(family, labels) {
            self.record_at(family, slot, exemplar);
        }
    }

    /// Removes the exemplars of the series `labels` of `family` (the series left the registry).
    pub fn forget<'a>(&mut self, family: FamilyId, labels: impl IntoIterator<Item = &'a [u8]>) {
        let Some(table) = self.families.get_mut(family) else { return };
        self.key.clear();
        for value in labels {
            push_value(&mut self.key, value);
        }
        if let Some(slot) = table.series.remove(self.key.as_slice()) {
            table.slots[slot] = Box::default();
            table.free.push(slot);
        }
    }

    /// The exemplars (one slot per bucket, `+Inf` last) of the series of family `name` whose
    /// labels are `labels` (as gathered from the registry, in any order); `None` when there are
    /// none. `key` is scratch space.
    pub fn find(&self, name: &str, labels: &[LabelPair], key: &mut Vec<u8>) -> Option<&[Option<Exemplar>]> {
        let table = self.families.iter().find(|family| family.name == name)?;
        if table.series.is_empty() {
            return None;
        }
        key.clear();
        for label in table.labels {
            let value = labels.iter().find(|pair| pair.name() == *label)?.value();
            push_value(key, value.as_bytes());
        }
        table.series.get(key.as_slice()).map(|slot| &table.slots[*slot][..])
    }

    /// The bucket bounds of family `name`, if it takes exemplars.
    pub fn bounds(&self, name: &str) -> Option<&'static [f64]> {
        self.families.iter().find(|family| family.name == name).map(|family| family.bounds)
    }

    /// Exemplars kept, all families together.
    pub fn len(&self) -> usize {
        self.families.iter().flat_map(|family| family.slots.iter()).map(|slots| slots.iter().flatten().count()).sum()
    }

    /// Whether no exemplar is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, value: &str) -> LabelPair {
        let mut pair = LabelPair::default();
        pair.set_name(name.to_owned());
        pair.set_value(value.to_owned());
        pair
    }

    fn exemplar(value: f64, id: u8) -> Exemplar {
        Exemplar { value, span: SpanRef::new([id; 16], [id; 8]).unwrap(), time_unix_nano: 1 }
    }

    #[test]
    fn the_latest_exemplar_of_each_bucket_is_kept_per_series_and_found_from_gathered_labels() {
        let mut table = ExemplarTable::default();
        let family = table.add_family("h", &["method", "route"], &[0.1, 1.0]);
        let get: [&[u8]; 2] = [b"GET".as_slice(), b"/a".as_slice()];
        table.record(family, get, exemplar(0.05, 1));
        table.record(family, get, exemplar(0.07, 2));
        table.record(family, get, exemplar(1.0, 3));
        table.record(family, get, exemplar(7.0, 4));
        table.record(family, [b"GET".as_slice(), b"/b".as_slice()], exemplar(0.5, 5));
        let mut key = Vec::new();
        // Gathered label pairs come sorted by name, whatever the declared order.
        let slots = table.find("h", &[pair("route", "/a"), pair("method", "GET")], &mut key).unwrap();
        assert_eq!(slots, &[Some(exemplar(0.07, 2)), Some(exemplar(1.0, 3)), Some(exemplar(7.0, 4))]);
        let other = table.find("h", &[pair("method", "GET"), pair("route", "/b")], &mut key).unwrap();
        assert_eq!(other, &[None, Some(exemplar(0.5, 5)), None]);
        assert!(table.find("h", &[pair("method", "GET"), pair("route", "/c")], &mut key).is_none());
        assert!(table.find("other", &[], &mut key).is_none());
        assert_eq!(table.len(), 4);
        table.forget(family, get);
        assert!(table.find("h", &[pair("method", "GET"), pair("route", "/a")], &mut key).is_none());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn label_values_cannot_run_into_each_other_in_a_key() {
        let mut table = ExemplarTable::default();
        let family = table.add_family("h", &["a", "b"], &[1.0]);
        table.record(family, [b"x".as_slice(), b"yz".as_slice()], exemplar(0.5, 1));
        let mut key = Vec::new();
        assert!(table.find("h", &[pair("a", "xy"), pair("b", "z")], &mut key).is_none());
        assert!(table.find("h", &[pair("a", "x"), pair("b", "yz")], &mut key).is_some());
    }
}
