//! End to end with the official Python MCP SDK on both sides of the gateway: `server.py` as
//! upstream over stdio (the gateway's child), over the legacy SSE transport and over Streamable
//! HTTP, aggregated by one endpoint; the Python client (`client.py`) and the `rmcp` client list
//! and use tools, prompts, a resource and a resource template through it and get the right
//! results.

use std::time::Duration;

use crate::mcp_fixture::{create_endpoint, gateway, register_http, register_stdio, runtime, temp_file, PEER_TOOLS};
use rmcp::model::ResourceContents;
use serde_json::{json, Value};
use support::mcp_peers::{records, run_client, text_of, McpTestClient, PeerTransport, PythonServer};

/// What `server.py`'s `peer://readme` says.
const README_TEXT: &str = "This server is a test peer of the gateway; it is built on the official Python MCP SDK.";
/// The gateway's own tools.
const BUILTIN_TOOLS: &[&str] = &["calculator", "search_tools"];

/// The URI under which the endpoint publishes `original` of `server`: rewritten as
/// `metamcp://{server}/{original}` when several of its servers list the same URI.
pub fn published_uri(server: &str, original: &str) -> String {
    format!("metamcp://{server}/{original}")
}

/// The servers of the endpoint: (name, transport).
const SERVERS: [(&str, PeerTransport); 3] =
    [("st", PeerTransport::Stdio), ("ss", PeerTransport::Sse), ("sh", PeerTransport::StreamableHttp)];

/// The text of a resource's contents.
fn resource_text(contents: &[ResourceContents]) -> String {
    contents
        .iter()
        .filter_map(|c| match c {
            ResourceContents::TextResourceContents { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

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
fn python_upstreams_of_every_transport_serve_tools_prompts_and_resources_through_one_endpoint() {
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
    let url = service.url("/metamcp/mix/mcp");

    // The rmcp client sees every server's tools, prompts, resources and templates.
    let rt = runtime();
    let mcp = rt.block_on(McpTestClient::connect(&url, Vec::new())).expect("the rmcp client connects");
    let mut tools: Vec<String> =
        rt.block_on(mcp.list_tools()).expect("tools/list").iter().map(|t| t.name.to_string()).collect();
    tools.sort();
    let mut expected: Vec<String> = BUILTIN_TOOLS.iter().map(|t| (*t).to_owned()).collect();
    for (server, _) in SERVERS {
        expected.extend(PEER_TOOLS.iter().map(|tool| format!("{server}__{tool}")));
    }
    expected.sort();
    assert_eq!(tools, expected);

    let mut prompts: Vec<String> =
        rt.block_on(mcp.list_prompts()).expect("prompts/list").iter().map(|p| p.name.clone()).collect();
    prompts.sort();
    let mut expected: Vec<String> =
        SERVERS.iter().flat_map(|(s, _)| [format!("{s}__code_review"), format!("{s}__greeting")]).collect();
    expected.sort();
    assert_eq!(prompts, expected);

    // Three servers list the same URIs: each is published under a URI naming its server.
    let mut resources: Vec<String> =
        rt.block_on(mcp.list_resources()).expect("resources/list").iter().map(|r| r.uri.clone()).collect();
    resources.sort();
    let mut expected: Vec<String> = SERVERS.iter().map(|(s, _)| published_uri(s, "peer://readme")).collect();
    expected.sort();
    assert_eq!(resources, expected);
    let mut templates: Vec<String> = rt
        .block_on(mcp.list_resource_templates())
        .expect("resources/templates/list")
        .iter()
        .map(|t| t.uri_template.clone())
        .collect();
    templates.sort();
    let mut expected: Vec<String> = SERVERS.iter().map(|(s, _)| published_uri(s, "peer://notes/{topic}")).collect();
    expected.sort();
    assert_eq!(templates, expected);

    for (server, transport) in SERVERS {
        let what = format!("{server} over {}", transport.flag());
        let echo = rt.block_on(mcp.call_tool(&format!("{server}__echo"), json!({"text": "hello"}))).expect(&what);
        assert_eq!(text_of(&echo), "hello", "{what}");
        let sum = rt.block_on(mcp.call_tool(&format!("{server}__add"), json!({"a": 2, "b": 3}))).expect(&what);
        assert_eq!(text_of(&sum), "5", "{what}");
        assert_eq!(sum.structured_content, Some(json!({"result": 5})), "{what}");
        let loud = rt.block_on(mcp.call_tool(&format!("{server}__shout"), json!({"word": "quiet"}))).expect(&what);
        assert_eq!(text_of(&loud), "QUIET", "{what}");
        let failed =
            rt.block_on(mcp.call_tool(&format!("{server}__fail"), json!({"message": "on purpose"}))).expect(&what);
        assert_eq!(failed.is_error, Some(true), "{what}");
        assert!(text_of(&failed).contains("on purpose"), "{what}: {failed:?}");

        let greeting =
            rt.block_on(mcp.get_prompt(&format!("{server}__greeting"), json!({"name": "Ada"}))).expect(&what);
        let texts: Vec<String> =
            greeting.messages.iter().filter_map(|m| m.content.as_text().map(|t| t.text.clone())).collect();
        assert_eq!(texts, ["Hello, Ada!"], "{what}");

        let readme = rt.block_on(mcp.read_resource(&published_uri(server, "peer://readme"))).expect(&what);
        assert_eq!(resource_text(&readme.contents), README_TEXT, "{what}");
        let note = rt.block_on(mcp.read_resource(&published_uri(server, "peer://notes/alpha"))).expect(&what);
        assert_eq!(resource_text(&note.contents), "First note.", "{what}");

        let languages =
            rt.block_on(mcp.complete_prompt(&format!("{server}__code_review"), "language", "ru")).expect(&what);
        assert_eq!(languages, ["rust"], "{what}");
    }
    rt.block_on(mcp.close());

    // The Python client, over the gateway's Streamable HTTP and over its legacy SSE transport.
    for (target, transport) in [(url.clone(), "streamable-http"), (service.url("/metamcp/mix/sse"), "sse")] {
        let mut args: Vec<String> = vec!["--transport".into(), transport.into()];
        for (server, _) in SERVERS {
            let p = |name: &str| format!("{server}__{name}");
            for (flag, first, second) in [
                ("--call", p("echo"), json!({"text": "hi"})),
                ("--call", p("add"), json!({"a": 20, "b": 22})),
                ("--call", p("fail"), json!({"message": "expected"})),
                ("--prompt", p("code_review"), json!({"code": "x = 1", "language": "rust"})),
            ] {
                args.extend([flag.to_owned(), first, second.to_string()]);
            }
            args.extend(["--read".into(), published_uri(server, "peer://readme")]);
            args.extend(["--read".into(), published_uri(server, "peer://notes/beta")]);
            args.extend(["--complete".into(), p("code_review"), "language".into(), "ty".into()]);
        }
        let run = run_client(&python, &target, &args, Duration::from_secs(90));
        assert!(run.success, "client.py over {transport}: {}\n{}", run.summary(), run.stderr);
        let summary = run.summary();
        let listed = |key: &str, field: &str| -> Vec<String> {
            let mut names: Vec<String> = summary[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item[field].as_str().map(str::to_owned))
                .collect();
            names.sort();
            names
        };
        assert_eq!(listed("tools", "name"), tools, "{transport}");
        assert_eq!(listed("prompts", "name"), prompts, "{transport}");
        assert_eq!(listed("resources", "uri"), resources, "{transport}");
        assert_eq!(listed("resource_templates", "uriTemplate"), templates, "{transport}");
        for (server, _) in SERVERS {
            let p = |name: &str| format!("{server}__{name}");
            let what = format!("{server} through the gateway's {transport}");
            let echo = run.result("call", &p("echo"));
            assert_eq!((echo["ok"].as_bool(), call_text(echo)), (Some(true), "hi".to_owned()), "{what}: {echo}");
            let add = run.result("call", &p("add"));
            assert_eq!(add["result"]["structuredContent"], json!({"result": 42}), "{what}: {add}");
            let fail = run.result("call", &p("fail"));
            assert_eq!(fail["result"]["isError"], true, "{what}: {fail}");
            let review = run.result("prompt", &p("code_review"));
            assert_eq!(
                review["result"]["messages"][0]["content"]["text"], "Review this rust code:\nx = 1",
                "{what}: {review}"
            );
            let readme = run.result("read", &published_uri(server, "peer://readme"));
            assert_eq!(readme["result"]["contents"][0]["text"], README_TEXT, "{what}: {readme}");
            let note = run.result("read", &published_uri(server, "peer://notes/beta"));
            assert_eq!(note["result"]["contents"][0]["text"], "Second note.", "{what}: {note}");
            let complete = run.result("complete", &p("code_review"));
            assert_eq!(complete["result"]["completion"]["values"], json!(["typescript"]), "{what}: {complete}");
        }
    }

    // Each upstream received the calls meant for it, with its own names.
    let received = records(&request_log);
    let calls = received.iter().filter(|r| r["method"] == "tools/call").count();
    assert_eq!(calls, 3 * (4 + 2 * 3), "rmcp: 4 calls per server; client.py: 3 per server per transport");
}
