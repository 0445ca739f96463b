//! Property tests (proptest; nightly is not available here, so no `cargo fuzz`) for the three
//! places hostile input goes first: decoding, thread-key derivation and subject normalization.
//! Case counts are bounded so the whole file runs in seconds in a debug build; a crash found
//! here becomes a named regression test at the bottom.

use base64::Engine as _;
use proptest::prelude::*;
use std::borrow::Cow;
use stormwatch::alert::Alert;
use stormwatch::config::Config;
use stormwatch::decode::{decode_json, DecodeOptions, DEFAULT_MAX_RECORD_BYTES};
use stormwatch::engine::Engine;
use stormwatch::event::{normalize_message_id, Event, MAX_ID_BYTES};
use stormwatch::subject::{analyze_into, decode_rfc2047, first_prefix, normalize, PrefixKind};

/// 2024-03-04T09:00:00Z
const T0: i64 = 1_709_542_800_000;

fn options() -> DecodeOptions {
    DecodeOptions {
        now: T0 + 3_600_000,
        max_future_skew: 300_000,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
    }
}

// ---- generators ----------------------------------------------------------------------------

/// Charsets an MTA log may name, real and not.
const CHARSETS: &[&str] = &[
    "UTF-8",
    "utf-8",
    "UTF-8*en",
    "ISO-8859-1",
    "iso-8859-15",
    "windows-1252",
    "KOI8-R",
    "GB2312",
    "Shift_JIS",
    "UTF-16",
    "x-unknown",
    "",
];

/// One RFC 2047 encoded word: a correct encoding of arbitrary text, or a damaged one.
fn encoded_word() -> impl Strategy<Value = String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    (
        prop::sample::select(CHARSETS),
        prop::sample::select(&["B", "b", "Q", "q", "X", ""][..]),
        any::<String>(),
        0u8..4,
    )
        .prop_map(move |(charset, encoding, text, damage)| {
            let payload = match encoding {
                "B" | "b" => b64(&text),
                _ => text
                    .bytes()
                    .map(|b| match b {
                        b' ' => "_".to_owned(),
                        b'!'..=b'<' | b'>' | b'@'..=b'^' | b'`'..=b'~' => (b as char).to_string(),
                        _ => format!("={b:02X}"),
                    })
                    .collect(),
            };
            match damage {
                0 => format!("=?{charset}?{encoding}?{payload}?="),
                1 => format!("=?{charset}?{encoding}?{payload}"),
                2 => format!("=?{charset}?{encoding}?{payload}=?="),
                _ => format!("=?{charset}?{encoding}?{text}?="),
            }
        })
}

/// Subjects made of encoded words, reply/forward prefixes, list tags, odd whitespace and text.
fn subject() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        encoded_word(),
        prop::sample::select(
            &[
                "Re:",
                "RE :",
                "Aw:",
                "Fwd:",
                "Re[2]:",
                "回复：",
                "[all-staff]",
                " ",
                "\t",
                "\r\n",
                "\u{a0}",
                "\u{3000}",
                "İ",
                "ß",
                "Σ",
                "x",
                "Research",
                "=?",
                "?=",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>(),
        // Long text: two or more of these pass the most of a subject a thread key keeps.
        Just("Quarterly résultats ".repeat(30)),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// An arbitrary JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        subject().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "timestamp",
    "message_id",
    "sender",
    "recipient_count",
    "recipients",
    "thread_id",
    "in_reply_to",
    "references",
    "subject",
    "label",
];

/// An object with the schema's field names holding arbitrary values (often the right type).
fn record() -> impl Strategy<Value = serde_json::Value> {
    prop::collection::btree_map(prop::sample::select(FIELDS), json_value(), 0..10).prop_map(|m| {
        serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    })
}

/// The header fields of a reply: any of them absent, empty, blank or arbitrary.
#[derive(Debug, Clone)]
struct Headers {
    thread_id: Option<String>,
    references: Option<serde_json::Value>,
    in_reply_to: Option<String>,
    subject: Option<String>,
}

fn optional_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        Just(Some("  ".to_owned())),
        Just(Some("<>".to_owned())),
        "[ <>a-z@.]{1,12}".prop_map(Some),
        any::<String>().prop_map(Some),
    ]
}

fn headers() -> impl Strategy<Value = Headers> {
    let references = prop_oneof![
        Just(None),
        optional_text().prop_map(|t| t.map(serde_json::Value::from)),
        prop::collection::vec(optional_text(), 0..4).prop_map(|v| Some(
            v.into_iter()
                .map(|t| serde_json::Value::from(t.unwrap_or_default()))
                .collect()
        )),
    ];
    (
        optional_text(),
        references,
        optional_text(),
        prop_oneof![Just(None), subject().prop_map(Some), optional_text()],
    )
        .prop_map(|(thread_id, references, in_reply_to, subject)| Headers {
            thread_id,
            references,
            in_reply_to,
            subject,
        })
}

// ---- the thread-key model ------------------------------------------------------------------

/// Contract section 2 for a fresh engine fed replies that all carry `headers`: the thread key
/// they share, or `None` when they are not replies (no In-Reply-To, no References root, no reply
/// prefix) or have nothing to join on (each is then its own thread, and no storm can form).
fn model_key(h: &Headers) -> Option<String> {
    let root = match &h.references {
        Some(serde_json::Value::String(s)) => s
            .split_whitespace()
            .map(normalize_message_id)
            .find(|r| !r.is_empty()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(normalize_message_id)
            .find(|r| !r.is_empty()),
        _ => None,
    };
    let parent = h
        .in_reply_to
        .as_deref()
        .map(normalize_message_id)
        .filter(|p| !p.is_empty());
    let decoded = h
        .subject
        .as_deref()
        .map(decode_rfc2047)
        .filter(|d| !d.trim().is_empty());
    let reply_subject = decoded
        .as_deref()
        .is_some_and(|d| first_prefix(d) == Some(PrefixKind::Reply));
    if root.is_none() && parent.is_none() && !reply_subject {
        return None;
    }
    if let Some(t) = h.thread_id.as_deref().map(str::trim) {
        if !t.is_empty() {
            return Some(t.to_owned());
        }
    }
    if let Some(key) = root.or(parent) {
        return Some(key.to_owned());
    }
    let normalized = normalize(decoded.as_deref().unwrap_or_default());
    // A `subject:` key is no longer than an id may be: the normalized subject counts up to
    // the last whole character within 990 bytes.
    let mut end = normalized.len().min(MAX_ID_BYTES - "subject:".len());
    while !normalized.is_char_boundary(end) {
        end -= 1;
    }
    let normalized = &normalized[..end];
    (!normalized.is_empty()).then(|| format!("subject:{normalized}"))
}

/// Three reply-alls from three senders carrying `h`, decoded from JSON as in production.
fn replies(h: &Headers) -> Vec<Vec<u8>> {
    (0..3i64)
        .map(|i| {
            let mut e = serde_json::json!({
                "timestamp": T0 + i * 1000,
                "message_id": format!("<prop{i}@model.invalid>"),
                "sender": format!("s{i}@model.invalid"),
                "recipient_count": 3000,
            });
            if let Some(t) = &h.thread_id {
                e["thread_id"] = t.clone().into();
            }
            if let Some(r) = &h.references {
                e["references"] = r.clone();
            }
            if let Some(p) = &h.in_reply_to {
                e["in_reply_to"] = p.clone().into();
            }
            if let Some(s) = &h.subject {
                e["subject"] = s.clone().into();
            }
            e.to_string().into_bytes()
        })
        .collect()
}

fn run(records: &[Vec<u8>]) -> Vec<Alert> {
    let mut engine = Engine::from_config(&Config::default());
    let mut alerts = Vec::new();
    for record in records {
        if let Ok(event) = decode_json(record, &options()) {
            engine.ingest(&event, &mut alerts);
        }
    }
    alerts
}

fn check_normalization(subject: &str) -> Result<(), TestCaseError> {
    let decoded = decode_rfc2047(subject);
    let once = normalize(&decoded);
    prop_assert_eq!(
        normalize(&once),
        once.clone(),
        "not idempotent: {:?}",
        subject
    );
    let mut analyzed = String::new();
    let kind = analyze_into(&decoded, &mut analyzed);
    prop_assert_eq!(&analyzed, &once);
    prop_assert_eq!(kind, first_prefix(&decoded));
    prop_assert!(!once.contains("  ") && once.trim() == once);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The thread key follows contract section 2 (thread_id, References root, In-Reply-To,
    /// reply subject) whatever the header text, and is the same for two engines (whose map
    /// hashers are seeded differently).
    #[test]
    fn thread_keys_follow_the_contract_and_are_deterministic(h in headers()) {
        let records = replies(&h);
        let first = run(&records);
        let second = run(&records);
        prop_assert_eq!(&first, &second);
        let key = first.first().map(|a| a.thread_key.to_string());
        prop_assert_eq!(key, model_key(&h), "{:?}", h);
        if let Some(alert) = first.first() {
            prop_assert_eq!(alert.reply_alls, 3);
        }
    }

    /// Decoding never panics on an object of schema fields holding arbitrary values, and what
    /// it accepts is normalized as the contract says.
    #[test]
    fn decode_never_panics_on_schema_shaped_records(value in record()) {
        let bytes = value.to_string().into_bytes();
        if let Ok(event) = decode_json(&bytes, &options()) {
            prop_assert!(event.timestamp >= 0);
            prop_assert!(event.thread_id.as_deref().is_none_or(|t| !t.is_empty() && t.trim() == t));
            prop_assert!(event.subject.as_deref().is_none_or(|s| !s.trim().is_empty()));
            prop_assert!(event.in_reply_to.as_deref().is_none_or(|p| !p.is_empty()));
            prop_assert!(event.references_root.as_deref().is_none_or(|r| !r.is_empty()));
            // And the engine takes whatever the decoder accepts.
            let mut engine = Engine::from_config(&Config::default());
            let mut alerts = Vec::new();
            engine.ingest(&event, &mut alerts);
            prop_assert!(alerts.is_empty());
        }
    }

    /// Decoding never panics on arbitrary bytes around a valid record (prefix/suffix garbage,
    /// cut records), and decodes the same bytes the same way twice.
    #[test]
    fn decode_is_total_and_deterministic_on_damaged_records(
        value in record(), cut in any::<prop::sample::Index>(), noise in prop::collection::vec(any::<u8>(), 0..16)
    ) {
        let mut bytes = value.to_string().into_bytes();
        let at = cut.index(bytes.len() + 1);
        bytes.truncate(at);
        bytes.extend_from_slice(&noise);
        let a = decode_json(&bytes, &options()).map(Event::into_owned);
        let b = decode_json(&bytes, &options()).map(Event::into_owned);
        prop_assert_eq!(a, b);
    }

    /// Normalization is idempotent and never panics on encoded-word soup.
    #[test]
    fn normalization_is_idempotent_on_rfc2047_input(s in subject()) {
        check_normalization(&s)?;
    }

    /// A well-formed UTF-8 B word decodes to exactly its text, alone or split over two words
    /// (an encoded word holds at least one character, RFC 2047 section 2).
    #[test]
    fn utf8_encoded_words_round_trip(text in any::<String>().prop_filter("non-empty", |t| !t.is_empty()), split in any::<prop::sample::Index>()) {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let word = format!("=?UTF-8?B?{}?=", b64(text.as_bytes()));
        prop_assert_eq!(decode_rfc2047(&word), Cow::<str>::Borrowed(&text));
        if text.len() >= 2 {
            // Split anywhere, even inside a character: adjacent words join as bytes.
            let at = 1 + split.index(text.len() - 1);
            let (a, b) = text.as_bytes().split_at(at);
            let two = format!("=?UTF-8?B?{}?= \t=?utf-8?b?{}?=", b64(a), b64(b));
            prop_assert_eq!(decode_rfc2047(&two), Cow::<str>::Borrowed(&text));
        }
    }
}
