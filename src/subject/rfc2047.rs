//! RFC 2047 encoded-word decoding (`=?charset?B|Q?text?=`) for subjects as MTA logs carry them.
//!
//! The contract says every rule works on the decoded subject, so this runs once per event: a
//! subject without `=?` is returned borrowed without allocating, and anything that is not a
//! well-formed encoded word is kept as literal text rather than reported as an error.

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use encoding_rs::Encoding;

/// Base64 as encoded words are leniently read: padding optional, stray trailing bits tolerated
/// (neither makes the decoded bytes ambiguous, so rejecting them would only lose subjects).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes the RFC 2047 encoded words in `raw`, keeping everything else as it is.
///
/// Why: subjects reach the logs MIME-encoded, and threads are joined on the decoded text, so
/// `=?UTF-8?B?UmU6IHg=?=` and `Re: x` must end up the same. Rules:
///
/// - `raw` without `=?` is returned as `Cow::Borrowed` without allocating (the per-event fast
///   path); so is any `raw` in which no encoded word could be decoded.
/// - B (base64) and Q (`_` is a space, `=XX` a hex byte) encodings, the letter in either case;
///   the charset in any case, with an optional RFC 2231 language suffix (`UTF-8*en`), any label
///   `encoding_rs::Encoding::for_label` knows.
/// - A malformed word (unknown charset, bad base64 or `=XX`, missing `?=`, whitespace or
///   non-ASCII inside) is kept as literal text; bytes invalid in their charset become U+FFFD.
/// - Whitespace (space, tab, CR, LF) between two adjacent encoded words is dropped; whitespace
///   between an encoded word and ordinary text is kept.
/// - Adjacent words in the same charset are decoded as one byte string, so a multi-byte
///   character split across two words (as some mailers do) still comes out whole.
#[must_use]
pub fn decode_rfc2047(raw: &str) -> Cow<'_, str> {
    if !raw.contains("=?") {
        return Cow::Borrowed(raw);
    }
    let mut out = String::new();
    // Bytes of the current run of adjacent same-charset words, not yet converted to text.
    let mut pending: Vec<u8> = Vec::new();
    // Charset of `pending`; `Some` once any word was decoded.
    let mut pending_enc: Option<&'static Encoding> = None;
    // `raw[..emitted]` has been written to `out` (or dropped as inter-word whitespace).
    let mut emitted = 0usize;
    let mut search = 0usize;

    while let Some(rel) = raw.get(search..).and_then(|s| s.find("=?")) {
        let start = search + rel;
        let before = pending.len();
        let word = match parse_word(raw, start) {
            // The word's bytes go straight after the pending ones.
            Some(word) if word.decode_into(&mut pending) => word,
            _ => {
                // Not a word: `=` is ASCII, so `start + 1` is a char boundary.
                search = start + 1;
                continue;
            }
        };
        let gap = raw.get(emitted..start).unwrap_or("");
        let adjacent = pending_enc.is_some() && gap.bytes().all(is_fws);
        if !(adjacent && pending_enc == Some(word.encoding)) {
            // A new run starts: convert the previous one, then the text before this word.
            if out.capacity() == 0 {
                out.reserve(raw.len());
            }
            push_decoded(&mut out, pending.get(..before).unwrap_or(&[]), pending_enc);
            pending.drain(..before);
            if !adjacent {
                out.push_str(gap);
            }
            pending_enc = Some(word.encoding);
        }
        emitted = word.end;
        search = word.end;
    }

    if pending_enc.is_none() {
        return Cow::Borrowed(raw);
    }
    push_decoded(&mut out, &pending, pending_enc);
    out.push_str(raw.get(emitted..).unwrap_or(""));
    Cow::Owned(out)
}

/// Folding whitespace that RFC 2047 drops between adjacent encoded words.
fn is_fws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Converts `bytes` from `enc` to text (lossily) onto `out`.
fn push_decoded(out: &mut String, bytes: &[u8], enc: Option<&'static Encoding>) {
    if let (Some(enc), false) = (enc, bytes.is_empty()) {
        let (text, _had_errors) = enc.decode_without_bom_handling(bytes);
        out.push_str(&text);
    }
}

/// A syntactically valid encoded word found in the input.
struct Word<'a> {
    encoding: &'static Encoding,
    base64: bool,
    text: &'a str,
    /// Byte offset just past the closing `?=`.
    end: usize,
}

/// Parses the encoded word starting at `raw[start..]` (which begins with `=?`), if it is one.
fn parse_word(raw: &str, start: usize) -> Option<Word<'_>> {
    let body_start = start + 2;
    let body = raw.get(body_start..)?;
    let q1 = body.find('?')?;
    let charset_field = body.get(..q1)?;
    if charset_field.is_empty() || !charset_field.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    // RFC 2231 language suffix: `UTF-8*en`.
    let charset = charset_field.split('*').next().unwrap_or("");
    if charset.is_empty() {
        return None;
    }
    // UTF-8 is nearly all of it; skip the label table search for it.
    let encoding = if charset.eq_ignore_ascii_case("utf-8") {
        encoding_rs::UTF_8
    } else {
        Encoding::for_label(charset.as_bytes())?
    };
    // The WHATWG "replacement" encoding (ISO-2022-KR etc.) would turn the word into one U+FFFD;
    // keeping the literal text is more useful.
    if encoding == encoding_rs::REPLACEMENT {
        return None;
    }
    let base64 = match body.as_bytes().get(q1 + 1)? {
        b'B' | b'b' => true,
        b'Q' | b'q' => false,
        _ => return None,
    };
    if body.as_bytes().get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let tail = body.get(text_start..)?;
    // Encoded text never contains `?`, so the first one must open the `?=` terminator.
    let q2 = tail.find('?')?;
    if tail.as_bytes().get(q2 + 1) != Some(&b'=') {
        return None;
    }
    let text = tail.get(..q2)?;
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(Word {
        encoding,
        base64,
        text,
        end: body_start + text_start + q2 + 2,
    })
}

impl Word<'_> {
    /// Appends the word's raw bytes to `buf`; false (and `buf` unchanged) if the text is bad.
    fn decode_into(&self, buf: &mut Vec<u8>) -> bool {
        let before = buf.len();
        let ok = if self.base64 {
            LENIENT_BASE64.decode_vec(self.text, buf).is_ok()
        } else {
            decode_q(self.text.as_bytes(), buf)
        };
        if !ok {
            buf.truncate(before);
        }
        ok
    }
}

/// RFC 2047 "Q" decoding: `_` is 0x20, `=XX` is a hex byte, anything else stands for itself.
fn decode_q(text: &[u8], buf: &mut Vec<u8>) -> bool {
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'_' => buf.push(b' '),
            b'=' => {
                let (Some(hi), Some(lo)) = (
                    bytes.next().and_then(|&h| hex_value(h)),
                    bytes.next().and_then(|&l| hex_value(l)),
                ) else {
                    return false;
                };
                buf.push(hi << 4 | lo);
            }
            other => buf.push(other),
        }
    }
    true
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> String {
        decode_rfc2047(s).into_owned()
    }

    #[test]
    fn plain_text_is_borrowed() {
        let s = "Re: quarterly results";
        assert!(matches!(decode_rfc2047(s), Cow::Borrowed(b) if b == s));
        assert!(matches!(decode_rfc2047(""), Cow::Borrowed("")));
    }

    #[test]
    fn text_with_only_malformed_words_is_borrowed() {
        let s = "price =?x 5 =?UTF-8?B?@@@?= done";
        assert!(matches!(decode_rfc2047(s), Cow::Borrowed(b) if b == s));
    }

    #[test]
    fn b_encoding() {
        assert_eq!(dec("=?UTF-8?B?5Zue5aSN77yaS2FmZmU=?="), "回复：Kaffe");
        assert_eq!(dec("=?UTF-8?B?UmU6IHg=?="), "Re: x");
    }

    #[test]
    fn b_without_padding() {
        assert_eq!(dec("=?UTF-8?B?UmU6IHg?="), "Re: x");
    }

    #[test]
    fn lowercase_charset_and_encoding_letter() {
        assert_eq!(dec("=?utf-8?b?5Zue5aSN77yaS2FmZmU=?="), "回复：Kaffe");
        assert_eq!(dec("=?utf-8?q?Re:_caf=C3=A9?="), "Re: café");
    }

    #[test]
    fn q_encoding() {
        assert_eq!(dec("=?UTF-8?Q?Re=3A_caf=C3=A9?="), "Re: café");
        assert_eq!(dec("=?UTF-8?Q?a=3db?="), "a=b");
    }

    #[test]
    fn iso_8859_1_q() {
        assert_eq!(dec("=?iso-8859-1?q?R=E9f=3A_caf=E9?="), "Réf: café");
    }

    #[test]
    fn other_charsets() {
        // windows-1252 0x80 is the euro sign.
        assert_eq!(dec("=?windows-1252?Q?=80?="), "€");
        // "привет" in KOI8-R.
        assert_eq!(dec("=?KOI8-R?B?0NLJ18XU?="), "привет");
        // "回复" in GB2312 (decoded as GBK).
        assert_eq!(dec("=?GB2312?B?u9i4tA==?="), "回复");
        // "転送" in Shift_JIS.
        assert_eq!(dec("=?Shift_JIS?B?k12Rlw==?="), "転送");
        // "轉寄" in Big5.
        assert_eq!(dec("=?big5?B?wuCxSA==?="), "轉寄");
        // "転送" in ISO-2022-JP (stateful), common in Japanese mail.
        assert_eq!(dec("=?ISO-2022-JP?B?GyRCRT5BdxsoQg==?="), "転送");
    }

    #[test]
    fn rfc2231_language_suffix() {
        assert_eq!(dec("=?UTF-8*en?Q?Re:_x?="), "Re: x");
        assert_eq!(dec("=?us-ascii*EN-us?B?UmU6IHg=?="), "Re: x");
    }

    #[test]
    fn adjacent_words_join_without_whitespace() {
        assert_eq!(dec("=?UTF-8?Q?Re:_?= =?UTF-8?Q?caf=C3=A9?="), "Re: café");
        assert_eq!(
            dec("=?UTF-8?B?5Zue5aSN?=\r\n\t=?UTF-8?B?77yaS2FmZmU=?="),
            "回复：Kaffe"
        );
        assert_eq!(dec("=?UTF-8?Q?a?==?UTF-8?Q?b?="), "ab");
        // Different charsets, still adjacent.
        assert_eq!(dec("=?UTF-8?Q?a?=  =?iso-8859-1?Q?=E9?="), "aé");
    }

    #[test]
    fn character_split_across_adjacent_words() {
        // "é" is C3 A9 in UTF-8, split over two words.
        assert_eq!(dec("=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?="), "café");
    }

    #[test]
    fn word_next_to_plain_text_keeps_space() {
        assert_eq!(dec("Re: =?UTF-8?Q?caf=C3=A9?= today"), "Re: café today");
        assert_eq!(dec("x  =?UTF-8?Q?y?=\tz"), "x  y\tz");
    }

    #[test]
    fn word_glued_to_text_is_decoded() {
        assert_eq!(dec("a=?UTF-8?Q?b?=c"), "abc");
    }

    #[test]
    fn malformed_words_stay_literal() {
        for s in [
            "=?UTF-8?B?@@@@?=",          // bad base64
            "=?no-such-charset?Q?abc?=", // unknown charset
            "=?UTF-8?Q?abc",             // missing terminator
            "=?UTF-8?X?abc?=",           // unknown encoding
            "=??Q?abc?=",                // empty charset
            "=?*en?Q?abc?=",             // empty charset before language
            "=?UTF-8?Q?a b?=",           // whitespace inside
            "=?UTF-8?Q?a=ZZ?=",          // bad Q hex
            "=?UTF-8?Q?a=4?=",           // truncated Q hex
            "=?UTF-8?Qabc?=",            // no `?` after the letter
            "=?UTF-8?Q?ä?=",             // non-ASCII inside
            "=?ISO-2022-KR?Q?abc?=",     // replacement encoding
            "=?",
            "=?=?",
        ] {
            assert_eq!(dec(s), s, "{s}");
        }
    }

    #[test]
    fn malformed_word_between_good_ones() {
        assert_eq!(
            dec("=?UTF-8?Q?a?= =?bogus?Q?b?= =?UTF-8?Q?c?="),
            "a =?bogus?Q?b?= c"
        );
    }

    #[test]
    fn good_word_after_broken_opening() {
        assert_eq!(dec("=?=?UTF-8?Q?x?="), "=?x");
    }

    #[test]
    fn invalid_bytes_are_replaced() {
        assert_eq!(dec("=?UTF-8?Q?a=FFb?="), "a\u{FFFD}b");
    }

    #[test]
    fn empty_word() {
        assert_eq!(dec("x =?UTF-8?B??= y"), "x  y");
    }
}
