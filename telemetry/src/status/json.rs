//! The body of `/status.json`: its types, and how they are built from a health report, the
//! gathered registry and the window's baseline. Every string from the health report is
//! redacted and shortened.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metamcp_telemetry_actors::health_check::{HealthReport, HealthStatus};
use serde::Serialize;

use super::families::{label_of, names, scalar, Buckets, Families};
use super::text::shorten;
use super::window::{Baseline, Sample};
use super::REFRESH_SECONDS;

/// Most routes listed.
const MAX_ROUTES: usize = 20;

/// The body of `/status.json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusJson {
    /// `enabled` or `disabled`.
    pub telemetry: &'static str,
    /// The service version.
    pub version: &'static str,
    /// Seconds since telemetry started.
    pub uptime_seconds: u64,
    /// Unix time (seconds) of this answer.
    pub generated_at_unix: u64,
    /// How often the page polls, in seconds.
    pub refresh_seconds: u64,
    /// Pipeline health; `null` when telemetry is disabled or the health check did not answer.
    pub health: Option<HealthJson>,
    /// The upstream servers (the `upstream:<name>` components of `/health`), by name.
    pub upstreams: Vec<super::upstreams::UpstreamJson>,
    /// Pipeline queues, by name.
    pub queues: Vec<QueueJson>,
    /// Dropped items by signal and reason; `null` when telemetry is disabled.
    pub drops: Option<DropsJson>,
    /// Export state; `null` when telemetry is disabled.
    pub export: Option<ExportJson>,
    /// Request, tool execution and vector search rates and latency; `null` when disabled.
    pub traffic: Option<TrafficJson>,
    /// Process figures (Linux); `null` where absent.
    pub process: ProcessJson,
}

/// Overall and per-component health.
#[derive(Debug, Clone, Serialize)]
pub struct HealthJson {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: HealthStatus,
    /// Whether the service is ready (pipeline and readiness probes up).
    pub ready: bool,
    /// Unix time of the gathering the report comes from.
    pub checked_at_unix: u64,
    /// Every component, by name.
    pub components: Vec<ComponentJson>,
}

/// One component of the health report.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentJson {
    /// Its name (`span_buffer`, `exporter`, `database`, …).
    pub name: String,
    /// Its status.
    pub status: HealthStatus,
    /// Why it is not healthy.
    pub reason: Option<String>,
    /// Restarts after a panic.
    pub restarts: u64,
    /// Items in its queue.
    pub queue_depth: Option<u64>,
    /// Capacity of that queue.
    pub queue_capacity: Option<u64>,
    /// Component-specific figures (static keys: buffered, pool sizes, spool sizes, …).
    pub details: BTreeMap<String, serde_json::Value>,
}

/// One bounded buffer: how full it is against its bound.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueJson {
    /// The queue (`spans`, `metric_events`, `export_batches`, `export_memory`, `spool`, …).
    pub name: String,
    /// What depth and capacity count: `items`, `batches` or `bytes`.
    pub unit: &'static str,
    /// How much is in it now.
    pub depth: Option<f64>,
    /// Its bound.
    pub capacity: Option<f64>,
}

/// Drops by signal and reason.
#[derive(Debug, Clone, Serialize)]
pub struct DropsJson {
    /// Every drop since start; `null` when the counter family is absent.
    pub total: Option<f64>,
    /// Drops per second over the window.
    pub rate_per_second: Option<f64>,
    /// signal → reason → count.
    pub by_signal: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Export state.
#[derive(Debug, Clone, Serialize)]
pub struct ExportJson {
    /// Whether the exporter reaches the collector (from health).
    pub collector_reachable: Option<bool>,
    /// The `metamcp_telemetry_collector_up` gauge.
    pub collector_up: Option<f64>,
    /// The last export error, shortened; `null` after a success.
    pub last_error: Option<String>,
    /// Batches waiting for export.
    pub pending_batches: Option<u64>,
    /// Capacity of the pending batches.
    pub pending_capacity: Option<u64>,
    /// Items in the pending batches.
    pub pending_items: Option<u64>,
    /// Exports in flight.
    pub in_flight: Option<u64>,
    /// Items accepted by the collector, by signal.
    pub exported: Option<BTreeMap<String, f64>>,
    /// Items exported per second over the window.
    pub exported_per_second: Option<f64>,
    /// Failed attempts by signal and kind.
    pub failures: BTreeMap<String, BTreeMap<String, f64>>,
    /// Every failed attempt since start; `null` when the family is absent.
    pub failures_total: Option<f64>,
    /// Failed attempts in a row, by signal.
    pub consecutive_failures: Option<BTreeMap<String, f64>>,
    /// Unix time of the last accepted export, by signal (0: none yet).
    pub last_success_unix: Option<BTreeMap<String, f64>>,
    /// Actor restarts, by actor.
    pub restarts: Option<BTreeMap<String, f64>>,
    /// Bytes of encoded batches the exporter holds in memory (`metamcp_telemetry_buffered_bytes`).
    pub held_bytes: Option<f64>,
    /// The bound of those bytes (`metamcp_telemetry_buffered_max_bytes`).
    pub max_held_bytes: Option<f64>,
    /// The spool.
    pub spool: SpoolJson,
}

/// The spool, from the registry (each figure `null` while its family is absent) and the health
/// report.
#[derive(Debug, Clone, Serialize)]
pub struct SpoolJson {
    /// `metamcp_telemetry_spool_bytes`: bytes of encoded requests in the spool.
    pub bytes: Option<f64>,
    /// `metamcp_telemetry_spool_max_bytes`: the spool's bound.
    pub max_bytes: Option<f64>,
    /// `metamcp_telemetry_spool_batches`: batches in the spool.
    pub batches: Option<f64>,
    /// `metamcp_telemetry_spool_items`: items in the spool, by signal.
    pub items: Option<BTreeMap<String, f64>>,
    /// `metamcp_telemetry_spooled_total`: items written to the spool since start, by signal.
    pub spooled: Option<BTreeMap<String, f64>>,
    /// `metamcp_telemetry_replayed_total`: spooled items accepted on replay, by signal.
    pub replayed: Option<BTreeMap<String, f64>>,
    /// `metamcp_telemetry_spool_fallback`: 1 while batches go to memory because the database
    /// spool is unavailable.
    pub fallback: Option<f64>,
    /// The spool's figures in the health report (the exporter's `spool` detail: backend,
    /// fallback, error, replaying, …); `null` when the report has none.
    pub health: Option<BTreeMap<String, serde_json::Value>>,
}

/// Rates and latency over the window.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficJson {
    /// Seconds the rates cover.
    pub window_seconds: f64,
    /// Whether the window starts at the pipeline's start (no earlier sample to compare with).
    pub since_start: bool,
    /// HTTP requests.
    pub requests: RateJson,
    /// Tool executions.
    pub tool_executions: RateJson,
    /// Vector searches.
    pub vector_searches: RateJson,
    /// Requests by route template (cumulative), busiest first.
    pub routes: Vec<RouteJson>,
}

/// One measured operation: cumulative totals, rates and latency over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RateJson {
    /// Operations since start; `null` when the family is absent (none yet).
    pub total: Option<f64>,
    /// Failed operations since start (HTTP: status 5xx; tools: `success="false"`).
    pub errors: Option<f64>,
    /// Operations per second over the window.
    pub rate_per_second: Option<f64>,
    /// Failed operations per second over the window.
    pub errors_per_second: Option<f64>,
    /// Operations observed in the window (histogram count delta).
    pub window_count: Option<u64>,
    /// Median latency over the window, in seconds.
    pub p50_seconds: Option<f64>,
    /// 95th percentile latency over the window, in seconds.
    pub p95_seconds: Option<f64>,
    /// Mean latency over the window, in seconds.
    pub mean_seconds: Option<f64>,
}

/// Requests of one route template.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteJson {
    /// The matched route template (`unmatched` for 404s).
    pub route: String,
    /// Requests since start.
    pub requests: f64,
    /// Of which answered 5xx.
    pub errors: f64,
}

/// Process figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessJson {
    /// Resident memory, bytes.
    pub resident_memory_bytes: Option<f64>,
    /// CPU use over the window, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<f64>,
    /// OS threads.
    pub threads: Option<f64>,
}

fn per_second(now: Option<f64>, earlier: Option<&Option<f64>>, seconds: f64) -> Option<f64> {
    let now = now?;
    if seconds <= 0.0 {
        return None;
    }
    let earlier = earlier.and_then(|e| *e).unwrap_or(0.0);
    Some((now - earlier).max(0.0) / seconds)
}

fn rate(
    total: Option<f64>,
    errors: Option<f64>,
    buckets: Option<&Buckets>,
    earlier: impl Fn(&Sample) -> (Option<f64>, Option<f64>, Option<&Buckets>),
    baseline: &Baseline,
) -> RateJson {
    let (e_total, e_errors, e_buckets) = baseline.sample.as_ref().map_or((None, None, None), earlier);
    let window = buckets.map(|b| b.since(e_buckets));
    RateJson {
        total,
        errors,
        rate_per_second: per_second(total, Some(&e_total), baseline.seconds),
        errors_per_second: per_second(errors, Some(&e_errors), baseline.seconds),
        window_count: window.as_ref().map(|w| w.count),
        p50_seconds: window.as_ref().and_then(|w| w.quantile(0.5)),
        p95_seconds: window.as_ref().and_then(|w| w.quantile(0.95)),
        mean_seconds: window.as_ref().and_then(Buckets::mean),
    }
}

fn routes(families: Families<'_>) -> Vec<RouteJson> {
    let Some(family) = families.family(names::REQUESTS) else { return Vec::new() };
    let mut by_route: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for metric in family.get_metric() {
        let Some(route) = label_of(metric, "route") else { continue };
        let value = metric.get_counter().get_value();
        let entry = by_route.entry(route).or_default();
        entry.0 += value;
        if label_of(metric, "status_code").is_some_and(|code| code.starts_with('5')) {
            entry.1 += value;
        }
    }
    let mut rows: Vec<RouteJson> = by_route
        .into_iter()
        .map(|(route, (requests, errors))| RouteJson { route: route.to_owned(), requests, errors })
        .collect();
    rows.sort_by(|a, b| b.requests.total_cmp(&a.requests).then_with(|| a.route.cmp(&b.route)));
    rows.truncate(MAX_ROUTES);
    rows
}

fn nested(families: Families<'_>, name: &str, outer: &str, inner: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    if let Some(family) = families.family(name) {
        for metric in family.get_metric() {
            if let (Some(a), Some(b), Some(value)) =
                (label_of(metric, outer), label_of(metric, inner), scalar(family, metric))
            {
                *out.entry(a.to_owned()).or_default().entry(b.to_owned()).or_insert(0.0) += value;
            }
        }
    }
    out
}

/// The pipeline's queues: each by items, and by bytes where it is bounded by bytes too.
fn queues(families: Families<'_>, report: Option<&HealthReport>) -> Vec<QueueJson> {
    let gauges = |name: &str| families.by_label(name, "queue").unwrap_or_default();
    let (depths, capacities) = (gauges(names::QUEUE_DEPTH), gauges(names::QUEUE_CAPACITY));
    let (bytes, max_bytes) = (gauges(names::QUEUE_BYTES), gauges(names::QUEUE_MAX_BYTES));
    let mut queue_names: Vec<&String> = depths.keys().chain(capacities.keys()).chain(bytes.keys()).collect();
    queue_names.sort();
    queue_names.dedup();
    let mut out = Vec::new();
    for name in queue_names {
        for (unit, depth, capacity) in [("items", &depths, &capacities), ("bytes", &bytes, &max_bytes)] {
            if depth.contains_key(name) || capacity.contains_key(name) {
                out.push(QueueJson {
                    name: name.clone(),
                    unit,
                    depth: depth.get(name).copied(),
                    capacity: capacity.get(name).copied(),
                });
            }
        }
    }
    if let Some(exporter) = report.and_then(|r| r.components.get("exporter")) {
        out.push(QueueJson {
            name: "export_batches".to_owned(),
            unit: "batches",
            depth: exporter.queue_depth.map(|d| d as f64),
            capacity: exporter.queue_capacity.map(|c| c as f64),
        });
    }
    for (name, depth, capacity) in [
        ("export_memory", names::BUFFERED_BYTES, names::BUFFERED_MAX_BYTES),
        ("spool", names::SPOOL_BYTES, names::SPOOL_MAX_BYTES),
    ] {
        let (depth, capacity) = (families.sum(depth, &[]), families.sum(capacity, &[]));
        if depth.is_some() || capacity.is_some() {
            out.push(QueueJson { name: name.to_owned(), unit: "bytes", depth, capacity });
        }
    }
    out
}

/// A detail value with its strings (at any depth) shortened.
fn shorten_value(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(s) => serde_json::Value::String(shorten(s)),
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), shorten_value(v))).collect(),
        serde_json::Value::Array(items) => items.iter().map(shorten_value).collect(),
        other => other.clone(),
    }
}

/// The exporter's `spool` detail object, or else a `spool` component's details.
fn spool_health(report: Option<&HealthReport>) -> Option<BTreeMap<String, serde_json::Value>> {
    let report = report?;
    let from_exporter = report.components.get("exporter").and_then(|c| c.details.get("spool"));
    if let Some(serde_json::Value::Object(map)) = from_exporter {
        return Some(map.iter().map(|(k, v)| (k.clone(), shorten_value(v))).collect());
    }
    let spool = report.components.get("spool")?;
    let mut out: BTreeMap<String, serde_json::Value> =
        spool.details.iter().map(|(k, v)| ((*k).to_owned(), shorten_value(v))).collect();
    out.insert("status".to_owned(), serde_json::to_value(spool.status).unwrap_or_default());
    Some(out)
}

fn health_json(report: &HealthReport) -> HealthJson {
    HealthJson {
        status: report.status,
        ready: report.ready,
        checked_at_unix: report.checked_at_unix,
        components: report
            .components
            .iter()
            .map(|(name, c)| ComponentJson {
                name: name.clone(),
                status: c.status,
                reason: c.reason.as_deref().map(shorten),
                restarts: c.restarts,
                queue_depth: c.queue_depth,
                queue_capacity: c.queue_capacity,
                details: c.details.iter().map(|(k, v)| ((*k).to_owned(), shorten_value(v))).collect(),
            })
            .collect(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The answer when telemetry is disabled: says so, with nothing else to show.
pub fn disabled_json(uptime: Duration) -> StatusJson {
    StatusJson {
        telemetry: "disabled",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: uptime.as_secs(),
        generated_at_unix: unix_now(),
        refresh_seconds: REFRESH_SECONDS,
        health: None,
        upstreams: Vec::new(),
        queues: Vec::new(),
        drops: None,
        export: None,
        traffic: None,
        process: ProcessJson::default(),
    }
}

/// Builds the answer from a health report (if the health check answered), the gathered
/// registry, and the baseline the window chose for `sample` (read from the same families).
pub fn build(
    report: Option<&HealthReport>,
    families: Families<'_>,
    sample: &Sample,
    baseline: &Baseline,
    uptime: Duration,
) -> StatusJson {
    let earlier = baseline.sample.as_ref();
    let exporter = report.and_then(|r| r.components.get("exporter"));
    let detail_u64 = |key: &str| exporter.and_then(|c| c.details.get(key)).and_then(serde_json::Value::as_u64);
    let export = ExportJson {
        collector_reachable: exporter
            .and_then(|c| c.details.get("collector_reachable"))
            .and_then(serde_json::Value::as_bool),
        collector_up: families.sum(names::COLLECTOR_UP, &[]),
        last_error: exporter.and_then(|c| c.details.get("last_error")).and_then(serde_json::Value::as_str).map(shorten),
        pending_batches: exporter.and_then(|c| c.queue_depth),
        pending_capacity: exporter.and_then(|c| c.queue_capacity),
        pending_items: detail_u64("pending_items"),
        in_flight: detail_u64("in_flight"),
        exported: families.by_label(names::EXPORTED, "signal"),
        exported_per_second: per_second(sample.exported, earlier.map(|e| &e.exported), baseline.seconds),
        failures: nested(families, names::EXPORT_FAILURES, "signal", "kind"),
        failures_total: families.sum(names::EXPORT_FAILURES, &[]),
        consecutive_failures: families.by_label(names::CONSECUTIVE_FAILURES, "signal"),
        last_success_unix: families.by_label(names::LAST_SUCCESS, "signal"),
        restarts: families.by_label(names::RESTARTS, "actor"),
        held_bytes: families.sum(names::BUFFERED_BYTES, &[]),
        max_held_bytes: families.sum(names::BUFFERED_MAX_BYTES, &[]),
        spool: SpoolJson {
            bytes: families.sum(names::SPOOL_BYTES, &[]),
            max_bytes: families.sum(names::SPOOL_MAX_BYTES, &[]),
            batches: families.sum(names::SPOOL_BATCHES, &[]),
            items: families.by_label(names::SPOOL_ITEMS, "signal"),
            spooled: families.by_label(names::SPOOLED, "signal"),
            replayed: families.by_label(names::REPLAYED, "signal"),
            fallback: families.sum(names::SPOOL_FALLBACK, &[]),
            health: spool_health(report),
        },
    };
    let traffic = TrafficJson {
        window_seconds: baseline.seconds,
        since_start: baseline.sample.is_none(),
        requests: rate(
            sample.requests,
            sample.request_errors,
            sample.request_duration.as_ref(),
            |e| (e.requests, e.request_errors, e.request_duration.as_ref()),
            baseline,
        ),
        tool_executions: rate(
            sample.tools,
            sample.tool_failures,
            sample.tool_duration.as_ref(),
            |e| (e.tools, e.tool_failures, e.tool_duration.as_ref()),
            baseline,
        ),
        vector_searches: rate(
            sample.searches,
            None,
            sample.search_duration.as_ref(),
            |e| (e.searches, None, e.search_duration.as_ref()),
            baseline,
        ),
        routes: routes(families),
    };
    StatusJson {
        telemetry: "enabled",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: uptime.as_secs(),
        generated_at_unix: unix_now(),
        refresh_seconds: REFRESH_SECONDS,
        health: report.map(health_json),
        upstreams: super::upstreams::upstreams(report),
        queues: queues(families, report),
        drops: Some(DropsJson {
            total: sample.dropped,
            rate_per_second: per_second(sample.dropped, earlier.map(|e| &e.dropped), baseline.seconds),
            by_signal: nested(families, names::DROPPED, "signal", "reason"),
        }),
        export: Some(export),
        traffic: Some(traffic),
        process: ProcessJson {
            resident_memory_bytes: families.sum(names::RSS, &[]),
            cpu_percent: per_second(sample.cpu_seconds, earlier.map(|e| &e.cpu_seconds), baseline.seconds)
                .map(|share| share * 100.0),
            open_fds: families.sum(names::OPEN_FDS, &[]),
            threads: families.sum(names::THREADS, &[]),
        },
    }
}
