//! Tail sampling's decisions, apart from their effects: a plain struct fed with finished spans
//! and the clock, answering which spans leave for export and which traces were decided how.
//!
//! The spans of a local trace wait, grouped by trace id, until its local root (a span without a
//! parent, or whose parent is remote) ends. The trace is then kept when any of its spans has an
//! error status or an `error.type` attribute ([`Reason::Error`]), when the root lasted at least
//! `keep_slower_than` ([`Reason::Slow`]), or when its trace id falls under `keep_ratio`
//! ([`Reason::Ratio`]); otherwise it is dropped ([`Reason::None`]). What cannot wait is kept (fail
//! open, [`Reason::Overflow`]): the oldest waiting trace once `max_pending_traces` or
//! `max_pending_bytes` is passed, a trace that waited past `max_decision_wait`, and every waiting
//! trace at a flush. Spans that end after their trace was decided follow the decision while it is
//! remembered (the last `decision_memory` decisions); a span of a forgotten trace waits like a new
//! one.
//!
//! The ratio is decided by the trace id alone, as the OpenTelemetry probability sampler does: the
//! low 56 bits of the id (the part the W3C `random` trace-id flag promises to be random), read as
//! a big-endian integer, keep the trace when they are at least the rejection threshold
//! `(1 - keep_ratio) × 2^56`. Every process using the same ratio keeps the same traces.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, Status};
use opentelemetry_sdk::trace::SpanData;
use rustc_hash::FxHashMap;

use crate::sampling::{Reason, SamplingConfig, TraceIdBytes};

/// 2^56: the range of the random part of a trace id.
const RANDOM_RANGE: f64 = (1u64 << 56) as f64;

/// What the sampler needs to know about a finished span.
pub trait TailSpan {
    /// The span's trace id.
    fn trace_id(&self) -> TraceIdBytes;
    /// Whether the span is its trace's local root: no parent, or a remote one.
    fn is_local_root(&self) -> bool;
    /// Whether the span failed: an error status or an `error.type` attribute.
    fn has_error(&self) -> bool;
    /// How long the span lasted.
    fn duration(&self) -> Duration;
}

impl TailSpan for SpanData {
    #[inline]
    fn trace_id(&self) -> TraceIdBytes {
        self.span_context.trace_id().to_bytes()
    }

    #[inline]
    fn is_local_root(&self) -> bool {
        self.parent_span_id == SpanId::INVALID || self.parent_span_is_remote
    }

    #[inline]
    fn has_error(&self) -> bool {
        matches!(self.status, Status::Error { .. }) || self.attributes.iter().any(|kv| kv.key.as_str() == "error.type")
    }

    #[inline]
    fn duration(&self) -> Duration {
        self.end_time.duration_since(self.start_time).unwrap_or_default()
    }
}

/// One decided trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The trace.
    pub trace_id: TraceIdBytes,
    /// Why it was kept, or [`Reason::None`] when it was dropped.
    pub reason: Reason,
    /// Its spans waiting at the decision (exported when kept, sampled out when dropped).
    pub spans: usize,
}

/// What the caller does after feeding the sampler: export `export` (appended to its batch),
/// count `decisions` and the `sampled_out` spans.
#[derive(Debug)]
pub struct Actions<'a, S> {
    /// Spans to export, in the order they were released.
    pub export: &'a mut Vec<S>,
    /// Traces decided.
    pub decisions: &'a mut Vec<Decision>,
    /// Spans not exported because their trace was dropped.
    pub sampled_out: &'a mut u64,
}

/// A local trace waiting for its root.
#[derive(Debug)]
struct Pending<S> {
    spans: Vec<S>,
    bytes: usize,
    error: bool,
    since: Instant,
    /// Its place in arrival order (entries of `order` with another number are stale).
    seq: u64,
}

/// The figures `/health` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailStatus {
    /// Local traces waiting for their root.
    pub pending_traces: usize,
    /// Their spans.
    pub pending_spans: usize,
    /// Their estimated bytes.
    pub pending_bytes: usize,
    /// Decisions remembered for late spans.
    pub remembered: usize,
}

/// Tail sampling's state: waiting traces and remembered decisions.
#[derive(Debug)]
pub struct TailSampler<S> {
    reject_below: u64,
    keep_slower_than: Duration,
    max_traces: usize,
    max_bytes: usize,
    max_wait: Duration,
    pending: FxHashMap<TraceIdBytes, Pending<S>>,
    /// Waiting traces in arrival order, with stale entries of traces decided since.
    order: VecDeque<(TraceIdBytes, u64)>,
    next_seq: u64,
    pending_spans: usize,
    pending_bytes: usize,
    memory: usize,
    decided: FxHashMap<TraceIdBytes, bool>,
    decided_order: VecDeque<TraceIdBytes>,
}

/// Whether `trace_id` falls under the ratio whose rejection threshold is `reject_below`.
#[inline]
pub fn under_ratio(trace_id: &TraceIdBytes, reject_below: u64) -> bool {
    let mut low = [0u8; 8];
    low[1..].copy_from_slice(&trace_id[9..]);
    u64::from_be_bytes(low) >= reject_below
}

/// The rejection threshold of `ratio` over the 56 random bits: `(1 - ratio) × 2^56`, rounded.
pub fn rejection_threshold(ratio: f64) -> u64 {
    ((1.0 - ratio.clamp(0.0, 1.0)) * RANDOM_RANGE).round() as u64
}

impl<S: TailSpan> TailSampler<S> {
    /// A sampler with the bounds and rules of `config`.
    pub fn new(config: &SamplingConfig) -> Self {
        Self {
            reject_below: rejection_threshold(config.keep_ratio),
            keep_slower_than: config.keep_slower_than,
            max_traces: config.max_pending_traces.max(1),
            max_bytes: usize::try_from(config.max_pending_bytes).unwrap_or(usize::MAX),
            max_wait: config.max_decision_wait,
            pending: FxHashMap::default(),
            order: VecDeque::new(),
            next_seq: 0,
            pending_spans: 0,
            pending_bytes: 0,
            memory: config.decision_memory().max(1),
            decided: FxHashMap::default(),
            decided_order: VecDeque::new(),
        }
    }

    /// Takes one finished span of `size` estimated bytes at `now`.
    pub fn offer(&mut self, span: S, size: usize, now: Instant, actions: &mut Actions<'_, S>) {
        let trace_id = span.trace_id();
        if let Some(&kept) = self.decided.get(&trace_id) {
            if kept {
                actions.export.push(span);
            } else {
                *actions.sampled_out += 1;
            }
            return;
        }
        let root = span.is_local_root();
        let error = span.has_error();
        let slow = root && span.duration() >= self.keep_slower_than;
        let (next_seq, order) = (&mut self.next_seq, &mut self.order);
        let pending = self.pending.entry(trace_id).or_insert_with(|| {
            let seq = *next_seq;
            *next_seq += 1;
            order.push_back((trace_id, seq));
            Pending { spans: Vec::new(), bytes: 0, error: false, since: now, seq }
        });
        pending.spans.push(span);
        pending.bytes += size;
        pending.error |= error;
        self.pending_spans += 1;
        self.pending_bytes += size;
        if root {
            let reason = if pending.error {
                Reason::Error
            } else if slow {
                Reason::Slow
            } else if under_ratio(&trace_id, self.reject_below) {
                Reason::Ratio
            } else {
                Reason::None
            };
            self.decide(trace_id, reason, actions);
        }
        while self.pending.len() > self.max_traces || self.pending_bytes > self.max_bytes {
            if !self.decide_oldest(actions) {
                break;
            }
        }
        self.compact();
    }

    /// Keeps every trace that has waited `max_decision_wait` or longer at `now`.
    pub fn expire(&mut self, now: Instant, actions: &mut Actions<'_, S>) {
        while let Some(&(trace_id, seq)) = self.order.front() {
            match self.pending.get(&trace_id) {
                Some(pending) if pending.seq == seq => {
                    if now.saturating_duration_since(pending.since) < self.max_wait {
                        break;
                    }
                    self.decide(trace_id, Reason::Overflow, actions);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
        self.compact();
    }

    /// Keeps every waiting trace (a flush or shutdown: nothing may stay behind).
    pub fn flush(&mut self, actions: &mut Actions<'_, S>) {
        while self.decide_oldest(actions) {}
        self.order.clear();
    }

    /// The figures `/health` shows.
    pub fn status(&self) -> TailStatus {
        TailStatus {
            pending_traces: self.pending.len(),
            pending_spans: self.pending_spans,
            pending_bytes: self.pending_bytes,
            remembered: self.decided.len(),
        }
    }

    /// Decides the oldest waiting trace as kept (fail open); false when none waits.
    fn decide_oldest(&mut self, actions: &mut Actions<'_, S>) -> bool {
        while let Some((trace_id, seq)) = self.order.pop_front() {
            if self.pending.get(&trace_id).is_some_and(|pending| pending.seq == seq) {
                self.decide(trace_id, Reason::Overflow, actions);
                return true;
            }
        }
        false
    }

    /// Decides a waiting trace: releases or drops its spans and remembers the decision.
    fn decide(&mut self, trace_id: TraceIdBytes, reason: Reason, actions: &mut Actions<'_, S>) {
        let Some(pending) = self.pending.remove(&trace_id) else { return };
        let spans = pending.spans.len();
        self.pending_spans -= spans;
        self.pending_bytes -= pending.bytes;
        if reason.keeps() {
            actions.export.extend(pending.spans);
        } else {
            *actions.sampled_out += spans as u64;
        }
        actions.decisions.push(Decision { trace_id, reason, spans });
        self.remember(trace_id, reason.keeps());
    }

    fn remember(&mut self, trace_id: TraceIdBytes, kept: bool) {
        if self.decided.insert(trace_id, kept).is_none() {
            self.decided_order.push_back(trace_id);
            if self.decided_order.len() > self.memory {
                if let Some(oldest) = self.decided_order.pop_front() {
                    self.decided.remove(&oldest);
                }
            }
        }
    }

    /// Drops stale entries of the arrival order once they outnumber the waiting traces, so it
    /// stays within twice the waiting traces (amortised constant time per span).
    fn compact(&mut self) {
        if self.order.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.order.retain(|(trace_id, seq)| pending.get(trace_id).is_some_and(|p| p.seq == *seq));
        }
    }
}

#[cfg(test)]
#[path = "tail_tests.rs"]
mod tests;
