//! The embedded store's index of the log by leaf hash, held in memory.
//!
//! An inclusion proof may be asked by an entry's RFC 6962 leaf hash; the
//! store answers with the lowest index holding it. On disk such an index is
//! a B-tree keyed by random hashes: every insert dirties a random page, and
//! moving hashes into it in bulk rewrote most of its pages each time — a
//! burst of random writes that the next WAL checkpoint had to sync, while
//! commits waited behind that sync. The
//! hashes are already on disk in the log's level-0 tiles (256 per tile, in
//! order): the index is rebuilt from them at every open and kept here.
//!
//! Each entry costs a key of the hash's first 8 bytes and its index; a
//! lookup returns the indices whose hash begins the same way, and the
//! store confirms each against the entry's bytes. Two different hashes
//! sharing 8 bytes (about one pair in 2⁶⁴ per pair of entries), and entries
//! with identical bytes, both keep all their indices, in order.

use crate::sharded::ShardedMap;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// Leaf-hash prefixes → log indices, ascending per prefix.
#[derive(Default)]
pub(crate) struct LeafIndex {
    /// The lowest index per 8-byte prefix (sharded: it grows with the log,
    /// and a batch's inserts must not move all of it at once).
    first: ShardedMap<u64, u64>,
    /// Further indices with a prefix already in `first`, ascending.
    more: HashMap<u64, Vec<u64>>,
    len: u64,
}

fn prefix(hash: &tlog::Hash) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(p)
}

impl LeafIndex {
    /// An empty index sized for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Self {
        LeafIndex {
            first: ShardedMap::with_capacity(n),
            more: HashMap::new(),
            len: 0,
        }
    }

    /// Records that entry `idx` has this leaf hash. Indices must come in
    /// ascending order (the log's).
    pub(crate) fn insert(&mut self, hash: &tlog::Hash, idx: u64) {
        let p = prefix(hash);
        match self.first.entry(p) {
            Entry::Vacant(v) => {
                v.insert(idx);
            }
            Entry::Occupied(_) => self.more.entry(p).or_default().push(idx),
        }
        self.len += 1;
    }

    /// The indices that may hold this leaf hash, lowest first: every entry
    /// that does is among them.
    pub(crate) fn candidates(&self, hash: &tlog::Hash) -> Vec<u64> {
        let p = prefix(hash);
        let Some(first) = self.first.get(&p) else {
            return Vec::new();
        };
        let mut out = vec![*first];
        if let Some(more) = self.more.get(&p) {
            out.extend_from_slice(more);
        }
        out
    }

    /// Entries recorded.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hash(prefix: u64, rest: u8) -> tlog::Hash {
        let mut h = [rest; 32];
        h[..8].copy_from_slice(&prefix.to_le_bytes());
        h
    }

    #[test]
    fn finds_each_leaf_and_nothing_else() {
        let mut ix = LeafIndex::with_capacity(4);
        let leaves: Vec<tlog::Hash> = (0..1000u32)
            .map(|i| tlog::leaf_hash(&i.to_be_bytes()))
            .collect();
        for (i, h) in leaves.iter().enumerate() {
            ix.insert(h, i as u64);
        }
        assert_eq!(ix.len(), 1000);
        for (i, h) in leaves.iter().enumerate() {
            assert_eq!(ix.candidates(h), vec![i as u64]);
        }
        assert!(ix.candidates(&tlog::leaf_hash(b"absent")).is_empty());
    }

    #[test]
    fn shared_prefixes_and_repeated_leaves_keep_every_index_in_order() {
        let mut ix = LeafIndex::default();
        // Two different hashes with the same first 8 bytes, and one leaf
        // appended twice (identical entries).
        let (a, b) = (hash(7, 1), hash(7, 2));
        ix.insert(&a, 3);
        ix.insert(&hash(8, 1), 4);
        ix.insert(&b, 5);
        ix.insert(&a, 9);
        assert_eq!(ix.candidates(&a), vec![3, 5, 9]);
        assert_eq!(ix.candidates(&b), vec![3, 5, 9]);
        assert_eq!(ix.candidates(&hash(8, 1)), vec![4]);
        // Same prefix as nothing recorded: no candidates.
        assert!(ix.candidates(&hash(6, 1)).is_empty());
        assert_eq!(ix.len(), 4);
    }
}
