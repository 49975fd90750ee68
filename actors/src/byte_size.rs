//! Byte sizes in configuration: an integer number of bytes or a string with a unit, such as
//! `"64MiB"`, `"512KiB"`, `"1GB"`.

use serde::{de, Deserialize, Deserializer, Serializer};

/// Serializes a size in the largest binary unit that divides it (`"64MiB"`, `"1000B"`).
pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*value))
}

/// Deserializes a size from an integer or a string with a unit.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(text) => parse(&text).map_err(de::Error::custom),
    }
}

/// `value` written with the largest binary unit that divides it.
pub fn format(value: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if value >= factor && value.is_multiple_of(factor) {
            return format!("{}{unit}", value / factor);
        }
    }
    format!("{value}B")
}

/// A size that does not parse; its message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {text:?}; expected bytes or a number with a unit, such as \"64MiB\", \"512KiB\" or \"1GB\"")]
pub struct ByteSizeError {
    /// The text given.
    pub text: String,
}

/// Parses `"64MiB"`, `"10 MB"`, `"4096"`, `"1.5GiB"`; the error says what is allowed.
pub fn parse(text: &str) -> Result<u64, ByteSizeError> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(invalid(text)),
    };
    let value: f64 = number.parse().map_err(|_| invalid(text))?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(invalid(text));
    }
    Ok(bytes as u64)
}

fn invalid(text: &str) -> ByteSizeError {
    ByteSizeError { text: text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_formats_back() {
        assert_eq!(parse("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse(" 10 MB ").unwrap(), 10_000_000);
        assert_eq!(parse("4096").unwrap(), 4096);
        assert_eq!(parse("1.5GiB").unwrap(), 3 << 29);
        assert!(parse("lots").unwrap_err().to_string().contains("\"lots\""));
        assert!(parse("5 parsecs").is_err());
        assert_eq!(format(64 << 20), "64MiB");
        assert_eq!(format(1000), "1000B");
        assert_eq!(parse(&format(3 << 30)).unwrap(), 3 << 30);
    }
}
