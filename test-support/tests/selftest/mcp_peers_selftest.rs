//! Tests of the SDK-built MCP peers against each other, without the gateway: [`McpTestClient`]
//! talks straight to [`McpUpstream`] over loopback Streamable HTTP. They prove the handshake is the
//! 2025-11-25 `initialize` one, that tools, pagination, tool errors, custom headers, sessions and
//! shutdown behave as the gateway tests will rely on, and pin down what the SDK puts on the wire.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::mcp_peers::{
    expected_tool_names, text_of, ClientOptions, McpTestClient, McpUpstream, UpstreamOptions, FAILURE_TEXT,
    PROTOCOL_VERSION, WEATHER_DESCRIPTION,
};
use support::wait::{assert_eventually, assert_eventually_async};

/// Bound on every wait in this file; generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(10);

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

async fn connect(upstream: &McpUpstream) -> McpTestClient {
    McpTestClient::connect(&upstream.url(), Vec::new()).await.unwrap_or_else(|e| panic!("connect: {e}"))
}

fn tool_names(tools: &[rmcp::model::Tool]) -> Vec<String> {
    tools.iter().map(|t| t.name.to_string()).collect()
}

/// `inputSchema.properties.<name>.type` of `tool`.
fn property_type(tool: &rmcp::model::Tool, name: &str) -> Option<String> {
    tool.input_schema.get("properties")?.get(name)?.get("type")?.as_str().map(str::to_string)
}

#[tokio::test]
async fn handshake_is_2025_11_25_initialize_and_lists_the_builtin_tools() {
    let upstream = McpUpstream::start("alpha");
    let client = connect(&upstream).await;
    assert_eq!(client.protocol_version(), PROTOCOL_VERSION);
    assert_eq!(client.server_name(), "alpha");

    let tools = client.list_tools().await.unwrap();
    assert_eq!(tool_names(&tools), expected_tool_names(0));
    assert_eq!(tool_names(&tools), ["add", "echo", "fail", "slow", "weather"]);
    let tool = |name: &str| tools.iter().find(|t| t.name == name).unwrap();
    assert_eq!(tool("weather").description.as_deref(), Some(WEATHER_DESCRIPTION));
    // The SDK's own schemas, generated from the schemars argument types.
    assert_eq!(property_type(tool("echo"), "text").as_deref(), Some("string"));
    assert_eq!(property_type(tool("weather"), "city").as_deref(), Some("string"));
    assert_eq!(property_type(tool("add"), "a").as_deref(), Some("number"));
    assert_eq!(property_type(tool("add"), "b").as_deref(), Some("number"));
    assert_eq!(property_type(tool("slow"), "ms").as_deref(), Some("integer"));
    assert_eq!(tool("echo").input_schema.get("required"), Some(&json!(["text"])));
    assert_eq!(tool("fail").input_schema.get("type"), Some(&json!("object")));

    let init = upstream.requests_for("initialize");
    assert_eq!(init.len(), 1, "one initialize: {:?}", upstream.requests());
    let init_body = init[0].body.as_ref().unwrap();
    assert_eq!(init_body["params"]["protocolVersion"], PROTOCOL_VERSION);
    assert_eq!(init_body["params"]["clientInfo"]["name"], "mcp-test-client");
    assert_eq!(init[0].session_id, None);
    assert_eq!(init[0].status, Some(200));
    let initialized = upstream.requests_for("notifications/initialized");
    assert_eq!(initialized.len(), 1, "the client sends notifications/initialized");
    assert_eq!(initialized[0].rpc_id, None);
    assert_eq!(initialized[0].status, Some(202));
    client.close().await;
}

#[tokio::test]
async fn paging_lists_every_tool_across_pages() {
    let upstream = McpUpstream::start_with(UpstreamOptions::named("paged").page_size(2).extra_tools(5));
    let client = connect(&upstream).await;

    let tools = client.list_tools().await.unwrap();
    assert_eq!(tools.len(), 10);
    assert_eq!(tool_names(&tools), expected_tool_names(5));
    assert_eq!(upstream.requests_for("tools/list").len(), 5, "10 tools in pages of 2");

    let first = client.list_tools_page(None).await.unwrap();
    assert_eq!(tool_names(&first.tools), ["add", "echo"]);
    let second = client.list_tools_page(first.next_cursor.clone()).await.unwrap();
    assert_eq!(tool_names(&second.tools), ["fail", "slow"]);
    let cursors: Vec<Value> = upstream
        .requests_for("tools/list")
        .iter()
        .map(|r| r.body.as_ref().unwrap()["params"]["cursor"].clone())
        .collect();
    assert_eq!(cursors[..5], [Value::Null, json!("2"), json!("4"), json!("6"), json!("8")]);

    let generated = client.call_tool("tool_3", Value::Null).await.unwrap();
    assert_eq!(text_of(&generated), "tool_3");
    client.close().await;
}

#[tokio::test]
async fn tool_calls_answer_and_are_recorded_in_order() {
    let upstream = McpUpstream::start("calc");
    let client = connect(&upstream).await;

    let sum = client.call_tool("add", json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(text_of(&sum), "5");
    assert_ne!(sum.is_error, Some(true));
    assert_eq!(text_of(&client.call_tool("add", json!({"a": 2.5, "b": 1})).await.unwrap()), "3.5");
    assert_eq!(text_of(&client.call_tool("echo", json!({"text": "hi there"})).await.unwrap()), "hi there");
    assert_eq!(text_of(&client.call_tool("weather", json!({"city": "Paris"})).await.unwrap()), "sunny in Paris");

    let started = Instant::now();
    assert_eq!(text_of(&client.call_tool("slow", json!({"ms": 150})).await.unwrap()), "done");
    assert!(started.elapsed() >= Duration::from_millis(150));

    let failed = client.call_tool("fail", json!({})).await.unwrap();
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text_of(&failed), FAILURE_TEXT);

    let unknown = client.call_tool("no_such_tool", json!({})).await;
    assert!(unknown.is_err(), "an unknown tool is a JSON-RPC error: {unknown:?}");
    // The SDK reports arguments that do not deserialize as a tool error result, not a JSON-RPC error.
    let bad_arguments = client.call_tool("add", json!({"a": "two"})).await.unwrap();
    assert_eq!(bad_arguments.is_error, Some(true));
    assert!(text_of(&bad_arguments).contains("failed to deserialize parameters"), "{bad_arguments:?}");

    let calls = upstream.tool_calls();
    let names: Vec<&str> = calls.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["add", "add", "echo", "weather", "slow", "fail", "no_such_tool", "add"]);
    assert_eq!(calls[0].1, json!({"a": 2, "b": 3}));
    assert_eq!(calls[2].1, json!({"text": "hi there"}));
    client.close().await;
}

#[tokio::test]
async fn custom_headers_protocol_version_and_session_reach_the_upstream() {
    let upstream = McpUpstream::start("headers");
    let headers = vec![
        ("traceparent".to_string(), TRACEPARENT.to_string()),
        ("authorization".to_string(), "Bearer k".to_string()),
        ("x-tenant".to_string(), "acme".to_string()),
    ];
    let client = McpTestClient::connect(&upstream.url(), headers).await.unwrap();
    client.call_tool("echo", json!({"text": "x"})).await.unwrap();
    let requests = upstream.requests();

    let posts: Vec<_> = requests.iter().filter(|r| r.http_method == "POST").collect();
    assert!(posts.len() >= 3, "initialize, initialized, tools/call: {requests:?}");
    for request in &requests {
        assert_eq!(request.traceparent.as_deref(), Some(TRACEPARENT), "{request:?}");
        assert_eq!(request.authorization.as_deref(), Some("Bearer k"), "{request:?}");
        assert_eq!(request.header("x-tenant"), Some("acme"), "{request:?}");
    }
    for post in &posts {
        let accept = post.header("accept").unwrap_or_default();
        assert!(accept.contains("application/json") && accept.contains("text/event-stream"), "{post:?}");
        assert_eq!(post.header("content-type"), Some("application/json"), "{post:?}");
    }

    assert!(requests[0].is_rpc("initialize"));
    assert_eq!(requests[0].session_id, None);
    assert_eq!(requests[0].protocol_version, None, "the initialize POST carries no MCP-Protocol-Version");
    let session = requests[1].session_id.clone().expect("a session id after initialize");
    for request in &requests[1..] {
        assert_eq!(request.session_id.as_deref(), Some(session.as_str()), "{request:?}");
        assert_eq!(request.protocol_version.as_deref(), Some(PROTOCOL_VERSION), "{request:?}");
    }
    let call = upstream.requests_for("tools/call");
    assert_eq!(call.len(), 1);
    assert_eq!(call[0].meta_traceparent, None, "the SDK adds no _meta.traceparent of its own");
    client.close().await;
}

#[tokio::test]
async fn meta_traceparent_is_sent_and_recorded() {
    let upstream = McpUpstream::start("meta");
    let client = connect(&upstream).await;
    let mut meta = serde_json::Map::new();
    meta.insert("traceparent".to_string(), json!(TRACEPARENT));
    let result = client.call_tool_with_meta("echo", json!({"text": "m"}), meta).await.unwrap();
    assert_eq!(text_of(&result), "m");
    let call = upstream.requests_for("tools/call");
    assert_eq!(call[0].meta_traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(call[0].traceparent, None, "no traceparent header unless configured");
    client.close().await;
}

#[tokio::test]
async fn close_deletes_the_session() {
    let upstream = McpUpstream::start("closing");
    let client = connect(&upstream).await;
    client.list_tools().await.unwrap();
    let session = upstream.requests_for("tools/list")[0].session_id.clone().unwrap();
    client.close().await;
    assert_eventually(WAIT, Duration::from_millis(10), "a DELETE of the session", || {
        upstream
            .requests()
            .iter()
            .any(|r| r.http_method == "DELETE" && r.session_id.as_deref() == Some(&session) && r.status.is_some())
    });
    let delete = upstream.requests().into_iter().find(|r| r.http_method == "DELETE").unwrap();
    assert!(delete.status.is_some_and(|s| (200..300).contains(&s)), "{delete:?}");
}

#[tokio::test]
async fn dropping_the_client_also_deletes_the_session() {
    let upstream = McpUpstream::start("dropping");
    drop(connect(&upstream).await);
    assert_eventually_async(WAIT, "a DELETE after drop", || async {
        upstream.requests().iter().any(|r| r.http_method == "DELETE")
    })
    .await;
}

/// End the session behind the client's back, as a restarted or expiring server would.
async fn delete_session(upstream: &McpUpstream) {
    let session = upstream.requests().iter().rev().find_map(|r| r.session_id.clone()).expect("a session");
    let response =
        reqwest::Client::new().delete(upstream.url()).header("mcp-session-id", session).send().await.unwrap();
    assert!(response.status().is_success(), "DELETE answered {}", response.status());
}

#[tokio::test]
async fn an_expired_session_is_reinitialized_once_by_default() {
    let upstream = McpUpstream::start("expiring");
    let client = connect(&upstream).await;
    client.call_tool("echo", json!({"text": "before"})).await.unwrap();
    delete_session(&upstream).await;

    let after = client.call_tool("echo", json!({"text": "after"})).await.unwrap();
    assert_eq!(text_of(&after), "after");
    let calls = upstream.requests_for("tools/call");
    assert_eq!(calls.len(), 3, "the call answered 404 is retried once: {calls:?}");
    assert_eq!(calls[1].status, Some(404));
    assert_eq!(upstream.requests_for("initialize").len(), 2, "a second initialize opened a new session");
    assert_ne!(calls[2].session_id, calls[1].session_id);
    client.close().await;
}

#[tokio::test]
async fn an_expired_session_is_an_error_without_reinitialization() {
    let upstream = McpUpstream::start("expiring-strict");
    let options = ClientOptions { reinit_on_expired_session: false, ..Default::default() };
    let client = McpTestClient::connect_with(&upstream.url(), options).await.unwrap();
    delete_session(&upstream).await;
    let after = client.call_tool("echo", json!({"text": "after"})).await;
    assert!(after.is_err(), "{after:?}");
    assert_eq!(upstream.requests_for("initialize").len(), 1);
    assert_eq!(upstream.requests_for("tools/call")[0].status, Some(404));
    client.close().await;
}

#[tokio::test]
async fn json_response_upstream_answers_json_without_sessions() {
    let upstream = McpUpstream::start_with(UpstreamOptions::named("stateless").json_response(true));
    let client = connect(&upstream).await;
    assert_eq!(client.protocol_version(), PROTOCOL_VERSION);
    assert_eq!(client.server_name(), "stateless");
    assert_eq!(text_of(&client.call_tool("add", json!({"a": 2, "b": 3})).await.unwrap()), "5");
    assert_eq!(client.list_tools().await.unwrap().len(), 5);
    let requests = upstream.requests();
    assert!(requests.iter().all(|r| r.session_id.is_none()), "no session in stateless mode: {requests:?}");
    assert!(requests.iter().all(|r| r.http_method == "POST"), "no GET stream, no DELETE without a session");
    assert!(requests.iter().filter(|r| r.rpc_id.is_some()).all(|r| r.status == Some(200)));
    client.close().await;

    // On the wire: a plain JSON body for a request.
    let response = reqwest::Client::new()
        .post(upstream.url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("mcp-session-id").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], PROTOCOL_VERSION);
}

fn initialize_body() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }
    })
    .to_string()
}

/// What a gateway's upstream client sees from the default (stateful) upstream.
#[tokio::test]
async fn stateful_upstream_answers_with_sse_and_a_session_id() {
    let upstream = McpUpstream::start("raw");
    let http = reqwest::Client::new();
    let response = http
        .post(upstream.url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let text = response.text().await.unwrap();
    let data: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter(|data| !data.trim().is_empty())
        .map(|data| serde_json::from_str(data.trim()).unwrap())
        .collect();
    assert_eq!(data.len(), 1, "one JSON-RPC message after the priming event: {text:?}");
    assert_eq!(data[0]["result"]["protocolVersion"], PROTOCOL_VERSION);
    assert_eq!(data[0]["result"]["serverInfo"]["name"], "raw");

    let post = |body: Value, accept: &'static str| {
        http.post(upstream.url())
            .header("accept", accept)
            .header("content-type", "application/json")
            .header("mcp-session-id", session.as_str())
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .body(body.to_string())
            .send()
    };
    let both = "application/json, text/event-stream";
    let initialized = post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), both).await.unwrap();
    assert_eq!(initialized.status(), 202);
    let only_json = post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}), "application/json").await.unwrap();
    assert_eq!(only_json.status(), 406, "the SDK server insists on accepting both media types");
    let unknown = http
        .post(upstream.url())
        .header("accept", both)
        .header("content-type", "application/json")
        .header("mcp-session-id", "no-such-session")
        .body(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404, "an unknown session is 404");
    let sessionless = http
        .post(upstream.url())
        .header("accept", both)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sessionless.status(), 400, "a request other than initialize needs a session id");
    let deleted = http.delete(upstream.url()).header("mcp-session-id", session.as_str()).send().await.unwrap();
    assert!(deleted.status().is_success(), "DELETE answered {}", deleted.status());
}

#[tokio::test]
async fn bearer_protected_upstream_needs_the_token() {
    let upstream = McpUpstream::start_with(UpstreamOptions::named("guarded").required_bearer("k"));
    let options = ClientOptions { timeout: Duration::from_secs(5), ..Default::default() };
    let started = Instant::now();
    let refused = McpTestClient::connect_with(&upstream.url(), options.clone()).await;
    let error = refused.expect_err("no token, no session");
    assert!(started.elapsed() < Duration::from_secs(5), "a 401 fails at once, not by timeout: {error}");
    assert!(error.to_lowercase().contains("auth"), "{error}");
    assert_eq!(upstream.requests().len(), 1, "no retry after a 401: {:?}", upstream.requests());
    assert_eq!(upstream.requests()[0].status, Some(401));

    let headers = vec![("authorization".to_string(), "Bearer k".to_string())];
    let client = McpTestClient::connect_with(&upstream.url(), ClientOptions { headers, ..options }).await.unwrap();
    assert_eq!(text_of(&client.call_tool("echo", json!({"text": "in"})).await.unwrap()), "in");
    client.close().await;
}

#[tokio::test]
async fn a_stopped_upstream_refuses_connections_within_a_bound() {
    let upstream = McpUpstream::start("doomed");
    let url = upstream.url();
    let port = upstream.port();
    let client = connect(&upstream).await;
    client.call_tool("echo", json!({"text": "alive"})).await.unwrap();

    let stopping = Instant::now();
    upstream.stop();
    assert!(stopping.elapsed() < Duration::from_secs(5), "stop took {:?}", stopping.elapsed());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the port is closed");

    let bound = Duration::from_secs(5);
    let started = Instant::now();
    let result = McpTestClient::connect_with(&url, ClientOptions { timeout: bound, ..Default::default() }).await;
    assert!(result.is_err(), "connecting to a stopped upstream fails");
    assert!(started.elapsed() < bound, "fails fast, not by the timeout: {:?}", started.elapsed());
    let orphaned = client.call_tool("echo", json!({"text": "dead"})).await;
    assert!(orphaned.is_err(), "a call on a session whose upstream is gone fails: {orphaned:?}");
    client.close().await;
}

/// The gateway's own tests run on actix's runtime: the client must work there too.
#[actix_rt::test]
async fn client_works_under_actix_rt() {
    let upstream = McpUpstream::start("actix");
    let client = connect(&upstream).await;
    assert_eq!(text_of(&client.call_tool("add", json!({"a": 40, "b": 2})).await.unwrap()), "42");
    client.close().await;
}
