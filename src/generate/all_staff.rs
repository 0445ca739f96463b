//! The second, smaller storm of the `mixed` scenario: a message to a
//! 5,000-recipient all-staff list followed by 12 reply-alls from 8 senders
//! within 20 minutes. Every line carries `thread_id`, as Exchange logs its
//! ConversationId, so this storm is joined by the explicit thread id. It
//! meets `early` (warning) and then `exchange` (critical, 10 reply-alls to
//! 2,500+ recipients within 60 minutes), but not the delivery rules
//! (60,000 deliveries).

use super::event::{base64, sub_seed, Line, OwnedEvent, TsForm, MINUTE_MS, START_MS};
use super::names::{sender, AddrForm};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The label of the storm's events.
pub(crate) const LABEL: &str = "all-staff-2016";

/// The size of the all-staff list.
pub(crate) const RECIPIENTS: u64 = 5_000;

/// Number of reply-alls.
pub(crate) const REPLY_ALLS: usize = 12;

/// Number of distinct senders of the reply-alls.
pub(crate) const SENDERS: usize = 8;

const DOMAIN: &str = "northwind.example";
const SUBJECT: &str = "[all-staff] Car park closed on Friday";

/// When the original is sent: 2016-11-14T10:05:00Z.
pub(crate) const ORIGINAL_MS: i64 = START_MS + 96 * MINUTE_MS;

/// Builds the storm's lines (unsorted).
pub(crate) fn storm(seed: u64) -> Vec<Line> {
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(seed, 2));
    // Exchange ConversationIds are base64 of 22 bytes starting 0x01.
    let mut raw = [0u8; 22];
    rng.fill(&mut raw[..]);
    raw[0] = 1;
    let conversation = base64(&raw);
    let original_id = format!(
        "<{:X}@EXCH01.northwind.example>",
        rng.gen::<u64>() & 0xFFFF_FFFF_FFFF
    );
    let mut lines = vec![Line::Event(OwnedEvent {
        ts: ORIGINAL_MS,
        ts_form: TsForm::Utc,
        message_id: original_id.clone(),
        sender: format!("Estates and Facilities <facilities@{DOMAIN}>"),
        recipient_count: RECIPIENTS,
        thread_id: Some(conversation.clone()),
        in_reply_to: None,
        references: None,
        subject: Some(SUBJECT.to_owned()),
        label: LABEL,
        copies: 1,
    })];

    // 8 distinct people; the first 8 replies are one each (shuffled), the
    // other 4 come again from some of them.
    let mut who: Vec<u32> = (0..SENDERS as u32).map(|k| 7_000 + 129 * k).collect();
    who.shuffle(&mut rng);
    for _ in SENDERS..REPLY_ALLS {
        let again = who[rng.gen_range(0..SENDERS)];
        who.push(again);
    }
    let mut offsets: Vec<i64> = (0..REPLY_ALLS)
        .map(|_| rng.gen_range(MINUTE_MS..=20 * MINUTE_MS))
        .collect();
    offsets.sort_unstable();
    let mut previous = original_id;
    for (i, (&offset, &person)) in offsets.iter().zip(who.iter()).enumerate() {
        let id = format!(
            "<{:X}.{i}@EXCH0{}.northwind.example>",
            rng.gen::<u64>() & 0xFFFF_FFFF_FFFF,
            1 + rng.gen_range(0..4)
        );
        let subject = match i % 4 {
            0 | 2 => format!("RE: {SUBJECT}"),
            1 => format!("Re: {SUBJECT}"),
            _ => format!("RE: RE: {SUBJECT}"),
        };
        lines.push(Line::Event(OwnedEvent {
            ts: ORIGINAL_MS + offset,
            ts_form: TsForm::pick(&mut rng),
            message_id: id.clone(),
            sender: sender(person, DOMAIN, AddrForm::pick(&mut rng)),
            recipient_count: RECIPIENTS,
            thread_id: Some(conversation.clone()),
            in_reply_to: Some(previous.clone()),
            references: None,
            subject: Some(subject),
            label: LABEL,
            copies: if i == 5 { 2 } else { 1 },
        }));
        previous = id;
    }
    lines
}
