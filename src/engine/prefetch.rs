//! Batches: an event's map lookups started before it is decided. At millions of tracked
//! threads and message ids each lookup is a cache miss, and one event's lookups depend on each
//! other (a joined message's record names its thread), so one event at a time they wait in
//! turn. Here a batch's key hashes are computed first and its lookups started in passes over the
//! whole batch, so that they overlap; where each entry was found is kept as a hint for the
//! event's own lookups ([`super::lru::Hint`]). Only hints: nothing here changes the maps.

use super::keys::KeyHash;
use super::lru::{self, Hint, LruMap};
use super::thread::Thread;
use super::{Engine, MessageRecord, Outcome};
use crate::alert::Alert;
use crate::event::Event;
use std::ops::ControlFlow;

/// The hashes an event is looked up by, computed once per event, and where a batch's prefetch
/// found them ([`Hint::Unknown`] outside a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EventKeys {
    /// Its message id's, when it has one.
    pub id: Option<KeyHash>,
    /// Its thread id's, else its References root's, else its In-Reply-To's.
    pub join: Option<KeyHash>,
    /// Whether `join` is a thread id's (a thread key) rather than a message id's.
    pub by_thread_id: bool,
    /// `id` in the message-id map.
    pub id_at: Hint,
    /// `join` in the message-id map (a References / In-Reply-To join).
    pub join_at: Hint,
    /// The thread the event most likely updates, and where it is in the thread map.
    pub thread: Option<(KeyHash, Hint)>,
}

impl EventKeys {
    /// Whether `self` and `other` are the same event's hashes, whatever their hints.
    pub(super) fn same_hashes(&self, other: &Self) -> bool {
        (self.id, self.join, self.by_thread_id) == (other.id, other.join, other.by_thread_id)
    }

    /// The hint for a lookup of thread `hash`.
    pub(super) fn thread_hint(&self, hash: KeyHash) -> Hint {
        match self.thread {
            Some((guess, hint)) if guess == hash => hint,
            _ => Hint::Unknown,
        }
    }

    /// The same hashes without hints.
    pub(super) fn unhinted(self) -> Self {
        Self {
            id_at: Hint::Unknown,
            join_at: Hint::Unknown,
            thread: None,
            ..self
        }
    }
}

/// The key hashes of a batch of events whose lookups [`Engine::prefetch_batch`] started. Each
/// event is handed back, in the same order, to [`Engine::ingest_prefetched`], which takes its
/// hashes from here instead of computing them again. Kept by the caller and reused from batch
/// to batch, so a batch costs no allocation.
#[derive(Debug, Default)]
pub struct PrefetchedBatch {
    keys: Vec<EventKeys>,
    /// The next event's index in `keys`.
    next: usize,
    /// The engine's [`Engine::hint_epoch`] when the hints were taken: those of an earlier
    /// batch (a caller with two batches) are not believed.
    epoch: u64,
}

/// What an event joins its conversation by: its thread id, else its References root, else its
/// In-Reply-To (contract section 2).
fn join_key<'a>(event: &'a Event<'_>) -> Option<&'a str> {
    event
        .thread_id
        .as_deref()
        .or(event.references_root.as_deref())
        .or(event.in_reply_to.as_deref())
}

impl Engine {
    /// Processes `events` in order, exactly as [`Engine::ingest`] one by one would. After each
    /// event, `after_each` is called with its index, its outcome and `alerts` (holding what it
    /// caused, unless the caller took earlier ones out); `Break` stops the batch there, before
    /// the next event is ingested, and is returned.
    ///
    /// Why batches: at millions of tracked threads and message ids, an event's map lookups are
    /// cache misses, and one event's lookups depend on each other, so they wait in turn. Here
    /// the lookups of the whole batch are started first: being independent, they overlap, and
    /// the events then find their entries in the cache. When the maps fit in the cache there is
    /// nothing to hide, and the extra passes cost about 14% (BENCHMARKS.md, session 4).
    pub fn ingest_batch<B>(
        &mut self,
        events: &[Event<'_>],
        alerts: &mut Vec<Alert>,
        mut after_each: impl FnMut(usize, Outcome, &mut Vec<Alert>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let mut batch = std::mem::take(&mut self.batch);
        self.prefetch_batch(events, &mut batch);
        let mut flow = ControlFlow::Continue(());
        for (index, event) in events.iter().enumerate() {
            let outcome = self.ingest_prefetched(event, &mut batch, alerts);
            flow = after_each(index, outcome, alerts);
            if flow.is_break() {
                break;
            }
        }
        self.batch = batch;
        flow
    }

    /// Starts the map lookups of `events`, a batch about to be ingested in this order with
    /// [`Engine::ingest_prefetched`], and keeps their key hashes in `batch` for it (replacing
    /// what it held). For callers that cannot hand [`Engine::ingest_batch`] a slice of events,
    /// or must act on the engine between two events (the service adopts announced storm starts).
    /// Only hints: the maps and their recency order do not change (`&mut self` only starts the
    /// batch's hints: see `LruMap::forget_inserted`).
    pub fn prefetch_batch<'a, 'e: 'a, I>(&mut self, events: I, batch: &mut PrefetchedBatch)
    where
        I: IntoIterator<Item = &'a Event<'e>>,
        I::IntoIter: Clone,
    {
        let events = events.into_iter();
        // The strings to hash first: in the service another thread decoded them, so they are
        // in that core's cache, and each event's first read would wait for them in turn.
        for event in events.clone() {
            lru::prefetch_bytes(event.message_id.as_bytes());
            if let Some(join) = join_key(event) {
                lru::prefetch_bytes(join.as_bytes());
            }
        }
        batch.keys.clear();
        batch.next = 0;
        batch
            .keys
            .extend(events.map(|event| self.key_hashes(event)));
        self.hint_epoch += 1;
        batch.epoch = self.hint_epoch;
        self.threads.forget_inserted();
        self.message_ids.forget_inserted();
        self.prefetch(&mut batch.keys);
    }

    /// [`Engine::ingest`] for the next event of a batch given to [`Engine::prefetch_batch`]:
    /// the same decision, without hashing the event's keys again. An event beyond the batch is
    /// simply hashed.
    pub fn ingest_prefetched(
        &mut self,
        event: &Event<'_>,
        batch: &mut PrefetchedBatch,
        alerts: &mut Vec<Alert>,
    ) -> Outcome {
        let keys = match batch.keys.get(batch.next) {
            Some(keys) if batch.epoch == self.hint_epoch => {
                batch.next += 1;
                *keys
            }
            Some(keys) => {
                batch.next += 1;
                keys.unhinted()
            }
            None => self.key_hashes(event),
        };
        debug_assert!(
            keys.same_hashes(&self.key_hashes(event)),
            "events handed back out of their batch's order"
        );
        self.ingest_hashed(event, keys, alerts)
    }

    /// The prefetch passes over a batch's key hashes (`batch`). Each pass goes over
    /// the whole batch before the next starts, so the loads it starts for different events
    /// overlap; the next pass follows what the previous one loaded (a joined message's record,
    /// then its thread key, then the thread). Where each entry was found is kept in `batch`
    /// for the events' own lookups, which then search only where the map changed since
    /// (`LruMap::lookup_hinted`): otherwise each lookup searched the index twice, and dropping
    /// the second search took 7% of the engine's instructions (BENCHMARKS.md, session 11).
    /// Only hints: nothing here changes the maps or their recency order.
    fn prefetch(&self, batch: &mut [EventKeys]) {
        // The index lines first: their addresses come from the hashes alone, so these loads
        // all start at once, and the next pass finds the lines it searches in the cache.
        for keys in batch.iter() {
            self.visit_entries(keys, prefetch_index_line, prefetch_index_line);
        }
        // Then the entries, keeping where each was found for the event's own lookups.
        for keys in batch.iter_mut() {
            (keys.id_at, keys.join_at, keys.thread) =
                self.visit_entries(keys, LruMap::hint, LruMap::hint);
        }
        // The joined messages' records, now (being) loaded, name the threads: their keys are
        // loaded next, then hashed to prefetch the threads (unless the first pass guessed it).
        for keys in batch.iter() {
            if let Some(record) = self.joined_record(keys) {
                lru::prefetch_bytes(record.thread.as_bytes());
            }
        }
        for keys in batch.iter_mut() {
            let (Some(record), Some(join)) = (self.joined_record(keys), keys.join) else {
                continue;
            };
            let thread = self.hasher.hash(&record.thread);
            if thread != join {
                keys.thread = Some((thread, self.threads.hint(&thread)));
            }
        }
    }

    /// The hashes of the keys an event is looked up by.
    pub(super) fn key_hashes(&self, event: &Event<'_>) -> EventKeys {
        let message_id: &str = &event.message_id;
        let join = join_key(event);
        EventKeys {
            id: (!message_id.is_empty()).then(|| self.hasher.hash(message_id)),
            join: join.map(|key| self.hasher.hash(key)),
            by_thread_id: event.thread_id.is_some(),
            id_at: Hint::Unknown,
            join_at: Hint::Unknown,
            thread: None,
        }
    }

    /// Calls `on_record` and `on_thread` (one prefetch step each) for the entries an event's
    /// lookups will reach first: its own message id's record and thread, and the record (or, by
    /// thread id, the thread) it joins. Returns what they said, as `(id_at, join_at, thread)`
    /// of [`EventKeys`].
    fn visit_entries(
        &self,
        keys: &EventKeys,
        on_record: impl Fn(&LruMap<MessageRecord>, &KeyHash) -> Hint,
        on_thread: impl Fn(&LruMap<Thread>, &KeyHash) -> Hint,
    ) -> (Hint, Hint, Option<(KeyHash, Hint)>) {
        let id_at = keys
            .id
            .map_or(Hint::Unknown, |id| on_record(&self.message_ids, &id));
        match keys.join {
            // A thread id is the thread's key.
            Some(join) if keys.by_thread_id => (
                id_at,
                Hint::Unknown,
                Some((join, on_thread(&self.threads, &join))),
            ),
            // A conversation's key is most often its first message's id: the References root
            // or the In-Reply-To itself. Its thread is prefetched on that guess; the record
            // names the true one (the last pass of `prefetch`).
            Some(join) => {
                let join_at = on_record(&self.message_ids, &join);
                (
                    id_at,
                    join_at,
                    Some((join, on_thread(&self.threads, &join))),
                )
            }
            // Nothing to join by: the event's own id will most likely be its thread's key.
            None => (
                id_at,
                Hint::Unknown,
                keys.id.map(|id| (id, on_thread(&self.threads, &id))),
            ),
        }
    }

    /// The record a References / In-Reply-To join reaches, if one is remembered.
    fn joined_record(&self, keys: &EventKeys) -> Option<&MessageRecord> {
        if keys.by_thread_id {
            return None;
        }
        self.message_ids
            .get_hinted(keys.join.as_ref()?, keys.join_at)
    }
}

/// The first step of [`Engine::prefetch`] for one entry: its line of the index.
fn prefetch_index_line<V>(map: &LruMap<V>, key: &KeyHash) -> Hint {
    map.prefetch_index(key);
    Hint::Unknown
}
