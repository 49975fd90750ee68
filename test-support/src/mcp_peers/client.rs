//! [`McpTestClient`]: an MCP client built with the official Rust SDK, speaking Streamable HTTP
//! with the `initialize` handshake of protocol revision 2025-11-25.
//!
//! The SDK client runs on a runtime of its own (one thread per client). Its methods are `async`
//! and only await a join handle of that runtime, so they can be awaited from any executor:
//! `#[tokio::test]` (current-thread or multi-thread), `#[actix_rt::test]`, or a runtime the test
//! blocks on. Every operation is bounded by [`ClientOptions::timeout`] and fails with an `Err`
//! instead of hanging.
//!
//! The SDK's newest revision (`ProtocolVersion::LATEST`, 2026-07-28) has no `initialize`; its
//! `ClientLifecycleMode::Initialize` (what `serve` uses) sends `ClientConfig::protocol_version`,
//! which defaults to `LATEST`. The client therefore sets that field to
//! `ProtocolVersion::V_2025_11_25` (`LATEST_WITH_INITIALIZE`), so the handshake is
//! `initialize` + `notifications/initialized` with `Mcp-Session-Id` sessions.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, GetPromptRequestParams, GetPromptResult,
    Implementation, ListToolsResult, MetaObject, PaginatedRequestParams, Prompt, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResult, RequestMetaObject, Resource, ResourceTemplate, Tool,
};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Bound on each client operation unless [`ClientOptions::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long closing (the SDK's `DELETE` of the session included) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to connect an [`McpTestClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Extra headers on every HTTP request. `authorization: Bearer <token>` goes through the SDK's
    /// own bearer setting; the SDK refuses `accept`, `mcp-session-id` and `last-event-id`.
    pub headers: Vec<(String, String)>,
    /// The protocol version offered in `initialize` (default `2025-11-25`).
    pub protocol_version: String,
    /// `clientInfo.name` (default `mcp-test-client`).
    pub client_name: String,
    /// Bound on connecting and on each request.
    pub timeout: Duration,
    /// When a request is answered 404 for its session, run `initialize` again and retry it once
    /// (the SDK's default, `true`). `false` surfaces the expiry as an `Err`.
    pub reinit_on_expired_session: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            headers: Vec::new(),
            protocol_version: ProtocolVersion::V_2025_11_25.to_string(),
            client_name: "mcp-test-client".to_string(),
            timeout: DEFAULT_TIMEOUT,
            reinit_on_expired_session: true,
        }
    }
}

/// A connected MCP client (official Rust SDK) on its own runtime. Closes its session on drop
/// (asynchronously); call [`close`](Self::close) to wait for the `DELETE`.
pub struct McpTestClient {
    service: Option<RunningService<RoleClient, ClientConfig>>,
    peer: Peer<RoleClient>,
    protocol_version: String,
    server_name: String,
    timeout: Duration,
    runtime: ClientRuntime,
}

impl std::fmt::Debug for McpTestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTestClient")
            .field("protocol_version", &self.protocol_version)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl McpTestClient {
    /// Connect to the Streamable HTTP endpoint `url` and complete the 2025-11-25 handshake,
    /// sending `headers` on every request.
    pub async fn connect(url: &str, headers: Vec<(String, String)>) -> Result<Self, String> {
        Self::connect_with(url, ClientOptions { headers, ..Default::default() }).await
    }

    /// Connect with every option spelled out.
    pub async fn connect_with(url: &str, options: ClientOptions) -> Result<Self, String> {
        // The SDK's reqwest is built without a TLS provider in this workspace: name one for the
        // process (a no-op when one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config =
            transport_config(url, &options.headers)?.reinit_on_expired_session(options.reinit_on_expired_session);
        let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new(options.client_name, "1.0.0"))
            .with_protocol_version(parse_version(&options.protocol_version));
        let runtime = ClientRuntime::start()?;
        let url = url.to_string();
        let service = runtime
            .run(options.timeout, async move {
                let transport = StreamableHttpClientTransport::from_config(config);
                info.serve(transport).await.map_err(|e| format!("connecting to {url}: {e}"))
            })
            .await??;
        let peer = service.peer().clone();
        let peer_info = peer.peer_info().ok_or("connected without the server's initialize result")?;
        Ok(McpTestClient {
            protocol_version: peer_info.protocol_version.to_string(),
            server_name: peer_info.server_info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
            peer,
            service: Some(service),
            timeout: options.timeout,
            runtime,
        })
    }

    /// Every tool, following `nextCursor` through all pages.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, String> {
        let peer = self.peer.clone();
        self.run(async move { peer.list_all_tools().await.map_err(|e| format!("tools/list: {e}")) }).await
    }

    /// One `tools/list` page (`cursor` from the previous page's `next_cursor`).
    pub async fn list_tools_page(&self, cursor: Option<String>) -> Result<ListToolsResult, String> {
        let peer = self.peer.clone();
        let params = PaginatedRequestParams::default().with_cursor(cursor);
        self.run(async move { peer.list_tools(Some(params)).await.map_err(|e| format!("tools/list: {e}")) }).await
    }

    /// `tools/call` with `arguments` (a JSON object, or `null` for none). A tool failure is an `Ok`
    /// result with `is_error == Some(true)`; a JSON-RPC error or transport failure is an `Err`.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<CallToolResult, String> {
        self.call(tool_request(name, arguments)?).await
    }

    /// [`call_tool`](Self::call_tool) with `params._meta` set to `meta` (e.g. a `traceparent` entry).
    pub async fn call_tool_with_meta(
        &self,
        name: &str,
        arguments: Value,
        meta: serde_json::Map<String, Value>,
    ) -> Result<CallToolResult, String> {
        let mut params = tool_request(name, arguments)?;
        params.meta = Some(RequestMetaObject(MetaObject(meta)));
        self.call(params).await
    }

    async fn call(&self, params: CallToolRequestParams) -> Result<CallToolResult, String> {
        let peer = self.peer.clone();
        let name = params.name.to_string();
        self.run(async move { peer.call_tool(params).await.map_err(|e| format!("tools/call {name}: {e}")) }).await
    }

    /// Every prompt, following `nextCursor` through all pages.
    pub async fn list_prompts(&self) -> Result<Vec<Prompt>, String> {
        let peer = self.peer.clone();
        self.run(async move { peer.list_all_prompts().await.map_err(|e| format!("prompts/list: {e}")) }).await
    }

    /// `prompts/get` with `arguments` (a JSON object, or `null` for none).
    pub async fn get_prompt(&self, name: &str, arguments: Value) -> Result<GetPromptResult, String> {
        let mut params = GetPromptRequestParams::new(name.to_string());
        match arguments {
            Value::Null => {}
            Value::Object(map) => params = params.with_arguments(map),
            other => return Err(format!("prompts/get {name}: arguments must be a JSON object, not {other}")),
        }
        let peer = self.peer.clone();
        let name = name.to_string();
        self.run(async move { peer.get_prompt(params).await.map_err(|e| format!("prompts/get {name}: {e}")) }).await
    }

    /// Every resource, following `nextCursor` through all pages.
    pub async fn list_resources(&self) -> Result<Vec<Resource>, String> {
        let peer = self.peer.clone();
        self.run(async move { peer.list_all_resources().await.map_err(|e| format!("resources/list: {e}")) }).await
    }

    /// Every resource template, following `nextCursor` through all pages.
    pub async fn list_resource_templates(&self) -> Result<Vec<ResourceTemplate>, String> {
        let peer = self.peer.clone();
        self.run(async move {
            peer.list_all_resource_templates().await.map_err(|e| format!("resources/templates/list: {e}"))
        })
        .await
    }

    /// `resources/read` of `uri`.
    pub async fn read_resource(&self, uri: &str) -> Result<ReadResourceResult, String> {
        let peer = self.peer.clone();
        let params = ReadResourceRequestParams::new(uri.to_string());
        let uri = uri.to_string();
        self.run(async move { peer.read_resource(params).await.map_err(|e| format!("resources/read {uri}: {e}")) })
            .await
    }

    /// `completion/complete` of a prompt's argument: the values offered.
    pub async fn complete_prompt(&self, prompt: &str, argument: &str, value: &str) -> Result<Vec<String>, String> {
        let peer = self.peer.clone();
        let (prompt, argument, value) = (prompt.to_string(), argument.to_string(), value.to_string());
        self.run(async move {
            peer.complete_prompt_simple(prompt.clone(), argument, value)
                .await
                .map_err(|e| format!("completion/complete {prompt}: {e}"))
        })
        .await
    }

    /// The protocol version the server answered `initialize` with.
    pub fn protocol_version(&self) -> String {
        self.protocol_version.clone()
    }

    /// `serverInfo.name` from the `initialize` result.
    pub fn server_name(&self) -> String {
        self.server_name.clone()
    }

    /// Close the session and wait (bounded) for the SDK to finish, its `DELETE` included.
    pub async fn close(mut self) {
        if let Some(mut service) = self.service.take() {
            let _ =
                self.runtime.run(CLOSE_TIMEOUT, async move { service.close_with_timeout(CLOSE_TIMEOUT).await }).await;
        }
    }

    /// Run `future` on the client's runtime, bounded by the client's timeout.
    async fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        self.runtime.run(self.timeout, future).await?
    }
}

impl Drop for McpTestClient {
    fn drop(&mut self) {
        if let Some(mut service) = self.service.take() {
            // Close in the background; the runtime thread stops once that is done.
            let stop = self.runtime.stop.take();
            self.runtime.handle.spawn(async move {
                let _ = service.close_with_timeout(CLOSE_TIMEOUT).await;
                if let Some(stop) = stop {
                    let _ = stop.send(());
                }
            });
        }
    }
}

/// A current-thread runtime driven by a thread of its own until `stop` fires or is dropped.
struct ClientRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl ClientRuntime {
    fn start() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("building the client runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("mcp-test-client".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stop_rx.await;
                });
                runtime.shutdown_timeout(Duration::from_millis(500));
            })
            .map_err(|e| format!("spawning the client thread: {e}"))?;
        Ok(ClientRuntime { handle, stop: Some(stop_tx) })
    }

    /// Spawn `future` here and await it from any executor; `Err` on timeout or panic.
    async fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let task = self.handle.spawn(async move { tokio::time::timeout(timeout, future).await });
        match task.await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(_elapsed)) => Err(format!("timed out after {timeout:?}")),
            Err(e) => Err(format!("client task failed: {e}")),
        }
    }
}

/// The SDK transport configuration for `url` with `headers` on every request.
fn transport_config(url: &str, headers: &[(String, String)]) -> Result<StreamableHttpClientTransportConfig, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    let mut custom = HashMap::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") {
            if let Some(token) = value.strip_prefix("Bearer ") {
                config = config.auth_header(token.to_string());
                continue;
            }
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header name {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {name} value {value:?}: {e}"))?;
        custom.insert(name, value);
    }
    Ok(config.custom_headers(custom))
}

fn parse_version(version: &str) -> ProtocolVersion {
    serde_json::from_value(Value::String(version.to_string())).unwrap_or(ProtocolVersion::V_2025_11_25)
}

fn tool_request(name: &str, arguments: Value) -> Result<CallToolRequestParams, String> {
    let params = CallToolRequestParams::new(name.to_string());
    match arguments {
        Value::Null => Ok(params),
        Value::Object(map) => Ok(params.with_arguments(map)),
        other => Err(format!("tools/call {name}: arguments must be a JSON object, not {other}")),
    }
}
