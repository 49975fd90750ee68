//! The metric catalogue of MetaMCP, handed to the pipeline at start: the six `metamcp_*` metrics
//! of the seed, the database and vector search histograms, their second-scale buckets, and the
//! `metamcp_telemetry_*` prefix of the pipeline's own metrics. These names are the contract that
//! dashboards, alerts and `docs/metrics.md` rely on.

use metamcp_telemetry_actors::metric_aggregator::{Catalogue, Family};

/// HTTP server duration buckets: the OpenTelemetry semantic-convention bounds, in seconds.
pub const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// Tool execution buckets, in seconds, up to five minutes.
pub const TOOL_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// Vector search duration buckets, in seconds.
pub const SEARCH_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Database query duration buckets, in seconds.
pub const DB_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Vector search result count buckets.
pub const RESULT_COUNT_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0];
/// Vector search query length buckets, in characters.
pub const QUERY_LENGTH_BUCKETS: &[f64] = &[8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Prefix of the pipeline's own metrics (`metamcp_telemetry_dropped_total`, …).
pub const SELF_METRICS_PREFIX: &str = "metamcp_telemetry";

/// The families MetaMCP's `/metrics` and OTLP export carry.
pub const METAMCP: Catalogue = Catalogue {
    self_metrics_prefix: SELF_METRICS_PREFIX,
    requests_total: Family {
        name: "metamcp_requests_total",
        help: "HTTP requests served, by method, route template and status code.",
        labels: &["method", "route", "status_code"],
        buckets: &[],
    },
    request_duration: Family {
        name: "metamcp_request_duration_seconds",
        help: "HTTP request duration in seconds.",
        labels: &["method", "route"],
        buckets: HTTP_BUCKETS,
    },
    tool_executions_total: Family {
        name: "metamcp_tool_executions_total",
        help: "Tool executions, by tool and outcome.",
        labels: &["tool_name", "success"],
        buckets: &[],
    },
    tool_execution_duration: Family {
        name: "metamcp_tool_execution_duration_seconds",
        help: "Tool execution duration in seconds.",
        labels: &["tool_name"],
        buckets: TOOL_BUCKETS,
    },
    db_query_duration: Family {
        name: "metamcp_db_query_duration_seconds",
        help: "Database query duration in seconds, by system, operation and outcome.",
        labels: &["db_system", "db_operation", "success"],
        buckets: DB_BUCKETS,
    },
    vector_searches_total: Family {
        name: "metamcp_vector_searches_total",
        help: "Vector searches over the tools registry.",
        labels: &[],
        buckets: &[],
    },
    vector_search_duration: Family {
        name: "metamcp_vector_search_duration_seconds",
        help: "Vector search duration in seconds.",
        labels: &[],
        buckets: SEARCH_BUCKETS,
    },
    vector_search_results: Family {
        name: "metamcp_vector_search_results",
        help: "Results returned per vector search.",
        labels: &[],
        buckets: RESULT_COUNT_BUCKETS,
    },
    vector_search_query_length: Family {
        name: "metamcp_vector_search_query_length_chars",
        help: "Vector search query length in characters.",
        labels: &[],
        buckets: QUERY_LENGTH_BUCKETS,
    },
};

#[cfg(test)]
mod tests {
    use metamcp_telemetry_actors::metric_aggregator::ServiceMetrics;
    use metamcp_telemetry_actors::MetricsConfig;

    use super::*;

    #[test]
    fn the_catalogue_registers_and_its_series_bound_follows_the_caps() {
        ServiceMetrics::register(&prometheus::Registry::new(), &METAMCP).unwrap();
        for buckets in
            [HTTP_BUCKETS, TOOL_BUCKETS, SEARCH_BUCKETS, DB_BUCKETS, RESULT_COUNT_BUCKETS, QUERY_LENGTH_BUCKETS]
        {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]));
        }
        // With the default caps: 10 methods × 201 routes × (62 + 1) statuses, the request duration
        // histogram (10 × 201 × 17), tools (201 × 2 + 201 × 18), the database histogram (24 × 19) and
        // the four vector search families (1 + 16 + 12 + 11).
        assert_eq!(METAMCP.max_series(&MetricsConfig::default()), 126_630 + 34_170 + 402 + 3_618 + 456 + 40);
    }
}
