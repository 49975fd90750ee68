//! A mixed workload with known counts: the scraped `/metrics` (parsed with a real exposition
//! parser) equals the ground truth exactly, and the OTLP metrics the receiver decodes carry the
//! same values.

use std::collections::BTreeMap;
use std::time::Duration;

use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::TelemetryManager;
use support::app::{settings_for, TestApp};
use support::{prom, PointValue, TestCollector, Transport};

#[actix_rt::test]
async fn scrape_and_otlp_equal_the_ground_truth() {
    let collector = TestCollector::start(Transport::Grpc);
    let manager = TelemetryManager::initialize(&settings_for(&collector.endpoint(), Protocol::Grpc)).unwrap();
    let app = TestApp::start(&manager).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // Ground truth: (method, path, route, status) × count.
    let workload: [(&str, &str, &str, u16, usize); 6] = [
        ("GET", "/ok", "/ok", 200, 7),
        ("GET", "/fail", "/fail", 500, 3),
        ("POST", "/items/1", "/items/{id}", 201, 2),
        ("POST", "/items/22", "/items/{id}", 201, 2),
        ("GET", "/nowhere", "unmatched", 404, 2),
        ("GET", "/unavailable", "/unavailable", 503, 3),
    ];
    for (method, path, _, status, count) in workload {
        for _ in 0..count {
            let response = client.request(method.parse().unwrap(), app.url(path)).send().await.unwrap();
            assert_eq!(response.status().as_u16(), status);
        }
    }
    let tool_runs =
        [("calculator", true, 0.004), ("calculator", true, 0.2), ("calculator", false, 1.5), ("search", true, 40.0)];
    for (tool, success, seconds) in tool_runs {
        manager.record_tool_execution(tool, success, Duration::from_secs_f64(seconds));
    }
    let searches = [(10usize, 0usize, 0.0008), (33, 5, 0.02), (700, 12, 0.3)];
    for (length, results, seconds) in searches {
        manager.record_vector_search(length, results, Duration::from_secs_f64(seconds));
    }

    let url = format!("http://{}/metrics", manager.metrics_addr().unwrap());
    let scrape = prom::scrape_async(&url).await;
    let mut per_route: BTreeMap<(&str, &str, String), f64> = BTreeMap::new();
    for (method, _, route, status, count) in workload {
        *per_route.entry((method, route, status.to_string())).or_default() += count as f64;
    }
    for ((method, route, status), count) in &per_route {
        let labels = [("method", *method), ("route", *route), ("status_code", status.as_str())];
        assert_eq!(prom::value(&scrape, "metamcp_requests_total", &labels), Some(*count), "{labels:?}");
    }
    assert_eq!(prom::label_set_count(&scrape, "metamcp_requests_total"), per_route.len(), "no other series");
    let by_route = |method: &str, route: &str| {
        per_route.iter().filter(|((m, r, _), _)| *m == method && *r == route).map(|(_, c)| c).sum::<f64>()
    };
    for (method, _, route, _, _) in workload {
        let labels = [("method", method), ("route", route)];
        assert_eq!(
            prom::histogram_count(&scrape, "metamcp_request_duration_seconds", &labels),
            Some(by_route(method, route))
        );
        assert!(prom::histogram_sum(&scrape, "metamcp_request_duration_seconds", &labels).unwrap() > 0.0);
    }

    let tool = |name: &str, success: &str| {
        prom::value(&scrape, "metamcp_tool_executions_total", &[("tool_name", name), ("success", success)])
    };
    assert_eq!(tool("calculator", "true"), Some(2.0));
    assert_eq!(tool("calculator", "false"), Some(1.0));
    assert_eq!(tool("search", "true"), Some(1.0));
    let calc = [("tool_name", "calculator")];
    assert_eq!(prom::histogram_count(&scrape, "metamcp_tool_execution_duration_seconds", &calc), Some(3.0));
    assert!(
        (prom::histogram_sum(&scrape, "metamcp_tool_execution_duration_seconds", &calc).unwrap() - 1.704).abs() < 1e-9
    );
    let buckets =
        prom::histogram_buckets(&scrape, "metamcp_tool_execution_duration_seconds", &[("tool_name", "search")])
            .unwrap();
    let le = |bound: f64| buckets.iter().find(|(b, _)| *b == bound).map(|(_, c)| *c);
    assert_eq!(le(30.0), Some(0.0), "40 s is above the 30 s bucket");
    assert_eq!(le(60.0), Some(1.0), "second-scale buckets reach minutes");

    assert_eq!(prom::value(&scrape, "metamcp_vector_searches_total", &[]), Some(3.0));
    assert_eq!(prom::histogram_count(&scrape, "metamcp_vector_search_duration_seconds", &[]), Some(3.0));
    assert!(
        (prom::histogram_sum(&scrape, "metamcp_vector_search_duration_seconds", &[]).unwrap() - 0.3208).abs() < 1e-9
    );
    assert_eq!(prom::histogram_sum(&scrape, "metamcp_vector_search_results", &[]), Some(17.0));
    assert_eq!(prom::histogram_sum(&scrape, "metamcp_vector_search_query_length_chars", &[]), Some(743.0));
    assert_eq!(
        prom::value(&scrape, "metamcp_telemetry_dropped_total", &[("signal", "metrics"), ("reason", "queue_full")]),
        Some(0.0)
    );

    // The OTLP export carries the same numbers: wait for a snapshot taken after the workload.
    let every_scraped_counter_matches = |collector: &TestCollector| {
        per_route.iter().all(|((method, route, status), count)| {
            collector.metric_points("metamcp_requests_total").iter().any(|p| {
                p.has_attrs(&[("method", method), ("route", route), ("status_code", status)])
                    && p.value() == Some(*count)
            })
        }) && collector.metric_points("metamcp_vector_searches_total").first().and_then(|p| p.value()) == Some(3.0)
            && collector
                .metric_points("metamcp_tool_execution_duration_seconds")
                .iter()
                .any(|p| p.has_attrs(&[("tool_name", "calculator")]) && p.count() == Some(3))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !every_scraped_counter_matches(&collector) {
        assert!(
            std::time::Instant::now() < deadline,
            "OTLP metrics never matched the scrape: {:?}",
            collector.metric_names()
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let points = collector.metric_points("metamcp_tool_execution_duration_seconds");
    let calc_point = points.iter().find(|p| p.has_attrs(&[("tool_name", "calculator")])).unwrap();
    let PointValue::Histogram(histogram) = &calc_point.value else { panic!("not a histogram") };
    assert!((histogram.sum.unwrap() - 1.704).abs() < 1e-9);
    assert_eq!(histogram.bucket_counts.iter().sum::<u64>(), 3);
    // Every OTLP bucket matches the scrape's cumulative buckets for the same series.
    let scraped = prom::histogram_buckets(&scrape, "metamcp_tool_execution_duration_seconds", &calc).unwrap();
    let mut cumulative = 0u64;
    for (bound, count) in histogram.explicit_bounds.iter().zip(&histogram.bucket_counts) {
        cumulative += count;
        let expected = scraped.iter().find(|(b, _)| b == bound).map(|(_, c)| *c as u64);
        assert_eq!(expected, Some(cumulative), "bucket le={bound}");
    }
    assert_eq!(calc_point.unit, "s");
    assert_eq!(calc_point.resource.get("service.name").map(String::as_str), Some("metamcp-telemetry"));
    app.handle.stop(true).await;
    manager.shutdown().await;
}
