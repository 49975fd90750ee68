//! The MCP sessions of the endpoints: opened by `initialize`, bound to their endpoint and to the
//! API key that opened them, bounded in number per endpoint and in idle time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rmcp::model::ProtocolVersion;

use crate::auth::random_token;

/// One MCP session.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// The revision negotiated by `initialize`.
    pub(super) protocol_version: ProtocolVersion,
    last_seen: Instant,
    /// The API key (row id) that opened it, on an endpoint that requires one: only that key may
    /// use it.
    key: Option<i64>,
}

/// The MCP sessions, bounded in number per endpoint and in idle time. Each endpoint has its own
/// cap and its own eviction: clients of one endpoint (say the open `default`) cannot push out the
/// sessions of another.
#[derive(Debug)]
pub struct Sessions {
    /// Sessions by endpoint, then by id.
    map: Mutex<HashMap<String, HashMap<String, Session>>>,
    max_per_endpoint: usize,
    idle: Duration,
}

impl Sessions {
    /// At most `max_per_endpoint` sessions on each endpoint, each forgotten after `idle` without
    /// a request.
    pub fn new(max_per_endpoint: usize, idle: Duration) -> Self {
        Self { map: Mutex::new(HashMap::new()), max_per_endpoint: max_per_endpoint.max(1), idle }
    }

    /// A new session of `endpoint`, opened with the API key `key` (its row id) if any. The
    /// endpoint's idle sessions are forgotten first; at its cap, its least recently used one.
    pub(super) fn create(&self, endpoint: &str, protocol_version: ProtocolVersion, key: Option<i64>) -> String {
        let id = random_token(16);
        let mut map = self.map.lock();
        let now = Instant::now();
        let sessions = map.entry(endpoint.to_owned()).or_default();
        sessions.retain(|_, s| now.duration_since(s.last_seen) < self.idle);
        if sessions.len() >= self.max_per_endpoint {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(id, _)| id.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), Session { protocol_version, last_seen: now, key });
        id
    }

    /// The session `id` of `endpoint`, refreshed; `None` when unknown, idle too long, of another
    /// endpoint, or opened with another API key than `key`.
    pub(super) fn touch(&self, id: &str, endpoint: &str, key: Option<i64>) -> Option<Session> {
        let mut map = self.map.lock();
        let now = Instant::now();
        let sessions = map.get_mut(endpoint)?;
        let session = sessions.get_mut(id)?;
        if now.duration_since(session.last_seen) >= self.idle {
            sessions.remove(id);
            return None;
        }
        if session.key != key {
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends the session `id` of `endpoint` if `key` opened it.
    pub(super) fn end(&self, id: &str, endpoint: &str, key: Option<i64>) -> bool {
        let mut map = self.map.lock();
        let Some(sessions) = map.get_mut(endpoint) else { return false };
        if sessions.get(id).is_none_or(|s| s.key != key) {
            return false;
        }
        sessions.remove(id);
        if sessions.is_empty() {
            map.remove(endpoint);
        }
        true
    }

    /// Ends every session of `endpoint` that the API key `key` opened (the key was revoked);
    /// returns how many.
    pub fn end_for_key(&self, endpoint: &str, key: i64) -> usize {
        let mut map = self.map.lock();
        let Some(sessions) = map.get_mut(endpoint) else { return 0 };
        let before = sessions.len();
        sessions.retain(|_, s| s.key != Some(key));
        before - sessions.len()
    }

    /// Ends every session of `endpoint` (it was deleted).
    pub fn end_endpoint(&self, endpoint: &str) {
        self.map.lock().remove(endpoint);
    }

    /// Sessions held now, over every endpoint.
    pub fn len(&self) -> usize {
        self.map.lock().values().map(HashMap::len).sum()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rmcp::model::ProtocolVersion;

    use super::Sessions;

    #[test]
    fn sessions_are_bounded_and_bound_to_their_endpoint() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let a = sessions.create("one", ProtocolVersion::V_2025_11_25, None);
        let b = sessions.create("one", ProtocolVersion::V_2025_11_25, None);
        assert!(sessions.touch(&a, "one", None).is_some());
        assert!(sessions.touch(&a, "two", None).is_none(), "a session belongs to its endpoint");
        let c = sessions.create("one", ProtocolVersion::V_2025_06_18, None);
        assert_eq!(sessions.len(), 2);
        assert!(sessions.touch(&b, "one", None).is_none(), "the least recently used session went first");
        assert_eq!(sessions.touch(&c, "one", None).map(|s| s.protocol_version), Some(ProtocolVersion::V_2025_06_18));
        assert!(sessions.end(&c, "one", None));
        assert!(!sessions.end(&c, "one", None));
    }

    #[test]
    fn the_cap_and_its_eviction_are_per_endpoint() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let locked = sessions.create("locked", ProtocolVersion::V_2025_11_25, Some(7));
        for _ in 0..100 {
            sessions.create("default", ProtocolVersion::V_2025_11_25, None);
        }
        assert_eq!(sessions.len(), 3, "two on default, one on locked");
        assert!(sessions.touch(&locked, "locked", Some(7)).is_some(), "default's clients cannot evict it");
    }

    #[test]
    fn a_session_is_bound_to_the_key_that_opened_it() {
        let sessions = Sessions::new(10, Duration::from_secs(60));
        let a = sessions.create("locked", ProtocolVersion::V_2025_11_25, Some(1));
        let b = sessions.create("locked", ProtocolVersion::V_2025_11_25, Some(2));
        assert!(sessions.touch(&a, "locked", Some(2)).is_none(), "another key of the endpoint");
        assert!(sessions.touch(&a, "locked", None).is_none(), "no key");
        assert!(!sessions.end(&a, "locked", Some(2)), "another key cannot end it");
        assert!(sessions.touch(&a, "locked", Some(1)).is_some());
        assert_eq!(sessions.end_for_key("locked", 1), 1, "revoking the key ends its sessions");
        assert!(sessions.touch(&a, "locked", Some(1)).is_none());
        assert!(sessions.touch(&b, "locked", Some(2)).is_some(), "other keys' sessions stay");
        sessions.end_endpoint("locked");
        assert!(sessions.is_empty());
    }

    #[test]
    fn idle_sessions_expire() {
        let idle = Duration::from_millis(50);
        let sessions = Sessions::new(10, idle);
        let a = sessions.create("one", ProtocolVersion::V_2025_11_25, None);
        // Past the idle limit, one touch finds it expired (a touch in time would refresh it).
        std::thread::sleep(idle * 2);
        assert!(sessions.touch(&a, "one", None).is_none(), "the session never expired");
        assert!(sessions.is_empty(), "the expired session is forgotten");
    }
}
