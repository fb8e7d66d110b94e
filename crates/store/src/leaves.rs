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
//!
//! Most entries sit in one sorted array of (prefix, index) pairs, 16 bytes
//! each with no slack (a hash table of the same pairs held 34 bytes per
//! entry once it had doubled); the newest, up to [`MERGE_AT`], sit in a
//! small hash table. When that fills, it is frozen and a thread merges it
//! into a new array while the writer carries on into a fresh table; the
//! next insert after the merge swaps the new array in. Lookups search the
//! array, the frozen table and the fresh one — in index order, since each
//! holds only later entries than the one before.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

/// Entries held in the hash table before it is merged into the array.
pub(crate) const MERGE_AT: usize = 1 << 16;

/// Leaf-hash prefixes → log indices, ascending per prefix.
pub(crate) struct LeafIndex {
    /// (prefix, index), sorted: every entry older than `frozen`'s.
    base: Arc<Vec<(u64, u64)>>,
    /// Being merged into `base` (empty when no merge is under way).
    frozen: Arc<Recent>,
    /// The newest entries.
    recent: Recent,
    merging: Option<std::thread::JoinHandle<Vec<(u64, u64)>>>,
    merge_at: usize,
    len: u64,
}

/// Prefix → indices, for the entries since the last merge.
#[derive(Default)]
struct Recent {
    /// The lowest index per prefix.
    first: HashMap<u64, u64>,
    /// Further indices with a prefix already in `first`, ascending.
    more: HashMap<u64, Vec<u64>>,
    len: usize,
}

impl Recent {
    fn insert(&mut self, p: u64, idx: u64) {
        match self.first.entry(p) {
            Entry::Vacant(v) => {
                v.insert(idx);
            }
            Entry::Occupied(_) => self.more.entry(p).or_default().push(idx),
        }
        self.len += 1;
    }

    fn candidates(&self, p: u64, out: &mut Vec<u64>) {
        if let Some(first) = self.first.get(&p) {
            out.push(*first);
            if let Some(more) = self.more.get(&p) {
                out.extend_from_slice(more);
            }
        }
    }

    /// Its pairs, sorted.
    fn sorted(&self) -> Vec<(u64, u64)> {
        let mut pairs: Vec<(u64, u64)> = Vec::with_capacity(self.len);
        pairs.extend(self.first.iter().map(|(p, i)| (*p, *i)));
        for (p, more) in &self.more {
            pairs.extend(more.iter().map(|i| (*p, *i)));
        }
        pairs.sort_unstable();
        pairs
    }
}

/// What the index keeps of a leaf hash.
pub(crate) fn key(hash: &tlog::Hash) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(p)
}

/// Two sorted arrays as one, exactly sized.
fn merged(base: &[(u64, u64)], newer: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(base.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < base.len() && j < newer.len() {
        if base[i] <= newer[j] {
            out.push(base[i]);
            i += 1;
        } else {
            out.push(newer[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&base[i..]);
    out.extend_from_slice(&newer[j..]);
    out
}

impl Default for LeafIndex {
    fn default() -> Self {
        LeafIndex::from_pairs(Vec::new())
    }
}

impl LeafIndex {
    /// The index of these ([`key`] of a leaf hash, index) pairs, in any
    /// order.
    pub(crate) fn from_pairs(mut pairs: Vec<(u64, u64)>) -> Self {
        pairs.sort_unstable();
        pairs.shrink_to_fit();
        LeafIndex {
            len: pairs.len() as u64,
            base: Arc::new(pairs),
            frozen: Arc::default(),
            recent: Recent::default(),
            merging: None,
            merge_at: MERGE_AT,
        }
    }

    /// Records that entry `idx` has this leaf hash. Indices must come in
    /// ascending order (the log's).
    pub(crate) fn insert(&mut self, hash: &tlog::Hash, idx: u64) {
        self.finish_merge(false);
        self.recent.insert(key(hash), idx);
        self.len += 1;
        if self.recent.len >= self.merge_at && self.merging.is_none() {
            self.frozen = Arc::new(std::mem::take(&mut self.recent));
            let (base, frozen) = (self.base.clone(), self.frozen.clone());
            let spawned = std::thread::Builder::new()
                .name("leaf-index-merge".into())
                .spawn(move || merged(&base, &frozen.sorted()));
            match spawned {
                Ok(h) => self.merging = Some(h),
                // No thread to be had: merged here instead.
                Err(_) => {
                    self.base = Arc::new(merged(&self.base, &self.frozen.sorted()));
                    self.frozen = Arc::default();
                }
            }
        }
    }

    /// Takes a finished merge (or, with `wait`, waits for one under way).
    fn finish_merge(&mut self, wait: bool) {
        let Some(h) = self.merging.take_if(|h| wait || h.is_finished()) else {
            return;
        };
        // A merge that failed is done here instead: nothing is lost.
        let base = h
            .join()
            .unwrap_or_else(|_| merged(&self.base, &self.frozen.sorted()));
        self.base = Arc::new(base);
        self.frozen = Arc::default();
    }

    /// The indices that may hold this leaf hash, lowest first: every entry
    /// that does is among them.
    pub(crate) fn candidates(&self, hash: &tlog::Hash) -> Vec<u64> {
        let p = key(hash);
        let from = self.base.partition_point(|&(q, _)| q < p);
        let mut out: Vec<u64> = self.base[from..]
            .iter()
            .take_while(|&&(q, _)| q == p)
            .map(|&(_, i)| i)
            .collect();
        self.frozen.candidates(p, &mut out);
        self.recent.candidates(p, &mut out);
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
        let mut ix = LeafIndex::default();
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

    #[test]
    fn lookups_are_exact_before_during_and_after_every_merge() {
        // Every tenth leaf repeats an earlier one (the same bytes appended
        // again), so one hash's indices span the array and both tables.
        let leaf = |i: u32| {
            tlog::leaf_hash(&(if i.is_multiple_of(10) { i / 10 } else { i }).to_be_bytes())
        };
        let mut ix =
            LeafIndex::from_pairs((0..100u32).map(|i| (key(&leaf(i)), u64::from(i))).collect());
        ix.merge_at = 16;
        let mut want: HashMap<tlog::Hash, Vec<u64>> = HashMap::new();
        for i in 0..100u32 {
            want.entry(leaf(i)).or_default().push(u64::from(i));
        }
        let check = |ix: &LeafIndex, want: &HashMap<tlog::Hash, Vec<u64>>| {
            for (h, idx) in want {
                assert_eq!(&ix.candidates(h), idx, "leaf at {idx:?}");
            }
        };
        for i in 100..1100u32 {
            ix.insert(&leaf(i), u64::from(i));
            want.entry(leaf(i)).or_default().push(u64::from(i));
            if i.is_multiple_of(97) {
                // Whether a merge is under way, done or not yet taken.
                check(&ix, &want);
            }
            if i.is_multiple_of(250) {
                ix.finish_merge(true);
                check(&ix, &want);
            }
        }
        ix.finish_merge(true);
        check(&ix, &want);
        assert_eq!(ix.len(), 1100);
        // How much each merge took depends on how soon its thread ran;
        // that every entry is in exactly one place does not.
        assert_eq!(ix.frozen.len, 0);
        assert_eq!(ix.base.len() + ix.recent.len, 1100);
        // The wait at 250 took the merge begun when the table first filled.
        assert!(ix.base.len() >= 100 + 16, "merged: {}", ix.base.len());
        assert!(ix.candidates(&tlog::leaf_hash(b"absent")).is_empty());
        // The repeated leaf: its first index in the initial array, then
        // every repeat, ascending.
        assert_eq!(
            ix.candidates(&leaf(7)),
            vec![7, 70],
            "leaf 7 at 7 (array) and at 70 (array: was in the first 100)"
        );
        assert_eq!(ix.candidates(&leaf(107)), vec![107, 1070]);
    }
}
