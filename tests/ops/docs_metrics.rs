//! `docs/metrics.md` against the real service's `/metrics`: start the binary, drive an MCP
//! `initialize` and `tools/call` of the built-in `calculator` and a vector search so every
//! histogram family has a series, scrape, and compare both ways — every scraped family is
//! documented with its type, label names and bucket bounds, every enumerated label value seen is
//! documented, and every documented family was scraped (unless its row says it appears only after
//! a named event).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::Service;
use serde_json::{json, Value};
use support::prom::{scrape_blocking, Kind, Scrape};
use support::service::client;
use support::wait::assert_eventually;

/// How a row marks a family that only exists after an event; the event follows the marker.
const LATE_MARKER: &str = "Appears only after ";

/// One row of a family table in `docs/metrics.md`.
#[derive(Debug)]
struct DocumentedFamily {
    kind: Kind,
    labels: BTreeSet<String>,
    buckets: Vec<f64>,
    /// The family may be absent from a fresh service's scrape (its row names the event).
    late: bool,
}

struct Docs {
    families: BTreeMap<String, DocumentedFamily>,
    /// Label name → its documented values, for the enumerated labels.
    enumerated: BTreeMap<String, BTreeSet<String>>,
    /// Every label with a row in the label values table.
    labels: BTreeSet<String>,
}

fn cells(line: &str) -> Vec<&str> {
    line.trim().trim_start_matches('|').trim_end_matches('|').split(" | ").map(str::trim).collect()
}

/// The text between backticks in `cell`, in order.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// `cell` is a plain list of backticked values: `` `a`, `b` ``.
fn is_value_list(cell: &str) -> bool {
    let values = backticked(cell);
    !values.is_empty() && cell == values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
}

fn kind_of(cell: &str) -> Option<Kind> {
    match cell {
        "counter" => Some(Kind::Counter),
        "gauge" => Some(Kind::Gauge),
        "histogram" => Some(Kind::Histogram),
        "summary" => Some(Kind::Summary),
        "untyped" => Some(Kind::Untyped),
        _ => None,
    }
}

fn read_docs() -> Docs {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md");
    let mut families = BTreeMap::new();
    let mut enumerated = BTreeMap::new();
    let mut labels = BTreeSet::new();
    let mut in_label_values = false;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            in_label_values = heading.trim() == "Label values";
            continue;
        }
        if !line.starts_with("| `") {
            continue;
        }
        let row = cells(line);
        let name = backticked(row[0]).into_iter().next().expect("a backticked first cell");
        if in_label_values {
            assert_eq!(row.len(), 3, "label row of `{name}` needs label | values | meaning: {line}");
            assert!(!row[2].is_empty(), "label `{name}` has no meaning: {line}");
            if is_value_list(row[1]) {
                enumerated.insert(name.clone(), backticked(row[1]).into_iter().collect());
            }
            assert!(labels.insert(name.clone()), "label `{name}` documented twice");
            continue;
        }
        let Some(kind) = row.get(1).and_then(|cell| kind_of(cell)) else { continue };
        assert_eq!(row.len(), 5, "family row of `{name}` needs family | type | labels | buckets | meaning: {line}");
        let buckets = if row[3] == "—" {
            Vec::new()
        } else {
            row[3]
                .split(", ")
                .map(|b| b.parse::<f64>().unwrap_or_else(|_| panic!("bucket {b:?} of `{name}` is not a number")))
                .collect()
        };
        assert_eq!(kind == Kind::Histogram, !buckets.is_empty(), "`{name}`: buckets iff histogram: {line}");
        let meaning = row[4];
        assert!(meaning.len() > 10, "`{name}` has no meaning: {line}");
        let late = meaning.find(LATE_MARKER).map(|at| &meaning[at + LATE_MARKER.len()..]);
        if let Some(event) = late {
            assert!(event.trim().len() > 10, "`{name}` appears only after an event it does not name: {line}");
        }
        let family =
            DocumentedFamily { kind, labels: backticked(row[2]).into_iter().collect(), buckets, late: late.is_some() };
        assert!(families.insert(name.clone(), family).is_none(), "family `{name}` documented twice");
    }
    assert!(families.len() >= 20, "found only {} family rows in docs/metrics.md", families.len());
    Docs { families, enumerated, labels }
}

/// Drives the requests that give every family a series: MCP initialize + `tools/call calculator`,
/// and a vector search through the admin API.
fn drive(service: &Service) {
    let init = service.mcp_post(
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "docs-metrics", "version": "1"}}}),
    );
    assert_eq!(init.status(), reqwest::StatusCode::OK);
    let session = init.headers().get("mcp-session-id").expect("a session id").to_str().expect("ascii").to_owned();
    let initialized =
        service.mcp_post(Some(&session), json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(initialized.status(), reqwest::StatusCode::ACCEPTED);
    let call = service.mcp_post(
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "calculator", "arguments": {"expression": "6 * 7"}}}),
    );
    assert_eq!(call.status(), reqwest::StatusCode::OK);
    let body: Value = call.json().expect("JSON-RPC response");
    assert_eq!(body["result"]["content"][0]["text"], "42", "{body}");

    let search = client()
        .post(service.url("/api/tools/search"))
        .json(&json!({"query": "evaluate an arithmetic expression"}))
        .send()
        .expect("vector search");
    assert_eq!(search.status(), reqwest::StatusCode::OK);
}

/// Per family in the scrape: its type, label names (without `le`) and finite bucket bounds.
fn scraped_families(scrape: &Scrape) -> BTreeMap<String, (Kind, BTreeSet<String>, BTreeSet<u64>)> {
    let mut families: BTreeMap<String, (Kind, BTreeSet<String>, BTreeSet<u64>)> = BTreeMap::new();
    for line in scrape.samples() {
        let entry =
            families.entry(line.family.clone()).or_insert_with(|| (line.kind, BTreeSet::new(), BTreeSet::new()));
        entry.1.extend(line.labels.keys().cloned());
        if let Some(bound) = line.bound.filter(|b| b.is_finite()) {
            entry.2.insert(bound.to_bits());
        }
    }
    families
}

#[test]
fn every_scraped_family_is_documented_and_every_documented_family_is_scraped() {
    let docs = read_docs();
    let service = Service::start(&[], &[]);
    drive(&service);

    let metrics_url = service.metrics_url();
    let wanted = [
        "metamcp_tool_execution_duration_seconds",
        "metamcp_request_duration_seconds",
        "metamcp_db_query_duration_seconds",
    ];
    let mut scrape = scrape_blocking(&metrics_url);
    assert_eventually(Duration::from_secs(10), Duration::from_millis(50), "the histogram families in /metrics", || {
        scrape = scrape_blocking(&metrics_url);
        let vector_searches = support::prom::value(&scrape, "metamcp_vector_searches_total", &[]).unwrap_or(0.0);
        wanted.iter().all(|family| scrape.samples().iter().any(|line| &line.family == family)) && vector_searches >= 1.0
    });
    let scraped = scraped_families(&scrape);

    let mut problems = Vec::new();
    for (name, (kind, labels, bounds)) in &scraped {
        let Some(documented) = docs.families.get(name) else {
            problems.push(format!("`{name}` ({kind:?}) is scraped but not in docs/metrics.md"));
            continue;
        };
        if documented.kind != *kind {
            problems.push(format!("`{name}`: documented as {:?}, scraped as {kind:?}", documented.kind));
        }
        if &documented.labels != labels {
            problems.push(format!("`{name}`: documented labels {:?}, scraped {labels:?}", documented.labels));
        }
        let documented_bounds: BTreeSet<u64> = documented.buckets.iter().map(|b| b.to_bits()).collect();
        if &documented_bounds != bounds {
            let scraped_bounds: Vec<f64> = bounds.iter().map(|b| f64::from_bits(*b)).collect();
            problems.push(format!("`{name}`: documented buckets {:?}, scraped {scraped_bounds:?}", documented.buckets));
        }
    }
    for (name, documented) in &docs.families {
        if !documented.late && !scraped.contains_key(name) {
            problems.push(format!("`{name}` is documented but was not scraped"));
        }
    }
    for line in scrape.samples() {
        for (label, value) in &line.labels {
            if !docs.labels.contains(label) {
                problems.push(format!("label `{label}` of `{}` has no row under \"Label values\"", line.family));
            } else if let Some(values) = docs.enumerated.get(label) {
                if !values.contains(value) {
                    problems.push(format!("`{}`: {label}=\"{value}\" is not among the documented values", line.family));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "docs/metrics.md is out of step with /metrics:\n{}", problems.join("\n"));
}

/// Families whose label values are known before anything happens are on the first scrape of a
/// fresh service, at 0: the built-in tools with both outcomes, and every drop reason of every
/// signal. Dashboards and alerts then read 0, not "no data".
#[test]
fn a_fresh_service_shows_its_known_label_values_at_zero_on_the_first_scrape() {
    let service = Service::start(&[], &[]);
    let scrape = scrape_blocking(&service.metrics_url());
    let mut missing = Vec::new();
    for tool in ["calculator", "search_tools"] {
        for success in ["true", "false"] {
            let labels = [("tool_name", tool), ("success", success)];
            if support::prom::value(&scrape, "metamcp_tool_executions_total", &labels) != Some(0.0) {
                missing.push(format!("metamcp_tool_executions_total{labels:?}"));
            }
        }
        let labels = [("tool_name", tool)];
        if support::prom::histogram_count(&scrape, "metamcp_tool_execution_duration_seconds", &labels) != Some(0.0) {
            missing.push(format!("metamcp_tool_execution_duration_seconds{labels:?}"));
        }
    }
    let reasons =
        ["queue_full", "export_failed_permanent", "retry_exhausted", "spool_full", "spool_expired", "shutdown_timeout"];
    for signal in ["traces", "metrics"] {
        for reason in reasons {
            let labels = [("signal", signal), ("reason", reason)];
            if support::prom::value(&scrape, "metamcp_telemetry_dropped_total", &labels) != Some(0.0) {
                missing.push(format!("metamcp_telemetry_dropped_total{labels:?}"));
            }
        }
    }
    assert!(missing.is_empty(), "not at 0 on the first scrape: {missing:?}\n{}", scrape.body);
}
