//! The embedded SQLite store.
//!
//! Writes are serialised through one writer task. It takes every queued
//! decision (up to [`MAX_BATCH`]), runs them in order against the in-memory
//! state — each sees the effects of those before it — then persists the net
//! row changes of the whole batch in one transaction and syncs it (group
//! commit) before any caller is answered. Readers see the in-memory state; a
//! batch becomes visible to them while it is being synced, and if the commit
//! fails every caller of the batch gets an error and the state is reloaded
//! from disk, so nothing unsynced is ever acknowledged.

use crate::leaves::LeafIndex;
use airspace::{AirspaceState, Constraint, OperationalIntent, Subscription, UssAvailability};
use liaison::LineState;
use node::entries::LogSigner;
use node::persist::{Batch, Delta, LOAD_PAGE, Loaded, Persistence, Rebuild, Table};
use node::writer::Engine;
use node::{BoxFuture, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tlog::tiles::{Tile, TiledTree};
use tlog::witness::Cosigned;

mod changes;
mod keeper;
mod rowids;
mod snapshot;

use keeper::Keeper;
use rowids::RowidMap;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_airspace.sql")),
    (2, include_str!("../migrations/sqlite/0002_log.sql")),
    (3, include_str!("../migrations/sqlite/0003_witness.sql")),
    (4, include_str!("../migrations/sqlite/0004_tiles.sql")),
    (5, include_str!("../migrations/sqlite/0005_leaf_index.sql")),
    (
        6,
        include_str!("../migrations/sqlite/0006_recent_leaves.sql"),
    ),
    (
        7,
        include_str!("../migrations/sqlite/0007_line_entries.sql"),
    ),
    (
        8,
        include_str!("../migrations/sqlite/0008_leaf_index_in_memory.sql"),
    ),
    (
        9,
        include_str!("../migrations/sqlite/0009_console_marks.sql"),
    ),
    (
        10,
        include_str!("../migrations/sqlite/0010_snapshot_changes.sql"),
    ),
];

/// Level-0 tiles (8 KiB each) read per query when the leaf index is built.
const TILES_PER_READ: i64 = 512;

/// The embedded store: the shared engine over SQLite.
pub type SqliteStore = Engine<Sqlite>;

/// SQLite as an engine's backend: one writer connection (the only writer
/// of the file), a small pool for the log's reads.
pub struct Sqlite {
    reads: SqlitePool,
    path: PathBuf,
    /// The writer's connection options (no automatic checkpoints).
    opts: SqliteConnectOptions,
    wal: std::sync::Arc<WalRestart>,
    /// The committed entries by leaf hash (`leaves.rs`), rebuilt from the
    /// level-0 tiles at open; the writer adds each batch's once committed.
    leaves: std::sync::RwLock<LeafIndex>,
    /// The size of the checkpoint in the seal (`seal.rs`), held while the
    /// seal is replaced: checkpoints are saved by the checkpointer and by
    /// readers asking for the first one, and two replacing it at once
    /// would race on its temporary file.
    sealed: std::sync::Arc<std::sync::Mutex<u64>>,
    /// How the airspace was loaded at open.
    origin: Origin,
    /// Keeps the state snapshot a recent base (`sqlite/keeper.rs`).
    keeper: std::sync::Arc<Keeper>,
}

/// How often, at most, the WAL is checkpointed into the database, off the
/// writer; only after a commit (an idle store does nothing). Each
/// checkpoint ends with a sync of the database file, and a commit's sync
/// of the WAL waits behind it on the device, so small passes often beat
/// large ones rarely: every 200 ms (~3,000 pages a pass at 7,000
/// creates/s) such a sync sometimes took 80 ms and held a commit for 75;
/// every 50 ms, a quarter the size (open-loop p99 at 7,000 creates/s
/// 65–92 → 24–31 ms); every 10 ms (~150 pages at 10,000 creates/s), the
/// open-loop p99 at 10,000 creates/s 7.2–7.4 → 4.5–4.7 ms, with 5 ms no
/// better (docs/benchmarks.md).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// How long the checkpointer waits for a commit before it looks again
/// whether the store is still open.
const CHECKPOINT_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// WAL frames (4 KiB pages) past which the WAL is restarted from its
/// beginning. SQLite restarts it only when a write transaction starts with
/// every frame already checkpointed; under a steady stream of batches the
/// checkpointer never catches the writer, and the WAL grew without bound
/// (1 GB after 150k creates in `detente bench`; the disk is not given back
/// until the load pauses). Past this many frames (256 MiB),
/// the writer checkpoints the frames committed since the checkpointer's
/// last pass itself, between two batches, and its next transaction starts
/// the WAL over, overwriting blocks it already has. That checkpoint syncs
/// the database file and holds the writer for it (2–35 ms on the VM of
/// docs/benchmarks.md): a large bound makes it rare (every ~4 s at 10,000
/// creates/s).
const RESTART_WAL_AT: i64 = 65_536;

/// The WAL file's size once it restarts (SQLite's `journal_size_limit`).
const WAL_SIZE_LIMIT: i64 = 256 << 20;

/// The WAL's restarts (see [`RESTART_WAL_AT`]), shared by the checkpointer
/// (which asks) and the writer (which checkpoints the last frames).
#[derive(Debug)]
struct WalRestart {
    /// Frames past which the checkpointer asks for a restart.
    at: i64,
    wanted: std::sync::atomic::AtomicBool,
    /// Checkpoints the writer completed for a restart since the store opened.
    done: std::sync::atomic::AtomicU64,
    /// Woken by the writer after each commit: there are frames to checkpoint.
    committed: tokio::sync::Notify,
}

/// The writer's connection and where each record lives.
pub struct SqliteWriter {
    conn: SqliteConnection,
    ids: RowIds,
    wal: std::sync::Arc<WalRestart>,
    keeper: std::sync::Arc<Keeper>,
    /// The changes dropped from `snapshot_changes`, up to this sequence.
    pruned: u64,
    /// The data folder's lock, held until the close is done.
    _folder: FolderLock,
}

/// The lock that makes one store at a time the data folder's: held from
/// before the open reads anything until the close has written its snapshot
/// and closed its connection (an advisory lock on `store.lock`, let go by
/// the system when the file is dropped or the process ends). A store opened
/// while another still closes on the same folder waits for it: the state
/// snapshot the close writes and the changes it then drops are otherwise
/// read half-way (a snapshot from before them, with the changes gone).
struct FolderLock {
    _file: std::fs::File,
}

/// How long an open waits for the store that holds its data folder to let
/// go of it (a close at a million records writes its snapshot in seconds).
const FOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl FolderLock {
    async fn take(dir: &Path) -> Result<FolderLock, StoreError> {
        let path = dir.join("store.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Failed(format!("opening {}: {e}", path.display())))?;
        let deadline = tokio::time::Instant::now() + FOLDER_WAIT;
        let mut warned = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FolderLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::Failed(format!(
                        "locking {}: {e}",
                        path.display()
                    )));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Failed(format!(
                    "the data folder {} is held by another store (another node running on it?) \
                     and was not let go within {} s",
                    dir.display(),
                    FOLDER_WAIT.as_secs()
                )));
            }
            if !warned {
                warned = true;
                tracing::warn!(path = %path.display(), "the data folder is held by another store; waiting for it to close");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Checkpoints the WAL on the writer's own connection, between batches,
/// when the checkpointer asked: with every frame copied, the writer's next
/// transaction starts the WAL over. A failure is only logged (the WAL goes
/// on growing until the next try).
async fn restart_wal(w: &mut SqliteWriter) {
    use std::sync::atomic::Ordering;
    if !w.wal.wanted.swap(false, Ordering::Relaxed) {
        return;
    }
    let t0 = std::time::Instant::now();
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut w.conn)
        .await
    {
        Ok((busy, log, done)) => {
            if busy == 0 && done == log {
                w.wal.done.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(
                busy,
                log,
                done,
                us = t0.elapsed().as_micros() as u64,
                "the writer checkpointed the WAL's last frames so that it restarts"
            )
        }
        Err(e) => tracing::warn!(error = %e, "checkpointing the WAL before restarting it"),
    }
}

fn err(context: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Failed(format!("{context}: {e}"))
}

/// Noted changes a newer snapshot holds that a batch drops, at most: a
/// snapshot written while running at a million records holds ~250,000,
/// too many to delete inside one batch without holding it up (at 10,000
/// creates/s, a few hundred batches a second drop them well before the
/// next snapshot).
const PRUNE_PER_BATCH: i64 = 512;

/// Rows per multi-row statement (SQLite allows 32,766 parameters).
const ROWS_PER_STATEMENT: usize = 500;

async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY) STRICT")
        .execute(&mut *conn)
        .await
        .map_err(err("creating schema_version"))?;
    // Each migration's checksum (a column databases from before them lack).
    let has_checksums: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_info('schema_version') WHERE name = 'checksum'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(err("reading schema_version"))?;
    if has_checksums == 0 {
        sqlx::query("ALTER TABLE schema_version ADD COLUMN checksum TEXT")
            .execute(&mut *conn)
            .await
            .map_err(err("adding checksums to schema_version"))?;
    }
    let applied: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT version, checksum FROM schema_version")
            .fetch_all(&mut *conn)
            .await
            .map_err(err("reading schema_version"))?;
    for version in crate::migrations::check(&applied, MIGRATIONS, "embedded")? {
        let sql = MIGRATIONS
            .iter()
            .find(|(v, _)| *v == version)
            .map_or("", |m| m.1);
        sqlx::query("UPDATE schema_version SET checksum = ?1 WHERE version = ?2")
            .bind(crate::migrations::checksum(sql))
            .bind(version)
            .execute(&mut *conn)
            .await
            .map_err(err("recording a migration's checksum"))?;
    }
    let current = applied.iter().map(|(v, _)| *v).max();
    for (version, sql) in MIGRATIONS {
        if current.is_some_and(|c| c >= *version) {
            continue;
        }
        let mut tx = conn.begin().await.map_err(err("starting a migration"))?;
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(err("applying a migration"))?;
        sqlx::query("INSERT INTO schema_version (version, checksum) VALUES (?1, ?2)")
            .bind(version)
            .bind(crate::migrations::checksum(sql))
            .execute(&mut *tx)
            .await
            .map_err(err("recording a migration"))?;
        tx.commit().await.map_err(err("committing a migration"))?;
        tracing::info!(version, "applied sqlite migration");
    }
    Ok(())
}

/// Where each record lives: its rowid per (table, id), and the next rowid.
#[derive(Default)]
struct RowIds {
    /// Each table's rowids by record id, one map per table (indexed by
    /// [`Table`]'s order) so that a lookup borrows the id: the ids loaded
    /// sorted, those added since hashed (`rowids.rs`). Not a B-tree of
    /// (table, id): at 100k records its id comparisons were ~9% of the
    /// writer's time.
    of: [RowidMap; Table::ALL.len()],
    next: i64,
}

/// A record id as the rowid maps key it. Most are UUIDs (intents,
/// constraints, subscriptions), held as their 16 bytes rather than 36 of
/// text behind a pointer: hashing and comparing them cost a third of the
/// text's, with no pointer to chase (the maps' inserts after each commit
/// were ~4.5% of the process's CPU under creates). Only the
/// canonical text of a UUID (lowercase, hyphenated: what the records' ids
/// print as) is taken as one, so two different texts never share a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RecordKey {
    Uuid(uuid::Uuid),
    Text(Box<str>),
}

impl RecordKey {
    fn of(id: &str) -> RecordKey {
        if id.len() == uuid::fmt::Hyphenated::LENGTH
            && let Ok(u) = uuid::Uuid::try_parse(id)
        {
            let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
            if u.hyphenated().encode_lower(&mut canonical).as_bytes() == id.as_bytes() {
                return RecordKey::Uuid(u);
            }
        }
        RecordKey::Text(id.into())
    }
}

/// Rows read per query at open. SQLite joins each page into one text —
/// `rowid` US `hex(id)` US `body`, records separated by RS: fetched one by
/// one through sqlx, rows cost a read of a 100k store a third more. The
/// separators cannot occur in the fields: a number, hex digits (an id may
/// be a USS's name from a URL, any text), and JSON, which has no raw
/// control characters.
const READ_PAGE: i64 = 512;
const UNIT: char = '\x1f';
const RECORD: char = '\x1e';

/// A table's rows as read: (rowid, id, record).
type DecodedRows<T> = Result<Vec<(i64, String, T)>, StoreError>;

/// Pages being decoded at once, at most: each page's text is dropped as
/// soon as it is decoded, so a table's text is never all held at once
/// (1.6 GB at a million intents, and the page faults of as much memory).
const DECODING: usize = 8;

/// The query of a page of a table's rows, after a rowid (`?1`), at most
/// `?2` of them.
fn page_sql(table: Table) -> String {
    // Only the table's name is formatted into the SQL; the bounds are bound.
    format!(
        "SELECT group_concat(rowid || char(31) || hex(id) || char(31) || body, char(30)), max(rowid), count(*) \
         FROM (SELECT rowid, id, body FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2)",
        table.name()
    )
}

/// A page of rows (joined as [`READ_PAGE`] tells), the last rowid in it and
/// how many rows it holds.
async fn fetch_page(
    conn: &mut SqliteConnection,
    sql: &str,
    after: i64,
) -> Result<(Option<String>, Option<i64>, i64), StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(after)
        .bind(READ_PAGE)
        .fetch_one(&mut *conn)
        .await
        .map_err(err("loading rows"))
}

/// Rowids in rising order, [`READ_PAGE`] at a time: the pages
/// [`fetch_rows`] reads.
fn rowid_pages(rowids: &std::collections::HashSet<i64>) -> Vec<Vec<i64>> {
    let mut sorted: Vec<i64> = rowids.iter().copied().collect();
    sorted.sort_unstable();
    sorted
        .chunks(READ_PAGE as usize)
        .map(<[i64]>::to_vec)
        .collect()
}

/// The rows of a table at some rowids (at most [`READ_PAGE`]), joined as
/// [`READ_PAGE`] tells.
async fn fetch_rows(
    conn: &mut SqliteConnection,
    table: Table,
    rowids: &[i64],
) -> Result<Option<String>, StoreError> {
    // Only the table's name and placeholders are formatted into the SQL.
    let sql = format!(
        "SELECT group_concat(rowid || char(31) || hex(id) || char(31) || body, char(30)) \
         FROM (SELECT rowid, id, body FROM {} WHERE rowid IN ({}) ORDER BY rowid)",
        table.name(),
        vec!["?"; rowids.len()].join(", ")
    );
    let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
    for r in rowids {
        q = q.bind(*r);
    }
    q.fetch_one(&mut *conn).await.map_err(err("loading rows"))
}

/// A table's rows, read page by page and decoded on the blocking pool while
/// the next pages are read.
struct TableRows<T> {
    table: Table,
    done: Vec<(i64, String, T)>,
    pending: std::collections::VecDeque<tokio::task::JoinHandle<DecodedRows<T>>>,
}

impl<T: serde::de::DeserializeOwned + Send + 'static> TableRows<T> {
    /// Reads the table's rows (their decoding may still be under way).
    async fn read(conn: &mut SqliteConnection, table: Table) -> Result<Self, StoreError> {
        let sql = page_sql(table);
        let mut rows = TableRows::new(table);
        let mut after = 0i64;
        loop {
            let (page, last, n) = fetch_page(conn, &sql, after).await?;
            if let Some(page) = page {
                rows.decode(page).await?;
            }
            match last {
                Some(l) if n >= READ_PAGE => after = l,
                _ => break,
            }
        }
        Ok(rows)
    }

    /// Reads the table's rows at `rowids` (those that are there), in rowid
    /// order.
    async fn read_rowids(
        conn: &mut SqliteConnection,
        table: Table,
        rowids: &std::collections::HashSet<i64>,
    ) -> Result<Self, StoreError> {
        let mut rows = TableRows::new(table);
        for chunk in rowid_pages(rowids) {
            if let Some(page) = fetch_rows(conn, table, &chunk).await? {
                rows.decode(page).await?;
            }
        }
        Ok(rows)
    }

    fn new(table: Table) -> Self {
        TableRows {
            table,
            done: Vec::new(),
            pending: Default::default(),
        }
    }

    /// Decodes a page on the blocking pool, at most [`DECODING`] at once.
    async fn decode(&mut self, page: String) -> Result<(), StoreError> {
        if self.pending.len() >= DECODING {
            self.take_oldest().await?;
        }
        let table = self.table;
        self.pending.push_back(tokio::task::spawn_blocking(move || {
            decode_page(table, &page)
        }));
        Ok(())
    }

    async fn take_oldest(&mut self) -> Result<(), StoreError> {
        if let Some(h) = self.pending.pop_front() {
            let page = h.await.map_err(|e| {
                StoreError::Failed(format!("decoding {}: {e}", self.table.name()))
            })??;
            self.done.extend(page);
        }
        Ok(())
    }

    /// The decoded (rowid, id, record)s, in rowid order.
    async fn all(mut self) -> DecodedRows<T> {
        while !self.pending.is_empty() {
            self.take_oldest().await?;
        }
        Ok(self.done)
    }

    /// The decoded records, in rowid order, with their rowids — gathered on
    /// a task of its own while the next table is read.
    fn finishing(self) -> tokio::task::JoinHandle<Result<Finished<T>, StoreError>> {
        tokio::spawn(async move {
            let mut rows = self;
            while !rows.pending.is_empty() {
                rows.take_oldest().await?;
            }
            let (mut records, mut keys) = (
                Vec::with_capacity(rows.done.len()),
                Vec::with_capacity(rows.done.len()),
            );
            let mut next = 1;
            for (rowid, id, record) in rows.done {
                next = next.max(rowid + 1);
                keys.push((RecordKey::of(&id), rowid));
                records.push(record);
            }
            let rowids = RowidMap::from_loaded(keys).map_err(|why| {
                StoreError::Failed(format!("loading {}: {why}", rows.table.name()))
            })?;
            Ok(Finished {
                records,
                rowids,
                next,
            })
        })
    }
}

/// Reads a table; its records are gathered on a task of their own.
async fn load_table<T: serde::de::DeserializeOwned + Send + 'static>(
    conn: &mut SqliteConnection,
    table: Table,
) -> Result<tokio::task::JoinHandle<Result<Finished<T>, StoreError>>, StoreError> {
    Ok(TableRows::<T>::read(conn, table).await?.finishing())
}

/// A table's records as loaded.
struct Finished<T> {
    records: Vec<T>,
    rowids: RowidMap,
    /// Past the highest rowid.
    next: i64,
}

/// Takes a table's records, noting their rowids in `ids`.
async fn finished<T>(
    table: Table,
    ids: &mut RowIds,
    h: tokio::task::JoinHandle<Result<Finished<T>, StoreError>>,
) -> Result<Vec<T>, StoreError> {
    let f = h
        .await
        .map_err(|e| StoreError::Failed(format!("loading {}: {e}", table.name())))??;
    ids.next = ids.next.max(f.next);
    ids.of[table as usize] = f.rowids;
    Ok(f.records)
}

/// Splits a fetched page into (rowid, id, record) and decodes the records.
fn decode_page<T: serde::de::DeserializeOwned>(table: Table, page: &str) -> DecodedRows<T> {
    let mut out = Vec::with_capacity(READ_PAGE as usize);
    for record in page.split(RECORD) {
        let mut fields = record.splitn(3, UNIT);
        let (Some(rowid), Some(id), Some(body)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(StoreError::Failed(format!(
                "a row of {} cannot be split into rowid, id and body",
                table.name()
            )));
        };
        let rowid: i64 = rowid.parse().map_err(|_| {
            StoreError::Failed(format!("a row of {} has the rowid {rowid:?}", table.name()))
        })?;
        let id = unhex(id).ok_or_else(|| {
            StoreError::Failed(format!("a row of {} has the id {id:?}", table.name()))
        })?;
        let record = node::persist::decode(table, &id, body)?;
        out.push((rowid, id, record));
    }
    Ok(out)
}

/// Text from SQLite's `hex()` of it.
fn unhex(h: &str) -> Option<String> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The newest schema version this build knows.
fn schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The log's size and its newest entry's leaf hash (zeros when empty).
async fn newest_entry(conn: &mut SqliteConnection) -> Result<(u64, tlog::Hash), StoreError> {
    let newest: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT idx, data FROM log_entries ORDER BY idx DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(err("reading the newest log entry"))?;
    Ok(newest.map_or((0, [0u8; 32]), |(idx, data)| {
        (idx as u64 + 1, tlog::leaf_hash(&data))
    }))
}

/// Every change after this sequence is noted in `snapshot_changes`.
async fn changes_from(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let from: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'changes_from'")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("reading changes_from"))?;
    Ok(from as u64)
}

/// Whether a snapshot of `head` is a base of this database, at the
/// sequence `seq`: of its schema, no later than it, no earlier than the
/// oldest change still noted, and of its log (the entry at the size it
/// names). Why not, otherwise.
async fn is_base(
    conn: &mut SqliteConnection,
    head: &snapshot::Head,
    seq: u64,
) -> Result<Result<(), String>, StoreError> {
    if head.schema != schema_version() {
        return Ok(Err(format!(
            "of schema {}; the database is at schema {}",
            head.schema,
            schema_version()
        )));
    }
    let from = changes_from(conn).await?;
    if head.seq > seq || head.seq < from {
        return Ok(Err(format!(
            "at sequence {}; the database is at {seq}, its changes noted from {from}",
            head.seq
        )));
    }
    let (size, newest) = head.log;
    let ours = match size.checked_sub(1) {
        None => newest == [0u8; 32],
        Some(last) => {
            let data: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT data FROM log_entries WHERE idx = ?1")
                    .bind(last as i64)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(err("reading a log entry"))?;
            data.is_some_and(|d| tlog::leaf_hash(&d) == newest)
        }
    };
    if !ours {
        return Ok(Err(format!(
            "of a log of {size} entries that is not this database's"
        )));
    }
    Ok(Ok(()))
}

/// Where the changes wanted in `snapshot_changes` start.
#[derive(Clone, Copy, Debug)]
enum Since {
    /// After this sequence (the whole table is read).
    Seq(u64),
    /// After this id of the table, as a segment of the snapshot's changes
    /// names the last it holds: ids rise with the sequence, so this is the
    /// same as after the segment's sequence, and a range of the key.
    Id(u64),
}

impl Since {
    /// After the last segment of `chain`, else after the snapshot's
    /// sequence `base`.
    fn chain(chain: &[changes::Segment], base: u64) -> Since {
        chain
            .last()
            .map_or(Since::Seq(base), |s| Since::Id(s.head.last_change))
    }
}

/// Each snapshot table's rows noted in `snapshot_changes` after `since`.
async fn changed_rowids(
    conn: &mut SqliteConnection,
    since: Since,
) -> Result<[std::collections::HashSet<i64>; 3], StoreError> {
    let (sql, after) = match since {
        Since::Seq(s) => (
            "SELECT DISTINCT tbl, row FROM snapshot_changes WHERE seq > ?1",
            s,
        ),
        Since::Id(id) => (
            "SELECT DISTINCT tbl, row FROM snapshot_changes WHERE id > ?1",
            id,
        ),
    };
    let rows: Vec<(i64, i64)> = sqlx::query_as(sql)
        .bind(after as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(err("reading the changes since the state snapshot"))?;
    let mut out: [std::collections::HashSet<i64>; 3] = Default::default();
    for (tbl, row) in rows {
        if let Some(i) = snapshot::TABLES.iter().position(|t| *t as i64 == tbl) {
            out[i].insert(row);
        }
    }
    Ok(out)
}

/// A table's records from the snapshot with the rows `changed` since its
/// sequence laid over them: a changed row as `now` holds it (by id), or
/// gone. In place: the records left keep their order and `now`'s follow
/// (two runs by id, which the state's maps and the rowid map sort by
/// merging them); moving every record into a new vector in one merge took
/// 0.5-1.0 s of a start after a crash at 1M, most of it the kernel
/// clearing the new vector's pages.
fn lay_over<T>(
    mut base: snapshot::Records<T>,
    changed: &std::collections::HashSet<i64>,
    now: Vec<(i64, T)>,
    id: impl Fn(&T) -> uuid::Uuid,
) -> snapshot::Records<T> {
    if changed.is_empty() {
        return base;
    }
    let changed = RowidSet::new(changed);
    let keep: Vec<bool> = base
        .rowids
        .iter()
        .map(|(_, rowid)| !changed.contains(*rowid))
        .collect();
    let mut kept = keep.iter();
    base.records
        .retain(|_| kept.next().copied().unwrap_or(false));
    let mut kept = keep.iter();
    base.rowids
        .retain(|_| kept.next().copied().unwrap_or(false));
    base.records.reserve_exact(now.len());
    base.rowids.reserve_exact(now.len());
    for (rowid, record) in now {
        let id = id(&record);
        base.max_rowid = base.max_rowid.max(rowid);
        base.rowids.push((id, rowid));
        base.records.push((id, record));
    }
    base
}

/// Rowids looked up once for each of a snapshot's records: a bit each when
/// they are not far apart (rowids are dense: a few hundred kilobytes at a
/// million rows, a bit test instead of a hash), else the set itself.
enum RowidSet<'a> {
    Bits(Vec<u64>),
    Set(&'a std::collections::HashSet<i64>),
}

impl<'a> RowidSet<'a> {
    /// The most rowids held as bits (8 MiB of them).
    const MOST_BITS: i64 = 1 << 26;

    fn new(set: &'a std::collections::HashSet<i64>) -> Self {
        let in_range = |r: &i64| (0..Self::MOST_BITS).contains(r);
        if !set.iter().all(in_range) {
            return RowidSet::Set(set);
        }
        let highest = set.iter().copied().max().unwrap_or(0);
        let mut bits = vec![0u64; highest as usize / 64 + 1];
        for &r in set {
            bits[r as usize / 64] |= 1 << (r % 64);
        }
        RowidSet::Bits(bits)
    }

    fn contains(&self, rowid: i64) -> bool {
        match self {
            RowidSet::Set(s) => s.contains(&rowid),
            RowidSet::Bits(bits) => usize::try_from(rowid)
                .ok()
                .and_then(|r| bits.get(r / 64).map(|w| w >> (r % 64) & 1 == 1))
                .unwrap_or(false),
        }
    }
}

/// The rows of each snapshot table changed since the snapshot.
#[derive(Default)]
struct Layings {
    intents: changes::Laying<OperationalIntent>,
    constraints: changes::Laying<Constraint>,
    subscriptions: changes::Laying<Subscription>,
}

impl Layings {
    fn len(&self) -> u64 {
        (self.intents.len() + self.constraints.len() + self.subscriptions.len()) as u64
    }

    /// Lays a segment's three tables, read whole first: a damaged one lays
    /// nothing.
    fn lay_segment(&mut self, s: &mut changes::Segment) -> Result<(), String> {
        fn pairs<T>(r: snapshot::Records<T>) -> impl Iterator<Item = (i64, T)> {
            r.rowids
                .into_iter()
                .map(|p| p.1)
                .zip(r.records.into_iter().map(|p| p.1))
        }
        let (i, ir) = s.table(|r: &OperationalIntent| r.id)?;
        let (c, cr) = s.table(|r: &Constraint| r.id)?;
        let (sub, sr) = s.table(|r: &Subscription| r.id)?;
        s.end()?;
        self.intents.lay(ir, pairs(i));
        self.constraints.lay(cr, pairs(c));
        self.subscriptions.lay(sr, pairs(sub));
        Ok(())
    }
}

/// How the rows changed since a snapshot were found at open.
#[derive(Clone, Copy, Debug, Default)]
struct Laid {
    /// Rows changed since the snapshot, laid over it.
    rows: u64,
    /// Segments of its changes read (`changes.rs`).
    segments: u64,
    /// Rows changed after the last segment, read as rows.
    from_rows: u64,
}

/// The rows changed since the snapshot of `base` that its chain of
/// segments holds, each segment of this database at a sequence it reached,
/// and where the changes after the chain start. The segments after one
/// that is not are removed.
async fn lay_segments(
    conn: &mut SqliteConnection,
    dir: &Path,
    base: &snapshot::Head,
    seq: u64,
) -> Result<(Layings, Since, u64), StoreError> {
    let chain = {
        let (dir, base) = (dir.to_path_buf(), base.clone());
        tokio::task::spawn_blocking(move || changes::chain(&dir, &base))
            .await
            .map_err(|e| StoreError::Failed(format!("reading the snapshot's changes: {e}")))?
    };
    let (mut valid, mut dropped) = (Vec::new(), Vec::new());
    for s in chain {
        if dropped.is_empty() {
            match is_base(conn, &s.head.at, seq).await? {
                Ok(()) => {
                    valid.push(s);
                    continue;
                }
                Err(why) => {
                    tracing::warn!(%why, path = %s.path.display(), "a segment of the state snapshot's changes is not used")
                }
            }
        }
        dropped.push(s.path);
    }
    let (dir, since) = (dir.to_path_buf(), base.seq);
    tokio::task::spawn_blocking(move || {
        let (mut laid, mut end, mut used) = (Layings::default(), Since::Seq(since), 0u64);
        for mut s in valid {
            if dropped.is_empty() {
                match laid.lay_segment(&mut s) {
                    Ok(()) => {
                        end = Since::Id(s.head.last_change);
                        used += 1;
                        continue;
                    }
                    Err(why) => {
                        tracing::warn!(%why, path = %s.path.display(), "a segment of the state snapshot's changes is damaged: the rows after it are read")
                    }
                }
            }
            dropped.push(s.path);
        }
        if let Err(e) = changes::remove(&dir, &dropped) {
            tracing::warn!(error = %e, "removing segments of the state snapshot's changes");
        }
        (laid, end, used)
    })
    .await
    .map_err(|e| StoreError::Failed(format!("reading the snapshot's changes: {e}")))
}

/// Lays the rows of `table` noted as `changed`, as they are now.
async fn lay_rows<T: serde::de::DeserializeOwned + Send + 'static>(
    conn: &mut SqliteConnection,
    table: Table,
    changed: std::collections::HashSet<i64>,
    laying: &mut changes::Laying<T>,
) -> Result<(), StoreError> {
    if changed.is_empty() {
        return Ok(());
    }
    let now = TableRows::<T>::read_rowids(conn, table, &changed)
        .await?
        .all()
        .await?;
    laying.lay(changed, now.into_iter().map(|(rowid, _, r)| (rowid, r)));
    Ok(())
}

/// What the state snapshot of `dir` gives, when it is a base of this
/// database: its records with the rows changed since laid over them (from
/// the segments of its changes, then the rows noted after them).
async fn from_snapshot(
    conn: &mut SqliteConnection,
    dir: &Path,
    seq: u64,
) -> Result<Option<(snapshot::Taken, Laid)>, StoreError> {
    // What a crash while one was being written left.
    if let Err(e) = snapshot::remove_unfinished(dir) {
        tracing::warn!(error = %e, "removing an unfinished state snapshot");
    }
    let opened = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || snapshot::open(&dir))
            .await
            .map_err(|e| StoreError::Failed(format!("reading the state snapshot: {e}")))?
    };
    let no_changes = || {
        if let Err(e) = changes::remove_all(dir) {
            tracing::warn!(error = %e, "removing the state snapshot's changes");
        }
    };
    let refused = |why: String| {
        tracing::warn!(%why, "the state snapshot is not used; reading the rows");
        if let Err(e) = snapshot::remove(dir) {
            tracing::warn!(error = %e, "removing the state snapshot");
        }
        no_changes();
        Ok(None)
    };
    let opened = match opened {
        Ok(Some(o)) => o,
        Ok(None) => {
            no_changes();
            return Ok(None);
        }
        Err(e) => return refused(e.to_string()),
    };
    if let Err(why) = is_base(conn, &opened.head, seq).await? {
        return refused(why);
    }
    let head = opened.head.clone();
    let started = std::time::Instant::now();
    let taken = tokio::task::spawn_blocking(move || opened.take())
        .await
        .map_err(|e| StoreError::Failed(format!("reading the state snapshot: {e}")))?;
    let taken = match taken {
        Ok(t) => t,
        Err(e) => return refused(e.to_string()),
    };
    let taken_ms = started.elapsed().as_millis() as u64;
    let (mut laying, end, segments) = lay_segments(conn, dir, &head, seq).await?;
    let segments_ms = started.elapsed().as_millis() as u64;
    let [i, c, s] = changed_rowids(conn, end).await?;
    let from_rows = (i.len() + c.len() + s.len()) as u64;
    lay_rows(conn, Table::Intents, i, &mut laying.intents).await?;
    lay_rows(conn, Table::Constraints, c, &mut laying.constraints).await?;
    lay_rows(conn, Table::Subscriptions, s, &mut laying.subscriptions).await?;
    let rows_ms = started.elapsed().as_millis() as u64;
    let laid = Laid {
        rows: laying.len(),
        segments,
        from_rows,
    };
    let Layings {
        intents,
        constraints,
        subscriptions,
    } = laying;
    let (ic, inow) = intents.into_changed(|r| r.id);
    let (cc, cnow) = constraints.into_changed(|r| r.id);
    let (sc, snow) = subscriptions.into_changed(|r| r.id);
    let taken = snapshot::Taken {
        intents: lay_over(taken.intents, &ic, inow, |r| r.id),
        constraints: lay_over(taken.constraints, &cc, cnow, |r| r.id),
        subscriptions: lay_over(taken.subscriptions, &sc, snow, |r| r.id),
    };
    tracing::debug!(
        taken_ms,
        segments_ms,
        rows_ms,
        laid_ms = started.elapsed().as_millis() as u64,
        "the state snapshot and its changes read"
    );
    Ok(Some((taken, laid)))
}

/// How the airspace was loaded at open.
#[derive(Clone, Copy, Debug, Default)]
struct Origin {
    /// From the state snapshot (else from the rows).
    from_snapshot: bool,
    /// The rows changed since the snapshot laid over it.
    laid: Laid,
    /// Records of the state snapshot's tables.
    records: u64,
}

/// The airspace's state and where each record lives, from the state
/// snapshot in `snapshot_dir` when it is a base of the database, else from
/// the rows.
async fn load(
    conn: &mut SqliteConnection,
    snapshot_dir: Option<&Path>,
) -> Result<(AirspaceState, RowIds, Origin), StoreError> {
    let seq: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'seq'")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("reading seq"))?;
    let seq = seq as u64;
    let started = std::time::Instant::now();
    if let Some(dir) = snapshot_dir
        && let Some((taken, laid)) = from_snapshot(conn, dir, seq).await?
    {
        match load_taken(conn, seq, taken, started).await? {
            Ok((state, ids, records)) => {
                let origin = Origin {
                    from_snapshot: true,
                    laid,
                    records,
                };
                return Ok((state, ids, origin));
            }
            Err(why) => {
                tracing::warn!(%why, "the state snapshot is not used; reading the rows");
                if let Err(e) = snapshot::remove(dir) {
                    tracing::warn!(error = %e, "removing the state snapshot");
                }
            }
        }
    }
    let mut ids = RowIds {
        next: 1,
        ..RowIds::default()
    };
    let intents = load_table::<OperationalIntent>(conn, Table::Intents).await?;
    let constraints = load_table::<Constraint>(conn, Table::Constraints).await?;
    let subscriptions = load_table::<Subscription>(conn, Table::Subscriptions).await?;
    let intents = finished(Table::Intents, &mut ids, intents).await?;
    let constraints = finished(Table::Constraints, &mut ids, constraints).await?;
    let subscriptions = finished(Table::Subscriptions, &mut ids, subscriptions).await?;
    let records = (intents.len() + constraints.len() + subscriptions.len()) as u64;
    let (availability, reports) = load_rest(conn, &mut ids, started).await?;
    let decoded_ms = started.elapsed().as_millis() as u64;
    let state = AirspaceState::load(
        seq,
        intents,
        constraints,
        subscriptions,
        availability,
        reports,
    );
    tracing::debug!(
        from_snapshot = false,
        decoded_ms,
        rebuilt_ms = started.elapsed().as_millis() as u64 - decoded_ms,
        "state loaded"
    );
    let origin = Origin {
        records,
        ..Origin::default()
    };
    Ok((state, ids, origin))
}

/// The availability and report rows (never in the snapshot: few).
async fn load_rest(
    conn: &mut SqliteConnection,
    ids: &mut RowIds,
    started: std::time::Instant,
) -> Result<(Vec<UssAvailability>, Vec<airspace::ReportStamp>), StoreError> {
    let availability = load_table::<UssAvailability>(conn, Table::Availability).await?;
    let reports = load_table::<airspace::ReportStamp>(conn, Table::Reports).await?;
    tracing::debug!(read_ms = started.elapsed().as_millis() as u64, "rows read");
    let availability = finished(Table::Availability, ids, availability).await?;
    let reports = finished(Table::Reports, ids, reports).await?;
    Ok((availability, reports))
}

/// The state and rowids from a snapshot's records (the rowid maps are
/// built while the state is); why not, should a record be held twice.
async fn load_taken(
    conn: &mut SqliteConnection,
    seq: u64,
    taken: snapshot::Taken,
    started: std::time::Instant,
) -> Result<Result<(AirspaceState, RowIds, u64), String>, StoreError> {
    let mut ids = RowIds {
        next: 1,
        ..RowIds::default()
    };
    let snapshot::Taken {
        intents,
        constraints,
        subscriptions,
    } = taken;
    let records =
        (intents.records.len() + constraints.records.len() + subscriptions.records.len()) as u64;
    let mut pairs = Vec::new();
    for (table, rowids, max) in [
        (Table::Intents, intents.rowids, intents.max_rowid),
        (
            Table::Constraints,
            constraints.rowids,
            constraints.max_rowid,
        ),
        (
            Table::Subscriptions,
            subscriptions.rowids,
            subscriptions.max_rowid,
        ),
    ] {
        ids.next = ids.next.max(max + 1);
        pairs.push((table, rowids));
    }
    // The rows laid over the snapshot may have been its highest: the
    // next rowid is past every row there is.
    for table in snapshot::TABLES {
        // Only the table's name is formatted into the SQL.
        let max: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(max(rowid), 0) FROM {}",
            table.name()
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(err("reading the highest rowids"))?;
        ids.next = ids.next.max(max + 1);
    }
    let maps = tokio::task::spawn_blocking(move || {
        pairs
            .into_iter()
            .map(|(table, rowids)| snapshot::rowid_map(rowids).map(|m| (table, m)))
            .collect::<Result<Vec<_>, String>>()
    });
    let (availability, reports) = load_rest(conn, &mut ids, started).await?;
    let decoded_ms = started.elapsed().as_millis() as u64;
    let state = AirspaceState::load_keyed(
        seq,
        intents.records,
        constraints.records,
        subscriptions.records,
        availability,
        reports,
    );
    let maps = match maps
        .await
        .map_err(|e| StoreError::Failed(format!("mapping rowids: {e}")))?
    {
        Ok(m) => m,
        Err(why) => return Ok(Err(why)),
    };
    for (table, map) in maps {
        ids.of[table as usize] = map;
    }
    tracing::debug!(
        from_snapshot = true,
        decoded_ms,
        rebuilt_ms = started.elapsed().as_millis() as u64 - decoded_ms,
        "state loaded"
    );
    Ok(Ok((state, ids, records)))
}

/// The log's tree, the line's state and the leaf index, from the committed
/// entries (numbered 0..n without gaps).
async fn load_log(
    conn: &mut SqliteConnection,
    me: &str,
) -> Result<(TiledTree, LineState, LeafIndex), StoreError> {
    let (tree, line) = load_tree(conn, me).await?;
    let leaves = index_leaves(conn, tree.size()).await?;
    Ok((tree, line, leaves))
}

/// Rebuilds the tree, and the line's state, from the committed entries
/// (they must be numbered 0..n without gaps), page by page, and stores the
/// full tiles missing from the database.
async fn load_tree(
    conn: &mut SqliteConnection,
    me: &str,
) -> Result<(TiledTree, LineState), StoreError> {
    let stored: Vec<(i64, i64)> =
        sqlx::query_as("SELECT level, count(*) FROM log_tiles GROUP BY level ORDER BY level")
            .fetch_all(&mut *conn)
            .await
            .map_err(err("counting the log's tiles"))?;
    let mut r = Rebuild::new(me, stored);
    if let Some(loaded) = load_tree_from_tiles(conn, me, &r).await? {
        return Ok(loaded);
    }
    loop {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, data FROM log_entries WHERE idx >= ?1 ORDER BY idx LIMIT ?2",
        )
        .bind(r.tree.size() as i64)
        .bind(LOAD_PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(err("loading the log"))?;
        if !r.feed(rows)? {
            break;
        }
    }
    if !r.unstored.is_empty() {
        tracing::info!(tiles = r.unstored.len(), "storing the log's tiles");
        let mut tx = conn.begin().await.map_err(err("storing the log's tiles"))?;
        store_tiles(&mut tx, &r.unstored).await?;
        tx.commit().await.map_err(err("storing the log's tiles"))?;
    }
    Ok((r.tree, r.line))
}

/// The fast way to [`load_tree`], when the database holds every full tile
/// of the log and its leaf index: the tree from its partial tiles (at most
/// 255 entries and 255 tiles per level read), the line's state from the
/// line's entries only — SQLite picks them out (only they hold the bytes
/// "line."; the parse decides), so a log of airspace changes is not read.
/// `None` when the tiles do not cover the log (then every entry is read).
async fn load_tree_from_tiles(
    conn: &mut SqliteConnection,
    me: &str,
    r: &Rebuild,
) -> Result<Option<(TiledTree, LineState)>, StoreError> {
    let size: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("sizing the log"))?;
    let size = size as u64;
    if !r.tiles_cover(size) {
        return Ok(None);
    }
    let mut partial = Vec::new();
    for (level, first, count) in TiledTree::partial_tiles_of(size) {
        let (from, to) = (first as i64, (first + count) as i64);
        let hashes: Vec<tlog::Hash> = if level == 0 {
            let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                "SELECT data FROM log_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await
            .map_err(err("reading the log's last entries"))?;
            rows.iter().map(|(d,)| tlog::leaf_hash(d)).collect()
        } else {
            let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT idx, hashes FROM log_tiles WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
            )
            .bind(i64::from(level) - 1)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await
            .map_err(err("reading the log's tiles"))?;
            let mut roots = Vec::with_capacity(rows.len());
            for (i, bytes) in rows {
                let Some(t) = Tile::from_bytes(level - 1, i as u64, &bytes) else {
                    return Ok(None);
                };
                roots.push(t.root());
            }
            roots
        };
        if hashes.len() as u64 != count {
            return Ok(None);
        }
        partial.push(hashes);
    }
    let Some(tree) = TiledTree::from_edge(size, partial, node::persist::TILE_CACHE) else {
        return Ok(None);
    };
    let mut line = LineState::new(me);
    let mut next = 0i64;
    loop {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT e.idx, e.data FROM log_line l JOIN log_entries e ON e.idx = l.idx WHERE l.idx >= ?1 ORDER BY l.idx LIMIT ?2",
        )
        .bind(next)
        .bind(node::persist::LOAD_PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(err("loading the line's entries"))?;
        let full = rows.len() as i64 >= node::persist::LOAD_PAGE;
        for (idx, data) in rows {
            next = idx + 1;
            node::persist::replay_line(&mut line, idx as u64, &data)?;
        }
        if !full {
            break;
        }
    }
    tracing::debug!(
        size,
        "the log's tree loaded from its tiles, the line from its entries"
    );
    Ok(Some((tree, line)))
}

/// The leaf index of a log of `size` entries whose full tiles are all
/// stored ([`load_tree`] sees to it): the level-0 tiles' hashes, then the
/// leaf hashes of the entries after the last full tile.
async fn index_leaves(conn: &mut SqliteConnection, size: u64) -> Result<LeafIndex, StoreError> {
    let started = std::time::Instant::now();
    let mut pairs: Vec<(u64, u64)> = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let full = (size / 256) as i64;
    let mut next = 0i64;
    while next < full {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, hashes FROM log_tiles WHERE level = 0 AND idx >= ?1 AND idx < ?2 ORDER BY idx LIMIT ?3",
        )
        .bind(next)
        .bind(full)
        .bind(TILES_PER_READ)
        .fetch_all(&mut *conn)
        .await
        .map_err(err("reading the log's leaf tiles"))?;
        if rows.is_empty() {
            break;
        }
        for (i, bytes) in rows {
            let tile = (i == next)
                .then(|| Tile::from_bytes(0, i as u64, &bytes))
                .flatten()
                .ok_or_else(|| {
                    StoreError::Failed(format!(
                        "the log's leaf tile {next} is missing or not 8,192 bytes"
                    ))
                })?;
            for (k, h) in tile.hashes.iter().enumerate() {
                pairs.push((crate::leaves::key(h), i as u64 * 256 + k as u64));
            }
            next = i + 1;
        }
    }
    if next < full {
        return Err(StoreError::Failed(format!(
            "the log's leaf tile {next} is missing"
        )));
    }
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT idx, data FROM log_entries WHERE idx >= ?1 ORDER BY idx")
            .bind(full * 256)
            .fetch_all(&mut *conn)
            .await
            .map_err(err("reading the log's last entries"))?;
    for (i, data) in rows {
        pairs.push((crate::leaves::key(&tlog::leaf_hash(&data)), i as u64));
    }
    let index = LeafIndex::from_pairs(pairs);
    tracing::debug!(
        entries = index.len(),
        ms = started.elapsed().as_millis() as u64,
        "leaf index built"
    );
    Ok(index)
}

async fn store_tiles(conn: &mut SqliteConnection, tiles: &[Tile]) -> Result<(), StoreError> {
    for t in tiles {
        sqlx::query("INSERT OR IGNORE INTO log_tiles (level, idx, hashes) VALUES (?1, ?2, ?3)")
            .bind(i64::from(t.level))
            .bind(t.index as i64)
            .bind(t.to_bytes())
            .execute(&mut *conn)
            .await
            .map_err(err("storing the log's tiles"))?;
    }
    Ok(())
}

/// SQL statements and their arguments, run as one script (anonymous `?`
/// placeholders only: SQLite binds them in order across the statements).
#[derive(Default)]
struct Script {
    sql: String,
    args: sqlx::sqlite::SqliteArguments,
}

impl Script {
    fn push(&mut self, statement: &str) {
        self.sql.push_str(statement);
        self.sql.push('\n');
    }

    fn bind<'t, T: sqlx::Encode<'t, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
        &mut self,
        v: T,
    ) -> Result<(), StoreError> {
        use sqlx::Arguments;
        self.args
            .add(v)
            .map_err(|e| StoreError::Failed(format!("binding a value: {e}")))
    }
}

/// Rows to upsert (rowid, id, body) and rowids to delete, of one table.
type TableChanges = (Vec<(i64, String, String)>, Vec<i64>);

/// Writes the batch's net row changes with a few multi-row statements per
/// table, its log entries and tiles, then the sequence number, in one
/// transaction sent as one script. New records get fresh rowids (appended
/// at the end of their table); `ids` and `leaf_index` are updated only once
/// the commit succeeded.
async fn persist(
    w: &mut SqliteWriter,
    leaf_index: &std::sync::RwLock<LeafIndex>,
    batch: Batch<'_>,
) -> Result<(), StoreError> {
    let SqliteWriter {
        conn,
        ids,
        keeper,
        pruned,
        ..
    } = w;
    let Batch {
        dirty,
        seq,
        first_leaf,
        leaves,
        leaf_hashes,
        tiles,
    } = batch;
    let mut next = ids.next;
    let mut assigned: Vec<(Table, RecordKey, i64)> = Vec::new();
    let mut removed: Vec<(Table, RecordKey)> = Vec::new();
    let mut by_table: HashMap<Table, TableChanges> = HashMap::new();
    for ((table, id), body) in dirty.rows {
        let key = RecordKey::of(&id);
        let known = ids.of[table as usize].get(&key);
        let (up, del) = by_table.entry(table).or_default();
        match (body.map(|r| r.body), known) {
            (Some(b), Some(r)) => up.push((r, id, b)),
            (Some(b), None) => {
                assigned.push((table, key, next));
                up.push((next, id, b));
                next += 1;
            }
            (None, Some(r)) => {
                del.push(r);
                removed.push((table, key));
            }
            (None, None) => {}
        }
    }
    // One script, one round trip to sqlx's worker thread: each trip costs
    // a thread wake-up, more than most of these statements (a batch's
    // seven trips took ~3/4 of its time before the commit).
    let mut script = Script::default();
    script.push("BEGIN IMMEDIATE;");
    // The rows the state snapshot's tables changed (`sqlite/snapshot.rs`).
    let mut noted: Vec<(Table, i64)> = Vec::new();
    for table in Table::ALL {
        let Some((mut up, del)) = by_table.remove(&table) else {
            continue;
        };
        up.sort_unstable_by_key(|r| r.0);
        if snapshot::TABLES.contains(&table) {
            noted.extend(up.iter().map(|r| (table, r.0)));
            noted.extend(del.iter().map(|r| (table, *r)));
        }
        for chunk in up.chunks(ROWS_PER_STATEMENT) {
            // Only placeholders are formatted into the SQL; the values are bound.
            script.push(&format!(
                "INSERT INTO {} (rowid, id, body) VALUES {} ON CONFLICT(rowid) DO UPDATE SET body = excluded.body;",
                table.name(),
                vec!["(?, ?, ?)"; chunk.len()].join(", ")
            ));
            for (rowid, id, body) in chunk {
                script.bind(*rowid)?;
                script.bind(id.as_str())?;
                script.bind(body.as_str())?;
            }
        }
        for chunk in del.chunks(ROWS_PER_STATEMENT) {
            script.push(&format!(
                "DELETE FROM {} WHERE rowid IN ({});",
                table.name(),
                vec!["?"; chunk.len()].join(", ")
            ));
            for rowid in chunk {
                script.bind(*rowid)?;
            }
        }
    }
    for (c, chunk) in leaves.chunks(ROWS_PER_STATEMENT).enumerate() {
        script.push(&format!(
            "INSERT INTO log_entries (idx, data) VALUES {};",
            vec!["(?, ?)"; chunk.len()].join(", ")
        ));
        for (i, data) in chunk.iter().enumerate() {
            script.bind((first_leaf + (c * ROWS_PER_STATEMENT + i) as u64) as i64)?;
            script.bind(data.as_slice())?;
        }
    }
    let line: Vec<i64> = leaves
        .iter()
        .enumerate()
        .filter(|(_, data)| node::persist::maybe_line(data))
        .map(|(i, _)| (first_leaf + i as u64) as i64)
        .collect();
    for chunk in line.chunks(ROWS_PER_STATEMENT) {
        script.push(&format!(
            "INSERT INTO log_line (idx) VALUES {};",
            vec!["(?)"; chunk.len()].join(", ")
        ));
        for idx in chunk {
            script.bind(*idx)?;
        }
    }
    for t in &tiles {
        script.push("INSERT OR IGNORE INTO log_tiles (level, idx, hashes) VALUES (?, ?, ?);");
        script.bind(i64::from(t.level))?;
        script.bind(t.index as i64)?;
        script.bind(t.to_bytes())?;
    }
    for chunk in noted.chunks(ROWS_PER_STATEMENT) {
        script.push(&format!(
            "INSERT INTO snapshot_changes (seq, tbl, row) VALUES {};",
            vec!["(?, ?, ?)"; chunk.len()].join(", ")
        ));
        for (table, rowid) in chunk {
            script.bind(seq as i64)?;
            script.bind(*table as i64)?;
            script.bind(*rowid)?;
        }
    }
    // A newer snapshot holds the changes up to `prune`: older snapshots are
    // no base from now on, and the noted rows go, the oldest
    // [`PRUNE_PER_BATCH`] a batch (a range of the key: a few pages each).
    let (prune_seq, prune_id) = keeper.pruning();
    if prune_seq > *pruned {
        script.push("UPDATE meta SET value = max(value, ?) WHERE key = 'changes_from';");
        script.bind(prune_seq as i64)?;
    }
    if prune_id > 0 {
        script.push(
            "DELETE FROM snapshot_changes WHERE id <= min(?, (SELECT min(id) FROM snapshot_changes) + ?);",
        );
        script.bind(prune_id as i64)?;
        script.bind(PRUNE_PER_BATCH - 1)?;
    }
    script.push("UPDATE meta SET value = ? WHERE key = 'seq'; COMMIT;");
    script.bind(seq as i64)?;
    // A failure anywhere leaves the transaction open: the writer then
    // recovers on a fresh connection (`reconnect_fresh`), which rolls it back.
    sqlx::query_with(sqlx::AssertSqlSafe(script.sql), script.args)
        .persistent(false)
        .execute(&mut *conn)
        .await
        .map_err(err("committing a batch"))?;
    *pruned = (*pruned).max(prune_seq);
    keeper.noted(noted.len() as u64);
    // Committed: found by leaf hash from now on.
    {
        let mut index = leaf_index.write().unwrap_or_else(|p| p.into_inner());
        for (i, h) in leaf_hashes.iter().enumerate() {
            index.insert(h, first_leaf + i as u64);
        }
    }
    ids.next = next;
    for (table, key, rowid) in assigned {
        ids.of[table as usize].insert(key, rowid);
    }
    for (table, key) in removed {
        ids.of[table as usize].remove(&key);
    }
    Ok(())
}

/// A fresh connection for the writer after a failed commit. SQLite does
/// not always roll a transaction back when COMMIT fails (SQLITE_FULL, an I/O
/// error), and on a connection still inside it sqlx would nest the next
/// transaction as a savepoint that never commits — acknowledging writes
/// that a restart then loses (found by tests/disk_full.rs). Closing the old
/// connection rolls the transaction back; the next one starts clean, and the
/// state is reloaded through it, so nothing of the failed batch is seen.
async fn reconnect_fresh(opts: &SqliteConnectOptions) -> Result<SqliteConnection, StoreError> {
    // One attempt: the engine retries, refusing requests meanwhile.
    SqliteConnection::connect_with(opts)
        .await
        .map_err(|e| StoreError::Unavailable(format!("reopening the database: {e}")))
}

/// A query on one pooled connection (`q` borrows it for its future).
pub(crate) type OnConn<T> = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, sqlx::Error>> + Send,
>;

impl Sqlite {
    /// Runs `q` on a connection of the readers' pool (a local file: no
    /// link to die midway, no timeout).
    pub(crate) async fn on_pool<T>(&self, what: &str, q: OnConn<T>) -> Result<T, StoreError> {
        let mut conn = self.reads.acquire().await.map_err(err(what))?;
        q(&mut conn).await.map_err(err(what))
    }

    async fn load_all(
        conn: &mut SqliteConnection,
        me: &str,
    ) -> Result<(Loaded, RowIds, LeafIndex), StoreError> {
        let (state, ids, _) = load(conn, None).await?;
        let (tree, line, leaves) = load_log(conn, me).await?;
        let latest = latest_checkpoint(conn).await?;
        Ok((
            Loaded {
                state,
                tree,
                line,
                latest,
            },
            ids,
            leaves,
        ))
    }
}

async fn latest_checkpoint(
    conn: &mut SqliteConnection,
) -> Result<Option<(u64, String)>, StoreError> {
    let latest: Option<(i64, String)> =
        sqlx::query_as("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(err("loading the latest checkpoint"))?;
    Ok(latest.map(|(s, n)| (s as u64, n)))
}

impl Sqlite {
    /// The data folder.
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

impl Persistence for Sqlite {
    type Writer = SqliteWriter;

    fn pipelines(&self) -> bool {
        true
    }

    fn begin<'a>(
        &'a self,
        _w: &'a mut SqliteWriter,
        _log_size: u64,
        _exclusive: bool,
    ) -> BoxFuture<'a, Result<Option<Delta>, StoreError>> {
        // The writer is the file's only writer: nothing to take in, and
        // its transaction starts in `persist`.
        Box::pin(async { Ok(None) })
    }

    fn persist<'a>(
        &'a self,
        w: &'a mut SqliteWriter,
        batch: Batch<'a>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            restart_wal(w).await;
            let persisted = persist(w, &self.leaves, batch).await;
            w.wal.committed.notify_one();
            persisted
        })
    }

    fn release<'a>(&'a self, _w: &'a mut SqliteWriter) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn close(
        &self,
        w: SqliteWriter,
        committed: Option<std::sync::Arc<std::sync::RwLock<AirspaceState>>>,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Readers first: the last connection to close checkpoints the
            // WAL into the database, so the next open has nothing to replay.
            self.reads.close().await;
            let SqliteWriter {
                mut conn,
                ids,
                keeper,
                _folder: folder,
                ..
            } = w;
            // A snapshot being written while running is finished first;
            // none is started after this.
            let _closed = keeper.close().await;
            let log = match committed {
                Some(_) => newest_entry(&mut conn).await.ok(),
                None => None,
            };
            // The state as committed, for the next open to read instead of
            // decoding every row; the changes it holds then go.
            if let (Some(state), Some(log)) = (committed, log) {
                let dir = self.dir().to_path_buf();
                let written = tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let state = state.read().unwrap_or_else(|p| p.into_inner());
                    let written = snapshot::write(&dir, schema_version(), log, &state, &ids);
                    // The segments extend the snapshot before it.
                    if written.is_ok()
                        && let Err(e) = changes::remove_all(&dir)
                    {
                        tracing::warn!(error = %e, "removing the state snapshot's changes");
                    }
                    written.map(|(bytes, _)| {
                        (state.seq(), bytes, started.elapsed().as_millis() as u64)
                    })
                })
                .await;
                match written {
                    Ok(Ok((seq, bytes, ms))) => {
                        tracing::info!(bytes, ms, "state snapshot written");
                        let pruned = sqlx::query(
                            "DELETE FROM snapshot_changes WHERE seq <= ?1; \
                             UPDATE meta SET value = max(value, ?1) WHERE key = 'changes_from';",
                        )
                        .bind(seq as i64)
                        .execute(&mut conn)
                        .await;
                        if let Err(e) = pruned {
                            tracing::warn!(error = %e, "dropping the changes the snapshot holds");
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "the state snapshot was not written"),
                    Err(e) => tracing::warn!(error = %e, "the state snapshot was not written"),
                }
            }
            if let Err(e) = conn.close().await {
                tracing::warn!(error = %e, "closing the writer's connection");
            }
            // Only now may the next store open the folder.
            drop(folder);
        })
    }

    fn recover<'a>(
        &'a self,
        w: &'a mut SqliteWriter,
        me: &'a str,
    ) -> BoxFuture<'a, Result<Loaded, StoreError>> {
        Box::pin(async move {
            let old = std::mem::replace(&mut w.conn, reconnect_fresh(&self.opts).await?);
            if let Err(e) = old.close().await {
                tracing::warn!(error = %e, "closing the writer's connection after a failed commit");
            }
            let (loaded, ids, leaves) = Sqlite::load_all(&mut w.conn, me).await?;
            w.ids = ids;
            *self.leaves.write().unwrap_or_else(|p| p.into_inner()) = leaves;
            Ok(loaded)
        })
    }

    fn leaves(&self, wanted: Vec<u64>) -> BoxFuture<'_, Result<Vec<node::Leaf>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(wanted.len());
            for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "SELECT idx, data FROM log_entries WHERE idx IN ({}) ORDER BY idx",
                    vec!["?"; chunk.len()].join(", ")
                );
                let mut q = sqlx::query_as::<_, (i64, Vec<u8>)>(sqlx::AssertSqlSafe(sql));
                for i in chunk {
                    q = q.bind(*i as i64);
                }
                let rows = q
                    .fetch_all(&self.reads)
                    .await
                    .map_err(err("reading log entries"))?;
                out.extend(rows.into_iter().map(|(i, d)| (i as u64, d)));
            }
            out.sort_by_key(|(i, _)| *i);
            Ok(out)
        })
    }

    fn tiles(&self, wanted: Vec<(u8, u64)>) -> BoxFuture<'_, Result<Vec<Tile>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(wanted.len());
            for (level, index) in wanted {
                let hashes: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT hashes FROM log_tiles WHERE level = ?1 AND idx = ?2",
                )
                .bind(i64::from(level))
                .bind(index as i64)
                .fetch_optional(&self.reads)
                .await
                .map_err(err("reading the log's tiles"))?;
                if let Some(h) = hashes {
                    out.push(Tile::from_bytes(level, index, &h).ok_or_else(|| {
                        StoreError::Failed(format!("log tile {level}/{index} is not 8,192 bytes"))
                    })?);
                }
            }
            Ok(out)
        })
    }

    fn find_leaf(&self, leaf: tlog::Hash) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let candidates = self
                .leaves
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .candidates(&leaf);
            // The index knows hash prefixes: the entry's bytes decide.
            for idx in candidates {
                let data: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT data FROM log_entries WHERE idx = ?1")
                        .bind(idx as i64)
                        .fetch_optional(&self.reads)
                        .await
                        .map_err(err("looking up a leaf hash"))?;
                if data.is_some_and(|d| tlog::leaf_hash(&d) == leaf) {
                    return Ok(Some(idx));
                }
            }
            Ok(None)
        })
    }

    fn entries(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT idx, data FROM log_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )
            .bind(start as i64)
            .bind(end as i64)
            .fetch_all(&self.reads)
            .await
            .map_err(err("reading log entries"))?;
            Ok(rows.into_iter().map(|(_, d)| d).collect())
        })
    }

    fn save_checkpoint(
        &self,
        size: u64,
        note: String,
    ) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO checkpoints (size, note) VALUES (?1, ?2) ON CONFLICT(size) DO NOTHING",
            )
            .bind(size as i64)
            .bind(&note)
            .execute(&self.reads)
            .await
            .map_err(err("saving a checkpoint"))?;
            let kept: Option<String> =
                sqlx::query_scalar("SELECT note FROM checkpoints WHERE size = ?1")
                    .bind(size as i64)
                    .fetch_optional(&self.reads)
                    .await
                    .map_err(err("reading a checkpoint"))?;
            // Sealed before it is published (`seal.rs`): the seal always
            // covers every checkpoint anyone may hold.
            if let Some(note) = kept.clone() {
                let (dir, sealed) = (self.dir().to_path_buf(), self.sealed.clone());
                tokio::task::spawn_blocking(move || {
                    let mut sealed = sealed.lock().unwrap_or_else(|e| e.into_inner());
                    // Never replaced by an older one.
                    if size >= *sealed {
                        crate::seal::write(&dir, &note)?;
                        *sealed = size;
                    }
                    Ok::<(), StoreError>(())
                })
                .await
                .map_err(|e| StoreError::Failed(format!("writing the seal: {e}")))??;
            }
            Ok(kept)
        })
    }

    fn add_cosignature(&self, size: u64, line: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // Appended once: a line already present is not added again.
            sqlx::query(
                "UPDATE checkpoints SET note = note || ?2 WHERE size = ?1 AND instr(note, ?2) = 0",
            )
            .bind(size as i64)
            .bind(&line)
            .execute(&self.reads)
            .await
            .map_err(err("saving a cosignature"))?;
            Ok(())
        })
    }

    fn witnessed(&self, origin: String) -> BoxFuture<'_, Result<Option<Cosigned>, StoreError>> {
        Box::pin(async move {
            let row: Option<(i64, Vec<u8>, String)> =
                sqlx::query_as("SELECT size, root, note FROM witnessed WHERE origin = ?1")
                    .bind(&origin)
                    .fetch_optional(&self.reads)
                    .await
                    .map_err(err("reading the witness state"))?;
            row.map(|(size, root, note)| crate::cosigned(size, &root, note))
                .transpose()
        })
    }

    fn save_witnessed(&self, origin: String, c: Cosigned) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO witnessed (origin, size, root, note) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note")
                .bind(&origin)
                .bind(c.size as i64)
                .bind(c.root.as_slice())
                .bind(&c.note)
                .execute(&self.reads)
                .await
                .map_err(err("saving the witness state"))?;
            Ok(())
        })
    }

    fn misbehaviour(&self) -> BoxFuture<'_, Result<Vec<node::Misbehaviour>, StoreError>> {
        Box::pin(async move {
            sqlx::query_as("SELECT origin, note_a, note_b, found_ms FROM misbehaviour ORDER BY id")
                .fetch_all(&self.reads)
                .await
                .map_err(err("reading evidence of misbehaviour"))
        })
    }

    fn save_misbehaviour(
        &self,
        origin: String,
        a: String,
        b: String,
        found_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO misbehaviour (origin, note_a, note_b, found_ms) VALUES (?1, ?2, ?3, ?4)")
                .bind(&origin)
                .bind(&a)
                .bind(&b)
                .bind(found_ms)
                .execute(&self.reads)
                .await
                .map_err(err("saving evidence of misbehaviour"))?;
            Ok(())
        })
    }

    crate::sql::console_marks!("?1", "?2", "?3");
}

/// Copies the WAL's committed pages into the database after commits, at
/// most every [`CHECKPOINT_EVERY`] (PASSIVE: the writer goes on meanwhile),
/// for as long as the store is open.
async fn checkpoints(
    reads: SqlitePool,
    store: node::writer::Refresher,
    wal: std::sync::Arc<WalRestart>,
) {
    loop {
        // A commit since the last pass wakes this at once (Notify keeps one
        // wake-up for a waiter not yet waiting).
        let woken = tokio::time::timeout(CHECKPOINT_IDLE, wal.committed.notified()).await;
        if !store.alive() || reads.is_closed() {
            return;
        }
        if woken.is_err() {
            continue;
        }
        let t0 = std::time::Instant::now();
        let next = tokio::time::Instant::now() + CHECKPOINT_EVERY;
        let r: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&reads)
            .await;
        if let Ok((busy, log, done)) = r {
            tracing::debug!(
                busy,
                log,
                done,
                us = t0.elapsed().as_micros() as u64,
                "checkpointed the WAL"
            );
            if log >= wal.at && done == log {
                wal.wanted.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Err(e) = r {
            if reads.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "checkpointing the WAL");
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Opens (creating if needed) the embedded store in `dir`, migrates it, and
/// rebuilds the in-memory state and index from its rows.
pub async fn open(dir: &Path, signer: LogSigner) -> Result<SqliteStore, StoreError> {
    open_tuned(dir, signer, RESTART_WAL_AT, WAL_SIZE_LIMIT).await
}

/// [`open`] with the WAL restarted past `restart_wal_at` frames and cut
/// back to `wal_size_limit` bytes (tests use small ones).
#[doc(hidden)]
pub async fn open_tuned(
    dir: &Path,
    signer: LogSigner,
    restart_wal_at: i64,
    wal_size_limit: i64,
) -> Result<SqliteStore, StoreError> {
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Failed(format!("creating {}: {e}", dir.display())))?;
        let folder = FolderLock::take(dir).await?;
        let path = dir.join("detente.db");
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        // The writer never checkpoints the WAL itself: a checkpoint inside
        // a commit (SQLite's default, every 1,000 pages) held up every batch
        // behind it; a task does it beside the writer (`checkpoints`).
        let writer_opts = opts
            .clone()
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", wal_size_limit.to_string());
        let mut conn = SqliteConnection::connect_with(&writer_opts)
            .await
            .map_err(err("opening the database"))?;
        migrate(&mut conn).await?;
        let started = std::time::Instant::now();
        // The log (tree and line state) loads on its own connection and task
        // while the airspace rows are decoded: a cold start uses both cores.
        let mut log_conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(err("opening the database"))?;
        let name = signer.signer.name.clone();
        let log_load = tokio::spawn(async move {
            let r = load_log(&mut log_conn, &name).await;
            let _ = log_conn.close().await;
            r
        });
        let (state, ids, origin) = load(&mut conn, Some(dir)).await?;
        let (tree, line, leaves) = log_load
            .await
            .map_err(|e| StoreError::Failed(format!("loading the log: {e}")))??;
        let latest = latest_checkpoint(&mut conn).await?;
        let newest = latest.clone();
        let verifiers = signer.verifiers();
        let c = state.counts();
        tracing::info!(path = %path.display(), intents = c.intents, constraints = c.constraints, subscriptions = c.subscriptions,
            conflicts = c.conflicts, log_size = tree.size(), from_snapshot = origin.from_snapshot, changes_since_snapshot = origin.laid.rows, segments = origin.laid.segments, rows_read_beside = origin.laid.from_rows, ms = started.elapsed().as_millis() as u64, "embedded store loaded, index rebuilt");
        let reads = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
            .max_connections(2)
            .connect_with(opts.clone().create_if_missing(false))
            .await
            .map_err(err("opening the read pool"))?;
        let wal = std::sync::Arc::new(WalRestart {
            at: restart_wal_at,
            wanted: Default::default(),
            done: Default::default(),
            committed: Default::default(),
        });
        let keeper = std::sync::Arc::new(Keeper::new(
            dir.to_path_buf(),
            opts.clone().create_if_missing(false),
            origin,
        ));
        let backend = std::sync::Arc::new(Sqlite {
            reads: reads.clone(),
            path,
            opts: writer_opts,
            wal: wal.clone(),
            leaves: std::sync::RwLock::new(leaves),
            sealed: Default::default(),
            origin,
            keeper: keeper.clone(),
        });
        let engine = Engine::start(
            backend,
            SqliteWriter {
                conn,
                ids,
                wal: wal.clone(),
                keeper: keeper.clone(),
                pruned: 0,
                _folder: folder,
            },
            Loaded {
                state,
                tree,
                line,
                latest,
            },
            signer,
        );
        bind_to_seal(&engine, dir, &verifiers, newest).await?;
        tokio::spawn(checkpoints(reads, engine.refresher(), wal.clone()));
        tokio::spawn(keeper::keep(keeper, engine.refresher()));
        Ok(engine)
    }
}

impl Sqlite {
    /// Whether this open read the airspace from the state snapshot a clean
    /// close left (else from the rows).
    pub fn loaded_from_snapshot(&self) -> bool {
        self.origin.from_snapshot
    }
    /// Rows changed since the state snapshot that this open laid over it.
    pub fn rows_laid_over_snapshot(&self) -> u64 {
        self.origin.laid.rows
    }
    /// Segments of the snapshot's changes this open read (rows changed
    /// since the snapshot, kept in its binary form while running).
    pub fn change_segments_read(&self) -> u64 {
        self.origin.laid.segments
    }
    /// Rows changed after the last segment, which this open read as rows.
    pub fn rows_read_beside_snapshot(&self) -> u64 {
        self.origin.laid.from_rows
    }
    /// Writes the state snapshot of the database as it is now, as the
    /// store does by itself once enough has changed: laid over the previous
    /// one when that is a base of the database, else from every row. False
    /// once the store closed.
    pub async fn write_snapshot(&self) -> Result<bool, StoreError> {
        Ok(self.keeper.write(keeper::When::Now).await?.is_some())
    }
    /// Writes a segment of the snapshot's changes: the rows changed since
    /// the snapshot or its last segment, in binary, as the store does by
    /// itself once enough have. False when there is nothing to write, no
    /// snapshot to extend, or once the store closed.
    pub async fn write_changes(&self) -> Result<bool, StoreError> {
        Ok(self
            .keeper
            .write_segment(keeper::When::Now)
            .await?
            .is_some())
    }
    /// Segments of the snapshot's changes written since the store opened.
    pub fn change_segments_written(&self) -> u64 {
        self.keeper.segments_written()
    }
    /// State snapshots written while running since the store opened.
    pub fn snapshots_written(&self) -> u64 {
        self.keeper.written()
    }
    /// How many times since it opened the writer checkpointed the WAL's
    /// last frames so that the WAL starts over (under a steady load; an
    /// idle moment restarts it by itself).
    pub fn wal_restarts(&self) -> u64 {
        self.wal.done.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Refuses a store that cannot show it continues the log its node key
/// signed (`seal.rs`): the database's newest checkpoint and the seal must
/// verify with one of `keys` (the node key, and the previous one during a
/// key hand-over), and the log must reach the seal with its root. A
/// seal behind the database's newest checkpoint (the node stopped between
/// the two writes) or missing (a folder from before seals) is brought up to
/// it.
async fn bind_to_seal(
    engine: &Engine<Sqlite>,
    dir: &Path,
    keys: &[tlog::Verifier],
    newest: Option<(u64, String)>,
) -> Result<(), StoreError> {
    use node::Store;
    if let Some((_, note)) = &newest {
        crate::seal::open(note, keys, "the newest checkpoint in detente.db")?;
    }
    let sealed = match crate::seal::read(dir)? {
        Some(text) => {
            let sealed = crate::seal::open(&text, keys, crate::seal::FILE)?;
            crate::seal::check(sealed, engine.log_size(), |at| engine.log_root(at)).await?;
            Some(sealed.0)
        }
        None => None,
    };
    if let Some((size, note)) = newest
        && sealed.is_none_or(|s| s < size)
    {
        if sealed.is_none() {
            tracing::warn!(
                size,
                "no {} in the data folder: written from the database's newest checkpoint",
                crate::seal::FILE
            );
        }
        crate::seal::write(dir, &note)?;
    }
    Ok(())
}

/// The data folder's database, read only (beside a running node).
async fn open_read_only(dir: &Path) -> Result<SqliteConnection, StoreError> {
    let path = dir.join("detente.db");
    if !path.exists() {
        return Err(StoreError::Failed(format!(
            "{} does not exist (is this a node's data folder?)",
            path.display()
        )));
    }
    let opts = SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    SqliteConnection::connect_with(&opts)
        .await
        .map_err(err("opening the database"))
}

/// See [`crate::read_log_pages`].
pub async fn read_log_pages(
    dir: &Path,
    page_len: i64,
    page: crate::LogPage<'_>,
) -> Result<(Option<(u64, String)>, u64), StoreError> {
    let mut conn = open_read_only(dir).await?;
    let latest: Option<(i64, String)> =
        sqlx::query_as("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&mut conn)
            .await
            .map_err(err("reading checkpoints"))?;
    let total: i64 = sqlx::query_scalar("SELECT coalesce(max(idx) + 1, 0) FROM log_entries")
        .fetch_one(&mut conn)
        .await
        .map_err(err("reading the log's size"))?;
    let Some((size, note)) = latest else {
        let _ = conn.close().await;
        return Ok((None, total as u64));
    };
    let read = crate::read_pages(size, page_len, page, async |start, end| {
        sqlx::query_as(
            "SELECT idx, data FROM log_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )
        .bind(start)
        .bind(end)
        .fetch_all(&mut conn)
        .await
        .map_err(err("reading the log"))
    })
    .await;
    let _ = conn.close().await;
    read?;
    Ok((Some((size as u64, note)), total as u64))
}

pub async fn read_log(dir: &Path) -> Result<(Vec<Vec<u8>>, Option<(u64, String)>), StoreError> {
    let mut conn = open_read_only(dir).await?;
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT idx, data FROM log_entries ORDER BY idx")
            .fetch_all(&mut conn)
            .await
            .map_err(err("reading the log"))?;
    let mut entries = Vec::with_capacity(rows.len());
    for (idx, data) in rows {
        if idx as usize != entries.len() {
            return Err(StoreError::Failed(format!(
                "the log has a gap before entry {idx}"
            )));
        }
        entries.push(data);
    }
    let latest: Option<(i64, String)> =
        sqlx::query_as("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&mut conn)
            .await
            .map_err(err("reading checkpoints"))?;
    let _ = conn.close().await;
    Ok((entries, latest.map(|(s, n)| (s as u64, n))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_rowid_set_held_as_bits_answers_as_the_set_does() {
        let dense: std::collections::HashSet<i64> = [0, 1, 63, 64, 65, 1000, 4095].into();
        let bits = RowidSet::new(&dense);
        assert!(matches!(bits, RowidSet::Bits(_)));
        let far: std::collections::HashSet<i64> = [-5, 3, RowidSet::MOST_BITS].into();
        let set = RowidSet::new(&far);
        assert!(matches!(set, RowidSet::Set(_)));
        for r in [
            -5,
            -1,
            0,
            1,
            2,
            3,
            62,
            63,
            64,
            65,
            66,
            999,
            1000,
            4095,
            4096,
            1 << 40,
        ] {
            assert_eq!(bits.contains(r), dense.contains(&r), "{r}");
            assert_eq!(set.contains(r), far.contains(&r), "{r}");
        }
    }

    #[test]
    fn only_a_uuids_canonical_text_is_keyed_as_a_uuid() {
        let u = uuid::Uuid::parse_str("2f8343be-6482-4d1b-a474-16847e01af1e").unwrap();
        assert_eq!(RecordKey::of(&u.to_string()), RecordKey::Uuid(u));
        // Other spellings of the same UUID are other ids: kept as text, so
        // they never share the canonical one's rowid.
        for other in [
            "2F8343BE-6482-4D1B-A474-16847E01AF1E",
            "2f8343be64824d1ba47416847e01af1e",
            "{2f8343be-6482-4d1b-a474-16847e01af1e}",
            "urn:uuid:2f8343be-6482-4d1b-a474-16847e01af1e",
            "uss.example",
            "",
        ] {
            let k = RecordKey::of(other);
            assert_eq!(k, RecordKey::Text(other.into()), "{other}");
            assert_ne!(k, RecordKey::Uuid(u));
        }
    }
}
