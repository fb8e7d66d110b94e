//! `detente serve` as an operator meets it: no configuration at all, a config
//! file, the expiry sweeper, `--help`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use reqwest::Client;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use test_support::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

both_backends! {
#[tokio::test]
async fn serve_without_configuration_creates_its_data_folder_and_answers() {
    let dir = tempfile_dir();
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("detente listening on ")
        .unwrap()
        .trim()
        .to_string();
    let h: Value = Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert!(
        dir.join("detente-data").join("detente.db").exists(),
        "the default data folder is created"
    );
    // With no key configured, the DSS refuses everyone rather than trusting anyone.
    let r = Client::new()
        .post(format!("{base}/dss/v1/operational_intent_references/query"))
        .bearer_auth(token("x", "utm.strategic_coordination"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("detente-serve-{}", new_id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

both_backends! {
#[tokio::test]
async fn a_config_file_is_read_and_ended_intents_are_swept() {
    let dir = tempfile_dir();
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        "expiry_sweep_seconds = 1\nexpiry_grace_seconds = 0\nmax_vertices = 5\n",
    )
    .unwrap();
    let node = TestNode::start_with(bin(), &["--config", cfg.to_str().unwrap()]);
    let t = token("uss1", "utm.strategic_coordination");
    // max_vertices = 5 from the file.
    let six = polygon_volume(
        &[
            (0.0, 0.0),
            (0.0, 0.01),
            (0.005, 0.015),
            (0.01, 0.01),
            (0.01, 0.0),
            (0.005, -0.005),
        ],
        (0.0, 100.0),
        0,
        60,
    );
    let r = Client::new()
        .put(node.url(&format!(
            "/dss/v1/operational_intent_references/{}",
            new_id()
        )))
        .bearer_auth(&t)
        .json(&intent_body(six, &[], "Accepted"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // An intent ending in 2 s disappears once ended.
    let id = new_id();
    let short = polygon_volume(&[(0.0, 0.0), (0.0, 0.01), (0.01, 0.01)], (0.0, 100.0), 0, 2);
    let r = Client::new()
        .put(node.url(&format!("/dss/v1/operational_intent_references/{id}")))
        .bearer_auth(&t)
        .json(&intent_body(short, &[], "Accepted"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = node.url(&format!("/dss/v1/operational_intent_references/{id}"));
    let gone = eventually(Duration::from_secs(10), || {
        let url = url.clone();
        let t = t.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                Client::new()
                    .get(url)
                    .bearer_auth(t)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .join()
        .unwrap()
            == 404
    });
    assert!(gone, "the sweeper removes ended intents");
    let _ = std::fs::remove_dir_all(&dir);
}
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["demo", "--help"],
        vec!["bench", "--help"],
        vec!["migrate", "--help"],
    ] {
        let out = Command::new(bin()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage"), "{args:?}: {text}");
    }
    let out = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--data",
        "--listen",
        "--peer-listen",
        "--jwt-public-key",
        "--jwt-audience",
        "--database-url",
        "--database-schema",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}");
    }
}

#[test]
fn the_demo_runs_to_the_end() {
    let out = Command::new(bin()).arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("409 key check failed"));
    // Federation's node refuses BRAVO for want of the key to Alliance's ALPHA, held there as a copy.
    assert!(
        text.contains(
            "missing operational intent a1a10000 managed by peer:alliance.detente.demo:alliance-uss"
        ),
        "{text}"
    );
    assert!(text.contains("conflicts now, on both nodes: 0"), "{text}");
    assert!(
        text.contains("activating BRAVO now → 409 activation_held"),
        "{text}"
    );
    assert!(text.contains("412"));
    assert!(
        text.contains("verified 6 entries"),
        "ALPHA's two versions, their sharing with Federation and Federation's receipts are exported and verified: {text}"
    );
    // The line between the two nodes.
    assert!(text.contains("acknowledged by Gen. Sokolov"), "{text}");
    assert!(
        text.contains("403 not_accredited") && text.contains("revoked at"),
        "{text}"
    );
    assert!(text.contains("the mission was closed at"), "{text}");
    assert!(
        text.contains("line.receipt by federation.detente.demo")
            && text.contains("line.ack by federation.detente.demo")
            && text.contains("verified 4 entries"),
        "the FLASH, the peer's receipt and acknowledgement are exported and verified: {text}"
    );
}

both_backends! {
#[tokio::test]
async fn clients_over_their_rate_limit_get_429_and_others_do_not() {
    let dir = tempfile_dir();
    let cfg = dir.join("node.toml");
    std::fs::write(&cfg, "rate_limit_per_second = 1\nrate_limit_burst = 3\n").unwrap();
    let node = TestNode::start_with(bin(), &["--config", cfg.to_str().unwrap()]);
    let (greedy, other) = (
        token("greedy", "utm.strategic_coordination"),
        token("other", "utm.strategic_coordination"),
    );
    let url = node.url("/dss/v1/uss_availability/x");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = Client::new()
            .get(&url)
            .bearer_auth(&greedy)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "rate_limited");
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let r = Client::new()
        .get(&url)
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another client has its own bucket");
    let _ = std::fs::remove_dir_all(&dir);
}
}

both_backends! {
#[tokio::test]
async fn a_jwks_file_verifies_tokens_by_kid() {
    let node = TestNode::start_raw(
        bin(),
        &[
            "--jwt-jwks",
            keys_dir().join("test-jwks.json").to_str().unwrap(),
        ],
    );
    let r = Client::new()
        .get(node.url("/dss/v1/uss_availability/x"))
        .bearer_auth(token("uss1", "utm.strategic_coordination"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let wrong = TokenSpec {
        signer: Signer::Other,
        ..TokenSpec::new("uss1", "utm.strategic_coordination")
    }
    .mint();
    let r = Client::new()
        .get(node.url("/dss/v1/uss_availability/x"))
        .bearer_auth(wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
}
