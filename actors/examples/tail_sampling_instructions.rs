//! Feeds N typical server spans, as traces of four (three local children, then their local root),
//! through the span buffer's path for each sampling mode, for counting instructions per span
//! under callgrind: `head` appends each span to the batch (what the span buffer does under head
//! sampling), `tail` offers it to the tail sampler (`keep_ratio = 0.1`, nothing slow or failed:
//! one trace in ten is kept, the others' spans are dropped there). Run it for N and 2N spans,
//! collecting only inside `feed_*`, and take the slope.
//!
//! ```text
//! cargo build --release -p metamcp-telemetry-actors --example tail_sampling_instructions
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*feed_*' \
//!     target/release/examples/tail_sampling_instructions tail 51200
//! ```
//!
//! Both paths include dropping the spans that leave the batch or the sampler (the head path
//! drops every span after its batch, as the span buffer does after encoding). Counting the
//! decisions in the self-metrics and recording kept traces for exemplars happen in the span
//! buffer, once per decided trace, and are not counted here.
//!
//! Last figures (2-core AMD EPYC VM, rustc 1.95, release profile; slope between 51 200 and
//! 102 400 spans, 10-attribute server spans in traces of four):
//!
//! | path | instructions per span |
//! |---|---|
//! | head (push to the batch, drop after it) | 797 |
//! | tail (`keep_ratio = 0.1`: group by trace id, look for `error.type`, decide at the root, drop 90 %) | 1 396 |
//! | tail's extra cost | about 600 |
//!
//! Under head sampling (the default) the span buffer's only extra work per span is one branch on
//! the absent sampler.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use metamcp_telemetry_actors::sampling::{SamplingConfig, SamplingMode};
use metamcp_telemetry_actors::span_buffer::tail::{Actions, TailSampler};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::SpanData;

#[path = "../benches/support/spans.rs"]
#[allow(dead_code)] // the bench's helpers this example does not need
mod spans;

const BATCH: usize = 512;
const SPANS_PER_TRACE: u64 = 4;

/// `count` spans: traces of three children and their root, the root last.
fn traces(count: usize) -> Vec<SpanData> {
    (0..count as u64)
        .map(|index| {
            let mut span = spans::server_span(index);
            let trace = index / SPANS_PER_TRACE;
            let is_root = index % SPANS_PER_TRACE == SPANS_PER_TRACE - 1;
            let trace_id =
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128.wrapping_mul(u128::from(trace) + 1));
            span.span_context = SpanContext::new(
                trace_id,
                span.span_context.span_id(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            );
            if !is_root {
                span.parent_span_id = SpanId::from(0x1111_2222_3333_4444 ^ trace);
                span.parent_span_is_remote = false;
            }
            span
        })
        .collect()
}

/// The head path: every span joins the batch; a full batch leaves (dropped here).
#[inline(never)]
fn feed_head(spans: Vec<SpanData>, batch: &mut Vec<SpanData>) -> usize {
    let mut sent = 0;
    for span in spans {
        batch.push(span);
        if batch.len() >= BATCH {
            sent += batch.len();
            batch.clear();
        }
    }
    sent
}

/// The tail path: every span goes through the sampler; kept spans join the batch.
#[inline(never)]
fn feed_tail(spans: Vec<(SpanData, usize)>, sampler: &mut TailSampler<SpanData>, batch: &mut Vec<SpanData>) -> usize {
    let now = Instant::now();
    let mut sent = 0;
    let mut decisions = Vec::new();
    let mut sampled_out = 0;
    for (span, size) in spans {
        sampler.offer(
            span,
            size,
            now,
            &mut Actions { export: batch, decisions: &mut decisions, sampled_out: &mut sampled_out },
        );
        decisions.clear();
        if batch.len() >= BATCH {
            sent += batch.len();
            batch.clear();
        }
    }
    sent
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(Ok(count))) = (args.get(1), args.get(2).map(|n| n.parse::<usize>())) else {
        eprintln!("usage: tail_sampling_instructions <head|tail> <spans>");
        return ExitCode::FAILURE;
    };
    let spans = traces(count);
    let mut batch = Vec::with_capacity(BATCH);
    let sent = match path.as_str() {
        "head" => feed_head(spans, &mut batch),
        "tail" => {
            let config = SamplingConfig {
                mode: SamplingMode::Tail,
                keep_ratio: 0.1,
                keep_slower_than: Duration::from_secs(60),
                ..SamplingConfig::default()
            };
            let mut sampler = TailSampler::new(&config);
            let sized = spans
                .into_iter()
                .map(|span| {
                    let size = metamcp_telemetry_actors::ingress::estimated_size(&span);
                    (span, size)
                })
                .collect();
            feed_tail(sized, &mut sampler, &mut batch)
        }
        other => {
            eprintln!("unknown path {other:?}: head or tail");
            return ExitCode::FAILURE;
        }
    };
    println!("{path}: {count} spans, {} sent in full batches, {} in the last", sent, batch.len());
    ExitCode::SUCCESS
}
