//! The airspace: everything Detente decides about 4D volumes, and nothing else.
//!
//! Owns the ASTM F3548-21 data model as domain types (operational intents,
//! constraints, subscriptions, OVNs, USS availability), the geometry of 4D
//! volumes on WGS-84 with exact intersection, the spatio-temporal index, the
//! key check, the state transitions and the conflicts Detente reports beyond
//! the standard.
//!
//! This crate must never do I/O, read the clock or draw randomness: the `node`
//! crate passes `now` and fresh identifiers in, so every decision is a plain
//! function of its inputs and can be tested (and property-tested) as such.

pub mod conflict;
pub mod decide;
pub mod error;
pub mod geometry;
pub mod index;
pub mod model;
mod planar;
pub mod snapshot;
pub mod state;
pub mod timestamp;

pub use conflict::{Conflict, ConflictKind, VolumeOverlap};
pub use decide::{Decision, Event, Outcome};
pub use error::{DomainError, GeometryError};
pub use geometry::{LatLng, Limits, Outline, PreparedVolume, Volume4D};
pub use model::*;
pub use state::AirspaceState;
pub use timestamp::Timestamp;
