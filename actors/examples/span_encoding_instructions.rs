//! Encodes N typical server spans, in batches of 512, with the streaming encoder (`streaming`)
//! or the SDK path (`sdk`), for counting instructions per span under callgrind: run it for N and
//! 2N spans, collecting only inside the encoding functions, and take the slope.
//!
//! ```text
//! cargo build --release -p metamcp-telemetry-actors --example span_encoding_instructions
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*encode_batch_*' \
//!     target/release/examples/span_encoding_instructions streaming 51200
//! ```

use std::process::ExitCode;

use metamcp_telemetry_actors::otlp::TraceEncoder;
use metamcp_telemetry_actors::span_buffer::limits::DEFAULT_MAX_ATTRIBUTE_VALUE_LENGTH;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::SpanData;
use prost::Message as _;

#[path = "../benches/support/spans.rs"]
mod spans;

const BATCH: usize = 512;

/// The SDK path: proto structs, then prost; the batch is consumed.
#[inline(never)]
fn encode_batch_sdk(spans: Vec<SpanData>, resource: &ResourceAttributesWithSchema) -> Vec<u8> {
    ExportTraceServiceRequest { resource_spans: group_spans_by_resource_and_scope(spans, resource) }.encode_to_vec()
}

/// The streaming encoder; the batch is dropped here too, as the span buffer drops it.
#[inline(never)]
fn encode_batch_streaming(spans: Vec<SpanData>, encoder: &mut TraceEncoder) -> Vec<u8> {
    let encoded = encoder.encode(&spans);
    drop(spans);
    encoded.body
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(Ok(count))) = (args.get(1), args.get(2).map(|n| n.parse::<usize>())) else {
        eprintln!("usage: span_encoding_instructions <streaming|sdk> <spans>");
        return ExitCode::FAILURE;
    };
    let resource = spans::resource();
    let template = spans::server_spans(BATCH);
    let mut encoder = TraceEncoder::new(&resource).with_max_value_length(DEFAULT_MAX_ATTRIBUTE_VALUE_LENGTH);
    let mut bytes = 0usize;
    for _ in 0..count.div_ceil(BATCH) {
        let batch = template.clone();
        let body = match path.as_str() {
            "streaming" => encode_batch_streaming(batch, &mut encoder),
            "sdk" => encode_batch_sdk(batch, &resource),
            other => {
                eprintln!("unknown path {other:?}: streaming or sdk");
                return ExitCode::FAILURE;
            }
        };
        bytes += body.len();
    }
    println!("{path}: {count} spans, {bytes} bytes");
    ExitCode::SUCCESS
}
