//! The node's use cases: what a caller may ask of the DSS, checked,
//! turned into a pure `airspace` decision and committed through [`Store`].
//!
//! Owns the interfaces the use cases need — [`Store`], [`Clock`], [`Ids`] —
//! and the only place where the wall clock and randomness are read
//! ([`SystemClock`], [`RandomIds`]). Must never know SQL or HTTP.

use airspace::decide::{
    self, DeleteConstraint, DeleteIntent, DeleteSubscription, ImplicitSubscription, PutConstraint,
    PutIntent, PutSubscription,
};
use airspace::geometry::{Limits, PreparedVolume, Volume4D, prepare};
use airspace::state::{Counts, points_of};
use airspace::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use thiserror::Error;
use uuid::Uuid;

pub use airspace;
pub use liaison;
pub use tlog;

pub mod contact;
pub mod evidence;
pub mod line;
pub mod log;
pub mod persist;
pub mod share;
pub mod writer;

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
/// A decision to run inside the store's serialised write path.
pub type WriteFn = Box<dyn FnOnce(&AirspaceState) -> Result<Decision, DomainError> + Send>;
/// A decision of the line, run in the same serialised write path.
pub type LineWriteFn = Box<
    dyn FnOnce(
            &liaison::LineState,
            &AirspaceState,
        ) -> Result<liaison::LineDecision, liaison::LineError>
        + Send,
>;

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
pub trait Store: Send + Sync + 'static {
    fn transact(
        &self,
        f: WriteFn,
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
        fs: Vec<LineWriteFn>,
    ) -> BoxFuture<'_, Vec<Result<Result<LineCommit, liaison::LineError>, StoreError>>>;
    /// As [`Store::transact_line`], ahead of every queued write that is
    /// not urgent (the FLASH lane).
    #[allow(clippy::type_complexity)]
    fn transact_line_urgent(
        &self,
        fs: Vec<LineWriteFn>,
    ) -> BoxFuture<'_, Vec<Result<Result<LineCommit, liaison::LineError>, StoreError>>> {
        self.transact_line(fs)
    }
    /// Runs `f` on the line's state.
    fn read_line(&self, f: &mut dyn FnMut(&liaison::LineState)) -> Result<(), StoreError>;
    /// Notified after every commit that appended records of the line (so
    /// that delivery to peers starts at once).
    fn line_appended(&self) -> &tokio::sync::Notify;
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

/// F3548 scopes, and Detente's own for the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    StrategicCoordination,
    ConstraintManagement,
    ConstraintProcessing,
    ConformanceMonitoringSa,
    AvailabilityArbitration,
    /// A duty officer: reads the line, relays member-signed messages and
    /// acknowledgements.
    LineMember,
    /// The party's line administrator: peers, members, the host's
    /// accreditation decisions, channel notices.
    LineAdmin,
    /// A monitoring system reading `/metrics`, where the node keeps them
    /// private (`private_metrics`).
    Metrics,
    /// F3411 (remote ID) ISA read and write: Detente serves no remote ID,
    /// but DSS pool tooling checks tokens with them (`/aux/v1/validate_oauth`).
    IsaRead,
    IsaWrite,
}

impl Scope {
    /// The F3548 scopes.
    pub const ALL: [Scope; 5] = [
        Scope::StrategicCoordination,
        Scope::ConstraintManagement,
        Scope::ConstraintProcessing,
        Scope::ConformanceMonitoringSa,
        Scope::AvailabilityArbitration,
    ];
    /// Detente's scopes for the line.
    pub const LINE: [Scope; 2] = [Scope::LineMember, Scope::LineAdmin];
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::StrategicCoordination => "utm.strategic_coordination",
            Scope::ConstraintManagement => "utm.constraint_management",
            Scope::ConstraintProcessing => "utm.constraint_processing",
            Scope::ConformanceMonitoringSa => "utm.conformance_monitoring_sa",
            Scope::AvailabilityArbitration => "utm.availability_arbitration",
            Scope::LineMember => "detente.line",
            Scope::LineAdmin => "detente.line.admin",
            Scope::Metrics => "detente.metrics",
            Scope::IsaRead => "dss.read.identification_service_areas",
            Scope::IsaWrite => "dss.write.identification_service_areas",
        }
    }
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL
            .into_iter()
            .chain(Scope::LINE)
            .chain([Scope::Metrics, Scope::IsaRead, Scope::IsaWrite])
            .find(|x| x.as_str() == s)
    }
}

/// An authenticated client: its `sub` (the manager of what it writes) and scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn has(&self, s: Scope) -> bool {
        self.scopes.contains(&s)
    }
}

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

fn invalid(field: impl Into<String>, message: impl Into<String>) -> NodeError {
    NodeError::Domain(DomainError::InvalidInput {
        field: field.into(),
        message: message.into(),
    })
}

/// A create or update of an operational intent, as the use case takes it.
#[derive(Clone, Debug)]
pub struct IntentRequest {
    pub extents: Vec<Volume4D>,
    pub key: Vec<Ovn>,
    pub state: OperationalIntentState,
    pub uss_base_url: String,
    pub subscription_id: Option<SubscriptionId>,
    pub new_subscription: Option<ImplicitSubscription>,
    pub requested_ovn_suffix: Option<Uuid>,
}

#[derive(Clone, Debug)]
pub struct SubscriptionRequest {
    pub extents: Volume4D,
    pub uss_base_url: String,
    pub notify_for_operational_intents: bool,
    pub notify_for_constraints: bool,
}

/// Node settings the use cases need.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: Limits,
    /// Default duration of a subscription whose end time is not given
    /// (at most `decide::MAX_SUBSCRIPTION_S`).
    pub default_subscription_s: i64,
    /// How far the time in a `requested_ovn_suffix` may be from now.
    pub ovn_suffix_skew_s: i64,
    /// How long ended entities stay before the sweeper removes them.
    pub expiry_grace_s: i64,
    /// Most live explicit subscriptions of one client meeting one area.
    pub max_subscriptions_per_area: usize,
    /// Most reports one client may file in a day.
    pub max_reports_per_day: usize,
    /// Most outline points one client's live entities may hold.
    pub max_stored_points_per_client: usize,
}

/// Refuses a write that would leave `manager` holding more than `max`
/// outline points (`AirspaceState::stored_points`); a write that does not
/// grow what it holds always passes, so a client over its quota can still
/// shrink and delete.
fn within_storage(
    s: &airspace::AirspaceState,
    manager: &str,
    old: usize,
    new: usize,
    max: usize,
) -> Result<(), DomainError> {
    let after = s
        .stored_points(manager)
        .saturating_sub(old)
        .saturating_add(new);
    if new > old && after > max {
        return Err(DomainError::QuotaExceeded {
            field: "extents".into(),
            message: format!(
                "this client's live operational intents, constraints and subscriptions would hold {after} outline points; at most {max} are allowed (delete some first)"
            ),
        });
    }
    Ok(())
}

/// The reference DSS's limit on one client's subscriptions in an area.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_AREA: usize = 10;
/// Reports one client may file in a day, by default.
pub const DEFAULT_MAX_REPORTS_PER_DAY: usize = 1_000;
/// Outline points one client's live entities may hold, by default: about
/// 250,000 operations of a few vertices each, with their implicit
/// subscriptions.
pub const DEFAULT_MAX_STORED_POINTS_PER_CLIENT: usize = 2_000_000;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            default_subscription_s: 24 * 3600,
            ovn_suffix_skew_s: 300,
            expiry_grace_s: 300,
            max_subscriptions_per_area: DEFAULT_MAX_SUBSCRIPTIONS_PER_AREA,
            max_reports_per_day: DEFAULT_MAX_REPORTS_PER_DAY,
            max_stored_points_per_client: DEFAULT_MAX_STORED_POINTS_PER_CLIENT,
        }
    }
}

/// The strategic deconfliction service.
pub struct Dss {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    settings: Settings,
}

/// Outline points (`airspace::geometry::cost`) above which a request's
/// volumes are prepared on a blocking thread instead of an async worker:
/// about a millisecond of work.
const HEAVY_POINTS: usize = 1_000;

/// Heavy preparations under way at once: one per core less one (at least
/// one), so that they cannot take every core from the async workers that
/// answer everyone else.
fn heavy_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1))
    })
}

/// Runs `f` (geometry of `cost` outline points) where it holds up nobody:
/// inline when cheap, else on a blocking thread once a heavy slot is free.
async fn off_workers<T: Send + 'static>(
    cost: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    if cost <= HEAVY_POINTS {
        return Ok(f());
    }
    let _slot = heavy_slots()
        .acquire()
        .await
        .map_err(|e| NodeError::Store(StoreError::Failed(format!("geometry slots: {e}"))))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Store(StoreError::Failed(format!("preparing geometry: {e}"))))
}

/// Prepares a request's volumes. Their outlines together may have at most
/// `MAX_OUTLINE_POINTS` points (one volume at its limit, or several
/// smaller), which bounds a request's geometry before any of it is
/// computed.
async fn prepare_all(
    extents: Vec<Volume4D>,
    limits: &Limits,
    field: &str,
) -> Result<Vec<PreparedVolume>, NodeError> {
    if extents.is_empty() {
        return Err(invalid(field, "at least one volume is required"));
    }
    let cost = extents
        .iter()
        .map(airspace::geometry::cost)
        .fold(0usize, usize::saturating_add);
    if cost > airspace::geometry::MAX_OUTLINE_POINTS {
        return Err(NodeError::from(airspace::GeometryError::too_large(
            field,
            format!(
                "the volumes' outlines would have up to {cost} points in all once their edges are split every {:.0} km; at most {} per request are accepted",
                airspace::geometry::MAX_EDGE_M / 1e3,
                airspace::geometry::MAX_OUTLINE_POINTS
            ),
        )));
    }
    let (limits, field) = (limits.clone(), field.to_string());
    off_workers(cost, move || {
        extents
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                prepare(v, &limits).map_err(|e| NodeError::from(e.under(&format!("{field}[{i}]"))))
            })
            .collect()
    })
    .await?
}

impl Dss {
    /// Commits what is queued and closes the store (shutting down).
    pub async fn close(&self) {
        self.store.close().await
    }

    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        settings: Settings,
    ) -> Self {
        Dss {
            store,
            clock,
            ids,
            settings,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn commit(&self, f: WriteFn) -> Result<Outcome, NodeError> {
        Ok(self.store.transact(f).await??.outcome)
    }

    /// Runs `f` on the whole current state (for views such as the console's map).
    pub fn view<T>(&self, f: impl FnOnce(&AirspaceState) -> T) -> Result<T, NodeError> {
        self.read(f)
    }

    /// [`Self::read`] after every write any replica had answered (see
    /// [`Store::settle`]): what the DSS's own reads use.
    async fn read_settled<T>(&self, f: impl FnOnce(&AirspaceState) -> T) -> Result<T, NodeError> {
        self.store.settle().await?;
        self.read(f)
    }

    fn read<T>(&self, f: impl FnOnce(&AirspaceState) -> T) -> Result<T, NodeError> {
        let mut f = Some(f);
        let mut out = None;
        self.store.read(&mut |s| {
            if let Some(f) = f.take() {
                out = Some(f(s));
            }
        })?;
        out.ok_or_else(|| {
            NodeError::Store(StoreError::Failed("the store did not run the read".into()))
        })
    }

    /// F3548 `requested_ovn_suffix`: a UUIDv7 whose time is close to now.
    fn ovn_for(&self, id: EntityId, suffix: Option<Uuid>) -> Result<Ovn, NodeError> {
        let Some(s) = suffix else {
            return Ok(self.ids.ovn());
        };
        let ts = match (s.get_version_num(), s.get_timestamp()) {
            (7, Some(t)) => t,
            _ => return Err(invalid("requested_ovn_suffix", "must be a UUIDv7")),
        };
        let (secs, nanos) = ts.to_unix();
        let t = Timestamp::from_unix_micros(secs as i64 * 1_000_000 + nanos as i64 / 1000);
        let skew = (t.unix_micros() - self.now().unix_micros()).abs() / 1_000_000;
        if skew > self.settings.ovn_suffix_skew_s {
            return Err(invalid(
                "requested_ovn_suffix",
                format!(
                    "its time is {skew} s from now; at most {} s is accepted",
                    self.settings.ovn_suffix_skew_s
                ),
            ));
        }
        Ok(Ovn(format!("{id}_{s}")))
    }

    pub async fn put_intent(
        &self,
        caller: &Caller,
        id: EntityId,
        existing_ovn: Option<Ovn>,
        req: IntentRequest,
    ) -> Result<(OperationalIntent, Vec<SubscriberToNotify>), NodeError> {
        // F3548: only conformance monitoring declares an operation off its plan.
        if matches!(
            req.state,
            OperationalIntentState::Nonconforming | OperationalIntentState::Contingent
        ) && !caller.has(Scope::ConformanceMonitoringSa)
        {
            return Err(NodeError::Forbidden(format!(
                "only a client with the scope {} may declare an operational intent {}",
                Scope::ConformanceMonitoringSa.as_str(),
                req.state.as_str()
            )));
        }
        let extents = prepare_all(req.extents, &self.settings.limits, "extents").await?;
        if req.state == OperationalIntentState::Activated {
            // The line of contact: a peer must have accepted the notice of
            // exactly these extents first (acceptance only ever arrives, so
            // checking before the commit is enough).
            let mut hold = None;
            let mut line_read = Ok(());
            self.store.read(&mut |air| {
                line_read = self.store.read_line(&mut |line| {
                    hold = contact::activation_hold(line, air, &id, &extents);
                });
            })?;
            // Unread, the hold is unknown: refuse rather than let it pass.
            line_read?;
            if let Some(reason) = hold {
                return Err(liaison::LineError::ActivationHeld {
                    intent: id.to_string(),
                    reason,
                }
                .into());
            }
        }
        let cmd = PutIntent {
            id,
            manager: caller.sub.clone(),
            existing_ovn,
            extents,
            key: req.key,
            state: req.state,
            uss_base_url: req.uss_base_url,
            subscription_id: req.subscription_id,
            new_subscription: req.new_subscription,
            new_ovn: self.ovn_for(id, req.requested_ovn_suffix)?,
            new_subscription_id: self.ids.uuid_v4(),
            now: self.now(),
        };
        let max = self.settings.max_stored_points_per_client;
        intent_outcome(
            self.commit(Box::new(move |s| {
                let old = s.intent(&cmd.id).map_or(0, |i| points_of(&i.extents));
                within_storage(s, &cmd.manager, old, points_of(&cmd.extents), max)?;
                decide::put_intent(s, cmd)
            }))
            .await?,
        )
    }

    pub async fn delete_intent(
        &self,
        caller: &Caller,
        id: EntityId,
        ovn: Ovn,
    ) -> Result<(OperationalIntent, Vec<SubscriberToNotify>), NodeError> {
        let cmd = DeleteIntent {
            id,
            manager: caller.sub.clone(),
            ovn,
        };
        intent_outcome(
            self.commit(Box::new(move |s| decide::delete_intent(s, cmd)))
                .await?,
        )
    }

    /// What has ended is gone for every read, whenever the sweeper
    /// removes it.
    pub async fn get_intent(&self, id: EntityId) -> Result<OperationalIntent, NodeError> {
        let now = self.now();
        self.read_settled(|s| s.intent(&id).filter(|i| i.time_end > now).cloned())
            .await?
            .ok_or_else(|| {
                DomainError::NotFound {
                    kind: "operational intent",
                    id: id.to_string(),
                }
                .into()
            })
    }

    /// An area of interest (`decide::area_of_interest`); `None` matches nothing.
    async fn area(
        &self,
        area: Option<Volume4D>,
        field: &str,
    ) -> Result<Option<PreparedVolume>, NodeError> {
        let Some(v) = area else {
            return Err(invalid(field, "an area_of_interest is required"));
        };
        let (now, limits, field) = (self.now(), self.settings.limits.clone(), field.to_string());
        off_workers(airspace::geometry::cost(&v), move || {
            decide::area_of_interest(v, now, &limits, &field).map_err(NodeError::from)
        })
        .await?
    }

    pub async fn query_intents(
        &self,
        area: Option<Volume4D>,
    ) -> Result<Vec<OperationalIntent>, NodeError> {
        let Some(a) = self.area(area, "area_of_interest").await? else {
            return Ok(Vec::new());
        };
        let (a, now) = ([a], self.now());
        self.read_settled(|s| {
            s.intents_intersecting(&a)
                .into_iter()
                .filter(|i| i.time_end > now)
                .cloned()
                .collect()
        })
        .await
    }

    pub async fn put_constraint(
        &self,
        caller: &Caller,
        id: EntityId,
        existing_ovn: Option<Ovn>,
        extents: Vec<Volume4D>,
        uss_base_url: String,
    ) -> Result<(Constraint, Vec<SubscriberToNotify>), NodeError> {
        let extents = prepare_all(extents, &self.settings.limits, "extents").await?;
        let cmd = PutConstraint {
            id,
            manager: caller.sub.clone(),
            existing_ovn,
            extents,
            uss_base_url,
            new_ovn: self.ids.ovn(),
            now: self.now(),
        };
        let max = self.settings.max_stored_points_per_client;
        constraint_outcome(
            self.commit(Box::new(move |s| {
                let old = s.constraint(&cmd.id).map_or(0, |c| points_of(&c.extents));
                within_storage(s, &cmd.manager, old, points_of(&cmd.extents), max)?;
                decide::put_constraint(s, cmd)
            }))
            .await?,
        )
    }

    pub async fn delete_constraint(
        &self,
        caller: &Caller,
        id: EntityId,
        ovn: Ovn,
    ) -> Result<(Constraint, Vec<SubscriberToNotify>), NodeError> {
        let cmd = DeleteConstraint {
            id,
            manager: caller.sub.clone(),
            ovn,
        };
        constraint_outcome(
            self.commit(Box::new(move |s| decide::delete_constraint(s, cmd)))
                .await?,
        )
    }

    pub async fn get_constraint(&self, id: EntityId) -> Result<Constraint, NodeError> {
        let now = self.now();
        self.read_settled(|s| s.constraint(&id).filter(|c| c.time_end > now).cloned())
            .await?
            .ok_or_else(|| {
                DomainError::NotFound {
                    kind: "constraint",
                    id: id.to_string(),
                }
                .into()
            })
    }

    pub async fn query_constraints(
        &self,
        area: Option<Volume4D>,
    ) -> Result<Vec<Constraint>, NodeError> {
        let Some(a) = self.area(area, "area_of_interest").await? else {
            return Ok(Vec::new());
        };
        let (a, now) = ([a], self.now());
        self.read_settled(|s| {
            s.constraints_intersecting(&a)
                .into_iter()
                .filter(|c| c.time_end > now)
                .cloned()
                .collect()
        })
        .await
    }

    pub async fn put_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        existing_version: Option<String>,
        req: SubscriptionRequest,
    ) -> Result<(Subscription, Vec<OperationalIntent>, Vec<Constraint>), NodeError> {
        // F3548 and the reference DSS: either subscription scope may ask for
        // either kind of notification (what a client is then told is
        // governed by the read scopes of the references it fetches).
        let now = self.now();
        let mut v = req.extents;
        let (start_given, end_given) = (v.time_start.is_some(), v.time_end.is_some());
        // F3548 PutSubscriptionParameters: start defaults to now, end is
        // chosen by the DSS (on an update, `decide` keeps the current ones).
        let start = *v.time_start.get_or_insert(now);
        v.time_end.get_or_insert(
            start.plus_seconds(
                self.settings
                    .default_subscription_s
                    .min(decide::MAX_SUBSCRIPTION_S),
            ),
        );
        let limits = self.settings.limits.clone();
        let extents = off_workers(airspace::geometry::cost(&v), move || {
            prepare(v, &limits).map_err(|e| NodeError::from(e.under("extents")))
        })
        .await??;
        let cmd = PutSubscription {
            id,
            manager: caller.sub.clone(),
            existing_version,
            extents,
            uss_base_url: req.uss_base_url,
            notify_for_operational_intents: req.notify_for_operational_intents,
            notify_for_constraints: req.notify_for_constraints,
            now,
            start_given,
            end_given,
            max_per_area: self.settings.max_subscriptions_per_area,
        };
        let max = self.settings.max_stored_points_per_client;
        match self
            .commit(Box::new(move |s| {
                let old = s.subscription(&cmd.id).map_or(0, |c| points_of(&c.extents));
                let new = cmd.extents.points();
                within_storage(s, &cmd.manager, old, new, max)?;
                decide::put_subscription(s, cmd)
            }))
            .await?
        {
            Outcome::Subscription {
                subscription,
                intents,
                constraints,
            } => Ok((subscription, intents, constraints)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        version: String,
    ) -> Result<Subscription, NodeError> {
        let cmd = DeleteSubscription {
            id,
            manager: caller.sub.clone(),
            version,
        };
        match self
            .commit(Box::new(move |s| decide::delete_subscription(s, cmd)))
            .await?
        {
            Outcome::SubscriptionDeleted(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// A subscription is shown only to its manager.
    pub async fn get_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<(Subscription, Vec<EntityId>), NodeError> {
        let now = self.now();
        let (s, dependents) = self
            .read_settled(|s| {
                s.subscription(&id)
                    .filter(|x| x.time_end > now)
                    .map(|x| (x.clone(), s.dependents(&id)))
            })
            .await?
            .ok_or_else(|| {
                NodeError::from(DomainError::NotFound {
                    kind: "subscription",
                    id: id.to_string(),
                })
            })?;
        if s.manager != caller.sub {
            return Err(NodeError::Forbidden(format!(
                "subscription {id} is managed by another client"
            )));
        }
        Ok((s, dependents))
    }

    /// F3548: only the caller's own subscriptions are returned.
    /// With each subscription, its dependent operational intents.
    pub async fn query_subscriptions(
        &self,
        caller: &Caller,
        area: Option<Volume4D>,
    ) -> Result<Vec<(Subscription, Vec<EntityId>)>, NodeError> {
        let Some(a) = self.area(area, "area_of_interest").await? else {
            return Ok(Vec::new());
        };
        let (a, now) = ([a], self.now());
        self.read_settled(|s| {
            s.subscriptions_intersecting(&a)
                .into_iter()
                .filter(|x| x.manager == caller.sub && x.time_end > now)
                .map(|x| (x.clone(), s.dependents(&x.id)))
                .collect()
        })
        .await
    }

    /// Dependent operational intents of a subscription (F3548 `dependent_operational_intents`).
    pub fn dependents(&self, id: SubscriptionId) -> Result<Vec<EntityId>, NodeError> {
        self.read(|s| s.dependents(&id))
    }

    /// A USS's availability as every replica has it.
    pub async fn get_availability_settled(&self, uss: &str) -> Result<UssAvailability, NodeError> {
        self.read_settled(|s| s.availability(uss)).await
    }

    /// A USS's availability as this replica has it (for rendering
    /// references whose read has settled already).
    pub fn get_availability(&self, uss: &str) -> Result<UssAvailability, NodeError> {
        self.read(|s| s.availability(uss))
    }

    pub async fn set_availability(
        &self,
        uss: String,
        old_version: String,
        availability: UssAvailabilityState,
    ) -> Result<UssAvailability, NodeError> {
        let cmd = decide::SetAvailability {
            uss,
            old_version,
            availability,
        };
        match self
            .commit(Box::new(move |s| decide::set_availability(s, cmd)))
            .await?
        {
            Outcome::Availability(a) => Ok(a),
            other => Err(unexpected(other)),
        }
    }

    pub async fn file_report(
        &self,
        caller: &Caller,
        exchange_json: String,
    ) -> Result<Report, NodeError> {
        let report = Report {
            id: self.ids.uuid_v4().to_string(),
            reporter: caller.sub.clone(),
            received: self.now(),
            exchange_json,
        };
        let max = self.settings.max_reports_per_day;
        match self
            .commit(Box::new(move |s| decide::file_report(s, report, max)))
            .await?
        {
            Outcome::Report(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Current conflicts, in a stable order.
    pub async fn conflicts(&self) -> Result<Vec<Conflict>, NodeError> {
        self.read_settled(|s| s.conflicts().cloned().collect())
            .await
    }

    /// See [`Store::mark_once`].
    pub async fn mark_once(
        &self,
        kind: Mark,
        id: String,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<bool, NodeError> {
        Ok(self.store.mark_once(kind, id, until_ms, now_ms).await?)
    }

    /// See [`Store::marks`].
    pub async fn marks(&self, kind: Mark, now_ms: u64) -> Result<Vec<(String, u64)>, NodeError> {
        Ok(self.store.marks(kind, now_ms).await?)
    }

    /// Whether the store answers now (see [`Store::available`]).
    pub fn store_available(&self) -> bool {
        self.store.available()
    }

    pub fn counts(&self) -> Result<Counts, NodeError> {
        self.read(|s| s.counts())
    }

    /// Removes ended entities; returns (intents, constraints, subscriptions) removed.
    pub async fn expire(&self) -> Result<(usize, usize, usize), NodeError> {
        let (now, grace) = (self.now(), self.settings.expiry_grace_s);
        match self
            .commit(Box::new(move |s| decide::expire(s, now, grace)))
            .await?
        {
            Outcome::Expired {
                intents,
                constraints,
                subscriptions,
            } => Ok((intents, constraints, subscriptions)),
            other => Err(unexpected(other)),
        }
    }
}

fn intent_outcome(o: Outcome) -> Result<(OperationalIntent, Vec<SubscriberToNotify>), NodeError> {
    match o {
        Outcome::Intent {
            intent,
            subscribers,
        } => Ok((intent, subscribers)),
        other => Err(unexpected(other)),
    }
}

fn constraint_outcome(o: Outcome) -> Result<(Constraint, Vec<SubscriberToNotify>), NodeError> {
    match o {
        Outcome::Constraint {
            constraint,
            subscribers,
        } => Ok((constraint, subscribers)),
        other => Err(unexpected(other)),
    }
}

fn unexpected(o: Outcome) -> NodeError {
    NodeError::Store(StoreError::Failed(format!(
        "internal: unexpected outcome {o:?}"
    )))
}

/// Largest range of entries served in one request.
pub const MAX_ENTRIES_PER_REQUEST: u64 = 1000;

/// The evidence log's use cases: signing checkpoints, serving entries and
/// proofs.
pub struct Log {
    store: Arc<dyn Store>,
    signer: log::LogSigner,
}

impl Log {
    pub fn new(store: Arc<dyn Store>, signer: log::LogSigner) -> Self {
        Log { store, signer }
    }

    /// The verifier key of this log (C2SP signed-note vkey, type 0x01).
    /// Whether this process runs the log's singleton duties (signing
    /// checkpoints, submitting them to witnesses).
    pub fn is_leader(&self) -> bool {
        self.store.is_leader()
    }

    pub fn verifier_key(&self) -> String {
        self.signer.signer.verifier().to_vkey()
    }

    pub fn origin(&self) -> &str {
        self.signer.origin()
    }

    /// Signs and keeps a checkpoint if the log grew since the last one;
    /// returns the new size when it did. Sizes only grow and every root is
    /// computed over committed leaves of one append-only tree, so no two
    /// checkpoints this node signs can be inconsistent.
    pub async fn checkpoint_tick(&self) -> Result<Option<u64>, NodeError> {
        let size = self.store.log_size();
        let last = self.store.latest_checkpoint().map(|(s, _)| s);
        if last.is_some_and(|l| l >= size) {
            return Ok(None);
        }
        let root = self.store.log_root(size).await?;
        let note = self.signer.checkpoint(size, root);
        self.store.save_checkpoint(size, note).await?;
        Ok(Some(size))
    }

    /// The newest signed checkpoint (signing one first if none exists yet).
    pub async fn checkpoint(&self) -> Result<String, NodeError> {
        if self.store.latest_checkpoint().is_none() {
            self.checkpoint_tick().await?;
        }
        self.store
            .latest_checkpoint()
            .map(|(_, n)| n)
            .ok_or_else(|| {
                NodeError::Store(StoreError::Failed("no checkpoint could be signed".into()))
            })
    }

    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, NodeError> {
        let size = self.store.log_size();
        if start >= end || end > size {
            return Err(invalid(
                "end",
                format!("need start < end ≤ {size} (the log size)"),
            ));
        }
        if end - start > MAX_ENTRIES_PER_REQUEST {
            return Err(invalid(
                "end",
                format!("at most {MAX_ENTRIES_PER_REQUEST} entries per request"),
            ));
        }
        Ok(self.store.log_entries(start, end).await?)
    }

    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<tlog::Hash>, NodeError> {
        if size > self.store.log_size() {
            return Err(invalid("size", "larger than the log"));
        }
        self.store
            .inclusion_proof(index, size)
            .await?
            .map_err(|e| invalid("index", e.to_string()))
    }

    /// A tile per C2SP tlog-tiles (its hashes concatenated): `width` 256
    /// for a full tile, fewer for a partial one; None if the log does not
    /// hold it (yet).
    pub async fn tile(
        &self,
        level: u8,
        index: u64,
        width: usize,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self
            .store
            .log_tile(level, index, width)
            .await?
            .map(|hs| hs.concat()))
    }

    /// An entry bundle per C2SP tlog-tiles: entries `index * 256 ..` (as
    /// many as `width`), each after its length as a big-endian uint16.
    pub async fn entry_bundle(
        &self,
        index: u64,
        width: usize,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        let Some(start) = index.checked_mul(256) else {
            return Ok(None);
        };
        let end = start.saturating_add(width as u64);
        if end > self.store.log_size() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for e in self.store.log_entries(start, end).await? {
            let len = u16::try_from(e.len()).map_err(|_| {
                NodeError::Store(StoreError::Failed(
                    "an entry over 65,535 bytes does not fit an entry bundle's uint16 length"
                        .into(),
                ))
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&e);
        }
        Ok(Some(out))
    }

    /// The inclusion proof of the entry with this leaf hash (RFC 6962's
    /// get-proof-by-hash), with its index: the first entry of that hash.
    pub async fn inclusion_proof_by_hash(
        &self,
        leaf: tlog::Hash,
        size: u64,
    ) -> Result<(u64, Vec<tlog::Hash>), NodeError> {
        if size > self.store.log_size() {
            return Err(invalid("size", "larger than the log"));
        }
        let index = self
            .store
            .log_index_of(leaf)
            .await?
            .filter(|i| *i < size)
            .ok_or_else(|| {
                NodeError::Domain(DomainError::NotFound {
                    kind: "log entry with this leaf hash",
                    id: format!("{} in the tree of size {size}", tlog::hash::to_hex(&leaf)),
                })
            })?;
        Ok((index, self.inclusion_proof(index, size).await?))
    }

    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<tlog::Hash>, NodeError> {
        if second > self.store.log_size() {
            return Err(invalid("second", "larger than the log"));
        }
        self.store
            .consistency_proof(first, second)
            .await?
            .map_err(|e| invalid("first", e.to_string()))
    }

    pub fn size(&self) -> u64 {
        self.store.log_size()
    }

    /// An evidence bundle from the running node, as `(file name, bytes)` in
    /// the layout `detente evidence export` writes (docs/evidence.md):
    /// the selected entries, each with its inclusion proof against the
    /// newest checkpoint, and `keys.txt`. Entries newer than that checkpoint
    /// are left out.
    pub async fn bundle(
        &self,
        selection: &evidence::Selection,
    ) -> Result<Vec<(String, Vec<u8>)>, NodeError> {
        let checkpoint = self.checkpoint().await?;
        let (size, _) = self
            .store
            .latest_checkpoint()
            .ok_or_else(|| NodeError::Store(StoreError::Failed("no checkpoint".into())))?;
        // Read page by page: only the chosen entries are kept.
        let mut sel = evidence::Selector::new(selection);
        let mut start = 0;
        while start < size {
            let end = (start + MAX_ENTRIES_PER_REQUEST).min(size);
            sel.feed(&self.store.log_entries(start, end).await?)
                .map_err(|e| NodeError::Store(StoreError::Failed(e)))?;
            start = end;
        }
        if sel.chosen.is_empty() {
            return Err(invalid(
                "entity",
                "no entry covered by the newest checkpoint matches this selection",
            ));
        }
        let mut files = vec![(
            "keys.txt".to_string(),
            evidence::keys_txt(&self.verifier_key(), &sel.peers).into_bytes(),
        )];
        for (i, bytes) in sel.chosen {
            let proof = self
                .store
                .inclusion_proof(i, size)
                .await?
                .map_err(|e| invalid("index", e.to_string()))?;
            let p = tlog::bundle::TlogProof {
                extra: None,
                index: i,
                proof,
                checkpoint: checkpoint.clone(),
            };
            files.push((format!("{i}.entry"), bytes));
            files.push((format!("{i}.tlog-proof"), p.to_text().into_bytes()));
        }
        Ok(files)
    }
}

/// The witness: cosigns peers' checkpoints after checking them against the
/// last one it cosigned (C2SP tlog-witness `add-checkpoint`), one request at
/// a time so that check and persist are atomic.
pub struct Witness {
    store: Arc<dyn Store>,
    cosigner: tlog::cosignature::Cosigner,
    logs: Vec<tlog::Verifier>,
    clock: Arc<dyn Clock>,
    lock: tokio::sync::Mutex<()>,
}

/// What a witness request came to.
#[derive(Debug)]
pub enum WitnessOutcome {
    /// The cosignature line(s), the 200 body.
    Cosigned(String),
    Refused(tlog::witness::Refusal),
    /// Refused, and the two notes prove the origin signed inconsistent
    /// checkpoints; they are kept.
    Misbehaviour {
        origin: String,
        refusal: tlog::witness::Refusal,
    },
}

impl Witness {
    pub fn new(
        store: Arc<dyn Store>,
        cosigner: tlog::cosignature::Cosigner,
        logs: Vec<tlog::Verifier>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Witness {
            store,
            cosigner,
            logs,
            clock,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The cosigner's verifier key (type 0x04).
    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }

    /// Pairs of signed checkpoints that cannot both be true, as kept.
    pub async fn misbehaviour(&self) -> Result<Vec<Misbehaviour>, NodeError> {
        Ok(self.store.misbehaviour().await?)
    }

    /// Handles an `add-checkpoint` body.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<WitnessOutcome, NodeError> {
        let _guard = self.lock.lock().await;
        // The origin is only known after parsing; the few trusted logs'
        // states are read first.
        let mut known = std::collections::HashMap::new();
        for l in &self.logs {
            if let Some(c) = self.store.witnessed(&l.name).await? {
                known.insert(l.name.clone(), c);
            }
        }
        let now = self.clock.now().unix_micros();
        let ts = (now / 1_000_000).max(0) as u64;
        match tlog::witness::add_checkpoint(
            body,
            &self.logs,
            |o| known.get(o).cloned(),
            &self.cosigner,
            ts,
        ) {
            Ok(a) => {
                self.store.save_witnessed(&a.origin, a.record).await?;
                Ok(WitnessOutcome::Cosigned(a.response))
            }
            Err(r) => {
                let pair = match &r {
                    tlog::witness::Refusal::Conflict {
                        equivocation: Some((a, b)),
                        ..
                    } => Some((a.clone(), b.clone())),
                    tlog::witness::Refusal::BadProof {
                        previous,
                        submitted,
                    } => Some((previous.clone(), submitted.clone())),
                    _ => None,
                };
                let Some((a, b)) = pair else {
                    return Ok(WitnessOutcome::Refused(r));
                };
                let origin = tlog::Note::parse(b.as_bytes())
                    .ok()
                    .and_then(|n| tlog::Checkpoint::parse(&n.text).ok())
                    .map(|c| c.origin)
                    .unwrap_or_default();
                self.store
                    .save_misbehaviour(&origin, a, b, now / 1000)
                    .await?;
                Ok(WitnessOutcome::Misbehaviour { origin, refusal: r })
            }
        }
    }
}

impl Log {
    /// Submits the newest checkpoint to a witness (C2SP tlog-witness):
    /// `post(body)` performs the HTTP request and returns (status, body).
    /// `last` is the size the witness last cosigned, as this node believes;
    /// returns the size the witness has cosigned afterwards. A valid
    /// cosignature is kept with the checkpoint.
    pub async fn submit_to_witness<F, Fut>(
        &self,
        witness: &tlog::Verifier,
        last: u64,
        post: F,
    ) -> Result<u64, NodeError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<(u16, String), String>>,
    {
        let Some((size, note)) = self.store.latest_checkpoint() else {
            return Ok(last);
        };
        if size <= last {
            return Ok(last);
        }
        let mut body = format!("old {last}\n");
        if last > 0 {
            use base64::Engine;
            for h in self.consistency_proof(last, size).await? {
                body.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
                body.push('\n');
            }
        }
        body.push('\n');
        // The witness sees the log's own signature only.
        let parsed = tlog::Note::parse(note.as_bytes())
            .map_err(|e| NodeError::Store(StoreError::Failed(e.to_string())))?;
        let own = tlog::Note {
            text: parsed.text.clone(),
            signatures: parsed
                .signatures
                .iter()
                .filter(|s| {
                    s.name == self.signer.signer.name && s.key_id == self.signer.signer.key_id()
                })
                .cloned()
                .collect(),
        };
        body.push_str(&own.to_text());
        let (status, reply) = post(body).await.map_err(|e| {
            NodeError::Store(StoreError::Failed(format!("witness {}: {e}", witness.name)))
        })?;
        match status {
            200 => {
                let with = format!("{}{}", own.to_text(), reply);
                let (n, ok) = tlog::note::open(with.as_bytes(), std::slice::from_ref(witness))
                    .map_err(|e| {
                        NodeError::Store(StoreError::Failed(format!(
                            "witness {} answered with an invalid cosignature: {e}",
                            witness.name
                        )))
                    })?;
                if ok.is_empty() {
                    return Err(NodeError::Store(StoreError::Failed(format!(
                        "witness {} did not cosign",
                        witness.name
                    ))));
                }
                for s in n
                    .signatures
                    .iter()
                    .filter(|s| s.name == witness.name && s.key_id == witness.key_id)
                {
                    self.store.add_cosignature(size, s.line()).await?;
                }
                Ok(size)
            }
            409 => reply.trim().parse::<u64>().map_err(|_| {
                NodeError::Store(StoreError::Failed(format!(
                    "witness {} answered 409 without a size",
                    witness.name
                )))
            }),
            other => Err(NodeError::Store(StoreError::Failed(format!(
                "witness {} refused the checkpoint ({other}): {}",
                witness.name,
                reply.trim()
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use airspace::geometry::{LatLng, Outline};

    /// A polygon of `n` vertices on a circle of 0.5° around `lat`, 0: every
    /// edge under 10 km, so it costs `n` outline points.
    fn ring(n: usize, lat: f64) -> Volume4D {
        let vertices = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                LatLng {
                    lat: lat + 0.5 * a.sin(),
                    lng: 0.5 * a.cos(),
                }
            })
            .collect();
        Volume4D {
            outline: Outline::Polygon { vertices },
            altitude_lower_m: Some(0.0),
            altitude_upper_m: Some(100.0),
            time_start: Some(Timestamp::from_unix_micros(0)),
            time_end: Some(Timestamp::from_unix_micros(1)),
        }
    }

    #[tokio::test]
    async fn heavy_geometry_runs_off_the_async_workers_and_light_inline() {
        let here = std::thread::current().id();
        let light = off_workers(HEAVY_POINTS, move || std::thread::current().id());
        assert_eq!(light.await.unwrap(), here);
        let heavy = off_workers(HEAVY_POINTS + 1, move || std::thread::current().id());
        assert_ne!(heavy.await.unwrap(), here);
    }

    #[tokio::test]
    async fn a_requests_volumes_share_one_outline_budget() {
        let limits = Limits::default();
        let big = |lat| ring(8_000, lat);
        assert_eq!(airspace::geometry::cost(&big(10.0)), 8_000);
        let two = prepare_all(vec![big(10.0), big(20.0)], &limits, "extents").await;
        assert_eq!(two.unwrap().len(), 2);
        let three = prepare_all(vec![big(10.0), big(20.0), big(30.0)], &limits, "extents").await;
        let Err(NodeError::Domain(DomainError::Geometry(e))) = three else {
            panic!("refused as too large: {three:?}");
        };
        assert!(e.too_large);
        assert_eq!(e.field, "extents");
        assert!(e.message.contains("24000 points"), "{e}");
    }
}
