//! The spatio-temporal index: an R-tree over the 4D boxes `[x, y, z, t]` of
//! every volume, where `x, y, z` bound the volume's spherical cap in
//! unit-vector space (no antimeridian or pole special cases) and `t` is the
//! time window in days. Altitude is checked exactly afterwards.

use crate::geometry::PreparedVolume;
use rstar::{
    AABB, Envelope, ParentNode, RStarInsertionStrategy, RTree, RTreeNode, RTreeObject, RTreeParams,
};
use std::collections::HashSet;
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

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    id: Uuid,
    volume: usize,
    env: AABB<[f64; 4]>,
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f64; 4]>;
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

fn envelope(v: &PreparedVolume) -> AABB<[f64; 4]> {
    let (lo, hi) = v.cap.bounds();
    let t0 = v.time.0.as_days().clamp(-T_LIMIT, T_LIMIT) * T_SCALE;
    let t1 = v.time.1.as_days().clamp(-T_LIMIT, T_LIMIT) * T_SCALE;
    AABB::from_corners([lo[0], lo[1], lo[2], t0], [hi[0], hi[1], hi[2], t1])
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

/// Candidate entities whose volumes' boxes meet a query box.
#[derive(Debug)]
pub struct SpaceTimeIndex {
    tree: RTree<Entry, Params>,
}

impl Default for SpaceTimeIndex {
    fn default() -> Self {
        SpaceTimeIndex {
            tree: RTree::new_with_params(),
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
                    volume: i,
                    env: envelope(v),
                })
            })
            .collect();
        SpaceTimeIndex {
            tree: RTree::bulk_load_with_params(entries),
        }
    }

    pub fn insert(&mut self, id: Uuid, volumes: &[PreparedVolume]) {
        for (i, v) in volumes.iter().enumerate() {
            self.tree.insert(Entry {
                id,
                volume: i,
                env: envelope(v),
            });
        }
    }

    pub fn remove(&mut self, id: Uuid, volumes: &[PreparedVolume]) {
        for (i, v) in volumes.iter().enumerate() {
            self.tree.remove(&Entry {
                id,
                volume: i,
                env: envelope(v),
            });
        }
    }

    /// Ids whose boxes meet the box of any of `volumes` (a superset of the
    /// exact answer; callers test exactly).
    pub fn candidates(&self, volumes: &[PreparedVolume]) -> Vec<Uuid> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for v in volumes {
            for e in self.tree.locate_in_envelope_intersecting(&envelope(v)) {
                if seen.insert(e.id) {
                    out.push(e.id);
                }
            }
        }
        out.sort();
        out
    }

    /// Every pair of ids, one from this index and one from `other`, whose
    /// volumes' boxes meet: both trees walked together, which costs far
    /// less than querying one with every box of the other. With `other`
    /// this very index, each pair comes once (lower id first) and no id is
    /// paired with itself. Sorted, without repeats.
    pub fn pairs_with(&self, other: &SpaceTimeIndex) -> Vec<(Uuid, Uuid)> {
        let same = std::ptr::eq(self, other);
        let mut out = Vec::new();
        let mut keep = |a: &Entry, b: &Entry| {
            if !same {
                out.push((a.id, b.id));
            } else if a.id != b.id {
                out.push((a.id.min(b.id), a.id.max(b.id)));
            }
        };
        join_children(self.tree.root(), other.tree.root(), same, &mut keep);
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn len(&self) -> usize {
        self.tree.size()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.size() == 0
    }
}
