//! A hash map split into [`SHARDS`] maps by the key's hash, for a map the
//! writer keeps across batches (the rowids of records created since the
//! load, `sqlite/rowids.rs`).
//!
//! A hash map that outgrows its table moves every entry into a larger one
//! in the insert that crosses the line. Inside the writer that insert is a
//! batch's: with the intents' and the subscriptions' rowids crossing
//! 114,688 entries together (100,000 loaded, then ~14,700 creates), one
//! batch took 50–63 ms to persist and every write in flight waited.
//! Split 64 ways, each move is a
//! sixty-fourth of that, and the shards, filled unevenly by the hash, cross
//! their lines in different batches.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

/// How many maps; a power of two (the top bits of the hash pick one).
const SHARDS: usize = 64;
const SHIFT: u32 = u64::BITS - SHARDS.trailing_zeros();

pub(crate) struct ShardedMap<K, V> {
    /// Picks the shard; each shard hashes again with its own keys.
    hasher: RandomState,
    shards: Vec<HashMap<K, V>>,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    /// Room for about `additional` more entries spread by the hash: each
    /// shard gets its share and an eighth more (plus 64), far beyond the
    /// spread of the shares, so that loading a table of known size moves no
    /// entry (at a cold start, the rehashes as the shards doubled were ~4%
    /// of the CPU).
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        (self.hasher.hash_one(key) >> SHIFT) as usize
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.shard(key)].get(key)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let s = self.shard(&key);
        self.shards[s].insert(key, value)
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let s = self.shard(key);
        self.shards[s].remove(key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_as_one_map() {
        let mut m: ShardedMap<String, i64> = ShardedMap::default();
        let mut plain = HashMap::new();
        for i in 0..5000i64 {
            let k = format!("id-{}", i * 7919 % 5003);
            assert_eq!(m.insert(k.clone(), i), plain.insert(k, i));
        }
        for i in (0..5003i64).step_by(3) {
            let k = format!("id-{i}");
            assert_eq!(m.remove(k.as_str()), plain.remove(&k));
        }
        assert_eq!(m.insert("id-1".into(), -1), plain.insert("id-1".into(), -1));
        assert_eq!(m.len(), plain.len());
        for i in 0..5003i64 {
            let k = format!("id-{i}");
            assert_eq!(m.get(k.as_str()), plain.get(&k), "{k}");
        }
        assert_eq!(m.get("absent"), None);
    }

    #[test]
    fn entries_spread_over_every_shard() {
        // What bounds a move: no shard holds much more than its share.
        let mut m = ShardedMap::default();
        for i in 0..64_000u64 {
            m.insert(i, ());
        }
        let sizes: Vec<usize> = m.shards.iter().map(HashMap::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 64_000);
        let (least, most) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(*least > 700 && *most < 1300, "shard sizes {least}..{most}");
    }
}
