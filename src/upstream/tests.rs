//! Tests of the upstream clients against real peers: the official Python MCP SDK's server
//! (`tests/peers/python/server.py`) over stdio, SSE and Streamable HTTP, and an `rmcp` server.
//! Every wait is bounded.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::{ArgumentInfo, CompleteRequestParams, Reference};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::test_prereq;

/// Bound on every wait in this file; generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(20);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python/server.py")
}

/// The Python peer as a stdio server named `name`, with `env`.
fn stdio_spec(python: &Path, name: &str, env: &[(&str, &Path)]) -> ServerSpec {
    ServerSpec::Stdio {
        command: python.to_string_lossy().into_owned(),
        args: vec![
            script().to_string_lossy().into_owned(),
            "--transport".into(),
            "stdio".into(),
            "--name".into(),
            name.into(),
        ],
        env: env.iter().map(|(k, v)| ((*k).to_owned(), v.to_string_lossy().into_owned())).collect::<BTreeMap<_, _>>(),
        cwd: None,
    }
}

/// The Python peer on an HTTP transport, killed when dropped.
struct PythonHttpPeer {
    child: Child,
    url: String,
}

impl PythonHttpPeer {
    /// Starts `server.py --transport <transport>` and waits (bounded) for its ready line.
    fn start(python: &Path, transport: &str, env: &[(&str, &Path)]) -> Self {
        let mut command = Command::new(python);
        command.arg(script()).args(["--transport", transport, "--name", "py-http"]);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the Python peer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let Ok(line) = receiver.recv_timeout(WAIT) else {
            let _ = child.kill();
            panic!("the Python peer printed no ready line within {WAIT:?}");
        };
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        Self { child, url: ready["url"].as_str().expect("url").to_owned() }
    }
}

impl Drop for PythonHttpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upstreams() -> Upstreams {
    Upstreams::new(TelemetryManager::disabled(), UpstreamsConfig::default())
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.as_str()).collect::<Vec<_>>().join("\n")
}

/// The records of a peer's log file, one JSON object a line.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Polls `condition` every 50 ms until it holds or `WAIT` passes.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "{what} did not happen within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything the Python peer offers is discovered.
fn assert_python_discovery(discovery: &Discovery) {
    let tools: Vec<&str> = discovery.tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in ["echo", "add", "shout", "fail", "slow", "echo_meta", "add_tool"] {
        assert!(tools.contains(&expected), "{expected} in {tools:?}");
    }
    let shout = discovery.tools.iter().find(|t| t.name == "shout").unwrap();
    assert_eq!(shout.input_schema["properties"]["word"]["pattern"], "^[a-z]+$");
    let prompts: Vec<&str> = discovery.prompts.iter().map(|p| p.name.as_str()).collect();
    assert!(prompts.contains(&"greeting") && prompts.contains(&"code_review"), "{prompts:?}");
    let resources: Vec<&str> = discovery.resources.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(resources, ["peer://readme"]);
    let templates: Vec<&str> = discovery.resource_templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(templates, ["peer://notes/{topic}"]);
    assert!(discovery.capabilities.tools.is_some() && discovery.capabilities.completions.is_some());
    assert!(!discovery.protocol_version.is_empty());
}

/// A tool, a tool error, a prompt, a resource, a template resource and a completion, through
/// `server`.
async fn exercise_python_peer(upstreams: &Upstreams, server: &str) {
    let sum = upstreams.call_tool(server, "add", args(json!({"a": 2, "b": 3})), CallContext::default()).await.unwrap();
    assert_eq!(text(&sum), "5");
    assert_eq!(sum.structured_content, Some(json!({"result": 5})));
    assert_ne!(sum.is_error, Some(true));
    let failed =
        upstreams.call_tool(server, "fail", args(json!({"message": "no"})), CallContext::default()).await.unwrap();
    assert_eq!(failed.is_error, Some(true));

    let prompt = upstreams
        .get_prompt(server, "greeting", Some(args(json!({"name": "Ada"}))), CallContext::default())
        .await
        .unwrap();
    let prompt = serde_json::to_value(&prompt).unwrap();
    assert_eq!(prompt["messages"][0]["content"]["text"], "Hello, Ada!", "{prompt}");

    let readme = upstreams.read_resource(server, "peer://readme", CallContext::default()).await.unwrap();
    assert!(serde_json::to_value(&readme).unwrap()["contents"][0]["text"].is_string());
    let note = upstreams.read_resource(server, "peer://notes/alpha", CallContext::default()).await.unwrap();
    assert_eq!(serde_json::to_value(&note).unwrap()["contents"][0]["text"], "First note.");
    let missing = upstreams.read_resource(server, "nope://x", CallContext::default()).await.unwrap_err();
    assert!(matches!(missing, UpstreamError::Rpc { .. }), "{missing:?}");

    let params = CompleteRequestParams::new(Reference::for_prompt("code_review"), ArgumentInfo::new("language", "py"));
    let completed = upstreams.complete(server, params, CallContext::default()).await.unwrap();
    assert_eq!(completed.completion.values, ["python"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_stdio_server_is_discovered_and_used() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let upstreams = upstreams();
    let discovery = upstreams.connect("py", &stdio_spec(&python, "py-stdio", &[]), TIMEOUT).await.unwrap();
    assert_python_discovery(&discovery);
    exercise_python_peer(&upstreams, "py").await;
    let health = upstreams.health();
    assert_eq!(health.len(), 1);
    assert_eq!((health[0].transport, health[0].connected, health[0].restarts), (Transport::Stdio, true, 0));
    assert!(upstreams.child_pid("py").is_some());
    upstreams.disconnect("py").await;
    assert!(upstreams.health().is_empty() && upstreams.discovery("py").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_streamable_http_server_is_discovered_and_used() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let peer = PythonHttpPeer::start(&python, "streamable-http", &[]);
    let upstreams = upstreams();
    let spec = ServerSpec::StreamableHttp { url: peer.url.clone() };
    let discovery = upstreams.connect("py", &spec, TIMEOUT).await.unwrap();
    assert_python_discovery(&discovery);
    exercise_python_peer(&upstreams, "py").await;
    upstreams.disconnect("py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_sse_server_is_discovered_and_used() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let peer = PythonHttpPeer::start(&python, "sse", &[]);
    let upstreams = upstreams();
    let spec = ServerSpec::Sse { url: peer.url.clone() };
    let discovery = upstreams.connect("py", &spec, TIMEOUT).await.unwrap();
    assert_python_discovery(&discovery);
    exercise_python_peer(&upstreams, "py").await;
    upstreams.disconnect("py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_streamable_http_server_is_discovered_and_used() {
    let upstream = support::mcp_peers::McpUpstream::start("weather-upstream");
    let upstreams = upstreams();
    let spec = ServerSpec::StreamableHttp { url: upstream.url() };
    let discovery = upstreams.connect("weather", &spec, TIMEOUT).await.unwrap();
    assert!(!discovery.tools.is_empty());
    let tool = discovery.tools[0].name.to_string();
    let _ = upstreams.call_tool("weather", &tool, Map::new(), CallContext::default()).await.unwrap();
    assert!(upstream.tool_calls().iter().any(|(name, _)| *name == tool));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_child_killed_with_sigkill_is_restarted_and_serves_again() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let config = UpstreamsConfig { restart_initial_backoff: Duration::from_millis(50), ..UpstreamsConfig::default() };
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let upstreams = Upstreams::new(telemetry, config);
    let mut events = upstreams.subscribe();
    upstreams.connect("py", &stdio_spec(&python, "py-stdio", &[]), TIMEOUT).await.unwrap();
    let pid = upstreams.child_pid("py").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();

    eventually("the restart", || {
        let health = upstreams.health();
        health[0].restarts == 1 && health[0].connected && upstreams.child_pid("py").is_some_and(|p| p != pid)
    })
    .await;
    let restarted = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(UpstreamEvent::Restarted { server }) = events.recv().await {
                return server;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(restarted, "py");
    let echoed =
        upstreams.call_tool("py", "echo", args(json!({"text": "again"})), CallContext::default()).await.unwrap();
    assert_eq!(text(&echoed), "again");
    assert_eq!(upstreams.health()[0].consecutive_failures, 0);

    // Counted in the metric, the ended session measured, and /health shows the component.
    use metamcp_telemetry::RecordedUpstreamEvent;
    let events = recorded.upstream_events();
    assert!(events.contains(&RecordedUpstreamEvent::Restarted { server: "py".into() }), "{events:?}");
    assert!(events.contains(&RecordedUpstreamEvent::Up { server: "py".into(), up: false }), "{events:?}");
    let last_up = events.iter().rev().find(|e| matches!(e, RecordedUpstreamEvent::Up { .. }));
    assert_eq!(last_up, Some(&RecordedUpstreamEvent::Up { server: "py".into(), up: true }), "{events:?}");
    let sessions = recorded.mcp_sessions();
    assert!(sessions.iter().any(|s| s.error_type.as_deref() == Some("session_ended") && s.network_transport == "pipe"));
    let components = recorded.components();
    let component = components.iter().find(|c| c.name == "upstream:py").expect("the upstream's component");
    assert!(component.healthy);
    assert_eq!(component.details["restarts"], 1);
    assert_eq!(component.details["transport"], "stdio");
    assert!(component.details["tools"].as_u64().is_some_and(|n| n >= 7));
    upstreams.disconnect("py").await;
    assert!(recorded.upstream_events().contains(&RecordedUpstreamEvent::Forgotten { server: "py".into() }));
    assert!(recorded.components().is_empty(), "a disconnected server is no component");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_stops_the_stdio_child() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let upstreams = upstreams();
    upstreams.connect("py", &stdio_spec(&python, "py-stdio", &[]), TIMEOUT).await.unwrap();
    let pid = nix::unistd::Pid::from_raw(upstreams.child_pid("py").unwrap() as i32);
    upstreams.disconnect("py").await;
    eventually("the child's exit", || nix::sys::signal::kill(pid, None).is_err()).await;
    let err = upstreams.call_tool("py", "echo", Map::new(), CallContext::default()).await.unwrap_err();
    assert_eq!(err, UpstreamError::NotConnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_slow_tool_reaches_the_call() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let upstreams = upstreams();
    upstreams.connect("py", &stdio_spec(&python, "py-stdio", &[]), TIMEOUT).await.unwrap();
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let ctx = CallContext { progress: Some(sender), ..CallContext::default() };
    let result = upstreams.call_tool("py", "slow", args(json!({"steps": 3, "interval_ms": 50})), ctx).await.unwrap();
    assert_eq!(text(&result), "counted to 3");
    let mut progress = Vec::new();
    while let Ok(step) = receiver.try_recv() {
        progress.push((step.progress, step.total, step.message));
    }
    assert_eq!(
        progress,
        [1.0, 2.0, 3.0].map(|p| (p, Some(3.0), Some(format!("step {p} of 3")))),
        "one notification per step, in order"
    );
}

/// A cancelled `slow` call ends at once with `Cancelled`, and the peer records the
/// cancellation.
async fn cancel_slow(upstreams: &Upstreams, cancel_log: &Path) {
    let cancel = CancellationToken::new();
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let ctx = CallContext { progress: Some(sender), cancel: Some(cancel.clone()), ..CallContext::default() };
    let call = upstreams.call_tool("py", "slow", args(json!({"steps": 100, "interval_ms": 100})), ctx);
    let canceller = async {
        // Cancel once the tool has really started.
        tokio::time::timeout(WAIT, receiver.recv()).await.unwrap().unwrap();
        cancel.cancel();
    };
    let started = Instant::now();
    let (outcome, ()) = tokio::join!(call, canceller);
    assert_eq!(outcome.unwrap_err(), UpstreamError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(8), "the call ended when cancelled, not when done");
    eventually("the peer's record of the cancellation", || {
        records(cancel_log).iter().any(|r| r["event"] == "cancelled" && r["tool"] == "slow")
    })
    .await;
    // The session is still good.
    let echoed = upstreams.call_tool("py", "echo", args(json!({"text": "still"})), CallContext::default()).await;
    assert_eq!(text(&echoed.unwrap()), "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_is_cancelled_upstream_over_stdio() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let log = tempfile::NamedTempFile::new().unwrap();
    let upstreams = upstreams();
    upstreams
        .connect("py", &stdio_spec(&python, "py-stdio", &[("PEER_CANCEL_LOG", log.path())]), TIMEOUT)
        .await
        .unwrap();
    cancel_slow(&upstreams, log.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_is_cancelled_upstream_over_streamable_http() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let log = tempfile::NamedTempFile::new().unwrap();
    let peer = PythonHttpPeer::start(&python, "streamable-http", &[("PEER_CANCEL_LOG", log.path())]);
    let upstreams = upstreams();
    upstreams.connect("py", &ServerSpec::StreamableHttp { url: peer.url.clone() }, TIMEOUT).await.unwrap();
    cancel_slow(&upstreams, log.path()).await;
}

/// The `traceparent` the peer echoes from `_meta` is our CLIENT span's context, child of the
/// caller's.
async fn assert_traced_call(upstreams: &Upstreams, recorded: &metamcp_telemetry::TestTelemetry) {
    use opentelemetry::trace::{FutureExt as _, SpanContext, TraceContextExt as _, TraceFlags, TraceState};
    let trace_id = opentelemetry::trace::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let parent_id = opentelemetry::trace::SpanId::from_hex("b7ad6b7169203331").unwrap();
    let parent = SpanContext::new(
        trace_id,
        parent_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("k", "v")]).unwrap(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(parent);
    let result =
        upstreams.call_tool("py", "echo_meta", Map::new(), CallContext::default()).with_context(cx).await.unwrap();
    let meta = &result.structured_content.as_ref().unwrap()["meta"];
    let span = recorded
        .spans()
        .into_iter()
        .find(|s| s.name == "tools/call echo_meta")
        .unwrap_or_else(|| panic!("no client span in {:?}", recorded.span_names()));
    assert_eq!(span.span_kind, opentelemetry::trace::SpanKind::Client);
    assert_eq!(span.span_context.trace_id(), trace_id);
    assert_eq!(span.parent_span_id, parent_id);
    let expected = format!("00-{}-{}-01", trace_id, span.span_context.span_id());
    assert_eq!(meta["traceparent"], expected.as_str(), "{meta}");
    assert_eq!(meta["tracestate"], "k=v");
    let attribute = |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
    assert_eq!(attribute("mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(attribute("gen_ai.tool.name").as_deref(), Some("echo_meta"));
    assert!(attribute("jsonrpc.request.id").is_some());
    assert!(attribute("mcp.protocol.version").is_some());
    assert_eq!(attribute("error.type"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_reads_our_client_span_from_meta_over_stdio() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let upstreams = Upstreams::new(telemetry, UpstreamsConfig::default());
    upstreams.connect("py", &stdio_spec(&python, "py-stdio", &[]), TIMEOUT).await.unwrap();
    assert_traced_call(&upstreams, &recorded).await;
    let span = recorded.spans().into_iter().find(|s| s.name == "tools/call echo_meta").unwrap();
    let transport = span.attributes.iter().find(|kv| kv.key.as_str() == "network.transport").unwrap();
    assert_eq!(transport.value.to_string(), "pipe");
    assert!(recorded.span_names().iter().any(|n| n == "initialize"));
    assert!(recorded.span_names().iter().any(|n| n == "tools/list"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_the_trace_context_travels_in_meta_and_headers() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    for transport in ["streamable-http", "sse"] {
        let log = tempfile::NamedTempFile::new().unwrap();
        let peer = PythonHttpPeer::start(&python, transport, &[("PEER_REQUEST_LOG", log.path())]);
        let (telemetry, recorded) = TelemetryManager::for_testing();
        let upstreams = Upstreams::new(telemetry, UpstreamsConfig::default());
        let spec = match transport {
            "sse" => ServerSpec::Sse { url: peer.url.clone() },
            _ => ServerSpec::StreamableHttp { url: peer.url.clone() },
        };
        upstreams.connect("py", &spec, TIMEOUT).await.unwrap();
        assert_traced_call(&upstreams, &recorded).await;
        let span = recorded.spans().into_iter().find(|s| s.name == "tools/call echo_meta").unwrap();
        let has = |key: &str, value: &str| {
            span.attributes.iter().any(|kv| kv.key.as_str() == key && kv.value.to_string() == value)
        };
        assert!(has("network.transport", "tcp") && has("server.address", "127.0.0.1"), "{transport}");
        let traceparent = format!("00-{}-{}-01", span.span_context.trace_id(), span.span_context.span_id());
        let call = records(log.path())
            .into_iter()
            .find(|r| r["method"] == "tools/call" && r["meta"]["traceparent"] == traceparent.as_str())
            .unwrap_or_else(|| panic!("{transport}: no record of the traced call"));
        assert_eq!(call["headers"]["traceparent"], traceparent.as_str(), "{transport}");
        assert_eq!(call["headers"]["tracestate"], "k=v", "{transport}");
        // Discovery requests carry it too.
        assert!(
            records(log.path()).iter().any(|r| r["method"] == "tools/list" && r["meta"]["traceparent"].is_string()),
            "{transport}: tools/list without traceparent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_error_and_a_json_rpc_error_are_marked_on_the_client_span() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let upstreams = Upstreams::new(telemetry, UpstreamsConfig::default());
    upstreams.connect("py", &stdio_spec(&python, "py-stdio", &[]), TIMEOUT).await.unwrap();
    upstreams.call_tool("py", "fail", Map::new(), CallContext::default()).await.unwrap();
    upstreams.read_resource("py", "nope://x", CallContext::default()).await.unwrap_err();
    let spans = recorded.spans();
    let error_type = |name: &str| {
        let span = spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name}"));
        let get = |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
        (get("error.type"), get("rpc.response.status_code"))
    };
    assert_eq!(error_type("tools/call fail"), (Some("tool_error".into()), None));
    let (kind, code) = error_type("resources/read");
    assert!(code.as_deref().is_some_and(|c| c.starts_with('-')), "{code:?}");
    assert_eq!(kind, code, "a JSON-RPC error's error.type is its code");

    // The same in mcp.client.operation.duration.
    let ops = recorded.mcp_operations();
    let op =
        |method: &str| ops.iter().find(|op| op.method == method).unwrap_or_else(|| panic!("no {method} in {ops:?}"));
    assert_eq!(op("tools/call").tool_name.as_deref(), Some("fail"));
    assert_eq!(op("tools/call").error_type.as_deref(), Some("tool_error"));
    assert_eq!(op("tools/call").network_transport, "pipe");
    assert_eq!(op("resources/read").error_type, code);
    assert!(op("initialize").error_type.is_none() && op("initialize").protocol_version.is_some());
    assert_eq!(op("tools/list").side, metamcp_telemetry::McpSide::Client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_change_refreshes_the_discovery_and_is_broadcast() {
    let Some(python) = test_prereq::python_mcp_sdk() else { return };
    let upstreams = upstreams();
    upstreams.connect("py", &stdio_spec(&python, "py-stdio", &[]), TIMEOUT).await.unwrap();
    let mut events = upstreams.subscribe();
    upstreams.call_tool("py", "add_tool", args(json!({"name": "extra"})), CallContext::default()).await.unwrap();
    let event = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
    assert_eq!(event, UpstreamEvent::ListChanged { server: "py".into(), kind: ListKind::Tools });
    let tools = upstreams.discovery("py").unwrap();
    assert!(tools.tools.iter().any(|t| t.name == "extra"), "the discovery is fresh when the event arrives");
    let added = upstreams.call_tool("py", "extra", Map::new(), CallContext::default()).await.unwrap();
    assert_eq!(text(&added), "added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_refuse_stdio_servers_in_connect_too() {
    let disabled = Upstreams::new(
        TelemetryManager::disabled(),
        UpstreamsConfig { stdio_enabled: false, ..UpstreamsConfig::default() },
    );
    let spec = ServerSpec::Stdio { command: "true".into(), args: vec![], env: BTreeMap::new(), cwd: None };
    let err = disabled.connect("x", &spec, TIMEOUT).await.unwrap_err();
    assert_eq!(err.kind(), "not_allowed");
    assert!(err.to_string().contains("gateway.stdio_enabled"), "{err}");
    let allow_list = Upstreams::new(
        TelemetryManager::disabled(),
        UpstreamsConfig { stdio_allowed_commands: vec!["npx".into()], ..UpstreamsConfig::default() },
    );
    let err = allow_list.connect("x", &spec, TIMEOUT).await.unwrap_err();
    assert!(err.to_string().contains("gateway.stdio_allowed_commands"), "{err}");
    assert!(disabled.health().is_empty() && allow_list.health().is_empty(), "a refused server is not kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_start_is_a_failing_upstream() {
    let upstreams = upstreams();
    let spec = ServerSpec::Stdio {
        command: "/nonexistent/mcp-server".into(),
        args: vec![],
        env: BTreeMap::from([("API_KEY".into(), "secret-value".into())]),
        cwd: None,
    };
    let err = upstreams.connect("broken", &spec, TIMEOUT).await.unwrap_err();
    assert_eq!(err.kind(), "spawn");
    assert!(!err.to_string().contains("secret-value") && !format!("{spec:?}").contains("secret-value"));
    let health = upstreams.health();
    assert_eq!((health[0].connected, health[0].last_error_kind), (false, Some("spawn")));
    assert!(health[0].consecutive_failures >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upstream_is_an_unhealthy_component_without_secrets() {
    let (telemetry, recorded) = TelemetryManager::for_testing();
    let upstreams = Upstreams::new(telemetry, UpstreamsConfig::default());
    let spec = ServerSpec::Stdio {
        command: "/nonexistent/mcp-server".into(),
        args: vec!["--token=secret-arg".into()],
        env: BTreeMap::from([("API_KEY".into(), "secret-value".into())]),
        cwd: None,
    };
    upstreams.connect("broken", &spec, TIMEOUT).await.unwrap_err();
    let components = recorded.components();
    assert_eq!(components.len(), 1);
    assert_eq!(components[0].name, "upstream:broken");
    assert!(!components[0].healthy);
    assert_eq!(components[0].details["last_error_kind"], "spawn");
    let shown = components[0].details.to_string();
    assert!(!shown.contains("secret"), "{shown}");
    assert!(recorded
        .upstream_events()
        .contains(&metamcp_telemetry::RecordedUpstreamEvent::Up { server: "broken".into(), up: false }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_policy_refuses_http_upstreams() {
    let policy = OutboundPolicy::new(&[], &["127.0.0.0/8".to_owned(), "::1/128".to_owned()]).unwrap();
    let upstreams = Upstreams::new(
        TelemetryManager::disabled(),
        UpstreamsConfig { policy: Arc::new(policy), ..UpstreamsConfig::default() },
    );
    for spec in [
        ServerSpec::StreamableHttp { url: "http://127.0.0.1:9/mcp".into() },
        ServerSpec::Sse { url: "http://localhost:9/sse".into() },
        ServerSpec::StreamableHttp { url: "http://169.254.169.254/latest".into() },
    ] {
        let err = upstreams.connect("x", &spec, TIMEOUT).await.unwrap_err();
        assert_eq!(err, UpstreamError::Refused, "{spec:?}");
    }
}

/// A loopback HTTP server that answers every request with `response`, as raw bytes.
async fn raw_http_server(response: &'static str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{address}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_status_is_reported_without_its_body() {
    let url = raw_http_server(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: 45\r\n\
         connection: close\r\n\r\n{\"error\": \"SECRET-BODY-FROM-SOME-OTHER-API\"}\n",
    )
    .await;
    let upstreams = upstreams();
    for spec in [ServerSpec::StreamableHttp { url: url.clone() }, ServerSpec::Sse { url: url.clone() }] {
        let err = upstreams.connect("raw", &spec, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err, UpstreamError::Http { status: 500 }, "{spec:?}");
        assert!(!format!("{err} {err:?}").contains("SECRET"), "{err}");
    }
    let health = upstreams.health();
    assert_eq!(health[0].last_error_kind, Some("http"));
}
