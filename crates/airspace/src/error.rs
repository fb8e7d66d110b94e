//! What can go wrong in a decision, in the caller's terms.

use crate::model::{Constraint, EntityId, OperationalIntent, OperationalIntentState};
use thiserror::Error;

/// Why a geometry is impossible; `field` is the path below the volume
/// (e.g. `volume.outline_polygon.vertices[3].lat`), prefixed by the caller.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{field}: {message}")]
pub struct GeometryError {
    pub field: String,
    pub message: String,
    /// True when the only problem is that the area is larger than allowed
    /// (the spec answers 413 for that, 400 for everything else).
    pub too_large: bool,
}

impl GeometryError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        GeometryError {
            field: field.into(),
            message: message.into(),
            too_large: false,
        }
    }
    pub fn too_large(field: impl Into<String>, message: impl Into<String>) -> Self {
        GeometryError {
            field: field.into(),
            message: message.into(),
            too_large: true,
        }
    }
    /// The same error, with `prefix.` in front of its field.
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// A refused command. Each variant maps to exactly one HTTP status in `api`.
#[derive(Debug, Clone, Error)]
pub enum DomainError {
    #[error("{field}: {message}")]
    InvalidInput { field: String, message: String },
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("the OVN given does not match the current OVN of {kind} {id}")]
    OvnMismatch { kind: &'static str, id: EntityId },
    #[error("the version given does not match the current version of subscription {id}")]
    VersionMismatch { id: EntityId },
    #[error("the current version of {uss}'s availability is {current:?}, not {given:?}")]
    AvailabilityVersionMismatch {
        uss: String,
        current: String,
        given: String,
    },
    #[error("{kind} {id} is managed by another client")]
    NotManager { kind: &'static str, id: String },
    #[error(
        "the key does not prove knowledge of {} operational intent(s) and {} constraint(s) in this airspace",
        missing_operational_intents.len(),
        missing_constraints.len()
    )]
    KeyCheckFailed {
        missing_operational_intents: Vec<OperationalIntent>,
        missing_constraints: Vec<Constraint>,
    },
    #[error("USS {uss} is marked Down in the DSS and may not {action}")]
    UssDown { uss: String, action: &'static str },
    #[error("an operational intent may not go from {from:?} to {to:?}")]
    InvalidTransition {
        from: Option<OperationalIntentState>,
        to: OperationalIntentState,
    },
    /// A client's quota is used up (the reference DSS answers 429,
    /// "resource exhausted", for too many subscriptions in one area).
    #[error("{field}: {message}")]
    QuotaExceeded { field: String, message: String },
    /// Larger than the node keeps (413).
    #[error("{field}: {message}")]
    TooLarge { field: String, message: String },
    #[error("subscription {id} is needed by operational intent(s) {dependents:?}: {message}")]
    SubscriptionInUse {
        id: EntityId,
        dependents: Vec<EntityId>,
        message: String,
    },
}

/// Why a state snapshot's record cannot be read ([`crate::snapshot`]).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("the state snapshot is unreadable: {0}")]
pub struct SnapshotError(pub String);
