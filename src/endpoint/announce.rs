//! List changes told to the sessions: the gateway's change bus ([`Gateway::changes`]) says which
//! lists of which server or endpoint changed (a server registered, refreshed, deleted, attached
//! or detached, a tool enabled or disabled, an upstream's own `list_changed`); every open stream
//! of each endpoint concerned gets `notifications/{tools,prompts,resources}/list_changed` for the
//! lists its session advertised. The servers an endpoint had when last looked at are remembered,
//! so a server deleted (and so no longer attached anywhere) still reaches its endpoints.
//!
//! [`Gateway::changes`]: crate::service::Gateway::changes

use tokio::sync::broadcast::error::RecvError;

use super::state::McpState;
use super::stream::{self, Changed};
use crate::service::Change;
use crate::storage;
use crate::upstream::ListKind;

fn changed(kind: ListKind) -> Changed {
    match kind {
        ListKind::Tools => Changed::Tools,
        ListKind::Prompts => Changed::Prompts,
        ListKind::Resources => Changed::Resources,
    }
}

impl McpState {
    /// Follows the gateway's change bus for as long as it lives, telling the sessions.
    pub fn follow_changes(&self) {
        let mut changes = self.gateway.changes();
        let state = self.clone();
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) => {
                        state.announce(&change).await;
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "list changes were missed; telling every session that all lists changed"
                        );
                        let everything = Change {
                            server: None,
                            endpoint: None,
                            kinds: vec![ListKind::Tools, ListKind::Prompts, ListKind::Resources],
                        };
                        state.announce(&everything).await;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// Tells the open streams of the endpoints `change` concerns; returns how many streams got
    /// a notification.
    pub(super) async fn announce(&self, change: &Change) -> usize {
        let streaming = self.sessions.streaming_endpoints();
        let concerned: Vec<String> = match (&change.endpoint, &change.server) {
            (Some(endpoint), _) => streaming.into_iter().filter(|e| e == endpoint).collect(),
            (None, None) => streaming,
            (None, Some(server)) => self.endpoints_of(server, streaming).await,
        };
        let mut delivered = 0;
        for endpoint in &concerned {
            for kind in &change.kinds {
                delivered += stream::announce(&self.sessions, endpoint, changed(*kind));
            }
        }
        if delivered > 0 {
            tracing::debug!(endpoints = concerned.len(), delivered, "list changes announced");
        }
        delivered
    }

    /// Which of `endpoints` have (or had, when last looked at) `server`.
    async fn endpoints_of(&self, server: &str, endpoints: Vec<String>) -> Vec<String> {
        if endpoints.is_empty() {
            return endpoints;
        }
        let lookup = endpoints.clone();
        let attached = self
            .gateway
            .store()
            .run(move |c| {
                lookup
                    .into_iter()
                    .map(|endpoint| Ok((storage::endpoint_servers(c, &endpoint)?, endpoint)))
                    .collect::<Result<Vec<_>, storage::StorageError>>()
            })
            .await;
        match attached {
            Ok(attached) => attached
                .into_iter()
                .filter_map(|(servers, endpoint)| {
                    let has = servers.iter().any(|s| s.name == server) || self.announcer.had(&endpoint, server);
                    self.announcer.note(&endpoint, servers.into_iter().map(|s| s.name));
                    has.then_some(endpoint)
                })
                .collect(),
            // Without the database, the remembered server sets decide.
            Err(err) => {
                tracing::debug!(error = %err, "endpoint servers unavailable; announcing by the remembered ones");
                endpoints.into_iter().filter(|endpoint| self.announcer.had(endpoint, server)).collect()
            }
        }
    }
}
