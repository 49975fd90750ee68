//! The legacy HTTP+SSE client transport of MCP (protocol version 2024-11-05), as an `rmcp`
//! [`Transport`], for upstream servers that speak nothing newer. `rmcp` no longer ships it.
//!
//! The protocol: `GET` on the server's SSE URL opens an event stream whose first event,
//! `endpoint`, carries the URL to `POST` messages to (usually a path with a session id in its
//! query). Every message of the server — responses, requests, notifications — arrives as a
//! `message` event on that stream; each `POST` answers `202 Accepted` with no message in its body.
//!
//! What the transport holds to, whatever the upstream sends:
//! - **Same origin.** The `endpoint` URL is resolved against the SSE URL and must have its
//!   origin (scheme, host, port) and the same credentials, or the connection is refused: an
//!   upstream cannot send our messages (and the headers that ride on them) anywhere else. A
//!   client that follows no redirects keeps it so (the upstreams' [`client`](super::http::client)).
//! - **Bounded events, linear time.** Events are parsed by `sse-stream` (one pass over each byte,
//!   line buffers that grow by amortised doubling); an event whose retained lines pass
//!   [`LegacySseConfig::max_event_bytes`] ends the stream, so memory stays bounded too.
//! - **Time bounds.** The `endpoint` event must arrive within
//!   [`LegacySseConfig::endpoint_timeout`]; each `POST` must complete within
//!   [`LegacySseConfig::post_timeout`]. The stream itself is open-ended, as the protocol wants.
//! - **Headers per request.** [`LegacySseConfig::headers`] go on every request;
//!   [`LegacySseConfig::request_headers`] adds headers computed from each message — by default
//!   `traceparent` and `tracestate` copied from the message's `params._meta`
//!   ([`trace_context_from_meta`]), so HTTP-level tracing sees what the MCP layer carries.
//! - **Clean close.** [`Transport::close`] drops the stream (the server ends the session when
//!   its stream closes) and fails the `POST`s still in flight; so does dropping the transport.
//! - **Nothing secret in errors.** Errors name origins and statuses, never a URL (the endpoint's
//!   query holds the session id) and never a message's content.
//!
//! The module depends on `rmcp`, `reqwest`, `sse-stream` and `memchr` only, no other gateway code.

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, Stream, StreamExt as _};
use metamcp_telemetry_actors::internal_events::LogLimit;
use reqwest_upstream::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use reqwest_upstream::{StatusCode, Url};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleClient;
use serde_json::Value;
use sse_stream::{Sse, SseStream};
use tokio::sync::watch;

/// The default bound on one event of the stream: 16 MiB, as for Streamable HTTP upstreams.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// The default time the stream has to announce its `endpoint`.
pub const DEFAULT_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on one `POST`.
pub const DEFAULT_POST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a `POST`'s answer is read (and discarded) so its connection can be reused.
const POST_BODY_DRAIN_BYTES: usize = 4096;
/// The longest `tracestate` passed on, in bytes (the W3C recommendation for propagators).
const MAX_TRACESTATE_BYTES: usize = 512;

/// Headers computed for one request: called with `None` for the `GET` that opens the stream and
/// with the message, as it goes on the wire, for each `POST`. What it returns replaces the
/// same-named [`LegacySseConfig::headers`].
pub type RequestHeaders = Arc<dyn Fn(Option<&Value>) -> HeaderMap + Send + Sync>;

/// Where and how to reach one legacy SSE server.
#[derive(Clone)]
pub struct LegacySseConfig {
    /// The URL of the event stream (the `GET`), e.g. `http://127.0.0.1:8000/sse`.
    pub url: Url,
    /// Headers sent with every request, the `GET` and each `POST`.
    pub headers: HeaderMap,
    /// Headers computed per request; [`trace_context_from_meta`] unless replaced.
    pub request_headers: Option<RequestHeaders>,
    /// How long the server may take to answer the `GET` and send its `endpoint` event.
    pub endpoint_timeout: Duration,
    /// How long one `POST` may take, from connecting to its answer.
    pub post_timeout: Duration,
    /// The largest event the stream may send, in bytes of its lines.
    pub max_event_bytes: usize,
}

impl LegacySseConfig {
    /// The defaults for the stream at `url`.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            headers: HeaderMap::new(),
            request_headers: Some(Arc::new(trace_context_from_meta)),
            endpoint_timeout: DEFAULT_ENDPOINT_TIMEOUT,
            post_timeout: DEFAULT_POST_TIMEOUT,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

impl fmt::Debug for LegacySseConfig {
    /// Origins and bounds only: the URL and the headers may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacySseConfig")
            .field("origin", &self.url.origin().ascii_serialization())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("request_headers", &self.request_headers.is_some())
            .field("endpoint_timeout", &self.endpoint_timeout)
            .field("post_timeout", &self.post_timeout)
            .field("max_event_bytes", &self.max_event_bytes)
            .finish()
    }
}

/// `traceparent` and `tracestate` from the message's `params._meta`, as HTTP headers (none for
/// the `GET`, or when the message carries none). A `traceparent` that is not W3C-shaped, or an
/// oversized `tracestate`, is not passed on.
pub fn trace_context_from_meta(message: Option<&Value>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(meta) = message.and_then(|m| m.get("params")).and_then(|p| p.get("_meta")) else {
        return headers;
    };
    if let Some(traceparent) = meta.get("traceparent").and_then(Value::as_str).filter(|t| is_traceparent(t)) {
        if let Ok(value) = HeaderValue::from_str(traceparent) {
            headers.insert(HeaderName::from_static("traceparent"), value);
        }
        let tracestate = meta.get("tracestate").and_then(Value::as_str).filter(|t| t.len() <= MAX_TRACESTATE_BYTES);
        if let Some(value) = tracestate.and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert(HeaderName::from_static("tracestate"), value);
        }
    }
    headers
}

/// `version-traceid-parentid-flags` in lowercase hex (2-32-16-2), version not `ff`.
fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && (parts.len() == 4 || parts[0] != "00")
}

/// Why a legacy SSE connection could not be opened or a message not be sent.
#[derive(Debug, thiserror::Error)]
pub enum LegacySseError {
    /// The HTTP client could not be built (its TLS backend did not start).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest_upstream::Error),
    /// The SSE URL is not `http` or `https`.
    #[error("the SSE URL must be http or https, not {scheme}")]
    UnsupportedScheme {
        /// The scheme of the URL.
        scheme: String,
    },
    /// The `GET` that opens the stream failed.
    #[error("cannot open the event stream: {0}")]
    Open(#[source] reqwest_upstream::Error),
    /// The `GET` answered something other than 200.
    #[error("the event stream answered HTTP {status}")]
    OpenStatus {
        /// The status.
        status: StatusCode,
    },
    /// The `GET` answered another content type.
    #[error("the event stream answered with content type {content_type:?}, not text/event-stream")]
    NotEventStream {
        /// The `Content-Type` received (empty when absent).
        content_type: String,
    },
    /// No `endpoint` event in time.
    #[error("the event stream sent no endpoint event within {timeout:?}")]
    EndpointTimeout {
        /// The bound.
        timeout: Duration,
    },
    /// The stream ended, or broke, before its `endpoint` event.
    #[error("the event stream ended before its endpoint event")]
    EndedBeforeEndpoint,
    /// A message came before the `endpoint` event.
    #[error("the event stream sent a message before its endpoint event")]
    MessageBeforeEndpoint,
    /// The `endpoint` event does not hold a URL reference.
    #[error("the endpoint event does not hold a URL: {0}")]
    InvalidEndpoint(#[source] url::ParseError),
    /// The `endpoint` event names another origin.
    #[error("refused: the endpoint event names origin {endpoint}, not the stream's origin {stream}")]
    CrossOriginEndpoint {
        /// The origin of the endpoint URL.
        endpoint: String,
        /// The origin of the SSE URL.
        stream: String,
    },
    /// The `endpoint` event names credentials other than the SSE URL's.
    #[error("refused: the endpoint event names credentials the SSE URL does not")]
    EndpointCredentials,
    /// An event passed [`LegacySseConfig::max_event_bytes`].
    #[error("an event of the stream exceeds {max} bytes")]
    EventTooLarge {
        /// The bound.
        max: usize,
    },
    /// The stream is not valid server-sent events.
    #[error("the event stream is malformed: {0}")]
    Malformed(String),
    /// The message could not be encoded.
    #[error("cannot encode the message: {0}")]
    Encode(#[source] serde_json::Error),
    /// The `POST` failed on the way.
    #[error("the message POST failed: {0}")]
    Post(#[source] reqwest_upstream::Error),
    /// The `POST` took longer than [`LegacySseConfig::post_timeout`].
    #[error("the message POST took longer than {timeout:?}")]
    PostTimeout {
        /// The bound.
        timeout: Duration,
    },
    /// The `POST` answered something other than 2xx.
    #[error("the message POST answered HTTP {status}")]
    PostStatus {
        /// The status.
        status: StatusCode,
    },
    /// The transport was closed.
    #[error("the transport is closed")]
    Closed,
}

/// How the event stream of a transport ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// [`Transport::close`] closed it.
    Closed,
    /// The server ended it.
    EndedByServer,
    /// An event passed the size bound.
    EventTooLarge,
    /// The bytes were not valid server-sent events.
    Malformed(String),
    /// Reading the stream failed (connection reset, timeout, ...).
    Broken(String),
}

/// How a transport's stream ended, readable after the transport has been handed to `rmcp`.
#[derive(Debug, Clone, Default)]
pub struct StreamEndWatch(Arc<OnceLock<StreamEnd>>);

impl StreamEndWatch {
    /// `None` while the stream is open.
    pub fn get(&self) -> Option<StreamEnd> {
        self.0.get().cloned()
    }

    fn set(&self, end: StreamEnd) {
        // The first end is the cause; later ones are its consequences.
        let _ = self.0.set(end);
    }
}

/// The client side of the legacy HTTP+SSE transport, connected.
pub struct LegacySseTransport {
    events: Option<BoxStream<'static, Result<Sse, sse_stream::Error>>>,
    poster: Arc<Poster>,
    closed: watch::Sender<bool>,
    end: StreamEndWatch,
}

impl fmt::Debug for LegacySseTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacySseTransport")
            .field("origin", &self.poster.endpoint.origin().ascii_serialization())
            .field("open", &self.events.is_some())
            .field("end", &self.end.get())
            .finish()
    }
}

/// Everything a `POST` needs, shared by the send futures.
struct Poster {
    http: reqwest_upstream::Client,
    endpoint: Url,
    headers: HeaderMap,
    request_headers: Option<RequestHeaders>,
    timeout: Duration,
}

impl LegacySseTransport {
    /// Open the stream with `http` and wait for its `endpoint` event. `http` must not follow
    /// redirects (the upstreams' [`client`](super::http::client)) and must have no overall request timeout (it would cut
    /// the stream); the per-`POST` bound is [`LegacySseConfig::post_timeout`].
    pub async fn connect(http: reqwest_upstream::Client, config: LegacySseConfig) -> Result<Self, LegacySseError> {
        if !matches!(config.url.scheme(), "http" | "https") {
            return Err(LegacySseError::UnsupportedScheme { scheme: config.url.scheme().to_owned() });
        }
        let timeout = config.endpoint_timeout;
        tokio::time::timeout(timeout, Self::open(http, config))
            .await
            .unwrap_or(Err(LegacySseError::EndpointTimeout { timeout }))
    }

    async fn open(http: reqwest_upstream::Client, config: LegacySseConfig) -> Result<Self, LegacySseError> {
        let mut headers = config.headers.clone();
        if let Some(request_headers) = &config.request_headers {
            headers.extend(request_headers(None));
        }
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let response = http
            .get(config.url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| LegacySseError::Open(e.without_url()))?;
        if response.status() != StatusCode::OK {
            return Err(LegacySseError::OpenStatus { status: response.status() });
        }
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream") {
            return Err(LegacySseError::NotEventStream { content_type: content_type.chars().take(100).collect() });
        }

        let mut events = bounded_events(response, config.max_event_bytes);
        let endpoint = loop {
            let event = match events.next().await {
                Some(Ok(event)) => event,
                Some(Err(error)) => return Err(stream_error(&error, config.max_event_bytes)),
                None => return Err(LegacySseError::EndedBeforeEndpoint),
            };
            match event.event.as_deref() {
                Some("endpoint") => break event.data.unwrap_or_default(),
                None | Some("message") if event.data.as_deref().is_some_and(|d| !d.trim().is_empty()) => {
                    return Err(LegacySseError::MessageBeforeEndpoint)
                }
                _ => {}
            }
        };
        let endpoint = same_origin_endpoint(&config.url, endpoint.trim())?;

        let (closed, _) = watch::channel(false);
        Ok(Self {
            events: Some(events),
            poster: Arc::new(Poster {
                http,
                endpoint,
                headers: config.headers,
                request_headers: config.request_headers,
                timeout: config.post_timeout,
            }),
            closed,
            end: StreamEndWatch::default(),
        })
    }

    /// A handle that tells how the stream ended, once it has.
    pub fn stream_end(&self) -> StreamEndWatch {
        self.end.clone()
    }

    /// The origin messages are posted to (scheme, host and port; no path, query or credentials).
    pub fn endpoint_origin(&self) -> String {
        self.poster.endpoint.origin().ascii_serialization()
    }

    fn finish(&mut self, end: StreamEnd) {
        self.events = None;
        self.end.set(end);
        self.closed.send_replace(true);
    }
}

/// `endpoint` resolved against `stream`, refused unless it has the same origin and credentials.
fn same_origin_endpoint(stream: &Url, endpoint: &str) -> Result<Url, LegacySseError> {
    let mut resolved = stream.join(endpoint).map_err(LegacySseError::InvalidEndpoint)?;
    let (stream_origin, endpoint_origin) = (stream.origin(), resolved.origin());
    // Opaque origins (schemes other than http and https) never compare equal.
    if stream_origin != endpoint_origin {
        return Err(LegacySseError::CrossOriginEndpoint {
            endpoint: endpoint_origin.ascii_serialization(),
            stream: stream_origin.ascii_serialization(),
        });
    }
    if resolved.username() != stream.username() || resolved.password() != stream.password() {
        return Err(LegacySseError::EndpointCredentials);
    }
    resolved.set_fragment(None);
    Ok(resolved)
}

/// The error a broken stream stands for.
fn stream_error(error: &sse_stream::Error, max: usize) -> LegacySseError {
    match classify(error) {
        StreamEnd::EventTooLarge => LegacySseError::EventTooLarge { max },
        StreamEnd::Malformed(what) => LegacySseError::Malformed(what),
        _ => LegacySseError::EndedBeforeEndpoint,
    }
}

fn classify(error: &sse_stream::Error) -> StreamEnd {
    match error {
        sse_stream::Error::Body(inner) => match inner.downcast_ref::<BoundedError>() {
            Some(BoundedError::TooLarge) => StreamEnd::EventTooLarge,
            Some(BoundedError::Body(reason)) => StreamEnd::Broken(reason.clone()),
            None => StreamEnd::Broken(inner.to_string()),
        },
        other => StreamEnd::Malformed(other.to_string()),
    }
}

impl Poster {
    async fn post(&self, message: ClientJsonRpcMessage) -> Result<(), LegacySseError> {
        let wire = serde_json::to_value(&message).map_err(LegacySseError::Encode)?;
        let mut headers = self.headers.clone();
        if let Some(request_headers) = &self.request_headers {
            headers.extend(request_headers(Some(&wire)));
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = serde_json::to_vec(&wire).map_err(LegacySseError::Encode)?;
        let timeout = self.timeout;
        let failed = |e: reqwest_upstream::Error| {
            if e.is_timeout() {
                LegacySseError::PostTimeout { timeout }
            } else {
                LegacySseError::Post(e.without_url())
            }
        };
        let mut response = self
            .http
            .post(self.endpoint.clone())
            .headers(headers)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        // A short answer is read so the connection can serve the next POST; a long one is not
        // worth reading (the connection closes with the response).
        let mut drained = 0;
        while drained <= POST_BODY_DRAIN_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => drained += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(LegacySseError::PostStatus { status })
        }
    }
}

impl Transport<RoleClient> for LegacySseTransport {
    type Error = LegacySseError;

    fn name() -> Cow<'static, str> {
        Cow::Borrowed("legacy-sse")
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let poster = Arc::clone(&self.poster);
        let mut closed = self.closed.subscribe();
        async move {
            if *closed.borrow_and_update() {
                return Err(LegacySseError::Closed);
            }
            tokio::select! {
                result = poster.post(item) => result,
                // Closed, or the transport dropped: the POST is abandoned.
                _ = closed.wait_for(|closed| *closed) => Err(LegacySseError::Closed),
            }
        }
    }

    /// The next message of the server. Cancel-safe: the only await is the stream's `next`.
    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            let next = self.events.as_mut()?.next().await;
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(error)) => {
                    let end = classify(&error);
                    static ENDED: LogLimit = LogLimit::new();
                    if let Some(suppressed) = ENDED.check() {
                        tracing::warn!(
                            origin = %self.endpoint_origin(),
                            end = ?end,
                            suppressed,
                            "legacy SSE stream of an upstream ended"
                        );
                    }
                    self.finish(end);
                    return None;
                }
                None => {
                    self.finish(StreamEnd::EndedByServer);
                    return None;
                }
            };
            match event.event.as_deref() {
                None | Some("message") => {
                    let data = event.data.unwrap_or_default();
                    if data.trim().is_empty() {
                        continue; // keep-alive
                    }
                    match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                        Ok(message) => return Some(message),
                        // The error's category and position only: its text may quote the message.
                        Err(error) => {
                            // An upstream that sends garbage sends a lot of it: rate-limited.
                            static SKIPPED: LogLimit = LogLimit::new();
                            if let Some(suppressed) = SKIPPED.check() {
                                tracing::warn!(
                                    origin = %self.endpoint_origin(),
                                    category = ?error.classify(),
                                    column = error.column(),
                                    suppressed,
                                    "legacy SSE upstream sent a message that is not JSON-RPC; skipped"
                                );
                            }
                        }
                    }
                }
                // A second `endpoint`, or an event type the protocol does not define: not ours.
                Some(other) => {
                    tracing::debug!(event = %other.chars().take(64).collect::<String>(), "legacy SSE event ignored")
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.finish(StreamEnd::Closed);
        Ok(())
    }
}

impl Drop for LegacySseTransport {
    fn drop(&mut self) {
        self.closed.send_replace(true);
    }
}

/// The response body as server-sent events, an event's lines bounded by `max_event_bytes`.
fn bounded_events(
    response: reqwest_upstream::Response,
    max_event_bytes: usize,
) -> BoxStream<'static, Result<Sse, sse_stream::Error>> {
    let chunks = stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(error) => Some((Err(error.without_url()), None)),
        }
    });
    let bounded = BoundedBytes { inner: Box::pin(chunks), limit: EventSizeLimit::new(max_event_bytes), failed: false };
    SseStream::from_bytes_stream(bounded).boxed()
}

/// Why [`BoundedBytes`] stopped.
#[derive(Debug, thiserror::Error)]
enum BoundedError {
    #[error("an event exceeds the size bound")]
    TooLarge,
    #[error("{0}")]
    Body(String),
}

/// A byte stream that ends with [`BoundedError::TooLarge`] once an event grows past its bound.
struct BoundedBytes<S> {
    inner: Pin<Box<S>>,
    limit: EventSizeLimit,
    failed: bool,
}

impl<S, B, E> Stream for BoundedBytes<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::error::Error,
{
    type Item = Result<B, BoundedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let item = match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        Poll::Ready(match item {
            Some(Ok(chunk)) if self.limit.observe(chunk.as_ref()) => Some(Ok(chunk)),
            Some(Ok(_)) => {
                self.failed = true;
                Some(Err(BoundedError::TooLarge))
            }
            Some(Err(error)) => {
                self.failed = true;
                Some(Err(BoundedError::Body(error.to_string())))
            }
            None => None,
        })
    }
}

/// The bytes the SSE parser holds for the event being read: the non-comment lines since the
/// last blank line (each with the newline the parser joins data lines with) and the line being
/// read. Lines end at `\n`, `\r` or `\r\n`, as the parser ends them. One pass over the bytes.
#[derive(Debug)]
struct EventSizeLimit {
    max: usize,
    retained: usize,
    line: usize,
    line_is_comment: bool,
    after_cr: bool,
}

impl EventSizeLimit {
    fn new(max: usize) -> Self {
        Self { max, retained: 0, line: 0, line_is_comment: false, after_cr: false }
    }

    /// Takes in `chunk`; false once the event being read passes the bound.
    fn observe(&mut self, mut chunk: &[u8]) -> bool {
        while let Some(&first) = chunk.first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                chunk = &chunk[1..];
                continue;
            }
            let (line, rest) = match memchr::memchr2(b'\n', b'\r', chunk) {
                Some(end) => (&chunk[..end], Some(end)),
                None => (chunk, None),
            };
            if let Some(&first) = line.first() {
                if self.line == 0 {
                    self.line_is_comment = first == b':';
                }
                self.line = self.line.saturating_add(line.len());
                if self.retained.saturating_add(self.line) > self.max {
                    return false;
                }
            }
            if let Some(end) = rest {
                if self.line == 0 {
                    self.retained = 0; // a blank line: the event is complete
                } else if !self.line_is_comment {
                    self.retained = self.retained.saturating_add(self.line).saturating_add(1);
                }
                self.line = 0;
                self.after_cr = chunk[end] == b'\r';
                chunk = &chunk[end + 1..];
            } else {
                chunk = &[];
            }
            if self.retained.saturating_add(self.line) > self.max {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
#[path = "legacy_sse_tests.rs"]
mod tests;
