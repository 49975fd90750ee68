//! Starts the five actors, each on its own arbiter, wires them to the ingress channels, and
//! stops them in order: a last metric snapshot, the log and span channels drained, then the
//! exporter exports (or spools) what is buffered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Addr, Supervisor};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use prometheus::Registry;

use crate::exporter::config::ExporterConfig;
use crate::exporter::{AttachSpool, DrainReport, Exporter};
use crate::health_check::config::HealthConfig;
use crate::health_check::{CheckNow, GetHealth, HealthCheck, HealthReport, ReadinessProbe};
use crate::ingress::{self, FlushHook, MetricIngress, SpanIngress};
use crate::ingress::{DbSystem, LabelValue};
use crate::log_buffer::{self, LogBuffer, LogBufferConfig, LogIngress};
use crate::metric_aggregator::config::MetricsConfig;
use crate::metric_aggregator::{self, Catalogue, DeclareDbSystem, DeclareTools, MetricAggregator, ServiceMetrics};
use crate::sampling::{SamplingConfig, SamplingMetrics, TraceDecisions};
use crate::self_metrics::{DepthProbe, QueueGauges, SelfMetrics};
use crate::span_buffer::config::SpanBufferConfig;
use crate::span_buffer::limits::SpanLimitsConfig;
use crate::span_buffer::{Flush, FlushError, Shutdown, SpanBuffer};
use crate::spool::{Spool, SpoolConfig};
use crate::supervision::InjectPanic;

/// Thread names of the five actors, in start order (at most 15 bytes: the kernel's limit).
pub const THREAD_NAMES: [&str; 5] =
    ["mmcp-exporter", "mmcp-spanbuffer", "mmcp-aggregator", "mmcp-health", "mmcp-logbuffer"];

/// True on the threads the pipeline's actors run on ([`THREAD_NAMES`]): an event emitted there
/// is the pipeline's own, whatever its target (see [`log_buffer::is_pipeline_event`]).
#[inline]
pub fn is_pipeline_thread(name: &str) -> bool {
    name.starts_with(log_buffer::PIPELINE_THREAD_PREFIX) && THREAD_NAMES.contains(&name)
}

/// Starts a named thread running its own actix system and returns that system's handle.
fn named_system(name: &str) -> std::io::Result<actix_rt::System> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let runner = actix_rt::System::new();
        if tx.send(actix_rt::System::current()).is_ok() {
            // Runs until `System::stop`; an error here only means the runtime failed at exit.
            let _ = runner.run();
        }
    })?;
    rx.recv().map_err(|_| std::io::Error::other("the pipeline thread exited at start"))
}

/// Everything the pipeline is tuned by, and the metric catalogue it keeps.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The metric families the aggregator keeps and the prefix of the pipeline's own metrics.
    pub catalogue: Catalogue,
    /// `[span_buffer]`
    pub span_buffer: SpanBufferConfig,
    /// `[metrics]`
    pub metrics: MetricsConfig,
    /// `[exporter]`
    pub exporter: ExporterConfig,
    /// `[health]`
    pub health: HealthConfig,
    /// `[spool]`
    pub spool: SpoolConfig,
    /// `[span_limits]`: the value length limit the span buffer applies (the count limits are the
    /// tracer provider's).
    pub span_limits: SpanLimitsConfig,
    /// `[sampling]`: head sampling (every sampled span exported) or tail sampling in the span
    /// buffer.
    pub sampling: SamplingConfig,
    /// `[logs]`: the log record queue and batching.
    pub logs: LogBufferConfig,
}

impl PipelineConfig {
    /// The defaults of every section, keeping the families `catalogue` describes.
    pub fn new(catalogue: Catalogue) -> Self {
        Self {
            catalogue,
            span_buffer: SpanBufferConfig::default(),
            metrics: MetricsConfig::default(),
            exporter: ExporterConfig::default(),
            health: HealthConfig::default(),
            spool: SpoolConfig::default(),
            span_limits: SpanLimitsConfig::default(),
            sampling: SamplingConfig::default(),
            logs: LogBufferConfig::default(),
        }
    }
}

/// A pipeline that could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A metric could not be registered (a name clash in the given registry).
    #[error("cannot register the pipeline's metrics: {0}")]
    Registry(#[from] prometheus::Error),
    /// An actor thread could not be started.
    #[error("cannot start a pipeline thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What shutdown achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// What the exporter still held at the deadline (dropped, counted as `shutdown_timeout`).
    pub left: DrainReport,
    /// Whether the deadline passed.
    pub timed_out: bool,
}

/// A running pipeline: the ingress handles for the hot path and the actors' addresses.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Feeds finished spans in; install it in the tracer provider.
    pub span_ingress: SpanIngress,
    /// Feeds metric events in.
    pub metric_ingress: MetricIngress,
    /// Feeds log records in.
    pub log_ingress: LogIngress,
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// The service metrics in that registry.
    pub service_metrics: ServiceMetrics,
    /// The pipeline's own metrics.
    pub self_metrics: Arc<SelfMetrics>,
    /// The span buffer.
    pub span_buffer: Addr<SpanBuffer>,
    /// The metric aggregator.
    pub aggregator: Addr<MetricAggregator>,
    /// The exporter.
    pub exporter: Addr<Exporter>,
    /// The health check.
    pub health: Addr<HealthCheck>,
    /// The log buffer.
    pub log_buffer: Addr<LogBuffer>,
    /// Which traces were kept, for exemplars (every sampled trace under head sampling).
    pub trace_decisions: Arc<TraceDecisions>,
    systems: Arc<Vec<actix_rt::System>>,
}

impl Pipeline {
    /// Starts the actors, each on its own named thread (`mmcp-exporter`, `mmcp-spanbuffer`,
    /// `mmcp-aggregator`, `mmcp-health`, `mmcp-logbuffer`) running its own actix system, so the
    /// pipeline works whatever runtime the caller uses and shows up by name in `top -H` and
    /// `/proc`.
    pub fn start(
        config: PipelineConfig,
        resource: &Resource,
        registry: Registry,
        probes: Vec<Arc<dyn ReadinessProbe>>,
    ) -> Result<Self, StartError> {
        let self_metrics = SelfMetrics::register(&registry, config.catalogue.self_metrics_prefix)?;
        let service_metrics = ServiceMetrics::register(&registry, &config.catalogue)?;
        let (span_ingress, span_rx, span_wake, span_bytes) = ingress::span_channel(
            config.span_buffer.queue_capacity,
            usize::try_from(config.span_buffer.queue_max_bytes).unwrap_or(usize::MAX),
            config.span_buffer.max_batch_size,
            self_metrics.clone(),
        );
        let (metric_ingress, metric_rx, metric_wake) = ingress::metric_channel(
            config.metrics.queue_capacity,
            (config.metrics.queue_capacity / 4).max(1),
            self_metrics.clone(),
        );
        let (log_ingress, log_rx, log_wake, log_bytes) = log_buffer::log_channel(
            config.logs.queue_capacity,
            usize::try_from(config.logs.queue_max_bytes).unwrap_or(usize::MAX),
            config.logs.max_batch_size,
            self_metrics.clone(),
        );
        let span_probe = span_rx.clone();
        let metric_probe = metric_rx.clone();
        let log_probe = log_rx.clone();
        let probes_for_gauges: Vec<(&'static str, usize, DepthProbe)> = vec![
            ("spans", config.span_buffer.queue_capacity, Box::new(move || span_probe.len())),
            ("metric_events", config.metrics.queue_capacity, Box::new(move || metric_probe.len())),
            ("logs", config.logs.queue_capacity, Box::new(move || log_probe.len())),
        ];
        let bytes_probe = span_bytes.clone();
        let log_bytes_probe = log_bytes.clone();
        let byte_gauges: Vec<(&'static str, usize, DepthProbe)> = vec![
            ("spans", bytes_probe.limit(), Box::new(move || bytes_probe.used())),
            ("logs", log_bytes_probe.limit(), Box::new(move || log_bytes_probe.used())),
        ];
        let queue_gauges = QueueGauges::new(config.catalogue.self_metrics_prefix, probes_for_gauges)?;
        registry.register(Box::new(queue_gauges.with_bytes(byte_gauges)))?;

        let resource = Arc::new(ResourceAttributesWithSchema::from(resource));
        let (trace_decisions, sampling_metrics) = if config.sampling.is_tail() {
            let metrics = SamplingMetrics::register(&registry, config.catalogue.self_metrics_prefix)?;
            (Arc::new(TraceDecisions::tail(config.sampling.decision_memory())), metrics)
        } else {
            (Arc::new(TraceDecisions::head()), SamplingMetrics::unregistered())
        };
        let systems = THREAD_NAMES.iter().map(|name| named_system(name)).collect::<Result<Vec<_>, _>>()?;
        let handles: Vec<actix::ArbiterHandle> = systems.iter().map(|s| s.arbiter().clone()).collect();

        let exporter = {
            let (config, spool) = (config.exporter.clone(), config.spool.clone());
            let metrics = self_metrics.clone();
            Supervisor::start_in_arbiter(&handles[0], move |_| Exporter::with_spool(config, spool, metrics))
        };
        let span_buffer = {
            let (config, limits, sampling) =
                (config.span_buffer.clone(), config.span_limits.clone(), config.sampling.clone());
            let (exporter, resource, metrics) = (exporter.clone(), resource.clone(), self_metrics.clone());
            let kept = trace_decisions.clone();
            Supervisor::start_in_arbiter(&handles[1], move |_| {
                SpanBuffer::new(config, span_rx, span_bytes, span_wake, exporter, resource, metrics)
                    .with_span_limits(&limits)
                    .with_sampling(&sampling, sampling_metrics, kept)
            })
        };
        let aggregator = {
            let config = config.metrics.clone();
            let (registry, service) = (registry.clone(), service_metrics.clone());
            let (exporter, resource, metrics) = (exporter.clone(), resource.clone(), self_metrics.clone());
            let decisions = trace_decisions.clone();
            Supervisor::start_in_arbiter(&handles[2], move |_| {
                MetricAggregator::new(
                    config,
                    metric_rx,
                    metric_wake,
                    registry,
                    service,
                    Some(exporter),
                    resource,
                    metrics,
                )
                .with_trace_decisions(decisions.clone())
            })
        };
        let log_buffer = {
            let config = config.logs.clone();
            let (exporter, resource, metrics) = (exporter.clone(), resource.clone(), self_metrics.clone());
            Supervisor::start_in_arbiter(&handles[4], move |_| {
                LogBuffer::new(config, log_rx, log_bytes, log_wake, exporter, resource, metrics)
            })
        };
        let health = {
            let config = config.health.clone();
            let (span_buffer, aggregator, exporter) = (span_buffer.clone(), aggregator.clone(), exporter.clone());
            let metrics = self_metrics.clone();
            let log_buffer = log_buffer.clone();
            Supervisor::start_in_arbiter(&handles[3], move |_| {
                HealthCheck::new(config, span_buffer, aggregator, exporter, probes, metrics, env!("CARGO_PKG_VERSION"))
                    .with_log_buffer(log_buffer)
            })
        };
        let flush_target = span_buffer.clone();
        let flush_arbiter = handles[1].clone();
        let hook: FlushHook = Arc::new(move |timeout: Duration| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let deadline = Instant::now() + timeout;
            let request = flush_target.send(Flush { deadline });
            // The answer is awaited on the span buffer's arbiter, never on the caller's runtime.
            let sent = flush_arbiter.spawn(async move {
                let result = match request.await {
                    Ok(result) => result,
                    Err(err) => Err(FlushError::ExporterGone(err.to_string())),
                };
                let _ = tx.send(result);
            });
            if !sent {
                return Err(FlushError::ArbiterGone);
            }
            rx.recv_timeout(timeout + Duration::from_millis(100)).unwrap_or(Err(FlushError::NoAnswer))
        });
        let span_ingress = span_ingress.with_flush_hook(hook);

        Ok(Self {
            span_ingress,
            metric_ingress,
            log_ingress,
            registry,
            service_metrics,
            self_metrics,
            span_buffer,
            aggregator,
            exporter,
            health,
            log_buffer,
            trace_decisions,
            systems: Arc::new(systems),
        })
    }

    /// Exports every span and log record recorded so far and waits for the collector to accept
    /// them.
    pub async fn force_flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let deadline = Instant::now() + timeout;
        self.aggregator.do_send(metric_aggregator::ExportNow);
        // Sent before the span buffer's flush, whose exporter drain then covers the log batches.
        let _ = tokio::time::timeout(timeout, self.log_buffer.send(log_buffer::SendBuffered)).await;
        match self.span_buffer.send(Flush { deadline }).await {
            Ok(result) => result,
            Err(err) => Err(FlushError::ExporterGone(err.to_string())),
        }
    }

    /// Declares tool names the application knows in advance (its built-in tools): their
    /// tool execution series exist at zero from now on, both outcomes, so dashboards and alerts
    /// read 0 rather than no data. Declared names take slots under `metrics.max_tool_names`.
    pub fn declare_tools(&self, names: &[&str]) {
        let names = names.iter().map(|name| LabelValue::new(name)).collect();
        // Start-up, not the hot path: the aggregator's mailbox, ahead of any later scrape's drain.
        self.aggregator.do_send(DeclareTools { names });
    }

    /// Declares the database system the application queries: its query duration series exist
    /// at zero from now on, for every operation and both outcomes.
    pub fn declare_db_system(&self, system: DbSystem) {
        self.aggregator.do_send(DeclareDbSystem(system));
    }

    /// Folds every queued metric event into the registry (before a scrape).
    pub async fn drain_metrics(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.aggregator.send(metric_aggregator::Drain)).await;
    }

    /// Folds every queued metric event, then a copy of the latest exemplar per histogram bucket
    /// (empty when the aggregator does not answer within `timeout`).
    pub async fn exemplars(&self, timeout: Duration) -> metric_aggregator::ExemplarTable {
        match tokio::time::timeout(timeout, self.aggregator.send(metric_aggregator::DrainExemplars)).await {
            Ok(Ok(table)) => table,
            _ => metric_aggregator::ExemplarTable::default(),
        }
    }

    /// The latest health report.
    pub async fn health(&self, timeout: Duration) -> Option<HealthReport> {
        tokio::time::timeout(timeout, self.health.send(GetHealth)).await.ok()?.ok()
    }

    /// A fresh health report, gathered now.
    pub async fn check_health(&self, timeout: Duration) -> Option<HealthReport> {
        tokio::time::timeout(timeout, self.health.send(CheckNow)).await.ok()?.ok()
    }

    /// Drains the channels and exports what is buffered within `timeout`; what is left at the
    /// deadline is dropped and counted. Stops the arbiters afterwards.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        // Metrics first: one final snapshot joins the exporter's queue behind the spans' batches.
        let _ = tokio::time::timeout(timeout, self.aggregator.send(metric_aggregator::ExportNow)).await;
        // Then the log records: their batches join the exporter's queue before its final drain.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(remaining, self.log_buffer.send(log_buffer::SendBuffered)).await;
        let left = match tokio::time::timeout(
            // Past the deadline, a spool write under way gets a short grace.
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(2500),
            self.span_buffer.send(Shutdown { deadline }),
        )
        .await
        {
            Ok(Ok(report)) => report,
            _ => DrainReport { batches_left: usize::MAX, items_left: u64::MAX },
        };
        for system in self.systems.iter() {
            system.stop();
        }
        ShutdownReport { left, timed_out: left.batches_left > 0 }
    }

    /// Gives the exporter a durable spool (the service's database); until then, and while it
    /// fails, batches are spooled in memory.
    pub fn attach_spool(&self, spool: Arc<dyn Spool>) {
        self.exporter.do_send(AttachSpool(spool));
    }

    /// Makes the named actor panic (fault injection for supervision tests).
    #[doc(hidden)]
    pub fn inject_panic(&self, actor: crate::self_metrics::ActorKind) {
        use crate::self_metrics::ActorKind;
        match actor {
            ActorKind::SpanBuffer => self.span_buffer.do_send(InjectPanic),
            ActorKind::MetricAggregator => self.aggregator.do_send(InjectPanic),
            ActorKind::Exporter => self.exporter.do_send(InjectPanic),
            ActorKind::HealthCheck => self.health.do_send(InjectPanic),
            ActorKind::LogBuffer => self.log_buffer.do_send(InjectPanic),
        }
    }
}
