//! The tools registry: registering, refreshing and deleting upstream servers, enabling their tools,
//! and keeping the vector index (and the descriptions search answers with) in step with the
//! database.

use std::collections::HashMap;
use std::time::Duration;

use super::{aggregated_name, builtin_tools, CachedTool, ExecuteError, Gateway, BUILTIN_SERVER, TOOL_SEPARATOR};
use crate::mcp::client::UpstreamTarget;
use crate::storage::{self, NewServer, NewTool, Server, StorageError};

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
            cache.insert(tool.name.clone(), CachedTool { description: tool.description.clone().unwrap_or_default() });
            rows.push((tool.name, vector));
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
        self.check_outbound(new.url.as_deref().unwrap_or_default(), self.timeout_from(new.timeout_ms)).await?;
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
        self.check_outbound(server.url.as_deref().unwrap_or_default(), timeout).await?;
        let target = UpstreamTarget { name: &server.name, url: server.url.as_deref().unwrap_or_default(), timeout };
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
}
