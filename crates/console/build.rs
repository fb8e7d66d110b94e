//! Embeds the console: our own sources (`web/src/`) as they are and the
//! third-party assets (`web/vendor/`: Leaflet and the Natural Earth basemap,
//! committed as `web/build.mjs` builds them from the npm lock file) — a
//! table of every file with its content type and ETag. Needs neither
//! Node.js nor the npm registry; CI checks that `vendor/` is exactly what
//! the lock file builds (`.ci/console-vendor`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let web =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("web");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let mut files = Vec::new();
    for dir in ["src", "vendor"] {
        let root = web.join(dir);
        println!("cargo:rerun-if-changed={}", root.display());
        collect(&root, &root, &mut files);
    }
    files.sort();
    for w in files.windows(2) {
        assert!(
            w[0].0 != w[1].0,
            "{} is both in web/src and web/vendor",
            w[0].0
        );
    }
    let mut table = String::from("pub static ASSETS: &[(&str, &str, u64, &[u8])] = &[\n");
    for (name, path) in files {
        let bytes = std::fs::read(&path).expect("reading a console asset");
        let _ = writeln!(
            table,
            "    ({name:?}, {:?}, {}, include_bytes!({:?})),",
            content_type(&name),
            fnv(&bytes),
            path.display().to_string()
        );
    }
    table.push_str("];\n");
    std::fs::write(out.join("assets.rs"), table).expect("writing assets.rs");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for e in std::fs::read_dir(dir).expect("reading the console's assets") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            let name = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((name, p));
        }
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// FNV-1a, for ETags (changes whenever the bytes do; not a security hash).
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}
