//! The recording API of an MCP gateway: the MCP semantic-convention histograms
//! (`mcp.{server,client}.operation.duration`, `mcp.{server,client}.session.duration`), the
//! upstream gauge and restart counter, the rate limit counter, and the extra `/health`
//! components. Every call builds one event and hands it to the metric aggregator with a
//! `try_send` (never blocks, a full queue drops and counts it); label values are capped there.

use std::sync::Arc;
use std::time::Duration;

use metamcp_telemetry_actors::health_check::{AddComponents, Component, ComponentSource};
use metamcp_telemetry_actors::ingress::MetricEvent;
use metamcp_telemetry_actors::metric_aggregator::{LabelSet, LabelledEvent, LabelledOp};

use crate::catalogue::labelled_index as index;
use crate::manager::{Sink, TelemetryManager};

/// Which side of an MCP exchange a measurement is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum McpSide {
    /// The gateway serving a client (`mcp.server.*`).
    Server,
    /// The gateway as the client of an upstream server (`mcp.client.*`).
    Client,
}

/// One MCP request, as the semantic conventions describe it (attribute names in the fields' docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct McpOperation<'a> {
    /// `mcp.method.name`: `tools/call`, `prompts/get`, `initialize`, ….
    pub method: &'a str,
    /// `gen_ai.tool.name`, for `tools/call`.
    pub tool_name: Option<&'a str>,
    /// `gen_ai.prompt.name`, for `prompts/get`.
    pub prompt_name: Option<&'a str>,
    /// `mcp.protocol.version` negotiated for the session.
    pub protocol_version: Option<&'a str>,
    /// `network.transport`: `pipe` for stdio, `tcp` for HTTP.
    pub network_transport: &'a str,
    /// `error.type` when the request failed (a JSON-RPC error code, `tool_error`, `timeout`, …).
    pub error_type: Option<&'a str>,
    /// `server.address` of the upstream (client side only).
    pub server_address: Option<&'a str>,
    /// `server.port` of the upstream (client side only).
    pub server_port: Option<u16>,
}

/// One MCP session that ended, as the semantic conventions describe it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct McpSession<'a> {
    /// `mcp.protocol.version` negotiated for the session.
    pub protocol_version: Option<&'a str>,
    /// `network.transport`: `pipe` for stdio, `tcp` for HTTP.
    pub network_transport: &'a str,
    /// `error.type` when the session ended on an error.
    pub error_type: Option<&'a str>,
}

/// The state of one upstream MCP server, as its `/health` component and status page row show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamStatus<'a> {
    /// Whether the gateway's session with it works.
    pub connected: bool,
    /// Its transport: `stdio`, `sse` or `streamable_http`.
    pub transport: &'a str,
    /// The kind of the last error (`connect`, `timeout`, `exited`, …), never its message.
    pub last_error_kind: Option<&'a str>,
    /// Failed attempts in a row (0 after a success).
    pub consecutive_failures: u64,
    /// Restarts of its session or process.
    pub restarts: u64,
}

/// The `/health` component of upstream server `server`: named `upstream:<server>`, healthy while
/// connected, with the detail keys the status page's "Upstream servers" row reads. What a
/// [`ComponentSource`] of a gateway answers for each upstream.
pub fn upstream_component(server: &str, status: &UpstreamStatus<'_>) -> Component {
    Component {
        name: format!("{}{server}", crate::status::UPSTREAM_PREFIX),
        healthy: status.connected,
        details: serde_json::json!({
            "connected": status.connected,
            "transport": status.transport,
            "last_error_kind": status.last_error_kind,
            "consecutive_failures": status.consecutive_failures,
            "restarts": status.restarts,
        }),
    }
}

/// `port` in decimal, on the stack.
struct Port {
    digits: [u8; 5],
    len: usize,
}

impl Port {
    fn new(mut port: u16) -> Self {
        let mut digits = [0u8; 5];
        let mut len = 0;
        loop {
            digits[len] = b'0' + (port % 10) as u8;
            len += 1;
            port /= 10;
            if port == 0 {
                break;
            }
        }
        digits[..len].reverse();
        Self { digits, len }
    }

    fn as_str(&self) -> &str {
        // ASCII digits only.
        std::str::from_utf8(&self.digits[..self.len]).unwrap_or("")
    }
}

fn labelled(family: u16, labels: &[&str], op: LabelledOp) -> MetricEvent {
    MetricEvent::Labelled(Box::new(LabelledEvent { family, labels: LabelSet::new(labels), op, exemplar: None }))
}

/// An observation whose exemplar is the current span, when sampled.
fn observed_in_current_span(family: u16, labels: &[&str], seconds: f64) -> MetricEvent {
    MetricEvent::Labelled(Box::new(LabelledEvent {
        family,
        labels: LabelSet::new(labels),
        op: LabelledOp::Observe(seconds),
        exemplar: crate::manager::current_span(),
    }))
}

impl TelemetryManager {
    /// Records one MCP request on `side` into `mcp.{server,client}.operation.duration`
    /// (`mcp_{server,client}_operation_duration_seconds` on `/metrics`). Never blocks. Server
    /// side measurements ignore `server_address` and `server_port`. The current span, when
    /// sampled, becomes the observation's exemplar.
    #[inline]
    pub fn record_mcp_operation(&self, side: McpSide, op: &McpOperation<'_>, duration: Duration) {
        self.inner.sink.record(|| {
            let seconds = duration.as_secs_f64();
            let common = [
                op.method,
                op.tool_name.unwrap_or(""),
                op.prompt_name.unwrap_or(""),
                op.protocol_version.unwrap_or(""),
                op.network_transport,
                op.error_type.unwrap_or(""),
            ];
            match side {
                McpSide::Server => observed_in_current_span(index::MCP_SERVER_OPERATION, &common, seconds),
                McpSide::Client => {
                    let port = op.server_port.map(Port::new);
                    let [a, b, c, d, e, f] = common;
                    let labels =
                        [a, b, c, d, e, f, op.server_address.unwrap_or(""), port.as_ref().map_or("", Port::as_str)];
                    observed_in_current_span(index::MCP_CLIENT_OPERATION, &labels, seconds)
                }
            }
        });
    }

    /// Records one MCP session that ended on `side` into `mcp.{server,client}.session.duration`
    /// (`mcp_{server,client}_session_duration_seconds` on `/metrics`). Never blocks.
    #[inline]
    pub fn record_mcp_session(&self, side: McpSide, session: &McpSession<'_>, duration: Duration) {
        self.inner.sink.record(|| {
            let family = match side {
                McpSide::Server => index::MCP_SERVER_SESSION,
                McpSide::Client => index::MCP_CLIENT_SESSION,
            };
            let labels =
                [session.protocol_version.unwrap_or(""), session.network_transport, session.error_type.unwrap_or("")];
            labelled(family, &labels, LabelledOp::Observe(duration.as_secs_f64()))
        });
    }

    /// Sets `metamcp_upstream_up{server}` to 1 or 0, and creates
    /// `metamcp_upstream_restarts_total{server}` at 0 if it does not exist yet, so both series
    /// are there from the moment an upstream is set up. Never blocks.
    pub fn set_upstream_up(&self, server: &str, up: bool) {
        self.inner.sink.record(|| labelled(index::UPSTREAM_UP, &[server], LabelledOp::Set(if up { 1.0 } else { 0.0 })));
        self.inner.sink.record(|| labelled(index::UPSTREAM_RESTARTS, &[server], LabelledOp::Touch));
    }

    /// Counts one restart of an upstream's session or process in
    /// `metamcp_upstream_restarts_total{server}`. Never blocks.
    pub fn record_upstream_restart(&self, server: &str) {
        self.inner.sink.record(|| labelled(index::UPSTREAM_RESTARTS, &[server], LabelledOp::Inc(1)));
    }

    /// Counts one request refused by a rate limit in `metamcp_rate_limited_total{scope, name}`
    /// (`scope`: `endpoint` or `api_key`; `name`: the endpoint's or the key's name, never the
    /// key itself). Never blocks.
    pub fn record_rate_limited(&self, scope: &str, name: &str) {
        self.inner.sink.record(|| labelled(index::RATE_LIMITED, &[scope, name], LabelledOp::Inc(1)));
    }

    /// Removes the upstream series of `server` (an upstream that was deleted), giving its label
    /// slot back. Never blocks.
    pub fn forget_upstream(&self, server: &str) {
        self.inner.sink.record(|| labelled(index::UPSTREAM_UP, &[server], LabelledOp::Forget));
        self.inner.sink.record(|| labelled(index::UPSTREAM_RESTARTS, &[server], LabelledOp::Forget));
    }

    /// Adds the components `source` answers to `/health` (a failing component makes the report
    /// `degraded`, never `unhealthy`; `/health/live` and `/health/ready` ignore them) and as rows
    /// of the status page. Name components `upstream:<name>` and the like; only the detail keys
    /// of [`DETAIL_KEYS`](metamcp_telemetry_actors::health_check::components::DETAIL_KEYS) are
    /// shown, and every string is redacted. Takes effect from the next health gathering. In test
    /// mode the source is kept for [`TestTelemetry::components`](crate::TestTelemetry::components);
    /// a no-op when telemetry is disabled.
    pub fn register_components(&self, source: Arc<dyn ComponentSource>) {
        match &self.inner.sink {
            // Test mode keeps the source, for `TestTelemetry::components`.
            Sink::Capture(capture) => capture.add_source(source),
            _ => {
                if let Some(pipeline) = self.pipeline() {
                    // Set-up, not the hot path: the health check's mailbox.
                    pipeline.health.do_send(AddComponents(source));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_component_is_named_and_healthy_while_connected() {
        let status = UpstreamStatus {
            connected: false,
            transport: "stdio",
            last_error_kind: Some("exited"),
            consecutive_failures: 2,
            restarts: 1,
        };
        let component = upstream_component("files", &status);
        assert_eq!(component.name, "upstream:files");
        assert!(!component.healthy);
        assert_eq!(component.details["last_error_kind"], "exited");
        assert_eq!(component.details["restarts"], 1);
    }

    #[test]
    fn ports_print_in_decimal() {
        for port in [0u16, 7, 80, 443, 8080, 65535] {
            assert_eq!(Port::new(port).as_str(), port.to_string());
        }
    }
}
