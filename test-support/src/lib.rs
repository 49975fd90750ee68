//! Helpers of the integration tests, compiled once for every test binary of the workspace:
//!
//! - [`collector`]: a loopback OTLP receiver (gRPC and HTTP/protobuf) that decodes what it
//!   receives and can be told to fail, throttle or stall;
//! - [`service`]: runs the service binary as a process (start, logs, signals), and
//!   [`raw`]: HTTP exchanges written byte by byte on a socket;
//! - [`app`]: an instrumented actix-web app in-process and pipeline settings for it;
//! - [`prom`]: scraping and parsing Prometheus text;
//! - [`mcp_peers`]: an MCP upstream server and client on the official SDK (`rmcp`), and the
//!   peers on the official Python SDK (`tests/peers/python`);
//! - [`ops`]: the PromQL of the Grafana dashboards and alert rules under `docker/`;
//! - [`wait`]: bounded waits for a condition; [`prereq`]: the skip-or-fail decision for a
//!   prerequisite the repository does not hold.
//!
//! The crate depends on the telemetry library, never on the gateway: the gateway reaches its
//! tests as a binary ([`service::Binary`]), so a change to it rebuilds no helper.
#![forbid(unsafe_code)]

pub mod app;
pub mod collector;
pub mod mcp_peers;
pub mod ops;
pub mod prereq;
pub mod prom;
pub mod raw;
pub mod service;
pub mod wait;

use std::path::Path;

pub use collector::{
    Behavior, PointValue, Received, ReceivedLog, ReceivedPoint, ReceivedSpan, Signal, TestCollector, Transport,
};

/// The repository root (the workspace's directory).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("test-support lives in the workspace root")
}
