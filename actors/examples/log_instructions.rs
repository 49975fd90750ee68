//! Counts instructions per log record under callgrind: `submit` hands N typical access records
//! to a [`LogIngress`] (a request thread's cost; the queue holds them all, nobody drains it),
//! `encode` turns N records into `ExportLogsServiceRequest`s in batches of 512 (the log
//! buffer's cost, dropping the batch included). Run it for N and 2N records, collecting only
//! inside the measured function, and take the slope.
//!
//! ```text
//! cargo build --release -p metamcp-telemetry-actors --example log_instructions
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*submit_records*' \
//!     target/release/examples/log_instructions submit 20000
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*encode_records*' \
//!     target/release/examples/log_instructions encode 51200
//! ```
//!
//! Last figures (rustc 1.95, release profile, valgrind 3.19; N = 20 000 and 40 000 for
//! `submit`, 51 200 and 102 400 for `encode`): `submit` 215 instructions per record (the
//! estimate, the byte reservation, the `try_send` and moving the record in; one thread, so no
//! contention on the queue); `encode` 2 022 per record, of which about 590 free the batch's
//! strings and vectors, for 260 encoded bytes per record.

use std::process::ExitCode;

use metamcp_telemetry_actors::log_buffer::{log_channel, LogIngress, LogRecord, LogValue, Severity};
use metamcp_telemetry_actors::otlp::LogEncoder;
use metamcp_telemetry_actors::self_metrics::SelfMetrics;
use opentelemetry::KeyValue;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;

const BATCH: usize = 512;

/// A typical MCP access record: a short message, six fields, in a sampled trace.
fn access_record(i: usize) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
        observed_time_unix_nano: 1_700_000_000_000_000_100 + i as u64,
        severity: Severity::Info,
        body: LogValue::Static("mcp request"),
        attributes: vec![
            ("mcp.method.name", LogValue::Static("tools/call")),
            ("gen_ai.tool.name", LogValue::Str("calculator__add".to_owned())),
            ("metamcp.endpoint", LogValue::Str("default".to_owned())),
            ("outcome", LogValue::Static("ok")),
            ("duration", LogValue::F64(0.0123)),
            ("jsonrpc.request.id", LogValue::I64(i as i64)),
        ],
        trace_id: [0x4b; 16],
        span_id: [0x2c; 8],
        trace_flags: 1,
        scope: "mcp.access",
        event_name: Some("mcp.access"),
    }
}

#[inline(never)]
fn submit_records(ingress: &LogIngress, records: Vec<LogRecord>) -> usize {
    let mut accepted = 0;
    for record in records {
        accepted += usize::from(ingress.submit(record));
    }
    accepted
}

#[inline(never)]
fn encode_records(encoder: &mut LogEncoder, records: Vec<LogRecord>) -> usize {
    let body = encoder.encode(&records);
    drop(records);
    body.len()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(Ok(count))) = (args.get(1), args.get(2).map(|n| n.parse::<usize>())) else {
        eprintln!("usage: log_instructions <submit|encode> <records>");
        return ExitCode::FAILURE;
    };
    match mode.as_str() {
        "submit" => {
            let (ingress, rx, _wake, _bytes) = log_channel(count, usize::MAX / 2, BATCH, SelfMetrics::unregistered());
            let records: Vec<LogRecord> = (0..count).map(access_record).collect();
            let accepted = submit_records(&ingress, records);
            println!("{accepted} records accepted, {} queued", rx.len());
        }
        "encode" => {
            let resource = opentelemetry_sdk::Resource::builder_empty()
                .with_attributes([KeyValue::new("service.name", "metamcp"), KeyValue::new("service.version", "1")])
                .build();
            let mut encoder = LogEncoder::new(&ResourceAttributesWithSchema::from(&resource));
            let mut bytes = 0;
            for start in (0..count).step_by(BATCH) {
                let batch: Vec<LogRecord> = (start..(start + BATCH).min(count)).map(access_record).collect();
                bytes += encode_records(&mut encoder, batch);
            }
            println!("{count} records, {bytes} bytes");
        }
        other => {
            eprintln!("unknown mode {other:?}: submit or encode");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
