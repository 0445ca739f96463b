//! Reply/forward prefixes (`Re:`, `AW[2]:`, `回复：`...), list tags and subject normalization.
//!
//! Classification decides whether an event is a reply; normalization gives the text that
//! subject-only clients are joined to threads by. Both run per event, so nothing here allocates
//! beyond the caller's output buffer.

/// Kind of the first prefix of a subject.
///
/// Only the first prefix after the leading list tags counts (`Fwd: Re: x` is a forward), because
/// that is what the sender did with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixKind {
    /// A reply prefix such as `Re:`, `AW:`, `Réf :` or `回复：`.
    Reply,
    /// A forward prefix such as `Fwd:`, `WG:`, `Doorst:` or `转发：`.
    Forward,
}

/// Prefix words in the form [`fold`] produces (lowercase, Turkish `İ` as `i`).
const PREFIXES: &[(&str, PrefixKind)] = &[
    // Replies.
    ("re", PrefixKind::Reply),
    ("aw", PrefixKind::Reply),
    ("sv", PrefixKind::Reply),
    ("vs", PrefixKind::Reply),
    ("antw", PrefixKind::Reply),
    ("odp", PrefixKind::Reply),
    ("r", PrefixKind::Reply),
    ("rif", PrefixKind::Reply),
    ("réf", PrefixKind::Reply),
    ("ref", PrefixKind::Reply),
    ("ynt", PrefixKind::Reply),
    ("res", PrefixKind::Reply),
    ("vá", PrefixKind::Reply),
    ("回复", PrefixKind::Reply),
    ("答复", PrefixKind::Reply),
    ("回覆", PrefixKind::Reply),
    ("답장", PrefixKind::Reply),
    ("회신", PrefixKind::Reply),
    // Forwards.
    ("fw", PrefixKind::Forward),
    ("fwd", PrefixKind::Forward),
    ("wg", PrefixKind::Forward),
    ("tr", PrefixKind::Forward),
    ("rv", PrefixKind::Forward),
    ("enc", PrefixKind::Forward),
    ("doorst", PrefixKind::Forward),
    ("vl", PrefixKind::Forward),
    ("vb", PrefixKind::Forward),
    ("pd", PrefixKind::Forward),
    ("ilt", PrefixKind::Forward),
    ("转发", PrefixKind::Forward),
    ("轉寄", PrefixKind::Forward),
    ("転送", PrefixKind::Forward),
    ("전달", PrefixKind::Forward),
];

/// Length in chars of the longest word in [`PREFIXES`] (`doorst`); longer words are not looked up.
const MAX_WORD_CHARS: usize = 6;

/// Room for [`MAX_WORD_CHARS`] folded chars in UTF-8.
const MAX_WORD_BYTES: usize = MAX_WORD_CHARS * 4;

/// The kind of the first reply/forward prefix after leading list tags, or None.
///
/// This is the contract's "is a reply" test (`Some(PrefixKind::Reply)`), done without
/// allocating: `[all] AW[2]: x` is a reply, `Fwd: Re: x` a forward, `Research: x` neither.
#[must_use]
pub fn first_prefix(decoded_subject: &str) -> Option<PrefixKind> {
    if !may_hold_colon(decoded_subject) {
        return None;
    }
    let mut rest = decoded_subject.trim_start();
    loop {
        if let Some(after) = strip_list_tag(rest) {
            rest = after.trim_start();
            continue;
        }
        return strip_prefix_word(rest).map(|(kind, _)| kind);
    }
}

/// Normalizes an (already RFC 2047-decoded) subject per the contract, writing into `out` (cleared first) so the caller can reuse one buffer per event without allocating.
///
/// Leading list tags and reply/forward prefixes are removed repeatedly, whitespace runs become
/// one space, the ends are trimmed and the text is lowercased: `[all] AW[2]: quarterly
/// RESULTS` becomes `quarterly results`. The result is a fixed point (normalizing it again
/// changes nothing), so normalized subjects can be compared and re-normalized freely.
pub fn normalize_into(decoded_subject: &str, out: &mut String) {
    analyze_into(decoded_subject, out);
}

/// Convenience wrapper allocating a new String.
///
/// Same result as [`normalize_into`]; for tests and cold paths.
#[must_use]
pub fn normalize(decoded_subject: &str) -> String {
    let mut out = String::new();
    normalize_into(decoded_subject, &mut out);
    out
}

/// One pass returning both: (first prefix kind, normalized) written into out.
///
/// Equivalent to [`first_prefix`] plus [`normalize_into`] but reads the leading tags and
/// prefixes once; `out` is cleared first.
pub fn analyze_into(decoded_subject: &str, out: &mut String) -> Option<PrefixKind> {
    out.clear();
    let (first, rest) = strip_leading(decoded_subject);
    push_collapsed_lowercase(rest, out);
    // Safety net for idempotence: if collapsing or lowercasing ever exposed a tag or prefix at
    // the front, strip it too, so that normalize(normalize(s)) == normalize(s). (Prefix matching
    // already tolerates any whitespace and any case, so this is not expected to fire.)
    let (_, again) = strip_leading(out);
    let exposed = out.len() - again.len();
    if exposed > 0 {
        out.drain(..exposed);
    }
    first
}

/// Strips leading whitespace, list tags and prefixes until none is left; returns the kind of the
/// first prefix and the rest (which starts with neither whitespace, a tag nor a prefix).
fn strip_leading(s: &str) -> (Option<PrefixKind>, &str) {
    let mut rest = s.trim_start();
    let mut first = None;
    loop {
        if let Some(after) = strip_list_tag(rest) {
            rest = after.trim_start();
        } else if let Some((kind, after)) = strip_prefix_word(rest) {
            first = first.or(Some(kind));
            rest = after.trim_start();
        } else {
            return (first, rest);
        }
    }
}

/// Whether `s` may hold a prefix's colon, `:` or `：` (U+FF1A, whose UTF-8 encoding starts
/// with the byte 0xEF, as other chars' do too: those are simply looked at further). Every
/// prefix ends in one, and most first messages' subjects hold neither: one vectorized search
/// answers them instead of a scan of their first word (`first_prefix` on conversations' first
/// messages cost 0.06 s of a 5M-event replay, BENCHMARKS.md, session 12). Not asked by
/// `strip_leading`: the subjects it analyzes are mostly replies, which hold one.
fn may_hold_colon(s: &str) -> bool {
    memchr::memchr2(b':', 0xEF, s.as_bytes()).is_some()
}

/// A list tag at the start of `s` (`[` up to the first `]`, e.g. `[all-staff]`); returns what
/// follows it.
fn strip_list_tag(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(']')?;
    inner.get(close + 1..)
}

/// A reply/forward prefix at the start of `s`: a known word (whole: the run of alphabetic chars
/// ends there), an optional `[digits]` or `(digits)` counter right after it, optional whitespace,
/// then `:` or `：`. Returns its kind and what follows the colon.
fn strip_prefix_word(s: &str) -> Option<(PrefixKind, &str)> {
    match strip_ascii_prefix_word(s) {
        Some(found) => found,
        None => strip_prefix_word_general(s),
    }
}

/// [`strip_prefix_word`] for any subject.
fn strip_prefix_word_general(s: &str) -> Option<(PrefixKind, &str)> {
    // Most subjects start with no prefix: reject them on the first char.
    if !may_start_prefix(fold(s.chars().next()?)?) {
        return None;
    }
    // The word folded and UTF-8 encoded into a stack buffer, compared as bytes to the table.
    let mut folded = [0u8; MAX_WORD_BYTES];
    let mut folded_len = 0usize;
    let mut chars = 0usize;
    let mut word_end = None;
    for (i, c) in s.char_indices() {
        if !is_word_char(c) {
            word_end = Some(i);
            break;
        }
        chars += 1;
        if chars > MAX_WORD_CHARS {
            return None; // longer than any prefix word
        }
        let f = fold(c)?;
        let slot = folded.get_mut(folded_len..folded_len + f.len_utf8())?;
        f.encode_utf8(slot);
        folded_len += f.len_utf8();
    }
    // No non-word char after the word: nothing can follow it, so no colon.
    let word_end = word_end?;
    let word = folded.get(..folded_len)?;
    let kind = PREFIXES.iter().find(|(p, _)| p.as_bytes() == word)?.1;
    let after_word = s.get(word_end..)?;
    let after_counter = strip_counter(after_word).unwrap_or(after_word);
    let before_colon = after_counter.trim_start();
    let after_colon = before_colon
        .strip_prefix(':')
        .or_else(|| before_colon.strip_prefix('：'))?;
    Some((kind, after_colon))
}

/// [`strip_prefix_word`] for a subject whose first word is ASCII letters followed by an ASCII
/// byte (nearly every subject), on bytes: `Some(answer)`, or `None` when the general path must
/// decide (a non-ASCII char in or right after the word, such as `Réf:` or `Vá:`). It gives the
/// general path's answer: for ASCII, a word char is an ASCII letter and folding is ASCII
/// lowercasing, and no non-ASCII table word can equal an ASCII word.
fn strip_ascii_prefix_word(s: &str) -> Option<Option<(PrefixKind, &str)>> {
    let bytes = s.as_bytes();
    let len = bytes
        .iter()
        .take(MAX_WORD_CHARS + 1)
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    if len > MAX_WORD_CHARS {
        return Some(None); // longer than any prefix word
    }
    let next = *bytes.get(len)?; // the general path handles a subject that is one word
    if !next.is_ascii() {
        return None;
    }
    let mut folded = [0u8; MAX_WORD_CHARS];
    let word = folded.get_mut(..len)?;
    word.copy_from_slice(bytes.get(..len)?);
    word.make_ascii_lowercase();
    let Some(kind) = ascii_prefix(word) else {
        return Some(None);
    };
    let after_word = s.get(len..)?;
    let after_counter = strip_counter(after_word).unwrap_or(after_word);
    let before_colon = after_counter.trim_start();
    Some(
        before_colon
            .strip_prefix(':')
            .or_else(|| before_colon.strip_prefix('：'))
            .map(|after_colon| (kind, after_colon)),
    )
}

/// The ASCII words of [`PREFIXES`] as one `match` (a test keeps the two in step): a jump on
/// length and a compare, instead of a scan of the table.
fn ascii_prefix(word: &[u8]) -> Option<PrefixKind> {
    Some(match word {
        b"re" | b"aw" | b"sv" | b"vs" | b"antw" | b"odp" | b"r" | b"rif" | b"ref" | b"ynt"
        | b"res" => PrefixKind::Reply,
        b"fw" | b"fwd" | b"wg" | b"tr" | b"rv" | b"enc" | b"doorst" | b"vl" | b"vb" | b"pd"
        | b"ilt" => PrefixKind::Forward,
        _ => return None,
    })
}

/// `char::is_alphabetic`, answered without the table search for ASCII, the common CJK and
/// Hangul blocks and the full-width colon (a test checks these against `is_alphabetic`).
fn is_word_char(c: char) -> bool {
    match c {
        _ if c.is_ascii() => c.is_ascii_alphabetic(),
        '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7A3}' => true,
        '：' => false,
        _ => c.is_alphabetic(),
    }
}

/// Whether some word in [`PREFIXES`] starts with `folded` (a test keeps this in step).
fn may_start_prefix(folded: char) -> bool {
    const ASCII: &[u8] = b"adefioprstvwy";
    const OTHER: &[char] = &['回', '答', '转', '轉', '転', '답', '회', '전'];
    match u8::try_from(folded) {
        Ok(b) => ASCII.contains(&b),
        Err(_) => OTHER.contains(&folded),
    }
}

/// Lowercases one char for prefix lookup; `None` for chars whose lowercase is not one char.
///
/// Turkish `İ` folds to `i` so `İLT:` matches like `ILT:`; Unicode lowercases it to `i̇` (two
/// chars), which is no prefix word.
fn fold(c: char) -> Option<char> {
    if c.is_ascii() {
        return Some(c.to_ascii_lowercase());
    }
    if c == 'İ' {
        return Some('i');
    }
    if has_no_case(c) {
        return Some(c);
    }
    let mut lower = c.to_lowercase();
    let first = lower.next()?;
    match lower.next() {
        None => Some(first),
        Some(_) => None,
    }
}

/// A counter right after a prefix word: `[digits]` or `(digits)`, at least one ASCII digit.
fn strip_counter(s: &str) -> Option<&str> {
    let close = match s.as_bytes().first()? {
        b'[' => b']',
        b'(' => b')',
        _ => return None,
    };
    let body = s.get(1..)?;
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || body.as_bytes().get(digits) != Some(&close) {
        return None;
    }
    body.get(digits + 1..)
}

/// Appends `s` to `out` with every whitespace run (Unicode `White_Space`) turned into one ASCII
/// space, leading and trailing whitespace dropped, and every char lowercased.
fn push_collapsed_lowercase(s: &str, out: &mut String) {
    out.reserve(s.len());
    let start = out.len();
    if s.is_ascii() {
        if is_collapsed_ascii(s.as_bytes()) {
            // Fastest and commonest path: nothing to collapse, copy and lowercase in place.
            out.push_str(s);
        } else {
            push_collapsed_ascii(s, out);
        }
        if let Some(appended) = out.get_mut(start..) {
            appended.make_ascii_lowercase();
        }
        return;
    }
    // General path: runs of chars that lowercasing leaves alone are copied with one `push_str`.
    let mut space_pending = false;
    let mut run_start = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if let Some(r) = run_start.take() {
                out.push_str(s.get(r..i).unwrap_or(""));
            }
            space_pending = out.len() > start;
            continue;
        }
        if space_pending {
            out.push(' ');
            space_pending = false;
        }
        if c.is_ascii() {
            if c.is_ascii_uppercase() {
                if let Some(r) = run_start.take() {
                    out.push_str(s.get(r..i).unwrap_or(""));
                }
                out.push(c.to_ascii_lowercase());
            } else if run_start.is_none() {
                run_start = Some(i);
            }
            continue;
        }
        if !has_no_case(c) {
            let lower = c.to_lowercase();
            if lower.len() != 1 || lower.clone().next() != Some(c) {
                if let Some(r) = run_start.take() {
                    out.push_str(s.get(r..i).unwrap_or(""));
                }
                out.extend(lower);
                continue;
            }
        }
        if run_start.is_none() {
            run_start = Some(i);
        }
    }
    if let Some(r) = run_start {
        out.push_str(s.get(r..).unwrap_or(""));
    }
}

/// Whether ASCII `b` has no leading or trailing whitespace, no whitespace but `' '` and no two
/// spaces in a row, i.e. collapsing would change nothing. Branch-free so it vectorizes.
fn is_collapsed_ascii(b: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return true;
    };
    let (Some(head), Some(tail)) = (b.get(..b.len() - 1), b.get(1..)) else {
        return true;
    };
    let bad = head.iter().zip(tail).fold(false, |bad, (&x, &y)| {
        bad | (x.wrapping_sub(b'\t') < 5) | ((x == b' ') & (y == b' '))
    });
    !(bad || is_ascii_white_space(first) || is_ascii_white_space(last))
}

/// The ASCII collapse without lowercasing: copies whole words, one space between them.
fn push_collapsed_ascii(s: &str, out: &mut String) {
    let start = out.len();
    let mut word_start = None;
    for (i, b) in s.bytes().enumerate() {
        if is_ascii_white_space(b) {
            if let Some(w) = word_start.take() {
                if out.len() > start {
                    out.push(' ');
                }
                out.push_str(s.get(w..i).unwrap_or(""));
            }
        } else if word_start.is_none() {
            word_start = Some(i);
        }
    }
    if let Some(w) = word_start {
        if out.len() > start {
            out.push(' ');
        }
        out.push_str(s.get(w..).unwrap_or(""));
    }
}

/// The ASCII bytes that are Unicode `White_Space` (unlike `u8::is_ascii_whitespace`, this
/// includes vertical tab), so the ASCII path collapses exactly what `char::is_whitespace` does.
fn is_ascii_white_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// Blocks without case mappings (Hebrew to Myanmar, CJK, kana, Hangul, Yi...), so such text
/// skips the `to_lowercase` table search; a test checks every char in them.
fn has_no_case(c: char) -> bool {
    matches!(
        c,
        '\u{0590}'..='\u{109F}' | '\u{2E80}'..='\u{A63F}' | '\u{AC00}'..='\u{D7FF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use PrefixKind::{Forward, Reply};

    /// Every prefix word as (lower, upper, mixed) spellings, with its kind.
    const ALL: &[(&str, &str, &str, PrefixKind)] = &[
        ("re", "RE", "Re", Reply),
        ("aw", "AW", "aW", Reply),
        ("sv", "SV", "Sv", Reply),
        ("vs", "VS", "vS", Reply),
        ("antw", "ANTW", "AnTw", Reply),
        ("odp", "ODP", "oDp", Reply),
        ("r", "R", "R", Reply),
        ("rif", "RIF", "Rif", Reply),
        ("réf", "RÉF", "rÉf", Reply),
        ("ref", "REF", "rEf", Reply),
        ("ynt", "YNT", "yNt", Reply),
        ("res", "RES", "ReS", Reply),
        ("vá", "VÁ", "vÁ", Reply),
        ("回复", "回复", "回复", Reply),
        ("答复", "答复", "答复", Reply),
        ("回覆", "回覆", "回覆", Reply),
        ("답장", "답장", "답장", Reply),
        ("회신", "회신", "회신", Reply),
        ("fw", "FW", "Fw", Forward),
        ("fwd", "FWD", "FwD", Forward),
        ("wg", "WG", "wG", Forward),
        ("tr", "TR", "tR", Forward),
        ("rv", "RV", "rV", Forward),
        ("enc", "ENC", "EnC", Forward),
        ("doorst", "DOORST", "DoOrSt", Forward),
        ("vl", "VL", "vL", Forward),
        ("vb", "VB", "Vb", Forward),
        ("pd", "PD", "pD", Forward),
        ("ilt", "İLT", "İlT", Forward),
        ("转发", "转发", "转发", Forward),
        ("轉寄", "轉寄", "轉寄", Forward),
        ("転送", "転送", "転送", Forward),
        ("전달", "전달", "전달", Forward),
    ];

    fn analyze(s: &str) -> (Option<PrefixKind>, String) {
        let mut out = String::from("stale contents");
        let kind = analyze_into(s, &mut out);
        (kind, out)
    }

    #[test]
    fn test_table_covers_every_prefix() {
        assert_eq!(ALL.len(), PREFIXES.len());
        for (word, kind) in PREFIXES {
            assert!(
                ALL.iter().any(|(l, _, _, k)| l == word && k == kind),
                "{word}"
            );
            assert!(word.chars().count() <= MAX_WORD_CHARS, "{word}");
        }
    }

    #[test]
    fn every_prefix_in_every_case_with_both_colons() {
        for &(lower, upper, mixed, kind) in ALL {
            for word in [lower, upper, mixed] {
                for colon in [":", "：", " :", " ：", ": ", "："] {
                    let subject = format!("{word}{colon} Kaffe  MIT Milch");
                    assert_eq!(first_prefix(&subject), Some(kind), "{subject}");
                    assert_eq!(
                        analyze(&subject),
                        (Some(kind), "kaffe mit milch".to_owned()),
                        "{subject}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_prefix_with_counters() {
        for &(_, upper, _, kind) in ALL {
            for counter in ["[2]", "(3)", "[12] ", "(0)\t"] {
                let subject = format!("{upper}{counter}: x");
                assert_eq!(analyze(&subject), (Some(kind), "x".to_owned()), "{subject}");
            }
        }
    }

    #[test]
    fn every_prefix_needs_its_colon_and_whole_word() {
        for &(lower, upper, _, _) in ALL {
            for subject in [
                format!("{upper} x"),
                format!("{lower}x: y"),
                format!("{upper}2: y"),
                format!("{upper} [2]: y"),
                format!("{lower}[]: y"),
                format!("{lower}[2: y"),
                lower.to_owned(),
            ] {
                assert_eq!(first_prefix(&subject), None, "{subject}");
                assert_eq!(analyze(&subject).0, None, "{subject}");
            }
        }
    }

    #[test]
    fn contract_examples() {
        for s in [
            "Sv: Kaffe",
            "Antw: kaffe",
            "Réf : Kaffe",
            "RE(2)：Kaffe",
            "回复：Kaffe",
            "Odp: KAFFE",
        ] {
            assert_eq!(analyze(s), (Some(Reply), "kaffe".to_owned()), "{s}");
        }
        assert_eq!(
            analyze("[all] AW[2]: quarterly   RESULTS"),
            (Some(Reply), "quarterly results".to_owned())
        );
        assert_eq!(analyze("Fwd: Re: Tee"), (Some(Forward), "tee".to_owned()));
        assert_eq!(analyze("Research: Tee"), (None, "research: tee".to_owned()));
        assert_eq!(analyze("Re: Re: RE: x"), (Some(Reply), "x".to_owned()));
        assert_eq!(
            analyze("[a] [b] Re: [c] Fw: x"),
            (Some(Reply), "x".to_owned())
        );
        assert_eq!(analyze("Re:"), (Some(Reply), String::new()));
    }

    #[test]
    fn unicode_case_insensitive() {
        assert_eq!(first_prefix("RÉF: x"), Some(Reply));
        assert_eq!(first_prefix("réf : x"), Some(Reply));
        assert_eq!(first_prefix("VÁ: x"), Some(Reply));
        assert_eq!(first_prefix("ILT: x"), Some(Forward));
        assert_eq!(first_prefix("İLT: x"), Some(Forward));
    }

    #[test]
    fn first_prefix_only_counts() {
        assert_eq!(first_prefix("Fwd: Re: x"), Some(Forward));
        assert_eq!(first_prefix("Re: Fwd: x"), Some(Reply));
        assert_eq!(first_prefix("[x] Fw: Re: x"), Some(Forward));
        assert_eq!(first_prefix("hello Re: x"), None);
    }

    #[test]
    fn not_prefixes() {
        for s in [
            "Research: x",
            "Rex: y",
            "Re x",
            "Re",
            "Fwd x",
            "RE - x",
            ":x",
            "re-: x",
            // No colon anywhere: answered before any word is read (`may_hold_colon`).
            "[team] AW Minutes",
            "回复 x",
            "Re lunch, Friday",
        ] {
            assert_eq!(first_prefix(s), None, "{s}");
        }
        assert_eq!(normalize("Rex: Y"), "rex: y");
        assert_eq!(normalize("Re x"), "re x");
    }

    /// Without a colon, list tags still go and the rest is still normalized; a colon later on
    /// makes no prefix of the first word, and the full-width colon is a colon.
    #[test]
    fn without_a_colon_tags_still_go() {
        assert_eq!(normalize("[team]  AW   Minutes"), "aw minutes");
        assert_eq!(analyze_into("[a] [b] Re lunch", &mut String::new()), None);
        assert_eq!(first_prefix("Re lunch: Friday"), None);
        assert_eq!(first_prefix("[team] 回复：x"), Some(Reply));
        assert_eq!(normalize("[team] 回复：X"), "x");
    }

    #[test]
    fn space_before_colon() {
        assert_eq!(analyze("RE : x"), (Some(Reply), "x".to_owned()));
        assert_eq!(analyze("RE \t\u{a0}: x"), (Some(Reply), "x".to_owned()));
        assert_eq!(analyze("Re[2] : x"), (Some(Reply), "x".to_owned()));
        assert_eq!(analyze("Re:Re:x"), (Some(Reply), "x".to_owned()));
    }

    #[test]
    fn list_tags() {
        assert_eq!(analyze("[all-staff] Re: x"), (Some(Reply), "x".to_owned()));
        assert_eq!(analyze("[all-staff]Re: x"), (Some(Reply), "x".to_owned()));
        assert_eq!(analyze("  [a]\t[b]  x"), (None, "x".to_owned()));
        assert_eq!(analyze("[] x"), (None, "x".to_owned()));
        // No closing bracket: not a tag.
        assert_eq!(analyze("[all Re: x"), (None, "[all re: x".to_owned()));
        // A tag later in the subject stays.
        assert_eq!(analyze("x [all]"), (None, "x [all]".to_owned()));
        assert_eq!(analyze("[a]"), (None, String::new()));
    }

    #[test]
    fn whitespace_collapse() {
        assert_eq!(normalize("  a \t\r\n b\u{a0}\u{a0}c\u{3000}d  "), "a b c d");
        assert_eq!(normalize("A  B"), "a b");
        assert_eq!(normalize("Re:\u{2003}Straße\u{85}X"), "straße x");
    }

    #[test]
    fn empty_and_whitespace_only() {
        for s in ["", " ", "\t\r\n", "\u{a0}\u{3000}"] {
            assert_eq!(analyze(s), (None, String::new()), "{s:?}");
            assert_eq!(first_prefix(s), None);
        }
        assert_eq!(analyze(" Re: \t"), (Some(Reply), String::new()));
    }

    #[test]
    fn lowercase_non_ascii() {
        assert_eq!(normalize("ÉCOLE ΣΟΦΊΑ"), "école σοφία");
        assert_eq!(normalize("İstanbul"), "i̇stanbul");
    }

    #[test]
    fn caseless_blocks_have_no_lowercase() {
        for c in ('\u{0}'..=char::MAX).filter(|&c| has_no_case(c)) {
            assert!(c.to_lowercase().eq([c]), "{c:?}");
        }
    }

    #[test]
    fn word_char_is_alphabetic() {
        for c in '\u{0}'..=char::MAX {
            assert_eq!(is_word_char(c), c.is_alphabetic(), "{c:?}");
        }
    }

    #[test]
    fn ascii_match_matches_table() {
        let ascii: Vec<_> = PREFIXES.iter().filter(|(p, _)| p.is_ascii()).collect();
        for (word, kind) in &ascii {
            assert_eq!(ascii_prefix(word.as_bytes()), Some(*kind), "{word}");
        }
        for word in ["", "rr", "fwdd", "doors", "x"] {
            let expected = PREFIXES.iter().find(|(p, _)| *p == word).map(|(_, k)| *k);
            assert_eq!(ascii_prefix(word.as_bytes()), expected, "{word}");
        }
        assert_eq!(ascii.len(), 22);
    }

    #[test]
    fn first_char_filter_matches_table() {
        for (word, _) in PREFIXES {
            let first = word.chars().next().unwrap_or('\0');
            assert!(may_start_prefix(first), "{word}");
        }
        for c in ('\u{0}'..=char::MAX).filter(|&c| may_start_prefix(c)) {
            assert!(PREFIXES.iter().any(|(w, _)| w.starts_with(c)), "{c:?}");
        }
    }

    /// What `push_collapsed_lowercase` must produce, written the obvious (allocating) way.
    fn reference_collapse(s: &str) -> String {
        s.split(char::is_whitespace)
            .filter(|w| !w.is_empty())
            .map(|w| w.chars().flat_map(char::to_lowercase).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn collapse_matches_reference() {
        for s in [
            "A\x0bB\x0c C\t\r\nD ",
            " \x0b",
            "a\x0b",
            "\x0ba",
            "\ta",
            "a\r",
            " a",
            "a ",
            "a  b",
            "a b",
            "A",
            "Ab\x0c",
            "Ab  CD",
            "ÉCOLE  Straße ΣΟΦΊΑ İ\u{a0}x",
            "回复 关于 A会议",
            "",
        ] {
            let mut out = String::new();
            push_collapsed_lowercase(s, &mut out);
            assert_eq!(out, reference_collapse(s), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn ascii_fast_path_agrees_with_the_general_one(
            s in "(Re|RE|re|Fwd|FW|Doorst|Res|Réf|Vá|AW|Research|x|回复|\\[2\\]|\\(3\\)|:|：| |\\[l\\])*"
        ) {
            if let Some(fast) = strip_ascii_prefix_word(&s) {
                proptest::prop_assert_eq!(fast, strip_prefix_word_general(&s));
            }
        }

        #[test]
        fn collapse_matches_reference_on_any_string(s in proptest::prelude::any::<String>()) {
            let mut out = String::from("keep ");
            push_collapsed_lowercase(&s, &mut out);
            let expected = reference_collapse(&s);
            proptest::prop_assert_eq!(out.strip_prefix("keep "), Some(expected.as_str()));
        }
    }

    #[test]
    fn normalize_into_reuses_buffer() {
        let mut out = String::with_capacity(64);
        normalize_into("Re: First", &mut out);
        assert_eq!(out, "first");
        normalize_into("Second", &mut out);
        assert_eq!(out, "second");
        assert!(out.capacity() >= 64);
    }

    #[test]
    fn normalize_is_idempotent_on_examples() {
        for s in [
            "[all] AW[2]: quarterly   RESULTS",
            "Research: Tee",
            "İLT: İLT : x",
            "re : re[2] : [x] y",
            "  ",
        ] {
            let once = normalize(s);
            assert_eq!(normalize(&once), once, "{s}");
        }
    }
}
