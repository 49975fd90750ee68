//! The gateway through the real binary on loopback: the `default` endpoint out of the box, MCP
//! JSON-RPC on the wire (sessions, errors exactly as the spec says), endpoint API keys, the admin
//! API's token, and every bad-input case answering a 4xx or a JSON-RPC error without writing what
//! it should not.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::common::Service;
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::service::client;

const MCP_ACCEPT: &str = "application/json, text/event-stream";

/// A raw MCP session over HTTP: initialize, then JSON-RPC requests with the session header.
struct RawMcp {
    http: Client,
    url: String,
    session: Option<String>,
    auth: Option<String>,
    next_id: i64,
}

impl RawMcp {
    fn new(service: &Service, endpoint: &str) -> RawMcp {
        RawMcp {
            http: client(),
            url: service.url(&format!("/metamcp/{endpoint}/mcp")),
            session: None,
            auth: None,
            next_id: 1,
        }
    }

    fn with_key(mut self, key: &str) -> RawMcp {
        self.auth = Some(format!("Bearer {key}"));
        self
    }

    fn post_raw(&self, body: impl Into<reqwest::blocking::Body>) -> Response {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", MCP_ACCEPT)
            .body(body);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(auth) = &self.auth {
            request = request.header("authorization", auth);
        }
        request.send().expect("POST to the MCP endpoint")
    }

    fn initialize(&mut self) -> Value {
        let response = self.post_raw(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "1"}}})
            .to_string(),
        );
        assert_eq!(response.status(), StatusCode::OK);
        self.session =
            Some(response.headers().get("mcp-session-id").expect("a session id").to_str().expect("ascii").to_owned());
        let body: Value = response.json().expect("JSON");
        let initialized = self.post_raw(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        assert_eq!(initialized.status(), StatusCode::ACCEPTED);
        body
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let response = self
            .post_raw(json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}).to_string());
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let body: Value = response.json().expect("JSON-RPC response");
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["id"], self.next_id);
        body
    }

    fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        self.call("tools/call", json!({"name": name, "arguments": arguments}))
    }
}

fn text_of(result: &Value) -> String {
    result["content"].as_array().map_or_else(String::new, |items| {
        items.iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n")
    })
}

fn error_of(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = response.json().expect("a JSON error body");
    assert!(body["error"]["code"].is_string() || body["error"]["code"].is_i64(), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

fn api<'a>(
    service: &'a Service,
    token: Option<&str>,
) -> impl Fn(reqwest::Method, &str, Option<Value>) -> Response + 'a {
    let http = client();
    let token = token.map(str::to_owned);
    move |method, path, body| {
        let mut request = http.request(method.clone(), service.url(path));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        } else if method != reqwest::Method::GET {
            // Without an admin token, a request that changes something must say JSON even
            // without a body: no cross-site form can.
            request = request.header("content-type", "application/json");
        }
        request.send().expect("admin API request")
    }
}

fn executions(service: &Service, query: &str) -> Value {
    let response = client().get(service.url(&format!("/api/executions{query}"))).send().expect("executions");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().expect("JSON")
}

#[test]
fn the_default_endpoint_works_out_of_the_box() {
    let service = Service::start(&[], &[]);
    let mut mcp = RawMcp::new(&service, "default");
    let init = mcp.initialize();
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["serverInfo"]["name"], "metamcp-telemetry");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");

    let listed = mcp.call("tools/list", json!({}));
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["calculator", "search_tools"]);
    assert_eq!(listed["result"]["tools"][0]["inputSchema"]["required"], json!(["expression"]));

    let ping = mcp.call("ping", json!({}));
    assert_eq!(ping["result"], json!({}));

    let result = mcp.call_tool("calculator", json!({"expression": "2 + 3 * (4 - 1)^2"}));
    assert_eq!(text_of(&result["result"]), "29", "{result}");
    assert_eq!(result["result"]["isError"], false);

    let division = mcp.call_tool("calculator", json!({"expression": "1/0"}));
    assert_eq!(division["result"]["isError"], true, "division by zero is a tool error: {division}");
    assert!(text_of(&division["result"]).to_lowercase().contains("division by zero"), "{division}");

    let found = mcp.call_tool("search_tools", json!({"query": "evaluate an arithmetic expression", "limit": 1}));
    assert_eq!(found["result"]["structuredContent"]["results"][0]["name"], "calculator", "{found}");

    // Older clients get their version back; unknown ones the latest.
    let old = client()
        .post(service.url("/metamcp/default/mcp"))
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .body(r#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#)
        .send()
        .unwrap();
    assert_eq!(old.json::<Value>().unwrap()["result"]["protocolVersion"], "2025-03-26");

    // Every call left an audit row, without arguments or results.
    let rows = executions(&service, "?tool=calculator");
    assert_eq!(rows["total"], 2, "{rows}");
    let failed = &rows["items"][0];
    assert_eq!(failed["success"], false, "newest first: {rows}");
    assert!(failed["trace_id"].as_str().is_some_and(|t| t.len() == 32), "{failed}");
    assert!(!rows.to_string().contains("(4 - 1)"), "no arguments in the audit log: {rows}");

    let scrape = support::prom::scrape_blocking(&service.metrics_url());
    assert_eq!(
        support::prom::value(
            &scrape,
            "metamcp_tool_executions_total",
            &[("tool_name", "calculator"), ("success", "true")]
        ),
        Some(1.0),
        "{}",
        scrape.body
    );
    assert_eq!(support::prom::value(&scrape, "metamcp_vector_searches_total", &[]), Some(1.0));
    // The series exist at 0 from the start (declared); measured means counted.
    let selects = [("db_system", "sqlite"), ("db_operation", "SELECT"), ("success", "true")];
    assert!(
        support::prom::histogram_count(&scrape, "metamcp_db_query_duration_seconds", &selects).unwrap_or(0.0) > 0.0,
        "database queries are measured"
    );
    assert!(scrape.body.contains("metamcp_db_pool_max_connections"), "pool gauges are exposed");
    assert_eq!(support::prom::value(&scrape, "metamcp_audit_rows_total", &[("outcome", "written")]), Some(3.0));
    assert_eq!(support::prom::value(&scrape, "metamcp_audit_rows_total", &[("outcome", "dropped_failed")]), Some(0.0));

    let ready = client().get(service.url("/health/ready")).send().unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let health: Value = client().get(service.url("/health")).send().unwrap().json().unwrap();
    assert!(health["components"]["database"].is_object(), "readiness includes the database: {health}");
}

#[test]
fn json_rpc_errors_are_exactly_as_the_spec_says() {
    let service = Service::start(&[], &[]);
    let mut mcp = RawMcp::new(&service, "default");
    mcp.initialize();

    // Parse error: HTTP 400, code -32700, id null.
    let response = mcp.post_raw("{not json");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["id"], Value::Null);

    // Invalid requests: -32600.
    for invalid in [
        json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]),
        json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": 7}),
        json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}),
        json!("just a string"),
    ] {
        let response = mcp.post_raw(invalid.to_string());
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{invalid}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], -32600, "{invalid} -> {body}");
    }

    // Method not found: -32601 in an HTTP 200.
    let body = mcp.call("logging/setLevel", json!({"level": "debug"}));
    assert_eq!(body["error"]["code"], -32601, "{body}");
    let body = mcp.call("no/such/method", json!({}));
    assert_eq!(body["error"]["code"], -32601, "{body}");
    // A resource no server of the endpoint offers: -32002.
    let body = mcp.call("resources/read", json!({"uri": "x"}));
    assert_eq!(body["error"]["code"], -32002, "{body}");

    // Invalid params: unknown tool, arguments against the schema, missing name.
    let body = mcp.call_tool("nope__missing", json!({}));
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nope__missing"));
    let body = mcp.call_tool("calculator", json!({"expression": 42}));
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expression"), "{body}");
    let body = mcp.call_tool("calculator", json!({}));
    assert_eq!(body["error"]["code"], -32602, "{body}");
    let body = mcp.call("tools/call", json!({"arguments": {}}));
    assert_eq!(body["error"]["code"], -32602, "{body}");
    let body = mcp.call("tools/call", json!({"name": "calculator", "arguments": [1, 2]}));
    assert_eq!(body["error"]["code"], -32602, "{body}");

    // Notifications get 202 and no body.
    let response =
        mcp.post_raw(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {}}).to_string());
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // Sessions: missing → 400, unknown → 404, DELETE ends one.
    let no_session = RawMcp::new(&service, "default");
    let response = no_session.post_raw(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string());
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let mut stale = RawMcp::new(&service, "default");
    stale.session = Some("0123456789abcdef".to_owned());
    let response = stale.post_raw(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string());
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client()
        .delete(service.url("/metamcp/default/mcp"))
        .header("mcp-session-id", mcp.session.clone().unwrap())
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = mcp.post_raw(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string());
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "the session ended");

    // GET opens a session's stream: it needs the session; other methods are 405 with Allow.
    let response =
        client().get(service.url("/metamcp/default/mcp")).header("accept", "text/event-stream").send().unwrap();
    error_of(response, StatusCode::BAD_REQUEST);
    let response = client().put(service.url("/metamcp/default/mcp")).send().unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST, DELETE");
    error_of(response, StatusCode::METHOD_NOT_ALLOWED);

    // Unknown endpoint: 404 with a JSON error.
    let response =
        RawMcp::new(&service, "nowhere").post_raw(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string());
    error_of(response, StatusCode::NOT_FOUND);

    // Calls refused for their arguments are audited as failures; unknown tools and malformed
    // messages leave nothing.
    let rows = executions(&service, "");
    assert_eq!(rows["total"], 2, "{rows}");
    for row in rows["items"].as_array().unwrap() {
        assert_eq!(row["tool_name"], "calculator");
        assert_eq!(row["success"], false);
        assert!(row["error_message"].as_str().unwrap().contains("invalid arguments"), "{row}");
    }
    let scrape = support::prom::scrape_blocking(&service.metrics_url());
    assert_eq!(
        support::prom::value(
            &scrape,
            "metamcp_tool_executions_total",
            &[("tool_name", "calculator"), ("success", "false")]
        ),
        Some(2.0)
    );
    assert!(!scrape.body.contains("nope__missing"), "no label for a tool name a client made up");
}

#[test]
fn endpoint_api_keys_and_the_admin_token_guard_their_doors() {
    let token = "admin-secret-token";
    let service = Service::start(&[("METAMCP_ADMIN__TOKEN", token)], &[]);
    let anonymous = api(&service, None);
    let wrong = api(&service, Some("not-the-token"));
    let admin = api(&service, Some(token));

    let response = anonymous(reqwest::Method::GET, "/api/endpoints", None);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    error_of(response, StatusCode::UNAUTHORIZED);
    error_of(wrong(reqwest::Method::GET, "/api/endpoints", None), StatusCode::UNAUTHORIZED);
    assert_eq!(admin(reqwest::Method::GET, "/api/endpoints", None).status(), StatusCode::OK);

    let created = admin(
        reqwest::Method::POST,
        "/api/endpoints",
        Some(json!({"name": "private", "servers": [], "auth_required": true})),
    );
    assert_eq!(created.status(), StatusCode::CREATED);
    let issued = admin(reqwest::Method::POST, "/api/endpoints/private/keys", None);
    assert_eq!(issued.status(), StatusCode::CREATED);
    let issued: Value = issued.json().unwrap();
    let key = issued["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("mmcp_") && key.len() > 40, "{issued}");

    // The key is stored hashed: it appears nowhere in the endpoint's detail.
    let detail = admin(reqwest::Method::GET, "/api/endpoints/private", None).text().unwrap();
    assert!(!detail.contains(&key), "{detail}");
    assert!(detail.contains(issued["prefix"].as_str().unwrap()), "{detail}");

    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    .to_string();
    let response = RawMcp::new(&service, "private").post_raw(ping.clone());
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    error_of(response, StatusCode::UNAUTHORIZED);
    let response = RawMcp::new(&service, "private").with_key("mmcp_wrong").post_raw(ping.clone());
    error_of(response, StatusCode::UNAUTHORIZED);
    let mut authorized = RawMcp::new(&service, "private").with_key(&key);
    authorized.initialize();
    let tools = authorized.call("tools/list", json!({}));
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 2);

    // The open default endpoint needs no key.
    let mut open = RawMcp::new(&service, "default");
    open.initialize();
}

#[test]
fn without_a_token_the_admin_api_answers_loopback_only() {
    let Some(ip) = support::prereq::non_loopback_ip() else { return };
    // Without a token every route takes loopback Host names only: a client that names the
    // machine's address is refused before any route, like a DNS rebinding page would be.
    let service = Service::start(&[], &["--bind", "0.0.0.0:0"]);
    let port = service.api.port();
    let remote = client().get(format!("http://{ip}:{port}/health")).send().unwrap();
    assert_eq!(error_of(remote, StatusCode::FORBIDDEN)["error"]["code"], "host_not_allowed");
    drop(service);

    // With that address among the allowed hosts, the admin API still answers loopback peers only.
    let allowed = ip.to_string();
    let service = Service::start(&[("METAMCP_SERVER__ALLOWED_HOSTS", &allowed)], &["--bind", "0.0.0.0:0"]);
    let port = service.api.port();
    let local = client().get(format!("http://127.0.0.1:{port}/api/endpoints")).send().unwrap();
    assert_eq!(local.status(), StatusCode::OK);
    let remote = client().get(format!("http://{ip}:{port}/api/endpoints")).send().unwrap();
    let body = error_of(remote, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "admin_loopback_only");
    // The MCP endpoint itself stays reachable.
    let mcp = client()
        .post(format!("http://{ip}:{port}/metamcp/default/mcp"))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#)
        .send()
        .unwrap();
    assert_eq!(mcp.status(), StatusCode::OK);
}

/// A server that answers every connection with `reply` and closes.
fn garbage_server(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(reply);
        }
    });
    format!("http://{addr}/mcp")
}

fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/mcp")
}

#[test]
fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let service = Service::start(&[("METAMCP_GATEWAY__MAX_BODY_BYTES", "4096")], &[]);
    let admin = api(&service, None);
    let post_raw = |path: &str, content_type: &str, body: &'static str| {
        client().post(service.url(path)).header("content-type", content_type).body(body).send().unwrap()
    };

    // Malformed JSON, wrong types, unknown fields, wrong content type.
    error_of(post_raw("/api/servers", "application/json", "{\"name\": "), StatusCode::BAD_REQUEST);
    error_of(
        post_raw("/api/servers", "application/json", r#"{"name": 5, "url": "http://x/mcp"}"#),
        StatusCode::BAD_REQUEST,
    );
    error_of(
        post_raw("/api/servers", "application/json", r#"{"name": "a", "url": "http://x/mcp", "colour": 1}"#),
        StatusCode::BAD_REQUEST,
    );
    error_of(post_raw("/api/servers", "text/plain", "name=a"), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    error_of(
        admin(reqwest::Method::POST, "/api/servers", Some(json!({"name": "bad name!", "url": "http://x/mcp"}))),
        StatusCode::BAD_REQUEST,
    );
    error_of(
        admin(reqwest::Method::POST, "/api/servers", Some(json!({"name": "a__b", "url": "http://x/mcp"}))),
        StatusCode::BAD_REQUEST,
    );
    error_of(
        admin(reqwest::Method::POST, "/api/servers", Some(json!({"name": "a", "url": "ftp://x/mcp"}))),
        StatusCode::BAD_REQUEST,
    );
    error_of(admin(reqwest::Method::GET, "/api/servers?limit=0", None), StatusCode::BAD_REQUEST);
    error_of(admin(reqwest::Method::GET, "/api/servers?limit=abc", None), StatusCode::BAD_REQUEST);
    error_of(admin(reqwest::Method::GET, "/api/executions?success=maybe", None), StatusCode::BAD_REQUEST);

    // Oversized bodies: 413 on the admin API and on the MCP endpoint.
    let big = "x".repeat(8192);
    let response = client()
        .post(service.url("/api/tools/search"))
        .header("content-type", "application/json")
        .body(json!({"query": big}).to_string())
        .send()
        .unwrap();
    error_of(response, StatusCode::PAYLOAD_TOO_LARGE);
    let response = client()
        .post(service.url("/metamcp/default/mcp"))
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": big}}).to_string())
        .send()
        .unwrap();
    error_of(response, StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown endpoint, server, tool.
    error_of(admin(reqwest::Method::GET, "/api/endpoints/nope", None), StatusCode::NOT_FOUND);
    error_of(admin(reqwest::Method::GET, "/api/servers/nope", None), StatusCode::NOT_FOUND);
    error_of(admin(reqwest::Method::DELETE, "/api/servers/nope", None), StatusCode::NOT_FOUND);
    error_of(admin(reqwest::Method::GET, "/api/tools/nope__tool", None), StatusCode::NOT_FOUND);
    error_of(
        admin(reqwest::Method::POST, "/api/tools/nope__tool/execute", Some(json!({"arguments": {}}))),
        StatusCode::NOT_FOUND,
    );
    error_of(
        admin(reqwest::Method::POST, "/api/tools/calculator/execute", Some(json!({"arguments": {"expression": []}}))),
        StatusCode::UNPROCESSABLE_ENTITY,
    );

    // An endpoint naming an unknown server is refused and not half-written.
    let response = admin(reqwest::Method::POST, "/api/endpoints", Some(json!({"name": "half", "servers": ["ghost"]})));
    error_of(response, StatusCode::NOT_FOUND);
    error_of(admin(reqwest::Method::GET, "/api/endpoints/half", None), StatusCode::NOT_FOUND);
    let response = admin(reqwest::Method::POST, "/api/endpoints", Some(json!({"name": "default"})));
    error_of(response, StatusCode::CONFLICT);

    // Upstream down: registered with the error shown; a refresh is a 502.
    let response =
        admin(reqwest::Method::POST, "/api/servers", Some(json!({"name": "down", "url": closed_port_url()})));
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().unwrap();
    assert!(body["discovery_error"].as_str().is_some_and(|e| e.contains("down")), "{body}");
    assert_eq!(body["tools"], json!([]));
    error_of(admin(reqwest::Method::POST, "/api/servers/down/refresh", None), StatusCode::BAD_GATEWAY);

    // Upstream answering garbage: a 502 naming a protocol error.
    let url = garbage_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot json!",
    );
    let response = admin(reqwest::Method::POST, "/api/servers", Some(json!({"name": "garbage", "url": url})));
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = error_of(admin(reqwest::Method::POST, "/api/servers/garbage/refresh", None), StatusCode::BAD_GATEWAY);
    assert!(body["error"]["message"].as_str().unwrap().contains("protocol"), "{body}");

    // Search input is checked.
    error_of(admin(reqwest::Method::POST, "/api/tools/search", Some(json!({"query": ""}))), StatusCode::BAD_REQUEST);
    error_of(
        admin(reqwest::Method::POST, "/api/tools/search", Some(json!({"query": "x", "limit": 0}))),
        StatusCode::BAD_REQUEST,
    );
    error_of(
        admin(reqwest::Method::POST, "/api/tools/search", Some(json!({"query": "x", "threshold": 2.0}))),
        StatusCode::BAD_REQUEST,
    );

    // Only the call with bad arguments reached a tool, and it is audited as a failure.
    let rows = executions(&service, "");
    assert_eq!(rows["total"], 1, "{rows}");
    assert_eq!(rows["items"][0]["success"], false);
    let servers: Value = admin(reqwest::Method::GET, "/api/servers", None).json().unwrap();
    assert_eq!(servers["total"], 2, "only the two registered servers: {servers}");
    // And no 500 was counted: the only 5xx are the 502s of the broken upstreams.
    let scrape = support::prom::scrape_blocking(&service.metrics_url());
    assert!(
        !scrape.body.lines().any(|l| l.starts_with("metamcp_requests_total") && l.contains("status_code=\"500")),
        "{}",
        scrape.body
    );
}

#[test]
fn the_admin_api_manages_servers_endpoints_tools_and_executions() {
    let service = Service::start(&[], &[]);
    let admin = api(&service, None);
    let listed: Value = admin(reqwest::Method::GET, "/api/endpoints", None).json().unwrap();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["name"], "default");

    let tools: Value = admin(reqwest::Method::GET, "/api/tools/calculator", None).json().unwrap();
    assert_eq!(tools["server"], "builtin");

    let executed = admin(
        reqwest::Method::POST,
        "/api/tools/calculator/execute",
        Some(json!({"arguments": {"expression": "max(2, sqrt(16), -1)"}})),
    );
    assert_eq!(executed.status(), StatusCode::OK);
    let executed: Value = executed.json().unwrap();
    assert_eq!(text_of(&executed), "4", "{executed}");

    let searched: Value =
        admin(reqwest::Method::POST, "/api/tools/search", Some(json!({"query": "find a tool", "limit": 5})))
            .json()
            .unwrap();
    assert!(searched["results"].as_array().is_some_and(|r| !r.is_empty()), "{searched}");

    for _ in 0..3 {
        admin(reqwest::Method::POST, "/api/tools/calculator/execute", Some(json!({"arguments": {"expression": "1+"}})));
    }
    let failed = executions(&service, "?tool=calculator&success=false&limit=2");
    assert_eq!(failed["total"], 3);
    assert_eq!(failed["items"].as_array().unwrap().len(), 2, "paginated");
    assert_eq!(executions(&service, "?tool=calculator&success=true")["total"], 1);
    assert_eq!(executions(&service, "?endpoint=default")["total"], 0, "REST calls belong to no endpoint");

    assert_eq!(
        admin(reqwest::Method::POST, "/api/endpoints", Some(json!({"name": "team"}))).status(),
        StatusCode::CREATED
    );
    assert_eq!(admin(reqwest::Method::DELETE, "/api/endpoints/team", None).status(), StatusCode::NO_CONTENT);
    error_of(admin(reqwest::Method::GET, "/api/endpoints/team", None), StatusCode::NOT_FOUND);
}
