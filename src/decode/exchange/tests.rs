use super::*;
use crate::decode::outcome::{Dropped, LineOutcome};
use crate::decode::DEFAULT_MAX_RECORD_BYTES;
use crate::event::Event;

const FIELDS: &str = "#Fields: date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,event-id,internal-message-id,message-id,network-message-id,recipient-address,recipient-status,total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,schema-version";

fn opts() -> DecodeOptions {
    DecodeOptions {
        now: parse_rfc3339_millis("2026-11-25T12:00:00Z").unwrap_or_default(),
        max_future_skew: 5 * 60_000,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
    }
}

/// A row in the Exchange 2013+ field order. One argument per column that varies keeps each
/// test row readable as the log line it stands for.
#[allow(clippy::too_many_arguments)]
fn row(
    at: &str,
    event: &str,
    internal: &str,
    recipients: &str,
    count: &str,
    related: &str,
    reference: &str,
    subject: &str,
) -> String {
    format!(
        "{at},10.0.0.9,PC1,10.0.0.1,EX01,08DF;250 2.0.0 OK,EX01\\Default,SMTP,{event},{internal},<m1@x.org>,1f2e,{recipients},250 2.1.5,4096,{count},{related},{reference},{subject},ann@x.org,ann@x.org,,Originating,,10.0.0.9,10.0.0.1,,Email,,15.2"
    )
}

/// A RECEIVE row of message `internal` to one list, at 10:00.
fn receive(internal: &str, reference: &str, subject: &str) -> String {
    row(
        "2026-11-25T10:00:00Z",
        "RECEIVE",
        internal,
        "all@x.org",
        "1",
        "",
        reference,
        subject,
    )
}

fn parse_all(
    parser: &mut ExchangeParser,
    lines: &[String],
) -> Vec<Result<ExchangeRecord<'static>, Malformed>> {
    lines
        .iter()
        .map(|l| {
            parser
                .parse(l.as_bytes(), &opts())
                .map(|r| r.map(ExchangeRow::into_owned))
        })
        .collect()
}

#[test]
fn header_lines_set_the_layout_and_rows_are_read_by_name() {
    let mut parser = ExchangeParser::new("");
    let lines = [
        "\u{feff}#Software: Microsoft Exchange Server".to_string(),
        "#Version: 15.02.1118.007".into(),
        "#Log-type: Message Tracking Log".into(),
        "#Date: 2026-11-25T10:00:00.000Z".into(),
        FIELDS.into(),
        row(
            "2026-11-25T10:00:00.125Z",
            "RECEIVE",
            "42",
            "all-staff@x.org",
            "1",
            "",
            "",
            "\"RE: Lunch, today\"",
        ),
        row(
            "2026-11-25T10:00:00.300Z",
            "DELIVER",
            "42",
            "b@x.org",
            "1",
            "",
            "",
            "x",
        ),
    ];
    let got = parse_all(&mut parser, &lines);
    for header in &got[..5] {
        assert_eq!(header, &Ok(Err(Ignored::HeaderLine)));
    }
    let Ok(Ok(receive)) = &got[5] else {
        panic!("{:?}", got[5]);
    };
    assert_eq!(receive.kind, RowKind::Receive);
    assert_eq!(
        receive.timestamp,
        parse_rfc3339_millis("2026-11-25T10:00:00.125Z").unwrap_or_default()
    );
    assert_eq!(receive.subject, "RE: Lunch, today");
    assert_eq!(receive.message_id, "<m1@x.org>");
    assert_eq!(receive.internal_message_id, "42");
    assert_eq!(receive.sender, "ann@x.org");
    assert_eq!(receive.recipient_count, 1);
    assert_eq!(got[6], Ok(Err(Ignored::OtherEvent)));
}

#[test]
fn another_field_order_is_followed() {
    let mut parser = ExchangeParser::new("");
    let lines = [
        "#Fields: event-id,date-time,message-id,internal-message-id,recipient-count,sender-address,message-subject".to_string(),
        "RECEIVE,2026-11-25T10:00:00Z,<z@x>,7,,b@x,\"say \"\"hi\"\"\"".into(),
    ];
    let got = parse_all(&mut parser, &lines);
    let Ok(Ok(r)) = &got[1] else {
        panic!("{:?}", got[1])
    };
    assert_eq!(
        (r.message_id.as_ref(), r.sender.as_ref(), r.subject.as_ref()),
        ("<z@x>", "b@x", "say \"hi\"")
    );
    // No recipient-address column and an empty count: zero.
    assert_eq!(r.recipient_count, 0);
}

#[test]
fn rows_without_a_layout_and_broken_rows_are_malformed() {
    let receive = row(
        "2026-11-25T10:00:00Z",
        "RECEIVE",
        "1",
        "a@x",
        "1",
        "",
        "",
        "s",
    );
    let mut parser = ExchangeParser::new("");
    assert_eq!(
        parser.parse(receive.as_bytes(), &opts()),
        Err(Malformed::NoFieldsHeader)
    );
    // The configured field list stands in for a missing header line.
    let configured = FIELDS.trim_start_matches("#Fields: ");
    let mut parser = ExchangeParser::new(configured);
    assert!(matches!(
        parser.parse(receive.as_bytes(), &opts()),
        Ok(Ok(_))
    ));
    let cases = [
        (
            row("yesterday", "RECEIVE", "1", "a@x", "1", "", "", "s"),
            Malformed::BadTimestamp,
        ),
        (
            row(
                "2026-11-25T13:00:00Z",
                "RECEIVE",
                "1",
                "a@x",
                "1",
                "",
                "",
                "s",
            ),
            Malformed::FutureTimestamp,
        ),
        (
            row(
                "2026-11-25T10:00:00Z",
                "RECEIVE",
                "1",
                "a@x",
                "many",
                "",
                "",
                "s",
            ),
            Malformed::BadExchangeRow,
        ),
        (
            row("2026-11-25T10:00:00Z", "", "1", "a@x", "1", "", "", "s"),
            Malformed::BadExchangeRow,
        ),
        (
            row(
                "2026-11-25T10:00:00Z",
                "RECEIVE",
                "1",
                "a@x",
                "1",
                "",
                "",
                "\"open",
            ),
            Malformed::BadCsv,
        ),
        (
            "2026-11-25T10:00:00Z,short".to_string(),
            Malformed::BadExchangeRow,
        ),
        (String::new(), Malformed::Empty),
    ];
    for (text, want) in cases {
        assert_eq!(
            parser.parse(text.as_bytes(), &opts()).err(),
            Some(want),
            "{text}"
        );
    }
    assert_eq!(
        parser.parse(b"#Fields: client-ip,source", &opts()).err(),
        Some(Malformed::BadExchangeRow)
    );
    assert_eq!(
        parser.parse(b"\xff,\xfe", &opts()).err(),
        Some(Malformed::InvalidUtf8)
    );
}

fn correlate(lines: &[String]) -> (Vec<Event<'static>>, ExchangeCorrelator<u64>) {
    let mut parser = ExchangeParser::new("");
    let mut c = ExchangeCorrelator::new(ExchangeSettings {
        expand_wait: 30_000,
        max_pending: 100,
        max_pending_bytes: usize::MAX,
    });
    let mut out = Vec::new();
    for (token, l) in lines.iter().enumerate() {
        if let Ok(Ok(row)) = parser.parse(l.as_bytes(), &opts()) {
            c.expire(row.timestamp, &mut out);
            c.accept(&row, token as u64, &mut out);
        }
    }
    c.flush(&mut out);
    (out, c)
}

#[test]
fn distribution_lists_count_after_expansion() {
    let members = |n: usize, domain: &str| -> String {
        let list: Vec<String> = (0..n).map(|i| format!("u{i}@{domain}")).collect();
        format!("\"{}\"", list.join(";"))
    };
    let lines = [
        FIELDS.to_string(),
        // To the all-staff list and one person directly.
        row(
            "2026-11-25T10:00:00Z",
            "RECEIVE",
            "42",
            "all-staff@x.org;boss@x.org",
            "2",
            "",
            "<orig@x.org>",
            "RE: Lunch",
        ),
        // all-staff holds 2,000 people and the nested list sales (so 2,001 entries), logged
        // over two rows; sales holds 1,000.
        row(
            "2026-11-25T10:00:01Z",
            "EXPAND",
            "42",
            &members(1500, "x.org"),
            "1500",
            "all-staff@x.org",
            "",
            "RE: Lunch",
        ),
        row(
            "2026-11-25T10:00:01Z",
            "EXPAND",
            "42",
            &members(501, "y.org"),
            "",
            "All-Staff@x.org",
            "",
            "RE: Lunch",
        ),
        row(
            "2026-11-25T10:00:02Z",
            "EXPAND",
            "42",
            &members(1000, "s.org"),
            "1000",
            "sales@x.org",
            "",
            "RE: Lunch",
        ),
        // An EXPAND for a message never received here.
        row(
            "2026-11-25T10:00:02Z",
            "EXPAND",
            "99",
            "a@x",
            "1",
            "l@x",
            "",
            "other",
        ),
    ];
    let (events, c) = correlate(&lines);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    // boss + 2,000 + 1,000: each list removed once, its members added.
    assert_eq!(e.recipient_count, 3001);
    assert_eq!(e.message_id, "m1@x.org");
    assert_eq!(e.sender, "ann@x.org");
    assert_eq!(e.subject.as_deref(), Some("RE: Lunch"));
    assert_eq!(e.references_root.as_deref(), Some("orig@x.org"));
    assert_eq!(e.in_reply_to.as_deref(), Some("orig@x.org"));
    assert_eq!(
        e.timestamp,
        parse_rfc3339_millis("2026-11-25T10:00:00Z").unwrap_or_default()
    );
    assert_eq!(c.stats().emitted, 1);
}

#[test]
fn the_event_waits_for_expansion_then_goes() {
    let mut parser = ExchangeParser::new(FIELDS.trim_start_matches("#Fields: "));
    let mut c = ExchangeCorrelator::new(ExchangeSettings {
        expand_wait: 30_000,
        max_pending: 100,
        max_pending_bytes: usize::MAX,
    });
    let mut out = Vec::new();
    let receive = row(
        "2026-11-25T10:00:00Z",
        "RECEIVE",
        "42",
        "list@x.org",
        "1",
        "",
        "",
        "s",
    );
    let Ok(Ok(r)) = parser.parse(receive.as_bytes(), &opts()) else {
        panic!()
    };
    assert_eq!(c.accept(&r, 5u64, &mut out), LineOutcome::Absorbed);
    let expand = row(
        "2026-11-25T10:00:10Z",
        "EXPAND",
        "42",
        "a@x;b@x;c@x",
        "3",
        "list@x.org",
        "",
        "s",
    );
    let Ok(Ok(x)) = parser.parse(expand.as_bytes(), &opts()) else {
        panic!()
    };
    c.accept(&x, 6, &mut out);
    assert_eq!(c.oldest_pending_token(), Some(5));
    c.expire(
        parse_rfc3339_millis("2026-11-25T10:00:29Z").unwrap_or_default(),
        &mut out,
    );
    assert!(out.is_empty());
    c.expire(
        parse_rfc3339_millis("2026-11-25T10:00:30Z").unwrap_or_default(),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].recipient_count, 3);
    assert_eq!(c.oldest_pending_token(), None);
    // A late EXPAND finds nothing to join.
    assert_eq!(
        c.accept(&x, 7, &mut out),
        LineOutcome::Ignored(Ignored::Unmatched)
    );
}

proptest::proptest! {
    #[test]
    fn never_panics(text in r#"[A-Za-z0-9,;"<>@:\-\.# ]{0,200}"#) {
        let mut parser = ExchangeParser::new(FIELDS.trim_start_matches("#Fields: "));
        if let Ok(Ok(row)) = parser.parse(text.as_bytes(), &opts()) {
            let mut c = ExchangeCorrelator::new(ExchangeSettings::default());
            let mut out = Vec::new();
            c.accept(&row, 0u64, &mut out);
            c.flush(&mut out);
        }
    }
}

#[test]
fn texts_too_long_to_keep_drop_the_message_and_long_texts_are_bounded() {
    use crate::event::MAX_ID_BYTES;
    let long = "i".repeat(MAX_ID_BYTES + 1);
    // An id of the key past the limit makes the row malformed, as in a JSON event.
    let mut parser = ExchangeParser::new("");
    let rows = parse_all(
        &mut parser,
        &[FIELDS.to_string(), receive(&long, "", "RE: Lunch")],
    );
    assert_eq!(
        rows[1].as_ref().err(),
        Some(&Malformed::TooLong(Field::MessageId))
    );
    // So does a message id past it; one long only outside its brackets is measured normalized.
    let with_id = |id: &str| receive("42", "", "RE: Lunch").replace("<m1@x.org>", id);
    let rows = parse_all(
        &mut parser,
        &[
            with_id(&format!("<{long}>")),
            with_id(&format!("<m1@x.org> ({long})")),
        ],
    );
    assert_eq!(
        rows[0].as_ref().err(),
        Some(&Malformed::TooLong(Field::MessageId))
    );
    assert!(rows[1].is_ok(), "{:?}", rows[1].as_ref().err());
    // A reference id past it drops the message, counted once.
    for lines in [
        [
            FIELDS.to_string(),
            receive("42", &format!("<{long}>"), "RE: Lunch"),
        ],
        [
            FIELDS.to_string(),
            receive("42", &format!("<orig@x.org>;<{long}>"), "RE: Lunch"),
        ],
    ] {
        let (events, c) = correlate(&lines);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(c.stats().dropped(Dropped::TooLong), 1);
        assert_eq!(c.pending(), 0);
    }
    // A group name as long as a row is remembered by its hash, once whatever its case; a
    // subject is kept decoded and cut to 4 KiB.
    let group = format!("{}@x.org", "G".repeat(5_000));
    let expand = |related: &str| {
        row(
            "2026-11-25T10:00:01Z",
            "EXPAND",
            "42",
            "a@x.org;b@x.org",
            "2",
            related,
            "",
            "",
        )
    };
    let lines = [
        FIELDS.to_string(),
        receive("42", "<orig@x.org>", &format!("RE: {}", "s".repeat(10_000))),
        expand(&group),
        expand(&group.to_lowercase()),
    ];
    let (events, _) = correlate(&lines);
    // 1 received (the group) - 1 group + 2 + 2 members.
    assert_eq!(events[0].recipient_count, 4);
    let subject = events[0].subject.as_deref().unwrap_or_default();
    assert_eq!(subject.len(), 4096);
    assert!(subject.starts_with("RE: sss"));
}

#[test]
fn the_bytes_waiting_are_bounded_whatever_the_rows_hold() {
    let mut parser = ExchangeParser::new(FIELDS.trim_start_matches("#Fields: "));
    let bound = 1 << 20;
    let mut c = ExchangeCorrelator::new(ExchangeSettings {
        expand_wait: 30_000,
        max_pending: 100_000,
        max_pending_bytes: bound,
    });
    let mut out = Vec::new();
    let mut accept = |c: &mut ExchangeCorrelator<u64>, text: &str, token: u64| {
        let Ok(Ok(row)) = parser.parse(text.as_bytes(), &opts()) else {
            panic!("not a row: {text}");
        };
        c.accept(&row, token, &mut out)
    };
    // A real message weighs a few hundred bytes.
    accept(&mut c, &receive("1", "<orig@x.org>", "RE: Lunch"), 0);
    let real = c.pending_bytes();
    assert!((200..1_000).contains(&real), "{real}");
    // Its EXPAND rows' groups count as it keeps them.
    for group in 0..100 {
        let expand = row(
            "2026-11-25T10:00:00Z",
            "EXPAND",
            "1",
            "a@x.org",
            "30",
            &format!("list{group}@x.org"),
            "",
            "RE: Lunch",
        );
        assert_eq!(accept(&mut c, &expand, 1), LineOutcome::Absorbed);
    }
    assert!(c.pending_bytes() >= real + 100 * 8, "{}", c.pending_bytes());
    // Hostile rows: 4 KiB subjects. The count bound is far off; the byte bound holds, and
    // the messages evicted are emitted early (their RECEIVE row is there).
    let subject = "s".repeat(4096);
    let messages = 1_000;
    for n in 0..messages {
        accept(
            &mut c,
            &receive(&format!("x{n}"), "<orig@x.org>", &subject),
            2 + n,
        );
        assert!(c.pending_bytes() <= bound, "{}", c.pending_bytes());
    }
    let held = c.pending() as u64;
    assert!((100..300).contains(&held), "{held}");
    assert_eq!(c.stats().evicted_emitted, messages + 1 - held);
    assert_eq!(out.len() as u64, messages + 1 - held);
    // One recipient, a list, replaced by its 100 lists' 30 members each.
    assert_eq!(out[0].recipient_count, 1 + 100 * 30 - 100);
    assert_eq!(out[0].subject.as_deref(), Some("RE: Lunch"));
}
