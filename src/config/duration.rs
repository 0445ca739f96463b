//! Durations in the configuration are human strings (`90s`, `10m`, `6h`, `500ms`), as the
//! contract writes them; this is the serde glue, parsing with `humantime`.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Serializes a duration as a human string (`1h`, `30m`, `500ms`).
pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// Deserializes a human duration string; a bare number is refused because its unit would be a
/// guess.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write it like \"90s\", \"10m\" or \"6h\""
        ))
    })
}
