use std::sync::Arc;

use actix::Actor;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use prometheus::Registry;

use super::*;
use crate::ingress::{metric_channel, HttpMethod, LabelValue, MetricEvent};
use crate::metric_aggregator::labelled;
use crate::self_metrics::SelfMetrics;
use crate::test_support::CATALOGUE;

fn aggregator(
    config: config::MetricsConfig,
) -> (actix::Addr<MetricAggregator>, crate::ingress::MetricIngress, Registry, ServiceMetrics) {
    let (addr, ingress, registry, service, _metrics) = aggregator_with_self_metrics(config);
    (addr, ingress, registry, service)
}

fn aggregator_with_self_metrics(
    config: config::MetricsConfig,
) -> (actix::Addr<MetricAggregator>, crate::ingress::MetricIngress, Registry, ServiceMetrics, Arc<SelfMetrics>) {
    let registry = Registry::new();
    let service = ServiceMetrics::register(&registry, &CATALOGUE).unwrap();
    let metrics = SelfMetrics::unregistered();
    let (ingress, rx, wake) = metric_channel(config.queue_capacity, 64, metrics.clone());
    let resource = Arc::new(ResourceAttributesWithSchema::from(&opentelemetry_sdk::Resource::builder_empty().build()));
    let addr =
        MetricAggregator::new(config, rx, wake, registry.clone(), service.clone(), None, resource, metrics.clone())
            .start();
    (addr, ingress, registry, service, metrics)
}

#[actix_rt::test]
async fn folds_events_into_the_registry_exactly() {
    let (addr, ingress, _registry, service) = aggregator(config::MetricsConfig::default());
    for status in [200u16, 200, 500] {
        ingress.record(MetricEvent::Request {
            method: HttpMethod::Get,
            route: LabelValue::new("/health"),
            status_code: status,
            duration: 0.02,
            exemplar: None,
        });
    }
    ingress.record(MetricEvent::ToolExecution {
        tool_name: LabelValue::new("calc"),
        success: false,
        duration: 1.5,
        exemplar: None,
    });
    ingress.record(MetricEvent::VectorSearch { query_length: 12, result_count: 3, duration: 0.004 });
    addr.send(Drain).await.unwrap();
    assert_eq!(service.requests_total.with_label_values(&["GET", "/health", "200"]).get(), 2);
    assert_eq!(service.requests_total.with_label_values(&["GET", "/health", "500"]).get(), 1);
    assert_eq!(service.request_duration.with_label_values(&["GET", "/health"]).get_sample_count(), 3);
    assert_eq!(service.tool_executions_total.with_label_values(&["calc", "false"]).get(), 1);
    assert!((service.tool_execution_duration.with_label_values(&["calc"]).get_sample_sum() - 1.5).abs() < 1e-9);
    assert_eq!(service.vector_searches_total.get(), 1);
    assert_eq!(service.vector_search_results.get_sample_count(), 1);
}

#[actix_rt::test]
async fn tool_names_beyond_the_cap_fold_into_other() {
    let config = config::MetricsConfig { max_tool_names: 2, ..Default::default() };
    let (addr, ingress, _registry, service) = aggregator(config);
    for name in ["a", "b", "c", "d", "a"] {
        ingress.record(MetricEvent::ToolExecution {
            tool_name: LabelValue::new(name),
            success: true,
            duration: 0.1,
            exemplar: None,
        });
    }
    addr.send(Drain).await.unwrap();
    assert_eq!(service.tool_executions_total.with_label_values(&["a", "true"]).get(), 2);
    assert_eq!(service.tool_executions_total.with_label_values(&["b", "true"]).get(), 1);
    assert_eq!(service.tool_executions_total.with_label_values(&[catalogue::OTHER, "true"]).get(), 2);
    let status = addr.send(GetStatus).await.unwrap();
    assert_eq!(status.tools, 2);
}

#[actix_rt::test]
async fn the_otlp_snapshot_carries_the_registry_values() {
    let (addr, ingress, registry, _service) = aggregator(config::MetricsConfig::default());
    for duration in [0.001, 0.03, 0.03, 20.0] {
        ingress.record(MetricEvent::Request {
            method: HttpMethod::Post,
            route: LabelValue::new("/mcp"),
            status_code: 200,
            duration,
            exemplar: None,
        });
    }
    addr.send(Drain).await.unwrap();
    let resource = ResourceAttributesWithSchema::from(&opentelemetry_sdk::Resource::builder_empty().build());
    let (request, points) = otlp::to_request(&registry.gather(), &[], &resource, 1, 2, None);
    assert!(points >= 2);
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    let histogram = metrics.iter().find(|m| m.name == CATALOGUE.request_duration.name).unwrap();
    let Some(Data::Histogram(histogram)) = &histogram.data else { panic!("not a histogram") };
    let point = &histogram.data_points[0];
    assert_eq!(point.count, 4);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), 4);
    assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
    assert_eq!(*point.bucket_counts.last().unwrap(), 1, "20 s lands in the +Inf bucket");
    assert_eq!(point.bucket_counts[0], 1, "1 ms lands in the first bucket");
    assert!((point.sum.unwrap() - 20.061).abs() < 1e-9);
    let counter = metrics.iter().find(|m| m.name == CATALOGUE.requests_total.name).unwrap();
    let Some(Data::Sum(sum)) = &counter.data else { panic!("not a sum") };
    assert!(sum.is_monotonic);
}

#[actix_rt::test]
async fn every_fold_into_other_is_counted_by_label_and_odd_status_codes_fold_too() {
    let config = config::MetricsConfig { max_tool_names: 1, max_routes: 1, ..Default::default() };
    let (addr, ingress, _registry, service, metrics) = aggregator_with_self_metrics(config);
    // "/a" takes the only route slot; "/b" and "/c" fold, "/b" twice (the second from the cache).
    for (route, status) in [("/a", 200u16), ("/b", 200), ("/b", 200), ("/c", 599), ("/a", 799)] {
        ingress.record(MetricEvent::Request {
            method: HttpMethod::Get,
            route: LabelValue::new(route),
            status_code: status,
            duration: 0.01,
            exemplar: None,
        });
    }
    for name in ["t1", "t2", "t2", "t1"] {
        ingress.record(MetricEvent::ToolExecution {
            tool_name: LabelValue::new(name),
            success: true,
            duration: 0.1,
            exemplar: None,
        });
    }
    addr.send(Drain).await.unwrap();
    use crate::self_metrics::CappedLabel;
    assert_eq!(metrics.label_overflow(CappedLabel::Route).get(), 3);
    assert_eq!(metrics.label_overflow(CappedLabel::ToolName).get(), 2);
    assert_eq!(service.requests_total.with_label_values(&["GET", catalogue::OTHER, "200"]).get(), 2);
    assert_eq!(service.requests_total.with_label_values(&["GET", catalogue::OTHER, "_OTHER"]).get(), 1);
    assert_eq!(service.requests_total.with_label_values(&["GET", "/a", "_OTHER"]).get(), 1);
    assert_eq!(service.tool_executions_total.with_label_values(&["t1", "true"]).get(), 2);
}

#[test]
fn registered_status_codes_are_sorted_and_the_series_bound_follows_the_caps() {
    assert!(catalogue::REGISTERED_STATUS_CODES.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(catalogue::status_label(404), "404");
    assert_eq!(catalogue::status_label(299), "_OTHER");
    let defaults = CATALOGUE.max_series(&config::MetricsConfig::default());
    let smaller = CATALOGUE.max_series(&config::MetricsConfig { max_routes: 10, ..Default::default() });
    assert!(smaller < defaults);
    // With the default caps: 10 methods × 201 routes × (62 + 1) statuses, the request duration
    // histogram (10 × 201 × 14), tools (201 × 2 + 201 × 14), the database histogram (24 × 14) and
    // the four vector search families (1 + 14 + 6 + 5), and the labelled families: a histogram
    // bounded to 6 series plus the all-`other` one × 6 lines, a gauge and a counter of 201 servers.
    assert_eq!(defaults, 126_630 + 28_140 + 402 + 2_814 + 336 + 26 + 42 + 201 + 201);
}

#[actix_rt::test]
async fn declared_tools_show_at_zero_for_both_outcomes_and_take_their_slots() {
    let config = config::MetricsConfig { max_tool_names: 2, ..Default::default() };
    let (addr, ingress, registry, service) = aggregator(config);
    addr.send(DeclareTools { names: vec![LabelValue::new("calc"), LabelValue::new("search")] }).await.unwrap();
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    for series in [
        "test_tool_executions_total{success=\"true\",tool_name=\"calc\"} 0",
        "test_tool_executions_total{success=\"false\",tool_name=\"calc\"} 0",
        "test_tool_executions_total{success=\"false\",tool_name=\"search\"} 0",
        "test_tool_execution_duration_seconds_count{tool_name=\"search\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    // The declared names hold the two slots: a third name folds into `other`.
    ingress.record(MetricEvent::ToolExecution {
        tool_name: LabelValue::new("late"),
        success: true,
        duration: 0.1,
        exemplar: None,
    });
    ingress.record(MetricEvent::ToolExecution {
        tool_name: LabelValue::new("calc"),
        success: true,
        duration: 0.1,
        exemplar: None,
    });
    addr.send(Drain).await.unwrap();
    assert_eq!(service.tool_executions_total.with_label_values(&[catalogue::OTHER, "true"]).get(), 1);
    assert_eq!(service.tool_executions_total.with_label_values(&["calc", "true"]).get(), 1);
    assert_eq!(service.tool_executions_total.with_label_values(&["calc", "false"]).get(), 0);
    assert_eq!(addr.send(GetStatus).await.unwrap().tools, 2);
}

#[actix_rt::test]
async fn a_declared_database_system_shows_every_operation_and_outcome_at_zero() {
    let (addr, ingress, registry, service) = aggregator(config::MetricsConfig::default());
    addr.send(DeclareDbSystem(crate::ingress::DbSystem::Sqlite)).await.unwrap();
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    for operation in crate::ingress::DbOperation::ALL {
        for success in ["true", "false"] {
            let series = format!(
                "test_db_query_duration_seconds_count{{db_operation=\"{}\",db_system=\"sqlite\",success=\"{success}\"}} 0",
                operation.as_str()
            );
            assert!(text.contains(&series), "{series} missing from:\n{text}");
        }
    }
    assert!(!text.contains("postgresql"), "only the declared system");
    ingress.record(MetricEvent::DbQuery {
        system: crate::ingress::DbSystem::Sqlite,
        operation: crate::ingress::DbOperation::Select,
        success: false,
        duration: 0.01,
    });
    addr.send(Drain).await.unwrap();
    let failed =
        service.db_query_duration.with_label_values(&["sqlite", crate::ingress::DbOperation::Select.as_str(), "false"]);
    assert_eq!(failed.get_sample_count(), 1);
}

/// The crate knows no product metric name: every family name comes from the catalogue the
/// library hands in. Test files may use any name.
#[test]
fn no_source_file_names_a_product_metric() {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>, scanned: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
            if path.is_dir() {
                walk(&path, found, scanned);
            } else if path.extension().is_some_and(|e| e == "rs") && file != "tests.rs" && file != "test_support.rs" {
                let text = std::fs::read_to_string(&path).unwrap();
                *scanned += 1;
                let needle = concat!("metamcp", "_");
                for (n, line) in text.lines().enumerate() {
                    if line.contains(needle) {
                        found.push(format!("{}:{}: {line}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut found, mut scanned) = (Vec::new(), 0);
    walk(&src, &mut found, &mut scanned);
    assert!(scanned > 20, "only {scanned} source files under {}", src.display());
    assert!(found.is_empty(), "product metric names in the actors crate:\n{}", found.join("\n"));
}

fn labelled_event(family: u16, labels: &[&str], op: LabelledOp) -> MetricEvent {
    MetricEvent::Labelled(Box::new(LabelledEvent { family, labels: LabelSet::new(labels), op, exemplar: None }))
}

fn labelled_metric(service: &ServiceMetrics, index: usize) -> &labelled::LabelledMetric {
    &service.labelled[index].metric
}

#[actix_rt::test]
async fn labelled_families_fold_their_caps_and_export_under_their_otlp_names() {
    let config = config::MetricsConfig { max_tool_names: 2, ..Default::default() };
    let (addr, ingress, registry, service, metrics) = aggregator_with_self_metrics(config);
    // Methods are capped at 3: "d" folds. Targets at max_tool_names = 2: "z" folds.
    for (method, target, seconds) in
        [("a", "x", 0.05), ("a", "x", 0.5), ("b", "y", 5.0), ("c", "", 50.0), ("d", "x", 0.05), ("a", "z", 0.05)]
    {
        ingress.record(labelled_event(0, &[method, target], LabelledOp::Observe(seconds)));
    }
    ingress.record(labelled_event(1, &["s1"], LabelledOp::Set(1.0)));
    ingress.record(labelled_event(1, &["s2"], LabelledOp::Set(0.0)));
    ingress.record(labelled_event(2, &["s1"], LabelledOp::Touch));
    ingress.record(labelled_event(2, &["s2"], LabelledOp::Inc(1)));
    ingress.record(labelled_event(2, &["s2"], LabelledOp::Inc(1)));
    // A wrong label count is ignored, as is an unknown family.
    ingress.record(labelled_event(1, &["s1", "extra"], LabelledOp::Set(7.0)));
    ingress.record(labelled_event(9, &["s1"], LabelledOp::Set(7.0)));
    addr.send(Drain).await.unwrap();

    let labelled::LabelledMetric::Histogram(ops) = labelled_metric(&service, 0) else { panic!("histogram") };
    assert_eq!(ops.with_label_values(&["a", "x"]).get_sample_count(), 2);
    assert_eq!(ops.with_label_values(&["b", "y"]).get_sample_count(), 1);
    assert_eq!(ops.with_label_values(&["c", ""]).get_sample_count(), 1);
    assert_eq!(ops.with_label_values(&[catalogue::OTHER, "x"]).get_sample_count(), 1);
    assert_eq!(ops.with_label_values(&["a", catalogue::OTHER]).get_sample_count(), 1);
    assert_eq!(metrics.label_overflow(crate::self_metrics::CappedLabel::Attribute).get(), 2);
    let labelled::LabelledMetric::Gauge(up) = labelled_metric(&service, 1) else { panic!("gauge") };
    assert_eq!(up.with_label_values(&["s1"]).get(), 1.0);
    assert_eq!(up.with_label_values(&["s2"]).get(), 0.0);
    let labelled::LabelledMetric::Counter(restarts) = labelled_metric(&service, 2) else { panic!("counter") };
    assert_eq!(restarts.with_label_values(&["s2"]).get(), 2);

    let resource = ResourceAttributesWithSchema::from(&opentelemetry_sdk::Resource::builder_empty().build());
    let (request, _) = otlp::to_request(&registry.gather(), crate::test_support::LABELLED, &resource, 1, 2, None);
    let exported = &request.resource_metrics[0].scope_metrics[0].metrics;
    let histogram = exported.iter().find(|m| m.name == "test.op.duration").expect("the OTLP name");
    assert_eq!(histogram.unit, "s");
    assert!(exported.iter().all(|m| m.name != "test_op_duration_seconds"));
    let Some(Data::Histogram(histogram)) = &histogram.data else { panic!("not a histogram") };
    let point = histogram
        .data_points
        .iter()
        .find(|p| p.attributes.iter().any(|kv| kv.key == "op.method" && kv.value == Some(string_value("c"))))
        .expect("the series of method c");
    assert_eq!(point.attributes.len(), 1, "an empty label is an absent attribute: {:?}", point.attributes);
    assert_eq!(point.explicit_bounds, vec![0.1, 1.0, 10.0]);
    assert_eq!(point.bucket_counts, vec![0, 0, 0, 1]);
    let counter = exported.iter().find(|m| m.name == "test_restarts_total").expect("counters keep their name");
    assert!(matches!(&counter.data, Some(Data::Sum(sum)) if sum.data_points.len() == 2));
    // Forget removes the series and gives the slot back: a new server keeps its own name.
    ingress.record(labelled_event(1, &["s1"], LabelledOp::Forget));
    ingress.record(labelled_event(2, &["s1"], LabelledOp::Forget));
    ingress.record(labelled_event(1, &["s3"], LabelledOp::Set(1.0)));
    addr.send(Drain).await.unwrap();
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    assert!(!text.contains(r#"test_up{server="s1"}"#), "{text}");
    assert!(!text.contains(r#"test_restarts_total{server="s1"}"#), "{text}");
    assert!(text.contains(r#"test_up{server="s3"} 1"#), "{text}");
    assert!(text.contains(r#"test_restarts_total{server="s2"} 2"#), "{text}");
}

fn string_value(value: &str) -> opentelemetry_proto::tonic::common::v1::AnyValue {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }
}

#[actix_rt::test]
async fn combinations_beyond_a_familys_series_bound_fold_into_one_other_series() {
    let (addr, ingress, _registry, service, metrics) = aggregator_with_self_metrics(config::MetricsConfig::default());
    // The test histogram keeps 6 combinations: 3 methods × 2 targets fill it, the 7th folds.
    for method in ["a", "b", "c"] {
        for target in ["x", "y"] {
            ingress.record(labelled_event(0, &[method, target], LabelledOp::Observe(0.05)));
        }
    }
    ingress.record(labelled_event(0, &["a", "w"], LabelledOp::Observe(0.05)));
    ingress.record(labelled_event(0, &["a", "x"], LabelledOp::Observe(0.05)));
    addr.send(Drain).await.unwrap();
    let labelled::LabelledMetric::Histogram(ops) = labelled_metric(&service, 0) else { panic!("histogram") };
    assert_eq!(ops.with_label_values(&["a", "x"]).get_sample_count(), 2);
    assert_eq!(ops.with_label_values(&[catalogue::OTHER, catalogue::OTHER]).get_sample_count(), 1);
    assert_eq!(metrics.label_overflow(crate::self_metrics::CappedLabel::Attribute).get(), 1);
}

#[actix_rt::test]
async fn forgetting_a_value_that_folded_into_other_keeps_the_other_series() {
    let config = config::MetricsConfig { max_tool_names: 1, ..Default::default() };
    let (addr, ingress, registry, _service, _metrics) = aggregator_with_self_metrics(config);
    ingress.record(labelled_event(1, &["s1"], LabelledOp::Set(1.0)));
    ingress.record(labelled_event(1, &["s2"], LabelledOp::Set(0.0)));
    // s2 folded into other; forgetting it, or a server never seen, removes nothing.
    ingress.record(labelled_event(1, &["s2"], LabelledOp::Forget));
    ingress.record(labelled_event(1, &["never"], LabelledOp::Forget));
    addr.send(Drain).await.unwrap();
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    assert!(text.contains(r#"test_up{server="s1"} 1"#), "{text}");
    assert!(text.contains(r#"test_up{server="other"} 0"#), "{text}");
    // Forgetting s1 frees its slot: the next server keeps its own name.
    ingress.record(labelled_event(1, &["s1"], LabelledOp::Forget));
    ingress.record(labelled_event(1, &["s3"], LabelledOp::Set(1.0)));
    addr.send(Drain).await.unwrap();
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    assert!(!text.contains(r#"server="s1""#), "{text}");
    assert!(text.contains(r#"test_up{server="s3"} 1"#), "{text}");
}

#[actix_rt::test]
async fn exemplars_follow_observations_that_carry_a_sampled_span_to_openmetrics_and_otlp() {
    use crate::ingress::SpanRef;
    use crate::sampling::TraceDecisions;
    let (addr, ingress, registry, _service) = aggregator(config::MetricsConfig::default());
    let first = SpanRef::new([7; 16], [9; 8]).unwrap();
    let second = SpanRef::new([8; 16], [10; 8]).unwrap();
    let request = |duration: f64, exemplar| MetricEvent::Request {
        method: HttpMethod::Get,
        route: LabelValue::new("/r"),
        status_code: 200,
        duration,
        exemplar,
    };
    ingress.record(request(0.02, Some(first)));
    // No span: the bucket keeps the exemplar it has.
    ingress.record(request(0.021, None));
    ingress.record(MetricEvent::ToolExecution {
        tool_name: LabelValue::new("calc"),
        success: true,
        duration: 2.0,
        exemplar: Some(second),
    });
    let mut observed = labelled_event(0, &["call", "a"], LabelledOp::Observe(0.3));
    if let MetricEvent::Labelled(event) = &mut observed {
        event.exemplar = Some(second);
    }
    ingress.record(observed);
    let table = addr.send(DrainExemplars).await.unwrap();
    assert_eq!(table.len(), 3);

    let head = TraceDecisions::head();
    let text = openmetrics::encode(&registry.gather(), &table, &head);
    let with_exemplars: Vec<&str> = text.lines().filter(|line| line.contains(" # {")).collect();
    assert_eq!(with_exemplars.len(), 3, "{text}");
    assert!(with_exemplars.iter().all(|line| line.contains("_bucket{")), "{with_exemplars:?}");
    assert!(with_exemplars
        .iter()
        .any(|line| line.contains("07070707070707070707070707070707") && line.contains(" 0.02 ")));

    let resource = ResourceAttributesWithSchema::from(&opentelemetry_sdk::Resource::builder_empty().build());
    let exemplars = otlp::Exemplars { table: &table, decisions: &head };
    let (request_body, _) = otlp::to_request(&registry.gather(), &[], &resource, 1, 2, Some(&exemplars));
    let exported: Vec<_> = request_body.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .filter_map(|metric| match &metric.data {
            Some(Data::Histogram(histogram)) => Some(histogram.data_points.iter().flat_map(|p| p.exemplars.clone())),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(exported.len(), 3);
    assert!(exported.iter().any(|e| e.trace_id == vec![7; 16] && e.span_id == vec![9; 8]));

    // Under tail sampling, a trace that was not kept is never referred to.
    let tail = TraceDecisions::tail(4);
    tail.record_kept([8; 16]);
    let text = openmetrics::encode(&registry.gather(), &table, &tail);
    assert_eq!(text.lines().filter(|line| line.contains(" # {")).count(), 2, "{text}");
    let exemplars = otlp::Exemplars { table: &table, decisions: &tail };
    let (request_body, _) = otlp::to_request(&registry.gather(), &[], &resource, 1, 2, Some(&exemplars));
    let kept = request_body.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .filter_map(|metric| match &metric.data {
            Some(Data::Histogram(histogram)) => {
                Some(histogram.data_points.iter().map(|p| p.exemplars.len()).sum::<usize>())
            }
            _ => None,
        })
        .sum::<usize>();
    assert_eq!(kept, 2);

    // A series that leaves the registry takes its exemplars with it.
    ingress.record(labelled_event(0, &["call", "a"], LabelledOp::Forget));
    assert_eq!(addr.send(DrainExemplars).await.unwrap().len(), 2);
}

#[test]
fn a_metric_event_stays_small() {
    // 64 bytes before exemplars; a span reference adds 24.
    assert!(std::mem::size_of::<MetricEvent>() <= 88, "{}", std::mem::size_of::<MetricEvent>());
}
