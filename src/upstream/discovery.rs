//! What an upstream offers, listed page by page when its session starts and again when it
//! says a list changed.

use std::sync::Arc;

use rmcp::model::{
    ClientRequest, ListPromptsRequest, ListResourceTemplatesRequest, ListResourcesRequest, ListToolsRequest,
    PaginatedRequestParams, Prompt, Resource, ResourceTemplate, ServerCapabilities, ServerResult, Tool,
};

use super::request::Outgoing;
use super::{CallContext, Inner, ListKind, Slot, Target, UpstreamError};

/// Most pages of one list followed before the upstream is judged broken.
pub const MAX_PAGES: usize = 100;
/// Most items of one list accepted from one upstream.
pub const MAX_ITEMS: usize = 10_000;
/// JSON-RPC "method not found": a list the server does not serve is empty.
const METHOD_NOT_FOUND: i64 = -32601;

/// What one upstream offers.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Its tools.
    pub tools: Vec<Tool>,
    /// Its prompts.
    pub prompts: Vec<Prompt>,
    /// Its resources.
    pub resources: Vec<Resource>,
    /// Its resource templates.
    pub resource_templates: Vec<ResourceTemplate>,
    /// The capabilities it announced.
    pub capabilities: ServerCapabilities,
    /// The protocol revision of the session.
    pub protocol_version: String,
}

/// One page of some list.
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

fn params(cursor: Option<String>) -> PaginatedRequestParams {
    PaginatedRequestParams::default().with_cursor(cursor)
}

fn tools_page(cursor: Option<String>) -> Outgoing<'static> {
    let request = ClientRequest::ListToolsRequest(ListToolsRequest::with_param(params(cursor)));
    Outgoing { method: "tools/list", target: Target::None, request }
}

impl Inner {
    /// Every page of one list.
    async fn list_all<T>(
        &self,
        slot: &Slot,
        live: &super::Live,
        page: impl Fn(Option<String>) -> Outgoing<'static>,
        take: impl Fn(ServerResult) -> Option<Page<T>>,
    ) -> Result<Vec<T>, UpstreamError> {
        let mut items = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let out = page(cursor.take());
            let method = out.method;
            let result = match self.send_on(slot, live, out, CallContext::default()).await {
                Err(UpstreamError::Rpc { code: METHOD_NOT_FOUND }) => return Ok(items),
                other => other?,
            };
            let page = take(result).ok_or_else(|| super::unexpected(method))?;
            items.extend(page.items);
            if items.len() > MAX_ITEMS {
                return Err(UpstreamError::Protocol(format!("more than {MAX_ITEMS} items in {method}")));
            }
            match page.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(items),
            }
        }
        Err(UpstreamError::Protocol(format!("a list did not end within {MAX_PAGES} pages")))
    }

    pub(super) async fn list_tools(&self, slot: &Slot, live: &super::Live) -> Result<Vec<Tool>, UpstreamError> {
        self.list_all(slot, live, tools_page, |result| match result {
            ServerResult::ListToolsResult(r) => Some(Page { items: r.tools, next_cursor: r.next_cursor }),
            _ => None,
        })
        .await
    }

    pub(super) async fn list_prompts(&self, slot: &Slot, live: &super::Live) -> Result<Vec<Prompt>, UpstreamError> {
        let page = |cursor| Outgoing {
            method: "prompts/list",
            target: Target::None,
            request: ClientRequest::ListPromptsRequest(ListPromptsRequest::with_param(params(cursor))),
        };
        self.list_all(slot, live, page, |result| match result {
            ServerResult::ListPromptsResult(r) => Some(Page { items: r.prompts, next_cursor: r.next_cursor }),
            _ => None,
        })
        .await
    }

    pub(super) async fn list_resources(
        &self,
        slot: &Slot,
        live: &super::Live,
    ) -> Result<(Vec<Resource>, Vec<ResourceTemplate>), UpstreamError> {
        let page = |cursor| Outgoing {
            method: "resources/list",
            target: Target::None,
            request: ClientRequest::ListResourcesRequest(ListResourcesRequest::with_param(params(cursor))),
        };
        let resources = self
            .list_all(slot, live, page, |result| match result {
                ServerResult::ListResourcesResult(r) => Some(Page { items: r.resources, next_cursor: r.next_cursor }),
                _ => None,
            })
            .await?;
        let page = |cursor| Outgoing {
            method: "resources/templates/list",
            target: Target::None,
            request: ClientRequest::ListResourceTemplatesRequest(ListResourceTemplatesRequest::with_param(params(
                cursor,
            ))),
        };
        let templates = self
            .list_all(slot, live, page, |result| match result {
                ServerResult::ListResourceTemplatesResult(r) => {
                    Some(Page { items: r.resource_templates, next_cursor: r.next_cursor })
                }
                // An empty page of templates may parse as an empty list of resources.
                ServerResult::ListResourcesResult(r) if r.resources.is_empty() => {
                    Some(Page { items: Vec::new(), next_cursor: r.next_cursor })
                }
                _ => None,
            })
            .await?;
        Ok((resources, templates))
    }

    /// Everything the server offers, as its capabilities announce it.
    pub(super) async fn discover(&self, slot: &Slot, live: &super::Live) -> Result<Discovery, UpstreamError> {
        let info = live.peer.peer_info();
        let capabilities = info.as_ref().map(|info| info.capabilities.clone()).unwrap_or_default();
        let mut discovery = Discovery {
            capabilities: capabilities.clone(),
            protocol_version: live.protocol_version.clone(),
            ..Discovery::default()
        };
        if capabilities.tools.is_some() {
            discovery.tools = self.list_tools(slot, live).await?;
        }
        if capabilities.prompts.is_some() {
            discovery.prompts = self.list_prompts(slot, live).await?;
        }
        if capabilities.resources.is_some() {
            (discovery.resources, discovery.resource_templates) = self.list_resources(slot, live).await?;
        }
        Ok(discovery)
    }

    /// Lists `kind` again and replaces it in the server's discovery.
    pub(super) async fn refresh(&self, slot: &Slot, kind: ListKind) -> Result<Arc<Discovery>, UpstreamError> {
        let live = slot.live().ok_or(UpstreamError::NotConnected)?;
        let mut fresh = slot.discovery.read().as_deref().cloned().unwrap_or_default();
        match kind {
            ListKind::Tools => fresh.tools = self.list_tools(slot, &live).await?,
            ListKind::Prompts => fresh.prompts = self.list_prompts(slot, &live).await?,
            ListKind::Resources => {
                (fresh.resources, fresh.resource_templates) = self.list_resources(slot, &live).await?
            }
        }
        let fresh = Arc::new(fresh);
        *slot.discovery.write() = Some(fresh.clone());
        Ok(fresh)
    }
}
