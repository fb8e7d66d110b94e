//! The README's API examples work as written: its `sh` blocks under "Using
//! the API" run in bash against the binary under test (on a free port, in a
//! temporary folder), and their output is checked.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

#[test]
fn readme_curl_examples_work_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("## Using the API")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut script = String::from("set -euo pipefail\n");
    for block in section.split("```sh\n").skip(1) {
        script.push_str(block.split("```").next().unwrap());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = std::env::temp_dir().join(format!("detente-readme-{port}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let script = script
        .replace("cargo build -q -p detente && ", "")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("/tmp/", &format!("{}/", tmp.display()));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_detente")).parent().unwrap();
    let mut path = std::ffi::OsString::from(bin_dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&root)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(tmp.join("detente-try.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "script failed\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- node log\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"state\":\"Accepted\""), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.trim() == "409"),
        "the keyless write is refused: {stdout}"
    );
    assert!(stdout.contains("\"kind\":\"intent-intent\""), "{stdout}");
    assert!(
        stdout.contains("detente_live_operational_intents 1"),
        "one intent left after the delete: {stdout}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
