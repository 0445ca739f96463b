//! Joins a Postfix message's lines into one event, in a bounded map keyed by host and queue id
//! (several hosts' logs share a topic, and each host numbers its queue ids on its own).
//!
//! Lines arrive in event-time order (the caller merges partitions). An entry starts at a
//! message's first cleanup line; qmgr's `from=... nrcpt=N` completes it. Header lines may be
//! logged after the `message-id=` line or, through reordering by the shipper, just after the
//! qmgr line, so the event is emitted `header_wait` of event time after the qmgr line, or at
//! the queue id's `removed` if that comes first. Queue ids are reused once a message is gone:
//! `removed`, or a second `message-id=` for a key that already has one, ends the old entry.
//! An entry that never sees its qmgr line is dropped `qmgr_wait` after it started, and the
//! map holds at most `max_pending` entries and `max_pending_bytes`: each drop is counted by
//! reason.

use super::super::outcome::{CorrelationStats, Dropped, Ignored, LineOutcome};
use super::super::pending::{kept_id, kept_subject, HeapBytes, PendingMap, TooLong};
use super::line::{unfold_encoded_words, unfold_logged_folds};
use super::{HeaderName, PostfixKind, PostfixLine};
use crate::config::PostfixInputConfig;
use crate::engine::millis;
use crate::event::{normalize_message_id, normalize_sender, Event};
use crate::subject::decode_rfc2047;
use crate::timefmt::Millis;
use std::borrow::Cow;

/// The correlator's bounds, in milliseconds of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostfixSettings {
    /// How long after the qmgr line late header lines are still taken.
    pub header_wait: Millis,
    /// How long an entry waits for its qmgr line.
    pub qmgr_wait: Millis,
    /// Most entries held.
    pub max_pending: usize,
    /// Most bytes the entries hold.
    pub max_pending_bytes: usize,
}

impl PostfixSettings {
    /// From the `input.postfix` section.
    pub fn from_config(config: &PostfixInputConfig) -> Self {
        Self {
            header_wait: millis(config.header_wait),
            qmgr_wait: millis(config.qmgr_wait),
            max_pending: config.max_pending,
            max_pending_bytes: config.max_pending_bytes,
        }
    }
}

impl Default for PostfixSettings {
    fn default() -> Self {
        Self::from_config(&PostfixInputConfig::default())
    }
}

/// `(host, queue id)`.
type Key = (Box<str>, Box<str>);

/// A text as a waiting message keeps it, or the note that it was too long to keep.
type Kept = Result<String, TooLong>;

/// What is known of one message so far, each text already as the event will carry it
/// (normalized, decoded) and bounded (`pending.rs`). A text too long to keep drops the
/// message as `too_long`, if it is still the one the event would carry when it completes.
#[derive(Debug, Default)]
struct Entry {
    message_id: Option<Kept>,
    /// cleanup's own `message-id=` line was seen: a second one means the queue id was reused.
    /// (A `header_checks` INFO rule on Message-ID logs the header before that line, so a
    /// message id from a header line says nothing about reuse.)
    id_logged: bool,
    /// Decoded, cut as [`kept_subject`] does.
    subject: Option<Kept>,
    in_reply_to: Option<Kept>,
    /// The References header's root (empty when it names none).
    references_root: Option<Kept>,
    /// Sender, recipient count and time of the qmgr line.
    queued: Option<(Kept, u64, Millis)>,
}

impl Entry {
    /// The texts the event would carry, as kept so far.
    fn texts(&self) -> [Option<&Kept>; 5] {
        let sender = self.queued.as_ref().map(|(sender, _, _)| sender);
        [
            self.message_id.as_ref(),
            self.subject.as_ref(),
            self.in_reply_to.as_ref(),
            self.references_root.as_ref(),
            sender,
        ]
    }

    /// Whether a text the event would carry was too long to keep.
    fn too_long(&self) -> bool {
        self.texts()
            .into_iter()
            .any(|text| matches!(text, Some(Err(TooLong))))
    }
}

impl HeapBytes for Entry {
    fn heap_bytes(&self) -> usize {
        self.texts()
            .into_iter()
            .map(|text| text.map_or(0, Kept::heap_bytes))
            .sum()
    }
}

/// A header's value as the entry keeps it.
fn header_value(name: HeaderName, value: &str) -> Kept {
    match name {
        HeaderName::Subject => {
            let unfolded = unfold_encoded_words(value);
            let decoded = decode_rfc2047(&unfold_logged_folds(&unfolded)).into_owned();
            Ok(kept_subject(&decoded))
        }
        HeaderName::InReplyTo | HeaderName::MessageId => kept_id(normalize_message_id(value)),
        HeaderName::References => kept_id(references_root(value)),
    }
}

/// The first id of a References header (empty when it names none).
fn references_root(value: &str) -> &str {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(normalize_message_id)
        .find(|id| !id.is_empty())
        .unwrap_or("")
}

/// Assembles events from Postfix lines. `T` is the caller's token for a record (the service's
/// sequence number), so it can hold offset commits back while a record waits here.
pub struct PostfixCorrelator<T> {
    settings: PostfixSettings,
    pending: PendingMap<Key, Entry, T>,
    watermark: Millis,
    stats: CorrelationStats,
}

impl<T: Copy + Ord> PostfixCorrelator<T> {
    /// An empty correlator.
    pub fn new(settings: PostfixSettings) -> Self {
        Self {
            pending: PendingMap::new(settings.max_pending, settings.max_pending_bytes),
            settings,
            watermark: Millis::MIN,
            stats: CorrelationStats::default(),
        }
    }

    /// Takes one line (in event-time order); events it completes are pushed to `out`, with
    /// those of entries evicted to keep the map within its bounds.
    pub fn accept(
        &mut self,
        line: &PostfixLine<'_>,
        token: T,
        out: &mut Vec<Event<'static>>,
    ) -> LineOutcome {
        let outcome = self.apply(line, token, out);
        while let Some((_, evicted)) = self.pending.pop_over_bounds() {
            if evicted.queued.is_some() && !evicted.too_long() {
                self.stats.evicted_emitted += 1;
            }
            self.complete(evicted, Dropped::Evicted, out);
        }
        outcome
    }

    fn apply(
        &mut self,
        line: &PostfixLine<'_>,
        token: T,
        out: &mut Vec<Event<'static>>,
    ) -> LineOutcome {
        let key: Key = (line.host.as_ref().into(), line.queue_id.as_ref().into());
        let at = line.timestamp;
        match &line.kind {
            PostfixKind::MessageId(id) => {
                let reused = self.pending.get(&key).is_some_and(|e| e.id_logged);
                if reused {
                    // A queue id reused while the old message's `removed` was not seen.
                    self.finish(&key, Dropped::Superseded, out);
                }
                self.ensure(&key, at, token);
                self.pending.absorb(&key, token, |entry| {
                    entry.message_id = Some(kept_id(normalize_message_id(id)));
                    entry.id_logged = true;
                });
            }
            PostfixKind::Header(name, value) => {
                self.ensure(&key, at, token);
                self.pending.absorb(&key, token, |entry| {
                    let slot = match name {
                        HeaderName::Subject => &mut entry.subject,
                        HeaderName::InReplyTo => &mut entry.in_reply_to,
                        HeaderName::References => &mut entry.references_root,
                        HeaderName::MessageId => &mut entry.message_id,
                    };
                    // A repeated header (two Subject lines) keeps the first, as clients do.
                    if slot.is_none() {
                        *slot = Some(header_value(*name, value));
                    }
                });
            }
            PostfixKind::Queued { sender, nrcpt } => {
                let Some(entry) = self.pending.get(&key) else {
                    return LineOutcome::Ignored(Ignored::Unmatched);
                };
                if entry.queued.is_some() {
                    // qmgr logs `from=` again when a deferred message is retried.
                    return LineOutcome::Ignored(Ignored::OtherLine);
                }
                let queued = (kept_id(normalize_sender(sender)), *nrcpt, at);
                self.pending
                    .absorb(&key, token, |entry| entry.queued = Some(queued));
                self.pending
                    .set_deadline(&key, at.saturating_add(self.settings.header_wait));
            }
            PostfixKind::Removed => {
                if self.pending.get(&key).is_none() {
                    return LineOutcome::Ignored(Ignored::OtherLine);
                }
                self.finish(&key, Dropped::Expired, out);
            }
            PostfixKind::Rejected => {
                if self.pending.remove(&key).is_none() {
                    return LineOutcome::Ignored(Ignored::OtherLine);
                }
                self.stats.note_dropped(Dropped::Rejected);
            }
        }
        LineOutcome::Absorbed
    }

    /// Emits or drops the entries whose bound has passed at event time `now` (the caller's
    /// stream time; it never moves back).
    pub fn expire(&mut self, now: Millis, out: &mut Vec<Event<'static>>) {
        self.watermark = self.watermark.max(now);
        while let Some((_, entry)) = self.pending.pop_due(self.watermark) {
            self.complete(entry, Dropped::Expired, out);
        }
    }

    /// At the end of input: emits every entry that has its qmgr line, drops the rest.
    pub fn flush(&mut self, out: &mut Vec<Event<'static>>) {
        while let Some((_, entry)) = self.pending.pop_oldest() {
            self.complete(entry, Dropped::Expired, out);
        }
    }

    /// The smallest token of a record still waiting in an entry.
    pub fn oldest_pending_token(&self) -> Option<T> {
        self.pending.oldest_token()
    }

    /// Entries waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The bytes the entries waiting hold (what `max_pending_bytes` bounds).
    pub fn pending_bytes(&self) -> usize {
        self.pending.bytes()
    }

    /// Counters since start.
    pub fn stats(&self) -> CorrelationStats {
        self.stats
    }

    /// Creates `key`'s entry (with its qmgr deadline) unless it exists. (The map may be over
    /// its bounds until [`Self::accept`] evicts.)
    fn ensure(&mut self, key: &Key, at: Millis, token: T) {
        if self.pending.get(key).is_some() {
            return;
        }
        let deadline = at.saturating_add(self.settings.qmgr_wait);
        self.pending
            .insert(key.clone(), Entry::default(), deadline, token);
    }

    /// Ends `key`'s entry: emitted if complete, else dropped for `reason`.
    fn finish(&mut self, key: &Key, reason: Dropped, out: &mut Vec<Event<'static>>) {
        if let Some(entry) = self.pending.remove(key) {
            self.complete(entry, reason, out);
        }
    }

    fn complete(&mut self, entry: Entry, reason: Dropped, out: &mut Vec<Event<'static>>) {
        if entry.too_long() {
            self.stats.note_dropped(Dropped::TooLong);
            return;
        }
        match to_event(entry) {
            Some(event) => {
                self.stats.emitted += 1;
                out.push(event);
            }
            None => self.stats.note_dropped(reason),
        }
    }
}

/// The contract event of a complete entry; `None` without its qmgr line. (Texts too long to
/// keep are looked for first: [`Entry::too_long`].)
fn to_event(entry: Entry) -> Option<Event<'static>> {
    debug_assert!(
        !entry.too_long(),
        "a message with a text too long to keep is dropped"
    );
    let (sender, nrcpt, at) = entry.queued?;
    let kept = |text: Option<Kept>| text.and_then(Result::ok);
    let nonempty = |text: Option<Kept>| kept(text).filter(|t| !t.is_empty()).map(Cow::Owned);
    Some(Event {
        timestamp: at,
        message_id: Cow::Owned(kept(entry.message_id).unwrap_or_default()),
        sender: Cow::Owned(sender.ok()?),
        recipient_count: nrcpt,
        thread_id: None,
        in_reply_to: nonempty(entry.in_reply_to),
        references_root: nonempty(entry.references_root),
        subject: kept(entry.subject)
            .filter(|s| !s.trim().is_empty())
            .map(Cow::Owned),
    })
}
