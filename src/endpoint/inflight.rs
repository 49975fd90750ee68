//! The requests of each session still running, so a client's `notifications/cancelled` can stop
//! one: its cancellation token reaches the upstream call (which sends the upstream its own
//! `notifications/cancelled` and ends). An entry lives as long as its [`Running`] guard.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rmcp::model::RequestId;
use tokio_util::sync::CancellationToken;

/// Requests in flight at most, over every session; past it new requests still run, but cannot
/// be cancelled (a client cannot make the gateway hold unbounded memory).
const MAX_IN_FLIGHT: usize = 65_536;

/// The running requests, by session and request id.
#[derive(Debug, Default)]
pub struct InFlight {
    map: Mutex<HashMap<(String, RequestId), CancellationToken>>,
}

/// A running request's registration: dropped when the request is done.
#[derive(Debug)]
pub(super) struct Running {
    registry: Arc<InFlight>,
    key: Option<(String, RequestId)>,
    token: CancellationToken,
}

impl Running {
    /// The request's cancellation.
    pub(super) fn token(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.registry.map.lock().remove(&key);
        }
    }
}

impl InFlight {
    /// Registers request `id` of session `session` as running. A second request with the same id
    /// in the same session keeps the first one's entry (ids are unique per session in JSON-RPC;
    /// a client reusing one cannot cancel the other's call).
    pub(super) fn start(self: &Arc<Self>, session: &str, id: &RequestId) -> Running {
        let token = CancellationToken::new();
        let key = (session.to_owned(), id.clone());
        let mut map = self.map.lock();
        let registered = map.len() < MAX_IN_FLIGHT && !map.contains_key(&key);
        if registered {
            map.insert(key.clone(), token.clone());
        }
        Running { registry: self.clone(), key: registered.then_some(key), token }
    }

    /// Cancels request `id` of session `session`; `false` when it is not running.
    pub(super) fn cancel(&self, session: &str, id: &RequestId) -> bool {
        let token = self.map.lock().get(&(session.to_owned(), id.clone())).cloned();
        token.map(|token| token.cancel()).is_some()
    }

    /// Cancels every running request of session `session` (it ended); returns how many.
    pub(super) fn cancel_session(&self, session: &str) -> usize {
        let map = self.map.lock();
        let tokens: Vec<&CancellationToken> = map.iter().filter(|((s, _), _)| s == session).map(|(_, t)| t).collect();
        tokens.iter().for_each(|token| token.cancel());
        tokens.len()
    }

    /// Requests running now.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether none is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rmcp::model::RequestId;

    use super::InFlight;

    #[test]
    fn a_running_request_can_be_cancelled_by_its_session_only_until_it_is_done() {
        let inflight = Arc::new(InFlight::default());
        let id = RequestId::Number(7);
        let running = inflight.start("s1", &id);
        assert!(!inflight.cancel("s2", &id), "another session's request of the same id");
        assert!(!running.token().is_cancelled());
        assert!(inflight.cancel("s1", &id));
        assert!(running.token().is_cancelled());
        drop(running);
        assert!(inflight.is_empty(), "done: forgotten");
        assert!(!inflight.cancel("s1", &id));
    }

    #[test]
    fn a_session_that_ends_cancels_what_it_still_runs() {
        let inflight = Arc::new(InFlight::default());
        let (a, b) = (inflight.start("s1", &RequestId::Number(1)), inflight.start("s1", &RequestId::Number(2)));
        let other = inflight.start("s2", &RequestId::Number(1));
        assert_eq!(inflight.cancel_session("s1"), 2);
        assert!(a.token().is_cancelled() && b.token().is_cancelled());
        assert!(!other.token().is_cancelled());
    }

    #[test]
    fn a_reused_id_does_not_take_over_the_running_request() {
        let inflight = Arc::new(InFlight::default());
        let id = RequestId::String("x".into());
        let first = inflight.start("s", &id);
        let second = inflight.start("s", &id);
        drop(second);
        assert_eq!(inflight.len(), 1, "the first one's entry stays");
        assert!(inflight.cancel("s", &id));
        assert!(first.token().is_cancelled());
    }
}
