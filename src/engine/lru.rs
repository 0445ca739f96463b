//! A hash map from [`KeyHash`] to a value that also keeps its entries in recency order, oldest
//! first: the bounded maps of the engine (threads, message ids, subjects) evict from the old end.
//!
//! Why not a linked hash map with one heap node per entry: at a million entries per map, a node
//! allocation per insert, its allocator overhead and its scattered pointers dominated the
//! engine's time and memory. Here entries live in one slab (`Vec`) linked by `u32` indices, freed
//! slots are reused, and the hash index ([`IndexTable`]) holds only a 4-byte entry per key.

use super::index_table::IndexTable;
use super::keys::KeyHash;

/// No entry.
const NIL: u32 = u32::MAX;

/// The most entries a map holds: indices are `u32`, and `NIL` is reserved.
pub(super) const MAX_ENTRIES: usize = (u32::MAX - 1) as usize;

/// How much of a slab's room is backed at once ahead of its inserts: a slab fills in order, so
/// its next pages are known, and backing 2 MiB in one call saves about 500 page faults.
const POPULATE_BYTES: usize = 2 << 20;

/// Slots in [`POPULATE_BYTES`].
const fn populate_every<V>() -> usize {
    match POPULATE_BYTES.checked_div(std::mem::size_of::<Slot<V>>()) {
        Some(0) => 1,
        Some(slots) => slots,
        None => usize::MAX,
    }
}

struct Slot<V> {
    key: KeyHash,
    prev: u32,
    next: u32,
    /// `None` only while the slot is on the free list.
    value: Option<V>,
}

/// The allocator refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the allocator refused to reserve the map's capacity")]
pub struct ReserveError;

/// What one lookup of a key found: the slot holding it, or that none does. It stays true
/// until the map's next insert or removal, so a caller that needs the same entry again in
/// between hands it back ([`LruMap::get_found`], [`LruMap::touch_found`]) instead of searching
/// the index again: the engine asks for an event's thread and message id two or three times
/// each, and the searches were about a quarter of its instructions (BENCHMARKS.md, session
/// 10). One no longer current is simply searched again, and a slot is taken only while it still
/// holds the key, so a stale one costs time, not a wrong entry. (A `Found` saying the key is
/// absent is believed while the map has not changed: it must come from this map and key.)
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    slot: Option<u32>,
    /// The map's [`LruMap::generation`] when it was found.
    generation: u64,
}

impl Found {
    /// Whether the key was held.
    pub fn is_held(self) -> bool {
        self.slot.is_some()
    }
}

/// Where a batch's prefetch found a key ([`LruMap::hint`]), so that the lookup made when its
/// event is ingested ([`LruMap::lookup_hinted`]) need not search the index again: an event
/// searched each map's index twice, once to prefetch and once to decide, and each search is a
/// dependent load of an index line and a tag scan. A hint is only believed where the map shows
/// it still holds: a slot is taken only while it holds the key, and an absence only while the
/// key has not been inserted since ([`LruMap::forget_inserted`]); otherwise the index is
/// searched as usual.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Hint {
    /// No hint: search.
    #[default]
    Unknown,
    /// No entry had the key's tag.
    Absent,
    /// The first entry with the key's tag was in this slot.
    At(u32),
}

/// Bits in [`LruMap::inserted`]: a batch inserts a few dozen keys at most, so about one absence
/// in twenty is searched again needlessly.
const INSERTED_BITS: usize = 512;

/// See the module documentation.
pub(super) struct LruMap<V> {
    table: IndexTable,
    slots: Vec<Slot<V>>,
    /// Free slots, reused before the slab grows.
    free: Vec<u32>,
    head: u32,
    tail: u32,
    /// Counts inserts and removals, the changes that move keys in or out of slots, so that a
    /// [`Found`] knows whether it is still current. (Recency changes move no key.)
    generation: u64,
    /// A Bloom filter of the keys inserted since [`Self::forget_inserted`], one bit per key:
    /// what an absence [`Hint`] is checked against.
    inserted: [u64; INSERTED_BITS / 64],
}

impl<V> Default for LruMap<V> {
    fn default() -> Self {
        Self::with_max_len(MAX_ENTRIES)
    }
}

impl<V> LruMap<V> {
    /// An empty map that will hold at most `max_len` entries at once. The bound only sizes the
    /// index's entries (the fewer bits a slab index needs, the more tag bits are left to spare
    /// key comparisons); holding more still works, after a rebuild of the index.
    pub fn with_max_len(max_len: usize) -> Self {
        let max_index = u32::try_from(max_len.saturating_sub(1)).unwrap_or(u32::MAX);
        Self {
            table: IndexTable::new(max_index),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            generation: 0,
            inserted: [0; INSERTED_BITS / 64],
        }
    }

    /// Every held entry's table hash and slab index, for rebuilding the index: a pass in slab
    /// order, so it reads memory sequentially.
    fn held(slots: &[Slot<V>]) -> impl Iterator<Item = (u64, u32)> + '_ {
        slots
            .iter()
            .zip(0u32..)
            .filter(|(slot, _)| slot.value.is_some())
            .map(|(slot, index)| (slot.key.table_hash(), index))
    }

    /// Makes room for `capacity` entries in all, so inserts up to it never grow the map.
    /// Growing copies the slab and rebuilds the index from it, which at millions of entries
    /// stops the caller for a sizeable fraction of a second; a service that must answer within
    /// milliseconds reserves its caps once at start instead. Both reservations are address
    /// space the kernel backs only as entries arrive (see [`Self::pretouch_reserved`]); the
    /// index takes 8 bytes per entry. Fails, changing nothing that matters, when the allocator
    /// refuses (a cap far beyond the machine's memory): the map then grows as before.
    pub fn try_reserve(&mut self, capacity: usize) -> Result<(), ReserveError> {
        self.try_reserve_index(capacity)?;
        self.try_reserve_slab(capacity)
    }

    /// [`Self::try_reserve`] for the index alone.
    pub fn try_reserve_index(&mut self, capacity: usize) -> Result<(), ReserveError> {
        let capacity = capacity.min(MAX_ENTRIES);
        let slots = &self.slots;
        self.table.reserve(capacity, || Self::held(slots))
    }

    /// [`Self::try_reserve`] for the slab alone: the index still grows with the entries.
    pub fn try_reserve_slab(&mut self, capacity: usize) -> Result<(), ReserveError> {
        let capacity = capacity.min(MAX_ENTRIES);
        self.slots
            .try_reserve(capacity.saturating_sub(self.slots.len()))
            .map_err(|_| ReserveError)
    }

    /// Writes to every page of the slab's reserved but unused room and of the index, so that
    /// the kernel backs them now rather than one page fault at a time as entries arrive;
    /// returns the bytes of both. Why: a fault zeroes a fresh page (2 MiB where transparent
    /// huge pages apply) while the caller waits, and the maps fill fastest exactly when a storm
    /// multiplies the input. The slab's room is written with zeros and stays unused capacity;
    /// the index's entries are rewritten as they are.
    pub fn pretouch_reserved(&mut self) -> usize {
        const PAGE: usize = 4096;
        let slot_bytes = std::mem::size_of::<Slot<V>>().max(1);
        let room = self.slots.spare_capacity_mut();
        for slot in room.iter_mut().step_by((PAGE / slot_bytes).max(1)) {
            *slot = std::mem::MaybeUninit::zeroed();
        }
        // Keeps the optimizer from dropping the writes as never read.
        std::hint::black_box(&mut *room);
        room.len() * slot_bytes + self.table.pretouch()
    }

    /// The entries its slab and its index hold before they grow.
    #[cfg(test)]
    pub fn capacities(&self) -> (usize, usize) {
        (self.slots.capacity(), self.table.capacity())
    }

    /// Every entry's value, in slab order.
    #[cfg(test)]
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().filter_map(|slot| slot.value.as_ref())
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    fn index_of(&self, key: &KeyHash) -> Option<u32> {
        let slots = &self.slots;
        self.table.find(key.table_hash(), |i| {
            slots.get(i as usize).is_some_and(|s| s.key == *key)
        })
    }

    /// Starts loading the line of the index where `key`'s lookup starts: a hint, with no
    /// effect but on speed. The first step of two: [`Self::hint`] reads that line.
    pub fn prefetch_index(&self, key: &KeyHash) {
        self.table.prefetch(key.table_hash());
    }

    /// Starts a batch's hints: forgets which keys were inserted before, so an absence found
    /// from here on is believed until its key is inserted.
    pub fn forget_inserted(&mut self) {
        self.inserted = [0; INSERTED_BITS / 64];
    }

    /// The bit of `key` in [`Self::inserted`]: from the hash's other half than the one that
    /// places it in the index.
    fn inserted_bit(key: &KeyHash) -> (usize, u64) {
        let bit = (key.check_hash() % INSERTED_BITS as u64) as usize;
        (bit / 64, 1 << (bit % 64))
    }

    /// Whether `key` may have been inserted since [`Self::forget_inserted`].
    fn may_have_inserted(&self, key: &KeyHash) -> bool {
        let (word, bit) = Self::inserted_bit(key);
        self.inserted.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Starts loading `key`'s entry into the cache, and says where it is: the hint for
    /// [`Self::lookup_hinted`]. The index is searched by tag only (no key comparison, which
    /// would wait for the entry itself), so another key's matching tag (rare) prefetches that
    /// key's entry instead, and the lookup, which compares the key, searches again. The search
    /// reads the index's line, so call [`Self::prefetch_index`] well before.
    pub fn hint(&self, key: &KeyHash) -> Hint {
        match self.table.find(key.table_hash(), |_| true) {
            Some(index) => {
                if let Some(slot) = self.slot(index) {
                    prefetch_value(slot);
                }
                Hint::At(index)
            }
            None => Hint::Absent,
        }
    }

    /// [`Self::lookup`], searching only where `hint` (taken since the last
    /// [`Self::forget_inserted`]) no longer holds.
    pub fn lookup_hinted(&self, key: &KeyHash, hint: Hint) -> Found {
        let slot = match hint {
            Hint::At(index) if self.holds_at(index, key) => Some(index),
            Hint::Absent if !self.may_have_inserted(key) => None,
            _ => return self.lookup(key),
        };
        debug_assert_eq!(slot, self.index_of(key), "a hint was believed wrongly");
        Found {
            slot,
            generation: self.generation,
        }
    }

    /// [`Self::get`] with a hint (see [`Self::lookup_hinted`]). The lookup is current by
    /// construction, so its slot is read without checking it again as `get_found` would.
    pub fn get_hinted(&self, key: &KeyHash, hint: Hint) -> Option<&V> {
        let index = self.lookup_hinted(key, hint).slot?;
        self.slot(index)?.value.as_ref()
    }

    fn slot(&self, index: u32) -> Option<&Slot<V>> {
        self.slots.get(index as usize)
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot<V>> {
        self.slots.get_mut(index as usize)
    }

    /// Whether `key` is held.
    #[cfg(test)]
    pub fn contains(&self, key: &KeyHash) -> bool {
        self.lookup(key).is_held()
    }

    /// Where `key` is, or that it is not held, for [`Self::get_found`] and
    /// [`Self::touch_found`] to use while it is current.
    pub fn lookup(&self, key: &KeyHash) -> Found {
        Found {
            slot: self.index_of(key),
            generation: self.generation,
        }
    }

    /// What a lookup of `key` finds now: `earlier` (a lookup of `key`) when it is still
    /// current, else a new search.
    pub fn current(&self, key: &KeyHash, earlier: Option<Found>) -> Found {
        match earlier {
            Some(found)
                if found.generation == self.generation
                    && found.slot.is_none_or(|index| self.holds_at(index, key)) =>
            {
                debug_assert_eq!(found.slot, self.index_of(key), "a current lookup is wrong");
                found
            }
            _ => self.lookup(key),
        }
    }

    /// Whether the slot at `index` holds `key` (its line is the one the caller reads next).
    fn holds_at(&self, index: u32, key: &KeyHash) -> bool {
        self.slot(index)
            .is_some_and(|slot| slot.key == *key && slot.value.is_some())
    }

    /// The value of `key`, without changing its recency.
    pub fn get(&self, key: &KeyHash) -> Option<&V> {
        self.get_found(key, self.lookup(key))
    }

    /// [`Self::get`] with what a lookup of `key` found.
    pub fn get_found(&self, key: &KeyHash, found: Found) -> Option<&V> {
        let index = self.current(key, Some(found)).slot?;
        self.slot(index)?.value.as_ref()
    }

    /// [`Self::get_mut`] with what a lookup of `key` found.
    pub fn get_found_mut(&mut self, key: &KeyHash, found: Found) -> Option<&mut V> {
        let index = self.current(key, Some(found)).slot?;
        self.slot_mut(index)?.value.as_mut()
    }

    /// The value of `key`, mutably, without changing its recency.
    pub fn get_mut(&mut self, key: &KeyHash) -> Option<&mut V> {
        let index = self.index_of(key)?;
        self.slot_mut(index)?.value.as_mut()
    }

    /// Makes `key` the most recent entry (as an access does) and returns its value.
    pub fn touch(&mut self, key: &KeyHash) -> Option<&mut V> {
        self.touch_found(key, self.lookup(key))
    }

    /// [`Self::touch`] with what a lookup of `key` found.
    pub fn touch_found(&mut self, key: &KeyHash, found: Found) -> Option<&mut V> {
        let index = self.current(key, Some(found)).slot?;
        self.move_to_back(index);
        self.slot_mut(index)?.value.as_mut()
    }

    /// Inserts `key`, which must not be held yet, as the most recent entry.
    pub fn insert_new(&mut self, key: KeyHash, value: V) -> &mut V {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                if self.slots.len().is_multiple_of(populate_every::<V>()) {
                    self.populate_ahead();
                }
                let index = u32::try_from(self.slots.len()).unwrap_or(NIL);
                self.slots.push(Slot {
                    key,
                    prev: NIL,
                    next: NIL,
                    value: None,
                });
                index
            }
        };
        let slots = &self.slots;
        // A rebuild the allocator refused leaves the index at its size, and the entry still
        // goes in (`IndexTable::insert`).
        let _ = self
            .table
            .insert(key.table_hash(), index, || Self::held(slots));
        self.link_back(index);
        self.generation += 1;
        let (word, bit) = Self::inserted_bit(&key);
        if let Some(w) = self.inserted.get_mut(word) {
            *w |= bit;
        }
        let slot = &mut self.slots[index as usize];
        slot.key = key;
        slot.value.insert(value)
    }

    /// Has the kernel back the next [`POPULATE_BYTES`] of the slab's unused room, where the
    /// next inserts will write (see [`crate::allocator::populate_for_writing`]).
    #[cold]
    fn populate_ahead(&mut self) {
        let room = self.slots.spare_capacity_mut();
        let slots = room.len().min(populate_every::<V>());
        let bytes = slots * std::mem::size_of::<Slot<V>>();
        // Only a hint: without it, pages are backed as inserts reach them.
        let _ = crate::allocator::populate_for_writing(room.as_mut_ptr().cast(), bytes);
    }

    /// The oldest entry.
    pub fn front(&self) -> Option<(KeyHash, &V)> {
        let slot = self.slot(self.head)?;
        Some((slot.key, slot.value.as_ref()?))
    }

    /// Removes and returns the oldest entry.
    pub fn pop_front(&mut self) -> Option<(KeyHash, V)> {
        let index = self.head;
        let key = self.slot(index)?.key;
        self.table.remove(key.table_hash(), index);
        self.unlink(index);
        self.free.push(index);
        self.generation += 1;
        // Eviction goes on from the old end, one entry per insert once the map is full: start
        // loading the entry after the new oldest now, so the next pops find theirs in the
        // cache (the new oldest's own entry was just written by `unlink`).
        if let Some(head) = self.slot(self.head) {
            if let Some(after) = self.slot(head.next) {
                prefetch_value(after);
            }
            // And the new oldest's line of the index, which its own pop will search.
            self.table.prefetch(head.key.table_hash());
        }
        let value = self.slot_mut(index)?.value.take()?;
        Some((key, value))
    }

    fn unlink(&mut self, index: u32) {
        let Some(slot) = self.slot(index) else {
            return;
        };
        let (prev, next) = (slot.prev, slot.next);
        match self.slot_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slot_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn link_back(&mut self, index: u32) {
        let tail = self.tail;
        if let Some(slot) = self.slot_mut(index) {
            slot.prev = tail;
            slot.next = NIL;
        }
        match self.slot_mut(tail) {
            Some(t) => t.next = index,
            None => self.head = index,
        }
        self.tail = index;
    }

    fn move_to_back(&mut self, index: u32) {
        if self.tail != index {
            self.unlink(index);
            self.link_back(index);
        }
    }
}

/// Asks the CPU to bring the cache lines of `value` in; a no-op where the architecture has no
/// such hint here.
#[inline(always)]
pub(super) fn prefetch_value<T>(value: &T) {
    let start: *const T = value;
    prefetch_span(start.cast(), std::mem::size_of::<T>());
}

/// [`prefetch`] for the first and last byte of a slice (a short string's one or two lines).
#[inline(always)]
pub(super) fn prefetch_bytes(bytes: &[u8]) {
    prefetch_span(bytes.as_ptr(), bytes.len());
}

/// [`prefetch_bytes`] for a shared string together with its reference counts, which sit just
/// before it in `Arc`'s allocation (a layout detail: were it to change, only the hint is off).
#[inline(always)]
pub(super) fn prefetch_shared(text: &std::sync::Arc<str>) {
    let counts = 2 * std::mem::size_of::<usize>();
    prefetch_span(text.as_ptr().wrapping_sub(counts), text.len() + counts);
}

#[inline(always)]
fn prefetch_span(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = start.cast::<i8>();
        let end = start.wrapping_add(len.saturating_sub(1));
        // SAFETY: a prefetch is a hint: it never faults, whatever the address, and changes no
        // memory. SSE, which the intrinsic needs, is part of the x86_64 baseline.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(start);
            _mm_prefetch::<_MM_HINT_T0>(end);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::keys::KeyHasher;
    use std::collections::VecDeque;

    #[test]
    fn a_lookup_is_reused_until_the_map_changes_and_searched_again_after() {
        let hasher = KeyHasher::new();
        let [a, b, c] = ["a", "b", "c"].map(|key| hasher.hash(key));
        let mut map = LruMap::default();
        map.insert_new(a, 1);
        let found_a = map.lookup(&a);
        let absent_c = map.lookup(&c);
        assert!(found_a.is_held() && !absent_c.is_held());
        assert_eq!(map.get_found(&a, found_a), Some(&1));
        // Handed back with another key, the slot is not taken: it does not hold that key.
        assert_eq!(map.get_found(&c, found_a), None);
        *map.touch_found(&a, found_a).expect("held") += 1;
        assert_eq!(map.get(&a), Some(&2));

        // An insert: `c` is held now, though its lookup said otherwise.
        map.insert_new(c, 3);
        assert_eq!(map.get_found(&c, absent_c), Some(&3));
        // A removal, and an insert that reuses the freed slot: the old lookup of `a` pointed
        // there, and must not give `b`'s value.
        assert_eq!(map.pop_front(), Some((a, 2)));
        map.insert_new(b, 4);
        assert_eq!(map.get_found(&a, found_a), None);
        assert_eq!(map.touch_found(&a, found_a), None);
        assert_eq!(map.get_found(&b, map.lookup(&b)), Some(&4));
    }

    #[test]
    fn a_hint_is_believed_only_while_the_map_shows_it_holds() {
        let hasher = KeyHasher::new();
        let [a, b, c] = ["a", "b", "c"].map(|key| hasher.hash(key));
        // Sized small, so that most of an index entry's bits are tag (with no tag bits, every
        // entry would match every key, and no absence would show).
        let mut map = LruMap::with_max_len(16);
        map.insert_new(a, 1);
        map.forget_inserted();
        let (at_a, absent_c) = (map.hint(&a), map.hint(&c));
        assert!(matches!(at_a, Hint::At(_)), "{at_a:?}");
        assert_eq!(absent_c, Hint::Absent);
        assert_eq!(map.get_hinted(&a, at_a), Some(&1));
        assert_eq!(map.get_hinted(&c, absent_c), None);
        assert_eq!(map.get_hinted(&a, Hint::Unknown), Some(&1));

        // Inserted after its hint said absent: found.
        map.insert_new(c, 3);
        assert_eq!(map.get_hinted(&c, absent_c), Some(&3));
        assert!(map.lookup_hinted(&c, absent_c).is_held());
        // Removed, and its slot reused by another key: the hint no longer finds it, and the
        // slot is taken for the key it holds now.
        assert_eq!(map.pop_front(), Some((a, 1)));
        map.insert_new(b, 4);
        assert_eq!(map.get_hinted(&a, at_a), None);
        assert_eq!(map.get_hinted(&b, at_a), Some(&4));
        // A slot hint handed back with another key is not taken either.
        assert_eq!(map.get_hinted(&c, at_a), Some(&3));
    }

    #[test]
    fn every_key_inserted_since_the_hints_were_taken_is_searched_again() {
        let hasher = KeyHasher::new();
        let keys: Vec<KeyHash> = (0..2_000).map(|i| hasher.hash(&format!("k{i}"))).collect();
        let mut map = LruMap::with_max_len(4_096);
        map.forget_inserted();
        let hints: Vec<Hint> = keys.iter().map(|key| map.hint(key)).collect();
        assert!(hints.iter().all(|hint| *hint == Hint::Absent));
        for (i, key) in keys.iter().enumerate().step_by(3) {
            map.insert_new(*key, i);
        }
        for (i, (key, hint)) in keys.iter().zip(&hints).enumerate() {
            let expected = (i % 3 == 0).then_some(i);
            assert_eq!(map.get_hinted(key, *hint).copied(), expected, "key {i}");
        }
    }

    #[test]
    fn a_reserved_map_does_not_grow_up_to_its_reservation() {
        let hasher = KeyHasher::new();
        let mut map: LruMap<u32> = LruMap::default();
        map.try_reserve(10_000).expect("a small reservation");
        let (table, slots) = (map.table.capacity(), map.slots.capacity());
        assert!(table >= 10_000 && slots >= 10_000);
        for i in 0..10_000u32 {
            map.insert_new(hasher.hash(&i.to_string()), i);
        }
        assert_eq!((map.table.capacity(), map.slots.capacity()), (table, slots));
        assert_eq!(map.get(&hasher.hash("9999")), Some(&9999));
    }

    #[test]
    fn pretouching_keeps_the_entries_and_the_reservation() {
        let hasher = KeyHasher::new();
        let mut map: LruMap<String> = LruMap::default();
        map.try_reserve(5_000).expect("a small reservation");
        for i in 0..1_000u32 {
            map.insert_new(hasher.hash(&i.to_string()), i.to_string());
        }
        let slots = map.slots.capacity();
        let index = map.table.capacity() / 8 * 64;
        let room = map.pretouch_reserved();
        assert_eq!(
            room,
            (slots - 1_000) * std::mem::size_of::<Slot<String>>() + index
        );
        assert_eq!((map.len(), map.slots.capacity()), (1_000, slots));
        assert_eq!(
            map.get(&hasher.hash("999")).map(String::as_str),
            Some("999")
        );
        for i in 1_000..5_000u32 {
            map.insert_new(hasher.hash(&i.to_string()), i.to_string());
        }
        assert_eq!(map.slots.capacity(), slots);
        let oldest = map.pop_front().map(|(_, value)| value);
        assert_eq!(oldest.as_deref(), Some("0"));
    }

    #[test]
    fn pretouching_an_empty_map_leaves_it_empty_with_its_reservation() {
        let hasher = KeyHasher::new();
        let mut map: LruMap<u32> = LruMap::with_max_len(100_000);
        map.try_reserve(100_000).expect("a small reservation");
        let (table, slots) = (map.table.capacity(), map.slots.capacity());
        let room = map.pretouch_reserved();
        // The slab's room and the index: 8 entries per 64-byte line.
        assert_eq!(
            room,
            slots * std::mem::size_of::<Slot<u32>>() + 100_000 / 8 * 64
        );
        assert_eq!((map.len(), map.table.capacity()), (0, table));
        assert!(map.pop_front().is_none());
        for i in 0..100_000u32 {
            let key = hasher.hash(&i.to_string());
            assert!(!map.contains(&key), "{i} before its insert");
            map.insert_new(key, i);
        }
        assert_eq!((map.table.capacity(), map.slots.capacity()), (table, slots));
        assert_eq!(map.get(&hasher.hash("99999")), Some(&99_999));
        assert_eq!(map.pop_front().map(|(_, value)| value), Some(0));
    }

    /// The map against a plain model (a deque in recency order) under random operations: with
    /// a bound on its length that it keeps (tagged index entries), with none (untagged), and
    /// with one it exceeds (the index widens its entries' index bits).
    #[test]
    fn behaves_like_a_recency_ordered_map() {
        check_against_model(LruMap::with_max_len(300));
        check_against_model(LruMap::default());
        check_against_model(LruMap::with_max_len(8));
    }

    fn check_against_model(mut map: LruMap<u32>) {
        let hasher = KeyHasher::new();
        let mut model: VecDeque<(u32, u32)> = VecDeque::new();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for step in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = (state % 300) as u32;
            let hash = hasher.hash(&key.to_string());
            match state % 4 {
                0 | 1 => {
                    let found = model.iter().position(|(k, _)| *k == key);
                    match found {
                        Some(pos) => {
                            let entry = model.remove(pos).unwrap();
                            model.push_back(entry);
                            assert_eq!(map.touch(&hash).copied(), Some(entry.1));
                        }
                        None => {
                            assert!(!map.contains(&hash));
                            map.insert_new(hash, step);
                            model.push_back((key, step));
                        }
                    }
                }
                2 => {
                    let expected = model.pop_front();
                    let got = map.pop_front();
                    assert_eq!(got.map(|(_, v)| v), expected.map(|(_, v)| v));
                }
                _ => {
                    let expected = model.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                    assert_eq!(map.get(&hash).copied(), expected);
                }
            }
            assert_eq!(map.len(), model.len());
            assert_eq!(map.front().map(|(_, v)| *v), model.front().map(|(_, v)| *v));
        }
    }
}
