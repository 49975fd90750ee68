//! The MCP semantic-convention histograms, the upstream families and the rate limit counter, end
//! to end: a known sequence of `record_mcp_operation` / `record_mcp_session` calls on both sides,
//! then the scrape of `/metrics` (exact counts and bucket boundaries) and the OTLP metrics a real
//! receiver decoded (exact instrument names, units, attribute keys and bucket counts).

use std::time::Duration;

use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::catalogue::MCP_BUCKETS;
use metamcp_telemetry::{Component, ComponentSource, McpOperation, McpSession, McpSide, TelemetryManager};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use support::app::settings_for;
use support::{prom, TestCollector, Transport};

const VERSION: &str = "2025-06-18";

fn op<'a>(method: &'a str, transport: &'a str) -> McpOperation<'a> {
    McpOperation { method, network_transport: transport, protocol_version: Some(VERSION), ..Default::default() }
}

/// The workload: (side, operation, seconds).
fn workload() -> Vec<(McpSide, McpOperation<'static>, f64)> {
    let tool = McpOperation { tool_name: Some("calc"), ..op("tools/call", "tcp") };
    vec![
        (McpSide::Server, tool, 0.005),
        (McpSide::Server, tool, 0.015),
        (McpSide::Server, tool, 0.3),
        (McpSide::Server, McpOperation { error_type: Some("tool_error"), ..tool }, 2.5),
        (McpSide::Server, McpOperation { prompt_name: Some("greet"), ..op("prompts/get", "tcp") }, 0.05),
        (McpSide::Server, McpOperation { protocol_version: None, ..op("initialize", "tcp") }, 0.01),
        (McpSide::Client, McpOperation { tool_name: Some("calc"), ..op("tools/call", "pipe") }, 0.02),
        (McpSide::Client, McpOperation { tool_name: Some("calc"), ..op("tools/call", "pipe") }, 0.02),
        (
            McpSide::Client,
            McpOperation {
                server_address: Some("127.0.0.1"),
                server_port: Some(8931),
                error_type: Some("-32002"),
                ..op("resources/read", "tcp")
            },
            400.0,
        ),
    ]
}

/// Cumulative bucket counts of `observations` over [`MCP_BUCKETS`], `+Inf` last.
fn cumulative(observations: &[f64]) -> Vec<(f64, f64)> {
    MCP_BUCKETS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .map(|bound| (bound, observations.iter().filter(|o| **o <= bound).count() as f64))
        .collect()
}

#[actix_rt::test]
async fn known_operations_give_exact_counts_in_the_scrape_and_over_otlp() {
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&settings_for(&collector.endpoint(), Protocol::Grpc)).unwrap();
    for (side, operation, seconds) in workload() {
        manager.record_mcp_operation(side, &operation, Duration::from_secs_f64(seconds));
    }
    let session = McpSession { protocol_version: Some(VERSION), network_transport: "tcp", error_type: None };
    manager.record_mcp_session(McpSide::Server, &session, Duration::from_secs(12));
    let failed =
        McpSession { protocol_version: Some(VERSION), network_transport: "pipe", error_type: Some("connection") };
    manager.record_mcp_session(McpSide::Client, &failed, Duration::from_secs(90));
    manager.set_upstream_up("weather", true);
    manager.set_upstream_up("files", false);
    manager.record_upstream_restart("files");
    manager.record_upstream_restart("files");
    for _ in 0..3 {
        manager.record_rate_limited("endpoint", "public");
    }
    manager.record_rate_limited("api_key", "ci");

    let url = format!("http://{}/metrics", manager.metrics_addr().unwrap());
    let scrape = prom::scrape_async(&url).await;
    let server = "mcp_server_operation_duration_seconds";
    let labels =
        |method: &'static str, tool: &'static str, prompt: &'static str, version: &'static str, error: &'static str| {
            [
                ("mcp_method_name", method),
                ("gen_ai_tool_name", tool),
                ("gen_ai_prompt_name", prompt),
                ("mcp_protocol_version", version),
                ("network_transport", "tcp"),
                ("error_type", error),
            ]
        };
    let calls = labels("tools/call", "calc", "", VERSION, "");
    assert_eq!(prom::histogram_count(&scrape, server, &calls), Some(3.0), "{}", scrape.body);
    assert!((prom::histogram_sum(&scrape, server, &calls).unwrap() - 0.32).abs() < 1e-9);
    assert_eq!(prom::histogram_buckets(&scrape, server, &calls).unwrap(), cumulative(&[0.005, 0.015, 0.3]));
    let errors = labels("tools/call", "calc", "", VERSION, "tool_error");
    assert_eq!(prom::histogram_buckets(&scrape, server, &errors).unwrap(), cumulative(&[2.5]));
    let prompts = labels("prompts/get", "", "greet", VERSION, "");
    assert_eq!(prom::histogram_count(&scrape, server, &prompts), Some(1.0));
    // 10 ms lands in the le="0.01" bucket: the bounds are inclusive.
    let init = labels("initialize", "", "", "", "");
    assert_eq!(prom::histogram_buckets(&scrape, server, &init).unwrap(), cumulative(&[0.01]));
    assert_eq!(prom::label_set_count(&scrape, server), 4, "no other server series");

    let client = "mcp_client_operation_duration_seconds";
    let piped = [("mcp_method_name", "tools/call"), ("network_transport", "pipe"), ("server_address", "")];
    assert_eq!(prom::histogram_count(&scrape, client, &piped), Some(2.0));
    let read = [
        ("mcp_method_name", "resources/read"),
        ("server_address", "127.0.0.1"),
        ("server_port", "8931"),
        ("error_type", "-32002"),
    ];
    let buckets = prom::histogram_buckets(&scrape, client, &read).unwrap();
    assert_eq!(buckets, cumulative(&[400.0]));
    assert_eq!(buckets[MCP_BUCKETS.len() - 1], (300.0, 0.0), "400 s is past the last bound");
    assert_eq!(prom::label_set_count(&scrape, client), 2);

    let sessions = [("mcp_protocol_version", VERSION), ("network_transport", "tcp"), ("error_type", "")];
    assert_eq!(
        prom::histogram_buckets(&scrape, "mcp_server_session_duration_seconds", &sessions).unwrap(),
        cumulative(&[12.0])
    );
    let failed_labels = [("network_transport", "pipe"), ("error_type", "connection")];
    assert_eq!(prom::histogram_count(&scrape, "mcp_client_session_duration_seconds", &failed_labels), Some(1.0));

    assert_eq!(prom::value(&scrape, "metamcp_upstream_up", &[("server", "weather")]), Some(1.0));
    assert_eq!(prom::value(&scrape, "metamcp_upstream_up", &[("server", "files")]), Some(0.0));
    assert_eq!(prom::value(&scrape, "metamcp_upstream_restarts_total", &[("server", "weather")]), Some(0.0));
    assert_eq!(prom::value(&scrape, "metamcp_upstream_restarts_total", &[("server", "files")]), Some(2.0));
    let limited = |scope, name| prom::value(&scrape, "metamcp_rate_limited_total", &[("scope", scope), ("name", name)]);
    assert_eq!(limited("endpoint", "public"), Some(3.0));
    assert_eq!(limited("api_key", "ci"), Some(1.0));

    // OTLP: the same numbers under the semantic-convention names, unit `s`, dotted attributes,
    // absent attributes left out, the port an integer.
    let arrived = collector
        .wait_for_async(Duration::from_secs(20), |received| {
            let points = received.metric_points("mcp.client.operation.duration");
            points.iter().map(|p| p.count().unwrap_or(0)).sum::<u64>() == 3
                && received
                    .metric_points("mcp.server.operation.duration")
                    .iter()
                    .map(|p| p.count().unwrap_or(0))
                    .sum::<u64>()
                    == 6
                && !received.metric_points("metamcp_rate_limited_total").is_empty()
        })
        .await;
    assert!(arrived, "OTLP metrics never matched: {:?}", collector.metric_names());
    let names = collector.metric_names();
    for name in [
        "mcp.server.operation.duration",
        "mcp.client.operation.duration",
        "mcp.server.session.duration",
        "mcp.client.session.duration",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
        for point in collector.metric_points(name) {
            assert_eq!(point.unit, "s", "{name}");
            let histogram = point.histogram().expect("a histogram");
            assert_eq!(histogram.explicit_bounds, MCP_BUCKETS, "{name}");
        }
    }
    assert!(names.iter().all(|n| !n.starts_with("mcp_")), "no Prometheus names over OTLP: {names:?}");

    let server_points = collector.metric_points("mcp.server.operation.duration");
    let call = server_points
        .iter()
        .find(|p| p.attr("gen_ai.tool.name") == Some("calc") && p.attr("error.type").is_none())
        .expect("the tools/call series");
    let keys: Vec<&str> = call.attributes.keys().map(String::as_str).collect();
    assert_eq!(keys, ["gen_ai.tool.name", "mcp.method.name", "mcp.protocol.version", "network.transport"]);
    let histogram = call.histogram().unwrap();
    assert_eq!(histogram.count, 3);
    // Per-bucket (not cumulative) counts: 5 ms ≤ 0.01, 15 ms ≤ 0.02, 300 ms ≤ 0.5.
    assert_eq!(histogram.bucket_counts, [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let init = server_points.iter().find(|p| p.attr("mcp.method.name") == Some("initialize")).unwrap();
    assert_eq!(init.attr("mcp.protocol.version"), None, "an absent attribute is left out");

    let client_points = collector.metric_points("mcp.client.operation.duration");
    let read = client_points.iter().find(|p| p.attr("mcp.method.name") == Some("resources/read")).unwrap();
    assert_eq!(read.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(read.attr("error.type"), Some("-32002"));
    assert_eq!(*read.histogram().unwrap().bucket_counts.last().unwrap(), 1);
    let port = collector.metric_requests().iter().rev().find_map(|request| {
        request
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .filter(|m| m.name == "mcp.client.operation.duration")
            .find_map(|m| match &m.data {
                Some(Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .flat_map(|p| &p.attributes)
                    .find(|kv| kv.key == "server.port")
                    .and_then(|kv| kv.value.clone()),
                _ => None,
            })
    });
    assert_eq!(port.and_then(|v| v.value), Some(any_value::Value::IntValue(8931)), "server.port is an integer");

    // A deleted upstream's series go away.
    manager.forget_upstream("weather");
    let scrape = prom::scrape_async(&url).await;
    assert_eq!(prom::value(&scrape, "metamcp_upstream_up", &[("server", "weather")]), None);
    assert_eq!(prom::value(&scrape, "metamcp_upstream_restarts_total", &[("server", "weather")]), None);
    assert_eq!(prom::value(&scrape, "metamcp_upstream_up", &[("server", "files")]), Some(0.0));
    manager.shutdown().await;
}

/// Upstream servers as a gateway would report them, changed by the test.
#[derive(Default)]
struct Upstreams(std::sync::Mutex<Vec<Component>>);

impl ComponentSource for Upstreams {
    fn components(&self) -> Vec<Component> {
        self.0.lock().unwrap().clone()
    }
}

fn upstream(name: &str, healthy: bool, details: serde_json::Value) -> Component {
    Component { name: format!("upstream:{name}"), healthy, details }
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, String, serde_json::Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, body, json)
}

#[actix_rt::test]
async fn a_failing_upstream_degrades_health_stays_live_and_has_a_status_page_row() {
    use actix_web::{web, App, HttpServer};
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&settings_for(&collector.endpoint(), Protocol::Grpc)).unwrap();
    let source = std::sync::Arc::new(Upstreams::default());
    *source.0.lock().unwrap() = vec![upstream(
        "weather",
        true,
        serde_json::json!({"connected": true, "transport": "streamable_http", "consecutive_failures": 0, "restarts": 0}),
    )];
    manager.register_components(source.clone());
    let status_page = metamcp_telemetry::status::StatusPage::new();
    let app_manager = manager.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(app_manager.clone()))
            .configure(metamcp_telemetry::http::health_routes)
            .configure(|cfg| status_page.configure(cfg))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let healthy = support::wait::wait_until_async(Duration::from_secs(10), || {
        let (client, url) = (client.clone(), format!("{base}/health"));
        async move {
            let (status, _, json) = get_json(&client, &url).await;
            status == 200
                && json["status"] == "healthy"
                && json["components"]["upstream:weather"]["status"] == "healthy"
        }
    })
    .await;
    assert!(healthy, "the healthy upstream shows as a healthy component");

    // The stdio server keeps exiting: failing, three failures in a row, restarted twice. Its
    // details carry what must never be shown: an environment, and a URL with credentials.
    source.0.lock().unwrap().push(upstream(
        "files",
        false,
        serde_json::json!({
            "connected": false,
            "transport": "stdio",
            "last_error_kind": "exited",
            "consecutive_failures": 3,
            "restarts": 2,
            "reason": "cannot reach https://admin:hunter2@files.internal/mcp",
            "env": {"API_TOKEN": "tok-secret"},
        }),
    ));
    let degraded = support::wait::wait_until_async(Duration::from_secs(10), || {
        let (client, url) = (client.clone(), format!("{base}/health"));
        async move {
            let (status, _, json) = get_json(&client, &url).await;
            status == 200 && json["status"] == "degraded"
        }
    })
    .await;
    assert!(degraded, "a failing upstream makes /health degraded (200), never unhealthy");
    let (_, body, health) = get_json(&client, &format!("{base}/health")).await;
    let files = &health["components"]["upstream:files"];
    assert_eq!(files["status"], "degraded", "{health}");
    assert_eq!(files["restarts"], 2);
    assert_eq!(files["details"]["consecutive_failures"], 3);
    assert_eq!(files["details"]["last_error_kind"], "exited");
    assert_eq!(health["components"]["upstream:weather"]["status"], "healthy");
    assert!(!body.contains("hunter2") && !body.contains("tok-secret") && !body.contains("API_TOKEN"), "{body}");
    let (live, _, live_json) = get_json(&client, &format!("{base}/health/live")).await;
    assert_eq!((live, live_json["status"].as_str()), (200, Some("live")));
    let (ready, _, _) = get_json(&client, &format!("{base}/health/ready")).await;
    assert_eq!(ready, 200, "an upstream does not make the service unready");

    let (status, body, page) = get_json(&client, &format!("{base}/status.json")).await;
    assert_eq!(status, 200);
    assert!(!body.contains("hunter2") && !body.contains("tok-secret") && !body.contains("API_TOKEN"), "{body}");
    let rows = page["upstreams"].as_array().expect("an upstreams list");
    assert_eq!(rows.len(), 2, "{page}");
    assert_eq!(
        rows[0],
        serde_json::json!({
            "name": "files", "state": "failing", "transport": "stdio", "last_error_kind": "exited",
            "consecutive_failures": 3, "restarts": 2,
            "reason": "cannot reach https://admin:***@files.internal/mcp",
        })
    );
    assert_eq!(rows[1]["name"], "weather");
    assert_eq!(rows[1]["state"], "connected");
    assert_eq!(rows[1]["transport"], "streamable_http");
    let html = client.get(format!("{base}/status")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"upstreams\""), "the page has the upstream table");
    handle.stop(true).await;
    manager.shutdown().await;
}
