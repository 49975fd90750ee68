//! The gateway end to end: the real binary (and, for configuration and storage, the crate) behind
//! its API, MCP endpoints, security and hostile input, sessions, status page and process life.
//! One test binary for the theme; each former test file is a module and keeps its tests' names.

#[path = "../common/mod.rs"]
mod common;

mod config_cli;
mod data_safety;
mod disabled;
mod gateway_api;
mod gateway_e2e;
mod hostile_input;
mod hygiene;
mod legacy_sse_server;
mod mcp_aggregate;
mod mcp_fixture;
mod mcp_python_e2e;
mod mcp_semconv;
mod mcp_stream;
mod mcp_tail_sampling;
mod mcp_trace;
mod mcp_validation;
mod otlp_logs;
mod rate_limits;
mod security;
mod servers_transport;
mod service_process;
mod sessions_keys;
mod status_page;
