//! The fast path ([`fast`]) against the serde path: for every input, `decode_json` must give
//! what the serde path alone gives (the same event, its strings borrowed or copied alike, or the
//! same reason), and whatever the fast reader accepts, serde must read into the same raw fields.
//! Generated events (valid, damaged, byte-mutated), the generator's `mixed` stream, and one
//! named case per fallback trigger.

use super::tests::{opts, with};
use super::*;
use proptest::prelude::*;

#[allow(clippy::ptr_arg)] // the variant is the point
fn is_borrowed(s: &Cow<'_, str>) -> bool {
    matches!(s, Cow::Borrowed(_))
}

/// Which of an event's strings borrow from the input.
fn event_shape(e: &Event<'_>) -> [Option<bool>; 6] {
    [
        Some(is_borrowed(&e.message_id)),
        Some(is_borrowed(&e.sender)),
        e.thread_id.as_ref().map(is_borrowed),
        e.in_reply_to.as_ref().map(is_borrowed),
        e.references_root.as_ref().map(is_borrowed),
        e.subject.as_ref().map(is_borrowed),
    ]
}

/// Which of the raw fields' strings borrow from the input.
fn raw_shape(raw: &RawEvent<'_>) -> [Option<bool>; 7] {
    let s = |f: &StrField<'_>| match f {
        StrField::Str(s) => Some(is_borrowed(s)),
        _ => None,
    };
    [
        match &raw.timestamp {
            TimestampField::Str(s) => Some(is_borrowed(s)),
            _ => None,
        },
        s(&raw.message_id),
        s(&raw.sender),
        s(&raw.thread_id),
        s(&raw.in_reply_to),
        s(&raw.subject),
        match &raw.references {
            ReferencesField::Root(Some(s)) => Some(is_borrowed(s)),
            _ => None,
        },
    ]
}

/// Checks one input; returns whether the fast reader accepted it.
fn check(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let shown = String::from_utf8_lossy(bytes);
    let with_fast = decode_json_with(bytes, &opts(), true);
    let serde_only = decode_json_with(bytes, &opts(), false);
    prop_assert_eq!(&with_fast, &serde_only, "input: {:?}", shown);
    if let (Ok(a), Ok(b)) = (&with_fast, &serde_only) {
        prop_assert_eq!(event_shape(a), event_shape(b), "input: {:?}", shown);
    }
    let Some(text) = std::str::from_utf8(bytes).ok() else {
        return Ok(false);
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(raw) = fast::parse(text) else {
        return Ok(false);
    };
    let serde = read_with_serde(text);
    prop_assert_eq!(Ok(&raw), serde.as_ref(), "input: {:?}", shown);
    if let Ok(serde) = &serde {
        prop_assert_eq!(raw_shape(&raw), raw_shape(serde), "input: {:?}", shown);
    }
    Ok(true)
}

fn accepted(text: &str) -> bool {
    match check(text.as_bytes()) {
        Ok(accepted) => accepted,
        Err(e) => panic!("{e}"),
    }
}

// ---- generators ----------------------------------------------------------------------------

/// Text inside a JSON string, raw and valid: plain text, the escapes JSON allows, encoded
/// words, non-ASCII.
fn valid_string_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[a-zA-Z0-9 @.<>()_:-]{0,12}",
        3 => prop::sample::select(vec![
            "=?UTF-8?B?5Zue5aSN?=", "=?", "Re: ", "[all-staff] ", "é", "回复：", "\u{2028}",
            "\u{7f}", "\u{feff}", "<a@b>", " <r1@x> <r2@x> ", "\u{a0}", "Ann <A@X>", "<>", "  ",
        ]).prop_map(String::from),
        2 => prop::sample::select(vec![
            r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t",
        ]).prop_map(String::from),
        1 => prop::sample::select(vec![r"\u0041", r"\u00e9", r"\ud83d\ude00", r"\u003c"])
            .prop_map(String::from),
        1 => any::<char>().prop_filter("JSON-valid", |c| *c >= ' ' && *c != '"' && *c != '\\')
            .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|pieces| pieces.concat())
}

/// A string with one thing JSON does not allow (or the fast path does not take) in it.
fn bad_string() -> BoxedStrategy<String> {
    (valid_string_body(), bad_piece(), valid_string_body())
        .prop_map(|(a, bad, b)| format!("\"{a}{bad}{b}\""))
        .boxed()
}

/// Bad escapes, lone surrogates, `\u` escapes, every control character, a bare quote.
fn bad_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            r"\ud800",
            r"\udc00x",
            r"\u12",
            r"\x",
            r"\",
            r"\U0041",
            r"\'",
            "\"",
            r"\0",
            r"\ ",
            r"\u0041",
            r"\ud83d\ude00",
        ])
        .prop_map(String::from),
        (0u8..0x20).prop_map(|b| char::from(b).to_string()),
    ]
}

/// Text inside a JSON string that may be invalid: bad escapes, lone surrogates, control
/// characters.
fn string_body() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => valid_string_body(),
        1 => (valid_string_body(), bad_piece(), valid_string_body())
            .prop_map(|(a, bad, b)| format!("{a}{bad}{b}")),
        1 => any::<String>(),
    ]
}

fn json_string() -> BoxedStrategy<String> {
    string_body().prop_map(|body| format!("\"{body}\"")).boxed()
}

/// Numbers, valid and not, as JSON text.
fn number() -> BoxedStrategy<String> {
    prop_oneof![
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        6 => prop::sample::select(vec![
            "0", "1", "-0", "-1", "1.0", "1.5", "1e3", "1E3", "1e-3", "01", "00", "-01", "+1",
            ".5", "1.", "-", "1e", "1e400", "18446744073709551615", "18446744073709551616",
            "9999999999999999999", "99999999999999999999", "9223372036854775808",
            "-9223372036854775809", "1709542800000", "0x10", "Infinity", "NaN",
        ]).prop_map(String::from),
        1 => Just(format!("1{}", "0".repeat(400))),
    ]
    .boxed()
}

fn literal() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "null", "true", "false", "nul", "nulll", "True", "NULL", "[]", "{}", "[ ]", "{ }",
    ])
    .prop_map(String::from)
}

/// Any value, nested a little, for unknown fields and wrong types.
fn any_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![json_string(), number(), literal()];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{0,3}", inner), 0..3).prop_map(|v| {
                let body: Vec<String> = v.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
    .boxed()
}

/// An RFC 3339 timestamp string, mostly in range, in the forms the contract allows.
fn rfc3339() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![1969u32, 1970, 2016, 2024, 2999]),
        1u32..=13,
        1u32..=31,
        0u32..=24,
        0u32..=60,
        0u32..=60,
        prop::option::of("[0-9]{1,10}"),
        prop::sample::select(vec!["T", " ", "t"]),
        prop::sample::select(vec![
            "Z", "z", "+01:00", "-05:30", "+00:00", "", "+0100", " Z",
        ]),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, sep, off)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("\"{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}\"")
        })
}

fn timestamp_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => rfc3339(),
        2 => (0i64..10_000_000).prop_map(|d| (1_709_542_800_000 + d).to_string()),
        1 => number(),
        1 => json_string(),
        1 => any_value(),
    ]
    .boxed()
}

fn str_value() -> BoxedStrategy<String> {
    prop_oneof![8 => json_string(), 1 => Just("null".to_string()), 1 => any_value()].boxed()
}

fn count_value() -> BoxedStrategy<String> {
    prop_oneof![
        8 => (0u64..5000).prop_map(|n| n.to_string()),
        2 => number(),
        1 => Just("null".to_string()),
        1 => any_value(),
    ]
    .boxed()
}

fn string_array() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(json_string(), 0..4),
        prop::sample::select(vec![",", ", ", " ,\n", ",,", ""]),
    )
        .prop_map(|(v, sep)| format!("[{}]", v.join(sep)))
}

fn array_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => string_array(),
        1 => Just("null".to_string()),
        1 => prop::collection::vec(prop_oneof![json_string(), number(), literal()], 0..4)
            .prop_map(|v| format!("[{}]", v.join(","))),
        1 => any_value(),
    ]
    .boxed()
}

fn references_value() -> BoxedStrategy<String> {
    prop_oneof![4 => array_value(), 3 => json_string()].boxed()
}

/// Keys: the schema's, unknown ones, and spellings that are not quite a schema key.
fn unknown_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "label",
        "label",
        "label",
        "x",
        "host",
        "",
        "Timestamp",
        r"time\u0073tamp",
        r"sub\/ject",
        "subject ",
        r"recipient_count\n",
        "é",
        "timestamp\u{0}",
    ])
    .prop_map(String::from)
}

/// A value of the field's type (the fast path's business; damage adds the rest).
fn known_value(key: &'static str) -> BoxedStrategy<String> {
    let string = || valid_string_body().prop_map(|b| format!("\"{b}\""));
    let strings = || {
        (
            prop::collection::vec(string(), 0..4),
            prop::sample::select(vec![",", ", ", " ,\n"]),
        )
            .prop_map(|(v, sep)| format!("[{}]", v.join(sep)))
    };
    match key {
        "timestamp" => prop_oneof![
            6 => clean_rfc3339(),
            2 => (0i64..10_000_000).prop_map(|d| (1_709_542_800_000 + d).to_string()),
            1 => Just("null".to_string()),
        ]
        .boxed(),
        "recipient_count" => prop_oneof![
            8 => (0u64..5000).prop_map(|n| n.to_string()),
            1 => (0u64..=u64::MAX / 10).prop_map(|n| n.to_string()),
            1 => Just("null".to_string()),
        ]
        .boxed(),
        "recipients" => prop_oneof![4 => strings(), 1 => Just("null".to_string())].boxed(),
        "references" => prop_oneof![
            3 => strings(),
            2 => string(),
            1 => Just("null".to_string()),
        ]
        .boxed(),
        _ => prop_oneof![8 => string(), 1 => Just("null".to_string())].boxed(),
    }
}

/// A valid RFC 3339 timestamp string in the forms events carry, around now.
fn clean_rfc3339() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![2016u32, 2023]),
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        prop::option::of("[0-9]{1,9}"),
        prop::sample::select(vec!["T", " ", "t"]),
        prop::sample::select(vec!["Z", "z", "+01:00", "-05:30", "+00:00"]),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, sep, off)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("\"{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}\"")
        })
}

/// A flat value for an unknown field, of the kinds the fast path skips.
fn simple_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => valid_string_body().prop_map(|b| format!("\"{b}\"")),
        1 => (0u64..100_000).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec!["null", "true", "false"]).prop_map(String::from),
    ]
}

/// The members of a well-typed event object: required fields nearly always, optional ones
/// often, flat unknown fields sometimes, in any order.
fn members() -> impl Strategy<Value = Vec<(String, String)>> {
    let known: Vec<BoxedStrategy<Option<(String, String)>>> = Field::ALL
        .iter()
        .map(|field| field.name())
        .enumerate()
        .map(|(i, key)| {
            let present = if i < 4 { 0.97 } else { 0.4 };
            prop::option::weighted(present, known_value(key))
                .prop_map(move |v| v.map(|v| (key.to_string(), v)))
                .boxed()
        })
        .collect();
    let unknown = (
        prop::sample::select(vec!["label", "x", "host", ""]).prop_map(String::from),
        simple_value(),
    );
    (known, prop::collection::vec(unknown, 0..3))
        .prop_map(|(known, unknown)| {
            let mut all: Vec<(String, String)> = known.into_iter().flatten().collect();
            all.extend(unknown);
            all
        })
        .prop_shuffle()
}

/// A value of any type or shape, valid JSON or not.
fn wild_value() -> BoxedStrategy<String> {
    prop_oneof![
        number(),
        literal(),
        json_string(),
        any_value(),
        timestamp_value(),
        array_value(),
        count_value(),
        str_value(),
        references_value(),
    ]
    .boxed()
}

/// One thing wrong with (or unusual about) an otherwise well-typed record.
#[derive(Debug, Clone)]
enum Damage {
    /// A stray character in place of one gap between tokens.
    Gap(prop::sample::Index, &'static str),
    /// Another separator in place of every comma.
    Comma(&'static str),
    /// Text before the object.
    Head(&'static str),
    /// Text after the object.
    Tail(&'static str),
    /// One member's value replaced.
    Value(prop::sample::Index, String),
    /// One member repeated, with another value or the same.
    Duplicate(prop::sample::Index, Option<String>),
    /// An extra member, its key odd or its value nested or invalid.
    Member(String, String),
}

fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        1 => (any::<prop::sample::Index>(), bad_gap()).prop_map(|(i, g)| Damage::Gap(i, g)),
        1 => prop::sample::select(vec![",,", "", ";", ", ,"]).prop_map(Damage::Comma),
        1 => prop::sample::select(vec!["x", "\u{feff}", "\u{a0}", "\u{b}", "[", "{"])
            .prop_map(Damage::Head),
        1 => prop::sample::select(vec!["x", ",", "}", "{}", "\u{0}", "\u{a0}", "\u{b}", "\u{c}", "]"])
            .prop_map(Damage::Tail),
        3 => (any::<prop::sample::Index>(), wild_value()).prop_map(|(i, v)| Damage::Value(i, v)),
        2 => (any::<prop::sample::Index>(), number()).prop_map(|(i, v)| Damage::Value(i, v)),
        2 => (any::<prop::sample::Index>(), bad_string()).prop_map(|(i, v)| Damage::Value(i, v)),
        1 => (any::<prop::sample::Index>(), prop::option::of(wild_value()))
            .prop_map(|(i, v)| Damage::Duplicate(i, v)),
        2 => (prop_oneof![unknown_key(), "[a-z_]{0,12}"], wild_value())
            .prop_map(|(k, v)| Damage::Member(k, v)),
    ]
    .boxed()
}

/// JSON whitespace between tokens.
fn gap() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", "", " ", " ", "\t", "\n", "\r\n", "  "])
}

/// Characters that look like whitespace but are not JSON's, and other stray text.
fn bad_gap() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "\u{a0}", "\u{b}", "\u{c}", "\u{feff}", "\u{0}", "x", ",", ":",
    ])
}

/// A whole record: an object of [`members`] with random JSON spacing and an optional BOM, and
/// up to two [`Damage`]s, each alone in an otherwise fast-path record so that it decides.
fn record() -> impl Strategy<Value = String> {
    (
        members(),
        prop::collection::vec(gap(), 48),
        prop::collection::vec(damage(), 0..3),
        prop::sample::select(vec!["", "", "\u{feff}"]),
        prop::sample::select(vec!["", "", "\n", " \r\n", "\t"]),
    )
        .prop_map(|(mut members, mut gaps, damages, bom, end)| {
            let (mut comma, mut head, mut tail) = (",", "", "");
            for damage in damages {
                match damage {
                    Damage::Gap(at, bad) => gaps[at.index(48)] = bad,
                    Damage::Comma(c) => comma = c,
                    Damage::Head(h) => head = h,
                    Damage::Tail(t) => tail = t,
                    Damage::Value(at, value) if !members.is_empty() => {
                        let at = at.index(members.len());
                        members[at].1 = value;
                    }
                    Damage::Duplicate(at, value) if !members.is_empty() => {
                        let (key, old) = members[at.index(members.len())].clone();
                        members.push((key, value.unwrap_or(old)));
                    }
                    Damage::Member(key, value) => members.push((key, value)),
                    Damage::Value(..) | Damage::Duplicate(..) => {}
                }
            }
            let mut gaps = gaps.into_iter().cycle();
            let mut out = format!("{bom}{head}");
            out.push_str(gaps.next().unwrap_or(""));
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(comma);
                }
                out.push_str(gaps.next().unwrap_or(""));
                out.push_str(&format!("\"{key}\""));
                out.push_str(gaps.next().unwrap_or(""));
                out.push(':');
                out.push_str(gaps.next().unwrap_or(""));
                out.push_str(value);
                out.push_str(gaps.next().unwrap_or(""));
            }
            out.push('}');
            out.push_str(end);
            out.push_str(tail);
            out
        })
}

/// Byte edits: replace, insert or delete, at a position given as a fraction of the length.
fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"{}[]\":,\\ 0123456789-.eEnultrfa\t\n\r/u".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, byte), 1..4)
}

fn apply(text: &str, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for (at, op, byte) in edits {
        let len = bytes.len();
        match op {
            0 if len > 0 => bytes[at.index(len)] = *byte,
            1 => bytes.insert(at.index(len + 1), *byte),
            _ if len > 0 => {
                bytes.remove(at.index(len));
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fast_path_matches_serde_on_generated_records(line in record()) {
        check(line.as_bytes())?;
    }

    #[test]
    fn fast_path_matches_serde_on_mutated_records(line in record(), edits in edits()) {
        check(&apply(&line, &edits))?;
    }

    #[test]
    fn fast_path_matches_serde_on_jsonish_text(
        text in r#"[{}\[\]":, 0-9a-z_\-\.\\<>=?]{0,120}"#
    ) {
        check(text.as_bytes())?;
    }

    #[test]
    fn fast_path_matches_serde_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&bytes)?;
    }
}

// ---- named cases -----------------------------------------------------------------------------

#[test]
fn the_common_shapes_take_the_fast_path() {
    for line in [
        with(r#""recipient_count": 3000, "subject": "Re: hi", "label": "benign""#),
        with(r#""recipients": ["a", "b"], "references": ["<r@x>", "<s@x>"], "thread_id": "t""#),
        with(r#""recipient_count": 1, "references": " <r1@x> <r2@x>", "in_reply_to": null"#),
        with(r#""recipient_count": 1, "recipients": [], "references": []"#),
        with(r#""recipient_count": 18446744073709551615, "x": 12345678901234567890"#),
        with(r#""recipient_count": 0, "extra": true, "more": false, "n": null, "k": 12"#),
        with(r#""recipient_count": 1, "subject": "=?UTF-8?B?5Zue5aSN77yaS2FmZmU=?=""#),
        with(r#""recipient_count": 1, "subject": "回复：Kaffe é""#),
        // Single-character escapes are unescaped into a copy, as serde does.
        with(r#""recipient_count": 1, "subject": "a\"b\\c\/d\te\nf\rg\bh\fi""#),
        r#"{"timestamp":"2016-11-14T08:29:00.045Z","message_id":"<8.9d@n.example>","sender":"\"Kelly, Eilidh\" <eilidh.kelly@n.example>","recipient_count":373,"label":"benign"}"#.to_string(),
        format!("\u{feff} \t{}\r\n", with(r#""recipient_count": 1"#)),
        r#"{"timestamp": 1709542800000, "message_id": "a", "sender": "b", "recipient_count": 1}"#
            .to_string(),
        with(r#""recipient_count": 1, "recipients": null, "references": null, "subject": null"#),
    ] {
        assert!(accepted(&line), "not taken: {line}");
        assert!(decode_json(line.as_bytes(), &opts()).is_ok(), "{line}");
    }
}

#[test]
fn each_fallback_trigger_goes_to_serde() {
    for line in [
        // Wrong types of known fields: serde names them.
        with(r#""recipient_count": "3""#),
        with(r#""recipient_count": 1, "subject": 5"#),
        with(r#""recipient_count": 1, "recipients": ["a", null]"#),
        with(r#""recipient_count": 1, "references": ["a", 1]"#),
        with(r#""recipient_count": 1, "thread_id": ["t"]"#),
        // Duplicate known keys.
        with(r#""recipient_count": 1, "recipient_count": 2"#),
        with(r#""recipient_count": 1, "subject": 5, "subject": "s""#),
        // (Without the duplicate check this one would keep "s": a `null` leaves a field as is.)
        with(r#""recipient_count": 1, "subject": "s", "subject": null"#),
        // Numbers other than plain non-negative integers up to `u64::MAX`.
        with(r#""recipient_count": -1"#),
        with(r#""recipient_count": -0"#),
        with(r#""recipient_count": 1.0"#),
        with(r#""recipient_count": 1e3"#),
        with(r#""recipient_count": 1E3"#),
        with(r#""recipient_count": 1, "x": 2E+3"#),
        with(r#""recipient_count": 01"#),
        with(r#""recipient_count": 18446744073709551616"#),
        with(r#""recipient_count": 1, "x": 1.5"#),
        with(r#""recipient_count": 1, "x": -3"#),
        with(&format!(
            r#""recipient_count": 1, "x": 1{}"#,
            "0".repeat(400)
        )),
        // Nesting in unknown fields.
        with(r#""recipient_count": 1, "x": {"a": 1}"#),
        with(r#""recipient_count": 1, "x": []"#),
        // `\u` escapes, escapes in keys, invalid escapes.
        with(r#""recipient_count": 1, "thread_id": "t\u0031""#),
        with(r#""recipient_count": 1, "subject": "\ud800""#),
        with(r#""recipient_count": 1, "x": "\u0041""#),
        with(r#""recipient_count": 1, "time\u0073tamp": 5"#),
        with(r#""recipient_count": 1, "subject": "\x""#),
        // Control characters in strings.
        with("\"recipient_count\": 1, \"subject\": \"a\tb\""),
        with("\"recipient_count\": 1, \"x\": \"a\u{0}b\""),
        with("\"recipient_count\": 1, \"x\": \"a\u{1f}b\""),
        // Whitespace JSON does not have, and syntax errors.
        with("\"recipient_count\":\u{a0}1"),
        with("\"recipient_count\":\u{b}1"),
        with(r#""recipient_count": 1,"#),
        with(r#""recipient_count": 1 "subject": "s""#),
        "{}".to_string(),
        format!("{} x", with(r#""recipient_count": 1"#)),
        format!("{}{{}}", with(r#""recipient_count": 1"#)),
        format!("{}\u{a0}", with(r#""recipient_count": 1"#)),
        format!("\u{feff}\u{feff}{}", with(r#""recipient_count": 1"#)),
        with(r#""recipient_count": nul"#),
        with(r#""recipient_count": 1, "x": True"#),
        with(r#""recipient_count": 1, "recipients": ["a",]"#),
        with(r#""recipient_count": 1, "subject": "unterminated"#),
        // Valid JSON that is not an object.
        r#"["timestamp"]"#.to_string(),
        // Malformed events: the fast reader accepts the syntax, serde reports the reason.
        r#"{"message_id": "a", "sender": "b", "recipient_count": 1}"#.to_string(),
        r#"{"timestamp": "soon", "message_id": "a", "sender": "b", "recipient_count": 1}"#
            .to_string(),
    ] {
        let fast = fast::parse(&line).map(RawEvent::into_event);
        assert!(!matches!(fast, Some(Ok(_))), "taken: {line}");
        accepted(&line);
    }
}

#[test]
fn malformed_records_keep_their_reasons() {
    use Field::*;
    use Malformed::*;
    for (line, want) in [
        (with(r#""recipient_count": "3""#), WrongType(RecipientCount)),
        (with(r#""recipient_count": -1"#), NegativeCount),
        (with(r#""recipient_count": 1, "subject": 5, "subject": "s""#), WrongType(Subject)),
        (with(r#""recipient_count": 1,"#), NotJson),
        (with(r#""recipients": ["a", null]"#), WrongType(Recipients)),
        (with(r#""subject": "s""#), MissingField(RecipientCount)),
        (
            r#"{"timestamp": "2999-01-01T00:00:00Z", "message_id": "a", "sender": "b", "recipient_count": 1}"#.to_string(),
            FutureTimestamp,
        ),
    ] {
        assert_eq!(decode_json(line.as_bytes(), &opts()).map(|_| ()), Err(want), "{line}");
        accepted(&line);
    }
}

/// The generator's `mixed` stream, what the benchmarks and replay read: every line agrees, and
/// every well-formed line takes the fast path.
#[test]
fn the_mixed_stream_agrees_and_takes_the_fast_path() {
    use crate::generate::{generate, GenerateOptions, Scenario};
    let mut data = Vec::new();
    let options = GenerateOptions {
        scenario: Scenario::Mixed,
        seed: 7,
        events: Some(20_000),
    };
    generate(&options, &mut data).expect("generate into memory");
    let (mut ok, mut fast) = (0, 0);
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let taken = check(line).unwrap_or_else(|e| panic!("{e}"));
        let good = decode_json(line, &opts()).is_ok();
        ok += usize::from(good);
        fast += usize::from(taken && good);
    }
    assert!(ok > 19_000, "{ok}");
    assert_eq!(fast, ok);
}

/// The generators are not vacuous: many generated records are well-formed and take the fast
/// path, and many are refused or fall back.
#[test]
fn generated_records_exercise_both_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = record();
    let (mut fast, mut good, mut total) = (0, 0, 0);
    for _ in 0..2000 {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let line = tree.current();
        total += 1;
        fast += usize::from(accepted(&line));
        good += usize::from(decode_json(line.as_bytes(), &opts()).is_ok());
    }
    eprintln!("generated {total}: {good} well-formed, {fast} read by the fast path");
    assert!(fast * 5 > total, "{fast} of {total}");
    assert!(good * 5 > total, "{good} of {total}");
    assert!((total - fast) * 4 > total, "{fast} of {total}");
}

/// The eight-at-a-time scan finds the first stop byte exactly, wherever it is.
#[test]
fn scan_finds_the_first_stop_byte() {
    for len in 0..40 {
        for at in 0..=len {
            for stop in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
                for filler in [b'a', 0x20, 0x21, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
                    let mut bytes = vec![filler; len];
                    if at < len {
                        bytes[at] = stop;
                        // Stops after the first must not matter.
                        for later in bytes.iter_mut().skip(at + 1).step_by(3) {
                            *later = b'"';
                        }
                    }
                    let reader = fast::Reader::over(&bytes);
                    let want = (at < len).then_some(at);
                    assert_eq!(reader.scan(0), want, "{bytes:?}");
                }
            }
        }
    }
}
