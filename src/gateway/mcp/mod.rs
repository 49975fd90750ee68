//! The Model Context Protocol over Streamable HTTP: JSON-RPC messages, the protocol types the
//! gateway uses, the client of upstream MCP servers and the validation of tool arguments.

pub mod client;
pub mod jsonrpc;
pub mod protocol;
pub mod schema;
