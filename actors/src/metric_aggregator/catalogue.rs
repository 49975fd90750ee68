//! The service's metric catalogue: the six `metamcp_*` metrics of the seed and the vector search
//! histograms, with second-scale buckets and bounded labels.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

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

/// The label value that stands for every value beyond a cardinality cap.
pub const OTHER: &str = "other";

/// Handles of the service metrics, registered in one registry.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    /// `metamcp_requests_total{method, route, status_code}`
    pub requests_total: IntCounterVec,
    /// `metamcp_request_duration_seconds{method, route}`
    pub request_duration: HistogramVec,
    /// `metamcp_tool_executions_total{tool_name, success}`
    pub tool_executions_total: IntCounterVec,
    /// `metamcp_tool_execution_duration_seconds{tool_name}`
    pub tool_execution_duration: HistogramVec,
    /// `metamcp_db_query_duration_seconds{db_system, db_operation, success}`
    pub db_query_duration: HistogramVec,
    /// `metamcp_vector_searches_total`
    pub vector_searches_total: IntCounter,
    /// `metamcp_vector_search_duration_seconds`
    pub vector_search_duration: Histogram,
    /// `metamcp_vector_search_results`
    pub vector_search_results: Histogram,
    /// `metamcp_vector_search_query_length_chars`
    pub vector_search_query_length: Histogram,
}

impl ServiceMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            requests_total: IntCounterVec::new(
                Opts::new("metamcp_requests_total", "HTTP requests served, by method, route template and status code."),
                &["method", "route", "status_code"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new("metamcp_request_duration_seconds", "HTTP request duration in seconds.")
                    .buckets(HTTP_BUCKETS.to_vec()),
                &["method", "route"],
            )?,
            tool_executions_total: IntCounterVec::new(
                Opts::new("metamcp_tool_executions_total", "Tool executions, by tool and outcome."),
                &["tool_name", "success"],
            )?,
            tool_execution_duration: HistogramVec::new(
                HistogramOpts::new("metamcp_tool_execution_duration_seconds", "Tool execution duration in seconds.")
                    .buckets(TOOL_BUCKETS.to_vec()),
                &["tool_name"],
            )?,
            db_query_duration: HistogramVec::new(
                HistogramOpts::new(
                    "metamcp_db_query_duration_seconds",
                    "Database query duration in seconds, by system, operation and outcome.",
                )
                .buckets(DB_BUCKETS.to_vec()),
                &["db_system", "db_operation", "success"],
            )?,
            vector_searches_total: IntCounter::new(
                "metamcp_vector_searches_total",
                "Vector searches over the tools registry.",
            )?,
            vector_search_duration: Histogram::with_opts(
                HistogramOpts::new("metamcp_vector_search_duration_seconds", "Vector search duration in seconds.")
                    .buckets(SEARCH_BUCKETS.to_vec()),
            )?,
            vector_search_results: Histogram::with_opts(
                HistogramOpts::new("metamcp_vector_search_results", "Results returned per vector search.")
                    .buckets(RESULT_COUNT_BUCKETS.to_vec()),
            )?,
            vector_search_query_length: Histogram::with_opts(
                HistogramOpts::new(
                    "metamcp_vector_search_query_length_chars",
                    "Vector search query length in characters.",
                )
                .buckets(QUERY_LENGTH_BUCKETS.to_vec()),
            )?,
        };
        registry.register(Box::new(metrics.requests_total.clone()))?;
        registry.register(Box::new(metrics.request_duration.clone()))?;
        registry.register(Box::new(metrics.tool_executions_total.clone()))?;
        registry.register(Box::new(metrics.tool_execution_duration.clone()))?;
        registry.register(Box::new(metrics.db_query_duration.clone()))?;
        registry.register(Box::new(metrics.vector_searches_total.clone()))?;
        registry.register(Box::new(metrics.vector_search_duration.clone()))?;
        registry.register(Box::new(metrics.vector_search_results.clone()))?;
        registry.register(Box::new(metrics.vector_search_query_length.clone()))?;
        Ok(metrics)
    }
}
