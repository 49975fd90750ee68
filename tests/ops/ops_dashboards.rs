//! The Grafana dashboards and the Prometheus alert rules under `docker/` against the real
//! service: every dashboard is well-formed JSON Grafana can provision, and every metric name a
//! dashboard panel, a dashboard variable or an alert rule reads is one the running binary
//! exposes on `/metrics` (after traffic that gives each family its first samples).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::ops;
use crate::ops::promql::{histogram_base, metric_names};
use serde_json::Value;
use support::prom::{Kind, Scrape};

/// Series Prometheus itself adds to every scrape; rules and dashboards may read them although
/// no target exposes them.
const PROMETHEUS_SYNTHETIC: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

#[test]
fn every_dashboard_is_valid_json_with_unique_panel_ids_and_a_datasource() {
    let datasources = ops::provisioned_datasource_uids();
    assert!(
        datasources.contains(&"prometheus".to_owned()),
        "the Prometheus datasource is provisioned: {datasources:?}"
    );
    let mut uids = HashSet::new();
    for (path, text) in ops::dashboard_files() {
        let file = path.display();
        let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not valid JSON: {e}"));
        let uid = dashboard["uid"].as_str().unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} is used by another dashboard");
        assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()), "{file}: no title");
        assert!(dashboard["schemaVersion"].as_u64().is_some(), "{file}: no schemaVersion");

        let panels = ops::panels(&dashboard);
        assert!(panels.len() > 1, "{file}: no panels");
        let mut ids = HashSet::new();
        for panel in &panels {
            let title = &panel["title"];
            let id = panel["id"].as_u64().unwrap_or_else(|| panic!("{file}: panel {title} has no numeric id"));
            assert!(ids.insert(id), "{file}: panel id {id} ({title}) is not unique");
            for key in ["h", "w", "x", "y"] {
                assert!(panel["gridPos"][key].is_u64(), "{file}: panel {title} has no gridPos.{key}");
            }
            if panel["type"] == "row" {
                continue;
            }
            let uid = panel["datasource"]["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: panel {title} has no datasource"));
            assert!(
                datasources.iter().any(|d| d == uid),
                "{file}: panel {title} uses datasource {uid}, not provisioned"
            );
            let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
            let targets = targets.unwrap_or_else(|| panic!("{file}: panel {title} has no targets"));
            let mut ref_ids = HashSet::new();
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{file}: panel {title} has a target without expr");
                assert!(
                    ref_ids.insert(target["refId"].to_string()),
                    "{file}: panel {title} repeats refId {}",
                    target["refId"]
                );
                if let Some(uid) = target["datasource"]["uid"].as_str() {
                    assert!(datasources.iter().any(|d| d == uid), "{file}: panel {title}: target datasource {uid}");
                }
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            if variable["type"] == "query" {
                let uid = variable["datasource"]["uid"].as_str();
                assert!(
                    uid.is_some_and(|uid| datasources.iter().any(|d| d == uid)),
                    "{file}: variable {} has no provisioned datasource",
                    variable["name"]
                );
            }
        }
    }
}

/// Every query of every dashboard and of the alert rules, with the metric names it reads.
fn queried_names() -> BTreeMap<String, Vec<String>> {
    let mut queries = Vec::new();
    for (path, text) in ops::dashboard_files() {
        let dashboard: Value = serde_json::from_str(&text).expect("valid JSON (checked by its own test)");
        queries.extend(ops::dashboard_queries(&path, &dashboard));
    }
    let rules = ops::rule_queries(&ops::docker_dir().join("prometheus/alerts.yml"));
    assert!(!rules.is_empty(), "docker/prometheus/alerts.yml has rules");
    queries.extend(rules);

    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for query in queries {
        let names = metric_names(&query.expr).unwrap_or_else(|e| panic!("{}: {e}", query.origin));
        assert!(!names.is_empty(), "{}: no metric in {:?}", query.origin, query.expr);
        for name in names {
            used.entry(name).or_default().push(query.origin.clone());
        }
    }
    used
}

/// The family `name` belongs to in `scrape`, if it is a sample name there. A histogram's base
/// name alone is not (Prometheus stores only its `_bucket`, `_sum` and `_count` series).
fn family_of(scrape: &Scrape, name: &str) -> Option<(String, Kind)> {
    if let Some(line) = scrape.samples().iter().find(|line| line.name == name) {
        return Some((line.family.clone(), line.kind));
    }
    let base = histogram_base(name)?;
    scrape
        .samples()
        .iter()
        .find(|line| line.family == base && matches!(line.kind, Kind::Histogram | Kind::Summary))
        .map(|line| (line.family.clone(), line.kind))
}

/// Families `docs/metrics.md` says appear only after an event this test's traffic cannot cause
/// (an upstream server registered, a request refused by a rate limit). Their rows are held to
/// the code by the telemetry library's catalogue test, so a name read here that matches one is
/// a real family.
fn documented_late_families() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md");
    text.lines()
        .filter(|line| line.starts_with("| `") && line.contains("Appears only after "))
        .filter_map(|line| line.split('`').nth(1).map(str::to_owned))
        .collect()
}

/// Whether `name` (a family or one of a histogram's suffixed series) is a late family.
fn is_late(name: &str, late: &BTreeSet<String>) -> bool {
    late.contains(name) || histogram_base(name).is_some_and(|base| late.contains(base))
}

fn missing(scrape: &Scrape, used: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let late = documented_late_families();
    used.keys()
        .filter(|name| !PROMETHEUS_SYNTHETIC.contains(&name.as_str()) && family_of(scrape, name).is_none())
        .filter(|name| !is_late(name, &late))
        .cloned()
        .collect()
}

#[test]
fn every_metric_the_dashboards_and_alerts_read_is_exposed() {
    let used = queried_names();
    let service = ops::start_service();
    ops::drive_traffic(&service);

    let url = service.metrics_url();
    let mut scrape = support::prom::scrape_blocking(&url);
    // Metric events are folded in the background and export attempts take a moment: poll the
    // scrape until nothing is missing, or give up and report what is.
    let complete = support::wait::wait_until(ops::SCRAPE_WAIT, std::time::Duration::from_millis(200), || {
        scrape = support::prom::scrape_blocking(&url);
        missing(&scrape, &used).is_empty()
    });
    let absent = missing(&scrape, &used);
    assert!(
        complete && absent.is_empty(),
        "metric names read by dashboards or alerts that /metrics does not expose:\n{}",
        absent.iter().map(|name| format!("  {name}  (in {:?})", used[name])).collect::<Vec<_>>().join("\n")
    );

    // The suffixed names resolve to histogram families, and every section of the dashboards
    // has its families.
    let mut families = BTreeSet::new();
    for name in used.keys() {
        if let Some((family, kind)) = family_of(&scrape, name) {
            if family != *name {
                assert_eq!(kind, Kind::Histogram, "{name} resolves to {family}, which is not a histogram");
            }
            families.insert(family);
        }
    }
    for family in [
        "metamcp_requests_total",
        "metamcp_request_duration_seconds",
        "metamcp_tool_executions_total",
        "metamcp_tool_execution_duration_seconds",
        "metamcp_vector_searches_total",
        "metamcp_vector_search_duration_seconds",
        "metamcp_vector_search_results",
        "metamcp_telemetry_queue_depth",
        "metamcp_telemetry_dropped_total",
        "metamcp_telemetry_export_duration_seconds",
        "metamcp_telemetry_export_failures_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "metamcp_db_pool_connections",
    ] {
        assert!(families.contains(family), "no dashboard or alert reads {family}");
    }
    eprintln!("metric families read by the dashboards and alerts ({}):", families.len());
    for family in &families {
        eprintln!("  {family}");
    }
}

/// The extractor itself, on expressions of the shapes the dashboards and rules use.
mod promql_extractor {
    use super::metric_names;
    use crate::ops::promql::histogram_base;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).unwrap_or_else(|e| panic!("{e}")).into_iter().collect()
    }

    #[test]
    fn plain_selectors_and_matchers() {
        assert_eq!(names("up"), ["up"]);
        assert_eq!(names(r#"metamcp_requests_total{status_code=~"5..", route!="/x{y}"}"#), ["metamcp_requests_total"]);
        assert_eq!(names(r#"{__name__="process_threads", job="a"}"#), ["process_threads"]);
        assert_eq!(names(r#"{__name__=~"process_.*"}"#), Vec::<String>::new());
        assert_eq!(names(r#"a{l="say \"hi\" (sum)"} # a comment with b_total"#), ["a"]);
    }

    #[test]
    fn functions_aggregations_and_clauses_are_not_metrics() {
        let expr = r#"histogram_quantile(0.95, sum by (le, route) (rate(metamcp_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))"#;
        assert_eq!(names(expr), ["metamcp_request_duration_seconds_bucket"]);
        let expr = "sum without (instance) (rate(a_total[5m])) / on (job) group_left (version) max(b_info) > bool 0.5";
        assert_eq!(names(expr), ["a_total", "b_info"]);
        assert_eq!(names("SUM BY (le) (rate(x_bucket[1m:30s] offset 1h30m))"), ["x_bucket"]);
        assert_eq!(names("sum(rate(x_total[5m])) by (job)"), ["x_total"]);
        assert_eq!(names("topk(5, c) or vector(0) unless d and e @ start()"), ["c", "d", "e"]);
        assert_eq!(
            names("time() - max(process_start_time_seconds) > 1e+3 and f < Inf"),
            ["f", "process_start_time_seconds"]
        );
        assert_eq!(names("deriv(g[15m]) > 0 and g > 0.8 * h"), ["g", "h"]);
        assert_eq!(names("label_replace(i, \"dst\", \"$1\", \"src\", \"(.*)\")"), ["i"]);
    }

    #[test]
    fn grafana_variables_and_label_values() {
        assert_eq!(names("rate(x_total{instance=~\"${instance:regex}\"}[$__interval]) * $scale"), ["x_total"]);
        assert_eq!(names("rate(y_total[[[interval]]])"), ["y_total"]);
        assert_eq!(names("label_values(metamcp_requests_total{job=\"g\"}, instance)"), ["metamcp_requests_total"]);
        assert_eq!(names("label_values(instance)"), Vec::<String>::new());
    }

    #[test]
    fn broken_text_is_an_error() {
        assert!(metric_names("rate(x[5m]").is_err());
        assert!(metric_names("rate(x[5m)]").is_err());
        assert!(metric_names("x{a=\"b}").is_err());
        assert!(metric_names("x ; y").is_err());
    }

    #[test]
    fn histogram_suffixes_resolve_to_the_base() {
        assert_eq!(histogram_base("metamcp_request_duration_seconds_bucket"), Some("metamcp_request_duration_seconds"));
        assert_eq!(histogram_base("metamcp_vector_search_results_count"), Some("metamcp_vector_search_results"));
        assert_eq!(histogram_base("metamcp_requests_total"), None);
    }
}
