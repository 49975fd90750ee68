//! OTLP on the wire: gRPC (tonic, raw pre-encoded bodies) and HTTP/protobuf (reqwest), with every
//! answer classified as the OTLP specification says: accepted (possibly in part), retryable
//! (with the server's RetryInfo or Retry-After delay when it gives one) or permanent.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::config::{ExporterConfig, Protocol};
use crate::self_metrics::Signal;

/// The longest delay a server may ask for; longer hints are capped.
const MAX_SERVER_DELAY: Duration = Duration::from_secs(600);

/// What one export attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The collector took the request; `rejected` items of it were refused (partial success).
    Accepted {
        /// Items the collector said it rejected.
        rejected: u64,
    },
    /// Worth retrying, after `retry_after` if the server asked for a delay.
    Retryable {
        /// What went wrong.
        reason: String,
        /// The server's requested delay (RetryInfo or Retry-After).
        retry_after: Option<Duration>,
    },
    /// Not worth retrying.
    Permanent {
        /// What went wrong.
        reason: String,
    },
}

impl Outcome {
    /// The same outcome with credentials masked in its reason: transport errors may quote the
    /// endpoint, user information and all, and the reason reaches logs and `/health`.
    pub fn redacted(self) -> Self {
        match self {
            Self::Retryable { reason, retry_after } => {
                Self::Retryable { reason: crate::redact::redact(&reason).into_owned(), retry_after }
            }
            Self::Permanent { reason } => Self::Permanent { reason: crate::redact::redact(&reason).into_owned() },
            accepted @ Self::Accepted { .. } => accepted,
        }
    }
}

/// An exporter that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint is not a valid URI for the transport.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The configured endpoint.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the OTLP/HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A configured OTLP transport. Cloning is cheap (connections are shared).
#[derive(Debug, Clone)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc(GrpcTransport),
    /// OTLP/HTTP with protobuf bodies.
    Http(HttpTransport),
}

impl Transport {
    /// Builds the transport. Must run inside a tokio runtime (the gRPC channel connects lazily in
    /// the background of the runtime it was built on).
    pub fn new(config: &ExporterConfig) -> Result<Self, TransportError> {
        let endpoint = effective_endpoint(&config.endpoint, config.insecure);
        match config.protocol {
            Protocol::Grpc => GrpcTransport::new(&endpoint, config).map(Transport::Grpc),
            Protocol::HttpProtobuf => HttpTransport::new(&endpoint, config).map(Transport::Http),
        }
    }

    /// Sends one encoded request and classifies the answer; never panics, never blocks.
    pub async fn send(self, signal: Signal, body: Bytes, timeout: Duration) -> Outcome {
        let attempt = async move {
            match self {
                Transport::Grpc(grpc) => grpc.send(signal, body).await,
                Transport::Http(http) => http.send(signal, body).await,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retryable {
                reason: format!("export timed out after {}", humantime::format_duration(timeout)),
                retry_after: None,
            },
        }
    }
}

/// `https://` for an `http://` endpoint when the connection must be secure.
fn effective_endpoint(endpoint: &str, insecure: bool) -> String {
    match endpoint.strip_prefix("http://") {
        Some(rest) if !insecure => format!("https://{rest}"),
        _ => endpoint.to_owned(),
    }
}

/// OTLP/gRPC over one lazily connected tonic channel.
#[derive(Debug, Clone)]
pub struct GrpcTransport {
    channel: Channel,
    metadata: Vec<(MetadataKey<tonic::metadata::Ascii>, MetadataValue<tonic::metadata::Ascii>)>,
}

impl GrpcTransport {
    fn new(endpoint: &str, config: &ExporterConfig) -> Result<Self, TransportError> {
        let invalid = |reason: String| TransportError::Endpoint { endpoint: endpoint.to_owned(), reason };
        let mut builder = Endpoint::from_str(endpoint)
            .map_err(|err| invalid(err.to_string()))?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true);
        if endpoint.starts_with("https://") {
            builder = builder
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|err| invalid(err.to_string()))?;
        }
        let mut metadata = Vec::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|err| invalid(format!("header {name}: {err}")))?;
            let value =
                MetadataValue::try_from(value.as_str()).map_err(|err| invalid(format!("header {name}: {err}")))?;
            metadata.push((key, value));
        }
        Ok(Self { channel: builder.connect_lazy(), metadata })
    }

    async fn send(self, signal: Signal, body: Bytes) -> Outcome {
        let path = match signal {
            Signal::Traces => PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
            Signal::Metrics => {
                PathAndQuery::from_static("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
            }
            Signal::Logs => PathAndQuery::from_static("/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
        };
        let mut grpc = tonic::client::Grpc::new(self.channel);
        if let Err(err) = grpc.ready().await {
            return Outcome::Retryable { reason: format!("gRPC channel not ready: {err}"), retry_after: None };
        }
        let mut request = tonic::Request::new(body);
        for (key, value) in self.metadata {
            request.metadata_mut().insert(key, value);
        }
        match grpc.unary(request, path, RawCodec).await {
            Ok(response) => Outcome::Accepted { rejected: rejected_items(signal, response.into_inner()) },
            Err(status) => classify_grpc(&status),
        }
    }
}

/// Classifies a gRPC status as the OTLP specification says.
pub fn classify_grpc(status: &Status) -> Outcome {
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    let retry_after =
        status.get_details_retry_info().and_then(|info| info.retry_delay).map(|d| d.min(MAX_SERVER_DELAY));
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retryable { reason, retry_after },
        // Throttling is retryable only when the server says when to come back.
        Code::ResourceExhausted if retry_after.is_some() => Outcome::Retryable { reason, retry_after },
        _ => Outcome::Permanent { reason },
    }
}

/// OTLP/HTTP with protobuf bodies.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    traces_url: String,
    metrics_url: String,
    logs_url: String,
    headers: http::HeaderMap,
}

impl HttpTransport {
    fn new(endpoint: &str, config: &ExporterConfig) -> Result<Self, TransportError> {
        let invalid = |reason: String| TransportError::Endpoint { endpoint: endpoint.to_owned(), reason };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &config.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|err| invalid(err.to_string()))?;
            let value = http::HeaderValue::from_str(value).map_err(|err| invalid(err.to_string()))?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(TransportError::Client)?;
        Ok(Self {
            client,
            traces_url: signal_url(endpoint, "/v1/traces"),
            metrics_url: signal_url(endpoint, "/v1/metrics"),
            logs_url: signal_url(endpoint, "/v1/logs"),
            headers,
        })
    }

    async fn send(self, signal: Signal, body: Bytes) -> Outcome {
        let url = match signal {
            Signal::Traces => &self.traces_url,
            Signal::Metrics => &self.metrics_url,
            Signal::Logs => &self.logs_url,
        };
        let response = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                return Outcome::Retryable {
                    reason: format!("HTTP request failed: {}", error_chain(&err)),
                    retry_after: None,
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let reason = format!("HTTP {status} from {url}");
        match status {
            200..=299 => match response.bytes().await {
                Ok(bytes) => Outcome::Accepted { rejected: rejected_items(signal, bytes) },
                Err(err) => Outcome::Retryable { reason: format!("reading the response: {err}"), retry_after: None },
            },
            429 | 502 | 503 | 504 => Outcome::Retryable { reason, retry_after },
            _ => Outcome::Permanent { reason },
        }
    }
}

/// The OTLP/HTTP path of every signal.
const SIGNAL_PATHS: [&str; 3] = ["/v1/traces", "/v1/metrics", "/v1/logs"];

/// `endpoint` with the signal path appended, unless it already ends with it. An endpoint that
/// ends with another signal's path (a traces URL given as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
/// say) has that path replaced, so each signal reaches its own path on the same collector.
fn signal_url(endpoint: &str, path: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with(path) {
        return trimmed.to_owned();
    }
    let base = SIGNAL_PATHS.iter().find_map(|other| trimmed.strip_suffix(other)).unwrap_or(trimmed);
    format!("{base}{path}")
}

/// Parses `Retry-After`: delay seconds or an HTTP date, capped at ten minutes.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_SERVER_DELAY));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_SERVER_DELAY))
}

/// Items the collector rejected, from an encoded partial-success response.
fn rejected_items(signal: Signal, body: Bytes) -> u64 {
    if body.is_empty() {
        return 0;
    }
    match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_spans.max(0) as u64),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_data_points.max(0) as u64),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_log_records.max(0) as u64),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A tonic codec that sends pre-encoded protobuf bytes and hands back the raw response, so a
/// batch is encoded once and retried (or spooled) byte for byte.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_classified_per_the_otlp_specification() {
        assert!(matches!(classify_grpc(&Status::unavailable("down")), Outcome::Retryable { .. }));
        assert!(matches!(classify_grpc(&Status::deadline_exceeded("slow")), Outcome::Retryable { .. }));
        assert!(matches!(classify_grpc(&Status::invalid_argument("bad")), Outcome::Permanent { .. }));
        assert!(matches!(classify_grpc(&Status::resource_exhausted("full")), Outcome::Permanent { .. }));
        let throttled = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        assert_eq!(
            classify_grpc(&throttled),
            Outcome::Retryable {
                reason: "gRPC ResourceExhausted: slow down".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("99999", now), Some(MAX_SERVER_DELAY));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn signal_paths_are_appended_once() {
        assert_eq!(signal_url("http://c:4318", "/v1/traces"), "http://c:4318/v1/traces");
        assert_eq!(signal_url("http://c:4318/", "/v1/traces"), "http://c:4318/v1/traces");
        assert_eq!(signal_url("http://c:4318/v1/traces", "/v1/traces"), "http://c:4318/v1/traces");
        assert_eq!(signal_url("http://c:4318/", "/v1/logs"), "http://c:4318/v1/logs");
        assert_eq!(signal_url("http://c:4318/v1/traces", "/v1/logs"), "http://c:4318/v1/logs");
        assert_eq!(signal_url("http://c:4318/otlp/v1/traces/", "/v1/metrics"), "http://c:4318/otlp/v1/metrics");
        assert_eq!(signal_url("http://c:4318/v1/logs", "/v1/logs"), "http://c:4318/v1/logs");
        assert_eq!(effective_endpoint("http://c:4317", false), "https://c:4317");
        assert_eq!(effective_endpoint("http://c:4317", true), "http://c:4317");
    }
}
