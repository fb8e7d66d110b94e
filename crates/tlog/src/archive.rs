//! An evidence bundle as one file: a POSIX ustar archive (IEEE Std
//! 1003.1-2001) of the bundle's folder, as the console hands it out and
//! `detente verify` takes it, written and read by the `tar` crate. Regular
//! files only; a path too long for the header's 100-byte name is split
//! into its 155-byte prefix at a `/`. Reading is strict: header
//! checksums, regular files and folders only, no absolute or escaping
//! paths, at most [`MAX_UNPACKED`] bytes.

use std::io::Read as _;

/// Most bytes an archive may unpack to (a bundle is far smaller).
pub const MAX_UNPACKED: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a ustar archive: {0}")]
    Malformed(String),
    #[error("{0}: a path an archive may not hold (absolute, empty, or leaving its folder)")]
    BadPath(String),
    #[error("{0}: too long for a ustar header (at most 155 bytes of folders and 100 of name)")]
    PathTooLong(String),
}

/// The archive of `files` (paths relative to `dir`, `/`-separated) under
/// the folder `dir`, each with modification time `mtime_s`, mode 0644 and
/// owner 0: the same files give the same bytes.
pub fn write(
    dir: &str,
    files: &[(String, Vec<u8>)],
    mtime_s: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let path = format!("{dir}/{name}");
        if !safe(&path) {
            return Err(ArchiveError::BadPath(path));
        }
        let mut h = tar::Header::new_ustar();
        h.set_path(&path)
            .map_err(|_| ArchiveError::PathTooLong(path.clone()))?;
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime_s);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, bytes.as_slice())
            .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    }
    b.into_inner()
        .map_err(|e| ArchiveError::Malformed(e.to_string()))
}

/// Whether `path` stays inside its folder: relative, no empty or `..`
/// component.
fn safe(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.split('/').any(|c| c == ".." || c.is_empty())
}

/// The regular files of a ustar archive: (relative path, contents), in
/// order; folders are skipped, anything else refused.
pub fn read(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let bad = |s: String| ArchiveError::Malformed(s);
    let mut a = tar::Archive::new(bytes);
    let mut files = Vec::new();
    let mut unpacked = 0u64;
    let entries = a.entries().map_err(|e| bad(e.to_string()))?;
    for e in entries {
        let mut e = e.map_err(|e| bad(e.to_string()))?;
        // POSIX ustar, or GNU tar's own flavour of it.
        if e.header().as_ustar().is_none() && e.header().as_gnu().is_none() {
            return Err(bad("an entry without the ustar magic".into()));
        }
        let raw = String::from_utf8(e.path_bytes().into_owned())
            .map_err(|_| bad("a path that is not UTF-8".into()))?;
        let path = raw.trim_start_matches("./").to_string();
        match e.header().entry_type() {
            tar::EntryType::Regular => {}
            tar::EntryType::Directory => continue,
            t => {
                return Err(bad(format!(
                    "{raw}: entry type {:?} (only regular files and folders)",
                    char::from(t.as_byte())
                )));
            }
        }
        if !safe(&path) {
            return Err(ArchiveError::BadPath(raw));
        }
        let size = e.size();
        unpacked = unpacked.saturating_add(size);
        if unpacked > MAX_UNPACKED {
            return Err(bad(format!("unpacks to more than {MAX_UNPACKED} bytes")));
        }
        let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
        e.read_to_end(&mut data)
            .map_err(|err| bad(format!("{raw}: {err}")))?;
        if data.len() as u64 != size {
            return Err(bad(format!("{raw}: its {size} bytes run past the end")));
        }
        files.push((path, data));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn what_is_written_reads_back_long_paths_included() {
        let dir = format!("evidence-{}", "a".repeat(100));
        let files = vec![
            ("checkpoint".to_string(), b"note\n".to_vec()),
            ("000123.entry".to_string(), vec![0u8; 700]),
            ("empty".to_string(), Vec::new()),
        ];
        let t = write(&dir, &files, 1_700_000_000).unwrap();
        assert_eq!(&t[257..263], b"ustar\0");
        let back = read(&t).unwrap();
        let expected: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(n, b)| (format!("{dir}/{n}"), b.clone()))
            .collect();
        assert_eq!(back, expected);
        // The checksum is the header's sum with its own field as spaces.
        let mut h = t[..512].to_vec();
        let field = std::str::from_utf8(&h[148..156]).unwrap();
        let stored = u64::from_str_radix(field.trim_matches(|c| c == '\0' || c == ' '), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|&b| u64::from(b)).sum::<u64>());
    }

    #[test]
    fn damaged_or_escaping_archives_are_refused_with_the_reason() {
        let t = write("d", &[("f".into(), b"x".to_vec())], 0).unwrap();
        let mut flipped = t.clone();
        flipped[0] ^= 1;
        assert!(read(&flipped).unwrap_err().to_string().contains("checksum"));
        assert!(read(&t[..513]).is_err(), "cut inside its data");
        assert!(matches!(
            write("..", &[("passwd".into(), b"x".to_vec())], 0),
            Err(ArchiveError::BadPath(_))
        ));
        // An archive made elsewhere that leaves its folder.
        let mut escaping = t.clone();
        escaping[..100].fill(0);
        escaping[..9].copy_from_slice(b"../passwd");
        escaping[148..156].copy_from_slice(b"        ");
        let sum: u64 = escaping[..512].iter().map(|&b| u64::from(b)).sum();
        escaping[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert!(matches!(read(&escaping), Err(ArchiveError::BadPath(_))));
        assert!(matches!(
            write("d", &[("x".repeat(101), Vec::new())], 0),
            Err(ArchiveError::PathTooLong(_))
        ));
    }
}
