//! The MCP endpoints at `/metamcp/{endpoint}/mcp`, on the server side of MCP's Streamable HTTP
//! transport: sessions, `initialize` with version negotiation, `ping`, the aggregated
//! `tools/list`, and `tools/call` routed to the built-in tools or the upstream servers. Requests
//! to an endpoint that requires auth carry `Authorization: Bearer <key>`; keys are compared by
//! their SHA-256.
//!
//! - `sessions`: the MCP sessions, bounded per endpoint and in idle time;
//! - `auth`: the API key check of an endpoint and the record of each key's last use;
//! - `cache`: the endpoint lookups (auth flag, key hashes) a request needs;
//! - `transport`: the HTTP side, `POST`, `GET` and `DELETE`, and the JSON-RPC methods;
//! - `state`: what they share as app data.

mod auth;
mod cache;
mod sessions;
mod state;
mod transport;

pub use auth::{KeyUsage, KEY_USE_RESOLUTION};
pub use cache::EndpointCache;
pub use sessions::Sessions;
pub use state::McpState;
pub use transport::{routes, UNAVAILABLE_ERROR, UPSTREAM_ERROR};
