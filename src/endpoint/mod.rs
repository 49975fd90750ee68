//! The MCP endpoints at `/metamcp/{endpoint}/mcp` (Streamable HTTP) and
//! `/metamcp/{endpoint}/sse` (the legacy HTTP+SSE transport), on the server side: sessions,
//! `initialize` with version negotiation and the capabilities the endpoint's servers provide,
//! the aggregated tools, prompts, resources and resource templates with `tools/call`,
//! `prompts/get`, `resources/read` and `completion/complete` routed to the built-in tools or the
//! upstream servers, the session's event stream with list-change notifications, progress from
//! upstreams to the caller and cancellation from the caller to upstreams. Every message is read
//! and written in `rmcp`'s model types. Requests to an endpoint that requires auth carry
//! `Authorization: Bearer <key>`; keys are compared by their SHA-256.
//!
//! # Why not `rmcp`'s session manager
//!
//! `rmcp` 3.11 ships a framework-agnostic session layer (`transport-streamable-http-server-session`:
//! the `SessionManager` trait and its `LocalSessionManager`), read for this module. It fits behind
//! actix-web only in the sense that its streams could be written by an actix handler; what it
//! manages does not fit what an endpoint needs, so the endpoints keep their own sessions
//! (`sessions`) and use `rmcp` for every message type instead:
//!
//! - each `LocalSessionManager` session is a worker task driving an `rmcp` `ServerHandler` through
//!   `serve_server`; every request of the session goes through that task's channels (two hops and
//!   wake-ups per request) and runs on the runtime that spawned it: on actix-web's
//!   per-worker single-threaded runtimes a session's whole load would sit on the worker that
//!   happened to accept its `initialize`, where handling each request on the worker that
//!   received it spreads one busy session over every core;
//! - its sessions know nothing of what ours are bound to: the endpoint and the API key that
//!   opened them (another key, or another endpoint, must see the session as unknown), a cap per
//!   endpoint with least-recently-used eviction (so one endpoint's clients cannot push out
//!   another's), idle expiry that an open stream suspends, the end of every session of a revoked
//!   key or a deleted endpoint, and the session duration metric;
//! - the `ServerHandler` would answer `initialize`, version negotiation and unknown methods
//!   itself, with `rmcp`'s newest revision (2026-07-28, which has no `initialize`) in its range:
//!   the endpoints' answers (the revisions they speak, their JSON-RPC errors and 4xx bodies) would
//!   become the SDK's;
//! - its resumable streams (event ids, replay) and server-to-client requests are features the
//!   gateway does not offer: it sends its clients no requests, and a notification missed while a
//!   stream was down is a list change the client learns again by listing.
//!
//! What the session layer does for progress and cancellation is done here in a few lines:
//! `inflight` maps a session's running requests to the cancellation tokens the upstream calls
//! watch, and a request that carries a progress token is answered on its own event stream.
//!
//! # Modules
//!
//! - `rpc`: JSON-RPC bodies in `rmcp`'s types, the errors for what is not one, revisions;
//! - `aggregate`: what an endpoint offers over its servers (names, URIs, pages, capabilities);
//! - `content`: prompts, resources and completions over the servers' discovery;
//! - `dispatch`: the MCP methods of an open session, progress and cancellation;
//! - `failure`: the JSON-RPC errors of what failed in the gateway or upstream;
//! - `inflight`: the running requests of each session, for cancellation;
//! - `observe`: the server spans and operation durations of the MCP semantic conventions;
//! - `sessions`: the MCP sessions, bounded per endpoint and in idle time, with their streams;
//! - `stream`: server-sent events: the session's stream, a request's progress stream;
//! - `announce`: list changes from the gateway's change bus to the sessions' streams;
//! - `auth`: the API key check of an endpoint and the record of each key's last use;
//! - `cache`: the endpoint lookups (auth flag, key hashes) a request needs;
//! - `transport`: the Streamable HTTP side, `POST`, `GET` and `DELETE`;
//! - `legacy_sse_server`: the legacy HTTP+SSE transport (2024-11-05), `GET …/sse` + `POST …/message`;
//! - `state`: what they share as app data.

pub mod aggregate;
mod announce;
mod auth;
mod cache;
mod content;
mod dispatch;
mod failure;
mod inflight;
mod legacy_sse_server;
mod observe;
pub mod rpc;
mod sessions;
mod state;
mod stream;
mod transport;

pub use auth::{KeyUsage, KEY_USE_RESOLUTION};
pub use cache::EndpointCache;
pub use dispatch::REQUEST_CANCELLED;
pub use failure::{UNAVAILABLE_ERROR, UPSTREAM_ERROR};
pub use inflight::InFlight;
pub use sessions::Sessions;
pub use state::{Announcer, McpState};
/// Adds the routes of the MCP endpoints: Streamable HTTP and the legacy HTTP+SSE transport.
pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    transport::routes(cfg);
    legacy_sse_server::routes(cfg);
}
