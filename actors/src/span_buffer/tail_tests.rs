//! The tail sampler step by step: every reason, late spans, the bounds and their overflow, the
//! wait limit, flushes; and a property over random sequences against a small model.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::sampling::SamplingMode;

/// A span as the sampler sees it; `id` tells spans apart in assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fake {
    trace: TraceIdBytes,
    id: u32,
    root: bool,
    error: bool,
    millis: u64,
}

impl TailSpan for Fake {
    fn trace_id(&self) -> TraceIdBytes {
        self.trace
    }
    fn is_local_root(&self) -> bool {
        self.root
    }
    fn has_error(&self) -> bool {
        self.error
    }
    fn duration(&self) -> Duration {
        Duration::from_millis(self.millis)
    }
}

/// A trace id whose random part starts with `high` (the rest zero), tagged by `tag`.
fn trace(tag: u8, high: u8) -> TraceIdBytes {
    let mut id = [0u8; 16];
    id[0] = tag;
    id[9] = high;
    id
}

fn child(trace: TraceIdBytes, id: u32) -> Fake {
    Fake { trace, id, root: false, error: false, millis: 1 }
}

fn root(trace: TraceIdBytes, id: u32, millis: u64) -> Fake {
    Fake { trace, id, root: true, error: false, millis }
}

fn config(keep_ratio: f64) -> SamplingConfig {
    SamplingConfig {
        mode: SamplingMode::Tail,
        keep_ratio,
        keep_slower_than: Duration::from_millis(100),
        max_pending_traces: 100,
        max_pending_bytes: 1 << 20,
        max_decision_wait: Duration::from_secs(10),
    }
}

/// The sampler and what it asked for so far.
struct Harness {
    sampler: TailSampler<Fake>,
    export: Vec<Fake>,
    decisions: Vec<Decision>,
    sampled_out: u64,
    now: Instant,
}

impl Harness {
    fn new(config: &SamplingConfig) -> Self {
        Self {
            sampler: TailSampler::new(config),
            export: Vec::new(),
            decisions: Vec::new(),
            sampled_out: 0,
            now: Instant::now(),
        }
    }

    fn offer(&mut self, span: Fake) {
        self.offer_sized(span, 100);
    }

    fn offer_sized(&mut self, span: Fake, size: usize) {
        let mut actions =
            Actions { export: &mut self.export, decisions: &mut self.decisions, sampled_out: &mut self.sampled_out };
        self.sampler.offer(span, size, self.now, &mut actions);
    }

    fn expire(&mut self) {
        let mut actions =
            Actions { export: &mut self.export, decisions: &mut self.decisions, sampled_out: &mut self.sampled_out };
        self.sampler.expire(self.now, &mut actions);
    }

    fn flush(&mut self) {
        let mut actions =
            Actions { export: &mut self.export, decisions: &mut self.decisions, sampled_out: &mut self.sampled_out };
        self.sampler.flush(&mut actions);
    }

    fn exported_ids(&self) -> Vec<u32> {
        self.export.iter().map(|span| span.id).collect()
    }

    fn reasons(&self) -> Vec<Reason> {
        self.decisions.iter().map(|d| d.reason).collect()
    }
}

#[test]
fn a_fast_trace_without_errors_is_dropped_when_its_root_ends() {
    let mut h = Harness::new(&config(0.0));
    let t = trace(1, 0xff);
    h.offer(child(t, 1));
    h.offer(child(t, 2));
    assert!(h.decisions.is_empty(), "the trace waits for its root");
    assert_eq!(h.sampler.status().pending_spans, 2);
    h.offer(root(t, 3, 5));
    assert!(h.export.is_empty());
    assert_eq!(h.decisions, vec![Decision { trace_id: t, reason: Reason::None, spans: 3 }]);
    assert_eq!(h.sampled_out, 3);
    assert_eq!(h.sampler.status(), TailStatus { remembered: 1, ..TailStatus::default() });
}

#[test]
fn an_error_anywhere_in_the_trace_keeps_all_of_it() {
    let mut h = Harness::new(&config(0.0));
    let t = trace(1, 0);
    h.offer(child(t, 1));
    h.offer(Fake { error: true, ..child(t, 2) });
    h.offer(root(t, 3, 5));
    assert_eq!(h.exported_ids(), vec![1, 2, 3], "the trace leaves whole, in arrival order");
    assert_eq!(h.reasons(), vec![Reason::Error]);
    // An error on the root itself counts too.
    let u = trace(2, 0);
    h.offer(Fake { error: true, ..root(u, 4, 5) });
    assert_eq!(h.reasons(), vec![Reason::Error, Reason::Error]);
    assert_eq!(h.sampled_out, 0);
}

#[test]
fn a_slow_root_keeps_the_trace_and_a_slow_child_does_not() {
    let mut h = Harness::new(&config(0.0));
    let t = trace(1, 0);
    h.offer(Fake { millis: 500, ..child(t, 1) });
    h.offer(root(t, 2, 99));
    assert_eq!(h.reasons(), vec![Reason::None], "only the root's duration counts");
    let u = trace(2, 0);
    h.offer(child(u, 3));
    h.offer(root(u, 4, 100));
    assert_eq!(h.reasons(), vec![Reason::None, Reason::Slow], "at least keep_slower_than is slow");
    assert_eq!(h.exported_ids(), vec![3, 4]);
}

#[test]
fn an_error_outranks_slowness_and_slowness_the_ratio() {
    let mut h = Harness::new(&config(1.0));
    h.offer(Fake { error: true, ..root(trace(1, 0), 1, 500) });
    h.offer(root(trace(2, 0), 2, 500));
    h.offer(root(trace(3, 0), 3, 5));
    assert_eq!(h.reasons(), vec![Reason::Error, Reason::Slow, Reason::Ratio]);
}

#[test]
fn the_ratio_compares_the_random_part_of_the_trace_id_with_the_rejection_threshold() {
    assert_eq!(rejection_threshold(0.0), 1 << 56);
    assert_eq!(rejection_threshold(1.0), 0);
    assert_eq!(rejection_threshold(0.5), 1 << 55);
    assert_eq!(rejection_threshold(0.25), 3 << 54);
    let mut h = Harness::new(&config(0.5));
    h.offer(root(trace(1, 0x80), 1, 5));
    h.offer(root(trace(2, 0x7f), 2, 5));
    // The first 9 bytes play no part: only the low 56 bits are random.
    let mut high = trace(3, 0x7f);
    high[8] = 0xff;
    high[..8].copy_from_slice(&[0xff; 8]);
    h.offer(root(high, 3, 5));
    assert_eq!(h.reasons(), vec![Reason::Ratio, Reason::None, Reason::None]);
    // Ratio 0 keeps nothing, not even the largest id; ratio 1 keeps the smallest.
    assert!(!under_ratio(&[0xff; 16], rejection_threshold(0.0)));
    assert!(under_ratio(&[0; 16], rejection_threshold(1.0)));
}

#[test]
fn the_ratio_keeps_about_its_share_of_random_trace_ids() {
    let threshold = rejection_threshold(0.2);
    let mut rng = fastrand::Rng::with_seed(7);
    let kept = (0..100_000).filter(|_| under_ratio(&rng.u128(..).to_be_bytes(), threshold)).count();
    assert!((19_000..21_000).contains(&kept), "{kept} of 100000 kept at 0.2");
}

#[test]
fn spans_ending_after_the_decision_follow_it() {
    let mut h = Harness::new(&config(0.0));
    let kept = trace(1, 0);
    let dropped = trace(2, 0);
    h.offer(Fake { error: true, ..root(kept, 1, 5) });
    h.offer(root(dropped, 2, 5));
    h.offer(child(kept, 3));
    h.offer(child(dropped, 4));
    h.offer(Fake { error: true, ..child(dropped, 5) });
    assert_eq!(h.exported_ids(), vec![1, 3]);
    assert_eq!(h.sampled_out, 3, "the late spans of the dropped trace are sampled out, even a failed one");
    assert_eq!(h.decisions.len(), 2, "late spans decide nothing anew");
    assert_eq!(h.sampler.status().pending_traces, 0);
}

#[test]
fn a_forgotten_decision_lets_a_late_span_wait_like_a_new_trace() {
    let mut cfg = config(0.0);
    cfg.max_pending_traces = 1; // remembers 4 decisions
    let mut h = Harness::new(&cfg);
    for tag in 0..5 {
        h.offer(root(trace(tag, 0), u32::from(tag), 5));
    }
    assert_eq!(h.sampler.status().remembered, 4);
    h.offer(child(trace(0, 0), 10));
    assert_eq!(h.sampler.status().pending_traces, 1, "trace 0 was forgotten: its span waits");
    h.offer(child(trace(4, 0), 11));
    assert_eq!(h.sampler.status().pending_traces, 1, "trace 4 is remembered: dropped at once");
    assert_eq!(h.sampled_out, 6);
}

#[test]
fn past_max_pending_traces_the_oldest_trace_is_kept() {
    let mut cfg = config(0.0);
    cfg.max_pending_traces = 2;
    let mut h = Harness::new(&cfg);
    h.offer(child(trace(1, 0), 1));
    h.offer(child(trace(2, 0), 2));
    h.offer(child(trace(1, 0), 3));
    assert!(h.decisions.is_empty());
    h.offer(child(trace(3, 0), 4));
    assert_eq!(h.decisions, vec![Decision { trace_id: trace(1, 0), reason: Reason::Overflow, spans: 2 }]);
    assert_eq!(h.exported_ids(), vec![1, 3]);
    assert_eq!(h.sampler.status().pending_traces, 2);
    // Its root, later, follows the decision.
    h.offer(root(trace(1, 0), 5, 5));
    assert_eq!(h.exported_ids(), vec![1, 3, 5]);
    assert_eq!(h.decisions.len(), 1);
}

#[test]
fn past_max_pending_bytes_the_oldest_traces_are_kept_until_the_rest_fits() {
    let mut cfg = config(0.0);
    cfg.max_pending_bytes = 1000;
    let mut h = Harness::new(&cfg);
    h.offer_sized(child(trace(1, 0), 1), 300);
    h.offer_sized(child(trace(2, 0), 2), 300);
    h.offer_sized(child(trace(3, 0), 3), 300);
    assert!(h.decisions.is_empty());
    h.offer_sized(child(trace(4, 0), 4), 500);
    assert_eq!(h.reasons(), vec![Reason::Overflow, Reason::Overflow]);
    assert_eq!(h.exported_ids(), vec![1, 2]);
    assert_eq!(h.sampler.status().pending_bytes, 800);
    // A single span larger than the bound leaves at once with its trace.
    h.offer_sized(child(trace(5, 0), 5), 5000);
    assert_eq!(h.sampler.status().pending_bytes, 0);
    assert_eq!(h.exported_ids(), vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_trace_that_waits_past_max_decision_wait_is_kept() {
    let mut h = Harness::new(&config(0.0));
    h.offer(child(trace(1, 0), 1));
    h.now += Duration::from_secs(6);
    h.offer(child(trace(2, 0), 2));
    h.now += Duration::from_millis(3999);
    h.expire();
    assert!(h.decisions.is_empty(), "not yet");
    h.now += Duration::from_millis(1);
    h.expire();
    assert_eq!(h.decisions, vec![Decision { trace_id: trace(1, 0), reason: Reason::Overflow, spans: 1 }]);
    h.now += Duration::from_secs(6);
    h.expire();
    assert_eq!(h.reasons(), vec![Reason::Overflow, Reason::Overflow]);
    assert_eq!(h.exported_ids(), vec![1, 2]);
}

#[test]
fn expiry_sees_past_traces_decided_since_they_arrived() {
    let mut h = Harness::new(&config(0.0));
    // Many traces come and go (their order entries turn stale) ahead of one that keeps waiting.
    for tag in 0..200u32 {
        let t = trace((tag % 250) as u8, (tag / 250) as u8 + 1);
        h.offer(child(t, tag));
        h.offer(root(t, tag + 1000, 5));
    }
    h.offer(child(trace(0, 0), 5000));
    for tag in 0..200u32 {
        let t = trace((tag % 250) as u8, 9);
        h.offer(root(t, tag + 2000, 5));
    }
    assert!(h.sampler.order.len() <= 2 * h.sampler.pending.len() + 64, "stale entries are compacted away");
    h.now += Duration::from_secs(10);
    h.expire();
    assert_eq!(h.exported_ids(), vec![5000]);
}

#[test]
fn a_flush_keeps_every_waiting_trace() {
    let mut h = Harness::new(&config(0.0));
    h.offer(child(trace(1, 0), 1));
    h.offer(child(trace(2, 0), 2));
    h.offer(child(trace(1, 0), 3));
    h.flush();
    assert_eq!(h.exported_ids(), vec![1, 3, 2]);
    assert_eq!(h.reasons(), vec![Reason::Overflow, Reason::Overflow]);
    assert_eq!(h.sampler.status(), TailStatus { remembered: 2, ..TailStatus::default() });
    assert!(h.sampler.order.is_empty());
}

#[test]
fn sdk_spans_tell_their_root_their_errors_and_their_duration() {
    use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry::KeyValue;
    let context = SpanContext::new(
        TraceId::from_bytes([7; 16]),
        SpanId::from_bytes([1; 8]),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let start = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let span = SpanData {
        span_context: context,
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: "root".into(),
        start_time: start,
        end_time: start + Duration::from_millis(250),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: opentelemetry_sdk::trace::SpanEvents::default(),
        links: opentelemetry_sdk::trace::SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: opentelemetry::InstrumentationScope::builder("test").build(),
    };
    assert_eq!(span.trace_id(), [7; 16]);
    assert!(span.is_local_root());
    assert!(!span.has_error());
    assert_eq!(TailSpan::duration(&span), Duration::from_millis(250));
    let remote_child =
        SpanData { parent_span_id: SpanId::from_bytes([2; 8]), parent_span_is_remote: true, ..span.clone() };
    assert!(remote_child.is_local_root(), "a remote parent makes a local root");
    let local_child = SpanData { parent_span_is_remote: false, ..remote_child.clone() };
    assert!(!local_child.is_local_root());
    let typed = SpanData { attributes: vec![KeyValue::new("error.type", "timeout")], ..span.clone() };
    assert!(typed.has_error());
    let failed = SpanData { status: Status::error("boom"), ..span };
    assert!(failed.has_error());
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Op {
    /// A span of trace `trace` (one of a few), a root or not, failed or not, slow or not.
    Span {
        trace: u8,
        root: bool,
        error: bool,
        slow: bool,
        size: usize,
    },
    /// Time passes, then the wait limit is applied.
    Tick(u64),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..12, prop::bool::weighted(0.3), prop::bool::weighted(0.1), prop::bool::weighted(0.1), 1usize..400)
            .prop_map(|(trace, root, error, slow, size)| Op::Span { trace, root, error, slow, size }),
        1 => (0u64..3000).prop_map(Op::Tick),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    /// Every offered span is exported, sampled out or still waiting; the bounds hold after every
    /// step; a decided trace's spans all go one way while its decision is remembered; and a trace
    /// decided at its root is decided as the model says.
    #[test]
    fn every_span_is_exported_sampled_out_or_waiting(ops in prop::collection::vec(op(), 1..300)) {
        let cfg = SamplingConfig {
            max_pending_traces: 4,
            max_pending_bytes: 1500,
            max_decision_wait: Duration::from_secs(5),
            keep_ratio: 0.5,
            ..config(0.5)
        };
        let mut h = Harness::new(&cfg);
        let mut offered = 0u64;
        // The model: per waiting trace, whether a span failed.
        let mut failed: HashMap<TraceIdBytes, bool> = HashMap::new();
        let mut fate: HashMap<TraceIdBytes, bool> = HashMap::new();
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Span { trace: tag, root, error, slow, size } => {
                    let t = trace(tag, tag.wrapping_mul(23));
                    let before = h.decisions.len();
                    next_id += 1;
                    let span = Fake { trace: t, id: next_id, root, error, millis: if slow { 100 } else { 5 } };
                    h.offer_sized(span, size);
                    offered += 1;
                    if !fate.contains_key(&t) {
                        let any_error = *failed.entry(t).or_default() || error;
                        failed.insert(t, any_error);
                        let own = h.decisions[before..].iter().find(|d| d.trace_id == t);
                        if root && own.is_some_and(|d| d.reason != Reason::Overflow) {
                            let expected = if any_error {
                                Reason::Error
                            } else if slow {
                                Reason::Slow
                            } else if under_ratio(&t, rejection_threshold(0.5)) {
                                Reason::Ratio
                            } else {
                                Reason::None
                            };
                            prop_assert_eq!(own.map(|d| d.reason), Some(expected));
                        }
                    }
                }
                Op::Tick(millis) => {
                    h.now += Duration::from_millis(millis);
                    h.expire();
                }
                Op::Flush => h.flush(),
            }
            for decision in &h.decisions {
                fate.insert(decision.trace_id, decision.reason.keeps());
                failed.remove(&decision.trace_id);
            }
            let status = h.sampler.status();
            prop_assert!(status.pending_traces <= 4 && status.pending_bytes <= 1500, "{:?}", status);
            prop_assert_eq!(h.export.len() as u64 + h.sampled_out + status.pending_spans as u64, offered);
            prop_assert!(h.export.iter().all(|span| fate.get(&span.trace) == Some(&true)));
        }
        h.flush();
        prop_assert_eq!(h.export.len() as u64 + h.sampled_out, offered);
        prop_assert!(h.decisions.iter().map(|d| d.spans as u64).sum::<u64>() <= offered);
    }
}
