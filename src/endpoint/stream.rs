//! Server-sent events from the endpoints: the session's stream (`GET /metamcp/{endpoint}/mcp`,
//! and the legacy transport's `GET /metamcp/{endpoint}/sse`), and the answer to a `POST` whose
//! request asked for progress. Events are written with `sse-stream`; a stream sends a comment
//! every [`KEEP_ALIVE`] while it has nothing else to say, so proxies keep it open and a client
//! that went away is noticed (its queue then closes). The list-changed notifications reach
//! every open session stream of an endpoint through [`announce`].

use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures_util::Stream;
use rmcp::model::{
    PromptListChangedNotification, ResourceListChangedNotification, ServerJsonRpcMessage, ServerNotification,
    ToolListChangedNotification,
};
use sse_stream::Sse;
use tokio::sync::mpsc;

use super::rpc::{self, MCP_SESSION_ID};
use super::sessions::{Lists, Sessions};

/// How often a quiet stream sends a keep-alive comment.
pub(super) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The keep-alive comment.
const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// `message` as one SSE `message` event.
pub(super) fn event(message: &ServerJsonRpcMessage) -> Bytes {
    named_event("message", String::from_utf8_lossy(&rpc::to_bytes(message)).into_owned())
}

/// An SSE event named `name` carrying `data` (one line: JSON is written without newlines).
pub(super) fn named_event(name: &str, data: String) -> Bytes {
    Sse::default().event(name).data(data).into()
}

/// The events of `receiver` until it closes, with a keep-alive comment whenever `keep_alive`
/// passes without one.
fn events(receiver: mpsc::Receiver<Bytes>, keep_alive: Duration) -> impl Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::unfold(receiver, move |mut receiver| async move {
        match tokio::time::timeout(keep_alive, receiver.recv()).await {
            Ok(Some(event)) => Some((Ok(event), receiver)),
            Ok(None) => None,
            Err(_) => Some((Ok(Bytes::from_static(KEEP_ALIVE_COMMENT)), receiver)),
        }
    })
}

/// A `200 text/event-stream` answer carrying the events of `receiver` until it closes.
pub(super) fn response(receiver: mpsc::Receiver<Bytes>, session: Option<&str>) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    builder
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies that buffer (nginx) would hold the events back.
        .insert_header(("x-accel-buffering", "no"));
    if let Some(id) = session {
        builder.insert_header((MCP_SESSION_ID, id));
    }
    builder.streaming(events(receiver, KEEP_ALIVE))
}

/// Whether an `Accept` header takes `text/event-stream`.
pub(super) fn accepts_events(headers: &header::HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|media| {
        let media = media.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case("text/event-stream") || media == "*/*" || media.eq_ignore_ascii_case("text/*")
    })
}

/// Which list changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Changed {
    /// The tools.
    Tools,
    /// The prompts.
    Prompts,
    /// The resources (and resource templates).
    Resources,
}

impl Changed {
    fn notification(self) -> ServerNotification {
        match self {
            Self::Tools => ToolListChangedNotification::default().into(),
            Self::Prompts => PromptListChangedNotification::default().into(),
            Self::Resources => ResourceListChangedNotification::default().into(),
        }
    }

    fn heard_by(self, lists: &Lists) -> bool {
        match self {
            Self::Tools => lists.tools,
            Self::Prompts => lists.prompts,
            Self::Resources => lists.resources,
        }
    }
}

/// Sends `notifications/{kind}/list_changed` to every open stream of `endpoint` whose session
/// advertised that list; returns how many streams took it.
pub(super) fn announce(sessions: &Sessions, endpoint: &str, changed: Changed) -> usize {
    let event = event(&ServerJsonRpcMessage::notification(changed.notification()));
    sessions.notify(endpoint, |lists| changed.heard_by(lists), &event)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix_web::http::header::{HeaderMap, HeaderValue, ACCEPT};
    use futures_util::StreamExt as _;
    use rmcp::model::ProtocolVersion;

    use super::*;

    #[test]
    fn events_are_sse_message_events_of_one_json_line() {
        let bytes = event(&ServerJsonRpcMessage::notification(Changed::Tools.notification()));
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"
        );
    }

    #[test]
    fn accept_headers_are_read_as_media_ranges() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
            accepts_events(&headers)
        };
        assert!(accepts("text/event-stream"));
        assert!(accepts("application/json, text/event-stream;q=0.9"));
        assert!(accepts("*/*"));
        assert!(!accepts("application/json"));
        assert!(!accepts_events(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_quiet_stream_sends_keep_alives_and_ends_with_its_queue() {
        let (sender, receiver) = mpsc::channel(4);
        let mut stream = Box::pin(events(receiver, Duration::from_millis(20)));
        assert_eq!(stream.next().await.unwrap().unwrap(), Bytes::from_static(KEEP_ALIVE_COMMENT));
        sender.send(Bytes::from_static(b"e")).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), Bytes::from_static(b"e"));
        drop(sender);
        assert!(stream.next().await.is_none());
    }

    #[test]
    fn list_changes_reach_the_sessions_that_advertised_the_list() {
        let sessions = Sessions::new(10, Duration::from_secs(60));
        let with_prompts = Lists { tools: true, prompts: true, resources: false };
        let id = sessions.create("e", ProtocolVersion::V_2025_11_25, None, with_prompts);
        let mut stream = sessions.open_stream(&id, "e", None).unwrap();
        assert_eq!(announce(&sessions, "e", Changed::Prompts), 1);
        assert_eq!(announce(&sessions, "e", Changed::Resources), 0, "it did not advertise resources");
        let received = stream.try_recv().unwrap();
        assert!(std::str::from_utf8(&received).unwrap().contains("notifications/prompts/list_changed"));
    }
}
