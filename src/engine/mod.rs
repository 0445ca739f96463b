//! The detector: a pure, deterministic state machine from events to alerts (contract sections 2
//! and 3).
//!
//! It never touches Kafka, sockets, the wall clock or a metrics registry: it is given events (and
//! their timestamps are its only clock) and returns alerts and per-outcome counts. Replay, the
//! service, tests and benchmarks all drive this same engine, which is what makes a replay's
//! alerts equal the service's for the same event order.
//!
//! State, all bounded by configuration:
//! - threads (`limits.max_threads`), least recently active first out, never one with an active
//!   storm; each holds its latest subject, its reply-alls in [`window::ReplyWindows`] (capped by
//!   `limits.max_reply_alls_per_thread`) and its storm, if any. Their texts together are bounded
//!   by `limits.max_thread_bytes`, their windows by `limits.max_window_bytes` (past it, windows
//!   of threads without a storm are forgotten in their own order, `window_order.rs`);
//! - message id -> thread key and "counted as a reply-all at" (`limits.max_message_ids`), for
//!   References/In-Reply-To joins and duplicates; new records only for ids that join a thread
//!   named otherwise or counted as a reply-all (an id that is its own thread's key needs none);
//! - normalized subject -> thread key for big-audience messages (`limits.max_subjects`), for
//!   replies that carry only a subject;
//! - a min-heap of active storms' end deadlines, so ending storms costs nothing per event.
//!
//! The three bounded maps are keyed by a 128-bit keyed hash of the id, key or subject
//! (`keys.rs`, which states why a hash may stand for the string) and kept in recency order in a
//! slab (`lru.rs`): a lookup is one hash and no string comparison, a remembered message id keeps
//! no copy of its text, and an entry costs no allocation of its own. Thread key strings are
//! kept (shared, one allocation per key) because alerts and the message-id records name them,
//! but only from the first time something does: a conversation nothing joins keeps none.
//!
//! Here: deciding one event. Beside it: batches and the prefetch of their lookups
//! (`prefetch.rs`), storms once started and their ends (`storms.rs`), a thread's state
//! (`thread.rs`), its reply-all windows (`window.rs`), the order they are forgotten in
//! (`window_order.rs`) and the rules over them (`rules.rs`).

mod index_table;
mod keys;
mod lru;
mod prefetch;
mod rules;
mod settings;
mod storms;
mod thread;
mod window;
mod window_order;

pub use rules::{Rule, RuleSet, ALERT_WINDOW};
pub use settings::{millis, Settings};
pub use window::{ReplyAll, ReplyWindows, WindowStats};

use crate::alert::{Alert, AlertKind, Severity};
use crate::config::Config;
use crate::event::{cut_to_bytes, lowercase_into, Event};
use crate::subject::{analyze_into, first_prefix, PrefixKind};
use crate::timefmt::Millis;
use keys::{KeyHash, KeyHasher};
pub use lru::ReserveError;
use lru::{Found, Hint, LruMap};
use prefetch::EventKeys;
pub use prefetch::PrefetchedBatch;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;
use storms::Deadline;
pub use storms::{ResumedStorm, StormSnapshot};
use thread::{Held, Storm, Thread};
use window_order::WindowOrder;

/// What the engine did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted, and counted as a reply-all in its thread's windows.
    Counted,
    /// Accepted (it moved the clock and updated the maps) but is not a counted reply-all.
    Ignored,
    /// Older than stream time minus the allowed lateness: not accepted.
    Late,
    /// A repeat of a message already counted as a reply-all within the dedup window.
    Duplicate,
}

impl Outcome {
    /// The metric label and summary name.
    pub const fn label(self) -> &'static str {
        match self {
            Outcome::Counted => "counted",
            Outcome::Ignored => "ignored",
            Outcome::Late => "late",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// Running counts of what the engine did, for metrics and summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events counted as reply-alls.
    pub counted: u64,
    /// Accepted events that are not counted reply-alls.
    pub ignored: u64,
    /// Late events.
    pub late: u64,
    /// Duplicate reply-alls.
    pub duplicate: u64,
    /// `storm_started` alerts.
    pub storms_started: u64,
    /// `storm_escalated` alerts.
    pub storms_escalated: u64,
    /// `storm_ended` alerts.
    pub storms_ended: u64,
    /// Threads evicted at `limits.max_threads`.
    pub thread_evictions: u64,
    /// Message ids forgotten at `limits.max_message_ids`.
    pub message_id_evictions: u64,
    /// Subjects forgotten at `limits.max_subjects`.
    pub subject_evictions: u64,
    /// Reply-alls dropped at `limits.max_reply_alls_per_thread`.
    pub reply_alls_dropped: u64,
    /// Reply-alls not counted because active storms held every thread `limits.max_threads`
    /// allows, or `limits.max_window_bytes`.
    pub untracked_reply_alls: u64,
    /// Threads whose reply-all windows were forgotten at `limits.max_window_bytes`.
    pub windows_forgotten: u64,
}

/// What the engine remembers of a message id (kept under the id's [`KeyHash`]: the id's text
/// is not kept).
#[derive(Debug, Clone)]
struct MessageRecord {
    thread: Arc<str>,
    /// When the message last counted as a reply-all, for duplicates; [`NEVER_COUNTED`] when it
    /// has not (a sentinel rather than an `Option`, which would take 8 more bytes per id).
    counted_at: Millis,
}

/// An event's thread key: its hash, its text, and the thread map's lookup of it when one was
/// made on the way.
struct ThreadOf<'e> {
    hash: KeyHash,
    key: KeyText<'e>,
    found: Option<Found>,
}

/// A thread key's text as the engine has it while it decides one event.
enum KeyText<'e> {
    /// A shared copy: a record's, a subject's, or the tracked thread's.
    Shared(Arc<str>),
    /// The event's own text of it (its message id, thread id or join), from which a shared
    /// copy is made only when one is needed ([`Engine::share_key`]).
    Event(&'e str),
}

impl KeyText<'_> {
    /// A shared copy: the one held, or a new one.
    fn to_shared(&self) -> Arc<str> {
        match self {
            KeyText::Shared(key) => key.clone(),
            KeyText::Event(text) => Arc::from(*text),
        }
    }

    /// The shared copy, if one is held.
    fn shared(&self) -> Option<&Arc<str>> {
        match self {
            KeyText::Shared(key) => Some(key),
            KeyText::Event(_) => None,
        }
    }
}

/// `counted_at` of a message that never counted as a reply-all. Accepted timestamps are never
/// this small (the decoder refuses negative ones).
const NEVER_COUNTED: Millis = Millis::MIN;

/// What a thread key made from a normalized subject starts with (contract section 2, rule 4).
const SUBJECT_KEY_PREFIX: &str = "subject:";

/// The longest subject kept, in Unicode code points (contract section 4).
pub const MAX_SUBJECT_CHARS: usize = 256;

/// The most bytes of a normalized subject that count, for the subject map and for a
/// `subject:` thread key: the key is then no longer than an id may be
/// ([`crate::event::MAX_ID_BYTES`]), which keeps the thread key in maps of millions of entries
/// and in alerts (twice on the alerts topic: as key and field) bounded, whatever the subject.
/// Two subjects that differ only past this point are one subject here.
const MAX_SUBJECT_KEY_BYTES: usize = crate::event::MAX_ID_BYTES - SUBJECT_KEY_PREFIX.len();

/// How many active-storm threads eviction steps over before giving up on making room.
const EVICTION_SCAN: usize = 64;

/// The most entries each map holds at once under the caps.
struct MapLengths {
    threads: usize,
    message_ids: usize,
    subjects: usize,
}

impl MapLengths {
    fn of(settings: &Settings) -> Self {
        // A thread is evicted before its replacement goes in. A message id or subject goes in
        // first and the oldest is evicted after, so those maps hold one entry over their caps
        // for a moment: reserving only the cap would grow (double) the map at that moment.
        Self {
            threads: settings.max_threads,
            message_ids: settings.max_message_ids.saturating_add(1),
            subjects: settings.max_subjects.saturating_add(1),
        }
    }
}

/// The detector. See the module documentation.
pub struct Engine {
    settings: Settings,
    /// Keyed hashing of ids, thread keys, subjects and senders: they are attacker-controlled
    /// input, so hashes must not be predictable (hash flooding, collisions).
    hasher: KeyHasher,
    /// Stream time `T`: the largest accepted timestamp.
    now: Option<Millis>,
    /// Thread key hash -> thread.
    threads: LruMap<Thread>,
    /// Message id hash -> its thread key and when it counted.
    message_ids: LruMap<MessageRecord>,
    /// Normalized subject hash -> thread key.
    subjects: LruMap<Arc<str>>,
    /// What the tracked threads hold besides their entries ([`Thread::held`]): text bounded by
    /// `limits.max_thread_bytes`, windows by `limits.max_window_bytes`.
    held: Held,
    /// The order threads' windows are forgotten in past `limits.max_window_bytes`.
    window_order: WindowOrder,
    /// The bytes of the thread keys the message-id records hold (each record counts its key,
    /// shared or not), bounded by `limits.max_message_id_bytes`.
    message_id_bytes: usize,
    deadlines: BinaryHeap<Deadline>,
    active: BTreeSet<Arc<str>>,
    next_epoch: u64,
    stats: EngineStats,
    /// Reused buffers, so an event costs no allocation for its normalized subject or sender.
    normalized_subject: String,
    sender_buf: String,
    /// Reused for a `subject:` thread key (contract section 2, rule 4), so a reply known only
    /// by its subject costs no formatting and no allocation unless its thread is new.
    subject_key: String,
    /// Reused by [`Engine::ingest_batch`] for its events' key hashes.
    batch: PrefetchedBatch,
    /// Counts [`Engine::prefetch_batch`] calls: the hints of the latest batch alone hold.
    hint_epoch: u64,
    /// The caller's wall clock at the arrival of the events being ingested (service mode).
    arrival: Option<Millis>,
}

impl Engine {
    /// A new engine with empty state.
    pub fn new(settings: Settings) -> Self {
        let lengths = MapLengths::of(&settings);
        Self {
            settings,
            threads: LruMap::with_max_len(lengths.threads),
            message_ids: LruMap::with_max_len(lengths.message_ids),
            subjects: LruMap::with_max_len(lengths.subjects),
            held: Held::default(),
            window_order: WindowOrder::default(),
            message_id_bytes: 0,
            hasher: KeyHasher::new(),
            now: None,
            deadlines: BinaryHeap::new(),
            active: BTreeSet::new(),
            next_epoch: 0,
            stats: EngineStats::default(),
            normalized_subject: String::new(),
            sender_buf: String::new(),
            subject_key: String::new(),
            batch: PrefetchedBatch::default(),
            hint_epoch: 0,
            arrival: None,
        }
    }

    /// A new engine for a configuration.
    pub fn from_config(config: &Config) -> Self {
        Self::new(Settings::from_config(config))
    }

    /// Reserves the maps' full capacity (`limits.max_threads`, `max_message_ids`,
    /// `max_subjects`) now, so that no map grows, and rehashes millions of entries, in the middle
    /// of a storm: the service calls this at start for steady latency; replay sizes the maps for
    /// its input instead ([`Self::reserve_entries`]). On failure (caps beyond what the
    /// allocator grants) the maps simply grow as needed.
    pub fn reserve_capacity(&mut self) -> Result<(), ReserveError> {
        let lengths = MapLengths::of(&self.settings);
        self.threads.try_reserve(lengths.threads)?;
        self.message_ids.try_reserve(lengths.message_ids)?;
        self.subjects.try_reserve(lengths.subjects)
    }

    /// Reserves for a replay of at most about `events_at_most` events (`None`: unknown):
    /// room for the caps' entries in the maps' slabs, and in their hash indexes for as many
    /// entries as such an input can bring (no map holds more entries than there were events).
    ///
    /// A slab grown by doubling copies its entries at each step and leaves the old copy behind
    /// (with the kernel zeroing fresh pages for both); reserved, it is address space that the
    /// kernel backs only as entries arrive, in order, so a short input costs no more memory
    /// than before. An index grown by doubling places every entry again at each step (6% of a
    /// 5M-event replay); but entries land on it at random, so a reserved one is backed wherever
    /// they land, nearly whole once they outnumber its pages. Hence an index sized for the
    /// input rather than for the caps. On failure the maps simply grow as needed: every
    /// reservation is still tried, the slabs first, and the first refusal is returned.
    pub fn reserve_entries(&mut self, events_at_most: Option<usize>) -> Result<(), ReserveError> {
        let lengths = MapLengths::of(&self.settings);
        let index = |cap: usize| events_at_most.map_or(0, |events| events.min(cap));
        [
            self.threads.try_reserve_slab(lengths.threads),
            self.message_ids.try_reserve_slab(lengths.message_ids),
            self.subjects.try_reserve_slab(lengths.subjects),
            self.threads.try_reserve_index(index(lengths.threads)),
            self.message_ids
                .try_reserve_index(index(lengths.message_ids)),
            self.subjects.try_reserve_index(index(lengths.subjects)),
        ]
        .into_iter()
        .collect()
    }

    /// Has the kernel back the maps' reserved room now (see [`Self::reserve_capacity`]), and
    /// returns its bytes. A fresh page costs a fault and a zeroing the first time an entry lands
    /// on it, on the detection thread, and the maps fill fastest when a storm multiplies the
    /// input; touched at start, that cost is paid once, before any record is read, and a memory
    /// limit too small for the caps shows at start rather than in the middle of a storm. Call
    /// it right after [`Self::reserve_capacity`]: it backs the slabs' room (about 260 MB at
    /// the default caps) and the hash indexes (about 41 MB).
    pub fn pretouch_reserved(&mut self) -> usize {
        self.threads.pretouch_reserved()
            + self.message_ids.pretouch_reserved()
            + self.subjects.pretouch_reserved()
    }

    /// The slab and index capacities of the thread, message-id and subject maps.
    #[cfg(test)]
    fn map_capacities(&self) -> [(usize, usize); 3] {
        [
            self.threads.capacities(),
            self.message_ids.capacities(),
            self.subjects.capacities(),
        ]
    }

    /// Stream time `T`, once any event was accepted.
    pub fn stream_time(&self) -> Option<Millis> {
        self.now
    }

    /// Running counts.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Threads currently tracked (at most `limits.max_threads`).
    pub fn tracked_threads(&self) -> usize {
        self.threads.len()
    }

    /// The bytes of text the tracked threads hold: their subjects, shared keys and the sender
    /// addresses alerts list. At most `limits.max_thread_bytes` between events, but for
    /// threads with active storms (never evicted) and the thread the latest event updated.
    pub fn thread_bytes(&self) -> usize {
        self.held.text
    }

    /// The bytes the tracked threads' reply-all windows, storms and sender tables have
    /// allocated, estimated, and the order they are forgotten in. At most
    /// `limits.max_window_bytes` between events, but for active storms' windows, the latest
    /// event's thread's, and the order's own room; past it no other thread starts windows.
    pub fn window_bytes(&self) -> usize {
        self.held.windows + self.window_order.heap_bytes()
    }

    /// The bytes of thread keys the message-id records hold (at most
    /// `limits.max_message_id_bytes` between events).
    pub fn message_id_bytes(&self) -> usize {
        self.message_id_bytes
    }

    /// What the threads hold ([`Self::thread_bytes`], [`Self::window_bytes`]) and
    /// [`Self::message_id_bytes`], counted again from the maps.
    #[cfg(test)]
    fn recounted_bytes(&self) -> (Held, usize) {
        (
            self.threads
                .values()
                .map(Thread::recounted_held)
                .fold(Held::default(), Held::plus),
            self.message_ids.values().map(|r| r.thread.len()).sum(),
        )
    }

    /// Message ids remembered (at most `limits.max_message_ids`).
    pub fn remembered_message_ids(&self) -> usize {
        self.message_ids.len()
    }

    /// Subjects remembered (at most `limits.max_subjects`).
    pub fn remembered_subjects(&self) -> usize {
        self.subjects.len()
    }

    /// Processes one decoded event, appending any alerts it causes to `alerts`.
    pub fn ingest(&mut self, event: &Event<'_>, alerts: &mut Vec<Alert>) -> Outcome {
        let hashes = self.key_hashes(event);
        self.ingest_hashed(event, hashes, alerts)
    }

    /// [`Engine::ingest`] with the event's key hashes already computed.
    fn ingest_hashed(
        &mut self,
        event: &Event<'_>,
        keys: EventKeys,
        alerts: &mut Vec<Alert>,
    ) -> Outcome {
        let at = event.timestamp;
        if let Some(now) = self.now {
            if at < now.saturating_sub(self.settings.allowed_lateness) {
                self.stats.late += 1;
                return Outcome::Late;
            }
        }
        // The id's lookup serves both the duplicate check and the record kept after.
        let id = keys
            .id
            .map(|hash| (hash, self.message_ids.lookup_hinted(&hash, keys.id_at)));
        if self.is_duplicate(id, at) {
            self.stats.duplicate += 1;
            return Outcome::Duplicate;
        }
        if self.now.is_none_or(|now| at > now) {
            self.now = Some(at);
            // Storms that this step of the clock ends are ended before the event is applied.
            self.end_quiet_storms(at, alerts);
        }
        let now = self.now.unwrap_or(at);

        let big_audience = event.recipient_count >= self.settings.min_recipients;
        // The subject's prefix and normalized form matter only for a big audience (is it a
        // reply-all; its subject is remembered for rule 4) and for an event with nothing to
        // join by (its thread may be found by subject). Most events are neither, and analysis
        // costs about 1,000 instructions, half of what the engine spends on an event. Of an
        // event with nothing to join by, usually a conversation's first message, only the
        // prefix is asked first: the normalized form is needed only when it is a reply.
        let joined = event.thread_id.is_some()
            || event.references_root.is_some()
            || event.in_reply_to.is_some();
        let prefix = if big_audience {
            self.analyze_subject(event)
        } else if joined {
            self.normalized_subject.clear();
            None
        } else {
            match event.subject.as_deref().and_then(first_prefix) {
                Some(PrefixKind::Reply) => self.analyze_subject(event),
                other => {
                    self.normalized_subject.clear();
                    other
                }
            }
        };
        let is_reply = event.in_reply_to.is_some()
            || event.references_root.is_some()
            || prefix == Some(PrefixKind::Reply);
        let is_reply_all = is_reply && big_audience;

        let Some(mut thread) = self.thread_key(event, prefix, keys) else {
            // No id and nothing to join it by: it counts in no window.
            self.stats.ignored += 1;
            return Outcome::Ignored;
        };
        if big_audience && !self.normalized_subject.is_empty() {
            let key = self.share_key(&mut thread);
            self.record_subject(&key);
        }
        let counted = self.apply_to_thread(&mut thread, event, is_reply_all, now, alerts);
        let touched = thread.hash;
        if let Some(id) = id {
            // Only a reply-all that was counted makes later lines of its message duplicates.
            self.record_message(id, thread, counted.then_some(at));
        }
        self.evict_over_byte_bounds(touched);
        if counted {
            self.stats.counted += 1;
            Outcome::Counted
        } else {
            self.stats.ignored += 1;
            Outcome::Ignored
        }
    }

    /// The thread key `event` would get now (contract section 2), without applying it: for
    /// tools and the thread-key benchmark. `None` when it would get none.
    pub fn thread_key_of(&mut self, event: &Event<'_>) -> Option<Arc<str>> {
        let prefix = self.analyze_subject(event);
        let keys = self.key_hashes(event);
        self.thread_key(event, prefix, keys)
            .map(|thread| thread.key.to_shared())
    }

    /// The event's subject prefix kind, leaving its normalized subject (empty when it has
    /// none) in `normalized_subject`.
    fn analyze_subject(&mut self, event: &Event<'_>) -> Option<PrefixKind> {
        match &event.subject {
            Some(subject) => {
                let prefix = analyze_into(subject, &mut self.normalized_subject);
                let kept = cut_to_bytes(&self.normalized_subject, MAX_SUBJECT_KEY_BYTES).len();
                self.normalized_subject.truncate(kept);
                prefix
            }
            None => {
                self.normalized_subject.clear();
                None
            }
        }
    }

    /// Whether the event repeats a message already counted as a reply-all less than
    /// `dedup_window` before it. An empty id never makes a duplicate.
    fn is_duplicate(&self, id: Option<(KeyHash, Found)>, at: Millis) -> bool {
        let Some((id_hash, found)) = id else {
            return false;
        };
        self.message_ids
            .get_found(&id_hash, found)
            .map(|record| record.counted_at)
            .filter(|&counted| counted != NEVER_COUNTED)
            .is_some_and(|counted| at.saturating_sub(counted) < self.settings.dedup_window)
    }

    /// The thread key of contract section 2, in order of preference, with its hash.
    fn thread_key<'e>(
        &mut self,
        event: &'e Event<'_>,
        prefix: Option<PrefixKind>,
        keys: EventKeys,
    ) -> Option<ThreadOf<'e>> {
        if let Some(thread_id) = &event.thread_id {
            let join = keys.join?;
            return Some(self.intern_hashed(join, thread_id, keys.thread_hint(join)));
        }
        if let Some(root) = event
            .references_root
            .as_deref()
            .or(event.in_reply_to.as_deref())
        {
            return self.known_thread_or(root, &keys);
        }
        if prefix == Some(PrefixKind::Reply) && !self.normalized_subject.is_empty() {
            let subject_hash = self.hasher.hash(&self.normalized_subject);
            if let Some(key) = self.subjects.get(&subject_hash) {
                return Some(ThreadOf {
                    hash: self.hasher.hash(key),
                    key: KeyText::Shared(key.clone()),
                    found: None,
                });
            }
            self.subject_key.clear();
            self.subject_key.push_str(SUBJECT_KEY_PREFIX);
            self.subject_key.push_str(&self.normalized_subject);
            // The text is in a buffer of the engine's, which the thread cannot borrow: shared
            // at once (the tracked thread's copy, if it has one).
            let ThreadOf { hash, found, .. } = self.intern(&self.subject_key);
            let key = found
                .and_then(|found| self.threads.get_found(&hash, found))
                .and_then(Thread::shared_key)
                .cloned()
                .unwrap_or_else(|| Arc::from(self.subject_key.as_str()));
            return Some(ThreadOf {
                hash,
                key: KeyText::Shared(key),
                found,
            });
        }
        let id = keys.id?;
        Some(self.intern_hashed(id, &event.message_id, keys.thread_hint(id)))
    }

    /// The thread key recorded for the message id an event joins (`message_id`, whose hash is
    /// `keys.join`), else that id itself.
    fn known_thread_or<'e>(&self, message_id: &'e str, keys: &EventKeys) -> Option<ThreadOf<'e>> {
        let join = keys.join?;
        Some(match self.message_ids.get_hinted(&join, keys.join_at) {
            Some(record) => {
                let hash = self.hasher.hash(&record.thread);
                ThreadOf {
                    hash,
                    key: KeyText::Shared(record.thread.clone()),
                    found: Some(self.threads.lookup_hinted(&hash, keys.thread_hint(hash))),
                }
            }
            None => self.intern_hashed(join, message_id, keys.thread_hint(join)),
        })
    }

    /// A thread key with its hash and its thread's lookup.
    fn intern<'e>(&self, key: &'e str) -> ThreadOf<'e> {
        self.intern_hashed(self.hasher.hash(key), key, Hint::Unknown)
    }

    /// A thread key whose hash is `hash`, with its thread's lookup (`hint` is where a batch's
    /// prefetch found the thread, if it looked). No shared copy is made or taken here: most
    /// events never need one ([`Engine::share_key`]).
    fn intern_hashed<'e>(&self, hash: KeyHash, key: &'e str, hint: Hint) -> ThreadOf<'e> {
        ThreadOf {
            hash,
            key: KeyText::Event(key),
            found: Some(self.threads.lookup_hinted(&hash, hint)),
        }
    }

    /// A shared copy of `thread`'s key, for a map that keeps it: the tracked thread's own when
    /// it has one, else a new one that the tracked thread keeps too, so that one key is one
    /// allocation however many maps hold it. `thread` keeps a copy for later uses.
    fn share_key(&mut self, thread: &mut ThreadOf<'_>) -> Arc<str> {
        if let KeyText::Shared(key) = &thread.key {
            return key.clone();
        }
        let found = self.threads.current(&thread.hash, thread.found);
        thread.found = Some(found);
        let key = self.tracked_copy(thread.hash, found, &thread.key);
        thread.key = KeyText::Shared(key.clone());
        key
    }

    /// [`Self::share_key`] for the last use of `thread`: its copy is handed over rather than
    /// cloned (each clone and drop of an `Arc` is an atomic update of its count, which showed
    /// in the profile).
    fn hand_over_key(&mut self, thread: ThreadOf<'_>) -> Arc<str> {
        match thread.key {
            KeyText::Shared(key) => key,
            KeyText::Event(_) => {
                let found = self.threads.current(&thread.hash, thread.found);
                self.tracked_copy(thread.hash, found, &thread.key)
            }
        }
    }

    /// The tracked thread's shared copy of its key (made from `key` if it has none yet), or a
    /// new copy when the thread is not tracked.
    fn tracked_copy(&mut self, hash: KeyHash, found: Found, key: &KeyText<'_>) -> Arc<str> {
        match self.threads.get_found_mut(&hash, found) {
            Some(tracked) => change_thread(tracked, &mut self.held, |tracked| {
                tracked.share_key(|| key.to_shared()).clone()
            }),
            None => key.to_shared(),
        }
    }

    /// Records `message_id -> key` (latest wins), keeping the time it counted as a reply-all.
    ///
    /// A message that is its own thread's key (`key_hash == id_hash`: it starts a conversation,
    /// as most messages do) and did not count gets no new record, because every lookup that
    /// finds none answers the same: a join falls back to the id itself as the thread key, and
    /// the message is no duplicate. So `limits.max_message_ids`, and the memory it bounds, go
    /// to the ids that join a reply to a thread named otherwise, or that make duplicates. A
    /// record the id already has is still updated: it may name another thread, or hold a count.
    fn record_message(
        &mut self,
        (id_hash, found): (KeyHash, Found),
        thread: ThreadOf<'_>,
        counted_at: Option<Millis>,
    ) {
        let found = self.message_ids.current(&id_hash, Some(found));
        if found.is_held() {
            let key = self.hand_over_key(thread);
            if let Some(record) = self.message_ids.touch_found(&id_hash, found) {
                if !Arc::ptr_eq(&record.thread, &key) {
                    debug_assert!(self.message_id_bytes >= record.thread.len());
                    self.message_id_bytes =
                        (self.message_id_bytes + key.len()).saturating_sub(record.thread.len());
                    record.thread = key;
                }
                if let Some(counted_at) = counted_at {
                    record.counted_at = counted_at;
                }
            }
            return;
        }
        if counted_at.is_none() && thread.hash == id_hash {
            return;
        }
        let key = self.hand_over_key(thread);
        self.message_id_bytes += key.len();
        self.message_ids.insert_new(
            id_hash,
            MessageRecord {
                thread: key,
                counted_at: counted_at.unwrap_or(NEVER_COUNTED),
            },
        );
        if self.message_ids.len() > self.settings.max_message_ids.min(lru::MAX_ENTRIES - 1) {
            self.pop_oldest_message_id();
            // The next record evicted drops its share of a thread key: load the key's count.
            if let Some((_, next)) = self.message_ids.front() {
                lru::prefetch_shared(&next.thread);
            }
            self.stats.message_id_evictions += 1;
        }
    }

    /// Evicts the oldest message-id record, keeping [`Self::message_id_bytes`] right.
    fn pop_oldest_message_id(&mut self) -> bool {
        let Some((_, record)) = self.message_ids.pop_front() else {
            return false;
        };
        debug_assert!(self.message_id_bytes >= record.thread.len());
        self.message_id_bytes = self.message_id_bytes.saturating_sub(record.thread.len());
        true
    }

    /// Makes room past the byte bounds: the oldest message-id records and, for text, the least
    /// recently active threads without a storm go, as past the entry caps, up to `touched`,
    /// the thread the event just updated (were active storms alone over the bound, it would
    /// otherwise be next); for windows, threads' windows are forgotten. Real mail meets the
    /// entry caps first; hostile mail, whose ids and subjects run to a kilobyte each, or which
    /// gives hundreds of thousands of threads a reply-all each, would otherwise hold gigabytes
    /// under the default caps (BENCHMARKS.md, sessions 16 and 17).
    fn evict_over_byte_bounds(&mut self, touched: KeyHash) {
        while self.message_id_bytes > self.settings.max_message_id_bytes
            && self.pop_oldest_message_id()
        {
            self.stats.message_id_evictions += 1;
        }
        while self.held.text > self.settings.max_thread_bytes
            && evict_one(
                &mut self.threads,
                &mut self.stats,
                &mut self.held,
                Some(touched),
            )
        {}
        // Nearly always neither: both are a comparison, and the work is out of line.
        if self.window_bytes() > self.settings.max_window_bytes
            || self.window_order.too_long(self.held.quiet_windows)
        {
            self.forget_windows_over_bound(touched);
        }
    }

    /// Past `limits.max_window_bytes`, forgets the windows of threads without an active
    /// storm, least recently given a reply-all first ([`WindowOrder`]), up to `touched`, the
    /// thread the event just updated. The threads stay, with their subjects and recency.
    #[inline(never)]
    fn forget_windows_over_bound(&mut self, touched: KeyHash) {
        let threads = &self.threads;
        self.window_order
            .drop_stale(self.held.quiet_windows, |(hash, stamp)| {
                threads.get(hash).and_then(Thread::quiet_window_stamp) == Some(*stamp)
            });
        // The touched thread's entry, set aside (it may be older than others: a storm ended at
        // this event's step of the clock) and put back first.
        let mut kept = None;
        while self.window_bytes() > self.settings.max_window_bytes {
            let Some((hash, stamp)) = self.window_order.pop_oldest() else {
                break;
            };
            let Some(thread) = self.threads.get_mut(&hash) else {
                continue;
            };
            if thread.quiet_window_stamp() != Some(stamp) {
                continue;
            }
            if hash == touched {
                kept = Some((hash, stamp));
                continue;
            }
            change_thread(thread, &mut self.held, Thread::forget_windows);
            self.stats.windows_forgotten += 1;
            // The next event over the bound looks up the next oldest: start loading its line
            // of the index now (under a flood of reply-alls, each event forgets one thread's).
            if let Some(next) = self.window_order.oldest() {
                self.threads.prefetch_index(next);
            }
        }
        if let Some(entry) = kept {
            self.window_order.put_back(entry);
        }
        self.window_order.fit(self.held.quiet_windows);
    }

    /// Records `normalized subject -> key` (latest wins).
    fn record_subject(&mut self, key: &Arc<str>) {
        let subject_hash = self.hasher.hash(&self.normalized_subject);
        if let Some(recorded) = self.subjects.touch(&subject_hash) {
            if !Arc::ptr_eq(recorded, key) {
                *recorded = key.clone();
            }
            return;
        }
        self.subjects.insert_new(subject_hash, key.clone());
        if self.subjects.len() > self.settings.max_subjects.min(lru::MAX_ENTRIES - 1) {
            self.subjects.pop_front();
            self.stats.subject_evictions += 1;
        }
    }

    /// Applies an accepted event to its thread: latest subject, and for a reply-all its windows
    /// and the rules. Returns whether the reply-all was counted.
    fn apply_to_thread(
        &mut self,
        thread_of: &mut ThreadOf<'_>,
        event: &Event<'_>,
        is_reply_all: bool,
        now: Millis,
        alerts: &mut Vec<Alert>,
    ) -> bool {
        let hash = thread_of.hash;
        if is_reply_all
            && self.held.quiet_windows > 0
            && self.window_bytes() > self.settings.max_window_bytes
        {
            // Storms ended since the last event (at this step of the clock, or by the wall
            // clock) left windows that can be forgotten: make room before deciding whether
            // this thread may have windows.
            self.forget_windows_over_bound(hash);
        }
        let found = self.threads.current(&hash, thread_of.found);
        if !is_reply_all && event.subject.is_none() {
            // Nothing to store; it still counts as activity for eviction order.
            self.threads.touch_found(&hash, found);
            return false;
        }
        let Some(thread) = thread_entry(
            &mut self.threads,
            hash,
            Some(found),
            thread_of.key.shared(),
            self.settings.max_threads,
            &mut self.stats,
            &mut self.held,
        ) else {
            if is_reply_all {
                self.stats.untracked_reply_alls += 1;
            }
            return false;
        };
        if let Some(subject) = &event.subject {
            change_thread(thread, &mut self.held, |thread| {
                thread.set_subject(truncate_chars(subject, MAX_SUBJECT_CHARS));
            });
        }
        if !is_reply_all {
            return false;
        }
        // A thread with reply-alls may have a storm, which the alerts, the deadlines and the
        // active set name: it shares its key from now on.
        let key = change_thread(thread, &mut self.held, |thread| {
            thread.share_key(|| thread_of.key.to_shared()).clone()
        });
        thread_of.key = KeyText::Shared(key.clone());
        let settings = &self.settings;
        // At `limits.max_window_bytes` after forgetting every thread's windows it could, only
        // storms are left holding it: their windows stop growing, and no thread starts new
        // ones.
        let windows_full =
            self.held.windows + self.window_order.heap_bytes() > settings.max_window_bytes;
        // (A storm resumed after a restart has none yet: it takes them, or its reply-alls would
        // not keep it going.)
        if windows_full && thread.windows().is_none() && thread.storm().is_none() {
            self.stats.untracked_reply_alls += 1;
            return false;
        }
        lowercase_into(&event.sender, &mut self.sender_buf);
        let sender = self.hasher.hash64(&self.sender_buf);
        let reply_all = ReplyAll {
            at: event.timestamp,
            recipients: event.recipient_count,
            sender,
        };
        self.stats.reply_alls_dropped += change_thread(thread, &mut self.held, |thread| {
            let windows = thread.windows_or_insert_with(|| {
                ReplyWindows::new(&settings.rules.widths, settings.max_reply_alls_per_thread)
            });
            if windows_full {
                windows.insert_without_growing(reply_all, now)
            } else {
                windows.insert(reply_all, now)
            }
        });
        thread.set_window_stamp(self.window_order.stamp(hash));
        if settings.include_senders {
            // Senders gone from the windows first, so that this one finds room.
            change_thread(thread, &mut self.held, |thread| {
                thread.forget_absent_senders();
                thread.remember_sender(sender, &self.sender_buf);
            });
        }

        if let Some(storm) = thread.storm_mut() {
            storm.last_arrival = self.arrival;
        }
        let floor = match thread.storm() {
            None => Severity::Warning,
            Some(storm) if storm.severity == Severity::Warning => Severity::Critical,
            // A critical storm cannot change until it ends.
            Some(_) => return true,
        };
        let Some(windows) = thread.windows() else {
            return true;
        };
        let Some(rule) = settings.rules.first_holding(windows, floor) else {
            return true;
        };
        let (rule_name, severity) = (rule.name, rule.severity);
        let latest = windows.latest();
        let kind = match thread.storm_mut() {
            Some(storm) => {
                storm.severity = severity;
                storm.rule = rule_name;
                self.stats.storms_escalated += 1;
                AlertKind::StormEscalated
            }
            None => {
                let epoch = self.next_epoch;
                self.next_epoch += 1;
                let storm = Storm {
                    started_at: now,
                    severity,
                    rule: rule_name,
                    epoch,
                    last_arrival: self.arrival,
                };
                change_thread(thread, &mut self.held, |thread| thread.start_storm(storm));
                let deadline = latest.saturating_add(settings.quiet_period);
                self.deadlines.push(Reverse((deadline, key.clone(), epoch)));
                self.active.insert(key.clone());
                self.stats.storms_started += 1;
                AlertKind::StormStarted
            }
        };
        alerts.push(thread.alert(kind, now, settings));
        true
    }
}

/// The thread for `key`, created (making room under the cap) when new, and marked most
/// recently active. `None` only when the cap is reached and no thread near the old end can be
/// evicted because they all have active storms. `found` is a lookup of `hash` made on the way,
/// if any (searched again when no longer current). `held` is what the threads hold
/// ([`Engine::thread_bytes`], [`Engine::window_bytes`]), kept right.
fn thread_entry<'a>(
    threads: &'a mut LruMap<Thread>,
    hash: KeyHash,
    found: Option<Found>,
    shared_key: Option<&Arc<str>>,
    cap: usize,
    stats: &mut EngineStats,
    held: &mut Held,
) -> Option<&'a mut Thread> {
    let found = threads.current(&hash, found);
    if found.is_held() {
        let thread = threads.touch_found(&hash, found)?;
        // A thread that has no shared copy of its key yet takes the one the caller has.
        if let Some(key) = shared_key {
            change_thread(thread, held, |thread| {
                thread.share_key(|| key.clone());
            });
        }
        return Some(thread);
    }
    if threads.len() >= cap.min(lru::MAX_ENTRIES) && !evict_one(threads, stats, held, None) {
        return None;
    }
    let thread = Thread::new(shared_key);
    *held = held.plus(thread.held());
    Some(threads.insert_new(hash, thread))
}

/// Runs `change` on `thread`, keeping `held` ([`Engine::thread_bytes`],
/// [`Engine::window_bytes`]) right: every change to a tracked thread's subject, key, remembered
/// sender addresses, windows or storm goes through here.
fn change_thread<R>(
    thread: &mut Thread,
    held: &mut Held,
    change: impl FnOnce(&mut Thread) -> R,
) -> R {
    let before = thread.held();
    let result = change(thread);
    *held = held.replaced(before, thread.held());
    result
}

/// Evicts the least recently active thread without an active storm. Threads with active storms
/// met on the way are moved to the young end: they are never evicted, and this keeps the scan
/// short. Stops, evicting nothing, on reaching `keep`.
fn evict_one(
    threads: &mut LruMap<Thread>,
    stats: &mut EngineStats,
    held: &mut Held,
    keep: Option<KeyHash>,
) -> bool {
    for _ in 0..EVICTION_SCAN.min(threads.len()) {
        let Some((hash, thread)) = threads.front() else {
            return false;
        };
        if Some(hash) == keep {
            return false;
        }
        if thread.storm().is_some() {
            threads.touch(&hash);
            continue;
        }
        if let Some((_, evicted)) = threads.pop_front() {
            *held = held.minus(evicted.held());
        }
        stats.thread_evictions += 1;
        // The next thread evicted frees its key and subject: load them now.
        if let Some((_, next)) = threads.front() {
            if let Some(key) = next.shared_key() {
                lru::prefetch_shared(key);
            }
            if let Some(subject) = next.subject.as_deref() {
                lru::prefetch_bytes(subject.as_bytes());
            }
        }
        return true;
    }
    false
}

/// `text` cut to at most `max` Unicode code points.
fn truncate_chars(text: &str, max: usize) -> &str {
    // A code point takes at least one byte: a text of at most `max` bytes needs no count (and
    // nearly every subject is one).
    if text.len() <= max {
        return text;
    }
    match text.char_indices().nth(max) {
        Some((end, _)) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

#[cfg(test)]
mod tests;
