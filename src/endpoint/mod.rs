//! The MCP endpoints at `/metamcp/{endpoint}/mcp`, on the server side of MCP's Streamable HTTP
//! transport: sessions, `initialize` with version negotiation, `ping`, the aggregated lists and
//! `tools/call` routed to the built-in tools or the upstream servers. Every message is read and
//! written in `rmcp`'s model types. Requests to an endpoint that requires auth carry
//! `Authorization: Bearer <key>`; keys are compared by their SHA-256.
//!
//! - `rpc`: JSON-RPC bodies in `rmcp`'s types, the errors for what is not one, revisions;
//! - `aggregate`: what an endpoint offers over its servers (names, URIs, pages, capabilities);
//! - `dispatch`: the MCP methods of an open session;
//! - `observe`: the server spans of the MCP semantic conventions;
//! - `sessions`: the MCP sessions, bounded per endpoint and in idle time;
//! - `auth`: the API key check of an endpoint and the record of each key's last use;
//! - `cache`: the endpoint lookups (auth flag, key hashes) a request needs;
//! - `stream`: server-sent events: the session's stream and list-changed announcements;
//! - `transport`: the HTTP side, `POST`, `GET` and `DELETE`;
//! - `legacy_sse_server`: the legacy HTTP+SSE transport (2024-11-05), `GET …/sse` + `POST …/message`;
//! - `state`: what they share as app data.

pub mod aggregate;
mod auth;
mod cache;
mod dispatch;
mod legacy_sse_server;
mod observe;
pub mod rpc;
mod sessions;
mod state;
mod stream;
mod transport;

pub use auth::{KeyUsage, KEY_USE_RESOLUTION};
pub use cache::EndpointCache;
pub use dispatch::{UNAVAILABLE_ERROR, UPSTREAM_ERROR};
pub use sessions::Sessions;
pub use state::McpState;
/// Adds the routes of the MCP endpoints: Streamable HTTP and the legacy HTTP+SSE transport.
pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    transport::routes(cfg);
    legacy_sse_server::routes(cfg);
}
