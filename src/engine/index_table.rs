//! The hash index of the engine's bounded maps ([`super::lru::LruMap`]): key hash -> slab index.
//!
//! Why not `hashbrown`, which this replaced: at millions of entries a lookup is a cache miss,
//! and the engine hides those misses by starting a batch's lookups before it needs them. A
//! prefetch needs an address, and hashbrown computes where a key sits only inside its probe, by
//! loading its control bytes: the "prefetch" was a load that waited. Here a key's first place is
//! a whole cache line chosen from its hash alone ([`IndexTable::prefetch`] is a true hint), and
//! the line holds everything a lookup reads before the one entry it finds.
//!
//! Layout: groups of 15 four-byte entries and an overflow count, 64 bytes, one cache line each.
//! An entry holds `index + 1` in its low `index_bits` bits (0 is an empty entry) and, in the bits
//! left over, a tag taken from the key's hash, so a lookup compares a key only where the tag
//! matches (one false match in 2^tag_bits). A key goes into the first group with room, starting
//! at its home group and going on to the next; a group's overflow count is how many entries went
//! past it that way, so a lookup stops at the first group with none (as in Folly's F14). The
//! table is sized for 8 entries per group on average: then about 1 home group in 100 is full,
//! and it costs 64 / 8 = 8 bytes per entry, less than hashbrown's 5 bytes per bucket at its
//! usual half-empty power-of-two size.
//!
//! Removal takes the key's hash (a slab entry keeps its key), so it decrements the overflow counts
//! its insert incremented and leaves no tombstone.

use super::lru::ReserveError;

/// Entries per group: 15 entries and the overflow count fill one 64-byte line.
const ENTRIES_PER_GROUP: usize = 15;

/// The average entries per group a table is sized for (see the module documentation).
const SIZED_PER_GROUP: usize = 8;

/// One cache line of the table.
#[repr(C, align(64))]
#[derive(Clone, Copy, Default)]
struct Group {
    entries: [u32; ENTRIES_PER_GROUP],
    /// Entries stored beyond this group whose probe passed over it.
    overflow: u32,
}

/// See the module documentation.
pub(super) struct IndexTable {
    groups: Vec<Group>,
    len: usize,
    /// Bits of an entry that hold `index + 1`; the rest hold the tag.
    index_bits: u32,
}

impl IndexTable {
    /// An empty table for slab indices up to `max_index`: the fewer bits an index needs, the
    /// more are left for the tag. A larger index is still taken, at the cost of a rebuild.
    pub fn new(max_index: u32) -> Self {
        Self {
            groups: Vec::new(),
            len: 0,
            index_bits: bits_for(max_index),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Entries it holds before the next insert rebuilds it larger.
    pub fn capacity(&self) -> usize {
        self.groups.len() * SIZED_PER_GROUP
    }

    /// Asks the CPU to bring in the line where `hash`'s lookup starts.
    pub fn prefetch(&self, hash: u64) {
        if let Some(group) = self.groups.get(self.home(hash)) {
            super::lru::prefetch_value(group);
        }
    }

    /// The first index whose entry's tag matches `hash` and for which `is_match` holds.
    /// `is_match` is asked only on a tag match, so a caller may compare the key itself there.
    pub fn find(&self, hash: u64, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        let (tag, tag_mask, index_mask) = self.tag_of(hash);
        // The probe of `Self::probe`, written out: this is the engine's most frequent call,
        // and nearly every search ends in its home group.
        let groups = self.groups.as_slice();
        let home = self.home(hash);
        let mut at = home;
        loop {
            let group = groups.get(at)?;
            let mut found = matches(group, tag, tag_mask, index_mask);
            while found != 0 {
                let entry = group.entries[found.trailing_zeros() as usize];
                let index = (entry & index_mask) - 1;
                if is_match(index) {
                    return Some(index);
                }
                found &= found - 1;
            }
            if group.overflow == 0 {
                return None;
            }
            at += 1;
            if at == groups.len() {
                at = 0;
            }
            if at == home {
                return None;
            }
        }
    }

    /// Adds `index` under `hash`; the caller makes sure it is not held yet. When the table is
    /// full for its size, or `index` needs more bits than it has, it is first rebuilt from
    /// `entries` (every held index with its hash). When the allocator refuses that rebuild, the
    /// error is returned, and the entry still goes in if its index fits: a table sized for 8
    /// entries a group has room for 15.
    pub fn insert<I>(
        &mut self,
        hash: u64,
        index: u32,
        entries: impl FnOnce() -> I,
    ) -> Result<(), ReserveError>
    where
        I: IntoIterator<Item = (u64, u32)>,
    {
        let index_bits = self.index_bits.max(bits_for(index));
        let rebuilt = if self.len >= self.capacity() {
            let wanted = (self.len + 1).max(2 * self.capacity());
            self.rebuild(wanted, index_bits, entries())
        } else if index_bits != self.index_bits {
            self.rebuild(self.capacity(), index_bits, entries())
        } else {
            Ok(())
        };
        if bits_for(index) <= self.index_bits {
            self.place(hash, index);
        }
        rebuilt
    }

    /// Makes room for `capacity` entries, rebuilding from `entries` when it has less. New groups
    /// come from zeroed memory that the kernel backs as entries land on it (see
    /// [`Self::pretouch`]).
    pub fn reserve<I>(
        &mut self,
        capacity: usize,
        entries: impl FnOnce() -> I,
    ) -> Result<(), ReserveError>
    where
        I: IntoIterator<Item = (u64, u32)>,
    {
        if capacity <= self.capacity() {
            return Ok(());
        }
        self.rebuild(capacity, self.index_bits, entries())
    }

    /// Writes to every page of the groups, so that the kernel backs them now rather than one
    /// page fault at a time under later inserts, and returns their bytes. Each write stores the
    /// value it read: entries held stay as they are.
    pub fn pretouch(&mut self) -> usize {
        const PAGE: usize = 4096;
        let step = PAGE / std::mem::size_of::<Group>();
        for group in self.groups.iter_mut().step_by(step) {
            // `black_box` keeps the optimizer from dropping a store of the value just read.
            group.overflow = std::hint::black_box(group.overflow);
        }
        std::mem::size_of_val(self.groups.as_slice())
    }

    /// Removes `index`, held under `hash`. Returns whether it was held.
    pub fn remove(&mut self, hash: u64, index: u32) -> bool {
        let Some(wanted) = index.checked_add(1) else {
            return false;
        };
        let (_, _, index_mask) = self.tag_of(hash);
        for at in self.probe(hash) {
            let Some(group) = self.groups.get_mut(at) else {
                return false;
            };
            if let Some(entry) = group
                .entries
                .iter_mut()
                .find(|entry| **entry & index_mask == wanted)
            {
                *entry = 0;
                self.len -= 1;
                // The groups it went past no longer have it beyond them.
                for passed in self.probe(hash).take_while(|&passed| passed != at) {
                    if let Some(group) = self.groups.get_mut(passed) {
                        group.overflow = group.overflow.saturating_sub(1);
                    }
                }
                return true;
            }
            if group.overflow == 0 {
                return false;
            }
        }
        false
    }

    /// Puts `index` in the first group with room from `hash`'s home on. There is room: the
    /// table holds [`SIZED_PER_GROUP`] of every [`ENTRIES_PER_GROUP`] entries, and more only
    /// after refused rebuilds (see [`Self::insert`]).
    fn place(&mut self, hash: u64, index: u32) {
        let (tag, _, index_mask) = self.tag_of(hash);
        let entry = tag | (index.wrapping_add(1) & index_mask);
        for at in self.probe(hash) {
            let Some(group) = self.groups.get_mut(at) else {
                return;
            };
            if let Some(free) = group.entries.iter_mut().find(|entry| **entry == 0) {
                *free = entry;
                self.len += 1;
                return;
            }
            group.overflow = group.overflow.saturating_add(1);
        }
    }

    /// Replaces the groups with zeroed ones for `capacity` entries and puts `entries` back.
    fn rebuild(
        &mut self,
        capacity: usize,
        index_bits: u32,
        entries: impl IntoIterator<Item = (u64, u32)>,
    ) -> Result<(), ReserveError> {
        let groups = zeroed_groups(capacity.div_ceil(SIZED_PER_GROUP).max(1))?;
        let old = std::mem::replace(&mut self.groups, groups);
        self.index_bits = index_bits;
        self.len = 0;
        for (hash, index) in entries {
            self.place(hash, index);
        }
        drop(old);
        Ok(())
    }

    /// The group where `hash`'s probe starts: the hash scaled to the group count (Lemire's
    /// multiply-shift), so the count need not be a power of two.
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.groups.len() as u128) >> 64) as usize
    }

    /// The groups `hash`'s probe visits, in order: from its home to the last group, then from
    /// the first (each group once). Borrows nothing, so the caller may change groups on the way.
    fn probe(&self, hash: u64) -> impl Iterator<Item = usize> {
        let home = self.home(hash);
        (home..self.groups.len()).chain(0..home)
    }

    /// `hash`'s tag in place, the mask of the tag bits and the mask of the index bits. The tag
    /// comes from the hash's low bits, which barely affect its home (its high bits do).
    fn tag_of(&self, hash: u64) -> (u32, u32, u32) {
        let index_mask = u32::MAX.checked_shr(32 - self.index_bits).unwrap_or(0);
        let tag_mask = !index_mask;
        (hash as u32 & tag_mask, tag_mask, index_mask)
    }
}

/// `count` empty groups, from zeroed memory. Why not `vec![Group::default(); count]`: that
/// writes every byte, so the kernel backs the whole table at once. Memory fresh from the system
/// is zero already, and the allocator knows it and skips the writing: pages are then backed as
/// entries land on them, as for the slab, and a replay that never fills its maps never backs
/// the rest (the service backs everything at start anyway, `limits.pretouch`).
fn zeroed_groups(count: usize) -> Result<Vec<Group>, ReserveError> {
    let layout = std::alloc::Layout::array::<Group>(count).map_err(|_| ReserveError)?;
    if layout.size() == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the layout's size is not zero (checked above).
    let groups = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Group>();
    if groups.is_null() {
        return Err(ReserveError);
    }
    // SAFETY: `groups` was allocated by the global allocator with the layout of `count` groups,
    // which is the layout a `Vec<Group>` of capacity `count` owns; its `count` groups are
    // initialized, since all-zero bytes are a valid `Group` (integers only).
    Ok(unsafe { Vec::from_raw_parts(groups, count, count) })
}

/// The bits that hold `index + 1`: at least 1, at most 32.
fn bits_for(index: u32) -> u32 {
    (32 - index.saturating_add(1).leading_zeros()).max(1)
}

/// A bit per entry of `group` that is occupied and carries `tag`.
///
/// On x86-64 in SSE2 (every x86-64 CPU has it), four entries a compare: this runs on every
/// lookup, five or six times per event, and the compiler's own vectorization of the portable
/// loop spent 70 instructions a call assembling the bits (callgrind, BENCHMARKS.md session 10).
#[inline(always)]
fn matches(group: &Group, tag: u32, tag_mask: u32, index_mask: u32) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        matches_sse2(group, tag, tag_mask, index_mask)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        matches_portable(group, tag, tag_mask, index_mask)
    }
}

/// [`matches`] for any target, and the reference the SSE2 version is tested against. Written
/// without early exits so that the compiler can compare the entries in vector registers.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline(always)]
fn matches_portable(group: &Group, tag: u32, tag_mask: u32, index_mask: u32) -> u32 {
    let mut found = 0;
    for (i, &entry) in group.entries.iter().enumerate() {
        let hit = (entry & tag_mask == tag) & (entry & index_mask != 0);
        found |= u32::from(hit) << i;
    }
    found
}

// The SSE2 compare reads a group as four 16-byte parts and keeps one bit per entry of 16.
const _: () = assert!(std::mem::size_of::<Group>() == 64 && ENTRIES_PER_GROUP < 16);

/// [`matches`] in SSE2: the group's 16 words (15 entries and the overflow count, whose bit is
/// dropped) compared four at a time, the 16 lane results narrowed to bytes and their top bits
/// gathered by `movemask`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn matches_sse2(group: &Group, tag: u32, tag_mask: u32, index_mask: u32) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi32, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_packs_epi16, _mm_packs_epi32, _mm_set1_epi32, _mm_setzero_si128,
    };
    // The masks' bits as `i32` lanes (a reinterpretation, no value change).
    let lane = |value: u32| i32::from_ne_bytes(value.to_ne_bytes());
    let words: *const __m128i = std::ptr::from_ref(group).cast();
    // SAFETY: SSE2 is part of the x86-64 baseline, so these instructions exist on every CPU
    // this code runs on. `Group` is `repr(C)`, 64 bytes of `u32`s (15 entries, then the
    // overflow count), so `words.add(0..4)` are its four 16-byte parts, read unaligned.
    let bytes = unsafe {
        let (tag, tag_mask) = (_mm_set1_epi32(lane(tag)), _mm_set1_epi32(lane(tag_mask)));
        let index_mask = _mm_set1_epi32(lane(index_mask));
        let zero = _mm_setzero_si128();
        let mut hits = [zero; 4];
        for (quarter, hit) in hits.iter_mut().enumerate() {
            let words = _mm_loadu_si128(words.add(quarter));
            let tagged = _mm_cmpeq_epi32(_mm_and_si128(words, tag_mask), tag);
            let empty = _mm_cmpeq_epi32(_mm_and_si128(words, index_mask), zero);
            *hit = _mm_andnot_si128(empty, tagged);
        }
        // Each lane is all ones or all zeros, so the saturating packs keep it so.
        let low = _mm_packs_epi32(hits[0], hits[1]);
        let high = _mm_packs_epi32(hits[2], hits[3]);
        _mm_movemask_epi8(_mm_packs_epi16(low, high))
    };
    // The 16th lane is the overflow count, not an entry.
    u32::from_ne_bytes(bytes.to_ne_bytes()) & ((1 << ENTRIES_PER_GROUP) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small xorshift generator, so the tests need no seed handling.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn find_exact(table: &IndexTable, model: &HashMap<u32, u64>, hash: u64) -> Option<u32> {
        table.find(hash, |index| model.get(&index) == Some(&hash))
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn the_sse2_matches_are_the_portable_ones() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for round in 0..20_000u32 {
            let index_bits = 1 + round % 32;
            let index_mask = u32::MAX.checked_shr(32 - index_bits).unwrap_or(0);
            let tag_mask = !index_mask;
            // A few tags, so that entries carry the probed one often; tag 0 included.
            let tag = (xorshift(&mut state) as u32 % 4) << index_bits.min(31) & tag_mask;
            let mut group = Group::default();
            for entry in group.entries.iter_mut() {
                *entry = match xorshift(&mut state) % 4 {
                    0 => 0,
                    1 => tag | (xorshift(&mut state) as u32 & index_mask),
                    _ => xorshift(&mut state) as u32,
                };
            }
            // An overflow count that would match, were it an entry.
            group.overflow = tag | 1;
            assert_eq!(
                matches_sse2(&group, tag, tag_mask, index_mask),
                matches_portable(&group, tag, tag_mask, index_mask),
                "round {round}"
            );
        }
    }

    #[test]
    fn index_bits_leave_the_rest_for_the_tag() {
        assert_eq!(bits_for(0), 1);
        assert_eq!(bits_for(1), 2);
        assert_eq!(bits_for(4_000_001), 22);
        assert_eq!(bits_for(u32::MAX - 1), 32);
        assert_eq!(bits_for(u32::MAX), 32);
        let table = IndexTable::new(4_000_001);
        assert_eq!(
            table.tag_of(u64::MAX),
            (!0u32 << 22, !0u32 << 22, (1 << 22) - 1)
        );
        let untagged = IndexTable::new(u32::MAX - 1);
        assert_eq!(untagged.tag_of(u64::MAX), (0, 0, u32::MAX));
    }

    #[test]
    fn an_empty_table_finds_and_removes_nothing() {
        let mut table = IndexTable::new(100);
        assert_eq!(table.find(7, |_| true), None);
        assert!(!table.remove(7, 0));
        table.prefetch(7);
        assert_eq!((table.len(), table.capacity()), (0, 0));
    }

    /// Many keys on one home group: they spill over into the following groups (wrapping at the
    /// end), all stay findable, and removing them clears the overflow counts again.
    #[test]
    fn colliding_keys_overflow_into_later_groups_and_back() {
        let mut table = IndexTable::new(1_000);
        table.reserve(64, Vec::new).expect("a small table");
        let groups = table.groups.len();
        // The last group's home: the probes wrap around to group 0.
        let hash = |i: u32| u64::MAX - u64::from(i);
        assert_eq!(table.home(hash(0)), groups - 1);
        for i in 0..40 {
            table
                .insert(hash(i), i, Vec::new)
                .expect("no rebuild needed");
        }
        assert!(table.groups[groups - 1].overflow > 0);
        assert!(table.groups[0].overflow > 0, "wrapped around");
        for i in 0..40 {
            assert_eq!(table.find(hash(i), |index| index == i), Some(i));
        }
        for i in 0..40 {
            assert!(table.remove(hash(i), i));
            assert_eq!(table.find(hash(i), |index| index == i), None);
        }
        assert!(table.groups.iter().all(|g| g.overflow == 0));
        assert!(table.groups.iter().all(|g| g.entries == [0; 15]));
        assert_eq!(table.len(), 0);
    }

    /// A tag match is only a candidate: the caller's comparison decides, and the search goes
    /// on past a false match.
    #[test]
    fn a_tag_match_is_confirmed_by_the_caller() {
        let mut table = IndexTable::new(u32::MAX - 1);
        table.reserve(16, Vec::new).expect("a small table");
        // No tag bits: every entry on the home group is a candidate.
        for i in 0..5 {
            table.insert(42, i, Vec::new).expect("room");
        }
        let mut asked = Vec::new();
        let found = table.find(42, |index| {
            asked.push(index);
            index == 3
        });
        assert_eq!(found, Some(3));
        assert_eq!(asked, vec![0, 1, 2, 3]);
    }

    /// An index wider than the table's index bits rebuilds it with more of them.
    #[test]
    fn a_wider_index_rebuilds_with_more_index_bits() {
        let mut table = IndexTable::new(3);
        let mut model = HashMap::new();
        let mut state = 0x2545_F491_4F6C_DD1D;
        for index in [0, 1, 2, 3, 1_000, 70_000] {
            let hash = xorshift(&mut state);
            let snapshot: Vec<(u64, u32)> = model.iter().map(|(&i, &h)| (h, i)).collect();
            table.insert(hash, index, || snapshot).expect("small");
            model.insert(index, hash);
        }
        assert_eq!(table.index_bits, 17);
        for (&index, &hash) in &model {
            assert_eq!(find_exact(&table, &model, hash), Some(index));
        }
    }

    /// The table against a model map under random inserts and removals, through growth from
    /// empty, with keys crowded on a few home groups (long overflow chains).
    #[test]
    fn behaves_like_a_map_of_hash_to_index() {
        let mut table = IndexTable::new(2_047);
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut free: Vec<u32> = (0..2_048).rev().collect();
        let mut state = 0x9E37_79B9_7F4A_7C15;
        for step in 0..50_000u32 {
            let roll = xorshift(&mut state);
            if !roll.is_multiple_of(3) && !free.is_empty() {
                let index = free.pop().expect("not empty");
                let hash = (roll % 8) << 61 | xorshift(&mut state) >> 3;
                table
                    .insert(hash, index, || model.iter().map(|(&i, &h)| (h, i)))
                    .expect("small");
                model.insert(index, hash);
            } else if let Some((&index, &hash)) = model.iter().next() {
                assert!(table.remove(hash, index));
                assert!(!table.remove(hash, index));
                model.remove(&index);
                free.push(index);
            }
            assert_eq!(table.len(), model.len());
            if step.is_multiple_of(1_000) {
                assert_overflow_counts(&table, &model);
            }
        }
        for (&index, &hash) in &model {
            assert_eq!(find_exact(&table, &model, hash), Some(index));
        }
        for &index in &free {
            assert!(!table.remove(xorshift(&mut state), index));
        }
        assert_overflow_counts(&table, &model);
    }

    /// Each group's overflow count is the number of entries stored past it from a home at or
    /// before it.
    fn assert_overflow_counts(table: &IndexTable, model: &HashMap<u32, u64>) {
        let (_, _, index_mask) = table.tag_of(0);
        let mut expected = vec![0u32; table.groups.len()];
        for (at, group) in table.groups.iter().enumerate() {
            for &entry in group.entries.iter().filter(|&&entry| entry != 0) {
                let hash = model[&((entry & index_mask) - 1)];
                for passed in table.probe(hash).take_while(|&passed| passed != at) {
                    expected[passed] += 1;
                }
            }
        }
        let counts: Vec<u32> = table.groups.iter().map(|g| g.overflow).collect();
        assert_eq!(counts, expected);
    }
}
