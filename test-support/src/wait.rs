//! Bounded waits for a condition: poll until it holds or a deadline passes, never a bare sleep.
//!
//! `wait_until*` return whether the condition held; `assert_eventually*` panic with a description
//! of what was awaited.

use std::future::Future;
use std::time::{Duration, Instant};

/// Poll period of [`wait_until_async`] and [`assert_eventually_async`].
pub const ASYNC_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Check `condition` every `poll_interval` (blocking the thread) until it holds or `timeout`
/// passes; it is checked once more at the deadline. Returns whether it held.
#[must_use = "a wait that timed out returns false"]
pub fn wait_until(timeout: Duration, poll_interval: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll_interval.min(deadline - now));
    }
}

/// [`wait_until`], panicking with `what` and the timeout if the condition never held.
pub fn assert_eventually(timeout: Duration, poll_interval: Duration, what: &str, condition: impl FnMut() -> bool) {
    if !wait_until(timeout, poll_interval, condition) {
        panic!("timed out after {timeout:?} waiting for: {what}");
    }
}

/// Await `condition` every [`ASYNC_POLL_INTERVAL`] (with `tokio::time::sleep`, so the runtime keeps
/// running) until it holds or `timeout` (wall clock) passes. Returns whether it held.
#[must_use = "a wait that timed out returns false"]
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(ASYNC_POLL_INTERVAL.min(deadline - now)).await;
    }
}

/// [`wait_until_async`], panicking with `what` and the timeout if the condition never held.
pub async fn assert_eventually_async<F, Fut>(timeout: Duration, what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if !wait_until_async(timeout, condition).await {
        panic!("timed out after {timeout:?} waiting for: {what}");
    }
}
