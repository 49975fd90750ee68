//! What the MCP endpoints (and the admin API, which changes them) share as app data.

use std::sync::Arc;

use super::announce::Announcer;
use super::auth::KeyUsage;
use super::cache::EndpointCache;
use super::inflight::InFlight;
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
    /// The requests running now, for cancellation.
    pub inflight: Arc<InFlight>,
    /// The servers of each endpoint as last seen, for list-change announcements.
    pub announcer: Arc<Announcer>,
}

impl McpState {
    /// The state of the endpoints of `gateway`, with `sessions`.
    pub fn new(gateway: Gateway, sessions: Arc<Sessions>) -> Self {
        Self {
            gateway,
            sessions,
            endpoints: Arc::default(),
            key_usage: Arc::default(),
            inflight: Arc::default(),
            announcer: Arc::default(),
        }
    }
}
