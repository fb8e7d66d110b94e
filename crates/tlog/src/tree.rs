//! The tree kept as its complete subtrees: level `l` holds the hashes of the
//! aligned subtrees of `2^l` leaves. Appending is O(log n); any root or proof
//! needs O(log n) stored hashes, so a log of 10⁸ entries never needs the
//! whole tree in memory when the levels live in a store.

use crate::hash::{Hash, empty_root, leaf_hash, node_hash, split};

/// Where complete-subtree hashes come from.
pub trait HashSource {
    type Error;
    /// Hash of the complete subtree of `2^level` leaves starting at leaf
    /// `index << level`.
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// MTH(D[start:end]) from stored complete subtrees (RFC 9162 §2.1.1).
pub fn range_root<S: HashSource + ?Sized>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return src.subtree(n.trailing_zeros() as u8, start / n);
    }
    let k = split(n);
    Ok(node_hash(
        &range_root(src, start, start + k)?,
        &range_root(src, start + k, end)?,
    ))
}

/// A tree held in memory, level by level.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no subtree at level {0} index {1}")]
pub struct Missing(pub u8, pub u64);

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map(|l| l.len() as u64).unwrap_or(0)
    }

    /// Appends a leaf (its data, hashed here); returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.append_hash(leaf_hash(data))
    }

    /// The hashes of level `l` (level 0: the leaves' hashes).
    pub fn level(&self, l: u8) -> &[Hash] {
        self.levels
            .get(l as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Appends an already hashed leaf; returns its index. Every complete
    /// subtree the new leaf finishes is hashed once, now.
    pub fn append_hash(&mut self, h: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let index = self.levels[0].len() as u64;
        self.levels[0].push(h);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
        index
    }

    /// The root hash at any size up to the current one.
    pub fn root(&self, size: u64) -> Result<Hash, Missing> {
        if size > self.size() {
            return Err(Missing(0, size));
        }
        range_root(self, 0, size)
    }
}

/// The peaks of a tree (its largest complete subtrees, left to right):
/// enough to compute its root and the roots after more appends, in
/// O(log n), without touching the stored tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    peaks: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of `src` at `size` leaves.
    pub fn of<S: HashSource + ?Sized>(src: &S, size: u64) -> Result<Frontier, S::Error> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push((level, src.subtree(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, peaks })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf (its data); returns the new size and root.
    pub fn push(&mut self, data: &[u8]) -> (u64, Hash) {
        self.push_hash(leaf_hash(data));
        (self.size, self.root())
    }

    /// Appends a leaf by its RFC 6962 leaf hash (the root is not computed).
    pub fn push_hash(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut level = 0u8;
        while let Some((l, left)) = self.peaks.last().copied() {
            if l != level {
                break;
            }
            self.peaks.pop();
            h = node_hash(&left, &h);
            level += 1;
        }
        self.peaks.push((level, h));
        self.size += 1;
    }

    /// RFC 9162 §2.1.1 root: the peaks folded from the right.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some((_, last)) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, (_, left)| node_hash(left, &acc))
    }
}

impl HashSource for MemoryTree {
    type Error = Missing;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Missing> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or(Missing(level, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::root_of;

    #[test]
    fn frontiers_give_every_root_without_touching_the_tree() {
        let mut t = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..70u32 {
            t.append(&i.to_be_bytes());
            leaves.push(leaf_hash(&i.to_be_bytes()));
        }
        for start in 0..=70u64 {
            let mut f = Frontier::of(&t, start).unwrap();
            assert_eq!(f.root(), root_of(&leaves[..start as usize]));
            for i in start..70 {
                let (size, root) = f.push(&(i as u32).to_be_bytes());
                assert_eq!((size, root), (i + 1, root_of(&leaves[..=i as usize])));
            }
        }
    }

    #[test]
    fn incremental_roots_match_the_definition_at_every_size() {
        let mut t = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..70u32 {
            t.append(&i.to_be_bytes());
            leaves.push(leaf_hash(&i.to_be_bytes()));
            for size in 0..=leaves.len() {
                assert_eq!(
                    t.root(size as u64).unwrap(),
                    root_of(&leaves[..size]),
                    "size {size}"
                );
            }
        }
        assert_eq!(t.root(0).unwrap(), empty_root());
        assert!(t.root(71).is_err());
    }
}
