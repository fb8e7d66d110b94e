//! The interfaces the use cases run on — the node's core ([`Store`]: the
//! writer in [`crate::writer`]), the wall clock ([`Clock`]), fresh
//! identifiers ([`Ids`]), a local basemap ([`TileSource`]) — with the
//! production clock and randomness, the only place either is read.

use airspace::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use thiserror::Error;
use uuid::Uuid;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A local raster tile source for the console's map (an operator's MBTiles
/// file), served by the node itself: no tile ever comes from outside.
pub trait TileSource: Send + Sync {
    /// What the map needs to know: format, zoom range, attribution.
    fn info(&self) -> &TileInfo;
    /// The tile at `z/x/y` (XYZ numbering, y from the north), if the source has it.
    fn tile(&self, z: u8, x: u32, y: u32) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>>;
}

/// A tile source's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct TileInfo {
    pub name: String,
    /// `png`, `jpg` or `webp`.
    pub format: String,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub attribution: String,
}

/// A committed decision of the line: its outcome and the leaves it appended
/// to the log from `first_index` on.
#[derive(Debug, Clone)]
pub struct LineCommit {
    pub outcome: liaison::LineOutcome,
    pub first_index: u64,
    pub leaves: Vec<Vec<u8>>,
}

/// What the console keeps in the store beside the airspace and the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A login challenge already answered (each is answered once).
    ConsoleChallenge,
    /// A console session logged out before its end.
    ConsoleLogout,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::ConsoleChallenge => "console.challenge",
            Mark::ConsoleLogout => "console.logout",
        }
    }
}

/// The store could not do what was asked: nothing of the write was kept.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StoreError {
    /// The disk or the database failed this request.
    #[error("storage failure: {0}")]
    Failed(String),
    /// The store cannot be reached (the database is down or unreachable,
    /// or the node is reloading after a failed commit): the request may be
    /// retried once it is back.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A write's commit failed and the database could not be asked
    /// since whether it holds the write: it may or may not have taken
    /// effect.
    #[error("storage outcome unknown: {0}")]
    OutcomeUnknown(String),
}

impl StoreError {
    pub fn message(&self) -> &str {
        match self {
            StoreError::Failed(m) | StoreError::Unavailable(m) | StoreError::OutcomeUnknown(m) => m,
        }
    }
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Persistence of the airspace. A write runs its decision against the
/// current state with every other write excluded, and answers only once the
/// events are durable (synced) — or not at all kept.
/// Hears of each group commit: how many writes it took, how long from
/// its start to durable (or failed), and whether it committed.
pub trait CommitObserver: Send + Sync + 'static {
    fn committed(&self, writes: usize, seconds: f64, ok: bool);
}

pub trait Store: Send + Sync + 'static {
    fn transact(
        &self,
        w: crate::dss::AirspaceWrite,
    ) -> BoxFuture<'_, Result<Result<Decision, DomainError>, StoreError>>;
    /// Runs `f` on a consistent view of the committed state.
    fn read(&self, f: &mut dyn FnMut(&AirspaceState)) -> Result<(), StoreError>;
    /// Waits until reads hold every write that any replica of this node
    /// had answered when this was called: a read that starts after a
    /// write's answer sees it, on every replica. At once where this process
    /// is its database's only writer.
    fn settle(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    /// Whether the store answers now (false while it cannot reach its
    /// database and reads and writes are refused as unavailable).
    fn available(&self) -> bool {
        true
    }
    /// Records `id` as a [`Mark`] of `kind` until `until_ms`, for every
    /// replica of the node and across restarts; whether it was not yet
    /// recorded. Marks whose time is past `now_ms` are dropped.
    fn mark_once(
        &self,
        kind: Mark,
        id: String,
        until_ms: u64,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// The ids marked as `kind` whose time is not past `now_ms`, with it.
    fn marks(
        &self,
        kind: Mark,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>>;

    /// Runs the line's decisions in order, each seeing the ones before it,
    /// with every other write excluded; each answers once its entries are
    /// durable. The line's state is rebuilt from the log at open.
    #[allow(clippy::type_complexity)]
    fn transact_line(
        &self,
        writes: Vec<crate::line::LineWrite>,
    ) -> BoxFuture<'_, Vec<Result<Result<LineCommit, liaison::LineError>, StoreError>>>;
    /// As [`Store::transact_line`], ahead of every queued write that is
    /// not urgent (the FLASH lane).
    #[allow(clippy::type_complexity)]
    fn transact_line_urgent(
        &self,
        writes: Vec<crate::line::LineWrite>,
    ) -> BoxFuture<'_, Vec<Result<Result<LineCommit, liaison::LineError>, StoreError>>> {
        self.transact_line(writes)
    }
    /// Runs `f` on the line's state.
    fn read_line(&self, f: &mut dyn FnMut(&liaison::LineState)) -> Result<(), StoreError>;
    /// Notified after every commit that appended records of the line (so
    /// that delivery to peers starts at once).
    fn line_appended(&self) -> &tokio::sync::Notify;
    /// The changes of peers' copies this process committed, for the local
    /// subscriptions they touched, in commit order; the first caller gets
    /// them (the notifier), later ones `None`.
    fn take_copy_notices(&self) -> Option<tokio::sync::mpsc::Receiver<crate::share::CopyNotice>> {
        None
    }
    /// Hands every group commit of this process, from now on, to `o`.
    fn observe_commits(&self, o: Arc<dyn CommitObserver>) {
        let _ = o;
    }
    /// The committed leaves at `indices` (missing ones are left out).
    fn log_leaves(&self, indices: Vec<u64>) -> BoxFuture<'_, Result<Vec<Leaf>, StoreError>>;

    /// Leaves of the evidence log that are committed (synced). Every
    /// committed event is appended to the log as an entry in the same
    /// transaction: no change without its entry, no entry without its change.
    fn log_size(&self) -> u64;
    /// Root hash of the log at `size` ≤ `log_size()`.
    /// (Roots and proofs may read the log's stored tiles: the tree is not
    /// all in memory.)
    fn log_root(&self, size: u64) -> BoxFuture<'_, Result<tlog::Hash, StoreError>>;
    /// RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves.
    #[allow(clippy::type_complexity)]
    fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> BoxFuture<'_, Result<Result<Vec<tlog::Hash>, tlog::proof::ProofError>, StoreError>>;
    /// RFC 9162 consistency proof between two sizes.
    #[allow(clippy::type_complexity)]
    fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> BoxFuture<'_, Result<Result<Vec<tlog::Hash>, tlog::proof::ProofError>, StoreError>>;
    /// The first `width` hashes of tile `index` of tree level `8 * level`
    /// (C2SP tlog-tiles), if the committed log holds them all.
    fn log_tile(
        &self,
        level: u8,
        index: u64,
        width: usize,
    ) -> BoxFuture<'_, Result<Option<Vec<tlog::Hash>>, StoreError>>;
    /// The lowest index of a committed entry with this RFC 6962 leaf hash.
    fn log_index_of(&self, leaf: tlog::Hash) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;
    /// The leaf bytes of entries `start..end` (committed ones only).
    fn log_entries(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>>;
    /// Keeps a signed checkpoint note for `size` (durably, before returning).
    fn save_checkpoint(&self, size: u64, note: String) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The newest checkpoint kept, with its size.
    fn latest_checkpoint(&self) -> Option<(u64, String)>;

    /// The latest checkpoint this node cosigned, as a witness, for `origin`.
    fn witnessed(
        &self,
        origin: &str,
    ) -> BoxFuture<'_, Result<Option<tlog::witness::Cosigned>, StoreError>>;
    /// Replaces it (durably, before returning).
    fn save_witnessed(
        &self,
        origin: &str,
        c: tlog::witness::Cosigned,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Appends a witness's cosignature line to the kept checkpoint of `size`.
    fn add_cosignature(&self, size: u64, line: String) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Every kept pair: (origin, note a, note b, found at in ms).
    fn misbehaviour(&self) -> BoxFuture<'_, Result<Vec<Misbehaviour>, StoreError>>;
    /// Keeps two signed checkpoints of `origin` that cannot both be true.
    fn save_misbehaviour(
        &self,
        origin: &str,
        a: String,
        b: String,
        found_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Whether this process runs the node's singleton duties (signing
    /// checkpoints, submitting them to witnesses, delivering to peers,
    /// sweeping expired records). Always for a store with one process;
    /// for replicas on one database, exactly one of them at a time.
    fn is_leader(&self) -> bool {
        true
    }
    /// Commits what is queued, then closes the database (the embedded
    /// store checkpoints its WAL); writes after it are refused.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A log leaf: its index and bytes.
pub type Leaf = (u64, Vec<u8>);

/// A kept pair of one origin's signed checkpoints that cannot both be true:
/// (origin, checkpoint a, checkpoint b, found at in ms since the epoch).
pub type Misbehaviour = (String, String, String, i64);

/// The wall clock, injectable for tests.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one wrapper around the wall clock
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_unix_micros(d.as_micros() as i64)
    }
}

/// Fresh identifiers and OVNs.
pub trait Ids: Send + Sync + 'static {
    fn uuid_v4(&self) -> Uuid;
    /// An OVN nobody can guess: the key check is only as strong as this.
    fn ovn(&self) -> Ovn;
    /// 32 bytes from the operating system's CSPRNG (key seeds).
    fn seed(&self) -> Result<[u8; 32], StoreError>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl Ids for RandomIds {
    #[allow(clippy::disallowed_methods)] // the one wrapper around randomness
    fn uuid_v4(&self) -> Uuid {
        Uuid::new_v4()
    }
    #[allow(clippy::disallowed_methods)]
    fn ovn(&self) -> Ovn {
        // 244 random bits, 64 characters: within F3548's 16..=128.
        Ovn(format!(
            "{}{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        ))
    }
    fn seed(&self) -> Result<[u8; 32], StoreError> {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s)
            .map_err(|e| StoreError::Failed(format!("the OS has no randomness: {e}")))?;
        Ok(s)
    }
}
