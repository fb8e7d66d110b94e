//! An evidence bundle as one file: a POSIX ustar archive (IEEE Std
//! 1003.1-2001, `pax` format's ustar header) of the bundle's folder, as the
//! console hands it out and `detente verify` takes it. Regular files only;
//! a path too long for the header's 100-byte name is split into its
//! 155-byte prefix at a `/`.

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
/// the folder `dir`, each with modification time `mtime_s`.
pub fn write(
    dir: &str,
    files: &[(String, Vec<u8>)],
    mtime_s: u64,
) -> Result<Vec<u8>, ArchiveError> {
    fn octal(field: &mut [u8], n: u64) {
        let s = format!("{n:0width$o}", width = field.len() - 1);
        field[..s.len()].copy_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    for (name, bytes) in files {
        let path = format!("{dir}/{name}");
        let (prefix, name) = split(&path).ok_or_else(|| ArchiveError::PathTooLong(path.clone()))?;
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], bytes.len() as u64);
        octal(&mut h[136..148], mtime_s);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

/// `path` as (prefix, name): the whole path as the name when it fits in
/// 100 bytes, else split at the last `/` that fits both fields.
fn split(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some(("", path));
    }
    path.rmatch_indices('/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(p, n)| p.len() <= 155 && !n.is_empty() && n.len() <= 100)
}

/// The regular files of a ustar archive: (relative path, contents), in
/// order; directories are skipped, anything else refused.
pub fn read(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let bad = |s: String| ArchiveError::Malformed(s);
    let mut files = Vec::new();
    let mut at = 0usize;
    let mut unpacked = 0u64;
    loop {
        let Some(h) = bytes.get(at..at + 512) else {
            return Err(bad(format!("ends inside a header at byte {at}")));
        };
        if h.iter().all(|&b| b == 0) {
            return Ok(files);
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &h[r];
            let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
            std::str::from_utf8(&f[..end])
                .map_err(|_| bad(format!("a header field at byte {at} is not UTF-8")))
        };
        let number = |r: std::ops::Range<usize>, what: &str| -> Result<u64, ArchiveError> {
            let t = field(r)?.trim_matches(|c| c == ' ' || c == '\0');
            u64::from_str_radix(t, 8).map_err(|_| bad(format!("{what} {t:?} is not octal")))
        };
        if &h[257..262] != b"ustar" {
            return Err(bad(format!("no ustar magic in the header at byte {at}")));
        }
        let stored = number(148..156, "the checksum")?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if stored != sum {
            return Err(bad(format!("the header at byte {at} fails its checksum")));
        }
        let (name, prefix) = (field(0..100)?, field(345..500)?);
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let size = number(124..136, "the size")?;
        unpacked = unpacked.saturating_add(size);
        if unpacked > MAX_UNPACKED {
            return Err(bad(format!("unpacks to more than {MAX_UNPACKED} bytes")));
        }
        let start = at + 512;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad(format!("{path}: its {size} bytes run past the end")))?;
        match h[156] {
            b'0' | 0 => {
                let clean = path.trim_start_matches("./");
                if clean.is_empty()
                    || clean.starts_with('/')
                    || clean.split('/').any(|c| c == ".." || c.is_empty())
                {
                    return Err(ArchiveError::BadPath(path));
                }
                files.push((clean.to_string(), bytes[start..end].to_vec()));
            }
            b'5' => {}
            t => {
                return Err(bad(format!(
                    "{path}: entry type {:?} (only regular files and folders)",
                    char::from(t)
                )));
            }
        }
        at = start + (end - start).div_ceil(512) * 512;
    }
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
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|&b| u64::from(b)).sum::<u64>());
    }

    #[test]
    fn damaged_or_escaping_archives_are_refused_with_the_reason() {
        let t = write("d", &[("f".into(), b"x".to_vec())], 0).unwrap();
        let mut flipped = t.clone();
        flipped[0] ^= 1;
        assert!(read(&flipped).unwrap_err().to_string().contains("checksum"));
        assert!(
            read(&t[..700])
                .unwrap_err()
                .to_string()
                .contains("ends inside")
        );
        let escaping = write("..", &[("passwd".into(), b"x".to_vec())], 0).unwrap();
        assert!(matches!(read(&escaping), Err(ArchiveError::BadPath(_))));
        assert!(matches!(
            write("d", &[("x".repeat(101), Vec::new())], 0),
            Err(ArchiveError::PathTooLong(_))
        ));
    }
}
