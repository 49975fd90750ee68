//! What every request passes before its route, on the API port and on the `/metrics` listener:
//!
//! - **Origin.** A request whose `Origin` header is present and not allowed gets 403: a page of
//!   another site (or a DNS rebinding page) cannot drive the admin API or the MCP endpoints from
//!   a browser. The origins of the listener's own address are always allowed
//!   (`http://127.0.0.1:PORT`, `http://localhost:PORT`, `http://[::1]:PORT` when it listens on a
//!   loopback or unspecified address, with the port actually bound), and
//!   `server.allowed_origins` adds more.
//! - **Host.** Where the host names are restricted, a request whose `Host` is neither a loopback
//!   name or address (`localhost`, `127.0.0.0/8`, `[::1]`, with or without a port) nor one of
//!   `server.allowed_hosts` gets 403: a DNS rebinding page sends its own host name. On the API
//!   port the names are restricted on every route while the admin API runs without
//!   `admin.token` (loopback-only mode), and with a token only when `server.allowed_hosts` is
//!   not empty. A request without `Host` (HTTP/1.0) is let through: browsers always send one.
//! - **Declared body length.** A `Content-Length` above `gateway.max_body_bytes` gets 413
//!   before the route runs.
//! - **Body deadline.** Reading a request's body has `server.client_request_timeout` from the
//!   moment the head arrived; then the body reads fail, the request gets 408 and the connection
//!   is closed, so a client that stalls or trickles its body cannot hold a worker's request
//!   open (actix-web's own `client_request_timeout` covers only the head). A body the route left
//!   unread closes the connection after the answer too, chunked ones included (actix-http would
//!   otherwise wait for the rest of a chunked body, with no deadline).
//!
//! Every refusal is a JSON error `{"error": {"code", "message"}}`. [`Gate`] is an actix-web
//! middleware; wrap it inside the telemetry middleware so refusals are traced and counted.
use std::cell::{Cell, RefCell};
use std::future::{ready, Future, Ready};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{Error, ResponseError as _};
use futures_util::Stream;

use crate::api_error::{check_declared_length, ApiError};
use crate::origins::{host_allowed, own_origins, AllowedHost, AllowedOrigin};
use crate::settings::Settings;

pub use crate::origins::{is_loopback_host, is_loopback_peer, validate_hosts, validate_origins, MAX_ENTRIES};

/// Which `Host` values pass.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// Any.
    Any,
    /// Loopback names and addresses, and these.
    LoopbackAnd(Vec<AllowedHost>),
}

/// What a [`Gate`] lets through: the allowed origins and hosts, and the body limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatePolicy {
    origins: Vec<AllowedOrigin>,
    hosts: HostRule,
    max_body_bytes: Option<usize>,
    body_timeout: Option<Duration>,
}

impl GatePolicy {
    /// Origins of the listener on `bound` (its real port) and `allowed_origins`; any `Host`; no
    /// body limits. Entries that do not parse are skipped (settings are validated beforehand).
    pub fn new(bound: SocketAddr, allowed_origins: &[String]) -> Self {
        let mut origins = own_origins(bound);
        for origin in allowed_origins.iter().filter_map(|o| AllowedOrigin::parse(o).ok()) {
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Self { origins, hosts: HostRule::Any, max_body_bytes: None, body_timeout: None }
    }

    /// The strictest policy: no `Origin` allowed, loopback `Host` names only, no body. What a
    /// listener applies should its real policy be missing.
    pub fn strictest() -> Self {
        Self {
            origins: Vec::new(),
            hosts: HostRule::LoopbackAnd(Vec::new()),
            max_body_bytes: Some(0),
            body_timeout: None,
        }
    }

    /// Restricts `Host` to loopback names and addresses and `allowed_hosts`.
    pub fn loopback_hosts_and(mut self, allowed_hosts: &[String]) -> Self {
        self.hosts = HostRule::LoopbackAnd(allowed_hosts.iter().filter_map(|h| AllowedHost::parse(h).ok()).collect());
        self
    }

    /// Refuses bodies declared larger than `max_bytes` and ends body reads after `timeout`.
    pub fn body_limits(mut self, max_bytes: usize, timeout: Duration) -> Self {
        self.max_body_bytes = Some(max_bytes);
        self.body_timeout = Some(timeout);
        self
    }

    /// The policy of an application's API port, listening on `bound`: the origins of `bound` and
    /// `server.allowed_origins`; `Host` restricted to loopback names and `server.allowed_hosts`
    /// while the port asks for no credential (`token_required` false: any local page could
    /// reach it through a rebound name), or always when `server.allowed_hosts` is not empty;
    /// bodies up to `max_body_bytes`, read within `server.client_request_timeout`.
    pub fn for_api_port(bound: SocketAddr, settings: &Settings, max_body_bytes: usize, token_required: bool) -> Self {
        let policy = Self::new(bound, &settings.server.allowed_origins)
            .body_limits(max_body_bytes, settings.server.client_request_timeout);
        if !token_required || !settings.server.allowed_hosts.is_empty() {
            policy.loopback_hosts_and(&settings.server.allowed_hosts)
        } else {
            policy
        }
    }

    /// The policy of the `/metrics` listener on `bound`: its own origins and
    /// `server.allowed_origins`; `Host` restricted to loopback names and `server.allowed_hosts`
    /// when it listens on a loopback address without `prometheus.bearer_token` (only a local
    /// scraper, or a rebinding browser, can reach it then), or when `server.allowed_hosts` is
    /// not empty.
    pub fn for_metrics(bound: SocketAddr, settings: &Settings) -> Self {
        let policy = Self::new(bound, &settings.server.allowed_origins);
        let loopback_only = is_loopback_peer(bound.ip()) && settings.prometheus.bearer_token.is_empty();
        if loopback_only || !settings.server.allowed_hosts.is_empty() {
            policy.loopback_hosts_and(&settings.server.allowed_hosts)
        } else {
            policy
        }
    }

    /// The allowed origins, as `scheme://host:port`.
    pub fn origins(&self) -> Vec<String> {
        self.origins.iter().map(ToString::to_string).collect()
    }

    /// Whether `Host` is restricted.
    pub fn restricts_hosts(&self) -> bool {
        self.hosts != HostRule::Any
    }

    /// Lets the request with `headers` through, or says why not.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        for origin in headers.get_all(header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|text| self.origins.iter().any(|o| o.matches(text)));
            if !allowed {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "requests from this Origin are not allowed (server.allowed_origins)",
                ));
            }
        }
        if let HostRule::LoopbackAnd(extra) = &self.hosts {
            if let Some(host) = headers.get(header::HOST) {
                if !host_allowed(host.as_bytes(), extra) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "host_not_allowed",
                        "this Host is not allowed: only loopback names (localhost, 127.0.0.1, [::1]) \
                         and server.allowed_hosts are accepted here",
                    ));
                }
            }
        }
        if let Some(max) = self.max_body_bytes {
            check_declared_length(headers, max)?;
        }
        Ok(())
    }
}

/// The middleware; see the [module](self).
#[derive(Debug, Clone)]
pub struct Gate {
    policy: Arc<GatePolicy>,
}

impl Gate {
    /// A gate applying `policy`.
    pub fn new(policy: Arc<GatePolicy>) -> Self {
        Self { policy }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Gate
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<GateBody<B>>;
    type Error = Error;
    type Transform = GateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(GateService { service, policy: self.policy.clone() }))
    }
}

/// The middleware service wrapping one worker's app.
#[derive(Debug)]
pub struct GateService<S> {
    service: S,
    policy: Arc<GatePolicy>,
}

impl<S, B> Service<ServiceRequest> for GateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<GateBody<B>>;
    type Error = Error;
    type Future = GateFuture<S::Future, B>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        // Where bodies have a deadline, the gate holds every request body until the answer is
        // written (see `GateBody`); the route reads it through a stream with the deadline.
        let held = match self.policy.body_timeout {
            Some(timeout) if !matches!(req.parts().1, Payload::None) => {
                let (_, payload) = req.parts_mut();
                let body = Rc::new(SharedBody { payload: RefCell::new(payload.take()), expired: Cell::new(false) });
                let stream = DeadlinePayload {
                    body: body.clone(),
                    deadline: tokio::time::Instant::now() + timeout,
                    sleep: None,
                    timeout,
                };
                *payload = Payload::Stream { payload: Box::pin(stream) };
                Some(body)
            }
            _ => None,
        };
        if let Err(refused) = self.policy.check(req.headers()) {
            let answer = req.into_response(refused.error_response());
            return GateFuture { inner: None, refused: Some(answer), held, _body: PhantomData };
        }
        GateFuture { inner: Some(self.service.call(req)), refused: None, held, _body: PhantomData }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a [`GateService`]: the refusal, or the inner service's answer (replaced by
    /// a 408 that closes the connection when the body deadline passed while it read).
    pub struct GateFuture<F, B> {
        #[pin]
        inner: Option<F>,
        refused: Option<ServiceResponse<BoxBody>>,
        held: Option<Rc<SharedBody>>,
        _body: PhantomData<B>,
    }
}

impl<F, B> Future for GateFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody + 'static,
{
    type Output = Result<ServiceResponse<GateBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let held = this.held.take();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(match this.refused.take() {
                Some(answer) => Ok(answer.map_body(|_, body| GateBody { inner: EitherBody::right(body), held })),
                None => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "answered twice").into()),
            });
        };
        let answer = match inner.poll(cx) {
            Poll::Ready(answer) => answer,
            Poll::Pending => {
                *this.held = held;
                return Poll::Pending;
            }
        };
        if held.as_ref().is_some_and(|body| body.expired.get()) {
            // The route's own answer to the failed read (a 400 of some kind) becomes the 408.
            return Poll::Ready(match answer {
                Ok(answer) => {
                    let timeout = ServiceResponse::new(answer.request().clone(), body_timeout().error_response());
                    Ok(timeout.map_body(|_, body| GateBody { inner: EitherBody::right(body), held }))
                }
                Err(_) => Err(body_timeout().into()),
            });
        }
        Poll::Ready(answer.map(|answer| answer.map_body(|_, body| GateBody { inner: EitherBody::left(body), held })))
    }
}

pin_project_lite::pin_project! {
    /// The body of an answer; it holds the request's body until it is written. actix-http
    /// decides, once the answer is written, whether to read the rest of an unread request body
    /// (for keep-alive) or to close the connection: while the request body is held it closes,
    /// where it would otherwise wait for the rest of a chunked body with no deadline at all.
    pub struct GateBody<B> {
        #[pin]
        inner: EitherBody<B>,
        held: Option<Rc<SharedBody>>,
    }
}

impl<B: MessageBody + 'static> MessageBody for GateBody<B> {
    type Error = <EitherBody<B> as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().inner.poll_next(cx)
    }
}

/// The 408 of a body that did not arrive in time; the connection is closed after it.
fn body_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body did not arrive within server.client_request_timeout",
    )
    .closing_connection()
}

/// A request's body, shared by the stream the handler reads and the gate's answer.
struct SharedBody {
    payload: RefCell<Payload>,
    expired: Cell<bool>,
}

/// A request body that fails once its deadline has passed.
struct DeadlinePayload {
    body: Rc<SharedBody>,
    deadline: tokio::time::Instant,
    /// Made at the first read that has to wait: a body that is already there costs no timer.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.body.expired.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut *this.body.payload.borrow_mut()).poll_next(cx) {
            return Poll::Ready(item);
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.body.expired.set(true);
                let message = format!("the body did not arrive within {}", humantime::format_duration(this.timeout));
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        map
    }

    fn code(result: Result<(), ApiError>) -> Option<&'static str> {
        result.err().map(|err| err.code())
    }

    #[test]
    fn own_origins_follow_the_bound_address_and_port() {
        let loopback = GatePolicy::new("127.0.0.1:8123".parse().unwrap(), &[]);
        assert_eq!(
            loopback.origins(),
            ["http://localhost:8123", "http://127.0.0.1:8123", "http://[::1]:8123"].map(str::to_owned)
        );
        let any = GatePolicy::new("[::]:9000".parse().unwrap(), &["https://gw.example.com".to_owned()]);
        assert_eq!(
            any.origins(),
            ["http://localhost:9000", "http://127.0.0.1:9000", "http://[::1]:9000", "https://gw.example.com:443"]
                .map(str::to_owned)
        );
        let own = GatePolicy::new("10.1.2.3:80".parse().unwrap(), &[]);
        assert_eq!(own.origins(), ["http://10.1.2.3:80"].map(str::to_owned));
        let other_loopback = GatePolicy::new("127.0.0.2:1".parse().unwrap(), &[]);
        assert!(other_loopback.origins().contains(&"http://127.0.0.2:1".to_owned()));
    }

    #[test]
    fn origins_are_compared_as_browsers_write_them() {
        let policy = GatePolicy::new(
            "127.0.0.1:8000".parse().unwrap(),
            &["https://GW.example.com/".to_owned(), "http://proxy:80".to_owned()],
        );
        for allowed in [
            "http://127.0.0.1:8000",
            "http://localhost:8000",
            "http://LOCALHOST:8000",
            "http://[::1]:8000",
            "https://gw.example.com",
            "https://gw.example.com:443",
            "http://proxy",
        ] {
            assert_eq!(code(policy.check(&headers(&[("origin", allowed)]))), None, "{allowed}");
        }
        for refused in [
            "http://evil.example",
            "http://127.0.0.1:8001",
            "https://127.0.0.1:8000",
            "http://gw.example.com",
            "null",
            "",
            "http://127.0.0.1:8000/path",
            "http://user@127.0.0.1:8000",
            "file://",
        ] {
            assert_eq!(code(policy.check(&headers(&[("origin", refused)]))), Some("origin_not_allowed"), "{refused}");
        }
        // Every Origin header counts.
        let two = headers(&[("origin", "http://127.0.0.1:8000"), ("origin", "http://evil.example")]);
        assert_eq!(code(policy.check(&two)), Some("origin_not_allowed"));
        assert_eq!(code(policy.check(&HeaderMap::new())), None, "no Origin: not a browser's cross-site request");
    }

    #[test]
    fn loopback_only_mode_takes_loopback_hosts_and_the_allowed_ones() {
        let policy = GatePolicy::new("0.0.0.0:8000".parse().unwrap(), &[])
            .loopback_hosts_and(&["gw.example.com".to_owned(), "10.0.0.5:8000".to_owned()]);
        assert!(policy.restricts_hosts());
        for allowed in [
            "localhost",
            "localhost:8000",
            "LocalHost.:1",
            "127.0.0.1",
            "127.0.0.1:8000",
            "127.1.2.3:9",
            "[::1]",
            "[::1]:8000",
            "[::ffff:127.0.0.1]:8000",
            "gw.example.com",
            "GW.example.com.:443",
            "10.0.0.5:8000",
        ] {
            assert_eq!(code(policy.check(&headers(&[("host", allowed)]))), None, "{allowed}");
        }
        for refused in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.5:8001",
            "10.0.0.5",
            "[::2]:8000",
            "[::ffff:10.0.0.1]",
            "128.0.0.1",
            "localhost:",
            "localhost:x",
            "user@localhost",
            "",
        ] {
            assert_eq!(code(policy.check(&headers(&[("host", refused)]))), Some("host_not_allowed"), "{refused}");
        }
        assert_eq!(code(policy.check(&HeaderMap::new())), None, "no Host (HTTP/1.0)");
        let open = GatePolicy::new("0.0.0.0:8000".parse().unwrap(), &[]);
        assert_eq!(code(open.check(&headers(&[("host", "anything.example")]))), None);
    }

    #[test]
    fn the_api_port_restricts_hosts_without_an_admin_token() {
        let mut settings = Settings::default();
        let bound: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        assert!(GatePolicy::for_api_port(bound, &settings, 1024, false).restricts_hosts());
        assert!(!GatePolicy::for_api_port(bound, &settings, 1024, true).restricts_hosts());
        settings.server.allowed_hosts = vec!["gw.example.com".to_owned()];
        assert!(GatePolicy::for_api_port(bound, &settings, 1024, true).restricts_hosts());

        let settings = Settings::default();
        assert!(GatePolicy::for_metrics(bound, &settings).restricts_hosts());
        assert!(!GatePolicy::for_metrics("0.0.0.0:9464".parse().unwrap(), &settings).restricts_hosts());
    }

    #[test]
    fn declared_lengths_over_the_limit_are_refused() {
        let policy = GatePolicy::new("127.0.0.1:1".parse().unwrap(), &[]).body_limits(1024, Duration::from_secs(1));
        assert_eq!(code(policy.check(&headers(&[("content-length", "1025")]))), Some("body_too_large"));
        assert_eq!(code(policy.check(&headers(&[("content-length", "1024")]))), None);
    }
}
