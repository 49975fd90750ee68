//! What the upstream clients record through the telemetry library: each request in
//! `mcp.client.operation.duration`, each session that ended in `mcp.client.session.duration`,
//! `metamcp_upstream_up{server}` and `metamcp_upstream_restarts_total{server}`, and each server as
//! a `/health` component (`upstream:<name>`) and a row of the status page.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use metamcp_telemetry::{Component, ComponentSource, McpOperation, McpSession, McpSide};
use rmcp::model::ServerResult;
use serde_json::json;

use super::{Inner, Slot, Target, UpstreamError};

/// The `error.type` of an outcome: the JSON-RPC error code of an error response, `tool_error`
/// for a tool result with `isError`, else the failure's kind.
pub(super) fn error_type(outcome: &Result<ServerResult, UpstreamError>) -> Option<Cow<'static, str>> {
    match outcome {
        Ok(ServerResult::CallToolResult(result)) if result.is_error == Some(true) => Some(Cow::Borrowed("tool_error")),
        Ok(_) => None,
        Err(UpstreamError::Rpc { code }) => Some(Cow::Owned(code.to_string())),
        Err(err) => Some(Cow::Borrowed(err.kind())),
    }
}

impl Inner {
    /// Records one request in `mcp.client.operation.duration`.
    pub(super) fn record_operation(
        &self,
        slot: &Slot,
        method: &str,
        target: Target<'_>,
        protocol_version: Option<&str>,
        error_type: Option<&str>,
        duration: Duration,
    ) {
        let (tool_name, prompt_name) = match target {
            Target::Tool(tool) => (Some(tool), None),
            Target::Prompt(prompt) => (None, Some(prompt)),
            Target::None => (None, None),
        };
        let op = McpOperation {
            method,
            tool_name,
            prompt_name,
            protocol_version: protocol_version.filter(|v| !v.is_empty()),
            network_transport: slot.spec.transport().network_transport(),
            error_type,
            server_address: slot.address.as_ref().map(|(address, _)| address.as_str()),
            server_port: slot.address.as_ref().and_then(|(_, port)| *port),
        };
        self.telemetry.record_mcp_operation(McpSide::Client, &op, duration);
    }

    /// Records a session that ended in `mcp.client.session.duration`; `error_type` is `None`
    /// when the gateway ended it.
    pub(super) fn record_session(
        &self,
        slot: &Slot,
        protocol_version: &str,
        error_type: Option<&str>,
        duration: Duration,
    ) {
        let session = McpSession {
            protocol_version: Some(protocol_version).filter(|v| !v.is_empty()),
            network_transport: slot.spec.transport().network_transport(),
            error_type,
        };
        self.telemetry.record_mcp_session(McpSide::Client, &session, duration);
    }
}

/// The upstream servers as `/health` components.
pub(super) struct UpstreamComponents(pub(super) Weak<Inner>);

impl ComponentSource for UpstreamComponents {
    fn components(&self) -> Vec<Component> {
        let Some(inner) = self.0.upgrade() else { return Vec::new() };
        let slots: Vec<_> = inner.servers.read().values().cloned().collect();
        slots
            .iter()
            .map(|slot| {
                let connected = slot.health.connected.load(Ordering::Relaxed) && slot.live().is_some();
                let last_error_kind = *slot.health.last_error_kind.lock();
                let discovery = slot.discovery.read().clone();
                let mut details = json!({
                    "connected": connected,
                    "transport": slot.spec.transport().as_str(),
                    "last_error_kind": last_error_kind,
                    "consecutive_failures": slot.health.consecutive_failures.load(Ordering::Relaxed),
                    "restarts": slot.health.restarts.load(Ordering::Relaxed),
                });
                if let Some(discovery) = discovery {
                    details["protocol_version"] = json!(discovery.protocol_version);
                    details["tools"] = json!(discovery.tools.len());
                    details["prompts"] = json!(discovery.prompts.len());
                    details["resources"] = json!(discovery.resources.len());
                    details["resource_templates"] = json!(discovery.resource_templates.len());
                }
                if let Some(pid) = Some(slot.pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0) {
                    details["pid"] = json!(pid);
                }
                if !connected {
                    details["reason"] = json!(match last_error_kind {
                        Some(kind) => format!("the upstream session is not open (last failure: {kind})"),
                        None => "the upstream session is not open".to_owned(),
                    });
                }
                Component { name: format!("upstream:{}", slot.name), healthy: connected, details }
            })
            .collect()
    }
}
