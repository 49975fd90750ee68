//! [`TelemetryManager`]: the one handle an application holds. It starts the pipeline, owns the
//! tracer provider and the Prometheus server, and offers the recording API. Three modes share
//! one API: the real pipeline, a no-op (`TELEMETRY_ENABLED=false`: no threads, no sockets), and
//! an in-memory capture for a user's own tests ([`TelemetryManager::for_testing`]).

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metamcp_telemetry_actors::health_check::{HealthReport, ReadinessProbe};
use metamcp_telemetry_actors::ingress::{
    DbOperation, DbSystem, HttpMethod, LabelValue, MetricEvent, MetricIngress, SpanRef,
};
use metamcp_telemetry_actors::log_buffer::LogIngress;
use metamcp_telemetry_actors::pipeline::{Pipeline, PipelineConfig, ShutdownReport};
use metamcp_telemetry_actors::self_metrics::{DropReason, Signal};
use metamcp_telemetry_actors::span_buffer::FlushError;
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::capture::{Capture, TestTelemetry};
use crate::settings::{Sampler as SamplerSetting, Settings};

/// The instrumentation scope of every span this library creates.
pub const SCOPE_NAME: &str = "metamcp-telemetry";

/// Telemetry that could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The pipeline's metrics could not be registered.
    #[error(transparent)]
    Pipeline(#[from] metamcp_telemetry_actors::pipeline::StartError),
    /// The Prometheus endpoint could not be bound.
    #[error("cannot bind the Prometheus endpoint on {addr}: {source}")]
    MetricsBind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) struct Running {
    pub(crate) pipeline: Pipeline,
    /// Kept so the provider (and its span processor) lives as long as the manager.
    _provider: SdkTracerProvider,
    metrics_server: Option<(actix_web::dev::ServerHandle, SocketAddr)>,
    shutdown_timeout: Duration,
}

pub(crate) enum Mode {
    Disabled,
    Running(Box<Running>),
    Capture,
}

pub(crate) struct Inner {
    pub(crate) mode: Mode,
    pub(crate) tracer: Option<SdkTracer>,
    pub(crate) sink: Sink,
    pub(crate) started: Instant,
    /// Request headers the middleware records (`telemetry.capture_request_headers`).
    pub(crate) capture_headers: Arc<[crate::header_capture::CapturedHeader]>,
    /// Whether outgoing calls pass incoming baggage on (`telemetry.propagate_baggage`).
    propagate_baggage: bool,
    /// Where the MCP and HTTP access records go (`logs.mcp_access`, `logs.http_access`).
    pub(crate) access: AccessLogs,
}

/// The access records a manager sends, and where to (see `access_log`).
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessLogs {
    /// Where MCP access records go (`logs.mcp_access`), if anywhere.
    pub(crate) mcp: Option<LogIngress>,
    /// Where HTTP access records go (`logs.http_access`), if anywhere.
    pub(crate) http: Option<LogIngress>,
}

pub(crate) enum Sink {
    None,
    Ingress(MetricIngress),
    Capture(Arc<Capture>),
}

impl Sink {
    #[inline]
    pub(crate) fn record(&self, event: impl FnOnce() -> MetricEvent) {
        match self {
            Sink::None => {}
            Sink::Ingress(ingress) => {
                ingress.record(event());
            }
            Sink::Capture(capture) => capture.record_event(event()),
        }
    }
}

/// The telemetry of one application. Cheap to clone; every clone shares the same pipeline.
#[derive(Clone)]
pub struct TelemetryManager {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for TelemetryManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.inner.mode {
            Mode::Disabled => "disabled",
            Mode::Running(_) => "running",
            Mode::Capture => "capture",
        };
        f.debug_struct("TelemetryManager").field("mode", &mode).finish()
    }
}

fn sampler(settings: &Settings) -> Sampler {
    let ratio = settings.telemetry.sampler_arg;
    match settings.telemetry.sampler {
        SamplerSetting::AlwaysOn => Sampler::AlwaysOn,
        SamplerSetting::AlwaysOff => Sampler::AlwaysOff,
        SamplerSetting::TraceIdRatio => Sampler::TraceIdRatioBased(ratio),
        SamplerSetting::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerSetting::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerSetting::ParentBasedTraceIdRatio => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
    }
}

/// The resource every span and metric carries: service name and version, the configured
/// attributes, and the SDK's identity. Built from settings only (no hidden environment reads).
pub fn resource(settings: &Settings) -> Resource {
    let mut attributes = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        KeyValue::new("telemetry.sdk.language", "rust"),
        KeyValue::new("telemetry.distro.name", SCOPE_NAME),
    ];
    attributes.extend(
        settings.telemetry.resource_attributes.iter().map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
    );
    Resource::builder_empty()
        .with_attributes(attributes)
        .with_service_name(settings.telemetry.service_name.clone())
        .build()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME).with_version(env!("CARGO_PKG_VERSION")).build()
}

impl TelemetryManager {
    /// Starts telemetry as `settings` say: the pipeline actors, the tracer provider and the
    /// Prometheus endpoint — or a no-op manager when telemetry is disabled. The actors and the
    /// Prometheus endpoint run on their own named threads (`mmcp-*`), so any runtime will do.
    pub fn initialize(settings: &Settings) -> Result<Self, InitError> {
        Self::initialize_with_probes(settings, Vec::new())
    }

    /// As [`initialize`](Self::initialize), with extra readiness probes (a database, say) that
    /// `/health/ready` waits for.
    pub fn initialize_with_probes(
        settings: &Settings,
        probes: Vec<Arc<dyn ReadinessProbe>>,
    ) -> Result<Self, InitError> {
        if !settings.telemetry.enabled {
            return Ok(Self::disabled());
        }
        let registry = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            // Registration fails only on a name clash in a fresh registry, which cannot happen.
            let _ = registry.register(Box::new(process));
        }
        let resource = resource(settings);
        let config = PipelineConfig {
            catalogue: crate::catalogue::METAMCP,
            span_buffer: settings.span_buffer.clone(),
            metrics: settings.metrics.clone(),
            exporter: settings.exporter.clone(),
            health: settings.health.clone(),
            spool: settings.spool.clone(),
            span_limits: settings.span_limits.clone(),
            sampling: settings.sampling.clone(),
            logs: settings.logs.buffer(),
        };
        let pipeline = Pipeline::start(config, &resource, registry, probes)?;
        let access = if settings.logs.otlp {
            // The layer installed with the stdout lines sends to this pipeline from now on.
            crate::otlp_logs::attach_global(
                pipeline.log_ingress.clone(),
                pipeline.self_metrics.dropped(Signal::Logs, DropReason::QueueFull),
            );
            AccessLogs {
                mcp: settings.logs.mcp_access.then(|| pipeline.log_ingress.clone()),
                http: settings.logs.http_access.then(|| pipeline.log_ingress.clone()),
            }
        } else {
            AccessLogs::default()
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(pipeline.span_ingress.clone())
            .with_sampler(sampler(settings))
            .with_span_limits(settings.span_limits.sdk_limits())
            .with_resource(resource)
            .build();
        let tracer = provider.tracer_with_scope(scope());
        if settings.telemetry.install_global {
            opentelemetry::global::set_tracer_provider(provider.clone());
            opentelemetry::global::set_text_map_propagator(crate::propagation::outgoing(
                settings.telemetry.propagate_baggage,
            ));
        }
        let metrics_server = if settings.prometheus.enabled {
            let addr = SocketAddr::new(settings.prometheus.bind, settings.prometheus.port);
            let (handle, bound) = crate::metrics_server::start_metrics_server(addr, pipeline.clone(), settings)
                .map_err(|source| InitError::MetricsBind { addr, source })?;
            Some((handle, bound))
        } else {
            None
        };
        let sink = Sink::Ingress(pipeline.metric_ingress.clone());
        let running = Running {
            pipeline,
            _provider: provider,
            metrics_server,
            shutdown_timeout: settings.server.shutdown_timeout,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                mode: Mode::Running(Box::new(running)),
                tracer: Some(tracer),
                sink,
                started: Instant::now(),
                capture_headers: crate::header_capture::captured_headers(&settings.telemetry.capture_request_headers),
                propagate_baggage: settings.telemetry.propagate_baggage,
                access,
            }),
        })
    }

    /// A manager that records nothing: no threads, no sockets, every call returns at once.
    pub fn disabled() -> Self {
        Self {
            inner: Arc::new(Inner {
                mode: Mode::Disabled,
                tracer: None,
                sink: Sink::None,
                started: Instant::now(),
                capture_headers: Arc::from([]),
                propagate_baggage: false,
                access: AccessLogs::default(),
            }),
        }
    }

    /// A manager that keeps every span and metric event in memory, for a user's own tests. The
    /// returned [`TestTelemetry`] reads what was recorded. Needs no actix system.
    pub fn for_testing() -> (Self, TestTelemetry) {
        let capture = Arc::new(Capture::default());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(crate::capture::CaptureProcessor(capture.clone()))
            .with_sampler(Sampler::AlwaysOn)
            .build();
        let tracer = provider.tracer_with_scope(scope());
        capture.keep_provider(provider);
        let manager = Self {
            inner: Arc::new(Inner {
                mode: Mode::Capture,
                tracer: Some(tracer),
                sink: Sink::Capture(capture.clone()),
                started: Instant::now(),
                capture_headers: Arc::from([]),
                propagate_baggage: false,
                access: AccessLogs::default(),
            }),
        };
        (manager, TestTelemetry::new(capture))
    }

    /// Whether anything is recorded.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.inner.mode, Mode::Disabled)
    }

    /// The tracer behind the middleware and [`trace_operation`](Self::trace_operation), for
    /// manual spans (`None` when disabled). The `opentelemetry::global` tracer joins the same
    /// pipeline when `telemetry.install_global` is on.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.inner.tracer.as_ref()
    }

    /// The propagator for outgoing calls (upstream MCP servers, or an application's own HTTP
    /// clients): `traceparent`/`tracestate`, and the incoming `baggage` only with
    /// `telemetry.propagate_baggage`.
    pub fn outgoing_propagator(&self) -> opentelemetry::propagation::TextMapCompositePropagator {
        crate::propagation::outgoing(self.inner.propagate_baggage)
    }

    /// A `tracing` layer sending events as OTLP log records to this manager's pipeline (`None`
    /// when telemetry is disabled), for an application that builds its own subscriber; filter it
    /// with `logs.level`. [`logging::init_with_otlp`](crate::logging::init_with_otlp) installs
    /// one that follows whichever manager started last.
    pub fn log_layer(&self) -> Option<crate::otlp_logs::OtlpLogLayer> {
        self.pipeline().map(|pipeline| crate::otlp_logs::OtlpLogLayer::to_ingress(pipeline.log_ingress.clone()))
    }

    /// The running pipeline, if telemetry is enabled.
    pub fn pipeline(&self) -> Option<&Pipeline> {
        match &self.inner.mode {
            Mode::Running(running) => Some(&running.pipeline),
            _ => None,
        }
    }

    /// Adds a collector (database pool gauges, say) to the registry `/metrics` renders and the
    /// OTLP metric export reads. A no-op when telemetry is disabled.
    pub fn register_collector(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), prometheus::Error> {
        match self.pipeline() {
            Some(pipeline) => pipeline.registry.register(collector),
            None => Ok(()),
        }
    }

    /// Gives the exporter a durable spool (the service passes its database): batches the
    /// collector cannot take wait there, survive a crash, and are replayed when it answers.
    /// A no-op when telemetry is disabled.
    pub fn attach_spool(&self, spool: Arc<dyn metamcp_telemetry_actors::spool::Spool>) {
        if let Some(pipeline) = self.pipeline() {
            pipeline.attach_spool(spool);
        }
    }

    /// Adds a readiness probe that `/health/ready` and `/health` include from the next check on.
    /// A no-op when telemetry is disabled.
    pub async fn add_readiness_probe(&self, probe: Arc<dyn ReadinessProbe>) {
        if let Some(pipeline) = self.pipeline() {
            let _ = pipeline.health.send(metamcp_telemetry_actors::health_check::AddProbe(probe)).await;
            // A fresh report, so /health shows the new component from now on.
            let _ = pipeline.check_health(Duration::from_secs(5)).await;
        }
    }

    /// The address the Prometheus endpoint listens on, if it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        match &self.inner.mode {
            Mode::Running(running) => running.metrics_server.as_ref().map(|(_, addr)| *addr),
            _ => None,
        }
    }

    /// Records one served HTTP request. Never blocks; a full queue drops and counts the event.
    /// The current span, when sampled, becomes the observation's exemplar.
    #[inline]
    pub fn record_request(&self, method: &str, route: &str, status_code: u16, duration: Duration) {
        self.inner.sink.record(|| MetricEvent::Request {
            method: HttpMethod::parse(method),
            route: LabelValue::new(route),
            status_code,
            duration: duration.as_secs_f64(),
            exemplar: current_span(),
        });
    }

    /// [`record_request`](Self::record_request) with the method already parsed and the server
    /// span at hand (the middleware's).
    #[inline]
    pub(crate) fn record_request_method(
        &self,
        method: HttpMethod,
        route: &str,
        status_code: u16,
        duration: Duration,
        exemplar: Option<SpanRef>,
    ) {
        self.inner.sink.record(|| MetricEvent::Request {
            method,
            route: LabelValue::new(route),
            status_code,
            duration: duration.as_secs_f64(),
            exemplar,
        });
    }

    /// Records one tool execution. Never blocks. The current span, when sampled, becomes the
    /// observation's exemplar.
    #[inline]
    pub fn record_tool_execution(&self, tool_name: &str, success: bool, duration: Duration) {
        self.inner.sink.record(|| MetricEvent::ToolExecution {
            tool_name: LabelValue::new(tool_name),
            success,
            duration: duration.as_secs_f64(),
            exemplar: current_span(),
        });
    }

    /// Declares the tool names known before any call (the built-in tools): their
    /// `metamcp_tool_executions_total{tool_name, success="true"|"false"}` and duration series are
    /// on `/metrics` at 0 from the next scrape on, so dashboards and alerts read 0 rather than no
    /// data. Declared names count against `metrics.max_tool_names`. A no-op unless the pipeline runs.
    pub fn declare_tools(&self, names: &[&str]) {
        if let Some(pipeline) = self.pipeline() {
            pipeline.declare_tools(names);
        }
    }

    /// Declares the database system the application queries: its
    /// `metamcp_db_query_duration_seconds{db_system, db_operation, success}` series are on
    /// `/metrics` at 0 for every operation and both outcomes from the next scrape on. A no-op
    /// unless the pipeline runs.
    pub fn declare_db_system(&self, system: DbSystem) {
        if let Some(pipeline) = self.pipeline() {
            pipeline.declare_db_system(system);
        }
    }

    /// Records one database query. Never blocks.
    #[inline]
    pub fn record_db_query(&self, system: DbSystem, operation: DbOperation, success: bool, duration: Duration) {
        self.inner.sink.record(|| MetricEvent::DbQuery {
            system,
            operation,
            success,
            duration: duration.as_secs_f64(),
        });
    }

    /// Records one vector search. Never blocks.
    #[inline]
    pub fn record_vector_search(&self, query_length: usize, result_count: usize, duration: Duration) {
        self.inner.sink.record(|| MetricEvent::VectorSearch {
            query_length: u32::try_from(query_length).unwrap_or(u32::MAX),
            result_count: u32::try_from(result_count).unwrap_or(u32::MAX),
            duration: duration.as_secs_f64(),
        });
    }

    /// A context holding a new INTERNAL span named `name`, a child of the current span; the
    /// current context itself when nothing is recorded. Run work in it with
    /// `opentelemetry::trace::FutureExt::with_context` and end the span with `cx.span().end()`.
    pub fn child_context(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) -> Context {
        let parent = Context::current();
        match self.tracer() {
            Some(tracer) => {
                let span = tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Internal)
                    .with_attributes(attributes)
                    .start_with_context(tracer, &parent);
                parent.with_span(span)
            }
            None => parent,
        }
    }

    /// Runs `operation` inside a new span named `name`, a child of the current span. The span
    /// is the current span while the future runs, so spans started inside become its children.
    /// An `Err` sets the span's status to error and records an `exception` event.
    pub fn trace_operation<F, T, E>(
        &self,
        name: impl Into<Cow<'static, str>>,
        attributes: Vec<KeyValue>,
        operation: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let cx = self.tracer().map(|_| self.child_context(name, attributes));
        async move {
            let Some(cx) = cx else { return operation.await };
            let result = operation.with_context(cx.clone()).await;
            let span = cx.span();
            if let Err(err) = &result {
                let message = err.to_string();
                span.add_event(
                    "exception",
                    vec![
                        KeyValue::new("exception.type", std::any::type_name::<E>()),
                        KeyValue::new("exception.message", message.clone()),
                    ],
                );
                span.set_status(Status::error(message));
            }
            span.end();
            result
        }
    }

    /// Exports everything recorded so far and waits until the collector accepted it. The error
    /// says whether the deadline passed (and with how much still waiting) or the pipeline is gone.
    pub async fn force_flush(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.inner.mode {
            Mode::Running(running) => running.pipeline.force_flush(timeout).await,
            _ => Ok(()),
        }
    }

    /// The latest health report (`None` when disabled or when the health check does not answer).
    pub async fn health(&self) -> Option<HealthReport> {
        self.pipeline()?.health(Duration::from_secs(2)).await
    }

    /// Seconds since the manager was created.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Stops the Prometheus endpoint, drains the channels and exports what is buffered within
    /// the configured `server.shutdown_timeout`; what is left then is dropped and counted.
    pub async fn shutdown(&self) -> ShutdownReport {
        let Mode::Running(running) = &self.inner.mode else { return ShutdownReport::default() };
        let report = running.pipeline.shutdown(running.shutdown_timeout).await;
        if let Some((handle, _)) = &running.metrics_server {
            handle.stop(true).await;
        }
        report
    }
}

/// The current span when it is valid and sampled: the exemplar of a measurement taken now.
/// A thread-local read, no allocation.
#[inline]
pub(crate) fn current_span() -> Option<SpanRef> {
    Context::map_current(|cx| SpanRef::sampled(cx.span().span_context()))
}
