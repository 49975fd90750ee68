//! Throughput of the pipeline behind the hot path: how fast the metric aggregator folds events
//! into the registry, how fast finished spans reach a real OTLP receiver through the span buffer
//! and the exporter, and what a `/metrics` render costs as the registry grows.
//!
//! `cargo bench -p metamcp-telemetry --bench pipeline`
//!
//! Last figures, medians from one run (2-core AMD EPYC VM, rustc 1.95, bench profile,
//! `-- --warm-up-time 1 --measurement-time 3`, 49 s in all):
//!
//! | bench | median | throughput |
//! |---|---|---|
//! | aggregator drain: 100 000 request events (8 routes, 2 methods, 2 status codes) | 6.69 ms | 14.9 M events/s |
//! | aggregator drain: 100 000 tool executions (8 tools, 2 outcomes) | 6.53 ms | 15.3 M events/s |
//! | aggregator drain: 100 000 vector searches (4 histograms each) | 8.03 ms | 12.5 M events/s |
//! | aggregator drain: 100 000 database queries | 4.39 ms | 22.8 M events/s |
//! | aggregator drain: 100 000 of the four kinds, mixed | 6.49 ms | 15.4 M events/s |
//! | 4096 spans, tracer to a loopback OTLP/gRPC receiver | 5.48 ms | 748 K spans/s |
//! | 4096 spans, tracer to a loopback OTLP/HTTP (protobuf) receiver | 4.86 ms | 844 K spans/s |
//! | `/metrics` render, the pipeline's own metrics only (134 series, 11 KB) | 94 µs | 1.4 M series/s |
//! | `/metrics` render, 1016 series (92 KB) | 260 µs | 3.9 M series/s |
//! | `/metrics` render, 10 016 series (927 KB) | 2.00 ms | 5.0 M series/s |
//!
//! The span figures are those of the whole loopback setup on two cores: in a profile, the
//! receiver's decoding takes about 38 % of the CPU, the span buffer 38 % (converting `SpanData`
//! to OTLP and encoding it, some 40 % of which is malloc and free), creating the spans 14 % and
//! the exporter 10 %. A small render is mostly the message round trip that folds queued events
//! first and the process collector's reads of `/proc`; at 10 000 series, the text encoding.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metamcp_telemetry::actors::ingress::{DbOperation, DbSystem};
use metamcp_telemetry::actors::self_metrics::{DropReason, Signal};
use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry::KeyValue;

#[path = "common.rs"]
mod common;

/// A loopback OTLP receiver that decodes every trace export request and counts its spans, over
/// gRPC (tonic) or HTTP/protobuf (hyper), on its own two-thread runtime as a collector would run
/// beside the service. Accepted sockets get `TCP_NODELAY`, as collectors set it: without it the
/// small writes of a gRPC answer wait on the client's delayed ACKs, and the gRPC figure falls to
/// about 170 K spans/s.
mod receiver {
    use std::convert::Infallible;
    use std::sync::{Arc, Condvar, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use prost::Message as _;

    /// The wire protocol a receiver speaks.
    #[derive(Debug, Clone, Copy)]
    pub enum Wire {
        Grpc,
        Http,
    }

    /// Spans decoded so far, and a wake-up for whoever waits on the count.
    #[derive(Default)]
    struct Count {
        spans: Mutex<u64>,
        changed: Condvar,
    }

    impl Count {
        fn add(&self, request: &ExportTraceServiceRequest) {
            let n: usize = request.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum();
            *self.spans.lock().unwrap_or_else(PoisonError::into_inner) += n as u64;
            self.changed.notify_all();
        }
    }

    /// A running receiver; stops with its runtime when dropped.
    pub struct Receiver {
        port: u16,
        count: Arc<Count>,
        _runtime: tokio::runtime::Runtime,
    }

    impl Receiver {
        pub fn start(wire: Wire) -> Self {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("otlp-receiver")
                .enable_all()
                .build()
                .expect("receiver runtime");
            let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
            let port = listener.local_addr().expect("local address").port();
            let count = Arc::new(Count::default());
            match wire {
                Wire::Grpc => {
                    let service = TraceServiceServer::new(Grpc(count.clone())).max_decoding_message_size(64 << 20);
                    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                    runtime
                        .spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
                }
                Wire::Http => {
                    runtime.spawn(serve_http(listener, count.clone()));
                }
            }
            Self { port, count, _runtime: runtime }
        }

        /// `http://127.0.0.1:PORT`, the exporter endpoint for either protocol.
        pub fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        pub fn reset(&self) {
            *self.count.spans.lock().unwrap_or_else(PoisonError::into_inner) = 0;
        }

        pub fn spans(&self) -> u64 {
            *self.count.spans.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Blocks until at least `n` spans were decoded or `timeout` passed; returns the count.
        pub fn wait_for(&self, n: u64, timeout: Duration) -> u64 {
            let deadline = Instant::now() + timeout;
            let mut spans = self.count.spans.lock().unwrap_or_else(PoisonError::into_inner);
            while *spans < n {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                spans = self.count.changed.wait_timeout(spans, left).unwrap_or_else(PoisonError::into_inner).0;
            }
            *spans
        }
    }

    struct Grpc(Arc<Count>);

    #[tonic::async_trait]
    impl TraceService for Grpc {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            self.0.add(request.get_ref());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    async fn serve_http(listener: tokio::net::TcpListener, count: Arc<Count>) {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let count = count.clone();
            let service = hyper::service::service_fn(move |request| export_http(count.clone(), request));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    }

    async fn export_http(
        count: Arc<Count>,
        request: hyper::Request<Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
        let decoded = match request.into_body().collect().await {
            Ok(body) => ExportTraceServiceRequest::decode(body.to_bytes()).ok(),
            Err(_) => None,
        };
        let (status, body) = match decoded {
            Some(request) => {
                count.add(&request);
                (200, ExportTraceServiceResponse::default().encode_to_vec())
            }
            None => (400, Vec::new()),
        };
        let response = hyper::Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)));
        Ok(response.unwrap_or_default())
    }
}

/// Metric events queued per timed drain.
const DRAIN_EVENTS: u64 = 100_000;
/// Metric queue of the drain benches: its wake threshold (a quarter, 131 072) is above
/// [`DRAIN_EVENTS`], so the aggregator does not start folding until it is told to.
const DRAIN_QUEUE: usize = 1 << 19;

/// Spans created and exported per timed iteration: eight full batches of 512.
const SPANS: u64 = 4096;
/// Longest wait for one iteration's spans to reach the receiver before the bench fails.
const EXPORT_DEADLINE: Duration = Duration::from_secs(30);

/// Route templates of the request events (eight routes, two methods, two status codes).
const ROUTES: [&str; 8] = [
    "/metamcp/{endpoint}/mcp",
    "/api/tools",
    "/api/tools/search",
    "/api/tools/{id}",
    "/api/servers",
    "/api/servers/{id}",
    "/api/endpoints",
    "/health",
];
/// Tool names of the tool execution events.
const TOOLS: [&str; 8] = [
    "github__search_repositories",
    "github__get_issue",
    "calculator",
    "echo",
    "filesystem__read_file",
    "filesystem__list_directory",
    "slack__post_message",
    "time__now",
];

/// Records the `i`-th event of one kind.
type Record = fn(&TelemetryManager, u64);

fn request(manager: &TelemetryManager, i: u64) {
    let method = if i.is_multiple_of(2) { "GET" } else { "POST" };
    let status = if i.is_multiple_of(7) { 404 } else { 200 };
    manager.record_request(method, ROUTES[(i / 2 % 8) as usize], status, Duration::from_micros(100 + i % 5000));
}

fn tool_execution(manager: &TelemetryManager, i: u64) {
    manager.record_tool_execution(
        TOOLS[(i % 8) as usize],
        !i.is_multiple_of(13),
        Duration::from_micros(500 + i % 50_000),
    );
}

fn vector_search(manager: &TelemetryManager, i: u64) {
    manager.record_vector_search(8 + (i % 120) as usize, (i % 11) as usize, Duration::from_micros(200 + i % 3000));
}

fn db_query(manager: &TelemetryManager, i: u64) {
    let operation = [DbOperation::Select, DbOperation::Insert, DbOperation::Update][(i % 3) as usize];
    manager.record_db_query(DbSystem::Sqlite, operation, true, Duration::from_micros(50 + i % 900));
}

fn mixed(manager: &TelemetryManager, i: u64) {
    match i % 4 {
        0 => request(manager, i / 4),
        1 => tool_execution(manager, i / 4),
        2 => vector_search(manager, i / 4),
        _ => db_query(manager, i / 4),
    }
}

/// Metric events folded into the registry per second: the queue is filled (untimed) while the
/// aggregator sleeps, then one `drain_metrics` call, a message round trip included, is timed
/// until the queue is empty. Label sets repeat, so this is the steady state of cached children.
fn aggregator_drain(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let mut settings = common::bench_settings();
    settings.metrics.queue_capacity = DRAIN_QUEUE;
    settings.metrics.drain_interval = Duration::from_secs(60);
    settings.metrics.otlp_export = false;
    let manager = common::start(&system, &settings);
    let pipeline = manager.pipeline().expect("enabled");
    let ingress = &pipeline.metric_ingress;

    let mut group = c.benchmark_group("aggregator_drain");
    group.throughput(Throughput::Elements(DRAIN_EVENTS)).sample_size(20);
    let kinds: [(&str, Record); 5] = [
        ("requests", request),
        ("tool_executions", tool_execution),
        ("vector_searches", vector_search),
        ("db_queries", db_query),
        ("mixed", mixed),
    ];
    for (name, record) in kinds {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Tops the queue up to exactly DRAIN_EVENTS (a rare drain tick may have
                    // folded part of it while it filled).
                    loop {
                        let queued = ingress.queued() as u64;
                        if queued >= DRAIN_EVENTS {
                            break;
                        }
                        for i in queued..DRAIN_EVENTS {
                            record(&manager, i);
                        }
                    }
                    let started = Instant::now();
                    system.block_on(pipeline.drain_metrics(Duration::from_secs(10)));
                    total += started.elapsed();
                    assert_eq!(ingress.queued(), 0, "the aggregator did not drain within 10 s");
                }
                total
            })
        });
    }
    group.finish();
    let lost = pipeline.self_metrics.dropped(Signal::Metrics, DropReason::QueueFull).get();
    assert_eq!(lost, 0, "metric events were dropped: the drain bench measured less than it claims");
}

/// Spans dropped for any reason so far.
fn spans_dropped(manager: &TelemetryManager) -> u64 {
    let pipeline = manager.pipeline().expect("enabled");
    DropReason::ALL.iter().map(|reason| pipeline.self_metrics.dropped(Signal::Traces, *reason).get()).sum()
}

/// Spans per second from the tracer to a loopback OTLP receiver: [`SPANS`] finished spans are
/// created through the manager's tracer, then the pipeline is flushed and the time stops when the
/// receiver has decoded all of them. Span creation, the span buffer's batching and encoding, the
/// exporter's requests and the receiver's decoding all share the machine's two cores.
fn span_export(c: &mut Criterion) {
    let mut group = c.benchmark_group("span_export");
    group.throughput(Throughput::Elements(SPANS)).sample_size(10);
    let transports = [
        ("grpc", receiver::Wire::Grpc, Protocol::Grpc),
        ("http_protobuf", receiver::Wire::Http, Protocol::HttpProtobuf),
    ];
    for (name, wire, protocol) in transports {
        let receiver = receiver::Receiver::start(wire);
        let system = actix_rt::System::new();
        let mut settings = common::bench_settings();
        settings.exporter.endpoint = receiver.endpoint();
        settings.exporter.protocol = protocol;
        settings.exporter.insecure = true;
        // Only spans on the wire: no metric snapshots interleaved.
        settings.metrics.otlp_export = false;
        let manager = common::start(&system, &settings);
        let tracer = manager.tracer().expect("enabled").clone();

        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    receiver.reset();
                    let started = Instant::now();
                    for i in 0..SPANS {
                        let mut span = tracer.start("tools/call calculator");
                        span.set_attribute(KeyValue::new("mcp.method.name", "tools/call"));
                        span.set_attribute(KeyValue::new("gen_ai.tool.name", "calculator"));
                        span.set_attribute(KeyValue::new("mcp.session.id", "s-1"));
                        span.set_attribute(KeyValue::new("request.index", i as i64));
                        span.end();
                    }
                    if let Err(err) = system.block_on(manager.force_flush(EXPORT_DEADLINE)) {
                        panic!("span_export/{name}: the flush failed: {err}");
                    }
                    let arrived = receiver.wait_for(SPANS, EXPORT_DEADLINE);
                    total += started.elapsed();
                    assert_eq!(arrived, SPANS, "span_export/{name}: {arrived} of {SPANS} spans arrived");
                    assert_eq!(receiver.spans(), SPANS, "span_export/{name}: spans arrived twice");
                }
                total
            })
        });
        assert_eq!(spans_dropped(&manager), 0, "span_export/{name}: spans were dropped");
        let _ = system.block_on(manager.shutdown());
    }
    group.finish();
}

/// `/metrics` text as a scrape gets it.
fn render(system: &actix_rt::SystemRunner, manager: &TelemetryManager) -> String {
    let pipeline = manager.pipeline().expect("enabled");
    system.block_on(metamcp_telemetry::http::render_metrics(pipeline)).expect("the registry renders")
}

/// Series in an exposition: every sample line (each histogram bucket, `_sum` and `_count` is a
/// series of its own, as Prometheus stores them).
fn series(text: &str) -> usize {
    text.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).count()
}

/// A running manager whose registry renders at least `target` series: the pipeline's own
/// metrics, then requests over as many distinct routes as it takes (each route adds a counter
/// series and a request duration histogram).
fn manager_with_series(system: &actix_rt::SystemRunner, target: usize) -> (TelemetryManager, String) {
    let mut settings = common::bench_settings();
    settings.metrics.max_routes = 100_000;
    let manager = common::start(system, &settings);
    let record = |route: usize| {
        manager.record_request("GET", &format!("/api/bench/{route}/items"), 200, Duration::from_millis(3));
    };
    let base = series(&render(system, &manager));
    if base < target {
        record(0);
        let per_route = series(&render(system, &manager)) - base;
        for route in 1..(target - base).div_ceil(per_route) {
            record(route);
        }
    }
    let text = render(system, &manager);
    (manager, text)
}

/// The `/metrics` handler's work: fold queued events (a message round trip to the aggregator,
/// nothing queued here), gather the registry and encode it in the text format.
fn render_metrics(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let mut group = c.benchmark_group("render_metrics");
    // The pipeline's own and the process metrics alone already make more than a hundred series:
    // that registry is the smallest there is.
    for (name, target) in [("own_metrics_only", 0), ("1000_series", 1000), ("10000_series", 10_000)] {
        let (manager, text) = manager_with_series(&system, target);
        let count = series(&text);
        eprintln!("render_metrics/{name}: {count} series rendered, {} bytes", text.len());
        group.throughput(Throughput::Elements(count as u64));
        if target >= 10_000 {
            group.sample_size(20);
        }
        group.bench_function(name, |b| b.iter(|| black_box(render(&system, &manager)).len()));
    }
    group.finish();
}

criterion_group!(benches, aggregator_drain, span_export, render_metrics);
criterion_main!(benches);
