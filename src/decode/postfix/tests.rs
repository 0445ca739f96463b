use super::*;
use crate::decode::outcome::{Dropped, LineOutcome};
use crate::decode::DEFAULT_MAX_RECORD_BYTES;
use crate::event::Event;
use crate::timefmt::parse_rfc3339_millis;

const NOW: &str = "2026-11-25T12:00:00Z";

fn ms(text: &str) -> Millis {
    parse_rfc3339_millis(text).unwrap()
}

fn opts() -> DecodeOptions {
    DecodeOptions {
        now: ms(NOW),
        max_future_skew: 5 * 60_000,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
    }
}

fn parse(text: &str) -> Result<PostfixRecord<'static>, Malformed> {
    parse_with(text, &PostfixOptions::default())
}

fn parse_with(text: &str, postfix: &PostfixOptions) -> Result<PostfixRecord<'static>, Malformed> {
    parse_postfix(text.as_bytes(), postfix, &opts()).map(|r| r.map(PostfixLine::into_owned))
}

fn line(text: &str) -> PostfixLine<'static> {
    match parse(text) {
        Ok(Ok(line)) => line,
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn reads_the_lines_of_each_kind() {
    let l = line("Nov 25 10:00:00 mx1 postfix/cleanup[2001]: 4F1A22C0E1: message-id=<orig@x.org>");
    assert_eq!(
        (l.host.as_ref(), l.queue_id.as_ref()),
        ("mx1", "4F1A22C0E1")
    );
    assert_eq!(l.kind, PostfixKind::MessageId("<orig@x.org>".into()));
    assert_eq!(l.timestamp, ms("2026-11-25T10:00:00Z"));
    let l = line("2026-11-25T10:00:00.250+00:00 mx1 postfix/cleanup[2001]: 4F1A22C0E1: info: header Subject: =?UTF-8?B?UmU6IGx1bmNo?= from mail.x.org[10.0.0.5]; from=<ann@x.org> to=<all@x.org> proto=ESMTP helo=<pc1>");
    assert_eq!(
        l.kind,
        PostfixKind::Header(HeaderName::Subject, "=?UTF-8?B?UmU6IGx1bmNo?=".into())
    );
    assert_eq!(l.timestamp, ms("2026-11-25T10:00:00.250Z"));
    let l = line("<22>1 2026-11-25T10:00:01Z mx1 postfix/qmgr 2002 - - 4F1A22C0E1: from=<ann@x.org>, size=3210, nrcpt=3000 (queue active)");
    assert_eq!(
        l.kind,
        PostfixKind::Queued {
            sender: "ann@x.org".into(),
            nrcpt: 3000
        }
    );
    assert_eq!(
        line("Nov 25 2026 10:00:09 mx1 postfix/qmgr[2002]: 4F1A22C0E1: removed").kind,
        PostfixKind::Removed
    );
}

#[test]
fn other_programs_daemons_and_lines_are_ignored_not_malformed() {
    let cases = [
        ("Nov 25 10:00:00 mx1 dovecot[99]: imap-login: Login: user=<a>", Ignored::NotPostfix),
        ("Nov 25 10:00:00 mx1 postfix/smtpd[1]: 4F1A22C0E1: client=pc1[10.0.0.9]", Ignored::OtherDaemon),
        ("Nov 25 10:00:00 mx1 postfix/local[3]: 4F1A22C0E1: to=<b@x.org>, relay=local, status=sent (delivered)", Ignored::OtherDaemon),
        ("Nov 25 10:00:00 mx1 postfix/qmgr[2]: 4F1A22C0E1: from=<a@x.org>, status=expired, returned to sender", Ignored::OtherLine),
        ("Nov 25 10:00:00 mx1 postfix/cleanup[2]: warning: database is older than source file", Ignored::OtherLine),
        ("Nov 25 10:00:00 mx1 postfix/cleanup[2]: 4F1A22C0E1: info: header X-Spam: yes from local; from=<a@x.org>", Ignored::OtherLine),
        ("Nov 25 10:00:00 mx1 kernel: eth0 up", Ignored::NotPostfix),
        ("Nov 25 10:00:00 mx1 -- MARK --", Ignored::NotPostfix),
    ];
    for (text, want) in cases {
        assert_eq!(parse(text), Ok(Err(want)), "{text}");
    }
}

#[test]
fn garbage_is_malformed() {
    let cases: [(&[u8], Malformed); 7] = [
        (b"", Malformed::Empty),
        (b"\r\n", Malformed::Empty),
        (b"\xff\xfe junk", Malformed::InvalidUtf8),
        (b"4F1A22C0E1: from=<a@x>, size=1, nrcpt=2", Malformed::NoSyslogHeader),
        (b"Nov 25 10:00:00 mx1 postfix/qmgr[2]: 4F1A22C0E1: from=<a@x>, size=1, nrcpt=x (queue active)", Malformed::BadPostfixLine),
        (b"2026-11-25T12:30:00Z mx1 postfix/qmgr[2]: 4F1A22C0E1: removed", Malformed::FutureTimestamp),
        (b"{\"other\": 1}", Malformed::MissingLineField),
    ];
    for (bytes, want) in cases {
        let got = parse_postfix(bytes, &PostfixOptions::default(), &opts());
        assert_eq!(
            got.err(),
            Some(want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let small = DecodeOptions {
        max_record_bytes: 10,
        ..opts()
    };
    assert_eq!(
        parse_postfix(
            b"Nov 25 10:00:00 mx1 postfix/qmgr[2]: x",
            &PostfixOptions::default(),
            &small
        )
        .err(),
        Some(Malformed::TooLarge)
    );
}

#[test]
fn json_wrapped_lines() {
    // Vector's file source: the whole line in `message`.
    let vector = r#"{"file": "/var/log/mail.log", "message": "Nov 25 10:00:00 mx1 postfix/qmgr[2]: 4F1A22C0E1: removed", "host": "shipper"}"#;
    assert_eq!(parse(vector).unwrap().unwrap().kind, PostfixKind::Removed);
    // rsyslog's structured JSON: the message alone in `msg`, the tag in `syslogtag`.
    let rsyslog = r#"{"timestamp": "2026-11-25T10:00:00.5+00:00", "host": "mx2", "programname": "postfix", "syslogtag": "postfix/cleanup[7]:", "msg": " 5B2C33D1F2: message-id=<a\"b@x>"}"#;
    let postfix = PostfixOptions {
        line_field: "msg".into(),
        ..PostfixOptions::default()
    };
    let l = parse_with(rsyslog, &postfix).unwrap().unwrap();
    assert_eq!(
        (l.host.as_ref(), l.queue_id.as_ref()),
        ("mx2", "5B2C33D1F2")
    );
    assert_eq!(l.kind, PostfixKind::MessageId("<a\"b@x>".into()));
    assert_eq!(l.timestamp, ms("2026-11-25T10:00:00.500Z"));
    // A field that is there but holds no syslog line, and no structured header.
    assert_eq!(
        parse(r#"{"message": "just text"}"#),
        Err(Malformed::NoSyslogHeader)
    );
    assert_eq!(parse(r#"{"message": "#), Err(Malformed::NotJson));
}

fn settings() -> PostfixSettings {
    PostfixSettings {
        header_wait: 2_000,
        qmgr_wait: 30 * 60_000,
        max_pending: 1000,
        max_pending_bytes: usize::MAX,
    }
}

/// Feeds lines in order, expiring at each line's time, then flushes; returns the events.
fn correlate(
    lines: &[&str],
    settings: PostfixSettings,
) -> (Vec<Event<'static>>, PostfixCorrelator<u64>) {
    let mut c = PostfixCorrelator::new(settings);
    let mut out = Vec::new();
    for (token, text) in lines.iter().enumerate() {
        let l = line(text);
        c.expire(l.timestamp, &mut out);
        c.accept(&l, token as u64, &mut out);
    }
    c.flush(&mut out);
    (out, c)
}

const MESSAGE: [&str; 6] = [
    "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header Subject: RE: Lunch from pc[10.0.0.9]; from=<bob@x.org> to=<all@x.org> proto=ESMTP helo=<pc>",
    "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header In-Reply-To: <orig@x.org> from pc[10.0.0.9]; from=<bob@x.org> to=<all@x.org> proto=ESMTP helo=<pc>",
    "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header References: <orig@x.org>??<mid@x.org> from pc[10.0.0.9]; from=<bob@x.org> to=<all@x.org> proto=ESMTP helo=<pc>",
    "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: message-id=<r1@x.org>",
    "Nov 25 10:00:01 mx1 postfix/qmgr[2]: 4F1A22C0E1: from=<Bob@x.org>, size=900, nrcpt=3000 (queue active)",
    "Nov 25 10:00:05 mx1 postfix/qmgr[2]: 4F1A22C0E1: removed",
];

#[test]
fn a_message_becomes_one_event() {
    let (events, c) = correlate(&MESSAGE, settings());
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.timestamp, ms("2026-11-25T10:00:01Z"));
    assert_eq!(e.message_id, "r1@x.org");
    assert_eq!(e.sender, "Bob@x.org");
    assert_eq!(e.recipient_count, 3000);
    assert_eq!(e.in_reply_to.as_deref(), Some("orig@x.org"));
    assert_eq!(e.references_root.as_deref(), Some("orig@x.org"));
    assert_eq!(e.subject.as_deref(), Some("RE: Lunch"));
    assert_eq!(c.pending(), 0);
    assert_eq!(c.stats().emitted, 1);
    assert_eq!(c.stats().dropped_total(), 0);
}

#[test]
fn the_event_waits_for_late_headers_then_goes_at_removed_or_the_bound() {
    let mut c = PostfixCorrelator::new(settings());
    let mut out = Vec::new();
    for (i, text) in MESSAGE[3..5].iter().enumerate() {
        c.accept(&line(text), i as u64, &mut out);
    }
    c.expire(ms("2026-11-25T10:00:02.999Z"), &mut out);
    assert!(out.is_empty(), "still within header_wait");
    // A Subject line reordered past the qmgr line, within the wait.
    let late = line("Nov 25 10:00:02 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header Subject: =?UTF-8?B?UmU6IGx1bmNo?= from local;");
    assert_eq!(c.accept(&late, 9, &mut out), LineOutcome::Absorbed);
    assert_eq!(c.oldest_pending_token(), Some(0));
    c.expire(ms("2026-11-25T10:00:03Z"), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].subject.as_deref(), Some("Re: lunch"));
    assert_eq!(c.oldest_pending_token(), None);
    // `removed` after the event was emitted is just another line.
    assert_eq!(
        c.accept(&line(MESSAGE[5]), 10, &mut out),
        LineOutcome::Ignored(Ignored::OtherLine)
    );
}

#[test]
fn removed_emits_at_once() {
    let mut c = PostfixCorrelator::new(settings());
    let mut out = Vec::new();
    c.accept(&line(MESSAGE[3]), 0, &mut out);
    c.accept(&line(MESSAGE[4]), 1, &mut out);
    let removed = line("Nov 25 10:00:01 mx1 postfix/qmgr[2]: 4F1A22C0E1: removed");
    c.accept(&removed, 2, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn a_message_id_header_logged_before_the_message_id_line_is_no_reused_queue_id() {
    // A `header_checks` INFO rule on Message-ID: cleanup logs the header line, then its own
    // `message-id=` line, for the same message.
    let lines = [
        MESSAGE[0],
        "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header Message-ID: <r1@x.org> from pc[10.0.0.9]; from=<bob@x.org> to=<all@x.org> proto=ESMTP helo=<pc>",
        MESSAGE[3],
        MESSAGE[4],
        MESSAGE[5],
    ];
    let (events, c) = correlate(&lines, settings());
    assert_eq!(c.stats().dropped_total(), 0);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message_id, "r1@x.org");
    assert_eq!(events[0].subject.as_deref(), Some("RE: Lunch"));
}

#[test]
fn a_message_without_headers_still_counts() {
    let (events, _) = correlate(&[MESSAGE[3], MESSAGE[4]], settings());
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].subject.as_ref(), events[0].in_reply_to.as_ref()),
        (None, None)
    );
}

#[test]
fn hosts_interleave_with_the_same_queue_id() {
    let lines = [
        "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: message-id=<a@x>",
        "Nov 25 10:00:00 mx2 postfix/cleanup[1]: 4F1A22C0E1: message-id=<b@x>",
        "Nov 25 10:00:00 mx2 postfix/cleanup[1]: 4F1A22C0E1: info: header Subject: from mx2 from local;",
        "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header Subject: from mx1 from local;",
        "Nov 25 10:00:01 mx2 postfix/qmgr[2]: 4F1A22C0E1: from=<b@x>, size=1, nrcpt=20 (queue active)",
        "Nov 25 10:00:01 mx1 postfix/qmgr[2]: 4F1A22C0E1: from=<a@x>, size=1, nrcpt=10 (queue active)",
    ];
    let (events, _) = correlate(&lines, settings());
    let mut got: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.message_id.to_string(),
                e.recipient_count,
                e.subject.clone().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("a@x".to_string(), 10, "from mx1".to_string()),
            ("b@x".to_string(), 20, "from mx2".to_string())
        ]
    );
}

#[test]
fn queue_ids_are_reused() {
    let lines = [
        // First message, ended by `removed` before its header wait.
        "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: message-id=<one@x>",
        "Nov 25 10:00:00 mx1 postfix/qmgr[2]: 4F1A22C0E1: from=<a@x>, size=1, nrcpt=5 (queue active)",
        "Nov 25 10:00:00 mx1 postfix/qmgr[2]: 4F1A22C0E1: removed",
        // The id again: a new message with its own subject.
        "Nov 25 10:00:01 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header Subject: second from local;",
        "Nov 25 10:00:01 mx1 postfix/cleanup[1]: 4F1A22C0E1: message-id=<two@x>",
        // A third start without the second's `removed` or qmgr line: the second is superseded.
        "Nov 25 10:00:02 mx1 postfix/cleanup[1]: 4F1A22C0E1: message-id=<three@x>",
        "Nov 25 10:00:03 mx1 postfix/qmgr[2]: 4F1A22C0E1: from=<c@x>, size=1, nrcpt=7 (queue active)",
    ];
    let (events, c) = correlate(&lines, settings());
    let got: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.message_id.to_string(),
                e.recipient_count,
                e.subject.is_some(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("one@x".into(), 5, false), ("three@x".into(), 7, false)]
    );
    assert_eq!(c.stats().dropped(Dropped::Superseded), 1);
}

#[test]
fn incomplete_rejected_unmatched_and_evicted() {
    let lines = [
        // Never reaches qmgr: dropped at qmgr_wait.
        "Nov 25 10:00:00 mx1 postfix/cleanup[1]: AAAAAAAAAA: message-id=<lost@x>",
        // Rejected by cleanup.
        "Nov 25 10:00:00 mx1 postfix/cleanup[1]: BBBBBBBBBB: message-id=<spam@x>",
        "Nov 25 10:00:00 mx1 postfix/cleanup[1]: BBBBBBBBBB: milter-reject: END-OF-MESSAGE from x[1.2.3.4]: 5.7.1 no",
        // qmgr for a message whose cleanup lines were never seen.
        "Nov 25 10:00:00 mx1 postfix/qmgr[2]: CCCCCCCCCC: from=<a@x>, size=1, nrcpt=5 (queue active)",
        "Nov 25 10:31:00 mx1 postfix/cleanup[1]: DDDDDDDDDD: message-id=<later@x>",
    ];
    let mut c = PostfixCorrelator::new(settings());
    let mut out = Vec::new();
    let mut outcomes = Vec::new();
    for (i, text) in lines.iter().enumerate() {
        let l = line(text);
        c.expire(l.timestamp, &mut out);
        outcomes.push(c.accept(&l, i as u64, &mut out));
    }
    assert_eq!(outcomes[3], LineOutcome::Ignored(Ignored::Unmatched));
    assert!(out.is_empty());
    assert_eq!(c.stats().dropped(Dropped::Expired), 1);
    assert_eq!(c.stats().dropped(Dropped::Rejected), 1);
    assert_eq!(c.oldest_pending_token(), Some(4));
    // A cap of one: a second message evicts the first, emitted since it was complete.
    let tiny = PostfixSettings {
        max_pending: 1,
        ..settings()
    };
    let (events, c) = correlate(
        &[
            MESSAGE[3],
            MESSAGE[4],
            "Nov 25 10:00:01 mx1 postfix/cleanup[1]: EEEEEEEEEE: message-id=<e@x>",
            "Nov 25 10:00:01 mx1 postfix/cleanup[1]: FFFFFFFFFF: message-id=<f@x>",
        ],
        tiny,
    );
    assert_eq!(events.len(), 1);
    assert_eq!(c.stats().evicted_emitted, 1);
    assert_eq!(c.stats().dropped(Dropped::Evicted), 1);
    assert_eq!(c.stats().dropped(Dropped::Expired), 1);
}

#[test]
fn folded_encoded_subjects_are_decoded() {
    let lines = [
        MESSAGE[3],
        "Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header Subject: =?UTF-8?Q?AW:_Quartals?=??=?UTF-8?Q?zahlen_=C3=BCberarbeitet?= from local;",
        MESSAGE[4],
    ];
    let (events, _) = correlate(&lines, settings());
    assert_eq!(
        events[0].subject.as_deref(),
        Some("AW: Quartalszahlen überarbeitet")
    );
}

#[test]
fn texts_too_long_to_keep_drop_the_message_and_long_subjects_are_cut() {
    use crate::event::MAX_ID_BYTES;
    let long_id = "i".repeat(MAX_ID_BYTES + 1);
    let with_line = |index: usize, replaced: &str| {
        let mut lines: Vec<String> = MESSAGE.iter().map(|l| l.to_string()).collect();
        lines[index] = replaced.to_string();
        lines
    };
    let run = |lines: &[String]| {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        correlate(&lines, settings())
    };
    for lines in [
        with_line(3, &format!("Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: message-id=<{long_id}>")),
        with_line(1, &format!("Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header In-Reply-To: <{long_id}> from pc[10.0.0.9];")),
        with_line(2, &format!("Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header References: <{long_id}> <b@x> from pc[10.0.0.9];")),
        with_line(4, &format!("Nov 25 10:00:01 mx1 postfix/qmgr[2]: 4F1A22C0E1: from=<{long_id}>, size=900, nrcpt=3000 (queue active)")),
    ] {
        let (events, c) = run(&lines);
        assert!(events.is_empty(), "{:?}", events);
        assert_eq!(c.stats().dropped(Dropped::TooLong), 1);
        assert_eq!(c.pending(), 0);
    }
    // A header Message-ID too long to keep, which cleanup's own id then replaces, is no
    // reason to drop either.
    let mut lines = vec![format!("Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header Message-ID: <{long_id}> from pc[10.0.0.9];")];
    lines.extend(MESSAGE.iter().map(|l| l.to_string()));
    let (events, c) = run(&lines);
    assert_eq!(events[0].message_id, "r1@x.org");
    assert_eq!(c.stats().dropped(Dropped::TooLong), 0);
    // Only the References root is kept: a long later entry is no reason to drop.
    let (events, _) = run(&with_line(2, &format!("Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header References: <orig@x.org> <{long_id}> from pc[10.0.0.9];")));
    assert_eq!(events[0].references_root.as_deref(), Some("orig@x.org"));
    // A host name past RFC 5424's 255 bytes makes the line malformed.
    let at_limit = format!(
        "Nov 25 10:00:00 {} postfix/cleanup[1]: 4F1A22C0E1: message-id=<a@x>",
        "h".repeat(255)
    );
    assert!(matches!(parse(&at_limit), Ok(Ok(_))));
    let over = format!(
        "Nov 25 10:00:00 {} postfix/cleanup[1]: 4F1A22C0E1: message-id=<a@x>",
        "h".repeat(256)
    );
    assert_eq!(parse(&over).err(), Some(Malformed::HostTooLong));
    // A line that is not used is not keyed by its host: it stays ignored.
    let unused = format!(
        "Nov 25 10:00:00 {} postfix/cleanup[1]: 4F1A22C0E1: warning: x",
        "h".repeat(256)
    );
    assert!(matches!(parse(&unused), Ok(Err(_))), "{:?}", parse(&unused));
    // A complete message dropped for a long id is not counted as emitted when evicted.
    let mut c = PostfixCorrelator::new(PostfixSettings {
        max_pending: 1,
        ..settings()
    });
    let mut out = Vec::new();
    for (token, text) in [
        format!("Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: message-id=<{long_id}>"),
        MESSAGE[4].to_string(),
        "Nov 25 10:00:02 mx1 postfix/cleanup[1]: EEEEEEEEEE: message-id=<e@x>".to_string(),
    ]
    .iter()
    .enumerate()
    {
        c.accept(&line(text), token as u64, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(
        (
            c.stats().evicted_emitted,
            c.stats().dropped(Dropped::TooLong)
        ),
        (0, 1)
    );
    // A subject is kept decoded and cut to 4 KiB.
    let (events, _) = run(&with_line(0, &format!("Nov 25 10:00:00 mx1 postfix/cleanup[1]: 4F1A22C0E1: info: header Subject: Re: {} from pc[10.0.0.9];", "s".repeat(10_000))));
    let subject = events[0].subject.as_deref().unwrap_or_default();
    assert_eq!(subject.len(), 4096);
    assert!(subject.starts_with("Re: sss"));
}

proptest::proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = parse_postfix(&bytes, &PostfixOptions::default(), &opts());
    }

    #[test]
    fn never_panics_on_syslogish_text(text in r"(<[0-9]{1,3}>)?(1 )?[A-Za-z0-9 :\-\.\+T\[\]/=<>@,;?{}\x22]{0,160}") {
        if let Ok(Ok(line)) = parse_postfix(text.as_bytes(), &PostfixOptions::default(), &opts()) {
            let mut c = PostfixCorrelator::new(settings());
            let mut out = Vec::new();
            c.accept(&line, 0u64, &mut out);
            c.flush(&mut out);
        }
    }
}

#[test]
fn the_bytes_waiting_are_bounded_whatever_the_lines_hold() {
    // A real message weighs a few hundred bytes: the default bound (256 MiB) holds the
    // default 100,000 of them about six times over.
    let mut c = PostfixCorrelator::new(settings());
    let mut out = Vec::new();
    for (token, text) in MESSAGE[..5].iter().enumerate() {
        c.accept(&line(text), token as u64, &mut out);
    }
    let real = c.pending_bytes();
    assert!((300..1_300).contains(&real), "{real}");

    // Hostile lines: each message holds a 4 KiB subject and a 998-byte id, and never gets
    // its qmgr line. The count bound (100,000) is far off; the byte bound holds.
    let bound = 1 << 20;
    let mut c = PostfixCorrelator::new(PostfixSettings {
        max_pending: 100_000,
        max_pending_bytes: bound,
        ..settings()
    });
    let mut out = Vec::new();
    // First a complete message, waiting for late headers: evicted early, it still counts.
    for (token, text) in MESSAGE[..5].iter().enumerate() {
        c.accept(&line(text), token as u64, &mut out);
    }
    let subject = "s".repeat(8192);
    let id = "i".repeat(990);
    let messages = 1_000;
    for n in 0..messages {
        for text in [
            format!("Nov 25 10:00:02 mx1 postfix/cleanup[1]: {n:010X}: message-id=<{n}{id}>"),
            format!("Nov 25 10:00:02 mx1 postfix/cleanup[1]: {n:010X}: info: header Subject: {subject} from pc[10.0.0.9];"),
        ] {
            assert_eq!(c.accept(&line(&text), 10 + n, &mut out), LineOutcome::Absorbed);
            assert!(c.pending_bytes() <= bound, "{}", c.pending_bytes());
        }
    }
    let held = c.pending() as u64;
    assert!((100..300).contains(&held), "{held}");
    assert!(
        c.pending_bytes() > bound - 8 * 1024,
        "{}",
        c.pending_bytes()
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].message_id, "r1@x.org");
    let stats = c.stats();
    assert_eq!(stats.evicted_emitted, 1);
    assert_eq!(stats.dropped(Dropped::Evicted), messages - held);
    // Each held message's offsets are still held back.
    assert_eq!(c.oldest_pending_token(), Some(10 + messages - held));
}
