//! 128-bit keyed hashes that stand for message ids, thread keys and normalized subjects inside
//! the engine's maps, so that a lookup costs one hash of the string and no string comparison, and
//! a remembered message id costs 16 bytes instead of a copy of its text.
//!
//! Why a hash may stand for the string (the collision argument): a [`KeyHash`] is the 128-bit
//! XXH3 hash of the string under a 192-byte secret drawn at random per engine (in place of
//! XXH3's published default secret, which would make every value predictable). Two different
//! strings are taken for one only when all 128 bits collide.
//! - By accident: with `n` distinct strings alive at once the chance of any such pair is about
//!   `n² / 2^129`; at the caps' scale (`n` = 10^7) that is about 10^-25 per run.
//! - By an attacker: message ids, subjects and thread ids are attacker-controlled, but the keys
//!   are secret, random per process, and no hash value leaves the engine (map order is
//!   insertion order, never hash order; alerts carry the original strings). Crafting a pair that
//!   collides needs the secret; without it, each attempt is a blind guess at 128 bits.
//!
//! Why XXH3-128 with a secret rather than two 64-bit ahash values under two keys, as before:
//! one pass over the string instead of two, about 83 instructions for a 40-byte message id
//! instead of about 150 (BENCHMARKS.md, session 11). Both are keyed multiply-fold hashes of the
//! same kind; neither is a MAC, and neither needs to be, since no hash value is ever seen
//! outside the engine.
//!
//! Were a collision to happen anyway, its effect is bounded to what the engine would do with
//! the two strings equal: two conversations counted as one thread (or one message id treated as
//! another's repeat). The engine's state stays consistent.

/// The hash of one key string. See the module documentation for why it may stand for the string.
/// Two `u64` rather than a `u128` so that it keeps 8-byte alignment inside map entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct KeyHash(u64, u64);

impl KeyHash {
    /// The half used to place the key in a hash table: it is already uniformly distributed.
    pub fn table_hash(self) -> u64 {
        self.0
    }

    /// The other half, independent of [`Self::table_hash`]: for filters that must not
    /// correlate with a key's place in the index.
    pub fn check_hash(self) -> u64 {
        self.1
    }
}

/// The length of an XXH3 secret as XXH3 itself has it (at least 136 bytes are required).
const SECRET_BYTES: usize = 192;

/// Computes [`KeyHash`]es under a secret random key.
#[derive(Clone)]
pub(super) struct KeyHasher {
    secret: Box<[u8; SECRET_BYTES]>,
}

impl KeyHasher {
    /// A hasher with a fresh random secret (from the operating system's generator, through
    /// the thread's seeded ChaCha generator).
    pub fn new() -> Self {
        let mut secret = Box::new([0u8; SECRET_BYTES]);
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), secret.as_mut_slice());
        Self { secret }
    }

    /// The hash of `key`.
    pub fn hash(&self, key: &str) -> KeyHash {
        let hash = xxhash_rust::xxh3::xxh3_128_with_secret(key.as_bytes(), self.secret.as_slice());
        // The low half is the one XXH3 mixes last; it places the key (`table_hash`).
        KeyHash(hash as u64, (hash >> 64) as u64)
    }

    /// A 64-bit keyed hash, for sender identities inside a thread's windows.
    pub fn hash64(&self, key: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_secret(key.as_bytes(), self.secret.as_slice())
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_hash_equal_and_different_ones_do_not() {
        let hasher = KeyHasher::new();
        assert_eq!(hasher.hash("a@b"), hasher.hash("a@b"));
        assert_ne!(hasher.hash("a@b"), hasher.hash("A@b"));
        assert_ne!(hasher.hash(""), hasher.hash(" "));
        let hashes: std::collections::HashSet<KeyHash> = (0..10_000)
            .map(|i| hasher.hash(&format!("id{i}")))
            .collect();
        assert_eq!(hashes.len(), 10_000);
    }

    #[test]
    fn strings_of_every_length_class_hash_apart() {
        // XXH3 takes a different path for 0-16, 17-128, 129-240 and longer inputs.
        let hasher = KeyHasher::new();
        let mut seen = std::collections::HashSet::new();
        for len in 0..600 {
            let text = "x".repeat(len);
            let mut changed_last = text.clone();
            changed_last.push('y');
            assert!(seen.insert(hasher.hash(&text)), "length {len}");
            assert_ne!(hasher.hash(&changed_last), hasher.hash(&(text + "z")));
        }
    }

    #[test]
    fn keys_differ_per_hasher() {
        let (a, b) = (KeyHasher::new(), KeyHasher::new());
        assert_ne!(a.hash("x"), b.hash("x"));
    }
}
