//! The gateway's domain logic, shared by the MCP endpoints and the admin API: registering upstream
//! servers and discovering their tools, the tools an endpoint exposes, executing a tool (built-in or
//! upstream) with its span, metric and audit row, and vector search over the tools registry.
//!
//! The audit row of a failed call holds only what the gateway itself wrote
//! ([`ExecuteError::audit_message`]): an error kind, a JSON-RPC code, an upstream's name, the
//! schema keywords that failed. Never a tool's result text, an upstream's words, or an argument
//! a validator or the calculator would quote.
//!
//! The upstream servers are reached through [`Upstreams`] (one session per server, whatever its
//! transport); the gateway connects every enabled server at start, again when one is
//! registered or refreshed, and disconnects it when deleted. What changes the lists an endpoint
//! offers is announced on the change bus ([`Gateway::announce`], [`Gateway::changes`]): the
//! registry's own changes, and the upstreams' `list_changed` (a tools change also refreshes the
//! stored tools and the vector index).
//!
//! - `registry`: upstream servers, their tools, and the vector index kept in step with them;
//! - `calls`: executing a tool, built-in or upstream, with its span, metric and audit row;
//! - `content`: an endpoint's servers and what they offer, and the prompts, resources and
//!   completions of its servers;
//! - `changes`: the change bus and what the upstreams' events change;
//! - `search`: vector search over the tools registry.

mod calls;
mod changes;
mod content;
mod registry;
mod search;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rmcp::model::{CallToolResult, Tool};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::audit::AuditLog;
use crate::config::{GatewaySettings, VectorSettings};
use crate::mcp::outbound::{OutboundPolicy, Refusal};
use crate::mcp::schema::Violation;
use crate::storage::{self, Server, StorageError, Store};
use crate::tools::calculator;
use crate::tools::embedder::{EmbedError, Embedder};
use crate::tools::index::ToolIndex;
use crate::upstream::{UpstreamError, Upstreams, UpstreamsConfig};
use metamcp_telemetry::TelemetryManager;

pub use self::changes::Change;
pub use self::content::EndpointServer;
pub use self::search::SearchResult;

/// Separator between the server name and the tool name in an aggregated tool name.
pub const TOOL_SEPARATOR: &str = "__";
/// Name of the built-in calculator tool.
pub const CALCULATOR: &str = "calculator";
/// Name of the built-in vector search tool.
pub const SEARCH_TOOLS: &str = "search_tools";
/// The names of the built-in tools.
pub(crate) const BUILTIN_NAMES: &[&str] = &[CALCULATOR, SEARCH_TOOLS];

/// `first second`: a span name such as `tools/call calculator`, without the formatting machinery.
pub(crate) fn joined(first: &str, second: &str) -> String {
    let mut name = String::with_capacity(first.len() + 1 + second.len());
    name.push_str(first);
    name.push(' ');
    name.push_str(second);
    name
}

/// `name` without a copy when it is one of `known` (a telemetry value shared, not allocated).
pub(crate) fn interned(name: &str, known: &'static [&'static str]) -> Cow<'static, str> {
    match known.iter().find(|k| **k == name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name.to_owned()),
    }
}
/// The pseudo server the built-in tools are indexed under.
const BUILTIN_SERVER: &str = "builtin";
/// Longest query `search_tools` accepts, in characters.
pub const MAX_QUERY_CHARS: usize = 4096;

/// Why a tool call did not run or failed outside the tool itself.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// No such tool, or not on this endpoint, or disabled.
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    /// The arguments do not match the tool's input schema.
    #[error("invalid arguments for {tool}: {}", violations_text(.errors))]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// Each violation, naming its JSON path and keyword, never the value.
        errors: Vec<Violation>,
    },
    /// A server's URL is, or resolves to, an address the outbound policy refuses.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A setting the gateway was started with is invalid.
    #[error(transparent)]
    Config(#[from] metamcp_telemetry_actors::ConfigError),
    /// The upstream server failed (down, slow, garbage, or a JSON-RPC error).
    #[error("upstream server {server:?} failed: {source}")]
    Upstream {
        /// The server.
        server: String,
        /// What went wrong.
        #[source]
        source: UpstreamError,
    },
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The embedder failed (vector search).
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    /// No such server on this endpoint (or disabled), for a prompt, a resource or a completion.
    #[error("unknown server {0:?}")]
    UnknownServer(String),
}

impl ExecuteError {
    /// The `error.type` of the span and the audit row.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownTool(_) => "unknown_tool",
            Self::InvalidArguments { .. } => "invalid_arguments",
            Self::Upstream { source, .. } => source.kind(),
            Self::Refused(_) => "outbound_policy",
            Self::Storage(_) => "storage",
            Self::Embed(_) => "embedding",
            Self::Config(_) => "config",
            Self::UnknownServer(_) => "unknown_server",
        }
    }

    /// What the audit row of a failed call says: the gateway's own words only. An invalid
    /// argument is named by the schema keywords that failed (`/properties/a/type`), an upstream
    /// failure by its server and what kind it was (the upstream's answer is never in it), an
    /// embedder failure by its kind (an embeddings API may quote the query back).
    pub fn audit_message(&self) -> String {
        match self {
            Self::UnknownTool(_) => "unknown tool".to_owned(),
            Self::InvalidArguments { tool, errors } => {
                let keywords: Vec<&str> = errors
                    .iter()
                    .map(|v| if v.keyword_path.is_empty() { "(a validation bound)" } else { v.keyword_path.as_str() })
                    .collect();
                format!("invalid arguments for {tool}: {}", keywords.join("; "))
            }
            Self::Upstream { server, source } => format!("upstream server {server:?} failed: {source}"),
            Self::Refused(_) => "the server's address is refused by the outbound policy".to_owned(),
            Self::Storage(err) => format!("storage: {err}"),
            Self::Embed(err) => format!("embedding failed ({})", err.kind()),
            Self::Config(err) => err.to_string(),
            Self::UnknownServer(_) => "unknown server".to_owned(),
        }
    }
}

/// Violations as one line, `; `-separated.
pub fn violations_text(violations: &[Violation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Where a call comes from: the endpoint (None for the admin API) and the MCP session, and
/// where the upstream's progress goes and what cancels the call.
#[derive(Debug, Clone, Default)]
pub struct CallOrigin {
    /// The endpoint whose servers may be called; `None` allows every server (admin API).
    pub endpoint: Option<String>,
    /// The fingerprint of the MCP session's id, what spans show of the session (the id itself is
    /// a bearer capability).
    pub session_fingerprint: Option<Arc<str>>,
    /// The JSON-RPC request id, for the span.
    pub request_id: Option<rmcp::model::RequestId>,
    /// The negotiated protocol version, for the span.
    pub protocol_version: Option<Cow<'static, str>>,
    /// Where the upstream's `notifications/progress` for this call go (the token is the
    /// gateway's; the receiver writes its caller's).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<rmcp::model::ProgressNotificationParam>>,
    /// Cancelled: the upstream gets `notifications/cancelled` and the call ends.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
}

impl CallOrigin {
    /// The upstream call's context: its progress route, its cancellation, and the caller's
    /// request id and session (as a fingerprint) for the client span.
    pub(crate) fn call_context(&self) -> crate::upstream::CallContext {
        crate::upstream::CallContext {
            progress: self.progress.clone(),
            cancel: self.cancel.clone(),
            request_id: self.request_id.as_ref().map(request_id_text),
            session_fingerprint: self.session_fingerprint.as_deref().map(str::to_owned),
        }
    }
}

/// The text of a JSON-RPC request id.
fn request_id_text(id: &rmcp::model::RequestId) -> String {
    match id {
        rmcp::model::RequestId::Number(n) => n.to_string(),
        rmcp::model::RequestId::String(s) => s.to_string(),
    }
}

/// A tool as an endpoint lists it.
#[derive(Debug, Clone)]
struct CachedTool {
    description: String,
}

/// An upstream call's lookup: the endpoint it came through (none for the admin API) and the
/// aggregated tool name.
type ResolvedKey = (Option<String>, String);

/// Most remembered upstream resolutions; beyond it the memory starts over.
const MAX_RESOLVED: usize = 10_000;

/// The gateway: storage, the upstream clients, the embedder and the index, and telemetry.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    telemetry: TelemetryManager,
    upstreams: Upstreams,
    /// The change bus: what changed the lists of which servers or endpoints.
    changes: broadcast::Sender<Change>,
    embedder: Arc<dyn Embedder>,
    index: ToolIndex,
    /// Description and schema of every indexed tool, by aggregated name.
    tools: RwLock<HashMap<String, CachedTool>>,
    /// Upstream tools as last resolved from the database, by endpoint and aggregated name: what a
    /// call uses while the database is unavailable. Emptied whenever this gateway changes
    /// servers, tools or endpoint mappings.
    resolved: parking_lot::Mutex<HashMap<ResolvedKey, (Server, storage::Tool)>>,
    settings: GatewaySettings,
    vector: VectorSettings,
    audit: AuditLog,
    /// Where upstream connections may go (`gateway.upstream_deny_cidrs`, `upstream_allow_cidrs`).
    policy: Arc<OutboundPolicy>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("backend", &self.inner.store.backend()).finish()
    }
}

/// `{server}__{tool}`.
pub fn aggregated_name(server: &str, tool: &str) -> String {
    format!("{server}{TOOL_SEPARATOR}{tool}")
}

/// The built-in tools as MCP tools.
pub fn builtin_tools() -> Vec<Tool> {
    builtins().to_vec()
}

/// The built-in tools, built once.
fn builtins() -> &'static [Tool] {
    static BUILTINS: std::sync::OnceLock<Vec<Tool>> = std::sync::OnceLock::new();
    BUILTINS.get_or_init(make_builtins)
}

/// An MCP tool with a JSON Schema given as a value (an object; anything else reads as `{}`).
pub(crate) fn tool(name: &str, description: &str, schema: Value) -> Tool {
    let schema = match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Tool::new(name.to_owned(), description.to_owned(), Arc::new(schema))
}

fn make_builtins() -> Vec<Tool> {
    vec![
        tool(CALCULATOR, calculator::DESCRIPTION, calculator::input_schema()),
        tool(
            SEARCH_TOOLS,
            "Find the tools of this endpoint that fit a task, by semantic similarity of their names and \
             descriptions to a query. Returns names, descriptions and scores.",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS,
                              "description": "What the tool should do, in plain words."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100,
                              "description": "Most results to return."},
                    "threshold": {"type": "number", "minimum": -1.0, "maximum": 1.0,
                                  "description": "Lowest similarity a result may have."}
                },
                "required": ["query"],
                "additionalProperties": false
            }),
        ),
    ]
}

impl Gateway {
    /// Builds the gateway over an open store and loads the vector index from it, embedding the
    /// tools that have no stored vector (or one of another size).
    pub async fn start(
        store: Store,
        telemetry: TelemetryManager,
        embedder: Arc<dyn Embedder>,
        settings: GatewaySettings,
        vector: VectorSettings,
    ) -> Result<Self, ExecuteError> {
        // The built-in tools' series read 0 from the first scrape, not "no data".
        telemetry.declare_tools(&builtins().iter().map(|tool| tool.name.as_ref()).collect::<Vec<_>>());
        // An embeddings API tells its vector size only in an answer: ask it once.
        let dimensions = match embedder.dimensions() {
            0 => embedder.embed(&["dimension probe".to_owned()]).await?.first().map_or(0, Vec::len),
            known => known,
        };
        let index = ToolIndex::new(dimensions.max(1));
        let policy = Arc::new(settings.outbound_policy()?);
        let config = UpstreamsConfig {
            policy: policy.clone(),
            stdio_enabled: settings.stdio_enabled,
            stdio_allowed_commands: settings.stdio_allowed_commands.clone(),
            ..UpstreamsConfig::default()
        };
        let upstreams = Upstreams::new(telemetry.clone(), config);
        let (changes, _) = broadcast::channel(changes::CHANGE_CAPACITY);
        let gateway = Self {
            inner: Arc::new(Inner {
                upstreams,
                changes,
                policy,
                audit: AuditLog::start(store.clone()),
                store,
                telemetry,
                embedder,
                index,
                tools: RwLock::new(HashMap::new()),
                resolved: parking_lot::Mutex::new(HashMap::new()),
                settings,
                vector,
            }),
        };
        gateway.index_builtins().await?;
        gateway.load_index().await?;
        gateway.follow_upstreams();
        gateway.connect_stored_servers().await;
        Ok(gateway)
    }

    /// The clients of the upstream servers.
    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The telemetry.
    pub fn telemetry(&self) -> &TelemetryManager {
        &self.inner.telemetry
    }

    /// The audit log writer.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// The gateway settings.
    pub fn settings(&self) -> &GatewaySettings {
        &self.inner.settings
    }

    /// Tools in the vector index (registered plus built-in).
    pub fn indexed_tools(&self) -> usize {
        self.inner.index.len()
    }

    /// Forgets the upstream tools remembered for calls while the database is unavailable (after
    /// a change to servers, tools or endpoint mappings).
    pub fn forget_resolved_tools(&self) {
        self.inner.resolved.lock().clear();
    }

    fn timeout_of(&self, server: &Server) -> Duration {
        self.timeout_from(server.timeout_ms)
    }

    /// A server's own timeout, or `gateway.upstream_timeout` when it sets none.
    fn timeout_from(&self, timeout_ms: Option<i64>) -> Duration {
        timeout_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .filter(|ms| *ms > 0)
            .map_or(self.inner.settings.upstream_timeout, Duration::from_millis)
    }

    /// The tools an endpoint exposes: the built-in ones, then every enabled tool of its enabled
    /// servers as `{server}__{tool}`.
    pub async fn endpoint_tools(&self, endpoint: &str) -> Result<Vec<Tool>, ExecuteError> {
        let filter =
            storage::ToolFilter { endpoint: Some(endpoint.to_owned()), enabled: Some(true), ..Default::default() };
        let owned = endpoint.to_owned();
        let (servers, tools) = self
            .inner
            .store
            .run(move |c| {
                let servers = storage::endpoint_servers(c, &owned)?;
                let tools = storage::list_tools(c, &filter, storage::Page { limit: i64::MAX, offset: 0 })?;
                Ok((servers, tools))
            })
            .await?;
        let enabled: HashSet<&str> = servers.iter().filter(|s| s.enabled).map(|s| s.name.as_str()).collect();
        let mut out = builtin_tools();
        out.extend(tools.items.into_iter().filter(|t| enabled.contains(t.server_name.as_str())).map(|t| {
            let schema = serde_json::from_str(&t.input_schema).unwrap_or_else(|_| json!({"type": "object"}));
            tool(&aggregated_name(&t.server_name, &t.name), &t.description, schema)
        }));
        Ok(out)
    }
}

/// The text contents of a result, joined.
pub fn result_text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.as_str()).collect::<Vec<_>>().join("\n")
}
