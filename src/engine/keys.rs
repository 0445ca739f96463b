//! 128-bit keyed hashes that stand for message ids, thread keys and normalized subjects inside
//! the engine's maps, so that a lookup costs one hash of the string and no string comparison, and
//! a remembered message id costs 16 bytes instead of a copy of its text.
//!
//! Why a hash may stand for the string (the collision argument): a [`KeyHash`] is two 64-bit
//! ahash values of the string under two independent keys drawn at random per engine. Two
//! different strings are taken for one only when both halves collide.
//! - By accident: with `n` distinct strings alive at once the chance of any such pair is about
//!   `n² / 2^129`; at the caps' scale (`n` = 10^7) that is about 10^-25 per run.
//! - By an attacker: message ids, subjects and thread ids are attacker-controlled, but the keys
//!   are secret, random per process, and no hash value leaves the engine (map order is
//!   insertion order, never hash order; alerts carry the original strings). Crafting a pair that
//!   collides needs both keys; without them, each attempt is a blind guess at 128 bits.
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
}

/// Computes [`KeyHash`]es with two secret random keys.
#[derive(Clone)]
pub(super) struct KeyHasher {
    low: ahash::RandomState,
    high: ahash::RandomState,
}

impl KeyHasher {
    /// A hasher with fresh random keys.
    pub fn new() -> Self {
        Self {
            low: ahash::RandomState::new(),
            high: ahash::RandomState::new(),
        }
    }

    /// The hash of `key`.
    pub fn hash(&self, key: &str) -> KeyHash {
        KeyHash(self.low.hash_one(key), self.high.hash_one(key))
    }

    /// A 64-bit keyed hash, for sender identities inside a thread's windows.
    pub fn hash64(&self, key: &str) -> u64 {
        self.low.hash_one(key)
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
    fn keys_differ_per_hasher() {
        let (a, b) = (KeyHasher::new(), KeyHasher::new());
        assert_ne!(a.hash("x"), b.hash("x"));
    }
}
