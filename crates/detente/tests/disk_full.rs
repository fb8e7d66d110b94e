//! A node whose disk fills up: its data folder is a
//! small tmpfs; a file of the test's own then takes every free byte. Writes
//! must then be refused — never acknowledged without being on disk — while
//! the node stays up and keeps answering reads; once space is freed it takes
//! writes again, and after a SIGKILL and restart every acknowledged write is
//! there and its log verifies against its signed checkpoint.
//!
//! Mounting a tmpfs needs root: elsewhere the test says it was skipped,
//! unless `DETENTE_REQUIRE_TMPFS` is set (CI sets it), which makes that a
//! failure.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;
use test_support::*;

const SC: &str = "utm.strategic_coordination";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

async fn create(c: &reqwest::Client, base: &str, tok: &str, i: usize) -> (String, u16) {
    let id = new_id();
    // Each intent on its own square: no key is needed.
    let lat = 10.0 + (i as f64) * 0.05;
    let r = c
        .put(format!("{base}/dss/v1/operational_intent_references/{id}"))
        .bearer_auth(tok)
        .json(&intent_body(square(lat, 20.0, 0.001), &[], "Accepted"))
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    (id, r.map(|r| r.status().as_u16()).unwrap_or(0))
}

fn run(args: &[&str]) -> (bool, String) {
    run_cli(bin(), args, &[])
}

#[tokio::test]
async fn a_full_disk_refuses_writes_loses_nothing_and_recovers() {
    let Some(fs) = Tmpfs::mount(32, "a_full_disk_refuses_writes_loses_nothing_and_recovers") else {
        return;
    };
    let data = fs.path().join("data");
    let mut node = TestNode::start_in(bin(), &data, &[]);
    let c = test_support::http();
    let tok = token("uss-full", SC);
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let (id, s) = create(&c, &node.url(""), &tok, i).await;
        assert_eq!(s, 201, "before the disk fills");
        acknowledged.push(id);
    }

    // The disk fills: writes are refused, none is acknowledged, reads go on.
    // They come all at once, so that the writer decides batches while the
    // one before is being synced: one that failed takes the next with it.
    // SQLite may still have room: a WAL that started over rewrites blocks
    // it already has. Rounds of 20 go on until one is refused (a round's
    // frames are few when it commits as one or two transactions).
    let filler = fill(fs.path());
    let (mut refused, mut sent) = (0, 0);
    for round in 0..10 {
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..20 {
            let (c, url, tok) = (c.clone(), node.url(""), tok.clone());
            writes.spawn(async move { create(&c, &url, &tok, 100 + round * 20 + i).await });
        }
        sent += 20;
        while let Some(done) = writes.join_next().await {
            let (id, s) = done.unwrap();
            if s == 201 {
                // Only if it really is on disk.
                acknowledged.push(id);
            } else {
                assert!(
                    s >= 500,
                    "a full disk is the node's trouble, not the client's: {s}"
                );
                refused += 1;
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(
        refused > 0,
        "with the disk full some write must have been refused"
    );
    eprintln!(
        "disk full: {refused} of {sent} writes refused, {} taken",
        sent - refused
    );
    let health = c.get(node.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the node stays up");
    let first = c
        .get(node.url(&format!(
            "/dss/v1/operational_intent_references/{}",
            acknowledged[0]
        )))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200, "and keeps answering reads");

    // Space again: writes are taken again.
    std::fs::remove_file(&filler).unwrap();
    for i in 40..60 {
        let mut status = 0;
        for _ in 0..50 {
            let (id, s) = create(&c, &node.url(""), &tok, i).await;
            status = s;
            if s == 201 {
                acknowledged.push(id);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 201, "writes are taken again once there is space");
    }

    // SIGKILL and restart: every acknowledged write is there.
    node.restart();
    let c = test_support::http(); // no pooled connection to the killed process
    let mut missing = Vec::new();
    for (n, id) in acknowledged.iter().enumerate() {
        let r = c
            .get(node.url(&format!("/dss/v1/operational_intent_references/{id}")))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            missing.push(n);
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {missing:?} of {}",
        acknowledged.len()
    );
    // The log holds exactly the acknowledged changes (one entry each: the
    // intent with its implicit subscription) and verifies against its
    // checkpoint.
    let mut size = 0;
    for _ in 0..50 {
        let cp = get_text(&node.url("/log/checkpoint")).await;
        size = cp.lines().nth(1).unwrap().parse::<usize>().unwrap();
        if size >= acknowledged.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(size, acknowledged.len(), "no entry without its change");
    let key = get_text(&node.url("/log/key")).await;
    let out = std::env::temp_dir().join(format!("detente-full-bundle-{}", new_id()));
    let (ok, text) = run(&[
        "evidence",
        "export",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--all",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["verify", out.to_str().unwrap(), "--key", key.trim()]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("verified {size} entries")), "{text}");
    let _ = std::fs::remove_dir_all(&out);
    drop(node);
}
