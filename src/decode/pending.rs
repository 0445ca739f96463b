//! The bounded map in which a message's log lines wait to become one event, shared by the
//! Postfix and Exchange correlators.
//!
//! Each entry has a deadline in event time (when it is emitted or dropped), and remembers the
//! smallest caller token among the records it absorbed, so the caller can hold its offset
//! commits back to the oldest record still waiting here: a crash then re-reads every line of
//! an unfinished message.
//!
//! The map is bounded twice, by its entries (`max_pending`) and by the bytes they hold
//! (`max_pending_bytes`); past either, the entry created first is evicted. The count alone
//! bounds memory only as far as each entry is bounded: its texts come from log lines of up to
//! the record size (1 MiB). So a waiting message keeps its ids and sender only up to
//! [`MAX_ID_BYTES`] (a message with a longer one is dropped as `too_long`, as a JSON event with
//! one is malformed), its decoded subject only up to [`MAX_PENDING_SUBJECT_BYTES`], and
//! (Exchange) its group names as hashes. That is a few hundred bytes for real mail, but up to
//! 12 KiB (Postfix) or 24 KiB (Exchange) for hostile lines: over a gigabyte at the default
//! count. The byte bound holds such lines to the configured memory; real mail meets the count
//! first.

use crate::event::{cut_to_bytes, MAX_ID_BYTES};
use crate::timefmt::Millis;
use ahash::AHashMap;
use std::collections::BTreeMap;
use std::hash::Hash;

/// The most bytes of a decoded subject a waiting message keeps. Alerts show at most 256 code
/// points (1 KiB) of it; the rest matters only for matching replies by subject (contract
/// section 2, rule 4), and no real subject is this long.
const MAX_PENDING_SUBJECT_BYTES: usize = 4096;

/// A decoded subject as an owned string to keep while its message waits: its first
/// [`MAX_PENDING_SUBJECT_BYTES`].
pub(crate) fn kept_subject(decoded: &str) -> String {
    cut_to_bytes(decoded, MAX_PENDING_SUBJECT_BYTES).to_string()
}

/// An id or address over [`MAX_ID_BYTES`]: its message is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

/// `text` as an owned string to keep while its message waits, if it is at most
/// [`MAX_ID_BYTES`] long.
pub(crate) fn kept_id(text: &str) -> Result<String, TooLong> {
    if text.len() > MAX_ID_BYTES {
        return Err(TooLong);
    }
    Ok(text.to_string())
}

/// The bytes a key or an entry holds on the heap: what the map's byte bound counts of it,
/// beside the fixed size of its slot.
pub(crate) trait HeapBytes {
    fn heap_bytes(&self) -> usize;
}

impl HeapBytes for (Box<str>, Box<str>) {
    fn heap_bytes(&self) -> usize {
        self.0.len() + self.1.len()
    }
}

impl HeapBytes for String {
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

impl<A: HeapBytes, E> HeapBytes for Result<A, E> {
    fn heap_bytes(&self) -> usize {
        self.as_ref().map_or(0, A::heap_bytes)
    }
}

impl<A: HeapBytes> HeapBytes for Option<A> {
    fn heap_bytes(&self) -> usize {
        self.as_ref().map_or(0, A::heap_bytes)
    }
}

/// What the map's bookkeeping costs an entry beyond its slot and its key's copies: the two
/// ordered indexes' share of a B-tree node and the hash table's spare room, about.
const BOOKKEEPING_BYTES: usize = 64;

struct Slot<V, T> {
    /// Creation order, for evicting the oldest.
    id: u64,
    deadline: Millis,
    token: T,
    /// What the entry counts against the byte bound ([`PendingMap::weigh`]).
    bytes: usize,
    value: V,
}

/// A bounded map from a message key to its entry, with deadlines and caller tokens.
pub(crate) struct PendingMap<K, V, T> {
    entries: AHashMap<K, Slot<V, T>>,
    by_deadline: BTreeMap<(Millis, u64), K>,
    by_age: BTreeMap<u64, K>,
    tokens: BTreeMap<T, usize>,
    next_id: u64,
    cap: usize,
    /// The entries' bytes, and their bound.
    bytes: usize,
    max_bytes: usize,
}

impl<K: Hash + Eq + Clone + HeapBytes, V: HeapBytes, T: Copy + Ord> PendingMap<K, V, T> {
    /// An empty map holding at most `cap` entries (at least one) and, past its first entry,
    /// at most `max_bytes` by [`Self::weigh`].
    pub fn new(cap: usize, max_bytes: usize) -> Self {
        Self {
            entries: AHashMap::new(),
            by_deadline: BTreeMap::new(),
            by_age: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_id: 0,
            cap: cap.max(1),
            bytes: 0,
            max_bytes,
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The bytes the entries waiting hold, by [`Self::weigh`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What an entry holds: its value's and its key's heap bytes (the key is kept three
    /// times: in the hash table and in both orders), its slot, and the bookkeeping. An
    /// estimate to within the allocator's rounding, so the bound is one an operator can size
    /// a memory limit by.
    fn weigh(key: &K, value: &V) -> usize {
        value.heap_bytes()
            + 3 * key.heap_bytes()
            + std::mem::size_of::<(K, Slot<V, T>)>()
            + 2 * std::mem::size_of::<K>()
            + BOOKKEEPING_BYTES
    }

    /// The entry of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|slot| &slot.value)
    }

    /// Takes the record with `token` into `key`'s entry: `update` changes the entry, which
    /// is weighed again, and the record's offset is held back until the entry goes. `None`
    /// when `key` has no entry. The entry may now be over the byte bound: see
    /// [`Self::pop_over_bounds`].
    pub fn absorb<R>(&mut self, key: &K, token: T, update: impl FnOnce(&mut V) -> R) -> Option<R> {
        let slot = self.entries.get_mut(key)?;
        let result = update(&mut slot.value);
        let bytes = Self::weigh(key, &slot.value);
        self.bytes = self.bytes - slot.bytes + bytes;
        slot.bytes = bytes;
        if token < slot.token {
            release(&mut self.tokens, slot.token);
            *self.tokens.entry(token).or_default() += 1;
            slot.token = token;
        }
        Some(result)
    }

    /// Moves `key`'s deadline.
    pub fn set_deadline(&mut self, key: &K, deadline: Millis) {
        if let Some(slot) = self.entries.get_mut(key) {
            if let Some(k) = self.by_deadline.remove(&(slot.deadline, slot.id)) {
                self.by_deadline.insert((deadline, slot.id), k);
            }
            slot.deadline = deadline;
        }
    }

    /// Inserts a new entry (the key must not be present: remove it first). The map may now be
    /// over its bounds: the caller evicts with [`Self::pop_over_bounds`], since what an
    /// evicted entry becomes (an event, a drop) is the caller's to say.
    pub fn insert(&mut self, key: K, value: V, deadline: Millis, token: T) {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = Self::weigh(&key, &value);
        self.bytes += bytes;
        self.by_deadline.insert((deadline, id), key.clone());
        self.by_age.insert(id, key.clone());
        *self.tokens.entry(token).or_default() += 1;
        self.entries.insert(
            key,
            Slot {
                id,
                deadline,
                token,
                bytes,
                value,
            },
        );
    }

    /// Removes and returns the entry created first while the map holds more than `max_pending`
    /// entries, or more than `max_pending_bytes` in more than one entry (one entry is bounded
    /// on its own, so the newest always stays).
    pub fn pop_over_bounds(&mut self) -> Option<(K, V)> {
        let over = self.entries.len() > self.cap || self.bytes > self.max_bytes;
        if over && self.entries.len() > 1 {
            self.pop_oldest()
        } else {
            None
        }
    }

    /// Removes `key`'s entry.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.by_deadline.remove(&(slot.deadline, slot.id));
        self.by_age.remove(&slot.id);
        release(&mut self.tokens, slot.token);
        self.bytes -= slot.bytes;
        Some(slot.value)
    }

    /// Removes and returns the entry with the earliest deadline at or before `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<(K, V)> {
        let (&(deadline, _), key) = self.by_deadline.first_key_value()?;
        if deadline > now {
            return None;
        }
        let key = key.clone();
        self.remove(&key).map(|value| (key, value))
    }

    /// Removes and returns the entry created first.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let key = self.by_age.first_key_value().map(|(_, k)| k.clone())?;
        self.remove(&key).map(|value| (key, value))
    }

    /// The smallest token among the records still waiting here.
    pub fn oldest_token(&self) -> Option<T> {
        self.tokens.first_key_value().map(|(&t, _)| t)
    }
}

fn release<T: Ord>(tokens: &mut BTreeMap<T, usize>, token: T) {
    if let Some(count) = tokens.get_mut(&token) {
        *count -= 1;
        if *count == 0 {
            tokens.remove(&token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_texts_are_bounded() {
        assert_eq!(
            kept_id(&"a".repeat(MAX_ID_BYTES)).map(|s| s.len()),
            Ok(MAX_ID_BYTES)
        );
        assert_eq!(kept_id(&"a".repeat(MAX_ID_BYTES + 1)), Err(TooLong));
        let subject = "é".repeat(MAX_PENDING_SUBJECT_BYTES);
        assert_eq!(kept_subject(&subject).len(), MAX_PENDING_SUBJECT_BYTES);
        assert_eq!(kept_subject("Re: x"), "Re: x");
    }

    impl HeapBytes for &str {
        fn heap_bytes(&self) -> usize {
            self.len()
        }
    }

    impl HeapBytes for u32 {
        fn heap_bytes(&self) -> usize {
            0
        }
    }

    #[test]
    fn deadlines_tokens_and_eviction() {
        let mut map: PendingMap<&str, u32, u64> = PendingMap::new(2, usize::MAX);
        map.insert("a", 1, 100, 5);
        map.insert("b", 2, 50, 7);
        assert_eq!(map.absorb(&"b", 3, |v| *v), Some(2));
        assert_eq!(map.absorb(&"b", 9, |_| ()), Some(()));
        assert_eq!(map.absorb(&"x", 1, |_| ()), None);
        assert_eq!(map.oldest_token(), Some(3));
        assert_eq!(map.pop_due(49), None);
        assert_eq!(map.pop_due(50), Some(("b", 2)));
        assert_eq!(map.oldest_token(), Some(5));
        map.set_deadline(&"a", 10);
        map.insert("c", 3, 200, 8);
        assert_eq!(map.pop_over_bounds(), None);
        // Over the count: the oldest entry goes.
        map.insert("d", 4, 300, 9);
        assert_eq!(map.pop_over_bounds(), Some(("a", 1)));
        assert_eq!(map.pop_over_bounds(), None);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&"c"), Some(&3));
        assert_eq!(map.oldest_token(), Some(8));
        assert_eq!(map.pop_oldest(), Some(("c", 3)));
        assert_eq!(map.remove(&"d"), Some(4));
        assert_eq!(map.oldest_token(), None);
        assert_eq!(map.pop_due(Millis::MAX), None);
        assert_eq!(map.bytes(), 0);
    }

    #[test]
    fn bytes_follow_what_entries_hold_and_are_bounded() {
        type Map = PendingMap<&'static str, String, u64>;
        let empty = Map::weigh(&"k", &String::new());
        let mut map = Map::new(1000, 3 * empty + 1000);
        for (key, token) in [("a", 1), ("b", 2), ("c", 3)] {
            map.insert(key, String::new(), 10, token);
        }
        assert_eq!(map.bytes(), 3 * empty);
        assert_eq!(map.pop_over_bounds(), None);
        // A record absorbed into an entry grows what it holds, and that counts.
        map.absorb(&"b", 4, |text| *text = "x".repeat(3000));
        assert_eq!(map.bytes(), 3 * empty + 3000);
        // Over the bytes: the oldest entries go until the rest fit.
        assert_eq!(map.pop_over_bounds().map(|(key, _)| key), Some("a"));
        assert_eq!(map.pop_over_bounds().map(|(key, _)| key), Some("b"));
        assert_eq!(map.pop_over_bounds(), None);
        assert_eq!(map.bytes(), empty);
        // One entry alone stays, whatever it holds: it is bounded on its own.
        map.absorb(&"c", 5, |text| *text = "x".repeat(10_000));
        assert_eq!(map.pop_over_bounds(), None);
        assert_eq!(map.len(), 1);
        assert_eq!(map.remove(&"c").map(|text| text.len()), Some(10_000));
        assert_eq!(map.bytes(), 0);
    }
}
