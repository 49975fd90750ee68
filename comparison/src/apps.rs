//! The three builds of the same small actix-web app — `GET /items/{id}` answering a small JSON
//! body — and the `serve` subcommand that runs one of them as its own process.
//!
//! - **bare**: no instrumentation; `/metrics` renders an empty Prometheus registry.
//! - **ours**: `TelemetryManager::initialize` + `.wrap(manager.middleware())`; Prometheus on the
//!   manager's own listener; spans and metrics exported by our pipeline over OTLP/gRPC; in the
//!   socket runs with the durable SQLite spool attached as the overflow ([`ours_durable_settings`]).
//! - **eco**: what a user assembles from the ecosystem: `opentelemetry-instrumentation-actix-web`
//!   (`RequestTracing` + `RequestMetrics`), the SDK's `BatchSpanProcessor` with its defaults and
//!   the `opentelemetry-otlp` tonic span exporter, an `SdkMeterProvider` with a periodic OTLP
//!   metric exporter behind `RequestMetrics`, and `actix-web-prom` serving `/metrics`.

use std::error::Error;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse, HttpServer};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::settings::Settings;
use metamcp_telemetry::TelemetryManager;
use opentelemetry::global;
use opentelemetry_instrumentation_actix_web::{RequestMetrics, RequestTracing};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::Serialize;

/// Worker threads of each served app.
pub const WORKERS: usize = 2;

/// Boxed error of the harness.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// One of the three builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// No instrumentation.
    Bare,
    /// metamcp-telemetry.
    Ours,
    /// The OpenTelemetry ecosystem stack.
    Eco,
}

impl Kind {
    /// All three, in run order.
    pub const ALL: [Kind; 3] = [Kind::Bare, Kind::Ours, Kind::Eco];

    /// Name on the command line and in tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Ours => "ours",
            Kind::Eco => "eco",
        }
    }

    /// The `service.name` its spans carry (each build its own, so the receiver counts them apart).
    pub fn service_name(self) -> &'static str {
        match self {
            Kind::Bare => "cmp-bare",
            Kind::Ours => "cmp-ours",
            Kind::Eco => "cmp-eco",
        }
    }

    /// Whether this build exports spans.
    pub fn exports_spans(self) -> bool {
        self != Kind::Bare
    }
}

#[derive(Serialize)]
struct Item {
    id: u64,
    name: String,
    price_cents: u64,
    in_stock: bool,
}

/// Requests the handler answered in this process, counted per thread (each thread its own
/// atomic, so the workers never share a cache line for it) and summed on demand: the exact
/// number of spans an instrumented build has to deliver.
pub mod served {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    static THREADS: Mutex<Vec<Arc<AtomicU64>>> = Mutex::new(Vec::new());

    thread_local! {
        static MINE: Arc<AtomicU64> = {
            let counter = Arc::new(AtomicU64::new(0));
            THREADS.lock().unwrap_or_else(PoisonError::into_inner).push(counter.clone());
            counter
        };
    }

    /// Counts one request on this thread.
    #[inline]
    pub fn count() {
        MINE.with(|counter| counter.fetch_add(1, Ordering::Relaxed));
    }

    /// Requests counted so far, all threads.
    pub fn total() -> u64 {
        THREADS.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The path at which each served build answers [`served::total`] (a route of its own in every
/// build, so the request that reads it is one more span of the instrumented builds).
pub const SERVED_PATH: &str = "/served";

async fn get_served() -> HttpResponse {
    HttpResponse::Ok().body(served::total().to_string())
}

/// The handler every build serves.
async fn get_item(id: web::Path<u64>) -> HttpResponse {
    served::count();
    let id = id.into_inner();
    HttpResponse::Ok().json(Item {
        id,
        name: format!("item-{id}"),
        price_cents: 1999 + id % 100,
        in_stock: !id.is_multiple_of(3),
    })
}

async fn empty_metrics(registry: web::Data<prometheus::Registry>) -> HttpResponse {
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap_or_default();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}

/// The bare build.
pub fn bare_app(
    registry: web::Data<prometheus::Registry>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(registry)
        .route("/items/{id}", web::get().to(get_item))
        .route(SERVED_PATH, web::get().to(get_served))
        .route("/metrics", web::get().to(empty_metrics))
}

/// Our build: one middleware.
pub fn ours_app(
    manager: &TelemetryManager,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(manager.middleware())
        .route("/items/{id}", web::get().to(get_item))
        .route(SERVED_PATH, web::get().to(get_served))
}

/// The ecosystem build: tracing, OpenTelemetry metrics and actix-web-prom middlewares.
pub fn eco_app(
    prom: &PrometheusMetrics,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(RequestTracing::new())
        .wrap(RequestMetrics::default())
        .wrap(prom.clone())
        .route("/items/{id}", web::get().to(get_item))
        .route(SERVED_PATH, web::get().to(get_served))
}

/// Settings of our build: OTLP/gRPC to `otlp`, Prometheus on `metrics_port` (0: any free port),
/// no global provider; everything else the library's defaults.
pub fn ours_settings(service_name: &str, otlp: &str, metrics_port: u16) -> Settings {
    let mut settings = Settings::default();
    settings.telemetry.service_name = service_name.to_owned();
    settings.telemetry.install_global = false;
    settings.exporter.endpoint = otlp.to_owned();
    settings.exporter.protocol = Protocol::Grpc;
    settings.prometheus.port = metrics_port;
    settings
}

/// Span ingress queue of ours in the socket runs (the default is 8192).
pub const DURABLE_QUEUE_CAPACITY: usize = 65_536;
/// Spooled batches ours replays per second once the load is over (the default is 20).
pub const DURABLE_REPLAY_BATCHES_PER_SECOND: u32 = 500;

/// Settings of ours in the socket runs: [`ours_settings`], run the way a service that must not
/// lose spans at saturation runs it. The durable spool (a SQLite file, attached by [`serve`]) is
/// the overflow — the default `exporter.when_full.traces = "spool"` writes what the exporter's
/// memory cannot hold to it — and two settings differ from the library's defaults:
///
/// - `span_buffer.queue_capacity` 65 536: the ingress queue is the one bound the spool cannot
///   back (a finished span is handed over with `try_send` and never waits). At 100 k+ spans/s on
///   two saturated cores the span buffer's thread can be off-CPU for longer than 8 192 spans
///   last (80 ms); 65 536 covers about half a second. Its memory stays bounded by
///   `span_buffer.queue_max_bytes` (32 MiB) all the same.
/// - `spool.replay_batches_per_second` 500: the default of 20 (10 k spans/s) is gentle with a
///   collector that has just come back; after an overload against a healthy collector the
///   backlog should leave at the pace the collector takes it (the soak runs with the same).
pub fn ours_durable_settings(service_name: &str, otlp: &str, metrics_port: u16) -> Settings {
    let mut settings = ours_settings(service_name, otlp, metrics_port);
    settings.span_buffer.queue_capacity = DURABLE_QUEUE_CAPACITY;
    settings.spool.replay_batches_per_second = DURABLE_REPLAY_BATCHES_PER_SECOND;
    settings
}

/// The ecosystem stack's providers, installed as the `opentelemetry::global` ones (the
/// instrumentation crate reads the global tracer and meter).
pub struct Eco {
    /// Tracer provider with the default `BatchSpanProcessor` and the OTLP/gRPC span exporter.
    pub tracer_provider: SdkTracerProvider,
    /// Meter provider with a periodic OTLP/gRPC metric exporter.
    pub meter_provider: SdkMeterProvider,
    /// The actix-web-prom middleware (serves `/metrics`).
    pub prom: PrometheusMetrics,
    /// The tokio runtime the tonic channels run on, as in opentelemetry-otlp's example for
    /// programs whose `main` is not `#[tokio::main]` (the batch processor runs on its own thread).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Eco {
    /// Builds the exporters and providers as the crates' documentation shows, and installs them
    /// globally.
    pub fn start(service_name: &str, otlp: &str) -> Result<Self, BoxError> {
        use opentelemetry_otlp::WithExportConfig as _;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("eco-otlp")
            .enable_all()
            .build()?;
        let _entered = runtime.enter();
        let resource = Resource::builder().with_service_name(service_name.to_owned()).build();
        let span_exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(otlp).build()?;
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(span_exporter).build())
            .with_resource(resource.clone())
            .build();
        let metric_exporter = opentelemetry_otlp::MetricExporter::builder().with_tonic().with_endpoint(otlp).build()?;
        let meter_provider =
            SdkMeterProvider::builder().with_periodic_exporter(metric_exporter).with_resource(resource).build();
        global::set_text_map_propagator(TraceContextPropagator::new());
        global::set_tracer_provider(tracer_provider.clone());
        global::set_meter_provider(meter_provider.clone());
        let prom = PrometheusMetricsBuilder::new("api").endpoint("/metrics").build()?;
        drop(_entered);
        Ok(Eco { tracer_provider, meter_provider, prom, runtime: Some(runtime) })
    }

    /// Flushes and stops both providers.
    pub fn shutdown(&mut self) {
        let _ = self.tracer_provider.shutdown();
        let _ = self.meter_provider.shutdown();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// `serve KIND`: runs one build on `127.0.0.1:port` with [`WORKERS`] workers until killed. With
/// `spool` (ours only), ours runs with [`ours_durable_settings`] and the durable spool in that
/// SQLite file; without it, with [`ours_settings`] and its memory only.
pub fn serve(kind: Kind, port: u16, metrics_port: u16, otlp: &str, spool: Option<&Path>) -> Result<(), BoxError> {
    let system = actix_rt::System::new();
    match kind {
        Kind::Bare => {
            let registry = web::Data::new(prometheus::Registry::new());
            system.block_on(
                HttpServer::new(move || bare_app(registry.clone())).workers(WORKERS).bind(("127.0.0.1", port))?.run(),
            )?;
        }
        Kind::Ours => {
            let settings = match spool {
                Some(_) => ours_durable_settings(kind.service_name(), otlp, metrics_port),
                None => ours_settings(kind.service_name(), otlp, metrics_port),
            };
            let manager = system.block_on(async { TelemetryManager::initialize(&settings) })?;
            if let Some(path) = spool {
                let path = path.to_str().ok_or("the spool path is not UTF-8")?;
                let spool = metamcp_telemetry::spool::DbSpool::open(path, Duration::from_secs(1))?;
                manager.attach_spool(Arc::new(spool));
            }
            let app_manager = manager.clone();
            system.block_on(
                HttpServer::new(move || ours_app(&app_manager)).workers(WORKERS).bind(("127.0.0.1", port))?.run(),
            )?;
            system.block_on(manager.shutdown());
        }
        Kind::Eco => {
            let mut eco = Eco::start(kind.service_name(), otlp)?;
            let prom = eco.prom.clone();
            system
                .block_on(HttpServer::new(move || eco_app(&prom)).workers(WORKERS).bind(("127.0.0.1", port))?.run())?;
            eco.shutdown();
        }
    }
    Ok(())
}

/// A GET over a fresh connection: the status code and the body (for readiness checks and scrapes).
pub fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}
