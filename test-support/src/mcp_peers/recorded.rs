//! What an [`McpUpstream`](super::McpUpstream) records: every HTTP request it received and every
//! tool call its servers answered, shared by the HTTP wrapper, the sessions' servers and the test.

use http::StatusCode;
use hyper::body::Bytes;
use parking_lot::Mutex;
use serde_json::Value;

/// One HTTP request the upstream received, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedRequest {
    /// `POST`, `GET` or `DELETE`.
    pub http_method: String,
    /// The request path (`/mcp` for the SDK service).
    pub path: String,
    /// The JSON-RPC `method` of the body, when it parses as a request or notification.
    pub rpc_method: Option<String>,
    /// The JSON-RPC `id` of the body (`None` for notifications and bodiless requests).
    pub rpc_id: Option<Value>,
    /// The `traceparent` header.
    pub traceparent: Option<String>,
    /// The `Mcp-Session-Id` header.
    pub session_id: Option<String>,
    /// The `MCP-Protocol-Version` header.
    pub protocol_version: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// `params._meta.traceparent` of the JSON-RPC body.
    pub meta_traceparent: Option<String>,
    /// Every header, names lower-case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as JSON, when it parses.
    pub body: Option<Value>,
    /// The HTTP status of the upstream's answer, once its head was produced.
    pub status: Option<u16>,
}

impl ReceivedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// True for a `POST` whose JSON-RPC method is `method`.
    pub fn is_rpc(&self, method: &str) -> bool {
        self.http_method == "POST" && self.rpc_method.as_deref() == Some(method)
    }
}

/// Recordings shared by the HTTP wrapper, every session's server and the test thread.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
}

/// What the upstream recorded so far.
#[derive(Default)]
pub(super) struct State {
    pub(super) requests: Vec<ReceivedRequest>,
    pub(super) tool_calls: Vec<(String, Value)>,
}

impl Shared {
    pub(super) fn record_tool_call(&self, name: String, arguments: Value) {
        self.state.lock().tool_calls.push((name, arguments));
    }

    /// Record a request; returns its index for [`set_status`](Self::set_status).
    pub(super) fn record_request(&self, parts: &http::request::Parts, body: &Bytes) -> usize {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| json.as_ref().and_then(|j| j.get(name));
        let request = ReceivedRequest {
            http_method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            rpc_method: field("method").and_then(Value::as_str).map(str::to_string),
            rpc_id: field("id").cloned(),
            traceparent: header("traceparent"),
            session_id: header("mcp-session-id"),
            protocol_version: header("mcp-protocol-version"),
            authorization: header("authorization"),
            meta_traceparent: field("params")
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get("traceparent"))
                .and_then(Value::as_str)
                .map(str::to_string),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("<binary>").to_string()))
                .collect(),
            body: json.clone(),
            status: None,
        };
        let mut state = self.state.lock();
        state.requests.push(request);
        state.requests.len() - 1
    }

    pub(super) fn set_status(&self, index: usize, status: StatusCode) {
        if let Some(request) = self.state.lock().requests.get_mut(index) {
            request.status = Some(status.as_u16());
        }
    }
}
