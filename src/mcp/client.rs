//! The client of upstream MCP servers over Streamable HTTP (revision 2025-11-25 asked for, the
//! older revisions of [`SUPPORTED_VERSIONS`](super::protocol::SUPPORTED_VERSIONS) accepted).
//!
//! One [`UpstreamClient`] serves every upstream: it holds one HTTP connection pool and one MCP
//! session per server name. A session starts on first use (`initialize`, then
//! `notifications/initialized`); later requests carry its `Mcp-Session-Id` and
//! `MCP-Protocol-Version`. A request answered with HTTP 404 while it carried a session id means
//! the upstream forgot the session: the client initializes again and retries once.
//!
//! Answers come as one JSON body or as a server-sent event stream, where notifications and the
//! server's own requests are skipped until the response to our request arrives (the stream is
//! not resumed if it breaks). Every public call finishes within its target's timeout, no answer
//! may exceed [`MAX_RESPONSE_BYTES`], and the event stream is read in time linear in its bytes.
//!
//! What an upstream sends never reaches an error message: an error status is reported as its
//! code, a JSON-RPC error as its code, an answer that is not MCP as what is wrong with it — never
//! the body, which a URL pointing at some other service would otherwise read back to whoever
//! registered it. Connections go only to addresses the [`OutboundPolicy`] admits, and redirects
//! are not followed.
//!
//! Each JSON-RPC message sent is a CLIENT span (`initialize`, `notifications/initialized`,
//! `tools/list`, `tools/call {tool}`) with the MCP, JSON-RPC and HTTP semantic-convention
//! attributes, a child of the caller's current span. Its context travels to the upstream twice:
//! as W3C `traceparent`/`tracestate` headers and in the message's `params._meta` (`baggage` too
//! only with `telemetry.propagate_baggage`). Tool arguments and results never enter a span, and
//! the session id enters it only as a fingerprint.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::{Injector, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::jsonrpc::{self, RequestId};
use super::outbound::{OutboundPolicy, PolicyResolver, Refusal};
use super::protocol::{
    is_supported, session_fingerprint, CallToolResult, InitializeResult, ListToolsResult, Tool, LATEST_VERSION,
    MCP_PROTOCOL_VERSION, MCP_SESSION_ID, METHOD_INITIALIZE, METHOD_TOOLS_CALL, METHOD_TOOLS_LIST,
    NOTIFICATION_INITIALIZED,
};
use metamcp_telemetry::TelemetryManager;

/// Largest answer read from an upstream, JSON body or event stream: 16 MiB.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Largest single server-sent event (its lines, as received): the whole answer's bound, so a
/// response of any size the body bound allows fits, and the parser's memory is bounded by it.
pub const MAX_EVENT_BYTES: usize = MAX_RESPONSE_BYTES;
/// Most `tools/list` pages followed before the upstream is judged broken.
pub const MAX_PAGES: usize = 100;
/// Most tools accepted from one upstream.
pub const MAX_TOOLS: usize = 10_000;
/// The `clientInfo.name` the client introduces itself with.
pub const CLIENT_NAME: &str = "metamcp-telemetry";

/// How long the best-effort `DELETE` of a forgotten session may take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeouts beyond this (`Duration::MAX`, say) are cut to it, so a deadline can always be set.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);
/// The `Accept` header of every POST: Streamable HTTP servers answer with either.
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// Why a call to an upstream MCP server failed. No variant holds anything the upstream sent
/// (a body, an error message, a value of a malformed answer): every message is the gateway's
/// own, so it may go to the MCP client, the admin API and the audit log.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer within the target's timeout.
    #[error("the upstream server did not answer within {0:?}")]
    Timeout(Duration),
    /// The upstream could not be reached, or the connection failed.
    #[error("cannot reach the upstream server: {0}")]
    Connect(String),
    /// The upstream's address is one the outbound policy refuses (`gateway.upstream_deny_cidrs`).
    #[error("the upstream server's address is refused by the outbound policy (gateway.upstream_deny_cidrs)")]
    Refused,
    /// The upstream answered with an HTTP error status. Its body is not read.
    #[error("the upstream server answered HTTP {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
    },
    /// The answer is not valid MCP: not JSON, the wrong content type, no JSON-RPC response, a
    /// result of the wrong shape. The message says what is wrong, not what was sent.
    #[error("invalid answer from the upstream server: {0}")]
    Protocol(String),
    /// The answer, or one event of its event stream, is larger than the client reads.
    #[error("the upstream server's answer is larger than {limit} bytes")]
    TooLarge {
        /// The bound that was passed, in bytes.
        limit: usize,
    },
    /// The upstream answered with a JSON-RPC error. Its message is not kept.
    #[error("the upstream server returned JSON-RPC error {code}")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
    },
}

impl UpstreamError {
    /// The failure's class, as spans record it in `error.type`: `timeout`, `connect`,
    /// `outbound_policy`, `http`, `protocol`, `too_large` or `rpc`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Refused => "outbound_policy",
            UpstreamError::Http { .. } => "http",
            UpstreamError::Protocol(_) => "protocol",
            UpstreamError::TooLarge { .. } => "too_large",
            UpstreamError::Rpc { .. } => "rpc",
        }
    }

    /// A description for a span's status: what failed, in few words.
    fn span_description(&self) -> String {
        match self {
            UpstreamError::Timeout(timeout) => format!("no answer within {timeout:?}"),
            UpstreamError::Connect(message) => message.clone(),
            UpstreamError::Refused => "address refused by the outbound policy".to_owned(),
            UpstreamError::Http { status } => format!("HTTP {status}"),
            UpstreamError::Protocol(_) => "invalid answer from the upstream server".to_owned(),
            UpstreamError::TooLarge { limit } => format!("answer larger than {limit} bytes"),
            UpstreamError::Rpc { code } => format!("JSON-RPC error {code}"),
        }
    }
}

/// The upstream server one call goes to.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTarget<'a> {
    /// The server's name in the registry; sessions are kept per name.
    pub name: &'a str,
    /// The server's MCP endpoint (`http://host:port/mcp`).
    pub url: &'a str,
    /// Longest time one public call may take, sessions set-up and every page included.
    pub timeout: Duration,
}

/// A client of upstream MCP servers. Cheap to clone; clones share the connection pool and the
/// sessions.
#[derive(Clone)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sessions = self.inner.sessions.lock().len();
        f.debug_struct("UpstreamClient").field("sessions", &sessions).finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    telemetry: TelemetryManager,
    propagator: TextMapCompositePropagator,
    sessions: Mutex<HashMap<String, Arc<SessionSlot>>>,
    next_id: AtomicI64,
    max_response_bytes: usize,
    max_event_bytes: usize,
    policy: Arc<OutboundPolicy>,
}

/// How an [`UpstreamClient`] reads answers and where it may connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Largest answer read, JSON body or event stream.
    pub max_response_bytes: usize,
    /// Largest single server-sent event.
    pub max_event_bytes: usize,
    /// The addresses connections may go to.
    pub policy: Arc<OutboundPolicy>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_response_bytes: MAX_RESPONSE_BYTES,
            max_event_bytes: MAX_EVENT_BYTES,
            policy: Arc::new(OutboundPolicy::default()),
        }
    }
}

/// The session of one server. The async lock is held while a session is being set up, so
/// concurrent first calls share one `initialize`.
#[derive(Default)]
struct SessionSlot(tokio::sync::Mutex<Option<Arc<Session>>>);

/// An established MCP session.
#[derive(Debug)]
struct Session {
    /// The endpoint it was established with.
    url: String,
    /// `Mcp-Session-Id`, if the server issued one.
    id: Option<String>,
    /// The negotiated revision.
    protocol_version: String,
}

/// What a JSON-RPC result must be to be accepted.
trait Reply: DeserializeOwned {
    /// Checks beyond the shape; an error is a protocol error.
    fn verify(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether the result reports a failed tool (`isError`).
    fn is_tool_error(&self) -> bool {
        false
    }
}

impl Reply for InitializeResult {
    fn verify(&self) -> Result<(), String> {
        if is_supported(&self.protocol_version) {
            Ok(())
        } else {
            // The upstream's string is not quoted back; the versions the gateway speaks are.
            Err(format!(
                "unsupported protocol version (the gateway speaks {})",
                super::protocol::SUPPORTED_VERSIONS.join(", ")
            ))
        }
    }
}

impl Reply for ListToolsResult {}

impl Reply for CallToolResult {
    fn is_tool_error(&self) -> bool {
        self.is_error
    }
}

/// One JSON-RPC message to send.
struct Call<'a> {
    method: &'a str,
    tool: Option<&'a str>,
    params: Map<String, Value>,
}

/// What was learnt of the HTTP exchange, for the span, whether or not it succeeded.
#[derive(Default)]
struct Observed {
    status: Option<u16>,
    http_version: Option<&'static str>,
    session_id: Option<String>,
}

/// The parsed endpoint of a target.
struct Endpoint {
    url: Url,
    /// `url.full`: the URL without user info, query or fragment.
    full: String,
    address: String,
    port: Option<u16>,
}

impl Endpoint {
    /// The endpoint of `raw`, refused when its host is an address literal `policy` refuses
    /// (names are judged by the resolver when the connection is made).
    fn parse(raw: &str, policy: &OutboundPolicy) -> Result<Self, UpstreamError> {
        let url = Url::parse(raw).map_err(|err| UpstreamError::Connect(format!("invalid upstream URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UpstreamError::Connect(format!("unsupported URL scheme \"{}\"", url.scheme())));
        }
        policy.check_host(&url).map_err(|_: Refusal| UpstreamError::Refused)?;
        let address = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default();
        let mut clean = url.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        clean.set_query(None);
        clean.set_fragment(None);
        Ok(Self { full: clean.to_string(), url, address, port })
    }
}

impl UpstreamClient {
    /// A client whose spans go to `telemetry`, with the default bounds and outbound policy.
    pub fn new(telemetry: TelemetryManager) -> Self {
        Self::with_config(telemetry, ClientConfig::default())
    }

    /// A client that refuses answers larger than `max_response_bytes`.
    pub fn with_max_response_bytes(telemetry: TelemetryManager, max_response_bytes: usize) -> Self {
        Self::with_config(telemetry, ClientConfig { max_response_bytes, ..ClientConfig::default() })
    }

    /// A client configured by `config`. The trace context it sends is `telemetry`'s outgoing
    /// propagator's (`baggage` only with `telemetry.propagate_baggage`).
    pub fn with_config(telemetry: TelemetryManager, config: ClientConfig) -> Self {
        let http = reqwest::Client::builder()
            // A redirected POST would be replayed as a GET, and a redirect could point anywhere
            // the outbound policy was meant to keep the gateway from; an MCP endpoint never
            // redirects.
            .redirect(reqwest::redirect::Policy::none())
            // Names resolve to the addresses the outbound policy admits, or to nothing.
            .dns_resolver(Arc::new(PolicyResolver::new(config.policy.clone())))
            .user_agent(concat!("metamcp-telemetry/", env!("CARGO_PKG_VERSION")))
            .build()
            // Building fails only when the TLS backend cannot start. A client without the
            // policy's resolver would connect anywhere, so the fallback is one whose every
            // request goes to a proxy that does not exist: it fails each call, it never leaks.
            .or_else(|_| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .proxy(reqwest::Proxy::all("http://0.0.0.0:0").map_err(|_| ())?)
                    .build()
                    .map_err(|_| ())
            })
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                http,
                propagator: telemetry.outgoing_propagator(),
                telemetry,
                sessions: Mutex::new(HashMap::new()),
                next_id: AtomicI64::new(1),
                max_response_bytes: config.max_response_bytes,
                max_event_bytes: config.max_event_bytes,
                policy: config.policy,
            }),
        }
    }

    /// Every tool of the upstream, following `nextCursor` for at most [`MAX_PAGES`] pages.
    pub async fn list_tools(&self, target: &UpstreamTarget<'_>) -> Result<Vec<Tool>, UpstreamError> {
        let operation = Operation::new(&self.inner, target)?;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = Map::new();
            if let Some(cursor) = cursor.take() {
                params.insert("cursor".to_owned(), Value::String(cursor));
            }
            let page: ListToolsResult =
                operation.request(&Call { method: METHOD_TOOLS_LIST, tool: None, params }).await?;
            tools.extend(page.tools);
            if tools.len() > MAX_TOOLS {
                return Err(UpstreamError::Protocol(format!("more than {MAX_TOOLS} tools")));
            }
            match page.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(tools),
            }
        }
        Err(UpstreamError::Protocol(format!("tools/list did not end within {MAX_PAGES} pages")))
    }

    /// Calls `tool` with `arguments`. A tool that fails answers `Ok` with `is_error` set; `Err`
    /// means the call itself failed.
    pub async fn call_tool(
        &self,
        target: &UpstreamTarget<'_>,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallToolResult, UpstreamError> {
        let operation = Operation::new(&self.inner, target)?;
        let mut params = Map::new();
        params.insert("name".to_owned(), Value::from(tool));
        params.insert("arguments".to_owned(), Value::Object(arguments));
        operation.request(&Call { method: METHOD_TOOLS_CALL, tool: Some(tool), params }).await
    }

    /// Drops the session kept for `server` (deleted or changed), and asks the upstream to end
    /// it with a best-effort `DELETE` in the background when a runtime is at hand.
    pub fn forget(&self, server: &str) {
        let Some(slot) = self.inner.sessions.lock().remove(server) else { return };
        // A session being set up right now is left to expire on the upstream.
        let Ok(session) = slot.0.try_lock() else { return };
        if let Some(session) = session.as_ref() {
            self.inner.delete_session(session);
        }
    }
}

impl Inner {
    /// Sends `DELETE` with the session id, in the background, ignoring the outcome.
    fn delete_session(&self, session: &Session) {
        let Some(id) = session.id.clone() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let request = self
            .http
            .delete(&session.url)
            .header(MCP_SESSION_ID, id)
            .header(MCP_PROTOCOL_VERSION, session.protocol_version.clone());
        runtime.spawn(async move {
            let _ = tokio::time::timeout(DELETE_TIMEOUT, request.send()).await;
        });
    }
}

/// One public call: a target, its deadline and the caller's context.
struct Operation<'a> {
    client: &'a Inner,
    target: &'a UpstreamTarget<'a>,
    endpoint: Endpoint,
    deadline: Instant,
    parent: Context,
}

impl<'a> Operation<'a> {
    fn new(client: &'a Inner, target: &'a UpstreamTarget<'a>) -> Result<Self, UpstreamError> {
        let deadline = Instant::now() + target.timeout.min(LONGEST_TIMEOUT);
        let endpoint = Endpoint::parse(target.url, &client.policy)?;
        Ok(Self { client, target, endpoint, deadline, parent: Context::current() })
    }

    fn timeout(&self) -> UpstreamError {
        UpstreamError::Timeout(self.target.timeout)
    }

    /// Sends a request in the server's session, setting the session up first if needed, and
    /// setting it up again once if the upstream says it no longer knows it.
    async fn request<T: Reply>(&self, call: &Call<'_>) -> Result<T, UpstreamError> {
        let session = self.session(None).await?;
        match self.rpc::<T>(Some(&session), call).await {
            Err(UpstreamError::Http { status: 404, .. }) if session.id.is_some() => {
                let session = self.session(Some(&session)).await?;
                self.rpc::<T>(Some(&session), call).await.map(|(result, _)| result)
            }
            other => other.map(|(result, _)| result),
        }
    }

    /// The server's session: the cached one, unless it is `stale` or for another URL.
    async fn session(&self, stale: Option<&Arc<Session>>) -> Result<Arc<Session>, UpstreamError> {
        let slot = self.client.sessions.lock().entry(self.target.name.to_owned()).or_default().clone();
        let mut current = tokio::time::timeout_at(self.deadline, slot.0.lock()).await.map_err(|_| self.timeout())?;
        if let Some(session) = current.as_ref() {
            let is_stale = stale.is_some_and(|stale| Arc::ptr_eq(stale, session));
            if !is_stale && session.url == self.target.url {
                return Ok(session.clone());
            }
            if session.url != self.target.url {
                self.client.delete_session(session);
            }
        }
        *current = None;
        let session = Arc::new(self.initialize().await?);
        *current = Some(session.clone());
        Ok(session)
    }

    /// `initialize`, then `notifications/initialized` in the new session.
    async fn initialize(&self) -> Result<Session, UpstreamError> {
        let mut params = Map::new();
        params.insert("protocolVersion".to_owned(), Value::from(LATEST_VERSION));
        params.insert("capabilities".to_owned(), json!({}));
        params.insert("clientInfo".to_owned(), json!({ "name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION") }));
        let (result, session_id) =
            self.rpc::<InitializeResult>(None, &Call { method: METHOD_INITIALIZE, tool: None, params }).await?;
        let session =
            Session { url: self.target.url.to_owned(), id: session_id, protocol_version: result.protocol_version };
        self.notify(&session, NOTIFICATION_INITIALIZED).await?;
        Ok(session)
    }

    /// Sends one request and reads its result, in a CLIENT span. Also returns the session id
    /// the answer carried.
    async fn rpc<T: Reply>(
        &self,
        session: Option<&Session>,
        call: &Call<'_>,
    ) -> Result<(T, Option<String>), UpstreamError> {
        let id = self.client.next_id.fetch_add(1, Ordering::Relaxed);
        let span = self.start_span(call, Some(id), session);
        let (headers, params) = self.prepare(span.as_ref(), session, call);
        let message = jsonrpc::request(&RequestId::Number(id), call.method, Some(params));
        let mut observed = Observed::default();
        let outcome =
            match tokio::time::timeout_at(self.deadline, self.exchange(headers, &message, Some(id), &mut observed))
                .await
            {
                Err(_) => Err(self.timeout()),
                Ok(Err(err)) => Err(err),
                Ok(Ok(None)) => Err(UpstreamError::Protocol("no response to the request".to_owned())),
                Ok(Ok(Some(result))) => parse_result::<T>(call.method, result),
            };
        if let Some(span) = &span {
            // A session id first learnt from this answer (`initialize`) joins the span's attributes.
            let new_session = if session.is_none() { observed.session_id.as_deref() } else { None };
            finish_span(span, &observed, new_session, outcome.as_ref().map(Reply::is_tool_error));
        }
        outcome.map(|result| (result, observed.session_id))
    }

    /// Sends one notification, in a CLIENT span; any 2xx answer is accepted.
    async fn notify(&self, session: &Session, method: &str) -> Result<(), UpstreamError> {
        let call = Call { method, tool: None, params: Map::new() };
        let span = self.start_span(&call, None, Some(session));
        let (headers, params) = self.prepare(span.as_ref(), Some(session), &call);
        let message = jsonrpc::notification(method, Some(params));
        let mut observed = Observed::default();
        let outcome =
            match tokio::time::timeout_at(self.deadline, self.exchange(headers, &message, None, &mut observed)).await {
                Err(_) => Err(self.timeout()),
                Ok(result) => result.map(|_| ()),
            };
        if let Some(span) = &span {
            finish_span(span, &observed, None, outcome.as_ref().map(|_| false));
        }
        outcome
    }

    /// The span of one message, a child of the caller's context; `None` when telemetry is off.
    fn start_span(&self, call: &Call<'_>, id: Option<i64>, session: Option<&Session>) -> Option<Context> {
        let tracer = self.client.telemetry.tracer()?;
        let name = match call.tool {
            Some(tool) => format!("{} {tool}", call.method),
            None => call.method.to_owned(),
        };
        let endpoint = &self.endpoint;
        let mut attributes = vec![
            KeyValue::new("mcp.method.name", call.method.to_owned()),
            KeyValue::new("server.address", endpoint.address.clone()),
            KeyValue::new("url.full", endpoint.full.clone()),
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("network.protocol.name", "http"),
            KeyValue::new("network.transport", "tcp"),
        ];
        if let Some(port) = endpoint.port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(id) = id {
            attributes.push(KeyValue::new("jsonrpc.request.id", id.to_string()));
        }
        if let Some(tool) = call.tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool.to_owned()));
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(session) = session {
            attributes.push(KeyValue::new("mcp.protocol.version", session.protocol_version.clone()));
            if let Some(id) = &session.id {
                attributes.push(KeyValue::new("mcp.session.id", session_fingerprint(id)));
            }
        }
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &self.parent);
        Some(self.parent.with_span(span))
    }

    /// The headers and params of one message, the trace context injected into both.
    fn prepare(
        &self,
        span: Option<&Context>,
        session: Option<&Session>,
        call: &Call<'_>,
    ) -> (HeaderMap, Map<String, Value>) {
        let mut headers = HeaderMap::with_capacity(6);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        if let Some(session) = session {
            if let Some(Ok(id)) = session.id.as_deref().map(HeaderValue::from_str) {
                headers.insert(MCP_SESSION_ID, id);
            }
            if let Ok(version) = HeaderValue::from_str(&session.protocol_version) {
                headers.insert(MCP_PROTOCOL_VERSION, version);
            }
        }
        // Without a span of our own, the caller's context still travels on.
        let cx = span.unwrap_or(&self.parent);
        self.client.propagator.inject_context(cx, &mut HeaderInjector(&mut headers));
        let mut params = call.params.clone();
        inject_meta(&self.client.propagator, cx, &mut params);
        (headers, params)
    }

    /// POSTs `message` and reads the response to request `expect` (nothing for a notification).
    async fn exchange(
        &self,
        headers: HeaderMap,
        message: &Value,
        expect: Option<i64>,
        observed: &mut Observed,
    ) -> Result<Option<Value>, UpstreamError> {
        let body = serde_json::to_vec(message)
            .map_err(|err| UpstreamError::Protocol(format!("the request could not be encoded: {err}")))?;
        let mut response = self
            .client
            .http
            .post(self.endpoint.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;
        let status = response.status();
        observed.status = Some(status.as_u16());
        observed.http_version = http_version(response.version());
        if let Some(value) = response.headers().get(MCP_SESSION_ID) {
            let id = value
                .to_str()
                .map_err(|_| UpstreamError::Protocol("the Mcp-Session-Id header is not visible ASCII".to_owned()))?;
            observed.session_id = Some(id.to_owned()).filter(|id| !id.is_empty());
        }
        if !status.is_success() {
            // The body is not read: whatever it says is the upstream's, not ours to relay.
            return Err(UpstreamError::Http { status: status.as_u16() });
        }
        let Some(id) = expect else { return Ok(None) };
        if status == StatusCode::ACCEPTED {
            return Err(UpstreamError::Protocol("202 Accepted instead of a response".to_owned()));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match content_type.as_str() {
            "application/json" => {
                let body = self.read_body(&mut response).await?;
                let value: Value = serde_json::from_slice(&body)
                    .map_err(|err| UpstreamError::Protocol(format!("the body is not JSON ({})", json_error(&err))))?;
                match find_response(value, id) {
                    Found::Response(result) => result.map(Some),
                    Found::Other => {
                        Err(UpstreamError::Protocol(format!("the body is not the response to request {id}")))
                    }
                }
            }
            "text/event-stream" => self.read_events(&mut response, id).await.map(Some),
            "" => Err(UpstreamError::Protocol("the answer has no content type".to_owned())),
            other => Err(UpstreamError::Protocol(format!("unexpected content type {}", content_type_name(other)))),
        }
    }

    fn transport_error(&self, err: reqwest::Error) -> UpstreamError {
        if err.is_timeout() {
            return self.timeout();
        }
        if refused_by_policy(&err) {
            return UpstreamError::Refused;
        }
        UpstreamError::Connect(error_chain(&err.without_url()))
    }

    fn too_large(&self) -> UpstreamError {
        UpstreamError::TooLarge { limit: self.client.max_response_bytes }
    }

    /// The whole body, refused beyond the size cap.
    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
        let max = self.client.max_response_bytes;
        if response.content_length().is_some_and(|length| length > max as u64) {
            return Err(self.too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| self.transport_error(err))? {
            if body.len() + chunk.len() > max {
                return Err(self.too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads server-sent events until the response to request `id` arrives.
    async fn read_events(&self, response: &mut reqwest::Response, id: i64) -> Result<Value, UpstreamError> {
        let max = self.client.max_response_bytes;
        let mut parser = SseParser::new(self.client.max_event_bytes);
        let mut events = Vec::new();
        let mut read = 0usize;
        loop {
            let chunk = response.chunk().await.map_err(|err| self.transport_error(err))?;
            match &chunk {
                Some(chunk) => {
                    read += chunk.len();
                    if read > max {
                        return Err(self.too_large());
                    }
                    parser.feed(chunk, &mut events)?;
                }
                None => parser.finish(&mut events)?,
            }
            for data in events.drain(..) {
                if data.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&data)
                    .map_err(|err| UpstreamError::Protocol(format!("an event is not JSON ({})", json_error(&err))))?;
                if let Found::Response(result) = find_response(value, id) {
                    return result;
                }
            }
            if chunk.is_none() {
                return Err(UpstreamError::Protocol(format!("the event stream ended without the response to {id}")));
            }
        }
    }
}

/// A JSON-RPC message seen in an answer: the response to our request, or something else
/// (a notification, a request of the server's, a response to another request).
enum Found {
    Response(Result<Value, UpstreamError>),
    Other,
}

/// Looks for the response to request `id` in one message (or a batch of them).
fn find_response(message: Value, id: i64) -> Found {
    let mut message = match message {
        Value::Object(message) => message,
        Value::Array(batch) => {
            return batch
                .into_iter()
                .map(|m| find_response(m, id))
                .find(|f| matches!(f, Found::Response(_)))
                .unwrap_or(Found::Other)
        }
        _ => return Found::Other,
    };
    if message.contains_key("method") {
        return Found::Other;
    }
    let answers_us = match message.get("id") {
        Some(Value::Number(n)) => n.as_i64() == Some(id),
        // An error the server could not tie to a request (it could not read ours, say).
        Some(Value::Null) => message.contains_key("error"),
        _ => false,
    };
    if !answers_us {
        return Found::Other;
    }
    if message.get("jsonrpc").and_then(Value::as_str) != Some(jsonrpc::VERSION) {
        return Found::Response(Err(UpstreamError::Protocol("the response is not JSON-RPC 2.0".to_owned())));
    }
    if let Some(error) = message.remove("error") {
        // The message is the upstream's words, which may quote the arguments: only the code is kept.
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(jsonrpc::INTERNAL_ERROR);
        return Found::Response(Err(UpstreamError::Rpc { code }));
    }
    Found::Response(
        message
            .remove("result")
            .ok_or_else(|| UpstreamError::Protocol("the response has neither result nor error".to_owned())),
    )
}

fn parse_result<T: Reply>(method: &str, result: Value) -> Result<T, UpstreamError> {
    // serde's message quotes the value it could not read (`invalid type: string "…"`): not kept.
    let parsed: T = serde_json::from_value(result)
        .map_err(|_| UpstreamError::Protocol(format!("the {method} result does not have the MCP shape")))?;
    parsed.verify().map_err(UpstreamError::Protocol)?;
    Ok(parsed)
}

/// What is wrong with a JSON text, without any of it: the class and the place.
fn json_error(err: &serde_json::Error) -> String {
    let class = match err.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{class} at line {} column {}", err.line(), err.column())
}

/// A content type for a message: a plain media type name as sent, anything else described.
fn content_type_name(content_type: &str) -> String {
    let plain =
        content_type.len() <= 64 && content_type.bytes().all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b));
    if plain {
        format!("\"{content_type}\"")
    } else {
        "(not a media type name)".to_owned()
    }
}

/// Whether the outbound policy's resolver refused the connection's name.
fn refused_by_policy(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.downcast_ref::<Refusal>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Records the outcome on the span and ends it. `Ok(true)`: the tool reported a failure.
fn finish_span(cx: &Context, observed: &Observed, new_session: Option<&str>, outcome: Result<bool, &UpstreamError>) {
    let span = cx.span();
    if let Some(status) = observed.status {
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    if let Some(version) = observed.http_version {
        span.set_attribute(KeyValue::new("network.protocol.version", version));
    }
    if let Some(id) = new_session {
        span.set_attribute(KeyValue::new("mcp.session.id", session_fingerprint(id)));
    }
    match outcome {
        Ok(false) => {}
        Ok(true) => {
            span.set_attribute(KeyValue::new("error.type", "tool_error"));
            span.set_status(Status::error("the tool reported an error"));
        }
        Err(err) => {
            span.set_attribute(KeyValue::new("error.type", err.kind()));
            if let UpstreamError::Rpc { code, .. } = err {
                span.set_attribute(KeyValue::new("rpc.response.status_code", code.to_string()));
            }
            span.set_status(Status::error(err.span_description()));
        }
    }
    span.end();
}

fn http_version(version: reqwest::Version) -> Option<&'static str> {
    Some(match version {
        reqwest::Version::HTTP_09 => "0.9",
        reqwest::Version::HTTP_10 => "1.0",
        reqwest::Version::HTTP_11 => "1.1",
        reqwest::Version::HTTP_2 => "2",
        reqwest::Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// An error and its causes, `outer: inner: root`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Writes propagation fields into HTTP headers; empty values (an empty `tracestate`) are left
/// out.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

/// Writes propagation fields into a `_meta` object.
struct MetaInjector<'a>(&'a mut Map<String, Value>);

impl Injector for MetaInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.insert(key.to_owned(), Value::String(value));
        }
    }
}

/// Puts the context of `cx` into `params._meta`, keeping the keys already there. A `_meta`
/// that is not an object is left alone.
fn inject_meta(propagator: &TextMapCompositePropagator, cx: &Context, params: &mut Map<String, Value>) {
    if !cx.span().span_context().is_valid() {
        return;
    }
    if let Value::Object(meta) = params.entry("_meta").or_insert_with(|| Value::Object(Map::new())) {
        propagator.inject_context(cx, &mut MetaInjector(meta));
    }
}

/// An incremental reader of `text/event-stream`: events end at a blank line, `data:` lines are
/// joined with `\n`, comments and other fields are ignored; lines end with LF, CRLF or CR.
///
/// Linear in the bytes fed: only the new bytes are searched for a line end (the unfinished line
/// kept from earlier chunks holds none), and each line is read once when it ends. An event whose
/// lines, as received, pass `max_event_bytes` is an error, so memory stays bounded however the
/// stream is cut.
struct SseParser {
    /// The unfinished line, without a terminator.
    pending: Vec<u8>,
    /// The last line ended with a CR: an LF right after it belongs to that line end.
    skip_lf: bool,
    /// The `data` of the event so far, lines joined with `\n`.
    data: String,
    has_data: bool,
    /// Bytes of the current event's finished lines, terminators included.
    event_bytes: usize,
    max_event_bytes: usize,
}

impl SseParser {
    fn new(max_event_bytes: usize) -> Self {
        Self {
            pending: Vec::new(),
            skip_lf: false,
            data: String::new(),
            has_data: false,
            event_bytes: 0,
            max_event_bytes,
        }
    }

    /// Refuses an event that would pass the bound with `more` bytes of unfinished line.
    fn bound(&self, more: usize) -> Result<(), UpstreamError> {
        if self.event_bytes + self.pending.len() + more > self.max_event_bytes {
            Err(UpstreamError::TooLarge { limit: self.max_event_bytes })
        } else {
            Ok(())
        }
    }

    /// Reads `chunk`, adding the data of every event it completes to `events`.
    fn feed(&mut self, chunk: &[u8], events: &mut Vec<String>) -> Result<(), UpstreamError> {
        let mut rest = chunk;
        loop {
            if self.skip_lf {
                match rest.first() {
                    None => return Ok(()),
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.bound(rest.len())?;
                self.pending.extend_from_slice(rest);
                return Ok(());
            };
            self.skip_lf = rest[end] == b'\r';
            if self.pending.is_empty() {
                self.line(&rest[..end], events)?;
            } else {
                self.bound(end)?;
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(&rest[..end]);
                self.line(&line, events)?;
            }
            rest = &rest[end + 1..];
        }
    }

    /// The stream ended: completes a last event that lacks its blank line.
    fn finish(&mut self, events: &mut Vec<String>) -> Result<(), UpstreamError> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.line(&rest, events)?;
        }
        self.line(b"", events)
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<String>) -> Result<(), UpstreamError> {
        if line.is_empty() {
            self.event_bytes = 0;
            if std::mem::take(&mut self.has_data) {
                let mut event = std::mem::take(&mut self.data);
                event.pop();
                events.push(event);
            }
            return Ok(());
        }
        self.event_bytes += line.len() + 1;
        if self.event_bytes > self.max_event_bytes {
            return Err(UpstreamError::TooLarge { limit: self.max_event_bytes });
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            self.data.push_str(&String::from_utf8_lossy(value));
            self.data.push('\n');
            self.has_data = true;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
