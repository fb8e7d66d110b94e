//! Several `detente serve` replicas on one PostgreSQL database behave as
//! one node: one state, serialised key checks, notification indices that
//! move once per change, one log — also when a replica is killed mid-load.
//! A replica that loses its database answers 503 with Retry-After (and its
//! health check fails) until the database is back, then carries on.
//! Runs when DATABASE_URL is set (CI requires it), skipped with a message
//! otherwise.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::*;

const SC: &str = "utm.strategic_coordination";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

/// `n` replicas of one node: one data folder (the node key), one schema.
fn replicas(data: &Path, n: usize) -> Vec<TestNode> {
    (0..n)
        .map(|_| TestNode::start_in(bin(), data, &[]))
        .collect()
}

async fn call(
    node: &TestNode,
    method: Method,
    path: &str,
    tok: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = test_support::http()
        .request(method, node.url(path))
        .bearer_auth(tok);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The node's newest checkpoint's size and root.
async fn checkpoint(node: &TestNode, key: &tlog::Verifier) -> (u64, tlog::Hash) {
    let (size, root, _) = log_checkpoint(node, key).await;
    (size, root)
}

/// The log's entries `0..size`, checked against `root`: how many times
/// each intent's creation or change is logged.
async fn logged_creates(
    node: &TestNode,
    size: u64,
    root: tlog::Hash,
    key: &tlog::Verifier,
) -> BTreeMap<String, usize> {
    let all = log_entries(node, size, key).await;
    assert_eq!(
        tlog::hash::root_of(
            &all.iter()
                .map(|(d, _)| tlog::leaf_hash(d))
                .collect::<Vec<_>>()
        ),
        root
    );
    let mut logged: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in &all {
        if e.entry.kind == "operational_intent.upserted" {
            *logged.entry(entry_id(e).unwrap()).or_default() += 1;
        }
    }
    logged
}

/// The area every `create_until` writer writes in.
fn loaded_area() -> Value {
    polygon_volume(
        &[(-0.1, -0.1), (-0.1, 6.0), (0.3, 6.0), (0.3, -0.1)],
        (0.0, 500.0),
        0,
        3600,
    )
}

/// Every intent in the area, as one replica answers.
async fn intents_in(node: &TestNode, area: Value) -> BTreeMap<String, Value> {
    let t = token("auditor", SC);
    let (s, v) = call(
        node,
        Method::POST,
        "/dss/v1/operational_intent_references/query",
        &t,
        Some(json!({ "area_of_interest": area })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["operational_intent_references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

#[tokio::test]
async fn replicas_share_one_state_one_key_check_one_notification_count_and_one_log() {
    let Some(_pg) = OnPostgres::enter("replicas_share_one_state") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let nodes = replicas(&data, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let vkey = get_text(&a.url("/log/key")).await.trim().to_string();
    assert_eq!(
        vkey,
        get_text(&b.url("/log/key")).await.trim(),
        "one node key"
    );
    let key = tlog::Verifier::parse(&vkey).unwrap();
    let (ta, tf, tw) = (
        token("alliance", SC),
        token("federation", SC),
        token("watcher", SC),
    );

    // A subscription made through one replica, over the area both write in.
    let sub = new_id();
    let (s, v) = call(a, Method::PUT, &format!("/dss/v1/subscriptions/{sub}"), &tw,
        Some(json!({"extents": long_square(10.0, 10.0, 0.2), "uss_base_url": "https://watcher.example", "notify_for_operational_intents": true}))).await;
    assert_eq!(s, 200, "{v}");

    // Written through A, read through B at once (NOTIFY) or within the poll.
    let x = new_id();
    let (s, v) = call(
        a,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{x}"),
        &ta,
        Some(intent_body(square(10.0, 10.0, 0.01), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let ovn_x = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = Instant::now();
    loop {
        let (s, _) = call(
            b,
            Method::GET,
            &format!("/dss/v1/operational_intent_references/{x}"),
            &tf,
            None,
        )
        .await;
        if s == 200 {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "B saw A's write after {:?}",
                seen.elapsed()
            );
            break;
        }
        assert!(
            seen.elapsed() < Duration::from_secs(3),
            "B never saw A's write"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // B's key check knows A's intent: refused without its OVN, taken with it.
    let y = new_id();
    let path_y = format!("/dss/v1/operational_intent_references/{y}");
    let (s, v) = call(
        b,
        Method::PUT,
        &path_y,
        &tf,
        Some(intent_body(square(10.0, 10.005, 0.01), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["missing_operational_intents"][0]["id"], x.as_str());
    let (s, v) = call(
        b,
        Method::PUT,
        &path_y,
        &tf,
        Some(intent_body(
            square(10.0, 10.005, 0.01),
            &[&ovn_x],
            "Accepted",
        )),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    // More writes in the subscription's area, alternating replicas: the
    // watcher's notification index moves exactly once per change.
    let mut changes = 2; // x and y
    for i in 0..6 {
        let node = &nodes[i % 2];
        let (s, v) = call(
            node,
            Method::PUT,
            &format!("/dss/v1/operational_intent_references/{}", new_id()),
            &token(&format!("uss{i}"), SC),
            Some(intent_body(
                square(10.1, 10.0 + 0.03 * i as f64, 0.005),
                &[],
                "Accepted",
            )),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        changes += 1;
    }
    for node in [a, b] {
        let ok = eventually_async(Duration::from_secs(3), || async {
            let (s, v) = call(
                node,
                Method::GET,
                &format!("/dss/v1/subscriptions/{sub}"),
                &tw,
                None,
            )
            .await;
            s == 200 && v["subscription"]["notification_index"] == changes
        })
        .await;
        assert!(ok, "notification index {changes} on every replica");
    }

    // One conflict, the same on both.
    for node in [a, b] {
        let ok = eventually_async(Duration::from_secs(3), || async {
            let (_, v) = call(node, Method::GET, "/detente/v1/conflicts", &ta, None).await;
            v["conflicts"].as_array().map(|c| c.len()) == Some(1)
        })
        .await;
        assert!(ok, "the conflict of x and y on every replica");
    }

    // One log: both serve the same checkpoint once it settles, and its
    // entries hash to its root.
    let (size, root) = settled_checkpoint(a, &key).await;
    let ok = eventually_async(Duration::from_secs(3), || async {
        checkpoint(b, &key).await == (size, root)
    })
    .await;
    assert!(ok, "B serves A's checkpoint");
    let all = log_entries(b, size, &key).await;
    assert_eq!(
        tlog::hash::root_of(
            &all.iter()
                .map(|(d, _)| tlog::leaf_hash(d))
                .collect::<Vec<_>>()
        ),
        root
    );
    let created = all
        .iter()
        .filter(|(_, e)| e.entry.kind == "operational_intent.upserted")
        .count();
    assert_eq!(created, changes, "each write logged once");
}

/// Which replicas lead, once the leader lock has settled (a replica tries
/// to take it every half second).
async fn leaders(nodes: &[TestNode]) -> Vec<usize> {
    let mut found = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        found.clear();
        for (i, n) in nodes.iter().enumerate() {
            let v: Value = serde_json::from_str(&get_text(&n.url("/healthz")).await).unwrap();
            if v["leader"] == true {
                found.push(i);
            }
        }
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found
}

/// Polls an async condition until it holds or `timeout` passes.
async fn eventually_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_through_different_replicas_exactly_one_wins() {
    let Some(_pg) = OnPostgres::enter("racing_writers_through_different_replicas") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let nodes = replicas(&tmp.path().join("node"), 2);
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    for round in 0..10 {
        let puts = (0..8)
            .map(|w| {
                let url = format!(
                    "{}/dss/v1/operational_intent_references/{}",
                    bases[w % 2],
                    new_id()
                );
                let body = intent_body(
                    square(20.0 + round as f64, 20.0 + 0.001 * w as f64, 0.01),
                    &[],
                    "Accepted",
                );
                (url, token(&format!("uss{w}"), SC), body)
            })
            .collect();
        let got = race_puts(puts).await;
        assert_eq!(
            got,
            [vec![201], vec![409; 7]].concat(),
            "round {round}: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_load_loses_nothing_duplicates_nothing_and_forks_nothing() {
    let Some(_pg) = OnPostgres::enter("a_replica_killed_mid_load") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = replicas(&tmp.path().join("node"), 3);
    let leader = leaders(&nodes).await;
    assert_eq!(leader.len(), 1, "exactly one leader of three: {leader:?}");
    let leader = leader[0];
    let key = tlog::Verifier::parse(get_text(&nodes[0].url("/log/key")).await.trim()).unwrap();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for w in 0..6 {
        // Writer w writes through replica w % 3, for three seconds.
        let started = Instant::now();
        tasks.push(tokio::spawn(create_until(
            nodes[w % 3].base.clone(),
            w,
            acked.clone(),
            None,
            move |_| started.elapsed() < Duration::from_secs(3),
        )));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_kill = acked.lock().unwrap().len();
    nodes[leader].kill();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        before_kill > 20,
        "the load ran before the kill ({before_kill} acked)"
    );
    assert!(
        acked.len() > before_kill,
        "the other replicas went on writing"
    );

    // The survivors agree on one log, signed by a new leader after the
    // kill, whose entries hash to its root.
    let survivors: Vec<TestNode> = nodes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, n)| n)
        .collect();
    assert_eq!(leaders(&survivors).await.len(), 1, "a new leader took over");
    let (b, c) = (&survivors[0], &survivors[1]);
    let (size, root) = settled_checkpoint(b, &key).await;
    assert_eq!(checkpoint(c, &key).await, (size, root), "one log, not two");
    let logged = logged_creates(c, size, root, &key).await;
    let area = loaded_area();
    let on_b = intents_in(b, area.clone()).await;
    let on_c = intents_in(c, area).await;
    let stored: BTreeSet<String> = on_b.keys().cloned().collect();
    assert_eq!(
        stored,
        on_c.keys().cloned().collect::<BTreeSet<_>>(),
        "the replicas hold the same intents"
    );
    assert!(
        acked.is_subset(&stored),
        "every acknowledged create survived ({} missing)",
        acked.difference(&stored).count()
    );
    assert_eq!(
        logged.keys().cloned().collect::<BTreeSet<_>>(),
        stored,
        "the log and the store hold the same intents"
    );
    assert!(logged.values().all(|n| *n == 1), "each create logged once");
    assert!(
        on_b.values().all(|i| i["version"] == 1),
        "no create applied twice"
    );
}

/// `url` with its database name replaced by `db` (query kept).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{db}{query}")
}

fn sh(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (PostgreSQL's client programs are needed)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_node_restored_from_a_pg_dump_serves_the_same_state_and_log() {
    let Some(_pg) = OnPostgres::enter("a_node_restored_from_a_pg_dump") else {
        return;
    };
    let url = postgres_url().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let mut node = TestNode::start_in(bin(), &data, &[]);
    let schema = node.postgres_schema().unwrap().to_string();
    let key = tlog::Verifier::parse(get_text(&node.url("/log/key")).await.trim()).unwrap();
    let t = token("alliance", SC);
    let mut ids = BTreeSet::new();
    for i in 0..5 {
        let id = new_id();
        let (s, v) = call(
            &node,
            Method::PUT,
            &format!("/dss/v1/operational_intent_references/{id}"),
            &t,
            Some(intent_body(
                square(30.0, 30.0 + 0.05 * i as f64, 0.01),
                &[],
                "Accepted",
            )),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        ids.insert(id);
    }
    let before = settled_checkpoint(&node, &key).await;
    node.kill();

    // The operator's backup and restore (docs/operations.md): one schema,
    // dumped consistently, restored into a fresh database with PostGIS.
    let dump = tmp.path().join("node.dump");
    sh(
        "pg_dump",
        &["-Fc", "-n", &schema, "-f", dump.to_str().unwrap(), &url],
    );
    let db = format!("restore_{schema}");
    let restored = with_database(&url, &db);
    sh(
        "psql",
        &["-q", &url, "-c", &format!("DROP DATABASE IF EXISTS {db}")],
    );
    sh(
        "psql",
        &["-q", &url, "-c", &format!("CREATE DATABASE {db}")],
    );
    sh("psql", &["-q", &restored, "-c", "CREATE EXTENSION postgis"]);
    sh("pg_restore", &["-d", &restored, dump.to_str().unwrap()]);

    let mut back = TestNode::start_in(
        bin(),
        &data,
        &["--database-url", &restored, "--database-schema", &schema],
    );
    assert_eq!(
        checkpoint(&back, &key).await,
        before,
        "the same log, checkpoint and all"
    );
    let area = polygon_volume(
        &[(29.9, 29.9), (29.9, 30.4), (30.1, 30.4), (30.1, 29.9)],
        (0.0, 500.0),
        0,
        3600,
    );
    let held: BTreeSet<String> = intents_in(&back, area).await.into_keys().collect();
    assert_eq!(held, ids);
    // And it goes on from there: a new write extends the same log.
    let (s, v) = call(
        &back,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{}", new_id()),
        &t,
        Some(intent_body(square(30.0, 31.0, 0.01), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let after = settled_checkpoint(&back, &key).await;
    assert!(after.0 > before.0);
    let proof: Value = serde_json::from_str(
        &get_text(&back.url(&format!(
            "/log/proof/consistency?first={}&second={}",
            before.0, after.0
        )))
        .await,
    )
    .unwrap();
    let hashes: Vec<tlog::Hash> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    tlog::proof::verify_consistency(before.0, after.0, &hashes, &before.1, &after.1)
        .expect("the restored node's log extends the backed-up one");
    back.kill();
    sh(
        "psql",
        &[
            "-q",
            &url,
            "-c",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        ],
    );
}

#[tokio::test]
async fn migrate_is_idempotent_and_a_replica_with_another_node_key_is_refused() {
    let Some(_pg) = OnPostgres::enter("migrate_is_idempotent") else {
        return;
    };
    let url = postgres_url().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let schema = schema_for(&data);
    for _ in 0..2 {
        let (ok, out) = run_cli(
            bin(),
            &[
                "migrate",
                "--database-url",
                &url,
                "--database-schema",
                &schema,
            ],
            &[],
        );
        assert!(ok && out.contains("up to date"), "{out}");
    }
    let (ok, out) = run_cli(
        bin(),
        &[
            "migrate",
            "--database-url",
            &url,
            "--database-schema",
            "Robert'); DROP TABLE x; --",
        ],
        &[],
    );
    assert!(!ok && out.contains("database_schema"), "{out}");

    // The node's first replica records its key in the schema; a process
    // with another key (another data folder) is refused, saying why.
    let node = TestNode::start_in(bin(), &data, &[]);
    let (s, _) = call(&node, Method::GET, "/healthz", "", None).await;
    assert_eq!(s, 200);
    let other = tmp.path().join("other");
    let (ok, out) = run_cli(
        bin(),
        &[
            "serve",
            "--data",
            other.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--database-schema",
            &schema,
        ],
        &[],
    );
    assert!(!ok, "a foreign key must not start: {out}");
    assert!(out.contains("same node key"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_go_on_after_the_database_drops_every_connection_and_nothing_half_done_is_kept() {
    let Some(_pg) = OnPostgres::enter("writes_go_on_after_the_database_drops") else {
        return;
    };
    let url = postgres_url().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(bin(), &tmp.path().join("node"), &[]);
    let schema = node.postgres_schema().unwrap().to_string();
    let key = tlog::Verifier::parse(get_text(&node.url("/log/key")).await.trim()).unwrap();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..4 {
        // A write caught by a cut gets 500, and one that comes before the
        // node has reloaded 503 (nothing of either is kept): counted.
        let started = Instant::now();
        tasks.push(tokio::spawn(create_until(
            node.base.clone(),
            w,
            acked.clone(),
            Some(refused.clone()),
            move |_| started.elapsed() < Duration::from_secs(4),
        )));
    }
    // As a failover does: every connection of the node is cut, twice.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        sh(
            "psql",
            &[
                "-q",
                &url,
                "-c",
                &format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'detente/{schema}'"
                ),
            ],
        );
    }
    let cut_at = acked.lock().unwrap().len();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > cut_at,
        "writes went on after the cuts ({cut_at} → {})",
        acked.len()
    );

    // The log (signed again by a leader that reconnected) and the store
    // agree, and every acknowledged write is there once.
    let (size, root) = settled_checkpoint(&node, &key).await;
    let logged = logged_creates(&node, size, root, &key).await;
    let area = loaded_area();
    let stored: BTreeSet<String> = intents_in(&node, area).await.into_keys().collect();
    assert!(
        acked.is_subset(&stored),
        "every acknowledged create survived"
    );
    assert_eq!(
        logged.keys().cloned().collect::<BTreeSet<_>>(),
        stored,
        "the log and the store hold the same intents"
    );
    assert!(logged.values().all(|n| *n == 1), "each create logged once");
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{} acknowledged, {} refused with 500 or 503 around the cuts",
        acked.len(),
        refused.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_node_that_loses_its_database_answers_503_until_it_is_back() {
    let Some(_pg) = OnPostgres::enter("a_node_that_loses_its_database") else {
        return;
    };
    let url = postgres_url().unwrap();
    let proxy = CuttableProxy::start(postgres_target(&url));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let (via, schema) = (through(&url, proxy.addr), schema_for(&data));
    let node = TestNode::start_in(
        bin(),
        &data,
        &["--database-url", &via, "--database-schema", &schema],
    );
    let tok = token("uss-outage", SC);
    let put = |i: u32| {
        let body = intent_body(
            square(10.0 + f64::from(i) * 0.05, 20.0, 0.001),
            &[],
            "Accepted",
        );
        let url = node.url(&format!(
            "/dss/v1/operational_intent_references/{}",
            new_id()
        ));
        let tok = tok.clone();
        async move {
            test_support::http()
                .put(url)
                .bearer_auth(tok)
                .json(&body)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .unwrap()
        }
    };
    let first = new_id();
    let (s, _) = call(
        &node,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{first}"),
        &tok,
        Some(intent_body(square(9.0, 20.0, 0.001), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    proxy.cut();
    // The first write to find the database gone fails (a background task of
    // the node may have found it first): a server error, answered.
    let s = put(1).await.status();
    assert!(s.is_server_error(), "{s}");
    // Then every request is answered 503 with Retry-After and a code.
    let r = put(2).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["code"], "unavailable", "{b}");
    assert!(b["message"].as_str().unwrap().contains("retry"), "{b}");
    let (s, b) = call(
        &node,
        Method::GET,
        &format!("/dss/v1/operational_intent_references/{first}"),
        &tok,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "a read while down: {b}");
    let health = test_support::http()
        .get(node.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = get_text(&node.url("/metrics")).await;
    assert!(
        metrics.contains("\ndetente_store_available 0\n"),
        "monitoring sees the outage: {metrics}"
    );
    assert!(!metrics.contains("detente_live_operational_intents"));

    proxy.restore();
    let back = Instant::now();
    loop {
        let s = test_support::http()
            .get(node.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status();
        if s == StatusCode::OK {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "still {s} {:?} after the database came back",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(put(3).await.status(), StatusCode::CREATED);
    let (s, _) = call(
        &node,
        Method::GET,
        &format!("/dss/v1/operational_intent_references/{first}"),
        &tok,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let metrics = get_text(&node.url("/metrics")).await;
    assert!(
        metrics.contains("\ndetente_store_available 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\ndetente_live_operational_intents 2\n"),
        "{metrics}"
    );
}

/// F3548 DSS0210: what one instance of a DSS pool answered, every other
/// returns — a read that starts after a write's answer sees it, on any
/// replica. Each read is sent the moment the write through the other
/// replica is answered, many times over, in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_on_one_replica_sees_every_write_another_had_answered() {
    let Some(_pg) = OnPostgres::enter("a_read_on_one_replica_sees_every_write") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let nodes = replicas(&tmp.path().join("node"), 2);
    let t = token("uss1", SC);
    for round in 0..60 {
        let (w, r) = (&nodes[round % 2], &nodes[(round + 1) % 2]);
        let lat = -30.0 + 0.05 * round as f64;
        // A subscription created through one replica…
        let sub = new_id();
        let (s, v) = call(
            w,
            Method::PUT,
            &format!("/dss/v1/subscriptions/{sub}"),
            &t,
            Some(json!({
                "extents": square(lat, 40.0, 0.01),
                "uss_base_url": "https://uss1.example",
                "notify_for_operational_intents": true,
            })),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let version = v["subscription"]["version"].as_str().unwrap().to_string();
        // …is there on the other, by id and by area.
        let (s, v) = call(
            r,
            Method::GET,
            &format!("/dss/v1/subscriptions/{sub}"),
            &t,
            None,
        )
        .await;
        assert_eq!(s, 200, "round {round}: GET on the other replica: {v}");
        let (s, v) = call(
            r,
            Method::POST,
            "/dss/v1/subscriptions/query",
            &t,
            Some(json!({ "area_of_interest": square(lat, 40.0, 0.001) })),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert!(
            v["subscriptions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == sub.as_str()),
            "round {round}: the other replica's query misses it: {v}"
        );
        // An intent too.
        let id = new_id();
        let (s, v) = call(
            w,
            Method::PUT,
            &format!("/dss/v1/operational_intent_references/{id}"),
            &t,
            Some(intent_body(square(lat, 41.0, 0.01), &[], "Accepted")),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let intent_version = v["operational_intent_reference"]["version"].clone();
        let found = intents_in(r, square(lat, 41.0, 0.001)).await;
        assert_eq!(
            found.get(&id).map(|i| i["version"].clone()),
            Some(intent_version),
            "round {round}: the other replica's query"
        );
        // Another client may not delete it, through either replica.
        let (s, v) = call(
            r,
            Method::DELETE,
            &format!("/dss/v1/subscriptions/{sub}/{version}"),
            &token("uss2", SC),
            None,
        )
        .await;
        assert_eq!(s, 403, "{v}");
        // And a removal is gone on the other at once.
        let (s, v) = call(
            w,
            Method::DELETE,
            &format!("/dss/v1/subscriptions/{sub}/{version}"),
            &t,
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = call(
            r,
            Method::GET,
            &format!("/dss/v1/subscriptions/{sub}"),
            &t,
            None,
        )
        .await;
        assert_eq!(
            s, 404,
            "round {round}: deleted on one replica, still on the other: {v}"
        );
    }
}
