//! `detente serve` as an operator meets it: no configuration at all, a config
//! file, the expiry sweeper, `--help`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

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
    let h: Value = test_support::http()
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
    let r = test_support::http()
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
    let r = test_support::http()
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
    let r = test_support::http()
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
                test_support::http()
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

/// Shell completions (bash, zsh, fish) and a manual page come from the same
/// command definitions as `--help`: every command is in them, and the bash
/// script is valid bash.
#[test]
fn completions_and_the_manual_name_every_command() {
    let run = |args: &[&str]| {
        let out = Command::new(bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        for command in ["serve", "verify", "channel", "inbox", "completions"] {
            assert!(
                script.contains(command),
                "{shell} completions lack {command}"
            );
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let bash = tmp.path().join("detente.bash");
    std::fs::write(&bash, run(&["completions", "bash"])).unwrap();
    assert!(
        Command::new("bash")
            .arg("-n")
            .arg(&bash)
            .status()
            .unwrap()
            .success()
    );
    let man = run(&["man"]);
    assert!(man.contains(".TH detente 1"), "{man}");
    for command in ["serve", "verify", "channel", "man"] {
        assert!(man.contains(command), "the manual lacks {command}");
    }
    // A wrong shell is a usage error naming the ones there are.
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
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

/// `detente demo --keep-running` says how to drive its nodes from the CLI —
/// and those commands work — and SIGTERM stops both nodes (their ports are
/// free again) and removes its temporary folder.
#[test]
fn a_kept_demo_is_driven_from_the_cli_and_sigterm_cleans_it_up() {
    let mut child = Command::new(bin())
        .args(["demo", "--keep-running", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut nodes, mut folder, mut export, mut printed) = (Vec::new(), None, None, String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix("nodes: ") {
            nodes = rest
                .split("http://")
                .skip(1)
                .map(|s| s.split([',', ' ']).next().unwrap().to_string())
                .collect();
            folder = rest
                .split("embedded stores under ")
                .nth(1)
                .map(|s| s.split(',').next().unwrap().trim().to_string());
        }
        if let Some(e) = line.trim().strip_prefix("export ") {
            export = Some(e.to_string());
        }
        if line.starts_with("Keeping both nodes up") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert_eq!(nodes.len(), 2, "{printed}");
    let folder = std::path::PathBuf::from(folder.expect("the demo names its folder"));
    assert!(folder.exists());
    let export = export.expect("the demo prints how to reach its node");
    // The printed commands, as an operator would paste them.
    let dir = bin().parent().unwrap().display().to_string();
    let out = Command::new("bash")
        .args([
            "-c",
            &format!("export PATH={dir}:$PATH; export {export}; detente channel list"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("federation.detente.demo"));

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exited = eventually(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(exited, "the demo did not stop on SIGTERM");
    for n in &nodes {
        assert!(
            std::net::TcpStream::connect(n).is_err(),
            "the node at {n} is still listening"
        );
    }
    assert!(!folder.exists(), "{} was left behind", folder.display());
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
        let r = test_support::http()
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
    let r = test_support::http()
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
    let r = test_support::http()
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
    let r = test_support::http()
        .get(node.url("/dss/v1/uss_availability/x"))
        .bearer_auth(wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
}

/// Runs `detente serve` on `data` expecting it to refuse: answers what it
/// printed. Fails if it starts listening.
fn refuses_to_start(data: &Path) -> String {
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let exited = eventually(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let printed = format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    assert!(exited && !status.success(), "it started: {printed}");
    assert!(!printed.contains("detente listening"), "{printed}");
    printed
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Puts an intent and waits for a checkpoint that includes it.
async fn grow_log(node: &TestNode, key: &tlog::Verifier) -> u64 {
    let (before, _, _) = log_checkpoint(node, key).await;
    let r = test_support::http()
        .put(node.url(&format!(
            "/dss/v1/operational_intent_references/{}",
            new_id()
        )))
        .bearer_auth(token("uss1", "utm.strategic_coordination"))
        .json(&intent_body(
            square(10.0 + (before % 60) as f64, 10.0, 0.01),
            &[],
            "Accepted",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    loop {
        let (size, _, _) = log_checkpoint(node, key).await;
        if size > before {
            return size;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The embedded store is bound to its node key and to the last checkpoint
/// it signed: a folder whose database went back (an older copy, as a lost
/// WAL leaves it), went missing, or lost or changed its key refuses to
/// start and says how to recover; the intact folder starts again.
#[tokio::test]
async fn a_data_folder_that_cannot_continue_its_log_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = TestNode::start_in(bin(), &data, &[]);
    let key = tlog::Verifier::parse(get_text(&node.url("/log/key")).await.trim()).unwrap();
    grow_log(&node, &key).await;
    node.kill();
    let early = tmp.path().join("early");
    copy_dir(&data, &early);
    node.start_again();
    let sealed = grow_log(&node, &key).await;
    node.kill();
    let intact = tmp.path().join("intact");
    copy_dir(&data, &intact);
    let database = |d: &Path| {
        for f in ["detente.db", "detente.db-wal", "detente.db-shm"] {
            let _ = std::fs::remove_file(d.join(f));
        }
    };
    let put_database = |from: &Path| {
        database(&data);
        for f in ["detente.db", "detente.db-wal", "detente.db-shm"] {
            if from.join(f).exists() {
                std::fs::copy(from.join(f), data.join(f)).unwrap();
            }
        }
    };

    // An older copy of the database beside the newer seal.
    put_database(&early);
    let said = refuses_to_start(&data);
    assert!(
        said.contains(&format!("signed a checkpoint of {sealed}")) && said.contains("Restore"),
        "{said}"
    );
    // The database deleted: an empty one would start a log of size 0.
    database(&data);
    let said = refuses_to_start(&data);
    assert!(said.contains("a log of 0 entries"), "{said}");
    // The key deleted: a new one would sign this log as another node.
    put_database(&intact);
    std::fs::remove_file(data.join("node.key")).unwrap();
    let said = refuses_to_start(&data);
    assert!(said.contains("node.key is missing"), "{said}");
    assert!(!data.join("node.key").exists(), "no key was made");
    // Another node's key in its place.
    let other = tempfile::tempdir().unwrap();
    let stranger = TestNode::start_in(bin(), other.path(), &[]);
    drop(stranger);
    std::fs::copy(other.path().join("node.key"), data.join("node.key")).unwrap();
    let said = refuses_to_start(&data);
    assert!(said.contains("is not signed by this node's key"), "{said}");

    // The intact folder is the same node, and carries on.
    std::fs::copy(intact.join("node.key"), data.join("node.key")).unwrap();
    node.start_again();
    let (size, _, _) = log_checkpoint(&node, &key).await;
    assert!(size >= sealed);
    grow_log(&node, &key).await;
}

/// `detente` exits with a code that says what went wrong (`detente::exit`),
/// and prints the error's causes, never a backtrace.
#[tokio::test]
async fn the_cli_exits_with_a_code_that_says_what_went_wrong() {
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!said.contains("Stack backtrace"), "{said}");
        (out.status.code(), said)
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let (code, said) = run(&["--log-format", "xml", "key", "--data", data]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("text") && said.contains("json"), "{said}");
    let (code, said) = run(&["inbox", "--node", "http://127.0.0.1:1"]);
    assert_eq!(code, Some(3), "unreachable: {said}");
    assert!(said.starts_with("error: cannot reach the node"), "{said}");
    let node = TestNode::start(bin());
    let (code, said) = run(&["inbox", "--node", &node.base, "--token", "not-a-token"]);
    assert_eq!(code, Some(1), "refused: {said}");
    assert!(said.contains("401"), "{said}");
    let (code, said) = run(&["verify", "--key", "not-a-key", data]);
    assert_eq!(code, Some(2), "{said}");
    let key = get_text(&node.url("/log/key")).await;
    let (code, said) = run(&["verify", "--key", key.trim(), data]);
    assert_eq!(code, Some(1), "not verified: {said}");
    assert!(said.contains("holds no entries"), "{said}");
    // A file that cannot be written is I/O.
    let (code, said) = run(&[
        "airspace",
        "export",
        "--node",
        &node.base,
        "--token",
        &token("v", "utm.strategic_coordination"),
        "--out",
        "/nonexistent-folder/x.geojson",
    ]);
    assert_eq!(code, Some(3), "I/O: {said}");
}
