//! Scenario `nhs-2016`: the NHSmail reply-all storm of 14 November 2016.
//!
//! At 08:29 a test message went to a distribution list of about 850,000
//! NHS staff; the reply-alls ("please remove me from this list") that
//! followed clogged the service for more than an hour. This module builds
//! that storm: the original, about 80 reply-alls front-loaded over 75
//! minutes, from clients that thread differently (References, only
//! In-Reply-To, or only a localized subject prefix, some RFC 2047-encoded),
//! with lines from several hops. No storm event carries `thread_id`: the
//! detector must join them by headers and subject alone.

use super::background::{BackgroundConfig, Mix};
use super::event::{encoded_word_b, sub_seed, Line, OwnedEvent, Refs, TsForm, MINUTE_MS, START_MS};
use super::names::{sender, AddrForm};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The label of the storm's events.
pub(crate) const LABEL: &str = "nhs-2016";

/// The size of the distribution list.
pub(crate) const RECIPIENTS: u64 = 850_000;

/// Default number of background events.
pub(crate) const DEFAULT_EVENTS: u64 = 200_000;

const DOMAIN: &str = "nhs.net";

/// The background of the scenario alone: ordinary NHS mail (1-20
/// recipients, new conversations and replies) over at least two hours, so
/// stream time passes the storm's end plus the 30-minute quiet period.
pub(crate) fn background(seed: u64, events: u64) -> BackgroundConfig {
    BackgroundConfig {
        seed: sub_seed(seed, 10),
        start_ms: START_MS,
        span_ms: super::span_ms(events, 120),
        events,
        mix: Mix {
            ordinary_new: 55,
            ordinary_reply: 45,
            ..Mix::default()
        },
        domain: DOMAIN,
        duplicate: 0.01,
    }
}

/// Subject-only reply subjects: every one normalizes to `test` under the
/// contract (prefixes, counters, spaces before the colon, full-width colon,
/// list tags, repeated prefixes, RFC 2047 encoded words).
fn subject_only_variants() -> Vec<String> {
    let mut v: Vec<String> = [
        "RE: Test",
        "Re: Test",
        "re:Test",
        "AW: Test",
        "Aw: Test",
        "Sv: Test",
        "SV: Test",
        "VS: Test",
        "Antw: Test",
        "Odp: Test",
        "R: Test",
        "Rif: Test",
        "Réf : Test",
        "Ynt: Test",
        "RES: Test",
        "Vá: Test",
        "Re[2]: Test",
        "RE(3): Test",
        "RE : Test",
        "回复：Test",
        "答复: Test",
        "回覆：Test",
        "Re: RE: Test",
        "[NHSmail] RE: Test",
        "RE:  Test ",
        "=?iso-8859-1?Q?R=E9f_:_Test?=",
        "=?utf-8?q?RE=3A_Test?=",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(encoded_word_b("RE: Test"));
    v.push(encoded_word_b("回复：Test"));
    v.push(format!(
        "{} {}",
        encoded_word_b("RE:"),
        encoded_word_b(" Test")
    ));
    v
}

/// Subjects of replies that also carry threading headers: these may drift
/// (the body is not in the log, but people say it in the subject).
const HEADER_REPLY_SUBJECTS: [&str; 10] = [
    "RE: Test",
    "RE: Test",
    "Re: Test",
    "RE: Test",
    "AW: Test",
    "RE: Test - please remove me from this list",
    "RE: Test PLEASE STOP REPLYING ALL",
    "Re: Test - remove me",
    "RE: Test (unsubscribe)",
    "RE: Test - why am I receiving this?",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    References,
    InReplyTo,
    SubjectOnly,
}

/// Builds the storm's lines (unsorted): the original, the reply-alls with
/// their preliminary one-recipient hop lines and repeated lines.
pub(crate) fn storm(seed: u64) -> Vec<Line> {
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(seed, 1));
    let mut lines = Vec::new();
    let original_id = format!(
        "<{:016X}.{:08x}@nhs.net>",
        rng.gen::<u64>(),
        rng.gen::<u32>()
    );
    let original = OwnedEvent {
        ts: START_MS,
        ts_form: TsForm::Utc,
        message_id: original_id.clone(),
        sender: sender(250_123, DOMAIN, AddrForm::Named),
        recipient_count: RECIPIENTS,
        thread_id: None,
        in_reply_to: None,
        references: None,
        subject: Some("Test".to_owned()),
        label: LABEL,
        copies: 2,
    };
    lines.push(Line::Event(original));

    let n = rng.gen_range(78..=82usize);
    // Front-loaded: offsets of 1 to 75 minutes, u^2.5 puts about 40% in the
    // first ten minutes and leaves a tail to the end.
    let mut offsets: Vec<i64> = (0..n)
        .map(|_| {
            let u: f64 = rng.gen();
            MINUTE_MS + ((74 * MINUTE_MS) as f64 * u.powf(2.5)) as i64
        })
        .collect();
    offsets.sort_unstable();

    let refs_n = (n * 4 + 5) / 10;
    let irt_n = (n * 3 + 5) / 10;
    let mut styles: Vec<Style> = (0..n)
        .map(|i| {
            if i < refs_n {
                Style::References
            } else if i < refs_n + irt_n {
                Style::InReplyTo
            } else {
                Style::SubjectOnly
            }
        })
        .collect();
    styles.shuffle(&mut rng);
    let mut variants = subject_only_variants();
    variants.shuffle(&mut rng);

    // (first-line timestamp, id) of replies so far, for reply chains.
    let mut earlier: Vec<(i64, String)> = Vec::new();
    let mut subject_only = 0usize;
    for (i, (&offset, &style)) in offsets.iter().zip(styles.iter()).enumerate() {
        let ts = START_MS + offset;
        let id = format!(
            "<{:08X}{:08X}.{}@nhs.net>",
            rng.gen::<u32>(),
            rng.gen::<u32>(),
            rng.gen_range(100..999)
        );
        // Distinct people: 1,000 + 37 i maps to distinct addresses.
        let person = 1_000 + 37 * i as u32;
        let form = match rng.gen_range(0..10) {
            0..=4 => AddrForm::Named,
            5..=6 => AddrForm::UpperAngle,
            7 => AddrForm::Angle,
            8 => AddrForm::QuotedLastFirst,
            _ => AddrForm::Bare,
        };
        // An earlier reply whose first line is at least 30 s before this
        // one, so that it precedes it in the stream despite the disorder.
        let chain_parent = {
            let eligible: Vec<&String> = earlier
                .iter()
                .filter(|(t, _)| *t <= ts - 30_000)
                .map(|(_, id)| id)
                .collect();
            if eligible.is_empty() {
                None
            } else {
                Some(eligible[rng.gen_range(0..eligible.len())].clone())
            }
        };
        let (in_reply_to, references, subject) = match style {
            Style::References => {
                let parent = chain_parent.filter(|_| rng.gen_bool(0.5));
                let mut list = vec![original_id.clone()];
                if let Some(p) = &parent {
                    list.push(p.clone());
                }
                let irt = rng
                    .gen_bool(0.7)
                    .then(|| list.last().cloned().unwrap_or_default());
                let refs = if rng.gen_bool(0.3) {
                    let sep = if rng.gen_bool(0.5) { " " } else { "\r\n\t" };
                    Refs::Joined(list.join(sep))
                } else {
                    Refs::List(list)
                };
                let subject = HEADER_REPLY_SUBJECTS[rng.gen_range(0..HEADER_REPLY_SUBJECTS.len())];
                (irt, Some(refs), Some(subject.to_owned()))
            }
            Style::InReplyTo => {
                let irt = match chain_parent {
                    Some(p) if rng.gen_bool(0.4) => p,
                    _ => original_id.clone(),
                };
                let subject = HEADER_REPLY_SUBJECTS[rng.gen_range(0..HEADER_REPLY_SUBJECTS.len())];
                (Some(irt), None, Some(subject.to_owned()))
            }
            Style::SubjectOnly => {
                let subject = variants[subject_only % variants.len()].clone();
                subject_only += 1;
                (None, None, Some(subject))
            }
        };
        let full = OwnedEvent {
            ts,
            ts_form: TsForm::pick(&mut rng),
            message_id: id.clone(),
            sender: sender(person, DOMAIN, form),
            recipient_count: RECIPIENTS,
            thread_id: None,
            in_reply_to,
            references,
            subject,
            label: LABEL,
            copies: if rng.gen_range(0..100) < 6 { 2 } else { 1 },
        };
        let mut first_ts = ts;
        if rng.gen_range(0..100) < 20 {
            // The submission hop logs the message before the list is
            // expanded: one recipient, then the full count at a later hop.
            let mut hop = full.clone();
            hop.ts = ts - rng.gen_range(2_000..=20_000);
            hop.ts_form = TsForm::pick(&mut rng);
            hop.recipient_count = 1;
            hop.copies = 1;
            first_ts = hop.ts;
            lines.push(Line::Event(hop));
        }
        lines.push(Line::Event(full));
        earlier.push((first_ts, id));
    }
    lines
}
