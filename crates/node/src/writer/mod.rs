//! The node's writer ([`Engine`]): one task with group commit over the
//! in-memory airspace state, the line's state and the evidence log's tree,
//! persisting through the [`Persistence`] port (`store` implements it for
//! SQLite and PostgreSQL). What a batch decides is in `writer/decide.rs`.
//!
//! The writer takes every queued decision (up to [`MAX_BATCH`]), asks the
//! backend for exclusive access ([`Persistence::begin`], which also hands over
//! whatever other writers on the same database committed since — nothing for
//! the embedded store, another replica's batches for PostgreSQL), runs the
//! decisions in order against the in-memory state — each sees the effects of
//! those before it — then persists the net row changes and the log
//! entries of the whole batch in one transaction, synced, before any caller
//! is answered. Readers see the in-memory state; a batch becomes visible to
//! them while it is being synced, and if the commit fails every caller of the
//! batch gets an error and everything is reloaded from the database, so
//! nothing unsynced is ever acknowledged.
//!
//! A backend that is its database's only writer ([`Persistence::pipelines`]:
//! SQLite) has the next batch decided, on another thread, while one is being
//! synced; the next one's callers are answered only after their own commit,
//! and if the one before fails they are refused with it.

use crate::dss::AirspaceWrite;
use crate::entries::LogSigner;
use crate::line::LineWrite;
use crate::persist::*;
use crate::{BoxFuture, LineCommit, Store, StoreError};
use airspace::{AirspaceState, Decision, DomainError};
use liaison::{LineError, LineState};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tlog::proof::ProofError;
use tlog::tiles::{Tile, TiledTree};
use tlog::witness::Cosigned;
use tokio::sync::{mpsc, oneshot};

mod decide;

/// The first pause between attempts to reload an unavailable store; each
/// failed attempt doubles it up to [`RECOVER_MAX_WAIT`].
const RECOVER_FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(50);
const RECOVER_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most decisions committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// Most decisions of the line in one transaction: each signs entries in
/// the writer, and a FLASH record must not wait behind a long batch.
pub const MAX_LINE_BATCH: usize = 128;

pub(crate) type Reply = Result<Result<Decision, DomainError>, StoreError>;
pub(crate) type LineReply = Result<Result<LineCommit, LineError>, StoreError>;

enum Job {
    Airspace {
        // Boxed: a job is moved through the queue.
        write: Box<AirspaceWrite>,
        reply: oneshot::Sender<Reply>,
    },
    Line {
        write: Box<LineWrite>,
        reply: oneshot::Sender<LineReply>,
    },
    /// Take in what other writers on the database committed (a replica
    /// was told, or its poll found, that the database moved on).
    Refresh,
    /// Finish what is queued before this, close the database, stop.
    Close(oneshot::Sender<()>),
}
/// The evidence log as the store holds it: the tree (which may briefly hold
/// leaves of a batch being committed) and how many leaves are committed.
/// Roots and proofs only ever cover committed leaves.
pub(crate) struct LogState {
    tree: RwLock<TiledTree>,
    committed: AtomicU64,
    latest: RwLock<Option<(u64, String)>>,
}

/// The log entries of each decision's events (one per write of an intent
/// or constraint, `crate::entries::entry_bodies`), in order. Unattested
/// (`tlog::entry`): cheap enough to make on the writer's thread.
fn entries_of(
    signer: &LogSigner,
    decisions: &[&[airspace::Event]],
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::with_capacity(decisions.len());
    for events in decisions {
        out.extend(
            signer
                .entries(events)
                .map_err(|e| StoreError::Failed(format!("encoding a log entry: {e}")))?,
        );
    }
    Ok(out)
}

/// A store: the in-memory state, line and log over a [`Persistence`].
pub struct Engine<B: Persistence> {
    state: Arc<RwLock<AirspaceState>>,
    line: Arc<RwLock<LineState>>,
    log: Arc<LogState>,
    jobs: mpsc::Sender<Job>,
    urgent: mpsc::Sender<Job>,
    appended: Arc<tokio::sync::Notify>,
    refresh_queued: Arc<AtomicBool>,
    /// False while the writer reloads after a failure (see `recover`).
    available: Arc<AtomicBool>,
    /// Read-your-writes across replicas (`None` for a database this
    /// writer owns alone).
    settle: Option<Arc<Settle>>,
    pub backend: Arc<B>,
    /// The committed copy notices, until someone takes them.
    notices: std::sync::Mutex<Option<mpsc::Receiver<crate::share::CopyNotice>>>,
    /// Who hears of each group commit (`Store::observe_commits`).
    observer: Arc<std::sync::OnceLock<Arc<dyn crate::CommitObserver>>>,
}

/// Reads on a shared database first take in every write any replica had
/// answered when the read began. Concurrent reads share the counter's
/// reading: a read waits for the first reading that *started* after it
/// arrived (rounds), so one round trip serves every read that queued
/// during the previous one.
struct Settle {
    /// Rounds started.
    started: AtomicU64,
    /// The last round finished, and the counter it read.
    done: tokio::sync::watch::Sender<(u64, Result<i64, StoreError>)>,
    kick: tokio::sync::Notify,
    /// The counter the in-memory states reflect (published by the writer).
    applied: tokio::sync::watch::Receiver<i64>,
}

/// How long a read waits for this replica to take in what others
/// committed before it is refused as unavailable.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn run_settle<B: Persistence>(backend: Arc<B>, s: Arc<Settle>, alive: Refresher) {
    loop {
        tokio::select! {
            _ = s.kick.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                if !alive.alive() {
                    return;
                }
                continue;
            }
        }
        let round = s.started.fetch_add(1, Ordering::SeqCst) + 1;
        let counter = backend.counter().await;
        let _ = s.done.send_replace((round, counter));
    }
}

impl<B: Persistence> std::fmt::Debug for Engine<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("log_size", &self.log.committed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<B: Persistence> Engine<B> {
    /// Starts the writer over what was loaded.
    pub fn start(backend: Arc<B>, writer: B::Writer, loaded: Loaded, signer: LogSigner) -> Self {
        let log = Arc::new(LogState {
            committed: AtomicU64::new(loaded.tree.size()),
            tree: RwLock::new(loaded.tree),
            latest: RwLock::new(loaded.latest),
        });
        let state = Arc::new(RwLock::new(loaded.state));
        let line = Arc::new(RwLock::new(loaded.line));
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let (urgent_tx, urgent_rx) = mpsc::channel(4 * MAX_BATCH);
        let appended = Arc::new(tokio::sync::Notify::new());
        let refresh_queued = Arc::new(AtomicBool::new(false));
        let available = Arc::new(AtomicBool::new(true));
        let (applied_tx, applied_rx) = tokio::sync::watch::channel(i64::MIN);
        let (notices_tx, notices_rx) = mpsc::channel(crate::share::MAX_PENDING_NOTICES);
        let observer = Arc::new(std::sync::OnceLock::new());
        tokio::spawn(run_writer(Writer {
            notices: notices_tx,
            observer: observer.clone(),
            applied: applied_tx,
            backend: backend.clone(),
            w: writer,
            decider: Decider {
                state: state.clone(),
                line: line.clone(),
                log: log.clone(),
                signer: Arc::new(signer),
                with_extents: backend.wants_extents(),
            },
            appended: appended.clone(),
            refresh_queued: refresh_queued.clone(),
            jobs: rx,
            urgent: urgent_rx,
            closing: Vec::new(),
            available: available.clone(),
        }));
        let settle = backend.shared().then(|| {
            Arc::new(Settle {
                started: AtomicU64::new(0),
                done: tokio::sync::watch::channel((0, Ok(i64::MIN))).0,
                kick: tokio::sync::Notify::new(),
                applied: applied_rx,
            })
        });
        let engine = Engine {
            state,
            line,
            log,
            jobs: tx,
            urgent: urgent_tx,
            appended,
            refresh_queued,
            available,
            settle,
            backend,
            notices: std::sync::Mutex::new(Some(notices_rx)),
            observer,
        };
        if let Some(s) = &engine.settle {
            tokio::spawn(run_settle(
                engine.backend.clone(),
                s.clone(),
                engine.refresher(),
            ));
        }
        engine
    }

    /// Waits until the in-memory states hold every write any replica had
    /// answered when this was called (at once where this writer owns its
    /// database).
    async fn settled(&self) -> Result<(), StoreError> {
        let Some(s) = &self.settle else {
            return Ok(());
        };
        let need = s.started.load(Ordering::SeqCst) + 1;
        let mut done = s.done.subscribe();
        s.kick.notify_one();
        let counter = done
            .wait_for(|(round, _)| *round >= need)
            .await
            .map_err(|_| StoreError::Failed("the store has stopped".into()))?
            .1
            .clone()?;
        let mut applied = s.applied.clone();
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            if *applied.borrow_and_update() >= counter {
                return Ok(());
            }
            // Ask again each time: a refresh already under way may have
            // read the database before the write this read waits for.
            self.refresher().refresh();
            let wait = std::time::Duration::from_millis(20);
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(
                    "this replica could not take in the other replicas' writes in time; retry shortly"
                        .into(),
                ));
            }
            if let Ok(Err(_)) = tokio::time::timeout(wait, applied.changed()).await {
                return Err(StoreError::Failed("the store has stopped".into()));
            }
        }
    }

    /// Refuses when the in-memory states cannot be trusted (see `recover`).
    fn check_available(&self) -> Result<(), StoreError> {
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the node is reloading its state after losing its database; retry shortly".into(),
            ))
        }
    }

    /// Keeps at most `tiles` of the log's full tiles in memory (8 KiB of
    /// hashes each, plus their inner subtrees); proofs read the others
    /// from the database.
    pub fn set_tile_cache(&self, tiles: usize) {
        self.log
            .tree
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set_capacity(tiles);
    }

    /// A handle that asks for refreshes, for a backend's watcher task.
    pub fn refresher(&self) -> Refresher {
        Refresher {
            jobs: self.jobs.downgrade(),
            queued: self.refresh_queued.clone(),
        }
    }
}

/// A root or proof over the log's tree.
#[derive(Clone, Copy)]
enum TreeQuery {
    Root(u64),
    Inclusion(u64, u64),
    Consistency(u64, u64),
}

enum TreeAnswer {
    Root(tlog::Hash),
    Proof(Result<Vec<tlog::Hash>, ProofError>),
}

fn answer<S: tlog::tree::HashSource + ?Sized>(
    src: &S,
    q: TreeQuery,
) -> Result<TreeAnswer, S::Error> {
    Ok(match q {
        TreeQuery::Root(size) => TreeAnswer::Root(tlog::tree::range_root(src, 0, size)?),
        TreeQuery::Inclusion(i, size) => {
            TreeAnswer::Proof(tlog::proof::inclusion_proof(src, i, size)?)
        }
        TreeQuery::Consistency(a, b) => {
            TreeAnswer::Proof(tlog::proof::consistency_proof(src, a, b)?)
        }
    })
}

impl<B: Persistence> Engine<B> {
    /// Answers `q` from the tree, first reading from the database the full
    /// tiles it needs that the tree's cache does not hold.
    async fn over_tiles(&self, q: TreeQuery) -> Result<TreeAnswer, StoreError> {
        for _ in 0..4 {
            let missing = {
                let mut tree = self.log.tree.write().unwrap_or_else(|e| e.into_inner());
                let missing = tree.missing(|r| answer(r, q));
                if missing.is_empty() {
                    return answer(&*tree, q)
                        .map_err(|e| StoreError::Failed(format!("log tree: {e}")));
                }
                missing
            };
            let tiles = self.backend.tiles(missing.clone()).await?;
            if tiles.len() < missing.len() {
                return Err(StoreError::Failed(format!(
                    "log tree: {} of the {} tiles needed are not in the database",
                    missing.len() - tiles.len(),
                    missing.len()
                )));
            }
            let mut tree = self.log.tree.write().unwrap_or_else(|e| e.into_inner());
            // Computed over the tiles read, whatever the cache keeps.
            let answered = answer(&tree.overlay(&tiles), q);
            for t in tiles {
                tree.insert(t);
            }
            if let Ok(a) = answered {
                return Ok(a);
            }
            // A tile the cache held when asked was evicted since: again.
        }
        Err(StoreError::Failed(
            "log tree: the tiles needed kept leaving the cache".into(),
        ))
    }
}

/// Asks an engine's writer to take in what others committed (at most one
/// such request waits at a time). It does not keep the store alive.
#[derive(Clone)]
pub struct Refresher {
    jobs: mpsc::WeakSender<Job>,
    queued: Arc<AtomicBool>,
}

impl Refresher {
    /// Whether the store still exists.
    pub fn alive(&self) -> bool {
        self.jobs.strong_count() > 0
    }

    /// False once the store is gone.
    pub fn refresh(&self) -> bool {
        let Some(jobs) = self.jobs.upgrade() else {
            return false;
        };
        if !self.queued.swap(true, Ordering::SeqCst) && jobs.try_send(Job::Refresh).is_err() {
            self.queued.store(false, Ordering::SeqCst);
        }
        true
    }
}

struct Writer<B: Persistence> {
    backend: Arc<B>,
    w: B::Writer,
    /// The database counter the in-memory states reflect, for settling
    /// reads (only moves for a shared database).
    applied: tokio::sync::watch::Sender<i64>,
    decider: Decider,
    appended: Arc<tokio::sync::Notify>,
    refresh_queued: Arc<AtomicBool>,
    jobs: mpsc::Receiver<Job>,
    urgent: mpsc::Receiver<Job>,
    /// Who asked the store to close (answered once it has).
    closing: Vec<oneshot::Sender<()>>,
    /// False while a failed commit or start could not be reloaded from.
    available: Arc<AtomicBool>,
    /// Where committed copy notices go (`Store::take_copy_notices`).
    notices: mpsc::Sender<crate::share::CopyNotice>,
    observer: Arc<std::sync::OnceLock<Arc<dyn crate::CommitObserver>>>,
}

/// What deciding a batch needs: the in-memory states, the log's tree and
/// the signer. Cheap to clone, so that a batch can be decided on another
/// thread while the one before it is persisted.
#[derive(Clone)]
struct Decider {
    state: Arc<RwLock<AirspaceState>>,
    line: Arc<RwLock<LineState>>,
    log: Arc<LogState>,
    signer: Arc<LogSigner>,
    with_extents: bool,
}

/// A batch's jobs by kind.
struct Jobs {
    air: Vec<(Box<AirspaceWrite>, oneshot::Sender<Reply>)>,
    line: Vec<(Box<LineWrite>, oneshot::Sender<LineReply>)>,
    /// Jobs taken from the queues, refresh requests included.
    taken: usize,
}

impl Jobs {
    /// A refresh request is answered by the batch that takes it: the
    /// batch begins by taking in what others committed. A close request
    /// waits in `closing` for the batch to be committed.
    fn split(
        batch: Vec<Job>,
        refresh_queued: &AtomicBool,
        closing: &mut Vec<oneshot::Sender<()>>,
    ) -> Jobs {
        let mut jobs = Jobs {
            air: Vec::with_capacity(batch.len()),
            line: Vec::new(),
            taken: batch.len(),
        };
        for job in batch {
            match job {
                Job::Airspace { write, reply } => jobs.air.push((write, reply)),
                Job::Line { write, reply } => jobs.line.push((write, reply)),
                Job::Refresh => refresh_queued.store(false, Ordering::SeqCst),
                Job::Close(tx) => closing.push(tx),
            }
        }
        jobs
    }

    fn is_empty(&self) -> bool {
        self.air.is_empty() && self.line.is_empty()
    }

    fn refuse(self, e: &StoreError) {
        for (_, reply) in self.air {
            let _ = reply.send(Err(e.clone()));
        }
        for (_, reply) in self.line {
            let _ = reply.send(Err(e.clone()));
        }
    }
}

/// A batch decided against the in-memory states, signed and appended to
/// the log's tree, not yet persisted: nobody has been answered.
struct Decided {
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
    line_replies: Vec<(oneshot::Sender<LineReply>, LineReply)>,
    /// Why the batch cannot be persisted (encoding or signing failed).
    encoded: Result<(), StoreError>,
    dirty: Dirty,
    rows: usize,
    seq: u64,
    first_leaf: u64,
    leaves: Vec<Vec<u8>>,
    leaf_hashes: Vec<tlog::Hash>,
    tiles: Vec<Tile>,
    /// Whether the line appends entries (its outbox senders then wake).
    line_entries: bool,
    taken: usize,
    begin_us: u64,
    decide_us: u64,
    line_us: u64,
    /// Encoding the batch's rows.
    encode_us: u64,
    /// Making its airspace log entries.
    entries_us: u64,
    /// Deciding, encoding, making entries and hashing the batch.
    total_us: u64,
    persist_us: u64,
    /// Changes of peers' copies to notify local subscribers of, once the
    /// batch is committed.
    notices: Vec<crate::share::CopyNotice>,
}

impl Decided {
    /// Turns every acceptance into `e`. With `all`, refusals too: the
    /// batch was decided on top of one that failed, so its refusals were
    /// reasoned from a state that never existed.
    fn refuse(&mut self, e: &StoreError, all: bool) {
        for (_, r) in self.replies.iter_mut() {
            if all || matches!(r, Ok(Ok(_))) {
                *r = Err(e.clone());
            }
        }
        for (_, r) in self.line_replies.iter_mut() {
            if all || matches!(r, Ok(Ok(_))) {
                *r = Err(e.clone());
            }
        }
    }

    /// Folds in `later`, decided on top of this batch while the one
    /// before it was being synced: one transaction commits both. Later
    /// rows replace earlier ones; the leaves follow this batch's.
    fn absorb(&mut self, later: Decided) {
        let Decided {
            replies,
            line_replies,
            encoded,
            dirty,
            rows: _,
            seq,
            first_leaf,
            leaves,
            leaf_hashes,
            tiles,
            line_entries,
            taken,
            begin_us: _,
            decide_us,
            line_us,
            encode_us,
            entries_us,
            total_us,
            persist_us: _,
            notices,
        } = later;
        debug_assert!(
            self.encoded.is_err() || first_leaf == self.first_leaf + self.leaves.len() as u64
        );
        self.replies.extend(replies);
        self.line_replies.extend(line_replies);
        if self.encoded.is_ok() {
            self.encoded = encoded;
        }
        self.dirty.absorb(dirty);
        self.rows = self.dirty.rows.len();
        self.seq = seq;
        self.leaves.extend(leaves);
        self.leaf_hashes.extend(leaf_hashes);
        self.tiles.extend(tiles);
        self.line_entries |= line_entries;
        self.taken += taken;
        self.decide_us += decide_us;
        self.line_us += line_us;
        self.encode_us += encode_us;
        self.entries_us += entries_us;
        self.total_us += total_us;
        self.notices.extend(notices);
    }

    /// Whether more jobs may still be decided into this batch: it was
    /// encoded, and neither it nor its line part is full.
    fn has_room(&self) -> bool {
        self.encoded.is_ok() && self.taken < MAX_BATCH && self.line_replies.len() < MAX_LINE_BATCH
    }

    /// Hands the batch's copy notices on (it is committed).
    fn notify(&mut self, to: &mpsc::Sender<crate::share::CopyNotice>) {
        for n in self.notices.drain(..) {
            if let Err(mpsc::error::TrySendError::Full(n)) = to.try_send(n) {
                tracing::warn!(change = ?n.change, "too many copy notices waiting: one dropped");
            }
        }
    }

    fn answer(self) {
        for (tx, r) in self.replies {
            let _ = tx.send(r);
        }
        for (tx, r) in self.line_replies {
            let _ = tx.send(r);
        }
    }
}

impl<B: Persistence> Writer<B> {
    /// Takes in what other writers committed; false if that failed (the
    /// batch must then be refused).
    /// Tells settling reads how far the in-memory states have come.
    fn publish(&self) {
        if let Some(v) = self.backend.applied(&self.w) {
            self.applied.send_if_modified(|a| {
                let newer = *a < v;
                if newer {
                    *a = v;
                }
                newer
            });
        }
    }

    async fn begin(&mut self, exclusive: bool) -> Result<(), StoreError> {
        let r = self.begin_inner(exclusive).await;
        if r.is_ok() {
            self.publish();
        }
        r
    }

    async fn begin_inner(&mut self, exclusive: bool) -> Result<(), StoreError> {
        let d = &self.decider;
        let size = d.log.committed.load(Ordering::SeqCst);
        let Some(delta) = self.backend.begin(&mut self.w, size, exclusive).await? else {
            return Ok(());
        };
        if let Some(latest) = delta.latest {
            let mut l = d.log.latest.write().unwrap_or_else(|e| e.into_inner());
            if l.as_ref()
                .is_none_or(|(s, n)| *s < latest.0 || n != &latest.1)
            {
                *l = Some(latest);
            }
        }
        if delta.events.is_empty() && delta.entries.is_empty() {
            return Ok(());
        }
        let n = delta.entries.len() as u64;
        {
            let mut st = d.state.write().unwrap_or_else(|e| e.into_inner());
            st.catch_up(delta.seq, &delta.events);
        }
        let any_line = {
            let mut tree = d.log.tree.write().unwrap_or_else(|e| e.into_inner());
            let mut line = d.line.write().unwrap_or_else(|e| e.into_inner());
            let any = replay(&mut tree, &mut line, delta.entries)?;
            // The replica that wrote these entries stored their tiles.
            tree.take_completed();
            any
        };
        d.log.committed.store(size + n, Ordering::SeqCst);
        if any_line {
            self.appended.notify_waiters();
        }
        tracing::debug!(
            records = delta.events.len(),
            entries = n,
            "took in other replicas' commits"
        );
        Ok(())
    }

    /// Reloads everything after a failure (the database is the truth).
    /// If the first attempt fails the store is unavailable until one
    /// works: the in-memory states may hold decisions that were never
    /// committed, so reads and writes are refused
    /// ([`StoreError::Unavailable`]) instead of answered from them or left
    /// waiting. The reload is retried with a growing pause (up to
    /// [`RECOVER_MAX_WAIT`]); every job arriving meanwhile is refused at
    /// once. Returns early, unreloaded, when the store is asked to close.
    async fn recover(&mut self) {
        if let Err(e) = self.first_reload().await {
            self.keep_reloading(e).await;
        }
    }

    /// [`Self::reload`], the store unavailable if it fails (before whoever
    /// is answered next hears of the failure).
    async fn first_reload(&mut self) -> Result<(), StoreError> {
        let r = self.reload().await;
        if r.is_err() {
            self.available.store(false, Ordering::SeqCst);
        }
        r
    }

    /// One attempt at reloading; the store is available again if it works.
    async fn reload(&mut self) -> Result<(), StoreError> {
        let me = self.decider.signer.signer.name.clone();
        let l = self.backend.recover(&mut self.w, &me).await?;
        let d = &self.decider;
        *d.state.write().unwrap_or_else(|p| p.into_inner()) = l.state;
        d.log.committed.store(l.tree.size(), Ordering::SeqCst);
        *d.log.tree.write().unwrap_or_else(|p| p.into_inner()) = l.tree;
        *d.line.write().unwrap_or_else(|p| p.into_inner()) = l.line;
        if let Some(latest) = l.latest {
            *d.log.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(latest);
        }
        self.available.store(true, Ordering::SeqCst);
        self.publish();
        Ok(())
    }

    /// Retries [`Self::reload`] after a [`Self::first_reload`] failed
    /// with `e`, until it works or the store is asked to close.
    async fn keep_reloading(&mut self, e: StoreError) {
        tracing::error!(error = %e, "the store is unavailable: refusing reads and writes with 503 until it can be reloaded");
        let mut wait = RECOVER_FIRST_WAIT;
        let mut failures = 1u32;
        loop {
            if self.refuse_for(wait).await {
                return;
            }
            match self.reload().await {
                Ok(()) => {
                    tracing::warn!(
                        failures,
                        "the store is reachable again and reloaded; taking requests"
                    );
                    return;
                }
                Err(e) => {
                    failures += 1;
                    wait = (wait * 2).min(RECOVER_MAX_WAIT);
                    tracing::warn!(error = %e, failures, retry_in_ms = wait.as_millis() as u64, "the store is still unavailable");
                }
            }
        }
    }

    /// Refuses every job that arrives during `wait` (the store is
    /// unavailable). True when asked to close meanwhile.
    async fn refuse_for(&mut self, wait: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        let e = StoreError::Unavailable(
            "the node cannot reach its database; nothing was changed, retry shortly".into(),
        );
        loop {
            let job = tokio::select! {
                biased;
                () = tokio::time::sleep_until(until) => return !self.closing.is_empty(),
                j = self.urgent.recv() => j,
                j = self.jobs.recv() => j,
            };
            // Every sender is gone: the store was dropped.
            let Some(job) = job else {
                return true;
            };
            let mut batch = vec![job];
            drain(&mut self.urgent, &mut self.jobs, &mut batch);
            Jobs::split(batch, &self.refresh_queued, &mut self.closing).refuse(&e);
            if !self.closing.is_empty() {
                return true;
            }
        }
    }

    /// Begins a batch (taking in what others committed first) and decides
    /// it; `None` when there is nothing to persist.
    async fn start(&mut self, mut batch: Vec<Job>) -> Option<Decided> {
        // Exclusive access, and whatever other replicas committed first; a
        // refresh alone only reads (it must not hold up their writes).
        let exclusive = batch.iter().any(|j| !matches!(j, Job::Refresh));
        // A refresh asked for from now on reads after this batch's begin.
        if batch.iter().any(|j| matches!(j, Job::Refresh)) {
            self.refresh_queued.store(false, Ordering::SeqCst);
        }
        let t_begin = std::time::Instant::now();
        let begun = self.begin(exclusive).await;
        let begin_us = t_begin.elapsed().as_micros() as u64;
        // Writes that queued while another replica held the lock join this
        // batch (the embedded store never waits here).
        if exclusive {
            drain(&mut self.urgent, &mut self.jobs, &mut batch);
        }
        let jobs = Jobs::split(batch, &self.refresh_queued, &mut self.closing);
        if let Err(e) = begun {
            tracing::error!(error = %e, "could not start a batch; refusing it and reloading");
            self.backend.release(&mut self.w).await;
            let reloaded = self.first_reload().await;
            // Nothing of it was written: it may be retried.
            jobs.refuse(&StoreError::Unavailable(e.message().to_owned()));
            if let Err(e) = reloaded {
                self.keep_reloading(e).await;
            }
            return None;
        }
        if jobs.is_empty() {
            self.backend.release(&mut self.w).await;
            return None;
        }
        Some(self.decider.decide(jobs, begin_us))
    }

    /// Answers the callers of a batch whose persist has ended. After a
    /// failure it refuses them and `next` (decided on top of the failed
    /// batch) and reloads everything; otherwise it hands `next` back.
    async fn finish(
        &mut self,
        d: Decided,
        persisted: Result<(), StoreError>,
        next: Option<Decided>,
    ) -> Option<Decided> {
        let mut d = d;
        let log = &self.decider.log;
        if persisted.is_ok() {
            self.publish();
            log.committed
                .store(d.first_leaf + d.leaves.len() as u64, Ordering::SeqCst);
            if d.line_entries {
                self.appended.notify_waiters();
            }
        }
        if let Some(o) = self.observer.get() {
            let us = d.begin_us + d.total_us + d.persist_us;
            o.committed(d.taken, us as f64 / 1e6, persisted.is_ok());
        }
        tracing::debug!(
            batch = d.taken,
            refused = d
                .replies
                .iter()
                .filter(|(_, r)| !matches!(r, Ok(Ok(_))))
                .count(),
            first_refusal = d.replies.iter().find_map(|(_, r)| match r {
                Ok(Err(e)) => Some(e.to_string()),
                _ => None,
            }),
            rows = d.rows,
            begin_us = d.begin_us,
            decide_us = d.decide_us,
            line_us = d.line_us,
            encode_us = d.encode_us,
            entries_us = d.entries_us,
            total_us = d.total_us,
            persist_us = d.persist_us,
            overlapped = next.is_some(),
            "group commit"
        );
        let Err(e) = persisted else {
            d.notify(&self.notices);
            d.answer();
            return next;
        };
        tracing::error!(error = %e, "commit failed; reloading the state from the database");
        // Its callers are answered after one attempt at reloading (so that
        // a caller who retries finds the state as committed), not after the
        // retries, which go on for as long as the database is unreachable.
        // Readers are refused only once that attempt has failed: a write
        // committed just before may still be reading to build its answer
        // (and, as always, a batch is visible while it is being synced).
        let reloaded = self.first_reload().await;
        let next = next.map(|mut n| {
            // Decided on top of this batch and never persisted.
            n.refuse(&e, true);
            n
        });
        // A commit whose answer was lost (the connection dropped after
        // the database took it) is not a failure: the reloaded log says.
        let committed = self.decider.log.committed.load(Ordering::SeqCst);
        if reloaded.is_ok() && holds(&*self.backend, committed, &d).await {
            tracing::warn!(error = %e, first = d.first_leaf, entries = d.leaves.len(), "the commit was reported failed but the database holds the batch: answering it as committed");
            if d.line_entries {
                self.appended.notify_waiters();
            }
            d.notify(&self.notices);
            d.answer();
            if let Some(n) = next {
                n.answer();
            }
            return None;
        }
        if reloaded.is_err() {
            // Whether the database took the batch cannot be asked now: its
            // writes are of unknown outcome, and said so.
            d.refuse(&StoreError::OutcomeUnknown(e.message().to_owned()), false);
        } else {
            d.refuse(&e, false);
        }
        d.answer();
        if let Some(n) = next {
            n.answer();
        }
        if let Err(e) = reloaded {
            self.keep_reloading(e).await;
        }
        None
    }
}

/// Whether the database holds batch `d` (its first and last entries,
/// byte for byte, where it put them: a batch commits whole or not at
/// all, and each entry carries its own time and content).
async fn holds<B: Persistence>(backend: &B, committed: u64, d: &Decided) -> bool {
    let Some(last) = d.leaves.len().checked_sub(1) else {
        return false;
    };
    let end = d.first_leaf + d.leaves.len() as u64;
    if committed < end {
        return false;
    }
    let mut wanted = vec![d.first_leaf, d.first_leaf + last as u64];
    wanted.dedup();
    match backend.leaves(wanted.clone()).await {
        Ok(got) => {
            got.len() == wanted.len()
                && got.iter().all(|(i, data)| {
                    i.checked_sub(d.first_leaf)
                        .and_then(|k| d.leaves.get(k as usize))
                        .is_some_and(|mine| mine == data)
                })
        }
        Err(err) => {
            tracing::warn!(error = %err, "reading back a batch whose commit failed");
            false
        }
    }
}

/// Adds queued jobs to `batch`: urgent ones first, then the rest, up to
/// [`MAX_BATCH`] jobs of which at most [`MAX_LINE_BATCH`] are the line's.
/// Nothing queued after a close request is taken.
fn drain(urgent: &mut mpsc::Receiver<Job>, jobs: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    drain_after(urgent, jobs, batch, (0, 0));
}

/// [`drain`] into a batch that already holds `before` (jobs, line jobs)
/// decided earlier.
fn drain_after(
    urgent: &mut mpsc::Receiver<Job>,
    jobs: &mut mpsc::Receiver<Job>,
    batch: &mut Vec<Job>,
    before: (usize, usize),
) {
    let is_line = |j: &Job| matches!(j, Job::Line { .. });
    let is_close = |j: &Job| matches!(j, Job::Close(_));
    let mut closed = batch.iter().any(is_close);
    let mut lines = before.1 + batch.iter().filter(|j| is_line(j)).count();
    let max = MAX_BATCH.saturating_sub(before.0);
    while batch.len() < max && !closed {
        match urgent.try_recv() {
            Ok(j) => {
                lines += usize::from(is_line(&j));
                batch.push(j);
            }
            Err(_) => break,
        }
    }
    while batch.len() < max && lines < MAX_LINE_BATCH && !closed {
        match jobs.try_recv() {
            Ok(j) => {
                lines += usize::from(is_line(&j));
                closed = is_close(&j);
                batch.push(j);
            }
            Err(_) => break,
        }
    }
}

/// Persists a decided batch (durably) and ends the exclusive access.
async fn persist_decided<B: Persistence>(
    backend: &B,
    w: &mut B::Writer,
    d: &mut Decided,
) -> Result<(), StoreError> {
    let t_persist = std::time::Instant::now();
    let r = match &d.encoded {
        Err(e) => Err(e.clone()),
        Ok(()) if d.rows > 0 || !d.leaves.is_empty() => {
            let batch = Batch {
                dirty: std::mem::take(&mut d.dirty),
                seq: d.seq,
                first_leaf: d.first_leaf,
                leaves: &d.leaves,
                leaf_hashes: &d.leaf_hashes,
                tiles: std::mem::take(&mut d.tiles),
            };
            backend.persist(w, batch).await
        }
        Ok(()) => {
            backend.release(w).await;
            Ok(())
        }
    };
    d.persist_us = t_persist.elapsed().as_micros() as u64;
    r
}

async fn run_writer<B: Persistence>(mut wr: Writer<B>) {
    let pipelined = wr.backend.pipelines();
    let mut inflight: Option<Decided> = None;
    loop {
        if inflight.is_none() && !wr.closing.is_empty() {
            break;
        }
        let Some(mut d) = inflight.take() else {
            // Urgent work (the FLASH lane) first, then the rest in order.
            let first = tokio::select! {
                biased;
                j = wr.urgent.recv() => j,
                j = wr.jobs.recv() => j,
            };
            let Some(first) = first else {
                break;
            };
            let mut batch = vec![first];
            drain(&mut wr.urgent, &mut wr.jobs, &mut batch);
            inflight = wr.start(batch).await;
            continue;
        };
        let backend = wr.backend.clone();
        if !pipelined {
            let persisted = persist_decided(&*backend, &mut wr.w, &mut d).await;
            inflight = wr.finish(d, persisted, None).await;
            continue;
        }
        // The batch is synced while the next one is decided on top of it
        // (on another thread): the writer's CPU work and the disk overlap.
        // Whatever arrives while the disk is still busy is decided into
        // that next batch too, not left for the one after it. Nobody is
        // answered before their own batch is synced, and if this one
        // fails, the next one is refused with it.
        // Once asked to close, nothing more is taken.
        let (persisted, next) = {
            let mut persist = std::pin::pin!(persist_decided(&*backend, &mut wr.w, &mut d));
            let mut done = None;
            let mut next: Option<Decided> = None;
            let mut failed = None;
            loop {
                let before = next
                    .as_ref()
                    .map_or((0, 0), |n| (n.taken, n.line_replies.len()));
                let mut batch = Vec::new();
                if wr.closing.is_empty() {
                    drain_after(&mut wr.urgent, &mut wr.jobs, &mut batch, before);
                }
                if batch.is_empty() && done.is_none() && wr.closing.is_empty() {
                    let first = tokio::select! {
                        biased;
                        r = &mut persist => {
                            done = Some(r);
                            None
                        }
                        j = wr.urgent.recv() => j,
                        j = wr.jobs.recv() => j,
                    };
                    if let Some(j) = first {
                        batch.push(j);
                        drain_after(&mut wr.urgent, &mut wr.jobs, &mut batch, before);
                    }
                }
                let jobs = Jobs::split(batch, &wr.refresh_queued, &mut wr.closing);
                if jobs.is_empty() {
                    break;
                }
                let decider = wr.decider.clone();
                let mut deciding = tokio::task::spawn_blocking(move || decider.decide(jobs, 0));
                let decided = if done.is_none() {
                    tokio::select! {
                        r = &mut persist => {
                            done = Some(r);
                            (&mut deciding).await
                        }
                        d = &mut deciding => d,
                    }
                } else {
                    deciding.await
                };
                match decided {
                    Ok(later) => match &mut next {
                        Some(n) => n.absorb(later),
                        None => next = Some(later),
                    },
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                if done.is_some() || !next.as_ref().is_some_and(Decided::has_room) {
                    break;
                }
            }
            let persisted = match done {
                Some(r) => r,
                None => persist.await,
            };
            let next = match (next, failed) {
                (n, Some(e)) => {
                    // What was decided before the panic is refused with
                    // it: the states are reloaded from the database.
                    if let Some(mut n) = n {
                        n.refuse(
                            &StoreError::Failed(format!("deciding a batch failed: {e}")),
                            true,
                        );
                        n.answer();
                    }
                    Some(Err(e))
                }
                (Some(n), None) => Some(Ok(n)),
                (None, None) => None,
            };
            (persisted, next)
        };
        match next {
            None => inflight = wr.finish(d, persisted, None).await,
            Some(Ok(next)) => inflight = wr.finish(d, persisted, Some(next)).await,
            Some(Err(e)) => {
                // Deciding panicked outside a decision: its callers were
                // dropped unanswered, and the states may be half-changed.
                tracing::error!(error = %e, "deciding a batch failed; reloading");
                inflight = wr.finish(d, persisted, None).await;
                wr.recover().await;
            }
        }
    }
    if let Some(mut d) = inflight {
        let persisted = persist_decided(&*wr.backend.clone(), &mut wr.w, &mut d).await;
        wr.finish(d, persisted, None).await;
    }
    // The airspace as committed, unless a failed commit could not be
    // reloaded from (then the state is not the database's).
    let committed = wr
        .available
        .load(Ordering::SeqCst)
        .then(|| wr.decider.state.clone());
    // Jobs still queued are refused (their senders dropped); the states go
    // with the engine, not with this task.
    let Writer {
        backend,
        w,
        closing,
        decider,
        jobs,
        urgent,
        ..
    } = wr;
    drop((decider, jobs, urgent));
    backend.close(w, committed).await;
    for tx in closing {
        let _ = tx.send(());
    }
}

impl<B: Persistence> Engine<B> {
    /// Sends the line's decisions in order on one channel (the writer runs
    /// them in order) and waits for each answer.
    fn send_line<'a>(
        &'a self,
        fs: Vec<LineWrite>,
        channel: &'a mpsc::Sender<Job>,
    ) -> BoxFuture<'a, Vec<LineReply>> {
        Box::pin(async move {
            if let Err(e) = self.check_available() {
                return fs.iter().map(|_| Err(e.clone())).collect();
            }
            let mut waiting = Vec::with_capacity(fs.len());
            for write in fs {
                let (reply, rx) = oneshot::channel();
                let job = Job::Line {
                    write: Box::new(write),
                    reply,
                };
                if channel.send(job).await.is_err() {
                    waiting.push(None);
                } else {
                    waiting.push(Some(rx));
                }
            }
            let mut out = Vec::with_capacity(waiting.len());
            for rx in waiting {
                out.push(match rx {
                    None => Err(StoreError::Failed("the writer has stopped".into())),
                    Some(rx) => rx.await.unwrap_or_else(|_| {
                        Err(StoreError::Failed(
                            "the writer stopped before answering".into(),
                        ))
                    }),
                });
            }
            out
        })
    }

    fn committed_at_least(&self, size: u64) -> Result<(), StoreError> {
        if size > self.log_size() {
            return Err(StoreError::Failed(format!(
                "the log has fewer than {size} committed entries"
            )));
        }
        Ok(())
    }
}

impl<B: Persistence> Store for Engine<B> {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if self.jobs.send(Job::Close(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
    }

    fn transact(&self, write: AirspaceWrite) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            self.check_available()?;
            let (reply, rx) = oneshot::channel();
            self.jobs
                .send(Job::Airspace {
                    write: Box::new(write),
                    reply,
                })
                .await
                .map_err(|_| StoreError::Failed("the writer has stopped".into()))?;
            rx.await
                .map_err(|_| StoreError::Failed("the writer stopped before answering".into()))?
        })
    }

    fn available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }

    fn settle(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.check_available()?;
            self.settled().await
        })
    }

    fn read(&self, f: &mut dyn FnMut(&AirspaceState)) -> Result<(), StoreError> {
        self.check_available()?;
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&st);
        Ok(())
    }

    fn transact_line(&self, fs: Vec<LineWrite>) -> BoxFuture<'_, Vec<LineReply>> {
        self.send_line(fs, &self.jobs)
    }

    fn transact_line_urgent(&self, fs: Vec<LineWrite>) -> BoxFuture<'_, Vec<LineReply>> {
        self.send_line(fs, &self.urgent)
    }

    fn line_appended(&self) -> &tokio::sync::Notify {
        &self.appended
    }

    fn observe_commits(&self, o: Arc<dyn crate::CommitObserver>) {
        let _ = self.observer.set(o);
    }

    fn take_copy_notices(&self) -> Option<mpsc::Receiver<crate::share::CopyNotice>> {
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn read_line(&self, f: &mut dyn FnMut(&LineState)) -> Result<(), StoreError> {
        self.check_available()?;
        let st = self.line.read().unwrap_or_else(|e| e.into_inner());
        f(&st);
        Ok(())
    }

    fn log_leaves(&self, indices: Vec<u64>) -> BoxFuture<'_, Result<Vec<crate::Leaf>, StoreError>> {
        let committed = self.log_size();
        let wanted: Vec<u64> = indices.into_iter().filter(|i| *i < committed).collect();
        self.backend.leaves(wanted)
    }

    fn log_size(&self) -> u64 {
        self.log.committed.load(Ordering::SeqCst)
    }

    fn log_root(&self, size: u64) -> BoxFuture<'_, Result<tlog::Hash, StoreError>> {
        Box::pin(async move {
            self.committed_at_least(size)?;
            match self.over_tiles(TreeQuery::Root(size)).await? {
                TreeAnswer::Root(h) => Ok(h),
                TreeAnswer::Proof(_) => {
                    Err(StoreError::Failed("log tree: a proof for a root".into()))
                }
            }
        })
    }

    fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> BoxFuture<'_, Result<Result<Vec<tlog::Hash>, ProofError>, StoreError>> {
        Box::pin(async move {
            self.committed_at_least(size)?;
            match self.over_tiles(TreeQuery::Inclusion(index, size)).await? {
                TreeAnswer::Proof(p) => Ok(p),
                TreeAnswer::Root(_) => {
                    Err(StoreError::Failed("log tree: a root for a proof".into()))
                }
            }
        })
    }

    fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> BoxFuture<'_, Result<Result<Vec<tlog::Hash>, ProofError>, StoreError>> {
        Box::pin(async move {
            self.committed_at_least(second)?;
            match self
                .over_tiles(TreeQuery::Consistency(first, second))
                .await?
            {
                TreeAnswer::Proof(p) => Ok(p),
                TreeAnswer::Root(_) => {
                    Err(StoreError::Failed("log tree: a root for a proof".into()))
                }
            }
        })
    }

    fn log_tile(
        &self,
        level: u8,
        index: u64,
        width: usize,
    ) -> BoxFuture<'_, Result<Option<Vec<tlog::Hash>>, StoreError>> {
        Box::pin(async move {
            let row = self
                .log_size()
                .checked_shr(8 * u32::from(level))
                .unwrap_or(0);
            let Some(end) = index
                .checked_mul(tlog::tiles::WIDTH as u64)
                .and_then(|s| s.checked_add(width as u64))
            else {
                return Ok(None);
            };
            if width == 0 || width > tlog::tiles::WIDTH || end > row {
                return Ok(None);
            }
            let full = {
                let tree = self.log.tree.read().unwrap_or_else(|e| e.into_inner());
                let full_now = (tree.size() >> (8 * u32::from(level))) / tlog::tiles::WIDTH as u64;
                if index >= full_now {
                    // The partial tile: in memory.
                    return Ok(Some(tree.partial(level)[..width].to_vec()));
                }
                tree.cached(level, index)
            };
            let hashes = match full {
                Some(h) => h,
                None => match self.backend.tiles(vec![(level, index)]).await?.pop() {
                    Some(t) => t.hashes,
                    None => {
                        return Err(StoreError::Failed(format!(
                            "log tile {level}/{index} is not in the database"
                        )));
                    }
                },
            };
            Ok(Some(hashes[..width].to_vec()))
        })
    }

    fn log_index_of(&self, leaf: tlog::Hash) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let committed = self.log_size();
            Ok(self
                .backend
                .find_leaf(leaf)
                .await?
                .filter(|i| *i < committed))
        })
    }

    fn log_entries(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        let end = end.min(self.log_size());
        self.backend.entries(start, end)
    }

    fn save_checkpoint(&self, size: u64, note: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // Another replica may have kept its note for this size first:
            // the kept one is the checkpoint.
            let kept = self.backend.save_checkpoint(size, note).await?;
            if let Some(note) = kept {
                let mut latest = self.log.latest.write().unwrap_or_else(|e| e.into_inner());
                if latest.as_ref().is_none_or(|(s, _)| *s < size) {
                    *latest = Some((size, note));
                }
            }
            Ok(())
        })
    }

    fn latest_checkpoint(&self) -> Option<(u64, String)> {
        self.log
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn witnessed(&self, origin: &str) -> BoxFuture<'_, Result<Option<Cosigned>, StoreError>> {
        self.backend.witnessed(origin.to_string())
    }

    fn save_witnessed(&self, origin: &str, c: Cosigned) -> BoxFuture<'_, Result<(), StoreError>> {
        self.backend.save_witnessed(origin.to_string(), c)
    }

    fn add_cosignature(&self, size: u64, line: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.backend.add_cosignature(size, line.clone()).await?;
            let mut latest = self.log.latest.write().unwrap_or_else(|e| e.into_inner());
            if let Some((s, note)) = latest.as_mut()
                && *s == size
                && !note.contains(&line)
            {
                note.push_str(&line);
            }
            Ok(())
        })
    }

    fn misbehaviour(&self) -> BoxFuture<'_, Result<Vec<crate::Misbehaviour>, StoreError>> {
        self.backend.misbehaviour()
    }

    fn save_misbehaviour(
        &self,
        origin: &str,
        a: String,
        b: String,
        found_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.backend
            .save_misbehaviour(origin.to_string(), a, b, found_ms)
    }

    fn mark_once(
        &self,
        kind: crate::Mark,
        id: String,
        until_ms: u64,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.backend.mark_once(kind, id, until_ms, now_ms)
    }

    fn marks(
        &self,
        kind: crate::Mark,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>> {
        self.backend.marks(kind, now_ms)
    }

    fn is_leader(&self) -> bool {
        self.backend.is_leader()
    }
}
