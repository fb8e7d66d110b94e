//! Conflicts Detente reports beyond F3548: a pair of operational intents of
//! different managers, or an operational intent and a constraint, whose 4D
//! volumes intersect exactly. A conflict is data, never an error: the key
//! check may have let both through, and the parties must still see it.

use crate::geometry::{PreparedVolume, overlap};
use crate::model::EntityId;
use crate::timestamp::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// Two operational intents of different managers.
    IntentIntent,
    /// An operational intent (`a`) inside a constraint (`b`).
    IntentConstraint,
}

/// One side of a conflict.
#[derive(Clone, Debug, PartialEq)]
pub struct ConflictParty {
    pub id: EntityId,
    pub manager: String,
    pub version: i32,
}

/// Where two volumes overlap: which volume of each side, when, and at which
/// altitudes (the exact intersection of time windows and altitude bands; the
/// outlines are known to share area).
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeOverlap {
    pub volume_a: usize,
    pub volume_b: usize,
    pub time: (Timestamp, Timestamp),
    pub altitude_m: (f64, f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub a: ConflictParty,
    pub b: ConflictParty,
    pub overlaps: Vec<VolumeOverlap>,
}

/// Every pair of volumes of `a` × `b` that intersect in 4D.
pub fn volume_overlaps(a: &[PreparedVolume], b: &[PreparedVolume]) -> Vec<VolumeOverlap> {
    let mut out = Vec::new();
    for (i, va) in a.iter().enumerate() {
        for (j, vb) in b.iter().enumerate() {
            let (Some(time), Some(altitude_m)) =
                (overlap(va.time, vb.time), overlap(va.altitude, vb.altitude))
            else {
                continue;
            };
            if va.outlines_intersect(vb) {
                out.push(VolumeOverlap {
                    volume_a: i,
                    volume_b: j,
                    time,
                    altitude_m,
                });
            }
        }
    }
    out
}
