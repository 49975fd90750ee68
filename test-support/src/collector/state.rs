//! State shared between the test thread and the collector's server thread: the recorded data, the
//! configured [`Behavior`], and the decision each incoming request gets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::watch;

use super::received::{Received, RequestRecord, Signal};
use super::Transport;

/// How the collector answers export requests. Set with
/// [`TestCollector::set_behavior`](super::TestCollector::set_behavior) or, for a few requests,
/// [`TestCollector::fail_next`](super::TestCollector::fail_next).
///
/// Failure behaviours are mapped onto the other transport so one setting works for both:
/// a gRPC code becomes an HTTP status (`Unavailable`→503, `ResourceExhausted`→429,
/// `InvalidArgument`→400, `Unauthenticated`→401, `PermissionDenied`→403, `DeadlineExceeded`→504,
/// otherwise 500) with the RetryInfo delay as `Retry-After` seconds, rounded up; an HTTP status
/// becomes a gRPC code (gRPC's HTTP mapping: 400→`Internal`, 401→`Unauthenticated`,
/// 403→`PermissionDenied`, 404→`Unimplemented`, 429/502/503/504→`Unavailable`, otherwise
/// `Unknown`) with an integer `Retry-After` as RetryInfo.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Behavior {
    /// Record the data and answer success.
    #[default]
    Accept,
    /// Hold the request open, recording nothing, until the behaviour changes, the collector stops,
    /// or the client gives up. A released request is answered `Unavailable` / 503, still
    /// unrecorded.
    Stall,
    /// Wait this long, then record and answer success (the data is recorded even if the client
    /// gave up meanwhile, as a real collector would; a stop during the wait answers
    /// `Unavailable` / 503 instead).
    Delay(Duration),
    /// Record the data and answer success with an OTLP `partial_success`: `rejected` items
    /// refused (`rejected_spans` for traces, `rejected_data_points` for metrics) and
    /// `message` as its `error_message`.
    PartialSuccess {
        /// Items the answer says were rejected.
        rejected: i64,
        /// The answer's `error_message`.
        message: String,
    },
    /// Answer with this gRPC status code and record nothing.
    FailGrpc(tonic::Code),
    /// Answer with this gRPC status code carrying a `google.rpc.RetryInfo` detail with this delay.
    FailGrpcRetryInfo(tonic::Code, Duration),
    /// Answer with this HTTP status, and a `Retry-After` header when given.
    FailHttp {
        /// HTTP status code.
        status: u16,
        /// `Retry-After` header value, e.g. `"1"`.
        retry_after: Option<String>,
    },
}

/// What to answer a request with, once its behaviour has played out.
pub(super) enum Verdict {
    /// Record the data and answer success.
    Record,
    /// Record the data and answer success with a `partial_success` (rejected items, message).
    RecordPartial(i64, String),
    /// Answer with a failure; the data is not recorded.
    Fail(Failure),
}

/// A failure answer, transport-neutral.
#[derive(Debug)]
pub(super) enum Failure {
    /// From [`Behavior::FailGrpc`] / [`Behavior::FailGrpcRetryInfo`].
    Grpc { code: tonic::Code, retry_delay: Option<Duration> },
    /// From [`Behavior::FailHttp`].
    Http { status: u16, retry_after: Option<String> },
    /// A stalled request released, or a delayed one cut short by a stop.
    Released,
}

/// Wake-ups for requests waiting inside the server: bumped on every behaviour change and on stop.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Control {
    pub(super) generation: u64,
    pub(super) stopping: bool,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) received: Received,
    behavior: Behavior,
    fail_next: Option<(usize, Behavior)>,
}

impl Inner {
    fn next_behavior(&mut self) -> Behavior {
        if let Some((remaining, behavior)) = &mut self.fail_next {
            let behavior = behavior.clone();
            *remaining -= 1;
            if *remaining == 0 {
                self.fail_next = None;
            }
            return behavior;
        }
        self.behavior.clone()
    }
}

/// Shared between [`TestCollector`](super::TestCollector) and its server tasks.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) transport: Transport,
    inner: Mutex<Inner>,
    /// Notified on every arrival and every recording.
    pub(super) changed: Condvar,
    pub(super) control: watch::Sender<Control>,
    in_flight: AtomicUsize,
}

/// Marks a request handler as running until dropped (also when the client gives up).
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub(super) fn new(transport: Transport) -> Self {
        Shared {
            transport,
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            control: watch::Sender::new(Control::default()),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Count a request handler as running for the guard's lifetime.
    pub(super) fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    /// Request handlers currently running.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Lock the state; a test that panicked inside a wait condition does not poison it for Drop.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_behavior(&self, behavior: Behavior) {
        {
            let mut inner = self.lock();
            inner.behavior = behavior;
            inner.fail_next = None;
        }
        self.control.send_modify(|c| c.generation += 1);
    }

    pub(super) fn behavior(&self) -> Behavior {
        self.lock().behavior.clone()
    }

    pub(super) fn fail_next(&self, n: usize, behavior: Behavior) {
        {
            let mut inner = self.lock();
            inner.behavior = Behavior::Accept;
            inner.fail_next = (n > 0).then_some((n, behavior));
        }
        self.control.send_modify(|c| c.generation += 1);
    }

    pub(super) fn set_stopping(&self, stopping: bool) {
        self.control.send_modify(|c| {
            c.stopping = stopping;
            c.generation += 1;
        });
    }

    /// Resolves once the collector is asked to stop.
    pub(super) async fn stopped(&self) {
        let mut rx = self.control.subscribe();
        let _ = rx.wait_for(|c| c.stopping).await.is_ok();
    }

    fn arrive(&self, signal: Signal, headers: Vec<(String, String)>) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        inner.received.requests.push(RequestRecord { at: Instant::now(), signal, transport: self.transport, headers });
        inner
    }

    /// Count a request whose body could not be used; it consumes no behaviour.
    pub(super) fn reject_malformed(&self, signal: Signal, headers: Vec<(String, String)>) {
        let mut inner = self.arrive(signal, headers);
        inner.received.rejected += 1;
        drop(inner);
        self.changed.notify_all();
    }

    /// Count a decoded request and play out the behaviour it gets.
    pub(super) async fn admit(&self, signal: Signal, headers: Vec<(String, String)>) -> Verdict {
        let (behavior, mut control) = {
            let mut inner = self.arrive(signal, headers);
            let behavior = inner.next_behavior();
            if !matches!(behavior, Behavior::Accept | Behavior::Delay(_) | Behavior::PartialSuccess { .. }) {
                inner.received.rejected += 1;
            }
            // Subscribed under the lock, so a later set_behavior is seen as a change.
            (behavior, self.control.subscribe())
        };
        self.changed.notify_all();
        match behavior {
            Behavior::Accept => Verdict::Record,
            Behavior::PartialSuccess { rejected, message } => Verdict::RecordPartial(rejected, message),
            Behavior::Delay(delay) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => Verdict::Record,
                    () = self.stopped() => {
                        self.lock().received.rejected += 1;
                        Verdict::Fail(Failure::Released)
                    }
                }
            }
            Behavior::Stall => {
                // Released by a stop, a dropped sender, or any behaviour other than Stall.
                while control.changed().await.is_ok() {
                    if control.borrow().stopping {
                        break;
                    }
                    let inner = self.lock();
                    if inner.behavior != Behavior::Stall || inner.fail_next.is_some() {
                        break;
                    }
                }
                Verdict::Fail(Failure::Released)
            }
            Behavior::FailGrpc(code) => Verdict::Fail(Failure::Grpc { code, retry_delay: None }),
            Behavior::FailGrpcRetryInfo(code, delay) => Verdict::Fail(Failure::Grpc { code, retry_delay: Some(delay) }),
            Behavior::FailHttp { status, retry_after } => Verdict::Fail(Failure::Http { status, retry_after }),
        }
    }

    pub(super) fn record_traces(&self, request: ExportTraceServiceRequest) {
        self.lock().received.trace_requests.push(request);
        self.changed.notify_all();
    }

    pub(super) fn record_metrics(&self, request: ExportMetricsServiceRequest) {
        self.lock().received.metric_requests.push(request);
        self.changed.notify_all();
    }

    pub(super) fn record_logs(&self, request: ExportLogsServiceRequest) {
        self.lock().received.log_requests.push(request);
        self.changed.notify_all();
    }
}

/// HTTP status for a failure answered over HTTP.
pub(super) fn http_status(failure: &Failure) -> u16 {
    match failure {
        Failure::Http { status, .. } => *status,
        Failure::Released => 503,
        Failure::Grpc { code, .. } => match code {
            tonic::Code::Unavailable => 503,
            tonic::Code::ResourceExhausted => 429,
            tonic::Code::InvalidArgument => 400,
            tonic::Code::Unauthenticated => 401,
            tonic::Code::PermissionDenied => 403,
            tonic::Code::DeadlineExceeded => 504,
            _ => 500,
        },
    }
}

/// `Retry-After` header for a failure answered over HTTP.
pub(super) fn http_retry_after(failure: &Failure) -> Option<String> {
    match failure {
        Failure::Http { retry_after, .. } => retry_after.clone(),
        Failure::Grpc { retry_delay: Some(delay), .. } => Some(delay.as_secs_f64().ceil().to_string()),
        _ => None,
    }
}

/// gRPC code and RetryInfo delay for a failure answered over gRPC.
pub(super) fn grpc_code(failure: &Failure) -> (tonic::Code, Option<Duration>) {
    match failure {
        Failure::Grpc { code, retry_delay } => (*code, *retry_delay),
        Failure::Released => (tonic::Code::Unavailable, None),
        Failure::Http { status, retry_after } => {
            let code = match status {
                400 => tonic::Code::Internal,
                401 => tonic::Code::Unauthenticated,
                403 => tonic::Code::PermissionDenied,
                404 => tonic::Code::Unimplemented,
                429 | 502 | 503 | 504 => tonic::Code::Unavailable,
                _ => tonic::Code::Unknown,
            };
            let delay = retry_after.as_deref().and_then(|s| s.trim().parse::<u64>().ok()).map(Duration::from_secs);
            (code, delay)
        }
    }
}

/// Message sent with every failure, so a test log shows where it came from.
pub(super) fn failure_message(failure: &Failure) -> String {
    match failure {
        Failure::Released => "TestCollector: request released from stall or collector stopping".into(),
        other => format!("TestCollector: configured failure {other:?}"),
    }
}
