//! The Model Context Protocol beside `rmcp`: the session fingerprint of telemetry, the
//! outbound policy of the upstream clients (`crate::upstream`), and the
//! validation of tool arguments.

pub mod outbound;
pub mod protocol;
pub mod schema;
