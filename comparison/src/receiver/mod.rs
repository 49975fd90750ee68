//! A loopback OTLP/gRPC receiver that counts what it is sent: spans and metric export calls per
//! `service.name`. It runs on its own tokio runtime (its own threads), and can be stopped — the
//! port closed and every connection dropped — and restarted on the same port, for the outage run.
//!
//! It shares the cores with the apps it measures, so it counts by walking each request's
//! protobuf wire form without decoding it into structs ([`wire`]): the same counts, a fraction of
//! the CPU (decoding 512-span requests into opentelemetry-proto structs took about a third of
//! the machine at saturation), and the same instrument for every build.

mod grpc;
mod wire;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

use grpc::{Counting, Metrics, Traces};

/// Largest export request accepted (the tonic default of 4 MiB is small for load runs).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How long a stop waits for the server to finish gracefully before its runtime is dropped.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Counts per `service.name`.
#[derive(Default)]
struct Counts {
    spans: HashMap<String, u64>,
    metric_exports: HashMap<String, u64>,
}

#[derive(Default)]
struct Shared {
    counts: Mutex<Counts>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Adds `n` to `service`'s count (allocating only the first time a service is seen).
fn add(counts: &mut HashMap<String, u64>, service: &str, n: u64) {
    match counts.get_mut(service) {
        Some(count) => *count += n,
        None => {
            counts.insert(service.to_owned(), n);
        }
    }
}

struct Running {
    runtime: tokio::runtime::Runtime,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

/// The loopback receiver. Stops on drop.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    running: Option<Running>,
}

impl Receiver {
    /// Starts on a free loopback port.
    pub fn start() -> io::Result<Self> {
        let mut receiver = Receiver { port: 0, shared: Arc::default(), running: None };
        receiver.launch()?;
        Ok(receiver)
    }

    /// `http://127.0.0.1:PORT`, the OTLP/gRPC endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match StdTcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))) {
                Ok(listener) => break listener,
                Err(err) if err.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => return Err(err),
            }
        };
        self.port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("otlp-receiver")
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let traces = Counting::<Traces>::new(self.shared.clone(), MAX_MESSAGE_BYTES);
        let metrics = Counting::<Metrics>::new(self.shared.clone(), MAX_MESSAGE_BYTES);
        let server = runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(err) => {
                    eprintln!("receiver: cannot listen: {err}");
                    return;
                }
            };
            let result = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(metrics)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = result {
                eprintln!("receiver: server error: {err}");
            }
        });
        self.running = Some(Running { runtime, stop, server });
        Ok(())
    }

    /// Closes the port and drops every connection (the runtime goes with them).
    pub fn stop(&mut self) {
        if let Some(Running { runtime, stop, server }) = self.running.take() {
            let _ = stop.send(());
            let _ = runtime.block_on(async { tokio::time::timeout(STOP_GRACE, server).await });
            runtime.shutdown_timeout(Duration::from_millis(200));
        }
    }

    /// Listens again on the same port, counts kept.
    pub fn restart(&mut self) -> io::Result<()> {
        if self.running.is_none() {
            self.launch()?;
        }
        Ok(())
    }

    /// Spans received so far from `service`.
    pub fn spans(&self, service: &str) -> u64 {
        self.shared.lock().spans.get(service).copied().unwrap_or(0)
    }

    /// Metric export calls received so far from `service`.
    pub fn metric_exports(&self, service: &str) -> u64 {
        self.shared.lock().metric_exports.get(service).copied().unwrap_or(0)
    }

    /// Waits until `service` has sent at least `expected` spans, or nothing arrived for `quiet`,
    /// or `max` passed; returns the count then.
    pub fn wait_for_spans(&self, service: &str, expected: u64, quiet: Duration, max: Duration) -> u64 {
        self.drain(service, expected, quiet, max).count
    }

    /// [`wait_for_spans`](Self::wait_for_spans), also saying when the last span arrived.
    pub fn drain(&self, service: &str, expected: u64, quiet: Duration, max: Duration) -> Drained {
        let started = Instant::now();
        let deadline = started + max;
        let mut counts = self.shared.lock();
        let mut last = counts.spans.get(service).copied().unwrap_or(0);
        let mut last_change = started;
        loop {
            let now = Instant::now();
            let count = counts.spans.get(service).copied().unwrap_or(0);
            if count != last {
                last = count;
                last_change = now;
            }
            if count >= expected || now >= deadline || now.duration_since(last_change) >= quiet {
                return Drained { count, last_arrival: last_change - started };
            }
            let wake = deadline.min(last_change + quiet).saturating_duration_since(now).max(Duration::from_millis(1));
            counts = self.shared.changed.wait_timeout(counts, wake).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// What [`Receiver::drain`] came to.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    /// Spans received from the service so far.
    pub count: u64,
    /// When the last of them arrived, from the start of the wait (zero: none arrived during it).
    pub last_arrival: Duration,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};

    fn send_spans(endpoint: &str, service: &str, n: usize) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let provider = {
            let _entered = runtime.enter();
            let exporter =
                opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build().unwrap();
            SdkTracerProvider::builder()
                .with_span_processor(BatchSpanProcessor::builder(exporter).build())
                .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service.to_owned()).build())
                .build()
        };
        let tracer = provider.tracer("test");
        for _ in 0..n {
            tracer.in_span("op", |_| {});
        }
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    }

    #[test]
    fn counts_spans_per_service_and_survives_a_restart_on_the_same_port() {
        let mut receiver = Receiver::start().unwrap();
        let endpoint = receiver.endpoint();
        send_spans(&endpoint, "svc-a", 3);
        send_spans(&endpoint, "svc-b", 2);
        assert_eq!(receiver.wait_for_spans("svc-a", 3, Duration::from_secs(5), Duration::from_secs(10)), 3);
        assert_eq!(receiver.spans("svc-b"), 2);

        receiver.stop();
        let port = receiver.port;
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the port is closed while stopped");

        receiver.restart().unwrap();
        assert_eq!(receiver.endpoint(), endpoint);
        send_spans(&endpoint, "svc-a", 1);
        assert_eq!(receiver.wait_for_spans("svc-a", 4, Duration::from_secs(5), Duration::from_secs(10)), 4);
    }

    #[test]
    fn wait_for_spans_returns_after_the_quiet_period_when_short() {
        let receiver = Receiver::start().unwrap();
        let started = Instant::now();
        assert_eq!(receiver.wait_for_spans("nobody", 1, Duration::from_millis(200), Duration::from_secs(10)), 0);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
