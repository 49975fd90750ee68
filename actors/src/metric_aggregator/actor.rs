//! The metric aggregator actor.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use crossbeam_channel::Receiver;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use prometheus::{Histogram, IntCounter, Registry};
use prost::Message as _;
use rustc_hash::FxHashMap as HashMap;

use super::catalogue::{status_label, ServiceMetrics, OTHER};
use super::config::MetricsConfig;
use super::exemplars::{Exemplar, ExemplarTable, FamilyId, SeriesSlot};
use super::labelled::LabelledState;
use super::messages::{AggregatorStatus, DeclareDbSystem, DeclareTools, Drain, DrainExemplars, ExportNow, GetStatus};
use super::otlp;
use crate::exporter::{ExportBatch, Exporter};
use crate::ingress::{DbOperation, DbSystem, HttpMethod, LabelValue, MetricEvent, SpanRef, Wake};
use crate::sampling::TraceDecisions;
use crate::self_metrics::{ActorKind, CappedLabel, SelfMetrics, Signal};
use crate::supervision::{guarded, injected_fault, InjectPanic};

/// Events folded per turn before the actor yields to its mailbox.
const FOLD_BUDGET: usize = 4096;
/// Cached raw keys per distinct label value kept (methods × status codes per route, say).
const MAX_KEYS_PER_LABEL: usize = 16;

/// The cached children of one raw key: its counter and histogram, whether a label of it was
/// folded into `other`, and the exemplar slot of its series once it has one.
type Cached = (IntCounter, Histogram, bool, Option<SeriesSlot>);

/// Folds metric events into the Prometheus registry and exports snapshots over OTLP.
pub struct MetricAggregator {
    config: MetricsConfig,
    rx: Receiver<MetricEvent>,
    wake: Arc<Wake>,
    registry: Registry,
    service: ServiceMetrics,
    exporter: Option<Addr<Exporter>>,
    resource: Arc<ResourceAttributesWithSchema>,
    metrics: Arc<SelfMetrics>,
    start_time_unix_nano: u64,
    /// Cached children per raw key, whether the key's route was folded into `other`, and the
    /// exemplar slot of its series once it has one.
    requests: HashMap<(HttpMethod, LabelValue, u16), Cached>,
    routes: HashMap<LabelValue, LabelValue>,
    /// Cached children per raw key, whether the key's tool name was folded into `other`, and the
    /// exemplar slot of its series once it has one.
    tools: HashMap<(LabelValue, bool), Cached>,
    /// Cached children of the database histogram (a bounded key space: system × operation × outcome).
    db_queries: HashMap<(DbSystem, DbOperation, bool), Histogram>,
    tool_names: HashMap<LabelValue, LabelValue>,
    /// The labelled families, in catalogue order.
    labelled: Vec<LabelledState>,
    /// The latest exemplar per bucket of the histograms that take them.
    exemplars: ExemplarTable,
    /// Exemplar family ids: request duration, tool execution duration, and each labelled
    /// histogram (by catalogue index).
    exemplar_ids: ExemplarIds,
    /// Which traces exemplars may point at (read at OTLP export).
    decisions: Arc<TraceDecisions>,
    /// When the current fold began (the time of the exemplars it keeps).
    fold_time_unix_nano: u64,
    events_folded: u64,
    snapshots_sent: u64,
}

impl std::fmt::Debug for MetricAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricAggregator").field("queued", &self.rx.len()).field("folded", &self.events_folded).finish()
    }
}

/// Where each histogram's exemplars live in the table.
struct ExemplarIds {
    request: FamilyId,
    tool: FamilyId,
    labelled: Vec<Option<FamilyId>>,
}

fn exemplar_table(service: &ServiceMetrics) -> (ExemplarTable, ExemplarIds) {
    let mut table = ExemplarTable::default();
    let catalogue = &service.catalogue;
    let add = |table: &mut ExemplarTable, family: &super::catalogue::Family| {
        table.add_family(family.name, family.labels, family.buckets)
    };
    let request = add(&mut table, &catalogue.request_duration);
    let tool = add(&mut table, &catalogue.tool_execution_duration);
    let labelled = service
        .labelled
        .iter()
        .map(|handle| {
            (handle.family.kind == super::labelled::FamilyKind::Histogram)
                .then(|| add(&mut table, &handle.family.family))
        })
        .collect();
    (table, ExemplarIds { request, tool, labelled })
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl MetricAggregator {
    /// An aggregator draining `rx` into `service` (registered in `registry`); snapshots go to
    /// `exporter` when one is given.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: MetricsConfig,
        rx: Receiver<MetricEvent>,
        wake: Arc<Wake>,
        registry: Registry,
        service: ServiceMetrics,
        exporter: Option<Addr<Exporter>>,
        resource: Arc<ResourceAttributesWithSchema>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        let labelled = service.labelled.iter().map(|handle| LabelledState::new(handle.clone(), &config)).collect();
        let (exemplars, exemplar_ids) = exemplar_table(&service);
        Self {
            labelled,
            exemplars,
            exemplar_ids,
            decisions: Arc::new(TraceDecisions::head()),
            fold_time_unix_nano: 0,
            config,
            rx,
            wake,
            registry,
            service,
            exporter,
            resource,
            metrics,
            start_time_unix_nano: unix_nanos(),
            requests: HashMap::default(),
            routes: HashMap::default(),
            tools: HashMap::default(),
            db_queries: HashMap::default(),
            tool_names: HashMap::default(),
            events_folded: 0,
            snapshots_sent: 0,
        }
    }

    /// Exemplars in the OTLP export point only at traces `decisions` lets them refer to.
    pub fn with_trace_decisions(mut self, decisions: Arc<TraceDecisions>) -> Self {
        self.decisions = decisions;
        self
    }

    /// Folds queued events; returns true when the budget ran out with events left.
    fn fold(&mut self, budget: usize) -> bool {
        self.fold_time_unix_nano = unix_nanos();
        for _ in 0..budget {
            match self.rx.try_recv() {
                Ok(event) => self.apply(event),
                Err(_) => return false,
            }
        }
        !self.rx.is_empty()
    }

    fn fold_all(&mut self) {
        while self.fold(FOLD_BUDGET) {}
    }

    fn apply(&mut self, event: MetricEvent) {
        self.events_folded += 1;
        match event {
            MetricEvent::Request { method, route, status_code, duration, exemplar } => {
                let key = (method, route, status_code);
                let (family, time) = (self.exemplar_ids.request, self.fold_time_unix_nano);
                if let Some((count, histogram, folded, slot)) = self.requests.get_mut(&key) {
                    count.inc();
                    histogram.observe(duration);
                    if *folded {
                        self.metrics.label_overflow(CappedLabel::Route).inc();
                    }
                    let route = if *folded { OTHER.as_bytes() } else { key.1.as_bytes() };
                    let series = [method.as_str().as_bytes(), route];
                    keep(&mut self.exemplars, family, slot, series, duration, exemplar, time);
                    return;
                }
                let route = bounded(&mut self.routes, key.1.clone(), self.config.max_routes);
                let folded = route.as_str() == OTHER && key.1.as_str() != OTHER;
                if folded {
                    self.metrics.label_overflow(CappedLabel::Route).inc();
                }
                let status = status_label(status_code);
                let count = self.service.requests_total.with_label_values(&[method.as_str(), route.as_str(), &status]);
                let histogram = self.service.request_duration.with_label_values(&[method.as_str(), route.as_str()]);
                count.inc();
                histogram.observe(duration);
                let mut slot = None;
                let series = [method.as_str().as_bytes(), route.as_bytes()];
                keep(&mut self.exemplars, family, &mut slot, series, duration, exemplar, time);
                // Raw keys are remembered up to a bound; beyond it, new keys take this slow path.
                if self.requests.len() < self.config.max_routes.saturating_mul(MAX_KEYS_PER_LABEL) {
                    self.requests.insert(key, (count, histogram, folded, slot));
                }
            }
            MetricEvent::ToolExecution { tool_name, success, duration, exemplar } => {
                let key = (tool_name, success);
                let (family, time) = (self.exemplar_ids.tool, self.fold_time_unix_nano);
                if let Some((count, histogram, folded, slot)) = self.tools.get_mut(&key) {
                    count.inc();
                    histogram.observe(duration);
                    if *folded {
                        self.metrics.label_overflow(CappedLabel::ToolName).inc();
                    }
                    let tool = if *folded { OTHER.as_bytes() } else { key.0.as_bytes() };
                    keep(&mut self.exemplars, family, slot, [tool], duration, exemplar, time);
                    return;
                }
                let tool = bounded(&mut self.tool_names, key.0.clone(), self.config.max_tool_names);
                let folded = tool.as_str() == OTHER && key.0.as_str() != OTHER;
                if folded {
                    self.metrics.label_overflow(CappedLabel::ToolName).inc();
                }
                let outcome = if success { "true" } else { "false" };
                let count = self.service.tool_executions_total.with_label_values(&[tool.as_str(), outcome]);
                let histogram = self.service.tool_execution_duration.with_label_values(&[tool.as_str()]);
                count.inc();
                histogram.observe(duration);
                let mut slot = None;
                keep(&mut self.exemplars, family, &mut slot, [tool.as_bytes()], duration, exemplar, time);
                if self.tools.len() < self.config.max_tool_names.saturating_mul(MAX_KEYS_PER_LABEL) {
                    self.tools.insert(key, (count, histogram, folded, slot));
                }
            }
            MetricEvent::DbQuery { system, operation, success, duration } => {
                let key = (system, operation, success);
                if let Some(histogram) = self.db_queries.get(&key) {
                    histogram.observe(duration);
                    return;
                }
                let outcome = if success { "true" } else { "false" };
                let histogram =
                    self.service.db_query_duration.with_label_values(&[system.as_str(), operation.as_str(), outcome]);
                histogram.observe(duration);
                self.db_queries.insert(key, histogram);
            }
            MetricEvent::Labelled(event) => {
                let event = *event;
                let index = usize::from(event.family);
                if let Some(state) = self.labelled.get_mut(index) {
                    let family = self.exemplar_ids.labelled.get(index).copied().flatten();
                    let (exemplars, time_unix_nano) = (&mut self.exemplars, self.fold_time_unix_nano);
                    let span = event.exemplar;
                    // Called with the series' kept labels: the observed value, or `None` when
                    // the series was removed.
                    let folded = state.apply(event.labels, event.op, |kept, value| {
                        let Some(family) = family else { return };
                        let labels = kept.iter().map(LabelValue::as_bytes);
                        match (value, span) {
                            (Some(value), Some(span)) => {
                                exemplars.record(family, labels, Exemplar { value, span, time_unix_nano })
                            }
                            (None, _) => exemplars.forget(family, labels),
                            (Some(_), None) => {}
                        }
                    });
                    if folded.overflowed > 0 {
                        self.metrics.label_overflow(CappedLabel::Attribute).inc_by(folded.overflowed);
                    }
                }
            }
            MetricEvent::VectorSearch { query_length, result_count, duration } => {
                self.service.vector_searches_total.inc();
                self.service.vector_search_duration.observe(duration);
                self.service.vector_search_results.observe(f64::from(result_count));
                self.service.vector_search_query_length.observe(f64::from(query_length));
            }
        }
    }

    /// Creates the series of `name` at zero, for both outcomes, unless the name is folded.
    fn declare_tool(&mut self, name: LabelValue) {
        let tool = bounded(&mut self.tool_names, name, self.config.max_tool_names);
        if tool.as_str() == OTHER {
            return;
        }
        for outcome in ["true", "false"] {
            self.service.tool_executions_total.with_label_values(&[tool.as_str(), outcome]);
        }
        self.service.tool_execution_duration.with_label_values(&[tool.as_str()]);
    }

    /// Creates the query duration series of `system` at zero, every operation, both outcomes.
    fn declare_db_system(&mut self, system: DbSystem) {
        for operation in DbOperation::ALL {
            for success in [true, false] {
                let outcome = if success { "true" } else { "false" };
                let histogram =
                    self.service.db_query_duration.with_label_values(&[system.as_str(), operation.as_str(), outcome]);
                self.db_queries.insert((system, operation, success), histogram);
            }
        }
    }

    fn export_snapshot(&mut self) {
        let Some(exporter) = &self.exporter else { return };
        if !self.config.otlp_export {
            return;
        }
        let families = self.registry.gather();
        let renames: Vec<_> = self.labelled.iter().map(|state| *state.family()).collect();
        let exemplars = otlp::Exemplars { table: &self.exemplars, decisions: &self.decisions };
        let (request, points) = otlp::to_request(
            &families,
            &renames,
            &self.resource,
            self.start_time_unix_nano,
            unix_nanos(),
            Some(&exemplars),
        );
        if points == 0 {
            return;
        }
        self.snapshots_sent += 1;
        exporter.do_send(ExportBatch { signal: Signal::Metrics, items: points, body: request.encode_to_vec().into() });
    }
}

/// Keeps `span` (when there is one) as the exemplar of `value`'s bucket in the series `labels`
/// of `family`, whose slot is cached in `slot` from the first exemplar on.
fn keep<const N: usize>(
    table: &mut ExemplarTable,
    family: FamilyId,
    slot: &mut Option<SeriesSlot>,
    labels: [&[u8]; N],
    value: f64,
    span: Option<SpanRef>,
    time_unix_nano: u64,
) {
    let Some(span) = span else { return };
    if slot.is_none() {
        *slot = table.slot(family, labels);
    }
    if let Some(slot) = *slot {
        table.record_at(family, slot, Exemplar { value, span, time_unix_nano });
    }
}

/// `value`, or `other` once `cap` distinct values have been seen.
fn bounded(seen: &mut HashMap<LabelValue, LabelValue>, value: LabelValue, cap: usize) -> LabelValue {
    if let Some(kept) = seen.get(&value) {
        return kept.clone();
    }
    let kept = if seen.len() < cap { value.clone() } else { LabelValue::new(OTHER) };
    if seen.len() < cap.saturating_mul(4) {
        seen.insert(value, kept.clone());
    }
    kept
}

impl Actor for MetricAggregator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(crate::ingress::woken_stream(self.wake.clone()));
        ctx.run_interval(self.config.drain_interval, |act, ctx| {
            guarded(ActorKind::MetricAggregator, act, ctx, |act, _| act.fold_all());
        });
        ctx.run_interval(self.config.export_interval, |act, ctx| {
            guarded(ActorKind::MetricAggregator, act, ctx, |act, _| {
                act.fold_all();
                act.export_snapshot();
            });
        });
    }
}

impl StreamHandler<()> for MetricAggregator {
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        let more = guarded(ActorKind::MetricAggregator, self, ctx, |act, _| act.fold(FOLD_BUDGET)).unwrap_or(false);
        if more {
            // Yield to the mailbox between budgets, then continue.
            self.wake.wake();
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Supervised for MetricAggregator {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        crate::internal_events::InternalEvent::emit(
            crate::internal_events::ActorRestarted { actor: ActorKind::MetricAggregator },
            &self.metrics,
        );
    }
}

impl Handler<Drain> for MetricAggregator {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        guarded(ActorKind::MetricAggregator, self, ctx, |act, _| act.fold_all());
    }
}

impl Handler<DrainExemplars> for MetricAggregator {
    type Result = MessageResult<DrainExemplars>;

    fn handle(&mut self, _: DrainExemplars, ctx: &mut Context<Self>) -> Self::Result {
        guarded(ActorKind::MetricAggregator, self, ctx, |act, _| act.fold_all());
        MessageResult(self.exemplars.clone())
    }
}

impl Handler<ExportNow> for MetricAggregator {
    type Result = ();

    fn handle(&mut self, _: ExportNow, ctx: &mut Context<Self>) {
        guarded(ActorKind::MetricAggregator, self, ctx, |act, _| {
            act.fold_all();
            act.export_snapshot();
        });
    }
}

impl Handler<DeclareTools> for MetricAggregator {
    type Result = ();

    fn handle(&mut self, declared: DeclareTools, ctx: &mut Context<Self>) {
        guarded(ActorKind::MetricAggregator, self, ctx, |act, _| {
            for name in declared.names {
                act.declare_tool(name);
            }
        });
    }
}

impl Handler<DeclareDbSystem> for MetricAggregator {
    type Result = ();

    fn handle(&mut self, DeclareDbSystem(system): DeclareDbSystem, ctx: &mut Context<Self>) {
        guarded(ActorKind::MetricAggregator, self, ctx, |act, _| act.declare_db_system(system));
    }
}

impl Handler<GetStatus> for MetricAggregator {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(AggregatorStatus {
            queue_depth: self.rx.len(),
            queue_capacity: self.config.queue_capacity,
            events_folded: self.events_folded,
            routes: self.routes.len().min(self.config.max_routes),
            tools: self.tool_names.len().min(self.config.max_tool_names),
            snapshots_sent: self.snapshots_sent,
        })
    }
}

impl Handler<InjectPanic> for MetricAggregator {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guarded(ActorKind::MetricAggregator, self, ctx, |_, _| {
            injected_fault("injected fault in the metric aggregator")
        });
    }
}
