//! The tree as C2SP `tlog-tiles` (v0.1.0) tiles: the *n*-th tile at level
//! *l* is the 256 hashes MTH(D[(n·256 + i)·256^l : (n·256 + i + 1)·256^l]),
//! i = 0..255, 8,192 bytes when full. A [`TiledTree`] holds only the
//! rightmost, partial tile of each level (fewer than 256 hashes each) and a
//! bounded cache of full tiles; every full tile it completes is handed out
//! once ([`TiledTree::take_completed`]) to be stored beside the entries, and
//! read back on demand ([`TiledTree::missing`] names the tiles a root or
//! proof needs, [`TiledTree::insert`] adds them). So a log of 10⁸ entries
//! needs a few kilobytes of tree in memory plus the cache, never the tree.

use crate::hash::Hash;
use crate::tree::{HashSource, MemoryTree, Missing};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Hashes in a full tile.
pub const WIDTH: usize = 256;
/// Tree levels one tile level spans (256 = 2^8).
pub const HEIGHT: u8 = 8;
/// Bytes of a full tile.
pub const TILE_BYTES: usize = WIDTH * 32;

/// A full tile: its level, its index within the level, its 256 hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub level: u8,
    pub index: u64,
    pub hashes: Vec<Hash>,
}

impl Tile {
    /// The tile as served: its hashes concatenated.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.concat()
    }

    /// The root of the 256-hash subtree the tile holds: the hash one tile
    /// level up (what the partial tile above it records).
    pub fn root(&self) -> Hash {
        let t = tile_tree(&self.hashes);
        t.root(t.size())
            .unwrap_or_else(|_| crate::hash::empty_root())
    }

    /// A full tile from its bytes; None unless exactly 8,192 bytes.
    pub fn from_bytes(level: u8, index: u64, bytes: &[u8]) -> Option<Tile> {
        if bytes.len() != TILE_BYTES {
            return None;
        }
        let hashes = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Some(Tile {
            level,
            index,
            hashes,
        })
    }
}

/// The resource path of a tile per `tlog-tiles`: `tile/<L>/<N>[.p/<W>]`,
/// `<N>` in zero-padded 3-digit elements, all but the last prefixed `x`
/// (index 1234067 → `x001/x234/067`). `width` is 256 for a full tile.
pub fn tile_path(level: u8, index: u64, width: usize) -> String {
    let mut path = format!("tile/{level}/{}", index_path(index));
    if width < WIDTH {
        path.push_str(&format!(".p/{width}"));
    }
    path
}

fn index_path(index: u64) -> String {
    let mut parts = vec![format!("{:03}", index % 1000)];
    let mut rest = index / 1000;
    while rest > 0 {
        parts.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// Parses the part of a tile path after `tile/`: `<L>/<N>[.p/<W>]` or
/// `entries/<N>[.p/<W>]` (level None). Answers (level, index, width); the
/// width is 256 for a full tile. Anything not in the exact form is None.
pub fn parse_tile_path(path: &str) -> Option<(Option<u8>, u64, usize)> {
    let (first, rest) = path.split_once('/')?;
    let level = if first == "entries" {
        None
    } else {
        let l: u8 = decimal(first)?.try_into().ok()?;
        if l > 63 {
            return None;
        }
        Some(l)
    };
    let (n, width) = match rest.split_once(".p/") {
        Some((n, w)) => {
            let w = decimal(w)?;
            if !(1..WIDTH as u64).contains(&w) {
                return None;
            }
            (n, w as usize)
        }
        None => (rest, WIDTH),
    };
    let elems: Vec<&str> = n.split('/').collect();
    let mut index: u64 = 0;
    for (i, e) in elems.iter().enumerate() {
        let digits = if i + 1 < elems.len() {
            e.strip_prefix('x')?
        } else {
            e
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index
            .checked_mul(1000)?
            .checked_add(digits.parse::<u64>().ok()?)?;
    }
    // One encoding per index: no leading "x000/" elements.
    if elems.len() > 1 && elems[0] == "x000" {
        return None;
    }
    Some((level, index, width))
}

/// A decimal with no leading zeroes (except "0" itself).
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// A tile's hashes with every subtree inside it (a [`MemoryTree`] of them).
fn tile_tree(hashes: &[Hash]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for h in hashes {
        t.append_hash(*h);
    }
    t
}

/// The tree by tiles: the partial tile of each level in memory, full tiles
/// in a bounded cache, completed ones handed out for storage.
#[derive(Debug, Clone)]
pub struct TiledTree {
    size: u64,
    /// Level l's partial tile (fewer than 256 hashes), with its subtrees.
    edge: Vec<MemoryTree>,
    cache: HashMap<(u8, u64), Arc<MemoryTree>>,
    order: VecDeque<(u8, u64)>,
    capacity: usize,
    completed: Vec<Tile>,
}

impl Default for TiledTree {
    fn default() -> Self {
        TiledTree::new(1024)
    }
}

impl TiledTree {
    /// An empty tree caching at most `capacity` full tiles (each 8 KiB of
    /// hashes plus its inner subtrees).
    pub fn new(capacity: usize) -> Self {
        TiledTree {
            size: 0,
            edge: Vec::new(),
            cache: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            completed: Vec::new(),
        }
    }

    /// A tree of `size` leaves from its partial tiles: the hashes of level
    /// l's partial tile are `floor(size / 256^l) mod 256` (see
    /// [`TiledTree::partial_tiles_of`] for which to read).
    pub fn from_edge(size: u64, partial: Vec<Vec<Hash>>, capacity: usize) -> Option<Self> {
        let mut t = TiledTree::new(capacity);
        t.size = size;
        for (l, hashes) in partial.into_iter().enumerate() {
            if hashes.len() as u64 != width_at(size, l as u8) {
                return None;
            }
            t.edge.push(tile_tree(&hashes));
        }
        if (t.edge.len() as u8) < levels(size) {
            return None;
        }
        Some(t)
    }

    /// For a tree of `size` leaves, per level from 0: how many hashes its
    /// partial tile holds and which full tile of the level below (or, at
    /// level 0, which leaves) they are the roots of: `(level, first, count)`
    /// — level 0 counts leaves from `first`; level l > 0 counts full tiles
    /// of level l − 1 from `first`.
    pub fn partial_tiles_of(size: u64) -> Vec<(u8, u64, u64)> {
        (0..levels(size))
            .map(|l| {
                let w = width_at(size, l);
                let row = size >> (8 * u32::from(l));
                (l, row - w, w)
            })
            .collect()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Keeps at most `capacity` full tiles in the cache from now on.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.cache.len() > self.capacity {
            match self.order.pop_front() {
                Some(k) => {
                    self.cache.remove(&k);
                }
                None => break,
            }
        }
    }

    /// Appends a leaf (its data, hashed here); returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.append_hash(crate::hash::leaf_hash(data))
    }

    /// Appends an already hashed leaf; returns its index. A tile it fills
    /// moves to the cache and to the completed list, and its root goes one
    /// level up.
    pub fn append_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.size;
        self.size += 1;
        let mut h = leaf;
        let mut l = 0usize;
        loop {
            if self.edge.len() == l {
                self.edge.push(MemoryTree::new());
            }
            self.edge[l].append_hash(h);
            if self.edge[l].size() < WIDTH as u64 {
                break;
            }
            let full = std::mem::take(&mut self.edge[l]);
            h = full
                .subtree(HEIGHT, 0)
                .expect("a full tile has its root at height 8");
            let tile_index = (self.size >> (8 * l as u32)) / WIDTH as u64 - 1;
            self.completed.push(Tile {
                level: l as u8,
                index: tile_index,
                hashes: full.level(0).to_vec(),
            });
            self.remember(l as u8, tile_index, Arc::new(full));
            l += 1;
        }
        index
    }

    /// The full tiles completed since the last call, oldest first.
    pub fn take_completed(&mut self) -> Vec<Tile> {
        std::mem::take(&mut self.completed)
    }

    /// The current partial tile of `level` (its hashes; empty if none).
    pub fn partial(&self, level: u8) -> &[Hash] {
        self.edge
            .get(level as usize)
            .map(|t| t.level(0))
            .unwrap_or(&[])
    }

    /// A full tile from the cache, if it is there.
    pub fn cached(&self, level: u8, index: u64) -> Option<Vec<Hash>> {
        self.cache.get(&(level, index)).map(|t| t.level(0).to_vec())
    }

    /// Adds a full tile read from storage (ignored unless it is full and
    /// belongs to this tree's complete part).
    pub fn insert(&mut self, tile: Tile) {
        let row = self.size >> (8 * u32::from(tile.level));
        if tile.hashes.len() == WIDTH && tile.index < row / WIDTH as u64 {
            self.remember(tile.level, tile.index, Arc::new(tile_tree(&tile.hashes)));
        }
    }

    fn remember(&mut self, level: u8, index: u64, t: Arc<MemoryTree>) {
        if self.cache.insert((level, index), t).is_none() {
            self.order.push_back((level, index));
        }
        while self.cache.len() > self.capacity {
            match self.order.pop_front() {
                Some(k) => {
                    self.cache.remove(&k);
                }
                None => break,
            }
        }
    }

    /// The full tiles (level, index) that `f` — a root or proof computed
    /// over this tree — needs and the cache does not hold. Empty: `f` can
    /// run on the tree itself now. The cached tiles it needs become the
    /// most recently used, so inserting the missing ones (no more than the
    /// cache holds) does not evict them.
    pub fn missing<T>(&mut self, f: impl FnOnce(&Recorder<'_>) -> T) -> Vec<(u8, u64)> {
        let r = Recorder {
            tree: self,
            missing: RefCell::new(Vec::new()),
            used: RefCell::new(Vec::new()),
        };
        f(&r);
        let (mut missing, mut used) = (r.missing.into_inner(), r.used.into_inner());
        missing.sort_unstable();
        missing.dedup();
        used.sort_unstable();
        used.dedup();
        for k in used {
            if let Some(at) = self.order.iter().position(|o| *o == k) {
                self.order.remove(at);
                self.order.push_back(k);
            }
        }
        missing
    }

    /// The root hash at any size up to the current one.
    pub fn root(&self, size: u64) -> Result<Hash, Missing> {
        if size > self.size {
            return Err(Missing(0, size));
        }
        crate::tree::range_root(self, 0, size)
    }

    /// Where the hash of subtree (level, index) lives: the tile level, the
    /// tile index, the height inside the tile and the index there; Err if
    /// the subtree is not complete in this tree.
    fn locate(&self, level: u8, index: u64) -> Result<(u8, u64, u8, u64), Missing> {
        let (tl, k) = (level / HEIGHT, level % HEIGHT);
        if index > u64::MAX >> k {
            return Err(Missing(level, index));
        }
        let first = index << k;
        let row = self.size.checked_shr(8 * u32::from(tl)).unwrap_or(0);
        if first.saturating_add(1 << k) > row {
            return Err(Missing(level, index));
        }
        let tile = first / WIDTH as u64;
        let inner = (first % WIDTH as u64) >> k;
        Ok((tl, tile, k, inner))
    }
}

fn levels(size: u64) -> u8 {
    let mut l = 0u8;
    while l < 8 && (size >> (8 * u32::from(l))) > 0 {
        l += 1;
    }
    l
}

/// How many hashes level l's partial tile holds at `size`.
fn width_at(size: u64, l: u8) -> u64 {
    size.checked_shr(8 * u32::from(l)).unwrap_or(0) % WIDTH as u64
}

impl HashSource for TiledTree {
    type Error = Missing;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Missing> {
        let (tl, tile, k, inner) = self.locate(level, index)?;
        let row = self.size >> (8 * u32::from(tl));
        if tile < row / WIDTH as u64 {
            self.cache
                .get(&(tl, tile))
                .ok_or(Missing(level, index))?
                .subtree(k, inner)
        } else {
            self.edge
                .get(tl as usize)
                .ok_or(Missing(level, index))?
                .subtree(k, inner)
        }
    }
}

/// A [`TiledTree`] with some full tiles read from storage beside its
/// cache (however small the cache, a proof over them can be computed).
pub struct Overlay<'a> {
    tree: &'a TiledTree,
    extra: HashMap<(u8, u64), MemoryTree>,
}

impl TiledTree {
    /// This tree with `tiles` available too, without caching them.
    pub fn overlay(&self, tiles: &[Tile]) -> Overlay<'_> {
        Overlay {
            tree: self,
            extra: tiles
                .iter()
                .filter(|t| t.hashes.len() == WIDTH)
                .map(|t| ((t.level, t.index), tile_tree(&t.hashes)))
                .collect(),
        }
    }
}

impl HashSource for Overlay<'_> {
    type Error = Missing;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Missing> {
        match self.tree.subtree(level, index) {
            Ok(h) => Ok(h),
            Err(e) => {
                let (tl, tile, k, inner) = self.tree.locate(level, index)?;
                self.extra.get(&(tl, tile)).ok_or(e)?.subtree(k, inner)
            }
        }
    }
}

/// Runs a computation over a [`TiledTree`], noting the full tiles it asks
/// for that are not cached (answering them with a placeholder hash).
pub struct Recorder<'a> {
    tree: &'a TiledTree,
    missing: RefCell<Vec<(u8, u64)>>,
    used: RefCell<Vec<(u8, u64)>>,
}

impl HashSource for Recorder<'_> {
    type Error = Missing;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Missing> {
        match self.tree.subtree(level, index) {
            Ok(h) => {
                if let Ok((tl, tile, _, _)) = self.tree.locate(level, index) {
                    self.used.borrow_mut().push((tl, tile));
                }
                Ok(h)
            }
            Err(e) => match self.tree.locate(level, index) {
                Ok((tl, tile, _, _)) => {
                    self.missing.borrow_mut().push((tl, tile));
                    Ok([0; 32])
                }
                Err(_) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, root_of};
    use crate::proof::{consistency_proof, inclusion_proof};

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    /// The size-70,000 example of the spec: 273 full level-0 tiles, a
    /// partial one of width 112, one full level-1 tile, a partial one of
    /// width 17, a partial level-2 tile of width 1.
    #[test]
    fn the_specs_example_tree_has_the_tiles_it_lists() {
        let mut t = TiledTree::new(4);
        let mut full = Vec::new();
        for i in 0..70_000u64 {
            t.append_hash(leaf(i));
            full.extend(t.take_completed());
        }
        let at = |l: u8| full.iter().filter(|x| x.level == l).count();
        assert_eq!((at(0), at(1), at(2)), (273, 1, 0));
        assert_eq!(
            (t.partial(0).len(), t.partial(1).len(), t.partial(2).len()),
            (112, 17, 1)
        );
        // A tree of 256 leaves: one full level-0 tile, a level-1 partial of 1.
        let mut t = TiledTree::new(4);
        for i in 0..256 {
            t.append_hash(leaf(i));
        }
        assert_eq!(t.take_completed().len(), 1);
        assert_eq!((t.partial(0).len(), t.partial(1).len()), (0, 1));
    }

    #[test]
    fn tiles_hold_the_hashes_the_spec_defines() {
        let leaves: Vec<Hash> = (0..70_000u64).map(leaf).collect();
        let mut t = TiledTree::new(4);
        let mut full = Vec::new();
        for l in &leaves {
            t.append_hash(*l);
            full.extend(t.take_completed());
        }
        for tile in &full {
            for (i, h) in tile.hashes.iter().enumerate() {
                let span = 256u64.pow(u32::from(tile.level));
                let start = (tile.index * 256 + i as u64) * span;
                assert_eq!(
                    *h,
                    root_of(&leaves[start as usize..(start + span) as usize]),
                    "tile {}/{} hash {i}",
                    tile.level,
                    tile.index
                );
            }
            // Its root is the hash one tile level up covers.
            let span = 256u64.pow(u32::from(tile.level) + 1);
            let start = (tile.index * span) as usize;
            assert_eq!(tile.root(), root_of(&leaves[start..start + span as usize]));
            let bytes = tile.to_bytes();
            assert_eq!(bytes.len(), TILE_BYTES);
            assert_eq!(
                Tile::from_bytes(tile.level, tile.index, &bytes).as_ref(),
                Some(tile)
            );
        }
        // The partial level-1 tile: roots of the last 17 full level-0 tiles.
        for (i, h) in t.partial(1).iter().enumerate() {
            let start = (256 + i) * 256;
            assert_eq!(*h, root_of(&leaves[start..start + 256]));
        }
    }

    /// Roots and proofs at every size from a tree that caches almost
    /// nothing, fed the tiles it names as missing — as a node reading them
    /// from its store — equal those of the whole tree in memory.
    #[test]
    fn proofs_from_stored_tiles_equal_those_of_the_whole_tree() {
        let n = 3 * 65_536 + 1234;
        let mut whole = MemoryTree::new();
        let mut tiled = TiledTree::new(8);
        let mut stored: HashMap<(u8, u64), Tile> = HashMap::new();
        for i in 0..n {
            whole.append_hash(leaf(i));
            tiled.append_hash(leaf(i));
            for t in tiled.take_completed() {
                stored.insert((t.level, t.index), t);
            }
        }
        // A tree reopened from its partial tiles alone, then fed on demand.
        let partial = TiledTree::partial_tiles_of(n)
            .into_iter()
            .map(|(l, _, _)| tiled.partial(l).to_vec())
            .collect();
        let mut reopened = TiledTree::from_edge(n, partial, 8).unwrap();
        assert_eq!(reopened.root(n).unwrap(), whole.root(n).unwrap());
        let sizes = [
            1,
            2,
            255,
            256,
            257,
            65_535,
            65_536,
            65_537,
            100_000,
            n - 1,
            n,
        ];
        for tree in [&mut tiled, &mut reopened] {
            for &size in &sizes {
                for index in [0, size / 3, size - 1] {
                    let want = inclusion_proof(&whole, index, size).unwrap().unwrap();
                    let need = tree.missing(|r| inclusion_proof(r, index, size));
                    for (l, i) in need {
                        tree.insert(stored[&(l, i)].clone());
                    }
                    assert_eq!(
                        inclusion_proof(&*tree, index, size).unwrap().unwrap(),
                        want,
                        "inclusion of {index} at {size}"
                    );
                }
                for first in [1, size / 2, size] {
                    let want = consistency_proof(&whole, first, size).unwrap().unwrap();
                    for (l, i) in tree.missing(|r| consistency_proof(r, first, size)) {
                        tree.insert(stored[&(l, i)].clone());
                    }
                    assert_eq!(
                        consistency_proof(&*tree, first, size).unwrap().unwrap(),
                        want,
                        "consistency {first} → {size}"
                    );
                }
                for (l, i) in tree.missing(|r| crate::tree::range_root(r, 0, size)) {
                    tree.insert(stored[&(l, i)].clone());
                }
                assert_eq!(tree.root(size).unwrap(), whole.root(size).unwrap());
            }
            assert!(tree.cache.len() <= tree.capacity, "the cache stays bounded");
        }
        // Without the tiles it names, a proof into the old part fails.
        let mut bare = TiledTree::from_edge(
            n,
            TiledTree::partial_tiles_of(n)
                .into_iter()
                .map(|(l, _, _)| tiled.partial(l).to_vec())
                .collect(),
            2,
        )
        .unwrap();
        assert!(inclusion_proof(&bare, 5, n).is_err());
        let need = bare.missing(|r| consistency_proof(r, 70_000, n));
        assert!(need.len() > 1, "{need:?}");
        // With a one-tile cache, the tiles read go beside it.
        bare.set_capacity(1);
        let read: Vec<Tile> = need.iter().map(|k| stored[k].clone()).collect();
        assert_eq!(
            consistency_proof(&bare.overlay(&read), 70_000, n)
                .unwrap()
                .unwrap(),
            consistency_proof(&whole, 70_000, n).unwrap().unwrap()
        );
    }

    #[test]
    fn reopening_needs_the_right_partial_tiles() {
        assert_eq!(
            TiledTree::partial_tiles_of(70_000),
            vec![(0, 69_888, 112), (1, 256, 17), (2, 0, 1)]
        );
        assert!(TiledTree::from_edge(70_000, vec![vec![[0; 32]; 111]], 1).is_none());
        assert!(TiledTree::from_edge(0, vec![], 1).is_some());
    }

    #[test]
    fn tile_paths_follow_the_spec() {
        assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(2, 5, 17), "tile/2/005.p/17");
        assert_eq!(
            parse_tile_path("0/x001/x234/067"),
            Some((Some(0), 1_234_067, 256))
        );
        assert_eq!(parse_tile_path("2/005.p/17"), Some((Some(2), 5, 17)));
        assert_eq!(parse_tile_path("entries/000"), Some((None, 0, 256)));
        for bad in [
            "0/5",
            "0/0005",
            "01/005",
            "64/005",
            "0/005.p/0",
            "0/005.p/256",
            "0/x000/005",
            "0/001/005",
            "0/x1/005",
            "0/005/",
            "x/005",
            "0/005.p/07",
            "",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad}");
        }
    }
}
