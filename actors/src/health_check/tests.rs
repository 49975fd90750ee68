use std::time::Duration;

use prometheus::Registry;

use super::*;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::self_metrics::ActorKind;
use crate::test_support::{eventually, unreachable_exporter};

fn config() -> PipelineConfig {
    PipelineConfig {
        exporter: unreachable_exporter(),
        health: config::HealthConfig { check_interval: Duration::from_millis(50), ..Default::default() },
        ..PipelineConfig::new(crate::test_support::CATALOGUE)
    }
}

#[actix_rt::test]
async fn no_collector_means_degraded_but_ready() {
    let resource = opentelemetry_sdk::Resource::builder_empty().build();
    let pipeline = Pipeline::start(config(), &resource, Registry::new(), Vec::new()).unwrap();
    pipeline.metric_ingress.record(crate::ingress::MetricEvent::VectorSearch {
        query_length: 1,
        result_count: 1,
        duration: 0.1,
    });
    pipeline.aggregator.do_send(crate::metric_aggregator::ExportNow);
    let degraded = eventually(Duration::from_secs(10), || {
        let pipeline = pipeline.clone();
        async move {
            pipeline.check_health(Duration::from_secs(2)).await.is_some_and(|r| r.status == HealthStatus::Degraded)
        }
    })
    .await;
    assert!(degraded);
    let report = pipeline.check_health(Duration::from_secs(2)).await.unwrap();
    assert!(report.ready);
    let exporter = &report.components["exporter"];
    assert_eq!(exporter.details["collector_reachable"], serde_json::json!(false));
    assert!(exporter.signals["metrics"].export_failures["retryable"] >= 1);
    pipeline.shutdown(Duration::from_millis(200)).await;
}

#[actix_rt::test]
async fn a_panicking_actor_is_restarted_and_counted() {
    let resource = opentelemetry_sdk::Resource::builder_empty().build();
    let pipeline = Pipeline::start(config(), &resource, Registry::new(), Vec::new()).unwrap();
    for kind in ActorKind::ALL {
        pipeline.inject_panic(kind);
    }
    let restarted = eventually(Duration::from_secs(10), || {
        let pipeline = pipeline.clone();
        async move {
            let Some(report) = pipeline.check_health(Duration::from_secs(2)).await else { return false };
            ActorKind::ALL.iter().all(|k| report.components.get(k.as_str()).is_some_and(|c| c.restarts == 1))
        }
    })
    .await;
    assert!(restarted, "every actor restarts once and keeps answering");
    for kind in ActorKind::ALL {
        assert_eq!(pipeline.self_metrics.restarts(kind).get(), 1, "{kind:?}");
    }
    let report = pipeline.check_health(Duration::from_secs(2)).await.unwrap();
    assert!(report.ready, "{report:?}");
    pipeline.shutdown(Duration::from_millis(200)).await;
}

struct Upstreams(Vec<components::Component>);

impl ComponentSource for Upstreams {
    fn components(&self) -> Vec<components::Component> {
        self.0.clone()
    }
}

#[actix_rt::test]
async fn a_failing_component_degrades_the_report_but_not_readiness() {
    let resource = opentelemetry_sdk::Resource::builder_empty().build();
    let pipeline = Pipeline::start(config(), &resource, Registry::new(), Vec::new()).unwrap();
    let source = Upstreams(vec![
        components::Component {
            name: "upstream:ok".into(),
            healthy: true,
            details: serde_json::json!({"connected": true, "transport": "stdio", "restarts": 2, "env": {"TOKEN": "x"}}),
        },
        components::Component {
            name: "upstream:down".into(),
            healthy: false,
            details: serde_json::json!({"connected": false, "last_error_kind": "connect", "consecutive_failures": 3}),
        },
        components::Component { name: "exporter".into(), healthy: false, details: serde_json::json!({}) },
    ]);
    pipeline.health.do_send(AddComponents(std::sync::Arc::new(source)));
    let report = pipeline.check_health(Duration::from_secs(2)).await.unwrap();
    let ok = &report.components["upstream:ok"];
    assert_eq!(ok.status, HealthStatus::Healthy);
    assert_eq!(ok.restarts, 2);
    assert_eq!(ok.details["transport"], "stdio");
    assert!(!ok.details.contains_key("env"), "only the listed keys are shown");
    let down = &report.components["upstream:down"];
    assert_eq!(down.status, HealthStatus::Degraded);
    assert_eq!(down.reason.as_deref(), Some("failing: connect"));
    assert_eq!(down.details["consecutive_failures"], 3);
    assert_eq!(report.status.max(HealthStatus::Degraded), HealthStatus::Degraded, "never unhealthy: {report:?}");
    assert!(report.components["exporter"].signals.contains_key("traces"), "a pipeline name is not taken over");
    assert!(report.ready);
    pipeline.shutdown(Duration::from_millis(200)).await;
}

/// The log buffer is a component of its own: queue depth and capacity, records sent, and
/// `degraded` once log records were dropped at its door; the queue gauges show its queue.
#[actix_rt::test]
async fn dropped_log_records_degrade_the_log_buffer_component() {
    use crate::log_buffer::tests::record;
    use crate::self_metrics::{DropReason, Signal};
    let mut config = config();
    config.logs.queue_capacity = 4;
    config.logs.max_batch_size = 4;
    // Smaller than one record: every record is refused at the door, deterministically.
    config.logs.queue_max_bytes = 1;
    let resource = opentelemetry_sdk::Resource::builder_empty().build();
    let pipeline = Pipeline::start(config, &resource, Registry::new(), Vec::new()).unwrap();
    let report = pipeline.check_health(Duration::from_secs(2)).await.unwrap();
    let before = &report.components["log_buffer"];
    assert_eq!((before.queue_depth, before.queue_capacity), (Some(0), Some(4)));
    assert_eq!(before.reason, None, "{before:?}");

    let refused = (0..10).filter(|_| !pipeline.log_ingress.submit(record("app", 10))).count();
    assert_eq!(refused, 10);
    assert_eq!(pipeline.self_metrics.dropped(Signal::Logs, DropReason::QueueFull).get(), 10);
    let report = pipeline.check_health(Duration::from_secs(2)).await.unwrap();
    let after = &report.components["log_buffer"];
    assert_eq!(after.status, HealthStatus::Degraded);
    assert_eq!(after.reason.as_deref(), Some("log records were dropped since the last check"));
    assert_eq!(after.details["dropped_queue_full"], 10);
    assert_eq!(report.components["exporter"].signals["logs"].dropped["queue_full"], 10);
    assert!(report.ready, "dropping log records does not make the service unready");

    let gathered = pipeline.registry.gather();
    let gauge = |name: &str| {
        gathered
            .iter()
            .find(|family| family.name() == name)
            .and_then(|family| {
                family
                    .get_metric()
                    .iter()
                    .find(|m| m.get_label().iter().any(|l| l.name() == "queue" && l.value() == "logs"))
            })
            .map(|m| m.get_gauge().get_value())
    };
    assert_eq!(gauge("pipeline_queue_capacity"), Some(4.0));
    assert_eq!(gauge("pipeline_queue_depth"), Some(0.0));
    assert_eq!(gauge("pipeline_queue_max_bytes"), Some(1.0));
    pipeline.shutdown(Duration::from_millis(200)).await;
}
