//! [`FailFast`]: after a database was found unavailable, calls fail at once for a short window
//! instead of each waiting for a connection; then one call tries again while the others keep
//! failing fast, so at most one caller per window pays the wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The window of the spool's pool and the gateway's store.
pub const FAIL_FAST: Duration = Duration::from_secs(1);

/// Milliseconds on a clock private to this process (never 0 after start).
fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// A fail-fast window shared by the clones of one pool. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FailFast {
    /// Until when (on [`clock_ms`]) calls fail fast; 0 while the database answers.
    down_until: Arc<AtomicU64>,
}

impl FailFast {
    /// Whether a call may try the database now: always while it answers; while it is down, only
    /// the first call after the window, which opens the next window for the others.
    pub fn admit(&self) -> bool {
        self.admit_at(clock_ms())
    }

    fn admit_at(&self, now: u64) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        until == 0
            || now >= until
                && self
                    .down_until
                    .compare_exchange(until, now + window_ms(), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
    }

    /// The database was found unavailable: fail fast for the next window.
    pub fn mark_down(&self) {
        self.down_until.store(clock_ms() + window_ms(), Ordering::Release);
    }

    /// The database answered: no more failing fast.
    pub fn mark_up(&self) {
        self.down_until.store(0, Ordering::Release);
    }
}

fn window_ms() -> u64 {
    u64::try_from(FAIL_FAST.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_per_window_tries_while_the_database_is_down() {
        let window = FailFast::default();
        assert!(window.admit_at(5), "an answering database admits every call");
        assert!(window.admit_at(5));
        window.down_until.store(100, Ordering::Release);
        assert!(!window.admit_at(99), "inside the window calls fail fast");
        assert!(window.admit_at(100), "the first call after the window tries");
        assert!(!window.admit_at(100), "and opens the next window for the others");
        assert!(!window.admit_at(100 + window_ms() - 1));
        assert!(window.clone().admit_at(100 + window_ms()), "clones share the window");
        window.mark_up();
        assert!(window.admit_at(101));
    }
}
