//! What the span buffer pays to turn finished spans into an OTLP `ExportTraceServiceRequest`:
//! the streaming encoder against the SDK path (`group_spans_by_resource_and_scope` into
//! opentelemetry-proto structs, then prost), in the same run, per span.
//!
//! `cargo bench -p metamcp-telemetry-actors --bench span_encoding -- --warm-up-time 1 --measurement-time 5`
//!
//! The span is the typical server span of an MCP request (10 attributes; `support/spans.rs`).
//! "limits" is what the span buffer did before the streaming encoder: `limits::apply` with the
//! default 4 KiB value length, then the SDK path; the streaming encoder applies the same limit
//! while it writes. Every routine gets its own copy of the batch and drops it, as the span
//! buffer does; building the copies is not timed.
//!
//! Last figures, medians from one run (2-core AMD EPYC VM shared with other builds, load average
//! about 2; rustc 1.95, bench profile, `-- --warm-up-time 1 --measurement-time 5`):
//!
//! | bench | median | per span | streaming ÷ this |
//! |---|---|---|---|
//! | `sdk_path/1` | 3.71 µs | 3 710 ns | 0.11 |
//! | `sdk_path_with_limits/1` | 3.73 µs | 3 728 ns | 0.11 |
//! | `streaming/1` | 0.42 µs | 416 ns | — |
//! | `sdk_path/512` | 1.01 ms | 1 976 ns | 0.13 |
//! | `sdk_path_with_limits/512` | 1.29 ms | 2 511 ns | 0.11 |
//! | `streaming/512` | 136 µs | 266 ns | — |
//!
//! Wall-clock figures on this machine move with its other load: over four runs the streaming ÷
//! SDK path ratio per span was 0.07–0.13 for batches of 512 and 0.07–0.11 for a single span.
//!
//! Instructions per span, which do not move with the load (`valgrind --tool=callgrind
//! --collect-atstart=no --toggle-collect='*encode_batch_*'` on the `span_encoding_instructions`
//! example, batches of 512, slope between 51 200 and 102 400 spans; both figures include
//! dropping the batch's `SpanData`, about 650 instructions per span):
//!
//! | path | instructions per span |
//! |---|---|
//! | SDK path (`group_spans_by_resource_and_scope` + prost) | 23 322 |
//! | streaming encoder | 2 250 (about 1 600 encoding, 650 dropping the spans) |
//! | ratio | 0.096 |
//!
//! Two passes (a size pass mirroring the write pass) were weighed against patching lengths in
//! after the body: a size pass alone over the same span costs about 660 instructions, patching
//! costs about 20 per span, so the encoder patches.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use metamcp_telemetry_actors::otlp::TraceEncoder;
use metamcp_telemetry_actors::self_metrics::SelfMetrics;
use metamcp_telemetry_actors::span_buffer::limits::{self, DEFAULT_MAX_ATTRIBUTE_VALUE_LENGTH};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use prost::Message as _;

#[path = "support/spans.rs"]
mod spans;

fn span_encoding(c: &mut Criterion) {
    let resource = spans::resource();
    let metrics = SelfMetrics::unregistered();
    let mut group = c.benchmark_group("span_encoding");
    for count in [1usize, 512] {
        let batch = spans::server_spans(count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("sdk_path/{count}"), |b| {
            b.iter_batched(
                || batch.clone(),
                |spans| {
                    let request = ExportTraceServiceRequest {
                        resource_spans: group_spans_by_resource_and_scope(spans, &resource),
                    };
                    request.encode_to_vec()
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("sdk_path_with_limits/{count}"), |b| {
            b.iter_batched(
                || batch.clone(),
                |mut spans| {
                    limits::apply(&mut spans, DEFAULT_MAX_ATTRIBUTE_VALUE_LENGTH, &metrics);
                    let request = ExportTraceServiceRequest {
                        resource_spans: group_spans_by_resource_and_scope(spans, &resource),
                    };
                    request.encode_to_vec()
                },
                BatchSize::SmallInput,
            )
        });
        let mut encoder = TraceEncoder::new(&resource).with_max_value_length(DEFAULT_MAX_ATTRIBUTE_VALUE_LENGTH);
        group.bench_function(format!("streaming/{count}"), |b| {
            b.iter_batched(
                || batch.clone(),
                |spans| {
                    let encoded = encoder.encode(black_box(&spans));
                    limits::count(&encoded.limits, &metrics);
                    drop(spans);
                    encoded.body
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, span_encoding);
criterion_main!(benches);
