//! The order in which threads' reply-all windows are forgotten past `limits.max_window_bytes`:
//! threads without an active storm, least recently given a reply-all (or, for a storm's
//! thread, least recently ended) first.
//!
//! Why an order of its own: the thread map's recency order counts every event, and most
//! threads hold no windows. Evicting in that order to free window bytes would take every
//! ordinary conversation older than the first thread with windows (up to a million at once),
//! for nothing. Here each reply-all on a thread (and each storm end that leaves windows) is
//! stamped and queued; the oldest entry whose thread still has that stamp and no storm names
//! the windows to forget. Entries a thread has outgrown (a newer reply-all, a storm, an
//! eviction) are skipped when met, and dropped in bulk once they outnumber the live ones.

use super::keys::KeyHash;
use std::collections::VecDeque;

/// Entries beyond twice the live ones (plus this many) are dropped in one pass: enough slack
/// that a pass is paid for by as many reply-alls as it looks at.
const STALE_SLACK: usize = 1024;

/// A thread's place in the order: its key hash and the stamp of its latest reply-all.
type Entry = (KeyHash, u64);

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct WindowOrder {
    queue: VecDeque<Entry>,
    next_stamp: u64,
}

impl WindowOrder {
    /// Queues thread `hash` as the most recent to have had a reply-all, and returns the stamp
    /// the thread must keep for the entry to name it.
    pub fn stamp(&mut self, hash: KeyHash) -> u64 {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.queue.push_back((hash, stamp));
        stamp
    }

    /// The oldest entry, taken out.
    pub fn pop_oldest(&mut self) -> Option<Entry> {
        self.queue.pop_front()
    }

    /// The oldest entry's thread.
    pub fn oldest(&self) -> Option<&KeyHash> {
        self.queue.front().map(|(hash, _)| hash)
    }

    /// Puts back an entry just taken out, as the oldest again.
    pub fn put_back(&mut self, entry: Entry) {
        self.queue.push_front(entry);
    }

    /// Whether more than twice `live_threads` entries (plus [`STALE_SLACK`]) are queued: then
    /// [`Self::drop_stale`] has work.
    #[inline]
    pub fn too_long(&self, live_threads: usize) -> bool {
        self.queue.len() > Self::most(live_threads)
    }

    fn most(live_threads: usize) -> usize {
        live_threads.saturating_mul(2).saturating_add(STALE_SLACK)
    }

    /// Drops the entries `live` says no longer name their thread, once the queue is
    /// [`Self::too_long`].
    pub fn drop_stale(&mut self, live_threads: usize, live: impl FnMut(&Entry) -> bool) {
        if !self.too_long(live_threads) {
            return;
        }
        self.queue.retain(live);
        self.fit(live_threads);
    }

    /// Gives back room far beyond what the queue may hold: popping frees none, and the room is
    /// counted in `limits.max_window_bytes`.
    pub fn fit(&mut self, live_threads: usize) {
        let most = Self::most(live_threads);
        if self.queue.capacity() > most.saturating_mul(2) {
            self.queue.shrink_to(most.max(self.queue.len()));
        }
    }

    /// The bytes the queue has allocated (it is counted with the windows it orders).
    pub fn heap_bytes(&self) -> usize {
        self.queue.capacity() * std::mem::size_of::<Entry>()
    }

    /// Entries queued, live or not.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::KeyHasher;
    use super::*;

    fn key(n: u64) -> KeyHash {
        KeyHasher::new().hash(&n.to_string())
    }

    #[test]
    fn oldest_first_with_fresh_stamps() {
        let (one, two) = (key(1), key(2));
        let mut order = WindowOrder::default();
        let a = order.stamp(one);
        let b = order.stamp(two);
        let a_again = order.stamp(one);
        assert!(a < b && b < a_again);
        assert_eq!(order.pop_oldest(), Some((one, a)));
        order.put_back((one, a));
        assert_eq!(order.pop_oldest(), Some((one, a)));
        assert_eq!(order.pop_oldest(), Some((two, b)));
        assert_eq!(order.pop_oldest(), Some((one, a_again)));
        assert_eq!(order.pop_oldest(), None);
    }

    #[test]
    fn stale_entries_go_once_they_outnumber_the_live_ones() {
        let seven = key(7);
        let mut order = WindowOrder::default();
        // One thread given many reply-alls: only its latest entry is live.
        let mut latest = 0;
        for _ in 0..STALE_SLACK + 2 {
            latest = order.stamp(seven);
        }
        let live = |entry: &Entry| entry.1 == latest;
        order.drop_stale(1, live);
        assert_eq!(
            order.len(),
            STALE_SLACK + 2,
            "within the slack: nothing dropped"
        );
        latest = order.stamp(seven);
        let live = |entry: &Entry| entry.1 == latest;
        order.drop_stale(1, live);
        assert_eq!(order.len(), 1);
        assert_eq!(order.pop_oldest(), Some((seven, latest)));
        assert!(order.heap_bytes() <= 4 * (2 + STALE_SLACK) * std::mem::size_of::<Entry>());
    }

    /// Popping frees no room; `fit` gives back what the queue may no longer need.
    #[test]
    fn room_is_given_back_once_far_beyond_the_live_entries() {
        let one = key(1);
        let mut order = WindowOrder::default();
        for _ in 0..20_000 {
            order.stamp(one);
        }
        while order.pop_oldest().is_some() {}
        let room = order.heap_bytes();
        order.fit(10);
        assert!(
            order.heap_bytes() < room / 4,
            "{} of {room}",
            order.heap_bytes()
        );
        assert!(order.heap_bytes() >= (2 * 10 + STALE_SLACK) * std::mem::size_of::<Entry>());
    }
}
