//! [`McpUpstream`]: an upstream MCP server built with the official Rust SDK, on a loopback port.
//!
//! It serves the SDK's `StreamableHttpService` at `/mcp` on hyper 1, on its own thread and tokio
//! runtime, so it keeps answering whatever the test thread does. A thin wrapper in front of the
//! SDK buffers each HTTP request, records what a gateway test wants to check (headers, JSON-RPC
//! method, `params._meta.traceparent`, the status answered) and hands the rebuilt request on.

use std::convert::Infallible;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::tools::UpstreamServer;

/// The path the SDK service is mounted at.
pub const MCP_PATH: &str = "/mcp";

/// How long a stop lets open connections (SSE streams included) finish after the SDK's sessions
/// were cancelled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

type Body = BoxBody<Bytes, Infallible>;

/// How to start an [`McpUpstream`].
#[derive(Clone, Debug, Default)]
pub struct UpstreamOptions {
    /// `serverInfo.name` in the `initialize` result.
    pub name: String,
    /// Page `tools/list` by this many tools (the cursor is the next offset); `None` lists all at once.
    pub page_size: Option<usize>,
    /// Add this many generated tools `tool_0`, `tool_1`, … (no arguments, each answers its name).
    pub extra_tools: usize,
    /// Serve statelessly with `application/json` responses instead of the default stateful sessions
    /// with `text/event-stream` responses. The SDK only answers JSON without sessions: no
    /// `Mcp-Session-Id` is issued, `GET` and `DELETE` answer 405, notifications 202.
    pub json_response: bool,
    /// Answer 401 with `WWW-Authenticate: Bearer` unless `Authorization: Bearer <token>` is sent.
    pub required_bearer: Option<String>,
}

impl UpstreamOptions {
    /// Defaults for an upstream called `name`: stateful, SSE, all tools on one page, no auth.
    pub fn named(name: &str) -> Self {
        UpstreamOptions { name: name.to_string(), ..Default::default() }
    }

    /// Set [`page_size`](Self::page_size).
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = Some(page_size);
        self
    }

    /// Set [`extra_tools`](Self::extra_tools).
    pub fn extra_tools(mut self, extra_tools: usize) -> Self {
        self.extra_tools = extra_tools;
        self
    }

    /// Set [`json_response`](Self::json_response).
    pub fn json_response(mut self, json_response: bool) -> Self {
        self.json_response = json_response;
        self
    }

    /// Set [`required_bearer`](Self::required_bearer).
    pub fn required_bearer(mut self, token: &str) -> Self {
        self.required_bearer = Some(token.to_string());
        self
    }
}

/// One HTTP request the upstream received, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedRequest {
    /// `POST`, `GET` or `DELETE`.
    pub http_method: String,
    /// The request path (`/mcp` for the SDK service).
    pub path: String,
    /// The JSON-RPC `method` of the body, when it parses as a request or notification.
    pub rpc_method: Option<String>,
    /// The JSON-RPC `id` of the body (`None` for notifications and bodiless requests).
    pub rpc_id: Option<Value>,
    /// The `traceparent` header.
    pub traceparent: Option<String>,
    /// The `Mcp-Session-Id` header.
    pub session_id: Option<String>,
    /// The `MCP-Protocol-Version` header.
    pub protocol_version: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// `params._meta.traceparent` of the JSON-RPC body.
    pub meta_traceparent: Option<String>,
    /// Every header, names lower-case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as JSON, when it parses.
    pub body: Option<Value>,
    /// The HTTP status of the upstream's answer, once its head was produced.
    pub status: Option<u16>,
}

impl ReceivedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// True for a `POST` whose JSON-RPC method is `method`.
    pub fn is_rpc(&self, method: &str) -> bool {
        self.http_method == "POST" && self.rpc_method.as_deref() == Some(method)
    }
}

/// Recordings shared by the HTTP wrapper, every session's server and the test thread.
#[derive(Default)]
pub(super) struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    requests: Vec<ReceivedRequest>,
    tool_calls: Vec<(String, Value)>,
}

impl Shared {
    pub(super) fn record_tool_call(&self, name: String, arguments: Value) {
        self.state.lock().tool_calls.push((name, arguments));
    }

    /// Record a request; returns its index for [`set_status`](Self::set_status).
    fn record_request(&self, parts: &http::request::Parts, body: &Bytes) -> usize {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| json.as_ref().and_then(|j| j.get(name));
        let request = ReceivedRequest {
            http_method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            rpc_method: field("method").and_then(Value::as_str).map(str::to_string),
            rpc_id: field("id").cloned(),
            traceparent: header("traceparent"),
            session_id: header("mcp-session-id"),
            protocol_version: header("mcp-protocol-version"),
            authorization: header("authorization"),
            meta_traceparent: field("params")
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get("traceparent"))
                .and_then(Value::as_str)
                .map(str::to_string),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("<binary>").to_string()))
                .collect(),
            body: json.clone(),
            status: None,
        };
        let mut state = self.state.lock();
        state.requests.push(request);
        state.requests.len() - 1
    }

    fn set_status(&self, index: usize, status: StatusCode) {
        if let Some(request) = self.state.lock().requests.get_mut(index) {
            request.status = Some(status.as_u16());
        }
    }
}

/// An MCP server built with the official Rust SDK, serving MCP Streamable HTTP on
/// `http://127.0.0.1:PORT/mcp`. Stops on drop.
///
/// Tools (schemas generated by the SDK from `schemars` types): `echo {text}` → `text`;
/// `add {a, b}` → the sum (`"5"`); `slow {ms}` → sleeps, then `"done"`; `fail {text?}` → an
/// `isError` result `"upstream failure"` (`"upstream failure: {text}"` with a text);
/// `weather {city}` → `"sunny in {city}"`; plus
/// [`UpstreamOptions::extra_tools`] generated ones.
pub struct McpUpstream {
    name: String,
    port: u16,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for McpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpUpstream").field("name", &self.name).field("port", &self.port).finish()
    }
}

impl McpUpstream {
    /// Start a stateful, SSE-answering upstream called `name` with the five built-in tools.
    pub fn start(name: &str) -> McpUpstream {
        Self::start_with(UpstreamOptions::named(name))
    }

    /// Start an upstream configured by `options`. Panics if the loopback port cannot be bound.
    pub fn start_with(options: UpstreamOptions) -> McpUpstream {
        let listener = bind().unwrap_or_else(|e| panic!("McpUpstream {}: cannot bind 127.0.0.1:0: {e}", options.name));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("McpUpstream: local_addr: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mcp-upstream-rt")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("McpUpstream: cannot build its runtime: {e}"));
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = {
            let shared = shared.clone();
            let options = options.clone();
            std::thread::Builder::new()
                .name(format!("mcp-upstream-{port}"))
                .spawn(move || {
                    runtime.block_on(serve(listener, options, shared, stop_rx));
                    runtime.shutdown_timeout(Duration::from_millis(500));
                })
                .unwrap_or_else(|e| panic!("McpUpstream: cannot spawn its thread: {e}"))
        };
        McpUpstream { name: options.name, port, shared, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{MCP_PATH}", self.port)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The name given at start (`serverInfo.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every HTTP request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.state.lock().requests.clone()
    }

    /// The received `POST`s whose JSON-RPC method is `method`.
    pub fn requests_for(&self, method: &str) -> Vec<ReceivedRequest> {
        self.shared.state.lock().requests.iter().filter(|r| r.is_rpc(method)).cloned().collect()
    }

    /// `(tool name, arguments)` of every `tools/call` that reached a tool, in order (`Null` when the
    /// call carried no arguments).
    pub fn tool_calls(&self) -> Vec<(String, Value)> {
        self.shared.state.lock().tool_calls.clone()
    }

    /// Stop serving: the SDK's sessions and SSE streams are cancelled, the listener is closed (new
    /// connections are refused), open connections get a short grace, then the runtime is shut down.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("McpUpstream {}: server thread panicked", self.name);
            }
        }
    }
}

impl Drop for McpUpstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind() -> io::Result<StdTcpListener> {
    let listener = StdTcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Accept connections until told to stop, then cancel the SDK's sessions and drain.
async fn serve(
    listener: StdTcpListener,
    options: UpstreamOptions,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("McpUpstream {}: cannot register listener: {e}", options.name);
            return;
        }
    };
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(!options.json_response)
        .with_json_response(options.json_response);
    let sessions_cancelled = config.cancellation_token.clone();
    let server = UpstreamServer::new(&options.name, options.page_size, options.extra_tools, shared.clone());
    let service: StreamableHttpService<UpstreamServer, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config);
    let required_bearer: Option<Arc<str>> = options.required_bearer.as_deref().map(|t| format!("Bearer {t}").into());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = service.clone();
                    let shared = shared.clone();
                    let required_bearer = required_bearer.clone();
                    let handler = service_fn(move |req| {
                        handle(req, service.clone(), shared.clone(), required_bearer.clone())
                    });
                    let conn = graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), handler));
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                Err(e) => {
                    eprintln!("McpUpstream {}: accept failed: {e}", options.name);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = &mut stop => break,
        }
    }
    drop(listener);
    sessions_cancelled.cancel();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// Buffer and record the request, apply the optional bearer check, then let the SDK answer it.
async fn handle(
    req: Request<Incoming>,
    service: StreamableHttpService<UpstreamServer, LocalSessionManager>,
    shared: Arc<Shared>,
    required_bearer: Option<Arc<str>>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, format!("McpUpstream: reading body: {e}"))),
    };
    let index = shared.record_request(&parts, &body);
    let authorization = parts.headers.get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let authorized = required_bearer.as_deref().is_none_or(|expected| authorization == Some(expected));
    let response = if parts.uri.path() != MCP_PATH {
        plain(StatusCode::NOT_FOUND, "McpUpstream: only /mcp is served".to_string())
    } else if !authorized {
        let mut response = plain(StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#.to_string());
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="mcp-upstream""#));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    } else {
        service.handle(Request::from_parts(parts, Full::new(body))).await
    };
    shared.set_status(index, response.status());
    Ok(response)
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
    *response.status_mut() = status;
    response
}
