//! The actix-web middleware (the seed's `instrument_fastapi`, for actix-web): for every request
//! a SERVER span named `{METHOD} {route}` with the HTTP semantic-convention attributes, a child
//! of the incoming W3C `traceparent`; one `record_request`; and an `x-request-id` taken from the
//! request or generated, echoed in the response and carried by every log line of the request.
//!
//! Durations come from the monotonic clock. An actix `Err` coming back from the inner service
//! (an inner middleware's error) is measured, counted and traced with the status code its error
//! response will have, then passed on for actix-web to render.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Version;
use actix_web::Error;
use metamcp_telemetry_actors::ingress::{HttpMethod, SpanRef};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::header_capture::CapturedHeader;
use crate::manager::TelemetryManager;
use crate::propagation;

pub use crate::header_capture::{
    is_denied_header, validate_captured_headers, DENIED_HEADERS, MAX_CAPTURED_HEADERS, MAX_CAPTURED_HEADER_VALUE,
};

/// The request id header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Longest `url.path` attribute value kept.
const MAX_PATH_ATTRIBUTE: usize = 2048;
/// Longest incoming request id accepted; longer or non-printable ids are replaced.
const MAX_REQUEST_ID: usize = 128;
/// Most values of one captured header kept (a header may repeat).
const MAX_CAPTURED_HEADER_VALUES: usize = 8;

/// The id of the request being handled, readable from the current OpenTelemetry context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }

    /// The request id of the current context, if a request is being handled.
    pub fn current() -> Option<RequestId> {
        Context::map_current(|cx| cx.get::<RequestId>().cloned())
    }

    /// The caller's id when it is usable (and `true`), or a generated one.
    fn from_request(req: &ServiceRequest) -> (Self, bool) {
        if let Some(value) = req.headers().get(&REQUEST_ID_HEADER) {
            let bytes = value.as_bytes();
            if !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| b.is_ascii_graphic()) {
                return (RequestId(value.clone()), true);
            }
        }
        (Self::generate(), false)
    }

    fn generate() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 32];
        let mut bits = fastrand::u128(..);
        for digit in id.iter_mut().rev() {
            *digit = HEX[(bits & 0xf) as usize];
            bits >>= 4;
        }
        // 32 lowercase hex digits are always a valid header value.
        RequestId(HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0")))
    }
}

/// Most distinct `{METHOD} {route}` span names kept for the life of the process. Route templates
/// come from the application's route table, so a real service needs far fewer; past the bound,
/// names are formatted per request.
const MAX_INTERNED_NAMES: usize = 1024;

type NameTable = std::sync::RwLock<std::collections::HashMap<Box<str>, [Option<&'static str>; 10]>>;

/// The interned span name `{METHOD} {route}`, shared by every request of that route, so naming a
/// span costs a read-locked lookup instead of an allocation.
fn span_name(method: HttpMethod, route: &str) -> Option<&'static str> {
    thread_local! {
        /// The name this thread looked up last: a worker serving one route over and over finds
        /// it with a string comparison instead of a hash and a lock.
        static LAST: std::cell::Cell<Option<(HttpMethod, &'static str)>> = const { std::cell::Cell::new(None) };
    }
    if let Some((last_method, name)) = LAST.with(std::cell::Cell::get) {
        if last_method == method && name.get(method.as_str().len() + 1..) == Some(route) {
            return Some(name);
        }
    }
    let name = interned_span_name(method, route)?;
    LAST.with(|last| last.set(Some((method, name))));
    Some(name)
}

fn interned_span_name(method: HttpMethod, route: &str) -> Option<&'static str> {
    static NAMES: std::sync::OnceLock<NameTable> = std::sync::OnceLock::new();
    let table = NAMES.get_or_init(Default::default);
    let slot = method as usize;
    if let Ok(names) = table.read() {
        if let Some(name) = names.get(route).and_then(|by_method| by_method[slot]) {
            return Some(name);
        }
    }
    let mut names = table.write().ok()?;
    if names.len() >= MAX_INTERNED_NAMES && !names.contains_key(route) {
        return None;
    }
    let by_method = names.entry(route.into()).or_insert([None; 10]);
    // Bounded by MAX_INTERNED_NAMES routes × 10 methods; these names live as long as the process.
    Some(*by_method[slot].get_or_insert_with(|| Box::leak(format!("{} {route}", method.as_str()).into_boxed_str())))
}

/// The middleware factory; create it with [`TelemetryManager::middleware`].
#[derive(Clone, Debug)]
pub struct TelemetryMiddleware {
    manager: TelemetryManager,
}

impl TelemetryManager {
    /// The actix-web middleware: a server span and `record_request` for every request.
    pub fn middleware(&self) -> TelemetryMiddleware {
        TelemetryMiddleware { manager: self.clone() }
    }
}

impl<S, B> Transform<S, ServiceRequest> for TelemetryMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = TelemetryService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(TelemetryService {
            service,
            captured: self.manager.inner.capture_headers.clone(),
            manager: self.manager.clone(),
            trace_context: TraceContextPropagator::new(),
            baggage: BaggagePropagator::new(),
        }))
    }
}

/// The middleware service wrapping one actix-web worker's app.
pub struct TelemetryService<S> {
    service: S,
    captured: std::sync::Arc<[CapturedHeader]>,
    manager: TelemetryManager,
    trace_context: TraceContextPropagator,
    baggage: BaggagePropagator,
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The text of a client address, as `IpAddr`'s `Display` writes it; IPv4 addresses (the usual
/// case) without going through the formatting machinery, which costs ten times as much.
fn client_address(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (index, octet) in v4.octets().into_iter().enumerate() {
        if index > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    // Only ASCII digits and dots were written.
    std::str::from_utf8(&text[..len]).map(str::to_owned).unwrap_or_else(|_| ip.to_string())
}

fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl<S, B> Service<ServiceRequest> for TelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = TelemetryFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let (request_id, supplied) = RequestId::from_request(&req);
        let Some(tracer) = self.manager.tracer() else {
            // Disabled: no span, no metric; the request id still travels.
            return TelemetryFuture { inner: self.service.call(req), state: Some(State::Passthrough(request_id)) };
        };

        let method = HttpMethod::parse(req.method().as_str());
        let parent = propagation::extract(&self.trace_context, &self.baggage, req.headers());
        let mut attributes = Vec::with_capacity(10);
        attributes.push(KeyValue::new("http.request.method", method.as_str()));
        if method == HttpMethod::Other {
            attributes.push(KeyValue::new("http.request.method_original", truncated(req.method().as_str(), 64)));
        }
        attributes.push(KeyValue::new("url.path", truncated(req.path(), MAX_PATH_ATTRIBUTE)));
        attributes.push(KeyValue::new("url.scheme", if req.app_config().secure() { "https" } else { "http" }));
        attributes.push(KeyValue::new("network.protocol.version", protocol_version(req.version())));
        if let Some(peer) = req.peer_addr() {
            attributes.push(KeyValue::new("client.address", client_address(peer.ip())));
        }
        if let Some(agent) = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
            attributes.push(KeyValue::new("user_agent.original", truncated(agent, 512)));
        }
        for header in self.captured.iter() {
            let values: Vec<opentelemetry::StringValue> = req
                .headers()
                .get_all(&header.name)
                .take(MAX_CAPTURED_HEADER_VALUES)
                .map(|value| truncated(&String::from_utf8_lossy(value.as_bytes()), MAX_CAPTURED_HEADER_VALUE).into())
                .collect();
            if !values.is_empty() {
                attributes.push(KeyValue::new(
                    header.key.clone(),
                    opentelemetry::Value::Array(opentelemetry::Array::String(values)),
                ));
            }
        }
        if supplied {
            // A caller's id links its records to this trace; a generated one is in the logs.
            attributes.push(KeyValue::new("http.request.header.x-request-id", request_id.as_str().to_owned()));
        }
        // The route is known cheaply only once the router has run (matching it now would run the
        // router's patterns a second time); the span is renamed `{METHOD} {route}` at the end.
        let span = tracer
            .span_builder(method.as_str())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(span).with_value(request_id.clone());
        let inner = {
            let _attached = cx.clone().attach();
            self.service.call(req)
        };
        let traced = Traced { cx, method, start, request_id, manager: self.manager.clone() };
        TelemetryFuture { inner, state: Some(State::Traced(traced)) }
    }
}

/// What a traced request carries from `call` to its response.
struct Traced {
    cx: Context,
    method: HttpMethod,
    start: Instant,
    request_id: RequestId,
    manager: TelemetryManager,
}

enum State {
    Passthrough(RequestId),
    Traced(Traced),
}

pin_project_lite::pin_project! {
    /// The response future of [`TelemetryService`]: polls the inner service with the request's
    /// context attached, then ends the span, records the request and sets `x-request-id`.
    pub struct TelemetryFuture<F> {
        #[pin]
        inner: F,
        state: Option<State>,
    }
}

impl<F, B> Future for TelemetryFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = Result<ServiceResponse<B>, Error>;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let outcome = match this.state {
            Some(State::Traced(traced)) => {
                let _attached = traced.cx.clone().attach();
                std::task::ready!(this.inner.poll(task))
            }
            _ => std::task::ready!(this.inner.poll(task)),
        };
        let result = match this.state.take() {
            Some(State::Traced(traced)) => finish(traced, outcome),
            Some(State::Passthrough(request_id)) => outcome.map(|mut response| {
                response.headers_mut().insert(REQUEST_ID_HEADER, request_id.0);
                response
            }),
            None => outcome,
        };
        std::task::Poll::Ready(result)
    }
}

/// Ends the span, records the request, and echoes the request id.
fn finish<B>(traced: Traced, outcome: Result<ServiceResponse<B>, Error>) -> Result<ServiceResponse<B>, Error> {
    let Traced { cx, method, start, request_id, manager } = traced;
    let (status, failed, route) = match &outcome {
        Ok(response) => {
            (response.status().as_u16(), response.response().error().is_some(), response.request().match_pattern())
        }
        // An inner middleware's error carries no request: its route is unknown.
        Err(err) => (err.as_response_error().status_code().as_u16(), true, None),
    };
    let elapsed = start.elapsed();
    let span = cx.span();
    if let Some(route) = &route {
        match span_name(method, route) {
            Some(name) => {
                span.update_name(name);
                // The interned name is "{METHOD} {route}": the route is its tail.
                span.set_attribute(KeyValue::new("http.route", &name[method.as_str().len() + 1..]));
            }
            None => {
                span.update_name(format!("{} {route}", method.as_str()));
                span.set_attribute(KeyValue::new("http.route", route.clone()));
            }
        }
    }
    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    if status >= 500 {
        span.set_attribute(KeyValue::new("error.type", status.to_string()));
        span.set_status(Status::error(format!("HTTP {status}")));
    } else if failed {
        span.set_attribute(KeyValue::new("error.type", status.to_string()));
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        // The access log line carries the request's trace and request ids.
        let _attached = cx.clone().attach();
        tracing::debug!(
            method = method.as_str(),
            route = route.as_deref().unwrap_or(UNMATCHED_ROUTE),
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request served"
        );
    }
    if manager.http_access_enabled() {
        let route = route.as_deref().unwrap_or(UNMATCHED_ROUTE);
        manager.record_http_access(method.as_str(), route, status, elapsed, &cx);
    }
    let exemplar = SpanRef::sampled(span.span_context());
    span.end();
    manager.record_request_method(method, route.as_deref().unwrap_or(UNMATCHED_ROUTE), status, elapsed, exemplar);
    let mut response = outcome?;
    response.headers_mut().insert(REQUEST_ID_HEADER, request_id.0);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_read_as_display_writes_them() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        for octets in
            [[0, 0, 0, 0], [127, 0, 0, 1], [10, 1, 2, 3], [255, 255, 255, 255], [9, 10, 99, 100], [1, 20, 200, 201]]
        {
            let ip = IpAddr::V4(Ipv4Addr::from(octets));
            assert_eq!(client_address(ip), ip.to_string());
        }
        for bits in 0..=255u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(bits.wrapping_mul(0x0101_0101) ^ (bits << 7)));
            assert_eq!(client_address(ip), ip.to_string());
        }
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(client_address(v6), "::1");
    }

    #[test]
    fn span_names_follow_the_method_and_the_route_through_the_per_thread_cache() {
        let calls = [
            (HttpMethod::Get, "/items/{id}", "GET /items/{id}"),
            (HttpMethod::Get, "/items/{id}", "GET /items/{id}"),
            (HttpMethod::Post, "/items/{id}", "POST /items/{id}"),
            (HttpMethod::Post, "/items", "POST /items"),
            (HttpMethod::Get, "/items/{id}", "GET /items/{id}"),
            (HttpMethod::Other, "/items", "_OTHER /items"),
            (HttpMethod::Get, "/items/{id}/x", "GET /items/{id}/x"),
        ];
        for (method, route, expected) in calls {
            assert_eq!(span_name(method, route), Some(expected));
        }
    }
}
