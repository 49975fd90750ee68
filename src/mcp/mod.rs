//! The Model Context Protocol over Streamable HTTP: JSON-RPC messages, the protocol types the
//! gateway uses, the client of upstream MCP servers with its outbound policy, and the validation
//! of tool arguments.

pub mod client;
pub mod jsonrpc;
pub mod outbound;
pub mod protocol;
pub mod schema;
