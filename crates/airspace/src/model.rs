//! The F3548-21 entities as the DSS keeps them (domain types, not the JSON
//! schema: `api` owns the wire shapes).

use crate::geometry::{Limits, PreparedVolume, Volume4D, prepare};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// F3548 `EntityID`: a UUIDv4 naming an operational intent or a constraint.
pub type EntityId = uuid::Uuid;
/// F3548 `SubscriptionID`.
pub type SubscriptionId = uuid::Uuid;

/// Opaque version number of an entity, shown only to its manager.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ovn(pub String);

impl Ovn {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The OVN of a copy held for a peer is known only as its SHA-256, written
/// `sha256:<hex>` (no OVN this node draws has that form).
pub const OVN_HASH_PREFIX: &str = "sha256:";

/// Whether `presented` (from a client's key) is the current OVN `ovn` of an
/// entity: equal, or, for a peer's copy, of the same SHA-256.
pub fn key_matches(ovn: &Ovn, presented: &Ovn) -> bool {
    if ovn == presented {
        return true;
    }
    let Some(hex) = ovn.0.strip_prefix(OVN_HASH_PREFIX) else {
        return false;
    };
    use sha2::Digest;
    let digest = sha2::Sha256::digest(presented.0.as_bytes());
    let mine: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    mine == hex
}

/// F3548 `OperationalIntentState`. `Ended` is not a state an intent is put
/// into: an operational intent ends by being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationalIntentState {
    Accepted,
    Activated,
    Nonconforming,
    Contingent,
}

impl OperationalIntentState {
    /// F3548: Accepted and Activated writes must present a key; off-nominal
    /// states are adjusted as flown and may omit it.
    pub fn requires_key(self) -> bool {
        matches!(self, Self::Accepted | Self::Activated)
    }
    /// A subscription is required in every state but Accepted.
    pub fn requires_subscription(self) -> bool {
        !matches!(self, Self::Accepted)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Activated => "Activated",
            Self::Nonconforming => "Nonconforming",
            Self::Contingent => "Contingent",
        }
    }
}

/// F3548 `UssAvailabilityState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UssAvailabilityState {
    Unknown,
    Normal,
    Down,
}

/// Serialises prepared volumes as their plain `Volume4D`s; on the way back
/// they are prepared again (stored data was valid when written, so only the
/// structural limits are relaxed, never the geometry checks).
pub mod volumes_serde {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[PreparedVolume], s: S) -> Result<S::Ok, S::Error> {
        let plain: Vec<&Volume4D> = v.iter().map(|p| &p.volume).collect();
        plain.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PreparedVolume>, D::Error> {
        let plain = Vec::<Volume4D>::deserialize(d)?;
        let limits = Limits {
            max_vertices: usize::MAX,
            max_area_m2: f64::INFINITY,
            trusted: true,
        };
        // Into a vector of exactly their number: collected through a
        // `Result`, a vector cannot know how many will come and starts with
        // room for four (1,120 bytes where most records hold one volume, 280
        // — held as long as the record).
        let mut prepared = Vec::with_capacity(plain.len());
        for v in plain {
            prepared.push(prepare(v, &limits).map_err(serde::de::Error::custom)?);
        }
        Ok(prepared)
    }
}

/// Earliest start and latest end over a set of volumes.
pub fn time_bounds(extents: &[PreparedVolume]) -> (Timestamp, Timestamp) {
    let start = extents
        .iter()
        .map(|v| v.time.0)
        .min()
        .unwrap_or(Timestamp::MIN);
    let end = extents
        .iter()
        .map(|v| v.time.1)
        .max()
        .unwrap_or(Timestamp::MAX);
    (start, end)
}

/// F3548 `OperationalIntentReference`, with the extents the DSS indexes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationalIntent {
    pub id: EntityId,
    pub manager: String,
    pub version: i32,
    pub state: OperationalIntentState,
    pub ovn: Ovn,
    #[serde(with = "volumes_serde")]
    pub extents: Vec<PreparedVolume>,
    pub uss_base_url: String,
    pub subscription_id: Option<SubscriptionId>,
    pub time_start: Timestamp,
    pub time_end: Timestamp,
    /// The node's change sequence number when this version was written.
    pub updated_seq: u64,
}

/// F3548 `ConstraintReference`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub id: EntityId,
    pub manager: String,
    pub version: i32,
    pub ovn: Ovn,
    #[serde(with = "volumes_serde")]
    pub extents: Vec<PreparedVolume>,
    pub uss_base_url: String,
    pub time_start: Timestamp,
    pub time_end: Timestamp,
    pub updated_seq: u64,
}

/// F3548 `Subscription`. Explicit subscriptions have one volume; implicit
/// ones cover exactly the extents of the operational intent that made them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub manager: String,
    /// Opaque version string; changes on every write by a USS, not when the
    /// notification index moves.
    pub version: String,
    pub notification_index: i32,
    #[serde(with = "volumes_serde")]
    pub extents: Vec<PreparedVolume>,
    pub uss_base_url: String,
    pub notify_for_operational_intents: bool,
    pub notify_for_constraints: bool,
    pub implicit: bool,
    pub time_start: Timestamp,
    pub time_end: Timestamp,
    pub updated_seq: u64,
}

/// F3548 `UssAvailabilityStatus` with its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UssAvailability {
    pub uss: String,
    pub availability: UssAvailabilityState,
    /// Empty until first set (F3548 `old_version` defaults to "").
    pub version: String,
}

/// An F3548 `ErrorReport` as archived: the exchange is kept verbatim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub reporter: String,
    pub received: Timestamp,
    /// The `exchange` object exactly as received (JSON text).
    pub exchange_json: String,
}

/// Who filed a report and when: what the report quota counts (read from a
/// stored report, its exchange skipped).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ReportStamp {
    pub reporter: String,
    pub received: Timestamp,
}

/// A USS to notify after a change, with the subscriptions that triggered it
/// and their new notification indices (F3548 `SubscriberToNotify`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberToNotify {
    pub uss_base_url: String,
    pub subscriptions: Vec<(SubscriptionId, i32)>,
}
