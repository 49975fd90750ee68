//! The change bus: what changed the lists (tools, prompts, resources) of which servers or
//! endpoints, for the endpoints to tell their sessions (`notifications/*/list_changed`).
//!
//! The registry announces its own changes (a server registered, refreshed or deleted, a tool
//! enabled or disabled); the admin API announces attach and detach; an upstream's
//! `list_changed` is forwarded here, after a tools change has refreshed the stored tools and the
//! vector index (so a client that lists again sees the new tools).

use tokio::sync::broadcast;

use super::Gateway;
use crate::upstream::{ListKind, UpstreamEvent};

/// How many changes a slow listener may fall behind before it misses some (it is told so by
/// `RecvError::Lagged`, and should then treat every list as changed).
pub(super) const CHANGE_CAPACITY: usize = 1024;

/// Every kind of list.
pub(super) const ALL_KINDS: [ListKind; 3] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources];

/// A change of the lists some endpoints offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The server whose lists changed: every endpoint it is attached to is concerned.
    pub server: Option<String>,
    /// The endpoint concerned (attach, detach: that endpoint only). With neither a server nor
    /// an endpoint, every endpoint is concerned.
    pub endpoint: Option<String>,
    /// Which lists changed.
    pub kinds: Vec<ListKind>,
}

impl Change {
    /// Every list of `server` changed.
    pub fn server(server: &str) -> Self {
        Self { server: Some(server.to_owned()), endpoint: None, kinds: ALL_KINDS.to_vec() }
    }
}

impl Gateway {
    /// Tells every listener of [`Gateway::changes`] (no listener: nothing happens).
    pub fn announce(&self, change: Change) {
        let _ = self.inner.changes.send(change);
    }

    /// The changes from now on.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// Follows the upstreams' events for as long as the gateway lives: a tools change refreshes
    /// the stored tools, then every list change is announced.
    pub(super) fn follow_upstreams(&self) {
        let mut events = self.inner.upstreams.subscribe();
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "upstream events were missed; announcing every list as changed");
                        let Some(inner) = weak.upgrade() else { return };
                        let _ = inner.changes.send(Change { server: None, endpoint: None, kinds: ALL_KINDS.to_vec() });
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                let gateway = Gateway { inner };
                match event {
                    UpstreamEvent::ListChanged { server, kind } => {
                        if kind == ListKind::Tools {
                            if let Err(err) = gateway.sync_tools(&server).await {
                                tracing::warn!(server = %server, error = %err, "the changed tools could not be stored");
                            }
                        }
                        gateway.announce(Change { server: Some(server), endpoint: None, kinds: vec![kind] });
                    }
                    UpstreamEvent::Restarted { server } => {
                        tracing::info!(server = %server, "upstream session restarted");
                    }
                }
            }
        });
    }
}
