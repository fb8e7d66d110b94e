//! The embedded store's state snapshot: the airspace's intents,
//! constraints and subscriptions with their rowids, in binary
//! ([`airspace::snapshot`]), written when the store closes cleanly and read
//! at the next open instead of decoding every row's JSON.
//!
//! The database stays the only truth. The file is taken only when it
//! proves it is of this database as it is now: the same schema version, the
//! same change sequence (every batch that changes a record moves it, in the
//! same transaction), the same log (its size and newest entry), the same
//! highest rowid in each table, as many records
//! as it says, each block's bytes of the SHA-256 written with them, and
//! complete (written to a temporary name, synced, renamed).
//! It is removed as soon as it is read, taken or not, so it is used at most
//! once; a crash, a kill or a refused file just means the rows are read, as
//! always.
//!
//! Layout (little-endian): the magic line; the schema version (i64); the
//! sequence (u64); the log's size (u64) and its newest entry's RFC 6962
//! leaf hash (32 bytes); per table, its record count (u64), blocks of at most
//! [`BLOCK`] records — each the number of records (u32), its byte length
//! (u64), the SHA-256 of its bytes and its records, each a rowid (i64) and the record — and the
//! table's highest rowid (i64, 0 when empty); then [`END`] and the file's
//! length before it (u64). Blocks are read one after the other and decode on
//! all cores as they come.

use super::RecordKey;
use crate::sharded::ShardedMap;
use airspace::snapshot::{Reader, Snap, SnapshotError};
use airspace::{AirspaceState, Constraint, OperationalIntent, Subscription};
use sha2::Digest;
use std::io::Write;
use std::path::Path;

pub(super) const FILE: &str = "airspace.snapshot";
const TEMPORARY: &str = "airspace.snapshot.tmp";
const MAGIC: &[u8] = b"detente airspace snapshot 1\n";
const END: &[u8] = b"\nend of snapshot\n";
/// Records per block: the unit of parallel decoding.
const BLOCK: usize = 4096;

/// A table's records from a snapshot, in the file's order (by id).
pub(super) struct Records<T> {
    pub records: Vec<T>,
    /// Each record's (id, rowid), in the same order.
    pub rowids: Vec<(uuid::Uuid, i64)>,
    pub max_rowid: i64,
}

/// The rowid map of a table's (id, rowid)s (a few hundred nanoseconds an
/// insert at a million: built beside the index, not before it).
pub(super) fn rowid_map(rowids: Vec<(uuid::Uuid, i64)>) -> ShardedMap<RecordKey, i64> {
    let mut map = ShardedMap::default();
    map.reserve(rowids.len());
    for (id, rowid) in rowids {
        map.insert(RecordKey::Uuid(id), rowid);
    }
    map
}

/// What a snapshot held.
pub(super) struct Taken {
    pub intents: Records<OperationalIntent>,
    pub constraints: Records<Constraint>,
    pub subscriptions: Records<Subscription>,
}

/// What the database is now, for a snapshot to match.
pub(super) struct Expected {
    pub schema: i64,
    pub seq: u64,
    /// The log's size and its newest entry's leaf hash (zeros when
    /// empty): which database, not only which sequence number.
    pub log: (u64, tlog::Hash),
    /// Highest rowid of intents, constraints and subscriptions (0 when empty).
    pub max_rowids: [i64; 3],
}

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what} {}: {e}", path.display())
}

/// Syncs a folder, so that a rename or removal in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// A table's records as the snapshot writes them.
fn section<'a, T: Snap + 'a>(
    out: &mut impl Write,
    written: &mut u64,
    records: impl ExactSizeIterator<Item = &'a T>,
    id: impl Fn(&T) -> uuid::Uuid,
    rowids: &ShardedMap<RecordKey, i64>,
) -> Result<(), String> {
    let mut put = |b: &[u8]| {
        *written += b.len() as u64;
        out.write_all(b).map_err(|e| format!("writing: {e}"))
    };
    put(&(records.len() as u64).to_le_bytes())?;
    let mut max = 0i64;
    let mut block = Vec::with_capacity(BLOCK * 512);
    let mut n = 0u32;
    let mut records = records.peekable();
    while let Some(r) = records.next() {
        let key = RecordKey::Uuid(id(r));
        let Some(&rowid) = rowids.get(&key) else {
            return Err(format!("record {} has no rowid", id(r)));
        };
        max = max.max(rowid);
        rowid.put(&mut block);
        r.put(&mut block);
        n += 1;
        if n as usize == BLOCK || records.peek().is_none() {
            put(&n.to_le_bytes())?;
            put(&(block.len() as u64).to_le_bytes())?;
            put(&sha2::Sha256::digest(&block))?;
            put(&block)?;
            block.clear();
            n = 0;
        }
    }
    put(&max.to_le_bytes())
}

/// Writes the snapshot of `state`, whose records live at the rowids `ids`
/// holds, into `dir`: the bytes written.
pub(super) fn write(
    dir: &Path,
    schema: i64,
    log: (u64, tlog::Hash),
    state: &AirspaceState,
    ids: &super::RowIds,
) -> Result<u64, String> {
    let written = write_file(dir, schema, log, state, ids);
    if written.is_err() {
        // Nothing half-written stays behind (a full disk, say).
        let _ = std::fs::remove_file(dir.join(TEMPORARY));
    }
    written
}

fn write_file(
    dir: &Path,
    schema: i64,
    log: (u64, tlog::Hash),
    state: &AirspaceState,
    ids: &super::RowIds,
) -> Result<u64, String> {
    use node::persist::Table;
    let temporary = dir.join(TEMPORARY);
    let file = std::fs::File::create(&temporary).map_err(io("creating", &temporary))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut written = 0u64;
    let mut head = MAGIC.to_vec();
    schema.put(&mut head);
    state.seq().put(&mut head);
    log.0.put(&mut head);
    head.extend_from_slice(&log.1);
    out.write_all(&head).map_err(io("writing", &temporary))?;
    written += head.len() as u64;
    let of = |t: Table| &ids.of[t as usize];
    section(
        &mut out,
        &mut written,
        state.intents(),
        |r| r.id,
        of(Table::Intents),
    )?;
    section(
        &mut out,
        &mut written,
        state.constraints(),
        |r| r.id,
        of(Table::Constraints),
    )?;
    section(
        &mut out,
        &mut written,
        state.subscriptions(),
        |r| r.id,
        of(Table::Subscriptions),
    )?;
    let mut tail = END.to_vec();
    written.put(&mut tail);
    out.write_all(&tail).map_err(io("writing", &temporary))?;
    let file = out
        .into_inner()
        .map_err(|e| format!("writing {}: {}", temporary.display(), e.error()))?;
    file.sync_all().map_err(io("syncing", &temporary))?;
    drop(file);
    let path = dir.join(FILE);
    std::fs::rename(&temporary, &path).map_err(io("renaming to", &path))?;
    sync_dir(dir)?;
    Ok(written + tail.len() as u64)
}

/// Removes a snapshot (and a temporary one a crash left), durably: once a
/// store has opened, its file must not outlive the next write.
pub(super) fn remove(dir: &Path) -> Result<(), String> {
    let mut removed = false;
    for name in [FILE, TEMPORARY] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", dir.join(name).display())),
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Whether `dir` holds a snapshot.
pub(super) fn exists(dir: &Path) -> bool {
    dir.join(FILE).exists()
}

/// The snapshot file, read front to back; never more than it holds.
struct Source {
    file: std::io::BufReader<std::fs::File>,
    /// Bytes left before the trailer.
    left: u64,
}

impl Source {
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, SnapshotError> {
        use std::io::Read;
        if n > self.left {
            return Err(SnapshotError(format!(
                "{n} bytes wanted, {} left",
                self.left
            )));
        }
        let mut out = vec![0u8; n as usize];
        self.file
            .read_exact(&mut out)
            .map_err(|e| SnapshotError(format!("reading: {e}")))?;
        self.left -= n;
        Ok(out)
    }
    fn take<T: Snap>(&mut self, size: u64) -> Result<T, SnapshotError> {
        let b = self.bytes(size)?;
        T::take(&mut Reader::new(&b))
    }
}

/// A block as read: its place in the table, record count, SHA-256 and bytes.
type Block = (usize, usize, Vec<u8>, Vec<u8>);

/// One block's (rowid, record)s, once its bytes are those written.
fn decode_block<T: Snap>(block: &Block) -> Result<Vec<(i64, T)>, SnapshotError> {
    let (_, n, sha256, bytes) = block;
    if sha2::Sha256::digest(bytes).as_slice() != sha256.as_slice() {
        return Err(SnapshotError(
            "a block's bytes are not those written (SHA-256)".into(),
        ));
    }
    let mut r = Reader::new(bytes);
    let mut out = Vec::with_capacity(*n);
    for _ in 0..*n {
        let rowid = i64::take(&mut r)?;
        out.push((rowid, T::take(&mut r)?));
    }
    if r.remaining() != 0 {
        return Err(SnapshotError(format!(
            "{} bytes left over in a block",
            r.remaining()
        )));
    }
    Ok(out)
}

/// A table's decoded blocks, each with its place.
type Decoded<T> = Vec<(usize, Result<Vec<(i64, T)>, SnapshotError>)>;

/// Reads a table's blocks one after the other while they decode on all
/// cores (only the blocks in flight are held, never the whole file); its
/// records in the file's order.
fn table<T: Snap + Send>(
    src: &mut Source,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Result<Records<T>, SnapshotError> {
    let count = src.take::<u64>(8)? as usize;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = std::sync::mpsc::sync_channel::<Block>(2 * threads);
    // Held by the workers alone: should they all stop, the reader's next
    // send fails instead of waiting for them.
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let (read, parts): (Result<(), SnapshotError>, Vec<Decoded<T>>) = std::thread::scope(|t| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                t.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(block) = next else { break };
                        out.push((block.0, decode_block::<T>(&block)));
                    }
                    out
                })
            })
            .collect();
        drop(rx);
        let read = (|| {
            let (mut seen, mut place) = (0usize, 0usize);
            while seen < count {
                let n = src.take::<u32>(4)? as usize;
                let len = src.take::<u64>(8)?;
                if n == 0 || n > BLOCK || len > src.left {
                    return Err(SnapshotError(format!(
                        "a block of {n} records in {len} bytes"
                    )));
                }
                let sha256 = src.bytes(32)?;
                let bytes = src.bytes(len)?;
                if tx.send((place, n, sha256, bytes)).is_err() {
                    break;
                }
                seen += n;
                place += 1;
            }
            if seen != count {
                return Err(SnapshotError(format!(
                    "{seen} records where {count} were announced"
                )));
            }
            Ok(())
        })();
        drop(tx);
        let parts = workers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        (read, parts)
    });
    read?;
    let max_rowid = src.take::<i64>(8)?;
    let mut parts: Vec<_> = parts.into_iter().flatten().collect();
    parts.sort_unstable_by_key(|p| p.0);
    let mut records = Vec::with_capacity(count);
    let mut rowids = Vec::with_capacity(count);
    let mut highest = 0i64;
    for (_, part) in parts {
        for (rowid, record) in part? {
            let id = id(&record);
            // Written from the state's ordered maps: ids strictly rising,
            // so none is held twice.
            if rowids.last().is_some_and(|(last, _)| *last >= id) {
                return Err(SnapshotError(format!("record {id} out of order")));
            }
            highest = highest.max(rowid);
            rowids.push((id, rowid));
            records.push(record);
        }
    }
    if highest != max_rowid {
        return Err(SnapshotError(format!(
            "highest rowid {highest} where {max_rowid} was written"
        )));
    }
    Ok(Records {
        records,
        rowids,
        max_rowid,
    })
}

/// Reads the snapshot in `dir` and removes it; the records, if it is
/// complete and of the database as `expected` describes it (why not,
/// otherwise).
pub(super) fn take(dir: &Path, expected: &Expected) -> Result<Taken, String> {
    let path = dir.join(FILE);
    let file = std::fs::File::open(&path).map_err(io("opening", &path));
    remove(dir)?;
    read(file?, expected).map_err(|e| e.to_string())
}

fn read(mut file: std::fs::File, expected: &Expected) -> Result<Taken, SnapshotError> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = |what: String| SnapshotError(what);
    let failed = |e: std::io::Error| SnapshotError(format!("reading: {e}"));
    let len = file.metadata().map_err(failed)?.len();
    let tail = (END.len() + 8) as u64;
    if len < MAGIC.len() as u64 + tail {
        return Err(bad("not a snapshot of this format".into()));
    }
    let mut end = vec![0u8; tail as usize];
    file.seek(SeekFrom::Start(len - tail)).map_err(failed)?;
    file.read_exact(&mut end).map_err(failed)?;
    if &end[..END.len()] != END || u64::take(&mut Reader::new(&end[END.len()..]))? != len - tail {
        return Err(bad("incomplete".into()));
    }
    file.seek(SeekFrom::Start(0)).map_err(failed)?;
    let mut src = Source {
        file: std::io::BufReader::with_capacity(1 << 20, file),
        left: len - tail,
    };
    if src.bytes(MAGIC.len() as u64)? != MAGIC {
        return Err(bad("not a snapshot of this format".into()));
    }
    let head = src.bytes(8 + 8 + 8 + 32)?;
    let mut r = Reader::new(&head);
    let (schema, seq) = (i64::take(&mut r)?, u64::take(&mut r)?);
    let size = u64::take(&mut r)?;
    let newest = r.bytes(32)?;
    if schema != expected.schema || seq != expected.seq {
        return Err(bad(format!(
            "of schema {schema} at sequence {seq}; the database is at schema {} and sequence {}",
            expected.schema, expected.seq
        )));
    }
    if size != expected.log.0 || newest != expected.log.1 {
        return Err(bad(format!(
            "of a log of {size} entries, not of this database's ({} entries) as it is",
            expected.log.0
        )));
    }
    let matches = |r: i64, db: i64| {
        if r == db {
            Ok(())
        } else {
            Err(bad(format!(
                "a table's highest rowid is {db} in the database, {r} in the snapshot"
            )))
        }
    };
    let intents = table(&mut src, |r: &OperationalIntent| r.id)?;
    matches(intents.max_rowid, expected.max_rowids[0])?;
    let constraints = table(&mut src, |r: &Constraint| r.id)?;
    matches(constraints.max_rowid, expected.max_rowids[1])?;
    let subscriptions = table(&mut src, |r: &Subscription| r.id)?;
    matches(subscriptions.max_rowid, expected.max_rowids[2])?;
    if src.left != 0 {
        return Err(bad(format!("{} bytes after the last table", src.left)));
    }
    Ok(Taken {
        intents,
        constraints,
        subscriptions,
    })
}
