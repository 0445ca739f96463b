//! The fast path of [`decode_json`](super::decode_json): a hand-written reader for the shape
//! nearly every event has, a flat JSON object whose values are strings, non-negative integers,
//! arrays of strings, `true`, `false` or `null`.
//!
//! Why it exists: serde_json's generic machinery (key and value visitors, `IgnoredAny`, the
//! per-byte escape scan) was most of decode's time, and decode was ~40% of replay. This reader
//! walks the bytes once and fills the same [`RawEvent`] the serde visitors fill, so everything
//! after it (required fields, normalization, RFC 2047, the timestamp) is shared code.
//!
//! What it owns: only the *acceptance* of the common case. It returns `Some(raw)` only when the
//! whole record is valid JSON that serde would read into exactly that `RawEvent` (same strings,
//! borrowed or copied alike: a string with escapes is copied, as serde copies it). Anything it
//! does not fully understand returns `None`, and the serde path decides, so every error, every
//! reason and every rare shape is still serde's. The fallback triggers:
//!
//! - a value of an unexpected JSON type for a known field (serde reports the wrong type);
//! - a known field that occurs twice (serde's last-wins and first-wrong-type rules stay serde's);
//! - a number with a sign, fraction or exponent, a leading zero, or above `u64::MAX`;
//! - an object or array as the value of an unknown field (nesting is serde's);
//! - a `\u` escape anywhere, an escape in a key, or an invalid escape;
//! - a control character (below U+0020) inside a string, which JSON forbids;
//! - anything but JSON whitespace (space, tab, CR, LF) between tokens, an empty object, a
//!   trailing comma, a missing separator, or any byte after the closing `}` but whitespace;
//! - a `null` inside an array of strings (serde reports the wrong type).
//!
//! The caller has already checked UTF-8 and stripped a byte-order mark; this reader only slices
//! at ASCII bytes (quotes), so every slice is on a char boundary, and it slices with `get` so a
//! mistake here could only fall back, never panic.

use super::fields::{
    first_reference, CountField, RecipientsField, ReferencesField, StrField, TimestampField,
};
use super::reason::Field;
use super::RawEvent;
use crate::event::normalize_message_id;
use std::borrow::Cow;

/// [`parse_into`] a new [`RawEvent`].
#[cfg(test)]
pub(super) fn parse(text: &str) -> Option<RawEvent<'_>> {
    let mut raw = RawEvent::default();
    parse_into(text, &mut raw)?;
    Some(raw)
}

/// Reads `text` into `raw` (as [`RawEvent::default`] gives it) when it has the common shape;
/// `None` means "ask serde", and `raw` is then partly filled and to be dropped. Filled in place
/// because the record is a few hundred bytes and moving it was a measurable share of decode.
pub(super) fn parse_into<'a>(text: &'a str, raw: &mut RawEvent<'a>) -> Option<()> {
    let mut p = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    // One bit per known field, to send duplicate keys to serde.
    let mut seen = 0u16;
    p.skip_ws();
    p.eat(b'{')?;
    p.skip_ws();
    loop {
        // Also what sends `{}` and a trailing comma to serde: a key must follow.
        let key = p.key()?;
        p.skip_ws();
        p.eat(b':')?;
        p.skip_ws();
        match key {
            Some(field) => {
                let bit = 1u16 << (field as u16);
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                p.field_value(field, raw)?;
            }
            None => p.skip_value()?,
        }
        p.skip_ws();
        match p.next()? {
            b',' => p.skip_ws(),
            b'}' => break,
            _ => return None,
        }
    }
    p.skip_ws();
    (p.pos == p.bytes.len()).then_some(())
}

/// `true` for the bytes a string scan must stop at: the closing quote, an escape, and the
/// control characters JSON does not allow unescaped.
const fn stop_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
}

static STOP: [bool; 256] = stop_table();

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The stop bytes among eight bytes read little-endian, as the high bit of each byte (SWAR:
/// the classic "has a zero byte" and "has a byte less than n" tests). A byte can be flagged
/// falsely only through a borrow from a lower byte that is itself a true stop, so the lowest
/// flagged byte, the only one used, is always exact.
fn stop_bits(word: u64) -> u64 {
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero_bytes(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_bytes(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control
}

/// A cursor over the record. Every method returns `None` to mean "fall back".
pub(super) struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over bytes that need not be text, for testing [`Reader::scan`].
    #[cfg(test)]
    pub(super) fn over(bytes: &'a [u8]) -> Self {
        Reader {
            text: "",
            bytes,
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON whitespace only (RFC 8259: space, tab, LF, CR), as serde_json skips it.
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `word` (`null`, `true`, `false`) exactly.
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// Position of the next stop byte at or after `from`, if any. Eight bytes at a time (most
    /// strings are ids and addresses of 20 to 50 bytes), then byte by byte for the tail.
    pub(super) fn scan(&self, from: usize) -> Option<usize> {
        let rest = self.bytes.get(from..)?;
        let mut chunks = rest.chunks_exact(8);
        let mut offset = from;
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let stops = stop_bits(u64::from_le_bytes(word));
            if stops != 0 {
                return Some(offset + (stops.trailing_zeros() / 8) as usize);
            }
            offset += 8;
        }
        let tail = chunks.remainder();
        tail.iter()
            .position(|&b| STOP[usize::from(b)])
            .map(|i| offset + i)
    }

    /// A key: one of the schema's fields, or `None` for any other name. Keys with escapes fall
    /// back (serde unescapes them before matching).
    fn key(&mut self) -> Option<Option<Field>> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = self.scan(start)?;
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        Some(match self.bytes.get(start..end)? {
            b"timestamp" => Some(Field::Timestamp),
            b"message_id" => Some(Field::MessageId),
            b"sender" => Some(Field::Sender),
            b"recipient_count" => Some(Field::RecipientCount),
            b"recipients" => Some(Field::Recipients),
            b"thread_id" => Some(Field::ThreadId),
            b"in_reply_to" => Some(Field::InReplyTo),
            b"references" => Some(Field::References),
            b"subject" => Some(Field::Subject),
            _ => None,
        })
    }

    /// A string value: borrowed when it has no escapes, else unescaped into a copy (as serde
    /// does: `visit_borrowed_str` or `visit_str`).
    #[inline(always)] // on every value; a call and its returned `Option<Cow>` were a fifth of decode
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = self.scan(start)?;
        match *self.bytes.get(end)? {
            b'"' => {
                self.pos = end + 1;
                Some(Cow::Borrowed(self.text.get(start..end)?))
            }
            b'\\' => self.escaped_string(start, end).map(Cow::Owned),
            _ => None, // a control character
        }
    }

    /// The rest of a string whose first escape is at `at`, unescaped. Only the single-character
    /// escapes are handled; `\u` falls back.
    #[inline(never)] // the rare case, kept out of the inlined `string`
    fn escaped_string(&mut self, start: usize, mut at: usize) -> Option<String> {
        let mut out = String::with_capacity(at - start + 16);
        out.push_str(self.text.get(start..at)?);
        loop {
            match *self.bytes.get(at)? {
                b'"' => {
                    self.pos = at + 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push(unescape(*self.bytes.get(at + 1)?)?);
                    at += 2;
                    let end = self.scan(at)?;
                    out.push_str(self.text.get(at..end)?);
                    at = end;
                }
                _ => return None, // a control character
            }
        }
    }

    /// Validates and skips a string without keeping it.
    fn skip_string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        let mut at = self.scan(self.pos)?;
        loop {
            match *self.bytes.get(at)? {
                b'"' => {
                    self.pos = at + 1;
                    return Some(());
                }
                b'\\' => {
                    unescape(*self.bytes.get(at + 1)?)?;
                    at = self.scan(at + 2)?;
                }
                _ => return None,
            }
        }
    }

    /// A non-negative integer in JSON's syntax that fits in a `u64`, as serde reads it (a
    /// larger one it reads as a float, or refuses): digits, no leading zero, not followed by a
    /// fraction or exponent.
    fn integer(&mut self) -> Option<u64> {
        let start = self.pos;
        let mut value = 0u64;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        if digits == 0 || (digits > 1 && self.bytes.get(start) == Some(&b'0')) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        Some(value)
    }

    /// An array of strings, each passed to `each`. Any other element falls back.
    fn string_array(&mut self, mut each: impl FnMut(Cow<'a, str>)) -> Option<()> {
        self.eat(b'[')?;
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            each(self.string()?);
            self.skip_ws();
            match self.next()? {
                b',' => self.skip_ws(),
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string field's value: a string or `null`.
    fn str_field(&mut self) -> Option<StrField<'a>> {
        match self.peek()? {
            b'"' => self.string().map(StrField::Str),
            b'n' => self.literal(b"null").map(|()| StrField::Absent),
            _ => None,
        }
    }

    /// Reads the value of a known field into `raw`, as the serde visitors of `fields` would.
    fn field_value(&mut self, field: Field, raw: &mut RawEvent<'a>) -> Option<()> {
        if self.peek()? == b'n' {
            // `null` is absent for every field, and every field starts absent (a key occurs
            // once here: duplicates fall back).
            return self.literal(b"null");
        }
        match field {
            Field::Timestamp => {
                raw.timestamp = match self.peek()? {
                    b'"' => TimestampField::Str(self.string()?),
                    _ => TimestampField::Millis(i128::from(self.integer()?)),
                }
            }
            Field::MessageId => raw.message_id = self.str_field()?,
            Field::Sender => raw.sender = self.str_field()?,
            Field::ThreadId => raw.thread_id = self.str_field()?,
            Field::InReplyTo => raw.in_reply_to = self.str_field()?,
            Field::Subject => raw.subject = self.str_field()?,
            Field::RecipientCount => raw.recipient_count = CountField::Count(self.integer()?),
            Field::Recipients => {
                let mut len = 0u64;
                self.string_array(|_| len += 1)?;
                raw.recipients = RecipientsField::Len(len);
            }
            Field::References => {
                raw.references = match self.peek()? {
                    b'"' => ReferencesField::Root(match self.string()? {
                        Cow::Borrowed(s) => first_reference(s).map(Cow::Borrowed),
                        Cow::Owned(s) => first_reference(&s).map(|r| Cow::Owned(r.to_string())),
                    }),
                    _ => {
                        let mut root = None;
                        self.string_array(|s| {
                            if root.is_none() && !normalize_message_id(&s).is_empty() {
                                root = Some(s);
                            }
                        })?;
                        ReferencesField::Root(root)
                    }
                }
            }
        }
        Some(())
    }

    /// Skips the value of an unknown field: a string, a simple integer or a literal. Objects,
    /// arrays and other numbers fall back.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'0'..=b'9' => self.integer().map(drop),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            _ => None,
        }
    }
}

/// The character a single-character escape (`\n`, `\"`, ...) stands for; `None` for `\u` and for
/// anything JSON does not allow.
fn unescape(b: u8) -> Option<char> {
    Some(match b {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => return None,
    })
}
