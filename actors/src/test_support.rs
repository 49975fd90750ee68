//! Helpers for the actors' own tests.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An exporter configuration pointing at a port nothing listens on (connections are refused).
pub(crate) fn unreachable_exporter() -> crate::ExporterConfig {
    crate::ExporterConfig {
        endpoint: "http://127.0.0.1:9".to_owned(),
        timeout: Duration::from_millis(500),
        ..Default::default()
    }
}
