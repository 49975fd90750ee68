//! Range checks shared by every actor's `validate()`: each error names the key, the value and
//! what is allowed.

use std::fmt;
use std::time::Duration;

/// A configuration value that is out of range or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {value} (allowed: {allowed})")]
pub struct ConfigError {
    /// Dotted key, for example `span_buffer.max_batch_size`.
    pub key: String,
    /// The offending value as written, with the credentials of URLs masked
    /// ([`redact`](crate::redact::redact)); other secrets are masked by the caller.
    pub value: String,
    /// What would have been accepted.
    pub allowed: String,
}

impl ConfigError {
    /// A new error for `key` holding `value`, which should have been `allowed`. A URL's user
    /// information and credential-like query values in `value` are masked.
    pub fn new(key: impl Into<String>, value: impl Into<String>, allowed: impl fmt::Display) -> Self {
        let value = value.into();
        let value = match crate::redact::redact(&value) {
            std::borrow::Cow::Borrowed(_) => value,
            std::borrow::Cow::Owned(masked) => masked,
        };
        Self { key: key.into(), value, allowed: allowed.to_string() }
    }
}

/// `value` must lie in `min..=max`.
pub(crate) fn range(key: &str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(key, value.to_string(), format!("an integer from {min} to {max}")))
    }
}

/// `value` must lie in `min..=max`.
pub(crate) fn duration(key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            humantime::format_duration(value).to_string(),
            format!("a duration from {} to {}", humantime::format_duration(min), humantime::format_duration(max)),
        ))
    }
}
