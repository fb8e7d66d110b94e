//! Instants as microseconds since the Unix epoch, UTC. Parsing and printing
//! RFC 3339 is the wire's business (`api`); the domain only compares and adds.

use serde::{Deserialize, Serialize};

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    pub const fn from_unix_micros(us: i64) -> Self {
        Timestamp(us)
    }
    pub const fn unix_micros(self) -> i64 {
        self.0
    }
    pub fn plus_seconds(self, s: i64) -> Self {
        Timestamp(self.0.saturating_add(s.saturating_mul(1_000_000)))
    }
    pub fn minus_seconds(self, s: i64) -> Self {
        Timestamp(self.0.saturating_sub(s.saturating_mul(1_000_000)))
    }
    /// Days since the epoch, as used for the time axis of the index.
    pub fn as_days(self) -> f64 {
        self.0 as f64 / 86_400_000_000.0
    }
}
