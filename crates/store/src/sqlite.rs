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
use node::{BoxFuture, Store, StoreError, WriteFn};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// Most decisions committed in one transaction.
pub const MAX_BATCH: usize = 512;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_airspace.sql"))];

type Reply = Result<Result<Decision, DomainError>, StoreError>;

struct Job {
    f: WriteFn,
    reply: oneshot::Sender<Reply>,
}

pub struct SqliteStore {
    state: Arc<RwLock<AirspaceState>>,
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
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
    fn upsert(self) -> &'static str {
        match self {
            Table::Intents => {
                "INSERT INTO intents (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body"
            }
            Table::Constraints => {
                "INSERT INTO constraints (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body"
            }
            Table::Subscriptions => {
                "INSERT INTO subscriptions (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body"
            }
            Table::Availability => {
                "INSERT INTO availability (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body"
            }
            Table::Reports => {
                "INSERT INTO reports (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body"
            }
        }
    }
    fn delete(self) -> &'static str {
        match self {
            Table::Intents => "DELETE FROM intents WHERE id = ?1",
            Table::Constraints => "DELETE FROM constraints WHERE id = ?1",
            Table::Subscriptions => "DELETE FROM subscriptions WHERE id = ?1",
            Table::Availability => "DELETE FROM availability WHERE id = ?1",
            Table::Reports => "DELETE FROM reports WHERE id = ?1",
        }
    }
}

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

async fn rows<T: serde::de::DeserializeOwned>(
    conn: &mut SqliteConnection,
    table: &'static str,
) -> Result<Vec<T>, StoreError> {
    let sql: &'static str = match table {
        "intents" => "SELECT id, body FROM intents",
        "constraints" => "SELECT id, body FROM constraints",
        "subscriptions" => "SELECT id, body FROM subscriptions",
        _ => "SELECT id, body FROM availability",
    };
    let rows: Vec<(String, String)> = sqlx::query_as(sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(err("loading rows"))?;
    rows.into_iter()
        .map(|(id, body)| {
            serde_json::from_str(&body)
                .map_err(|e| StoreError(format!("row {id} of {table} is unreadable: {e}")))
        })
        .collect()
}

async fn load(conn: &mut SqliteConnection) -> Result<AirspaceState, StoreError> {
    let seq: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'seq'")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("reading seq"))?;
    let intents: Vec<OperationalIntent> = rows(conn, "intents").await?;
    let constraints: Vec<Constraint> = rows(conn, "constraints").await?;
    let subscriptions: Vec<Subscription> = rows(conn, "subscriptions").await?;
    let availability: Vec<UssAvailability> = rows(conn, "availability").await?;
    let reports: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports")
        .fetch_one(&mut *conn)
        .await
        .map_err(err("counting reports"))?;
    Ok(AirspaceState::load(
        seq as u64,
        intents,
        constraints,
        subscriptions,
        availability,
        reports as usize,
    ))
}

async fn persist(conn: &mut SqliteConnection, dirty: Dirty, seq: u64) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(err("starting a transaction"))?;
    for ((table, id), body) in dirty.rows {
        match body {
            Some(b) => {
                sqlx::query(table.upsert())
                    .bind(id)
                    .bind(b)
                    .execute(&mut *tx)
                    .await
            }
            None => sqlx::query(table.delete()).bind(id).execute(&mut *tx).await,
        }
        .map_err(err("writing a row"))?;
    }
    sqlx::query("UPDATE meta SET value = ?1 WHERE key = 'seq'")
        .bind(seq as i64)
        .execute(&mut *tx)
        .await
        .map_err(err("writing seq"))?;
    tx.commit().await.map_err(err("committing"))
}

async fn writer(
    mut conn: SqliteConnection,
    state: Arc<RwLock<AirspaceState>>,
    mut jobs: mpsc::Receiver<Job>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut dirty = Dirty::default();
        let mut replies: Vec<(oneshot::Sender<Reply>, Reply)> = Vec::with_capacity(batch.len());
        let seq = {
            let mut st = state.write().unwrap_or_else(|e| e.into_inner());
            for job in batch {
                // A decision that panics refuses that one write, not the node.
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| (job.f)(&st))).unwrap_or_else(
                    |_| {
                        Err(DomainError::InvalidInput {
                            field: String::new(),
                            message: "internal error while deciding".into(),
                        })
                    },
                );
                let r = match r {
                    Ok(d) => match dirty.record(&d.events) {
                        Ok(()) => {
                            st.apply(&d.events);
                            Ok(Ok(d))
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Ok(Err(e)),
                };
                replies.push((job.reply, r));
            }
            st.seq()
        };
        if !dirty.rows.is_empty()
            && let Err(e) = persist(&mut conn, dirty, seq).await
        {
            tracing::error!(error = %e, "commit failed; refusing the batch and reloading the state from disk");
            for (_, r) in replies.iter_mut() {
                if matches!(r, Ok(Ok(_))) {
                    *r = Err(e.clone());
                }
            }
            match load(&mut conn).await {
                Ok(fresh) => *state.write().unwrap_or_else(|p| p.into_inner()) = fresh,
                Err(le) => tracing::error!(error = %le, "reloading the state failed"),
            }
        }
        for (tx, r) in replies {
            let _ = tx.send(r);
        }
    }
    let _ = conn.close().await;
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, migrates it, and
    /// rebuilds the in-memory state and index from its rows.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
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
        let state = load(&mut conn).await?;
        let c = state.counts();
        tracing::info!(path = %path.display(), intents = c.intents, constraints = c.constraints, subscriptions = c.subscriptions,
            conflicts = c.conflicts, ms = started.elapsed().as_millis() as u64, "embedded store loaded, index rebuilt");
        let state = Arc::new(RwLock::new(state));
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(conn, state.clone(), rx));
        Ok(SqliteStore {
            state,
            jobs: tx,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for SqliteStore {
    fn transact(&self, f: WriteFn) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.jobs
                .send(Job { f, reply })
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
}
