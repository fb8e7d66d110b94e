//! PostgreSQL (with PostGIS) as the engine's backend, for a party that
//! outgrows one machine: any number of `detente serve` replicas on one
//! database behave as one node.
//!
//! - **Serialised writes.** Each replica runs the shared engine. A batch
//!   starts by taking a transaction-level advisory lock (one per node
//!   schema), then reads the database's batch counter: if another replica
//!   committed since, its changed records and log entries are taken in
//!   first, so every decision — key checks, OVNs, notification indices — sees
//!   everything committed before it. The batch's rows, log entries and the
//!   new counters are written and committed before the lock is released.
//! - **No forked log.** The log size is kept in the `meta` row and every
//!   batch's update names the size it expects; log indices are a primary
//!   key. A replica that dies mid-batch loses its connection, which rolls
//!   the transaction back and releases the lock.
//! - **Prompt replicas.** A commit sends `NOTIFY`; every other replica's
//!   watcher then takes the commit in, and polls every second when it hears
//!   nothing (so readers lag by a few milliseconds, by at most about a
//!   second if notifications are lost).
//! - **One leader** runs the node's singleton duties (checkpoints, witness
//!   submissions, delivery to peers, the expiry sweep): the replica holding
//!   a session-level advisory lock, retaken by another within about a
//!   second of its connection dying.
//!
//! SQL is built from constants and a validated schema name only; every
//! value is bound.

use crate::sql::pool_query;
use airspace::{AirspaceState, Event, PreparedVolume};
use node::entries::LogSigner;
use node::persist::{
    Batch, Delta, LOAD_PAGE, Loaded, Persistence, Rebuild, Table, decode, decode_all,
};
use node::writer::{Engine, Refresher};
use node::{BoxFuture, StoreError};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tlog::tiles::Tile;
use tlog::witness::Cosigned;
use uuid::Uuid;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_node.sql")),
    (2, include_str!("../migrations/postgres/0002_tiles.sql")),
    (
        3,
        include_str!("../migrations/postgres/0003_leaf_index.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_console_marks.sql"),
    ),
];

/// Tombstones of removed records are purged this many batches after their
/// removal (a replica further behind than that reloads everything).
const TOMBSTONE_BATCHES: i64 = 100_000;

/// The store on PostgreSQL: the shared engine over [`Postgres`].
pub type PostgresStore = Engine<Postgres>;

/// A database error as the store's: unavailable when the database could
/// not be reached (nothing was done), failed otherwise.
fn err(context: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| {
        let unreachable = matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
        );
        let m = format!("{context}: {e}");
        if unreachable {
            StoreError::Unavailable(m)
        } else {
            StoreError::Failed(m)
        }
    }
}

/// Where a node lives in a database: its URL and schema.
#[derive(Clone, Debug)]
pub struct Location {
    pub url: String,
    pub schema: String,
}

impl Location {
    /// Checks the schema name (it is written into SQL): lower-case letters,
    /// digits and `_`, starting with a letter or `_`, at most 63 bytes.
    pub fn new(url: &str, schema: &str) -> Result<Self, StoreError> {
        let ok = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(StoreError::Failed(format!(
                "database_schema {schema:?}: use lower-case letters, digits and _ (not first), at most 63"
            )));
        }
        Ok(Location {
            url: url.to_string(),
            schema: schema.to_string(),
        })
    }

    fn options(&self) -> Result<PgConnectOptions, StoreError> {
        let opts: PgConnectOptions = self
            .url
            .parse()
            .map_err(|e| StoreError::Failed(format!("database_url: {e}")))?;
        Ok(opts
            // Operators (and tests) see which node a connection serves.
            .application_name(&format!("detente/{}", self.schema))
            // JIT compilation costs tens of milliseconds per statement the
            // planner thinks large (as it does with no statistics yet): a
            // loss for short transactions like every batch here.
            // Every statement is planned for its values and the tables as
            // they are now: a generic plan cached while a table was small
            // (and kept while it has no fresh statistics) seq-scanned all
            // of `volumes` in every batch — 21 ms a batch at 100k, 48 ms
            // at 300k. Planning the few statements of a batch costs less.
            .options([
                ("search_path", format!("{},public", self.schema)),
                ("jit", "off".to_string()),
                ("plan_cache_mode", "force_custom_plan".to_string()),
            ]))
    }

    /// The advisory lock namespace of this schema (locks are per database).
    fn key(&self) -> i32 {
        // FNV-1a, 32 bits.
        let mut h: u32 = 0x811c_9dc5;
        for b in self.schema.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h as i32
    }

    fn channel(&self) -> String {
        format!("detente_{:08x}", self.key() as u32)
    }
}

/// The file in a node's data folder that names its database (written by
/// `serve`, read by the offline tools).
const LOCATION_FILE: &str = "postgres.location";

/// Records in the data folder where the node's state lives.
pub fn remember(data: &std::path::Path, at: &Location) -> std::io::Result<()> {
    std::fs::create_dir_all(data)?;
    std::fs::write(
        data.join(LOCATION_FILE),
        format!("{}\n{}\n", at.url, at.schema),
    )
}

/// Where the node whose data folder this is keeps its state, if on
/// PostgreSQL.
pub fn recall(data: &std::path::Path) -> Result<Option<Location>, StoreError> {
    let path = data.join(LOCATION_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Failed(format!("{}: {e}", path.display()))),
    };
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(url), Some(schema)) => Location::new(url, schema).map(Some),
        _ => Err(StoreError::Failed(format!(
            "{}: expected the database URL and schema on two lines",
            path.display()
        ))),
    }
}

/// See [`crate::read_log_pages`]. Entries below a checkpoint never change:
/// the pages need no common snapshot.
pub async fn read_log_pages(
    at: &Location,
    page_len: i64,
    page: crate::LogPage<'_>,
) -> Result<(Option<(u64, String)>, u64), StoreError> {
    let mut conn = PgConnection::connect_with(&at.options()?)
        .await
        .map_err(err("connecting to the database"))?;
    let (_, _, _, _, size, note): MetaRow = sqlx::query_as(META)
        .fetch_one(&mut conn)
        .await
        .map_err(err("reading meta"))?;
    let total: i64 = sqlx::query_scalar("SELECT coalesce(max(idx) + 1, 0) FROM log_entries")
        .fetch_one(&mut conn)
        .await
        .map_err(err("reading the log's size"))?;
    let Some((size, note)) = size.zip(note) else {
        let _ = conn.close().await;
        return Ok((None, total as u64));
    };
    let read = crate::read_pages(size, page_len, page, async |start, end| {
        sqlx::query_as(
            "SELECT idx, data FROM log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
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

/// The node's whole log and newest checkpoint, read in one snapshot.
pub async fn read_log(at: &Location) -> Result<(Vec<Vec<u8>>, Option<(u64, String)>), StoreError> {
    let mut conn = PgConnection::connect_with(&at.options()?)
        .await
        .map_err(err("connecting to the database"))?;
    let mut tx = conn.begin().await.map_err(err("starting to read"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(err("starting to read"))?;
    let entries: Vec<Vec<u8>> = sqlx::query_scalar("SELECT data FROM log_entries ORDER BY idx")
        .fetch_all(&mut *tx)
        .await
        .map_err(err("reading the log"))?;
    let (_, _, _, _, size, note): MetaRow = sqlx::query_as(META)
        .fetch_one(&mut *tx)
        .await
        .map_err(err("reading meta"))?;
    tx.commit().await.map_err(err("ending the read"))?;
    let _ = conn.close().await;
    Ok((entries, size.zip(note).map(|(s, n)| (s as u64, n))))
}

/// Drops the node's schema with everything in it (benchmarks and tests
/// that own it; never called by a node).
pub async fn drop_schema(at: &Location) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect_with(&at.options()?)
        .await
        .map_err(err("connecting to the database"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        at.schema
    )))
    .execute(&mut conn)
    .await
    .map_err(err("dropping the schema"))?;
    let _ = conn.close().await;
    Ok(())
}

/// Creates the schema (and the PostGIS extension) if needed and applies
/// the migrations not yet applied, under an advisory lock so that replicas
/// starting together do it once.
pub async fn migrate(at: &Location) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect_with(&at.options()?)
        .await
        .map_err(err("connecting to the database"))?;
    let r = migrate_on(&mut conn, at).await;
    let _ = conn.close().await;
    r
}

async fn migrate_on(conn: &mut PgConnection, at: &Location) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(err("starting a migration"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(at.key())
        .execute(&mut *tx)
        .await
        .map_err(err("locking for migrations"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public; \
         CREATE SCHEMA IF NOT EXISTS {0}; \
         CREATE TABLE IF NOT EXISTS {0}.schema_version (version bigint PRIMARY KEY); \
         ALTER TABLE {0}.schema_version ADD COLUMN IF NOT EXISTS checksum text",
        at.schema
    )))
    .execute(&mut *tx)
    .await
    .map_err(err(
        "creating the schema (is PostGIS installed: postgresql-15-postgis-3?)",
    ))?;
    let applied: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT version, checksum FROM schema_version")
            .fetch_all(&mut *tx)
            .await
            .map_err(err("reading schema_version"))?;
    for version in crate::migrations::check(&applied, MIGRATIONS, "PostgreSQL")? {
        let sql = MIGRATIONS
            .iter()
            .find(|(v, _)| *v == version)
            .map_or("", |m| m.1);
        sqlx::query("UPDATE schema_version SET checksum = $1 WHERE version = $2")
            .bind(crate::migrations::checksum(sql))
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(err("recording a migration's checksum"))?;
    }
    let current = applied.iter().map(|(v, _)| *v).max();
    for (version, sql) in MIGRATIONS {
        if current.is_some_and(|c| c >= *version) {
            continue;
        }
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(err("applying a migration"))?;
        sqlx::query("INSERT INTO schema_version (version, checksum) VALUES ($1, $2)")
            .bind(version)
            .bind(crate::migrations::checksum(sql))
            .execute(&mut *tx)
            .await
            .map_err(err("recording a migration"))?;
        tracing::info!(version, schema = %at.schema, "applied postgres migration");
    }
    tx.commit().await.map_err(err("committing migrations"))
}

/// PostgreSQL as an engine's backend.
pub struct Postgres {
    at: Location,
    opts: PgConnectOptions,
    pool: PgPool,
    /// The backend PID of the writer's connection (its own NOTIFYs are
    /// not news).
    writer_pid: Arc<AtomicU32>,
    leader: Arc<AtomicBool>,
}

/// The writer's connection (None after a failure, until reconnected), the
/// batch counter its state reflects, and whether it is inside a batch.
pub struct PgWriter {
    conn: Option<PgConnection>,
    version: i64,
    in_tx: bool,
}

type MetaRow = (i64, i64, i64, i64, Option<i64>, Option<String>);

const META: &str = "SELECT m.seq, m.version, m.log_size, m.purged_below, c.size, c.note FROM meta m \
     LEFT JOIN LATERAL (SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1) c ON true";

/// A record row as events: what changed, or that it was removed.
fn event(tbl: &str, id: &str, body: Option<&str>) -> Result<Option<Event>, StoreError> {
    let uuid = || {
        Uuid::parse_str(id).map_err(|e| StoreError::Failed(format!("record id {id} of {tbl}: {e}")))
    };
    Ok(Some(match (tbl, body) {
        ("intents", Some(b)) => Event::IntentUpserted(decode(Table::Intents, id, b)?),
        ("intents", None) => Event::IntentRemoved(uuid()?),
        ("constraints", Some(b)) => Event::ConstraintUpserted(decode(Table::Constraints, id, b)?),
        ("constraints", None) => Event::ConstraintRemoved(uuid()?),
        ("subscriptions", Some(b)) => {
            Event::SubscriptionUpserted(decode(Table::Subscriptions, id, b)?)
        }
        ("subscriptions", None) => Event::SubscriptionRemoved(uuid()?),
        ("availability", Some(b)) => Event::AvailabilitySet(decode(Table::Availability, id, b)?),
        ("reports", Some(b)) => Event::ReportFiled(decode(Table::Reports, id, b)?),
        _ => return Ok(None),
    }))
}

/// How long the writer waits for a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the writer waits for a batch's start (the write lock taken,
/// other replicas' commits read) or its commit. A database behind a link
/// that drops packets without a reset would otherwise hold every write of
/// the node until TCP gave up, many minutes later. Past it the connection
/// is dropped and the batch's outcome settled by reading back its entries
/// once reconnected (`engine::holds`).
const WRITER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a query on the pool (proofs, tiles, checkpoints, cosignatures,
/// console marks) may take once it has its connection. A link that dies in
/// the middle of a query would otherwise hold its caller until TCP gave up;
/// past it the connection is closed, not returned to the pool, and the
/// caller is answered unavailable.
const POOL_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A query on one pooled connection (`q` borrows it for its future).
pub(crate) type OnConn<T> =
    Box<dyn for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, sqlx::Error>> + Send>;

/// The writer's connection, silent for [`WRITER_TIMEOUT`], is dropped (not
/// rolled back: nothing would answer).
fn silent(w: &mut PgWriter, what: &str) -> StoreError {
    w.in_tx = false;
    w.conn = None;
    StoreError::Unavailable(format!(
        "{what}: no answer from the database in {} s",
        WRITER_TIMEOUT.as_secs()
    ))
}

async fn connect(opts: &PgConnectOptions, pid: &AtomicU32) -> Result<PgConnection, StoreError> {
    // A database behind a dead link may never answer: give up and let the
    // caller retry rather than hang the writer.
    let mut c = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(opts))
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "connecting to the database: no answer in {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(err("connecting to the database"))?;
    let p: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut c)
        .await
        .map_err(err("reading the backend pid"))?;
    pid.store(p as u32, Ordering::SeqCst);
    Ok(c)
}

/// Stores full tiles of the log (the same tile is the same bytes whoever
/// writes it: conflicts are ignored).
fn insert_tiles(
    tiles: &[Tile],
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let levels: Vec<i16> = tiles.iter().map(|t| i16::from(t.level)).collect();
    let idx: Vec<i64> = tiles.iter().map(|t| t.index as i64).collect();
    let hashes: Vec<Vec<u8>> = tiles.iter().map(Tile::to_bytes).collect();
    sqlx::query(
        "INSERT INTO log_tiles (level, idx, hashes) \
         SELECT * FROM UNNEST($1::int2[], $2::int8[], $3::bytea[]) ON CONFLICT DO NOTHING",
    )
    .bind(levels)
    .bind(idx)
    .bind(hashes)
}

/// Everything, read in one snapshot.
async fn load_all(conn: &mut PgConnection, me: &str) -> Result<(Loaded, i64), StoreError> {
    let started = std::time::Instant::now();
    let mut tx = conn.begin().await.map_err(err("starting to load"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(err("starting to load"))?;
    let (seq, version, log_size, _, size, note): MetaRow = sqlx::query_as(META)
        .fetch_one(&mut *tx)
        .await
        .map_err(err("reading meta"))?;
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT tbl, id, body FROM records WHERE body IS NOT NULL")
            .fetch_all(&mut *tx)
            .await
            .map_err(err("loading records"))?;
    let mut by: std::collections::HashMap<String, Vec<(String, String)>> = Default::default();
    for (tbl, id, body) in rows {
        by.entry(tbl).or_default().push((id, body));
    }
    let mut take = |t: Table| by.remove(t.name()).unwrap_or_default();
    let intents = decode_all(Table::Intents, &take(Table::Intents))?;
    let constraints = decode_all(Table::Constraints, &take(Table::Constraints))?;
    let subscriptions = decode_all(Table::Subscriptions, &take(Table::Subscriptions))?;
    let availability = decode_all(Table::Availability, &take(Table::Availability))?;
    let reports = decode_all(Table::Reports, &take(Table::Reports))?;
    let state = AirspaceState::load(
        seq as u64,
        intents,
        constraints,
        subscriptions,
        availability,
        reports,
    );
    let stored: Vec<(i64, i64)> =
        sqlx::query_as("SELECT level::int8, count(*) FROM log_tiles GROUP BY level ORDER BY level")
            .fetch_all(&mut *tx)
            .await
            .map_err(err("counting the log's tiles"))?;
    let mut r = Rebuild::new(me, stored);
    loop {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, data FROM log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx LIMIT $3",
        )
        .persistent(false)
        .bind(r.tree.size() as i64)
        .bind(log_size)
        .bind(LOAD_PAGE)
        .fetch_all(&mut *tx)
        .await
        .map_err(err("loading the log"))?;
        if !r.feed(rows)? {
            break;
        }
    }
    tx.commit().await.map_err(err("ending the load"))?;
    if r.tree.size() as i64 != log_size {
        return Err(StoreError::Failed(format!(
            "the log holds {} entries but meta says {log_size}",
            r.tree.size()
        )));
    }
    if !r.unstored.is_empty() {
        // Any replica may do this (the tiles follow from the entries).
        tracing::info!(tiles = r.unstored.len(), "storing the log's tiles");
        for chunk in r.unstored.chunks(512) {
            insert_tiles(chunk)
                .execute(&mut *conn)
                .await
                .map_err(err("storing the log's tiles"))?;
        }
    }
    let (tree, line) = (r.tree, r.line);
    let c = state.counts();
    tracing::info!(
        intents = c.intents,
        constraints = c.constraints,
        subscriptions = c.subscriptions,
        conflicts = c.conflicts,
        log_size = tree.size(),
        version,
        ms = started.elapsed().as_millis() as u64,
        "postgres store loaded, index rebuilt"
    );
    Ok((
        Loaded {
            state,
            tree,
            line,
            latest: size.zip(note).map(|(s, n)| (s as u64, n)),
        },
        version,
    ))
}

/// One volume's PostGIS columns: WKT in (lng lat) order, circle radius (0
/// for a polygon), start and end (s since the epoch, None = unbounded),
/// lower and upper altitude (None = unbounded).
type VolumeCols = (
    String,
    f64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

fn columns(v: &PreparedVolume) -> VolumeCols {
    let v = &v.volume;
    let (wkt, radius) = crate::postgis::wkt(v);
    let secs = |t: Option<airspace::Timestamp>| t.map(|t| t.unix_micros() as f64 / 1e6);
    (
        wkt,
        radius,
        secs(v.time_start),
        secs(v.time_end),
        v.altitude_lower_m,
        v.altitude_upper_m,
    )
}

impl Postgres {
    async fn reset(&self, w: &mut PgWriter) {
        if w.in_tx {
            w.in_tx = false;
            let ok = match w.conn.as_mut() {
                Some(c) => sqlx::query("ROLLBACK").execute(&mut *c).await.is_ok(),
                None => false,
            };
            if !ok {
                w.conn = None;
            }
        }
    }

    async fn begin_inner(
        &self,
        w: &mut PgWriter,
        log_size: u64,
        exclusive: bool,
    ) -> Result<Delta, StoreError> {
        if w.conn.is_none() {
            w.conn = Some(connect(&self.opts, &self.writer_pid).await?);
        }
        let conn = w.conn.as_mut().expect("connected above");
        // One round trip (simple protocol; every value in it is a number
        // computed here): begin, take the write lock, read the counters and
        // whatever other replicas committed since this one last looked —
        // records of a newer batch, log entries past its size. Each range
        // is bounded on both sides so that, without statistics (autovacuum
        // off, or not yet run), it is estimated small and read by index;
        // under the lock nothing newer than the counters can exist.
        w.in_tx = true;
        let start = if exclusive {
            format!("BEGIN; SELECT pg_advisory_xact_lock({}, 1);", self.at.key())
        } else {
            // A refresh: one consistent snapshot, no lock.
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;".to_string()
        };
        let log_size = log_size as i64;
        const FAR: i64 = 1 << 62;
        let sql = format!(
            "{start} {META}; \
             SELECT tbl, id, body FROM records WHERE version > {v} AND version < {v_far}; \
             SELECT idx, data FROM log_entries WHERE idx >= {l} AND idx < {l_far} ORDER BY idx",
            v = w.version,
            v_far = w.version.saturating_add(FAR),
            l = log_size,
            l_far = log_size.saturating_add(FAR),
        );
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .map_err(err("starting a batch under the write lock"))?;
        use sqlx::Row;
        let mut meta = None;
        let mut changed: Vec<(String, String, Option<String>)> = Vec::new();
        let mut entries: Vec<(u64, Vec<u8>)> = Vec::new();
        for row in &rows {
            match row.columns().len() {
                6 => {
                    meta = Some(
                        <MetaRow as sqlx::FromRow<_>>::from_row(row)
                            .map_err(err("reading meta"))?,
                    )
                }
                3 => changed
                    .push(sqlx::FromRow::from_row(row).map_err(err("reading changed records"))?),
                2 => {
                    let (i, d): (i64, Vec<u8>) =
                        sqlx::FromRow::from_row(row).map_err(err("reading new log entries"))?;
                    entries.push((i as u64, d));
                }
                _ => {}
            }
        }
        let (seq, version, db_log, purged_below, size, note) =
            meta.ok_or_else(|| StoreError::Failed("reading meta: no row".into()))?;
        let latest = size.zip(note).map(|(s, n)| (s as u64, n));
        if version < w.version || db_log < log_size {
            return Err(StoreError::Failed(format!(
                "the database is behind this replica (batch {version} < {}, log {db_log} < {log_size}): was it restored from a backup? Restart the replicas",
                w.version
            )));
        }
        if version == w.version {
            return Ok(Delta {
                latest,
                seq: seq as u64,
                ..Delta::default()
            });
        }
        if w.version < purged_below {
            return Err(StoreError::Failed(format!(
                "this replica is {} batches behind, past the purged removals: reloading",
                version - w.version
            )));
        }
        let mut events = Vec::with_capacity(changed.len());
        for (tbl, id, body) in &changed {
            if let Some(e) = event(tbl, id, body.as_deref())? {
                events.push(e);
            }
        }
        w.version = version;
        Ok(Delta {
            seq: seq as u64,
            events,
            entries,
            latest,
        })
    }

    async fn persist_inner(&self, w: &mut PgWriter, batch: Batch<'_>) -> Result<(), StoreError> {
        let conn = match (w.in_tx, w.conn.as_mut()) {
            (true, Some(c)) => c,
            _ => return Err(StoreError::Failed("persisting outside a batch".into())),
        };
        let next = w.version + 1;
        let t0 = std::time::Instant::now();
        let lap = || t0.elapsed().as_micros() as u64;
        let Batch {
            dirty,
            seq,
            first_leaf,
            leaves,
            tiles,
            ..
        } = batch;
        let (mut tbls, mut ids, mut bodies) = (Vec::new(), Vec::new(), Vec::new());
        let (mut gone_intents, mut gone_constraints) = (Vec::<Uuid>::new(), Vec::<Uuid>::new());
        let mut vols: Vec<(&'static str, Uuid, i32, VolumeCols)> = Vec::new();
        for ((table, id), row) in dirty.rows {
            let kind = match table {
                Table::Intents => Some("intent"),
                Table::Constraints => Some("constraint"),
                _ => None,
            };
            if let Some(kind) = kind {
                let uuid = Uuid::parse_str(&id)
                    .map_err(|e| StoreError::Failed(format!("record id {id}: {e}")))?;
                // Probed by primary key (an array the planner sizes),
                // never joined: its old volumes go, whatever the table's size.
                match table {
                    Table::Intents => gone_intents.push(uuid),
                    _ => gone_constraints.push(uuid),
                }
                if let Some(r) = &row {
                    for (n, v) in r.extents.iter().enumerate() {
                        vols.push((kind, uuid, n as i32, columns(v)));
                    }
                }
            }
            tbls.push(table.name());
            ids.push(id);
            bodies.push(row.map(|r| r.body));
        }
        // Records and the removal of their old volumes in one statement.
        sqlx::query(
            "WITH r AS (INSERT INTO records (tbl, id, body, version) \
               SELECT t, i, b, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(t, i, b) \
               ON CONFLICT (tbl, id) DO UPDATE SET body = excluded.body, version = excluded.version RETURNING 1), \
             d AS (DELETE FROM volumes WHERE (kind = 'intent' AND entity = ANY($5::uuid[])) \
               OR (kind = 'constraint' AND entity = ANY($6::uuid[])) RETURNING 1) \
             SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM d)",
        )
        .bind(&tbls)
        .bind(&ids)
        .bind(&bodies)
        .bind(next)
        .bind(&gone_intents)
        .bind(&gone_constraints)
        .execute(&mut *conn)
        .await
        .map_err(err("writing records"))?;
        let records_us = lap();
        if !vols.is_empty() {
            let mut kinds = Vec::with_capacity(vols.len());
            let mut entities = Vec::with_capacity(vols.len());
            let mut ns = Vec::with_capacity(vols.len());
            let mut wkts = Vec::with_capacity(vols.len());
            let mut radii = Vec::with_capacity(vols.len());
            let mut ranges: [Vec<Option<f64>>; 4] = Default::default();
            for (kind, id, n, (wkt, r, s, e, lo, hi)) in vols {
                kinds.push(kind);
                entities.push(id);
                ns.push(n);
                wkts.push(wkt);
                radii.push(r);
                for (i, x) in [s, e, lo, hi].into_iter().enumerate() {
                    ranges[i].push(x);
                }
            }
            sqlx::query(
                "INSERT INTO volumes (kind, entity, n, area, during, alt) \
                 SELECT k, e, n, \
                   CASE WHEN r > 0 THEN ST_Buffer(ST_GeomFromText(w, 4326)::geography, r)::geometry \
                        ELSE ST_GeomFromText(w, 4326) END, \
                   tstzrange(to_timestamp(s), to_timestamp(f), '[]'), \
                   numrange(lo::numeric, hi::numeric, '[]') \
                 FROM UNNEST($1::text[], $2::uuid[], $3::int[], $4::text[], $5::float8[], \
                             $6::float8[], $7::float8[], $8::float8[], $9::float8[]) \
                   AS u(k, e, n, w, r, s, f, lo, hi)",
            )
            .bind(&kinds)
            .bind(&entities)
            .bind(&ns)
            .bind(&wkts)
            .bind(&radii)
            .bind(&ranges[0])
            .bind(&ranges[1])
            .bind(&ranges[2])
            .bind(&ranges[3])
            .execute(&mut *conn)
            .await
            .map_err(err("writing volumes"))?;
        }
        let volumes_us = lap();
        // The log entries, the counters (naming the log size this batch
        // continues: a fork is impossible) and the replicas' notice, in
        // one statement; the notice is sent only if the commit succeeds.
        let idx: Vec<i64> = (0..leaves.len())
            .map(|i| (first_leaf + i as u64) as i64)
            .collect();
        let (updated,): (i64,) = sqlx::query_as(
            "WITH l AS (INSERT INTO log_entries (idx, data) \
               SELECT * FROM UNNEST($1::int8[], $2::bytea[]) RETURNING 1), \
             m AS (UPDATE meta SET seq = $3, version = $4, log_size = $5 \
               WHERE version = $6 AND log_size = $7 RETURNING 1) \
             SELECT (SELECT count(*) FROM m) + 0 * (SELECT count(*) FROM l) \
               + 0 * length(pg_notify($8, $4::text)::text)",
        )
        .bind(&idx)
        .bind(leaves)
        .bind(seq as i64)
        .bind(next)
        .bind((first_leaf + leaves.len() as u64) as i64)
        .bind(w.version)
        .bind(first_leaf as i64)
        .bind(self.at.channel())
        .fetch_one(&mut *conn)
        .await
        .map_err(err("appending log entries"))?;
        if !tiles.is_empty() {
            insert_tiles(&tiles)
                .execute(&mut *conn)
                .await
                .map_err(err("storing the log's tiles"))?;
        }
        let log_us = lap();
        if updated != 1 {
            return Err(StoreError::Failed(
                "another writer moved the log on during this batch; refused".into(),
            ));
        }
        if next % 4096 == 0 && next > TOMBSTONE_BATCHES {
            let below = next - TOMBSTONE_BATCHES;
            sqlx::query("DELETE FROM records WHERE body IS NULL AND version < $1")
                .bind(below)
                .execute(&mut *conn)
                .await
                .map_err(err("purging old removals"))?;
            sqlx::query("UPDATE meta SET purged_below = $1")
                .bind(below)
                .execute(&mut *conn)
                .await
                .map_err(err("purging old removals"))?;
        }
        // The simple protocol: one message, one round trip, no prepared
        // statement to keep.
        sqlx::raw_sql("COMMIT")
            .execute(&mut *conn)
            .await
            .map_err(err("committing"))?;
        tracing::debug!(
            records_us,
            volumes_us,
            log_us,
            commit_us = lap(),
            "postgres batch (cumulative)"
        );
        w.in_tx = false;
        w.version = next;
        Ok(())
    }

    async fn notify(&self) {
        let channel = self.at.channel();
        let r = pool_query!(self, "notifying the replicas of a checkpoint", |c| {
            sqlx::query("SELECT pg_notify($1, 'checkpoint')")
                .bind(channel)
                .execute(&mut *c)
                .await
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "notifying the replicas of a checkpoint");
        }
    }

    /// Runs `q` on a connection of the pool, giving up after
    /// [`POOL_QUERY_TIMEOUT`] (the connection is then closed: an answer
    /// may still be on its way, and the next query must not read it).
    pub(crate) async fn on_pool<T>(&self, what: &str, q: OnConn<T>) -> Result<T, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err(what))?;
        match tokio::time::timeout(POOL_QUERY_TIMEOUT, q(&mut conn)).await {
            Ok(r) => r.map_err(err(what)),
            Err(_) => {
                conn.close_on_drop();
                Err(StoreError::Unavailable(format!(
                    "{what}: no answer from the database in {} s",
                    POOL_QUERY_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

impl Persistence for Postgres {
    type Writer = PgWriter;

    fn wants_extents(&self) -> bool {
        true
    }

    fn shared(&self) -> bool {
        true
    }

    fn applied(&self, w: &PgWriter) -> Option<i64> {
        Some(w.version)
    }

    fn counter(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            pool_query!(self, "reading the batch counter", |c| {
                sqlx::query_scalar::<_, i64>("SELECT version FROM meta")
                    .fetch_one(&mut *c)
                    .await
            })
            .await
        })
    }

    fn begin<'a>(
        &'a self,
        w: &'a mut PgWriter,
        log_size: u64,
        exclusive: bool,
    ) -> BoxFuture<'a, Result<Option<Delta>, StoreError>> {
        Box::pin(async move {
            match tokio::time::timeout(WRITER_TIMEOUT, self.begin_inner(w, log_size, exclusive))
                .await
            {
                Ok(Ok(d)) => Ok(Some(d)),
                Ok(Err(e)) => {
                    self.reset(w).await;
                    Err(e)
                }
                Err(_) => Err(silent(w, "starting a batch")),
            }
        })
    }

    fn persist<'a>(
        &'a self,
        w: &'a mut PgWriter,
        batch: Batch<'a>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let r = match tokio::time::timeout(WRITER_TIMEOUT, self.persist_inner(w, batch)).await {
                Ok(r) => r,
                Err(_) => Err(silent(w, "committing a batch")),
            };
            if r.is_err() {
                // The outcome of a failed COMMIT is unknown: reconnect, and
                // the engine reloads what the database holds and looks
                // there for the batch's entries (`engine::holds`).
                w.in_tx = false;
                w.conn = None;
            }
            r
        })
    }

    fn release<'a>(&'a self, w: &'a mut PgWriter) -> BoxFuture<'a, ()> {
        Box::pin(self.reset(w))
    }

    fn recover<'a>(
        &'a self,
        w: &'a mut PgWriter,
        me: &'a str,
    ) -> BoxFuture<'a, Result<Loaded, StoreError>> {
        Box::pin(async move {
            w.in_tx = false;
            if let Some(c) = w.conn.take() {
                let _ = c.close().await;
            }
            // One attempt: the engine retries, refusing requests meanwhile.
            let mut conn = connect(&self.opts, &self.writer_pid).await?;
            let (loaded, version) = load_all(&mut conn, me).await?;
            w.version = version;
            w.conn = Some(conn);
            Ok(loaded)
        })
    }

    fn leaves(&self, wanted: Vec<u64>) -> BoxFuture<'_, Result<Vec<node::Leaf>, StoreError>> {
        Box::pin(async move {
            let wanted: Vec<i64> = wanted.into_iter().map(|i| i as i64).collect();
            let rows: Vec<(i64, Vec<u8>)> = pool_query!(self, "reading log entries", |c| {
                sqlx::query_as("SELECT idx, data FROM log_entries WHERE idx = ANY($1) ORDER BY idx")
                    .bind(wanted)
                    .fetch_all(&mut *c)
                    .await
            })
            .await?;
            Ok(rows.into_iter().map(|(i, d)| (i as u64, d)).collect())
        })
    }

    fn tiles(&self, wanted: Vec<(u8, u64)>) -> BoxFuture<'_, Result<Vec<Tile>, StoreError>> {
        Box::pin(async move {
            let levels: Vec<i16> = wanted.iter().map(|(l, _)| i16::from(*l)).collect();
            let idx: Vec<i64> = wanted.iter().map(|(_, i)| *i as i64).collect();
            let rows: Vec<(i16, i64, Vec<u8>)> =
                pool_query!(self, "reading the log's tiles", |c| {
                    sqlx::query_as(
                        "SELECT t.level, t.idx, t.hashes FROM log_tiles t \
                         JOIN UNNEST($1::int2[], $2::int8[]) AS w(level, idx) \
                         ON t.level = w.level AND t.idx = w.idx",
                    )
                    .bind(levels)
                    .bind(idx)
                    .fetch_all(&mut *c)
                    .await
                })
                .await?;
            rows.into_iter()
                .map(|(l, i, h)| {
                    Tile::from_bytes(l as u8, i as u64, &h).ok_or_else(|| {
                        StoreError::Failed(format!("log tile {l}/{i} is not 8,192 bytes"))
                    })
                })
                .collect()
        })
    }

    fn find_leaf(&self, leaf: tlog::Hash) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            // All matches (one, but for identical entries), the lowest
            // taken here: with min(idx) the planner walks the primary key
            // hoping for an early match instead of using the hash index.
            let idx: Vec<i64> = pool_query!(self, "looking up a leaf hash", |c| {
                sqlx::query_scalar(
                    "SELECT idx FROM log_entries WHERE sha256('\\x00'::bytea || data) = $1",
                )
                .bind(leaf.to_vec())
                .fetch_all(&mut *c)
                .await
            })
            .await?;
            Ok(idx.into_iter().min().map(|i| i as u64))
        })
    }

    fn entries(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        Box::pin(pool_query!(self, "reading log entries", |c| {
            sqlx::query_scalar(
                "SELECT data FROM log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            )
            .bind(start as i64)
            .bind(end as i64)
            .fetch_all(&mut *c)
            .await
        }))
    }

    fn save_checkpoint(
        &self,
        size: u64,
        note: String,
    ) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let kept = pool_query!(self, "saving a checkpoint", |c| {
                sqlx::query(
                    "INSERT INTO checkpoints (size, note) VALUES ($1, $2) \
                     ON CONFLICT (size) DO NOTHING",
                )
                .bind(size as i64)
                .bind(note)
                .execute(&mut *c)
                .await?;
                sqlx::query_scalar("SELECT note FROM checkpoints WHERE size = $1")
                    .bind(size as i64)
                    .fetch_optional(&mut *c)
                    .await
            })
            .await?;
            self.notify().await;
            Ok(kept)
        })
    }

    fn add_cosignature(&self, size: u64, line: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            pool_query!(self, "saving a cosignature", |c| {
                sqlx::query(
                    "UPDATE checkpoints SET note = note || $2 \
                     WHERE size = $1 AND strpos(note, $2) = 0",
                )
                .bind(size as i64)
                .bind(line)
                .execute(&mut *c)
                .await
            })
            .await?;
            self.notify().await;
            Ok(())
        })
    }

    fn witnessed(&self, origin: String) -> BoxFuture<'_, Result<Option<Cosigned>, StoreError>> {
        Box::pin(async move {
            let row: Option<(i64, Vec<u8>, String)> =
                pool_query!(self, "reading the witness state", |c| {
                    sqlx::query_as("SELECT size, root, note FROM witnessed WHERE origin = $1")
                        .bind(origin)
                        .fetch_optional(&mut *c)
                        .await
                })
                .await?;
            row.map(|(size, root, note)| crate::cosigned(size, &root, note))
                .transpose()
        })
    }

    fn save_witnessed(&self, origin: String, c: Cosigned) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // Replicas may cosign concurrently: a state never moves back.
            let o = origin.clone();
            let r = pool_query!(self, "saving the witness state", |conn| {
                sqlx::query(
                    "INSERT INTO witnessed (origin, size, root, note) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (origin) DO UPDATE \
                     SET size = excluded.size, root = excluded.root, note = excluded.note \
                     WHERE witnessed.size <= excluded.size",
                )
                .bind(o)
                .bind(c.size as i64)
                .bind(c.root.to_vec())
                .bind(c.note)
                .execute(&mut *conn)
                .await
            })
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::Failed(format!(
                    "a larger checkpoint of {origin} was cosigned meanwhile"
                )));
            }
            Ok(())
        })
    }

    fn misbehaviour(&self) -> BoxFuture<'_, Result<Vec<node::Misbehaviour>, StoreError>> {
        Box::pin(pool_query!(self, "reading evidence of misbehaviour", |c| {
            sqlx::query_as("SELECT origin, note_a, note_b, found_ms FROM misbehaviour ORDER BY id")
                .fetch_all(&mut *c)
                .await
        }))
    }

    fn save_misbehaviour(
        &self,
        origin: String,
        a: String,
        b: String,
        found_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            pool_query!(self, "saving evidence of misbehaviour", |c| {
                sqlx::query(
                    "INSERT INTO misbehaviour (origin, note_a, note_b, found_ms) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(origin)
                .bind(a)
                .bind(b)
                .bind(found_ms)
                .execute(&mut *c)
                .await
            })
            .await?;
            Ok(())
        })
    }

    crate::sql::console_marks!("$1", "$2", "$3");

    fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }
}

/// Takes other replicas' commits in: at once on their NOTIFY, and every
/// second when nothing is heard. Ends with the store.
async fn watch(pool: PgPool, channel: String, writer_pid: Arc<AtomicU32>, refresher: Refresher) {
    let mut listener: Option<PgListener> = None;
    loop {
        if listener.is_none() {
            match PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(&channel).await {
                    Ok(()) => listener = Some(l),
                    Err(e) => tracing::warn!(error = %e, "listening for other replicas' commits"),
                },
                Err(e) => tracing::warn!(error = %e, "listening for other replicas' commits"),
            }
        }
        let heard = match listener.as_mut() {
            Some(l) => tokio::time::timeout(Duration::from_secs(1), l.recv()).await,
            None => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(Err(sqlx::Error::PoolClosed))
            }
        };
        let news = match heard {
            Ok(Ok(n)) => n.process_id() != writer_pid.load(Ordering::SeqCst),
            Ok(Err(_)) => {
                listener = None;
                true
            }
            // Nothing heard for a second: poll.
            Err(_) => true,
        };
        if news && !refresher.refresh() {
            return;
        }
        if !refresher.alive() {
            return;
        }
    }
}

/// Holds the leader lock while this replica can, on its own connection:
/// released by PostgreSQL when that connection dies, taken by another
/// replica within about a second.
async fn lead(opts: PgConnectOptions, key: i32, leader: Arc<AtomicBool>, alive: Refresher) {
    while alive.alive() {
        match PgConnection::connect_with(&opts).await {
            Ok(mut c) => {
                while alive.alive() {
                    let ok = if leader.load(Ordering::SeqCst) {
                        sqlx::query("SELECT 1").execute(&mut c).await.is_ok()
                    } else {
                        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, 2)")
                            .bind(key)
                            .fetch_one(&mut c)
                            .await
                        {
                            Ok(true) => {
                                tracing::info!(
                                    "this replica now leads (checkpoints, witnesses, delivery, expiry)"
                                );
                                leader.store(true, Ordering::SeqCst);
                                true
                            }
                            Ok(false) => true,
                            Err(_) => false,
                        }
                    };
                    if !ok {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if leader.swap(false, Ordering::SeqCst) {
                    tracing::warn!("lost the leader lock's connection; no longer leading");
                }
                let _ = c.close().await;
            }
            Err(e) => tracing::warn!(error = %e, "connecting for the leader lock"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Opens the node's store in `at` (migrating it first), loads it, and
/// starts the watcher and the leader lock.
pub async fn open_postgres(at: &Location, signer: LogSigner) -> Result<PostgresStore, StoreError> {
    migrate(at).await?;
    let opts = at.options()?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        // A read waits this long for a connection, not sqlx's 30 s:
        // with the database down it is answered unavailable promptly.
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(opts.clone())
        .await
        .map_err(err("connecting to the database"))?;
    // The database belongs to one node: replicas must share its key.
    // A key hand-over moves the schema from the previous key to the new.
    let mine = signer.signer.verifier().to_vkey();
    let previous = signer.previous.as_ref().map(|p| p.verifier().to_vkey());
    sqlx::query("UPDATE meta SET node_key = $1 WHERE node_key IS NULL OR node_key = $2")
        .bind(&mine)
        .bind(previous.as_deref().unwrap_or(&mine))
        .execute(&pool)
        .await
        .map_err(err("recording the node key"))?;
    let owner: Option<String> = sqlx::query_scalar("SELECT node_key FROM meta")
        .fetch_one(&pool)
        .await
        .map_err(err("reading the node key"))?;
    if owner.as_deref() != Some(mine.as_str()) {
        return Err(StoreError::Failed(format!(
            "schema {} holds the state of node {}, not of this node ({mine}): give every replica the same node key",
            at.schema,
            owner.unwrap_or_default()
        )));
    }
    let writer_pid = Arc::new(AtomicU32::new(0));
    let mut conn = connect(&opts, &writer_pid).await?;
    let (loaded, version) = load_all(&mut conn, &signer.signer.name).await?;
    let leader = Arc::new(AtomicBool::new(false));
    let backend = Arc::new(Postgres {
        at: at.clone(),
        opts: opts.clone(),
        pool: pool.clone(),
        writer_pid: writer_pid.clone(),
        leader: leader.clone(),
    });
    let engine = Engine::start(
        backend,
        PgWriter {
            conn: Some(conn),
            version,
            in_tx: false,
        },
        loaded,
        signer,
    );
    tokio::spawn(watch(pool, at.channel(), writer_pid, engine.refresher()));
    tokio::spawn(lead(opts, at.key(), leader, engine.refresher()));
    Ok(engine)
}
