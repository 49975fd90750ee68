//! One public call of the upstream client: its deadline, the server's session (set up on first
//! use, set up again once when the upstream forgot it), each JSON-RPC message in its CLIENT
//! span, the HTTP exchange, and reading the answer within the size bounds.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::answer::{content_type_name, find_response, json_error, parse_result, Found, Reply};
use super::propagation::{inject_meta, HeaderInjector};
use super::sse::SseParser;
use super::{Inner, Session, UpstreamError, UpstreamTarget, ACCEPT_BOTH, CLIENT_NAME, LONGEST_TIMEOUT};
use crate::mcp::jsonrpc::{self, RequestId};
use crate::mcp::outbound::{OutboundPolicy, Refusal};
use crate::mcp::protocol::{
    session_fingerprint, InitializeResult, LATEST_VERSION, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, METHOD_INITIALIZE,
    NOTIFICATION_INITIALIZED,
};

/// One JSON-RPC message to send.
pub(super) struct Call<'a> {
    pub(super) method: &'a str,
    pub(super) tool: Option<&'a str>,
    pub(super) params: Map<String, Value>,
}

/// What was learnt of the HTTP exchange, for the span, whether or not it succeeded.
#[derive(Default)]
struct Observed {
    status: Option<u16>,
    http_version: Option<&'static str>,
    session_id: Option<String>,
}

/// The parsed endpoint of a target.
struct Endpoint {
    url: Url,
    /// `url.full`: the URL without user info, query or fragment.
    full: String,
    address: String,
    port: Option<u16>,
}

impl Endpoint {
    /// The endpoint of `raw`, refused when its host is an address literal `policy` refuses
    /// (names are judged by the resolver when the connection is made).
    fn parse(raw: &str, policy: &OutboundPolicy) -> Result<Self, UpstreamError> {
        let url = Url::parse(raw).map_err(|err| UpstreamError::Connect(format!("invalid upstream URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UpstreamError::Connect(format!("unsupported URL scheme \"{}\"", url.scheme())));
        }
        policy.check_host(&url).map_err(|_: Refusal| UpstreamError::Refused)?;
        let address = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default();
        let mut clean = url.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        clean.set_query(None);
        clean.set_fragment(None);
        Ok(Self { full: clean.to_string(), url, address, port })
    }
}

/// One public call: a target, its deadline and the caller's context.
pub(super) struct Operation<'a> {
    client: &'a Inner,
    target: &'a UpstreamTarget<'a>,
    endpoint: Endpoint,
    deadline: Instant,
    parent: Context,
}

impl<'a> Operation<'a> {
    pub(super) fn new(client: &'a Inner, target: &'a UpstreamTarget<'a>) -> Result<Self, UpstreamError> {
        let deadline = Instant::now() + target.timeout.min(LONGEST_TIMEOUT);
        let endpoint = Endpoint::parse(target.url, &client.policy)?;
        Ok(Self { client, target, endpoint, deadline, parent: Context::current() })
    }

    fn timeout(&self) -> UpstreamError {
        UpstreamError::Timeout(self.target.timeout)
    }

    /// Sends a request in the server's session, setting the session up first if needed, and
    /// setting it up again once if the upstream says it no longer knows it.
    pub(super) async fn request<T: Reply>(&self, call: &Call<'_>) -> Result<T, UpstreamError> {
        let session = self.session(None).await?;
        match self.rpc::<T>(Some(&session), call).await {
            Err(UpstreamError::Http { status: 404, .. }) if session.id.is_some() => {
                let session = self.session(Some(&session)).await?;
                self.rpc::<T>(Some(&session), call).await.map(|(result, _)| result)
            }
            other => other.map(|(result, _)| result),
        }
    }

    /// The server's session: the cached one, unless it is `stale` or for another URL.
    async fn session(&self, stale: Option<&Arc<Session>>) -> Result<Arc<Session>, UpstreamError> {
        let slot = self.client.sessions.lock().entry(self.target.name.to_owned()).or_default().clone();
        let mut current = tokio::time::timeout_at(self.deadline, slot.0.lock()).await.map_err(|_| self.timeout())?;
        if let Some(session) = current.as_ref() {
            let is_stale = stale.is_some_and(|stale| Arc::ptr_eq(stale, session));
            if !is_stale && session.url == self.target.url {
                return Ok(session.clone());
            }
            if session.url != self.target.url {
                self.client.delete_session(session);
            }
        }
        *current = None;
        let session = Arc::new(self.initialize().await?);
        *current = Some(session.clone());
        Ok(session)
    }

    /// `initialize`, then `notifications/initialized` in the new session.
    async fn initialize(&self) -> Result<Session, UpstreamError> {
        let mut params = Map::new();
        params.insert("protocolVersion".to_owned(), Value::from(LATEST_VERSION));
        params.insert("capabilities".to_owned(), json!({}));
        params.insert("clientInfo".to_owned(), json!({ "name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION") }));
        let (result, session_id) =
            self.rpc::<InitializeResult>(None, &Call { method: METHOD_INITIALIZE, tool: None, params }).await?;
        let session =
            Session { url: self.target.url.to_owned(), id: session_id, protocol_version: result.protocol_version };
        self.notify(&session, NOTIFICATION_INITIALIZED).await?;
        Ok(session)
    }

    /// Sends one request and reads its result, in a CLIENT span. Also returns the session id
    /// the answer carried.
    async fn rpc<T: Reply>(
        &self,
        session: Option<&Session>,
        call: &Call<'_>,
    ) -> Result<(T, Option<String>), UpstreamError> {
        let id = self.client.next_id.fetch_add(1, Ordering::Relaxed);
        let span = self.start_span(call, Some(id), session);
        let (headers, params) = self.prepare(span.as_ref(), session, call);
        let message = jsonrpc::request(&RequestId::Number(id), call.method, Some(params));
        let mut observed = Observed::default();
        let outcome =
            match tokio::time::timeout_at(self.deadline, self.exchange(headers, &message, Some(id), &mut observed))
                .await
            {
                Err(_) => Err(self.timeout()),
                Ok(Err(err)) => Err(err),
                Ok(Ok(None)) => Err(UpstreamError::Protocol("no response to the request".to_owned())),
                Ok(Ok(Some(result))) => parse_result::<T>(call.method, result),
            };
        if let Some(span) = &span {
            // A session id first learnt from this answer (`initialize`) joins the span's attributes.
            let new_session = if session.is_none() { observed.session_id.as_deref() } else { None };
            finish_span(span, &observed, new_session, outcome.as_ref().map(Reply::is_tool_error));
        }
        outcome.map(|result| (result, observed.session_id))
    }

    /// Sends one notification, in a CLIENT span; any 2xx answer is accepted.
    async fn notify(&self, session: &Session, method: &str) -> Result<(), UpstreamError> {
        let call = Call { method, tool: None, params: Map::new() };
        let span = self.start_span(&call, None, Some(session));
        let (headers, params) = self.prepare(span.as_ref(), Some(session), &call);
        let message = jsonrpc::notification(method, Some(params));
        let mut observed = Observed::default();
        let outcome =
            match tokio::time::timeout_at(self.deadline, self.exchange(headers, &message, None, &mut observed)).await {
                Err(_) => Err(self.timeout()),
                Ok(result) => result.map(|_| ()),
            };
        if let Some(span) = &span {
            finish_span(span, &observed, None, outcome.as_ref().map(|_| false));
        }
        outcome
    }

    /// The span of one message, a child of the caller's context; `None` when telemetry is off.
    fn start_span(&self, call: &Call<'_>, id: Option<i64>, session: Option<&Session>) -> Option<Context> {
        let tracer = self.client.telemetry.tracer()?;
        let name = match call.tool {
            Some(tool) => format!("{} {tool}", call.method),
            None => call.method.to_owned(),
        };
        let endpoint = &self.endpoint;
        let mut attributes = vec![
            KeyValue::new("mcp.method.name", call.method.to_owned()),
            KeyValue::new("server.address", endpoint.address.clone()),
            KeyValue::new("url.full", endpoint.full.clone()),
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("network.protocol.name", "http"),
            KeyValue::new("network.transport", "tcp"),
        ];
        if let Some(port) = endpoint.port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(id) = id {
            attributes.push(KeyValue::new("jsonrpc.request.id", id.to_string()));
        }
        if let Some(tool) = call.tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool.to_owned()));
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(session) = session {
            attributes.push(KeyValue::new("mcp.protocol.version", session.protocol_version.clone()));
            if let Some(id) = &session.id {
                attributes.push(KeyValue::new("mcp.session.id", session_fingerprint(id)));
            }
        }
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &self.parent);
        Some(self.parent.with_span(span))
    }

    /// The headers and params of one message, the trace context injected into both.
    fn prepare(
        &self,
        span: Option<&Context>,
        session: Option<&Session>,
        call: &Call<'_>,
    ) -> (HeaderMap, Map<String, Value>) {
        let mut headers = HeaderMap::with_capacity(6);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        if let Some(session) = session {
            if let Some(Ok(id)) = session.id.as_deref().map(HeaderValue::from_str) {
                headers.insert(MCP_SESSION_ID, id);
            }
            if let Ok(version) = HeaderValue::from_str(&session.protocol_version) {
                headers.insert(MCP_PROTOCOL_VERSION, version);
            }
        }
        // Without a span of our own, the caller's context still travels on.
        let cx = span.unwrap_or(&self.parent);
        self.client.propagator.inject_context(cx, &mut HeaderInjector(&mut headers));
        let mut params = call.params.clone();
        inject_meta(&self.client.propagator, cx, &mut params);
        (headers, params)
    }

    /// POSTs `message` and reads the response to request `expect` (nothing for a notification).
    async fn exchange(
        &self,
        headers: HeaderMap,
        message: &Value,
        expect: Option<i64>,
        observed: &mut Observed,
    ) -> Result<Option<Value>, UpstreamError> {
        let body = serde_json::to_vec(message)
            .map_err(|err| UpstreamError::Protocol(format!("the request could not be encoded: {err}")))?;
        let mut response = self
            .client
            .http
            .post(self.endpoint.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;
        let status = response.status();
        observed.status = Some(status.as_u16());
        observed.http_version = http_version(response.version());
        if let Some(value) = response.headers().get(MCP_SESSION_ID) {
            let id = value
                .to_str()
                .map_err(|_| UpstreamError::Protocol("the Mcp-Session-Id header is not visible ASCII".to_owned()))?;
            observed.session_id = Some(id.to_owned()).filter(|id| !id.is_empty());
        }
        if !status.is_success() {
            // The body is not read: whatever it says is the upstream's, not ours to relay.
            return Err(UpstreamError::Http { status: status.as_u16() });
        }
        let Some(id) = expect else { return Ok(None) };
        if status == StatusCode::ACCEPTED {
            return Err(UpstreamError::Protocol("202 Accepted instead of a response".to_owned()));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match content_type.as_str() {
            "application/json" => {
                let body = self.read_body(&mut response).await?;
                let value: Value = serde_json::from_slice(&body)
                    .map_err(|err| UpstreamError::Protocol(format!("the body is not JSON ({})", json_error(&err))))?;
                match find_response(value, id) {
                    Found::Response(result) => result.map(Some),
                    Found::Other => {
                        Err(UpstreamError::Protocol(format!("the body is not the response to request {id}")))
                    }
                }
            }
            "text/event-stream" => self.read_events(&mut response, id).await.map(Some),
            "" => Err(UpstreamError::Protocol("the answer has no content type".to_owned())),
            other => Err(UpstreamError::Protocol(format!("unexpected content type {}", content_type_name(other)))),
        }
    }

    fn transport_error(&self, err: reqwest::Error) -> UpstreamError {
        if err.is_timeout() {
            return self.timeout();
        }
        if refused_by_policy(&err) {
            return UpstreamError::Refused;
        }
        UpstreamError::Connect(error_chain(&err.without_url()))
    }

    fn too_large(&self) -> UpstreamError {
        UpstreamError::TooLarge { limit: self.client.max_response_bytes }
    }

    /// The whole body, refused beyond the size cap.
    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
        let max = self.client.max_response_bytes;
        if response.content_length().is_some_and(|length| length > max as u64) {
            return Err(self.too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| self.transport_error(err))? {
            if body.len() + chunk.len() > max {
                return Err(self.too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads server-sent events until the response to request `id` arrives.
    async fn read_events(&self, response: &mut reqwest::Response, id: i64) -> Result<Value, UpstreamError> {
        let max = self.client.max_response_bytes;
        let mut parser = SseParser::new(self.client.max_event_bytes);
        let mut events = Vec::new();
        let mut read = 0usize;
        loop {
            let chunk = response.chunk().await.map_err(|err| self.transport_error(err))?;
            match &chunk {
                Some(chunk) => {
                    read += chunk.len();
                    if read > max {
                        return Err(self.too_large());
                    }
                    parser.feed(chunk, &mut events)?;
                }
                None => parser.finish(&mut events)?,
            }
            for data in events.drain(..) {
                if data.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&data)
                    .map_err(|err| UpstreamError::Protocol(format!("an event is not JSON ({})", json_error(&err))))?;
                if let Found::Response(result) = find_response(value, id) {
                    return result;
                }
            }
            if chunk.is_none() {
                return Err(UpstreamError::Protocol(format!("the event stream ended without the response to {id}")));
            }
        }
    }
}

/// Whether the outbound policy's resolver refused the connection's name.
fn refused_by_policy(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.downcast_ref::<Refusal>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Records the outcome on the span and ends it. `Ok(true)`: the tool reported a failure.
fn finish_span(cx: &Context, observed: &Observed, new_session: Option<&str>, outcome: Result<bool, &UpstreamError>) {
    let span = cx.span();
    if let Some(status) = observed.status {
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    if let Some(version) = observed.http_version {
        span.set_attribute(KeyValue::new("network.protocol.version", version));
    }
    if let Some(id) = new_session {
        span.set_attribute(KeyValue::new("mcp.session.id", session_fingerprint(id)));
    }
    match outcome {
        Ok(false) => {}
        Ok(true) => {
            span.set_attribute(KeyValue::new("error.type", "tool_error"));
            span.set_status(Status::error("the tool reported an error"));
        }
        Err(err) => {
            span.set_attribute(KeyValue::new("error.type", err.kind()));
            if let UpstreamError::Rpc { code, .. } = err {
                span.set_attribute(KeyValue::new("rpc.response.status_code", code.to_string()));
            }
            span.set_status(Status::error(err.span_description()));
        }
    }
    span.end();
}

fn http_version(version: reqwest::Version) -> Option<&'static str> {
    Some(match version {
        reqwest::Version::HTTP_09 => "0.9",
        reqwest::Version::HTTP_10 => "1.0",
        reqwest::Version::HTTP_11 => "1.1",
        reqwest::Version::HTTP_2 => "2",
        reqwest::Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// An error and its causes, `outer: inner: root`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
