//! The syslog header of a mail-log line: when, which host, which program, and the message.
//!
//! Shippers write the same Postfix line in several framings, and all of them reach Kafka:
//! RFC 3164 (`Nov 25 10:00:00 mail postfix/qmgr[123]: ...`, with or without a year, with or
//! without the host when read from the local socket), RFC 5424 (`<22>1 2026-11-25T10:00:00Z mail
//! postfix/qmgr 123 - - ...`) and rsyslog's high-precision file format
//! (`2026-11-25T10:00:00.123456+00:00 mail postfix/qmgr[123]: ...`). This module turns each
//! into one [`SyslogLine`] that borrows from the input. RFC 3164 leaves out the year and the
//! zone, so the caller supplies a reference clock (the year is the latest one that does not put
//! the line more than a day ahead of it, which handles the December/January wrap) and a fixed
//! UTC offset.

use super::Malformed;
use crate::timefmt::{parse_rfc3339_millis, Millis};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// One parsed syslog header and the message after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyslogLine<'a> {
    /// When the line was logged, epoch milliseconds (UTC).
    pub timestamp: Millis,
    /// The host that logged it; empty when the framing carries none (local socket).
    pub host: &'a str,
    /// The program (`postfix/qmgr`), without the `[pid]`.
    pub program: &'a str,
    /// The message after the tag.
    pub message: &'a str,
}

/// What the timestamps of a line are read against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyslogClock {
    /// The clock the year of a year-less timestamp is inferred from, epoch milliseconds.
    pub reference: Millis,
    /// The offset of timestamps that carry none, milliseconds east of UTC.
    pub utc_offset: Millis,
}

/// How far ahead of the reference clock a year-less timestamp may be before the previous year
/// is assumed: enough for clock skew and time zones, far less than a year.
const YEAR_SLACK: Millis = 24 * 3_600_000;

/// Parses a `+hh:mm` / `-hh:mm` / `+hhmm` / `Z` offset into milliseconds east of UTC.
pub fn parse_utc_offset(text: &str) -> Option<Millis> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, text.get(1..)?),
        b'-' => (-1, text.get(1..)?),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => (rest.get(..2)?, rest.get(2..)?),
        None => return None,
    };
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i64 = hours.parse().ok()?;
    let minutes: i64 = minutes.parse().ok()?;
    if hours > 18 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 60 + minutes) * 60_000)
}

/// Parses the syslog header of `text`.
pub fn parse_syslog<'a>(text: &'a str, clock: &SyslogClock) -> Result<SyslogLine<'a>, Malformed> {
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let text = skip_priority(text);
    if let Some(rest) = text.strip_prefix("1 ") {
        return parse_5424(rest);
    }
    let (timestamp, rest) = match text.as_bytes().first() {
        Some(b) if b.is_ascii_digit() => parse_iso_token(text, clock)?,
        Some(b) if b.is_ascii_alphabetic() => parse_3164_timestamp(text, clock)?,
        _ => return Err(Malformed::NoSyslogHeader),
    };
    let (host, program, message) = split_host_and_tag(rest)?;
    Ok(SyslogLine {
        timestamp,
        host,
        program,
        message,
    })
}

/// Skips a leading `<PRI>` (one to three digits).
fn skip_priority(text: &str) -> &str {
    let Some(rest) = text.strip_prefix('<') else {
        return text;
    };
    match rest.find('>') {
        Some(end @ 1..=3)
            if rest
                .get(..end)
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit())) =>
        {
            rest.get(end + 1..).unwrap_or_default()
        }
        _ => text,
    }
}

/// The first space-separated token and the rest after the space(s).
fn token(text: &str) -> (&str, &str) {
    match text.find(' ') {
        Some(at) => (
            text.get(..at).unwrap_or_default(),
            text.get(at + 1..)
                .unwrap_or_default()
                .trim_start_matches(' '),
        ),
        None => (text, ""),
    }
}

/// RFC 5424 after the version: TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG.
fn parse_5424(text: &str) -> Result<SyslogLine<'_>, Malformed> {
    let (stamp, rest) = token(text);
    if stamp == "-" {
        return Err(Malformed::NoSyslogHeader);
    }
    let timestamp = parse_rfc3339_millis(stamp).ok_or(Malformed::BadTimestamp)?;
    let (host, rest) = token(rest);
    let (app, rest) = token(rest);
    let (_procid, rest) = token(rest);
    let (_msgid, rest) = token(rest);
    if rest.is_empty() && app.is_empty() {
        return Err(Malformed::NoSyslogHeader);
    }
    let message = skip_structured_data(rest).ok_or(Malformed::NoSyslogHeader)?;
    Ok(SyslogLine {
        timestamp,
        host: if host == "-" { "" } else { host },
        program: if app == "-" { "" } else { app },
        message: message.trim_start_matches('\u{feff}'),
    })
}

/// Skips RFC 5424 STRUCTURED-DATA (`-` or `[id k="v"]...`, with `\"`, `\]` and `\\` escaped
/// inside values) and returns the message after it.
fn skip_structured_data(text: &str) -> Option<&str> {
    if let Some(rest) = text.strip_prefix('-') {
        return Some(rest.strip_prefix(' ').unwrap_or(rest));
    }
    let bytes = text.as_bytes();
    let mut at = 0;
    while bytes.get(at) == Some(&b'[') {
        let mut quoted = false;
        at += 1;
        loop {
            match bytes.get(at)? {
                b'\\' if quoted => at += 2,
                b'"' => {
                    quoted = !quoted;
                    at += 1;
                }
                b']' if !quoted => {
                    at += 1;
                    break;
                }
                _ => at += 1,
            }
        }
    }
    if at == 0 {
        return None;
    }
    let rest = text.get(at..)?;
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}

/// An RFC 3339 timestamp token (rsyslog's high-precision format); one without an offset is
/// read in the configured offset.
fn parse_iso_token<'a>(text: &'a str, clock: &SyslogClock) -> Result<(Millis, &'a str), Malformed> {
    let (stamp, rest) = token(text);
    if let Some(ms) = parse_rfc3339_millis(stamp) {
        return Ok((ms, rest));
    }
    let naive = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|_| Malformed::NoSyslogHeader)?;
    Ok((naive.and_utc().timestamp_millis() - clock.utc_offset, rest))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// `Mmm dd [yyyy] hh:mm:ss[.fff] [yyyy]`, read in the configured offset; without a year, the
/// latest year that does not put it more than [`YEAR_SLACK`] ahead of the reference clock.
fn parse_3164_timestamp<'a>(
    text: &'a str,
    clock: &SyslogClock,
) -> Result<(Millis, &'a str), Malformed> {
    let (month, rest) = token(text);
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))
        .ok_or(Malformed::NoSyslogHeader)?;
    let (day, rest) = token(rest);
    let day: u32 = parse_digits(day, 1, 2).ok_or(Malformed::NoSyslogHeader)?;
    let (mut next, mut rest) = token(rest);
    let mut year = None;
    if next.len() == 4 && next.bytes().all(|b| b.is_ascii_digit()) {
        year = next.parse::<i32>().ok();
        (next, rest) = token(rest);
    }
    let time = parse_clock_time(next).ok_or(Malformed::NoSyslogHeader)?;
    if year.is_none() {
        let (maybe_year, after) = token(rest);
        if maybe_year.len() == 4 && maybe_year.bytes().all(|b| b.is_ascii_digit()) {
            year = maybe_year.parse::<i32>().ok();
            rest = after;
        }
    }
    let month = u32::try_from(month + 1).map_err(|_| Malformed::NoSyslogHeader)?;
    let at = |year: i32| -> Option<Millis> {
        let date = NaiveDate::from_ymd_opt(year, month, day)?;
        Some(date.and_time(time).and_utc().timestamp_millis() - clock.utc_offset)
    };
    let timestamp = match year {
        Some(year) => at(year).ok_or(Malformed::BadTimestamp)?,
        None => {
            let reference_year = chrono::DateTime::from_timestamp_millis(clock.reference)
                .map_or(1970, |d| chrono::Datelike::year(&d));
            // Feb 29 exists only in leap years, so up to four years back are tried.
            (reference_year - 4..=reference_year + 1)
                .rev()
                .filter_map(at)
                .find(|&ms| ms <= clock.reference.saturating_add(YEAR_SLACK))
                .ok_or(Malformed::BadTimestamp)?
        }
    };
    Ok((timestamp, rest))
}

fn parse_digits(text: &str, min: usize, max: usize) -> Option<u32> {
    if text.len() < min || text.len() > max || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `hh:mm:ss` with optional fractional seconds (kept to milliseconds).
fn parse_clock_time(text: &str) -> Option<NaiveTime> {
    let (hms, fraction) = match text.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (text, None),
    };
    let mut parts = hms.split(':');
    let hour = parse_digits(parts.next()?, 2, 2)?;
    let minute = parse_digits(parts.next()?, 2, 2)?;
    let second = parse_digits(parts.next()?, 2, 2)?;
    if parts.next().is_some() {
        return None;
    }
    let millis = match fraction {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let head = f.get(..f.len().min(3))?;
            let value: u32 = head.parse().ok()?;
            value * 10u32.pow(3 - u32::try_from(head.len()).ok()?)
        }
        Some(_) => return None,
        None => 0,
    };
    NaiveTime::from_hms_milli_opt(hour, minute, second, millis)
}

/// After an RFC 3164 or ISO timestamp: `HOST TAG: MSG`, or `TAG: MSG` without a host (the local
/// socket's framing). A tag is one token ending in `:`; its `[pid]` is dropped.
fn split_host_and_tag(text: &str) -> Result<(&str, &str, &str), Malformed> {
    let (first, rest) = token(text);
    if first.is_empty() {
        return Err(Malformed::NoSyslogHeader);
    }
    if let Some(tag) = first.strip_suffix(':') {
        if tag.contains('[') || tag.contains('/') {
            return Ok(("", program_of(tag), rest));
        }
    }
    let host = first;
    let (tag, message) = token(rest);
    match tag.strip_suffix(':') {
        Some(tag) => Ok((host, program_of(tag), message)),
        // A host but no tag: a syslog line, just not a program's.
        None => Ok((host, "", rest)),
    }
}

/// `postfix/qmgr[123]` -> `postfix/qmgr`.
fn program_of(tag: &str) -> &str {
    match tag.find('[') {
        Some(at) if tag.ends_with(']') => tag.get(..at).unwrap_or(tag),
        _ => tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::parse_rfc3339_millis;

    fn ms(text: &str) -> Millis {
        parse_rfc3339_millis(text).unwrap()
    }

    fn clock(reference: &str) -> SyslogClock {
        SyslogClock {
            reference: ms(reference),
            utc_offset: 0,
        }
    }

    const MSG: &str = "4F1A22C0E1: from=<a@x>, size=1, nrcpt=2 (queue active)";

    fn check(line: &str, clock: &SyslogClock, at: &str, host: &str) {
        let parsed = parse_syslog(line, clock).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(parsed.timestamp, ms(at), "{line}");
        assert_eq!(parsed.host, host, "{line}");
        assert_eq!(parsed.program, "postfix/qmgr", "{line}");
        assert_eq!(parsed.message, MSG, "{line}");
    }

    #[test]
    fn every_flavour_reads_the_same_line() {
        let c = clock("2026-11-25T12:00:00Z");
        let at = "2026-11-25T10:00:00Z";
        check(
            &format!("Nov 25 10:00:00 mail postfix/qmgr[123]: {MSG}"),
            &c,
            at,
            "mail",
        );
        check(
            &format!("<22>Nov 25 10:00:00 mail postfix/qmgr[123]: {MSG}"),
            &c,
            at,
            "mail",
        );
        check(
            &format!("<22>Nov 25 10:00:00 postfix/qmgr[123]: {MSG}"),
            &c,
            at,
            "",
        );
        check(
            &format!("Nov 25 2026 10:00:00 mail postfix/qmgr[123]: {MSG}"),
            &c,
            at,
            "mail",
        );
        check(
            &format!("Nov 25 10:00:00 2026 mail postfix/qmgr: {MSG}"),
            &c,
            at,
            "mail",
        );
        check(
            &format!("2026-11-25T10:00:00.123456+00:00 mail postfix/qmgr[123]: {MSG}"),
            &c,
            "2026-11-25T10:00:00.123Z",
            "mail",
        );
        check(
            &format!("2026-11-25T11:00:00+01:00 mail postfix/qmgr[123]: {MSG}"),
            &c,
            at,
            "mail",
        );
        check(
            &format!("<22>1 2026-11-25T10:00:00.5Z mail postfix/qmgr 123 - - {MSG}"),
            &c,
            "2026-11-25T10:00:00.500Z",
            "mail",
        );
        check(
            &format!(
                r#"<22>1 2026-11-25T10:00:00Z mail postfix/qmgr 123 ID47 [ex@1 a="x\"]y"][b@2] {MSG}"#
            ),
            &c,
            at,
            "mail",
        );
        check(
            &format!("<22>1 2026-11-25T10:00:00Z mail postfix/qmgr - - - \u{feff}{MSG}"),
            &c,
            at,
            "mail",
        );
    }

    #[test]
    fn single_digit_days_and_fractions() {
        let c = clock("2026-11-25T12:00:00Z");
        let line = format!("Nov  5 10:00:00.25 mail postfix/qmgr[1]: {MSG}");
        check(&line, &c, "2026-11-05T10:00:00.250Z", "mail");
    }

    #[test]
    fn the_year_wraps_at_new_year() {
        // A December line read just after New Year is last year's.
        let january = clock("2027-01-01T00:00:05Z");
        check(
            &format!("Dec 31 23:59:59 m postfix/qmgr[1]: {MSG}"),
            &january,
            "2026-12-31T23:59:59Z",
            "m",
        );
        // A January line read a little before New Year (a clock ahead) is next year's.
        let december = clock("2026-12-31T23:59:50Z");
        check(
            &format!("Jan  1 00:00:01 m postfix/qmgr[1]: {MSG}"),
            &december,
            "2027-01-01T00:00:01Z",
            "m",
        );
        // Lines from earlier this year stay this year.
        check(
            &format!("Feb 10 08:00:00 m postfix/qmgr[1]: {MSG}"),
            &december,
            "2026-02-10T08:00:00Z",
            "m",
        );
        // Feb 29 only exists in leap years: the latest one not in the future.
        let c = clock("2026-03-01T00:00:00Z");
        check(
            &format!("Feb 29 08:00:00 m postfix/qmgr[1]: {MSG}"),
            &c,
            "2024-02-29T08:00:00Z",
            "m",
        );
    }

    #[test]
    fn the_configured_offset_applies_to_zoneless_timestamps() {
        let c = SyslogClock {
            reference: ms("2026-11-25T12:00:00Z"),
            utc_offset: parse_utc_offset("+01:00").unwrap(),
        };
        check(
            &format!("Nov 25 11:00:00 mail postfix/qmgr[1]: {MSG}"),
            &c,
            "2026-11-25T10:00:00Z",
            "mail",
        );
        check(
            &format!("2026-11-25T11:00:00 mail postfix/qmgr[1]: {MSG}"),
            &c,
            "2026-11-25T10:00:00Z",
            "mail",
        );
        // An explicit offset wins.
        check(
            &format!("2026-11-25T10:00:00Z mail postfix/qmgr[1]: {MSG}"),
            &c,
            "2026-11-25T10:00:00Z",
            "mail",
        );
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_utc_offset("+00:00"), Some(0));
        assert_eq!(parse_utc_offset("Z"), Some(0));
        assert_eq!(parse_utc_offset("-05:30"), Some(-(5 * 60 + 30) * 60_000));
        assert_eq!(parse_utc_offset("+0100"), Some(3_600_000));
        for bad in ["", "+1", "01:00", "+25:00", "+01:60", "+aa:bb", "+"] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines_without_a_header_are_refused() {
        let c = clock("2026-11-25T12:00:00Z");
        for line in [
            "",
            "4F1A22C0E1: from=<a@x>",
            "{\"json\": 1}",
            "Foo 25 10:00:00 mail postfix/qmgr[1]: x",
            "Nov 25 25:00:00 mail postfix/qmgr[1]: x",
            "Nov 25 10:00 mail postfix/qmgr[1]: x",
            "2026-13-25T10:00:00Z mail postfix/qmgr[1]: x",
            "<22>1 - mail postfix/qmgr - - - x",
            "<22>1 2026-11-25T10:00:00Z mail postfix/qmgr 1 - [unclosed x",
            "Nov 25 10:00:00 ",
        ] {
            assert!(parse_syslog(line, &c).is_err(), "{line:?}");
        }
        assert_eq!(
            parse_syslog("Nov 31 10:00:00 mail postfix/qmgr[1]: x", &c),
            Err(Malformed::BadTimestamp)
        );
    }

    #[test]
    fn a_line_with_a_host_but_no_tag_has_no_program() {
        let c = clock("2026-11-25T12:00:00Z");
        let line = parse_syslog("Nov 25 10:00:00 mail -- MARK --", &c).unwrap();
        assert_eq!((line.host, line.program), ("mail", ""));
    }
}
