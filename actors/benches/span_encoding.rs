//! What the span buffer pays to turn finished spans into an OTLP `ExportTraceServiceRequest`:
//! the streaming encoder against the SDK path (`group_spans_by_resource_and_scope` into
//! opentelemetry-proto structs, then prost), in the same run, per span.
//!
//! `cargo bench -p metamcp-telemetry-actors --bench span_encoding -- --warm-up-time 1 --measurement-time 3`
//!
//! The span is the typical server span of an MCP request (10 attributes; `support/spans.rs`).
//! "limits" is what the span buffer did before the streaming encoder: `limits::apply` with the
//! default 4 KiB value length, then the SDK path; the streaming encoder applies the same limit
//! while it writes. Every routine gets its own copy of the batch and drops it, as the span
//! buffer does; building the copies is not timed.
//!
//! Last figures (see the bottom of this header for the machine):
//!
//! | bench | median | per span | streaming ÷ SDK path |
//! |---|---|---|---|
//! | (filled in from the last run) | | | |
//!
//! Instructions per span (`valgrind --tool=callgrind`, the `span_encoding_instructions` example,
//! slope between 51 200 and 102 400 spans):
//! (filled in from the last run)

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
