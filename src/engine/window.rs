//! Exact event-time sliding windows over one thread's reply-alls.
//!
//! The rules look at `(T - window, T]` for a few window widths (60 min for alerts, and each
//! rule's). Recounting a window on every reply-all would be quadratic in a storm of 100,000
//! reply-alls, so each width keeps running aggregates (count, deliveries, a sender multiset) and
//! a cursor into one shared, timestamp-sorted deque: advancing stream time moves each cursor past
//! the entries that left its window, subtracting them. Entries older than the widest window are
//! dropped from the deque. Everything is O(1) amortized per reply-all.

use crate::timefmt::Millis;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// One accepted reply-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyAll {
    /// Its timestamp.
    pub at: Millis,
    /// Its recipient count (deliveries it caused).
    pub recipients: u64,
    /// A hash of its case-folded sender: senders are compared, never stored, unless alerts are
    /// configured to list them.
    pub sender: u64,
}

/// Aggregates over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowStats {
    /// Reply-alls in the window.
    pub reply_alls: u64,
    /// Sum of their recipient counts (saturating at `u64::MAX`).
    pub deliveries: u64,
    /// Distinct senders among them.
    pub distinct_senders: u64,
}

/// Sender hashes are already uniformly distributed: hashing them again is wasted work.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type SenderCounts = HashMap<u64, u32, BuildHasherDefault<PassThrough>>;

/// The bytes a `HashMap` (hashbrown) grown to hold `len` entries of `entry` bytes allocates:
/// a power-of-two number of buckets, seven eighths of them usable (all but one below eight),
/// each with its entry and a control byte, plus one group of control bytes more.
///
/// From the length rather than from `capacity()`, which is how the byte bounds stay
/// deterministic: a table that had removals may have grown, or not, depending on where its
/// keys' hashes fell, and those hashes are keyed afresh in every process. A replay and the
/// service must forget the same windows for the same events. (Sender tables are shrunk once
/// they are far larger than their length, so that the estimate stays close.)
pub(super) fn table_bytes(len: usize, entry: usize) -> usize {
    const GROUP: usize = 16;
    let buckets = match len {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (len * 8 / 7).next_power_of_two(),
    };
    buckets * (entry + 1) + GROUP
}

/// A sender table with more room than this many times its length (and more than
/// [`SHRINK_ABOVE`] entries' room) is shrunk to fit: after a storm, a thread's windows
/// would otherwise keep the room of its busiest hour for as long as it is tracked.
const SHRINK_FACTOR: usize = 4;
/// Below this much room a table is never shrunk: rehashing it would cost more than it saves.
const SHRINK_ABOVE: usize = 64;

/// Windows holding more entries than this keep a sender table per width; up to this many, a
/// window's distinct senders are counted by a scan of its entries (at most 28 comparisons).
/// Most threads that have reply-alls have one or two, and their tables were a third of their
/// windows' memory (about 170 of 540 bytes), which bounds how many such threads
/// `limits.max_window_bytes` holds.
const TABLES_ABOVE: usize = 8;
/// Tables are dropped again once the windows hold this few (not at [`TABLES_ABOVE`], so that a
/// thread hovering there does not build and drop them on every reply-all).
const TABLES_DROPPED_AT: usize = TABLES_ABOVE / 2;

#[derive(Debug, Clone)]
struct Aggregate {
    width: Millis,
    /// Index in `entries` of the first entry inside this window.
    start: usize,
    reply_alls: u64,
    deliveries: u128,
    /// Sender -> its reply-alls in this window, while the windows hold more than
    /// [`TABLES_ABOVE`] entries.
    senders: Option<SenderCounts>,
}

impl Aggregate {
    fn add(&mut self, entry: &ReplyAll) {
        self.reply_alls += 1;
        self.deliveries += u128::from(entry.recipients);
        if let Some(senders) = &mut self.senders {
            *senders.entry(entry.sender).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, entry: &ReplyAll) {
        self.reply_alls -= 1;
        self.deliveries -= u128::from(entry.recipients);
        if let Some(senders) = &mut self.senders {
            if let Some(count) = senders.get_mut(&entry.sender) {
                *count -= 1;
                if *count == 0 {
                    senders.remove(&entry.sender);
                }
            }
        }
    }

    fn table_bytes(&self) -> usize {
        self.senders.as_ref().map_or(0, |senders| {
            table_bytes(senders.len(), std::mem::size_of::<(u64, u32)>())
        })
    }
}

/// One thread's reply-alls and the aggregates of each window width.
#[derive(Debug, Clone)]
pub struct ReplyWindows {
    entries: VecDeque<ReplyAll>,
    aggregates: Vec<Aggregate>,
    /// The index of the widest window, whose cursor decides what can be dropped.
    widest: usize,
    /// The largest timestamp among the thread's reply-alls ever accepted (the `L` of the
    /// storm-end rule); kept even when the entry itself has been dropped.
    latest: Millis,
    /// Stream time the cursors were last advanced to.
    now: Millis,
    cap: usize,
}

impl ReplyWindows {
    /// Empty windows of the given widths (each > 0), holding at most `cap` entries.
    pub fn new(widths: &[Millis], cap: usize) -> Self {
        let aggregates: Vec<Aggregate> = widths
            .iter()
            .map(|&width| Aggregate {
                width,
                start: 0,
                reply_alls: 0,
                deliveries: 0,
                senders: None,
            })
            .collect();
        let widest = (0..aggregates.len())
            .max_by_key(|&i| aggregates[i].width)
            .unwrap_or(0);
        Self {
            // Room for one: most threads with reply-alls have one, and the first push of an
            // empty deque would make room for four.
            entries: VecDeque::with_capacity(1),
            aggregates,
            widest,
            latest: Millis::MIN,
            now: Millis::MIN,
            cap: cap.max(1),
        }
    }

    /// Slides every window to end at `now` (which never goes back) and drops the entries that
    /// have left even the widest one.
    pub fn advance(&mut self, now: Millis) {
        if now <= self.now {
            return;
        }
        self.now = now;
        for agg in &mut self.aggregates {
            let lower = now.saturating_sub(agg.width);
            while let Some(entry) = self.entries.get(agg.start) {
                if entry.at > lower {
                    break;
                }
                agg.remove(entry);
                agg.start += 1;
            }
        }
        let outside_all = self.aggregates.get(self.widest).map_or(0, |a| a.start);
        if outside_all > 0 {
            self.entries.drain(..outside_all);
            for agg in &mut self.aggregates {
                agg.start -= outside_all;
            }
        }
        if self.entries.is_empty() && self.entries.capacity() > 64 {
            // A storm's worth of capacity should not outlive the storm.
            self.entries.shrink_to_fit();
        }
        self.fit_tables();
    }

    /// Builds the sender tables once the windows hold more than [`TABLES_ABOVE`] entries,
    /// drops them at [`TABLES_DROPPED_AT`], and shrinks tables far larger than what they hold.
    fn fit_tables(&mut self) {
        let held = self.entries.len();
        let has_tables = self.aggregates.iter().any(|agg| agg.senders.is_some());
        if !has_tables {
            if held > TABLES_ABOVE {
                for agg in &mut self.aggregates {
                    let mut senders = SenderCounts::default();
                    for entry in self.entries.range(agg.start..) {
                        *senders.entry(entry.sender).or_insert(0) += 1;
                    }
                    agg.senders = Some(senders);
                }
            }
            return;
        }
        for agg in &mut self.aggregates {
            if held <= TABLES_DROPPED_AT {
                agg.senders = None;
            } else if let Some(senders) = &mut agg.senders {
                let room = senders.capacity();
                if room > SHRINK_ABOVE && room > SHRINK_FACTOR * senders.len() {
                    senders.shrink_to_fit();
                }
            }
        }
    }

    /// The distinct senders of a window: from its table, else by a scan of its entries.
    fn distinct_senders(&self, agg: &Aggregate) -> u64 {
        if let Some(senders) = &agg.senders {
            return senders.len() as u64;
        }
        let window = self.entries.range(agg.start..);
        window
            .clone()
            .enumerate()
            .filter(|&(i, entry)| {
                !self
                    .entries
                    .range(agg.start..agg.start + i)
                    .any(|earlier| earlier.sender == entry.sender)
            })
            .count() as u64
    }

    /// Adds a reply-all at stream time `now` (`entry.at <= now`; it may be older than entries
    /// already held, within the allowed lateness). Returns how many old entries the per-thread
    /// cap pushed out.
    pub fn insert(&mut self, entry: ReplyAll, now: Millis) -> u64 {
        self.insert_within(entry, now, self.cap)
    }

    /// [`Self::insert`] without growing: the windows hold no more entries than before (at
    /// least one), the oldest pushed out as at the per-thread cap. For when the engine's
    /// windows together are at `limits.max_window_bytes` and no windows can be forgotten.
    pub fn insert_without_growing(&mut self, entry: ReplyAll, now: Millis) -> u64 {
        let held = self.entries.len().clamp(1, self.cap);
        self.insert_within(entry, now, held)
    }

    /// The bytes these windows have allocated, estimated (the deque, the aggregates and their
    /// sender tables, see `table_bytes`): what `limits.max_window_bytes` counts.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<ReplyAll>()
            + self.aggregates.capacity() * std::mem::size_of::<Aggregate>()
            + self
                .aggregates
                .iter()
                .map(Aggregate::table_bytes)
                .sum::<usize>()
    }

    fn insert_within(&mut self, entry: ReplyAll, now: Millis, cap: usize) -> u64 {
        self.advance(now);
        // The cursors are where the last advance left them; decide membership against that.
        let now = self.now.max(now);
        self.latest = self.latest.max(entry.at);
        let widest_lower =
            now.saturating_sub(self.aggregates.get(self.widest).map_or(0, |a| a.width));
        if entry.at <= widest_lower {
            // Outside every window already: it only moves `latest`.
            return 0;
        }
        let mut dropped = 0;
        // At the cap the oldest goes before the new one comes in, so that a full deque is not
        // grown for a moment's extra entry (at `limits.max_window_bytes` it must not grow).
        if self.entries.len() >= cap {
            if self
                .entries
                .front()
                .is_some_and(|oldest| entry.at < oldest.at)
            {
                // Older than everything held: it is the one pushed out.
                return 1;
            }
            self.drop_oldest();
            dropped += 1;
        }
        // Sorted insert; nearly always at the back.
        let mut position = self.entries.len();
        while position > 0 && self.entries[position - 1].at > entry.at {
            position -= 1;
        }
        self.entries.insert(position, entry);
        for agg in &mut self.aggregates {
            if entry.at > now.saturating_sub(agg.width) {
                agg.add(&entry);
            } else {
                agg.start += 1;
            }
        }
        while self.entries.len() > cap {
            self.drop_oldest();
            dropped += 1;
        }
        self.fit_tables();
        dropped
    }

    /// Drops the oldest entry, from every window that holds it.
    fn drop_oldest(&mut self) {
        if let Some(oldest) = self.entries.pop_front() {
            for agg in &mut self.aggregates {
                if agg.start == 0 {
                    agg.remove(&oldest);
                } else {
                    agg.start -= 1;
                }
            }
        }
    }

    /// The aggregates of the window at `index` (in the order of the widths given to `new`), as
    /// of the last `advance`.
    pub fn stats(&self, index: usize) -> WindowStats {
        self.aggregates
            .get(index)
            .map_or_else(WindowStats::default, |agg| WindowStats {
                reply_alls: agg.reply_alls,
                deliveries: u64::try_from(agg.deliveries).unwrap_or(u64::MAX),
                distinct_senders: self.distinct_senders(agg),
            })
    }

    /// The aggregates over `(at - width, at]` for the window at `index`, without moving any
    /// cursor: for an alert decided at a time other than the windows' own (a storm ended by the
    /// wall clock, which may run ahead of stream time). Counts only what is held, so it is exact
    /// while `at` is not past the windows' time by more than the widest width minus this one.
    pub fn stats_at(&self, index: usize, at: Millis) -> WindowStats {
        if at == self.now {
            return self.stats(index);
        }
        let Some(agg) = self.aggregates.get(index) else {
            return WindowStats::default();
        };
        let lower = at.saturating_sub(agg.width);
        let mut stats = WindowStats::default();
        let mut deliveries: u128 = 0;
        let mut senders = SenderCounts::default();
        for entry in self.entries.iter().filter(|e| e.at > lower && e.at <= at) {
            stats.reply_alls += 1;
            deliveries += u128::from(entry.recipients);
            senders.insert(entry.sender, 1);
        }
        stats.deliveries = u64::try_from(deliveries).unwrap_or(u64::MAX);
        stats.distinct_senders = senders.len() as u64;
        stats
    }

    /// The windows' own time: the stream time they were last advanced to.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The distinct sender hashes in the window at `index`, in first-seen order.
    pub fn senders(&self, index: usize) -> Vec<u64> {
        let Some(agg) = self.aggregates.get(index) else {
            return Vec::new();
        };
        let mut seen = SenderCounts::default();
        self.entries
            .iter()
            .skip(agg.start)
            .filter(|e| seen.insert(e.sender, 1).is_none())
            .map(|e| e.sender)
            .collect()
    }

    /// The largest reply-all timestamp ever inserted (`Millis::MIN` when none).
    pub fn latest(&self) -> Millis {
        self.latest
    }

    /// The index of the widest window (every held entry is inside it).
    pub fn widest_index(&self) -> usize {
        self.widest
    }

    /// Whether no reply-all is inside any window.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries held (for caps and tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn ra(at_min: i64, recipients: u64, sender: u64) -> ReplyAll {
        ReplyAll {
            at: at_min * MIN,
            recipients,
            sender,
        }
    }

    /// Recounts a window from scratch: the reference the incremental aggregates must match.
    fn recount(all: &[ReplyAll], now: Millis, width: Millis, cap_kept: &[ReplyAll]) -> WindowStats {
        let _ = all;
        let inside: Vec<&ReplyAll> = cap_kept
            .iter()
            .filter(|e| e.at > now - width && e.at <= now)
            .collect();
        let mut senders: Vec<u64> = inside.iter().map(|e| e.sender).collect();
        senders.sort_unstable();
        senders.dedup();
        WindowStats {
            reply_alls: inside.len() as u64,
            deliveries: inside.iter().map(|e| e.recipients).sum(),
            distinct_senders: senders.len() as u64,
        }
    }

    #[test]
    fn lower_bound_is_exclusive() {
        let mut w = ReplyWindows::new(&[60 * MIN, 10 * MIN], 100);
        w.insert(ra(0, 3000, 1), 0);
        w.insert(ra(50, 3000, 2), 50 * MIN);
        assert_eq!(w.stats(0).reply_alls, 2);
        assert_eq!(w.stats(1).reply_alls, 1);
        w.advance(60 * MIN);
        // The entry at 0 is exactly 60 minutes old: out.
        assert_eq!(w.stats(0).reply_alls, 1);
        assert_eq!(w.stats(0).distinct_senders, 1);
        w.advance(60 * MIN + 1);
        assert_eq!(w.stats(1).reply_alls, 0);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn late_entries_inside_and_outside_windows() {
        let mut w = ReplyWindows::new(&[60 * MIN, 10 * MIN], 100);
        w.insert(ra(100, 10, 1), 100 * MIN);
        // 15 minutes old at insert: inside 60, outside 10.
        w.insert(ra(85, 20, 2), 100 * MIN);
        assert_eq!(
            w.stats(0),
            WindowStats {
                reply_alls: 2,
                deliveries: 30,
                distinct_senders: 2
            }
        );
        assert_eq!(
            w.stats(1),
            WindowStats {
                reply_alls: 1,
                deliveries: 10,
                distinct_senders: 1
            }
        );
        // 95 minutes old: outside everything, but it still counts as the latest? No: latest is max.
        w.insert(ra(5, 40, 3), 100 * MIN);
        assert_eq!(w.stats(0).reply_alls, 2);
        assert_eq!(w.latest(), 100 * MIN);
        w.advance(104 * MIN);
        assert_eq!(w.stats(1).reply_alls, 1);
        w.advance(110 * MIN);
        assert_eq!(w.stats(1).reply_alls, 0);
        assert_eq!(w.stats(0).reply_alls, 2);
    }

    #[test]
    fn cap_drops_oldest_and_counts_saturate() {
        let mut w = ReplyWindows::new(&[60 * MIN], 3);
        let mut dropped = 0;
        for i in 0..5 {
            dropped += w.insert(ra(i, 1, i as u64), i * MIN);
        }
        assert_eq!(dropped, 2);
        assert_eq!(w.len(), 3);
        assert_eq!(w.stats(0).reply_alls, 3);
        assert_eq!(w.stats(0).distinct_senders, 3);
    }

    #[test]
    fn inserting_without_growing_keeps_the_newest_and_the_allocation() {
        let mut w = ReplyWindows::new(&[60 * MIN, 10 * MIN], 100);
        for i in 0..4 {
            w.insert(ra(i, 1, i as u64), i * MIN);
        }
        // Four entries in room for four.
        assert_eq!(w.entries.capacity(), 4);
        let bytes = w.heap_bytes();
        let mut dropped = 0;
        for i in 4..40 {
            dropped += w.insert_without_growing(ra(i, 1, i as u64), i * MIN);
        }
        assert_eq!(dropped, 36);
        assert_eq!(w.len(), 4);
        assert_eq!(w.stats(0).reply_alls, 4);
        assert_eq!(w.senders(0), vec![36, 37, 38, 39], "the newest stay");
        assert_eq!(w.heap_bytes(), bytes);
        assert_eq!(w.latest(), 39 * MIN);
        // One older than every entry held is the one pushed out.
        assert_eq!(w.insert_without_growing(ra(30, 1, 99), 39 * MIN), 1);
        assert_eq!(w.senders(0), vec![36, 37, 38, 39]);
        // Emptied by time, it still takes one.
        w.advance(200 * MIN);
        assert!(w.is_empty());
        w.insert_without_growing(ra(200, 1, 7), 200 * MIN);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn heap_bytes_grow_with_entries_and_senders() {
        let mut w = ReplyWindows::new(&[60 * MIN, 10 * MIN], 1000);
        let empty = w.heap_bytes();
        w.insert(ra(0, 1, 1), 0);
        let one = w.heap_bytes();
        assert_eq!(
            one, empty,
            "room for the first from the start, and no sender tables"
        );
        for i in 1..100 {
            w.insert(ra(0, 1, i), 0);
        }
        // 100 entries of 24 bytes and two tables of 100 senders at least.
        assert!(
            w.heap_bytes() >= one + 99 * 24 + 2 * 99 * 17,
            "{}",
            w.heap_bytes()
        );
    }

    /// `table_bytes` derives a table's buckets from its length: that must be what hashbrown
    /// allocates for a table grown by insertions (its usable room is seven eighths of the
    /// buckets, all but one below eight).
    #[test]
    fn table_bytes_follow_the_real_tables() {
        let mut map: SenderCounts = SenderCounts::default();
        assert_eq!(table_bytes(map.len(), 16), 0);
        for sender in 0..5_000u64 {
            map.insert(sender, 1);
            let buckets = (table_bytes(map.len(), 16) - 16) / 17;
            assert!(buckets.is_power_of_two(), "{} -> {buckets}", map.len());
            let usable = if buckets < 8 {
                buckets - 1
            } else {
                buckets / 8 * 7
            };
            assert_eq!(usable, map.capacity(), "{} entries", map.len());
        }
    }

    /// After a storm, its sender tables do not keep the room of its busiest hour.
    #[test]
    fn sender_tables_shrink_once_mostly_empty() {
        let mut w = ReplyWindows::new(&[60 * MIN, 10 * MIN], 100_000);
        for i in 0..5_000u64 {
            w.insert(ra(0, 1, i), 0);
        }
        w.insert(ra(50, 1, 1), 50 * MIN);
        let room = |w: &ReplyWindows| {
            w.aggregates
                .iter()
                .map(|a| a.senders.as_ref().map_or(0, SenderCounts::capacity))
                .max()
        };
        assert!(room(&w) >= Some(5_000));
        // Still more than a few entries: the tables stay, shrunk.
        for i in 0..10u64 {
            w.insert(ra(55, 1, i), 55 * MIN);
        }
        w.advance(61 * MIN);
        assert_eq!(w.len(), 11);
        assert!(room(&w) <= Some(SHRINK_ABOVE), "{:?}", room(&w));
        assert!(room(&w) > Some(0));
        // Emptied: no tables.
        w.advance(116 * MIN);
        assert_eq!(w.len(), 0);
        assert_eq!(room(&w), Some(0));
    }

    #[test]
    fn deliveries_saturate_instead_of_overflowing() {
        let mut w = ReplyWindows::new(&[60 * MIN], 10);
        w.insert(ra(0, u64::MAX, 1), 0);
        w.insert(ra(1, u64::MAX, 2), MIN);
        assert_eq!(w.stats(0).deliveries, u64::MAX);
        w.advance(60 * MIN);
        assert_eq!(w.stats(0).deliveries, u64::MAX);
        w.advance(61 * MIN);
        assert_eq!(w.stats(0).deliveries, 0);
    }

    #[test]
    fn stats_at_another_time_leave_the_cursors_alone() {
        let mut w = ReplyWindows::new(&[60 * MIN, 10 * MIN], 100);
        w.insert(ra(0, 100, 1), 0);
        w.insert(ra(2, 200, 2), 2 * MIN);
        // A wall clock 30 minutes ahead of stream time: the 10-minute window is empty there.
        assert_eq!(w.stats_at(1, 32 * MIN), WindowStats::default());
        assert_eq!(w.stats_at(0, 32 * MIN).reply_alls, 2);
        assert_eq!(
            w.stats_at(0, 60 * MIN),
            WindowStats {
                reply_alls: 1,
                deliveries: 200,
                distinct_senders: 1
            }
        );
        // Nothing moved: a late reply-all still lands in the right windows.
        w.insert(ra(1, 300, 3), 2 * MIN);
        assert_eq!(
            w.stats(1),
            WindowStats {
                reply_alls: 3,
                deliveries: 600,
                distinct_senders: 3
            }
        );
        w.advance(11 * MIN);
        assert_eq!(
            w.stats(1),
            WindowStats {
                reply_alls: 1,
                deliveries: 200,
                distinct_senders: 1
            }
        );
    }

    #[test]
    fn senders_lists_distinct_in_order() {
        let mut w = ReplyWindows::new(&[60 * MIN, 10 * MIN], 10);
        for (i, s) in [7u64, 8, 7, 9].iter().enumerate() {
            w.insert(ra(i as i64, 1, *s), i as i64 * MIN);
        }
        assert_eq!(w.senders(0), vec![7, 8, 9]);
    }

    proptest::proptest! {
        /// The incremental aggregates equal a recount after any sequence of in-order and late
        /// inserts, for every window.
        #[test]
        fn aggregates_match_a_recount(
            steps in proptest::collection::vec(
                (0i64..5, 0i64..3, 1u64..5_000, 0u64..6, proptest::bool::weighted(0.2)),
                1..200,
            ),
            cap in 1usize..50,
        ) {
            let widths = [60 * MIN, 10 * MIN, 3 * MIN];
            let mut w = ReplyWindows::new(&widths, cap);
            let mut now = 0;
            let mut kept: Vec<ReplyAll> = Vec::new();
            for (advance, lateness, recipients, sender, without_growing) in steps {
                now += advance * MIN / 2;
                let entry = ReplyAll { at: now - lateness * MIN / 3, recipients, sender };
                let held = if without_growing {
                    w.insert_without_growing(entry, now);
                    kept.len().clamp(1, cap)
                } else {
                    w.insert(entry, now);
                    cap
                };
                if entry.at > now - 60 * MIN {
                    let pos = kept.iter().rposition(|e| e.at <= entry.at).map_or(0, |p| p + 1);
                    kept.insert(pos, entry);
                }
                kept.retain(|e| e.at > now - 60 * MIN);
                while kept.len() > held { kept.remove(0); }
                for (i, width) in widths.iter().enumerate() {
                    proptest::prop_assert_eq!(w.stats(i), recount(&[], now, *width, &kept));
                }
                proptest::prop_assert!(w.len() <= cap);
            }
        }
    }
}
