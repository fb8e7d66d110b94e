//! The spatio-temporal index: an R-tree over the 4D boxes `[x, y, z, t]` of
//! every volume, where `x, y, z` bound the volume's spherical cap in
//! unit-vector space (no antimeridian or pole special cases) and `t` is the
//! time window in days. Altitude is checked exactly afterwards.

use crate::geometry::PreparedVolume;
use rstar::{
    AABB, Envelope, ParentNode, RStarInsertionStrategy, RTree, RTreeNode, RTreeObject, RTreeParams,
};
use uuid::Uuid;

/// The pairs of leaves under `a` and `b` whose boxes meet. `same`: `a` and
/// `b` are one node, so each pair of its children is visited once.
fn join_children<'a>(
    a: &'a ParentNode<Entry>,
    b: &'a ParentNode<Entry>,
    same: bool,
    keep: &mut impl FnMut(&'a Entry, &'a Entry),
) {
    let (ca, cb) = (a.children(), b.children());
    for (i, x) in ca.iter().enumerate() {
        let start = if same { i } else { 0 };
        for (j, y) in cb.iter().enumerate().skip(start) {
            join(x, y, same && i == j, keep);
        }
    }
}

fn join<'a>(
    a: &'a RTreeNode<Entry>,
    b: &'a RTreeNode<Entry>,
    same: bool,
    keep: &mut impl FnMut(&'a Entry, &'a Entry),
) {
    if !a.envelope().intersects(&b.envelope()) {
        return;
    }
    match (a, b) {
        (RTreeNode::Leaf(x), RTreeNode::Leaf(y)) => keep(x, y),
        (RTreeNode::Parent(p), RTreeNode::Parent(q)) => join_children(p, q, same, keep),
        // Leaves of two different trees can sit at different depths.
        (RTreeNode::Parent(p), leaf) => {
            for x in p.children() {
                join(x, leaf, false, keep);
            }
        }
        (leaf, RTreeNode::Parent(q)) => {
            for y in q.children() {
                join(leaf, y, false, keep);
            }
        }
    }
}

/// A walk of two subtrees: whether they are one node.
type Walk<'a> = (&'a RTreeNode<Entry>, &'a RTreeNode<Entry>, bool);

/// Entries from which a join of two indexes is shared out to every core.
const PARALLEL_FROM: usize = 50_000;
/// Walks per core a join is split into, at least (when the trees are deep
/// enough): few enough to list, many enough that no core is left with the
/// one long walk.
const WALKS_PER_THREAD: usize = 64;
/// Levels a join is split down at most.
const SPLIT_LEVELS: usize = 4;

/// The walks of the children of `a` and `b` as [`join_children`] takes them.
fn child_pairs<'a>(
    a: &'a ParentNode<Entry>,
    b: &'a ParentNode<Entry>,
    same: bool,
    out: &mut Vec<Walk<'a>>,
) {
    let (ca, cb) = (a.children(), b.children());
    for (i, x) in ca.iter().enumerate() {
        let start = if same { i } else { 0 };
        for (j, y) in cb.iter().enumerate().skip(start) {
            out.push((x, y, same && i == j));
        }
    }
}

/// The walks one level down: those whose boxes do not meet dropped, two
/// parents replaced by their children's walks (as [`join`] would go).
fn split(walks: Vec<Walk<'_>>) -> Vec<Walk<'_>> {
    let mut out = Vec::with_capacity(walks.len() * 4);
    for (a, b, same) in walks {
        if !a.envelope().intersects(&b.envelope()) {
            continue;
        }
        match (a, b) {
            (RTreeNode::Parent(p), RTreeNode::Parent(q)) => child_pairs(p, q, same, &mut out),
            _ => out.push((a, b, same)),
        }
    }
    out
}

/// The leaves under `node` whose boxes meet `env`. Each child's box is
/// tested before it is entered, without a stack: rstar's own iterator
/// pushes every child of a node that meets the box and tests each as it
/// pops it (its stack outgrew its 24 inline places and went to the heap),
/// and a create's four walks spent 26% of its decision there.
fn meeting<'a>(
    node: &'a ParentNode<Entry>,
    env: &AABB<[f32; 4]>,
    keep: &mut impl FnMut(&'a Entry),
) {
    for child in node.children() {
        match child {
            RTreeNode::Leaf(e) => {
                if e.env.intersects(env) {
                    keep(e);
                }
            }
            RTreeNode::Parent(p) => {
                if p.envelope().intersects(env) {
                    meeting(p, env, keep);
                }
            }
        }
    }
}

/// 52 bytes: the box in `f32` (rounded outwards, so it still holds the
/// volume) and the volume's place in its entity as `u32`. With `f64` and
/// `usize` an entry took 88 bytes, and walking the tree is mostly waiting
/// for its nodes' children to come from memory.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    id: Uuid,
    volume: u32,
    env: AABB<[f32; 4]>,
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f32; 4]>;
    fn envelope(&self) -> Self::Envelope {
        self.env
    }
}

/// Days are clamped so unbounded windows stay finite for the tree.
const T_LIMIT: f64 = 1.0e7;
/// Units of the time axis per day. The R*-tree splits along the axes with
/// the largest extents; with one unit per day a day would weigh as much as
/// 6,400 km and nodes would be sliced by time but spread in space, so an
/// area query visited most of the tree. At 0.04 (a day ≈ 250 km) a day of
/// intents over a theatre still sliced the tree by time, and an area query
/// over the day walked every slice: 82% of its time in the tree's iterator
/// at 300k intents. At 0.01 (a day ≈ 64 km) the tree splits by place
/// first: 83k → 219k area queries/s at 300k, creates and the congested area
/// (where time tells apart the intents of one km²) no slower.
const T_SCALE: f64 = 0.01;

/// The largest `f32` not above `x`.
fn down(x: f64) -> f32 {
    let y = x as f32;
    if f64::from(y) > x { y.next_down() } else { y }
}

/// The smallest `f32` not below `x`.
fn up(x: f64) -> f32 {
    let y = x as f32;
    if f64::from(y) < x { y.next_up() } else { y }
}

fn envelope(v: &PreparedVolume) -> AABB<[f32; 4]> {
    let (lo, hi) = v.cap.bounds();
    let t0 = v.time.0.as_days().clamp(-T_LIMIT, T_LIMIT) * T_SCALE;
    let t1 = v.time.1.as_days().clamp(-T_LIMIT, T_LIMIT) * T_SCALE;
    AABB::from_corners(
        [down(lo[0]), down(lo[1]), down(lo[2]), down(t0)],
        [up(hi[0]), up(hi[1]), up(hi[2]), up(t1)],
    )
}

/// Wider nodes than rstar's default (6): fewer levels and fewer
/// overlapping paths for a query to walk, in memory where a node's children
/// sit in one cache-friendly array.
#[derive(Debug)]
pub struct Params;

impl RTreeParams for Params {
    const MIN_SIZE: usize = 8;
    const MAX_SIZE: usize = 24;
    const REINSERTION_COUNT: usize = 0;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// Nodes of at most 2⁴ children for the tree built in one pass at load.
/// rstar's bulk load cuts each node's share into ⌈c^¼⌉ clusters per axis,
/// in 4D up to 3⁴ = 81 children where [`Params`] allows 24; an insertion
/// then weighed every pair of an over-full node's children (17 µs an insert
/// at 100k, against 1.8 µs into a tree built by inserts). With 16 a bulk
/// load never overfills a node (and queries it as fast as one of 24), but
/// a tree of 16 built by inserts answers queries 1.7× slower at 1M: hence
/// two trees.
#[derive(Debug)]
pub struct BulkParams;

impl RTreeParams for BulkParams {
    const MIN_SIZE: usize = 6;
    const MAX_SIZE: usize = 16;
    const REINSERTION_COUNT: usize = 0;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// Candidate entities whose volumes' boxes meet a query box: the volumes
/// there were at load, in a tree built in one pass, and those added since,
/// in a tree built by inserts (an entity's volumes all in one of them).
#[derive(Debug)]
pub struct SpaceTimeIndex {
    loaded: RTree<Entry, BulkParams>,
    added: RTree<Entry, Params>,
}

impl Default for SpaceTimeIndex {
    fn default() -> Self {
        SpaceTimeIndex {
            loaded: RTree::new_with_params(),
            added: RTree::new_with_params(),
        }
    }
}

impl SpaceTimeIndex {
    /// Builds an index in one pass (used when the store is loaded at start).
    pub fn bulk<'a>(items: impl Iterator<Item = (Uuid, &'a [PreparedVolume])>) -> Self {
        let entries = items
            .flat_map(|(id, vols)| {
                vols.iter().enumerate().map(move |(i, v)| Entry {
                    id,
                    volume: i as u32,
                    env: envelope(v),
                })
            })
            .collect();
        SpaceTimeIndex {
            loaded: RTree::bulk_load_with_params(entries),
            added: RTree::new_with_params(),
        }
    }

    pub fn insert(&mut self, id: Uuid, volumes: &[PreparedVolume]) {
        for (i, v) in volumes.iter().enumerate() {
            self.added.insert(Entry {
                id,
                volume: i as u32,
                env: envelope(v),
            });
        }
    }

    pub fn remove(&mut self, id: Uuid, volumes: &[PreparedVolume]) {
        for (i, v) in volumes.iter().enumerate() {
            let e = Entry {
                id,
                volume: i as u32,
                env: envelope(v),
            };
            if self.added.remove(&e).is_none() {
                self.loaded.remove(&e);
            }
        }
    }

    /// Ids whose boxes meet the box of any of `volumes` (a superset of the
    /// exact answer; callers test exactly).
    /// Sorted, without repeats (an entity found through several of its
    /// volumes, or by several of `volumes`, comes once).
    pub fn candidates(&self, volumes: &[PreparedVolume]) -> Vec<Uuid> {
        let mut out = Vec::new();
        for v in volumes {
            let env = envelope(v);
            let mut keep = |e: &Entry| out.push(e.id);
            meeting(self.loaded.root(), &env, &mut keep);
            meeting(self.added.root(), &env, &mut keep);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every pair of ids, one from this index and one from `other`, whose
    /// volumes' boxes meet: both trees walked together, which costs far
    /// less than querying one with every box of the other. With `other`
    /// this very index, each pair comes once (lower id first) and no id is
    /// paired with itself. Sorted, without repeats. A large walk is split
    /// into pairs of subtrees shared out to every core (at 1M intents the
    /// walk took ~0.8 s of one core of a cold start).
    pub fn pairs_with(&self, other: &SpaceTimeIndex) -> Vec<(Uuid, Uuid)> {
        let threads = if self.len() + other.len() < PARALLEL_FROM {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        self.pairs_on(other, threads)
    }

    /// [`Self::pairs_with`] on `threads` threads.
    fn pairs_on(&self, other: &SpaceTimeIndex, threads: usize) -> Vec<(Uuid, Uuid)> {
        let same = std::ptr::eq(self, other);
        let (mine, theirs) = (
            [self.loaded.root(), self.added.root()],
            [other.loaded.root(), other.added.root()],
        );
        let mut walks = Vec::new();
        for (i, a) in mine.iter().enumerate() {
            for (j, b) in theirs.iter().enumerate() {
                // Within one index: each tree with itself, and the two
                // trees together once.
                if same && j < i {
                    continue;
                }
                child_pairs(a, b, same && i == j, &mut walks);
            }
        }
        // Split until every core has many walks to take from.
        for _ in 0..SPLIT_LEVELS {
            if threads == 1 || walks.len() >= WALKS_PER_THREAD * threads {
                break;
            }
            walks = split(walks);
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let walk = || {
            let mut out = Vec::new();
            let mut keep = |a: &Entry, b: &Entry| {
                if !same {
                    out.push((a.id, b.id));
                } else if a.id != b.id {
                    out.push((a.id.min(b.id), a.id.max(b.id)));
                }
            };
            while let Some(&(a, b, one)) =
                walks.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            {
                join(a, b, one, &mut keep);
            }
            out
        };
        let mut out = if threads == 1 {
            walk()
        } else {
            std::thread::scope(|t| {
                let parts: Vec<_> = (0..threads).map(|_| t.spawn(walk)).collect();
                parts
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect::<Vec<_>>()
            })
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn len(&self) -> usize {
        self.loaded.size() + self.added.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Timestamp;
    use crate::geometry::{LatLng, Limits, Volume4D, prepare};

    fn volume(seed: u64) -> PreparedVolume {
        // Deterministic spread over ~1° × 1° and a day.
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut unit = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        };
        let start = 1_800_000_000_000_000 + (unit() * 86_400e6) as i64;
        prepare(
            Volume4D::square(
                LatLng {
                    lat: 45.0 + unit(),
                    lng: 10.0 + unit(),
                },
                0.02,
                (0.0, 500.0),
                (
                    Timestamp::from_unix_micros(start),
                    Timestamp::from_unix_micros(start + 3_600_000_000),
                ),
            ),
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn boxes_in_f32_are_rounded_outwards() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
            for v in [v, -v, v * 1e5, v * 1e-9] {
                assert!(f64::from(down(v)) <= v && v <= f64::from(up(v)), "{v}");
                assert!(
                    f64::from(up(v)) - f64::from(down(v))
                        <= v.abs() * 1.2e-7 + f64::from(f32::MIN_POSITIVE)
                );
            }
        }
        for v in [0.0, 1.0, -1.0, 0.5, 1e5] {
            assert_eq!(
                (f64::from(down(v)), f64::from(up(v))),
                (v, v),
                "exact in f32"
            );
        }
    }

    #[test]
    fn the_loaded_and_the_added_trees_answer_as_one() {
        let ids = |r: std::ops::Range<u128>| r.map(Uuid::from_u128).collect::<Vec<_>>();
        let vols: std::collections::BTreeMap<Uuid, Vec<PreparedVolume>> = ids(1..3001)
            .into_iter()
            .map(|id| (id, vec![volume(id.as_u128() as u64)]))
            .collect();
        // 2,000 at load,
        // 1,000 added, then 300 of each kind removed and 100 re-added
        // elsewhere (an update: out of the loaded tree into the added one).
        let mut index = SpaceTimeIndex::bulk(
            ids(1..2001)
                .into_iter()
                .map(|id| (id, vols[&id].as_slice())),
        );
        for id in ids(2001..3001) {
            index.insert(id, &vols[&id]);
        }
        let mut live = vols.clone();
        for id in ids(1..301).into_iter().chain(ids(2001..2301)) {
            index.remove(id, &live[&id]);
            live.remove(&id);
        }
        for id in ids(301..401) {
            index.remove(id, &live[&id]);
            let moved = vec![volume(id.as_u128() as u64 + 1_000_000)];
            index.insert(id, &moved);
            live.insert(id, moved);
        }
        assert_eq!(index.len(), live.len());
        let meets = |a: &[PreparedVolume], b: &[PreparedVolume]| {
            a.iter()
                .any(|x| b.iter().any(|y| envelope(x).intersects(&envelope(y))))
        };
        for q in 0..200u64 {
            let area = vec![volume(5_000_000 + q)];
            let expected: Vec<Uuid> = live
                .iter()
                .filter(|(_, v)| meets(v, &area))
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(index.candidates(&area), expected, "query {q}");
        }
        let mut expected = Vec::new();
        let all: Vec<_> = live.iter().collect();
        for (i, (a, va)) in all.iter().enumerate() {
            for (b, vb) in &all[i + 1..] {
                if meets(va, vb) {
                    expected.push((**a, **b));
                }
            }
        }
        assert!(!expected.is_empty());
        assert_eq!(index.pairs_with(&index), expected);
        // Split down to subtrees and leaves, shared out to threads: the same.
        for threads in [2, 3, 8] {
            assert_eq!(index.pairs_on(&index, threads), expected, "{threads}");
        }
        // Against another index: every meeting pair, once.
        let other = SpaceTimeIndex::bulk(
            ids(10_001..10_201)
                .into_iter()
                .map(|id| (id, vols[&Uuid::from_u128(id.as_u128() - 10_000)].as_slice())),
        );
        let cross = index.pairs_with(&other);
        let mut expected = Vec::new();
        for (a, va) in &all {
            for n in 1..201u128 {
                if meets(va, &vols[&Uuid::from_u128(n)]) {
                    expected.push((**a, Uuid::from_u128(n + 10_000)));
                }
            }
        }
        expected.sort_unstable();
        assert_eq!(cross, expected);
        for threads in [2, 8] {
            assert_eq!(index.pairs_on(&other, threads), expected, "{threads}");
        }
    }
}
