//! Which traces the tail sampler kept, for the readers that may only point at kept traces
//! (exemplars on `/metrics` and on OTLP histogram points).
//!
//! With head sampling (the default) every sampled span is exported, so every sampled trace may be
//! referred to. With tail sampling a trace is only exported when the sampler keeps it at its local
//! root's end; the sampler records each kept trace id here, and a reader asks before it shows one.
//! The table is bounded: it remembers the most recent `capacity` kept traces, and a trace it no
//! longer remembers is treated as not kept (an exemplar is left out rather than pointing at a
//! trace that may not exist).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// A trace id as it travels on the wire: 16 bytes.
pub type TraceIdBytes = [u8; 16];

/// Kept-trace decisions shared between the tail sampler (writer) and exemplar readers.
#[derive(Debug)]
pub struct TraceDecisions {
    /// Whether tail sampling decides; `false` means every sampled trace is exported.
    tail: bool,
    capacity: usize,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    set: HashSet<TraceIdBytes>,
    order: VecDeque<TraceIdBytes>,
}

impl TraceDecisions {
    /// Decisions for head sampling: every sampled trace is exported.
    pub fn head() -> Self {
        Self { tail: false, capacity: 0, kept: Mutex::new(Kept::default()) }
    }

    /// Decisions for tail sampling, remembering the last `capacity` kept traces (at least one).
    pub fn tail(capacity: usize) -> Self {
        Self { tail: true, capacity: capacity.max(1), kept: Mutex::new(Kept::default()) }
    }

    /// Whether the tail sampler decides which traces are exported.
    pub fn is_tail(&self) -> bool {
        self.tail
    }

    /// Records that the trace was kept (its spans are exported). A no-op under head sampling.
    pub fn record_kept(&self, trace_id: TraceIdBytes) {
        if !self.tail {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !kept.set.insert(trace_id) {
            return;
        }
        kept.order.push_back(trace_id);
        if kept.order.len() > self.capacity {
            if let Some(oldest) = kept.order.pop_front() {
                kept.set.remove(&oldest);
            }
        }
    }

    /// Whether a sampled span of this trace may be referred to (an exemplar): always under head
    /// sampling; under tail sampling only when the trace was kept and is still remembered.
    pub fn may_refer_to(&self, trace_id: &TraceIdBytes) -> bool {
        if !self.tail {
            return true;
        }
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).set.contains(trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_sampling_refers_to_every_trace() {
        let decisions = TraceDecisions::head();
        decisions.record_kept([1; 16]);
        assert!(decisions.may_refer_to(&[2; 16]));
        assert!(!decisions.is_tail());
    }

    #[test]
    fn tail_sampling_refers_only_to_remembered_kept_traces() {
        let decisions = TraceDecisions::tail(2);
        assert!(!decisions.may_refer_to(&[1; 16]));
        decisions.record_kept([1; 16]);
        decisions.record_kept([2; 16]);
        decisions.record_kept([2; 16]);
        assert!(decisions.may_refer_to(&[1; 16]) && decisions.may_refer_to(&[2; 16]));
        decisions.record_kept([3; 16]);
        assert!(!decisions.may_refer_to(&[1; 16]), "the oldest kept trace is forgotten past the bound");
        assert!(decisions.may_refer_to(&[2; 16]) && decisions.may_refer_to(&[3; 16]));
    }
}
