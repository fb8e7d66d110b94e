//! The operator console in a real browser: Debian's Chromium driven by
//! playwright-core (scripts in crates/console/web/tests/) against real nodes
//! — the demo's two, and one with a local tile source restarted under the
//! console's feet.
//! Screenshots of every view are saved under
//! `$CARGO_TARGET_TMPDIR/console-screenshots/`.
//!
//! Needs Node.js, Chromium (`/usr/bin/chromium`, or `DETENTE_CHROMIUM`) and
//! playwright-core (installed here with `npm ci` in crates/console/web when
//! missing). Without them the tests say they were skipped; with
//! `DETENTE_REQUIRE_BROWSER=1` (CI sets it) they fail instead.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use liaison::MemberSigner;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use test_support::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/web")
}

fn shots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

/// Whether playwright-core is in crates/console/web, after one `npm ci`
/// there if it was not (the tests of this file share it).
fn playwright_installed() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let here = || web().join("node_modules/playwright-core").exists();
        here()
            || (Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(web())
                .status()
                .is_ok_and(|s| s.success())
                && here())
    })
}

/// The browser to drive, or why there is none (the test is then skipped,
/// unless the environment requires a browser).
fn chromium(test: &str) -> Option<PathBuf> {
    let browser = std::env::var_os("DETENTE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = if !node_ok {
        Some("Node.js (node) is not installed".to_string())
    } else if !browser.exists() {
        Some(format!(
            "{} does not exist (apt install chromium)",
            browser.display()
        ))
    } else if !playwright_installed() {
        Some("playwright-core is not installed in crates/console/web (npm ci failed)".to_string())
    } else {
        None
    };
    match missing {
        None => Some(browser),
        Some(why) if std::env::var_os("DETENTE_REQUIRE_BROWSER").is_some() => {
            panic!("{test}: DETENTE_REQUIRE_BROWSER is set but {why}")
        }
        Some(why) => {
            // Straight to the terminal: the test harness would hide eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {why}; set DETENTE_REQUIRE_BROWSER=1 to make this a failure"
            );
            None
        }
    }
}

/// The demo, kept running; stopped (with its nodes) when dropped.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        // SIGINT: the demo stops its two nodes on Ctrl-C.
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn key_of(data: &Path) -> String {
    let out = Command::new(bin())
        .args(["key", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_console_in_a_real_browser_against_the_demo() {
    let Some(browser) = chromium("the_console_in_a_real_browser_against_the_demo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = Command::new(bin())
        .args(["demo", "--keep-running", "--data"])
        .arg(&data)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
    let mut consoles = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("The operator consoles: ") {
            let urls: Vec<String> = rest
                .split_whitespace()
                .filter(|w| w.starts_with("http://"))
                .map(|w| w.trim_end_matches("/console/").to_string())
                .collect();
            consoles = Some((urls[0].clone(), urls[1].clone()));
        }
        if line.starts_with("Keeping both nodes up") {
            break;
        }
    }
    let (alliance, federation) = consoles.expect("the demo prints its consoles' addresses");
    // Keep draining the demo's output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let out_dir = shots();
    let out = Command::new("node")
        .arg(web().join("tests/console.mjs"))
        .current_dir(web())
        .env("ALLIANCE", &alliance)
        .env("FEDERATION", &federation)
        .env("KEYS", data.join("keys"))
        .env("SHOTS", &out_dir)
        .env("CHROMIUM", &browser)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{text}{}\nscreenshots in {}",
        String::from_utf8_lossy(&out.stderr),
        out_dir.display()
    );
    assert!(
        out.status.success() && text.contains("console: all checks passed"),
        "the browser test failed:\n{text}"
    );

    // The bundle the console exported verifies offline.
    let unpacked = dir.path().join("bundle");
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("xf")
        .arg(out_dir.join("evidence.tar"))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(tar.success(), "the exported bundle is a tar archive");
    let folder = std::fs::read_dir(&unpacked)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let verify = |bundle: &Path| {
        Command::new(bin())
            .arg("verify")
            .arg(bundle)
            .arg("--key")
            .arg(key_of(&data.join("alliance")))
            .arg("--peer")
            .arg(key_of(&data.join("federation")))
            .output()
            .unwrap()
    };
    let verified = verify(&folder);
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        report.contains("line.message") && report.contains("line.ack by federation.detente.demo"),
        "the FLASH and Federation's acknowledgement are in the bundle, proven: {report}"
    );
    // `detente verify` takes the downloaded file as it is, too.
    let direct = verify(&out_dir.join("evidence.tar"));
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout),
        report,
        "the same report"
    );
    drop(demo);
}

#[tokio::test]
async fn the_console_draws_local_tiles_and_reconnects_through_a_node_restart() {
    let Some(browser) =
        chromium("the_console_draws_local_tiles_and_reconnects_through_a_node_restart")
    else {
        return;
    };
    // A tiny raster basemap (tests/data/make_mbtiles.py made it).
    let tiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/theatre.mbtiles");
    let mut node = TestNode::start_with(bin(), &["--basemap-mbtiles", tiles.to_str().unwrap()]);
    let admin = token("line-admin", "detente.line.admin");
    let dir = tempfile::tempdir().unwrap();
    let members = node.url("/line/v1/members");
    let register = |name: &str, seed: u8| {
        let s = MemberSigner::from_seed(&[seed; 32]);
        let body = json!({ "key": s.key().to_hex(), "name": name, "role": "line administrator", "spheres": ["direct-line"] });
        let url = members.clone();
        let admin = admin.clone();
        async move {
            let r = test_support::http()
                .post(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    register("Maj. Keller", 5).await;
    let key = dir.path().join("keller.key");
    std::fs::write(&key, format!("{}\n", "05".repeat(32))).unwrap();

    let mut script = Command::new("node")
        .arg(web().join("tests/restart.mjs"))
        .current_dir(web())
        .env("NODE_URL", &node.base)
        .env("KEY", &key)
        .env("SHOTS", shots())
        .env("CHROMIUM", &browser)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_script = script.stdin.take().unwrap();
    let mut transcript = String::new();
    for line in BufReader::new(script.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        transcript.push_str(&line);
        transcript.push('\n');
        match line.as_str() {
            "STOP" => node.kill(),
            "START" => node.start_again(),
            "CHANGE" => register("Lt. Nowak", 6).await,
            _ => continue,
        }
        writeln!(to_script, "done").unwrap();
    }
    let status = script.wait().unwrap();
    eprintln!("{transcript}");
    assert!(
        status.success() && transcript.contains("restart: all checks passed"),
        "the browser test failed:\n{transcript}"
    );
}
