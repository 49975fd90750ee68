//! The HTTP side of the upstream clients: one `reqwest` client for every HTTP upstream (the
//! major version `rmcp`'s Streamable HTTP client is built on), whose DNS resolver hands out only
//! the addresses the [`OutboundPolicy`] admits and which follows no redirect; and the
//! Streamable HTTP client `rmcp` drives, which copies each message's `params._meta` trace
//! context into the `traceparent`/`tracestate` headers of its `POST`.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use reqwest_upstream::Client;
use rmcp::model::{ClientJsonRpcMessage, GetMeta as _, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use crate::mcp::outbound::{OutboundPolicy, PolicyResolver};

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

/// The HTTP client of the upstreams: names resolve to the addresses `policy` admits or to
/// nothing, and no redirect is followed (a redirected POST would be replayed as a GET, and a
/// redirect could point anywhere the policy was meant to keep the gateway from; an MCP
/// endpoint never redirects). It sets no overall timeout, which would cut event streams; each
/// call is bounded by its server's timeout.
pub fn client(policy: Arc<OutboundPolicy>) -> Result<Client, reqwest_upstream::Error> {
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

/// The Streamable HTTP client `rmcp` drives: `reqwest`'s, plus the trace context of each
/// message's `params._meta` as `traceparent`/`tracestate` headers of its `POST`.
#[derive(Clone)]
pub(crate) struct TracedHttp(pub(crate) Client);

/// Adds the message's `_meta.traceparent`/`tracestate` to `headers`.
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
        if let Some(value) = meta.get_tracestate().filter(|v| !v.is_empty()).and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(HeaderName::from_static("tracestate"), value);
        }
    }
    headers
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
        self.0
            .post_message_with_max_sse_event_size(uri, message, session_id, auth_header, headers, max_sse_event_size)
            .await
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
        self.0.post_message_with_response_limits(uri, message, session_id, auth_header, headers, limits).await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.0.delete_session(uri, session_id, auth_header, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.0.get_stream(uri, session_id, last_event_id, auth_header, custom_headers).await
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
        self.0
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
