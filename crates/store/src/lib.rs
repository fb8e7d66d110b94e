//! Implementations of [`node::Store`]: one engine ([`Engine`]: a writer
//! task with group commit, the airspace state with its spatio-temporal index,
//! the line's state and the log's tree kept in memory) over two backends —
//! the embedded default, SQLite in WAL mode with `synchronous=FULL`
//! ([`SqliteStore`]), and PostgreSQL with PostGIS for several replicas of one
//! node ([`PostgresStore`], `postgres.rs`).
//!
//! The only crate that knows SQL. It never decides anything: it runs the
//! decisions `node` hands it, persists their events, and applies them.

mod engine;
mod leaves;
pub mod mbtiles;
pub mod postgis;
pub mod postgres;
mod sharded;
mod sqlite;

pub use engine::{Engine, MAX_BATCH, MAX_LINE_BATCH};
pub use mbtiles::Mbtiles;
pub use postgis::PostgisBaseline;
pub use postgres::{Location, PostgresStore};
pub use sqlite::{Sqlite, SqliteStore};

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
