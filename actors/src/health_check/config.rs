//! Tunables of the health check actor.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default interval between status gatherings.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Default time an actor has to answer a status request before it counts as unresponsive.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Configuration of the [`HealthCheck`](super::HealthCheck) actor (`[health]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Interval between gatherings of every actor's status.
    #[serde(with = "crate::serde_duration")]
    pub check_interval: Duration,
    /// Time an actor has to answer a status request before it is reported unresponsive.
    #[serde(with = "crate::serde_duration")]
    pub response_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { check_interval: DEFAULT_CHECK_INTERVAL, response_timeout: DEFAULT_RESPONSE_TIMEOUT }
    }
}

impl HealthConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        crate::config_check::duration(
            "health.check_interval",
            self.check_interval,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )?;
        crate::config_check::duration(
            "health.response_timeout",
            self.response_timeout,
            Duration::from_millis(1),
            Duration::from_secs(60),
        )
    }
}
