//! The event as written on one line, timestamp formatting, and the owned
//! form used for the small pre-built storm and malformed lines.

use rand::Rng;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use std::fmt;

/// Milliseconds since the Unix epoch of 2016-11-14T08:29:00Z, when the
/// NHSmail test message went out. Every scenario starts here.
pub(crate) const START_MS: i64 = 1_479_112_140_000;

/// One minute in milliseconds.
pub(crate) const MINUTE_MS: i64 = 60_000;

/// How a timestamp is written. Most lines use UTC with milliseconds; a few
/// use the other forms the contract allows, so a consumer is exercised on
/// all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TsForm {
    /// `2016-11-14T08:29:00.000Z`
    Utc,
    /// `2016-11-14T09:29:00.000+01:00` (the same instant)
    PlusOneHour,
    /// `2016-11-14 08:29:00.000Z` (space separator, allowed by the contract)
    Space,
    /// `1479112140000` (integer epoch milliseconds)
    EpochMillis,
}

impl TsForm {
    /// Draws a form: about 3% epoch milliseconds, 3% `+01:00`, 1% space
    /// separator, the rest UTC `Z`.
    pub(crate) fn pick<R: Rng>(rng: &mut R) -> TsForm {
        match rng.gen_range(0..100u32) {
            0..=2 => TsForm::EpochMillis,
            3..=5 => TsForm::PlusOneHour,
            6 => TsForm::Space,
            _ => TsForm::Utc,
        }
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`); exact for every `i64` day we use.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

fn put_2(text: &mut [u8], at: usize, v: u32) {
    text[at] = b'0' + (v / 10 % 10) as u8;
    text[at + 1] = b'0' + (v % 10) as u8;
}

/// Writes `ms` (epoch milliseconds) as RFC 3339 with milliseconds into `out`
/// (which is cleared first), in the given form. Returns `None` for
/// [`TsForm::EpochMillis`], which is written as an integer instead.
pub(crate) fn write_timestamp(out: &mut String, ms: i64, form: TsForm) -> Option<&str> {
    out.clear();
    let (shift_ms, sep, suffix) = match form {
        TsForm::EpochMillis => return None,
        TsForm::Utc => (0, b'T', "Z"),
        TsForm::Space => (0, b' ', "Z"),
        TsForm::PlusOneHour => (3_600_000, b'T', "+01:00"),
    };
    let local = ms + shift_ms;
    let days = local.div_euclid(86_400_000);
    let in_day = local.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    let secs = (in_day / 1000) as u32;
    let millis = (in_day % 1000) as u32;
    // YYYY-MM-DDTHH:MM:SS.mmm
    let mut text = *b"0000-00-00T00:00:00.000";
    put_2(&mut text, 0, y / 100);
    put_2(&mut text, 2, y % 100);
    put_2(&mut text, 5, m);
    put_2(&mut text, 8, d);
    text[10] = sep;
    put_2(&mut text, 11, secs / 3600);
    put_2(&mut text, 14, secs / 60 % 60);
    put_2(&mut text, 17, secs % 60);
    text[20] = b'0' + (millis / 100) as u8;
    put_2(&mut text, 21, millis % 100);
    // Only ASCII digits and separators: always valid UTF-8.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
    out.push_str(suffix);
    Some(out.as_str())
}

/// The `timestamp` field: a string or an integer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimestampOut<'a> {
    Text(&'a str),
    Millis(i64),
}

impl Serialize for TimestampOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TimestampOut::Text(t) => s.serialize_str(t),
            TimestampOut::Millis(m) => s.serialize_i64(*m),
        }
    }
}

/// The `references` field: an array of ids, or one whitespace-separated
/// string (both allowed by the contract).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RefsOut<'a> {
    List(&'a [&'a str]),
    Joined(&'a str),
}

impl Serialize for RefsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RefsOut::List(items) => s.collect_seq(items.iter()),
            RefsOut::Joined(text) => s.serialize_str(text),
        }
    }
}

/// A `recipients` array of `count` addresses of consecutive people starting
/// at `first`, produced while serializing (no per-address allocation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecipientsOut<'a> {
    pub first: u32,
    pub count: u32,
    pub domain: &'a str,
}

impl Serialize for RecipientsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.count as usize))?;
        for i in 0..self.count {
            seq.serialize_element(&AddressItem {
                person: self.first.wrapping_add(i),
                domain: self.domain,
            })?;
        }
        seq.end()
    }
}

struct AddressItem<'a> {
    person: u32,
    domain: &'a str,
}

impl fmt::Display for AddressItem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::generate::names::fmt_local(f, self.person)?;
        write!(f, "@{}", self.domain)
    }
}

impl Serialize for AddressItem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One event line, every field borrowed so that the hot path allocates
/// nothing. Absent optional fields are left out of the JSON object.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct EventOut<'a> {
    pub timestamp: TimestampOut<'a>,
    pub message_id: &'a str,
    pub sender: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients: Option<RecipientsOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<RefsOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    pub label: &'a str,
}

/// The `references` of a pre-built event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refs {
    List(Vec<String>),
    Joined(String),
}

/// A pre-built, owned event: used for the storms, which are small (about a
/// hundred lines) and need look-back (reply chains) while being built.
#[derive(Debug, Clone)]
pub(crate) struct OwnedEvent {
    pub ts: i64,
    pub ts_form: TsForm,
    pub message_id: String,
    pub sender: String,
    pub recipient_count: u64,
    pub thread_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<Refs>,
    pub subject: Option<String>,
    pub label: &'static str,
    /// How many identical lines to write (MTAs log one line per hop).
    pub copies: u8,
}

/// A pre-built line of the stream, placed at `ts` in timestamp order.
#[derive(Debug, Clone)]
pub(crate) enum Line {
    Event(OwnedEvent),
    /// A deliberately malformed line, written verbatim.
    Raw {
        ts: i64,
        text: String,
    },
}

impl Line {
    pub(crate) fn ts(&self) -> i64 {
        match self {
            Line::Event(e) => e.ts,
            Line::Raw { ts, .. } => *ts,
        }
    }
}

/// SplitMix64: a fast, well-mixed hash of a `u64`, used to derive
/// independent seeds and stable per-message salts.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of an independent random stream `stream` derived from `seed`, so
/// that, e.g., the storm's shape does not depend on the background size.
pub(crate) fn sub_seed(seed: u64, stream: u64) -> u64 {
    mix64(seed ^ mix64(stream.wrapping_add(0x5157_0A7C)))
}

/// Minimal standard base64 (with padding), for RFC 2047 `B` encoded words.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An RFC 2047 `B` encoded word of `text` in UTF-8.
pub(crate) fn encoded_word_b(text: &str) -> String {
    format!("=?UTF-8?B?{}?=", base64(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        let mut s = String::new();
        assert_eq!(
            write_timestamp(&mut s, START_MS, TsForm::Utc),
            Some("2016-11-14T08:29:00.000Z")
        );
        assert_eq!(
            write_timestamp(&mut s, START_MS + 61_007, TsForm::PlusOneHour),
            Some("2016-11-14T09:30:01.007+01:00")
        );
        assert_eq!(
            write_timestamp(&mut s, START_MS + 16 * 3_600_000 - 1, TsForm::Space),
            Some("2016-11-15 00:28:59.999Z")
        );
        assert_eq!(write_timestamp(&mut s, START_MS, TsForm::EpochMillis), None);
        assert_eq!(
            write_timestamp(&mut s, 951_782_400_000, TsForm::Utc),
            Some("2000-02-29T00:00:00.000Z")
        );
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b"RE: Test"), "UkU6IFRlc3Q=");
        assert_eq!(base64(b"RE:"), "UkU6");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64("回复：Test".as_bytes()), "5Zue5aSN77yaVGVzdA==");
    }
}
