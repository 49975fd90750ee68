//! The MCP sessions of the endpoints: opened by `initialize` (or by the legacy SSE stream),
//! bound to their endpoint and to the API key that opened them, bounded in number per endpoint
//! and in idle time. A session may hold one server stream (the `GET` SSE stream, or the legacy
//! transport's event stream): a bounded queue of SSE events the session's notifications go
//! through. When a session ends (deleted, evicted, expired, its key revoked or its endpoint
//! deleted) its queue closes and the stream ends with it; its duration is recorded as
//! `mcp.server.session.duration`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use metamcp_telemetry::{McpSession, McpSide, TelemetryManager};
use parking_lot::Mutex;
use rmcp::model::ProtocolVersion;
use tokio::sync::mpsc;

use crate::auth::random_token;
use crate::mcp::protocol::session_fingerprint;

/// Events a session's stream holds before new ones are dropped (a client that does not read
/// loses notifications, never the gateway's memory).
pub(super) const STREAM_QUEUE: usize = 64;

/// Which list changes a session hears of: the lists its `initialize` advertised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Lists {
    /// `notifications/tools/list_changed`.
    pub(super) tools: bool,
    /// `notifications/prompts/list_changed`.
    pub(super) prompts: bool,
    /// `notifications/resources/list_changed`.
    pub(super) resources: bool,
}

/// One MCP session.
#[derive(Debug)]
struct Session {
    /// The revision negotiated by `initialize`.
    protocol_version: ProtocolVersion,
    /// What telemetry shows of its id (`mcp.session.id`), computed once.
    fingerprint: Arc<str>,
    created: Instant,
    last_seen: Instant,
    /// The API key (row id) that opened it, on an endpoint that requires one: only that key may
    /// use it.
    key: Option<i64>,
    /// The lists whose changes it hears of.
    lists: Lists,
    /// Its server stream, while one is open.
    stream: Option<mpsc::Sender<Bytes>>,
    /// Opened by the legacy HTTP+SSE transport: it lives as long as its event stream.
    legacy: bool,
}

impl Session {
    fn streaming(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Idle: unused for `idle` and no stream open (a legacy session is over once its stream is).
    fn expired(&self, now: Instant, idle: Duration) -> bool {
        if self.legacy {
            return !self.streaming();
        }
        now.duration_since(self.last_seen) >= idle && !self.streaming()
    }
}

/// What a request learns of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SessionView {
    /// The revision negotiated by `initialize`.
    pub(super) protocol_version: ProtocolVersion,
    /// What telemetry shows of its id (`mcp.session.id`).
    pub(super) fingerprint: Arc<str>,
    /// Whether the legacy HTTP+SSE transport opened it.
    pub(super) legacy: bool,
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamRefused {
    /// No such session (for this endpoint and key).
    Unknown,
    /// The session already has an open stream.
    AlreadyOpen,
}

/// A session that ended, for its duration metric.
struct Ended {
    protocol_version: ProtocolVersion,
    lasted: Duration,
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
    telemetry: Option<TelemetryManager>,
}

impl Sessions {
    /// At most `max_per_endpoint` sessions on each endpoint, each forgotten after `idle` without
    /// a request (and without an open stream).
    pub fn new(max_per_endpoint: usize, idle: Duration) -> Self {
        Self { map: Mutex::new(HashMap::new()), max_per_endpoint: max_per_endpoint.max(1), idle, telemetry: None }
    }

    /// The same, recording each session's duration when it ends.
    pub fn recording(mut self, telemetry: TelemetryManager) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    fn record(&self, ended: Vec<Ended>) {
        let Some(telemetry) = &self.telemetry else { return };
        for session in ended {
            let attributes = McpSession {
                protocol_version: Some(session.protocol_version.as_str()),
                network_transport: "tcp",
                error_type: None,
            };
            telemetry.record_mcp_session(McpSide::Server, &attributes, session.lasted);
        }
    }

    /// A new session of `endpoint`, opened with the API key `key` (its row id) if any. The
    /// endpoint's idle sessions are forgotten first; at its cap, its least recently used one.
    pub(super) fn create(
        &self,
        endpoint: &str,
        protocol_version: ProtocolVersion,
        key: Option<i64>,
        lists: Lists,
    ) -> String {
        self.insert(endpoint, protocol_version, key, lists, None)
    }

    /// A new legacy (HTTP+SSE) session of `endpoint`, with its stream: it lives as long as the
    /// stream. Its revision is set by its `initialize`.
    pub(super) fn create_legacy(&self, endpoint: &str, key: Option<i64>) -> (String, mpsc::Receiver<Bytes>) {
        let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
        let id = self.insert(endpoint, ProtocolVersion::V_2024_11_05, key, Lists::default(), Some(sender));
        (id, receiver)
    }

    fn insert(
        &self,
        endpoint: &str,
        protocol_version: ProtocolVersion,
        key: Option<i64>,
        lists: Lists,
        stream: Option<mpsc::Sender<Bytes>>,
    ) -> String {
        let id = random_token(16);
        let now = Instant::now();
        let legacy = stream.is_some();
        let mut ended = Vec::new();
        {
            let mut map = self.map.lock();
            let sessions = map.entry(endpoint.to_owned()).or_default();
            sessions.retain(|_, s| {
                let expired = s.expired(now, self.idle);
                if expired {
                    ended.push(Ended { protocol_version: s.protocol_version.clone(), lasted: lasted(s) });
                }
                !expired
            });
            if sessions.len() >= self.max_per_endpoint {
                if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(id, _)| id.clone()) {
                    if let Some(s) = sessions.remove(&oldest) {
                        ended.push(Ended {
                            protocol_version: s.protocol_version,
                            lasted: now.duration_since(s.created),
                        });
                    }
                }
            }
            let fingerprint = session_fingerprint(&id).into();
            let session =
                Session { protocol_version, fingerprint, created: now, last_seen: now, key, lists, stream, legacy };
            sessions.insert(id.clone(), session);
        }
        self.record(ended);
        id
    }

    /// The session `id` of `endpoint`, refreshed; `None` when unknown, idle too long, of another
    /// endpoint, or opened with another API key than `key`.
    pub(super) fn touch(&self, id: &str, endpoint: &str, key: Option<i64>) -> Option<SessionView> {
        let now = Instant::now();
        let mut map = self.map.lock();
        let sessions = map.get_mut(endpoint)?;
        let session = sessions.get_mut(id)?;
        if session.expired(now, self.idle) {
            let ended =
                sessions.remove(id).map(|s| Ended { protocol_version: s.protocol_version.clone(), lasted: lasted(&s) });
            drop(map);
            self.record(ended.into_iter().collect());
            return None;
        }
        if session.key != key {
            return None;
        }
        session.last_seen = now;
        Some(SessionView {
            protocol_version: session.protocol_version.clone(),
            fingerprint: session.fingerprint.clone(),
            legacy: session.legacy,
        })
    }

    /// Sets the revision of a legacy session (its `initialize` chose it) and the lists it hears
    /// of.
    pub(super) fn initialized(&self, id: &str, endpoint: &str, protocol_version: ProtocolVersion, lists: Lists) {
        if let Some(session) = self.map.lock().get_mut(endpoint).and_then(|s| s.get_mut(id)) {
            session.protocol_version = protocol_version;
            session.lists = lists;
        }
    }

    /// Opens the stream of session `id`: its event queue. One per session; a stream whose
    /// client went away can be opened again.
    pub(super) fn open_stream(
        &self,
        id: &str,
        endpoint: &str,
        key: Option<i64>,
    ) -> Result<mpsc::Receiver<Bytes>, StreamRefused> {
        let mut map = self.map.lock();
        let session = map
            .get_mut(endpoint)
            .and_then(|s| s.get_mut(id))
            .filter(|s| s.key == key && !s.legacy)
            .ok_or(StreamRefused::Unknown)?;
        if session.streaming() {
            return Err(StreamRefused::AlreadyOpen);
        }
        let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
        session.stream = Some(sender);
        session.last_seen = Instant::now();
        Ok(receiver)
    }

    /// Queues `event` on the stream of session `id`; `false` when it has none open or the queue
    /// is full.
    pub(super) fn send(&self, id: &str, endpoint: &str, event: Bytes) -> bool {
        let sender = self.map.lock().get(endpoint).and_then(|s| s.get(id)).and_then(|s| s.stream.clone());
        sender.is_some_and(|sender| sender.try_send(event).is_ok())
    }

    /// Queues the event `kind` says (a list change) on the streams of every session of
    /// `endpoint` that hears of it; returns how many took it.
    pub(super) fn notify(&self, endpoint: &str, hears: impl Fn(&Lists) -> bool, event: &Bytes) -> usize {
        let map = self.map.lock();
        let Some(sessions) = map.get(endpoint) else { return 0 };
        let mut delivered = 0;
        for session in sessions.values().filter(|s| hears(&s.lists)) {
            let Some(stream) = &session.stream else { continue };
            match stream.try_send(event.clone()) {
                Ok(()) => delivered += 1,
                // The client does not read: a list change is already waiting for it.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(endpoint, "a session's stream is full; a list change was not queued");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        delivered
    }

    /// The endpoints that have sessions with an open stream.
    pub(super) fn streaming_endpoints(&self) -> Vec<String> {
        let map = self.map.lock();
        map.iter().filter(|(_, sessions)| sessions.values().any(Session::streaming)).map(|(e, _)| e.clone()).collect()
    }

    /// Ends the session `id` of `endpoint` if `key` opened it.
    pub(super) fn end(&self, id: &str, endpoint: &str, key: Option<i64>) -> bool {
        let ended = {
            let mut map = self.map.lock();
            let Some(sessions) = map.get_mut(endpoint) else { return false };
            if sessions.get(id).is_none_or(|s| s.key != key) {
                return false;
            }
            let ended = sessions.remove(id);
            if sessions.is_empty() {
                map.remove(endpoint);
            }
            ended
        };
        let now = Instant::now();
        self.record(
            ended
                .map(|s| Ended { protocol_version: s.protocol_version, lasted: now.duration_since(s.created) })
                .into_iter()
                .collect(),
        );
        true
    }

    /// Ends every session of `endpoint` that the API key `key` opened (the key was revoked);
    /// returns how many.
    pub fn end_for_key(&self, endpoint: &str, key: i64) -> usize {
        let now = Instant::now();
        let mut ended = Vec::new();
        {
            let mut map = self.map.lock();
            let Some(sessions) = map.get_mut(endpoint) else { return 0 };
            sessions.retain(|_, s| {
                let revoked = s.key == Some(key);
                if revoked {
                    ended.push(Ended {
                        protocol_version: s.protocol_version.clone(),
                        lasted: now.duration_since(s.created),
                    });
                }
                !revoked
            });
        }
        let count = ended.len();
        self.record(ended);
        count
    }

    /// Ends every session of `endpoint` (it was deleted).
    pub fn end_endpoint(&self, endpoint: &str) {
        let now = Instant::now();
        let removed = self.map.lock().remove(endpoint);
        let ended = removed
            .into_iter()
            .flat_map(HashMap::into_values)
            .map(|s| Ended { protocol_version: s.protocol_version, lasted: now.duration_since(s.created) })
            .collect();
        self.record(ended);
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

/// How long an expired session lasted: until its last use (or until now, for a stream that
/// just closed).
fn lasted(session: &Session) -> Duration {
    if session.legacy {
        session.created.elapsed()
    } else {
        session.last_seen.duration_since(session.created)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix_web::web::Bytes;
    use rmcp::model::ProtocolVersion;

    use super::{Lists, Sessions, StreamRefused};

    const ALL: Lists = Lists { tools: true, prompts: true, resources: true };

    #[test]
    fn sessions_are_bounded_and_bound_to_their_endpoint() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let a = sessions.create("one", ProtocolVersion::V_2025_11_25, None, ALL);
        let b = sessions.create("one", ProtocolVersion::V_2025_11_25, None, ALL);
        assert!(sessions.touch(&a, "one", None).is_some());
        assert!(sessions.touch(&a, "two", None).is_none(), "a session belongs to its endpoint");
        let c = sessions.create("one", ProtocolVersion::V_2025_06_18, None, ALL);
        assert_eq!(sessions.len(), 2);
        assert!(sessions.touch(&b, "one", None).is_none(), "the least recently used session went first");
        assert_eq!(sessions.touch(&c, "one", None).map(|s| s.protocol_version), Some(ProtocolVersion::V_2025_06_18));
        assert!(sessions.end(&c, "one", None));
        assert!(!sessions.end(&c, "one", None));
    }

    #[test]
    fn the_cap_and_its_eviction_are_per_endpoint() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let locked = sessions.create("locked", ProtocolVersion::V_2025_11_25, Some(7), ALL);
        for _ in 0..100 {
            sessions.create("default", ProtocolVersion::V_2025_11_25, None, ALL);
        }
        assert_eq!(sessions.len(), 3, "two on default, one on locked");
        assert!(sessions.touch(&locked, "locked", Some(7)).is_some(), "default's clients cannot evict it");
    }

    #[test]
    fn a_session_is_bound_to_the_key_that_opened_it() {
        let sessions = Sessions::new(10, Duration::from_secs(60));
        let a = sessions.create("locked", ProtocolVersion::V_2025_11_25, Some(1), ALL);
        let b = sessions.create("locked", ProtocolVersion::V_2025_11_25, Some(2), ALL);
        assert!(sessions.touch(&a, "locked", Some(2)).is_none(), "another key of the endpoint");
        assert!(sessions.touch(&a, "locked", None).is_none(), "no key");
        assert!(!sessions.end(&a, "locked", Some(2)), "another key cannot end it");
        assert_eq!(sessions.open_stream(&a, "locked", Some(2)).unwrap_err(), StreamRefused::Unknown);
        assert!(sessions.touch(&a, "locked", Some(1)).is_some());
        assert_eq!(sessions.end_for_key("locked", 1), 1, "revoking the key ends its sessions");
        assert!(sessions.touch(&a, "locked", Some(1)).is_none());
        assert!(sessions.touch(&b, "locked", Some(2)).is_some(), "other keys' sessions stay");
        sessions.end_endpoint("locked");
        assert!(sessions.is_empty());
    }

    #[test]
    fn idle_sessions_expire_unless_a_stream_is_open() {
        let idle = Duration::from_millis(50);
        let sessions = Sessions::new(10, idle);
        let a = sessions.create("one", ProtocolVersion::V_2025_11_25, None, ALL);
        let b = sessions.create("one", ProtocolVersion::V_2025_11_25, None, ALL);
        let stream = sessions.open_stream(&b, "one", None).expect("a stream");
        // Past the idle limit, one touch finds it expired (a touch in time would refresh it).
        std::thread::sleep(idle * 2);
        assert!(sessions.touch(&a, "one", None).is_none(), "the session never expired");
        assert!(sessions.touch(&b, "one", None).is_some(), "a session with an open stream is not idle");
        drop(stream);
        std::thread::sleep(idle * 2);
        assert!(sessions.touch(&b, "one", None).is_none(), "its stream closed: idle again");
        assert!(sessions.is_empty(), "the expired sessions are forgotten");
    }

    #[test]
    fn one_stream_per_session_carries_the_changes_it_hears_of() {
        let sessions = Sessions::new(10, Duration::from_secs(60));
        let tools_only = Lists { tools: true, ..Lists::default() };
        let a = sessions.create("one", ProtocolVersion::V_2025_11_25, None, ALL);
        let b = sessions.create("one", ProtocolVersion::V_2025_11_25, None, tools_only);
        let _quiet = sessions.create("one", ProtocolVersion::V_2025_11_25, None, ALL);
        let mut stream_a = sessions.open_stream(&a, "one", None).unwrap();
        assert_eq!(sessions.open_stream(&a, "one", None).unwrap_err(), StreamRefused::AlreadyOpen);
        let mut stream_b = sessions.open_stream(&b, "one", None).unwrap();
        assert_eq!(sessions.streaming_endpoints(), ["one"]);

        let prompts = Bytes::from_static(b"prompts");
        assert_eq!(
            sessions.notify("one", |l| l.prompts, &prompts),
            1,
            "only a hears of prompts; the third has no stream"
        );
        assert_eq!(sessions.notify("one", |l| l.tools, &Bytes::from_static(b"tools")), 2);
        assert_eq!(sessions.notify("two", |l| l.tools, &Bytes::from_static(b"tools")), 0);
        assert_eq!(stream_a.try_recv().unwrap(), prompts);
        assert_eq!(stream_a.try_recv().unwrap(), Bytes::from_static(b"tools"));
        assert_eq!(stream_b.try_recv().unwrap(), Bytes::from_static(b"tools"));

        // Bounded: a stream nobody reads takes STREAM_QUEUE events, then drops.
        for _ in 0..super::STREAM_QUEUE + 10 {
            sessions.notify("one", |l| l.tools, &Bytes::from_static(b"x"));
        }
        assert_eq!(std::iter::from_fn(|| stream_b.try_recv().ok()).count(), super::STREAM_QUEUE);

        // A stream whose reader went away can be opened again; ending the session ends it.
        drop(stream_a);
        let mut again = sessions.open_stream(&a, "one", None).expect("reopened");
        assert!(sessions.end(&a, "one", None));
        assert!(again.try_recv().is_err() && again.is_closed(), "the session's end closes its stream");
    }

    #[test]
    fn a_legacy_session_lives_as_long_as_its_stream() {
        let sessions = Sessions::new(10, Duration::from_secs(60));
        let (id, stream) = sessions.create_legacy("one", None);
        assert_eq!(
            sessions.touch(&id, "one", None).map(|s| (s.protocol_version, s.legacy)),
            Some((ProtocolVersion::V_2024_11_05, true))
        );
        assert_eq!(
            sessions.open_stream(&id, "one", None).unwrap_err(),
            StreamRefused::Unknown,
            "its stream is the SSE one"
        );
        sessions.initialized(&id, "one", ProtocolVersion::V_2024_11_05, ALL);
        assert!(sessions.send(&id, "one", Bytes::from_static(b"answer")));
        drop(stream);
        assert!(!sessions.send(&id, "one", Bytes::from_static(b"answer")));
        assert!(sessions.touch(&id, "one", None).is_none(), "its stream closed: the session is over");
    }
}
