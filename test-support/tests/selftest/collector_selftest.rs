//! Tests of the integration-test support code itself, over real loopback sockets: real OTLP
//! clients (tonic's generated gRPC clients, reqwest posting protobuf) against [`TestCollector`],
//! and the Prometheus and wait helpers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tonic_types::StatusExt;

use support::collector::{Number, PointValue};
use support::wait::{assert_eventually, assert_eventually_async, wait_until, wait_until_async};
use support::{prom, Behavior, TestCollector, Transport};

/// Bound on every wait in this file; generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(value: &str) -> any_value::Value {
    any_value::Value::StringValue(value.to_string())
}

const TRACE_ID: [u8; 16] = [0xab; 16];
const PARENT_ID: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
const CHILD_ID: [u8; 8] = [0x11; 8];

/// A server span `tools/call` with a child `backend`, from service `gateway`.
fn traces() -> ExportTraceServiceRequest {
    let parent = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: PARENT_ID.to_vec(),
        name: "tools/call".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 5_000,
        attributes: vec![
            kv("mcp.method", s("tools/call")),
            kv("http.response.status_code", any_value::Value::IntValue(200)),
            kv("cache.hit", any_value::Value::BoolValue(true)),
        ],
        events: vec![Event {
            name: "exception".into(),
            attributes: vec![kv("exception.type", s("Timeout"))],
            ..Default::default()
        }],
        status: Some(Status { code: StatusCode::Error as i32, message: "upstream timed out".into() }),
        ..Default::default()
    };
    let child = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: CHILD_ID.to_vec(),
        parent_span_id: PARENT_ID.to_vec(),
        name: "backend".into(),
        kind: SpanKind::Client as i32,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", s("gateway"))], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "metamcp".into(),
                    version: "0.1.0".into(),
                    ..Default::default()
                }),
                spans: vec![parent, child],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One span named `name`, for counting.
fn one_span(name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: TRACE_ID.to_vec(),
                    span_id: CHILD_ID.to_vec(),
                    name: name.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A cumulative counter `requests_total` with series route=/a and route=/b, and a histogram
/// `latency` (bounds 0.1, 1) for route=/a.
fn metrics(a_total: i64) -> ExportMetricsServiceRequest {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let counter = Metric {
        name: "requests_total".into(),
        unit: "1".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![
                NumberDataPoint {
                    attributes: vec![kv("route", s("/a"))],
                    time_unix_nano: 10,
                    value: Some(number_data_point::Value::AsInt(a_total)),
                    ..Default::default()
                },
                NumberDataPoint {
                    attributes: vec![kv("route", s("/b"))],
                    time_unix_nano: 10,
                    value: Some(number_data_point::Value::AsInt(1)),
                    ..Default::default()
                },
            ],
            aggregation_temporality: cumulative,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let histogram = Metric {
        name: "latency".into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![kv("route", s("/a"))],
                count: 3,
                sum: Some(1.75),
                bucket_counts: vec![1, 1, 1],
                explicit_bounds: vec![0.1, 1.0],
                ..Default::default()
            }],
            aggregation_temporality: cumulative,
        })),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv("service.name", s("gateway"))], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics { metrics: vec![counter, histogram], ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().expect("reqwest client")
}

async fn post(url: &str, body: Vec<u8>) -> reqwest::Response {
    http_client(WAIT)
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("POST to the collector")
}

async fn grpc_export(collector: &TestCollector, request: ExportTraceServiceRequest) -> Result<(), tonic::Status> {
    let mut client = TraceServiceClient::connect(collector.endpoint()).await.expect("connect to the collector");
    client.export(request).await.map(|_| ())
}

/// Assert the spans of [`traces`] arrived intact.
fn assert_fixture_spans(collector: &TestCollector) {
    let spans = collector.wait_for_spans(2, WAIT);
    assert_eq!(spans.len(), 2);
    let parent = &spans[0];
    assert_eq!(parent.name, "tools/call");
    assert_eq!(parent.kind, SpanKind::Server);
    assert_eq!(parent.trace_id_hex(), "ab".repeat(16));
    assert_eq!(parent.span_id_hex(), "0102030405060708");
    assert_eq!(parent.parent_span_id_hex(), None);
    assert!(parent.is_root());
    assert_eq!(parent.attr("mcp.method").as_deref(), Some("tools/call"));
    assert_eq!(parent.int_attr("http.response.status_code"), Some(200));
    assert_eq!(parent.attr("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(parent.bool_attr("cache.hit"), Some(true));
    assert_eq!(parent.int_attr("mcp.method"), None, "a string is no int");
    assert_eq!(parent.attr("missing"), None);
    assert_eq!(parent.resource_attr("service.name").as_deref(), Some("gateway"));
    assert_eq!(parent.scope_name, "metamcp");
    assert_eq!(parent.scope_version, "0.1.0");
    assert_eq!(parent.status_code, StatusCode::Error);
    assert_eq!(parent.status_message, "upstream timed out");
    assert_eq!(parent.events, vec!["exception".to_string()]);
    assert_eq!(parent.event_attr("exception", "exception.type").as_deref(), Some("Timeout"));
    assert_eq!(parent.duration(), Duration::from_nanos(4_000));

    let child = &spans[1];
    assert_eq!(child.name, "backend");
    assert_eq!(child.kind, SpanKind::Client);
    assert_eq!(child.parent_span_id_hex(), Some(parent.span_id_hex()));
    assert_eq!(child.trace_id_hex(), parent.trace_id_hex());
    assert_eq!(child.status_code, StatusCode::Unset);
}

/// Assert the points of [`metrics`] arrived, with `a_total` as the latest `/a` count.
fn assert_fixture_metrics(collector: &TestCollector, a_total: f64) {
    let counter = collector.metric_points("requests_total");
    assert_eq!(counter.len(), 2, "one point per series: {counter:?}");
    let a = counter.iter().find(|p| p.has_attrs(&[("route", "/a")])).expect("series route=/a");
    assert_eq!(a.value(), Some(a_total));
    assert_eq!(a.resource.get("service.name").map(String::as_str), Some("gateway"));
    assert!(matches!(
        a.value,
        PointValue::Sum { value: Number::Int(_), monotonic: true, temporality: AggregationTemporality::Cumulative }
    ));
    let b = counter.iter().find(|p| p.attr("route") == Some("/b")).expect("series route=/b");
    assert_eq!(b.value(), Some(1.0));

    let latency = collector.metric_points("latency");
    assert_eq!(latency.len(), 1);
    let h = latency[0].histogram().expect("a histogram point");
    assert_eq!(h.count, 3);
    assert_eq!(h.sum, Some(1.75));
    assert_eq!(h.bucket_counts, vec![1, 1, 1]);
    assert_eq!(h.explicit_bounds, vec![0.1, 1.0]);
    assert_eq!(latency[0].attr("route"), Some("/a"));
    assert_eq!(latency[0].count(), Some(3));
    assert_eq!(latency[0].unit, "s");

    assert_eq!(collector.metric_names(), vec!["latency", "requests_total"]);
    assert!(collector.metric_points("absent").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn grpc_spans_are_decoded_with_names_and_attributes() {
    let collector = TestCollector::start(Transport::Grpc);
    assert!(collector.endpoint().starts_with("http://127.0.0.1:"));
    assert_ne!(collector.port(), 0);

    let mut client = TraceServiceClient::connect(collector.endpoint()).await.expect("connect");
    let mut request = tonic::Request::new(traces());
    request.metadata_mut().insert("x-tenant", "acme".parse().expect("metadata value"));
    client.export(request).await.expect("export accepted");

    assert_fixture_spans(&collector);
    assert_eq!(collector.request_count(), 1);
    assert_eq!(collector.rejected_count(), 0);
    assert_eq!(collector.trace_requests(), vec![traces()]);
    let requests = collector.requests();
    assert_eq!(requests[0].header("x-tenant"), Some("acme"));
    assert_eq!(requests[0].transport, Transport::Grpc);
}

#[tokio::test]
async fn http_spans_are_decoded_and_answered_with_protobuf() {
    let collector = TestCollector::start(Transport::Http);

    let response = http_client(WAIT)
        .post(collector.traces_url())
        .header("content-type", "application/x-protobuf")
        .header("x-tenant", "acme")
        .body(traces().encode_to_vec())
        .send()
        .await
        .expect("POST /v1/traces");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"].to_str().ok(), Some("application/x-protobuf"));
    let body = response.bytes().await.expect("response body");
    ExportTraceServiceResponse::decode(body).expect("an ExportTraceServiceResponse body");

    assert_fixture_spans(&collector);
    assert_eq!(collector.requests()[0].header("X-Tenant"), Some("acme"));
}

#[tokio::test]
async fn grpc_metric_points_keep_the_latest_value_per_series() {
    let collector = TestCollector::start(Transport::Grpc);
    let mut client = MetricsServiceClient::connect(collector.endpoint()).await.expect("connect");
    client.export(metrics(2)).await.expect("first export");
    client.export(metrics(5)).await.expect("second export");

    collector.wait_for_requests_async(2, WAIT).await;
    assert_eq!(collector.metric_requests().len(), 2);
    assert_fixture_metrics(&collector, 5.0);
}

#[tokio::test]
async fn http_metric_points_are_decoded() {
    let collector = TestCollector::start(Transport::Http);
    let response = post(&collector.metrics_url(), metrics(7).encode_to_vec()).await;
    assert_eq!(response.status(), 200);

    let points = collector.wait_for_metric_async("latency", WAIT).await;
    assert_eq!(points.len(), 1);
    assert_fixture_metrics(&collector, 7.0);
}

#[tokio::test]
async fn http_body_that_does_not_decode_is_a_counted_400() {
    let collector = TestCollector::start(Transport::Http);
    let response = post(&collector.traces_url(), vec![0xff, 0xff, 0xff]).await;
    assert_eq!(response.status(), 400);
    let status = tonic_types::Status::decode(response.bytes().await.expect("body")).expect("a google.rpc.Status body");
    assert!(status.message.contains("does not decode"), "{}", status.message);

    let wrong_type = http_client(WAIT)
        .post(collector.traces_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong_type.status(), 415);

    let missing = http_client(WAIT).post(format!("{}/v1/profiles", collector.endpoint())).send().await.expect("POST");
    assert_eq!(missing.status(), 404);

    assert_eq!(collector.request_count(), 2, "404s are not export calls");
    assert_eq!(collector.rejected_count(), 2);
    assert!(collector.trace_requests().is_empty());
}

#[actix_rt::test]
async fn async_waits_work_inside_an_actix_runtime() {
    let collector = TestCollector::start(Transport::Http);
    let url = collector.traces_url();
    actix_rt::spawn(async move {
        post(&url, one_span("late").encode_to_vec()).await;
    });
    let spans = collector.wait_for_spans_async(1, WAIT).await;
    assert_eq!(spans[0].name, "late");
    assert!(collector.wait_for_async(WAIT, |r| r.request_count() == 1).await);
}

#[test]
fn blocking_wait_sees_spans_sent_from_another_thread() {
    let collector = TestCollector::start(Transport::Grpc);
    let endpoint = collector.endpoint();
    let sender = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async move {
            let mut client = TraceServiceClient::connect(endpoint).await.expect("connect");
            for name in ["one", "two", "three"] {
                client.export(one_span(name)).await.expect("export");
            }
        });
    });
    let spans = collector.wait_for_spans(3, WAIT);
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["one", "two", "three"]);
    sender.join().expect("sender thread");
    assert!(collector.wait_for(WAIT, |r| r.trace_requests().len() == 3));
}

#[test]
#[should_panic(expected = "timed out after 100ms waiting for 1 span(s): 0 span(s) arrived")]
fn wait_for_spans_times_out_with_a_clear_message() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.wait_for_spans(1, Duration::from_millis(100));
}

#[test]
fn wait_for_returns_false_at_the_deadline() {
    let collector = TestCollector::start(Transport::Http);
    let started = Instant::now();
    assert!(!collector.wait_for(Duration::from_millis(100), |r| r.span_count() > 0));
    assert!(started.elapsed() >= Duration::from_millis(100));
}

// ---------------------------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fail_grpc_answers_the_code_and_records_nothing() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.set_behavior(Behavior::FailGrpc(tonic::Code::Unavailable));

    let status = grpc_export(&collector, traces()).await.expect_err("a failure");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.get_details_retry_info().is_none());

    assert_eq!(collector.request_count(), 1);
    assert_eq!(collector.rejected_count(), 1);
    assert!(collector.spans().is_empty());
    assert!(collector.trace_requests().is_empty());
}

#[tokio::test]
async fn fail_grpc_retry_info_carries_the_delay() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.set_behavior(Behavior::FailGrpcRetryInfo(tonic::Code::ResourceExhausted, Duration::from_secs(3)));

    let status = grpc_export(&collector, traces()).await.expect_err("a failure");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let retry = status.get_details_retry_info().expect("a RetryInfo detail");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
    assert!(collector.spans().is_empty());
}

#[tokio::test]
async fn fail_http_answers_the_status_with_retry_after() {
    let collector = TestCollector::start(Transport::Http);
    collector.set_behavior(Behavior::FailHttp { status: 429, retry_after: Some("1".into()) });

    let response = post(&collector.traces_url(), traces().encode_to_vec()).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(collector.request_count(), 1);
    assert_eq!(collector.rejected_count(), 1);
    assert!(collector.spans().is_empty());

    collector.set_behavior(Behavior::Accept);
    let response = post(&collector.traces_url(), traces().encode_to_vec()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(collector.span_count(), 2);
}

#[tokio::test]
async fn failures_map_across_transports() {
    let http = TestCollector::start(Transport::Http);
    http.set_behavior(Behavior::FailGrpcRetryInfo(tonic::Code::Unavailable, Duration::from_millis(1500)));
    let response = post(&http.traces_url(), traces().encode_to_vec()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2", "rounded up to whole seconds");

    let grpc = TestCollector::start(Transport::Grpc);
    grpc.set_behavior(Behavior::FailHttp { status: 429, retry_after: Some("4".into()) });
    let status = grpc_export(&grpc, traces()).await.expect_err("a failure");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.get_details_retry_info().and_then(|r| r.retry_delay), Some(Duration::from_secs(4)));
}

#[tokio::test]
async fn fail_next_fails_n_requests_then_accepts_and_times_arrivals() {
    let collector = TestCollector::start(Transport::Http);
    collector.fail_next(2, Behavior::FailHttp { status: 503, retry_after: None });

    let mut statuses = Vec::new();
    for name in ["first", "second", "third"] {
        statuses.push(post(&collector.traces_url(), one_span(name).encode_to_vec()).await.status());
    }
    assert_eq!(statuses, [503, 503, 200]);

    let spans = collector.wait_for_spans_async(1, WAIT).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "third");
    assert_eq!(collector.request_count(), 3);
    assert_eq!(collector.rejected_count(), 2);
    let times = collector.request_times();
    assert_eq!(times.len(), 3);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "arrival order");
    assert_eq!(collector.behavior(), Behavior::Accept);
}

#[tokio::test]
async fn delay_answers_late_and_records() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.set_behavior(Behavior::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    grpc_export(&collector, traces()).await.expect("accepted after the delay");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(collector.span_count(), 2);
    assert_eq!(collector.rejected_count(), 0);
}

#[tokio::test]
async fn partial_success_records_and_answers_the_rejected_count_and_message() {
    let partial = Behavior::PartialSuccess { rejected: 1, message: "1 span refused".into() };
    let grpc = TestCollector::start(Transport::Grpc);
    grpc.set_behavior(partial.clone());
    let mut client = TraceServiceClient::connect(grpc.endpoint()).await.expect("connect");
    let answer = client.export(traces()).await.expect("accepted").into_inner();
    let answered = answer.partial_success.expect("a partial_success");
    assert_eq!((answered.rejected_spans, answered.error_message.as_str()), (1, "1 span refused"));
    let mut client = MetricsServiceClient::connect(grpc.endpoint()).await.expect("connect");
    let answer = client.export(metrics(3)).await.expect("accepted").into_inner();
    assert_eq!(answer.partial_success.expect("a partial_success").rejected_data_points, 1);
    assert_eq!((grpc.span_count(), grpc.metric_requests().len(), grpc.rejected_count()), (2, 1, 0), "recorded");

    let http = TestCollector::start(Transport::Http);
    http.set_behavior(partial);
    let response = post(&http.traces_url(), traces().encode_to_vec()).await;
    assert_eq!(response.status(), 200);
    let answer = ExportTraceServiceResponse::decode(response.bytes().await.expect("body")).expect("decodes");
    let answered = answer.partial_success.expect("a partial_success");
    assert_eq!((answered.rejected_spans, answered.error_message.as_str()), (1, "1 span refused"));
    let response = post(&http.metrics_url(), metrics(3).encode_to_vec()).await;
    let answer = opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::decode(
        response.bytes().await.expect("body"),
    )
    .expect("decodes");
    assert_eq!(answer.partial_success.expect("a partial_success").rejected_data_points, 1);
    assert_eq!((http.span_count(), http.metric_requests().len()), (2, 1), "recorded");
}

#[tokio::test]
async fn http_stall_holds_until_the_client_gives_up_and_records_nothing() {
    let collector = TestCollector::start(Transport::Http);
    collector.set_behavior(Behavior::Stall);

    let started = Instant::now();
    let err = http_client(Duration::from_millis(300))
        .post(collector.traces_url())
        .header("content-type", "application/x-protobuf")
        .body(traces().encode_to_vec())
        .send()
        .await
        .expect_err("the client times out");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(collector.request_count(), 1);
    assert_eq!(collector.rejected_count(), 1);
    assert!(collector.spans().is_empty());

    collector.set_behavior(Behavior::Accept);
    let response = post(&collector.traces_url(), one_span("after").encode_to_vec()).await;
    assert_eq!(response.status(), 200);
    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "the stalled batch is never recorded");
    assert_eq!(spans[0].name, "after");
}

#[tokio::test]
async fn grpc_stall_holds_until_the_deadline() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.set_behavior(Behavior::Stall);

    let mut client = TraceServiceClient::connect(collector.endpoint()).await.expect("connect");
    let mut request = tonic::Request::new(traces());
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.export(request).await.expect_err("deadline exceeded");
    assert!(matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(collector.request_count(), 1);
    assert!(collector.spans().is_empty());
}

#[tokio::test]
async fn behaviour_change_releases_a_stalled_request_unrecorded() {
    let collector = TestCollector::start(Transport::Grpc);
    collector.set_behavior(Behavior::Stall);
    let endpoint = collector.endpoint();
    let stalled = tokio::spawn(async move {
        let mut client = TraceServiceClient::connect(endpoint).await.expect("connect");
        client.export(traces()).await
    });
    collector.wait_for_requests_async(1, WAIT).await;

    collector.set_behavior(Behavior::Accept);
    let status = tokio::time::timeout(WAIT, stalled)
        .await
        .expect("released within the bound")
        .expect("task")
        .expect_err("released as a failure");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(collector.spans().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stop_releases_the_port_and_refuses_connections() {
    let mut collector = TestCollector::start(Transport::Http);
    let url = collector.traces_url();
    assert_eq!(post(&url, one_span("before").encode_to_vec()).await.status(), 200);

    collector.stop();
    assert!(!collector.is_running());
    let err = http_client(WAIT)
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(one_span("after").encode_to_vec())
        .send()
        .await
        .expect_err("nothing listens any more");
    assert!(err.is_connect(), "{err}");
    collector.stop(); // idempotent

    let port_free = std::net::TcpListener::bind(("127.0.0.1", collector.port()));
    assert!(port_free.is_ok(), "port still held: {port_free:?}");
}

#[tokio::test]
async fn stop_is_bounded_even_with_a_stalled_request() {
    let mut collector = TestCollector::start(Transport::Http);
    collector.set_behavior(Behavior::Stall);
    let url = collector.traces_url();
    let stalled = tokio::spawn(async move { post(&url, one_span("held").encode_to_vec()).await });
    collector.wait_for_requests_async(1, WAIT).await;

    let started = Instant::now();
    collector.stop();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let response = tokio::time::timeout(WAIT, stalled).await.expect("answered within the bound").expect("task");
    assert_eq!(response.status(), 503);
    assert!(collector.spans().is_empty());
}

#[tokio::test]
async fn restart_serves_the_same_port_and_keeps_data() {
    for transport in [Transport::Grpc, Transport::Http] {
        let mut collector = TestCollector::start(transport);
        let port = collector.port();
        send_one(&collector, "before").await;

        collector.restart();
        assert!(collector.is_running());
        assert_eq!(collector.port(), port);
        send_one(&collector, "after").await;

        let spans = collector.wait_for_spans_async(2, WAIT).await;
        let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["before", "after"], "{transport}");
    }
}

async fn send_one(collector: &TestCollector, name: &str) {
    match collector.transport() {
        Transport::Grpc => grpc_export(collector, one_span(name)).await.expect("export"),
        Transport::Http => {
            let response = post(&collector.traces_url(), one_span(name).encode_to_vec()).await;
            assert_eq!(response.status(), 200);
        }
    }
}

#[test]
fn start_on_a_given_port_and_clear() {
    let first = TestCollector::start(Transport::Http);
    let port = first.port();
    drop(first);
    let collector = TestCollector::start_on(Transport::Http, port);
    assert_eq!(collector.port(), port);
    collector.clear();
    assert_eq!(collector.request_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Prometheus helpers
// ---------------------------------------------------------------------------------------------

const EXPOSITION: &str = r#"# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{route="/a",status="200"} 3
requests_total{route="/a",status="500"} 1
requests_total{route="/b",status="200"} 2
# HELP in_flight In flight.
# TYPE in_flight gauge
in_flight 4
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{route="/a",le="0.1"} 1
latency_seconds_bucket{route="/a",le="1"} 2
latency_seconds_bucket{route="/a",le="+Inf"} 3
latency_seconds_sum{route="/a"} 2.5
latency_seconds_count{route="/a"} 3
"#;

#[test]
fn prom_helpers_read_counters_gauges_and_histograms() {
    let scrape = prom::Scrape::from_text(prom::TEXT_FORMAT, EXPOSITION);
    assert_eq!(prom::value(&scrape, "requests_total", &[("route", "/a"), ("status", "500")]), Some(1.0));
    assert_eq!(prom::value(&scrape, "requests_total", &[("route", "/b")]), Some(2.0));
    assert_eq!(prom::value(&scrape, "requests_total", &[("route", "/c")]), None);
    assert_eq!(prom::sum(&scrape, "requests_total", &[("route", "/a")]), Some(4.0));
    assert_eq!(prom::sum(&scrape, "requests_total", &[]), Some(6.0));
    assert_eq!(prom::sum(&scrape, "absent", &[]), None);
    assert_eq!(prom::value(&scrape, "in_flight", &[]), Some(4.0));
    assert_eq!(prom::histogram_count(&scrape, "latency_seconds", &[("route", "/a")]), Some(3.0));
    assert_eq!(prom::histogram_sum(&scrape, "latency_seconds", &[("route", "/a")]), Some(2.5));
    assert_eq!(
        prom::histogram_buckets(&scrape, "latency_seconds", &[("route", "/a")]),
        Some(vec![(0.1, 1.0), (1.0, 2.0), (f64::INFINITY, 3.0)])
    );
    // 3 counters + 1 gauge + 3 buckets + sum + count.
    assert_eq!(prom::series_count(&scrape), 9);
    assert_eq!(prom::label_set_count(&scrape, "requests_total"), 3);
    assert_eq!(
        prom::label_values(&scrape, "requests_total", "route"),
        ["/a", "/b"].into_iter().map(String::from).collect()
    );
}

#[test]
#[should_panic(expected = "2 series of requests_total match")]
fn prom_value_refuses_an_ambiguous_selector() {
    let scrape = prom::Scrape::from_text(prom::TEXT_FORMAT, EXPOSITION);
    prom::value(&scrape, "requests_total", &[("route", "/a")]);
}

/// Label values a naive `{...}` / `,` / `=` splitter gets wrong: route templates with braces,
/// commas and equals signs, and the three escapes of the text format (`\"`, `\\`, `\n`).
const TRICKY_EXPOSITION: &str = r#"# HELP http_requests_total Requests by route; help with \\ and \n escapes.
# TYPE http_requests_total counter
http_requests_total{method="GET",route="/items/{id}"} 7
http_requests_total{method="GET",route="a,b=c"} 2
http_requests_total{method="POST",route="say \"hi\" \\ bye"} 1
http_requests_total{method="PUT",route="two\nlines"} 5
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{method="GET",route="/items/{id}",le="0.005"} 1
http_request_duration_seconds_bucket{method="GET",route="/items/{id}",le="0.5"} 4
http_request_duration_seconds_bucket{method="GET",route="/items/{id}",le="+Inf"} 6
http_request_duration_seconds_sum{method="GET",route="/items/{id}"} 3.25
http_request_duration_seconds_count{method="GET",route="/items/{id}"} 6
http_request_duration_seconds_bucket{method="GET",route="a,b=c",le="0.005"} 0
http_request_duration_seconds_bucket{method="GET",route="a,b=c",le="0.5"} 2
http_request_duration_seconds_bucket{method="GET",route="a,b=c",le="+Inf"} 2
http_request_duration_seconds_sum{method="GET",route="a,b=c"} 0.5
http_request_duration_seconds_count{method="GET",route="a,b=c"} 2
"#;

#[test]
fn prom_reads_label_values_with_braces_commas_equals_and_escapes() {
    let scrape = prom::Scrape::from_text(prom::TEXT_FORMAT, TRICKY_EXPOSITION);

    assert_eq!(prom::value(&scrape, "http_requests_total", &[("route", "/items/{id}")]), Some(7.0));
    assert_eq!(prom::value(&scrape, "http_requests_total", &[("route", "a,b=c")]), Some(2.0));
    assert_eq!(
        prom::value(&scrape, "http_requests_total", &[("method", "POST"), ("route", r#"say "hi" \ bye"#)]),
        Some(1.0)
    );
    assert_eq!(prom::value(&scrape, "http_requests_total", &[("route", "two\nlines")]), Some(5.0));
    // The escaped form is not a value.
    assert_eq!(prom::value(&scrape, "http_requests_total", &[("route", r#"say \"hi\" \\ bye"#)]), None);
    assert_eq!(
        prom::label_values(&scrape, "http_requests_total", "route"),
        ["/items/{id}", "a,b=c", r#"say "hi" \ bye"#, "two\nlines"].into_iter().map(String::from).collect()
    );
    assert_eq!(
        prom::label_values(&scrape, "http_requests_total", "method"),
        ["GET", "POST", "PUT"].into_iter().map(String::from).collect()
    );
    assert_eq!(prom::label_set_count(&scrape, "http_requests_total"), 4);

    let latency = "http_request_duration_seconds";
    assert_eq!(
        prom::histogram_buckets(&scrape, latency, &[("route", "/items/{id}")]),
        Some(vec![(0.005, 1.0), (0.5, 4.0), (f64::INFINITY, 6.0)])
    );
    assert_eq!(
        prom::histogram_buckets(&scrape, latency, &[("method", "GET"), ("route", "a,b=c")]),
        Some(vec![(0.005, 0.0), (0.5, 2.0), (f64::INFINITY, 2.0)])
    );
    assert_eq!(prom::histogram_buckets(&scrape, latency, &[("route", "/items/")]), None);
    assert_eq!(prom::histogram_count(&scrape, latency, &[("route", "/items/{id}")]), Some(6.0));
    assert_eq!(prom::histogram_sum(&scrape, latency, &[("route", "/items/{id}")]), Some(3.25));
    assert_eq!(prom::histogram_count(&scrape, latency, &[("route", "a,b=c")]), Some(2.0));
    assert_eq!(prom::histogram_sum(&scrape, latency, &[("route", "a,b=c")]), Some(0.5));
    assert_eq!(
        prom::label_values(&scrape, latency, "route"),
        ["/items/{id}", "a,b=c"].into_iter().map(String::from).collect()
    );
    // Label sets without `le`: one per histogram series, not per bucket.
    assert_eq!(prom::label_set_count(&scrape, latency), 2);
    // 4 counters + 2 histograms of 3 buckets, sum and count.
    assert_eq!(prom::series_count(&scrape), 14);
}

/// What the service itself serves: the `prometheus` crate's `TextEncoder` output, escapes and
/// all, including the process collector's families, reads back exactly.
#[test]
fn prom_reads_the_prometheus_crates_own_encoding() {
    use prometheus::{Encoder, TextEncoder};

    let registry = prometheus::Registry::new();
    let requests = prometheus::IntCounterVec::new(
        prometheus::Opts::new("requests_total", "Requests, \"quoted\" \\ help\nsecond line."),
        &["route", "method"],
    )
    .expect("counter");
    let latency = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("latency_seconds", "Latency.").buckets(vec![0.01, 0.1, 1.0]),
        &["route"],
    )
    .expect("histogram");
    registry.register(Box::new(requests.clone())).expect("register counter");
    registry.register(Box::new(latency.clone())).expect("register histogram");
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
        .expect("register process collector");

    let tricky = r#"/x/{id}?a,b=c "q" \ end"#;
    requests.with_label_values(&["/items/{id}", "GET"]).inc_by(3);
    requests.with_label_values(&[tricky, "POST"]).inc();
    requests.with_label_values(&["two\nlines", "GET"]).inc_by(2);
    for v in [0.005, 0.05, 0.5, 5.0] {
        latency.with_label_values(&["/items/{id}"]).observe(v);
    }

    let mut body = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut body).expect("encode");
    let body = String::from_utf8(body).expect("utf-8");
    let scrape = prom::Scrape::from_text(prom::TEXT_FORMAT, &body);

    assert_eq!(prom::value(&scrape, "requests_total", &[("route", "/items/{id}")]), Some(3.0));
    assert_eq!(prom::value(&scrape, "requests_total", &[("route", tricky)]), Some(1.0));
    assert_eq!(prom::value(&scrape, "requests_total", &[("route", "two\nlines")]), Some(2.0));
    assert_eq!(
        prom::label_values(&scrape, "requests_total", "route"),
        ["/items/{id}", tricky, "two\nlines"].into_iter().map(String::from).collect()
    );
    assert_eq!(
        prom::histogram_buckets(&scrape, "latency_seconds", &[("route", "/items/{id}")]),
        Some(vec![(0.01, 1.0), (0.1, 2.0), (1.0, 3.0), (f64::INFINITY, 4.0)])
    );
    assert_eq!(prom::histogram_count(&scrape, "latency_seconds", &[("route", "/items/{id}")]), Some(4.0));
    assert_eq!(prom::histogram_sum(&scrape, "latency_seconds", &[("route", "/items/{id}")]), Some(5.555));
    assert_eq!(prom::label_set_count(&scrape, "latency_seconds"), 1);
    #[cfg(target_os = "linux")]
    assert!(prom::value(&scrape, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    let sample_lines = body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    assert_eq!(prom::series_count(&scrape), sample_lines);
}

#[test]
#[should_panic(expected = "2 histogram series of http_request_duration_seconds match")]
fn prom_histogram_buckets_refuses_an_ambiguous_selector() {
    let scrape = prom::Scrape::from_text(prom::TEXT_FORMAT, TRICKY_EXPOSITION);
    prom::histogram_buckets(&scrape, "http_request_duration_seconds", &[("method", "GET")]);
}

#[test]
fn prom_reads_an_empty_exposition() {
    let scrape = prom::Scrape::from_text(prom::TEXT_FORMAT, "");
    assert_eq!(prom::series_count(&scrape), 0);
    assert_eq!(prom::sum(&scrape, "anything", &[]), None);
}

#[test]
#[should_panic(expected = "exposition text does not parse")]
fn prom_rejects_an_unterminated_label_value() {
    prom::Scrape::from_text(prom::TEXT_FORMAT, "requests_total{route=\"/a} 1\n");
}

/// Serve `body` with `content_type` at `/metrics` from an actix-web server on its own thread;
/// returns the URL and a handle that stops it.
fn serve_metrics_text(
    content_type: &'static str,
    body: &'static str,
) -> (String, actix_web::dev::ServerHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().route(
                    "/metrics",
                    actix_web::web::get()
                        .to(move || async move { actix_web::HttpResponse::Ok().content_type(content_type).body(body) }),
                )
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .expect("bind");
            let port = server.addrs()[0].port();
            let server = server.run();
            tx.send((port, server.handle())).expect("send handle");
            let _ = server.await;
        });
    });
    let (port, handle) = rx.recv_timeout(WAIT).expect("metrics server started");
    (format!("http://127.0.0.1:{port}/metrics"), handle, thread)
}

#[test]
fn prom_scrape_blocking_and_async_read_a_real_endpoint() {
    let (url, handle, thread) = serve_metrics_text("text/plain; version=0.0.4; charset=utf-8", EXPOSITION);

    let scrape = prom::scrape_blocking(&url);
    assert!(scrape.content_type.starts_with(prom::TEXT_FORMAT));
    assert_eq!(prom::value(&scrape, "in_flight", &[]), Some(4.0));

    let scrape = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(prom::scrape_async(&url));
    assert_eq!(prom::series_count(&scrape), 9);

    actix_rt::System::new().block_on(handle.stop(true));
    thread.join().expect("metrics server thread");
}

#[test]
#[should_panic(expected = "does not start with")]
fn prom_scrape_rejects_a_wrong_content_type() {
    let (url, _handle, _thread) = serve_metrics_text("application/json", "{}");
    prom::scrape_blocking(&url);
}

// ---------------------------------------------------------------------------------------------
// Wait helpers
// ---------------------------------------------------------------------------------------------

#[test]
fn wait_until_sees_a_condition_set_by_another_thread() {
    let flag = Arc::new(AtomicBool::new(false));
    let setter = {
        let flag = flag.clone();
        std::thread::spawn(move || flag.store(true, Ordering::SeqCst))
    };
    assert!(wait_until(WAIT, Duration::from_millis(5), || flag.load(Ordering::SeqCst)));
    setter.join().expect("setter");
}

#[test]
fn wait_until_gives_up_at_the_deadline() {
    let checks = AtomicUsize::new(0);
    let started = Instant::now();
    let held = wait_until(Duration::from_millis(100), Duration::from_millis(10), || {
        checks.fetch_add(1, Ordering::SeqCst);
        false
    });
    assert!(!held);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(checks.load(Ordering::SeqCst) >= 2, "polled more than once");
}

#[test]
#[should_panic(expected = "timed out after 50ms waiting for: the impossible")]
fn assert_eventually_panics_with_the_description() {
    assert_eventually(Duration::from_millis(50), Duration::from_millis(5), "the impossible", || false);
}

#[tokio::test]
async fn wait_until_async_polls_an_async_condition() {
    let flag = Arc::new(AtomicBool::new(false));
    let setter = {
        let flag = flag.clone();
        tokio::spawn(async move { flag.store(true, Ordering::SeqCst) })
    };
    assert!(wait_until_async(WAIT, || async { flag.load(Ordering::SeqCst) }).await);
    setter.await.expect("setter");
    assert!(!wait_until_async(Duration::from_millis(50), || async { false }).await);
}

#[tokio::test]
#[should_panic(expected = "timed out after 50ms waiting for: never")]
async fn assert_eventually_async_panics_with_the_description() {
    assert_eventually_async(Duration::from_millis(50), "never", || async { false }).await;
}
