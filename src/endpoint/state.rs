//! What the MCP endpoints (and the admin API, which changes them) share as app data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

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

/// Endpoints whose server sets are remembered at most; past it the memory starts over.
const MAX_REMEMBERED: usize = 10_000;

/// The servers each endpoint had when last looked at.
#[derive(Debug, Default)]
pub struct Announcer {
    known: Mutex<HashMap<String, HashSet<String>>>,
}

impl Announcer {
    /// Remembers that `endpoint` has `servers`.
    pub(super) fn note(&self, endpoint: &str, servers: impl IntoIterator<Item = String>) {
        let mut known = self.known.lock();
        if known.len() >= MAX_REMEMBERED && !known.contains_key(endpoint) {
            known.clear();
        }
        known.insert(endpoint.to_owned(), servers.into_iter().collect());
    }

    pub(super) fn had(&self, endpoint: &str, server: &str) -> bool {
        self.known.lock().get(endpoint).is_some_and(|servers| servers.contains(server))
    }
}
