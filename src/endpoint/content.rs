//! What an endpoint offers beyond tools, over its servers' last discovery: `prompts/list` and
//! `prompts/get`, `resources/list`, `resources/templates/list` and `resources/read`, and
//! `completion/complete`, each named, routed and paged by the rules of [`aggregate`], and the
//! capabilities `initialize` advertises.

use std::sync::Arc;

use rmcp::model::{
    CompleteRequestParams, ErrorData, GetPromptRequestParams, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ResourceContents, ServerCapabilities,
    ServerResult,
};

use super::aggregate::{self, ListName, ResourceCatalog, ServerLists};
use super::failure::execute_error;
use super::rpc::invalid_params;
use super::state::McpState;
use crate::service::{CallOrigin, EndpointServer};
use crate::upstream::Discovery;

/// The servers of an endpoint with what they offer (those whose discovery is known).
pub(super) struct Offer {
    servers: Vec<(String, Arc<Discovery>)>,
}

impl Offer {
    /// The endpoint's enabled servers, as last discovered.
    pub(super) async fn of(state: &McpState, endpoint: &str) -> Result<Self, ErrorData> {
        let servers = state.gateway.endpoint_servers(endpoint).await.map_err(|err| execute_error(&err))?;
        state.announcer.note(endpoint, servers.iter().map(|s| s.name.clone()));
        Ok(Self::from_servers(servers))
    }

    fn from_servers(servers: Vec<EndpointServer>) -> Self {
        Self { servers: servers.into_iter().filter_map(|s| Some((s.name, s.discovery?))).collect() }
    }

    fn lists(&self) -> Vec<ServerLists<'_>> {
        self.servers
            .iter()
            .map(|(name, discovery)| ServerLists {
                server: name,
                prompts: &discovery.prompts,
                resources: &discovery.resources,
                templates: &discovery.resource_templates,
                capabilities: &discovery.capabilities,
            })
            .collect()
    }

    /// What `initialize` advertises: tools always, the rest as the servers offer it.
    pub(super) fn capabilities(&self) -> ServerCapabilities {
        aggregate::capabilities(self.servers.iter().map(|(_, discovery)| &discovery.capabilities))
    }
}

fn cursor_of(params: Option<&PaginatedRequestParams>) -> Option<&str> {
    params.and_then(|p| p.cursor.as_deref())
}

fn page<T>(
    list: ListName,
    items: Vec<T>,
    params: Option<&PaginatedRequestParams>,
    page_size: usize,
) -> Result<(Vec<T>, Option<String>), ErrorData> {
    aggregate::paginate(list, items, cursor_of(params), page_size).map_err(|err| invalid_params(err.to_string()))
}

/// `prompts/list`.
pub(super) async fn list_prompts(
    state: &McpState,
    endpoint: &str,
    params: Option<&PaginatedRequestParams>,
    page_size: usize,
) -> Result<ServerResult, ErrorData> {
    let offer = Offer::of(state, endpoint).await?;
    let (items, next) = page(ListName::Prompts, aggregate::prompts(&offer.lists()), params, page_size)?;
    let mut result = ListPromptsResult::with_all_items(items);
    result.next_cursor = next;
    Ok(ServerResult::ListPromptsResult(result))
}

/// `prompts/get`, on the server whose prompt it is.
pub(super) async fn get_prompt(
    state: &McpState,
    endpoint: &str,
    params: GetPromptRequestParams,
    origin: &CallOrigin,
) -> Result<ServerResult, ErrorData> {
    let offer = Offer::of(state, endpoint).await?;
    let lists = offer.lists();
    let Some((server, prompt)) = aggregate::route_prompt(&lists, &params.name) else {
        return Err(invalid_params(format!("Unknown prompt: {}", params.name)));
    };
    let result = state.gateway.get_prompt(server, prompt, params.arguments, origin).await;
    result.map(ServerResult::GetPromptResult).map_err(|err| execute_error(&err))
}

/// `resources/list`.
pub(super) async fn list_resources(
    state: &McpState,
    endpoint: &str,
    params: Option<&PaginatedRequestParams>,
    page_size: usize,
) -> Result<ServerResult, ErrorData> {
    let offer = Offer::of(state, endpoint).await?;
    let catalog = ResourceCatalog::build(&offer.lists());
    let (items, next) = page(ListName::Resources, catalog.resources, params, page_size)?;
    let mut result = ListResourcesResult::with_all_items(items);
    result.next_cursor = next;
    Ok(ServerResult::ListResourcesResult(result))
}

/// `resources/templates/list`.
pub(super) async fn list_resource_templates(
    state: &McpState,
    endpoint: &str,
    params: Option<&PaginatedRequestParams>,
    page_size: usize,
) -> Result<ServerResult, ErrorData> {
    let offer = Offer::of(state, endpoint).await?;
    let catalog = ResourceCatalog::build(&offer.lists());
    let (items, next) = page(ListName::ResourceTemplates, catalog.templates, params, page_size)?;
    let mut result = ListResourceTemplatesResult::with_all_items(items);
    result.next_cursor = next;
    Ok(ServerResult::ListResourceTemplatesResult(result))
}

/// `resources/read`, on the server owning the URI; the contents of a rewritten URI come back
/// under the URI asked for.
pub(super) async fn read_resource(
    state: &McpState,
    endpoint: &str,
    params: ReadResourceRequestParams,
    origin: &CallOrigin,
) -> Result<ServerResult, ErrorData> {
    let offer = Offer::of(state, endpoint).await?;
    let catalog = ResourceCatalog::build(&offer.lists());
    let Some(route) = catalog.route_read(&params.uri) else {
        return Err(ErrorData::resource_not_found(
            format!("Resource not found: no server of this endpoint offers {}", params.uri),
            None,
        ));
    };
    let mut result =
        state.gateway.read_resource(&route.server, &route.uri, origin).await.map_err(|err| execute_error(&err))?;
    if route.uri != params.uri {
        for contents in &mut result.contents {
            let uri = match contents {
                ResourceContents::TextResourceContents { uri, .. }
                | ResourceContents::BlobResourceContents { uri, .. } => uri,
                // A kind of contents a later revision adds: kept as sent.
                #[allow(unreachable_patterns)]
                _ => continue,
            };
            if *uri == route.uri {
                uri.clone_from(&params.uri);
            }
        }
    }
    Ok(ServerResult::ReadResourceResult(result))
}

/// `completion/complete`, on the server its reference points at.
pub(super) async fn complete(
    state: &McpState,
    endpoint: &str,
    params: CompleteRequestParams,
    origin: &CallOrigin,
) -> Result<ServerResult, ErrorData> {
    let offer = Offer::of(state, endpoint).await?;
    let lists = offer.lists();
    let catalog = ResourceCatalog::build(&lists);
    let (server, params) = aggregate::route_completion(&lists, &catalog, params).map_err(invalid_params)?;
    let result = state.gateway.complete(&server, params, origin).await;
    result.map(ServerResult::CompleteResult).map_err(|err| execute_error(&err))
}
