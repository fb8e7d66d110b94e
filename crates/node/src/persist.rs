//! The persistence port: what the writer ([`crate::writer`]) needs of a
//! database, and the shapes it hands over — the net row changes of a batch
//! ([`Dirty`], [`Batch`]), what a start loads ([`Loaded`], [`Rebuild`]) and
//! what other writers on a shared database committed ([`Delta`]).
//!
//! `store` implements [`Persistence`] for SQLite and PostgreSQL; nothing
//! here knows SQL. Rows are the domain types' own serde form ([`json`],
//! [`decode`]).

use crate::{BoxFuture, StoreError};
use airspace::{AirspaceState, Event, PreparedVolume, SubscriptionId};
use liaison::LineState;
use std::collections::{HashMap, HashSet};
use tlog::tiles::{Tile, TiledTree};
use tlog::witness::Cosigned;

/// The tables of the airspace's records.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Table {
    Intents,
    Constraints,
    Subscriptions,
    Availability,
    Reports,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Intents => "intents",
            Table::Constraints => "constraints",
            Table::Subscriptions => "subscriptions",
            Table::Availability => "availability",
            Table::Reports => "reports",
        }
    }
    pub const ALL: [Table; 5] = [
        Table::Intents,
        Table::Constraints,
        Table::Subscriptions,
        Table::Availability,
        Table::Reports,
    ];
}

/// A record as persisted: its JSON body and, for intents and constraints
/// when the backend asks for them, its 4D volumes (PostGIS columns).
pub struct Row {
    pub body: String,
    pub extents: Vec<PreparedVolume>,
}

/// Net row changes of a batch: the last write to a row wins; `None` is a
/// removal.
#[derive(Default)]
pub struct Dirty {
    pub rows: HashMap<(Table, String), Option<Row>>,
    with_extents: bool,
    /// Subscriptions notified in the batch: their rows are written as the
    /// batch leaves them ([`Dirty::refresh`]).
    notified: HashSet<SubscriptionId>,
}

pub fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Failed(format!("encoding a record: {e}")))
}

impl Dirty {
    pub(crate) fn new(with_extents: bool) -> Self {
        Dirty {
            rows: HashMap::new(),
            with_extents,
            notified: HashSet::new(),
        }
    }

    /// Takes in a later batch's changes: its rows win.
    pub(crate) fn absorb(&mut self, later: Dirty) {
        self.rows.extend(later.rows);
        self.notified.extend(later.notified);
    }

    /// The rows of the subscriptions notified in the batch, from `st` as
    /// the batch leaves it (one row each however often it was notified; a
    /// subscription removed later in the batch stays removed).
    pub(crate) fn refresh(&mut self, st: &AirspaceState) -> Result<(), StoreError> {
        for id in self.notified.drain() {
            if let Some(s) = st.subscription(&id) {
                self.rows.insert(
                    (Table::Subscriptions, id.to_string()),
                    Some(Row {
                        body: json(s)?,
                        extents: Vec::new(),
                    }),
                );
            }
        }
        Ok(())
    }

    pub(crate) fn record(&mut self, events: &[Event]) -> Result<(), StoreError> {
        let volumes = |v: &[PreparedVolume]| {
            if self.with_extents {
                v.to_vec()
            } else {
                Vec::new()
            }
        };
        for e in events {
            let row = |body: String, extents: Vec<PreparedVolume>| Some(Row { body, extents });
            let (key, row) = match e {
                Event::IntentUpserted(i) => (
                    (Table::Intents, i.id.to_string()),
                    row(json(i)?, volumes(&i.extents)),
                ),
                Event::IntentRemoved(id) => ((Table::Intents, id.to_string()), None),
                Event::ConstraintUpserted(c) => (
                    (Table::Constraints, c.id.to_string()),
                    row(json(c)?, volumes(&c.extents)),
                ),
                Event::ConstraintRemoved(id) => ((Table::Constraints, id.to_string()), None),
                Event::SubscriptionUpserted(s) => (
                    (Table::Subscriptions, s.id.to_string()),
                    row(json(s)?, Vec::new()),
                ),
                Event::SubscriptionsNotified(bumped) => {
                    self.notified.extend(bumped.iter().map(|(id, _)| *id));
                    continue;
                }
                Event::SubscriptionRemoved(id) => ((Table::Subscriptions, id.to_string()), None),
                Event::AvailabilitySet(a) => (
                    (Table::Availability, a.uss.clone()),
                    row(json(a)?, Vec::new()),
                ),
                Event::ReportFiled(r) => {
                    ((Table::Reports, r.id.clone()), row(json(r)?, Vec::new()))
                }
            };
            self.rows.insert(key, row);
        }
        Ok(())
    }
}

/// Decodes records' JSON bodies `(id, body)`, spread over the cores
/// (decoding and re-preparing geometry is the bulk of a cold start).
pub fn decode_all<
    T: serde::de::DeserializeOwned + Send,
    I: AsRef<str> + Sync,
    B: AsRef<str> + Sync,
>(
    table: Table,
    rows: &[(I, B)],
) -> Result<Vec<T>, StoreError> {
    on_all_cores(rows, "decoding", |part| {
        part.iter()
            .map(|(id, body)| decode(table, id.as_ref(), body.as_ref()))
            .collect()
    })
}

/// One record's JSON body.
pub fn decode<T: serde::de::DeserializeOwned>(
    table: Table,
    id: &str,
    body: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Failed(format!("row {id} of {} is unreadable: {e}", table.name())))
}

/// One batch to persist in one transaction.
pub struct Batch<'a> {
    pub dirty: Dirty,
    /// The airspace's change sequence after the batch.
    pub seq: u64,
    /// Index of the first leaf of `leaves` (the committed log size before).
    pub first_leaf: u64,
    pub leaves: &'a [Vec<u8>],
    /// The RFC 6962 leaf hash of each of `leaves`.
    pub leaf_hashes: &'a [tlog::Hash],
    /// The log's full tiles these leaves completed (C2SP tlog-tiles), kept
    /// in the same transaction: proofs read them back on demand.
    pub tiles: Vec<Tile>,
}

/// Everything a store holds in memory, as loaded from the database.
pub struct Loaded {
    pub state: AirspaceState,
    pub tree: TiledTree,
    pub line: LineState,
    pub latest: Option<(u64, String)>,
}

/// What other writers on the same database committed since this one last
/// looked: the records that changed (as events), the sequence number, the
/// log entries from this writer's log size on, and the newest checkpoint.
#[derive(Default)]
pub struct Delta {
    pub seq: u64,
    pub events: Vec<Event>,
    pub entries: Vec<(u64, Vec<u8>)>,
    pub latest: Option<(u64, String)>,
}

/// The persistence a store's writer runs on.
pub trait Persistence: Send + Sync + 'static {
    /// The writer's own connection and bookkeeping.
    type Writer: Send + 'static;

    /// Whether [`Dirty`] rows should carry their 4D volumes.
    fn wants_extents(&self) -> bool {
        false
    }
    /// Whether the next batch may be decided while one is being persisted:
    /// only for a backend whose [`Persistence::begin`] never hands anything
    /// over and whose writer needs no exclusive access taken before a
    /// batch is decided (its only writer). Overlapped batches skip `begin`.
    fn pipelines(&self) -> bool {
        false
    }
    /// What other writers committed since the log had `log_size` entries
    /// (`None`: nothing, or no other writers) and, when `exclusive`, write
    /// access for one batch (until [`Persistence::persist`] or
    /// [`Persistence::release`]); otherwise only a consistent read, ended by
    /// [`Persistence::release`].
    fn begin<'a>(
        &'a self,
        w: &'a mut Self::Writer,
        log_size: u64,
        exclusive: bool,
    ) -> BoxFuture<'a, Result<Option<Delta>, StoreError>>;
    /// Persists a batch, durably, and ends the exclusive access.
    fn persist<'a>(
        &'a self,
        w: &'a mut Self::Writer,
        batch: Batch<'a>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Ends the exclusive access without writing.
    fn release<'a>(&'a self, w: &'a mut Self::Writer) -> BoxFuture<'a, ()>;
    /// Whether other writers share the database (replicas): reads then
    /// settle first ([`crate::writer::Engine`]'s `settle`).
    fn shared(&self) -> bool {
        false
    }
    /// The database's batch counter as far as the writer's state has taken
    /// it in (`None` for a database with no other writers).
    fn applied(&self, _w: &Self::Writer) -> Option<i64> {
        None
    }
    /// The database's batch counter now: every write any writer has
    /// answered is at or below it.
    fn counter(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async { Ok(0) })
    }
    /// Closes the writer's connection and the readers' (the store is
    /// shutting down). `committed` is the airspace's state when it is
    /// exactly what the database holds (every batch committed, none
    /// failed), for a backend that keeps a snapshot of it.
    fn close(
        &self,
        w: Self::Writer,
        committed: Option<std::sync::Arc<std::sync::RwLock<AirspaceState>>>,
    ) -> BoxFuture<'_, ()> {
        drop((w, committed));
        Box::pin(async {})
    }
    /// After a failed commit: a clean connection and everything reloaded.
    fn recover<'a>(
        &'a self,
        w: &'a mut Self::Writer,
        me: &'a str,
    ) -> BoxFuture<'a, Result<Loaded, StoreError>>;

    /// Committed leaves at these indices (all below the committed size).
    fn leaves(&self, wanted: Vec<u64>) -> BoxFuture<'_, Result<Vec<crate::Leaf>, StoreError>>;
    /// The log's stored full tiles among these (level, index); any not
    /// stored are left out.
    fn tiles(&self, wanted: Vec<(u8, u64)>) -> BoxFuture<'_, Result<Vec<Tile>, StoreError>>;
    /// The lowest index of a committed entry with this RFC 6962 leaf hash.
    fn find_leaf(&self, leaf: tlog::Hash) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;
    /// Leaf bytes of entries `start..end`.
    fn entries(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>>;
    /// Keeps a signed checkpoint; answers the note kept for that size (the
    /// first one kept wins).
    fn save_checkpoint(
        &self,
        size: u64,
        note: String,
    ) -> BoxFuture<'_, Result<Option<String>, StoreError>>;
    fn add_cosignature(&self, size: u64, line: String) -> BoxFuture<'_, Result<(), StoreError>>;
    fn witnessed(&self, origin: String) -> BoxFuture<'_, Result<Option<Cosigned>, StoreError>>;
    fn save_witnessed(&self, origin: String, c: Cosigned) -> BoxFuture<'_, Result<(), StoreError>>;
    fn misbehaviour(&self) -> BoxFuture<'_, Result<Vec<crate::Misbehaviour>, StoreError>>;
    fn save_misbehaviour(
        &self,
        origin: String,
        a: String,
        b: String,
        found_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// See [`crate::Store::mark_once`].
    fn mark_once(
        &self,
        kind: crate::Mark,
        id: String,
        until_ms: u64,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// See [`crate::Store::marks`].
    fn marks(
        &self,
        kind: crate::Mark,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>>;
    /// Whether this process runs the node's singleton duties.
    fn is_leader(&self) -> bool {
        true
    }
}

/// The cores this process may use, asked once: the standard library reads
/// the cgroup's CPU quota from files at every call, which cost more than
/// signing a small batch (5% of the writer's time when asked per batch).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .max(1)
    })
}

/// `f` over `items` split into one part per core, in order, the first part
/// on the calling thread and each other on its own; the parts' results
/// joined, or the first error.
pub fn on_all_cores<I: Sync, T: Send>(
    items: &[I],
    what: &str,
    f: impl Fn(&[I]) -> Result<Vec<T>, StoreError> + Sync,
) -> Result<Vec<T>, StoreError> {
    let chunk = items.len().div_ceil(cores()).max(1);
    let f = &f;
    let mut chunks = items.chunks(chunk);
    let Some(first) = chunks.next() else {
        return Ok(Vec::new());
    };
    let parts: Vec<Result<Vec<T>, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks.map(|part| scope.spawn(move || f(part))).collect();
        let mut parts = vec![f(first)];
        parts.extend(handles.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(StoreError::Failed(format!("a {what} thread panicked"))))
        }));
        parts
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Appends committed entries `(index, bytes)` to the tree and applies the
/// line's among them to the line's state; they must continue the tree
/// without a gap. Answers whether any was the line's.
pub fn replay(
    tree: &mut TiledTree,
    line: &mut LineState,
    entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
) -> Result<bool, StoreError> {
    let mut any_line = false;
    for (idx, data) in entries {
        if idx != tree.size() {
            return Err(StoreError::Failed(format!(
                "the log has a gap before entry {idx} (expected {})",
                tree.size()
            )));
        }
        any_line |= replay_line(line, idx, &data)?;
        tree.append(&data);
    }
    Ok(any_line)
}

/// Whether log entry bytes may be the line's: every `line.*` entry holds
/// the text "line." (so may others, which the full parse then drops).
pub fn maybe_line(data: &[u8]) -> bool {
    data.windows(5).any(|w| w == b"line.")
}

/// Applies log entry `idx` to the line's state if it is the line's;
/// answers whether it was.
pub fn replay_line(line: &mut LineState, idx: u64, data: &[u8]) -> Result<bool, StoreError> {
    if maybe_line(data)
        && let Some(parsed) = liaison::decide::line_entry(data)
    {
        let (e, l) = parsed
            .map_err(|e| StoreError::Failed(format!("log entry {idx} is unreadable: {e}")))?;
        line.apply(&e.entry.origin, idx, tlog::leaf_hash(data), l);
        return Ok(true);
    }
    Ok(false)
}

/// Entries read per page when a store rebuilds its tree and line at start
/// (the log is never read into memory whole).
pub const LOAD_PAGE: i64 = 8192;

/// Full tiles kept in memory (8 KiB of hashes and their inner subtrees
/// each); proofs read any other from the database.
pub const TILE_CACHE: usize = 1024;

/// The tree and the line's state rebuilt from the log page by page, with
/// the full tiles the database does not hold yet (a log written before the
/// tiles were stored; since then a batch's tiles commit with its entries) —
/// `stored[l]` is how many full tiles of level l it holds, from index 0.
pub struct Rebuild {
    pub tree: TiledTree,
    pub line: LineState,
    stored: Vec<u64>,
    pub unstored: Vec<Tile>,
}

impl Rebuild {
    /// `stored`: the database's (level, number of full tiles) rows.
    pub fn new(me: &str, stored: Vec<(i64, i64)>) -> Self {
        let mut counts = Vec::new();
        for (level, n) in stored {
            let l = usize::try_from(level).unwrap_or(0);
            counts.resize(counts.len().max(l + 1), 0);
            counts[l] = n.max(0) as u64;
        }
        let stored = counts;
        Rebuild {
            tree: TiledTree::new(TILE_CACHE),
            line: LineState::new(me),
            stored,
            unstored: Vec::new(),
        }
    }

    /// Whether the database's full tiles cover a log of `size` entries:
    /// every full tile of every level, from index 0.
    pub fn tiles_cover(&self, size: u64) -> bool {
        (0..7u32).all(|l| {
            let full = size >> (8 * (l + 1));
            full == 0 || self.stored.get(l as usize).copied().unwrap_or(0) >= full
        })
    }

    /// The next page of entries `(index, bytes)`, in order; answers
    /// whether the page was full (there may be more).
    pub fn feed(&mut self, page: Vec<(i64, Vec<u8>)>) -> Result<bool, StoreError> {
        let full = page.len() as i64 >= LOAD_PAGE;
        let page: Vec<(u64, Vec<u8>)> = page.into_iter().map(|(i, d)| (i as u64, d)).collect();
        replay(&mut self.tree, &mut self.line, page)?;
        for t in self.tree.take_completed() {
            if t.index >= self.stored.get(t.level as usize).copied().unwrap_or(0) {
                self.unstored.push(t);
            }
        }
        Ok(full)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn work_spread_over_the_cores_comes_back_in_order() {
        for n in [0usize, 1, 2, 3, 17, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let out = on_all_cores(&items, "doubling", |part| {
                Ok(part.iter().map(|i| i * 2).collect())
            })
            .unwrap();
            assert_eq!(
                out,
                items.iter().map(|i| i * 2).collect::<Vec<_>>(),
                "{n} items"
            );
        }
    }

    #[test]
    fn a_failing_part_fails_the_whole() {
        let items: Vec<usize> = (0..100).collect();
        for bad in [0usize, 99] {
            let r = on_all_cores(&items, "checking", |part| {
                if part.contains(&bad) {
                    Err(StoreError::Failed(format!("item {bad}")))
                } else {
                    Ok(part.to_vec())
                }
            });
            assert_eq!(r.unwrap_err().message(), format!("item {bad}"));
        }
    }
}
