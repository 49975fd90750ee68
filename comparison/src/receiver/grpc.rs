//! The receiver's two gRPC services, `TraceService/Export` and `MetricsService/Export`, on
//! tonic's server machinery (framing, HTTP/2, status codes) with a codec of our own: a request
//! is handed over as its bytes (no copy: the frame's buffer is split off) and counted by walking
//! its wire form ([`super::wire`]), never decoded into structs. The answer is the empty
//! `Export*ServiceResponse` (no `partial_success`), which is zero bytes on the wire.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::wire;
use super::Shared;

/// A request's bytes in; an empty message out.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ();
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
    type Item = ();
    type Error = Status;

    fn encode(&mut self, (): (), _dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Which export a [`Counting`] service answers, and what it counts.
pub(super) trait Signal: Send + Sync + 'static {
    /// The gRPC service name.
    const NAME: &'static str;
    /// The path of its `Export` method.
    const PATH: &'static str;
    /// Counts one request into `shared`.
    fn count(shared: &Shared, request: &[u8]) -> Result<(), wire::WireError>;
}

/// `opentelemetry.proto.collector.trace.v1.TraceService`: spans per `service.name`.
pub(super) struct Traces;

impl Signal for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    fn count(shared: &Shared, request: &[u8]) -> Result<(), wire::WireError> {
        // Walk first, then take the lock once for the request's (usually single) resource.
        let mut first: Option<(&str, u64)> = None;
        let mut more: Vec<(&str, u64)> = Vec::new();
        wire::spans_by_service(request, |service, spans| match first {
            None => first = Some((service, spans)),
            Some(_) => more.push((service, spans)),
        })?;
        let mut counts = shared.lock();
        for (service, spans) in first.into_iter().chain(more) {
            super::add(&mut counts.spans, service, spans);
        }
        Ok(())
    }
}

/// `opentelemetry.proto.collector.metrics.v1.MetricsService`: export calls per `service.name`.
pub(super) struct Metrics;

impl Signal for Metrics {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

    fn count(shared: &Shared, request: &[u8]) -> Result<(), wire::WireError> {
        let mut services: Vec<&str> = Vec::new();
        wire::metric_resources(request, |service| services.push(service))?;
        let mut counts = shared.lock();
        for service in services {
            super::add(&mut counts.metric_exports, service, 1);
        }
        Ok(())
    }
}

/// The tower service tonic's router mounts for signal `S`.
pub(super) struct Counting<S> {
    shared: Arc<Shared>,
    max_message_bytes: usize,
    signal: std::marker::PhantomData<fn() -> S>,
}

impl<S> Clone for Counting<S> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), max_message_bytes: self.max_message_bytes, signal: self.signal }
    }
}

impl<S: Signal> Counting<S> {
    /// Counts into `shared`, refusing requests larger than `max_message_bytes`.
    pub(super) fn new(shared: Arc<Shared>, max_message_bytes: usize) -> Self {
        Self { shared, max_message_bytes, signal: std::marker::PhantomData }
    }
}

impl<S: Signal> NamedService for Counting<S> {
    const NAME: &'static str = S::NAME;
}

/// One `Export` call: count, notify the waiters, answer.
struct Export<S> {
    shared: Arc<Shared>,
    signal: std::marker::PhantomData<fn() -> S>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S: Signal> UnaryService<Bytes> for Export<S> {
    type Response = ();
    type Future = BoxFuture<Result<Response<()>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let result = S::count(&self.shared, request.get_ref());
        self.shared.changed.notify_all();
        Box::pin(std::future::ready(
            result.map(|()| Response::new(())).map_err(|err| Status::invalid_argument(err.to_string())),
        ))
    }
}

impl<S: Signal> tower_service::Service<http::Request<Body>> for Counting<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != S::PATH {
            return Box::pin(async { Ok(Status::unimplemented("only Export is served").into_http()) });
        }
        let export = Export::<S> { shared: self.shared.clone(), signal: std::marker::PhantomData };
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec).apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(export, request).await)
        })
    }
}
