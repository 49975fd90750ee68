//! Tail sampling in the real gateway, over a stdio upstream (the Python SDK's server): with
//! `sampling.mode = "tail"` and `keep_ratio = 0`, of a mixed workload of tool calls — three fast
//! successes, a tool error, a slow tool — only the failed call's trace and the slow call's reach
//! the receiver (each call continues the client's own trace, sent in `params._meta`), and the
//! scraped `metamcp_telemetry_sampled_total` counts their decisions.

use crate::mcp_fixture::{create_endpoint, gateway, register_stdio, runtime, POLL, WAIT};
use serde_json::{json, Map};
use support::mcp_peers::McpTestClient;
use support::prom::{scrape_blocking, value, Scrape};
use support::wait::assert_eventually;
use support::{TestCollector, Transport};

/// The client's trace of each call: fast successes, the tool error, the slow tool.
const FAST: [&str; 3] =
    ["11111111111111111111111111111111", "22222222222222222222222222222222", "33333333333333333333333333333333"];
const FAILED: &str = "44444444444444444444444444444444";
const SLOW: &str = "55555555555555555555555555555555";
/// A failed call made before the workload.
const BARRIER: &str = "66666666666666666666666666666666";

fn sampled(scrape: &Scrape, decision: &str, reason: &str) -> f64 {
    value(scrape, "metamcp_telemetry_sampled_total", &[("decision", decision), ("reason", reason)])
        .unwrap_or_else(|| panic!("no sampled_total series {decision}/{reason}"))
}

#[test]
fn only_the_failed_and_the_slow_tool_calls_are_exported_under_tail_sampling() {
    let Some(python) = support::prereq::python_mcp_sdk() else { return };
    let collector = TestCollector::start(Transport::Grpc);
    let service = gateway(
        Some(&collector),
        &[
            ("METAMCP_SAMPLING__MODE", "tail"),
            ("METAMCP_SAMPLING__KEEP_RATIO", "0"),
            ("METAMCP_SAMPLING__KEEP_SLOWER_THAN", "900ms"),
        ],
    );
    register_stdio(&service, &python, "st", json!({}));
    create_endpoint(&service, "sampled", &["st"]);
    let rt = runtime();
    let mcp = rt
        .block_on(McpTestClient::connect(&service.url("/metamcp/sampled/mcp"), Vec::new()))
        .expect("the rmcp client connects");
    let call = |name: &str, arguments: serde_json::Value, trace: &str| {
        let mut meta = Map::new();
        meta.insert("traceparent".into(), json!(format!("00-{trace}-00f067aa0ba902b7-01")));
        rt.block_on(mcp.call_tool_with_meta(name, arguments, meta)).expect("tools/call answers")
    };
    let names_in = |trace: &str| -> Vec<String> {
        let mut names: Vec<String> =
            collector.spans().into_iter().filter(|s| s.trace_id_hex() == trace).map(|s| s.name).collect();
        names.sort();
        names.dedup();
        names
    };
    // A failed call first, as a barrier: once its trace arrived, every trace of the setup before
    // it was decided and counted (spans reach the sampler in the order they end).
    call("st__fail", json!({}), BARRIER);
    assert_eventually(WAIT, POLL, "the barrier's trace arrives", || {
        names_in(BARRIER).contains(&"tools/call st__fail".to_owned())
    });
    let before = scrape_blocking(&service.metrics_url());

    for trace in FAST {
        let added = call("st__add", json!({"a": 1, "b": 2}), trace);
        assert_ne!(added.is_error, Some(true), "{added:?}");
    }
    let failed = call("st__fail", json!({}), FAILED);
    assert_eq!(failed.is_error, Some(true), "{failed:?}");
    let slow = call("st__slow", json!({"steps": 2, "interval_ms": 800}), SLOW);
    assert_ne!(slow.is_error, Some(true), "{slow:?}");

    // The kept traces arrive whole: the gateway's server span and its client span to the upstream.
    assert_eventually(WAIT, POLL, "the failed and the slow calls' traces arrive", || {
        names_in(FAILED).contains(&"tools/call fail".to_owned())
            && names_in(SLOW).contains(&"tools/call slow".to_owned())
    });
    assert!(names_in(FAILED).contains(&"tools/call st__fail".to_owned()), "{:?}", names_in(FAILED));
    assert!(names_in(SLOW).contains(&"tools/call st__slow".to_owned()), "{:?}", names_in(SLOW));

    // The fast calls were decided before the slow one ended (spans reach the sampler in the order
    // they end), and none of their spans was exported.
    let delta = |decision: &str, reason: &str| {
        let after = scrape_blocking(&service.metrics_url());
        sampled(&after, decision, reason) - sampled(&before, decision, reason)
    };
    // The three fast calls' traces and the five HTTP requests' that carried the calls, all fast
    // (the gateway answers the rmcp client's calls on an event stream, so each request's span ends
    // at once, the slow call's too); at
    // least: the gateway's own background work (audit writes) makes traces of its own, and the
    // barrier's HTTP request may be decided after the first scrape.
    assert_eventually(WAIT, POLL, "every trace of the workload is decided", || delta("dropped", "none") >= 8.0);
    // The failed call's trace and the slow call's, nothing else.
    assert_eq!(delta("kept", "error"), 1.0);
    assert_eq!(delta("kept", "slow"), 1.0);
    assert_eq!(delta("kept", "ratio"), 0.0);
    assert_eq!(delta("kept", "overflow"), 0.0);
    for trace in FAST {
        assert!(names_in(trace).is_empty(), "the fast call {trace} was exported: {:?}", names_in(trace));
    }
    rt.block_on(mcp.close());
}
