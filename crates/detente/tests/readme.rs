//! The README's API examples work as written: its `sh` blocks under "Using
//! the API" run in bash against the binary under test (on a free port, in a
//! temporary folder), and their output is checked.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

/// Runs the `sh` blocks of a README section in bash against the binary
/// under test, with ports 8080 and 8081 replaced by free ones and /tmp by a
/// fresh folder; returns stdout, or fails with everything there is to see.
fn run_section(title: &str) -> (String, std::path::PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split(&format!("## {title}"))
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut script = String::from("set -euo pipefail\n");
    for block in section.split("```sh\n").skip(1) {
        script.push_str(block.split("```").next().unwrap());
    }
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (p1, p2, p3, p4) = (free(), free(), free(), free());
    let tmp = std::env::temp_dir().join(format!("detente-readme-{p1}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let script = script
        .replace("cargo build -q -p detente && ", "")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{p1}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{p2}"))
        .replace("alliance:8080", &format!("alliance:{p1}"))
        .replace("federation:8081", &format!("federation:{p2}"))
        .replace("8443", &p3.to_string())
        .replace("8444", &p4.to_string())
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
        .env_remove("DETENTE_TOKEN")
        .env_remove("DETENTE_NODE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mut logs = String::new();
    for f in std::fs::read_dir(&tmp).unwrap().flatten() {
        if f.path().extension().is_some_and(|e| e == "log") {
            logs.push_str(&format!(
                "--- {}\n{}",
                f.path().display(),
                std::fs::read_to_string(f.path()).unwrap_or_default()
            ));
        }
    }
    assert!(
        out.status.success(),
        "script failed\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}\n{logs}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, tmp)
}

#[test]
fn readme_curl_examples_work_as_written() {
    let (stdout, tmp) = run_section("Using the API");
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

#[test]
fn readme_line_examples_work_as_written() {
    let (stdout, tmp) = run_section("The line between two nodes");
    assert!(
        stdout.contains("peer federation.example pinned"),
        "{stdout}"
    );
    assert!(
        stdout.contains("IN  FLASH") && stdout.contains("ack due in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("OUT FLASH") && stdout.contains("ack accept by Gen. Sokolov"),
        "{stdout}"
    );
    assert!(
        stdout.contains("accreditation") && stdout.contains("revoked"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
