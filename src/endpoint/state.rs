//! What the MCP endpoints (and the admin API, which changes them) share as app data.

use std::sync::Arc;

use super::auth::KeyUsage;
use super::cache::EndpointCache;
use super::sessions::Sessions;
use crate::service::Gateway;

/// State of the MCP endpoints.
#[derive(Debug, Clone)]
pub struct McpState {
    /// The gateway.
    pub gateway: Gateway,
    /// The sessions.
    pub sessions: Arc<Sessions>,
    /// The endpoint cache.
    pub endpoints: Arc<EndpointCache>,
    /// When the API keys were last used.
    pub key_usage: Arc<KeyUsage>,
}
