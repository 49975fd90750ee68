//! Aggregation over an endpoint's servers, end to end with two official Python SDK servers of
//! the same kind: prompts as `{server}__{prompt}`, a resource URI both list rewritten to
//! `metamcp://{server}/…` and read back through its server, templates likewise, completions
//! routed by their prompt reference, and `initialize` advertising what the servers offer.

use std::time::Duration;

use crate::common::Service;
use crate::mcp_stream::{create_endpoint, register};
use support::mcp_peers::{run_client, PeerTransport, PythonServer};

fn names(list: &serde_json::Value, field: &str) -> Vec<String> {
    list.as_array().into_iter().flatten().filter_map(|item| item[field].as_str().map(str::to_owned)).collect()
}

#[test]
fn two_servers_prompts_resources_and_completions_through_one_endpoint() {
    let Some(python) = support::prereq::python_mcp_sdk() else { return };
    let service = Service::start(&[], &[]);
    let first = PythonServer::start(&python, PeerTransport::StreamableHttp, "first", &[]);
    let second = PythonServer::start(&python, PeerTransport::StreamableHttp, "second", &[]);
    register(&service, "a", "streamable_http", first.url());
    register(&service, "b", "streamable_http", second.url());
    create_endpoint(&service, "both", &["a", "b"]);

    let args: Vec<String> = [
        "--prompt",
        "b__greeting",
        r#"{"name": "Ada"}"#,
        "--read",
        "metamcp://a/peer://readme",
        "--read",
        "metamcp://b/peer://notes/alpha",
        "--complete",
        "a__code_review",
        "language",
        "ru",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let run = run_client(&python, &service.url("/metamcp/both/mcp"), &args, Duration::from_secs(60));
    assert!(run.success, "{}", run.stderr);
    let summary = run.summary();
    let capabilities = &summary["capabilities"];
    assert!(capabilities["prompts"].is_object() && capabilities["resources"].is_object(), "{capabilities}");
    assert!(capabilities["completions"].is_object(), "{capabilities}");

    let prompts = names(&summary["prompts"], "name");
    for expected in ["a__greeting", "a__code_review", "b__greeting", "b__code_review"] {
        assert!(prompts.iter().any(|p| p == expected), "{expected} in {prompts:?}");
    }
    let resources = names(&summary["resources"], "uri");
    assert!(resources.contains(&"metamcp://a/peer://readme".to_owned()), "{resources:?}");
    assert!(resources.contains(&"metamcp://b/peer://readme".to_owned()), "{resources:?}");
    let templates = names(&summary["resource_templates"], "uriTemplate");
    assert!(templates.contains(&"metamcp://b/peer://notes/{topic}".to_owned()), "{templates:?}");

    let greeting = run.result("prompt", "b__greeting");
    assert_eq!(greeting["ok"], true, "{greeting}");
    assert!(greeting.to_string().contains("Hello, Ada!"), "{greeting}");
    let readme = run.result("read", "metamcp://a/peer://readme");
    assert_eq!(readme["ok"], true, "{readme}");
    assert!(readme.to_string().contains("metamcp://a/peer://readme"), "contents under the URI asked for: {readme}");
    let note = run.result("read", "metamcp://b/peer://notes/alpha");
    assert!(note.to_string().contains("First note."), "{note}");
    let completion = run.result("complete", "a__code_review");
    assert_eq!(completion["ok"], true, "{completion}");
    assert!(completion.to_string().contains("rust"), "{completion}");
}
