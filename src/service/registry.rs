//! The tools registry: registering, refreshing and deleting upstream servers (connecting and
//! disconnecting their sessions), enabling their tools, and keeping the vector index (and the
//! descriptions search answers with) in step with the database. Every change is announced on
//! the change bus.

use std::collections::HashMap;
use std::time::Duration;

use super::changes::Change;
use super::{aggregated_name, builtin_tools, CachedTool, ExecuteError, Gateway, BUILTIN_SERVER, TOOL_SEPARATOR};
use crate::storage::{self, NewServer, NewTool, Server, StorageError};
use crate::upstream::{ListKind, ServerSpec};

/// The text an embedder sees for a tool.
fn embedding_text(name: &str, description: &str) -> String {
    format!("{name}: {description}")
}

impl Gateway {
    pub(super) async fn index_builtins(&self) -> Result<(), ExecuteError> {
        let builtins = builtin_tools();
        let texts: Vec<String> =
            builtins.iter().map(|t| embedding_text(&t.name, t.description.as_deref().unwrap_or(""))).collect();
        let vectors = self.inner.embedder.embed(&texts).await?;
        let mut rows = Vec::new();
        let mut cache = self.inner.tools.write();
        for (tool, vector) in builtins.into_iter().zip(vectors) {
            let description = tool.description.as_deref().unwrap_or_default().to_owned();
            cache.insert(tool.name.to_string(), CachedTool { description });
            rows.push((tool.name.to_string(), vector));
        }
        drop(cache);
        self.inner.index.replace_server(BUILTIN_SERVER, &rows).map_err(|e| StorageError::Invalid(e.to_string()))?;
        Ok(())
    }

    pub(super) async fn load_index(&self) -> Result<(), ExecuteError> {
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
        let Ok(url) = url::Url::parse(url) else { return Ok(()) };
        Ok(self.inner.policy.check_url(&url, timeout).await?)
    }

    /// Registers an upstream server, starts its session and discovers what it offers. A server
    /// that does not answer is still registered (and tried again with backoff); the discovery
    /// error is returned beside it. A URL that is, or resolves to, an address the outbound
    /// policy refuses is not registered ([`ExecuteError::Refused`]).
    pub async fn register_server(
        &self,
        new: NewServer,
    ) -> Result<(Server, Result<Vec<storage::Tool>, ExecuteError>), ExecuteError> {
        if let Some(url) = new.url.as_deref() {
            self.check_outbound(url, self.timeout_from(new.timeout_ms)).await?;
        }
        let server = self.inner.store.run(move |c| storage::create_server(c, &new)).await?;
        let discovered = self.refresh_server(&server.name).await;
        Ok((server, discovered))
    }

    /// Starts the server's session again, lists everything it offers, stores and indexes its
    /// tools. A URL that now resolves to an address the outbound policy refuses is
    /// [`ExecuteError::Refused`]. A disabled server is disconnected and keeps its stored tools.
    pub async fn refresh_server(&self, name: &str) -> Result<Vec<storage::Tool>, ExecuteError> {
        let owned = name.to_owned();
        let server = self.inner.store.run(move |c| storage::get_server(c, &owned)).await?;
        let timeout = self.timeout_of(&server);
        let spec = server.spec();
        if let Some(url) = spec.url() {
            self.check_outbound(url, timeout).await?;
        }
        if !server.enabled {
            self.inner.upstreams.disconnect(&server.name).await;
            self.announce(Change::server(&server.name));
            let owned = server.name.clone();
            let filter = storage::ToolFilter { server: Some(owned), ..Default::default() };
            let page = storage::Page { limit: i64::MAX, offset: 0 };
            return Ok(self.inner.store.run(move |c| storage::list_tools(c, &filter, page)).await?.items);
        }
        let connected = self.inner.upstreams.connect(&server.name, &spec, timeout).await;
        // Whatever the outcome, what the endpoints offer may have changed.
        self.announce(Change::server(&server.name));
        let discovery = connected.map_err(|source| ExecuteError::Upstream { server: server.name.clone(), source })?;
        self.store_discovered_tools(&server.name, &discovery.tools).await
    }

    /// Stores the tools an upstream now lists (after its `tools/list_changed`).
    pub(super) async fn sync_tools(&self, server: &str) -> Result<(), ExecuteError> {
        let Some(discovery) = self.inner.upstreams.discovery(server) else { return Ok(()) };
        self.store_discovered_tools(server, &discovery.tools).await.map(|_| ())
    }

    /// Replaces the server's stored tools with `listed` and indexes them.
    async fn store_discovered_tools(
        &self,
        server: &str,
        listed: &[rmcp::model::Tool],
    ) -> Result<Vec<storage::Tool>, ExecuteError> {
        let new: Vec<NewTool> = listed
            .iter()
            .filter(|t| !t.name.is_empty())
            .map(|t| NewTool {
                name: t.name.to_string(),
                description: t.description.as_deref().unwrap_or_default().to_owned(),
                input_schema: serde_json::Value::Object(t.input_schema.as_ref().clone()).to_string(),
                embedding: None,
            })
            .collect();
        let stored = self.store_tools(server, new).await?;
        self.forget_resolved_tools();
        self.index_server_tools(server, &stored)?;
        Ok(stored)
    }

    /// Connects every enabled stored server, in the background: a server that is slow to
    /// answer delays nothing; one that does not is tried again with backoff.
    pub(super) async fn connect_stored_servers(&self) {
        let page = storage::Page { limit: i64::MAX, offset: 0 };
        let servers = match self.inner.store.run(move |c| storage::list_servers(c, page)).await {
            Ok(listed) => listed.items,
            Err(err) => {
                tracing::warn!(error = %err, "the stored servers could not be read; they connect on first use");
                return;
            }
        };
        for server in servers.into_iter().filter(|s| s.enabled) {
            let gateway = self.clone();
            tokio::spawn(async move {
                let timeout = gateway.timeout_of(&server);
                match gateway.inner.upstreams.connect(&server.name, &server.spec(), timeout).await {
                    Ok(discovery) => {
                        if let Err(err) = gateway.store_discovered_tools(&server.name, &discovery.tools).await {
                            tracing::warn!(server = %server.name, error = %err, "the discovered tools could not be stored");
                        }
                        gateway.announce(Change::server(&server.name));
                    }
                    Err(err) => {
                        tracing::warn!(server = %server.name, error = %err, "the upstream server could not be connected")
                    }
                }
            });
        }
    }

    /// The server's session, started when there is none: what a call does before it needs a
    /// server the gateway may not have connected yet.
    pub(super) async fn ensure_connected(&self, server: &Server) -> Result<(), ExecuteError> {
        let spec: ServerSpec = server.spec();
        self.inner
            .upstreams
            .ensure(&server.name, &spec, self.timeout_of(server))
            .await
            .map_err(|source| ExecuteError::Upstream { server: server.name.clone(), source })
    }

    /// Deletes a server, its tools and its endpoint mappings, and ends its session.
    pub async fn delete_server(&self, name: &str) -> Result<(), ExecuteError> {
        let owned = name.to_owned();
        self.inner.store.run(move |c| storage::delete_server(c, &owned)).await?;
        self.forget_resolved_tools();
        self.inner.upstreams.disconnect(name).await;
        self.inner.index.remove_server(name);
        let prefix = format!("{name}{TOOL_SEPARATOR}");
        self.inner.tools.write().retain(|key, _| !key.starts_with(&prefix));
        self.announce(Change::server(name));
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
        self.announce(Change { server: Some(server.to_owned()), endpoint: None, kinds: vec![ListKind::Tools] });
        Ok(updated)
    }
}
