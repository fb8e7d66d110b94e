//! The two implementations of the node's persistence port
//! ([`node::persist::Persistence`]): the embedded default, SQLite in WAL mode
//! with `synchronous=FULL` ([`Sqlite`], opened by [`open_sqlite`]), and
//! PostgreSQL with PostGIS for several replicas of one node ([`open_postgres`]),
//! each opened as the node's writer ([`node::writer::Engine`]) over it; their
//! migrations; the console's MBTiles basemap reader; the hand-written PostGIS
//! baseline the benchmarks compare with.
//!
//! The only crate that knows SQL. It never decides anything: the writer in
//! `node` decides, and hands each batch's row changes and log entries here.

mod leaves;
pub mod mbtiles;
mod migrations;
pub mod postgis;
pub mod postgres;
pub mod seal;
mod sharded;
mod sql;
mod sqlite;

pub use mbtiles::Mbtiles;
pub use node::writer::Engine;
pub use postgis::PostgisBaseline;
pub use postgres::{Location, PostgresStore, open_postgres};
pub use sqlite::{Sqlite, SqliteStore, open as open_sqlite, open_tuned as open_sqlite_tuned};

/// A page of the log read offline: entries in order, the first of them
/// the entry whose index follows the last page's.
pub type LogPage<'a> = &'a mut (dyn FnMut(&[Vec<u8>]) -> Result<(), String> + Send);

/// Entries read per query by the offline export ([`read_log_pages`]).
pub const LOG_PAGE: u64 = 4096;

/// Reads a node's log offline, given its data folder (the embedded store,
/// or the PostgreSQL schema the folder names), without disturbing the
/// running node and without holding the log in memory: first the newest
/// checkpoint, then the entries it covers, in order, handed to `page`
/// `page_len` at a time. Answers the checkpoint (`None`: there is none yet, and
/// nothing was read) and how many entries the log holds in all (newer ones
/// included). A gap or a missing entry is an error, as is `page`'s.
pub async fn read_log_pages(
    data: &std::path::Path,
    page_len: u64,
    page: LogPage<'_>,
) -> Result<(Option<(u64, String)>, u64), node::StoreError> {
    let page_len = page_len.clamp(1, 1 << 20) as i64;
    match postgres::recall(data)? {
        Some(at) => postgres::read_log_pages(&at, page_len, page).await,
        None => sqlite::read_log_pages(data, page_len, page).await,
    }
}

/// Reads the entries below `size` with `fetch(start, end)` (the rows
/// `(idx, data)` with `start <= idx < end`, in order), `page_len` at a
/// time, handing each read to `page`.
async fn read_pages(
    size: i64,
    page_len: i64,
    page: LogPage<'_>,
    mut fetch: impl AsyncFnMut(i64, i64) -> Result<Vec<(i64, Vec<u8>)>, node::StoreError>,
) -> Result<(), node::StoreError> {
    let mut next = 0u64;
    while (next as i64) < size {
        let rows = fetch(next as i64, (next as i64 + page_len).min(size)).await?;
        if rows.is_empty() {
            break;
        }
        next = feed_page(next, rows, page)?;
    }
    if (next as i64) < size {
        return Err(node::StoreError::Failed(format!(
            "the newest checkpoint covers {size} entries but the log holds {next}: the store is damaged"
        )));
    }
    Ok(())
}

/// Hands `page` the entries `(idx, data)` of one read, checking they
/// continue the log at `next` without a gap; the next index.
fn feed_page(
    next: u64,
    rows: Vec<(i64, Vec<u8>)>,
    page: LogPage<'_>,
) -> Result<u64, node::StoreError> {
    let mut entries = Vec::with_capacity(rows.len());
    for (idx, data) in rows {
        if idx as u64 != next + entries.len() as u64 {
            return Err(node::StoreError::Failed(format!(
                "the log has a gap before entry {idx}"
            )));
        }
        entries.push(data);
    }
    page(&entries).map_err(node::StoreError::Failed)?;
    Ok(next + entries.len() as u64)
}

/// Reads a node's whole log and newest checkpoint given its data folder —
/// from the embedded store, or from the PostgreSQL schema the folder names
/// — without disturbing the running node: for exporting evidence offline.
pub async fn read_log(
    data: &std::path::Path,
) -> Result<(Vec<Vec<u8>>, Option<(u64, String)>), node::StoreError> {
    match postgres::recall(data)? {
        Some(at) => postgres::read_log(&at).await,
        None => sqlite::read_log(data).await,
    }
}

/// A witness's kept state from its stored columns.
fn cosigned(
    size: i64,
    root: &[u8],
    note: String,
) -> Result<tlog::witness::Cosigned, node::StoreError> {
    let root: tlog::Hash = root
        .try_into()
        .map_err(|_| node::StoreError::Failed("a stored root is not 32 bytes".into()))?;
    Ok(tlog::witness::Cosigned {
        size: size as u64,
        root,
        note,
    })
}
