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
    parse_common_rfc3339(text.as_bytes()).or_else(|| parse_with_chrono(text))
}

/// The reference parser, chrono's: it decides every timestamp the fast one does not take.
fn parse_with_chrono(text: &str) -> Option<Millis> {
    let parsed = DateTime::parse_from_rfc3339(text.trim()).ok()?;
    Some(parsed.timestamp_millis())
}

/// The fast path of [`parse_rfc3339_millis`], for the form nearly every event carries:
/// `YYYY-MM-DD(T|t| )HH:MM:SS(.f{1,9})?(Z|z|±HH:MM)` with every field in range, nothing around
/// it. It is several times cheaper than chrono's general parser, and one runs per event.
/// `None` means "not this form": chrono then decides, so the fast path never refuses anything,
/// and anything unusual (surrounding whitespace, a leap second `:60`, more than nine fraction
/// digits, an out-of-range field) gets chrono's answer. Where it answers, it gives chrono's
/// millis exactly: the proleptic Gregorian day count, the offset subtracted, the fraction
/// truncated to milliseconds (checked against chrono by a property test below).
fn parse_common_rfc3339(b: &[u8]) -> Option<Millis> {
    let two = |i: usize| -> Option<i64> {
        match (b.get(i)?, b.get(i + 1)?) {
            (h @ b'0'..=b'9', l @ b'0'..=b'9') => Some(i64::from((h - b'0') * 10 + (l - b'0'))),
            _ => None,
        }
    };
    let sep = |i: usize, want: u8| (b.get(i) == Some(&want)).then_some(());
    let year = two(0)? * 100 + two(2)?;
    sep(4, b'-')?;
    let month = two(5)?;
    sep(7, b'-')?;
    let day = two(8)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = two(11)?;
    sep(13, b':')?;
    let minute = two(14)?;
    sep(16, b':')?;
    let second = two(17)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while let Some(d @ b'0'..=b'9') = b.get(at) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(d - b'0');
            }
            at += 1;
        }
        let digits = at - start;
        if !(1..=9).contains(&digits) {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_seconds = match *b.get(at)? {
        b'Z' | b'z' => {
            at += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let (hours, minutes) = (two(at + 1)?, two(at + 4)?);
            sep(at + 3, b':')?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            at += 6;
            let seconds = hours * 3600 + minutes * 60;
            if sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    if at != b.len() {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_seconds;
    Some(seconds * 1000 + millis)
}

/// Days in `month` (1-12) of `year`, Gregorian.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`),
/// for a valid date of year 0 to 9999.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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
    use proptest::strategy::Strategy;

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
    fn fast_path_forms_match_chrono() {
        for text in [
            "2024-03-04T09:30:00Z",
            "2024-03-04T09:30:00.1Z",
            "2024-03-04T09:30:00.12Z",
            "2024-03-04T09:30:00.123456789Z",
            "2024-03-04t09:30:00z",
            "2024-03-04 09:30:00+05:30",
            "2024-03-04T09:30:00-23:59",
            "2024-03-04T09:30:00-00:00",
            "2024-02-29T00:00:00Z",
            "2000-02-29T23:59:59.999Z",
            "1970-01-01T00:00:00+01:00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999+00:00",
        ] {
            let fast = parse_common_rfc3339(text.as_bytes());
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, parse_with_chrono(text), "{text}");
        }
    }

    #[test]
    fn fast_path_leaves_the_unusual_to_chrono() {
        for text in [
            " 2024-03-04T09:30:00Z",
            "2024-03-04T09:30:00Z ",
            "2024-03-04T23:59:60Z",
            "2024-03-04T09:30:00.1234567891Z",
            "2024-03-04T09:30:00.Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-03-04T24:00:00Z",
            "2024-03-04T09:30:00+24:00",
            "2024-03-04T09:30:00+05:60",
            "2024-03-04T09:30:00+0530",
            "2024-03-04T09:30:00\u{2212}05:00",
            "2024-03-04T09:30:00",
            "2024-03-04",
        ] {
            assert_eq!(parse_common_rfc3339(text.as_bytes()), None, "{text}");
        }
        // Chrono still decides them.
        assert_eq!(
            parse_rfc3339_millis("2024-03-04T23:59:60.5Z"),
            parse_with_chrono("2024-03-04T23:59:60.5Z")
        );
        assert!(parse_rfc3339_millis(" 2024-03-04T09:30:00Z ").is_some());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(5000))]

        /// Timestamps near the common form, in and out of range: the public parser (fast path
        /// first) gives chrono's answer for every one.
        #[test]
        fn same_millis_as_chrono(
            year in proptest::prop_oneof![0u32..10_000, 1965u32..2040],
            month in 0u32..14,
            day in 0u32..33,
            hour in 0u32..26,
            minute in 0u32..62,
            second in 0u32..62,
            fraction in proptest::option::of("[0-9]{0,11}"),
            sep in proptest::sample::select(vec!["T", "t", " ", "_", "  "]),
            offset in proptest::prop_oneof![
                proptest::sample::select(vec!["Z", "z", "", "+", "-0", "GMT", " Z"])
                    .prop_map(String::from),
                (
                    proptest::sample::select(vec!["+", "-", "\u{2212}"]),
                    0u32..26,
                    0u32..62,
                    proptest::sample::select(vec![":", "", "::"]),
                )
                    .prop_map(|(s, h, m, c)| format!("{s}{h:02}{c}{m:02}")),
            ],
            pad in proptest::sample::select(vec!["", " ", "\t"]),
        ) {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let text = format!(
                "{pad}{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}\
                 {fraction}{offset}"
            );
            proptest::prop_assert_eq!(
                parse_rfc3339_millis(&text),
                parse_with_chrono(&text),
                "{}",
                text
            );
        }
    }

    #[test]
    fn formats_with_millis_and_z() {
        assert_eq!(format_millis(1_709_544_600_123), "2024-03-04T09:30:00.123Z");
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }
}
