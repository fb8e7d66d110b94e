//! The state snapshot's second tier: the rows changed since the snapshot,
//! in its binary form, a segment at a time, so that a start after a crash
//! decodes few rows' JSON however far the snapshot is behind.
//!
//! A segment holds, for each of the snapshot's tables, the rows noted in
//! `snapshot_changes` after the sequence `from` up to its own: the records
//! of those still there (as they are at its sequence), by id, and the list
//! of every such rowid (a rowid listed without a record: gone). It names the
//! snapshot it extends (schema, sequence, log) and the database it was read
//! from at its sequence (the log's size and newest leaf hash). Segments make
//! a chain: the first starts at the snapshot's sequence, each next one where
//! the one before ended. A start lays the snapshot's records, then each
//! segment's in order, then the rows noted after the chain's end, read as
//! rows; the keeper writes the next snapshot from the same three.
//!
//! Layout (little-endian): the magic line; the snapshot's head (schema,
//! sequence, log size, newest leaf hash), `from` (u64), the segment's head
//! (the same four), the highest id of `snapshot_changes` it holds (u64);
//! per table, the records as a snapshot's table holds them
//! (blocks, each with its SHA-256; the block of no records, count, highest
//! rowid), then the changed rowids, rising: their count (u64), the SHA-256
//! of their bytes, each an i64; then the snapshot's trailer. Written to a
//! temporary name, synced, renamed to `airspace.changes.` and its sequence
//! (20 digits), the folder synced.

use super::snapshot::{self, Changed, Head, Records, Source, Target};
use airspace::snapshot::{Reader, Snap, SnapshotError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

const PREFIX: &str = "airspace.changes.";
const TEMPORARY: &str = "airspace.changes.tmp";
const MAGIC: &[u8] = b"detente airspace changes 1\n";

/// What a segment holds: the changes after `from` up to `at`'s sequence,
/// over the snapshot of `base`.
#[derive(Clone, Debug)]
pub(super) struct SegmentHead {
    pub base: Head,
    pub from: u64,
    pub at: Head,
    /// The highest id of `snapshot_changes` at its sequence: the changes
    /// after it are those of a higher id.
    pub last_change: u64,
}

impl SegmentHead {
    const LEN: u64 = 2 * Head::LEN + 16;

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN as usize);
        self.base.put(&mut out);
        self.from.put(&mut out);
        self.at.put(&mut out);
        self.last_change.put(&mut out);
        out
    }

    fn take(bytes: &[u8]) -> Result<SegmentHead, SnapshotError> {
        let mut r = Reader::new(bytes);
        Ok(SegmentHead {
            base: Head::take(&mut r)?,
            from: u64::take(&mut r)?,
            at: Head::take(&mut r)?,
            last_change: u64::take(&mut r)?,
        })
    }

    /// Whether it extends the snapshot of `base`.
    pub fn extends(&self, base: &Head) -> bool {
        self.base.schema == base.schema && self.base.seq == base.seq && self.base.log == base.log
    }
}

/// A segment's file, its head read and its ends checked.
pub(super) struct Segment {
    pub head: SegmentHead,
    pub path: PathBuf,
    src: Source,
}

impl Segment {
    /// The next table's records as bytes, by id, and its changed rowids.
    pub fn raw(&mut self) -> Result<Changed, String> {
        let mut now = Vec::new();
        snapshot::raw_table(&mut self.src, |rowid, b| {
            now.push((rowid, b.to_vec()));
            Ok(())
        })?;
        let rowids = self.changed_rowids(now.iter().map(|r| r.0))?;
        Ok(Changed { rowids, now })
    }

    /// The next table's records, decoded on all cores, by id, and its
    /// changed rowids.
    pub fn table<T: Snap + Send>(
        &mut self,
        id: impl Fn(&T) -> uuid::Uuid,
    ) -> Result<(Records<T>, HashSet<i64>), String> {
        let records = snapshot::table(&mut self.src, id).map_err(|e| e.to_string())?;
        let rowids = self.changed_rowids(records.rowids.iter().map(|r| r.1))?;
        Ok((records, rowids))
    }

    /// The changed rowids after a table's records: each record's among
    /// them.
    fn changed_rowids(&mut self, held: impl Iterator<Item = i64>) -> Result<HashSet<i64>, String> {
        let rowids: HashSet<i64> = self
            .src
            .rowids()
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        for r in held {
            if !rowids.contains(&r) {
                return Err(format!("the record at rowid {r} is not of a row changed"));
            }
        }
        Ok(rowids)
    }

    /// Checks that nothing follows the last table.
    pub fn end(&self) -> Result<(), String> {
        match self.src.left() {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the last table")),
        }
    }
}

/// The segment files in `dir` by the sequence their names give, rising.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort_unstable();
    Ok(out)
}

fn open(path: &Path) -> Result<Option<Segment>, SnapshotError> {
    // A small buffer: a chain's segments are all open at once.
    let Some((src, head)) = snapshot::open_file(path, MAGIC, SegmentHead::LEN, 64 << 10)? else {
        return Ok(None);
    };
    Ok(Some(Segment {
        head: SegmentHead::take(&head)?,
        path: path.to_path_buf(),
        src,
    }))
}

/// The chain of segments over the snapshot of `base`, opened: the first
/// starting at its sequence, each next one where the one before ended. Any
/// other segment file (of an earlier snapshot, unreadable, after a break)
/// is removed.
pub(super) fn chain(dir: &Path, base: &Head) -> Vec<Segment> {
    let files = match list(dir) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "the state snapshot's changes are not read");
            return Vec::new();
        }
    };
    let mut out: Vec<Segment> = Vec::new();
    let mut stale = Vec::new();
    for (seq, path) in files {
        let end = out.last().map_or(base.seq, |s| s.head.at.seq);
        match open(&path) {
            Ok(Some(s))
                if s.head.extends(base)
                    && s.head.from == end
                    && s.head.at.seq == seq
                    && seq > end
                    && stale.is_empty() =>
            {
                out.push(s)
            }
            Ok(None) => {}
            Ok(Some(_)) => stale.push(path),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "a segment of the state snapshot's changes is unreadable");
                stale.push(path);
            }
        }
    }
    if let Err(e) = remove(dir, &stale) {
        tracing::warn!(error = %e, "removing segments of the state snapshot's changes");
    }
    out
}

/// Removes these segment files, durably.
pub(super) fn remove(dir: &Path, files: &[PathBuf]) -> Result<(), String> {
    let mut removed = false;
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", f.display())),
        }
    }
    if removed {
        snapshot::sync_dir(dir)?;
    }
    Ok(())
}

/// Removes every segment and a temporary one a crash left, durably.
pub(super) fn remove_all(dir: &Path) -> Result<(), String> {
    let mut files: Vec<PathBuf> = list(dir)?.into_iter().map(|f| f.1).collect();
    files.push(dir.join(TEMPORARY));
    remove(dir, &files)
}

/// Writes the segment of `head` into `dir`: for each table, the rows
/// changed (`rowids`) and the records of those still there (`now`, by id).
/// The bytes and records written.
pub(super) fn write(
    dir: &Path,
    head: &SegmentHead,
    changed: [Changed; 3],
) -> Result<(u64, u64), String> {
    let name = format!("{PREFIX}{:020}", head.at.seq);
    let target = Target {
        name: &name,
        temporary: TEMPORARY,
        magic: MAGIC,
        head: head.bytes(),
    };
    snapshot::write_target(dir, &target, |s| {
        for Changed { rowids, now } in changed {
            for (rowid, b) in now {
                s.push(rowid, |out| out.extend_from_slice(&b))?;
            }
            s.end_table()?;
            let mut rowids: Vec<i64> = rowids.into_iter().collect();
            rowids.sort_unstable();
            s.rowids(&rowids)?;
        }
        Ok(())
    })
}

/// Changes laid one after the other, the later over the earlier: every row
/// changed, and the record of each one still there.
pub(super) struct Laying<R> {
    rowids: HashSet<i64>,
    now: HashMap<i64, R>,
}

impl<R> Default for Laying<R> {
    fn default() -> Self {
        Laying {
            rowids: HashSet::new(),
            now: HashMap::new(),
        }
    }
}

impl<R> Laying<R> {
    /// Lays the rows `rowids` changed, as `now` holds those still there.
    pub fn lay(&mut self, rowids: HashSet<i64>, now: impl IntoIterator<Item = (i64, R)>) {
        for r in &rowids {
            self.now.remove(r);
        }
        self.rowids.extend(rowids);
        for (rowid, record) in now {
            self.rowids.insert(rowid);
            self.now.insert(rowid, record);
        }
    }

    /// Rows changed.
    pub fn len(&self) -> usize {
        self.rowids.len()
    }

    /// The rows changed and the records of those still there, by `key`.
    pub fn into_changed<K: Ord>(self, key: impl Fn(&R) -> K) -> (HashSet<i64>, Vec<(i64, R)>) {
        let mut now: Vec<(i64, R)> = self.now.into_iter().collect();
        now.sort_unstable_by_key(|a| key(&a.1));
        (self.rowids, now)
    }
}

impl Laying<Vec<u8>> {
    /// As [`snapshot::merge`] takes them: by id (each encoding starts with
    /// the record's id).
    pub fn into_raw(self) -> Changed {
        let (rowids, now) =
            self.into_changed(|b| b.get(..16).and_then(|i| <[u8; 16]>::try_from(i).ok()));
        Changed { rowids, now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_changes_lay_over_earlier_ones() {
        let mut l: Laying<&str> = Laying::default();
        l.lay([1, 2, 3].into(), [(1, "a1"), (2, "b1")]);
        // Row 1 gone, row 2 changed again, row 4 new.
        l.lay([1, 2, 4].into(), [(2, "b2"), (4, "d1")]);
        assert_eq!(l.len(), 4);
        let (rowids, now) = l.into_changed(|r| *r);
        assert_eq!(rowids, [1, 2, 3, 4].into());
        assert_eq!(now, vec![(2, "b2"), (4, "d1")]);
    }

    #[test]
    fn a_segment_is_read_back_as_written_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = Head {
            schema: 10,
            seq: 5,
            log: (7, [1; 32]),
        };
        let head = SegmentHead {
            base: base.clone(),
            from: 5,
            at: Head {
                schema: 10,
                seq: 9,
                log: (12, [2; 32]),
            },
            last_change: 40,
        };
        let rec = |id: u8| {
            let mut b = vec![id; 16];
            b.extend_from_slice(b"record");
            b
        };
        let changed = [
            Changed {
                rowids: [3, 8, 9].into(),
                now: vec![(9, rec(1)), (3, rec(2))],
            },
            Changed::default(),
            Changed {
                rowids: [4].into(),
                now: vec![],
            },
        ];
        write(dir.path(), &head, changed).unwrap();
        let mut chain = chain(dir.path(), &base);
        assert_eq!(chain.len(), 1);
        let s = &mut chain[0];
        assert_eq!(s.head.from, 5);
        assert_eq!(s.head.at.seq, 9);
        assert_eq!(s.head.last_change, 40);
        let first = s.raw().unwrap();
        assert_eq!(first.rowids, [3, 8, 9].into());
        assert_eq!(first.now, vec![(9, rec(1)), (3, rec(2))]);
        assert!(s.raw().unwrap().rowids.is_empty());
        assert_eq!(s.raw().unwrap().rowids, [4].into());
        s.end().unwrap();

        // Not of this snapshot: not in the chain, and removed.
        let other = Head {
            seq: 4,
            ..base.clone()
        };
        assert!(super::chain(dir.path(), &other).is_empty());
        assert!(list(dir.path()).unwrap().is_empty());

        // A changed byte in a block: refused as it is read.
        let changed = [
            Changed {
                rowids: [3].into(),
                now: vec![(3, rec(2))],
            },
            Changed::default(),
            Changed::default(),
        ];
        write(dir.path(), &head, changed).unwrap();
        let path = list(dir.path()).unwrap()[0].1.clone();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = MAGIC.len() + SegmentHead::LEN as usize + 4 + 8 + 32 + 10;
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let mut chain = super::chain(dir.path(), &base);
        assert!(chain[0].raw().is_err());
    }
}
