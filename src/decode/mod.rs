//! Bytes to [`Event`], or the reason the record is malformed (contract section 1).
//!
//! Three input formats ([`InputFormat`]): the contract's JSON events ([`decode_json`], one
//! record one event), and two mail-log formats whose events are assembled from several
//! records in two phases, so the service can merge partitions by event time in between: a
//! stateless parse of each record ([`RecordParser`]) and a stateful, bounded correlator
//! ([`Correlator`]). Postfix syslog lines are in [`postfix`] (with [`syslog`] for the header
//! framings), Exchange message-tracking CSV in [`exchange`].
//!
//! The decoder borrows: strings without escapes are slices of the input, so a typical line costs
//! no allocation. It never panics and never stops on bad input; every refusal is a
//! [`Malformed`] reason the caller counts and reports. The future-timestamp check needs the wall
//! clock, which the caller passes in, so decoding stays pure and testable.

pub mod exchange;
mod fast;
mod fields;
mod format;
mod outcome;
mod pending;
pub mod postfix;
mod reason;
mod record;
pub mod syslog;

pub use format::{InputFormat, UnknownFormat};
pub use outcome::{CorrelationStats, Dropped, Ignored, LineOutcome};
pub use reason::{Field, Malformed, MAX_HOST_BYTES};
pub use record::{Correlator, Parsed, RecordParser};
pub use syslog::parse_utc_offset;

use crate::event::{map_cow, normalize_message_id, normalize_sender, Event};
use crate::subject::decode_rfc2047;
use crate::timefmt::{parse_rfc3339_millis, Millis};
use fields::{CountField, Key, RecipientsField, ReferencesField, StrField, TimestampField};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Decoding limits and the clock the future check compares against.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// The wall clock when the record was read, epoch milliseconds.
    pub now: Millis,
    /// Timestamps more than this ahead of `now` are malformed.
    pub max_future_skew: Millis,
    /// Records longer than this are refused unparsed, so one giant record cannot take memory.
    pub max_record_bytes: usize,
}

/// The default maximum record size: far above any real log line, far below a memory problem.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// Decodes one JSON event.
pub fn decode_json<'a>(bytes: &'a [u8], options: &DecodeOptions) -> Result<Event<'a>, Malformed> {
    decode_json_with(bytes, options, true)
}

/// [`decode_json`], with the fast path on or (for the equivalence tests) off.
#[inline(always)]
fn decode_json_with<'a>(
    bytes: &'a [u8],
    options: &DecodeOptions,
    fast_path: bool,
) -> Result<Event<'a>, Malformed> {
    if bytes.len() > options.max_record_bytes {
        return Err(Malformed::TooLarge);
    }
    let text = utf8_text(bytes)?;
    // A UTF-8 byte-order mark (Windows tools write one at the start of a file; a shipper passes
    // it on with the first line) is not JSON, but RFC 8259 section 8.1 lets a parser ignore it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(Malformed::Empty);
    }
    // The common shape is read by the hand-written fast path; whatever it does not accept, and
    // every record that turns out malformed, goes through serde, which alone decides errors.
    // (One `result` throughout, so the event is built where it is returned, not moved.)
    let mut raw = RawEvent::default();
    let mut result = if fast_path && fast::parse_into(text, &mut raw).is_some() {
        raw.into_event()
    } else {
        Err(Malformed::NotJson)
    };
    if result.is_err() {
        result = decode_with_serde(text);
    }
    if let Ok(event) = &result {
        if event.timestamp.saturating_sub(options.now) > options.max_future_skew {
            return Err(Malformed::FutureTimestamp);
        }
    }
    result
}

/// A record's bytes as text, or [`Malformed::InvalidUtf8`]. Checked with simdutf8 (vector
/// instructions chosen at run time) rather than `core::str::from_utf8`: on these records it
/// took 38 ns a line against 41 (BENCHMARKS.md, session 9), and the latter's share of a replay
/// went from 3.7% to 6.4% between two builds with the same decoding code (session 10).
pub(crate) fn utf8_text(bytes: &[u8]) -> Result<&str, Malformed> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| Malformed::InvalidUtf8)
}

/// The serde path: reads any JSON and classifies every way a record can be malformed (except
/// the future check, which [`decode_json`] applies to both paths).
fn decode_with_serde(text: &str) -> Result<Event<'_>, Malformed> {
    read_with_serde(text)?.into_event()
}

/// The serde path up to the raw fields: syntax, top-level type and field types.
fn read_with_serde(text: &str) -> Result<RawEvent<'_>, Malformed> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let raw = deserializer
        .deserialize_any(TopLevel)
        .map_err(|_| Malformed::NotJson)?;
    deserializer.end().map_err(|_| Malformed::NotJson)?;
    raw
}

/// The fields as read, before the required-field and value checks.
#[derive(Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct RawEvent<'de> {
    timestamp: TimestampField<'de>,
    message_id: StrField<'de>,
    sender: StrField<'de>,
    recipient_count: CountField,
    recipients: RecipientsField,
    thread_id: StrField<'de>,
    in_reply_to: StrField<'de>,
    references: ReferencesField<'de>,
    subject: StrField<'de>,
}

/// Required string: present, or the reason it is not.
fn required<'de>(value: StrField<'de>, field: Field) -> Result<Cow<'de, str>, Malformed> {
    match value {
        StrField::Str(s) => Ok(s),
        StrField::Absent => Err(Malformed::MissingField(field)),
        StrField::Wrong => Err(Malformed::WrongType(field)),
    }
}

/// Optional string: a wrong type is still malformed; absent and empty are both `None`.
fn optional<'de>(
    value: StrField<'de>,
    field: Field,
    normalize: impl Fn(&str) -> &str,
) -> Result<Option<Cow<'de, str>>, Malformed> {
    match value {
        StrField::Str(s) => {
            let s = map_cow(s, normalize);
            Ok((!s.is_empty()).then_some(s))
        }
        StrField::Absent => Ok(None),
        StrField::Wrong => Err(Malformed::WrongType(field)),
    }
}

impl<'de> RawEvent<'de> {
    fn into_event(self) -> Result<Event<'de>, Malformed> {
        // Type errors first, in schema order, then missing fields: the reason names the first
        // problem a reader of the record would see.
        let timestamp = match self.timestamp {
            TimestampField::Absent => return Err(Malformed::MissingField(Field::Timestamp)),
            TimestampField::Wrong => return Err(Malformed::WrongType(Field::Timestamp)),
            TimestampField::Millis(ms) if ms < 0 => return Err(Malformed::BadTimestamp),
            TimestampField::Millis(ms) => {
                Millis::try_from(ms).map_err(|_| Malformed::BadTimestamp)?
            }
            TimestampField::Str(s) => parse_rfc3339_millis(&s).ok_or(Malformed::BadTimestamp)?,
        };
        if timestamp < 0 {
            return Err(Malformed::BadTimestamp);
        }
        let message_id = map_cow(
            required(self.message_id, Field::MessageId)?,
            normalize_message_id,
        );
        let sender = map_cow(required(self.sender, Field::Sender)?, normalize_sender);
        let recipients = match self.recipients {
            RecipientsField::Wrong => return Err(Malformed::WrongType(Field::Recipients)),
            RecipientsField::Len(n) => Some(n),
            RecipientsField::Absent => None,
        };
        let recipient_count = match self.recipient_count {
            CountField::Count(n) => n,
            CountField::Negative => return Err(Malformed::NegativeCount),
            CountField::Wrong => return Err(Malformed::WrongType(Field::RecipientCount)),
            CountField::Absent => {
                recipients.ok_or(Malformed::MissingField(Field::RecipientCount))?
            }
        };
        let thread_id = optional(self.thread_id, Field::ThreadId, str::trim)?;
        let in_reply_to = optional(self.in_reply_to, Field::InReplyTo, normalize_message_id)?;
        let references_root = match self.references {
            ReferencesField::Absent => None,
            ReferencesField::Wrong => return Err(Malformed::WrongType(Field::References)),
            ReferencesField::Root(root) => root.map(|r| map_cow(r, normalize_message_id)),
        };
        // Blankness is judged on the decoded subject: `=?UTF-8?B?IA==?=` is a blank subject.
        let subject = optional(self.subject, Field::Subject, |s| s)?
            .map(decode_subject)
            .filter(|s| !s.trim().is_empty());
        let event = Event {
            timestamp,
            message_id,
            sender,
            recipient_count,
            thread_id,
            in_reply_to,
            references_root,
            subject,
        };
        match event.overlong_field() {
            Some(field) => Err(Malformed::TooLong(field)),
            None => Ok(event),
        }
    }
}

/// RFC 2047-decodes a subject, keeping the borrow when there is nothing to decode.
fn decode_subject(raw: Cow<'_, str>) -> Cow<'_, str> {
    // Most subjects have no encoded word: `decode_rfc2047` would return them unchanged after
    // a generic substring search for `=?`; a `memchr` for `=` answers that for less.
    let bytes = raw.as_bytes();
    if !memchr::memchr_iter(b'=', bytes).any(|at| bytes.get(at + 1) == Some(&b'?')) {
        return raw;
    }
    match raw {
        Cow::Borrowed(s) => decode_rfc2047(s),
        Cow::Owned(s) => match decode_rfc2047(&s) {
            Cow::Borrowed(_) => Cow::Owned(s),
            Cow::Owned(decoded) => Cow::Owned(decoded),
        },
    }
}

/// Reads the top-level value: an object becomes a [`RawEvent`]; anything else is `NotObject`.
struct TopLevel;

type TopResult<'de> = Result<RawEvent<'de>, Malformed>;

macro_rules! not_object {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Ok(Err(Malformed::NotObject))
        })*
    };
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = TopResult<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    not_object!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(Malformed::NotObject))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(Malformed::NotObject))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        // The first wrong-typed field is remembered, and the rest of the object still read, so
        // that a syntax error later in the record is reported as what it is.
        let mut first_wrong: Option<Malformed> = None;
        let mut note = |field: Field, wrong: bool| {
            if wrong && first_wrong.is_none() {
                first_wrong = Some(Malformed::WrongType(field));
            }
        };
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key(Some(Field::Timestamp)) => {
                    raw.timestamp = map.next_value()?;
                    note(Field::Timestamp, raw.timestamp == TimestampField::Wrong);
                }
                Key(Some(Field::MessageId)) => {
                    raw.message_id = map.next_value()?;
                    note(Field::MessageId, raw.message_id == StrField::Wrong);
                }
                Key(Some(Field::Sender)) => {
                    raw.sender = map.next_value()?;
                    note(Field::Sender, raw.sender == StrField::Wrong);
                }
                Key(Some(Field::RecipientCount)) => {
                    raw.recipient_count = map.next_value()?;
                    note(
                        Field::RecipientCount,
                        raw.recipient_count == CountField::Wrong,
                    );
                }
                Key(Some(Field::Recipients)) => {
                    raw.recipients = map.next_value()?;
                    note(Field::Recipients, raw.recipients == RecipientsField::Wrong);
                }
                Key(Some(Field::ThreadId)) => {
                    raw.thread_id = map.next_value()?;
                    note(Field::ThreadId, raw.thread_id == StrField::Wrong);
                }
                Key(Some(Field::InReplyTo)) => {
                    raw.in_reply_to = map.next_value()?;
                    note(Field::InReplyTo, raw.in_reply_to == StrField::Wrong);
                }
                Key(Some(Field::References)) => {
                    raw.references = map.next_value()?;
                    note(Field::References, raw.references == ReferencesField::Wrong);
                }
                Key(Some(Field::Subject)) => {
                    raw.subject = map.next_value()?;
                    note(Field::Subject, raw.subject == StrField::Wrong);
                }
                Key(None) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match first_wrong {
            Some(reason) => Err(reason),
            None => Ok(raw),
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fast_tests;
