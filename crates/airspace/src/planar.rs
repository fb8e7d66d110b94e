//! The planar kernel used after a gnomonic projection (where great circles are
//! straight lines, so these predicates are exact for F3548's shortest-path
//! polygon edges on the sphere). Closed sets: touching counts as intersecting.

use rstar::primitives::{GeomWithData, Line};
use rstar::{AABB, Envelope, RTree};

pub type P = [f64; 2];

/// Above this many segment pairs, candidate pairs come from an R-tree.
const BRUTE_FORCE_PAIRS: usize = 4096;

pub fn orient(a: P, b: P, c: P) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

fn within_box(a: P, b: P, p: P) -> bool {
    p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

/// Do closed segments `ab` and `cd` share a point?
pub fn segments_intersect(a: P, b: P, c: P, d: P) -> bool {
    let o1 = orient(a, b, c);
    let o2 = orient(a, b, d);
    let o3 = orient(c, d, a);
    let o4 = orient(c, d, b);
    if ((o1 > 0.0 && o2 < 0.0) || (o1 < 0.0 && o2 > 0.0))
        && ((o3 > 0.0 && o4 < 0.0) || (o3 < 0.0 && o4 > 0.0))
    {
        return true;
    }
    (o1 == 0.0 && within_box(a, b, c))
        || (o2 == 0.0 && within_box(a, b, d))
        || (o3 == 0.0 && within_box(c, d, a))
        || (o4 == 0.0 && within_box(c, d, b))
}

/// Do `ab` and `cd` cross at a point interior to both (a proper crossing)?
pub fn segments_cross_properly(a: P, b: P, c: P, d: P) -> bool {
    let o1 = orient(a, b, c);
    let o2 = orient(a, b, d);
    let o3 = orient(c, d, a);
    let o4 = orient(c, d, b);
    ((o1 > 0.0 && o2 < 0.0) || (o1 < 0.0 && o2 > 0.0))
        && ((o3 > 0.0 && o4 < 0.0) || (o3 < 0.0 && o4 > 0.0))
}

fn on_segment(a: P, b: P, p: P) -> bool {
    orient(a, b, p) == 0.0 && within_box(a, b, p)
}

/// Is `p` inside the closed polygon `ring` (boundary included)?
pub fn point_in_ring(p: P, ring: &[P]) -> bool {
    let n = ring.len();
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (ring[j], ring[i]);
        if on_segment(a, b, p) {
            return true;
        }
        // Half-open rule on y: a vertex on the ray is counted once.
        if (b[1] > p[1]) != (a[1] > p[1]) {
            let x = b[0] + (p[1] - b[1]) * (a[0] - b[0]) / (a[1] - b[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

fn segment(ring: &[P], i: usize) -> (P, P) {
    (ring[i], ring[(i + 1) % ring.len()])
}

fn segment_tree(ring: &[P]) -> RTree<GeomWithData<Line<P>, usize>> {
    RTree::bulk_load(
        (0..ring.len())
            .map(|i| {
                let (a, b) = segment(ring, i);
                GeomWithData::new(Line::new(a, b), i)
            })
            .collect(),
    )
}

fn envelope(a: P, b: P) -> AABB<P> {
    AABB::from_corners(a, b)
}

/// Calls `f(i, j)` for every segment pair of `a` × `b` whose bounding boxes
/// meet, stopping at the first `true`.
fn any_segment_pair(a: &[P], b: &[P], mut f: impl FnMut(usize, usize) -> bool) -> bool {
    if a.len() * b.len() <= BRUTE_FORCE_PAIRS {
        for i in 0..a.len() {
            let (p, q) = segment(a, i);
            let ea = envelope(p, q);
            for j in 0..b.len() {
                let (r, s) = segment(b, j);
                if ea.intersects(&envelope(r, s)) && f(i, j) {
                    return true;
                }
            }
        }
        return false;
    }
    let tree = segment_tree(b);
    for i in 0..a.len() {
        let (p, q) = segment(a, i);
        for hit in tree.locate_in_envelope_intersecting(&envelope(p, q)) {
            if f(i, hit.data) {
                return true;
            }
        }
    }
    false
}

/// Do the closed polygons `a` and `b` share a point?
pub fn rings_intersect(a: &[P], b: &[P]) -> bool {
    if any_segment_pair(a, b, |i, j| {
        let (p, q) = segment(a, i);
        let (r, s) = segment(b, j);
        segments_intersect(p, q, r, s)
    }) {
        return true;
    }
    point_in_ring(a[0], b) || point_in_ring(b[0], a)
}

/// Is the closed polygon `inner` inside the closed polygon `outer`?
pub fn ring_contains_ring(outer: &[P], inner: &[P]) -> bool {
    inner.iter().all(|p| point_in_ring(*p, outer))
        && !any_segment_pair(outer, inner, |i, j| {
            let (p, q) = segment(outer, i);
            let (r, s) = segment(inner, j);
            segments_cross_properly(p, q, r, s)
        })
}

/// The first pair of edges (by starting vertex) of `ring` that meet anywhere
/// but at the vertex they share, if any.
pub fn first_self_intersection(ring: &[P]) -> Option<(usize, usize)> {
    let n = ring.len();
    let check = |i: usize, j: usize| -> bool {
        if i == j {
            return false;
        }
        let (a, b) = segment(ring, i);
        let (c, d) = segment(ring, j);
        let adjacent_after = (i + 1) % n == j;
        let adjacent_before = (j + 1) % n == i;
        if adjacent_after || adjacent_before {
            // Neighbours share one vertex; they are bad only when they fold
            // back onto each other (collinear and overlapping beyond it).
            let (first, second) = if adjacent_after {
                ((a, b), (c, d))
            } else {
                ((c, d), (a, b))
            };
            let (u, v) = first;
            let w = second.1;
            let dot = (v[0] - u[0]) * (w[0] - v[0]) + (v[1] - u[1]) * (w[1] - v[1]);
            return orient(u, v, w) == 0.0 && dot < 0.0;
        }
        segments_intersect(a, b, c, d)
    };
    let mut found: Option<(usize, usize)> = None;
    let mut note = |i: usize, j: usize| {
        let pair = (i.min(j), i.max(j));
        if found.is_none_or(|f| pair < f) {
            found = Some(pair);
        }
    };
    if n * n <= BRUTE_FORCE_PAIRS {
        for i in 0..n {
            for j in (i + 1)..n {
                if check(i, j) {
                    note(i, j);
                }
            }
        }
    } else {
        let tree = segment_tree(ring);
        for i in 0..n {
            let (p, q) = segment(ring, i);
            for hit in tree.locate_in_envelope_intersecting(&envelope(p, q)) {
                if hit.data > i && check(i, hit.data) {
                    note(i, hit.data);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [P; 4] = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];

    #[test]
    fn point_in_square_interior_boundary_and_outside() {
        assert!(point_in_ring([0.5, 0.5], &SQUARE));
        assert!(
            point_in_ring([1.0, 0.5], &SQUARE),
            "boundary counts as inside"
        );
        assert!(
            point_in_ring([0.0, 0.0], &SQUARE),
            "vertex counts as inside"
        );
        assert!(!point_in_ring([1.5, 0.5], &SQUARE));
        assert!(
            !point_in_ring([-0.5, 0.0], &SQUARE),
            "ray through a vertex is counted once"
        );
    }

    #[test]
    fn rings_intersect_by_crossing_containment_and_not_at_all() {
        let shifted: Vec<P> = SQUARE.iter().map(|p| [p[0] + 0.5, p[1] + 0.5]).collect();
        assert!(rings_intersect(&SQUARE, &shifted));
        let inner: Vec<P> = SQUARE
            .iter()
            .map(|p| [0.25 + p[0] * 0.5, 0.25 + p[1] * 0.5])
            .collect();
        assert!(rings_intersect(&SQUARE, &inner));
        assert!(rings_intersect(&inner, &SQUARE));
        let far: Vec<P> = SQUARE.iter().map(|p| [p[0] + 3.0, p[1]]).collect();
        assert!(!rings_intersect(&SQUARE, &far));
        assert!(ring_contains_ring(&SQUARE, &inner));
        assert!(!ring_contains_ring(&inner, &SQUARE));
        assert!(!ring_contains_ring(&SQUARE, &shifted));
    }

    #[test]
    fn bowtie_is_self_intersecting_and_square_is_not() {
        let bowtie = [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]];
        assert_eq!(first_self_intersection(&bowtie), Some((0, 2)));
        assert_eq!(first_self_intersection(&SQUARE), None);
        let backtrack = [[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 1.0]];
        assert!(first_self_intersection(&backtrack).is_some());
    }

    #[test]
    fn large_rings_use_the_segment_tree_and_agree_with_brute_force() {
        let n = 200;
        let circle = |r: f64, dx: f64| -> Vec<P> {
            (0..n)
                .map(|i| {
                    let t = i as f64 / n as f64 * std::f64::consts::TAU;
                    [dx + r * t.cos(), r * t.sin()]
                })
                .collect()
        };
        assert!(rings_intersect(&circle(1.0, 0.0), &circle(1.0, 1.5)));
        assert!(!rings_intersect(&circle(1.0, 0.0), &circle(1.0, 2.1)));
        assert_eq!(first_self_intersection(&circle(1.0, 0.0)), None);
    }
}
