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
//!
//! - `operation`: one public call — its deadline, the session set-up and the one retry, each
//!   message's CLIENT span, the HTTP exchange and reading its answer;
//! - `answer`: finding the response to a request in what came back, and checking its result;
//! - `sse`: the incremental `text/event-stream` parser;
//! - `propagation`: the trace context into the headers and `params._meta`.

mod answer;
mod operation;
mod propagation;
mod sse;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use parking_lot::Mutex;
use serde_json::{Map, Value};

use self::operation::{Call, Operation};
use super::outbound::{OutboundPolicy, PolicyResolver};
use super::protocol::{
    CallToolResult, ListToolsResult, Tool, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, METHOD_TOOLS_CALL, METHOD_TOOLS_LIST,
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

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
