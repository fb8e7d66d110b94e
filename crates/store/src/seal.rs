//! The embedded store's seal: the newest checkpoint this node signed, kept
//! as a file beside the database (`last-checkpoint`) and replaced, durably,
//! before a new checkpoint is published. Peers and witnesses hold what was
//! published, so the seal is what the node must be able to continue: at
//! open, the seal must verify with the node key, the database's log must
//! reach its size and have its root there, and the database's own newest
//! checkpoint must verify with the node key too. A database emptied,
//! deleted, rolled back (a lost WAL, an older copy) or written under
//! another key fails one of these, and the node refuses to start instead of
//! signing a history that contradicts what others hold.

use node::StoreError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The seal's file name in the data folder.
pub const FILE: &str = "last-checkpoint";

/// What to do when a data folder cannot show that it continues its log.
pub const RECOVERY: &str = "Peers and witnesses may hold checkpoints this node signed, so it must not \
start on a log that does not continue them. Restore the whole data folder (node.key, detente.db and \
last-checkpoint together) from a backup, or start over as a new node: move this folder away, start \
on an empty one (a new node key, an empty log), and have every peer run `detente peer add` with the \
new key.";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Replaces the seal with `note`, durably: written beside, synced, renamed
/// over the old one, and the folder synced.
pub fn write(dir: &Path, note: &str) -> Result<(), StoreError> {
    let fail = |what: &str, e: std::io::Error| {
        StoreError::Failed(format!("{what} {}: {e}", path(dir).display()))
    };
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| fail("writing", e))?;
    f.write_all(note.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| fail("writing", e))?;
    drop(f);
    std::fs::rename(&tmp, path(dir)).map_err(|e| fail("replacing", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("syncing the folder of", e))
}

/// The seal, if the folder has one.
pub fn read(dir: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read_to_string(path(dir)) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Failed(format!(
            "reading {}: {e}",
            path(dir).display()
        ))),
    }
}

/// The size and root of a checkpoint note signed by one of `keys`, or why
/// not.
pub fn open(
    note: &str,
    keys: &[tlog::Verifier],
    what: &str,
) -> Result<(u64, tlog::Hash), StoreError> {
    let refuse = |why: String| StoreError::Failed(format!("{what} {why}. {RECOVERY}"));
    let (n, _) = tlog::note::open(note.as_bytes(), keys).map_err(|e| {
        refuse(format!(
            "is not signed by this node's key ({e}): node.key was replaced or the file was"
        ))
    })?;
    let c = tlog::Checkpoint::parse(&n.text)
        .map_err(|e| refuse(format!("is not a checkpoint ({e})")))?;
    Ok((c.size, c.root))
}

/// Refuses a log of `size` entries whose root at the sealed size is not
/// the sealed root (`root_at` computes it; only called when the log is
/// long enough).
pub async fn check<F, Fut>(
    sealed: (u64, tlog::Hash),
    size: u64,
    root_at: F,
) -> Result<(), StoreError>
where
    F: FnOnce(u64) -> Fut,
    Fut: std::future::Future<Output = Result<tlog::Hash, StoreError>>,
{
    let (at, root) = sealed;
    if size < at {
        return Err(StoreError::Failed(format!(
            "the database holds a log of {size} entries, but this node signed a checkpoint of \
             {at} (in {FILE}): the database was emptied, deleted, replaced by an older copy, or \
             lost its write-ahead log. {RECOVERY}"
        )));
    }
    if root_at(at).await? != root {
        return Err(StoreError::Failed(format!(
            "the database's log at {at} entries is not the one this node signed a checkpoint of \
             (in {FILE}): it holds another history. {RECOVERY}"
        )));
    }
    Ok(())
}
