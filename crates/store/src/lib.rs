//! Implementations of [`node::Store`]. Today: the embedded store, SQLite in
//! WAL mode with `synchronous=FULL`, one writer with group commit, and the
//! airspace state (with its spatio-temporal index) kept in memory and rebuilt
//! from the tables at start.
//!
//! The only crate that knows SQL. It never decides anything: it runs the
//! decisions `node` hands it, persists their events, and applies them.

pub mod mbtiles;
pub mod postgis;
mod sqlite;

pub use mbtiles::Mbtiles;
pub use postgis::PostgisBaseline;
pub use sqlite::{SqliteStore, read_log};
