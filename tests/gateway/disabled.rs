//! `TELEMETRY_ENABLED=false` is free: no Prometheus socket, no pipeline threads, while the API
//! and the health endpoints are still served. The enabled run is the control that shows the
//! thread check can fail.

use std::net::TcpStream;
use std::time::Duration;

use crate::common::Service;
use support::service::client;

/// The pipeline's threads (five actors and the Prometheus endpoint) are named `mmcp-*`.
const PIPELINE_THREAD: &str = "mmcp-";

#[test]
fn disabled_telemetry_binds_no_metrics_port_and_runs_no_pipeline_threads() {
    let service = Service::start(&[("TELEMETRY_ENABLED", "false")], &["--metrics-port", "19473"]);
    assert_eq!(service.metrics, None, "the listening line reports no metrics endpoint");
    let refused = TcpStream::connect_timeout(&"127.0.0.1:19473".parse().unwrap(), Duration::from_secs(2));
    assert!(refused.is_err(), "nothing may listen on the Prometheus port when telemetry is disabled");
    let arbiters = service.thread_names().iter().filter(|n| n.starts_with(PIPELINE_THREAD)).count();
    assert_eq!(arbiters, 0, "threads: {:?}", service.thread_names());

    let http = client();
    let health = http.get(service.url("/health")).send().unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().unwrap();
    assert_eq!(body["telemetry"], "disabled");
    assert_eq!(http.get(service.url("/health/live")).send().unwrap().status(), 200);
    assert_eq!(http.get(service.url("/health/ready")).send().unwrap().status(), 200);
    let missing = http.get(service.url("/nothing/here")).send().unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));
}

#[test]
fn enabled_telemetry_runs_the_pipeline_threads_and_serves_metrics() {
    let service = Service::start(&[("OTLP_ENDPOINT", "http://127.0.0.1:9")], &[]);
    let names: std::collections::BTreeSet<String> =
        service.thread_names().into_iter().filter(|n| n.starts_with(PIPELINE_THREAD)).collect();
    let expected =
        ["mmcp-aggregator", "mmcp-exporter", "mmcp-health", "mmcp-logbuffer", "mmcp-metrics", "mmcp-spanbuffer"];
    assert_eq!(names, expected.iter().map(|n| n.to_string()).collect(), "threads: {:?}", service.thread_names());
    let metrics = client().get(service.metrics_url()).send().unwrap();
    assert_eq!(metrics.status(), 200);
}
