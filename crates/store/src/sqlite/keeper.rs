//! Keeps the state snapshot a recent base while the store runs, so that a
//! start after a crash or a kill reads the snapshot and only the rows
//! changed since it, not every row.
//!
//! A task beside the writer looks every [`LOOK_EVERY`] at how many rows of
//! the snapshot's tables changed since the snapshot on disk; past
//! [`MIN_CHANGES`] and a [`SHARE`]th of the records, it writes a new one in
//! one read transaction of its own (a consistent view at one sequence; the
//! writer goes on): the previous snapshot's records copied as they are (not
//! decoded) with the changed rows laid in, or, with no previous snapshot
//! that is a base of this database, every row decoded and written one page
//! at a time. The decoding, copying and hashing run on a thread at the
//! lowest priority, and the task then rests [`REST`] times as long as the
//! writing took. Once the new file is in place the writer drops the changes
//! it holds, a few at each of its batches. The close takes the same lock,
//! so the two never write the file at once, and nothing is written after
//! it.
//!
//! Between two snapshots, once [`MIN_CHANGES`] rows changed since the
//! snapshot or the last segment of its changes, the task writes the next
//! segment (`changes.rs`): those rows' records, decoded from their JSON
//! once, in binary. A start after a crash then decodes the JSON of only the
//! rows changed after the last segment, and the next snapshot lays the
//! segments' records in as bytes. Snapshots and segments each rest after
//! their own writing (segments go on while the snapshot rests): each keeps
//! at most a quarter of one core under a steady stream of writes.

use super::changes::{self, Laying, SegmentHead};
use super::snapshot::{self, Head};
use super::{Origin, READ_PAGE, decode_page, err, fetch_rows, is_base, newest_entry};
use airspace::snapshot::Snap;
use airspace::{Constraint, OperationalIntent, Subscription};
use node::StoreError;
use node::persist::Table;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Changes noted, at least, before a snapshot or a segment of its changes
/// is written while running.
pub(super) const MIN_CHANGES: u64 = 4096;
/// ... and at least this fraction of the records (one eighth): a start
/// after a crash decodes at most about that many rows beside the snapshot,
/// and the copies cost, over a table's growth from nothing, about eight
/// times its final size.
const SHARE: u64 = 8;
/// How often the task looks.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// After writing a snapshot, the keeper rests at least this many times as
/// long as the writing took: under a steady stream of writes it keeps at
/// most a quarter of one core, and the changes a crash leaves to decode
/// may then exceed an eighth of the records by what arrives meanwhile.
const REST: u32 = 3;
/// The longest wait before trying again after a failure.
const RETRY_AT_MOST: std::time::Duration = std::time::Duration::from_secs(300);

/// The snapshot's keeper, shared by the store, its writer and the task.
pub(super) struct Keeper {
    dir: PathBuf,
    opts: SqliteConnectOptions,
    /// Rows of the snapshot's tables changed since the snapshot on disk
    /// (every record, while there is none).
    pub pending: AtomicU64,
    /// Rows changed since the snapshot or the last segment of its changes.
    since_segment: AtomicU64,
    /// Records in the snapshot's tables when it was last written or read.
    records: AtomicU64,
    /// A snapshot on disk holds the changes up to this sequence, noted up
    /// to this id of `snapshot_changes`: the writer drops them.
    prune_seq: AtomicU64,
    prune_id: AtomicU64,
    /// Held while the file is written; true once the store closed.
    file: tokio::sync::Mutex<bool>,
    written: AtomicU64,
    segments: AtomicU64,
}

/// Whether a write goes ahead whatever changed, or only if enough did
/// still once the file is free: a write asked for meanwhile (a test's, an
/// operator's) may have taken what made it due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    Now,
    Due,
}

/// A snapshot written while running.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    pub seq: u64,
    /// The newest id of `snapshot_changes` it holds.
    pub last_change: u64,
    pub records: u64,
    pub bytes: u64,
    /// Laid over the previous snapshot (else from every row).
    pub merged: bool,
}

impl Keeper {
    pub(super) fn new(dir: PathBuf, opts: SqliteConnectOptions, origin: Origin) -> Keeper {
        Keeper {
            dir,
            opts,
            pending: AtomicU64::new(if origin.from_snapshot {
                origin.laid.rows
            } else {
                origin.records
            }),
            since_segment: AtomicU64::new(origin.laid.from_rows),
            records: AtomicU64::new(origin.records),
            prune_seq: AtomicU64::new(0),
            prune_id: AtomicU64::new(0),
            file: tokio::sync::Mutex::new(false),
            written: AtomicU64::new(0),
            segments: AtomicU64::new(0),
        }
    }

    /// Rows of the snapshot's tables a batch changed (the writer).
    pub(super) fn noted(&self, rows: u64) {
        self.pending.fetch_add(rows, Ordering::Relaxed);
        self.since_segment.fetch_add(rows, Ordering::Relaxed);
    }

    fn due(&self) -> bool {
        let records = self.records.load(Ordering::Relaxed);
        self.pending.load(Ordering::Relaxed) >= MIN_CHANGES.max(records / SHARE)
    }

    fn segment_due(&self) -> bool {
        self.since_segment.load(Ordering::Relaxed) >= MIN_CHANGES
    }

    /// The sequence and the id of `snapshot_changes` up to which the
    /// changes noted are held by the snapshot on disk.
    pub(super) fn pruning(&self) -> (u64, u64) {
        (
            self.prune_seq.load(Ordering::Acquire),
            self.prune_id.load(Ordering::Acquire),
        )
    }

    /// Snapshots written while running, since the store opened.
    pub(super) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Segments of the snapshot's changes written since the store opened.
    pub(super) fn segments_written(&self) -> u64 {
        self.segments.load(Ordering::Relaxed)
    }

    /// The file's lock, for the close: nothing is written after it.
    pub(super) async fn close(&self) -> tokio::sync::MutexGuard<'_, bool> {
        let mut closed = self.file.lock().await;
        *closed = true;
        closed
    }

    /// Writes a snapshot of the database as it is now (`None` once the
    /// store closed, or when `when` asks for one only if due and it is not
    /// once the file is free).
    pub(super) async fn write(&self, when: When) -> Result<Option<Written>, StoreError> {
        let closed = self.file.lock().await;
        if *closed || (when == When::Due && !self.due()) {
            return Ok(None);
        }
        let pending = self.pending.load(Ordering::Relaxed);
        let since_segment = self.since_segment.load(Ordering::Relaxed);
        let mut conn = SqliteConnection::connect_with(&self.opts)
            .await
            .map_err(err("opening the database for the state snapshot"))?;
        let mut written = self.write_on(&mut conn, Over::Segments).await;
        if let Ok(Err(Damaged::Segment(why))) = &written {
            tracing::warn!(%why, "a segment of the state snapshot's changes is damaged: the rows changed since the snapshot are read");
            written = self.write_on(&mut conn, Over::Base).await;
        }
        if let Ok(Err(Damaged::Base(why))) = &written {
            tracing::warn!(%why, "the state snapshot on disk is damaged: written from the rows");
            written = self.write_on(&mut conn, Over::Nothing).await;
        }
        // Ends the read transaction, if a failure left it open.
        let _ = conn.close().await;
        let written = written?.map_err(|d| {
            StoreError::Failed(match d {
                Damaged::Base(why) => format!("the state snapshot on disk is damaged: {why}"),
                Damaged::Segment(why) => {
                    format!("a segment of the state snapshot's changes is damaged: {why}")
                }
            })
        })?;
        drop(closed);
        self.prune_seq.fetch_max(written.seq, Ordering::Release);
        self.prune_id
            .fetch_max(written.last_change, Ordering::Release);
        // Changes noted while it was written stay counted.
        for (count, held) in [
            (&self.pending, pending),
            (&self.since_segment, since_segment),
        ] {
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(held))
            });
        }
        self.records.store(written.records, Ordering::Relaxed);
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(Some(written))
    }

    /// Writes a snapshot in one read transaction, laid over the one on disk
    /// when `over` says and that is a base; why not, should that base or a
    /// segment of its changes turn out damaged as it is copied.
    async fn write_on(
        &self,
        conn: &mut SqliteConnection,
        over: Over,
    ) -> Result<Result<Written, Damaged>, StoreError> {
        let (head, last_change) = begin_view(conn).await?;
        let seq = head.seq;
        let dir = self.dir.clone();
        let base = tokio::task::spawn_blocking(move || match over {
            Over::Segments | Over::Base => snapshot::open(&dir),
            Over::Nothing => Ok(None),
        })
        .await
        .map_err(|e| StoreError::Failed(format!("reading the state snapshot: {e}")))?;
        let base = match base {
            Ok(Some(base)) => match is_base(conn, &base.head, seq).await? {
                Ok(()) => Some(base),
                Err(why) => {
                    tracing::info!(%why, "the state snapshot on disk is no base: written from the rows");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "the state snapshot on disk is unreadable: written from the rows");
                None
            }
        };
        let dir = self.dir.clone();
        let merged = base.is_some();
        let (bytes, records) = match base {
            Some(base) => {
                // The segments of its changes, then the rows after them.
                let segments = match over {
                    Over::Segments => {
                        let (dir, head) = (self.dir.clone(), base.head.clone());
                        tokio::task::spawn_blocking(move || changes::chain(&dir, &head))
                            .await
                            .map_err(|e| {
                                StoreError::Failed(format!("reading the snapshot's changes: {e}"))
                            })?
                    }
                    _ => Vec::new(),
                };
                let since = super::Since::chain(&segments, base.head.seq);
                let changed = changed_pages(conn, since).await?;
                end_read(conn).await?;
                let merged = in_background(move || {
                    let mut laying: [Laying<Vec<u8>>; 3] = Default::default();
                    for mut segment in segments {
                        for laying in &mut laying {
                            let c = match segment.raw() {
                                Ok(c) => c,
                                Err(why) => return Ok(Err(Damaged::Segment(why))),
                            };
                            laying.lay(c.rowids, c.now);
                        }
                        if let Err(why) = segment.end() {
                            return Ok(Err(Damaged::Segment(why)));
                        }
                    }
                    lay_pages(&mut laying, changed)?;
                    let merged = snapshot::merge(&dir, &head, base, laying.map(Laying::into_raw));
                    // The segments extend the snapshot before it.
                    if let Ok(Ok(_)) = &merged
                        && let Err(e) = changes::remove_all(&dir)
                    {
                        tracing::warn!(error = %e, "removing the state snapshot's changes");
                    }
                    merged.map(|m| m.map_err(Damaged::Base))
                })
                .await?
                .map_err(StoreError::Failed)?;
                match merged {
                    Ok(w) => w,
                    Err(why) => return Ok(Err(why)),
                }
            }
            None => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<String>>(4);
                let writer = in_background(move || {
                    snapshot::write_with(&dir, &head, |s| {
                        for table in snapshot::TABLES {
                            loop {
                                match rx.blocking_recv() {
                                    Some(Some(page)) => {
                                        let rows =
                                            encode_page(table, &page).map_err(|e| e.to_string())?;
                                        for (rowid, b) in rows {
                                            s.push(rowid, |out| out.extend_from_slice(&b))?;
                                        }
                                    }
                                    Some(None) => break,
                                    None => return Err("the rows stopped coming".into()),
                                }
                            }
                            s.end_table()?;
                        }
                        Ok(())
                    })
                });
                let fed = async {
                    for table in snapshot::TABLES {
                        feed(conn, table, &tx).await?;
                    }
                    end_read(conn).await
                }
                .await;
                drop(tx);
                let written = writer.await?;
                // The writer's error first: a feed fails when it stops.
                if written.is_ok() {
                    fed?;
                    if let Err(e) = changes::remove_all(&self.dir) {
                        tracing::warn!(error = %e, "removing the state snapshot's changes");
                    }
                }
                written.map_err(StoreError::Failed)?
            }
        };
        Ok(Ok(Written {
            seq,
            last_change,
            records,
            bytes,
            merged,
        }))
    }
}

/// A segment of the snapshot's changes written.
#[derive(Debug, Clone, Copy)]
pub(super) struct SegmentWritten {
    /// The sequence it reaches.
    pub seq: u64,
    /// Records of the rows changed still there.
    pub records: u64,
    pub bytes: u64,
}

/// What a snapshot written while running is laid over.
#[derive(Clone, Copy, Debug)]
enum Over {
    /// The snapshot on disk and the segments of its changes, then the rows
    /// changed after them.
    Segments,
    /// The snapshot on disk, then the rows changed since it.
    Base,
    /// Nothing: every row.
    Nothing,
}

/// A file found damaged while it was copied.
enum Damaged {
    Base(String),
    Segment(String),
}

impl Keeper {
    /// Writes the next segment of the snapshot's changes: the rows changed
    /// since the snapshot or its last segment, as they are now (`None`
    /// when there is nothing to write, no snapshot to extend, or once the
    /// store closed; or when `when` asks for one only if due and it is not
    /// once the file is free).
    pub(super) async fn write_segment(
        &self,
        when: When,
    ) -> Result<Option<SegmentWritten>, StoreError> {
        let closed = self.file.lock().await;
        if *closed || (when == When::Due && !self.segment_due()) {
            return Ok(None);
        }
        let pending = self.since_segment.load(Ordering::Relaxed);
        let mut conn = SqliteConnection::connect_with(&self.opts)
            .await
            .map_err(err("opening the database for the state snapshot's changes"))?;
        let written = self.segment_on(&mut conn).await;
        // Ends the read transaction, if one is left open.
        let _ = conn.close().await;
        drop(closed);
        let Some(written) = written? else {
            return Ok(None);
        };
        let _ = self
            .since_segment
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(pending))
            });
        self.segments.fetch_add(1, Ordering::Relaxed);
        Ok(Some(written))
    }

    async fn segment_on(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<Option<SegmentWritten>, StoreError> {
        let (at, last_change) = begin_view(conn).await?;
        let seq = at.seq;
        let dir = self.dir.clone();
        let found = tokio::task::spawn_blocking(move || {
            let base = snapshot::open(&dir).ok().flatten()?;
            let chain = changes::chain(&dir, &base.head);
            let from = chain.last().map_or(base.head.seq, |s| s.head.at.seq);
            let since = super::Since::chain(&chain, base.head.seq);
            Some((base.head, from, since))
        })
        .await
        .map_err(|e| StoreError::Failed(format!("reading the state snapshot: {e}")))?;
        // No snapshot to extend: the next one is written whole.
        let Some((base, from, since)) = found else {
            return Ok(None);
        };
        if from >= seq || is_base(conn, &base, seq).await?.is_err() {
            return Ok(None);
        }
        let changed = changed_pages(conn, since).await?;
        end_read(conn).await?;
        let dir = self.dir.clone();
        let head = SegmentHead {
            base,
            from,
            at,
            last_change,
        };
        let (bytes, records) = in_background(move || {
            let mut laid: [Laying<Vec<u8>>; 3] = Default::default();
            lay_pages(&mut laid, changed)?;
            changes::write(&dir, &head, laid.map(Laying::into_raw))
        })
        .await?
        .map_err(StoreError::Failed)?;
        Ok(Some(SegmentWritten {
            seq,
            records,
            bytes,
        }))
    }
}

/// Starts a read transaction (deferred: its first read fixes the view
/// every read after sees): the database's head at that view and the
/// highest id of `snapshot_changes`.
async fn begin_view(conn: &mut SqliteConnection) -> Result<(Head, u64), StoreError> {
    sqlx::query("BEGIN")
        .execute(&mut *conn)
        .await
        .map_err(err("starting the state snapshot's read"))?;
    let seq: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'seq'")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("reading seq"))?;
    let last_change: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM snapshot_changes")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("reading the changes noted"))?;
    let head = Head {
        schema: super::schema_version(),
        seq: seq as u64,
        log: newest_entry(conn).await?,
    };
    Ok((head, last_change as u64))
}

/// Each snapshot table's rows noted after `since`: their rowids, and the
/// pages of those still there (as [`fetch_rows`] joins them).
type ChangedPages = [(std::collections::HashSet<i64>, Vec<String>); 3];

async fn changed_pages(
    conn: &mut SqliteConnection,
    since: super::Since,
) -> Result<ChangedPages, StoreError> {
    let changed = super::changed_rowids(conn, since).await?;
    let mut out: ChangedPages = Default::default();
    for ((table, rowids), out) in snapshot::TABLES.iter().zip(changed).zip(&mut out) {
        for chunk in super::rowid_pages(&rowids) {
            out.1.extend(fetch_rows(conn, *table, &chunk).await?);
        }
        out.0 = rowids;
    }
    Ok(out)
}

/// Lays each table's changed rows, their pages decoded and encoded.
fn lay_pages(laying: &mut [Laying<Vec<u8>>; 3], changed: ChangedPages) -> Result<(), String> {
    for ((table, (rowids, pages)), laying) in snapshot::TABLES.into_iter().zip(changed).zip(laying)
    {
        let mut now = Vec::new();
        for page in pages {
            now.extend(encode_page(table, &page).map_err(|e| e.to_string())?);
        }
        laying.lay(rowids, now);
    }
    Ok(())
}

/// Runs `f` on a thread of its own at the lowest priority (nice 19): the
/// snapshot's decoding, copying and hashing take only what the node's
/// requests leave of the cores. The thread starts at once; the future
/// gives its result.
fn in_background<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> impl std::future::Future<Output = Result<R, StoreError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("state-snapshot".into())
        .spawn(move || {
            // Linux's nice is each thread's own; a failure only leaves it at
            // the node's priority.
            let me = rustix::thread::gettid();
            if let Err(e) = rustix::process::setpriority_process(Some(me), 19) {
                tracing::debug!(error = %e, "the state snapshot's thread keeps its priority");
            }
            let _ = tx.send(f());
        });
    async move {
        started.map_err(|e| {
            StoreError::Failed(format!("starting the state snapshot's thread: {e}"))
        })?;
        rx.await
            .map_err(|_| StoreError::Failed("the state snapshot's thread stopped".into()))
    }
}

/// A page of rows of a snapshot table, decoded and encoded, by id.
fn encode_page(table: Table, page: &str) -> Result<Encoded, StoreError> {
    match table {
        Table::Intents => decode_page::<OperationalIntent>(table, page).map(encoded),
        Table::Constraints => decode_page::<Constraint>(table, page).map(encoded),
        Table::Subscriptions => decode_page::<Subscription>(table, page).map(encoded),
        other => Err(StoreError::Failed(format!(
            "{} is not in the state snapshot",
            other.name()
        ))),
    }
}

async fn end_read(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::query("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(err("ending the state snapshot's read"))?;
    Ok(())
}

/// Records, each its rowid and binary form.
type Encoded = Vec<(i64, Vec<u8>)>;

/// Decoded rows as a snapshot holds them: encoded, by id (each encoding
/// starts with the record's id).
fn encoded<T: Snap>(rows: Vec<(i64, String, T)>) -> Encoded {
    let mut out: Encoded = rows
        .into_iter()
        .map(|(rowid, _, record)| {
            let mut b = Vec::new();
            record.put(&mut b);
            (rowid, b)
        })
        .collect();
    out.sort_unstable_by(|a, b| a.1.get(..16).cmp(&b.1.get(..16)));
    out
}

/// Sends every row of a table by id, a page (as SQLite joins it) at a
/// time, then `None`.
async fn feed(
    conn: &mut SqliteConnection,
    table: Table,
    tx: &tokio::sync::mpsc::Sender<Option<String>>,
) -> Result<(), StoreError> {
    let stopped = || StoreError::Failed("the state snapshot's writer stopped".into());
    // The rows in the snapshot's order (by id), then read by rowid a page
    // at a time in that order.
    let ids: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT rowid, id FROM {}",
        table.name()
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(err("reading the rows' ids"))?;
    let mut order = ids
        .into_iter()
        .map(|(rowid, id)| match uuid::Uuid::try_parse(&id) {
            Ok(u) => Ok((u, rowid)),
            Err(_) => Err(StoreError::Failed(format!(
                "row {rowid} of {} has the id {id:?}, not a UUID",
                table.name()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    order.sort_unstable();
    for chunk in order.chunks(READ_PAGE as usize) {
        let rowids: Vec<i64> = chunk.iter().map(|p| p.1).collect();
        if let Some(page) = fetch_rows(conn, table, &rowids).await? {
            tx.send(Some(page)).await.map_err(|_| stopped())?;
        }
    }
    tx.send(None).await.map_err(|_| stopped())
}

/// Writes a snapshot whenever enough has changed, for as long as the store
/// is open.
pub(super) async fn keep(keeper: Arc<Keeper>, store: node::writer::Refresher) {
    // Each kind rests after its own writing: the segments go on while the
    // snapshot rests, so the rows a crash leaves to decode stay few.
    let (mut base, mut segment) = (Pace::default(), Pace::default());
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        if !store.alive() {
            return;
        }
        let now = std::time::Instant::now();
        if keeper.due() && base.ready(now) {
            match keeper.write(When::Due).await {
                Ok(Some(w)) => {
                    let ms = now.elapsed().as_millis() as u64;
                    base.wrote(now);
                    tracing::info!(
                        seq = w.seq,
                        records = w.records,
                        bytes = w.bytes,
                        merged = w.merged,
                        ms,
                        "state snapshot written while running"
                    )
                }
                // Closed, or no longer due once the file was free: the
                // loop ends when the store is gone (checked above).
                Ok(None) => {}
                Err(e) => {
                    let retry_s = base.failed().as_secs();
                    tracing::warn!(error = %e, retry_s, "the state snapshot was not written");
                }
            }
        } else if keeper.segment_due() && segment.ready(now) {
            match keeper.write_segment(When::Due).await {
                Ok(Some(w)) => {
                    let ms = now.elapsed().as_millis() as u64;
                    segment.wrote(now);
                    tracing::debug!(
                        seq = w.seq,
                        records = w.records,
                        bytes = w.bytes,
                        ms,
                        "a segment of the state snapshot's changes written"
                    )
                }
                Ok(None) => {}
                Err(e) => {
                    let retry_s = segment.failed().as_secs();
                    tracing::warn!(error = %e, retry_s, "a segment of the state snapshot's changes was not written");
                }
            }
        }
    }
}

/// When the keeper may write a kind of file again: [`REST`] times as long
/// as the last writing took after it, or, after a failure (a full disk,
/// say), twice as long as the wait before, up to [`RETRY_AT_MOST`].
struct Pace {
    next: Option<std::time::Instant>,
    backoff: std::time::Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            next: None,
            backoff: LOOK_EVERY,
        }
    }
}

impl Pace {
    fn ready(&self, now: std::time::Instant) -> bool {
        self.next.is_none_or(|n| now >= n)
    }

    /// A writing that started at `started` succeeded.
    fn wrote(&mut self, started: std::time::Instant) {
        let took = started.elapsed();
        self.next = Some(started + took + took * REST);
        self.backoff = LOOK_EVERY;
    }

    /// A writing failed: the wait before the next try.
    fn failed(&mut self) -> std::time::Duration {
        self.backoff = (self.backoff * 2).min(RETRY_AT_MOST);
        self.next = Some(std::time::Instant::now() + self.backoff);
        self.backoff
    }
}
