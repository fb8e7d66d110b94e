//! The evidence log over real processes: entries and checkpoints verify with
//! the node's key, proofs check out, `detente key` prints the same key, and
//! a SIGKILL under load leaves no change without its entry and no entry
//! without its change.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

async fn text(url: String) -> String {
    get_text(&url).await
}

async fn json_get(url: String) -> Value {
    let r = test_support::http().get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

async fn checkpoint(node: &TestNode, key: &tlog::Verifier) -> (u64, tlog::Hash, String) {
    log_checkpoint(node, key).await
}

both_backends! {
#[tokio::test]
async fn log_endpoints_serve_verifiable_entries_checkpoints_and_proofs() {
    let node = TestNode::start(bin());
    let vkey = text(node.url("/log/key")).await;
    let key = tlog::Verifier::parse(vkey.trim()).unwrap();
    let out = std::process::Command::new(bin())
        .arg("key")
        .arg("--data")
        .arg(&node.data)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        vkey.trim(),
        "detente key prints the served key"
    );
    let t = token("alliance", "utm.strategic_coordination");
    for i in 0..5 {
        let r = test_support::http()
            .put(node.url(&format!(
                "/dss/v1/operational_intent_references/{}",
                new_id()
            )))
            .bearer_auth(&t)
            .json(&intent_body(square(i as f64, 0.0, 0.01), &[], "Accepted"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let (first_size, first_root, _) = checkpoint(&node, &key).await;
    // A checkpoint covering all 5 entries (one per intent, each with its
    // implicit subscription) is signed within a second or so.
    let mut waited = 0;
    while checkpoint(&node, &key).await.0 != 5 {
        waited += 1;
        assert!(waited < 50, "no checkpoint at size 5 after 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (size, root, _) = checkpoint(&node, &key).await;
    let entries = log_entries(&node, size, &key).await;
    assert_eq!(entries.len(), 5);
    for (i, (bytes, _)) in entries.iter().enumerate() {
        let v = json_get(node.url(&format!("/log/proof/inclusion?index={i}&size={size}"))).await;
        let proof: Vec<tlog::Hash> = v["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        tlog::proof::verify_inclusion(&tlog::leaf_hash(bytes), i as u64, size, &proof, &root)
            .unwrap();
    }
    let v = json_get(node.url(&format!(
        "/log/proof/consistency?first={first_size}&second={size}"
    )))
    .await;
    let proof: Vec<tlog::Hash> = v["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    tlog::proof::verify_consistency(first_size, size, &proof, &first_root, &root).unwrap();
    // Bad ranges are 400s naming the parameter.
    let r = test_support::http()
        .get(node.url(&format!("/log/entries?start=0&end={}", size + 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = test_support::http()
        .get(node.url("/log/proof/inclusion?index=x&size=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = test_support::http()
        .get(node.url(&format!("/log/proof/inclusion?index={size}&size={size}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // By leaf hash (RFC 6962's get-proof-by-hash): the entry's index and
    // the same proof.
    for (i, (bytes, _)) in entries.iter().enumerate().step_by(3) {
        let hash = B64.encode(tlog::leaf_hash(bytes));
        let by_hash = json_get(node.url(&format!(
            "/log/proof/inclusion?hash={}&size={size}",
            urlencode(&hash)
        )))
        .await;
        let by_index = json_get(node.url(&format!("/log/proof/inclusion?index={i}&size={size}"))).await;
        assert_eq!(by_hash["index"], i);
        assert_eq!(by_hash["proof"], by_index["proof"]);
    }
    // An unknown hash is a 404; a hash that is not 32 bytes, or both an
    // index and a hash, a 400 naming the field.
    let unknown = B64.encode([7u8; 32]);
    let r = test_support::http()
        .get(node.url(&format!("/log/proof/inclusion?hash={}&size={size}", urlencode(&unknown))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for (query, field) in [
        (format!("hash=AAAA&size={size}"), "hash"),
        (format!("index=0&hash={}&size={size}", urlencode(&unknown)), "index"),
    ] {
        let r = test_support::http()
            .get(node.url(&format!("/log/proof/inclusion?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
}
}

/// Base64 in a query string ('+', '/' and '=' escaped).
fn urlencode(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_leaves_no_change_without_its_entry_nor_entry_without_its_change() {
    let mut node = TestNode::start(bin());
    let key = tlog::Verifier::parse(text(node.url("/log/key")).await.trim()).unwrap();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for w in 0..8 {
        tasks.push(tokio::spawn(create_until(
            node.base.clone(),
            w,
            acked.clone(),
            None,
            |i| i < 10_000,
        )));
    }
    // Killed under load: once the load has had creates acknowledged.
    assert!(
        eventually(Duration::from_secs(60), || acked.lock().unwrap().len() > 20),
        "the load had no creates acknowledged"
    );
    node.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "the load ran before the kill ({} acked)",
        acked.len()
    );
    node.restart();
    // Nothing is written after the restart: wait until the newest checkpoint
    // covers the whole log and stops growing.
    let (size, root) = settled_checkpoint(&node, &key).await;
    let entries = log_entries(&node, size, &key).await;
    assert_eq!(
        tlog::hash::root_of(
            &entries
                .iter()
                .map(|(b, _)| tlog::leaf_hash(b))
                .collect::<Vec<_>>()
        ),
        root
    );
    let mut logged: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in &entries {
        if e.entry.kind == "operational_intent.upserted" {
            *logged.entry(entry_id(e).unwrap()).or_default() += 1;
        }
    }
    let t = token("auditor", "utm.strategic_coordination");
    let area = polygon_volume(
        &[(-0.1, -0.1), (-0.1, 6.0), (0.3, 6.0), (0.3, -0.1)],
        (0.0, 500.0),
        0,
        3600,
    );
    let v: Value = test_support::http()
        .post(node.url("/dss/v1/operational_intent_references/query"))
        .bearer_auth(&t)
        .json(&json!({ "area_of_interest": area }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: BTreeSet<String> = v["operational_intent_references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        acked.is_subset(&stored),
        "every acknowledged create survived the kill"
    );
    assert_eq!(
        logged.keys().cloned().collect::<BTreeSet<_>>(),
        stored,
        "the log and the store hold the same intents"
    );
    assert!(
        logged.values().all(|n| *n == 1),
        "each create is logged once"
    );
}
}

fn run(args: &[&str]) -> (bool, String) {
    run_cli(bin(), args, &[])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

both_backends! {
#[tokio::test]
async fn exported_bundles_verify_offline_and_every_tampering_is_caught() {
    let node = TestNode::start(bin());
    let vkey = text(node.url("/log/key")).await.trim().to_string();
    let key = tlog::Verifier::parse(&vkey).unwrap();
    let t = token("alliance", "utm.strategic_coordination");
    let mut ids = Vec::new();
    // Six writes: six entries (each intent with its implicit subscription).
    for i in 0..6 {
        let id = new_id();
        let r = test_support::http()
            .put(node.url(&format!("/dss/v1/operational_intent_references/{id}")))
            .bearer_auth(&t)
            .json(&intent_body(square(i as f64, 3.0, 0.01), &[], "Accepted"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(id);
    }
    let mut waited = 0;
    while checkpoint(&node, &key).await.0 < 6 {
        waited += 1;
        assert!(waited < 50, "no checkpoint covering the writes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tmp = std::env::temp_dir().join(format!("detente-bundle-{}", new_id()));
    let data = node.data.to_str().unwrap().to_string();
    let one = tmp.join("one");
    let (ok, out) = run(&[
        "evidence",
        "export",
        "--data",
        &data,
        "--out",
        one.to_str().unwrap(),
        "--entity",
        &ids[1],
    ]);
    assert!(ok, "{out}");
    let files: Vec<String> = std::fs::read_dir(&one)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".entry")).count(),
        1,
        "{files:?}"
    );
    assert!(files.contains(&"keys.txt".to_string()));
    // Exporting into a folder that is not empty is refused; a selection
    // that matches nothing fails and leaves no half-written bundle.
    let (ok, out) = run(&["evidence", "export", "--data", &data, "--out", one.to_str().unwrap(), "--all"]);
    assert!(!ok && out.contains("not empty"), "{out}");
    let none = tmp.join("none");
    let (ok, out) = run(&[
        "evidence",
        "export",
        "--data",
        &data,
        "--out",
        none.to_str().unwrap(),
        "--entity",
        &new_id(),
    ]);
    assert!(!ok && out.contains("matched no entry"), "{out}");
    assert!(!none.exists(), "nothing left behind");
    let all = tmp.join("all");
    let (ok, out) = run(&[
        "evidence",
        "export",
        "--data",
        &data,
        "--out",
        all.to_str().unwrap(),
        "--all",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["verify", all.to_str().unwrap(), "--key", &vkey]);
    assert!(ok, "{out}");
    assert!(out.contains("verified 6 entries"), "{out}");
    // The airspace's own entries stand on the checkpoint (`tlog::entry`).
    assert_eq!(out.matches("operational_intent.upserted ts=").count(), 6, "{out}");
    assert_eq!(out.matches("(unattested, checkpoint size").count(), 6, "{out}");

    // A required cosignature that is not there.
    let witness = tlog::cosignature::Cosigner::from_seed("detente.test/witness", &[8; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let (ok, out) = run(&[
        "verify",
        all.to_str().unwrap(),
        "--key",
        &vkey,
        "--witness",
        &witness,
        "--min-witnesses",
        "1",
    ]);
    assert!(
        !ok && out.contains("0 valid witness cosignature(s), 1 required"),
        "{out}"
    );
    // The wrong log key.
    let other = tlog::NoteSigner::from_seed("detente.test/other", &[9; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let (ok, out) = run(&["verify", all.to_str().unwrap(), "--key", &other]);
    assert!(!ok && out.contains("checkpoint"), "{out}");

    // Each kind of tampering, on a fresh copy.
    let tamper = |name: &str, f: &dyn Fn(&Path)| {
        let dir = tmp.join(name);
        copy_dir(&all, &dir);
        f(&dir);
        let (ok, out) = run(&["verify", dir.to_str().unwrap(), "--key", &vkey]);
        assert!(!ok, "{name} went unnoticed: {out}");
        out
    };
    let out = tamper("entry", &|d| {
        let p = d.join("1.entry");
        let mut b = std::fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(p, b).unwrap();
    });
    assert!(out.contains("1:") || out.contains("1.entry"), "{out}");
    let edit = |d: &Path, from: &dyn Fn(&str) -> String| {
        let p = d.join("2.tlog-proof");
        let s = std::fs::read_to_string(&p).unwrap();
        std::fs::write(p, from(&s)).unwrap();
    };
    let out = tamper("proof", &|d| {
        edit(d, &|s| {
            let mut lines: Vec<String> = s.lines().map(String::from).collect();
            // The first proof hash (after the index line) replaced by
            // another well-formed one: 32 zero bytes.
            let at = 1 + lines.iter().position(|l| l.starts_with("index ")).unwrap();
            assert_ne!(lines[at], "", "no proof hash to tamper with in {s}");
            lines[at] = format!("{}=", "A".repeat(43));
            lines.join("\n") + "\n"
        })
    });
    assert!(out.contains("2:"), "{out}");
    let out = tamper("checkpoint", &|d| {
        edit(d, &|s| s.replacen("\n6\n", "\n7\n", 1))
    });
    assert!(out.contains("checkpoint"), "{out}");
    let out = tamper("signature", &|d| {
        edit(d, &|s| {
            let i = s.rfind(' ').unwrap() + 3;
            let mut b = s.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        })
    });
    assert!(out.contains("checkpoint"), "{out}");
    let out = tamper("missing-proof", &|d| {
        std::fs::remove_file(d.join("3.tlog-proof")).unwrap()
    });
    assert!(out.contains("3.tlog-proof is missing"), "{out}");
    let _ = std::fs::remove_dir_all(&tmp);
}
}

async fn post(url: String, body: String) -> (u16, String, String) {
    let r = test_support::http()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), ct, r.text().await.unwrap())
}

async fn wait_for_checkpoint(
    node: &TestNode,
    key: &tlog::Verifier,
    at_least: u64,
) -> (u64, String) {
    for _ in 0..50 {
        let (size, _, note) = checkpoint(node, key).await;
        if size >= at_least {
            return (size, note);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint of size ≥ {at_least}");
}

async fn write_intents(node: &TestNode, n: usize, lat: f64) {
    let t = token("alliance", "utm.strategic_coordination");
    for i in 0..n {
        let r = test_support::http()
            .put(node.url(&format!(
                "/dss/v1/operational_intent_references/{}",
                new_id()
            )))
            .bearer_auth(&t)
            .json(&intent_body(
                square(lat + i as f64 * 0.1, 20.0, 0.01),
                &[],
                "Accepted",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

both_backends! {
#[tokio::test]
async fn a_peer_witnesses_checkpoints_per_tlog_witness_and_remembers_across_restarts() {
    let log = TestNode::start_with(bin(), &["--name", "detente.test/alliance"]);
    let log_vkey = text(log.url("/log/key")).await.trim().to_string();
    let log_key = tlog::Verifier::parse(&log_vkey).unwrap();
    assert_eq!(log_key.name, "detente.test/alliance");
    let mut witness = TestNode::start_with(
        bin(),
        &[
            "--name",
            "detente.test/federation",
            "--witness-log",
            &log_vkey,
        ],
    );
    let cosigner = tlog::Verifier::parse(text(witness.url("/witness/key")).await.trim()).unwrap();
    assert_eq!(cosigner.kind, tlog::note::TYPE_COSIGNATURE);
    let add = witness.url("/witness/add-checkpoint");

    write_intents(&log, 2, 0.0).await;
    let (n1, note1) = wait_for_checkpoint(&log, &log_key, 2).await;
    let (status, _, body) = post(add.clone(), format!("old 0\n\n{note1}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with('\u{2014}'));
    let cosigned = format!("{note1}{body}");
    let (_, ok) =
        tlog::note::open(cosigned.as_bytes(), &[log_key.clone(), cosigner.clone()]).unwrap();
    assert!(
        ok.iter().any(|v| v.timestamp.is_some()),
        "a timestamped cosignature"
    );

    write_intents(&log, 2, 1.0).await;
    let (n2, note2) = wait_for_checkpoint(&log, &log_key, n1 + 2).await;
    let proof = json_get(log.url(&format!("/log/proof/consistency?first={n1}&second={n2}"))).await;
    let lines: String = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{}\n", h.as_str().unwrap()))
        .collect();
    let (status, _, body) = post(add.clone(), format!("old {n1}\n{lines}\n{note2}")).await;
    assert_eq!(status, 200, "{body}");

    // 409 with the latest cosigned size, as text/x.tlog.size.
    let (status, ct, body) = post(add.clone(), format!("old 0\n\n{note2}")).await;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (409, "text/x.tlog.size", format!("{n2}\n").as_str())
    );
    // 422: a proof that does not verify.
    let bad = lines.replacen(&lines[..4], "AAAA", 1);
    let (status, _, _) = post(add.clone(), format!("old {n1}\n{bad}\n{note2}")).await;
    assert_eq!(status, 409, "old size {n1} is no longer the latest");
    write_intents(&log, 1, 2.0).await;
    let (n3, note3) = wait_for_checkpoint(&log, &log_key, n2 + 1).await;
    let proof = json_get(log.url(&format!("/log/proof/consistency?first={n2}&second={n3}"))).await;
    let mut hashes: Vec<String> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    hashes[0] = B64.encode([7u8; 32]);
    let (status, _, _) = post(
        add.clone(),
        format!("old {n2}\n{}\n\n{note3}", hashes.join("\n")),
    )
    .await;
    assert_eq!(status, 422);
    // The two notes are kept, as evidence against the log.
    let kept = json_get(witness.url("/witness/misbehaviour")).await;
    let kept = kept["misbehaviour"].as_array().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["origin"], "detente.test/alliance");
    assert_eq!(kept[0]["checkpoint_a"].as_str().unwrap(), note2);
    // 404: a log the witness does not know (the witness's own).
    let own_key = tlog::Verifier::parse(text(witness.url("/log/key")).await.trim()).unwrap();
    write_intents(&witness, 1, 3.0).await;
    let (_, own_note) = wait_for_checkpoint(&witness, &own_key, 1).await;
    assert_eq!(
        post(add.clone(), format!("old 0\n\n{own_note}")).await.0,
        404
    );
    // 403: the right origin, a signature that does not verify.
    let mut forged = note3.clone().into_bytes();
    let k = note3.rfind(' ').unwrap() + 1 + 10; // inside the signature, past the key ID
    forged[k] = if forged[k] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        post(
            add.clone(),
            format!("old {n2}\n\n{}", String::from_utf8(forged).unwrap())
        )
        .await
        .0,
        403
    );
    // 400: old larger than the checkpoint.
    assert_eq!(
        post(add.clone(), format!("old {}\n\n{note3}", n3 + 1))
            .await
            .0,
        400
    );

    // The witness's record survives a SIGKILL.
    witness.restart();
    let add = witness.url("/witness/add-checkpoint");
    let (status, _, body) = post(add, format!("old 0\n\n{note3}")).await;
    assert_eq!((status, body), (409, format!("{n2}\n")));
}
}

both_backends! {
#[tokio::test]
async fn a_node_gets_its_checkpoints_cosigned_by_its_peer_and_bundles_carry_the_cosignatures() {
    let mut alliance = TestNode::start_with(bin(), &["--name", "detente.test/alliance"]);
    let alliance_vkey = text(alliance.url("/log/key")).await.trim().to_string();
    let federation = TestNode::start_with(
        bin(),
        &[
            "--name",
            "detente.test/federation",
            "--witness-log",
            &alliance_vkey,
        ],
    );
    let cosigner_vkey = text(federation.url("/witness/key"))
        .await
        .trim()
        .to_string();
    let witness_arg = format!("{cosigner_vkey}@{}", federation.base);
    alliance.restart_with(&["--name", "detente.test/alliance", "--witness", &witness_arg]);
    write_intents(&alliance, 3, 10.0).await;
    let key = tlog::Verifier::parse(&alliance_vkey).unwrap();
    let cosigner = tlog::Verifier::parse(&cosigner_vkey).unwrap();
    // Within a few seconds the newest checkpoint carries the peer's cosignature.
    let mut cosigned = None;
    for _ in 0..80 {
        let note = text(alliance.url("/log/checkpoint")).await;
        if let Ok((n, ok)) = tlog::note::open(note.as_bytes(), &[key.clone(), cosigner.clone()])
            && ok.len() == 2
            && tlog::Checkpoint::parse(&n.text).unwrap().size >= 3
        {
            cosigned = Some(note);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cosigned.is_some(), "no cosigned checkpoint");
    // /healthz and /metrics show how far the witness has cosigned.
    let series = format!("detente_witness_cosigned_size{{witness=\"{}\"}} ", cosigner.name);
    let mut shown = (Value::Null, None);
    for _ in 0..80 {
        let health: Value = serde_json::from_str(&text(alliance.url("/healthz")).await).unwrap();
        let metric = text(alliance.url("/metrics"))
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.parse::<u64>().ok());
        shown = (health["witnesses"][0].clone(), metric);
        if shown.1.is_some_and(|n| n >= 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (w, metric) = shown;
    assert!(metric.is_some_and(|n| n >= 3), "{metric:?}");
    assert_eq!(w["name"], cosigner.name.as_str(), "{w}");
    assert!(w["cosigned_size"].as_u64().is_some_and(|n| n >= 3), "{w}");
    assert!(w["age_s"].as_i64().is_some_and(|a| a < 600), "{w}");
    // A bundle exported now verifies with the witness required.
    let out = std::env::temp_dir().join(format!("detente-witnessed-{}", new_id()));
    let (ok, o) = run(&[
        "evidence",
        "export",
        "--data",
        alliance.data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--all",
    ]);
    assert!(ok, "{o}");
    let (ok, o) = run(&[
        "verify",
        out.to_str().unwrap(),
        "--key",
        &alliance_vkey,
        "--witness",
        &cosigner_vkey,
        "--min-witnesses",
        "1",
    ]);
    assert!(ok, "{o}");
    let _ = std::fs::remove_dir_all(&out);
}
}

#[test]
fn verify_on_two_checkpoints_prints_the_equivocation_proof() {
    let log = tlog::NoteSigner::from_seed("detente.test/liar", &[6; 32]).unwrap();
    let vkey = log.verifier().to_vkey();
    let note = |size: u64, root: [u8; 32]| {
        let text = tlog::Checkpoint {
            origin: log.name.clone(),
            size,
            root,
            extensions: vec![],
        }
        .to_text();
        tlog::Note {
            signatures: vec![log.sign(&text)],
            text,
        }
        .to_text()
    };
    let dir = std::env::temp_dir().join(format!("detente-equivocation-{}", new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, c, d) = (dir.join("a"), dir.join("b"), dir.join("c"), dir.join("d"));
    std::fs::write(&a, note(10, [1; 32])).unwrap();
    std::fs::write(&b, note(10, [2; 32])).unwrap();
    std::fs::write(&c, note(10, [1; 32])).unwrap();
    std::fs::write(&d, note(12, [3; 32])).unwrap();
    let (ok, out) = run(&[
        "verify",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--key",
        &vkey,
    ]);
    assert!(ok && out.contains("PROOF OF EQUIVOCATION"), "{out}");
    let (ok, out) = run(&[
        "verify",
        a.to_str().unwrap(),
        c.to_str().unwrap(),
        "--key",
        &vkey,
    ]);
    assert!(!ok && out.contains("not an equivocation"), "{out}");
    let (ok, out) = run(&[
        "verify",
        a.to_str().unwrap(),
        d.to_str().unwrap(),
        "--key",
        &vkey,
    ]);
    assert!(
        !ok && out.contains("not provable from the pair alone"),
        "{out}"
    );
    // A pair signed by another key proves nothing about this log.
    let other = tlog::NoteSigner::from_seed("detente.test/liar", &[7; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let (ok, _) = run(&[
        "verify",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--key",
        &other,
    ]);
    assert!(!ok);
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
/// The log is also served as C2SP tlog-tiles resources: a client that
/// trusts only the node's key rebuilds the signed root from the tiles, and
/// every entry of the entry bundles hashes to its place in the level-0
/// tiles — full tiles and partial ones alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_is_served_as_tlog_tiles_that_rebuild_the_signed_root() {
    let node = TestNode::start(bin());
    let key = tlog::Verifier::parse(text(node.url("/log/key")).await.trim()).unwrap();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for w in 0..4 {
        tasks.push(tokio::spawn(create_until(
            node.base.clone(),
            w,
            acked.clone(),
            None,
            |i| i < 80,
        )));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (size, root) = settled_checkpoint(&node, &key).await;
    assert!(size > 256, "more than one level-0 tile: {size}");
    let get = |path: String| {
        let url = node.url(&format!("/log/{path}"));
        async move {
            let r = test_support::http().get(url).send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        }
    };
    let hashes = |b: &[u8]| -> Vec<tlog::Hash> {
        b.chunks_exact(32).map(|c| c.try_into().unwrap()).collect()
    };
    let w = (size % 256) as usize;
    let (full, partial) = (size / 256, format!(".p/{}", size % 256));
    // Level 0: the leaf hashes, in full tiles and the partial one.
    let mut leaves = Vec::new();
    for n in 0..full {
        let (status, body) = get(tlog::tiles::tile_path(0, n, 256)).await;
        assert_eq!((status, body.len()), (200, 8192));
        leaves.extend(hashes(&body));
    }
    if w > 0 {
        let (status, body) = get(tlog::tiles::tile_path(0, full, w)).await;
        assert_eq!((status, body.len()), (200, 32 * w), "tile/0/…{partial}");
        leaves.extend(hashes(&body));
    }
    // The tree those leaves make has the root the node signed; level 1
    // holds the roots of the full level-0 tiles.
    assert_eq!(tlog::hash::root_of(&leaves), root);
    let (status, body) = get(tlog::tiles::tile_path(1, 0, full as usize)).await;
    assert_eq!(status, 200);
    for (n, h) in hashes(&body).iter().enumerate() {
        assert_eq!(*h, tlog::hash::root_of(&leaves[n * 256..(n + 1) * 256]));
    }
    // Entry bundles: uint16-length-prefixed entries hashing to the leaves.
    let mut entries = Vec::new();
    for (n, width) in (0..full)
        .map(|n| (n, 256))
        .chain([(full, w)].into_iter().filter(|(_, w)| *w > 0))
    {
        let (status, body) = get(
            tlog::tiles::tile_path(0, n, width).replacen("tile/0/", "tile/entries/", 1),
        )
        .await;
        assert_eq!(status, 200);
        let mut rest = &body[..];
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            entries.push(rest[2..2 + len].to_vec());
            rest = &rest[2 + len..];
        }
    }
    assert_eq!(entries.len() as u64, size);
    for (e, leaf) in entries.iter().zip(&leaves) {
        assert_eq!(tlog::leaf_hash(e), *leaf);
        let e = tlog::entry::SignedEntry::parse(e).unwrap();
        if e.is_signed() {
            e.verify(&key).unwrap();
        } else {
            // The node's own airspace entries are attested by the
            // checkpoint the tiles rebuild (`tlog::entry`).
            assert_eq!(e.entry.origin, key.name);
            assert!(!e.entry.kind.starts_with("line."), "{}", e.entry.kind);
        }
    }
    // Tiles the log does not hold are 404; malformed paths 400.
    let (status, _) = get(tlog::tiles::tile_path(0, full + 5, 256)).await;
    assert_eq!(status, 404);
    let (status, _) = get(tlog::tiles::tile_path(2, 0, 1)).await;
    assert_eq!(status, if size >= 65_536 { 200 } else { 404 });
    for bad in ["tile/0/1", "tile/0/001.p/0", "tile/x/001", "tile/0/x000/001"] {
        let (status, body) = get(bad.to_string()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(String::from_utf8_lossy(&body).contains("path"), "{bad}");
    }
}
}

/// A bundle archive (`tlog::archive`, what the console hands out) is one
/// that GNU tar lists and unpacks exactly, paths over 100 bytes included,
/// and one GNU tar writes is one `tlog::archive` reads.
#[test]
fn bundle_archives_are_the_tar_that_tar_reads_and_writes() {
    let dir = format!("evidence-{}", "e".repeat(100));
    let files = vec![
        ("keys.txt".to_string(), b"alliance+1234+key\n".to_vec()),
        ("000000000042.tlog-proof".to_string(), vec![7u8; 1300]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bundle.tar");
    std::fs::write(
        &archive,
        tlog::archive::write(&dir, &files, 1_700_000_000).unwrap(),
    )
    .unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let status = std::process::Command::new("tar")
        .arg("xf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    for (name, bytes) in &files {
        assert_eq!(
            &std::fs::read(out.join(&dir).join(name)).unwrap(),
            bytes,
            "{name}"
        );
    }
    // And back: GNU tar's own ustar archive of those files (not of the
    // folder: ustar cannot hold a 110-byte folder entry at all).
    let again = tmp.path().join("again.tar");
    let status = std::process::Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&again)
        .arg("-C")
        .arg(&out)
        .args(files.iter().map(|(n, _)| format!("{dir}/{n}")))
        .status()
        .unwrap();
    assert!(status.success());
    let mut read = tlog::archive::read(&std::fs::read(&again).unwrap()).unwrap();
    read.sort();
    let mut expected: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, b)| (format!("{dir}/{n}"), b.clone()))
        .collect();
    expected.sort();
    assert_eq!(read, expected);
    // GNU tar's default format too: the whole folder, its long names as
    // GNU long-name entries.
    let gnu = tmp.path().join("gnu.tar");
    let status = std::process::Command::new("tar")
        .args(["--format=gnu", "-cf"])
        .arg(&gnu)
        .arg("-C")
        .arg(&out)
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let mut read = tlog::archive::read(&std::fs::read(&gnu).unwrap()).unwrap();
    read.sort();
    assert_eq!(read, expected);
}

#[tokio::test]
async fn a_witness_policy_names_the_witnesses_submitted_to_and_the_quorum_that_counts() {
    let mut alliance = TestNode::start_with(bin(), &["--name", "detente.test/alliance"]);
    let alliance_vkey = text(alliance.url("/log/key")).await.trim().to_string();
    // Two outside witnesses (Detente nodes witnessing Alliance's log), and a
    // third key that never cosigns anything.
    let w1 = TestNode::start_with(
        bin(),
        &["--name", "w1.test", "--witness-log", &alliance_vkey],
    );
    let w2 = TestNode::start_with(
        bin(),
        &["--name", "w2.test", "--witness-log", &alliance_vkey],
    );
    let k1 = text(w1.url("/witness/key")).await.trim().to_string();
    let k2 = text(w2.url("/witness/key")).await.trim().to_string();
    let silent = tlog::cosignature::Cosigner::from_seed("silent.test", &[5; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let policy = dir.join("policy.txt");
    std::fs::write(
        &policy,
        format!(
            "# both outside witnesses must cosign\n\
             witness w1 {k1} {}/witness\n\
             witness w2 {k2} {}/witness/\n\
             witness silent {silent}\n\
             group outside 2 w1 w2 silent\n\
             quorum outside\n",
            w1.base, w2.base
        ),
    )
    .unwrap();
    alliance.restart_with(&[
        "--name",
        "detente.test/alliance",
        "--witness-policy",
        policy.to_str().unwrap(),
    ]);
    write_intents(&alliance, 3, 20.0).await;
    // Submitted to both (no --witness flag): the newest checkpoint comes to
    // meet the quorum, which /healthz and /metrics say.
    let mut health = Value::Null;
    for _ in 0..100 {
        health = json_get(alliance.url("/healthz")).await;
        if health["witnessed"]["latest"] == true
            && health["witnessed"]["latest_size"].as_u64() >= Some(3)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health["witnessed"]["latest"], true, "{health}");
    assert_eq!(
        health["witnessed"]["cosigned_by"],
        json!(["w1", "w2"]),
        "{health}"
    );
    let metrics = text(alliance.url("/metrics")).await;
    let witnessed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("detente_log_witnessed_size "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(witnessed.is_some_and(|n| n >= 3), "{metrics}");
    // Offline, the same policy verifies the bundle; one that needs the
    // silent witness does not.
    let out = dir.join("bundle");
    let (ok, o) = run(&[
        "evidence",
        "export",
        "--data",
        alliance.data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--all",
    ]);
    assert!(ok, "{o}");
    let (ok, o) = run(&[
        "verify",
        out.to_str().unwrap(),
        "--key",
        &alliance_vkey,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(ok, "{o}");
    let strict = dir.join("strict.txt");
    std::fs::write(
        &strict,
        format!(
            "witness w1 {k1}\nwitness silent {silent}\ngroup both all w1 silent\nquorum both\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "verify",
            dir.join("bundle").to_str().unwrap(),
            "--key",
            &alliance_vkey,
            "--policy",
            strict.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "not verified: {said}");
    assert!(
        said.contains("does not meet the witness policy's quorum (cosigned by w1)"),
        "{said}"
    );
    // A malformed policy is a usage error naming the line.
    std::fs::write(&strict, "quorum nobody\n").unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "verify",
            dir.join("bundle").to_str().unwrap(),
            "--key",
            &alliance_vkey,
            "--policy",
            strict.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("line 1"), "{said}");
}
