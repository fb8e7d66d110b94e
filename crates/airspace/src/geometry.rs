//! 4D volumes on WGS-84: validation, preparation and exact intersection.
//!
//! ## Model and error bound
//! F3548 polygon edges are the shortest paths between vertices (geodesics on
//! the WGS-84 ellipsoid) and circle radii are measured along the ellipsoid.
//!
//! * Each vertex `(lat, lng)` (geodetic) is mapped to the unit vector with the
//!   same spherical coordinates. Edges longer than [`MAX_EDGE_M`] are first
//!   densified with points computed *on the ellipsoidal geodesic*
//!   (GeographicLib), so every remaining edge is at most 10 km long. Between
//!   its end points the image of a ≤ 10 km geodesic stays within a few
//!   millimetres of the great-circle arc (measured in
//!   `tests::densified_edges_follow_the_geodesic_within_a_centimetre`).
//! * Great-circle arcs become straight lines in a gnomonic projection centred
//!   on the shapes, so polygon–polygon tests are exact planar predicates there.
//! * Circles stay circles: circle–circle compares the ellipsoidal geodesic
//!   distance of the centres with the sum of radii (exact), circle–polygon
//!   finds the closest point of each edge and measures its ellipsoidal
//!   distance to the centre with GeographicLib (error ≪ 1 cm).
//!
//! The stated bound is therefore ≤ 1 m (in practice a few millimetres) for
//! every pair of shapes. Touching shapes intersect (closed sets); time windows
//! and altitude bands are half-open, so back-to-back slots and stacked layers
//! do not conflict. Because the whole computation is on unit vectors, the
//! antimeridian and the poles need no special case.

use crate::error::GeometryError;
use crate::planar::{self, P};
use crate::timestamp::Timestamp;
use geographiclib_rs::{DirectGeodesic, Geodesic, InverseGeodesic};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

pub const WGS84_A: f64 = 6_378_137.0;
pub const WGS84_F: f64 = 1.0 / 298.257_223_563;
const WGS84_E2: f64 = WGS84_F * (2.0 - WGS84_F);
/// Smallest radius of curvature of the ellipsoid (meridional, at the equator):
/// an arc of angle θ on the unit sphere is at least `θ·M_MIN` metres long.
const M_MIN: f64 = WGS84_A * (1.0 - WGS84_E2);
/// Largest radius of curvature (at the poles): at most `θ·N_MAX` metres.
const N_MAX: f64 = WGS84_A / (1.0 - WGS84_F); // a / sqrt(1 - e²) = a²/b
/// Authalic radius, for areas.
const R_AUTHALIC: f64 = 6_371_007.2;
/// Longest edge kept as one great-circle arc; longer geodesics are densified.
pub const MAX_EDGE_M: f64 = 10_000.0;
/// Most points a polygon's outline may have once densified (its vertices
/// and the points added on its long edges), checked on a cheap upper bound
/// before any point is computed. It bounds a volume's cost: the worst shape
/// found at the limit (a 10,000-spike star) takes about 0.55 s of one core
/// and 6 MB (`examples/geometry_cost.rs`). 20,000 points is 10,000
/// vertices and 100,000 km of edges longer than 10 km besides.
pub const MAX_OUTLINE_POINTS: usize = 20_000;
/// A shape must fit in a spherical cap of this angular radius (about 2,200
/// km): it keeps every gnomonic projection well inside its hemisphere.
const MAX_CAP_RAD: f64 = 20.0 * std::f64::consts::PI / 180.0;
/// Altitude sanity bounds of the F3548 `Altitude` schema, in metres (W84).
pub const ALTITUDE_MIN_M: f64 = -8_000.0;
pub const ALTITUDE_MAX_M: f64 = 100_000.0;

fn geod() -> &'static Geodesic {
    static G: OnceLock<Geodesic> = OnceLock::new();
    G.get_or_init(Geodesic::wgs84)
}

/// A point on the WGS-84 ellipsoid, degrees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

/// Exactly one outline of an F3548 `Volume3D`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outline {
    Polygon { vertices: Vec<LatLng> },
    Circle { center: LatLng, radius_m: f64 },
}

/// An F3548 `Volume4D`; altitudes in metres above the WGS-84 ellipsoid.
/// Bounds may be absent in an area of interest (unbounded), never in an entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volume4D {
    pub outline: Outline,
    pub altitude_lower_m: Option<f64>,
    pub altitude_upper_m: Option<f64>,
    pub time_start: Option<Timestamp>,
    pub time_end: Option<Timestamp>,
}

impl Volume4D {
    /// A square of half-side `half_deg` degrees (geodesic edges) around
    /// `center`, with an altitude band in metres and a time window.
    pub fn square(
        center: LatLng,
        half_deg: f64,
        altitude_m: (f64, f64),
        time: (Timestamp, Timestamp),
    ) -> Volume4D {
        let (lat, lng, h) = (center.lat, center.lng, half_deg);
        Volume4D {
            outline: Outline::Polygon {
                vertices: vec![
                    LatLng {
                        lat: lat - h,
                        lng: lng - h,
                    },
                    LatLng {
                        lat: lat - h,
                        lng: lng + h,
                    },
                    LatLng {
                        lat: lat + h,
                        lng: lng + h,
                    },
                    LatLng {
                        lat: lat + h,
                        lng: lng - h,
                    },
                ],
            },
            altitude_lower_m: Some(altitude_m.0),
            altitude_upper_m: Some(altitude_m.1),
            time_start: Some(time.0),
            time_end: Some(time.1),
        }
    }
}

/// Limits on what a node accepts (F3548 lets the DSS answer 413 for areas it
/// considers too large).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_vertices: usize,
    pub max_area_m2: f64,
    /// Skip the checks that only new input needs (duplicate vertices,
    /// crossing edges, area): for records this node validated when it
    /// stored them, re-prepared at load.
    pub trusted: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_vertices: 10_000,
            max_area_m2: 100_000.0 * 1e6,
            trusted: false,
        }
    }
}

pub(crate) type V3 = [f64; 3];

pub(crate) fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}
fn normalize(a: V3) -> V3 {
    let n = norm(a);
    [a[0] / n, a[1] / n, a[2] / n]
}
/// Angle between unit vectors, robust for small angles.
fn angle(a: V3, b: V3) -> f64 {
    norm(cross(a, b)).atan2(dot(a, b))
}

pub(crate) fn unit_vector(p: LatLng) -> V3 {
    let (lat, lng) = (p.lat.to_radians(), p.lng.to_radians());
    [lat.cos() * lng.cos(), lat.cos() * lng.sin(), lat.sin()]
}
fn lat_lng(v: V3) -> LatLng {
    LatLng {
        lat: v[2].atan2((v[0] * v[0] + v[1] * v[1]).sqrt()).to_degrees(),
        lng: v[1].atan2(v[0]).to_degrees(),
    }
}

/// Ellipsoidal geodesic distance in metres.
pub fn geodesic_distance_m(a: LatLng, b: LatLng) -> f64 {
    geod().inverse(a.lat, a.lng, b.lat, b.lng)
}

/// A gnomonic projection centred on `c`: great circles map to straight lines.
#[derive(Clone, Debug)]
struct Frame {
    c: V3,
    e1: V3,
    e2: V3,
}

impl Frame {
    fn new(c: V3) -> Frame {
        let axis = if c[2].abs() < 0.9 {
            [0.0, 0.0, 1.0]
        } else {
            [1.0, 0.0, 0.0]
        };
        let e1 = normalize(cross(axis, c));
        let e2 = cross(c, e1);
        Frame { c, e1, e2 }
    }
    /// Projects a point of the hemisphere around `c` (callers guarantee it
    /// through the cap bounds).
    fn project(&self, v: V3) -> P {
        let d = dot(v, self.c).max(1e-12);
        [dot(v, self.e1) / d, dot(v, self.e2) / d]
    }
}

/// A spherical cap containing a shape: every point has angle ≤ `radius` from `center`.
#[derive(Clone, Copy, Debug)]
pub struct Cap {
    pub center: V3,
    pub radius: f64,
}

impl Cap {
    /// Axis-aligned box of the cap in unit-vector space.
    pub fn bounds(&self) -> (V3, V3) {
        let mut lo = [0.0; 3];
        let mut hi = [0.0; 3];
        for i in 0..3 {
            let theta = self.center[i].clamp(-1.0, 1.0).acos();
            hi[i] = (theta - self.radius).max(0.0).cos();
            lo[i] = -((std::f64::consts::PI - theta) - self.radius)
                .max(0.0)
                .cos();
        }
        (lo, hi)
    }
}

#[derive(Clone, Debug)]
enum Shape {
    Polygon {
        ring: Vec<V3>,
        frame: Frame,
        ring2d: Vec<P>,
    },
    Circle {
        center: LatLng,
        c: V3,
        radius_m: f64,
    },
}

/// A validated volume with its precomputed geometry. Construct with [`prepare`].
#[derive(Clone, Debug)]
pub struct PreparedVolume {
    pub volume: Volume4D,
    shape: Shape,
    pub cap: Cap,
    /// Altitude band `[lower, upper)`, unbounded sides as ±∞.
    pub altitude: (f64, f64),
    /// Time window `[start, end)`, unbounded sides as MIN/MAX.
    pub time: (Timestamp, Timestamp),
}

impl PartialEq for PreparedVolume {
    fn eq(&self, other: &Self) -> bool {
        self.volume == other.volume
    }
}

/// `field` names the point only if it is wrong: formatting a name for
/// every vertex of every polygon was most of the work of preparing one.
fn check_point(p: LatLng, field: impl Fn() -> String) -> Result<(), GeometryError> {
    if !p.lat.is_finite() || !(-90.0..=90.0).contains(&p.lat) {
        let field = field();
        return Err(GeometryError::new(
            format!("{field}.lat"),
            format!("latitude must be a number in [-90, 90], got {}", p.lat),
        ));
    }
    if !p.lng.is_finite() || !(-180.0..=180.0).contains(&p.lng) {
        let field = field();
        return Err(GeometryError::new(
            format!("{field}.lng"),
            format!("longitude must be a number in [-180, 180], got {}", p.lng),
        ));
    }
    Ok(())
}

fn same_point(a: LatLng, b: LatLng) -> bool {
    let same_lng = a.lng == b.lng || (a.lng.abs() == 180.0 && b.lng.abs() == 180.0);
    a.lat == b.lat && (same_lng || a.lat.abs() == 90.0)
}

/// An upper bound on the points of a polygon's densified outline
/// ([`densify`]), from the vertices' unit vectors alone: an arc of angle θ
/// is at most θ·N_MAX metres long, so it is split into at most
/// ⌈θ·N_MAX / MAX_EDGE_M⌉ pieces.
fn outline_points_bound(units: &[V3]) -> usize {
    let n = units.len();
    (0..n)
        .map(|i| {
            let len = angle(units[i], units[(i + 1) % n]) * N_MAX;
            if len <= MAX_EDGE_M {
                1
            } else {
                (len / MAX_EDGE_M).ceil() as usize
            }
        })
        .fold(0usize, usize::saturating_add)
}

/// What preparing `v` costs, in outline points (an upper bound): a polygon's
/// densified outline, a circle's one. Callers run costly ones away from
/// latency-sensitive threads.
pub fn cost(v: &Volume4D) -> usize {
    match &v.outline {
        Outline::Circle { .. } => 1,
        Outline::Polygon { vertices } => {
            if vertices.len() > MAX_OUTLINE_POINTS {
                // Refused on its count, at the cost of a comparison.
                return 1;
            }
            let units: Vec<V3> = vertices.iter().map(|v| unit_vector(*v)).collect();
            outline_points_bound(&units)
        }
    }
}

/// Splits every edge longer than [`MAX_EDGE_M`] along its ellipsoidal
/// geodesic. Returns the ring and, for each ring point, the original vertex
/// whose edge it lies on.
fn densify(vertices: &[LatLng]) -> (Vec<V3>, Vec<usize>) {
    let mut ring = Vec::with_capacity(vertices.len());
    let mut origin = Vec::with_capacity(vertices.len());
    let units: Vec<V3> = vertices.iter().map(|v| unit_vector(*v)).collect();
    for (i, a) in vertices.iter().enumerate() {
        let next = (i + 1) % vertices.len();
        let (b, va) = (vertices[next], units[i]);
        ring.push(va);
        origin.push(i);
        // Cheap bound first: an arc of angle θ is at most θ·N_MAX metres long.
        if angle(va, units[next]) * N_MAX <= MAX_EDGE_M {
            continue;
        }
        let (s12, azi1, _azi2, _a12): (f64, f64, f64, f64) =
            geod().inverse(a.lat, a.lng, b.lat, b.lng);
        if s12 > MAX_EDGE_M {
            let k = (s12 / MAX_EDGE_M).ceil() as usize;
            for j in 1..k {
                let (lat, lng): (f64, f64) =
                    geod().direct(a.lat, a.lng, azi1, s12 * j as f64 / k as f64);
                ring.push(unit_vector(LatLng { lat, lng }));
                origin.push(i);
            }
        }
    }
    (ring, origin)
}

/// Area of a spherical polygon (unit sphere) from the triangle fan around `c`.
fn spherical_area(ring: &[V3], c: V3) -> f64 {
    let mut total = 0.0;
    for i in 0..ring.len() {
        let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
        let num = dot(c, cross(a, b));
        let den = 1.0 + dot(c, a) + dot(a, b) + dot(b, c);
        total += 2.0 * num.atan2(den);
    }
    total.abs()
}

fn prepare_polygon(vertices: &[LatLng], limits: &Limits) -> Result<(Shape, Cap), GeometryError> {
    const F: &str = "volume.outline_polygon.vertices";
    if vertices.len() < 3 {
        return Err(GeometryError::new(
            F,
            format!(
                "a polygon needs at least 3 vertices, got {}",
                vertices.len()
            ),
        ));
    }
    if vertices.len() > limits.max_vertices {
        return Err(GeometryError::new(
            F,
            format!(
                "a polygon may have at most {} vertices, got {}",
                limits.max_vertices,
                vertices.len()
            ),
        ));
    }
    for (i, p) in vertices.iter().enumerate() {
        check_point(*p, || format!("{F}[{i}]"))?;
    }
    if same_point(vertices[0], vertices[vertices.len() - 1]) {
        return Err(GeometryError::new(
            format!("{F}[{}]", vertices.len() - 1),
            "the last vertex repeats the first; F3548 polygons are closed implicitly and vertices may not be duplicated",
        ));
    }
    let mut order: Vec<usize> = if limits.trusted {
        Vec::new()
    } else {
        (0..vertices.len()).collect()
    };
    order.sort_by(|&i, &j| {
        (vertices[i].lat, vertices[i].lng)
            .partial_cmp(&(vertices[j].lat, vertices[j].lng))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for w in order.windows(2) {
        if same_point(vertices[w[0]], vertices[w[1]]) {
            let (i, j) = (w[0].min(w[1]), w[0].max(w[1]));
            return Err(GeometryError::new(
                format!("{F}[{j}]"),
                format!("vertex {j} duplicates vertex {i}"),
            ));
        }
    }
    // Cheap bounds before the costly work: no two points of a polygon that
    // fits the cap can be further apart than its diameter (so each is within
    // it of vertex 0), and the densified outline is bounded.
    // (Skipped for records stored earlier, which were accepted then.)
    let units: Vec<V3> = if limits.trusted {
        Vec::new()
    } else {
        vertices.iter().map(|v| unit_vector(*v)).collect()
    };
    if let Some(far) = units
        .iter()
        .position(|u| angle(units[0], *u) > 2.0 * MAX_CAP_RAD)
    {
        return Err(GeometryError::too_large(
            format!("{F}[{far}]"),
            format!(
                "vertex {far} is {:.0} km from vertex 0; a polygon may reach at most {:.0} km from its centre",
                angle(units[0], units[far]) * WGS84_A / 1e3,
                MAX_CAP_RAD * WGS84_A / 1e3
            ),
        ));
    }
    let bound = outline_points_bound(&units);
    if !limits.trusted && bound > MAX_OUTLINE_POINTS {
        return Err(GeometryError::too_large(
            F,
            format!(
                "the outline would have up to {bound} points once its edges are split every {:.0} km; at most {MAX_OUTLINE_POINTS} are accepted (use fewer vertices or shorter edges)",
                MAX_EDGE_M / 1e3
            ),
        ));
    }
    let (mut ring, origin) = densify(vertices);
    ring.shrink_to_fit();
    let sum = ring
        .iter()
        .fold([0.0; 3], |s, v| [s[0] + v[0], s[1] + v[1], s[2] + v[2]]);
    if norm(sum) < 1e-9 {
        return Err(GeometryError::too_large(F, "the polygon spans the globe"));
    }
    let center = normalize(sum);
    let radius = ring.iter().map(|v| angle(center, *v)).fold(0.0, f64::max);
    if radius > MAX_CAP_RAD {
        return Err(GeometryError::too_large(
            F,
            format!(
                "the polygon reaches {:.0} km from its centre; at most {:.0} km is accepted",
                radius * WGS84_A / 1e3,
                MAX_CAP_RAD * WGS84_A / 1e3
            ),
        ));
    }
    let frame = Frame::new(center);
    let ring2d: Vec<P> = ring.iter().map(|v| frame.project(*v)).collect();
    if limits.trusted {
        return Ok((
            Shape::Polygon {
                ring,
                frame,
                ring2d,
            },
            Cap { center, radius },
        ));
    }
    if let Some((i, j)) = planar::first_self_intersection(&ring2d) {
        let (a, b) = (origin[i], origin[j]);
        let msg = if a == b {
            format!("the edge from vertex {a} folds back on itself")
        } else {
            format!("edges may not cross: the edge from vertex {a} meets the edge from vertex {b}")
        };
        return Err(GeometryError::new(F, msg));
    }
    let area = spherical_area(&ring, center) * R_AUTHALIC * R_AUTHALIC;
    if area < 1.0 {
        return Err(GeometryError::new(
            F,
            "the polygon has no area (its vertices are collinear)",
        ));
    }
    if area > limits.max_area_m2 {
        return Err(GeometryError::too_large(
            F,
            format!(
                "the polygon covers {:.0} km²; at most {:.0} km² is accepted",
                area / 1e6,
                limits.max_area_m2 / 1e6
            ),
        ));
    }
    Ok((
        Shape::Polygon {
            ring,
            frame,
            ring2d,
        },
        Cap { center, radius },
    ))
}

fn prepare_circle(
    center: LatLng,
    radius_m: f64,
    limits: &Limits,
) -> Result<(Shape, Cap), GeometryError> {
    check_point(center, || "volume.outline_circle.center".into())?;
    if !radius_m.is_finite() || radius_m <= 0.0 {
        return Err(GeometryError::new(
            "volume.outline_circle.radius.value",
            format!("the radius must be a positive number of metres, got {radius_m}"),
        ));
    }
    let area = std::f64::consts::PI * radius_m * radius_m;
    let radius = radius_m / M_MIN * (1.0 + 1e-9);
    if area > limits.max_area_m2 || radius > MAX_CAP_RAD {
        return Err(GeometryError::too_large(
            "volume.outline_circle.radius.value",
            format!(
                "the circle covers {:.0} km²; at most {:.0} km² is accepted",
                area / 1e6,
                limits.max_area_m2 / 1e6
            ),
        ));
    }
    let c = unit_vector(center);
    Ok((
        Shape::Circle {
            center,
            c,
            radius_m,
        },
        Cap { center: c, radius },
    ))
}

/// Validates a volume and precomputes its geometry. Errors name the field
/// relative to the `Volume4D` (`volume.altitude_lower`, `time_end`, ...).
pub fn prepare(mut volume: Volume4D, limits: &Limits) -> Result<PreparedVolume, GeometryError> {
    // Held as long as the record: no room to spare (a decoder sizes by doubling).
    if let Outline::Polygon { vertices } = &mut volume.outline {
        vertices.shrink_to_fit();
    }
    let (shape, cap) = match &volume.outline {
        Outline::Polygon { vertices } => prepare_polygon(vertices, limits)?,
        Outline::Circle { center, radius_m } => prepare_circle(*center, *radius_m, limits)?,
    };
    for (v, field) in [
        (volume.altitude_lower_m, "volume.altitude_lower.value"),
        (volume.altitude_upper_m, "volume.altitude_upper.value"),
    ] {
        if let Some(v) = v
            && (!v.is_finite() || !(ALTITUDE_MIN_M..=ALTITUDE_MAX_M).contains(&v))
        {
            return Err(GeometryError::new(
                field,
                format!(
                    "altitude must be a number in [{ALTITUDE_MIN_M}, {ALTITUDE_MAX_M}] m, got {v}"
                ),
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (volume.altitude_lower_m, volume.altitude_upper_m)
        && lo >= hi
    {
        return Err(GeometryError::new(
            "volume.altitude_lower.value",
            format!("altitude_lower ({lo} m) must be below altitude_upper ({hi} m)"),
        ));
    }
    if let (Some(s), Some(e)) = (volume.time_start, volume.time_end)
        && s >= e
    {
        return Err(GeometryError::new(
            "time_end",
            "time_end must be after time_start",
        ));
    }
    let altitude = (
        volume.altitude_lower_m.unwrap_or(f64::NEG_INFINITY),
        volume.altitude_upper_m.unwrap_or(f64::INFINITY),
    );
    let time = (
        volume.time_start.unwrap_or(Timestamp::MIN),
        volume.time_end.unwrap_or(Timestamp::MAX),
    );
    Ok(PreparedVolume {
        volume,
        shape,
        cap,
        altitude,
        time,
    })
}

/// Closest point to `p` on the minor great-circle arc `ab`.
fn closest_on_arc(p: V3, a: V3, b: V3) -> V3 {
    let n = cross(a, b);
    let nn = norm(n);
    if nn < 1e-15 {
        return a;
    }
    let n = [n[0] / nn, n[1] / nn, n[2] / nn];
    let d = dot(p, n);
    let proj = [p[0] - d * n[0], p[1] - d * n[1], p[2] - d * n[2]];
    if norm(proj) < 1e-15 {
        return a;
    }
    let q = normalize(proj);
    if dot(cross(a, q), n) >= 0.0 && dot(cross(q, b), n) >= 0.0 {
        q
    } else if angle(p, a) <= angle(p, b) {
        a
    } else {
        b
    }
}

/// Ellipsoidal distance from a circle centre to a ≤ 10 km edge, compared with
/// `r`: `Some(true)` when within, using cheap bounds before GeographicLib.
fn edge_within(center: LatLng, c: V3, a: V3, b: V3, r: f64) -> bool {
    let q = closest_on_arc(c, a, b);
    let theta = angle(c, q);
    if theta * M_MIN > r * (1.0 + 1e-9) + 1e-3 {
        return false;
    }
    if theta * N_MAX <= r {
        return true;
    }
    geodesic_distance_m(center, lat_lng(q)) <= r
}

impl PreparedVolume {
    /// Sets the time window (both the prepared bounds and the volume's).
    /// The points of its outline as held (a circle: one): what a stored
    /// volume costs, for the quota on what one client may store.
    pub fn points(&self) -> usize {
        match &self.shape {
            Shape::Polygon { ring, .. } => ring.len(),
            Shape::Circle { .. } => 1,
        }
    }

    pub fn set_time(&mut self, start: Timestamp, end: Timestamp) {
        self.time = (start, end);
        self.volume.time_start = Some(start);
        self.volume.time_end = Some(end);
    }

    fn contains_point(&self, v: V3) -> bool {
        match &self.shape {
            Shape::Polygon { frame, ring2d, .. } => {
                angle(self.cap.center, v) <= self.cap.radius * (1.0 + 1e-9)
                    && planar::point_in_ring(frame.project(v), ring2d)
            }
            Shape::Circle {
                center, radius_m, ..
            } => geodesic_distance_m(*center, lat_lng(v)) <= *radius_m,
        }
    }

    /// Do the outlines share a point (ignoring time and altitude)?
    pub fn outlines_intersect(&self, other: &PreparedVolume) -> bool {
        if angle(self.cap.center, other.cap.center) > self.cap.radius + other.cap.radius + 1e-12 {
            return false;
        }
        match (&self.shape, &other.shape) {
            (
                Shape::Circle {
                    center: a,
                    radius_m: ra,
                    ..
                },
                Shape::Circle {
                    center: b,
                    radius_m: rb,
                    ..
                },
            ) => geodesic_distance_m(*a, *b) <= ra + rb,
            (
                Shape::Circle {
                    center,
                    c,
                    radius_m,
                },
                Shape::Polygon { ring, .. },
            ) => circle_meets_polygon(*center, *c, *radius_m, other, ring),
            (
                Shape::Polygon { ring, .. },
                Shape::Circle {
                    center,
                    c,
                    radius_m,
                },
            ) => circle_meets_polygon(*center, *c, *radius_m, self, ring),
            (Shape::Polygon { ring: ra, .. }, Shape::Polygon { ring: rb, .. }) => {
                let sum = [
                    self.cap.center[0] + other.cap.center[0],
                    self.cap.center[1] + other.cap.center[1],
                    self.cap.center[2] + other.cap.center[2],
                ];
                let frame = Frame::new(normalize(sum));
                let a: Vec<P> = ra.iter().map(|v| frame.project(*v)).collect();
                let b: Vec<P> = rb.iter().map(|v| frame.project(*v)).collect();
                planar::rings_intersect(&a, &b)
            }
        }
    }

    /// Do the two 4D volumes share a point? (Time and altitude half-open.)
    pub fn intersects(&self, other: &PreparedVolume) -> bool {
        self.time.0 < other.time.1
            && other.time.0 < self.time.1
            && self.altitude.0 < other.altitude.1
            && other.altitude.0 < self.altitude.1
            && self.outlines_intersect(other)
    }

    /// Is `inner` entirely inside this volume, in all four dimensions?
    pub fn covers(&self, inner: &PreparedVolume) -> bool {
        if !(self.time.0 <= inner.time.0
            && inner.time.1 <= self.time.1
            && self.altitude.0 <= inner.altitude.0
            && inner.altitude.1 <= self.altitude.1)
        {
            return false;
        }
        match (&self.shape, &inner.shape) {
            (
                Shape::Circle {
                    center: a,
                    radius_m: ra,
                    ..
                },
                Shape::Circle {
                    center: b,
                    radius_m: rb,
                    ..
                },
            ) => geodesic_distance_m(*a, *b) + rb <= *ra,
            (
                Shape::Circle {
                    center, radius_m, ..
                },
                Shape::Polygon { ring, .. },
            ) => ring
                .iter()
                .all(|v| geodesic_distance_m(*center, lat_lng(*v)) <= *radius_m),
            (
                Shape::Polygon { ring, .. },
                Shape::Circle {
                    center,
                    c,
                    radius_m,
                },
            ) => {
                self.contains_point(*c)
                    && (0..ring.len()).all(|i| {
                        let q = closest_on_arc(*c, ring[i], ring[(i + 1) % ring.len()]);
                        geodesic_distance_m(*center, lat_lng(q)) >= *radius_m
                    })
            }
            (
                Shape::Polygon { frame, ring2d, .. },
                Shape::Polygon {
                    ring: inner_ring, ..
                },
            ) => {
                if inner_ring
                    .iter()
                    .any(|v| angle(self.cap.center, *v) > self.cap.radius * (1.0 + 1e-9))
                {
                    return false;
                }
                let inner2d: Vec<P> = inner_ring.iter().map(|v| frame.project(*v)).collect();
                planar::ring_contains_ring(ring2d, &inner2d)
            }
        }
    }
}

fn circle_meets_polygon(
    center: LatLng,
    c: V3,
    r: f64,
    polygon: &PreparedVolume,
    ring: &[V3],
) -> bool {
    if polygon.contains_point(c) {
        return true;
    }
    (0..ring.len()).any(|i| edge_within(center, c, ring[i], ring[(i + 1) % ring.len()], r))
}

/// The outline as one closed ring of (lat, lng) points for drawing it in
/// a plane of longitude and latitude (GeoJSON, KML): a polygon's edges
/// split along their ellipsoidal geodesics so that no piece is longer than
/// `max_edge_m`, a circle as points at most `max_edge_m` apart (at least
/// 32) at its radius; counterclockwise (the right-hand rule of RFC 7946),
/// the first point repeated at the end.
pub fn outline_ring(outline: &Outline, max_edge_m: f64) -> Vec<LatLng> {
    let step = max_edge_m.max(1.0);
    let mut ring = match outline {
        Outline::Circle { center, radius_m } => {
            let around = 2.0 * std::f64::consts::PI * radius_m;
            let n = ((around / step).ceil() as usize).clamp(32, 4096);
            (0..n)
                .map(|k| {
                    // Azimuths clockwise from north; reversed below.
                    let azi = 360.0 * k as f64 / n as f64;
                    let (lat, lng): (f64, f64) =
                        geod().direct(center.lat, center.lng, azi, *radius_m);
                    LatLng { lat, lng }
                })
                .collect::<Vec<_>>()
        }
        Outline::Polygon { vertices } => {
            let mut out = Vec::with_capacity(vertices.len());
            for (i, a) in vertices.iter().enumerate() {
                let b = vertices[(i + 1) % vertices.len()];
                out.push(*a);
                let (s12, azi1, _azi2, _a12): (f64, f64, f64, f64) =
                    geod().inverse(a.lat, a.lng, b.lat, b.lng);
                if s12 > step {
                    let k = ((s12 / step).ceil() as usize).min(4096);
                    for j in 1..k {
                        let (lat, lng): (f64, f64) =
                            geod().direct(a.lat, a.lng, azi1, s12 * j as f64 / k as f64);
                        out.push(LatLng { lat, lng });
                    }
                }
            }
            out
        }
    };
    // Shoelace in the (lng, lat) plane: negative is clockwise.
    let twice_area: f64 = (0..ring.len())
        .map(|i| {
            let (p, q) = (ring[i], ring[(i + 1) % ring.len()]);
            p.lng * q.lat - q.lng * p.lat
        })
        .sum();
    if twice_area < 0.0 {
        ring.reverse();
    }
    if let Some(first) = ring.first().copied() {
        ring.push(first);
    }
    ring
}

/// Widest buffer a line of contact may have, each side, in metres.
pub const MAX_BUFFER_M: f64 = 100_000.0;
/// Sharpest turn a buffered line may make at a vertex, in degrees.
pub const MAX_TURN_DEG: f64 = 120.0;

fn toward(p: LatLng, azi: f64, d: f64) -> LatLng {
    let (lat, lng): (f64, f64) = geod().direct(p.lat, p.lng, azi, d);
    LatLng { lat, lng }
}

/// Wraps an angle in degrees into (-180, 180].
fn wrap(a: f64) -> f64 {
    let r = a.rem_euclid(360.0);
    if r > 180.0 { r - 360.0 } else { r }
}

/// The outline of everything within `buffer_m` of the polyline `line`,
/// measured on the WGS-84 ellipsoid: a polygon to declare as the line of
/// contact's constraint. Every vertex lies exactly `buffer_m` (geodesic)
/// from the line — perpendicular to it along each segment, on arcs around
/// the ends and the outer side of each turn, along the bisector (at
/// `buffer_m / cos(turn/2)`) on the inner side — and vertices are at most
/// `step_m` apart along the line and 10° apart on arcs, so the geodesic
/// edges between them stay within centimetres of the exact buffer for
/// the widths and steps the node uses. Refused: fewer than two distinct
/// points, a width outside (0, [`MAX_BUFFER_M`]], a turn sharper than
/// [`MAX_TURN_DEG`], or an outline that crosses itself (a line that
/// doubles back within twice the width).
pub fn buffer_line(
    line: &[LatLng],
    buffer_m: f64,
    step_m: f64,
) -> Result<Vec<LatLng>, GeometryError> {
    const F: &str = "line";
    if !(buffer_m > 0.0 && buffer_m <= MAX_BUFFER_M) {
        return Err(GeometryError::new(
            "buffer_m",
            format!("the buffer is more than 0 and at most {MAX_BUFFER_M} m each side"),
        ));
    }
    for (i, p) in line.iter().enumerate() {
        if !(p.lat.is_finite() && p.lng.is_finite() && p.lat.abs() <= 90.0 && p.lng.abs() <= 180.0)
        {
            return Err(GeometryError::new(
                format!("{F}[{i}]"),
                "latitude in [-90, 90], longitude in [-180, 180]",
            ));
        }
    }
    // Consecutive repeats say nothing.
    let mut pts: Vec<LatLng> = Vec::with_capacity(line.len());
    for p in line {
        if pts
            .last()
            .is_none_or(|q| geodesic_distance_m(*q, *p) > 0.01)
        {
            pts.push(*p);
        }
    }
    if pts.len() < 2 {
        return Err(GeometryError::new(F, "at least two distinct points"));
    }
    let step = step_m.max(1.0);
    // Each segment's azimuths at its start and end.
    let segs: Vec<(f64, f64, f64)> = pts
        .windows(2)
        .map(|w| {
            let (s12, azi1, azi2, _a12): (f64, f64, f64, f64) =
                geod().inverse(w[0].lat, w[0].lng, w[1].lat, w[1].lng);
            (s12, azi1, azi2)
        })
        .collect();
    // The turn at each interior vertex (positive: clockwise), and how far
    // before and after it the inner side's perpendicular offsets would
    // pass the bisector point that replaces them.
    let turns: Vec<f64> = (1..pts.len() - 1)
        .map(|i| wrap(segs[i].1 - segs[i - 1].2))
        .collect();
    let trim = |turn: f64| buffer_m * (turn.abs() / 2.0).to_radians().tan();
    // Left side forward, right side backward; each side a list of points.
    let mut left: Vec<LatLng> = Vec::new();
    let mut right: Vec<LatLng> = Vec::new();
    let arc = |out: &mut Vec<LatLng>, c: LatLng, from: f64, sweep: f64| {
        let n = ((sweep.abs() / 10.0).ceil() as usize).max(1);
        for k in 0..=n {
            out.push(toward(c, from + sweep * k as f64 / n as f64, buffer_m));
        }
    };
    for (i, &(s12, azi1, _)) in segs.iter().enumerate() {
        let a = pts[i];
        let n = ((s12 / step).ceil() as usize).max(1);
        // (left, right) lengths to leave out at the start and the end.
        let at_start = match i.checked_sub(1).map(|j| turns[j]) {
            Some(t) if t > 0.0 => (0.0, trim(t)),
            Some(t) => (trim(t), 0.0),
            None => (0.0, 0.0),
        };
        let at_end = match turns.get(i) {
            Some(&t) if t > 0.0 => (0.0, trim(t)),
            Some(&t) => (trim(t), 0.0),
            None => (0.0, 0.0),
        };
        // Points along the segment (its end excluded: the next joint or the
        // end cap covers it), each offset perpendicular to the local azimuth.
        for k in 0..n {
            if i > 0 && k == 0 {
                continue; // the joint below placed the segment's start
            }
            let along = s12 * k as f64 / n as f64;
            let (p, azi) = if k == 0 {
                (a, azi1)
            } else {
                let (lat, lng, azi): (f64, f64, f64) = geod().direct(a.lat, a.lng, azi1, along);
                (LatLng { lat, lng }, azi)
            };
            let keep = |start: f64, end: f64| along >= start && s12 - along >= end;
            if keep(at_start.0, at_end.0) {
                left.push(toward(p, azi - 90.0, buffer_m));
            }
            if keep(at_start.1, at_end.1) {
                right.push(toward(p, azi + 90.0, buffer_m));
            }
        }
        // The joint with the next segment.
        if let Some(&(_, next_azi1, _)) = segs.get(i + 1) {
            let v = pts[i + 1];
            let in_azi = segs[i].2;
            let turn = wrap(next_azi1 - in_azi);
            if turn.abs() > MAX_TURN_DEG {
                return Err(GeometryError::new(
                    format!("{F}[{}]", i + 1),
                    format!("a turn of {:.0}°: at most {MAX_TURN_DEG}°", turn.abs()),
                ));
            }
            let bisector = in_azi + turn / 2.0;
            let inner = buffer_m / (turn.abs() / 2.0).to_radians().cos();
            if turn >= 0.0 {
                // Turning right (clockwise): the left side is outer.
                arc(&mut left, v, in_azi - 90.0, turn);
                right.push(toward(v, bisector + 90.0, inner));
            } else {
                left.push(toward(v, bisector - 90.0, inner));
                arc(&mut right, v, in_azi + 90.0, turn);
            }
        }
    }
    // The end: a half circle around the last point, from left to right.
    let last = *pts.last().unwrap_or(&pts[0]);
    let end_azi = segs.last().map_or(0.0, |s| s.2);
    let mut ring = left;
    arc(&mut ring, last, end_azi - 90.0, 180.0);
    ring.extend(right.into_iter().rev());
    // The start: a half circle around the first point, from right to left.
    let start_azi = segs[0].1;
    let mut start_cap = Vec::new();
    arc(&mut start_cap, pts[0], start_azi + 90.0, 180.0);
    // Its ends repeat the sides' first points: keep the inner ones.
    let inner_cap = &start_cap[1..start_cap.len().saturating_sub(1)];
    ring.extend_from_slice(inner_cap);
    // Drop near-duplicates (arcs meet the sides at the same points).
    let mut out: Vec<LatLng> = Vec::with_capacity(ring.len());
    for p in ring {
        if out.last().is_none_or(|q| geodesic_distance_m(*q, p) > 0.01) {
            out.push(p);
        }
    }
    if out.len() >= 2 && geodesic_distance_m(out[0], out[out.len() - 1]) <= 0.01 {
        out.pop();
    }
    let planar: Vec<crate::planar::P> = out.iter().map(|p| [p.lng, p.lat]).collect();
    if let Some((i, j)) = crate::planar::first_self_intersection(&planar) {
        return Err(GeometryError::new(
            F,
            format!(
                "the buffered outline crosses itself (edges {i} and {j}): the line comes back within twice the buffer of itself; split it or narrow the buffer"
            ),
        ));
    }
    Ok(out)
}

/// The (south, west, north, east) degrees that bound the outline (a
/// circle's by its radius along the meridian and the parallel).
pub fn outline_bounds(outline: &Outline) -> (f64, f64, f64, f64) {
    let ring = outline_ring(outline, MAX_EDGE_M);
    ring.iter().fold(
        (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ),
        |(s, w, n, e), p| (s.min(p.lat), w.min(p.lng), n.max(p.lat), e.max(p.lng)),
    )
}

/// The overlap of two half-open intervals, if not empty.
pub fn overlap<T: PartialOrd + Copy>(a: (T, T), b: (T, T)) -> Option<(T, T)> {
    let lo = if a.0 > b.0 { a.0 } else { b.0 };
    let hi = if a.1 < b.1 { a.1 } else { b.1 };
    (lo < hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ll(lat: f64, lng: f64) -> LatLng {
        LatLng { lat, lng }
    }
    fn poly(v: &[(f64, f64)]) -> Volume4D {
        Volume4D {
            outline: Outline::Polygon {
                vertices: v.iter().map(|&(lat, lng)| ll(lat, lng)).collect(),
            },
            altitude_lower_m: Some(0.0),
            altitude_upper_m: Some(1000.0),
            time_start: Some(Timestamp(0)),
            time_end: Some(Timestamp(3_600_000_000)),
        }
    }
    fn circle(lat: f64, lng: f64, r: f64) -> Volume4D {
        Volume4D {
            outline: Outline::Circle {
                center: ll(lat, lng),
                radius_m: r,
            },
            ..poly(&[(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)])
        }
    }
    fn p(v: Volume4D) -> PreparedVolume {
        prepare(v, &Limits::default()).expect("valid volume")
    }
    fn err(v: Volume4D) -> GeometryError {
        prepare(v, &Limits::default()).expect_err("invalid volume")
    }

    /// A star of `n` vertices alternating between `outer` and `inner`
    /// degrees from (0, 0): legal, and with long spikes as costly as a
    /// polygon can be made.
    fn star(n: usize, outer: f64, inner: f64) -> Volume4D {
        let v: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                let r = if i % 2 == 0 { outer } else { inner };
                (r * a.sin(), r * a.cos())
            })
            .collect();
        poly(&v)
    }

    #[test]
    fn a_polygons_cost_is_bounded_before_it_is_computed() {
        // 10,000 spikes of 1,650 km would densify to 1.67 million points:
        // refused on the bound, before one is computed.
        let e = err(star(10_000, 15.0, 0.05));
        assert!(e.too_large, "{e}");
        assert_eq!(e.field, "volume.outline_polygon.vertices");
        assert!(e.message.contains("at most 20000"), "{e}");
        assert!(cost(&star(10_000, 15.0, 0.05)) > MAX_OUTLINE_POINTS);
        // The same star with spikes under 10 km is accepted as it is.
        let small = star(10_000, 0.089, 0.05);
        assert!(cost(&small) <= MAX_OUTLINE_POINTS);
        p(small);
        // Two vertices further apart than any accepted polygon's diameter:
        // refused naming the far one, without densifying anything.
        let e = err(poly(&[(0.0, 0.0), (0.1, 0.0), (0.0, 45.0), (0.0, 0.1)]));
        assert!(e.too_large);
        assert_eq!(e.field, "volume.outline_polygon.vertices[2]", "{e}");
    }

    #[test]
    fn the_cost_bound_covers_the_densified_outline() {
        for v in [
            star(1_000, 1.0, 0.05),
            poly(&[(0.0, 0.0), (0.0, 2.0), (2.0, 2.0), (2.0, 0.0)]),
            square(40.0, -105.0, 0.01),
        ] {
            let bound = cost(&v);
            let Shape::Polygon { ring, .. } = p(v).shape else {
                panic!("a polygon");
            };
            assert!(ring.len() <= bound, "{} points, bound {bound}", ring.len());
            assert!(
                ring.len() * 101 / 100 + 4 >= bound,
                "the bound is close: {} vs {bound}",
                ring.len()
            );
        }
    }
    /// A square of half-side `h` degrees around (lat, lng).
    fn square(lat: f64, lng: f64, h: f64) -> Volume4D {
        poly(&[
            (lat - h, lng - h),
            (lat - h, lng + h),
            (lat + h, lng + h),
            (lat + h, lng - h),
        ])
    }

    #[test]
    fn overlapping_and_separate_squares() {
        assert!(p(square(50.0, 30.0, 0.01)).intersects(&p(square(50.0, 30.015, 0.01))));
        assert!(!p(square(50.0, 30.0, 0.01)).intersects(&p(square(50.0, 30.025, 0.01))));
    }

    #[test]
    fn bounding_boxes_overlap_but_shapes_do_not() {
        // Two thin triangles whose boxes overlap almost entirely.
        let a = p(poly(&[(0.0, 0.0), (0.0, 0.1), (0.1, 0.0)]));
        let b = p(poly(&[(0.1, 0.1), (0.1, 0.0001), (0.0001, 0.1)]));
        assert!(!a.intersects(&b));
    }

    #[test]
    fn antimeridian_polygons_meet_across_180() {
        let west = p(poly(&[
            (10.0, 179.99),
            (10.0, -179.99),
            (10.01, -179.99),
            (10.01, 179.99),
        ]));
        let east = p(square(10.005, -179.995, 0.002));
        assert!(
            west.intersects(&east),
            "a square just east of 180° lies inside the polygon straddling it"
        );
        let far = p(square(10.005, 179.0, 0.002));
        assert!(
            !west.intersects(&far),
            "the straddling polygon is the small one, not the one round the globe"
        );
    }

    #[test]
    fn polygon_around_the_north_pole() {
        let cap = p(poly(&[
            (89.9, 0.0),
            (89.9, 90.0),
            (89.9, 180.0),
            (89.9, -90.0),
        ]));
        assert!(
            cap.intersects(&p(circle(90.0, 0.0, 10.0))),
            "the pole is inside"
        );
        assert!(cap.intersects(&p(square(89.95, 45.0, 0.01))));
        assert!(!cap.intersects(&p(square(89.5, 45.0, 0.01))));
    }

    #[test]
    fn tiny_areas_of_a_few_metres_are_exact() {
        // 1e-5° ≈ 1.1 m of latitude.
        let a = p(square(48.0, 11.0, 1e-5));
        let touching = p(poly(&[
            (48.0 - 1e-5, 11.0 + 1e-5),
            (48.0 - 1e-5, 11.0 + 3e-5),
            (48.0 + 1e-5, 11.0 + 3e-5),
            (48.0 + 1e-5, 11.0 + 1e-5),
        ]));
        assert!(a.intersects(&touching), "sharing an edge is touching");
        let apart = p(square(48.0, 11.0 + 2.2e-5, 1e-5));
        assert!(!a.intersects(&apart), "≈ 0.15 m apart");
    }

    #[test]
    fn huge_areas_are_refused_as_too_large() {
        let e = err(square(0.0, 0.0, 5.0));
        assert!(e.too_large, "{e}");
        assert_eq!(e.field, "volume.outline_polygon.vertices");
        let e = err(circle(0.0, 0.0, 500_000.0));
        assert!(e.too_large);
        // Just under the default 100,000 km² limit: a 1.4° square at the equator ≈ 98,000 km².
        p(square(0.0, 0.0, 1.4));
    }

    #[test]
    fn circles_use_ellipsoidal_distance() {
        // Along a meridian at the equator, 1° of latitude is 110,574 m on WGS-84;
        // on a sphere of mean radius it would be 111,195 m.
        let d = geodesic_distance_m(ll(0.0, 0.0), ll(1.0, 0.0));
        assert!((d - 110_574.4).abs() < 1.0, "{d}");
        let a = p(circle(0.0, 0.0, 55_287.0));
        assert!(a.intersects(&p(circle(1.0, 0.0, 55_288.0))));
        assert!(!a.intersects(&p(circle(1.0, 0.0, 55_286.0))));
    }

    #[test]
    fn circle_against_polygon_edge_within_a_metre() {
        // An edge along the meridian lng = 0.01 at lat 45; the circle centre at lng 0.
        let edge_lng = 0.01;
        let sq = p(poly(&[
            (44.9, edge_lng),
            (44.9, 0.1),
            (45.1, 0.1),
            (45.1, edge_lng),
        ]));
        let d = geodesic_distance_m(ll(45.0, 0.0), ll(45.0, edge_lng));
        assert!(p(circle(45.0, 0.0, d + 0.5)).intersects(&sq));
        assert!(!p(circle(45.0, 0.0, d - 0.5)).intersects(&sq));
    }

    /// Whether a 1 m circle at `p` meets the polygon `outline`.
    fn inside(outline: &[LatLng], p: LatLng) -> bool {
        let limits = Limits {
            max_area_m2: f64::INFINITY,
            ..Limits::default()
        };
        let poly = prepare(
            Volume4D {
                outline: Outline::Polygon {
                    vertices: outline.to_vec(),
                },
                altitude_lower_m: Some(0.0),
                altitude_upper_m: Some(1.0),
                time_start: None,
                time_end: None,
            },
            &limits,
        )
        .unwrap();
        let dot = prepare(
            Volume4D {
                outline: Outline::Circle {
                    center: p,
                    radius_m: 1.0,
                },
                altitude_lower_m: Some(0.0),
                altitude_upper_m: Some(1.0),
                time_start: None,
                time_end: None,
            },
            &limits,
        )
        .unwrap();
        poly.outlines_intersect(&dot)
    }

    #[test]
    fn a_line_is_buffered_on_the_ellipsoid_within_its_width_and_no_further() {
        let d = 5_000.0;
        // Along a parallel, then a 60° turn to the south-east.
        let a = LatLng {
            lat: 45.0,
            lng: 10.0,
        };
        let b = toward(a, 90.0, 60_000.0);
        let c = toward(b, 150.0, 40_000.0);
        let outline = buffer_line(&[a, b, c], d, 2_000.0).unwrap();
        assert!(outline.len() < 1_000, "{}", outline.len());
        // Beside every part of the line: in at 0.97 d, out at 1.03 d.
        let (_, ab, _): (f64, f64, f64) = {
            let r: (f64, f64, f64, f64) = geod().inverse(a.lat, a.lng, b.lat, b.lng);
            (r.0, r.1, r.2)
        };
        for k in [0.1, 0.5, 0.9] {
            let (lat, lng, azi): (f64, f64, f64) = geod().direct(a.lat, a.lng, ab, 60_000.0 * k);
            let p = LatLng { lat, lng };
            for side in [-90.0, 90.0] {
                assert!(
                    inside(&outline, toward(p, azi + side, 0.97 * d)),
                    "{k} {side}"
                );
                assert!(
                    !inside(&outline, toward(p, azi + side, 1.03 * d)),
                    "{k} {side}"
                );
            }
        }
        // Around the ends and the outer side of the turn: within d of the
        // point, and not beyond.
        for (p, azis) in [
            (a, [180.0, 270.0, 0.0]),
            (c, [150.0, 240.0, 60.0]),
            (b, [0.0, 30.0, 60.0]),
        ] {
            for azi in azis {
                assert!(inside(&outline, toward(p, azi, 0.97 * d)), "{p:?} {azi}");
                assert!(!inside(&outline, toward(p, azi, 1.03 * d)), "{p:?} {azi}");
            }
        }
        // The inner corner reaches d / cos(30°) along the bisector.
        let far = d / 30f64.to_radians().cos();
        assert!(inside(&outline, toward(b, 210.0, 0.97 * far)));
        assert!(!inside(&outline, toward(b, 210.0, 1.03 * far)));
    }

    #[test]
    fn lines_that_cannot_be_buffered_are_refused_naming_why() {
        let a = LatLng {
            lat: 45.0,
            lng: 10.0,
        };
        let b = toward(a, 90.0, 20_000.0);
        let err = |line: &[LatLng], d: f64| buffer_line(line, d, 1_000.0).unwrap_err();
        assert_eq!(err(&[a, b], 0.0).field, "buffer_m");
        assert_eq!(err(&[a, b], MAX_BUFFER_M + 1.0).field, "buffer_m");
        assert_eq!(err(&[a, a], 1_000.0).field, "line");
        let back = toward(b, 260.0, 20_000.0);
        assert_eq!(err(&[a, b, back], 1_000.0).field, "line[1]");
        // A hairpin made of gentle turns comes back within twice the width.
        let c = toward(b, 180.0, 3_000.0);
        let d = toward(c, 270.0, 20_000.0);
        assert!(
            err(&[a, b, c, d], 5_000.0)
                .message
                .contains("crosses itself")
        );
        assert!(buffer_line(&[a, b, c, d], 1_000.0, 1_000.0).is_ok());
    }

    #[test]
    fn rings_for_drawing_are_closed_counterclockwise_and_follow_the_outline() {
        let cw = Outline::Polygon {
            vertices: vec![
                LatLng { lat: 0.0, lng: 0.0 },
                LatLng { lat: 1.0, lng: 0.0 },
                LatLng { lat: 1.0, lng: 1.0 },
                LatLng { lat: 0.0, lng: 1.0 },
            ],
        };
        let ring = outline_ring(&cw, 20_000.0);
        assert_eq!(ring.first(), ring.last());
        // ~111 km edges in pieces of at most 20 km: 6 each.
        assert_eq!(ring.len(), 4 * 6 + 1);
        let area: f64 = ring
            .windows(2)
            .map(|w| w[0].lng * w[1].lat - w[1].lng * w[0].lat)
            .sum();
        assert!(area > 0.0, "counterclockwise");
        for w in ring.windows(2) {
            assert!(geodesic_distance_m(w[0], w[1]) <= 20_000.0 + 1e-6);
        }
        let c = Outline::Circle {
            center: LatLng {
                lat: 45.0,
                lng: 10.0,
            },
            radius_m: 5_000.0,
        };
        let ring = outline_ring(&c, 500.0);
        assert!(ring.len() > 60);
        for p in &ring {
            let d = geodesic_distance_m(
                LatLng {
                    lat: 45.0,
                    lng: 10.0,
                },
                *p,
            );
            assert!((d - 5_000.0).abs() < 1e-6, "{d}");
        }
        let (s, w, n, e) = outline_bounds(&c);
        assert!(s < 45.0 && n > 45.0 && w < 10.0 && e > 10.0);
        assert!((n - 45.0) * 111_000.0 < 5_100.0 && (n - 45.0) * 111_000.0 > 4_900.0);
    }

    #[test]
    fn densified_edges_follow_the_geodesic_within_a_centimetre() {
        // For ≤ 10 km geodesics anywhere, the midpoint of the true geodesic is
        // within 1 cm of the great-circle arc we use in its place.
        for &(lat, lng, az) in &[
            (0.0, 0.0, 45.0),
            (45.0, 10.0, 30.0),
            (60.0, -120.0, 80.0),
            (80.0, 170.0, 135.0),
            (-33.0, 151.0, 60.0),
        ] {
            let (lat2, lng2): (f64, f64) = geod().direct(lat, lng, az, MAX_EDGE_M);
            let (mlat, mlng): (f64, f64) = geod().direct(lat, lng, az, MAX_EDGE_M / 2.0);
            let (a, b, m) = (
                unit_vector(ll(lat, lng)),
                unit_vector(ll(lat2, lng2)),
                unit_vector(ll(mlat, mlng)),
            );
            let q = closest_on_arc(m, a, b);
            let off = geodesic_distance_m(ll(mlat, mlng), lat_lng(q));
            assert!(off < 0.01, "{lat},{lng} az {az}: {off} m");
        }
    }

    #[test]
    fn long_edges_are_densified_along_the_geodesic() {
        // A 3° wide square at 60°N: its top edge is a geodesic that bulges
        // north of the parallel by several km; a small square just north of
        // the parallel in the middle of the edge is therefore inside.
        let big = p(poly(&[(58.0, 0.0), (58.0, 3.0), (60.0, 3.0), (60.0, 0.0)]));
        assert!(big.intersects(&p(square(60.005, 1.5, 0.001))));
        assert!(!big.intersects(&p(square(60.2, 1.5, 0.001))));
    }

    #[test]
    fn impossible_geometry_names_the_field() {
        let e = err(poly(&[(0.0, 0.0), (0.0, 1.0)]));
        assert_eq!(e.field, "volume.outline_polygon.vertices");
        assert!(e.message.contains("at least 3"));
        let e = err(poly(&[(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)]));
        assert!(e.message.contains("may not cross"), "{e}");
        let e = err(poly(&[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0)]));
        assert_eq!(e.field, "volume.outline_polygon.vertices[3]");
        let e = err(poly(&[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 1.0)]));
        assert!(e.message.contains("duplicates vertex 1"), "{e}");
        let e = err(poly(&[(0.0, 0.0), (f64::NAN, 1.0), (1.0, 1.0)]));
        assert_eq!(e.field, "volume.outline_polygon.vertices[1].lat");
        let e = err(poly(&[(0.0, 0.0), (0.0, 181.0), (1.0, 1.0)]));
        assert_eq!(e.field, "volume.outline_polygon.vertices[1].lng");
        let e = err(poly(&[(0.0, 0.0), (0.0, 1.0), (0.0, 2.0)]));
        assert!(
            e.message.contains("no area")
                || e.message.contains("folds")
                || e.message.contains("may not cross"),
            "{e}"
        );
        let many: Vec<(f64, f64)> = (0..10_001)
            .map(|i| {
                (
                    0.001 * (i as f64 / 10_001.0 * std::f64::consts::TAU).sin(),
                    0.001 * (i as f64 / 10_001.0 * std::f64::consts::TAU).cos(),
                )
            })
            .collect();
        assert!(err(poly(&many)).message.contains("at most 10000"));
        let mut v = square(0.0, 0.0, 0.1);
        v.altitude_lower_m = Some(500.0);
        v.altitude_upper_m = Some(100.0);
        assert_eq!(err(v).field, "volume.altitude_lower.value");
        let mut v = square(0.0, 0.0, 0.1);
        v.time_end = Some(Timestamp(-1));
        assert_eq!(err(v).field, "time_end");
        let mut v = square(0.0, 0.0, 0.1);
        v.altitude_upper_m = Some(f64::INFINITY);
        assert_eq!(err(v).field, "volume.altitude_upper.value");
        assert_eq!(
            err(circle(0.0, 0.0, 0.0)).field,
            "volume.outline_circle.radius.value"
        );
        assert_eq!(
            err(circle(0.0, 0.0, -3.0)).field,
            "volume.outline_circle.radius.value"
        );
    }

    #[test]
    fn polygons_with_ten_thousand_vertices_are_accepted_quickly() {
        let n = 10_000;
        let v: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let t = i as f64 / n as f64 * std::f64::consts::TAU;
                (45.0 + 0.1 * t.sin(), 7.0 + 0.1 * t.cos())
            })
            .collect();
        let big = p(poly(&v));
        assert!(big.intersects(&p(square(45.0, 7.0, 0.01))));
        assert!(big.intersects(&p(square(45.1, 7.0, 0.01))));
        assert!(!big.intersects(&p(square(45.2, 7.0, 0.01))));
    }

    #[test]
    fn time_and_altitude_are_half_open() {
        let a = p(square(0.0, 0.0, 0.01));
        let mut later = square(0.0, 0.0, 0.01);
        later.time_start = Some(Timestamp(3_600_000_000));
        later.time_end = Some(Timestamp(7_200_000_000));
        assert!(
            !a.intersects(&p(later)),
            "back-to-back slots do not conflict"
        );
        let mut above = square(0.0, 0.0, 0.01);
        above.altitude_lower_m = Some(1000.0);
        above.altitude_upper_m = Some(2000.0);
        assert!(!a.intersects(&p(above)), "stacked layers do not conflict");
        let mut open = square(0.0, 0.0, 0.01);
        open.altitude_lower_m = None;
        open.time_end = None;
        assert!(
            a.intersects(&p(open)),
            "unbounded query dimensions match everything"
        );
    }

    #[test]
    fn coverage_of_polygons_and_circles() {
        let outer = p(square(10.0, 10.0, 0.1));
        assert!(outer.covers(&p(square(10.0, 10.0, 0.05))));
        assert!(outer.covers(&outer.clone()), "a volume covers itself");
        assert!(!outer.covers(&p(square(10.0, 10.08, 0.05))));
        assert!(outer.covers(&p(circle(10.0, 10.0, 1000.0))));
        assert!(!outer.covers(&p(circle(10.0, 10.0, 20_000.0))));
        let big_circle = p(circle(10.0, 10.0, 50_000.0));
        assert!(big_circle.covers(&p(square(10.0, 10.0, 0.1))));
        assert!(!p(circle(10.0, 10.0, 5_000.0)).covers(&p(square(10.0, 10.0, 0.1))));
        let mut later = square(10.0, 10.0, 0.05);
        later.time_end = Some(Timestamp(7_200_000_000));
        assert!(!outer.covers(&p(later)), "time must be covered too");
    }

    proptest! {
        #[test]
        fn intersection_is_symmetric_and_matches_containment(
            lat in -70.0f64..70.0, lng in -179.0f64..179.0,
            dx in -0.05f64..0.05, dy in -0.05f64..0.05,
            h1 in 0.001f64..0.03, h2 in 0.001f64..0.03, r in 10.0f64..3000.0,
        ) {
            let a = p(square(lat, lng, h1));
            let b = p(square(lat + dy, lng + dx, h2));
            let c = p(circle(lat + dy, lng + dx, r));
            prop_assert_eq!(a.intersects(&b), b.intersects(&a));
            prop_assert_eq!(a.intersects(&c), c.intersects(&a));
            // Axis-aligned squares in lat/lng: they meet iff both ranges overlap,
            // up to the bulge of the parallels (geodesics are not parallels):
            // only check the clear-cut cases.
            let sep_lat = dy.abs() - (h1 + h2);
            let sep_lng = dx.abs() - (h1 + h2);
            if sep_lat > 0.001 || sep_lng > 0.001 { prop_assert!(!a.intersects(&b)); }
            if sep_lat < -0.001 && sep_lng < -0.001 { prop_assert!(a.intersects(&b)); }
            if a.covers(&b) { prop_assert!(a.intersects(&b)); }
        }
    }
}
