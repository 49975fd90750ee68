//! The metric catalogue of MetaMCP, handed to the pipeline at start: the six `metamcp_*` metrics
//! of the seed, the database and vector search histograms, their second-scale buckets, the MCP
//! semantic-convention histograms (`mcp.{server,client}.{operation,session}.duration`), the
//! upstream and rate limit families, and the `metamcp_telemetry_*` prefix of the pipeline's own
//! metrics. These names are the contract that dashboards, alerts and `docs/metrics.md` rely on.

use metamcp_telemetry_actors::metric_aggregator::{Catalogue, Family, FamilyKind, LabelCap, LabelledFamily, OtlpName};

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

/// MCP operation and session duration buckets, in seconds: the boundaries the MCP semantic
/// conventions recommend.
pub const MCP_BUCKETS: &[f64] = &[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Prometheus labels of `mcp_server_operation_duration_seconds`, in event order.
pub const MCP_SERVER_OPERATION_LABELS: &[&str] = &[
    "mcp_method_name",
    "gen_ai_tool_name",
    "gen_ai_prompt_name",
    "mcp_protocol_version",
    "network_transport",
    "error_type",
];
/// Prometheus labels of `mcp_client_operation_duration_seconds`: the server's, and the peer's
/// address and port.
pub const MCP_CLIENT_OPERATION_LABELS: &[&str] = &[
    "mcp_method_name",
    "gen_ai_tool_name",
    "gen_ai_prompt_name",
    "mcp_protocol_version",
    "network_transport",
    "error_type",
    "server_address",
    "server_port",
];
/// Prometheus labels of the session duration histograms.
pub const MCP_SESSION_LABELS: &[&str] = &["mcp_protocol_version", "network_transport", "error_type"];

/// Distinct MCP method names kept (the protocol has about 25; a peer may send any string).
const METHOD_CAP: LabelCap = LabelCap::Values(32);
/// Distinct protocol versions kept.
const VERSION_CAP: LabelCap = LabelCap::Values(8);
/// Distinct network transports kept (`pipe`, `tcp`, …).
const TRANSPORT_CAP: LabelCap = LabelCap::Values(4);
/// Distinct error types kept.
const ERROR_CAP: LabelCap = LabelCap::Values(32);
/// Label combinations an operation histogram keeps before further ones fold into one series
/// whose labels read `other` (each label is capped on its own as well).
pub const MAX_OPERATION_SERIES: usize = 2_000;

const fn mcp_histogram(
    name: &'static str,
    help: &'static str,
    otlp_name: &'static str,
    labels: &'static [&'static str],
    attributes: &'static [&'static str],
    caps: &'static [LabelCap],
    max_series: usize,
) -> LabelledFamily {
    LabelledFamily {
        family: Family { name, help, labels, buckets: MCP_BUCKETS },
        kind: FamilyKind::Histogram,
        caps,
        otlp: Some(OtlpName { name: otlp_name, unit: "s", attributes, integers: &["server.port"] }),
        max_series,
    }
}

/// Index of each labelled family in [`LABELLED`] (the events name their family by it).
pub(crate) mod labelled_index {
    pub(crate) const MCP_SERVER_OPERATION: u16 = 0;
    pub(crate) const MCP_CLIENT_OPERATION: u16 = 1;
    pub(crate) const MCP_SERVER_SESSION: u16 = 2;
    pub(crate) const MCP_CLIENT_SESSION: u16 = 3;
    pub(crate) const UPSTREAM_UP: u16 = 4;
    pub(crate) const UPSTREAM_RESTARTS: u16 = 5;
    pub(crate) const RATE_LIMITED: u16 = 6;
}

/// The MCP semantic-convention histograms, the upstream families and the rate limit counter.
pub const LABELLED: &[LabelledFamily] = &[
    mcp_histogram(
        "mcp_server_operation_duration_seconds",
        "MCP request duration on the server side (a client's request to an endpoint), in seconds.",
        "mcp.server.operation.duration",
        MCP_SERVER_OPERATION_LABELS,
        &[
            "mcp.method.name",
            "gen_ai.tool.name",
            "gen_ai.prompt.name",
            "mcp.protocol.version",
            "network.transport",
            "error.type",
        ],
        &[METHOD_CAP, LabelCap::Names, LabelCap::Names, VERSION_CAP, TRANSPORT_CAP, ERROR_CAP],
        MAX_OPERATION_SERIES,
    ),
    mcp_histogram(
        "mcp_client_operation_duration_seconds",
        "MCP request duration on the client side (the gateway's request to an upstream server), in seconds.",
        "mcp.client.operation.duration",
        MCP_CLIENT_OPERATION_LABELS,
        &[
            "mcp.method.name",
            "gen_ai.tool.name",
            "gen_ai.prompt.name",
            "mcp.protocol.version",
            "network.transport",
            "error.type",
            "server.address",
            "server.port",
        ],
        &[
            METHOD_CAP,
            LabelCap::Names,
            LabelCap::Names,
            VERSION_CAP,
            TRANSPORT_CAP,
            ERROR_CAP,
            LabelCap::Names,
            LabelCap::Names,
        ],
        MAX_OPERATION_SERIES,
    ),
    mcp_histogram(
        "mcp_server_session_duration_seconds",
        "MCP session duration on the server side (a client's session with an endpoint), in seconds.",
        "mcp.server.session.duration",
        MCP_SESSION_LABELS,
        &["mcp.protocol.version", "network.transport", "error.type"],
        &[VERSION_CAP, TRANSPORT_CAP, ERROR_CAP],
        0,
    ),
    mcp_histogram(
        "mcp_client_session_duration_seconds",
        "MCP session duration on the client side (the gateway's session with an upstream server), in seconds.",
        "mcp.client.session.duration",
        MCP_SESSION_LABELS,
        &["mcp.protocol.version", "network.transport", "error.type"],
        &[VERSION_CAP, TRANSPORT_CAP, ERROR_CAP],
        0,
    ),
    LabelledFamily {
        family: Family {
            name: "metamcp_upstream_up",
            help: "Whether the gateway's session with an upstream server works (1) or fails (0).",
            labels: &["server"],
            buckets: &[],
        },
        kind: FamilyKind::Gauge,
        caps: &[LabelCap::Names],
        otlp: None,
        max_series: 0,
    },
    LabelledFamily {
        family: Family {
            name: "metamcp_upstream_restarts_total",
            help: "Restarts of an upstream server's session or process (a stdio server that exited, say).",
            labels: &["server"],
            buckets: &[],
        },
        kind: FamilyKind::Counter,
        caps: &[LabelCap::Names],
        otlp: None,
        max_series: 0,
    },
    LabelledFamily {
        family: Family {
            name: "metamcp_rate_limited_total",
            help: "Requests refused with 429 by a rate limit, by scope (endpoint, api_key) and its name.",
            labels: &["scope", "name"],
            buckets: &[],
        },
        kind: FamilyKind::Counter,
        caps: &[LabelCap::Values(8), LabelCap::Names],
        otlp: None,
        max_series: 0,
    },
];

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
    labelled: LABELLED,
};

#[cfg(test)]
mod tests {
    use metamcp_telemetry_actors::metric_aggregator::ServiceMetrics;
    use metamcp_telemetry_actors::MetricsConfig;

    use super::*;

    #[test]
    fn the_catalogue_registers_and_its_series_bound_follows_the_caps() {
        ServiceMetrics::register(&prometheus::Registry::new(), &METAMCP).unwrap();
        for buckets in [
            HTTP_BUCKETS,
            TOOL_BUCKETS,
            SEARCH_BUCKETS,
            DB_BUCKETS,
            RESULT_COUNT_BUCKETS,
            QUERY_LENGTH_BUCKETS,
            MCP_BUCKETS,
        ] {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]));
        }
        // With the default caps: 10 methods × 201 routes × (62 + 1) statuses, the request duration
        // histogram (10 × 201 × 17), tools (201 × 2 + 201 × 18), the database histogram (24 × 19) and
        // the four vector search families (1 + 16 + 12 + 11); the two operation histograms
        // (2 001 series × 17 lines each), the two session histograms (9 versions × 5 transports ×
        // 33 error types × 17), the two upstream families (201 each) and the rate limit counter
        // (9 scopes × 201 names).
        assert_eq!(
            METAMCP.max_series(&MetricsConfig::default()),
            126_630 + 34_170 + 402 + 3_618 + 456 + 40 + 2 * 34_017 + 2 * 25_245 + 2 * 201 + 1_809
        );
    }

    /// The families that appear only after an event (no upstream, no rate limit in a fresh
    /// service) escape the scrape-based docs test; this one holds their rows in
    /// `docs/metrics.md` to the catalogue: name, type, labels and buckets.
    #[test]
    fn every_labelled_family_is_documented_as_the_catalogue_describes_it() {
        use metamcp_telemetry_actors::metric_aggregator::FamilyKind;
        let docs = include_str!("../../docs/metrics.md");
        for labelled in LABELLED {
            let family = &labelled.family;
            let row = docs
                .lines()
                .find(|line| line.starts_with(&format!("| `{}` |", family.name)))
                .unwrap_or_else(|| panic!("{} has no row in docs/metrics.md", family.name));
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            let kind = match labelled.kind {
                FamilyKind::Counter => "counter",
                FamilyKind::Gauge => "gauge",
                FamilyKind::Histogram => "histogram",
            };
            assert_eq!(cells[1], kind, "{row}");
            let labels: Vec<String> = family.labels.iter().map(|l| format!("`{l}`")).collect();
            assert_eq!(cells[2], labels.join(", "), "{row}");
            let buckets: Vec<String> = family.buckets.iter().map(f64::to_string).collect();
            assert_eq!(cells[3], if buckets.is_empty() { "—".to_owned() } else { buckets.join(", ") }, "{row}");
            if let Some(otlp) = labelled.otlp {
                assert!(cells[4].starts_with(&format!("`{}`", otlp.name)), "the OTLP name leads: {row}");
                for attribute in otlp.attributes {
                    assert!(docs.contains(&format!("`{attribute}`")), "{attribute} is documented");
                }
            }
        }
    }
}
