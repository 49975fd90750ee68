//! Why a call to an upstream server failed, in the gateway's own words.
//!
//! No variant holds anything the upstream sent (a body, an error message, a value of a
//! malformed answer): every message is the gateway's, so it may go to the MCP client, the admin
//! API and the audit log. Errors of the SDK and of the HTTP client are classified by walking
//! their source chain; their text, which may quote an upstream's body, is never kept.

use std::time::Duration;

use rmcp::service::{ClientInitializeError, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpError;

use crate::mcp::outbound::Refusal;

use super::legacy_sse::LegacySseError;

/// What a call says when the session closed under it, cause unknown.
const CONNECTION_CLOSED: &str = "the connection closed";

/// Why a call to an upstream MCP server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No answer within the server's timeout.
    #[error("the upstream server did not answer within {0:?}")]
    Timeout(Duration),
    /// The upstream could not be reached, or the connection failed.
    #[error("cannot reach the upstream server: {0}")]
    Connect(String),
    /// The upstream's address is one the outbound policy refuses (`gateway.upstream_deny_cidrs`).
    #[error("the upstream server's address is refused by the outbound policy (gateway.upstream_deny_cidrs)")]
    Refused,
    /// The upstream answered with an HTTP error status. Its body is not kept.
    #[error("the upstream server answered HTTP {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
    },
    /// The answer is not valid MCP. The message says what is wrong, not what was sent.
    #[error("invalid answer from the upstream server: {0}")]
    Protocol(String),
    /// The answer, or one event of its event stream, is larger than the client reads.
    #[error("the upstream server's answer is larger than {limit} bytes")]
    TooLarge {
        /// The bound that was passed, in bytes.
        limit: usize,
    },
    /// The upstream answered with a JSON-RPC error. Its message is not kept.
    #[error("the upstream server returned JSON-RPC error {code}")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
    },
    /// The caller cancelled the call; `notifications/cancelled` went to the upstream.
    #[error("the call was cancelled")]
    Cancelled,
    /// No connection to a server of that name (never connected, or disconnected).
    #[error("the upstream server is not connected")]
    NotConnected,
    /// The settings forbid starting this server (`gateway.stdio_enabled`,
    /// `gateway.stdio_allowed_commands`).
    #[error("{0}")]
    NotAllowed(String),
    /// The stdio server's program could not be started.
    #[error("the upstream server's command could not be started: {0}")]
    Spawn(String),
}

impl UpstreamError {
    /// The failure's class, as spans record it in `error.type`: `timeout`, `connect`,
    /// `outbound_policy`, `http`, `protocol`, `too_large`, `rpc`, `cancelled`,
    /// `not_connected`, `not_allowed` or `spawn`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Refused => "outbound_policy",
            UpstreamError::Http { .. } => "http",
            UpstreamError::Protocol(_) => "protocol",
            UpstreamError::TooLarge { .. } => "too_large",
            UpstreamError::Rpc { .. } => "rpc",
            UpstreamError::Cancelled => "cancelled",
            UpstreamError::NotConnected => "not_connected",
            UpstreamError::NotAllowed(_) => "not_allowed",
            UpstreamError::Spawn(_) => "spawn",
        }
    }

    /// Whether the failure says the connection itself is broken (so it counts against the
    /// server's health), rather than this one request.
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            UpstreamError::Timeout(_)
                | UpstreamError::Connect(_)
                | UpstreamError::Refused
                | UpstreamError::Http { .. }
                | UpstreamError::NotConnected
                | UpstreamError::Spawn(_)
        )
    }

    /// Whether all that is known is that the session closed under the call.
    pub(crate) fn is_connection_closed(&self) -> bool {
        matches!(self, UpstreamError::Connect(words) if words == CONNECTION_CLOSED)
    }

    /// The error of a request the SDK sent, classified.
    pub(crate) fn from_service(err: &ServiceError, timeout: Duration, max_bytes: usize) -> Self {
        match err {
            ServiceError::McpError(data) => UpstreamError::Rpc { code: i64::from(data.code.0) },
            ServiceError::TransportClosed => UpstreamError::Connect(CONNECTION_CLOSED.to_owned()),
            ServiceError::Timeout { .. } => UpstreamError::Timeout(timeout),
            ServiceError::Cancelled { .. } => UpstreamError::Cancelled,
            ServiceError::UnexpectedResponse => {
                UpstreamError::Protocol("the response does not answer the request".to_owned())
            }
            ServiceError::TransportSend(transport) => classify(transport.error.as_ref(), timeout, max_bytes),
            _ => UpstreamError::Protocol("the request failed".to_owned()),
        }
    }

    /// The error of a session set-up, classified.
    pub(crate) fn from_initialize(err: &ClientInitializeError, timeout: Duration, max_bytes: usize) -> Self {
        match err {
            ClientInitializeError::JsonRpcError(data) => UpstreamError::Rpc { code: i64::from(data.code.0) },
            ClientInitializeError::ConnectionClosed(_) => {
                UpstreamError::Connect("the connection closed during initialization".to_owned())
            }
            ClientInitializeError::Cancelled => UpstreamError::Cancelled,
            ClientInitializeError::TransportError { error, .. } => classify(error.error.as_ref(), timeout, max_bytes),
            ClientInitializeError::ExpectedInitResult(_) | ClientInitializeError::ExpectedInitResponse(_) => {
                UpstreamError::Protocol("the answer to initialize is not an initialize result".to_owned())
            }
            _ => UpstreamError::Protocol("the session could not be initialized".to_owned()),
        }
    }
}

/// Classifies a transport error by the first cause the gateway recognises in its chain.
pub(crate) fn classify(err: &(dyn std::error::Error + 'static), timeout: Duration, max_bytes: usize) -> UpstreamError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.downcast_ref::<Refusal>().is_some() {
            return UpstreamError::Refused;
        }
        if let Some(http) = cause.downcast_ref::<StreamableHttpError<reqwest_upstream::Error>>() {
            if let Some(found) = classify_streamable(http, max_bytes) {
                return found;
            }
        }
        if let Some(sse) = cause.downcast_ref::<LegacySseError>() {
            if let Some(found) = sse.classify() {
                return found;
            }
        }
        if let Some(http) = cause.downcast_ref::<reqwest_upstream::Error>() {
            if http.is_timeout() {
                return UpstreamError::Timeout(timeout);
            }
            if let Some(status) = http.status() {
                return UpstreamError::Http { status: status.as_u16() };
            }
            if http.is_connect() {
                // Keep looking: the resolver's refusal sits deeper in the chain.
                if chain_has_refusal(cause) {
                    return UpstreamError::Refused;
                }
                return UpstreamError::Connect(io_words(cause).unwrap_or("the connection failed").to_owned());
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return UpstreamError::Connect(io_kind_words(io.kind()).to_owned());
        }
        source = cause.source();
    }
    UpstreamError::Connect("the transport failed".to_owned())
}

fn chain_has_refusal(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(cause) = source {
        if cause.downcast_ref::<Refusal>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The words for the first I/O error in the chain, if any.
fn io_words(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io_kind_words(io.kind()));
        }
        source = cause.source();
    }
    None
}

/// Our words for an I/O error kind (its own message may quote a path).
pub(crate) fn io_kind_words(kind: std::io::ErrorKind) -> &'static str {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::NotConnected => "not connected",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::BrokenPipe => "broken pipe",
        ErrorKind::UnexpectedEof => "the connection ended early",
        ErrorKind::NotFound => "not found",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::AddrNotAvailable => "address not available",
        _ => "an I/O error",
    }
}

fn classify_streamable(err: &StreamableHttpError<reqwest_upstream::Error>, max_bytes: usize) -> Option<UpstreamError> {
    Some(match err {
        StreamableHttpError::HttpStatus(status) => UpstreamError::Http { status: status.status },
        StreamableHttpError::AuthRequired(_) => UpstreamError::Http { status: 401 },
        StreamableHttpError::InsufficientScope(_) => UpstreamError::Http { status: 403 },
        StreamableHttpError::ResponseBodyTooLarge { max_size } => UpstreamError::TooLarge { limit: *max_size },
        StreamableHttpError::Sse(sse) => sse_error(sse, max_bytes),
        StreamableHttpError::UnexpectedContentType(_) => {
            UpstreamError::Protocol("the answer has an unexpected content type".to_owned())
        }
        StreamableHttpError::UnexpectedServerResponse(_) | StreamableHttpError::Deserialize(_) => {
            UpstreamError::Protocol("the answer is not a JSON-RPC message".to_owned())
        }
        StreamableHttpError::UnexpectedEndOfStream => {
            UpstreamError::Protocol("the event stream ended without the response".to_owned())
        }
        StreamableHttpError::MissingSessionIdInResponse => {
            UpstreamError::Protocol("the answer to initialize carries no session id".to_owned())
        }
        StreamableHttpError::SessionExpired => UpstreamError::Http { status: 404 },
        StreamableHttpError::SessionRecoveryTimeout | StreamableHttpError::ControlRequestTimeout => {
            UpstreamError::Connect("the session could not be recovered in time".to_owned())
        }
        StreamableHttpError::ReinitializationFailed(data) => UpstreamError::Rpc { code: i64::from(data.code.0) },
        StreamableHttpError::Client(_) | StreamableHttpError::Io(_) => return None,
        _ => UpstreamError::Connect("the transport failed".to_owned()),
    })
}

/// An SSE error of the Streamable HTTP client: an event over the size bound (the SDK's bound
/// says so in its message, which holds no upstream bytes), or a malformed stream.
pub(crate) fn sse_error(err: &sse_stream::Error, max_bytes: usize) -> UpstreamError {
    match err {
        sse_stream::Error::Body(body) if body.to_string().contains("exceeded the maximum size") => {
            UpstreamError::TooLarge { limit: max_bytes }
        }
        sse_stream::Error::Body(_) => UpstreamError::Connect("the event stream broke".to_owned()),
        _ => UpstreamError::Protocol("the event stream is malformed".to_owned()),
    }
}

impl LegacySseError {
    /// What the failure means to the gateway, in its own words (never the URL or a body).
    pub(crate) fn classify(&self) -> Option<UpstreamError> {
        Some(match self {
            LegacySseError::Client(_) => UpstreamError::Connect("the HTTP client could not be built".to_owned()),
            LegacySseError::UnsupportedScheme { .. } => {
                UpstreamError::Connect("the SSE URL must be http or https".to_owned())
            }
            // The reqwest error's cause (a refusal by the outbound policy, an I/O error) decides.
            LegacySseError::Open(_) | LegacySseError::Post(_) => return None,
            LegacySseError::OpenStatus { status } | LegacySseError::PostStatus { status } => {
                UpstreamError::Http { status: status.as_u16() }
            }
            LegacySseError::NotEventStream { .. } => {
                UpstreamError::Protocol("the SSE URL did not answer with an event stream".to_owned())
            }
            LegacySseError::EndpointTimeout { timeout } | LegacySseError::PostTimeout { timeout } => {
                UpstreamError::Timeout(*timeout)
            }
            LegacySseError::EndedBeforeEndpoint => {
                UpstreamError::Protocol("the event stream ended before its endpoint event".to_owned())
            }
            LegacySseError::MessageBeforeEndpoint => {
                UpstreamError::Protocol("the event stream sent a message before its endpoint event".to_owned())
            }
            LegacySseError::InvalidEndpoint(_) => {
                UpstreamError::Protocol("the endpoint event does not hold a URL".to_owned())
            }
            LegacySseError::CrossOriginEndpoint { .. } | LegacySseError::EndpointCredentials => {
                UpstreamError::Protocol("refused: the endpoint event names another origin or credentials".to_owned())
            }
            LegacySseError::EventTooLarge { max } => UpstreamError::TooLarge { limit: *max },
            LegacySseError::Malformed(_) => UpstreamError::Protocol("the event stream is malformed".to_owned()),
            LegacySseError::Encode(_) => UpstreamError::Protocol("the message could not be encoded".to_owned()),
            LegacySseError::Closed => UpstreamError::Connect("the connection closed".to_owned()),
        })
    }
}
