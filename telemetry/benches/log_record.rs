//! What a log event costs the request thread that emits it once the OTLP log layer is installed:
//! `tracing::info!` with three fields (a string, an integer, a `%` display value) and a message,
//! inside an OpenTelemetry span context, through `OtlpLogLayer` (filtered at `info`) into a live
//! log ingress — the record built (fields, body, trace and span ids, timestamps), redacted and
//! handed over with one `try_send`. The goal is ≤ 150 ns median
//! (opentelemetry-appender-tracing takes about 155 ns per event).
//!
//! `cargo bench -p metamcp-telemetry --bench log_record`
//!
//! | bench | what |
//! |---|---|
//! | `baseline: event, no layer` | the same event under a bare registry: tracing's own dispatch |
//! | `layer -> ingress, drained` | the layer sending to a channel drained between bursts of 4096 |
//! | `layer -> global slot -> pipeline` | the layer as the binary installs it (`OtlpLogLayer::global`), into a running pipeline's log buffer |
//!
//! Instruction counts (repeatable where wall-clock figures move ±15 % on these machines): with
//! `BENCH_EVENTS=N` the binary emits N events into the drained ingress and exits, so
//! `valgrind --tool=callgrind <bench binary> ` at two values of N gives instructions per event
//! as the slope `(I(N2) - I(N1)) / (N2 - N1)`.
//!
//! Last figures (2-core VM, rustc 1.95, bench profile, system allocator, callgrind 3.19, N = 2 000
//! and 12 000): 2 831 instructions per event as the slope, of which 2 077 in the layer's
//! `on_event` (formatting the message and the `%` field ≈ 810 with their allocations, the `&str`
//! field ≈ 285, the hand-over to the ingress ≈ 230, glibc `malloc` ≈ 110 per allocation, four per
//! record) and ≈ 600 in the consumer's drop of the record. Skipping `redact`'s substring search for
//! values without a `:` took it from 4 010. Wall clock on a quiet machine (same VM, system
//! allocator, `--warm-up-time 1 --measurement-time 4`): baseline 8.9 ns, layer -> ingress
//! 161.8 ns, layer -> global slot -> pipeline 748.6 ns (the pipeline's threads share the two
//! cores). The service binary runs on mimalloc, whose allocations cost a fraction of glibc's.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use crossbeam_channel::Receiver;
use metamcp_telemetry::actors::log_buffer::{log_channel, LogIngress, LogRecord};
use metamcp_telemetry::actors::self_metrics::SelfMetrics;
use metamcp_telemetry::otlp_logs::OtlpLogLayer;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

#[path = "common.rs"]
mod common;

/// Events per timed burst: far below the channel's capacity, so none is dropped.
const BURST: u64 = 4096;

/// The event every bench emits.
#[inline(always)]
fn emit(i: u64) {
    tracing::info!(tool = "calculator", attempt = i, endpoint = %"default", "tool call finished");
}

/// An attached OpenTelemetry context with a valid, sampled span, as inside a request.
fn in_span() -> opentelemetry::ContextGuard {
    let span = SpanContext::new(
        TraceId::from_bytes([0x4b; 16]),
        SpanId::from_bytes([0x2c; 8]),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    Context::new().with_remote_span_context(span).attach()
}

fn channel() -> (LogIngress, Receiver<LogRecord>) {
    let (ingress, rx, _wake, _bytes) = log_channel(1 << 16, 1 << 30, 1 << 16, SelfMetrics::unregistered());
    (ingress, rx)
}

/// Times bursts of [`BURST`] events, draining `rx` (when given) between them, outside the clock.
fn bursts(iters: u64, rx: Option<&Receiver<LogRecord>>) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = BURST.min(iters - done);
        let start = Instant::now();
        for i in 0..n {
            emit(black_box(i));
        }
        total += start.elapsed();
        if let Some(rx) = rx {
            for record in rx.try_iter() {
                drop(black_box(record));
            }
        }
        done += n;
    }
    total
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_record");
    let _cx = in_span();
    {
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry());
        group.bench_function("baseline: event, no layer", |b| b.iter_custom(|iters| bursts(iters, None)));
    }
    {
        let (ingress, rx) = channel();
        let layer = OtlpLogLayer::to_ingress(ingress).with_filter(EnvFilter::new("info"));
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        group.bench_function("layer -> ingress, drained", |b| b.iter_custom(|iters| bursts(iters, Some(&rx))));
    }
    {
        let system = actix_rt::System::new();
        let mut settings = common::bench_settings();
        settings.logs.queue_capacity = 1 << 16;
        let manager: TelemetryManager = common::start(&system, &settings);
        let layer = OtlpLogLayer::global().with_filter(EnvFilter::new("info"));
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        group.bench_function("layer -> global slot -> pipeline", |b| b.iter_custom(|iters| bursts(iters, None)));
        drop(_default);
        system.block_on(manager.shutdown());
    }
    group.finish();
}

/// `BENCH_EVENTS=N`: N events into a drained ingress, for an instruction count.
fn count_instructions(n: u64) {
    let _cx = in_span();
    let (ingress, rx) = channel();
    let layer = OtlpLogLayer::to_ingress(ingress).with_filter(EnvFilter::new("info"));
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let mut received = 0usize;
    let mut done = 0;
    while done < n {
        let burst = BURST.min(n - done);
        bursts(burst, None);
        received += rx.try_iter().count();
        done += burst;
    }
    assert_eq!(received as u64, n, "every event became a record");
    println!("{n} events, {received} records");
}

fn main() {
    if let Some(n) = std::env::var("BENCH_EVENTS").ok().and_then(|n| n.parse().ok()) {
        count_instructions(n);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
}
