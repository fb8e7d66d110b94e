//! The node: its use cases, its writer and the ports they run on.
//!
//! - [`dss`]: the F3548 strategic deconfliction service; [`line`](mod@line): the
//!   direct line; [`log`]: checkpoints, entries and proofs of the evidence
//!   log; [`witness`]: cosigning peers' checkpoints; [`evidence`]: what a
//!   bundle about an entity holds.
//! - [`writer`]: one task that batches every write, runs the pure decisions
//!   (`airspace`, `liaison`) and their follow-ups ([`contact`] notices,
//!   [`share`] with peers, receipts), keeps the in-memory states and the
//!   log's tree, and commits each batch through [`persist::Persistence`];
//!   [`entries`]: how each decision becomes a log entry.
//! - [`ports`]: [`Store`] (the writer, as the use cases see it), [`Clock`],
//!   [`Ids`], [`TileSource`] — and the only place where the wall clock and
//!   randomness are read ([`SystemClock`], [`RandomIds`]).
//!
//! Must never know SQL or HTTP.

use airspace::{DomainError, GeometryError};
use thiserror::Error;

pub use airspace;
pub use liaison;
pub use tlog;

pub mod caller;
pub mod contact;
pub mod dss;
pub mod entries;
pub mod evidence;
pub mod line;
pub mod log;
pub mod persist;
pub mod ports;
pub mod share;
pub mod witness;
pub mod writer;

pub use caller::{Caller, Scope};
pub use dss::{
    DEFAULT_MAX_REPORTS_PER_DAY, DEFAULT_MAX_STORED_POINTS_PER_CLIENT,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_AREA, Dss, IntentRequest, Settings, SubscriptionRequest,
};
pub use log::{Log, MAX_ENTRIES_PER_REQUEST};
pub use ports::*;
pub use witness::{Witness, WitnessOutcome};

#[derive(Debug, Clone, Error)]
pub enum NodeError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Line(#[from] liaison::LineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<GeometryError> for NodeError {
    fn from(e: GeometryError) -> Self {
        NodeError::Domain(DomainError::Geometry(e))
    }
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> NodeError {
    NodeError::Domain(DomainError::InvalidInput {
        field: field.into(),
        message: message.into(),
    })
}
