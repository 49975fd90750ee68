//! Test mode: spans and metric events kept in memory so a user's tests can assert what their
//! code recorded, through the same [`TelemetryManager`](crate::TelemetryManager) API.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use metamcp_telemetry_actors::health_check::ComponentSource;
use metamcp_telemetry_actors::ingress::MetricEvent;
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

#[derive(Default)]
pub(crate) struct Capture {
    spans: Mutex<Vec<SpanData>>,
    events: Mutex<Vec<MetricEvent>>,
    sources: Mutex<Vec<Arc<dyn ComponentSource>>>,
    provider: OnceLock<SdkTracerProvider>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide what was recorded.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Capture {
    pub(crate) fn record_event(&self, event: MetricEvent) {
        lock(&self.events).push(event);
    }

    pub(crate) fn add_source(&self, source: Arc<dyn ComponentSource>) {
        lock(&self.sources).push(source);
    }

    pub(crate) fn sources(&self) -> Vec<Arc<dyn ComponentSource>> {
        lock(&self.sources).clone()
    }

    pub(crate) fn keep_provider(&self, provider: SdkTracerProvider) {
        let _ = self.provider.set(provider);
    }
}

#[derive(Debug)]
pub(crate) struct CaptureProcessor(pub(crate) Arc<Capture>);

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").finish_non_exhaustive()
    }
}

impl SpanProcessor for CaptureProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        lock(&self.0.spans).push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// A recorded HTTP request, as `record_request` saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Method label (`_OTHER` for unknown methods).
    pub method: String,
    /// Route label.
    pub route: String,
    /// Status code.
    pub status_code: u16,
    /// Duration.
    pub duration: Duration,
}

/// A recorded tool execution.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedToolExecution {
    /// Tool name.
    pub tool_name: String,
    /// Outcome.
    pub success: bool,
    /// Duration.
    pub duration: Duration,
}

/// A recorded vector search.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedVectorSearch {
    /// Query length in characters.
    pub query_length: u32,
    /// Results returned.
    pub result_count: u32,
    /// Duration.
    pub duration: Duration,
}

/// What a test-mode [`TelemetryManager`](crate::TelemetryManager) recorded.
#[derive(Debug, Clone)]
pub struct TestTelemetry {
    capture: Arc<Capture>,
}

impl TestTelemetry {
    pub(crate) fn new(capture: Arc<Capture>) -> Self {
        Self { capture }
    }

    pub(crate) fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Every finished span, in the order they ended.
    pub fn spans(&self) -> Vec<SpanData> {
        lock(&self.capture.spans).clone()
    }

    /// The names of every finished span.
    pub fn span_names(&self) -> Vec<String> {
        lock(&self.capture.spans).iter().map(|s| s.name.to_string()).collect()
    }

    /// The first finished span named `name`.
    pub fn span(&self, name: &str) -> Option<SpanData> {
        lock(&self.capture.spans).iter().find(|s| s.name == name).cloned()
    }

    /// Every metric event, in order.
    pub fn metric_events(&self) -> Vec<MetricEvent> {
        lock(&self.capture.events).clone()
    }

    /// The recorded requests.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.metric_events()
            .into_iter()
            .filter_map(|event| match event {
                MetricEvent::Request { method, route, status_code, duration, .. } => Some(RecordedRequest {
                    method: method.as_str().to_owned(),
                    route: route.as_str().to_owned(),
                    status_code,
                    duration: Duration::from_secs_f64(duration),
                }),
                _ => None,
            })
            .collect()
    }

    /// The recorded tool executions.
    pub fn tool_executions(&self) -> Vec<RecordedToolExecution> {
        self.metric_events()
            .into_iter()
            .filter_map(|event| match event {
                MetricEvent::ToolExecution { tool_name, success, duration, .. } => Some(RecordedToolExecution {
                    tool_name: tool_name.as_str().to_owned(),
                    success,
                    duration: Duration::from_secs_f64(duration),
                }),
                _ => None,
            })
            .collect()
    }

    /// The recorded vector searches.
    pub fn vector_searches(&self) -> Vec<RecordedVectorSearch> {
        self.metric_events()
            .into_iter()
            .filter_map(|event| match event {
                MetricEvent::VectorSearch { query_length, result_count, duration } => Some(RecordedVectorSearch {
                    query_length,
                    result_count,
                    duration: Duration::from_secs_f64(duration),
                }),
                _ => None,
            })
            .collect()
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        lock(&self.capture.spans).clear();
        lock(&self.capture.events).clear();
    }
}
