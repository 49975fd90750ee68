//! The gateway's domain logic, shared by the MCP endpoints and the admin API: registering upstream
//! servers and discovering their tools, the tools an endpoint exposes, executing a tool (built-in or
//! upstream) with its span, metric and audit row, and vector search over the tools registry.
//!
//! The audit row of a failed call holds only what the gateway itself wrote
//! ([`ExecuteError::audit_message`]): an error kind, a JSON-RPC code, an upstream's name, the
//! schema keywords that failed. Never a tool's result text, an upstream's words, or an argument
//! a validator or the calculator would quote.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::{FutureExt as _, Status, TraceContextExt as _};
use opentelemetry::KeyValue;
use parking_lot::RwLock;
use serde_json::{json, Map, Value};

use super::audit::AuditLog;
use super::config::{GatewaySettings, VectorSettings};
use super::mcp::client::{ClientConfig, UpstreamClient, UpstreamError, UpstreamTarget};
use super::mcp::outbound::{OutboundPolicy, Refusal};
use super::mcp::protocol::{session_fingerprint, CallToolResult, Tool};
use super::mcp::schema::{self, Violation};
use super::storage::{self, NewExecution, NewServer, NewTool, Server, StorageError, Store};
use super::tools::calculator;
use super::tools::embedder::{EmbedError, Embedder};
use super::tools::index::ToolIndex;
use metamcp_telemetry::TelemetryManager;

/// Separator between the server name and the tool name in an aggregated tool name.
pub const TOOL_SEPARATOR: &str = "__";
/// Name of the built-in calculator tool.
pub const CALCULATOR: &str = "calculator";
/// Name of the built-in vector search tool.
pub const SEARCH_TOOLS: &str = "search_tools";
/// The pseudo server the built-in tools are indexed under.
const BUILTIN_SERVER: &str = "builtin";
/// Longest error message kept in an audit row.
const MAX_ERROR_MESSAGE: usize = 1024;
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
        }
    }
}

/// Violations as one line, `; `-separated.
pub fn violations_text(violations: &[Violation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Where a call comes from: the endpoint (None for the admin API) and the MCP session.
#[derive(Debug, Clone, Default)]
pub struct CallOrigin {
    /// The endpoint whose servers may be called; `None` allows every server (admin API).
    pub endpoint: Option<String>,
    /// The MCP session; spans carry only its fingerprint.
    pub session_id: Option<String>,
    /// The JSON-RPC request id, for the span.
    pub request_id: Option<String>,
    /// The negotiated protocol version, for the span.
    pub protocol_version: Option<String>,
}

/// One result of a vector search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchResult {
    /// The tool's aggregated name (`{server}__{tool}`, or a built-in's name).
    pub name: String,
    /// The server (`builtin` for built-in tools).
    pub server: String,
    /// The tool's description.
    pub description: String,
    /// Cosine similarity to the query, -1.0 to 1.0.
    pub score: f32,
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

/// The gateway: storage, the upstream client, the embedder and the index, and telemetry.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    telemetry: TelemetryManager,
    upstream: UpstreamClient,
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

/// The text an embedder sees for a tool.
fn embedding_text(name: &str, description: &str) -> String {
    format!("{name}: {description}")
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
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

fn make_builtins() -> Vec<Tool> {
    vec![
        Tool::new(CALCULATOR, calculator::DESCRIPTION, calculator::input_schema()),
        Tool::new(
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
        let client = ClientConfig { policy: policy.clone(), ..ClientConfig::default() };
        let gateway = Self {
            inner: Arc::new(Inner {
                upstream: UpstreamClient::with_config(telemetry.clone(), client),
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
        Ok(gateway)
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

    async fn index_builtins(&self) -> Result<(), ExecuteError> {
        let builtins = builtin_tools();
        let texts: Vec<String> =
            builtins.iter().map(|t| embedding_text(&t.name, t.description.as_deref().unwrap_or(""))).collect();
        let vectors = self.inner.embedder.embed(&texts).await?;
        let mut rows = Vec::new();
        let mut cache = self.inner.tools.write();
        for (tool, vector) in builtins.into_iter().zip(vectors) {
            cache.insert(tool.name.clone(), CachedTool { description: tool.description.clone().unwrap_or_default() });
            rows.push((tool.name, vector));
        }
        drop(cache);
        self.inner.index.replace_server(BUILTIN_SERVER, &rows).map_err(|e| StorageError::Invalid(e.to_string()))?;
        Ok(())
    }

    async fn load_index(&self) -> Result<(), ExecuteError> {
        let tools = self.inner.store.run(storage::all_tools).await?;
        let dimensions = self.inner.index.dimensions();
        let mut by_server: HashMap<String, Vec<storage::Tool>> = HashMap::new();
        for tool in tools {
            by_server.entry(tool.server_name.clone()).or_default().push(tool);
        }
        for (server, tools) in by_server {
            let stale = tools.iter().any(|t| t.embedding.as_ref().is_none_or(|e| e.len() != dimensions));
            let tools = if stale {
                // Embedder changed (or vectors missing): embed again and store.
                let new: Vec<NewTool> = tools
                    .iter()
                    .map(|t| NewTool {
                        name: t.name.clone(),
                        description: t.description.clone(),
                        input_schema: t.input_schema.clone(),
                        embedding: None,
                    })
                    .collect();
                self.store_tools(&server, new).await?
            } else {
                tools
            };
            self.index_server_tools(&server, &tools)?;
        }
        Ok(())
    }

    fn index_server_tools(&self, server: &str, tools: &[storage::Tool]) -> Result<(), ExecuteError> {
        let rows: Vec<(String, Vec<f32>)> = tools
            .iter()
            .filter(|t| t.enabled)
            .filter_map(|t| t.embedding.clone().map(|e| (t.name.clone(), e)))
            .collect();
        {
            let mut cache = self.inner.tools.write();
            let prefix = format!("{server}{TOOL_SEPARATOR}");
            cache.retain(|name, _| !name.starts_with(&prefix));
            for tool in tools {
                cache.insert(aggregated_name(server, &tool.name), CachedTool { description: tool.description.clone() });
            }
        }
        self.inner.index.replace_server(server, &rows).map_err(|e| StorageError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// Embeds the tools and replaces the server's stored tools with them.
    async fn store_tools(&self, server: &str, mut tools: Vec<NewTool>) -> Result<Vec<storage::Tool>, ExecuteError> {
        let texts: Vec<String> = tools.iter().map(|t| embedding_text(&t.name, &t.description)).collect();
        if !texts.is_empty() {
            let vectors = self.inner.embedder.embed(&texts).await?;
            for (tool, vector) in tools.iter_mut().zip(vectors) {
                tool.embedding = Some(vector);
            }
        }
        let server = server.to_owned();
        Ok(self.inner.store.run(move |c| storage::replace_server_tools(c, &server, &tools)).await?)
    }

    /// Refuses a URL that is, or resolves to, an address the outbound policy refuses. A URL that
    /// does not parse is left to the upstream client, which says so.
    async fn check_outbound(&self, url: &str, timeout: Duration) -> Result<(), ExecuteError> {
        let Ok(url) = reqwest::Url::parse(url) else { return Ok(()) };
        Ok(self.inner.policy.check_url(&url, timeout).await?)
    }

    /// Registers an upstream server and discovers its tools. A server that does not answer is
    /// still registered; the discovery error is returned beside it. A URL that is, or resolves
    /// to, an address the outbound policy refuses is not registered ([`ExecuteError::Refused`]).
    pub async fn register_server(
        &self,
        new: NewServer,
    ) -> Result<(Server, Result<Vec<storage::Tool>, ExecuteError>), ExecuteError> {
        self.check_outbound(&new.url, self.timeout_from(new.timeout_ms)).await?;
        let server = self.inner.store.run(move |c| storage::create_server(c, &new)).await?;
        let discovered = self.refresh_server(&server.name).await;
        Ok((server, discovered))
    }

    /// Lists the server's tools again, stores and indexes them. A URL that now resolves to an
    /// address the outbound policy refuses is [`ExecuteError::Refused`].
    pub async fn refresh_server(&self, name: &str) -> Result<Vec<storage::Tool>, ExecuteError> {
        let owned = name.to_owned();
        let server = self.inner.store.run(move |c| storage::get_server(c, &owned)).await?;
        self.inner.upstream.forget(&server.name);
        let timeout = self.timeout_of(&server);
        self.check_outbound(&server.url, timeout).await?;
        let target = UpstreamTarget { name: &server.name, url: &server.url, timeout };
        let listed = self
            .inner
            .upstream
            .list_tools(&target)
            .await
            .map_err(|source| ExecuteError::Upstream { server: server.name.clone(), source })?;
        let new: Vec<NewTool> = listed
            .into_iter()
            .filter(|t| !t.name.is_empty())
            .map(|t| NewTool {
                description: t.description.clone().unwrap_or_default(),
                input_schema: t.input_schema.to_string(),
                name: t.name,
                embedding: None,
            })
            .collect();
        let stored = self.store_tools(&server.name, new).await?;
        self.forget_resolved_tools();
        self.index_server_tools(&server.name, &stored)?;
        Ok(stored)
    }

    /// Deletes a server, its tools and its endpoint mappings.
    pub async fn delete_server(&self, name: &str) -> Result<(), ExecuteError> {
        let owned = name.to_owned();
        self.inner.store.run(move |c| storage::delete_server(c, &owned)).await?;
        self.forget_resolved_tools();
        self.inner.upstream.forget(name);
        self.inner.index.remove_server(name);
        let prefix = format!("{name}{TOOL_SEPARATOR}");
        self.inner.tools.write().retain(|key, _| !key.starts_with(&prefix));
        Ok(())
    }

    /// Enables or disables one tool of a server.
    pub async fn set_tool_enabled(
        &self,
        server: &str,
        tool: &str,
        enabled: bool,
    ) -> Result<storage::Tool, ExecuteError> {
        let (s, t) = (server.to_owned(), tool.to_owned());
        let updated = self.inner.store.run(move |c| storage::set_tool_enabled(c, &s, &t, enabled)).await?;
        self.forget_resolved_tools();
        match (&updated.embedding, enabled) {
            (Some(vector), true) => {
                self.inner.index.upsert(server, tool, vector).map_err(|e| StorageError::Invalid(e.to_string()))?;
            }
            _ => {
                self.inner.index.remove(server, tool);
            }
        }
        Ok(updated)
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
            Tool::new(aggregated_name(&t.server_name, &t.name), &t.description, schema)
        }));
        Ok(out)
    }

    /// Runs a tool: a built-in one, or `{server}__{tool}` on its upstream. Every call gets a span
    /// `tools/call {tool}`, one `metamcp_tool_executions_total` and duration observation, and one
    /// audit row. A tool's own failure is an `Ok` result with `is_error`.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        origin: &CallOrigin,
    ) -> Result<CallToolResult, ExecuteError> {
        let started = Instant::now();
        let mut attributes = vec![
            KeyValue::new("mcp.method.name", "tools/call"),
            KeyValue::new("gen_ai.tool.name", name.to_owned()),
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
        ];
        if let Some(session) = &origin.session_id {
            // The id is a bearer capability: spans get its fingerprint.
            attributes.push(KeyValue::new("mcp.session.id", session_fingerprint(session)));
        }
        if let Some(id) = &origin.request_id {
            attributes.push(KeyValue::new("jsonrpc.request.id", id.clone()));
        }
        if let Some(version) = &origin.protocol_version {
            attributes.push(KeyValue::new("mcp.protocol.version", version.clone()));
        }
        if let Some(endpoint) = &origin.endpoint {
            attributes.push(KeyValue::new("metamcp.endpoint", endpoint.clone()));
        }
        let cx = self.inner.telemetry.child_context(format!("tools/call {name}"), attributes);
        let dispatched = self.dispatch(name, arguments, origin).with_context(cx.clone()).await;
        let duration = started.elapsed();
        // The audit row gets the gateway's own words only: never the result's text (a tool's
        // error text may echo its arguments) nor what an upstream said.
        let (success, error_type, error_message) = match &dispatched {
            Ok(Dispatched { result, note }) if result.is_error => (
                false,
                Some("tool_error"),
                Some(note.clone().unwrap_or_else(|| "the tool returned an error result".to_owned())),
            ),
            Ok(_) => (true, None, None),
            Err(err) => (false, Some(err.kind()), Some(err.audit_message())),
        };
        let outcome = dispatched.map(|dispatched| dispatched.result);
        let span = cx.span();
        if let Some(kind) = error_type {
            span.set_attribute(KeyValue::new("error.type", kind));
            // What an upstream or a tool says can echo its arguments: the span names only the
            // kind; the audit row keeps the message.
            let description = match &outcome {
                Ok(_) => "the tool returned an error result".to_owned(),
                Err(ExecuteError::Upstream { server, source }) => format!("upstream {server}: {}", source.kind()),
                // Violations quote argument values and property names.
                Err(ExecuteError::InvalidArguments { tool, errors }) => {
                    format!("invalid arguments for {tool}: {} violation(s)", errors.len())
                }
                Err(err) => err.audit_message(),
            };
            span.set_status(Status::error(description));
        }
        let trace_id = span.span_context().is_valid().then(|| span.span_context().trace_id().to_string());
        span.end();
        // Unknown tools are not executions: no metric label for a name a client made up.
        if !matches!(outcome, Err(ExecuteError::UnknownTool(_))) {
            self.inner.telemetry.record_tool_execution(name, success, duration);
            let row = NewExecution {
                endpoint: origin.endpoint.clone(),
                tool_name: name.to_owned(),
                success,
                duration_ms: duration.as_secs_f64() * 1000.0,
                error_message: error_message.map(|m| truncate(&m, MAX_ERROR_MESSAGE)),
                trace_id,
            };
            self.inner.audit.record(row);
        }
        outcome
    }

    async fn dispatch(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        origin: &CallOrigin,
    ) -> Result<Dispatched, ExecuteError> {
        match name {
            CALCULATOR => {
                validate_builtin(name, &arguments)?;
                let expression = arguments.get("expression").and_then(Value::as_str).unwrap_or_default();
                Ok(match calculator::evaluate(expression) {
                    Ok(value) => CallToolResult::text(format_number(value)).into(),
                    // The caller reads the whole message (it quotes their own expression); the
                    // audit row gets the summary, which quotes nothing of it.
                    Err(err) => Dispatched {
                        result: CallToolResult::error_text(err.to_string()),
                        note: Some(format!("calculator: {}", err.summary())),
                    },
                })
            }
            SEARCH_TOOLS => {
                validate_builtin(name, &arguments)?;
                let query = arguments.get("query").and_then(Value::as_str).unwrap_or_default();
                let limit = arguments.get("limit").and_then(Value::as_u64).map(|l| l as usize);
                let threshold = arguments.get("threshold").and_then(Value::as_f64);
                let results = self.search(query, limit, threshold, origin.endpoint.as_deref()).await?;
                let text = serde_json::to_string_pretty(&results).unwrap_or_default();
                let mut result = CallToolResult::text(text);
                result.structured_content = Some(json!({ "results": results }));
                Ok(result.into())
            }
            _ => self.call_upstream(name, arguments, origin).await.map(Dispatched::from),
        }
    }

    async fn call_upstream(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        origin: &CallOrigin,
    ) -> Result<CallToolResult, ExecuteError> {
        let Some((server_name, tool_name)) = name.split_once(TOOL_SEPARATOR) else {
            return Err(ExecuteError::UnknownTool(name.to_owned()));
        };
        let (s, t, endpoint) = (server_name.to_owned(), tool_name.to_owned(), origin.endpoint.clone());
        let key: ResolvedKey = (origin.endpoint.clone(), name.to_owned());
        let lookup = self
            .inner
            .store
            .run(move |c| {
                let server = match storage::get_server(c, &s) {
                    Ok(server) => server,
                    Err(StorageError::NotFound(_)) => return Ok(None),
                    Err(err) => return Err(err),
                };
                if let Some(endpoint) = endpoint {
                    if !storage::endpoint_servers(c, &endpoint)?.iter().any(|e| e.id == server.id) {
                        return Ok(None);
                    }
                }
                match storage::get_tool(c, &s, &t) {
                    Ok(tool) => Ok(Some((server, tool))),
                    Err(StorageError::NotFound(_)) => Ok(None),
                    Err(err) => Err(err),
                }
            })
            .await;
        let found = match lookup {
            Ok(found) => {
                let mut resolved = self.inner.resolved.lock();
                match &found {
                    Some(pair) => {
                        if resolved.len() >= MAX_RESOLVED {
                            resolved.clear();
                        }
                        resolved.insert(key, pair.clone());
                    }
                    None => {
                        resolved.remove(&key);
                    }
                }
                found
            }
            // The database is away: call the upstream as it was last resolved, so MCP clients
            // keep working on what needs no database write.
            Err(err) if err.is_unavailable() => match self.inner.resolved.lock().get(&key) {
                Some(pair) => {
                    tracing::debug!(tool = name, error = %err, "database unavailable; using the last resolution");
                    Some(pair.clone())
                }
                None => return Err(err.into()),
            },
            Err(err) => return Err(err.into()),
        };
        let Some((server, tool)) = found.filter(|(server, tool)| server.enabled && tool.enabled) else {
            return Err(ExecuteError::UnknownTool(name.to_owned()));
        };
        let schema: Value = serde_json::from_str(&tool.input_schema).unwrap_or_else(|_| json!({"type": "object"}));
        schema::validate(&schema, &Value::Object(arguments.clone()))
            .map_err(|errors| ExecuteError::InvalidArguments { tool: name.to_owned(), errors })?;
        let timeout = self.timeout_of(&server);
        let target = UpstreamTarget { name: &server.name, url: &server.url, timeout };
        self.inner
            .upstream
            .call_tool(&target, tool_name, arguments)
            .await
            .map_err(|source| ExecuteError::Upstream { server: server.name.clone(), source })
    }

    /// Vector search over the tools registry: the tools of `endpoint`'s servers (and the
    /// built-in ones), or of every server when `endpoint` is `None`. Records
    /// `metamcp_vector_searches_total`, the duration, result-count and query-length histograms,
    /// and a span.
    pub async fn search(
        &self,
        query: &str,
        limit: Option<usize>,
        threshold: Option<f64>,
        endpoint: Option<&str>,
    ) -> Result<Vec<SearchResult>, ExecuteError> {
        let started = Instant::now();
        let limit = limit.unwrap_or(self.inner.vector.default_limit).clamp(1, 1000);
        let threshold = threshold.unwrap_or(self.inner.vector.default_threshold).clamp(-1.0, 1.0) as f32;
        let query_chars = query.chars().count();
        let cx = self.inner.telemetry.child_context(
            "vector_search tools".to_owned(),
            vec![
                KeyValue::new("metamcp.search.limit", limit as i64),
                KeyValue::new("metamcp.search.threshold", f64::from(threshold)),
                KeyValue::new("metamcp.search.query_length", query_chars as i64),
                KeyValue::new("metamcp.search.embedder", self.inner.embedder.id().to_owned()),
            ],
        );
        let outcome = self.search_inner(query, limit, threshold, endpoint).with_context(cx.clone()).await;
        let span = cx.span();
        match &outcome {
            Ok(results) => {
                span.set_attribute(KeyValue::new("metamcp.search.results", results.len() as i64));
                self.inner.telemetry.record_vector_search(query_chars, results.len(), started.elapsed());
            }
            Err(err) => {
                span.set_attribute(KeyValue::new("error.type", err.kind()));
                // An embeddings API's error may quote the query: the span says what failed.
                span.set_status(Status::error(err.audit_message()));
                self.inner.telemetry.record_vector_search(query_chars, 0, started.elapsed());
            }
        }
        span.end();
        outcome
    }

    async fn search_inner(
        &self,
        query: &str,
        limit: usize,
        threshold: f32,
        endpoint: Option<&str>,
    ) -> Result<Vec<SearchResult>, ExecuteError> {
        let servers = match endpoint {
            Some(endpoint) => {
                let owned = endpoint.to_owned();
                let servers = self.inner.store.run(move |c| storage::endpoint_servers(c, &owned)).await?;
                let mut names: HashSet<String> = servers.into_iter().filter(|s| s.enabled).map(|s| s.name).collect();
                names.insert(BUILTIN_SERVER.to_owned());
                Some(names)
            }
            None => None,
        };
        let vectors = self.inner.embedder.embed(&[query.to_owned()]).await?;
        let Some(vector) = vectors.into_iter().next() else {
            return Ok(Vec::new());
        };
        let hits = self.inner.index.search(&vector, limit, threshold, servers.as_ref());
        let cache = self.inner.tools.read();
        Ok(hits
            .into_iter()
            .map(|hit| {
                let name = if hit.server == BUILTIN_SERVER { hit.tool.clone() } else { hit.key.clone() };
                let description = cache.get(&name).map(|t| t.description.clone()).unwrap_or_default();
                SearchResult { name, server: hit.server, description, score: hit.score }
            })
            .collect())
    }
}

/// A tool's result, and for an error result what the audit row may say of it.
struct Dispatched {
    result: CallToolResult,
    /// The gateway's own description of an error result; `None` says only that there was one.
    note: Option<String>,
}

impl From<CallToolResult> for Dispatched {
    fn from(result: CallToolResult) -> Self {
        Self { result, note: None }
    }
}

/// Validates a built-in tool's arguments against its own schema.
fn validate_builtin(name: &str, arguments: &Map<String, Value>) -> Result<(), ExecuteError> {
    let schema = builtins().iter().find(|t| t.name == name).map_or(&Value::Null, |t| &t.input_schema);
    schema::validate(schema, &Value::Object(arguments.clone()))
        .map_err(|errors| ExecuteError::InvalidArguments { tool: name.to_owned(), errors })
}

/// An integer-valued result without a fraction (`4`, not `4.0`); others as Rust prints them.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// The text contents of a result, joined.
pub fn result_text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|c| c.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
}
