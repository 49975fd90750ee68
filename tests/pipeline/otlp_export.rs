//! Every request through the middleware becomes exactly one SERVER span on a real OTLP wire,
//! over gRPC and over HTTP/protobuf, named and attributed per the HTTP semantic conventions and
//! parented to the incoming `traceparent`.

use std::time::Duration;

use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::TelemetryManager;
use support::app::{settings_for, TestApp};
use support::{TestCollector, Transport};

const REQUESTS: usize = 24;

async fn n_requests_become_n_server_spans(transport: Transport, protocol: Protocol) {
    let collector = TestCollector::start(transport);
    let manager = TelemetryManager::initialize(&settings_for(&collector.endpoint(), protocol)).unwrap();
    let app = TestApp::start(&manager).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let mut expected = Vec::new();
    for i in 0..REQUESTS {
        let (method, path, route, status) = match i % 4 {
            0 => ("GET", "/ok".to_owned(), "/ok", 200),
            1 => ("POST", format!("/items/{i}"), "/items/{id}", 201),
            2 => ("GET", "/fail".to_owned(), "/fail", 500),
            _ => ("GET", format!("/missing/{i}"), "unmatched", 404),
        };
        // Every third request continues a remote trace.
        let parent =
            (i % 3 == 0).then(|| (format!("{:032x}", 0xabc0_0000 + i as u128), format!("{:016x}", 0x1000 + i as u64)));
        let mut request =
            client.request(method.parse().unwrap(), app.url(&path)).header("x-request-id", format!("req-{i}"));
        if let Some((trace, span)) = &parent {
            request = request.header("traceparent", format!("00-{trace}-{span}-01"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert_eq!(response.headers()["x-request-id"], format!("req-{i}").as_str());
        expected.push((format!("req-{i}"), method, route, status, parent));
    }

    manager.force_flush(Duration::from_secs(10)).await.unwrap();
    let spans = collector.wait_for_spans_async(REQUESTS, Duration::from_secs(20)).await;
    let server_spans: Vec<_> = spans.iter().filter(|s| s.attr("http.request.method").is_some()).collect();
    assert_eq!(server_spans.len(), REQUESTS, "exactly one span per request, none twice");

    for (request_id, method, route, status, parent) in expected {
        let span = server_spans
            .iter()
            .find(|s| s.attr("http.request.header.x-request-id").as_deref() == Some(request_id.as_str()))
            .unwrap_or_else(|| panic!("no span for {request_id}"));
        let name = if route == "unmatched" { method.to_owned() } else { format!("{method} {route}") };
        assert_eq!(span.name, name);
        assert_eq!(span.attr("http.request.method").as_deref(), Some(method));
        assert_eq!(span.int_attr("http.response.status_code"), Some(i64::from(status)));
        if route == "unmatched" {
            assert_eq!(span.attr("http.route"), None);
        } else {
            assert_eq!(span.attr("http.route").as_deref(), Some(route));
        }
        assert_eq!(span.resource_attr("service.name").as_deref(), Some("metamcp-telemetry"));
        match parent {
            Some((trace, parent_span)) => {
                assert_eq!(span.trace_id_hex(), trace);
                assert_eq!(span.parent_span_id_hex().as_deref(), Some(parent_span.as_str()));
            }
            None => assert!(span.is_root(), "{request_id} has no remote parent"),
        }
        if status >= 500 {
            assert_eq!(span.attr("error.type").as_deref(), Some(status.to_string().as_str()));
        }
    }
    app.handle.stop(true).await;
    manager.shutdown().await;
    assert_eq!(collector.spans().iter().filter(|s| s.attr("http.request.method").is_some()).count(), REQUESTS);
}

#[actix_rt::test]
async fn grpc_receives_exactly_one_server_span_per_request() {
    n_requests_become_n_server_spans(Transport::Grpc, Protocol::Grpc).await;
}

#[actix_rt::test]
async fn http_protobuf_receives_exactly_one_server_span_per_request() {
    n_requests_become_n_server_spans(Transport::Http, Protocol::HttpProtobuf).await;
}
