//! The line between parties: peers, members, missions and accreditation,
//! channels, messages with military precedence, receipts and
//! acknowledgements — as pure data and decisions — and the canonical bytes
//! of every record the line signs.
//!
//! The line's records are log entries: a node's own record is an entry it
//! signs; a peer's record is the peer's entry, appended verbatim and
//! followed by this node's `line.receipt` entry (which is the signed receipt
//! returned to the peer). [`state::LineState`] is rebuilt by applying the
//! `line.*` entries of the log in order, so the log is the line's only
//! store. Decisions ([`decide`]) are plain functions of the state, the
//! command and the time.
//!
//! Must never do I/O, read the clock or draw randomness: the node passes
//! `now`, ids and key seeds in.

pub mod decide;
pub mod record;
pub mod state;

pub use decide::{LineDecision, LineEvent, LineOutcome};
pub use record::*;
pub use state::LineState;

use thiserror::Error;

/// Why the line refused a command, in the caller's terms.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    #[error("{field}: {message}")]
    Malformed { field: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: the signature does not verify")]
    BadSignature { field: String },
    #[error("unknown peer {0:?}")]
    UnknownPeer(String),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("member {member} is not registered by this party{detail}")]
    UnknownMember { member: String, detail: String },
    #[error("member {member} is not accredited: {reason}")]
    NotAccredited { member: String, reason: String },
    #[error("the {sphere} channel with {peer} is {state}{detail}")]
    ChannelNotOpen {
        peer: String,
        sphere: record::Sphere,
        state: record::ChannelState,
        detail: String,
    },
    #[error("the mission of {guest} is at its quota of {quota} positions")]
    QuotaExceeded { guest: String, quota: u32 },
    #[error("{field}: expected sequence number {expected}, got {got}")]
    OutOfSequence {
        field: String,
        expected: u64,
        got: u64,
    },
    /// A peer sent a record beyond the next one expected on its lane.
    #[error("record {got} on lane {lane} of {origin} arrived before {expected}")]
    Gap {
        origin: String,
        lane: record::Precedence,
        expected: u64,
        got: u64,
    },
    /// A peer's record that must wait for records of a higher lane sent
    /// before it.
    #[error("the record waits for record {needed} of lane {lane} of {origin} (have {have})")]
    Waiting {
        origin: String,
        lane: record::Precedence,
        needed: u64,
        have: u64,
    },
    /// An operation touching the line of contact is not yet acknowledged
    /// by a peer.
    #[error("activation held: {reason}")]
    ActivationHeld { intent: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    /// A peer's record that this node will not take at all (not even as
    /// evidence): unknown origin, wrong destination.
    #[error("record refused: {0}")]
    RecordRefused(String),
}

impl LineError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        LineError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The request field at fault, where there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            LineError::Malformed { field, .. }
            | LineError::Invalid { field, .. }
            | LineError::BadSignature { field }
            | LineError::OutOfSequence { field, .. } => Some(field),
            _ => None,
        }
    }
}
