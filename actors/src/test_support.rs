//! Helpers for the actors' own tests.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An exporter configuration pointing at a port nothing listens on (connections are refused).
pub(crate) fn unreachable_exporter() -> crate::ExporterConfig {
    crate::ExporterConfig {
        endpoint: "http://127.0.0.1:9".to_owned(),
        timeout: Duration::from_millis(500),
        ..Default::default()
    }
}

/// A catalogue for the actors' own tests: every family of the real one, under test names.
pub(crate) const CATALOGUE: crate::metric_aggregator::Catalogue = {
    use crate::metric_aggregator::catalogue::{Catalogue, Family};
    const SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    const fn family(name: &'static str, labels: &'static [&'static str], buckets: &'static [f64]) -> Family {
        Family { name, help: "A test family.", labels, buckets }
    }
    Catalogue {
        self_metrics_prefix: "pipeline",
        requests_total: family("test_requests_total", &["method", "route", "status_code"], &[]),
        request_duration: family("test_request_duration_seconds", &["method", "route"], SECONDS),
        tool_executions_total: family("test_tool_executions_total", &["tool_name", "success"], &[]),
        tool_execution_duration: family("test_tool_execution_duration_seconds", &["tool_name"], SECONDS),
        db_query_duration: family("test_db_query_duration_seconds", &["db_system", "db_operation", "success"], SECONDS),
        vector_searches_total: family("test_vector_searches_total", &[], &[]),
        vector_search_duration: family("test_vector_search_duration_seconds", &[], SECONDS),
        vector_search_results: family("test_vector_search_results", &[], &[1.0, 10.0, 100.0]),
        vector_search_query_length: family("test_vector_search_query_length_chars", &[], &[16.0, 256.0]),
        labelled: LABELLED,
    }
};

/// Labelled families for the actors' own tests: a histogram with an OTLP name, a gauge, a counter.
pub(crate) const LABELLED: &[crate::metric_aggregator::LabelledFamily] = {
    use crate::metric_aggregator::catalogue::Family;
    use crate::metric_aggregator::{FamilyKind, LabelCap, LabelledFamily, OtlpName};
    &[
        LabelledFamily {
            family: Family {
                name: "test_op_duration_seconds",
                help: "A test operation histogram.",
                labels: &["op_method", "op_target"],
                buckets: &[0.1, 1.0, 10.0],
            },
            kind: FamilyKind::Histogram,
            caps: &[LabelCap::Values(3), LabelCap::Names],
            otlp: Some(OtlpName {
                name: "test.op.duration",
                unit: "s",
                attributes: &["op.method", "op.target"],
                integers: &[],
            }),
            max_series: 6,
        },
        LabelledFamily {
            family: Family { name: "test_up", help: "A test gauge.", labels: &["server"], buckets: &[] },
            kind: FamilyKind::Gauge,
            caps: &[LabelCap::Names],
            otlp: None,
            max_series: 0,
        },
        LabelledFamily {
            family: Family { name: "test_restarts_total", help: "A test counter.", labels: &["server"], buckets: &[] },
            kind: FamilyKind::Counter,
            caps: &[LabelCap::Names],
            otlp: None,
            max_series: 0,
        },
    ]
};
