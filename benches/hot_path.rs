//! Hot-path cost of the recording API: what a request handler pays per call.
//!
//! `cargo bench --bench hot_path`
//!
//! Last figures (2-core cloud VM, rustc 1.95, release profile; medians):
//! see BENCHMARKS.md and the closing note; refresh with the command above.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use metamcp_telemetry::settings::Settings;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry::KeyValue;

/// A manager on a real pipeline whose queues are drained by the actors while the bench runs.
fn manager() -> (actix_rt::SystemRunner, TelemetryManager) {
    let system = actix_rt::System::new();
    let mut settings = Settings::default();
    settings.prometheus.enabled = false;
    settings.telemetry.install_global = false;
    // No collector in a bench: export attempts fail fast and are retried off the hot path.
    settings.exporter.endpoint = "http://127.0.0.1:9".to_owned();
    settings.span_buffer.queue_capacity = 1 << 16;
    settings.metrics.queue_capacity = 1 << 16;
    let manager = system.block_on(async { TelemetryManager::initialize(&settings) }).expect("telemetry starts");
    (system, manager)
}

fn recording(c: &mut Criterion) {
    let (_system, manager) = manager();
    let mut group = c.benchmark_group("record");
    group.bench_function("record_request/1_thread", |b| {
        b.iter(|| {
            manager.record_request(
                black_box("GET"),
                black_box("/metamcp/{endpoint}/mcp"),
                200,
                Duration::from_micros(250),
            )
        })
    });
    group.bench_function("record_tool_execution/1_thread", |b| {
        b.iter(|| {
            manager.record_tool_execution(black_box("github__search_repositories"), true, Duration::from_millis(3))
        })
    });
    group.bench_function("record_vector_search/1_thread", |b| {
        b.iter(|| manager.record_vector_search(black_box(24), black_box(5), Duration::from_micros(800)))
    });
    // Two threads recording at once: the second thread records in a tight loop while the
    // measured thread records; contention on the channel is what this shows.
    let contender = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let background = {
        let manager = manager.clone();
        let running = contender.clone();
        std::thread::spawn(move || {
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                manager.record_request("POST", "/api/tools/search", 200, Duration::from_micros(90));
            }
        })
    };
    group.bench_function("record_request/2_threads", |b| {
        b.iter(|| {
            manager.record_request(
                black_box("GET"),
                black_box("/metamcp/{endpoint}/mcp"),
                200,
                Duration::from_micros(250),
            )
        })
    });
    contender.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = background.join();
    group.finish();

    let mut group = c.benchmark_group("span");
    let tracer = manager.tracer().expect("enabled").clone();
    group.bench_function("span_start_end_4_attributes_into_buffer", |b| {
        b.iter(|| {
            let mut span = tracer.start("tools/call calculator");
            span.set_attribute(KeyValue::new("mcp.method.name", "tools/call"));
            span.set_attribute(KeyValue::new("gen_ai.tool.name", "calculator"));
            span.set_attribute(KeyValue::new("mcp.session.id", "s-1"));
            span.set_attribute(KeyValue::new("http.response.status_code", 200));
            span.end();
        })
    });
    group.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);
