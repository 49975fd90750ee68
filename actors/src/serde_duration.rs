//! Durations in configuration: human-readable strings such as `"500ms"`, `"10s"` or `"2m"`.

use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serializer};

/// Serializes a duration as a human-readable string (`"1s"`, `"250ms"`).
pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// Deserializes a duration from a human-readable string (`"1s"`, `"250ms"`, `"1m 30s"`).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(de::Error::custom)
}

/// A duration that does not parse; its message says what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid duration {text:?} ({source}); expected a number with a unit, such as \"500ms\", \"10s\" or \"2m\"")]
pub struct DurationError {
    /// The text given.
    pub text: String,
    /// What the parser said.
    #[source]
    pub source: humantime::DurationError,
}

/// Parses a human-readable duration; the error says what is allowed.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text.trim()).map_err(|source| DurationError { text: text.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_bare_numbers() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse(" 2m ").unwrap(), Duration::from_secs(120));
        let err = parse("10").unwrap_err().to_string();
        assert!(err.contains("\"10\""), "{err}");
        assert!(err.contains("500ms"), "{err}");
    }
}
