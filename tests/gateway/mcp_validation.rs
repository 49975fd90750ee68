//! Tool arguments checked against the upstream's `inputSchema` before a call leaves the gateway:
//! a `pattern` violated through an endpoint over the Python SDK's server on each transport is
//! refused with -32602 naming the keyword and the path, never the value, and never reaches the
//! upstream; valid arguments go through.

use std::time::Duration;

use crate::mcp_fixture::{create_endpoint, gateway, register_http, register_stdio, temp_file};
use serde_json::{json, Value};
use support::mcp_peers::{records, run_client, PeerTransport, PythonServer};

/// The servers of the endpoint: (name, transport).
const SERVERS: [(&str, PeerTransport); 3] =
    [("st", PeerTransport::Stdio), ("ss", PeerTransport::Sse), ("sh", PeerTransport::StreamableHttp)];

/// The text of a Python client's `CallToolResult`.
fn call_text(result: &Value) -> String {
    result["result"]["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn arguments_violating_a_pattern_get_32602_naming_keyword_and_path_never_the_value() {
    const VALUE: &str = "LOUD-Secret-Marker";
    let Some(python) = support::prereq::python_mcp_sdk() else { return };
    let (_dir, request_log) = temp_file("requests.jsonl");
    let log = request_log.display().to_string();
    let sse = PythonServer::start(&python, PeerTransport::Sse, "py-sse", &[("PEER_REQUEST_LOG", &log)]);
    let http = PythonServer::start(&python, PeerTransport::StreamableHttp, "py-http", &[("PEER_REQUEST_LOG", &log)]);
    let service = gateway(None, &[]);
    register_stdio(&service, &python, "st", json!({"PEER_REQUEST_LOG": log}));
    register_http(&service, "ss", PeerTransport::Sse, &sse);
    register_http(&service, "sh", PeerTransport::StreamableHttp, &http);
    create_endpoint(&service, "mix", &["st", "ss", "sh"]);

    let mut args: Vec<String> = Vec::new();
    for (server, _) in SERVERS {
        args.extend(["--call".into(), format!("{server}__shout"), json!({"word": VALUE}).to_string()]);
        args.extend(["--call".into(), format!("{server}__shout"), json!({"word": "fine"}).to_string()]);
    }
    let run = run_client(&python, &service.url("/metamcp/mix/mcp"), &args, Duration::from_secs(60));
    assert!(run.success, "{}\n{}", run.summary(), run.stderr);
    for (server, _) in SERVERS {
        let results: Vec<&Value> =
            run.results().iter().filter(|r| r["args"][0] == format!("{server}__shout")).collect();
        assert_eq!(results.len(), 2, "{}", run.summary());
        let refused = results[0];
        assert_eq!(refused["ok"], false, "{refused}");
        assert_eq!(refused["error"]["code"], -32602, "{refused}");
        let message = refused["error"]["message"].as_str().expect("an error message");
        assert!(message.contains("/word"), "names the path: {message}");
        assert!(message.contains("pattern"), "names the keyword: {message}");
        assert!(!message.contains(VALUE) && !message.contains("Secret"), "quotes the value: {message}");
        assert_eq!(call_text(results[1]), "FINE", "{}", results[1]);
    }
    // The refused calls never reached an upstream; the valid ones did.
    let received = records(&request_log);
    let calls: Vec<&Value> = received.iter().filter(|r| r["method"] == "tools/call").collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(!received.iter().any(|r| r.to_string().contains("Secret-Marker")));
    let logs = service.logs().join("\n");
    assert!(!logs.contains("Secret-Marker"), "the value reached the gateway's log");
}
