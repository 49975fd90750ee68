//! [`TestCollector`]: a real OTLP receiver on a loopback port, for integration tests.
//!
//! It runs on its own thread with its own multi-thread tokio runtime, so it serves whatever runtime
//! the test uses (or none) and keeps serving while the test thread blocks in a wait. It records
//! every decoded export request, can be told to fail, stall or delay ([`Behavior`]), and can be
//! stopped and restarted on the same port with its recordings kept.
//!
//! ```ignore
//! let collector = TestCollector::start(Transport::Grpc);
//! // point the exporter at collector.endpoint(), produce telemetry…
//! let spans = collector.wait_for_spans(1, Duration::from_secs(5));
//! assert_eq!(spans[0].name, "tools/call");
//! ```

mod grpc;
mod http;
mod logs;
mod received;
mod state;

use std::fmt;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

pub use logs::ReceivedLog;
pub use received::{
    any_value_string, attr_map, HistogramPoint, Number, PointValue, Received, ReceivedExemplar, ReceivedPoint,
    ReceivedSpan, RequestRecord, Signal,
};
pub use state::Behavior;

use state::Shared;

/// How long a stop waits for in-flight requests before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// After the last handler of a stopping collector returns, how long its answer gets to be sent.
const FLUSH_ALLOWANCE: Duration = Duration::from_millis(100);
/// How long a restart keeps retrying a bind that fails with "address in use".
const REBIND_PATIENCE: Duration = Duration::from_secs(5);
/// Poll period of the async waits.
const ASYNC_POLL: Duration = Duration::from_millis(5);

/// The OTLP transport a [`TestCollector`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC: `opentelemetry.proto.collector.{trace,metrics,logs}.v1.*Service/Export`.
    Grpc,
    /// OTLP/HTTP with protobuf bodies: `POST /v1/traces`, `POST /v1/metrics`, `POST /v1/logs`.
    Http,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Grpc => "gRPC",
            Transport::Http => "HTTP",
        })
    }
}

/// A loopback OTLP receiver that records what it decodes. Stops on drop.
pub struct TestCollector {
    transport: Transport,
    port: u16,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

impl fmt::Debug for TestCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCollector")
            .field("transport", &self.transport)
            .field("port", &self.port)
            .field("running", &self.is_running())
            .finish()
    }
}

impl TestCollector {
    /// Start a collector on a free loopback port.
    pub fn start(transport: Transport) -> Self {
        Self::start_on(transport, 0)
    }

    /// Start a collector on `127.0.0.1:port` (`0` picks a free port). Retries "address in use" for
    /// a few seconds, then panics.
    pub fn start_on(transport: Transport, port: u16) -> Self {
        let mut collector = TestCollector { transport, port, shared: Arc::new(Shared::new(transport)), server: None };
        collector.launch(REBIND_PATIENCE);
        collector
    }

    /// The transport this collector speaks.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// `http://127.0.0.1:PORT`, the exporter endpoint for either transport.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/v1/traces`, the full OTLP/HTTP traces URL.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint())
    }

    /// `http://127.0.0.1:PORT/v1/metrics`, the full OTLP/HTTP metrics URL.
    pub fn metrics_url(&self) -> String {
        format!("{}/v1/metrics", self.endpoint())
    }

    /// `http://127.0.0.1:PORT/v1/logs`, the full OTLP/HTTP logs URL.
    pub fn logs_url(&self) -> String {
        format!("{}/v1/logs", self.endpoint())
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True between start/restart and stop.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Answer every following request this way; cancels a pending [`fail_next`](Self::fail_next)
    /// and releases stalled requests unless `behavior` is [`Behavior::Stall`].
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.set_behavior(behavior);
    }

    /// The behaviour set with [`set_behavior`](Self::set_behavior).
    pub fn behavior(&self) -> Behavior {
        self.shared.behavior()
    }

    /// Answer the next `n` requests with `behavior`, then [`Behavior::Accept`] (the base behaviour
    /// is reset to `Accept` now). Malformed requests do not use up the `n`.
    pub fn fail_next(&self, n: usize, behavior: Behavior) {
        self.shared.fail_next(n, behavior);
    }

    /// Read the recordings under the lock, without copying them.
    pub fn snapshot<R>(&self, read: impl FnOnce(&Received) -> R) -> R {
        read(&self.shared.lock().received)
    }

    /// Recorded trace export requests, in arrival order.
    pub fn trace_requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.snapshot(|r| r.trace_requests().to_vec())
    }

    /// Recorded metric export requests, in arrival order.
    pub fn metric_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.snapshot(|r| r.metric_requests().to_vec())
    }

    /// All recorded spans, flattened, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.snapshot(Received::spans)
    }

    /// Number of recorded spans.
    pub fn span_count(&self) -> usize {
        self.snapshot(Received::span_count)
    }

    /// The first recorded span named `name`.
    pub fn find_span(&self, name: &str) -> Option<ReceivedSpan> {
        self.spans().into_iter().find(|s| s.name == name)
    }

    /// Latest point of each series of metric `name` (see [`Received::metric_points`]).
    pub fn metric_points(&self, name: &str) -> Vec<ReceivedPoint> {
        self.snapshot(|r| r.metric_points(name))
    }

    /// Names of all recorded metrics, sorted.
    pub fn metric_names(&self) -> Vec<String> {
        self.snapshot(Received::metric_names)
    }

    /// Export calls received, including rejected, stalled and malformed ones.
    pub fn request_count(&self) -> usize {
        self.snapshot(Received::request_count)
    }

    /// Export calls whose data was not recorded (failed, stalled, malformed).
    pub fn rejected_count(&self) -> usize {
        self.snapshot(Received::rejected_count)
    }

    /// Arrival time of every export call, in order.
    pub fn request_times(&self) -> Vec<Instant> {
        self.snapshot(|r| r.requests().iter().map(|q| q.at).collect())
    }

    /// Every export call with its signal and headers.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.snapshot(|r| r.requests().to_vec())
    }

    /// Forget all recordings and counts (the behaviour is kept).
    pub fn clear(&self) {
        self.shared.lock().received = Received::default();
    }

    /// Block until `condition` holds over the recordings, or `timeout` passes; returns whether it
    /// held. Re-checked on every arrival, so it does not poll. Blocks the calling thread: inside an
    /// async test whose server runs on the same runtime, use [`wait_for_async`](Self::wait_for_async).
    #[must_use = "a wait that timed out returns false"]
    pub fn wait_for(&self, timeout: Duration, mut condition: impl FnMut(&Received) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        loop {
            if condition(&inner.received) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            inner = self
                .shared
                .changed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Async [`wait_for`](Self::wait_for): polls every few milliseconds with `tokio::time::sleep`
    /// until `condition` holds or `timeout` (wall clock) passes.
    #[must_use = "a wait that timed out returns false"]
    pub async fn wait_for_async(&self, timeout: Duration, mut condition: impl FnMut(&Received) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.snapshot(&mut condition) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(ASYNC_POLL.min(deadline - now)).await;
        }
    }

    /// Block until at least `n` spans were recorded and return all of them; panics after
    /// `timeout` saying how many arrived.
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        if !self.wait_for(timeout, |r| r.span_count() >= n) {
            self.timed_out(timeout, &format!("{n} span(s)"));
        }
        self.spans()
    }

    /// Async [`wait_for_spans`](Self::wait_for_spans).
    pub async fn wait_for_spans_async(&self, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        if !self.wait_for_async(timeout, |r| r.span_count() >= n).await {
            self.timed_out(timeout, &format!("{n} span(s)"));
        }
        self.spans()
    }

    /// Block until at least `n` export calls arrived (whatever their fate) and return the count;
    /// panics after `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> usize {
        if !self.wait_for(timeout, |r| r.request_count() >= n) {
            self.timed_out(timeout, &format!("{n} export request(s)"));
        }
        self.request_count()
    }

    /// Async [`wait_for_requests`](Self::wait_for_requests).
    pub async fn wait_for_requests_async(&self, n: usize, timeout: Duration) -> usize {
        if !self.wait_for_async(timeout, |r| r.request_count() >= n).await {
            self.timed_out(timeout, &format!("{n} export request(s)"));
        }
        self.request_count()
    }

    /// Block until metric `name` has at least one point and return its latest points; panics after
    /// `timeout`.
    pub fn wait_for_metric(&self, name: &str, timeout: Duration) -> Vec<ReceivedPoint> {
        if !self.wait_for(timeout, |r| !r.metric_points(name).is_empty()) {
            self.timed_out(timeout, &format!("a point of metric {name:?}"));
        }
        self.metric_points(name)
    }

    /// Async [`wait_for_metric`](Self::wait_for_metric).
    pub async fn wait_for_metric_async(&self, name: &str, timeout: Duration) -> Vec<ReceivedPoint> {
        if !self.wait_for_async(timeout, |r| !r.metric_points(name).is_empty()).await {
            self.timed_out(timeout, &format!("a point of metric {name:?}"));
        }
        self.metric_points(name)
    }

    /// Panic with what arrived, for a wait that timed out.
    fn timed_out(&self, timeout: Duration, wanted: &str) -> ! {
        let report = self.snapshot(|r| {
            let spans = r.spans();
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            format!(
                "{} span(s) arrived {names:?}; metrics {:?}; {} log record(s); {} export request(s), {} rejected",
                spans.len(),
                r.metric_names(),
                r.log_record_count(),
                r.request_count(),
                r.rejected_count(),
            )
        });
        panic!(
            "TestCollector ({} on port {}) timed out after {timeout:?} waiting for {wanted}: {report}",
            self.transport, self.port
        );
    }

    /// Stop serving and release the port: stalled and delayed requests are answered `Unavailable`,
    /// other running requests get up to two seconds to finish, open connections are then closed
    /// and the runtime shut down. Idempotent.
    pub fn stop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        self.shared.set_stopping(true);
        if server.join().is_err() && !std::thread::panicking() {
            panic!("TestCollector ({} on port {}): server thread panicked", self.transport, self.port);
        }
    }

    /// Stop (if running) and serve again on the same port, keeping recordings and behaviour.
    pub fn restart(&mut self) {
        self.stop();
        self.shared.set_stopping(false);
        self.launch(REBIND_PATIENCE);
    }

    /// Bind the port (retrying "address in use" for up to `patience`) and spawn the server thread.
    fn launch(&mut self, patience: Duration) {
        let listener = bind(self.port, patience)
            .unwrap_or_else(|e| panic!("TestCollector ({}): cannot bind 127.0.0.1:{}: {e}", self.transport, self.port));
        self.port = listener.local_addr().map(|a| a.port()).unwrap_or(self.port);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-collector-rt")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("TestCollector: cannot build its runtime: {e}"));
        let shared = self.shared.clone();
        let transport = self.transport;
        let thread = std::thread::Builder::new()
            .name(format!("test-collector-{}", self.port))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            eprintln!("TestCollector: cannot register listener: {e}");
                            return;
                        }
                    };
                    let serve = async {
                        match transport {
                            Transport::Grpc => grpc::serve(listener, shared.clone()).await,
                            Transport::Http => http::serve(listener, shared.clone()).await,
                        }
                    };
                    // Graceful drain, bounded: after a stop, running handlers get up to
                    // SHUTDOWN_GRACE, then their answers FLUSH_ALLOWANCE to reach the socket. A
                    // client whose runtime is blocked (e.g. in this Drop) cannot finish the
                    // HTTP/2 goodbye, so the server is not waited for beyond that.
                    tokio::select! {
                        () = serve => {}
                        () = async {
                            shared.stopped().await;
                            let deadline = Instant::now() + SHUTDOWN_GRACE;
                            while shared.in_flight() > 0 && Instant::now() < deadline {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            tokio::time::sleep(FLUSH_ALLOWANCE).await;
                        } => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(500));
            })
            .unwrap_or_else(|e| panic!("TestCollector: cannot spawn its thread: {e}"));
        self.server = Some(thread);
    }
}

impl Drop for TestCollector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind(port: u16, patience: Duration) -> io::Result<StdTcpListener> {
    let deadline = Instant::now() + patience;
    loop {
        match StdTcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                return Ok(listener);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}
