//! The health check actor.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::components::{add_components, ComponentSource};
use super::config::HealthConfig;
use super::messages::{AddComponents, AddProbe, CheckNow, GetHealth};
use super::report::{ComponentHealth, HealthReport, HealthStatus, SignalHealth};
use crate::exporter::{self, Exporter, ExporterStatus};
use crate::log_buffer::{self, LogBuffer, LogBufferStatus};
use crate::metric_aggregator::{self, AggregatorStatus, MetricAggregator};
use crate::self_metrics::{ActorKind, DropReason, FailureKind, SelfMetrics, Signal, SIGNALS};
use crate::span_buffer::{self, SpanBuffer, SpanBufferStatus};
use crate::supervision::{guarded, injected_fault, InjectPanic};

/// Something outside the pipeline that readiness depends on (a database, say).
pub trait ReadinessProbe: Send + Sync {
    /// The component name in `/health`.
    fn name(&self) -> &'static str;
    /// Resolves to `Ok` with optional figures when the dependency answers.
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, ProbeError>> + Send>>;
}

/// Why a component of `/health` gave no good answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The dependency answered with a failure, described.
    #[error("{0}")]
    Failed(String),
    /// No answer within `health.response_timeout`.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The actor's mailbox is closed.
    #[error("actor unavailable: {0}")]
    Unavailable(MailboxError),
}

/// Answers from one gathering.
struct Gathered {
    span_buffer: Result<SpanBufferStatus, ProbeError>,
    aggregator: Result<AggregatorStatus, ProbeError>,
    exporter: Result<ExporterStatus, ProbeError>,
    /// `None` when no log buffer is watched.
    log_buffer: Option<Result<LogBufferStatus, ProbeError>>,
    probes: Vec<(&'static str, Result<serde_json::Value, ProbeError>)>,
}

/// Gathers the pipeline's status.
pub struct HealthCheck {
    config: HealthConfig,
    span_buffer: Addr<SpanBuffer>,
    aggregator: Addr<MetricAggregator>,
    exporter: Addr<Exporter>,
    log_buffer: Option<Addr<LogBuffer>>,
    probes: Vec<Arc<dyn ReadinessProbe>>,
    /// Sources of further components (they count for the status, not for readiness).
    sources: Vec<Arc<dyn ComponentSource>>,
    metrics: Arc<SelfMetrics>,
    started: Instant,
    version: &'static str,
    latest: Option<HealthReport>,
    drops_seen: [u64; SIGNALS],
    /// Answered by the gathering under way.
    waiting: Vec<oneshot::Sender<HealthReport>>,
    /// Asked while a gathering was under way: it may have read the actors before the question,
    /// so these get the next one.
    queued: Vec<oneshot::Sender<HealthReport>>,
    gathering: bool,
}

impl std::fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheck").field("status", &self.latest.as_ref().map(|r| r.status)).finish()
    }
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl HealthCheck {
    /// A health check over the three other actors and the given probes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: HealthConfig,
        span_buffer: Addr<SpanBuffer>,
        aggregator: Addr<MetricAggregator>,
        exporter: Addr<Exporter>,
        probes: Vec<Arc<dyn ReadinessProbe>>,
        metrics: Arc<SelfMetrics>,
        version: &'static str,
    ) -> Self {
        Self {
            config,
            span_buffer,
            aggregator,
            exporter,
            log_buffer: None,
            probes,
            sources: Vec::new(),
            metrics,
            started: Instant::now(),
            version,
            latest: None,
            drops_seen: [0; SIGNALS],
            waiting: Vec::new(),
            queued: Vec::new(),
            gathering: false,
        }
    }

    /// The health check with the log buffer as a component (`log_buffer`).
    pub fn with_log_buffer(mut self, log_buffer: Addr<LogBuffer>) -> Self {
        self.log_buffer = Some(log_buffer);
        self
    }

    fn gather(&mut self, ctx: &mut Context<Self>) {
        if self.gathering {
            return;
        }
        self.gathering = true;
        self.waiting.append(&mut self.queued);
        let timeout = self.config.response_timeout;
        let span_buffer = ask(self.span_buffer.send(span_buffer::GetStatus), timeout);
        let aggregator = ask(self.aggregator.send(metric_aggregator::GetStatus), timeout);
        let exporter = ask(self.exporter.send(exporter::GetStatus), timeout);
        let log_request = self.log_buffer.as_ref().map(|addr| addr.send(log_buffer::GetStatus));
        let log_buffer = async move {
            match log_request {
                Some(request) => Some(ask(request, timeout).await),
                None => None,
            }
        };
        let probes: Vec<_> = self
            .probes
            .iter()
            .map(|probe| {
                let name = probe.name();
                let check = probe.check();
                async move {
                    let result = match tokio::time::timeout(timeout, check).await {
                        Ok(result) => result,
                        Err(_) => Err(ProbeError::Timeout(timeout)),
                    };
                    (name, result)
                }
            })
            .collect();
        let all = async move {
            let (span_buffer, aggregator, exporter, log_buffer, probes) = futures_util::join!(
                span_buffer,
                aggregator,
                exporter,
                log_buffer,
                futures_util::future::join_all(probes)
            );
            Gathered { span_buffer, aggregator, exporter, log_buffer, probes }
        };
        ctx.spawn(all.into_actor(self).map(|gathered, act, ctx| {
            act.gathering = false;
            guarded(ActorKind::HealthCheck, act, ctx, |act, _| {
                let report = act.report(gathered);
                for waiter in act.waiting.drain(..) {
                    let _ = waiter.send(report.clone());
                }
                act.latest = Some(report);
            });
            if !act.queued.is_empty() {
                act.gather(ctx);
            }
        }));
    }

    fn signal_health(&self, signal: Signal) -> SignalHealth {
        let last = self.metrics.last_success(signal).get();
        SignalHealth {
            exported: self.metrics.exported(signal).get(),
            dropped: DropReason::ALL.iter().map(|&r| (r.as_str(), self.metrics.dropped(signal, r).get())).collect(),
            export_failures: [FailureKind::Retryable, FailureKind::Permanent]
                .iter()
                .map(|&k| (k.as_str(), self.metrics.export_failures(signal, k).get()))
                .collect(),
            consecutive_failures: self.metrics.consecutive_failures(signal).get().max(0) as u64,
            last_successful_export_unix: (last > 0).then_some(last as u64),
        }
    }

    /// A component fed by an ingress queue: depth, capacity, drops at the door, and `degraded`
    /// with `dropping` as the reason when it dropped since the last check.
    fn queue_component(
        &self,
        kind: ActorKind,
        signal: Signal,
        (depth, capacity): (usize, usize),
        dropping: Option<&str>,
    ) -> ComponentHealth {
        let mut c = ComponentHealth::new(self.metrics.restarts(kind).get());
        c.queue_depth = Some(depth as u64);
        c.queue_capacity = Some(capacity as u64);
        c.details.insert("dropped_queue_full", self.metrics.dropped(signal, DropReason::QueueFull).get().into());
        if let Some(reason) = dropping {
            c.status = HealthStatus::Degraded;
            c.reason = Some(reason.to_owned());
        }
        c
    }

    fn report(&mut self, gathered: Gathered) -> HealthReport {
        let restarts = |kind: ActorKind| self.metrics.restarts(kind).get();
        let drops_now = Signal::ALL.map(|s| self.metrics.dropped_total(s));
        let dropped_recently = Signal::ALL.map(|s| drops_now[s as usize] > self.drops_seen[s as usize]);
        self.drops_seen = drops_now;
        let mut components = BTreeMap::new();

        let span_buffer = match gathered.span_buffer {
            Ok(status) => {
                let mut c = self.queue_component(
                    ActorKind::SpanBuffer,
                    Signal::Traces,
                    (status.queue_depth, status.queue_capacity),
                    dropped_recently[0].then_some("spans were dropped since the last check"),
                );
                c.details.insert("buffered", status.buffered.into());
                c.details.insert("batches_sent", status.batches_sent.into());
                c.details.insert("sampling", status.sampling_details());
                c
            }
            Err(why) => ComponentHealth::unresponsive(restarts(ActorKind::SpanBuffer), why.to_string()),
        };
        components.insert(ActorKind::SpanBuffer.as_str().to_owned(), span_buffer);

        let aggregator = match gathered.aggregator {
            Ok(status) => {
                let mut c = self.queue_component(
                    ActorKind::MetricAggregator,
                    Signal::Metrics,
                    (status.queue_depth, status.queue_capacity),
                    dropped_recently[1].then_some("metric events were dropped since the last check"),
                );
                c.details.insert("events_folded", status.events_folded.into());
                c.details.insert("routes", status.routes.into());
                c.details.insert("tools", status.tools.into());
                c.details.insert("snapshots_sent", status.snapshots_sent.into());
                c
            }
            Err(why) => ComponentHealth::unresponsive(restarts(ActorKind::MetricAggregator), why.to_string()),
        };
        components.insert(ActorKind::MetricAggregator.as_str().to_owned(), aggregator);

        if let Some(gathered) = gathered.log_buffer {
            let log_buffer = match gathered {
                Ok(status) => {
                    let mut c = self.queue_component(
                        ActorKind::LogBuffer,
                        Signal::Logs,
                        (status.queue_depth, status.queue_capacity),
                        dropped_recently[Signal::Logs as usize]
                            .then_some("log records were dropped since the last check"),
                    );
                    c.details.insert("buffered", status.buffered.into());
                    c.details.insert("batches_sent", status.batches_sent.into());
                    c.details.insert("records_sent", status.records_sent.into());
                    c
                }
                Err(why) => ComponentHealth::unresponsive(restarts(ActorKind::LogBuffer), why.to_string()),
            };
            components.insert(ActorKind::LogBuffer.as_str().to_owned(), log_buffer);
        }

        let exporter = match gathered.exporter {
            Ok(status) => {
                let mut c = ComponentHealth::new(restarts(ActorKind::Exporter));
                c.queue_depth = Some(status.pending_batches as u64);
                c.queue_capacity = Some(status.pending_capacity as u64);
                c.details.insert("collector_reachable", status.collector_reachable.into());
                c.details.insert("pending_items", status.pending_items.into());
                c.details.insert("in_flight", status.in_flight.into());
                c.details.insert("held_bytes", status.held_bytes.into());
                c.details.insert("max_held_bytes", status.max_held_bytes.into());
                let spool = &status.spool;
                c.details.insert(
                    "spool",
                    serde_json::json!({
                        "backend": spool.backend,
                        "fallback": spool.fallback,
                        "error": spool.error,
                        "batches": spool.batches,
                        "bytes": spool.bytes,
                        "max_bytes": spool.max_bytes,
                        "memory_batches": spool.memory_batches,
                        "items": {
                            Signal::Traces.as_str(): spool.items[Signal::Traces as usize],
                            Signal::Metrics.as_str(): spool.items[Signal::Metrics as usize],
                            Signal::Logs.as_str(): spool.items[Signal::Logs as usize],
                        },
                        "replaying": spool.replaying,
                        "when_full": {
                            Signal::Traces.as_str(): spool.policies[Signal::Traces as usize].to_string(),
                            Signal::Metrics.as_str(): spool.policies[Signal::Metrics as usize].to_string(),
                            Signal::Logs.as_str(): spool.policies[Signal::Logs as usize].to_string(),
                        },
                    }),
                );
                if let Some(error) = &status.last_error {
                    c.details.insert("last_error", error.clone().into());
                }
                for signal in Signal::ALL {
                    c.signals.insert(signal.as_str(), self.signal_health(signal));
                }
                if !status.collector_reachable {
                    c.status = HealthStatus::Degraded;
                    let down = status.unreachable_for.unwrap_or_default();
                    c.reason = Some(format!(
                        "collector unreachable for {}",
                        humantime::format_duration(Duration::from_secs(down.as_secs()))
                    ));
                } else if status.last_error.is_some() {
                    c.status = HealthStatus::Degraded;
                    c.reason = Some("the last export failed".into());
                }
                if spool.fallback {
                    c.status = HealthStatus::Degraded;
                    let why = format!(
                        "the spool's database is unavailable; batches are spooled in memory ({})",
                        spool.error.as_deref().unwrap_or("no answer")
                    );
                    c.reason = Some(match c.reason.take() {
                        Some(first) => format!("{first}; {why}"),
                        None => why,
                    });
                }
                c
            }
            Err(why) => ComponentHealth::unresponsive(restarts(ActorKind::Exporter), why.to_string()),
        };
        components.insert(ActorKind::Exporter.as_str().to_owned(), exporter);
        components
            .insert(ActorKind::HealthCheck.as_str().to_owned(), ComponentHealth::new(restarts(ActorKind::HealthCheck)));

        let mut probes_ok = true;
        for (name, result) in gathered.probes {
            let component = match result {
                Ok(details) => {
                    let mut c = ComponentHealth::new(0);
                    if let serde_json::Value::Object(map) = details {
                        for (key, value) in map {
                            // Probe figures use static keys only; anything else is dropped.
                            if let Some(key) = static_key(&key) {
                                c.details.insert(key, value);
                            }
                        }
                    }
                    c
                }
                Err(why) => {
                    probes_ok = false;
                    ComponentHealth::unresponsive(0, why.to_string())
                }
            };
            components.insert(name.to_owned(), component);
        }

        add_components(&mut components, &self.sources);

        let pipeline_up = [ActorKind::SpanBuffer, ActorKind::MetricAggregator, ActorKind::Exporter]
            .iter()
            .all(|kind| components.get(kind.as_str()).is_some_and(|c| c.status != HealthStatus::Unhealthy))
            && (self.log_buffer.is_none()
                || components.get(ActorKind::LogBuffer.as_str()).is_some_and(|c| c.status != HealthStatus::Unhealthy));
        HealthReport {
            status: HealthReport::overall(&components),
            uptime_seconds: self.started.elapsed().as_secs(),
            version: self.version,
            checked_at_unix: unix_secs(),
            ready: pipeline_up && probes_ok,
            components,
        }
    }
}

/// Keys probes may report (the report's maps use static keys).
fn static_key(key: &str) -> Option<&'static str> {
    const KEYS: &[&str] = &[
        "backend",
        "pool_size",
        "pool_idle",
        "pool_in_use",
        "idle",
        "in_use",
        "latency_ms",
        "mode",
        "spooled_batches",
        "spooled_bytes",
    ];
    KEYS.iter().copied().find(|k| *k == key)
}

async fn ask<T>(request: impl Future<Output = Result<T, MailboxError>>, timeout: Duration) -> Result<T, ProbeError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(ProbeError::Unavailable(err)),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

impl Actor for HealthCheck {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.gathering = false;
        self.gather(ctx);
        ctx.run_interval(self.config.check_interval, |act, ctx| {
            guarded(ActorKind::HealthCheck, act, ctx, |act, ctx| act.gather(ctx));
        });
    }
}

impl Supervised for HealthCheck {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        crate::internal_events::InternalEvent::emit(
            crate::internal_events::ActorRestarted { actor: ActorKind::HealthCheck },
            &self.metrics,
        );
    }
}

impl Handler<GetHealth> for HealthCheck {
    type Result = ResponseFuture<HealthReport>;

    fn handle(&mut self, _: GetHealth, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(report) = self.latest.clone() {
            return Box::pin(async move { report });
        }
        self.handle(CheckNow, ctx)
    }
}

impl Handler<AddProbe> for HealthCheck {
    type Result = ();

    fn handle(&mut self, AddProbe(probe): AddProbe, _: &mut Context<Self>) {
        if !self.probes.iter().any(|known| known.name() == probe.name()) {
            self.probes.push(probe);
        }
    }
}

impl Handler<AddComponents> for HealthCheck {
    type Result = ();

    fn handle(&mut self, AddComponents(source): AddComponents, _: &mut Context<Self>) {
        self.sources.push(source);
    }
}

impl Handler<CheckNow> for HealthCheck {
    type Result = ResponseFuture<HealthReport>;

    fn handle(&mut self, _: CheckNow, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        // A report gathered now: a gathering already under way read the actors before this
        // question, so it is answered by the next one.
        if self.gathering {
            self.queued.push(tx);
        } else {
            self.waiting.push(tx);
            self.gather(ctx);
        }
        let version = self.version;
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| HealthReport {
                status: HealthStatus::Unhealthy,
                uptime_seconds: 0,
                version,
                checked_at_unix: unix_secs(),
                ready: false,
                components: BTreeMap::new(),
            })
        })
    }
}

impl Handler<InjectPanic> for HealthCheck {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guarded(ActorKind::HealthCheck, self, ctx, |_, _| injected_fault("injected fault in the health check"));
    }
}
