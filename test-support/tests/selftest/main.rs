//! Tests of the helpers themselves, without the gateway: the OTLP receiver, the Prometheus and
//! wait helpers, and the SDK-built MCP peers against each other.

extern crate metamcp_test_support as support;

mod collector_logs_selftest;
mod collector_selftest;
mod mcp_peers_selftest;
