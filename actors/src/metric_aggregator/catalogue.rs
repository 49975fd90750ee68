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
/// The `status_code` label of a status code no registry lists (as `_OTHER` for methods).
pub const OTHER_STATUS: &str = "_OTHER";

/// The status codes of the IANA HTTP Status Code Registry; each keeps its own `status_code`
/// label value, any other code is counted under [`OTHER_STATUS`].
pub const REGISTERED_STATUS_CODES: &[u16] = &[
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400,
    401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425,
    426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// The `status_code` label value of `code`: the number, or `_OTHER` for an unregistered code.
pub fn status_label(code: u16) -> String {
    if REGISTERED_STATUS_CODES.binary_search(&code).is_ok() {
        code.to_string()
    } else {
        OTHER_STATUS.to_owned()
    }
}

/// Values the `method` label can take: nine methods and `_OTHER`.
pub const METHOD_VALUES: usize = 10;

/// The most series the service metrics can show under `config`: every label is bounded —
/// `method` by [`METHOD_VALUES`], `route` by `max_routes` plus `other`, `status_code` by the
/// registered codes plus `_OTHER`, `tool_name` by `max_tool_names` plus `other`, the database
/// labels by their enums — and a histogram series is one line per bucket plus `+Inf`, `_sum`
/// and `_count`.
pub fn max_series(config: &super::config::MetricsConfig) -> usize {
    let histogram = |buckets: &[f64]| buckets.len() + 3;
    let routes = config.max_routes + 1;
    let tools = config.max_tool_names + 1;
    let statuses = REGISTERED_STATUS_CODES.len() + 1;
    let db_keys = 2 * 6 * 2; // db_system × db_operation × success
    METHOD_VALUES * routes * statuses
        + METHOD_VALUES * routes * histogram(HTTP_BUCKETS)
        + tools * 2
        + tools * histogram(TOOL_BUCKETS)
        + db_keys * histogram(DB_BUCKETS)
        + 1
        + histogram(SEARCH_BUCKETS)
        + histogram(RESULT_COUNT_BUCKETS)
        + histogram(QUERY_LENGTH_BUCKETS)
}

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
