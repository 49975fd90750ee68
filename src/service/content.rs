//! What an endpoint's servers offer beyond tools: the servers with their discovery (prompts,
//! resources, resource templates, capabilities), and `prompts/get`, `resources/read` and
//! `completion/complete` on one of them — each only on a server attached to the caller's
//! endpoint and enabled, its session started first if the gateway has none yet.
//!
//! The endpoint decides which server a prompt name, a URI or a completion reference belongs to
//! (`endpoint::aggregate`); these calls take the server and the upstream's own name or URI.

use std::sync::Arc;

use rmcp::model::{CompleteRequestParams, CompleteResult, GetPromptResult, ReadResourceResult};
use serde_json::{Map, Value};

use super::{CallOrigin, ExecuteError, Gateway};
use crate::storage::{self, Server, StorageError};
use crate::upstream::Discovery;

/// One enabled server of an endpoint and what it offers.
#[derive(Debug, Clone)]
pub struct EndpointServer {
    /// The server's name (the prefix of its tools' and prompts' aggregated names).
    pub name: String,
    /// What it offered when last listed; `None` while its session cannot be opened.
    pub discovery: Option<Arc<Discovery>>,
}

impl Gateway {
    /// The enabled servers of `endpoint`, in the endpoint's order, with what they offer. A
    /// server the gateway has no session of yet is connected first (within its timeout); one
    /// that cannot be reached is listed with no discovery.
    pub async fn endpoint_servers(&self, endpoint: &str) -> Result<Vec<EndpointServer>, ExecuteError> {
        let owned = endpoint.to_owned();
        let servers = self.inner.store.run(move |c| storage::endpoint_servers(c, &owned)).await?;
        let mut out = Vec::with_capacity(servers.len());
        for server in servers.into_iter().filter(|s| s.enabled) {
            if self.inner.upstreams.discovery(&server.name).is_none() {
                if let Err(err) = self.ensure_connected(&server).await {
                    tracing::debug!(server = %server.name, error = %err, "an endpoint's server is not reachable");
                }
            }
            let discovery = self.inner.upstreams.discovery(&server.name);
            out.push(EndpointServer { name: server.name, discovery });
        }
        Ok(out)
    }

    /// `prompts/get` of `prompt` (the upstream's name) on `server`.
    pub async fn get_prompt(
        &self,
        server: &str,
        prompt: &str,
        arguments: Option<Map<String, Value>>,
        origin: &CallOrigin,
    ) -> Result<GetPromptResult, ExecuteError> {
        let server = self.callable_server(server, origin).await?;
        self.inner
            .upstreams
            .get_prompt(&server.name, prompt, arguments, origin.call_context())
            .await
            .map_err(|source| ExecuteError::Upstream { server: server.name.clone(), source })
    }

    /// `resources/read` of `uri` (as the upstream names it) on `server`.
    pub async fn read_resource(
        &self,
        server: &str,
        uri: &str,
        origin: &CallOrigin,
    ) -> Result<ReadResourceResult, ExecuteError> {
        let server = self.callable_server(server, origin).await?;
        self.inner
            .upstreams
            .read_resource(&server.name, uri, origin.call_context())
            .await
            .map_err(|source| ExecuteError::Upstream { server: server.name.clone(), source })
    }

    /// `completion/complete` on `server` (its reference already in the upstream's names).
    pub async fn complete(
        &self,
        server: &str,
        params: CompleteRequestParams,
        origin: &CallOrigin,
    ) -> Result<CompleteResult, ExecuteError> {
        let server = self.callable_server(server, origin).await?;
        self.inner
            .upstreams
            .complete(&server.name, params, origin.call_context())
            .await
            .map_err(|source| ExecuteError::Upstream { server: server.name.clone(), source })
    }

    /// The server, if it is enabled and (for a call through an endpoint) attached to the
    /// caller's endpoint, with a session.
    async fn callable_server(&self, name: &str, origin: &CallOrigin) -> Result<Server, ExecuteError> {
        let (owned, endpoint) = (name.to_owned(), origin.endpoint.clone());
        let found = self
            .inner
            .store
            .run(move |c| {
                let server = match storage::get_server(c, &owned) {
                    Ok(server) => server,
                    Err(StorageError::NotFound(_)) => return Ok(None),
                    Err(err) => return Err(err),
                };
                if let Some(endpoint) = endpoint {
                    if !storage::endpoint_servers(c, &endpoint)?.iter().any(|s| s.id == server.id) {
                        return Ok(None);
                    }
                }
                Ok(Some(server))
            })
            .await?;
        let server =
            found.filter(|server| server.enabled).ok_or_else(|| ExecuteError::UnknownServer(name.to_owned()))?;
        self.ensure_connected(&server).await?;
        Ok(server)
    }
}
