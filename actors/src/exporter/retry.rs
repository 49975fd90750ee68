//! Backoff arithmetic: exponential growth, a cap, and jitter.

use std::time::Duration;

use super::config::RetryConfig;

/// The delay before retry number `attempt` (1 for the first retry), with jitter drawn from
/// `unit` (a uniform number in `[0, 1)`).
pub fn backoff(config: &RetryConfig, attempt: u32, unit: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(64) as i32;
    let base = config.initial_interval.as_secs_f64() * config.multiplier.powi(exponent);
    let capped = base.min(config.max_interval.as_secs_f64());
    let spread = config.randomization_factor * (2.0 * unit - 1.0);
    Duration::from_secs_f64((capped * (1.0 + spread)).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap_with_bounded_jitter() {
        let config = RetryConfig::default();
        assert_eq!(backoff(&config, 1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(&config, 2, 0.5), Duration::from_millis(1500));
        assert_eq!(backoff(&config, 40, 0.5), Duration::from_secs(30));
        assert_eq!(backoff(&config, 1, 0.0), Duration::from_millis(500));
        assert!(backoff(&config, 1, 0.999_999) < Duration::from_millis(1500));
    }
}
