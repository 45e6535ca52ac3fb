//! Durations written the way people write them: "500ms", "2s", "1m".

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {0:?}: expected a whole number followed by a unit, one of us, ms, s, m, h \
     (for example \"500ms\", \"2s\", \"1m\")"
)]
pub struct ParseDurationError(String);

/// `vars_reseat_after`: a grace duration, or `"off"`, as re-seating settings.
pub fn parse_reseat(
    text: &str,
) -> Result<Option<foundation_core::vars::reseat::ReseatConfig>, ParseDurationError> {
    if text.trim() == "off" {
        return Ok(None);
    }
    let grace = parse_duration(text)?;
    Ok(Some(foundation_core::vars::reseat::ReseatConfig {
        grace,
        ..Default::default()
    }))
}

/// Parses `"<whole number><unit>"` with unit `us`, `ms`, `s`, `m` or `h`; spaces around and
/// between the parts are allowed. A unit is required, because a bare number is ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, ParseDurationError> {
    let invalid = || ParseDurationError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let scale = unit_in_micros(unit.trim()).ok_or_else(invalid)?;
    let micros = number.checked_mul(scale).ok_or_else(invalid)?;
    Ok(Duration::from_micros(micros))
}

fn unit_in_micros(unit: &str) -> Option<u64> {
    match unit {
        "us" | "µs" => Some(1),
        "ms" => Some(1_000),
        "s" => Some(1_000_000),
        "m" | "min" => Some(60_000_000),
        "h" => Some(3_600_000_000),
        _ => None,
    }
}

/// Writes `duration` in the largest unit that represents it exactly, so it parses back.
pub fn format_duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    for (unit, scale) in [
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if micros != 0 && micros.is_multiple_of(scale) {
            return format!("{}{unit}", micros / scale);
        }
    }
    format!("{micros}us")
}

/// A duration read from TOML as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TextDuration(pub Duration);

impl<'de> Deserialize<'de> for TextDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextDurationVisitor)
    }
}

impl From<TextDuration> for Duration {
    fn from(value: TextDuration) -> Self {
        value.0
    }
}

struct TextDurationVisitor;

impl Visitor<'_> for TextDurationVisitor {
    type Value = TextDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"500ms\", \"2s\" or \"1m\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<TextDuration, E> {
        parse_duration(text).map(TextDuration).map_err(E::custom)
    }
}

/// `#[serde(with = "...")]` helpers: a `Duration` as text like `"500ms"`.
pub mod text {
    use super::*;

    /// Serializes as text like `"500ms"`.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*duration))
    }

    /// Deserializes from text like `"500ms"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        TextDuration::deserialize(deserializer).map(|d| d.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration(" 1 m "), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn garbage_is_refused_with_the_input_quoted() {
        for bad in [
            "",
            "5",
            "ms",
            "1.5s",
            "-1s",
            "2 parsecs",
            "99999999999999999999h",
        ] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for d in [
            Duration::from_millis(500),
            Duration::from_secs(90),
            Duration::from_micros(7),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
