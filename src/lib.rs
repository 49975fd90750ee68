//! metamcp-telemetry: traces, metrics and correlated logs for MetaMCP endpoints on actix-web.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod settings;
