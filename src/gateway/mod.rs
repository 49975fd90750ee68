//! The MetaMCP gateway: MCP endpoints that aggregate upstream MCP servers, a tools registry with
//! vector search, built-in tools, a REST admin API, and diesel storage on SQLite or PostgreSQL —
//! every part instrumented through [`TelemetryManager`](crate::TelemetryManager).

pub mod config;
pub mod mcp;
pub mod storage;
pub mod tools;
