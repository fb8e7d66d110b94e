//! A compact binary form of the airspace's records, for a store's state
//! snapshot: written when a store closes cleanly, read back at the next open
//! instead of decoding every row's JSON (at a million intents the JSON was
//! most of a cold start).
//!
//! Little-endian, lengths as `u32`, no field names: the file that holds
//! these records names its format version, and a reader that meets anything
//! it does not expect (a short buffer, an unknown tag, text that is not
//! UTF-8, a volume that does not prepare) refuses the whole snapshot, so the
//! store falls back to its rows. Volumes are kept as their plain `Volume4D`
//! and prepared again on the way back, as from JSON.

pub use crate::error::SnapshotError;
use crate::geometry::{LatLng, Limits, Outline, PreparedVolume, Volume4D, prepare};
use crate::model::*;
use crate::timestamp::Timestamp;

fn bad(what: impl Into<String>) -> SnapshotError {
    SnapshotError(what.into())
}

/// Bytes being read, front to back.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if n > self.buf.len() {
            return Err(bad(format!("{n} bytes wanted, {} left", self.buf.len())));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    /// A count of items that take at least one byte each: never more than
    /// the bytes left, so a damaged count cannot ask for a huge allocation.
    fn count(&mut self) -> Result<usize, SnapshotError> {
        let n = u32::take(self)? as usize;
        if n > self.remaining() {
            return Err(bad(format!(
                "a count of {n} with {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }
}

/// A value with a binary form.
pub trait Snap: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError>;
}

macro_rules! number {
    ($($t:ty),*) => {$(
        impl Snap for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
                Ok(<$t>::from_le_bytes(r.array()?))
            }
        }
    )*};
}
number!(u32, i32, u64, i64, f64);

impl Snap for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        match r.array::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(bad(format!("a flag of {b}"))),
        }
    }
}

/// A length as a `u32` (every length a record holds is far below 4 GiB:
/// entities are bounded by the request size).
fn put_len(n: usize, out: &mut Vec<u8>) {
    (u32::try_from(n).unwrap_or(u32::MAX)).put(out);
}

impl Snap for String {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let n = r.count()?;
        let b = r.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| bad("text that is not UTF-8"))
    }
}

impl Snap for uuid::Uuid {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(uuid::Uuid::from_bytes(r.array()?))
    }
}

impl<T: Snap> Snap for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.put(out);
            }
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        match r.array::<1>()?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::take(r)?)),
            b => Err(bad(format!("an option tagged {b}"))),
        }
    }
}

impl<T: Snap> Snap for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(self.len(), out);
        for v in self {
            v.put(out);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let n = r.count()?;
        // Exactly sized: records hold their vectors as long as they live.
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::take(r)?);
        }
        Ok(v)
    }
}

impl Snap for Timestamp {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(Timestamp(i64::take(r)?))
    }
}

impl Snap for Ovn {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(Ovn(String::take(r)?))
    }
}

impl Snap for OperationalIntentState {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(match self {
            Self::Accepted => 0,
            Self::Activated => 1,
            Self::Nonconforming => 2,
            Self::Contingent => 3,
        });
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(match r.array::<1>()?[0] {
            0 => Self::Accepted,
            1 => Self::Activated,
            2 => Self::Nonconforming,
            3 => Self::Contingent,
            b => return Err(bad(format!("an intent state tagged {b}"))),
        })
    }
}

impl Snap for LatLng {
    fn put(&self, out: &mut Vec<u8>) {
        self.lat.put(out);
        self.lng.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(LatLng {
            lat: f64::take(r)?,
            lng: f64::take(r)?,
        })
    }
}

impl Snap for Volume4D {
    fn put(&self, out: &mut Vec<u8>) {
        match &self.outline {
            Outline::Polygon { vertices } => {
                out.push(0);
                vertices.put(out);
            }
            Outline::Circle { center, radius_m } => {
                out.push(1);
                center.put(out);
                radius_m.put(out);
            }
        }
        self.altitude_lower_m.put(out);
        self.altitude_upper_m.put(out);
        self.time_start.put(out);
        self.time_end.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let outline = match r.array::<1>()?[0] {
            0 => Outline::Polygon {
                vertices: Snap::take(r)?,
            },
            1 => Outline::Circle {
                center: LatLng::take(r)?,
                radius_m: f64::take(r)?,
            },
            b => return Err(bad(format!("an outline tagged {b}"))),
        };
        Ok(Volume4D {
            outline,
            altitude_lower_m: Snap::take(r)?,
            altitude_upper_m: Snap::take(r)?,
            time_start: Snap::take(r)?,
            time_end: Snap::take(r)?,
        })
    }
}

/// Stored volumes were valid when written: only the structural limits are
/// relaxed on the way back, never the geometry checks (as from JSON).
const STORED: Limits = Limits {
    max_vertices: usize::MAX,
    max_area_m2: f64::INFINITY,
    trusted: true,
};

impl Snap for PreparedVolume {
    fn put(&self, out: &mut Vec<u8>) {
        self.volume.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        prepare(Volume4D::take(r)?, &STORED).map_err(|e| bad(format!("a stored volume: {e}")))
    }
}

impl Snap for OperationalIntent {
    fn put(&self, out: &mut Vec<u8>) {
        self.id.put(out);
        self.manager.put(out);
        self.version.put(out);
        self.state.put(out);
        self.ovn.put(out);
        self.extents.put(out);
        self.uss_base_url.put(out);
        self.subscription_id.put(out);
        self.time_start.put(out);
        self.time_end.put(out);
        self.updated_seq.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(OperationalIntent {
            id: Snap::take(r)?,
            manager: Snap::take(r)?,
            version: Snap::take(r)?,
            state: Snap::take(r)?,
            ovn: Snap::take(r)?,
            extents: Snap::take(r)?,
            uss_base_url: Snap::take(r)?,
            subscription_id: Snap::take(r)?,
            time_start: Snap::take(r)?,
            time_end: Snap::take(r)?,
            updated_seq: Snap::take(r)?,
        })
    }
}

impl Snap for Constraint {
    fn put(&self, out: &mut Vec<u8>) {
        self.id.put(out);
        self.manager.put(out);
        self.version.put(out);
        self.ovn.put(out);
        self.extents.put(out);
        self.uss_base_url.put(out);
        self.time_start.put(out);
        self.time_end.put(out);
        self.updated_seq.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(Constraint {
            id: Snap::take(r)?,
            manager: Snap::take(r)?,
            version: Snap::take(r)?,
            ovn: Snap::take(r)?,
            extents: Snap::take(r)?,
            uss_base_url: Snap::take(r)?,
            time_start: Snap::take(r)?,
            time_end: Snap::take(r)?,
            updated_seq: Snap::take(r)?,
        })
    }
}

impl Snap for Subscription {
    fn put(&self, out: &mut Vec<u8>) {
        self.id.put(out);
        self.manager.put(out);
        self.version.put(out);
        self.notification_index.put(out);
        self.extents.put(out);
        self.uss_base_url.put(out);
        self.notify_for_operational_intents.put(out);
        self.notify_for_constraints.put(out);
        self.implicit.put(out);
        self.time_start.put(out);
        self.time_end.put(out);
        self.updated_seq.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(Subscription {
            id: Snap::take(r)?,
            manager: Snap::take(r)?,
            version: Snap::take(r)?,
            notification_index: Snap::take(r)?,
            extents: Snap::take(r)?,
            uss_base_url: Snap::take(r)?,
            notify_for_operational_intents: Snap::take(r)?,
            notify_for_constraints: Snap::take(r)?,
            implicit: Snap::take(r)?,
            time_start: Snap::take(r)?,
            time_end: Snap::take(r)?,
            updated_seq: Snap::take(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn volume(outline: Outline, bounded: bool) -> PreparedVolume {
        let t = Timestamp(1_800_000_000_000_000);
        prepare(
            Volume4D {
                outline,
                altitude_lower_m: Some(-12.5),
                altitude_upper_m: bounded.then_some(1_234.25),
                time_start: Some(t),
                time_end: bounded.then_some(Timestamp(t.0 + 3_600_000_000)),
            },
            &Limits::default(),
        )
        .unwrap()
    }

    fn extents() -> Vec<PreparedVolume> {
        vec![
            volume(
                Outline::Polygon {
                    vertices: vec![
                        LatLng {
                            lat: 50.0,
                            lng: 30.0,
                        },
                        LatLng {
                            lat: 50.0,
                            lng: 30.1,
                        },
                        LatLng {
                            lat: 50.1,
                            lng: 30.05,
                        },
                    ],
                },
                true,
            ),
            volume(
                Outline::Circle {
                    center: LatLng {
                        lat: -33.9,
                        lng: 151.2,
                    },
                    radius_m: 750.5,
                },
                false,
            ),
        ]
    }

    fn intent() -> OperationalIntent {
        let extents = extents();
        let (time_start, time_end) = time_bounds(&extents);
        OperationalIntent {
            id: uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788),
            manager: "uss \u{1f}\u{e9}\"x".into(),
            version: -3,
            state: OperationalIntentState::Contingent,
            ovn: Ovn("sha256:00ff".into()),
            extents,
            uss_base_url: "https://uss.example/é".into(),
            subscription_id: Some(uuid::Uuid::from_u128(9)),
            time_start,
            time_end,
            updated_seq: u64::MAX - 1,
        }
    }

    fn subscription() -> Subscription {
        Subscription {
            id: uuid::Uuid::from_u128(7),
            manager: "watcher".into(),
            version: "v1".into(),
            notification_index: i32::MAX,
            extents: extents(),
            uss_base_url: String::new(),
            notify_for_operational_intents: true,
            notify_for_constraints: false,
            implicit: true,
            time_start: Timestamp::MIN,
            time_end: Timestamp::MAX,
            updated_seq: 0,
        }
    }

    fn constraint() -> Constraint {
        Constraint {
            id: uuid::Uuid::from_u128(8),
            manager: "authority".into(),
            version: 1,
            ovn: Ovn("o".into()),
            extents: extents()[..1].to_vec(),
            uss_base_url: "https://authority.example".into(),
            time_start: Timestamp(1),
            time_end: Timestamp(2),
            updated_seq: 42,
        }
    }

    fn round_trip<T: Snap + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        v.put(&mut out);
        let mut r = Reader::new(&out);
        assert_eq!(&T::take(&mut r).unwrap(), v);
        assert_eq!(r.remaining(), 0);
        out
    }

    #[test]
    fn records_come_back_equal_with_their_volumes_prepared() {
        let bytes = round_trip(&intent());
        round_trip(&subscription());
        round_trip(&constraint());
        // Prepared again: the same boxes as the original volumes.
        let back = OperationalIntent::take(&mut Reader::new(&bytes)).unwrap();
        for (a, b) in back.extents.iter().zip(intent().extents.iter()) {
            assert_eq!(a.cap.bounds(), b.cap.bounds());
            assert_eq!((a.altitude, a.time), (b.altitude, b.time));
        }
    }

    #[test]
    fn every_cut_short_or_damaged_record_is_refused_not_misread() {
        let mut bytes = Vec::new();
        intent().put(&mut bytes);
        for n in 0..bytes.len() {
            assert!(
                OperationalIntent::take(&mut Reader::new(&bytes[..n])).is_err(),
                "a record cut to {n} of {} bytes was read",
                bytes.len()
            );
        }
        // A count no buffer could hold is refused before anything is
        // allocated for it; so are unknown tags.
        let mut huge = Vec::new();
        u32::MAX.put(&mut huge);
        assert!(Vec::<LatLng>::take(&mut Reader::new(&huge)).is_err());
        assert!(String::take(&mut Reader::new(&huge)).is_err());
        assert!(OperationalIntentState::take(&mut Reader::new(&[4])).is_err());
        assert!(bool::take(&mut Reader::new(&[2])).is_err());
        assert!(<Option<u32> as Snap>::take(&mut Reader::new(&[2, 0, 0, 0, 0])).is_err());
        assert!(String::take(&mut Reader::new(&[2, 0, 0, 0, 0xff, 0xfe])).is_err());
        // An outline that does not prepare (two vertices) is refused.
        let mut two = Vec::new();
        let mut v = intent().extents[0].volume.clone();
        v.outline = Outline::Polygon {
            vertices: vec![LatLng { lat: 1.0, lng: 1.0 }, LatLng { lat: 2.0, lng: 2.0 }],
        };
        v.put(&mut two);
        assert!(PreparedVolume::take(&mut Reader::new(&two)).is_err());
    }
}
