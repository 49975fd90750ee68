//! Test mode for the MCP recording API: the operations, sessions, upstream and rate limit events
//! a [`TestTelemetry`] decodes from the captured metric events, and the components registered
//! with [`register_components`](crate::TelemetryManager::register_components).

use std::time::Duration;

use metamcp_telemetry_actors::health_check::Component;
use metamcp_telemetry_actors::ingress::MetricEvent;
use metamcp_telemetry_actors::metric_aggregator::{LabelledEvent, LabelledOp};

use crate::capture::TestTelemetry;
use crate::catalogue::labelled_index as index;
use crate::mcp::McpSide;

/// A recorded MCP operation, as `record_mcp_operation` saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedMcpOperation {
    /// Server or client side.
    pub side: McpSide,
    /// `mcp.method.name`.
    pub method: String,
    /// `gen_ai.tool.name`.
    pub tool_name: Option<String>,
    /// `gen_ai.prompt.name`.
    pub prompt_name: Option<String>,
    /// `mcp.protocol.version`.
    pub protocol_version: Option<String>,
    /// `network.transport`.
    pub network_transport: String,
    /// `error.type`.
    pub error_type: Option<String>,
    /// `server.address` (client side).
    pub server_address: Option<String>,
    /// `server.port` (client side).
    pub server_port: Option<u16>,
    /// Duration.
    pub duration: Duration,
}

/// A recorded MCP session, as `record_mcp_session` saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedMcpSession {
    /// Server or client side.
    pub side: McpSide,
    /// `mcp.protocol.version`.
    pub protocol_version: Option<String>,
    /// `network.transport`.
    pub network_transport: String,
    /// `error.type`.
    pub error_type: Option<String>,
    /// Duration.
    pub duration: Duration,
}

/// A recorded upstream event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedUpstreamEvent {
    /// `set_upstream_up(server, up)`.
    Up {
        /// The server.
        server: String,
        /// Whether it works.
        up: bool,
    },
    /// `record_upstream_restart(server)`.
    Restarted {
        /// The server.
        server: String,
    },
    /// `forget_upstream(server)`.
    Forgotten {
        /// The server.
        server: String,
    },
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn labelled(events: Vec<MetricEvent>) -> impl Iterator<Item = LabelledEvent> {
    events.into_iter().filter_map(|event| match event {
        MetricEvent::Labelled(event) => Some(*event),
        _ => None,
    })
}

fn seconds(op: LabelledOp) -> Duration {
    match op {
        LabelledOp::Observe(seconds) => Duration::from_secs_f64(seconds),
        _ => Duration::ZERO,
    }
}

impl TestTelemetry {
    /// The recorded MCP operations, both sides, in order.
    pub fn mcp_operations(&self) -> Vec<RecordedMcpOperation> {
        labelled(self.metric_events())
            .filter_map(|event| {
                let side = match event.family {
                    index::MCP_SERVER_OPERATION => McpSide::Server,
                    index::MCP_CLIENT_OPERATION => McpSide::Client,
                    _ => return None,
                };
                let labels: Vec<&str> = event.labels.as_slice().iter().map(|v| v.as_str()).collect();
                let label = |i: usize| labels.get(i).copied().unwrap_or("");
                Some(RecordedMcpOperation {
                    side,
                    method: label(0).to_owned(),
                    tool_name: optional(label(1)),
                    prompt_name: optional(label(2)),
                    protocol_version: optional(label(3)),
                    network_transport: label(4).to_owned(),
                    error_type: optional(label(5)),
                    server_address: optional(label(6)),
                    server_port: label(7).parse().ok(),
                    duration: seconds(event.op),
                })
            })
            .collect()
    }

    /// The recorded MCP sessions, both sides, in order.
    pub fn mcp_sessions(&self) -> Vec<RecordedMcpSession> {
        labelled(self.metric_events())
            .filter_map(|event| {
                let side = match event.family {
                    index::MCP_SERVER_SESSION => McpSide::Server,
                    index::MCP_CLIENT_SESSION => McpSide::Client,
                    _ => return None,
                };
                let labels: Vec<&str> = event.labels.as_slice().iter().map(|v| v.as_str()).collect();
                let label = |i: usize| labels.get(i).copied().unwrap_or("");
                Some(RecordedMcpSession {
                    side,
                    protocol_version: optional(label(0)),
                    network_transport: label(1).to_owned(),
                    error_type: optional(label(2)),
                    duration: seconds(event.op),
                })
            })
            .collect()
    }

    /// The recorded upstream events (`set_upstream_up`, `record_upstream_restart`,
    /// `forget_upstream`), in order.
    pub fn upstream_events(&self) -> Vec<RecordedUpstreamEvent> {
        labelled(self.metric_events())
            .filter_map(|event| {
                let server = event.labels.as_slice().first()?.as_str().to_owned();
                match (event.family, event.op) {
                    (index::UPSTREAM_UP, LabelledOp::Set(value)) => {
                        Some(RecordedUpstreamEvent::Up { server, up: value > 0.0 })
                    }
                    (index::UPSTREAM_UP, LabelledOp::Forget) => Some(RecordedUpstreamEvent::Forgotten { server }),
                    (index::UPSTREAM_RESTARTS, LabelledOp::Inc(_)) => Some(RecordedUpstreamEvent::Restarted { server }),
                    _ => None,
                }
            })
            .collect()
    }

    /// The recorded rate limit refusals as `(scope, name)`, in order.
    pub fn rate_limited(&self) -> Vec<(String, String)> {
        labelled(self.metric_events())
            .filter(|event| event.family == index::RATE_LIMITED)
            .filter_map(|event| match event.labels.as_slice() {
                [scope, name] => Some((scope.as_str().to_owned(), name.as_str().to_owned())),
                _ => None,
            })
            .collect()
    }

    /// What every source registered with `register_components` answers now.
    pub fn components(&self) -> Vec<Component> {
        self.capture().sources().iter().flat_map(|source| source.components()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{ComponentSource, McpOperation, McpSession, TelemetryManager};

    struct One;

    impl ComponentSource for One {
        fn components(&self) -> Vec<Component> {
            vec![Component { name: "upstream:a".into(), healthy: false, details: serde_json::json!({}) }]
        }
    }

    #[test]
    fn test_mode_reads_back_every_mcp_recording() {
        let (manager, recorded) = TelemetryManager::for_testing();
        let op = McpOperation {
            method: "tools/call",
            tool_name: Some("t"),
            network_transport: "tcp",
            server_address: Some("h"),
            server_port: Some(81),
            ..Default::default()
        };
        manager.record_mcp_operation(McpSide::Client, &op, Duration::from_millis(20));
        manager.record_mcp_operation(McpSide::Server, &op, Duration::from_millis(30));
        let session = McpSession { protocol_version: Some("2025-06-18"), network_transport: "pipe", error_type: None };
        manager.record_mcp_session(McpSide::Client, &session, Duration::from_secs(3));
        manager.set_upstream_up("a", true);
        manager.record_upstream_restart("a");
        manager.forget_upstream("a");
        manager.record_rate_limited("endpoint", "e");
        manager.register_components(Arc::new(One));

        let ops = recorded.mcp_operations();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].side, McpSide::Client);
        assert_eq!((ops[0].server_address.as_deref(), ops[0].server_port), (Some("h"), Some(81)));
        assert_eq!(ops[0].duration, Duration::from_millis(20));
        assert_eq!((ops[1].side, ops[1].server_address.as_deref()), (McpSide::Server, None), "server side: no address");
        assert_eq!(ops[1].tool_name.as_deref(), Some("t"));
        let sessions = recorded.mcp_sessions();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].network_transport, "pipe");
        assert_eq!(
            recorded.upstream_events(),
            [
                RecordedUpstreamEvent::Up { server: "a".into(), up: true },
                RecordedUpstreamEvent::Restarted { server: "a".into() },
                RecordedUpstreamEvent::Forgotten { server: "a".into() },
            ]
        );
        assert_eq!(recorded.rate_limited(), [("endpoint".to_owned(), "e".to_owned())]);
        assert_eq!(recorded.components()[0].name, "upstream:a");
    }
}
