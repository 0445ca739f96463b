//! The mail-log event as the engine sees it (contract section 1), already normalized: ids without
//! angle brackets, the sender's bare address, the subject RFC 2047-decoded, the References header
//! reduced to its root. Strings borrow from the input line where they can, so decoding a line
//! allocates only for escaped strings and encoded subjects.

use crate::decode::Field;
use crate::timefmt::Millis;
use std::borrow::Cow;

/// The longest id (message id, thread id, In-Reply-To, References root) or sender address an
/// event may carry, in bytes after normalization: RFC 5322's limit on a header line, which no
/// real Message-ID or address reaches (an address is at most 320 bytes by RFC 5321). The engine
/// keeps these texts in maps of millions of entries and names them in alerts, so without a
/// bound a stream of megabyte-long ids would hold memory by the gigabyte under the entry caps,
/// and an alert could outgrow what the alerts topic takes.
pub const MAX_ID_BYTES: usize = 998;

/// One decoded mail-log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// When the MTA logged the message, epoch milliseconds (UTC).
    pub timestamp: Millis,
    /// The normalized Message-ID; may be empty (such an event never deduplicates).
    pub message_id: Cow<'a, str>,
    /// The sender's address, inside angle brackets when there were any, trimmed. Case is kept
    /// here; the engine compares senders case-insensitively.
    pub sender: Cow<'a, str>,
    /// Recipients after distribution-list expansion.
    pub recipient_count: u64,
    /// An explicit conversation id, trimmed; `None` when absent or empty.
    pub thread_id: Option<Cow<'a, str>>,
    /// The normalized In-Reply-To; `None` when absent or empty.
    pub in_reply_to: Option<Cow<'a, str>>,
    /// The normalized first (root) entry of References; `None` when there is none.
    pub references_root: Option<Cow<'a, str>>,
    /// The RFC 2047-decoded subject; `None` when absent or blank.
    pub subject: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// The first field (in schema order) longer than [`MAX_ID_BYTES`], if any: such an event is
    /// malformed ([`crate::decode::Malformed::TooLong`]).
    pub fn overlong_field(&self) -> Option<Field> {
        let optional = |value: &Option<Cow<'_, str>>| value.as_deref().map_or(0, str::len);
        [
            (Field::MessageId, self.message_id.len()),
            (Field::Sender, self.sender.len()),
            (Field::ThreadId, optional(&self.thread_id)),
            (Field::InReplyTo, optional(&self.in_reply_to)),
            (Field::References, optional(&self.references_root)),
        ]
        .into_iter()
        .find(|&(_, len)| len > MAX_ID_BYTES)
        .map(|(field, _)| field)
    }

    /// A copy that owns its strings, for holding an event beyond the input buffer's life.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            timestamp: self.timestamp,
            message_id: Cow::Owned(self.message_id.into_owned()),
            sender: Cow::Owned(self.sender.into_owned()),
            recipient_count: self.recipient_count,
            thread_id: self.thread_id.map(|s| Cow::Owned(s.into_owned())),
            in_reply_to: self.in_reply_to.map(|s| Cow::Owned(s.into_owned())),
            references_root: self.references_root.map(|s| Cow::Owned(s.into_owned())),
            subject: self.subject.map(|s| Cow::Owned(s.into_owned())),
        }
    }
}

/// Normalizes a message id: the text inside its first pair of angle brackets when it has one,
/// else the trimmed string. `<a@b>`, ` a@b ` and `<a@b> (comment)` are all `a@b`.
pub fn normalize_message_id(raw: &str) -> &str {
    inside_angle_brackets(raw).unwrap_or(raw).trim()
}

/// The sender's address: inside the angle brackets when there are any (`Ann <a@x>` is `a@x`),
/// trimmed. Case folding is left to the comparison, so the common all-lowercase address needs
/// no copy.
pub fn normalize_sender(raw: &str) -> &str {
    inside_angle_brackets(raw).unwrap_or(raw).trim()
}

/// The text between the first `<` and the `>` after it. Searched with `memchr` over the bytes
/// (an ASCII byte in UTF-8 is always a whole char): this runs on every id and sender of every
/// event, and `str::find(char)` was a tenth of replay's instructions.
fn inside_angle_brackets(raw: &str) -> Option<&str> {
    let open = memchr::memchr(b'<', raw.as_bytes())?;
    let after = raw.get(open + 1..)?;
    let close = memchr::memchr(b'>', after.as_bytes())?;
    after.get(..close)
}

/// Applies a borrowing normalization to a `Cow` without copying a borrowed string.
pub(crate) fn map_cow<'a>(value: Cow<'a, str>, f: impl Fn(&str) -> &str) -> Cow<'a, str> {
    match value {
        Cow::Borrowed(s) => Cow::Borrowed(f(s)),
        Cow::Owned(s) => {
            let normalized = f(&s);
            if normalized.len() == s.len() {
                Cow::Owned(s)
            } else {
                Cow::Owned(normalized.to_string())
            }
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary: for texts kept at a bound.
pub fn cut_to_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text.get(..end).unwrap_or("")
}

/// Writes `text` lowercased into `out` (cleared first): the case-insensitive form of a sender,
/// built in a reused buffer.
pub fn lowercase_into(text: &str, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        out.push_str(text);
        out.make_ascii_lowercase();
    } else {
        out.extend(text.chars().flat_map(char::to_lowercase));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_spellings_are_one_id() {
        assert_eq!(normalize_message_id("<a@b>"), "a@b");
        assert_eq!(normalize_message_id(" a@b "), "a@b");
        assert_eq!(normalize_message_id("<a@b> (comment)"), "a@b");
        assert_eq!(normalize_message_id("junk <a@b> <c@d>"), "a@b");
        assert_eq!(normalize_message_id(""), "");
        assert_eq!(normalize_message_id("<>"), "");
        assert_eq!(normalize_message_id("<unclosed"), "<unclosed");
    }

    #[test]
    fn texts_are_cut_at_character_boundaries() {
        assert_eq!(cut_to_bytes("abc", 5), "abc");
        assert_eq!(cut_to_bytes("abc", 2), "ab");
        // `é` is two bytes: a cut inside it goes back to the character's start.
        assert_eq!(cut_to_bytes("aé", 2), "a");
        assert_eq!(cut_to_bytes("é", 1), "");
    }

    #[test]
    fn ids_stay_case_sensitive() {
        assert_eq!(normalize_message_id("<A@B>"), "A@B");
    }

    #[test]
    fn sender_forms_are_one_address() {
        let mut a = String::new();
        let mut b = String::new();
        let mut c = String::new();
        lowercase_into(normalize_sender("Ann <a@x>"), &mut a);
        lowercase_into(normalize_sender("<A@x>"), &mut b);
        lowercase_into(normalize_sender("a@x"), &mut c);
        assert_eq!((a.as_str(), b.as_str()), ("a@x", "a@x"));
        assert_eq!(c, "a@x");
        lowercase_into("ÉMILE@X", &mut a);
        assert_eq!(a, "émile@x");
    }

    #[test]
    fn map_cow_keeps_borrowed_strings_borrowed() {
        let got = map_cow(Cow::Borrowed(" <x> "), normalize_message_id);
        assert!(matches!(got, Cow::Borrowed("x")));
        let got = map_cow(Cow::Owned("x".to_string()), normalize_message_id);
        assert_eq!(got, "x");
    }
}
