//! The clients of the upstream MCP servers, on the official Rust SDK (`rmcp`): one session per
//! server over Streamable HTTP, the legacy HTTP+SSE transport ([`legacy_sse`]) or a child
//! process on stdio, with what each server offers (its [`Discovery`]) kept fresh.
//!
//! [`Upstreams`] is the one entry point, one per gateway: [`Upstreams::connect`] starts (or
//! replaces) a server's session and lists its tools, prompts, resources and resource templates;
//! the calls (`tools/call`, `prompts/get`, `resources/read`, `completion/complete`) go through
//! that session; [`Upstreams::disconnect`] ends it.
//!
//! - **Supervision.** A session that ends on its own (a stdio child that exits, an HTTP session
//!   that breaks) is started again with exponential backoff, counted in
//!   [`UpstreamHealth::restarts`]; a call that finds no session asks for an attempt at once.
//!   Disconnecting stops the child (stdin closed, then `SIGTERM`, then `SIGKILL`).
//! - **Stdio children** get a minimal environment (`PATH`, `HOME`, `LANG`, ... of the gateway,
//!   then the server's own `env`), never the gateway's secrets; each stderr line is logged with
//!   the server's name. `gateway.stdio_enabled` and `gateway.stdio_allowed_commands` are checked
//!   here too (the admin API checks them first).
//! - **HTTP** goes only to addresses the outbound policy admits (its DNS resolver, and a check
//!   of the URL at connect), follows no redirect, and reads at most
//!   [`UpstreamsConfig::max_response_bytes`] per answer.
//! - **Notifications.** `notifications/*/list_changed` refresh the discovery and are broadcast as
//!   [`UpstreamEvent::ListChanged`]; `notifications/progress` reach the [`CallContext::progress`]
//!   of the call whose token they carry; `notifications/message` go to the log. Requests an
//!   upstream makes of its client (sampling, elicitation, roots) are answered with a JSON-RPC
//!   error that says the gateway does not forward them.
//! - **Cancellation.** A call whose [`CallContext::cancel`] fires, or whose future is dropped,
//!   sends `notifications/cancelled` to the upstream.
//! - **Telemetry.** Every request is a CLIENT span `{mcp.method.name} {target}` with the MCP
//!   semantic-convention attributes, and carries its context in `params._meta`
//!   (`traceparent`, `tracestate`) and, over HTTP, in headers. Requests and sessions are
//!   measured (`mcp.client.operation.duration`, `mcp.client.session.duration`), each server is a
//!   `/health` component and a gauge (`metamcp_upstream_up`), its restarts a counter.
//!
//! Files: `spec` (what a server is), `error`, `http` (the HTTP client and the traced Streamable
//! HTTP client), `legacy_sse` (the legacy transport), `session` (starting a session of each
//! transport, stdio's child and its stderr), `handler` (the SDK's client handler: notifications
//! and the upstream's requests), `request` (one request: span, `_meta`, progress, cancellation,
//! timeout), `supervisor` (restarts), `discovery`, `metrics` (what is recorded through the
//! telemetry library).

mod discovery;
mod error;
mod handler;
pub mod http;
pub mod legacy_sse;
mod metrics;
mod request;
mod session;
mod spec;
mod supervisor;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use parking_lot::{Mutex, RwLock};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, CompleteRequest, CompleteRequestParams,
    CompleteResult, GetPromptRequest, GetPromptRequestParams, GetPromptResult, ProgressNotificationParam,
    ProgressToken, ReadResourceRequest, ReadResourceRequestParams, ReadResourceResult, ServerResult,
};
use rmcp::service::{Peer, RoleClient};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::mcp::outbound::OutboundPolicy;
use metamcp_telemetry::TelemetryManager;

pub use self::discovery::{Discovery, MAX_ITEMS, MAX_PAGES};
pub use self::error::UpstreamError;
use self::request::Outgoing;
pub use self::spec::{ServerSpec, Transport};

/// Largest answer read from an upstream (a JSON body, or one event of a stream): 16 MiB.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The `clientInfo.name` the gateway introduces itself with.
pub const CLIENT_NAME: &str = "metamcp-telemetry";
/// How many events a slow subscriber of [`Upstreams::subscribe`] may fall behind.
const EVENT_CAPACITY: usize = 256;
/// Longest wait of [`Upstreams::disconnect`] for a session to close (a stdio child gets its
/// stdin closed, then `SIGTERM`, then `SIGKILL`).
const DISCONNECT_WAIT: Duration = Duration::from_secs(10);

/// How the upstream clients behave.
#[derive(Debug, Clone)]
pub struct UpstreamsConfig {
    /// Where HTTP upstream connections may go.
    pub policy: Arc<OutboundPolicy>,
    /// Largest answer read, JSON body or one event of a stream.
    pub max_response_bytes: usize,
    /// The first wait before a session that ended is started again; it doubles with each
    /// failed attempt.
    pub restart_initial_backoff: Duration,
    /// The longest wait between two attempts; a session that lived this long starts the
    /// backoff afresh.
    pub restart_max_backoff: Duration,
    /// Whether stdio servers may be started (`gateway.stdio_enabled`).
    pub stdio_enabled: bool,
    /// The commands stdio servers may run (`gateway.stdio_allowed_commands`), as given or by
    /// file name; empty: any.
    pub stdio_allowed_commands: Vec<String>,
    /// Most requests in flight at once to one Streamable HTTP server.
    pub max_concurrent_requests: usize,
}

impl Default for UpstreamsConfig {
    fn default() -> Self {
        Self {
            policy: Arc::new(OutboundPolicy::default()),
            max_response_bytes: MAX_RESPONSE_BYTES,
            restart_initial_backoff: Duration::from_millis(250),
            restart_max_backoff: Duration::from_secs(30),
            stdio_enabled: true,
            stdio_allowed_commands: Vec::new(),
            max_concurrent_requests: 64,
        }
    }
}

/// What one call carries besides its parameters.
#[derive(Default)]
pub struct CallContext {
    /// Where the upstream's `notifications/progress` for this call go (the token is the
    /// gateway's own; the receiver rewrites it to its caller's).
    pub progress: Option<mpsc::UnboundedSender<ProgressNotificationParam>>,
    /// Cancelled: `notifications/cancelled` goes to the upstream and the call returns
    /// [`UpstreamError::Cancelled`].
    pub cancel: Option<CancellationToken>,
    /// The caller's JSON-RPC request id, for the span.
    pub request_id: Option<String>,
    /// The fingerprint of the caller's MCP session, for the span.
    pub session_fingerprint: Option<String>,
}

/// Something an upstream did that the endpoints may want to tell their clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// The server's list of that kind changed (its discovery is already refreshed).
    ListChanged {
        /// The server.
        server: String,
        /// Which list.
        kind: ListKind,
    },
    /// The server's session was started again after it ended on its own.
    Restarted {
        /// The server.
        server: String,
    },
}

/// A list an upstream offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list` and `resources/templates/list`.
    Resources,
}

/// The state of one upstream, for `/health` and the status page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// The server's name.
    pub server: String,
    /// Its transport.
    pub transport: Transport,
    /// Whether a session is open now.
    pub connected: bool,
    /// The kind ([`UpstreamError::kind`]) of the last failure, if the last attempt or call
    /// failed.
    pub last_error_kind: Option<&'static str>,
    /// Failed attempts and failed calls since the last success.
    pub consecutive_failures: u64,
    /// Times the session was started again after it ended on its own.
    pub restarts: u64,
}

/// The clients of every upstream server. Cheap to clone; clones share the sessions.
#[derive(Clone)]
pub struct Upstreams {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").field("servers", &self.inner.servers.read().len()).finish_non_exhaustive()
    }
}

struct Inner {
    telemetry: TelemetryManager,
    config: UpstreamsConfig,
    propagator: TextMapCompositePropagator,
    /// The HTTP client of every HTTP upstream; `None` when it could not be built.
    http: Option<reqwest_upstream::Client>,
    servers: RwLock<HashMap<String, Arc<Slot>>>,
    events: broadcast::Sender<UpstreamEvent>,
}

impl Drop for Inner {
    /// The last handle is gone: every session ends, every stdio child stops.
    fn drop(&mut self) {
        for slot in self.servers.get_mut().values() {
            slot.stop.cancel();
        }
    }
}

/// What a request names, for its span.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// A tool (`gen_ai.tool.name`).
    Tool(&'a str),
    /// A prompt (`gen_ai.prompt.name`).
    Prompt(&'a str),
    /// Nothing beyond the method.
    None,
}

/// An open session.
#[derive(Clone)]
struct Live {
    peer: Peer<RoleClient>,
    protocol_version: String,
}

/// What the supervisor publishes: the open session, and how many attempts ended so far.
#[derive(Clone, Default)]
struct State {
    live: Option<Live>,
    attempts: u64,
}

/// One upstream server: its spec, its session, what it offers, its health.
struct Slot {
    name: String,
    spec: ServerSpec,
    timeout: Duration,
    /// `server.address` and `server.port` of its spans (HTTP only).
    address: Option<(String, Option<u16>)>,
    state: watch::Sender<State>,
    discovery: RwLock<Option<Arc<Discovery>>>,
    /// The calls waiting for progress, by the token the gateway gave their request.
    progress: Mutex<HashMap<ProgressToken, mpsc::UnboundedSender<ProgressNotificationParam>>>,
    /// Cancelled by `disconnect` (or a replacing `connect`): the supervisor ends the session.
    stop: CancellationToken,
    /// Asks the supervisor for an attempt now (a call found no session).
    wake: Notify,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    health: Health,
    /// The process id of a stdio server's child (0: none).
    pid: AtomicU32,
    /// What the HTTP exchanges told: the upstream's session, what broke it.
    observed: Arc<http::Observed>,
    /// How the event stream of a legacy SSE session ended.
    legacy_end: Mutex<Option<legacy_sse::StreamEndWatch>>,
    /// [`UpstreamsConfig::max_response_bytes`].
    max_bytes: usize,
}

#[derive(Default)]
struct Health {
    connected: AtomicBool,
    last_error_kind: Mutex<Option<&'static str>>,
    consecutive_failures: AtomicU64,
    restarts: AtomicU64,
}

impl Slot {
    fn live(&self) -> Option<Live> {
        self.state.borrow().live.clone().filter(|live| !live.peer.is_transport_closed())
    }

    fn succeeded(&self) {
        self.health.consecutive_failures.store(0, Ordering::Relaxed);
        *self.health.last_error_kind.lock() = None;
    }

    fn failed(&self, err: &UpstreamError) {
        self.health.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        *self.health.last_error_kind.lock() = Some(err.kind());
    }

    /// What broke the session, when a call only learnt that it closed.
    fn explain(&self, err: UpstreamError) -> UpstreamError {
        if !err.is_connection_closed() {
            return err;
        }
        if let Some(failure) = self.observed.take_failure() {
            return failure;
        }
        let end = self.legacy_end.lock().as_ref().and_then(legacy_sse::StreamEndWatch::get);
        match end {
            Some(legacy_sse::StreamEnd::EventTooLarge) => UpstreamError::TooLarge { limit: self.max_bytes },
            Some(legacy_sse::StreamEnd::Malformed(_)) => {
                UpstreamError::Protocol("the event stream is malformed".to_owned())
            }
            _ => err,
        }
    }
}

impl Upstreams {
    /// The clients, their spans going to `telemetry`.
    pub fn new(telemetry: TelemetryManager, config: UpstreamsConfig) -> Self {
        let http = match http::client(config.policy.clone()) {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::error!(error = %err, "the HTTP client of the upstreams could not be built");
                None
            }
        };
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let inner = Arc::new(Inner {
            propagator: telemetry.outgoing_propagator(),
            telemetry,
            config,
            http,
            servers: RwLock::new(HashMap::new()),
            events,
        });
        inner.telemetry.register_components(Arc::new(metrics::UpstreamComponents(Arc::downgrade(&inner))));
        Self { inner }
    }

    /// Starts (or replaces) the session of `server` (a stdio server's child is spawned and
    /// supervised from now on) and discovers its tools, prompts, resources, resource templates
    /// and capabilities, every page. `timeout` bounds this and every later call. A server that
    /// does not answer stays known (its health says so) and is tried again with backoff;
    /// one the settings or the outbound policy refuse is not.
    pub async fn connect(
        &self,
        server: &str,
        spec: &ServerSpec,
        timeout: Duration,
    ) -> Result<Arc<Discovery>, UpstreamError> {
        self.check_allowed(spec, timeout).await?;
        let slot = Arc::new(Slot {
            name: server.to_owned(),
            spec: spec.clone(),
            timeout,
            address: spec.url().and_then(server_address),
            state: watch::Sender::new(State::default()),
            discovery: RwLock::new(None),
            progress: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            wake: Notify::new(),
            supervisor: Mutex::new(None),
            health: Health::default(),
            pid: AtomicU32::new(0),
            observed: Arc::new(http::Observed::default()),
            legacy_end: Mutex::new(None),
            max_bytes: self.inner.config.max_response_bytes,
        });
        let previous = self.inner.servers.write().insert(server.to_owned(), slot.clone());
        if let Some(previous) = previous {
            stop_slot(&previous).await;
        }
        let first = session::establish(&self.inner, &slot).await;
        let outcome = match &first {
            Ok((_, discovery)) => Ok(discovery.clone()),
            Err(err) => Err(err.clone()),
        };
        let handle = tokio::spawn(supervisor::supervise(Arc::downgrade(&self.inner), slot.clone(), first.ok()));
        *slot.supervisor.lock() = Some(handle);
        outcome
    }

    /// Connects `server` unless it is connected (or being retried) with this very spec and
    /// timeout: what a call does before it needs a server it may not know yet.
    pub async fn ensure(&self, server: &str, spec: &ServerSpec, timeout: Duration) -> Result<(), UpstreamError> {
        let known = self.slot(server).is_some_and(|slot| slot.spec == *spec && slot.timeout == timeout);
        if known {
            return Ok(());
        }
        self.connect(server, spec, timeout).await.map(|_| ())
    }

    /// Ends the session of `server` and forgets it (its series too); a stdio child is stopped.
    pub async fn disconnect(&self, server: &str) {
        let slot = self.inner.servers.write().remove(server);
        if let Some(slot) = slot {
            stop_slot(&slot).await;
            self.inner.telemetry.forget_upstream(server);
        }
    }

    /// What `server` offered when last listed (kept fresh on its `list_changed`).
    pub fn discovery(&self, server: &str) -> Option<Arc<Discovery>> {
        self.slot(server)?.discovery.read().clone()
    }

    /// Calls `tool`. A tool that fails answers `Ok` with `is_error` set; `Err` means the call
    /// itself failed.
    pub async fn call_tool(
        &self,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
        ctx: CallContext,
    ) -> Result<CallToolResult, UpstreamError> {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let out = Outgoing { method: "tools/call", target: Target::Tool(tool), request };
        match self.send(server, out, ctx).await? {
            ServerResult::CallToolResult(result) => Ok(result),
            // A result with no content at all parses as the empty result.
            ServerResult::EmptyResult(_) => Ok(CallToolResult::default()),
            _ => Err(unexpected("tools/call")),
        }
    }

    /// Gets `prompt` with `arguments`.
    pub async fn get_prompt(
        &self,
        server: &str,
        prompt: &str,
        arguments: Option<Map<String, Value>>,
        ctx: CallContext,
    ) -> Result<GetPromptResult, UpstreamError> {
        let mut params = GetPromptRequestParams::new(prompt);
        params.arguments = arguments;
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(params));
        let out = Outgoing { method: "prompts/get", target: Target::Prompt(prompt), request };
        match self.send(server, out, ctx).await? {
            ServerResult::GetPromptResult(result) => Ok(result),
            _ => Err(unexpected("prompts/get")),
        }
    }

    /// Reads the resource at `uri`, as the upstream names it.
    pub async fn read_resource(
        &self,
        server: &str,
        uri: &str,
        ctx: CallContext,
    ) -> Result<ReadResourceResult, UpstreamError> {
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(ReadResourceRequestParams::new(uri)));
        let out = Outgoing { method: "resources/read", target: Target::None, request };
        match self.send(server, out, ctx).await? {
            ServerResult::ReadResourceResult(result) => Ok(result),
            _ => Err(unexpected("resources/read")),
        }
    }

    /// Asks for completions of a prompt's or a resource template's argument.
    pub async fn complete(
        &self,
        server: &str,
        params: CompleteRequestParams,
        ctx: CallContext,
    ) -> Result<CompleteResult, UpstreamError> {
        let request = ClientRequest::CompleteRequest(CompleteRequest::new(params));
        let out = Outgoing { method: "completion/complete", target: Target::None, request };
        match self.send(server, out, ctx).await? {
            ServerResult::CompleteResult(result) => Ok(result),
            _ => Err(unexpected("completion/complete")),
        }
    }

    /// The upstreams' list changes and restarts, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<UpstreamEvent> {
        self.inner.events.subscribe()
    }

    /// Every known server's state, by name.
    pub fn health(&self) -> Vec<UpstreamHealth> {
        let mut all: Vec<UpstreamHealth> = self
            .inner
            .servers
            .read()
            .values()
            .map(|slot| UpstreamHealth {
                server: slot.name.clone(),
                transport: slot.spec.transport(),
                connected: slot.health.connected.load(Ordering::Relaxed) && slot.live().is_some(),
                last_error_kind: *slot.health.last_error_kind.lock(),
                consecutive_failures: slot.health.consecutive_failures.load(Ordering::Relaxed),
                restarts: slot.health.restarts.load(Ordering::Relaxed),
            })
            .collect();
        all.sort_by(|a, b| a.server.cmp(&b.server));
        all
    }

    /// The process id of a stdio server's running child.
    pub fn child_pid(&self, server: &str) -> Option<u32> {
        self.slot(server).map(|slot| slot.pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0)
    }

    fn slot(&self, server: &str) -> Option<Arc<Slot>> {
        self.inner.servers.read().get(server).cloned()
    }

    /// Refuses what the settings or the outbound policy forbid.
    async fn check_allowed(&self, spec: &ServerSpec, timeout: Duration) -> Result<(), UpstreamError> {
        match spec {
            ServerSpec::Stdio { command, .. } => check_command(&self.inner.config, command),
            ServerSpec::StreamableHttp { url } | ServerSpec::Sse { url } => {
                let parsed = url::Url::parse(url).map_err(|_| UpstreamError::Connect("invalid URL".to_owned()))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(UpstreamError::Connect(format!("unsupported URL scheme \"{}\"", parsed.scheme())));
                }
                self.inner.config.policy.check_url(&parsed, timeout).await.map_err(|_| UpstreamError::Refused)
            }
        }
    }
}

/// `gateway.stdio_enabled` and `gateway.stdio_allowed_commands`.
fn check_command(config: &UpstreamsConfig, command: &str) -> Result<(), UpstreamError> {
    if !config.stdio_enabled {
        return Err(UpstreamError::NotAllowed(
            "stdio servers are disabled on this gateway (gateway.stdio_enabled)".to_owned(),
        ));
    }
    // As the admin API judges it: the command as given, or its file name.
    let file_name = std::path::Path::new(command).file_name().and_then(|name| name.to_str());
    let allowed = config.stdio_allowed_commands.is_empty()
        || config.stdio_allowed_commands.iter().any(|entry| entry == command || Some(entry.as_str()) == file_name);
    if allowed {
        Ok(())
    } else {
        Err(UpstreamError::NotAllowed(format!("the command {command:?} is not among gateway.stdio_allowed_commands")))
    }
}

/// `server.address` and `server.port` of a URL.
fn server_address(url: &str) -> Option<(String, Option<u16>)> {
    let url = url::Url::parse(url).ok()?;
    Some((url.host_str()?.to_owned(), url.port_or_known_default()))
}

fn unexpected(method: &str) -> UpstreamError {
    UpstreamError::Protocol(format!("the response does not answer {method}"))
}

/// Stops a slot's supervisor and waits (bounded) for its session to close.
async fn stop_slot(slot: &Slot) {
    slot.stop.cancel();
    let handle = slot.supervisor.lock().take();
    if let Some(handle) = handle {
        if tokio::time::timeout(DISCONNECT_WAIT, handle).await.is_err() {
            tracing::warn!(server = %slot.name, "the upstream session did not close in time");
        }
    }
}

#[cfg(test)]
mod tests;
