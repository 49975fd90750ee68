//! OTLP/HTTP receiver: `POST /v1/traces`, `POST /v1/metrics` and `POST /v1/logs` with protobuf
//! bodies, on hyper.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;

use super::received::Signal;
use super::state::{failure_message, grpc_code, http_retry_after, http_status, Shared, Verdict};
use super::SHUTDOWN_GRACE;

const PROTOBUF: &str = "application/x-protobuf";

type Reply = Response<Full<Bytes>>;

/// Serve until the collector is asked to stop, then drain connections for at most
/// [`SHUTDOWN_GRACE`].
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                Err(e) => {
                    eprintln!("TestCollector (HTTP): accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = shared.stopped() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

fn reply(status: u16, body: Vec<u8>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    response
}

/// A `google.rpc.Status` body, as OTLP/HTTP prescribes for failures.
fn error_reply(status: u16, code: tonic::Code, message: String) -> Reply {
    let body = tonic_types::Status { code: code as i32, message, details: Vec::new() };
    reply(status, body.encode_to_vec())
}

fn plain(status: StatusCode) -> Reply {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

enum Payload {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let signal = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/traces") => Signal::Traces,
        (&Method::POST, "/v1/metrics") => Signal::Metrics,
        (&Method::POST, "/v1/logs") => Signal::Logs,
        (_, "/v1/traces" | "/v1/metrics" | "/v1/logs") => return Ok(plain(StatusCode::METHOD_NOT_ALLOWED)),
        _ => return Ok(plain(StatusCode::NOT_FOUND)),
    };
    let _in_flight = shared.enter();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("<binary>").to_string()))
        .collect();
    let is_protobuf = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim() == PROTOBUF));
    let encoded = req.headers().get(CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity");
    if !is_protobuf || encoded {
        shared.reject_malformed(signal, headers);
        return Ok(error_reply(
            415,
            tonic::Code::InvalidArgument,
            format!("TestCollector: only uncompressed {PROTOBUF} bodies are supported"),
        ));
    }
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            shared.reject_malformed(signal, headers);
            return Ok(error_reply(400, tonic::Code::InvalidArgument, format!("TestCollector: reading body: {e}")));
        }
    };
    let decoded = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).map(Payload::Traces),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(Payload::Metrics),
        Signal::Logs => ExportLogsServiceRequest::decode(body).map(Payload::Logs),
    };
    let payload = match decoded {
        Ok(payload) => payload,
        Err(e) => {
            shared.reject_malformed(signal, headers);
            return Ok(error_reply(
                400,
                tonic::Code::InvalidArgument,
                format!("TestCollector: body does not decode as {signal:?} export request: {e}"),
            ));
        }
    };
    let partial = match shared.admit(signal, headers).await {
        Verdict::Record => None,
        Verdict::RecordPartial(rejected, message) => Some((rejected, message)),
        Verdict::Fail(failure) => {
            let (code, _) = grpc_code(&failure);
            let mut response = error_reply(http_status(&failure), code, failure_message(&failure));
            if let Some(value) = http_retry_after(&failure) {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(RETRY_AFTER, value);
                }
            }
            return Ok(response);
        }
    };
    Ok(match payload {
        Payload::Traces(request) => {
            shared.record_traces(request);
            let partial_success = partial
                .map(|(rejected_spans, error_message)| ExportTracePartialSuccess { rejected_spans, error_message });
            reply(200, ExportTraceServiceResponse { partial_success }.encode_to_vec())
        }
        Payload::Metrics(request) => {
            shared.record_metrics(request);
            let partial_success = partial.map(|(rejected_data_points, error_message)| ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message,
            });
            reply(200, ExportMetricsServiceResponse { partial_success }.encode_to_vec())
        }
        Payload::Logs(request) => {
            shared.record_logs(request);
            let partial_success = partial.map(|(rejected_log_records, error_message)| ExportLogsPartialSuccess {
                rejected_log_records,
                error_message,
            });
            reply(200, ExportLogsServiceResponse { partial_success }.encode_to_vec())
        }
    })
}
