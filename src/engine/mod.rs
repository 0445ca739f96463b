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
//!   `limits.max_reply_alls_per_thread`) and its storm, if any;
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

mod index_table;
mod keys;
mod lru;
mod rules;
mod settings;
mod thread;
mod window;

pub use rules::{Rule, RuleSet, ALERT_WINDOW};
pub use settings::{millis, Settings};
pub use window::{ReplyAll, ReplyWindows, WindowStats};

use crate::alert::{Alert, AlertKind, RuleName, Severity};
use crate::config::Config;
use crate::event::{lowercase_into, Event};
use crate::subject::{analyze_into, first_prefix, PrefixKind};
use crate::timefmt::Millis;
use keys::{KeyHash, KeyHasher};
pub use lru::ReserveError;
use lru::{Found, Hint, LruMap};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::ops::ControlFlow;
use std::sync::Arc;
use thread::{Storm, Thread};

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
    /// Reply-alls not counted because every tracked thread had an active storm.
    pub untracked_reply_alls: u64,
}

/// An active storm, for summaries and the storms API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormSnapshot {
    /// Its thread.
    pub thread_key: Arc<str>,
    /// Current severity.
    pub severity: Severity,
    /// The rule that decided it.
    pub rule: RuleName,
    /// When it started.
    pub started_at: Millis,
    /// The newest reply-all on it.
    pub last_reply_all: Millis,
    /// Reply-alls, senders and deliveries in the last 60 minutes of stream time.
    pub last_hour: WindowStats,
    /// Latest subject.
    pub subject: Option<Arc<str>>,
}

/// A storm announced before a restart that the rebuilt window did not re-derive (the backlog
/// was skipped, the alerts topic holds more history than the input, or the rules changed): the
/// engine carries it on so it ends (and is announced as ended) like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedStorm {
    /// Its thread.
    pub thread_key: Arc<str>,
    /// Its severity and rule as last announced.
    pub severity: Severity,
    /// The rule that decided the severity.
    pub rule: RuleName,
    /// The announced start.
    pub started_at: Millis,
    /// The latest time the alerts topic shows it active (its newest alert's `at`): the quiet
    /// period is counted from here unless a newer reply-all arrives.
    pub last_active: Millis,
    /// The announced subject.
    pub subject: Option<Arc<str>>,
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

/// The hashes an event is looked up by, computed once per event, and where a batch's prefetch
/// found them ([`Hint::Unknown`] outside a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventKeys {
    /// Its message id's, when it has one.
    id: Option<KeyHash>,
    /// Its thread id's, else its References root's, else its In-Reply-To's.
    join: Option<KeyHash>,
    /// Whether `join` is a thread id's (a thread key) rather than a message id's.
    by_thread_id: bool,
    /// `id` in the message-id map.
    id_at: Hint,
    /// `join` in the message-id map (a References / In-Reply-To join).
    join_at: Hint,
    /// The thread the event most likely updates, and where it is in the thread map.
    thread: Option<(KeyHash, Hint)>,
}

impl EventKeys {
    /// Whether `self` and `other` are the same event's hashes, whatever their hints.
    fn same_hashes(&self, other: &Self) -> bool {
        (self.id, self.join, self.by_thread_id) == (other.id, other.join, other.by_thread_id)
    }

    /// The hint for a lookup of thread `hash`.
    fn thread_hint(&self, hash: KeyHash) -> Hint {
        match self.thread {
            Some((guess, hint)) if guess == hash => hint,
            _ => Hint::Unknown,
        }
    }

    /// The same hashes without hints.
    fn unhinted(self) -> Self {
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

/// `counted_at` of a message that never counted as a reply-all. Accepted timestamps are never
/// this small (the decoder refuses negative ones).
const NEVER_COUNTED: Millis = Millis::MIN;

/// What an event joins its conversation by: its thread id, else its References root, else its
/// In-Reply-To (contract section 2).
fn join_key<'a>(event: &'a Event<'_>) -> Option<&'a str> {
    event
        .thread_id
        .as_deref()
        .or(event.references_root.as_deref())
        .or(event.in_reply_to.as_deref())
}

/// A pending storm end: (deadline, thread, storm epoch). Entries whose epoch no longer matches
/// the thread's storm are stale and skipped.
type Deadline = Reverse<(Millis, Arc<str>, u64)>;

/// What a thread key made from a normalized subject starts with (contract section 2, rule 4).
const SUBJECT_KEY_PREFIX: &str = "subject:";

/// The longest subject kept, in Unicode code points (contract section 4).
pub const MAX_SUBJECT_CHARS: usize = 256;

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

    /// Message ids remembered (at most `limits.max_message_ids`).
    pub fn remembered_message_ids(&self) -> usize {
        self.message_ids.len()
    }

    /// Subjects remembered (at most `limits.max_subjects`).
    pub fn remembered_subjects(&self) -> usize {
        self.subjects.len()
    }

    /// Active storms, ordered by thread key.
    pub fn active_storms(&self) -> Vec<StormSnapshot> {
        self.active
            .iter()
            .filter_map(|key| {
                let thread = self.threads.get(&self.hasher.hash(key))?;
                let storm = thread.storm()?;
                let windows = thread.windows();
                Some(StormSnapshot {
                    thread_key: key.clone(),
                    severity: storm.severity,
                    rule: storm.rule,
                    started_at: storm.started_at,
                    last_reply_all: windows.map_or(storm.started_at, ReplyWindows::latest),
                    last_hour: windows.map_or_else(WindowStats::default, |w| w.stats(0)),
                    subject: thread.subject.as_deref().map(Arc::from),
                })
            })
            .collect()
    }

    /// Tells the engine the wall-clock time at which the events about to be ingested arrived.
    /// The engine reads no clock; the service calls this per batch so that
    /// [`Engine::end_idle_storms`] can end storms by wall-clock time when traffic stops.
    pub fn set_arrival_time(&mut self, wall_clock: Millis) {
        self.arrival = Some(wall_clock);
    }

    /// Makes the active storm on `thread_key` carry `started_at` (and the `block_until` that
    /// follows): after a restart, the service adopts the start already announced on the alerts
    /// topic for a storm the engine re-derived, so that storm's later alerts match the earlier
    /// ones. Returns whether there was such a storm.
    pub fn adopt_storm_start(&mut self, thread_key: &str, started_at: Millis) -> bool {
        match self
            .threads
            .get_mut(&self.hasher.hash(thread_key))
            .and_then(Thread::storm_mut)
        {
            Some(storm) => {
                storm.started_at = started_at;
                true
            }
            None => false,
        }
    }

    /// Carries on a storm announced before a restart that the engine did not re-derive, so it
    /// ends by the usual rules: when stream time passes `last_active + quiet_period` (at once,
    /// if it already has), or by the wall clock once caught up, unless new reply-alls keep it
    /// going (they escalate it as usual). Returns whether it was taken on: not when the thread
    /// already has an active storm, nor when every tracked thread has one and the cap is
    /// reached.
    pub fn resume_storm(&mut self, resumed: ResumedStorm, alerts: &mut Vec<Alert>) -> bool {
        let ThreadOf { hash, found, .. } = self.intern(&resumed.thread_key);
        let Some(thread) = thread_entry(
            &mut self.threads,
            hash,
            found,
            Some(&resumed.thread_key),
            self.settings.max_threads,
            &mut self.stats,
        ) else {
            return false;
        };
        if thread.storm().is_some() {
            return false;
        }
        let key = thread.share_key(|| resumed.thread_key.clone()).clone();
        if thread.subject.is_none() {
            thread.subject = resumed.subject.as_deref().map(Box::from);
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        thread.start_storm(Storm {
            started_at: resumed.started_at,
            severity: resumed.severity,
            rule: resumed.rule,
            epoch,
            last_arrival: self.arrival,
        });
        let latest = thread
            .windows()
            .map_or(resumed.last_active, |w| w.latest().max(resumed.last_active));
        let deadline = latest.saturating_add(self.settings.quiet_period);
        self.deadlines.push(Reverse((deadline, key.clone(), epoch)));
        self.active.insert(key);
        if let Some(now) = self.now {
            self.end_quiet_storms(now, alerts);
        }
        true
    }

    /// Ends every active storm for which no reply-all has arrived for `quiet_period` of wall-clock
    /// time, as of `wall_clock` (contract section 3, service mode). The caller calls this only
    /// while every assigned partition is caught up, never while a backlog is read; `at` of the
    /// `storm_ended` alert is `wall_clock`.
    pub fn end_idle_storms(&mut self, wall_clock: Millis, alerts: &mut Vec<Alert>) {
        let quiet = self.settings.quiet_period;
        let idle: Vec<Arc<str>> = self
            .active
            .iter()
            .filter(|key| {
                self.threads
                    .get(&self.hasher.hash(key))
                    .and_then(Thread::storm)
                    .and_then(|s| s.last_arrival)
                    .is_some_and(|arrived| wall_clock >= arrived.saturating_add(quiet))
            })
            .cloned()
            .collect();
        for key in idle {
            self.end_storm(&key, wall_clock, alerts);
        }
    }

    /// Ends the active storm on `key` at `at`: the `storm_ended` alert, then the state.
    fn end_storm(&mut self, key: &Arc<str>, at: Millis, alerts: &mut Vec<Alert>) {
        let Some(thread) = self.threads.get_mut(&self.hasher.hash(key)) else {
            return;
        };
        if thread.storm().is_none() {
            return;
        }
        // Windows follow stream time only: a wall-clock end (which may be ahead of it) reads the
        // statistics at `at` without moving them.
        if let (Some(windows), Some(now)) = (thread.windows_mut(), self.now) {
            windows.advance(at.min(now));
        }
        alerts.push(thread.alert(AlertKind::StormEnded, at, &self.settings));
        thread.end_storm();
        self.active.remove(key);
        self.stats.storms_ended += 1;
    }

    /// Processes one decoded event, appending any alerts it causes to `alerts`.
    pub fn ingest(&mut self, event: &Event<'_>, alerts: &mut Vec<Alert>) -> Outcome {
        let hashes = self.key_hashes(event);
        self.ingest_hashed(event, hashes, alerts)
    }

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
    fn key_hashes(&self, event: &Event<'_>) -> EventKeys {
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
        if let Some(id) = id {
            // Only a reply-all that was counted makes later lines of its message duplicates.
            self.record_message(id, thread, counted.then_some(at));
        }
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
            Some(subject) => analyze_into(subject, &mut self.normalized_subject),
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
            Some(tracked) => tracked.share_key(|| key.to_shared()).clone(),
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
        self.message_ids.insert_new(
            id_hash,
            MessageRecord {
                thread: key,
                counted_at: counted_at.unwrap_or(NEVER_COUNTED),
            },
        );
        if self.message_ids.len() > self.settings.max_message_ids.min(lru::MAX_ENTRIES - 1) {
            self.message_ids.pop_front();
            // The next record evicted drops its share of a thread key: load the key's count.
            if let Some((_, next)) = self.message_ids.front() {
                lru::prefetch_shared(&next.thread);
            }
            self.stats.message_id_evictions += 1;
        }
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
        ) else {
            if is_reply_all {
                self.stats.untracked_reply_alls += 1;
            }
            return false;
        };
        if let Some(subject) = &event.subject {
            thread.set_subject(truncate_chars(subject, MAX_SUBJECT_CHARS));
        }
        if !is_reply_all {
            return false;
        }
        // A thread with reply-alls may have a storm, which the alerts, the deadlines and the
        // active set name: it shares its key from now on.
        let key = thread.share_key(|| thread_of.key.to_shared()).clone();
        thread_of.key = KeyText::Shared(key.clone());
        let settings = &self.settings;
        lowercase_into(&event.sender, &mut self.sender_buf);
        let sender = self.hasher.hash64(&self.sender_buf);
        if settings.include_senders {
            thread.remember_sender(sender, &self.sender_buf);
        }
        let windows = thread.windows_or_insert_with(|| {
            ReplyWindows::new(&settings.rules.widths, settings.max_reply_alls_per_thread)
        });
        self.stats.reply_alls_dropped += windows.insert(
            ReplyAll {
                at: event.timestamp,
                recipients: event.recipient_count,
                sender,
            },
            now,
        );
        if settings.include_senders {
            thread.forget_absent_senders();
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
                thread.start_storm(Storm {
                    started_at: now,
                    severity,
                    rule: rule_name,
                    epoch,
                    last_arrival: self.arrival,
                });
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

    /// Ends every active storm whose last reply-all is at least `quiet_period` before `now`.
    /// Called at every step of the clock, nearly always with nothing due (no storm active): that
    /// answer is inlined, without a call (which was 1.5% of the engine's instructions).
    #[inline]
    fn end_quiet_storms(&mut self, now: Millis, alerts: &mut Vec<Alert>) {
        if self
            .deadlines
            .peek()
            .is_some_and(|Reverse((deadline, _, _))| *deadline <= now)
        {
            self.end_due_storms(now, alerts);
        }
    }

    /// [`Self::end_quiet_storms`] once a deadline is due.
    #[inline(never)]
    fn end_due_storms(&mut self, now: Millis, alerts: &mut Vec<Alert>) {
        while let Some(Reverse((deadline, _, _))) = self.deadlines.peek() {
            if *deadline > now {
                break;
            }
            let Some(Reverse((_, key, epoch))) = self.deadlines.pop() else {
                break;
            };
            let Some(thread) = self.threads.get_mut(&self.hasher.hash(&key)) else {
                continue;
            };
            if thread.storm().is_none_or(|storm| storm.epoch != epoch) {
                continue;
            }
            let latest = thread.windows().map_or(Millis::MIN, ReplyWindows::latest);
            let actual = latest.saturating_add(self.settings.quiet_period);
            if actual > now {
                // A newer reply-all moved the deadline since this entry was pushed.
                self.deadlines.push(Reverse((actual, key, epoch)));
                continue;
            }
            self.end_storm(&key, now, alerts);
        }
    }
}

/// The first step of [`Engine::prefetch`] for one entry: its line of the index.
fn prefetch_index_line<V>(map: &LruMap<V>, key: &KeyHash) -> Hint {
    map.prefetch_index(key);
    Hint::Unknown
}

/// The thread for `key`, created (making room under the cap) when new, and marked most
/// recently active. `None` only when the cap is reached and no thread near the old end can be
/// evicted because they all have active storms. `found` is a lookup of `hash` made on the way,
/// if any (searched again when no longer current).
fn thread_entry<'a>(
    threads: &'a mut LruMap<Thread>,
    hash: KeyHash,
    found: Option<Found>,
    shared_key: Option<&Arc<str>>,
    cap: usize,
    stats: &mut EngineStats,
) -> Option<&'a mut Thread> {
    let found = threads.current(&hash, found);
    if found.is_held() {
        let thread = threads.touch_found(&hash, found)?;
        // A thread that has no shared copy of its key yet takes the one the caller has.
        if let Some(key) = shared_key {
            thread.share_key(|| key.clone());
        }
        return Some(thread);
    }
    if threads.len() >= cap.min(lru::MAX_ENTRIES) && !evict_one(threads, stats) {
        return None;
    }
    Some(threads.insert_new(hash, Thread::new(shared_key)))
}

/// Evicts the least recently active thread without an active storm. Threads with active storms
/// met on the way are moved to the young end: they are never evicted, and this keeps the scan
/// short.
fn evict_one(threads: &mut LruMap<Thread>, stats: &mut EngineStats) -> bool {
    for _ in 0..EVICTION_SCAN.min(threads.len()) {
        let Some((hash, thread)) = threads.front() else {
            return false;
        };
        if thread.storm().is_some() {
            threads.touch(&hash);
            continue;
        }
        threads.pop_front();
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
