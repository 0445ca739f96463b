//! Joins a message's RECEIVE row with its EXPAND rows, in a bounded map keyed by
//! `internal-message-id` and `message-id`.
//!
//! On the RECEIVE row a distribution group is one recipient; each EXPAND row names the group
//! (`related-recipient-address`) and its members. The recipient count after expansion is the
//! RECEIVE count, minus each group expanded, plus the members of every EXPAND row (a group
//! nested in another is itself a member first, then expanded, so the sum stays right; a large
//! group logged over several EXPAND rows counts once). Without this a storm on a list would be
//! a storm of one-recipient messages and never seen. The event is emitted `expand_wait` of
//! event time after the RECEIVE row, with that row's time as its timestamp.

use super::super::outcome::{CorrelationStats, Dropped, Ignored, LineOutcome};
use super::super::pending::{kept_id, kept_subject, HeapBytes, PendingMap, TooLong};
use super::{ExchangeRow, RowKind};
use crate::config::ExchangeInputConfig;
use crate::engine::millis;
use crate::event::{normalize_message_id, normalize_sender, Event};
use crate::subject::decode_rfc2047;
use crate::timefmt::Millis;
use std::borrow::Cow;

/// Most distinct groups remembered per message: past it further groups still add their
/// members but are no longer subtracted individually (a bound on memory, far above real use).
const MAX_GROUPS: usize = 1024;

/// The correlator's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeSettings {
    /// How long after RECEIVE its EXPAND rows are awaited, milliseconds of event time.
    pub expand_wait: Millis,
    /// Most messages held.
    pub max_pending: usize,
    /// Most bytes the messages held hold.
    pub max_pending_bytes: usize,
}

impl ExchangeSettings {
    /// From the `input.exchange` section.
    pub fn from_config(config: &ExchangeInputConfig) -> Self {
        Self {
            expand_wait: millis(config.expand_wait),
            max_pending: config.max_pending,
            max_pending_bytes: config.max_pending_bytes,
        }
    }
}

impl Default for ExchangeSettings {
    fn default() -> Self {
        Self::from_config(&ExchangeInputConfig::default())
    }
}

/// `(internal-message-id, message-id)`.
type Key = (Box<str>, Box<str>);

/// What is kept of a message while its EXPAND rows are awaited: its texts as the event will
/// carry them (normalized, decoded) and bounded (`pending.rs`).
#[derive(Debug)]
struct Entry {
    timestamp: Millis,
    message_id: String,
    sender: String,
    /// Decoded, cut as [`kept_subject`] does.
    subject: String,
    /// The first and the last message id of the `reference` field.
    references_root: Option<String>,
    in_reply_to: Option<String>,
    received_count: u64,
    members: u64,
    /// The groups expanded, by a hash of their lowercased name: a group name can be as long as
    /// a row, and a message may name [`MAX_GROUPS`] of them.
    groups: Vec<u64>,
}

impl Entry {
    /// The entry of a RECEIVE row; `TooLong` when an id or the sender is too long to keep.
    fn of_receive(row: &ExchangeRow<'_>) -> Result<Self, TooLong> {
        let mut ids = reference_ids(&row.reference);
        let references_root = ids.next().map(kept_id).transpose()?;
        let in_reply_to = match ids.last() {
            Some(last) => Some(kept_id(last)?),
            None => references_root.clone(),
        };
        let subject = decode_rfc2047(&row.subject);
        Ok(Entry {
            timestamp: row.timestamp,
            message_id: kept_id(normalize_message_id(&row.message_id))?,
            sender: kept_id(normalize_sender(&row.sender))?,
            subject: kept_subject(&subject),
            references_root,
            in_reply_to,
            received_count: row.recipient_count,
            members: 0,
            groups: Vec::new(),
        })
    }
}

impl HeapBytes for Entry {
    fn heap_bytes(&self) -> usize {
        self.message_id.heap_bytes()
            + self.sender.heap_bytes()
            + self.subject.heap_bytes()
            + self.references_root.heap_bytes()
            + self.in_reply_to.heap_bytes()
            + self.groups.capacity() * std::mem::size_of::<u64>()
    }
}

/// The hash an entry remembers an expanded group by (see [`Entry::groups`]).
fn group_hash(name: &str) -> u64 {
    let mut lowercase = name.as_bytes().to_vec();
    lowercase.make_ascii_lowercase();
    xxhash_rust::xxh3::xxh3_64(&lowercase)
}

/// Assembles events from RECEIVE and EXPAND rows. `T` is the caller's record token.
pub struct ExchangeCorrelator<T> {
    settings: ExchangeSettings,
    pending: PendingMap<Key, Entry, T>,
    watermark: Millis,
    stats: CorrelationStats,
}

impl<T: Copy + Ord> ExchangeCorrelator<T> {
    /// An empty correlator.
    pub fn new(settings: ExchangeSettings) -> Self {
        Self {
            pending: PendingMap::new(settings.max_pending, settings.max_pending_bytes),
            settings,
            watermark: Millis::MIN,
            stats: CorrelationStats::default(),
        }
    }

    /// Takes one row (in event-time order); events it completes are pushed to `out`, with
    /// those of messages evicted to keep the map within its bounds (evicted early, but
    /// complete enough: their RECEIVE row is there).
    pub fn accept(
        &mut self,
        row: &ExchangeRow<'_>,
        token: T,
        out: &mut Vec<Event<'static>>,
    ) -> LineOutcome {
        let outcome = self.apply(row, token);
        while let Some((_, evicted)) = self.pending.pop_over_bounds() {
            self.stats.evicted_emitted += 1;
            self.emit(evicted, out);
        }
        outcome
    }

    fn apply(&mut self, row: &ExchangeRow<'_>, token: T) -> LineOutcome {
        // Both at most `MAX_ID_BYTES`: the parser refuses longer ones.
        let key: Key = (
            row.internal_message_id.trim().into(),
            normalize_message_id(&row.message_id).into(),
        );
        match row.kind {
            RowKind::Receive => {
                if self.pending.get(&key).is_some() {
                    // The same message received twice on one server: the first counts.
                    return LineOutcome::Ignored(Ignored::OtherLine);
                }
                let Ok(entry) = Entry::of_receive(row) else {
                    self.stats.note_dropped(Dropped::TooLong);
                    return LineOutcome::Absorbed;
                };
                let deadline = row.timestamp.saturating_add(self.settings.expand_wait);
                self.pending.insert(key, entry, deadline, token);
            }
            RowKind::Expand => {
                let absorbed = self.pending.absorb(&key, token, |entry| {
                    entry.members = entry.members.saturating_add(row.recipient_count);
                    let group = row.related_recipient.trim();
                    if !group.is_empty() && entry.groups.len() < MAX_GROUPS {
                        let group = group_hash(group);
                        if !entry.groups.contains(&group) {
                            entry.groups.push(group);
                        }
                    }
                });
                if absorbed.is_none() {
                    return LineOutcome::Ignored(Ignored::Unmatched);
                }
            }
        }
        LineOutcome::Absorbed
    }

    /// Emits the messages whose expansion wait has passed at event time `now`.
    pub fn expire(&mut self, now: Millis, out: &mut Vec<Event<'static>>) {
        self.watermark = self.watermark.max(now);
        while let Some((_, entry)) = self.pending.pop_due(self.watermark) {
            self.emit(entry, out);
        }
    }

    /// At the end of input: emits everything still waiting.
    pub fn flush(&mut self, out: &mut Vec<Event<'static>>) {
        while let Some((_, entry)) = self.pending.pop_oldest() {
            self.emit(entry, out);
        }
    }

    /// The smallest token of a record still waiting.
    pub fn oldest_pending_token(&self) -> Option<T> {
        self.pending.oldest_token()
    }

    /// Messages waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The bytes the messages waiting hold (what `max_pending_bytes` bounds).
    pub fn pending_bytes(&self) -> usize {
        self.pending.bytes()
    }

    /// Counters since start (an Exchange entry has its RECEIVE row, so it is only dropped when
    /// that row's sender or a reference id is too long to keep: `too_long`).
    pub fn stats(&self) -> CorrelationStats {
        self.stats
    }

    fn emit(&mut self, entry: Entry, out: &mut Vec<Event<'static>>) {
        self.stats.emitted += 1;
        out.push(to_event(entry));
    }
}

/// Each `;`-separated value of the `reference` field that names a message id.
fn reference_ids(reference: &str) -> impl Iterator<Item = &str> {
    reference
        .split([';', ' ', ','])
        .filter(|v| v.contains('<') || v.contains('@'))
        .map(normalize_message_id)
        .filter(|id| !id.is_empty())
}

fn to_event(entry: Entry) -> Event<'static> {
    let expanded = entry.groups.len() as u64;
    let recipient_count = entry
        .received_count
        .saturating_add(entry.members)
        .saturating_sub(expanded);
    let subject = entry.subject;
    Event {
        timestamp: entry.timestamp,
        message_id: Cow::Owned(entry.message_id),
        sender: Cow::Owned(entry.sender),
        recipient_count,
        thread_id: None,
        in_reply_to: entry.in_reply_to.map(Cow::Owned),
        references_root: entry.references_root.map(Cow::Owned),
        subject: (!subject.trim().is_empty()).then_some(Cow::Owned(subject)),
    }
}
