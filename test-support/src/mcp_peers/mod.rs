//! MCP peers built with the official Rust SDK (`rmcp`), for end-to-end tests of the gateway: an
//! upstream server the gateway aggregates ([`McpUpstream`]) and a client that talks to the
//! gateway ([`McpTestClient`]). Both speak MCP Streamable HTTP, protocol revision 2025-11-25
//! (`initialize` + `notifications/initialized`, `Mcp-Session-Id` sessions).
//!
//! ```ignore
//! let upstream = McpUpstream::start("weather-upstream");
//! // register upstream.url() with the gateway…
//! let client = McpTestClient::connect(&gateway_url, vec![("traceparent".into(), TRACEPARENT.into())]).await?;
//! let sum = client.call_tool("add", serde_json::json!({"a": 2, "b": 3})).await?;
//! assert_eq!(text_of(&sum), "5");
//! assert_eq!(upstream.tool_calls()[0].0, "add");
//! ```
//!
//! What the SDK does on the wire, pinned by the `mcp_peers_selftest` tests except where marked
//! "(source)", i.e. read from the SDK's code:
//!
//! - Client `POST`: `Accept: text/event-stream, application/json`, `Content-Type:
//!   application/json`; `initialize` has JSON-RPC id `0` and no `MCP-Protocol-Version` header;
//!   every later request (`GET` and `DELETE` too) carries `Mcp-Session-Id` when one was issued and
//!   `MCP-Protocol-Version: 2025-11-25`. It sends `notifications/initialized` and takes 202, 204,
//!   an empty 2xx or a 2xx that is neither JSON nor SSE as accepted (source). After the handshake
//!   it opens a `GET` SSE stream (a 405 just skips it, source); closing or dropping it sends
//!   `DELETE`.
//! - Client errors: a 401 with `WWW-Authenticate` fails at once as "Auth required", no retry; a
//!   401 without it is an "HTTP 401 Unauthorized: <body>" error, and a non-2xx JSON body holding a
//!   JSON-RPC error surfaces as that error (source). A 404 on a request that carried a session
//!   makes it `initialize` again and retry that request once
//!   ([`ClientOptions::reinit_on_expired_session`]).
//! - Upstream (stateful, the default): requests are answered `text/event-stream`, a priming event
//!   with an empty `data:` first (keep-alive comments every 15 s, source); notifications and
//!   `DELETE` 202; an unknown session 404, a missing one 400; a `POST` that does not accept both
//!   media types 406 (a non-JSON `Content-Type` 415 and a non-loopback `Host` 403, source). Tool
//!   arguments that fail to deserialize give an `isError` result; an unknown tool a JSON-RPC error.
mod client;
mod python;
mod recorded;
mod stdio;
mod tools;
mod upstream;

pub use client::{ClientOptions, McpTestClient, DEFAULT_TIMEOUT};
pub use python::{
    client_script, records, run_client, server_script, stdio_command, ClientRun, PeerTransport, PythonServer,
};
pub use recorded::ReceivedRequest;
pub use stdio::serve_stdio;
pub use tools::{expected_tool_names, BUILTIN_TOOLS, FAILURE_TEXT, WEATHER_DESCRIPTION};
pub use upstream::{McpUpstream, UpstreamOptions, MCP_PATH};

/// The protocol revision both peers speak.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The text contents of `result`, joined with newlines (other content kinds are skipped).
pub fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result.content.iter().filter_map(|block| block.as_text()).map(|t| t.text.as_str()).collect::<Vec<_>>().join("\n")
}
