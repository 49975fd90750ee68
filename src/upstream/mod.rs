//! The upstream MCP servers the gateway aggregates: how each is reached ([`ServerSpec`]).

pub mod spec;

pub use spec::{ServerSpec, Transport};
