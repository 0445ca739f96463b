//! Decoding tests; two of their fixtures (`opts`, `with`) also serve the fast-path tests.

use super::*;

const NOW: Millis = 1_709_550_000_000; // 2024-03-04T11:00:00Z

pub(super) fn opts() -> DecodeOptions {
    DecodeOptions {
        now: NOW,
        max_future_skew: 5 * 60_000,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
    }
}

fn decode(text: &str) -> Result<Event<'static>, Malformed> {
    decode_json(text.as_bytes(), &opts()).map(Event::into_owned)
}

const BASE: &str =
    r#""timestamp": "2024-03-04T09:00:00.000Z", "message_id": "<m1@x>", "sender": "Ann <A@X>""#;

pub(super) fn with(extra: &str) -> String {
    format!("{{{BASE}, {extra}}}")
}

#[test]
fn decodes_a_full_event_borrowing_its_strings() {
    let line = with(
        r#""recipient_count": 3000, "thread_id": " t1 ", "in_reply_to": "<p@x> (c)",
           "references": ["<root@x>", "<mid@x>"], "subject": "Re: hi", "label": "benign""#,
    );
    let e = decode_json(line.as_bytes(), &opts()).unwrap();
    assert_eq!(e.timestamp, 1_709_542_800_000);
    assert!(matches!(e.message_id, Cow::Borrowed("m1@x")));
    assert_eq!(e.sender, "A@X");
    assert_eq!(e.recipient_count, 3000);
    assert_eq!(e.thread_id.as_deref(), Some("t1"));
    assert_eq!(e.in_reply_to.as_deref(), Some("p@x"));
    assert_eq!(e.references_root.as_deref(), Some("root@x"));
    assert!(matches!(e.subject, Some(Cow::Borrowed("Re: hi"))));
    assert!(matches!(e.sender, Cow::Borrowed("A@X")));
}

#[test]
fn epoch_millis_and_recipients_array() {
    let e = decode(
        r#"{"timestamp": 1709542800000, "message_id": "a", "sender": "b", "recipients": ["x", "y", "z"]}"#,
    )
    .unwrap();
    assert_eq!(e.timestamp, 1_709_542_800_000);
    assert_eq!(e.recipient_count, 3);
}

#[test]
fn recipient_count_wins_over_recipients() {
    let e = decode(&with(r#""recipient_count": 7, "recipients": ["x"]"#)).unwrap();
    assert_eq!(e.recipient_count, 7);
}

#[test]
fn nulls_are_absent() {
    let e = decode(&with(
        r#""recipient_count": null, "recipients": ["x"], "thread_id": null, "subject": null, "references": null, "in_reply_to": null"#,
    ))
    .unwrap();
    assert_eq!(e.recipient_count, 1);
    assert_eq!(
        (e.thread_id, e.subject, e.references_root),
        (None, None, None)
    );
    assert_eq!(
        decode(r#"{"timestamp": null, "message_id": "a", "sender": "b", "recipient_count": 1}"#),
        Err(Malformed::MissingField(Field::Timestamp))
    );
}

#[test]
fn references_as_string_take_the_first_entry() {
    let e = decode(&with(
        r#""recipient_count": 1, "references": "  <r1@x>   <r2@x>""#,
    ))
    .unwrap();
    assert_eq!(e.references_root.as_deref(), Some("r1@x"));
    let e = decode(&with(
        r#""recipient_count": 1, "references": ["", "<>", "<r2@x>"]"#,
    ))
    .unwrap();
    assert_eq!(e.references_root.as_deref(), Some("r2@x"));
    let e = decode(&with(r#""recipient_count": 1, "references": []"#)).unwrap();
    assert_eq!(e.references_root, None);
}

#[test]
fn escaped_strings_and_encoded_subjects_are_decoded() {
    let e = decode(&with(
        r#""recipient_count": 1, "subject": "=?UTF-8?B?5Zue5aSN77yaS2FmZmU=?=", "thread_id": "t\u0031""#,
    ))
    .unwrap();
    assert_eq!(e.subject.as_deref(), Some("回复：Kaffe"));
    assert_eq!(e.thread_id.as_deref(), Some("t1"));
}

#[test]
fn blank_subject_and_ids_are_absent() {
    let e = decode(&with(
        r#""recipient_count": 1, "subject": "   ", "thread_id": "  ""#,
    ))
    .unwrap();
    assert_eq!((e.subject, e.thread_id), (None, None));
    let e = decode(&with(
        r#""recipient_count": 1, "subject": "=?UTF-8?B?IA==?=""#,
    ))
    .unwrap();
    assert_eq!(e.subject, None);
}

#[test]
fn every_malformed_reason() {
    use Field::*;
    use Malformed::*;
    let cases: Vec<(String, Malformed)> = vec![
        ("".into(), Empty),
        ("   \r".into(), Empty),
        ("{oops".into(), NotJson),
        (r#"{"timestamp": 1}  trailing"#.into(), NotJson),
        ("[]".into(), NotObject),
        ("null".into(), NotObject),
        ("42".into(), NotObject),
        (r#""text""#.into(), NotObject),
        (r#"{"message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), MissingField(Timestamp)),
        (r#"{"timestamp": 1, "sender": "b", "recipient_count": 1}"#.into(), MissingField(MessageId)),
        (r#"{"timestamp": 1, "message_id": "a", "recipient_count": 1}"#.into(), MissingField(Sender)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b"}"#.into(), MissingField(RecipientCount)),
        (r#"{"timestamp": true, "message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), WrongType(Timestamp)),
        (r#"{"timestamp": 1.5, "message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), WrongType(Timestamp)),
        (r#"{"timestamp": 1, "message_id": 7, "sender": "b", "recipient_count": 1}"#.into(), WrongType(MessageId)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": ["b"], "recipient_count": 1}"#.into(), WrongType(Sender)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": "9"}"#.into(), WrongType(RecipientCount)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 9.5}"#.into(), WrongType(RecipientCount)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 1e30}"#.into(), WrongType(RecipientCount)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipients": ["x", 1]}"#.into(), WrongType(Recipients)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipients": "x"}"#.into(), WrongType(Recipients)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 1, "thread_id": 5}"#.into(), WrongType(ThreadId)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 1, "in_reply_to": {}}"#.into(), WrongType(InReplyTo)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 1, "references": [1]}"#.into(), WrongType(References)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 1, "references": 3}"#.into(), WrongType(References)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 1, "subject": false}"#.into(), WrongType(Subject)),
        (r#"{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": -3}"#.into(), NegativeCount),
        (r#"{"timestamp": "soon", "message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), BadTimestamp),
        (r#"{"timestamp": "2024-03-04T09:00:00", "message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), BadTimestamp),
        (r#"{"timestamp": -5, "message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), BadTimestamp),
        (r#"{"timestamp": 99999999999999999999, "message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), WrongType(Timestamp)),
        (r#"{"timestamp": "2999-01-01T00:00:00Z", "message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), FutureTimestamp),
        (r#"{"timestamp": "9999-12-31T23:59:59Z", "message_id": "a", "sender": "b", "recipient_count": 1}"#.into(), FutureTimestamp),
        // Deep nesting is valid JSON; it must be refused without exhausting the stack.
        (format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)), NotObject),
        (format!(r#"{{"timestamp": 1, "message_id": "a", "sender": "b", "recipients": {}{}}}"#, "[".repeat(10_000), "]".repeat(10_000)), WrongType(Recipients)),
        (format!(r#"{{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 1, "x": {}"#, "[".repeat(10_000)), NotJson),
    ];
    for (line, want) in cases {
        assert_eq!(
            decode(&line).map(|_| ()),
            Err(want),
            "line: {}",
            &line[..line.len().min(120)]
        );
        assert!(!want.label().is_empty());
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn deeply_nested_unknown_fields_are_skipped() {
    let line = format!(
        r#"{{"timestamp": 1, "message_id": "a", "sender": "b", "recipient_count": 1, "x": {}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(decode(&line).is_ok());
}

#[test]
fn the_utf8_check_agrees_with_the_standard_library() {
    // Short and long (past the vector width) records, with every kind of invalid sequence at
    // the start, in the middle and at the end: overlong, surrogate, above U+10FFFF, truncated,
    // a stray continuation byte.
    let bad: [&[u8]; 6] = [
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"\x80",
        b"\xff",
    ];
    let good = "a Søren 回复 \u{1F600} z".as_bytes();
    for filler in [0, 7, 70, 300] {
        let pad = vec![b'x'; filler];
        let valid = [pad.as_slice(), good, pad.as_slice()].concat();
        assert_eq!(utf8_text(&valid).ok(), std::str::from_utf8(&valid).ok());
        for sequence in bad {
            for record in [
                [sequence, &pad, good].concat(),
                [&pad, sequence, good].concat(),
                [good, &pad, sequence].concat(),
            ] {
                assert!(std::str::from_utf8(&record).is_err());
                assert_eq!(utf8_text(&record), Err(Malformed::InvalidUtf8));
            }
        }
    }
}

#[test]
fn invalid_utf8_and_oversized_records() {
    let mut bytes = with(r#""recipient_count": 1, "subject": "X""#).into_bytes();
    let at = bytes.len() - 3;
    bytes[at] = 0xff;
    assert_eq!(
        decode_json(&bytes, &opts()).map(|_| ()),
        Err(Malformed::InvalidUtf8)
    );
    let small = DecodeOptions {
        max_record_bytes: 10,
        ..opts()
    };
    assert_eq!(
        decode_json(with(r#""recipient_count": 1"#).as_bytes(), &small).map(|_| ()),
        Err(Malformed::TooLarge)
    );
}

#[test]
fn timestamps_within_the_skew_are_fine() {
    let at = |ms: Millis| {
        format!(r#"{{"timestamp": {ms}, "message_id": "a", "sender": "b", "recipient_count": 1}}"#)
    };
    assert!(decode(&at(NOW + 5 * 60_000)).is_ok());
    assert_eq!(
        decode(&at(NOW + 5 * 60_000 + 1)).map(|_| ()),
        Err(Malformed::FutureTimestamp)
    );
}

#[test]
fn crlf_and_unknown_fields_are_fine() {
    let line = with(r#""recipient_count": 1, "extra": {"deep": [1, 2, {"x": null}]}"#) + "\r";
    assert!(decode(&line).is_ok());
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode_json(&bytes, &opts());
    }

    #[test]
    fn never_panics_on_jsonish_text(text in r#"[{}\[\]":,0-9a-z \-\.<>=?]{0,200}"#) {
        let _ = decode_json(text.as_bytes(), &opts());
    }
}

#[test]
fn every_field_name_is_a_recognised_key() {
    use serde::de::IntoDeserializer;
    for field in Field::ALL {
        let key: Result<fields::Key, serde::de::value::Error> =
            serde::Deserialize::deserialize(field.name().into_deserializer());
        assert_eq!(key.map(|k| k.0), Ok(Some(field)));
    }
}

#[test]
fn ids_and_senders_longer_than_a_header_line_are_malformed() {
    use crate::event::MAX_ID_BYTES;
    let at_limit = "i".repeat(MAX_ID_BYTES);
    let over = "i".repeat(MAX_ID_BYTES + 1);
    let event = |field: &str, value: &str| {
        let line = format!(
            r#"{{"timestamp": 1709542800000, "message_id": "m", "sender": "s", "recipient_count": 1, "{field}": "{value}"}}"#
        );
        decode(&line)
    };
    for (name, field) in [
        ("message_id", Field::MessageId),
        ("sender", Field::Sender),
        ("thread_id", Field::ThreadId),
        ("in_reply_to", Field::InReplyTo),
        ("references", Field::References),
    ] {
        assert!(event(name, &at_limit).is_ok(), "{name} at the limit");
        assert_eq!(event(name, &over), Err(Malformed::TooLong(field)), "{name}");
        // The limit applies after normalization: surrounding spaces do not count.
        assert!(event(name, &format!("  {at_limit}  ")).is_ok(), "{name}");
    }
    // Only the root of References is kept, so only the root is measured.
    let long_tail = format!(r#""references": ["<r@x>", "<{over}>"]"#);
    assert!(decode(&with(&format!(r#""recipient_count": 1, {long_tail}"#))).is_ok());
    let reason = Malformed::TooLong(Field::InReplyTo);
    assert_eq!(reason.label(), "too_long_in_reply_to");
    assert_eq!(
        reason.to_string(),
        "field `in_reply_to` longer than 998 bytes"
    );
}

#[test]
fn negative_zero_is_a_count_of_zero_and_other_floats_the_wrong_type() {
    let count = |text: &str| decode(&with(&format!(r#""recipient_count": {text}"#)));
    assert_eq!(count("-0").map(|e| e.recipient_count), Ok(0));
    for text in ["3000.0", "1e3", "0.0", "9.5"] {
        assert_eq!(
            count(text),
            Err(Malformed::WrongType(Field::RecipientCount)),
            "{text}"
        );
    }
}
