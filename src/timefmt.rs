//! Millisecond timestamps: the contract keeps every time as epoch milliseconds (UTC) and writes
//! them as RFC 3339 with milliseconds and `Z`. Parsing and formatting live here so the engine never
//! sees a calendar, and so one place decides what a valid timestamp is.

use chrono::{DateTime, SecondsFormat, Utc};

/// Epoch milliseconds, UTC. Every time inside stormwatch is one of these.
pub type Millis = i64;

/// One minute in milliseconds, for readable arithmetic.
pub const MINUTE_MS: Millis = 60_000;

/// Parses an RFC 3339 timestamp with an offset (`Z`, `+hh:mm`; `T`, `t` or a space between date
/// and time) and truncates it to milliseconds. Returns `None` for anything else, including a
/// timestamp without an offset: a local time is ambiguous, and guessing would move stream time.
pub fn parse_rfc3339_millis(text: &str) -> Option<Millis> {
    let parsed = DateTime::parse_from_rfc3339(text.trim()).ok()?;
    Some(parsed.timestamp_millis())
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds (`2016-11-14T08:29:00.000Z`).
/// Out-of-range values (which decoding never produces) are clamped rather than panicking.
pub fn format_millis(ms: Millis) -> String {
    let at = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The wall clock as epoch milliseconds. Only the shell (replay, service) calls this; the engine
/// is given time, never reads it.
pub fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_separators() {
        let z = parse_rfc3339_millis("2024-03-04T09:30:00.000Z");
        assert_eq!(z, Some(1_709_544_600_000));
        assert_eq!(parse_rfc3339_millis("2024-03-04T04:30:00-05:00"), z);
        assert_eq!(parse_rfc3339_millis("2024-03-04 09:30:00Z"), z);
        assert_eq!(parse_rfc3339_millis("2024-03-04t09:30:00+00:00"), z);
    }

    #[test]
    fn truncates_to_milliseconds() {
        assert_eq!(
            parse_rfc3339_millis("2024-03-04T09:30:00.123987Z"),
            Some(1_709_544_600_123)
        );
    }

    #[test]
    fn rejects_missing_offset_and_garbage() {
        assert_eq!(parse_rfc3339_millis("2024-03-04T09:30:00"), None);
        assert_eq!(parse_rfc3339_millis("soon"), None);
        assert_eq!(parse_rfc3339_millis(""), None);
        assert_eq!(parse_rfc3339_millis("2024-13-04T09:30:00Z"), None);
    }

    #[test]
    fn formats_with_millis_and_z() {
        assert_eq!(format_millis(1_709_544_600_123), "2024-03-04T09:30:00.123Z");
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }
}
