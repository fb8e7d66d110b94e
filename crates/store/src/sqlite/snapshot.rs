//! The embedded store's state snapshot: the airspace's intents,
//! constraints and subscriptions with their rowids, in binary
//! ([`airspace::snapshot`]), read at open instead of decoding every row's
//! JSON.
//!
//! The database stays the only truth; the snapshot is a base the rows
//! changed since it are laid over. Every batch that writes or removes a row
//! of those tables notes (sequence, table, rowid) in `snapshot_changes`, in
//! the same transaction; the snapshot names the change sequence it holds.
//! At open, a snapshot is taken only when it proves it is a base of this
//! database: the same schema version, a sequence no later than the
//! database's and no earlier than the oldest change still noted, the same
//! log entry at the size it names, as many records as it says, each block's
//! bytes of the SHA-256 written with them, and complete (written to a
//! temporary name, synced, renamed). Then each row noted since its sequence
//! is read as it is now (or is gone). Anything else and the file is removed
//! and the rows are read, as always.
//!
//! A snapshot is written when the store closes cleanly (from the state, no
//! change left over) and, while it runs, by a task beside the writer once
//! the changes noted outgrow a share of the records (`keeper.rs`): the
//! previous snapshot's records copied as they are, with the rows changed
//! since laid in; from every row when there is no previous one. Once the new file is in
//! place, the writer drops the changes it holds.
//!
//! Layout (little-endian): the magic line; the schema version (i64); the
//! sequence (u64); the log's size (u64) and its newest entry's RFC 6962
//! leaf hash (32 bytes); per table, blocks of at most [`BLOCK`] records —
//! each the number of records (u32), its byte length (u64), the SHA-256 of
//! its bytes and its records, each a rowid (i64), the record's length (u32)
//! and the record (its id's 16 bytes first) — by id, strictly rising, as the
//! state's ordered maps hold them (so they load fastest) — then a block of no
//! records (its count alone, 0), the table's record count (u64) and highest
//! rowid (i64, 0 when empty); then [`END`] and the file's length before it (u64). Blocks
//! are read one after the other and decode on all cores as they come.

use super::RecordKey;
use super::rowids::RowidMap;
use airspace::snapshot::{Reader, Snap, SnapshotError};
use airspace::{AirspaceState, Constraint, OperationalIntent, Subscription};
use node::persist::Table;
use sha2::Digest;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

pub(super) const FILE: &str = "airspace.snapshot";
const TEMPORARY: &str = "airspace.snapshot.tmp";
const MAGIC: &[u8] = b"detente airspace snapshot 2\n";
const END: &[u8] = b"\nend of snapshot\n";
/// Bytes written between two syncs of a snapshot being written (see
/// `Sections::put`).
const SYNC_EVERY: u64 = 1 << 20;
/// Records per block: the unit of parallel decoding.
const BLOCK: usize = 4096;
/// The tables a snapshot holds, in its order.
pub(super) const TABLES: [Table; 3] = [Table::Intents, Table::Constraints, Table::Subscriptions];

/// What a snapshot is of.
#[derive(Clone, Debug)]
pub(super) struct Head {
    pub schema: i64,
    /// The change sequence it holds every change up to.
    pub seq: u64,
    /// The log's size and its newest entry's leaf hash (zeros when
    /// empty): which database, not only which sequence number.
    pub log: (u64, tlog::Hash),
}

/// A table's records from a snapshot, in the file's order (by id), each
/// with its id (as the state's maps take them: collected as they are).
pub(super) struct Records<T> {
    pub records: Vec<(uuid::Uuid, T)>,
    /// Each record's (id, rowid), in the same order.
    pub rowids: Vec<(uuid::Uuid, i64)>,
    pub max_rowid: i64,
}

/// The rowid map of a table's (id, rowid)s, sorted by id as the snapshot
/// holds them, or in two sorted runs once changes were laid over it (one
/// pass, or a merge: built beside the index); an id held twice refuses the
/// snapshot.
pub(super) fn rowid_map(rowids: Vec<(uuid::Uuid, i64)>) -> Result<RowidMap, String> {
    RowidMap::from_ids(rowids)
}

/// What a snapshot held.
pub(super) struct Taken {
    pub intents: Records<OperationalIntent>,
    pub constraints: Records<Constraint>,
    pub subscriptions: Records<Subscription>,
}

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what} {}: {e}", path.display())
}

/// Syncs a folder, so that a rename or removal in it survives a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// A snapshot being written: its tables' records go into blocks.
pub(super) struct Sections {
    out: std::io::BufWriter<std::fs::File>,
    written: u64,
    /// Bytes written when the file was last synced.
    synced: u64,
    tables: usize,
    /// Records in every table.
    total: u64,
    block: Vec<u8>,
    n: u32,
    /// Records, the last id and the highest rowid of the table being
    /// written.
    count: u64,
    last: Option<[u8; 16]>,
    max_rowid: i64,
}

impl Sections {
    fn put(&mut self, b: &[u8]) -> Result<(), String> {
        let failed = |e: std::io::Error| format!("writing the state snapshot: {e}");
        self.written += b.len() as u64;
        self.out.write_all(b).map_err(failed)?;
        if self.written - self.synced >= SYNC_EVERY {
            // Synced as it goes: one sync of the whole file at the end
            // held every commit's sync of the WAL behind it on the device.
            self.out.flush().map_err(failed)?;
            self.out.get_ref().sync_data().map_err(failed)?;
            self.synced = self.written;
        }
        Ok(())
    }

    /// Adds the record at `rowid`, its bytes written by `record`: they
    /// start with its id, above the table's last.
    pub fn push(&mut self, rowid: i64, record: impl FnOnce(&mut Vec<u8>)) -> Result<(), String> {
        let start = self.block.len();
        rowid.put(&mut self.block);
        let at = self.block.len();
        self.block.extend_from_slice(&[0; 4]);
        record(&mut self.block);
        let id = self
            .block
            .get(at + 4..at + 20)
            .and_then(|b| <[u8; 16]>::try_from(b).ok());
        let Some(id) = id.filter(|id| self.last.is_none_or(|last| *id > last)) else {
            self.block.truncate(start);
            return Err(format!(
                "the record at rowid {rowid} does not come after the one before by id"
            ));
        };
        self.last = Some(id);
        self.max_rowid = self.max_rowid.max(rowid);
        let len = u32::try_from(self.block.len() - at - 4)
            .map_err(|_| format!("the record at rowid {rowid} is over 4 GiB"))?;
        self.block[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.n += 1;
        self.count += 1;
        self.total += 1;
        if self.n as usize == BLOCK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.n == 0 {
            return Ok(());
        }
        let block = std::mem::take(&mut self.block);
        let mut head = self.n.to_le_bytes().to_vec();
        (block.len() as u64).put(&mut head);
        head.extend_from_slice(&sha2::Sha256::digest(&block));
        self.put(&head)?;
        self.put(&block)?;
        self.block = block;
        self.block.clear();
        self.n = 0;
        Ok(())
    }

    /// Writes a list of rowids (each rising): its length, the SHA-256 of
    /// its bytes and the bytes.
    pub fn rowids(&mut self, rowids: &[i64]) -> Result<(), String> {
        let mut bytes = Vec::with_capacity(rowids.len() * 8);
        for r in rowids {
            r.put(&mut bytes);
        }
        let mut head = (rowids.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(&sha2::Sha256::digest(&bytes));
        self.put(&head)?;
        self.put(&bytes)
    }

    /// Ends a table: its last block, the block of no records, its count and
    /// highest rowid.
    pub fn end_table(&mut self) -> Result<(), String> {
        self.flush()?;
        let mut tail = 0u32.to_le_bytes().to_vec();
        self.count.put(&mut tail);
        self.max_rowid.put(&mut tail);
        self.put(&tail)?;
        self.tables += 1;
        self.count = 0;
        self.last = None;
        self.max_rowid = 0;
        Ok(())
    }
}

/// A file of this layout being written: its name, the temporary name it
/// is written under, its magic line and the head after it.
pub(super) struct Target<'a> {
    pub name: &'a str,
    pub temporary: &'a str,
    pub magic: &'a [u8],
    pub head: Vec<u8>,
}

impl Head {
    /// Its bytes: schema, sequence, log size and newest leaf hash.
    pub(super) fn put(&self, out: &mut Vec<u8>) {
        self.schema.put(out);
        self.seq.put(out);
        self.log.0.put(out);
        out.extend_from_slice(&self.log.1);
    }

    /// Bytes in [`Head::put`].
    pub(super) const LEN: u64 = 8 + 8 + 8 + 32;

    pub(super) fn take(r: &mut Reader<'_>) -> Result<Head, SnapshotError> {
        let (schema, seq, size) = (i64::take(r)?, u64::take(r)?, u64::take(r)?);
        let mut newest = [0u8; 32];
        newest.copy_from_slice(r.bytes(32)?);
        Ok(Head {
            schema,
            seq,
            log: (size, newest),
        })
    }
}

/// Writes a snapshot of `head` into `dir`, its tables as `fill` pushes
/// them: durably under its name, or nothing left behind. The bytes and
/// records written.
pub(super) fn write_with(
    dir: &Path,
    head: &Head,
    fill: impl FnOnce(&mut Sections) -> Result<(), String>,
) -> Result<(u64, u64), String> {
    let mut bytes = Vec::new();
    head.put(&mut bytes);
    let target = Target {
        name: FILE,
        temporary: TEMPORARY,
        magic: MAGIC,
        head: bytes,
    };
    write_target(dir, &target, fill)
}

/// Writes `target` into `dir`, its tables as `fill` pushes them: durably
/// under its name, or nothing left behind. The bytes and records written.
pub(super) fn write_target(
    dir: &Path,
    target: &Target<'_>,
    fill: impl FnOnce(&mut Sections) -> Result<(), String>,
) -> Result<(u64, u64), String> {
    let written = write_file(dir, target, fill);
    if written.is_err() {
        // Nothing half-written stays behind (a full disk, say).
        let _ = std::fs::remove_file(dir.join(target.temporary));
    }
    written
}

fn write_file(
    dir: &Path,
    target: &Target<'_>,
    fill: impl FnOnce(&mut Sections) -> Result<(), String>,
) -> Result<(u64, u64), String> {
    let temporary = dir.join(target.temporary);
    let file = std::fs::File::create(&temporary).map_err(io("creating", &temporary))?;
    let mut s = Sections {
        out: std::io::BufWriter::with_capacity(1 << 20, file),
        written: 0,
        synced: 0,
        tables: 0,
        total: 0,
        block: Vec::with_capacity(BLOCK * 512),
        n: 0,
        count: 0,
        last: None,
        max_rowid: 0,
    };
    let mut bytes = target.magic.to_vec();
    bytes.extend_from_slice(&target.head);
    s.put(&bytes)?;
    fill(&mut s)?;
    if s.tables != TABLES.len() || s.n != 0 {
        return Err(format!("{} tables written, not {}", s.tables, TABLES.len()));
    }
    let mut tail = END.to_vec();
    s.written.put(&mut tail);
    s.put(&tail)?;
    let file = s
        .out
        .into_inner()
        .map_err(|e| format!("writing {}: {}", temporary.display(), e.error()))?;
    file.sync_all().map_err(io("syncing", &temporary))?;
    drop(file);
    let path = dir.join(target.name);
    std::fs::rename(&temporary, &path).map_err(io("renaming to", &path))?;
    sync_dir(dir)?;
    Ok((s.written, s.total))
}

/// A table's records as the snapshot of a state writes them (the state's
/// ordered maps: by id).
fn section<'a, T: Snap + 'a>(
    s: &mut Sections,
    records: impl Iterator<Item = &'a T>,
    id: impl Fn(&T) -> uuid::Uuid,
    rowids: &RowidMap,
) -> Result<(), String> {
    for r in records {
        let Some(rowid) = rowids.get(&RecordKey::Uuid(id(r))) else {
            return Err(format!("record {} has no rowid", id(r)));
        };
        s.push(rowid, |out| r.put(out))?;
    }
    s.end_table()
}

/// Writes the snapshot of `state` (as committed: nothing changed since its
/// sequence), whose records live at the rowids `ids` holds, into `dir`: the
/// bytes written.
pub(super) fn write(
    dir: &Path,
    schema: i64,
    log: (u64, tlog::Hash),
    state: &AirspaceState,
    ids: &super::RowIds,
) -> Result<(u64, u64), String> {
    let head = Head {
        schema,
        seq: state.seq(),
        log,
    };
    let of = |t: Table| &ids.of[t as usize];
    write_with(dir, &head, |s| {
        section(s, state.intents(), |r| r.id, of(Table::Intents))?;
        section(s, state.constraints(), |r| r.id, of(Table::Constraints))?;
        section(s, state.subscriptions(), |r| r.id, of(Table::Subscriptions))
    })
}

/// The rows of one table changed since a snapshot: their rowids, and the
/// records at those that are still there as they are now (rowid and
/// encoding), by id.
#[derive(Default)]
pub(super) struct Changed {
    pub rowids: HashSet<i64>,
    pub now: Vec<(i64, Vec<u8>)>,
}

/// Writes a snapshot of `head` into `dir` from `base` with the records
/// changed since it laid in (the base's records are copied as they are, not
/// decoded); the bytes and records written, or why the base is not one
/// (a block not as written: nothing is written then).
pub(super) fn merge(
    dir: &Path,
    head: &Head,
    base: Opened,
    changed: [Changed; 3],
) -> Result<Result<(u64, u64), String>, String> {
    let mut src = base.src;
    let mut unreadable = None;
    let written = write_with(dir, head, |s| {
        for Changed { rowids, now } in changed {
            let mut now = now.into_iter().peekable();
            raw_table(&mut src, |rowid, bytes| {
                // The changed records before this one by id, as they are
                // now; this one as it was, if its row did not change.
                while let Some((r, b)) = now.next_if(|(_, b)| b.get(..16) < bytes.get(..16)) {
                    s.push(r, |out| out.extend_from_slice(&b))?;
                }
                if !rowids.contains(&rowid) {
                    s.push(rowid, |out| out.extend_from_slice(bytes))?;
                }
                Ok(())
            })
            .inspect_err(|e| unreadable = Some(e.clone()))?;
            for (rowid, b) in now {
                s.push(rowid, |out| out.extend_from_slice(&b))?;
            }
            s.end_table()?;
        }
        if src.left != 0 {
            let e = format!("{} bytes after the last table", src.left);
            unreadable = Some(e.clone());
            return Err(e);
        }
        Ok(())
    });
    match unreadable {
        Some(why) => Ok(Err(why)),
        None => written.map(Ok),
    }
}

/// Removes the snapshot and a temporary one a crash left, durably.
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

/// Removes what a crash in the middle of writing a snapshot left.
pub(super) fn remove_unfinished(dir: &Path) -> Result<(), String> {
    match std::fs::remove_file(dir.join(TEMPORARY)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", dir.join(TEMPORARY).display())),
    }
}

/// A block's record count, SHA-256 and bytes.
type RawBlock = (usize, Vec<u8>, Vec<u8>);

/// The snapshot file, read front to back; never more than it holds.
pub(super) struct Source {
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

    /// The next block of the table being read: its record count, SHA-256
    /// and bytes; `None` at the table's end.
    fn block(&mut self) -> Result<Option<RawBlock>, SnapshotError> {
        let n = self.take::<u32>(4)? as usize;
        if n == 0 {
            return Ok(None);
        }
        let len = self.take::<u64>(8)?;
        if n > BLOCK || len > self.left {
            return Err(SnapshotError(format!(
                "a block of {n} records in {len} bytes"
            )));
        }
        let sha256 = self.bytes(32)?;
        Ok(Some((n, sha256, self.bytes(len)?)))
    }

    /// A list of rowids as [`Sections::rowids`] writes it.
    pub(super) fn rowids(&mut self) -> Result<Vec<i64>, SnapshotError> {
        let n = self.take::<u64>(8)?;
        if n.saturating_mul(8) > self.left {
            return Err(SnapshotError(format!("a list of {n} rowids")));
        }
        let sha256 = self.bytes(32)?;
        let bytes = self.bytes(n * 8)?;
        if sha2::Sha256::digest(&bytes).as_slice() != sha256.as_slice() {
            return Err(SnapshotError(
                "a list of rowids is not as written (SHA-256)".into(),
            ));
        }
        let mut r = Reader::new(&bytes);
        let rowids = (0..n)
            .map(|_| i64::take(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        if rowids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(SnapshotError("a list of rowids out of order".into()));
        }
        Ok(rowids)
    }

    /// Bytes left before the file's end.
    pub(super) fn left(&self) -> u64 {
        self.left
    }

    /// A table's record count and highest rowid, after its blocks.
    fn table_end(&mut self, seen: usize, highest: i64) -> Result<i64, SnapshotError> {
        let count = self.take::<u64>(8)?;
        let max_rowid = self.take::<i64>(8)?;
        if count != seen as u64 {
            return Err(SnapshotError(format!(
                "{seen} records where {count} were written"
            )));
        }
        if highest != max_rowid {
            return Err(SnapshotError(format!(
                "highest rowid {highest} where {max_rowid} was written"
            )));
        }
        Ok(max_rowid)
    }
}

/// A block's records, once its bytes are those written: each rowid and
/// record's bytes, in order.
fn block_records(
    n: usize,
    sha256: &[u8],
    bytes: &[u8],
    mut each: impl FnMut(i64, &[u8]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    if sha2::Sha256::digest(bytes).as_slice() != sha256 {
        return Err(SnapshotError(
            "a block's bytes are not those written (SHA-256)".into(),
        ));
    }
    let mut r = Reader::new(bytes);
    for _ in 0..n {
        let rowid = i64::take(&mut r)?;
        let len = u32::take(&mut r)?;
        each(rowid, r.bytes(len as usize)?)?;
    }
    if r.remaining() != 0 {
        return Err(SnapshotError(format!(
            "{} bytes left over in a block",
            r.remaining()
        )));
    }
    Ok(())
}

/// One block's (rowid, record)s.
fn decode_block<T: Snap>(n: usize, sha256: &[u8], bytes: &[u8]) -> DecodedBlock<T> {
    let mut out = Vec::with_capacity(n);
    block_records(n, sha256, bytes, |rowid, b| {
        let mut r = Reader::new(b);
        let record = T::take(&mut r)?;
        if r.remaining() != 0 {
            return Err(SnapshotError(format!(
                "{} bytes left over in the record at rowid {rowid}",
                r.remaining()
            )));
        }
        out.push((rowid, record));
        Ok(())
    })?;
    Ok(out)
}

type DecodedBlock<T> = Result<Vec<(i64, T)>, SnapshotError>;

/// Reads a table's records as bytes, in order, checking what
/// [`table`] checks.
pub(super) fn raw_table(
    src: &mut Source,
    mut each: impl FnMut(i64, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let (mut seen, mut highest) = (0usize, 0i64);
    let mut last: Option<[u8; 16]> = None;
    while let Some((n, sha256, bytes)) = src.block().map_err(|e| e.to_string())? {
        let mut failed = None;
        block_records(n, &sha256, &bytes, |rowid, b| {
            let id = b.get(..16).and_then(|i| <[u8; 16]>::try_from(i).ok());
            let Some(id) = id.filter(|id| last.is_none_or(|l| *id > l)) else {
                return Err(SnapshotError(format!(
                    "the record at rowid {rowid} is out of order"
                )));
            };
            last = Some(id);
            highest = highest.max(rowid);
            seen += 1;
            each(rowid, b).map_err(|e| {
                failed = Some(e.clone());
                SnapshotError(e)
            })
        })
        .map_err(|e| failed.take().unwrap_or_else(|| e.to_string()))?;
    }
    src.table_end(seen, highest).map_err(|e| e.to_string())?;
    Ok(())
}

/// A block as read: its place in the table, record count, SHA-256 and bytes.
type Block = (usize, usize, Vec<u8>, Vec<u8>);

/// A table's decoded blocks, each with its place.
type Decoded<T> = Vec<(usize, DecodedBlock<T>)>;

/// Reads a table's blocks one after the other while they decode on all
/// cores (only the blocks in flight are held, never the whole file); its
/// records in the file's order.
pub(super) fn table<T: Snap + Send>(
    src: &mut Source,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Result<Records<T>, SnapshotError> {
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
                        let Ok((place, n, sha256, bytes)) = next else {
                            break;
                        };
                        out.push((place, decode_block::<T>(n, &sha256, &bytes)));
                    }
                    out
                })
            })
            .collect();
        drop(rx);
        let read = (|| {
            let mut place = 0usize;
            while let Some((n, sha256, bytes)) = src.block()? {
                if tx.send((place, n, sha256, bytes)).is_err() {
                    break;
                }
                place += 1;
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
    let mut parts: Vec<_> = parts.into_iter().flatten().collect();
    parts.sort_unstable_by_key(|p| p.0);
    let count = parts.iter().map(|p| p.1.as_ref().map_or(0, Vec::len)).sum();
    let mut records = Vec::with_capacity(count);
    let mut rowids = Vec::with_capacity(count);
    let mut highest = 0i64;
    for (_, part) in parts {
        for (rowid, record) in part? {
            let id = id(&record);
            // Written from the state's ordered maps, or merged in their
            // order: ids strictly rising, so none is held twice.
            if rowids.last().is_some_and(|(last, _)| *last >= id) {
                return Err(SnapshotError(format!("record {id} out of order")));
            }
            highest = highest.max(rowid);
            rowids.push((id, rowid));
            records.push((id, record));
        }
    }
    let max_rowid = src.table_end(records.len(), highest)?;
    Ok(Records {
        records,
        rowids,
        max_rowid,
    })
}

/// A snapshot file opened: its head read, its end checked.
pub(super) struct Opened {
    pub head: Head,
    src: Source,
}

/// The snapshot in `dir`, if there is one that is whole at both ends (its
/// records are checked as they are read).
pub(super) fn open(dir: &Path) -> Result<Option<Opened>, SnapshotError> {
    let Some((src, head)) = open_file(&dir.join(FILE), MAGIC, Head::LEN, 1 << 20)? else {
        return Ok(None);
    };
    Ok(Some(Opened {
        head: Head::take(&mut Reader::new(&head))?,
        src,
    }))
}

/// The file at `path` of this layout with the magic line `magic`, if there
/// is one that is whole at both ends: it (read through a buffer of
/// `buffer` bytes), and the `head` bytes after the magic line.
pub(super) fn open_file(
    path: &Path,
    magic: &[u8],
    head: u64,
    buffer: usize,
) -> Result<Option<(Source, Vec<u8>)>, SnapshotError> {
    use std::io::{Read, Seek, SeekFrom};
    let failed = |e: std::io::Error| SnapshotError(format!("reading {}: {e}", path.display()));
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    let bad = |what: &str| SnapshotError(what.into());
    let len = file.metadata().map_err(failed)?.len();
    let tail = (END.len() + 8) as u64;
    if len < magic.len() as u64 + tail {
        return Err(bad("not a file of this format"));
    }
    let mut end = vec![0u8; tail as usize];
    file.seek(SeekFrom::Start(len - tail)).map_err(failed)?;
    file.read_exact(&mut end).map_err(failed)?;
    if &end[..END.len()] != END || u64::take(&mut Reader::new(&end[END.len()..]))? != len - tail {
        return Err(bad("incomplete"));
    }
    file.seek(SeekFrom::Start(0)).map_err(failed)?;
    let mut src = Source {
        file: std::io::BufReader::with_capacity(buffer, file),
        left: len - tail,
    };
    if src.bytes(magic.len() as u64)? != magic {
        return Err(bad("not a file of this format"));
    }
    let head = src.bytes(head)?;
    Ok(Some((src, head)))
}

impl Opened {
    /// Every record, decoded on all cores.
    pub fn take(mut self) -> Result<Taken, SnapshotError> {
        let intents = table(&mut self.src, |r: &OperationalIntent| r.id)?;
        let constraints = table(&mut self.src, |r: &Constraint| r.id)?;
        let subscriptions = table(&mut self.src, |r: &Subscription| r.id)?;
        if self.src.left != 0 {
            return Err(SnapshotError(format!(
                "{} bytes after the last table",
                self.src.left
            )));
        }
        Ok(Taken {
            intents,
            constraints,
            subscriptions,
        })
    }
}
