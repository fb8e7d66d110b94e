//! Builds the console's front end with npm (`web/package.json` and its lock
//! file) into `OUT_DIR/console` and generates the table of embedded assets.
//! Needs Node.js and npm; `npm ci` runs only when `node_modules` is missing or
//! older than the lock file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let web =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("web");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    for p in ["src", "build.mjs", "package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    let lock = web.join("package-lock.json");
    let installed = web.join("node_modules").join(".package-lock.json");
    if modified(&installed) < modified(&lock) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&web),
            "npm ci",
        );
    }
    let dist = out.join("console");
    run(
        Command::new("node")
            .arg("build.mjs")
            .arg(&dist)
            .current_dir(&web),
        "node build.mjs",
    );

    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut table = String::from("pub static ASSETS: &[(&str, &str, u64, &[u8])] = &[\n");
    for (name, path) in files {
        let bytes = std::fs::read(&path).expect("reading a built asset");
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

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn run(c: &mut Command, what: &str) {
    match c.status() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "{what} failed ({s}): the console is built with Node.js and npm from crates/console/web"
        ),
        Err(e) => panic!(
            "{what}: {e}. Building Detente needs Node.js (18 or later) and npm for the console (Debian: apt install nodejs npm)"
        ),
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for e in std::fs::read_dir(dir).expect("reading the built console") {
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
        _ => "application/octet-stream",
    }
}

/// FNV-1a, for ETags (changes whenever the bytes do; not a security hash).
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}
