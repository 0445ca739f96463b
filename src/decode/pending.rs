//! The bounded map in which a message's log lines wait to become one event, shared by the
//! Postfix and Exchange correlators.
//!
//! Each entry has a deadline in event time (when it is emitted or dropped), and remembers the
//! smallest caller token among the records it absorbed, so the caller can hold its offset
//! commits back to the oldest record still waiting here: a crash then re-reads every line of
//! an unfinished message. The map is capped; at the cap the entry created first is evicted.
//!
//! The entry count bounds memory only if each entry is bounded too: its texts come from log
//! lines of up to the record size (1 MiB). So a waiting message keeps its ids and sender only up
//! to [`MAX_ID_BYTES`] (a message with a longer one is dropped as `too_long`, as a JSON event
//! with one is malformed), its decoded subject only up to [`MAX_PENDING_SUBJECT_BYTES`], and
//! (Exchange) its group names as hashes: at most about 12 KiB an entry for Postfix and 24 KiB
//! for Exchange, whatever the input, and a few hundred bytes for real mail.

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

struct Slot<V, T> {
    /// Creation order, for evicting the oldest.
    id: u64,
    deadline: Millis,
    token: T,
    value: V,
}

/// A capped map from a message key to its entry, with deadlines and caller tokens.
pub(crate) struct PendingMap<K, V, T> {
    entries: AHashMap<K, Slot<V, T>>,
    by_deadline: BTreeMap<(Millis, u64), K>,
    by_age: BTreeMap<u64, K>,
    tokens: BTreeMap<T, usize>,
    next_id: u64,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V, T: Copy + Ord> PendingMap<K, V, T> {
    /// An empty map holding at most `cap` entries (at least one).
    pub fn new(cap: usize) -> Self {
        Self {
            entries: AHashMap::new(),
            by_deadline: BTreeMap::new(),
            by_age: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_id: 0,
            cap: cap.max(1),
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `key`, to update; call [`PendingMap::absorb`] for the record's token.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|slot| &mut slot.value)
    }

    /// Notes that the record with `token` went into `key`'s entry.
    pub fn absorb(&mut self, key: &K, token: T) {
        if let Some(slot) = self.entries.get_mut(key) {
            if token < slot.token {
                release(&mut self.tokens, slot.token);
                *self.tokens.entry(token).or_default() += 1;
                slot.token = token;
            }
        }
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

    /// Inserts a new entry (the key must not be present: remove it first). Returns the entry
    /// evicted to make room, if the map was full.
    pub fn insert(&mut self, key: K, value: V, deadline: Millis, token: T) -> Option<(K, V)> {
        let evicted = if self.entries.len() >= self.cap {
            let oldest = self.by_age.first_key_value().map(|(_, k)| k.clone());
            oldest.and_then(|k| self.remove(&k).map(|v| (k, v)))
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.by_deadline.insert((deadline, id), key.clone());
        self.by_age.insert(id, key.clone());
        *self.tokens.entry(token).or_default() += 1;
        self.entries.insert(
            key,
            Slot {
                id,
                deadline,
                token,
                value,
            },
        );
        evicted
    }

    /// Removes `key`'s entry.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.by_deadline.remove(&(slot.deadline, slot.id));
        self.by_age.remove(&slot.id);
        release(&mut self.tokens, slot.token);
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

    #[test]
    fn deadlines_tokens_and_eviction() {
        let mut map: PendingMap<&str, u32, u64> = PendingMap::new(2);
        assert!(map.insert("a", 1, 100, 5).is_none());
        assert!(map.insert("b", 2, 50, 7).is_none());
        map.absorb(&"b", 3);
        map.absorb(&"b", 9);
        assert_eq!(map.oldest_token(), Some(3));
        assert_eq!(map.pop_due(49), None);
        assert_eq!(map.pop_due(50), Some(("b", 2)));
        assert_eq!(map.oldest_token(), Some(5));
        map.set_deadline(&"a", 10);
        assert!(map.insert("c", 3, 200, 8).is_none());
        // Full: the oldest entry goes.
        assert_eq!(map.insert("d", 4, 300, 9), Some(("a", 1)));
        assert_eq!(map.len(), 2);
        assert_eq!(map.oldest_token(), Some(8));
        assert_eq!(map.pop_oldest(), Some(("c", 3)));
        assert_eq!(map.remove(&"d"), Some(4));
        assert_eq!(map.oldest_token(), None);
        assert_eq!(map.pop_due(Millis::MAX), None);
    }
}
