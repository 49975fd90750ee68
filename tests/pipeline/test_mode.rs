//! The test mode a user's own tests rely on: everything recorded through the normal API is
//! captured in memory, including the spans of the middleware and of `trace_operation`.

use std::time::Duration;

use actix_web::{test, web, App, HttpResponse};
use metamcp_telemetry::TelemetryManager;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::KeyValue;

#[actix_rt::test]
async fn recording_calls_are_captured() {
    let (manager, recorded) = TelemetryManager::for_testing();
    manager.record_request("PROPFIND", "/dav", 207, Duration::from_millis(3));
    manager.record_tool_execution("calculator", false, Duration::from_millis(40));
    manager.record_vector_search(17, 4, Duration::from_micros(900));
    let requests = recorded.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "_OTHER");
    assert_eq!(requests[0].route, "/dav");
    assert_eq!(requests[0].status_code, 207);
    let tools = recorded.tool_executions();
    assert_eq!((tools[0].tool_name.as_str(), tools[0].success), ("calculator", false));
    let searches = recorded.vector_searches();
    assert_eq!((searches[0].query_length, searches[0].result_count), (17, 4));
    recorded.clear();
    assert!(recorded.metric_events().is_empty());
}

#[actix_rt::test]
async fn trace_operation_nests_spans_and_marks_errors() {
    let (manager, recorded) = TelemetryManager::for_testing();
    let tracer = manager.tracer().unwrap().clone();
    let outcome: Result<(), String> = manager
        .trace_operation("outer", vec![KeyValue::new("step", "one")], async {
            // A span started inside is a child of the operation's span.
            tracer.in_span("inner", |_| {});
            Err("upstream refused".to_owned())
        })
        .await;
    assert!(outcome.is_err());
    let outer = recorded.span("outer").expect("outer span");
    let inner = recorded.span("inner").expect("inner span");
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
    assert_eq!(inner.span_context.trace_id(), outer.span_context.trace_id());
    assert_eq!(outer.status, Status::error("upstream refused"));
    let exception = outer.events.iter().find(|e| e.name == "exception").expect("exception event");
    assert!(exception
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "exception.message" && kv.value.as_str() == "upstream refused"));
    assert!(outer.attributes.iter().any(|kv| kv.key.as_str() == "step"));

    let ok: Result<u8, String> = manager.trace_operation("fine", Vec::new(), async { Ok(7) }).await;
    assert_eq!(ok, Ok(7));
    assert_eq!(recorded.span("fine").unwrap().status, Status::Unset);
}

async fn handler(manager: web::Data<TelemetryManager>) -> HttpResponse {
    let span_ok = opentelemetry::Context::map_current(|cx| cx.span().span_context().is_valid());
    let request_id = metamcp_telemetry::RequestId::current().map(|id| id.as_str().to_owned()).unwrap_or_default();
    manager.record_tool_execution("echo", span_ok, Duration::from_millis(1));
    HttpResponse::Ok().body(request_id)
}

#[actix_rt::test]
async fn the_middleware_records_a_server_span_and_a_request() {
    let (manager, recorded) = TelemetryManager::for_testing();
    let app = test::init_service(
        App::new()
            .wrap(manager.middleware())
            .app_data(web::Data::new(manager.clone()))
            .route("/items/{id}", web::get().to(handler)),
    )
    .await;
    let request = test::TestRequest::get()
        .uri("/items/9")
        .insert_header(("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        .insert_header(("x-request-id", "req-123"))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.headers().get("x-request-id").unwrap(), "req-123");
    let body = test::read_body(response).await;
    assert_eq!(body, "req-123", "the handler sees the request id in its context");

    let span = recorded.span("GET /items/{id}").expect("server span");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    let attr = |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
    assert_eq!(attr("http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(attr("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr("url.path").as_deref(), Some("/items/9"));
    assert_eq!(recorded.requests()[0].route, "/items/{id}");
    assert!(recorded.tool_executions()[0].success, "the server span is current inside the handler");

    let missing = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(missing.status(), 404);
    let requests = recorded.requests();
    assert_eq!((requests[1].route.as_str(), requests[1].status_code), ("unmatched", 404));
    assert!(recorded.span_names().contains(&"GET".to_owned()), "unmatched requests are named by method only");
}
