//! The description of the metric families the aggregator keeps — names, help texts, label names
//! and buckets — which the library hands in: this crate knows the shapes of the metric events
//! (a request, a tool execution, a database query, a vector search), never a product's metric
//! names. Also the label bounds every catalogue shares (`other`, `_OTHER`, registered status codes).

pub use super::family::{Family, OTHER};
use super::labelled::{LabelledFamily, LabelledHandle};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Every family the aggregator keeps, and the prefix of the pipeline's own metrics.
///
/// Label names are the library's choice; their number is fixed by the event that fills them
/// (noted on each field), and [`ServiceMetrics::register`] rejects a family with another count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Catalogue {
    /// Prefix of the pipeline's self-metrics: `{prefix}_dropped_total`, `{prefix}_queue_depth`, ….
    pub self_metrics_prefix: &'static str,
    /// Counter of served HTTP requests; three labels: method, route template, status code.
    pub requests_total: Family,
    /// Histogram of HTTP request durations in seconds; two labels: method, route template.
    pub request_duration: Family,
    /// Counter of tool executions; two labels: tool name, outcome (`"true"`/`"false"`).
    pub tool_executions_total: Family,
    /// Histogram of tool execution durations in seconds; one label: tool name.
    pub tool_execution_duration: Family,
    /// Histogram of database query durations in seconds; three labels: system, operation, outcome.
    pub db_query_duration: Family,
    /// Counter of vector searches; no labels.
    pub vector_searches_total: Family,
    /// Histogram of vector search durations in seconds; no labels.
    pub vector_search_duration: Family,
    /// Histogram of results per vector search; no labels.
    pub vector_search_results: Family,
    /// Histogram of vector search query lengths in characters; no labels.
    pub vector_search_query_length: Family,
    /// Families the library describes entirely (labels, caps, OTLP names), fed by
    /// [`LabelledEvent`](super::labelled::LabelledEvent)s that name them by index in this list.
    pub labelled: &'static [LabelledFamily],
}

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

impl Catalogue {
    /// The most series the service metrics can show under `config`: every label is bounded —
    /// method by [`METHOD_VALUES`], route by `max_routes` plus `other`, status code by the
    /// registered codes plus `_OTHER`, tool name by `max_tool_names` plus `other`, the database
    /// labels by their enums, each label of a labelled family by its cap plus `other` — and a
    /// histogram series is one line per bucket plus `+Inf`, `_sum` and `_count`.
    pub fn max_series(&self, config: &super::config::MetricsConfig) -> usize {
        let histogram = |family: &Family| family.buckets.len() + 3;
        let routes = config.max_routes + 1;
        let tools = config.max_tool_names + 1;
        let statuses = REGISTERED_STATUS_CODES.len() + 1;
        let db_keys = 2 * 6 * 2; // db_system × db_operation × success
        METHOD_VALUES * routes * statuses
            + METHOD_VALUES * routes * histogram(&self.request_duration)
            + tools * 2
            + tools * histogram(&self.tool_execution_duration)
            + db_keys * histogram(&self.db_query_duration)
            + 1
            + histogram(&self.vector_search_duration)
            + histogram(&self.vector_search_results)
            + histogram(&self.vector_search_query_length)
            + self.labelled.iter().map(|family| family.max_series(config)).fold(0, usize::saturating_add)
    }
}

impl Family {
    fn check_labels(&self, expected: usize) -> Result<(), prometheus::Error> {
        if self.labels.len() == expected {
            Ok(())
        } else {
            Err(prometheus::Error::Msg(format!(
                "metric family {} names {} label(s); its events fill {expected}",
                self.name,
                self.labels.len()
            )))
        }
    }

    fn counter_vec(&self, labels: usize) -> Result<IntCounterVec, prometheus::Error> {
        self.check_labels(labels)?;
        IntCounterVec::new(Opts::new(self.name, self.help), self.labels)
    }

    fn counter(&self) -> Result<IntCounter, prometheus::Error> {
        self.check_labels(0)?;
        IntCounter::new(self.name, self.help)
    }

    fn histogram_opts(&self) -> HistogramOpts {
        HistogramOpts::new(self.name, self.help).buckets(self.buckets.to_vec())
    }

    fn histogram_vec(&self, labels: usize) -> Result<HistogramVec, prometheus::Error> {
        self.check_labels(labels)?;
        HistogramVec::new(self.histogram_opts(), self.labels)
    }

    fn histogram(&self) -> Result<Histogram, prometheus::Error> {
        self.check_labels(0)?;
        Histogram::with_opts(self.histogram_opts())
    }
}

/// Handles of the service metrics, registered in one registry.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    /// [`Catalogue::requests_total`]`{method, route, status_code}`
    pub requests_total: IntCounterVec,
    /// [`Catalogue::request_duration`]`{method, route}`
    pub request_duration: HistogramVec,
    /// [`Catalogue::tool_executions_total`]`{tool_name, success}`
    pub tool_executions_total: IntCounterVec,
    /// [`Catalogue::tool_execution_duration`]`{tool_name}`
    pub tool_execution_duration: HistogramVec,
    /// [`Catalogue::db_query_duration`]`{db_system, db_operation, success}`
    pub db_query_duration: HistogramVec,
    /// [`Catalogue::vector_searches_total`]
    pub vector_searches_total: IntCounter,
    /// [`Catalogue::vector_search_duration`]
    pub vector_search_duration: Histogram,
    /// [`Catalogue::vector_search_results`]
    pub vector_search_results: Histogram,
    /// [`Catalogue::vector_search_query_length`]
    pub vector_search_query_length: Histogram,
    /// [`Catalogue::labelled`], in the same order.
    pub labelled: Vec<LabelledHandle>,
    /// The catalogue the families were created from.
    pub catalogue: Catalogue,
}

impl ServiceMetrics {
    /// Creates the families `catalogue` describes and registers them in `registry`.
    pub fn register(registry: &Registry, catalogue: &Catalogue) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            requests_total: catalogue.requests_total.counter_vec(3)?,
            request_duration: catalogue.request_duration.histogram_vec(2)?,
            tool_executions_total: catalogue.tool_executions_total.counter_vec(2)?,
            tool_execution_duration: catalogue.tool_execution_duration.histogram_vec(1)?,
            db_query_duration: catalogue.db_query_duration.histogram_vec(3)?,
            vector_searches_total: catalogue.vector_searches_total.counter()?,
            vector_search_duration: catalogue.vector_search_duration.histogram()?,
            vector_search_results: catalogue.vector_search_results.histogram()?,
            vector_search_query_length: catalogue.vector_search_query_length.histogram()?,
            labelled: Vec::new(),
            catalogue: *catalogue,
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
        let labelled = super::labelled::register_all(registry, catalogue.labelled)?;
        Ok(Self { labelled, ..metrics })
    }
}
