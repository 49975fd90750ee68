//! The HTTP side of the upstream clients: one `reqwest` client for every HTTP upstream (the
//! major version `rmcp`'s Streamable HTTP client is built on), whose DNS resolver hands out only
//! the addresses the [`OutboundPolicy`] admits and which follows no redirect; and the
//! Streamable HTTP client `rmcp` drives, which copies each message's `params._meta` trace
//! context into the `traceparent`/`tracestate` headers of its `POST`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt as _;
use http::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use reqwest_upstream::Client;
use rmcp::model::{ClientJsonRpcMessage, GetMeta as _, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use super::UpstreamError;
use crate::mcp::outbound::{OutboundPolicy, PolicyResolver};
use crate::mcp::protocol::session_fingerprint;

/// The `User-Agent` of every upstream request.
const USER_AGENT: &str = concat!("metamcp-telemetry/", env!("CARGO_PKG_VERSION"));

/// TLS by rustls over ring, trusting the Mozilla root store (`webpki-roots`), offering HTTP/2
/// and HTTP/1.1.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Makes ring the process's default TLS provider unless one is installed: reqwest is built
/// without a provider of its own (the workspace builds ring, not aws-lc), so a client built
/// without [`client`] (`reqwest::Client::default()`, as `rmcp` does for a bare URI) takes it
/// from the process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client of the upstreams: names resolve to the addresses `policy` admits or to
/// nothing, and no redirect is followed (a redirected POST would be replayed as a GET, and a
/// redirect could point anywhere the policy was meant to keep the gateway from; an MCP
/// endpoint never redirects). It sets no overall timeout, which would cut event streams; each
/// call is bounded by its server's timeout.
pub fn client(policy: Arc<OutboundPolicy>) -> Result<Client, reqwest_upstream::Error> {
    install_crypto_provider();
    let builder = Client::builder()
        .redirect(reqwest_upstream::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicyResolver::new(policy)))
        .user_agent(USER_AGENT);
    match tls_config() {
        Ok(tls) => builder.tls_backend_preconfigured(tls).build(),
        // Only plain HTTP then; an https upstream fails to connect and says so.
        Err(err) => {
            tracing::warn!(error = %err, "TLS for upstream connections could not be configured");
            builder.build()
        }
    }
}

/// What the HTTP exchanges of one upstream's sessions tell the rest of the client: the
/// upstream's session id (as a fingerprint, for spans), and the failure that broke a session
/// (the SDK's worker reports a broken session to its calls only as "closed").
#[derive(Default)]
pub(crate) struct Observed {
    session_fingerprint: Mutex<Option<String>>,
    failure: Mutex<Option<UpstreamError>>,
}

impl Observed {
    /// The fingerprint of the upstream's current session id, if it issued one.
    pub(crate) fn session_fingerprint(&self) -> Option<String> {
        self.session_fingerprint.lock().clone()
    }

    /// The failure that broke the last session, taken.
    pub(crate) fn take_failure(&self) -> Option<UpstreamError> {
        self.failure.lock().take()
    }

    pub(crate) fn record_failure(&self, failure: UpstreamError) {
        *self.failure.lock() = Some(failure);
    }

    fn session(&self, id: Option<&str>) {
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            let mut current = self.session_fingerprint.lock();
            let fingerprint = session_fingerprint(id);
            if current.as_deref() != Some(fingerprint.as_str()) {
                *current = Some(fingerprint);
            }
        }
    }
}

/// The Streamable HTTP client `rmcp` drives: `reqwest`'s, plus the trace context of each
/// message's `params._meta` as `traceparent`/`tracestate` (and `baggage`, when propagated)
/// headers of its `POST`, and what the exchanges tell ([`Observed`]).
#[derive(Clone)]
pub(crate) struct TracedHttp {
    pub(crate) client: Client,
    pub(crate) observed: Arc<Observed>,
    pub(crate) max_bytes: usize,
}

/// Adds the message's `_meta.traceparent`, `tracestate` and `baggage` to `headers`.
fn with_trace_headers(
    message: &ClientJsonRpcMessage,
    mut headers: HashMap<HeaderName, HeaderValue>,
) -> HashMap<HeaderName, HeaderValue> {
    let meta = match message {
        JsonRpcMessage::Request(request) => request.request.get_meta(),
        _ => return headers,
    };
    if let Some(value) = meta.get_traceparent().and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(HeaderName::from_static("traceparent"), value);
        let optional = [("tracestate", meta.get_tracestate()), ("baggage", meta.get_baggage())];
        for (name, value) in optional {
            if let Some(value) = value.filter(|v| !v.is_empty()).and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    headers
}

impl TracedHttp {
    /// Notes the session id and the failure of a `POST`'s outcome; an event stream is watched
    /// for the error that ends it.
    fn observe(
        &self,
        sent_session: Option<&str>,
        outcome: Result<StreamableHttpPostResponse, StreamableHttpError<reqwest_upstream::Error>>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest_upstream::Error>> {
        self.observed.session(sent_session);
        match outcome {
            Ok(StreamableHttpPostResponse::Json(message, session)) => {
                self.observed.session(session.as_deref());
                Ok(StreamableHttpPostResponse::Json(message, session))
            }
            Ok(StreamableHttpPostResponse::Sse(stream, session)) => {
                self.observed.session(session.as_deref());
                let (observed, max_bytes) = (self.observed.clone(), self.max_bytes);
                let watched = stream.inspect(move |item| {
                    if let Err(err) = item {
                        observed.record_failure(super::error::sse_error(err, max_bytes));
                    }
                });
                Ok(StreamableHttpPostResponse::Sse(Box::pin(watched), session))
            }
            Err(err) => {
                let classified = super::error::classify(&err, Duration::ZERO, self.max_bytes);
                self.observed.record_failure(classified);
                Err(err)
            }
            other => other,
        }
    }
}

impl StreamableHttpClient for TracedHttp {
    type Error = reqwest_upstream::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let headers = with_trace_headers(&message, custom_headers);
        let sent = session_id.clone();
        let outcome = self
            .client
            .post_message_with_max_sse_event_size(uri, message, session_id, auth_header, headers, max_sse_event_size)
            .await;
        self.observe(sent.as_deref(), outcome)
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let headers = with_trace_headers(&message, custom_headers);
        let sent = session_id.clone();
        let outcome =
            self.client.post_message_with_response_limits(uri, message, session_id, auth_header, headers, limits).await;
        self.observe(sent.as_deref(), outcome)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.client.delete_session(uri, session_id, auth_header, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.client.get_stream(uri, session_id, last_event_id, auth_header, custom_headers).await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.client
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
