//! Hot-path cost of the recording API: what a request handler pays per call.
//!
//! `cargo bench -p metamcp-telemetry --bench hot_path`
//!
//! Last figures, medians from one run (2-core AMD EPYC VM, rustc 1.95, bench profile,
//! `-- --warm-up-time 1 --measurement-time 3`, 74 s in all). "Bursts" leave the queue below its
//! capacity (0 events dropped): the cost when the pipeline keeps up. "Saturated" is two threads
//! recording in tight loops, far beyond what the aggregator folds, so most calls take the drop
//! path.
//!
//! | bench | median |
//! |---|---|
//! | baseline: bare crossbeam `try_send` of 72 bytes, drained, 1 thread | 30 ns |
//! | baseline: the same from 2 threads, bursts of 2048 each | 53 ns |
//! | `record_request`, 1 thread, bursts of 4096 | 38 ns |
//! | `record_tool_execution`, 1 thread, bursts of 4096 | 21 ns |
//! | `record_vector_search`, 1 thread, bursts of 4096 | 15 ns |
//! | `record_mcp_operation` (client side, eight labels), 1 thread, bursts of 4096 | 168 ns (`record_tool_execution` 34 ns in the same run): one boxed event of eight inline label values |
//! | `record_request`, 2 threads, bursts of 2048 each (not saturated) | 255 ns |
//! | `record_tool_execution`, 2 threads, bursts of 2048 each (not saturated) | 249 ns |
//! | `record_vector_search`, 2 threads, bursts of 2048 each (not saturated) | 302 ns |
//! | `record_request`, 2 threads saturated (76 % of the events dropped) | 78 ns |
//! | `record_tool_execution`, 2 threads saturated (81 % dropped) | 56 ns |
//! | `record_vector_search`, 2 threads saturated (84 % dropped) | 71 ns |
//! | span: SDK start + 4 attributes + end, into the span buffer, bursts of 4096 | 243 ns (252 before the byte bound) |
//! | span: a finished span submitted into the span buffer's queue, bursts of 4096 | 60 ns (49 before the byte bound; same-run crossbeam floor 19 ns) |
//!
//! Two threads that are not saturated pay more than saturated ones: a dropped event only reads
//! the channel's indices, while an accepted one contends for the tail and the slots with the
//! other thread and with the aggregator, which wakes half-way through a burst and, on two cores,
//! preempts one of the recording threads (with a queue large enough that it stays asleep during
//! the bursts, the two-thread `record_tool_execution` and `record_vector_search` fall to 70–80
//! ns). Single-thread figures move between runs on this VM (`record_request` 24–38 ns).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};

#[path = "common.rs"]
mod common;
use metamcp_telemetry::actors::self_metrics::{DropReason, Signal};
use metamcp_telemetry::actors::span_buffer::{Flush, GetStatus};
use metamcp_telemetry::{McpOperation, McpSide, TelemetryManager};
use opentelemetry::trace::Tracer as _;
use opentelemetry::trace::{Span as _, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

/// A manager on a real pipeline whose queues are drained by the actors while the bench runs.
fn manager() -> (actix_rt::SystemRunner, TelemetryManager) {
    let system = actix_rt::System::new();
    let manager = common::start(&system, &common::bench_settings());
    (system, manager)
}

/// Calls recorded per timed burst: more than the aggregator's wake threshold (a quarter of the
/// 8192-event queue), so the aggregator drains concurrently during the second half of a burst,
/// and less than the capacity, so no event is dropped: the cost a handler pays when the pipeline
/// keeps up, which is the case it is sized for. With two threads each records half of it at the
/// same time, so the queue sees the same load per burst.
const BURST: u64 = 4096;

/// A second recording thread for the two-thread bursts. Each burst starts with a handshake in
/// which both threads spin at once, so that the scheduler has put them on different cores (with
/// two cores, a thread that merely yields is often run on the measured thread's core after the
/// measured burst, and the two never contend).
struct Partner {
    shared: Arc<PartnerState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct PartnerState {
    /// Calls asked of the partner; 0 when it is idle, `u64::MAX` to stop it.
    asked: AtomicU64,
    /// Set by the partner once it spins, waiting for `go`.
    ready: AtomicBool,
    /// Set by the measured thread to start both bursts.
    go: AtomicBool,
}

impl Partner {
    fn spawn(record: impl Fn() + Send + 'static) -> Self {
        let shared = Arc::new(PartnerState::default());
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || loop {
                match shared.asked.load(Ordering::Acquire) {
                    0 => std::thread::yield_now(),
                    u64::MAX => return,
                    n => {
                        shared.ready.store(true, Ordering::Release);
                        while !shared.go.load(Ordering::Acquire) {
                            std::hint::spin_loop();
                        }
                        for _ in 0..n {
                            record();
                        }
                        shared.ready.store(false, Ordering::Relaxed);
                        shared.go.store(false, Ordering::Relaxed);
                        shared.asked.store(0, Ordering::Release);
                    }
                }
            })
        };
        Self { shared, thread: Some(thread) }
    }

    /// Asks for a burst of `n` calls and returns once the partner starts it.
    fn start(&self, n: u64) {
        self.shared.asked.store(n, Ordering::Release);
        while !self.shared.ready.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        self.shared.go.store(true, Ordering::Release);
    }

    fn wait_idle(&self) {
        while self.shared.asked.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
    }
}

impl Drop for Partner {
    fn drop(&mut self) {
        self.wait_idle();
        self.shared.asked.store(u64::MAX, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Times `record` over whole bursts of `burst` calls on this thread (with `partner`, if given,
/// recording as many at the same time) and returns the time `iters` calls took at that rate.
/// Before each burst, untimed, `settle` empties the queue.
fn bursts(
    iters: u64,
    burst: u64,
    partner: Option<&Partner>,
    mut settle: impl FnMut(),
    mut record: impl FnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        if let Some(partner) = partner {
            partner.wait_idle();
        }
        settle();
        if let Some(partner) = partner {
            partner.start(burst);
        }
        let started = Instant::now();
        for _ in 0..burst {
            record();
        }
        total += started.elapsed();
        done += burst;
    }
    total.mul_f64(iters as f64 / done as f64)
}

/// Has the aggregator fold what is queued, so the next burst starts on an empty queue.
fn fold_queued(system: &actix_rt::SystemRunner, manager: &TelemetryManager) {
    let pipeline = manager.pipeline().expect("enabled");
    system.block_on(pipeline.drain_metrics(Duration::from_secs(10)));
    assert_eq!(pipeline.metric_ingress.queued(), 0, "the aggregator did not drain within 10 s");
}

fn dropped(manager: &TelemetryManager) -> u64 {
    manager.pipeline().map_or(0, |p| p.self_metrics.dropped(Signal::Metrics, DropReason::QueueFull).get())
}

/// The three recording calls, each as the bench and its second thread make it.
#[derive(Clone, Copy)]
enum Call {
    Request,
    ToolExecution,
    VectorSearch,
    McpOperation,
}

/// A client-side MCP operation with every attribute set (eight labels).
const MCP_OPERATION: McpOperation<'static> = McpOperation {
    method: "tools/call",
    tool_name: Some("search_repositories"),
    prompt_name: None,
    protocol_version: Some("2025-06-18"),
    network_transport: "tcp",
    error_type: None,
    server_address: Some("github-mcp.internal"),
    server_port: Some(8443),
};

impl Call {
    const ALL: [Call; 4] = [Call::Request, Call::ToolExecution, Call::VectorSearch, Call::McpOperation];

    fn name(self) -> &'static str {
        match self {
            Call::Request => "record_request",
            Call::ToolExecution => "record_tool_execution",
            Call::VectorSearch => "record_vector_search",
            Call::McpOperation => "record_mcp_operation",
        }
    }

    /// One call, with the arguments the measured thread uses.
    #[inline]
    fn record(self, manager: &TelemetryManager) {
        match self {
            Call::Request => manager.record_request(
                black_box("GET"),
                black_box("/metamcp/{endpoint}/mcp"),
                200,
                Duration::from_micros(250),
            ),
            Call::ToolExecution => {
                manager.record_tool_execution(black_box("github__search_repositories"), true, Duration::from_millis(3))
            }
            Call::VectorSearch => manager.record_vector_search(black_box(24), black_box(5), Duration::from_micros(800)),
            Call::McpOperation => {
                manager.record_mcp_operation(McpSide::Client, black_box(&MCP_OPERATION), Duration::from_millis(3))
            }
        }
    }

    /// One call with other labels, as a concurrent handler would make it.
    #[inline]
    fn record_other(self, manager: &TelemetryManager) {
        match self {
            Call::Request => manager.record_request("POST", "/api/tools/search", 200, Duration::from_micros(90)),
            Call::ToolExecution => manager.record_tool_execution("calculator", true, Duration::from_micros(40)),
            Call::VectorSearch => manager.record_vector_search(12, 3, Duration::from_micros(300)),
            Call::McpOperation => {
                let op = McpOperation { method: "tools/list", tool_name: None, ..MCP_OPERATION };
                manager.record_mcp_operation(McpSide::Server, &op, Duration::from_micros(300))
            }
        }
    }
}

/// Each call from one thread, then from two threads in bursts that the pipeline keeps up with.
fn bursts_benches(
    group: &mut BenchmarkGroup<'_, WallTime>,
    system: &actix_rt::SystemRunner,
    manager: &TelemetryManager,
) {
    let before = dropped(manager);
    for call in Call::ALL {
        group.bench_function(format!("{}/1_thread", call.name()), |b| {
            b.iter_custom(|iters| bursts(iters, BURST, None, || fold_queued(system, manager), || call.record(manager)))
        });
    }
    for call in Call::ALL {
        let partner = {
            let manager = manager.clone();
            Partner::spawn(move || call.record_other(&manager))
        };
        group.bench_function(format!("{}/2_threads_bursts", call.name()), |b| {
            b.iter_custom(|iters| {
                bursts(iters, BURST / 2, Some(&partner), || fold_queued(system, manager), || call.record(manager))
            })
        });
    }
    eprintln!("metric events dropped in the burst benches (1 and 2 threads): {}", dropped(manager) - before);
}

/// Each call from two threads in tight loops: the queue saturates and most events take the drop
/// path. This is the overload case (far beyond what the aggregator folds), reported with its
/// drop count.
fn saturated_benches(group: &mut BenchmarkGroup<'_, WallTime>, manager: &TelemetryManager) {
    for call in Call::ALL {
        let running = Arc::new(AtomicBool::new(true));
        let background = {
            let (manager, running) = (manager.clone(), running.clone());
            std::thread::spawn(move || {
                let mut calls = 0u64;
                while running.load(Ordering::Relaxed) {
                    call.record_other(&manager);
                    calls += 1;
                }
                calls
            })
        };
        let before = dropped(manager);
        let mut measured = 0u64;
        group.bench_function(format!("{}/2_threads_saturated", call.name()), |b| {
            b.iter_custom(|iters| {
                measured += iters;
                let started = Instant::now();
                for _ in 0..iters {
                    call.record(manager);
                }
                started.elapsed()
            })
        });
        running.store(false, Ordering::Relaxed);
        let background_calls = background.join().unwrap_or(0);
        if measured == 0 {
            continue; // filtered out
        }
        let calls = measured + background_calls;
        let lost = dropped(manager) - before;
        eprintln!(
            "{} saturated: {lost} of {calls} events dropped ({:.0} %)",
            call.name(),
            100.0 * lost as f64 / calls.max(1) as f64
        );
    }
}

fn recording(c: &mut Criterion) {
    let (system, manager) = manager();
    let mut group = c.benchmark_group("record");
    bursts_benches(&mut group, &system, &manager);
    saturated_benches(&mut group, &manager);
    group.finish();
}

/// A finished span as the SDK hands it to the span processor: four attributes, no events.
fn finished_span() -> SpanData {
    let now = std::time::SystemTime::now();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: "tools/call calculator".into(),
        start_time: now,
        end_time: now + Duration::from_micros(40),
        attributes: vec![
            KeyValue::new("mcp.method.name", "tools/call"),
            KeyValue::new("gen_ai.tool.name", "calculator"),
            KeyValue::new("mcp.session.id", "s-1"),
            KeyValue::new("http.response.status_code", 200),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder(metamcp_telemetry::SCOPE_NAME).build(),
    }
}

/// Spans per timed burst: eight export batches, far below the span queue's capacity (65 536 in
/// the bench settings), so no span is dropped at the queue while the span buffer drains and
/// encodes concurrently.
const SPAN_BURST: u64 = 4096;

/// Empties the span queue (untimed): a flush whose deadline has already passed makes the span
/// buffer drain its queue and hand every batch to the exporter, and answers without waiting for
/// the exports (which fail against the closed bench port).
fn span_queue_empty(system: &actix_rt::SystemRunner, manager: &TelemetryManager) {
    let buffer = &manager.pipeline().expect("enabled").span_buffer;
    let flushed = system.block_on(buffer.send(Flush { deadline: Instant::now() }));
    assert!(flushed.is_ok(), "the span buffer did not answer");
    let status = system.block_on(buffer.send(GetStatus)).expect("the span buffer answers");
    assert_eq!(status.queue_depth, 0, "the span queue is not empty after a flush");
}

fn spans(c: &mut Criterion) {
    let (system, manager) = manager();
    let mut group = c.benchmark_group("span");
    let tracer = manager.tracer().expect("enabled").clone();
    group.bench_function("sdk_start_4_attributes_end_into_buffer", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                span_queue_empty(&system, &manager);
                let n = SPAN_BURST.min(iters - done);
                let started = Instant::now();
                for _ in 0..n {
                    let mut span = tracer.start("tools/call calculator");
                    span.set_attribute(KeyValue::new("mcp.method.name", "tools/call"));
                    span.set_attribute(KeyValue::new("gen_ai.tool.name", "calculator"));
                    span.set_attribute(KeyValue::new("mcp.session.id", "s-1"));
                    span.set_attribute(KeyValue::new("http.response.status_code", 200));
                    span.end();
                }
                total += started.elapsed();
                done += n;
            }
            total
        })
    });
    // The ingest alone: finished spans (cloned outside the timing) handed to the span buffer's
    // queue, which the span buffer drains and encodes concurrently.
    let ingress = &manager.pipeline().expect("enabled").span_ingress;
    let span = finished_span();
    let mut offered = 0u64;
    let mut accepted = 0u64;
    group.bench_function("finished_span_submit_into_buffer", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                span_queue_empty(&system, &manager);
                let n = SPAN_BURST.min(iters - done);
                let burst: Vec<SpanData> = (0..n).map(|_| span.clone()).collect();
                let started = Instant::now();
                for span in burst {
                    accepted += u64::from(ingress.submit(span));
                }
                total += started.elapsed();
                done += n;
                offered += n;
            }
            total
        })
    });
    assert_eq!(accepted, offered, "finished spans were dropped at the queue: the bench measured the drop path");
    group.finish();
}

/// The floor: a bare crossbeam `try_send` of an event of the same size into a bounded channel
/// of the metric queue's capacity that another thread drains, as the aggregator does, from one
/// thread and from two threads in bursts. Reported beside `record_*` in one run.
fn baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("baseline");
    let (tx, rx) = crossbeam_channel::bounded::<[u64; 9]>(8192);
    let running = Arc::new(AtomicBool::new(true));
    let consumer = {
        let running = running.clone();
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                while rx.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    group.bench_function("crossbeam_try_send_72_bytes_drained", |b| {
        b.iter(|| tx.try_send(black_box([7u64; 9])).is_ok())
    });
    let partner = {
        let tx = tx.clone();
        Partner::spawn(move || {
            let _ = tx.try_send(black_box([8u64; 9]));
        })
    };
    let empty = || {
        while !tx.is_empty() {
            std::thread::yield_now();
        }
    };
    group.bench_function("crossbeam_try_send_72_bytes_2_threads_bursts", |b| {
        b.iter_custom(|iters| {
            bursts(iters, BURST / 2, Some(&partner), empty, || {
                let _ = tx.try_send(black_box([7u64; 9]));
            })
        })
    });
    drop(partner);
    running.store(false, Ordering::Relaxed);
    let _ = consumer.join();
    group.finish();
}

criterion_group!(benches, baseline, recording, spans);
criterion_main!(benches);
