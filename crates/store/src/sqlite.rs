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

use airspace::{
    AirspaceState, Constraint, Decision, DomainError, Event, OperationalIntent, Subscription,
    UssAvailability,
};
use liaison::{LineError, LineState};
use node::log::LogSigner;
use node::{BoxFuture, LineCommit, LineWriteFn, Store, StoreError, WriteFn};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tlog::proof::ProofError;
use tlog::tree::MemoryTree;
use tlog::witness::Cosigned;
use tokio::sync::{mpsc, oneshot};

/// Most decisions committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// Most decisions of the line in one transaction: each signs entries in
/// the writer, and a FLASH record must not wait behind a long batch.
pub const MAX_LINE_BATCH: usize = 128;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_airspace.sql")),
    (2, include_str!("../migrations/sqlite/0002_log.sql")),
    (3, include_str!("../migrations/sqlite/0003_witness.sql")),
];

type Reply = Result<Result<Decision, DomainError>, StoreError>;
type LineReply = Result<Result<LineCommit, LineError>, StoreError>;

enum Job {
    Airspace {
        f: WriteFn,
        reply: oneshot::Sender<Reply>,
    },
    Line {
        f: LineWriteFn,
        reply: oneshot::Sender<LineReply>,
    },
}

pub struct SqliteStore {
    state: Arc<RwLock<AirspaceState>>,
    line: Arc<RwLock<LineState>>,
    log: Arc<LogState>,
    jobs: mpsc::Sender<Job>,
    urgent: mpsc::Sender<Job>,
    reads: SqlitePool,
    path: PathBuf,
    appended: Arc<tokio::sync::Notify>,
}

/// The evidence log as the store holds it: the tree (which may briefly hold
/// leaves of a batch being committed) and how many leaves are committed.
/// Roots and proofs only ever cover committed leaves.
struct LogState {
    tree: RwLock<MemoryTree>,
    committed: AtomicU64,
    latest: RwLock<Option<(u64, String)>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn err(context: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError(format!("{context}: {e}"))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Table {
    Intents,
    Constraints,
    Subscriptions,
    Availability,
    Reports,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Intents => "intents",
            Table::Constraints => "constraints",
            Table::Subscriptions => "subscriptions",
            Table::Availability => "availability",
            Table::Reports => "reports",
        }
    }
    const ALL: [Table; 5] = [
        Table::Intents,
        Table::Constraints,
        Table::Subscriptions,
        Table::Availability,
        Table::Reports,
    ];
}

/// Rows per multi-row statement (SQLite allows 32,766 parameters).
const ROWS_PER_STATEMENT: usize = 500;

/// Net row changes of a batch: the last write to a row wins.
#[derive(Default)]
struct Dirty {
    rows: HashMap<(Table, String), Option<String>>,
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError(format!("encoding a record: {e}")))
}

impl Dirty {
    fn record(&mut self, events: &[Event]) -> Result<(), StoreError> {
        for e in events {
            let (key, body) = match e {
                Event::IntentUpserted(i) => ((Table::Intents, i.id.to_string()), Some(json(i)?)),
                Event::IntentRemoved(id) => ((Table::Intents, id.to_string()), None),
                Event::ConstraintUpserted(c) => {
                    ((Table::Constraints, c.id.to_string()), Some(json(c)?))
                }
                Event::ConstraintRemoved(id) => ((Table::Constraints, id.to_string()), None),
                Event::SubscriptionUpserted(s) => {
                    ((Table::Subscriptions, s.id.to_string()), Some(json(s)?))
                }
                Event::SubscriptionRemoved(id) => ((Table::Subscriptions, id.to_string()), None),
                Event::AvailabilitySet(a) => ((Table::Availability, a.uss.clone()), Some(json(a)?)),
                Event::ReportFiled(r) => ((Table::Reports, r.id.clone()), Some(json(r)?)),
            };
            self.rows.insert(key, body);
        }
        Ok(())
    }
}

async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY) STRICT")
        .execute(&mut *conn)
        .await
        .map_err(err("creating schema_version"))?;
    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("reading schema_version"))?;
    for (version, sql) in MIGRATIONS {
        if current.is_some_and(|c| c >= *version) {
            continue;
        }
        let mut tx = conn.begin().await.map_err(err("starting a migration"))?;
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(err("applying a migration"))?;
        sqlx::query("INSERT INTO schema_version (version) VALUES (?1)")
            .bind(version)
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
    of: HashMap<(Table, String), i64>,
    next: i64,
}

async fn rows<T: serde::de::DeserializeOwned + Send>(
    conn: &mut SqliteConnection,
    table: Table,
    ids: &mut RowIds,
) -> Result<Vec<T>, StoreError> {
    let sql: &'static str = match table {
        Table::Intents => "SELECT rowid, id, body FROM intents ORDER BY rowid",
        Table::Constraints => "SELECT rowid, id, body FROM constraints ORDER BY rowid",
        Table::Subscriptions => "SELECT rowid, id, body FROM subscriptions ORDER BY rowid",
        Table::Availability => "SELECT rowid, id, body FROM availability ORDER BY rowid",
        Table::Reports => "SELECT rowid, id, body FROM reports ORDER BY rowid",
    };
    let rows: Vec<(i64, String, String)> = sqlx::query_as(sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(err("loading rows"))?;
    for (rowid, id, _) in &rows {
        ids.next = ids.next.max(rowid + 1);
        ids.of.insert((table, id.clone()), *rowid);
    }
    if table == Table::Reports {
        return Ok(Vec::new());
    }
    // Decoding (and re-preparing geometry) is the bulk of a cold start:
    // spread it over the cores.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let chunk = rows.len().div_ceil(threads).max(1);
    let decoded: Vec<Result<Vec<T>, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, id, body)| {
                            serde_json::from_str(body).map_err(|e| {
                                StoreError(format!(
                                    "row {id} of {} is unreadable: {e}",
                                    table.name()
                                ))
                            })
                        })
                        .collect::<Result<Vec<T>, StoreError>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StoreError("a decoding thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(rows.len());
    for part in decoded {
        out.extend(part?);
    }
    Ok(out)
}

async fn load(conn: &mut SqliteConnection) -> Result<(AirspaceState, RowIds), StoreError> {
    let seq: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'seq'")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("reading seq"))?;
    let mut ids = RowIds {
        next: 1,
        ..RowIds::default()
    };
    let started = std::time::Instant::now();
    let intents: Vec<OperationalIntent> = rows(conn, Table::Intents, &mut ids).await?;
    let constraints: Vec<Constraint> = rows(conn, Table::Constraints, &mut ids).await?;
    let subscriptions: Vec<Subscription> = rows(conn, Table::Subscriptions, &mut ids).await?;
    let availability: Vec<UssAvailability> = rows(conn, Table::Availability, &mut ids).await?;
    let _: Vec<serde_json::Value> = rows(conn, Table::Reports, &mut ids).await?;
    let reports = ids.of.keys().filter(|(t, _)| *t == Table::Reports).count();
    let decoded_ms = started.elapsed().as_millis() as u64;
    let state = AirspaceState::load(
        seq as u64,
        intents,
        constraints,
        subscriptions,
        availability,
        reports,
    );
    tracing::debug!(
        decoded_ms,
        rebuilt_ms = started.elapsed().as_millis() as u64 - decoded_ms,
        "state loaded"
    );
    Ok((state, ids))
}

/// Signs one log entry per event, in order, spreading large batches over
/// the cores (an Ed25519 signature costs more than deciding a write).
fn sign_all(signer: &LogSigner, events: &[&airspace::Event]) -> Result<Vec<Vec<u8>>, StoreError> {
    let sign = |e: &&airspace::Event| {
        signer
            .entry(e)
            .map_err(|e| StoreError(format!("signing a log entry: {e}")))
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if events.len() < 16 || threads < 2 {
        return events.iter().map(sign).collect();
    }
    let chunk = events.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = events
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(sign).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(events.len());
        for h in handles {
            out.extend(
                h.join()
                    .unwrap_or_else(|_| Err(StoreError("a signing thread panicked".into())))?,
            );
        }
        Ok(out)
    })
}

/// Rebuilds the tree, and the line's state, from the committed entries
/// (they must be numbered 0..n without gaps).
async fn load_tree(
    conn: &mut SqliteConnection,
    me: &str,
) -> Result<(MemoryTree, LineState), StoreError> {
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT idx, data FROM log_entries ORDER BY idx")
            .fetch_all(&mut *conn)
            .await
            .map_err(err("loading the log"))?;
    let mut tree = MemoryTree::new();
    let mut line = LineState::new(me);
    for (idx, data) in rows {
        if idx as u64 != tree.size() {
            return Err(StoreError(format!("the log has a gap before entry {idx}")));
        }
        // Only the line's entries hold the text "line."; the full parse
        // below decides.
        if data.windows(5).any(|w| w == b"line.")
            && let Some(parsed) = liaison::decide::line_entry(&data)
        {
            let (e, l) =
                parsed.map_err(|e| StoreError(format!("log entry {idx} is unreadable: {e}")))?;
            line.apply(&e.entry.origin, idx as u64, tlog::leaf_hash(&data), l);
        }
        tree.append(&data);
    }
    Ok((tree, line))
}

/// Rows to upsert (rowid, id, body) and rowids to delete, of one table.
type TableChanges = (Vec<(i64, String, String)>, Vec<i64>);

/// Writes the batch's net row changes with a few multi-row statements per
/// table (one round trip each), then the sequence number, in one
/// transaction. New records get fresh rowids (appended at the end of their
/// table); `ids` is updated only once the commit succeeded.
async fn persist(
    conn: &mut SqliteConnection,
    dirty: Dirty,
    seq: u64,
    ids: &mut RowIds,
    first_leaf: u64,
    leaves: &[Vec<u8>],
) -> Result<(), StoreError> {
    let mut next = ids.next;
    let mut assigned: Vec<((Table, String), i64)> = Vec::new();
    let mut removed: Vec<(Table, String)> = Vec::new();
    let mut by_table: HashMap<Table, TableChanges> = HashMap::new();
    for ((table, id), body) in dirty.rows {
        let known = ids.of.get(&(table, id.clone())).copied();
        let (up, del) = by_table.entry(table).or_default();
        match (body, known) {
            (Some(b), Some(r)) => up.push((r, id, b)),
            (Some(b), None) => {
                assigned.push(((table, id.clone()), next));
                up.push((next, id, b));
                next += 1;
            }
            (None, Some(r)) => {
                del.push(r);
                removed.push((table, id));
            }
            (None, None) => {}
        }
    }
    let mut tx = conn.begin().await.map_err(err("starting a transaction"))?;
    for table in Table::ALL {
        let Some((mut up, del)) = by_table.remove(&table) else {
            continue;
        };
        up.sort_unstable_by_key(|r| r.0);
        for chunk in up.chunks(ROWS_PER_STATEMENT) {
            // Only placeholders are formatted into the SQL; the values are bound.
            let sql = format!(
                "INSERT INTO {} (rowid, id, body) VALUES {} ON CONFLICT(rowid) DO UPDATE SET body = excluded.body",
                table.name(),
                vec!["(?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (rowid, id, body) in chunk {
                q = q.bind(rowid).bind(id).bind(body);
            }
            q.execute(&mut *tx).await.map_err(err("writing rows"))?;
        }
        for chunk in del.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM {} WHERE rowid IN ({})",
                table.name(),
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for rowid in chunk {
                q = q.bind(rowid);
            }
            q.execute(&mut *tx).await.map_err(err("deleting rows"))?;
        }
    }
    for (c, chunk) in leaves.chunks(ROWS_PER_STATEMENT).enumerate() {
        let sql = format!(
            "INSERT INTO log_entries (idx, data) VALUES {}",
            vec!["(?, ?)"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (i, data) in chunk.iter().enumerate() {
            q = q
                .bind((first_leaf + (c * ROWS_PER_STATEMENT + i) as u64) as i64)
                .bind(data.as_slice());
        }
        q.execute(&mut *tx)
            .await
            .map_err(err("appending log entries"))?;
    }
    sqlx::query("UPDATE meta SET value = ?1 WHERE key = 'seq'")
        .bind(seq as i64)
        .execute(&mut *tx)
        .await
        .map_err(err("writing seq"))?;
    tx.commit().await.map_err(err("committing"))?;
    ids.next = next;
    ids.of.extend(assigned);
    for k in removed {
        ids.of.remove(&k);
    }
    Ok(())
}

/// The writer's connection after a failed commit. SQLite does not always
/// roll a transaction back when COMMIT fails (SQLITE_FULL, an I/O error),
/// and on a connection still inside it sqlx would nest the next transaction
/// as a savepoint that never commits — acknowledging writes that a restart
/// then loses (found by tests/disk_full.rs). Closing the connection rolls
/// the transaction back; the next one starts clean, and the state is
/// reloaded through it, so nothing of the failed batch is seen.
async fn reconnect(old: SqliteConnection, opts: &SqliteConnectOptions) -> SqliteConnection {
    if let Err(e) = old.close().await {
        tracing::warn!(error = %e, "closing the writer's connection after a failed commit");
    }
    let mut wait = std::time::Duration::from_millis(50);
    loop {
        match SqliteConnection::connect_with(opts).await {
            Ok(c) => return c,
            Err(e) => {
                tracing::error!(error = %e, "reopening the database after a failed commit; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn writer(
    mut conn: SqliteConnection,
    opts: SqliteConnectOptions,
    state: Arc<RwLock<AirspaceState>>,
    line: Arc<RwLock<LineState>>,
    log: Arc<LogState>,
    signer: LogSigner,
    mut ids: RowIds,
    mut jobs: mpsc::Receiver<Job>,
    mut urgent: mpsc::Receiver<Job>,
    appended: Arc<tokio::sync::Notify>,
) {
    loop {
        // Urgent work (the FLASH lane) first, then the rest in order.
        let first = tokio::select! {
            biased;
            j = urgent.recv() => j,
            j = jobs.recv() => j,
        };
        let Some(first) = first else {
            break;
        };
        let is_line = |j: &Job| matches!(j, Job::Line { .. });
        let mut lines = usize::from(is_line(&first));
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match urgent.try_recv() {
                Ok(j) => {
                    lines += usize::from(is_line(&j));
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        while batch.len() < MAX_BATCH && lines < MAX_LINE_BATCH {
            match jobs.try_recv() {
                Ok(j) => {
                    lines += usize::from(is_line(&j));
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        let mut replies: Vec<(oneshot::Sender<Reply>, Reply)> = Vec::with_capacity(batch.len());
        let batch_len = batch.len();
        let mut line_jobs = Vec::new();
        let mut air_jobs = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Airspace { f, reply } => air_jobs.push((f, reply)),
                Job::Line { f, reply } => line_jobs.push((f, reply)),
            }
        }
        let t_decide = std::time::Instant::now();
        let seq = {
            let mut st = state.write().unwrap_or_else(|e| e.into_inner());
            for (f, reply) in air_jobs {
                // A decision that panics refuses that one write, not the node.
                let r =
                    std::panic::catch_unwind(AssertUnwindSafe(|| f(&st))).unwrap_or_else(|_| {
                        Err(DomainError::InvalidInput {
                            field: String::new(),
                            message: "internal error while deciding".into(),
                        })
                    });
                if let Ok(d) = &r {
                    st.apply(&d.events);
                }
                replies.push((reply, Ok(r)));
            }
            st.seq()
        };
        let decide_us = t_decide.elapsed().as_micros() as u64;
        // Encoding and signing happen outside the lock: readers wait only
        // for decisions. Every event gets its signed log entry.
        let mut dirty = Dirty::default();
        let encoded = replies.iter().try_for_each(|(_, r)| match r {
            Ok(Ok(d)) => dirty.record(&d.events),
            _ => Ok(()),
        });
        let events: Vec<&airspace::Event> = replies
            .iter()
            .filter_map(|(_, r)| match r {
                Ok(Ok(d)) => Some(d.events.iter()),
                _ => None,
            })
            .flatten()
            .collect();
        let (mut leaves, encoded) = match encoded {
            Ok(()) => match sign_all(&signer, &events) {
                Ok(l) => (l, Ok(())),
                Err(e) => (Vec::new(), Err(e)),
            },
            Err(e) => (Vec::new(), Err(e)),
        };
        let first_leaf = log.committed.load(Ordering::SeqCst);
        let air_leaves = leaves.len();
        let mut seq = seq;
        // The line's part of the batch comes after the airspace's: first the
        // airspace changes shared with peers, then the line's decisions, each
        // seeing the ones before it; their leaves follow the airspace's.
        let mut line_replies: Vec<(oneshot::Sender<LineReply>, LineReply)> = Vec::new();
        let mut line_us = 0u64;
        let sharing = {
            let ls = line.read().unwrap_or_else(|e| e.into_inner());
            (ls.areas().next().is_some() || ls.contact_constraints().next().is_some())
                && !events.is_empty()
        };
        if let Err(e) = &encoded {
            for (_, reply) in line_jobs {
                line_replies.push((reply, Err(e.clone())));
            }
        } else if !line_jobs.is_empty() || sharing {
            let t_line = std::time::Instant::now();
            let mut st = state.write().unwrap_or_else(|e| e.into_inner());
            let mut ls = line.write().unwrap_or_else(|e| e.into_inner());
            let now_ms = (signer.clock.now().unix_micros() / 1000).max(0) as u64;
            // The log as it will stand after the airspace's leaves: receipts
            // name the root right after their record.
            let mut frontier = {
                let tree = log.tree.read().unwrap_or_else(|e| e.into_inner());
                tlog::tree::Frontier::of(&*tree, first_leaf)
                    .expect("the tree holds every committed leaf")
            };
            for l in &leaves {
                frontier.push(l);
            }
            // Operations touching the line of contact: the node's notices.
            if let Some(member) = &signer.member
                && ls.contact_constraints().next().is_some()
            {
                for ev in &events {
                    for m in node::contact::notices(&ls, &st, ev, member, now_ms) {
                        let r = liaison::decide::send_message(&ls, m, now_ms).and_then(|d| {
                            liaison::decide::append(
                                &mut ls,
                                &signer.signer,
                                now_ms,
                                &mut frontier,
                                d.events,
                            )
                        });
                        match r {
                            Ok(new) => leaves.extend(new),
                            Err(e) => {
                                tracing::warn!(error = %e, "a line-of-contact notice could not be sent")
                            }
                        }
                    }
                }
            }
            for ev in &events {
                for share in node::share::outgoing(&ls, ev) {
                    match liaison::decide::append(
                        &mut ls,
                        &signer.signer,
                        now_ms,
                        &mut frontier,
                        vec![share],
                    ) {
                        Ok(new) => leaves.extend(new),
                        Err(e) => {
                            tracing::warn!(error = %e, "an airspace change could not be shared with a peer")
                        }
                    }
                }
            }
            for (f, reply) in line_jobs {
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(&ls, &st))).unwrap_or_else(
                    |_| Err(LineError::invalid("", "internal error while deciding")),
                );
                let next = first_leaf + leaves.len() as u64;
                let r = r.and_then(|d| {
                    // A peer's accepted airspace change updates its copy here.
                    let copies: Vec<airspace::Event> = d
                        .events
                        .iter()
                        .filter_map(|e| node::line::peer_airspace_effect(e, &st))
                        .collect();
                    let commit = liaison::decide::append(
                        &mut ls,
                        &signer.signer,
                        now_ms,
                        &mut frontier,
                        d.events,
                    )
                    .map(|new| LineCommit {
                        outcome: d.outcome,
                        first_index: next,
                        leaves: new,
                    })?;
                    if !copies.is_empty() {
                        st.apply(&copies);
                        if let Err(e) = dirty.record(&copies) {
                            tracing::error!(error = %e, "encoding a peer's copy failed");
                        }
                    }
                    Ok(commit)
                });
                if let Ok(c) = &r {
                    leaves.extend(c.leaves.iter().cloned());
                }
                line_replies.push((reply, Ok(r)));
            }
            seq = st.seq();
            line_us = t_line.elapsed().as_micros() as u64;
        }
        let rows = dirty.rows.len();
        if encoded.is_ok() {
            let mut tree = log.tree.write().unwrap_or_else(|e| e.into_inner());
            for l in &leaves {
                tree.append(l);
            }
        }
        let t_persist = std::time::Instant::now();
        let persisted = match encoded {
            Err(e) => Err(e),
            Ok(()) if rows > 0 || !leaves.is_empty() => {
                persist(&mut conn, dirty, seq, &mut ids, first_leaf, &leaves).await
            }
            Ok(()) => Ok(()),
        };
        if persisted.is_ok() {
            log.committed
                .store(first_leaf + leaves.len() as u64, Ordering::SeqCst);
            if leaves.len() > air_leaves {
                appended.notify_waiters();
            }
        }
        tracing::debug!(
            batch = batch_len,
            rows,
            decide_us,
            line_us,
            persist_us = t_persist.elapsed().as_micros() as u64,
            "group commit"
        );
        if let Err(e) = persisted {
            tracing::error!(error = %e, "commit failed; refusing the batch and reloading the state from disk");
            for (_, r) in replies.iter_mut() {
                if matches!(r, Ok(Ok(_))) {
                    *r = Err(e.clone());
                }
            }
            for (_, r) in line_replies.iter_mut() {
                if matches!(r, Ok(Ok(_))) {
                    *r = Err(e.clone());
                }
            }
            conn = reconnect(conn, &opts).await;
            match load(&mut conn).await {
                Ok((fresh, fresh_ids)) => {
                    *state.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                    ids = fresh_ids;
                }
                Err(le) => tracing::error!(error = %le, "reloading the state failed"),
            }
            match load_tree(&mut conn, &signer.signer.name).await {
                Ok((tree, fresh_line)) => {
                    log.committed.store(tree.size(), Ordering::SeqCst);
                    *log.tree.write().unwrap_or_else(|p| p.into_inner()) = tree;
                    *line.write().unwrap_or_else(|p| p.into_inner()) = fresh_line;
                }
                Err(le) => tracing::error!(error = %le, "reloading the log failed"),
            }
        }
        for (tx, r) in replies {
            let _ = tx.send(r);
        }
        for (tx, r) in line_replies {
            let _ = tx.send(r);
        }
    }
    let _ = conn.close().await;
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, migrates it, and
    /// rebuilds the in-memory state and index from its rows.
    pub async fn open(dir: &Path, signer: LogSigner) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("detente.db");
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let mut conn = SqliteConnection::connect_with(&opts)
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
        let log_load = tokio::spawn(async move { load_tree(&mut log_conn, &name).await });
        let (state, ids) = load(&mut conn).await?;
        let (tree, line) = log_load
            .await
            .map_err(|e| StoreError(format!("loading the log: {e}")))??;
        let latest: Option<(i64, String)> =
            sqlx::query_as("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&mut conn)
                .await
                .map_err(err("loading the latest checkpoint"))?;
        let c = state.counts();
        tracing::info!(path = %path.display(), intents = c.intents, constraints = c.constraints, subscriptions = c.subscriptions,
            conflicts = c.conflicts, log_size = tree.size(), ms = started.elapsed().as_millis() as u64, "embedded store loaded, index rebuilt");
        let log = Arc::new(LogState {
            committed: AtomicU64::new(tree.size()),
            tree: RwLock::new(tree),
            latest: RwLock::new(latest.map(|(s, n)| (s as u64, n))),
        });
        let reads = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
            .max_connections(2)
            .connect_with(opts.clone().create_if_missing(false))
            .await
            .map_err(err("opening the read pool"))?;
        let state = Arc::new(RwLock::new(state));
        let line = Arc::new(RwLock::new(line));
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let (urgent_tx, urgent_rx) = mpsc::channel(4 * MAX_BATCH);
        let appended = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(writer(
            conn,
            opts.clone(),
            state.clone(),
            line.clone(),
            log.clone(),
            signer,
            ids,
            rx,
            urgent_rx,
            appended.clone(),
        ));
        Ok(SqliteStore {
            urgent: urgent_tx,
            appended,
            state,
            line,
            log,
            jobs: tx,
            reads,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SqliteStore {
    /// Sends the line's decisions in order on one channel (the writer runs
    /// them in order) and waits for each answer.
    fn send_line<'a>(
        &'a self,
        fs: Vec<LineWriteFn>,
        channel: &'a mpsc::Sender<Job>,
    ) -> BoxFuture<'a, Vec<LineReply>> {
        Box::pin(async move {
            let mut waiting = Vec::with_capacity(fs.len());
            for f in fs {
                let (reply, rx) = oneshot::channel();
                if channel.send(Job::Line { f, reply }).await.is_err() {
                    waiting.push(None);
                } else {
                    waiting.push(Some(rx));
                }
            }
            let mut out = Vec::with_capacity(waiting.len());
            for rx in waiting {
                out.push(match rx {
                    None => Err(StoreError("the writer has stopped".into())),
                    Some(rx) => rx.await.unwrap_or_else(|_| {
                        Err(StoreError("the writer stopped before answering".into()))
                    }),
                });
            }
            out
        })
    }
}

impl Store for SqliteStore {
    fn transact(&self, f: WriteFn) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.jobs
                .send(Job::Airspace { f, reply })
                .await
                .map_err(|_| StoreError("the writer has stopped".into()))?;
            rx.await
                .map_err(|_| StoreError("the writer stopped before answering".into()))?
        })
    }

    fn read(&self, f: &mut dyn FnMut(&AirspaceState)) -> Result<(), StoreError> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&st);
        Ok(())
    }

    fn transact_line(&self, fs: Vec<LineWriteFn>) -> BoxFuture<'_, Vec<LineReply>> {
        self.send_line(fs, &self.jobs)
    }

    fn transact_line_urgent(&self, fs: Vec<LineWriteFn>) -> BoxFuture<'_, Vec<LineReply>> {
        self.send_line(fs, &self.urgent)
    }

    fn line_appended(&self) -> &tokio::sync::Notify {
        &self.appended
    }

    fn read_line(&self, f: &mut dyn FnMut(&LineState)) -> Result<(), StoreError> {
        let st = self.line.read().unwrap_or_else(|e| e.into_inner());
        f(&st);
        Ok(())
    }

    fn log_leaves(&self, indices: Vec<u64>) -> BoxFuture<'_, Result<Vec<node::Leaf>, StoreError>> {
        Box::pin(async move {
            let committed = self.log_size();
            let wanted: Vec<i64> = indices
                .into_iter()
                .filter(|i| *i < committed)
                .map(|i| i as i64)
                .collect();
            let mut out = Vec::with_capacity(wanted.len());
            for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "SELECT idx, data FROM log_entries WHERE idx IN ({}) ORDER BY idx",
                    vec!["?"; chunk.len()].join(", ")
                );
                let mut q = sqlx::query_as::<_, (i64, Vec<u8>)>(sqlx::AssertSqlSafe(sql));
                for i in chunk {
                    q = q.bind(i);
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

    fn log_size(&self) -> u64 {
        self.log.committed.load(Ordering::SeqCst)
    }

    fn log_root(&self, size: u64) -> Result<tlog::Hash, StoreError> {
        if size > self.log_size() {
            return Err(StoreError(format!(
                "the log has fewer than {size} committed entries"
            )));
        }
        let tree = self.log.tree.read().unwrap_or_else(|e| e.into_inner());
        tree.root(size)
            .map_err(|e| StoreError(format!("log tree: {e}")))
    }

    fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Result<Vec<tlog::Hash>, ProofError>, StoreError> {
        if size > self.log_size() {
            return Err(StoreError(format!(
                "the log has fewer than {size} committed entries"
            )));
        }
        let tree = self.log.tree.read().unwrap_or_else(|e| e.into_inner());
        tlog::proof::inclusion_proof(&*tree, index, size)
            .map_err(|e| StoreError(format!("log tree: {e}")))
    }

    fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Result<Vec<tlog::Hash>, ProofError>, StoreError> {
        if second > self.log_size() {
            return Err(StoreError(format!(
                "the log has fewer than {second} committed entries"
            )));
        }
        let tree = self.log.tree.read().unwrap_or_else(|e| e.into_inner());
        tlog::proof::consistency_proof(&*tree, first, second)
            .map_err(|e| StoreError(format!("log tree: {e}")))
    }

    fn log_entries(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let end = end.min(self.log_size());
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

    fn save_checkpoint(&self, size: u64, note: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO checkpoints (size, note) VALUES (?1, ?2) ON CONFLICT(size) DO NOTHING",
            )
            .bind(size as i64)
            .bind(&note)
            .execute(&self.reads)
            .await
            .map_err(err("saving a checkpoint"))?;
            let mut latest = self.log.latest.write().unwrap_or_else(|e| e.into_inner());
            if latest.as_ref().is_none_or(|(s, _)| *s < size) {
                *latest = Some((size, note));
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
        let origin = origin.to_string();
        Box::pin(async move {
            let row: Option<(i64, Vec<u8>, String)> =
                sqlx::query_as("SELECT size, root, note FROM witnessed WHERE origin = ?1")
                    .bind(&origin)
                    .fetch_optional(&self.reads)
                    .await
                    .map_err(err("reading the witness state"))?;
            row.map(|(size, root, note)| {
                let root: tlog::Hash = root
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError("a stored root is not 32 bytes".into()))?;
                Ok(Cosigned {
                    size: size as u64,
                    root,
                    note,
                })
            })
            .transpose()
        })
    }

    fn save_witnessed(&self, origin: &str, c: Cosigned) -> BoxFuture<'_, Result<(), StoreError>> {
        let origin = origin.to_string();
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
        origin: &str,
        a: String,
        b: String,
        found_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let origin = origin.to_string();
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
}

/// Reads a node's whole log and newest checkpoint from its data folder,
/// read-only (the node may be running): for exporting evidence offline.
pub async fn read_log(dir: &Path) -> Result<(Vec<Vec<u8>>, Option<(u64, String)>), StoreError> {
    let path = dir.join("detente.db");
    if !path.exists() {
        return Err(StoreError(format!(
            "{} does not exist (is this a node's data folder?)",
            path.display()
        )));
    }
    let opts = SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .map_err(err("opening the database"))?;
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT idx, data FROM log_entries ORDER BY idx")
            .fetch_all(&mut conn)
            .await
            .map_err(err("reading the log"))?;
    let mut entries = Vec::with_capacity(rows.len());
    for (idx, data) in rows {
        if idx as usize != entries.len() {
            return Err(StoreError(format!("the log has a gap before entry {idx}")));
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
