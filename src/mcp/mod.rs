//! The Model Context Protocol over Streamable HTTP: JSON-RPC messages, the protocol types the
//! gateway uses, the outbound policy of the upstream clients (`crate::upstream`), and the
//! validation of tool arguments.

pub mod jsonrpc;
pub mod outbound;
pub mod protocol;
pub mod schema;
