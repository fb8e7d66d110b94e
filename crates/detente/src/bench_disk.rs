//! `detente bench`'s disk probe: how long a commit's sync takes on the disk
//! under the store's folder, alone and beside a checkpoint-like writer.
//!
//! A create is answered only once its batch's WAL frames are synced, and
//! the store's WAL is checkpointed into the database file (random page
//! writes, then a sync of that file) while commits go on. Whatever the node
//! does, a create's p99 cannot be below the p99 of such a sync on the disk
//! it runs on; the probe measures that floor with plain files, no SQLite and
//! no node, so that the create measurements can be read against it.
//!
//! The commit side is the friendliest case for the disk: 64 KiB (a batch of
//! ~30 creates' frames) overwritten in a file written and synced beforehand
//! (no block allocation, no size change), then `fdatasync`, back to back.
//! The checkpoint side writes [`CHECKPOINT_PAGES`] random 4 KiB pages of a
//! second file and syncs it every [`CHECKPOINT_EVERY`] — the store's
//! checkpoint cadence under load, and about the distinct pages one pass
//! copies at 10,000 creates/s (a fifth of the 250 pages a 50 ms pass
//! copied, the store checkpointing every 10 ms).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bytes one commit writes before its sync.
const COMMIT_BYTES: usize = 64 * 1024;
/// Size of each probe file (written whole before measuring).
const FILE_BYTES: u64 = 32 * 1024 * 1024;
const PAGE: u64 = 4096;
/// Pages one checkpoint-like pass writes at random before its sync.
pub const CHECKPOINT_PAGES: usize = 50;
/// How often a checkpoint-like pass starts (the store's checkpoint cadence).
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);

/// Sync latencies in microseconds, sorted.
pub struct DiskProbe {
    pub alone: Vec<u64>,
    pub beside_checkpoints: Vec<u64>,
    /// Checkpoint-like passes run during the second phase, and their
    /// syncs' latencies (µs, sorted).
    pub checkpoint_syncs: Vec<u64>,
}

/// A file of [`FILE_BYTES`] written and synced, so that later writes
/// overwrite allocated blocks.
fn filled(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let chunk = vec![0x5au8; 1024 * 1024];
    let mut at = 0;
    while at < FILE_BYTES {
        f.write_all_at(&chunk, at)?;
        at += chunk.len() as u64;
    }
    f.sync_all()?;
    Ok(f)
}

/// Commit-like writes and syncs, back to back, for `time`; each sync's
/// latency (write and `fdatasync`) in µs.
fn commits(f: &File, time: Duration, at: &mut u64) -> std::io::Result<Vec<u64>> {
    let buf = vec![0xa5u8; COMMIT_BYTES];
    let mut lat = Vec::new();
    let end = Instant::now() + time;
    while Instant::now() < end {
        if *at + COMMIT_BYTES as u64 > FILE_BYTES {
            *at = 0;
        }
        let t = Instant::now();
        f.write_all_at(&buf, *at)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u64);
        *at += COMMIT_BYTES as u64;
    }
    lat.sort_unstable();
    Ok(lat)
}

/// Checkpoint-like passes until `stop`; each pass's sync latency in µs.
fn checkpoints(f: &File, stop: &AtomicBool, seed: u64) -> std::io::Result<Vec<u64>> {
    let page = vec![0x3cu8; PAGE as usize];
    let pages = FILE_BYTES / PAGE;
    let mut rng = seed | 1;
    let mut lat = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..CHECKPOINT_PAGES {
            // xorshift64: a page anywhere in the file.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            f.write_all_at(&page, (rng % pages) * PAGE)?;
        }
        let t = Instant::now();
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u64);
        next += CHECKPOINT_EVERY;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    lat.sort_unstable();
    Ok(lat)
}

/// Runs both phases in `dir` (half of `time` each) and removes its files.
pub fn run(dir: &Path, time: Duration) -> std::io::Result<DiskProbe> {
    std::fs::create_dir_all(dir)?;
    let (wal_path, db_path) = (dir.join("probe-commits"), dir.join("probe-checkpoints"));
    let result = (|| {
        let wal = filled(&wal_path)?;
        let db = filled(&db_path)?;
        let half = time / 2;
        let mut at = 0;
        let alone = commits(&wal, half, &mut at)?;
        let stop = Arc::new(AtomicBool::new(false));
        let checkpointer = {
            let stop = stop.clone();
            std::thread::spawn(move || checkpoints(&db, &stop, 0x9e37_79b9_7f4a_7c15))
        };
        let beside = commits(&wal, half, &mut at);
        stop.store(true, Ordering::Relaxed);
        let checkpoint_syncs = checkpointer
            .join()
            .map_err(|_| std::io::Error::other("the checkpoint-like thread panicked"))??;
        Ok(DiskProbe {
            alone,
            beside_checkpoints: beside?,
            checkpoint_syncs,
        })
    })();
    let _ = std::fs::remove_file(&wal_path);
    let _ = std::fs::remove_file(&db_path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_phases_measure_syncs_and_leave_no_files() {
        let dir = std::env::temp_dir().join(format!("detente-disk-probe-{}", std::process::id()));
        let p = run(&dir, Duration::from_millis(400)).expect("probe");
        assert!(!p.alone.is_empty() && !p.beside_checkpoints.is_empty());
        assert!(!p.checkpoint_syncs.is_empty(), "a checkpoint-like pass ran");
        assert!(p.alone.windows(2).all(|w| w[0] <= w[1]), "sorted");
        assert!(!dir.join("probe-commits").exists() && !dir.join("probe-checkpoints").exists());
        let _ = std::fs::remove_dir(&dir);
    }
}
