//! The operator's material checked against the real binary: the Grafana dashboards and alert
//! rules under `docker/`, promtool and docker compose, the documented metrics and links, and the
//! library's example app. One test binary for the theme; each former test file is a module and
//! keeps its tests' names.

#[path = "../common/mod.rs"]
mod common;

mod docs_links;
mod docs_metrics;
mod example_app;
mod ops_dashboards;
mod ops_promtool;

/// The helpers of `metamcp-test-support` for `docker/`, with the service started from this
/// package's binary.
mod ops {
    pub use support::ops::*;

    /// The service exporting to a closed port, with short flush and retry intervals.
    pub fn start_service() -> crate::common::Service {
        support::ops::start_service()
    }
}
