//! The workspace's dependencies point down the data flow, never up
//! (STYLE.md): pure crates depend on no crate of ours (but liaison → tlog),
//! node on the pure crates, store and api on node (api also on console,
//! the embedded web assets), detente on all; test-support only as a
//! dev-dependency. No SQL outside store, no HTTP outside api and the
//! binary, no runtime in the pure crates.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;

#[test]
fn no_crate_depends_upwards() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed: HashMap<&str, &[&str]> = HashMap::from([
        ("airspace", &[][..]),
        ("tlog", &[][..]),
        ("liaison", &["tlog"][..]),
        ("node", &["airspace", "tlog", "liaison"][..]),
        ("store", &["node", "airspace", "tlog", "liaison"][..]),
        ("console", &[][..]),
        (
            "api",
            &["node", "airspace", "tlog", "liaison", "console"][..],
        ),
        (
            "client",
            &["api", "node", "airspace", "tlog", "liaison", "console"][..],
        ),
        (
            "test-support",
            &[
                "tlog", "client", "api", "node", "airspace", "liaison", "console",
            ][..],
        ),
        (
            "detente",
            &[
                "api",
                "client",
                "store",
                "node",
                "airspace",
                "tlog",
                "liaison",
                "test-support",
            ][..],
        ),
    ]);
    // Outside crates that would put a layer's work in the wrong room: SQL
    // only in store, HTTP only in api (and the binary that wires it).
    let forbidden: HashMap<&str, &[&str]> = HashMap::from([
        (
            "airspace",
            &["sqlx", "axum", "hyper", "reqwest", "tokio"][..],
        ),
        ("tlog", &["sqlx", "axum", "hyper", "reqwest", "tokio"][..]),
        (
            "liaison",
            &["sqlx", "axum", "hyper", "reqwest", "tokio"][..],
        ),
        ("node", &["sqlx", "axum", "hyper", "reqwest"][..]),
        ("store", &["axum", "hyper", "reqwest"][..]),
        ("api", &["sqlx", "reqwest"][..]),
        ("client", &["sqlx", "axum"][..]),
    ]);
    let ours: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let ok = allowed
            .get(name)
            .unwrap_or_else(|| panic!("crate {name} has no place in the layering table"));
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            // The test helpers may serve any crate's tests, and the API's
            // in-process router tests run over a real store.
            if d["kind"] == "dev" && (dep == "test-support" || (name == "api" && dep == "store")) {
                continue;
            }
            if ours.iter().any(|o| o == dep) {
                assert!(ok.contains(&dep), "{name} must not depend on {dep}");
            }
            if d["kind"].is_null() {
                let banned = forbidden.get(name).copied().unwrap_or_default();
                assert!(!banned.contains(&dep), "{name} must not depend on {dep}");
            }
        }
    }
}
