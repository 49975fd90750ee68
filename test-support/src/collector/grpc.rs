//! OTLP/gRPC receiver: the generated `TraceService`, `MetricsService` and `LogsService` servers
//! on tonic.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::received::Signal;
use super::state::{failure_message, grpc_code, Failure, Shared, Verdict};

/// Largest request accepted; the tonic default (4 MiB) is small for load tests.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct Receiver {
    shared: Arc<Shared>,
}

fn headers<T>(request: &Request<T>) -> Vec<(String, String)> {
    request
        .metadata()
        .clone()
        .into_headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("<binary>").to_string()))
        .collect()
}

fn status(failure: &Failure) -> Status {
    let (code, retry_delay) = grpc_code(failure);
    let message = failure_message(failure);
    match retry_delay {
        Some(delay) => Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(delay))),
        None => Status::new(code, message),
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _in_flight = self.shared.enter();
        let headers = headers(&request);
        match self.shared.admit(Signal::Traces, headers).await {
            Verdict::Record => {
                self.shared.record_traces(request.into_inner());
                Ok(Response::new(ExportTraceServiceResponse::default()))
            }
            Verdict::RecordPartial(rejected_spans, error_message) => {
                self.shared.record_traces(request.into_inner());
                let partial_success = Some(ExportTracePartialSuccess { rejected_spans, error_message });
                Ok(Response::new(ExportTraceServiceResponse { partial_success }))
            }
            Verdict::Fail(failure) => Err(status(&failure)),
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let _in_flight = self.shared.enter();
        let headers = headers(&request);
        match self.shared.admit(Signal::Metrics, headers).await {
            Verdict::Record => {
                self.shared.record_metrics(request.into_inner());
                Ok(Response::new(ExportMetricsServiceResponse::default()))
            }
            Verdict::RecordPartial(rejected_data_points, error_message) => {
                self.shared.record_metrics(request.into_inner());
                let partial_success = Some(ExportMetricsPartialSuccess { rejected_data_points, error_message });
                Ok(Response::new(ExportMetricsServiceResponse { partial_success }))
            }
            Verdict::Fail(failure) => Err(status(&failure)),
        }
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let _in_flight = self.shared.enter();
        let headers = headers(&request);
        match self.shared.admit(Signal::Logs, headers).await {
            Verdict::Record => {
                self.shared.record_logs(request.into_inner());
                Ok(Response::new(ExportLogsServiceResponse::default()))
            }
            Verdict::RecordPartial(rejected_log_records, error_message) => {
                self.shared.record_logs(request.into_inner());
                let partial_success = Some(ExportLogsPartialSuccess { rejected_log_records, error_message });
                Ok(Response::new(ExportLogsServiceResponse { partial_success }))
            }
            Verdict::Fail(failure) => Err(status(&failure)),
        }
    }
}

/// Serve until the collector is asked to stop; in-flight requests are then drained gracefully.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let receiver = Receiver { shared: shared.clone() };
    // TCP_NODELAY as collectors set it: without it every answer waits on a delayed ACK.
    let result = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .add_service(MetricsServiceServer::new(receiver.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .add_service(LogsServiceServer::new(receiver).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shared.stopped())
        .await;
    if let Err(e) = result {
        eprintln!("TestCollector (gRPC): server error: {e}");
    }
}
