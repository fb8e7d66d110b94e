//! Dev-only helpers: real `detente serve` processes on port 0 with their own
//! data folders, bearer tokens signed with the committed test keys, and
//! F3548 request bodies. Tests wait on readiness (the node's "listening"
//! line and `/healthz`), never on sleeps.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const AUDIENCE: &str = "dss.detente.test";

/// PostgreSQL tests run when DATABASE_URL is set; CI sets it together with
/// DETENTE_REQUIRE_POSTGRES=1, which turns a missing one into a failure.
pub fn database_url(test: &str) -> Option<String> {
    use std::io::Write;
    match std::env::var_os("DATABASE_URL") {
        Some(u) => Some(u.to_string_lossy().into_owned()),
        None if std::env::var_os("DETENTE_REQUIRE_POSTGRES").is_some() => {
            panic!("{test}: DETENTE_REQUIRE_POSTGRES is set but DATABASE_URL is not")
        }
        None => {
            // Straight to the terminal: the test harness would hide eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: DATABASE_URL is not set (no PostgreSQL to test against)"
            );
            None
        }
    }
}

thread_local! {
    /// The PostgreSQL URL the nodes this thread starts run on, if any.
    static POSTGRES: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// The schemas handed out to this thread's test (dropped at its end).
    static SCHEMAS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// While alive, the nodes (and stores) this thread's test starts run on
/// PostgreSQL, each in a schema of its own.
pub struct OnPostgres(());

impl OnPostgres {
    /// None (the test is skipped, saying so) without a database.
    pub fn enter(test: &str) -> Option<OnPostgres> {
        let url = database_url(test)?;
        POSTGRES.with(|p| *p.borrow_mut() = Some(url));
        Some(OnPostgres(()))
    }
}

impl Drop for OnPostgres {
    /// The test's schemas are dropped (best effort, with psql when there
    /// is one) once its nodes are gone.
    fn drop(&mut self) {
        let url = POSTGRES.with(|p| p.borrow_mut().take());
        let schemas = SCHEMAS.with(|s| std::mem::take(&mut *s.borrow_mut()));
        if let Some(url) = url
            && !schemas.is_empty()
        {
            // Connections a test's stores left open (this thread's runtime
            // is blocked here, so their tasks cannot end them) would make
            // DROP wait forever: they go first.
            let sql = schemas
                .iter()
                .map(|s| {
                    format!(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE application_name = 'detente/{s}'; DROP SCHEMA IF EXISTS {s} CASCADE;"
                    )
                })
                .collect::<String>();
            let _ = Command::new("psql")
                .args(["-q", &url, "-c", &sql])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The database this thread's test runs its nodes on, if PostgreSQL.
pub fn postgres_url() -> Option<String> {
    POSTGRES.with(|p| p.borrow().clone())
}

/// The schema of the node whose data folder is `data` (stable, so a node
/// started again on the same folder finds its state).
pub fn schema_for(data: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let schema = format!("t_{h:016x}");
    SCHEMAS.with(|s| {
        let mut s = s.borrow_mut();
        if !s.contains(&schema) {
            s.push(schema.clone());
        }
    });
    schema
}

/// The flags that put a node on this thread's backend.
fn backend_args(data: &Path) -> Vec<String> {
    match postgres_url() {
        None => Vec::new(),
        Some(url) => vec![
            "--database-url".into(),
            url,
            "--database-schema".into(),
            schema_for(data),
        ],
    }
}

/// Runs a test once on the embedded store (`NAME::sqlite`) and once on
/// PostgreSQL (`NAME::postgres`, skipped with a message without
/// DATABASE_URL): every node and store the test starts on its thread uses
/// that backend.
#[macro_export]
macro_rules! both_backends {
    ($(#[$attr:meta])* async fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$attr])*
            async fn sqlite() $body
            $(#[$attr])*
            async fn postgres() {
                let Some(_pg) = $crate::OnPostgres::enter(concat!(module_path!(), "::postgres")) else {
                    return;
                };
                $body
            }
        }
    };
}

pub fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// Which key signs a test token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The key test nodes trust.
    Trusted,
    /// A key no node trusts.
    Other,
}

/// How to mint a token; `Default` is a valid token for [`AUDIENCE`].
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub sub: String,
    pub scope: String,
    pub audience: String,
    /// Seconds from now until `exp` (negative: already expired).
    pub expires_in: i64,
    pub signer: Signer,
}

impl TokenSpec {
    pub fn new(sub: &str, scope: &str) -> Self {
        TokenSpec {
            sub: sub.into(),
            scope: scope.into(),
            audience: AUDIENCE.into(),
            expires_in: 600,
            signer: Signer::Trusted,
        }
    }
    pub fn mint(&self) -> String {
        #[allow(clippy::disallowed_methods)] // tests mint real tokens against the real clock
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let claims = json!({ "sub": self.sub, "scope": self.scope, "aud": self.audience, "exp": now + self.expires_in, "iss": "test", "jti": format!("{now}-{}", self.sub) });
        let file = match self.signer {
            Signer::Trusted => "test-private.pem",
            Signer::Other => "other-private.pem",
        };
        let pem = std::fs::read(keys_dir().join(file)).expect("test key");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("test key is RSA PEM");
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .expect("signing")
    }
}

/// Runs `bin` with `args` (and `envs`) to completion: whether it succeeded,
/// and its stdout followed by its stderr.
pub fn run_cli(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("running the binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A plain `reqwest` client for a test's own requests (the process's TLS
/// provider installed first: building a client without one panics).
pub fn http() -> reqwest::Client {
    client::install_crypto();
    reqwest::Client::new()
}

/// A `reqwest` client builder, the TLS provider installed first.
pub fn http_builder() -> reqwest::ClientBuilder {
    client::install_crypto();
    reqwest::Client::builder()
}

/// The body of a GET of `url` as text (public endpoints: keys, checkpoints),
/// on a fresh client (no pooled connection to a process since killed).
pub async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("a text body")
}

/// A valid token for `sub` with the given space-separated scopes.
pub fn token(sub: &str, scope: &str) -> String {
    TokenSpec::new(sub, scope).mint()
}

/// A running `detente serve` process. Killed when dropped.
pub struct TestNode {
    pub base: String,
    /// The node-to-node TLS listener (`https://…`), when started with `--peer-listen`.
    pub peer_base: Option<String>,
    pub data: PathBuf,
    child: Child,
    bin: PathBuf,
    extra: Vec<String>,
    /// Environment for the process, kept across restarts (set it before
    /// [`TestNode::start_again`] to restart with another, e.g. a clock offset).
    pub env: Vec<(String, String)>,
    /// The flags that put it on its backend (kept across restarts).
    database: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Starts a node with a fresh data folder.
    pub fn start(bin: &Path) -> TestNode {
        Self::start_with(bin, &[])
    }

    pub fn start_with(bin: &Path, extra: &[&str]) -> TestNode {
        let pem = keys_dir().join("test-public.pem");
        let mut args: Vec<String> = vec!["--jwt-public-key".into(), pem.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_raw(bin, &args.iter().map(|s| s.as_str()).collect::<Vec<_>>())
    }

    /// Starts a node on the data folder `data` (created if needed; kept),
    /// trusting the committed test key.
    pub fn start_in(bin: &Path, data: &Path, extra: &[&str]) -> TestNode {
        let pem = keys_dir().join("test-public.pem");
        let mut args: Vec<String> = vec!["--jwt-public-key".into(), pem.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        Self::spawn(bin, data, &free_local_addr().to_string(), &args, &[])
    }

    /// Starts a node with exactly these extra flags (no key is added).
    pub fn start_raw(bin: &Path, extra: &[&str]) -> TestNode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut n = Self::spawn(bin, &data, &free_local_addr().to_string(), extra, &[]);
        n._tmp = Some(tmp);
        n
    }

    /// Whether it runs on PostgreSQL (and in which schema).
    pub fn postgres_schema(&self) -> Option<&str> {
        self.database.get(3).map(|s| s.as_str())
    }

    fn spawn(
        bin: &Path,
        data: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> TestNode {
        // A test that names a database itself gets exactly that one.
        let database = if extra.contains(&"--database-url") {
            Vec::new()
        } else {
            backend_args(data)
        };
        Self::spawn_on(bin, data, listen, extra, env, database)
    }

    fn spawn_on(
        bin: &Path,
        data: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(String, String)],
        database: Vec<String>,
    ) -> TestNode {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", listen, "--jwt-audience", AUDIENCE])
            .args(&database)
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawning detente serve");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut peer_base = None;
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("detente peer listener on ") {
                        peer_base = Some(addr.trim().to_string());
                    }
                    if let Some(addr) = line.strip_prefix("detente listening on ") {
                        break addr.trim().to_string();
                    }
                }
                _ => panic!("detente serve exited before listening"),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestNode {
            base,
            peer_base,
            data: data.to_path_buf(),
            child,
            bin: bin.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
            database,
            _tmp: None,
        }
    }

    /// SIGSTOP: the process stops answering (its sockets stay open) until
    /// [`TestNode::resume`].
    pub fn pause(&self) {
        let _ = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status();
    }

    /// SIGCONT after [`TestNode::pause`].
    pub fn resume(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process and starts a new one on the same data folder and
    /// the same address (peers keep reaching it).
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Starts the process again after [`TestNode::kill`], on the same data
    /// folder and address.
    pub fn start_again(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(|s| s.as_str()).collect();
        let listen = self.base.trim_start_matches("http://").to_string();
        let fresh = Self::spawn_on(
            &self.bin,
            &self.data,
            &listen,
            &extra,
            &self.env,
            self.database.clone(),
        );
        self.base = fresh.base.clone();
        self.peer_base = fresh.peer_base.clone();
        let mut fresh = fresh;
        std::mem::swap(&mut self.child, &mut fresh.child);
        // `fresh` now owns the dead child; dropping it is harmless.
    }

    /// Kills the process and starts a new one on the same data folder with
    /// these extra flags (the trusted test key is added).
    pub fn restart_with(&mut self, extra: &[&str]) {
        let pem = keys_dir().join("test-public.pem");
        let mut args: Vec<String> = vec!["--jwt-public-key".into(), pem.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.extra = args;
        self.restart();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The typed client of this node with `token`, for a test's setting-up
    /// (what a test asserts about the wire, it sends as plain HTTP).
    pub fn client(&self, token: &str) -> client::Client {
        client::Client::new(&self.base, Duration::from_secs(30))
            .expect("the node's URL")
            .with_token(token)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// RFC 3339 of now + `seconds`.
pub fn at(seconds: i64) -> Value {
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        + seconds;
    let days = now.div_euclid(86_400);
    let secs = now.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    json!({ "value": format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60), "format": "RFC3339" })
}

/// A Volume4D with a polygon outline; times in seconds from now.
pub fn polygon_volume(vertices: &[(f64, f64)], alt: (f64, f64), from_s: i64, to_s: i64) -> Value {
    json!({
        "volume": {
            "outline_polygon": { "vertices": vertices.iter().map(|(lat, lng)| json!({"lat": lat, "lng": lng})).collect::<Vec<_>>() },
            "altitude_lower": { "value": alt.0, "reference": "W84", "units": "M" },
            "altitude_upper": { "value": alt.1, "reference": "W84", "units": "M" },
        },
        "time_start": at(from_s),
        "time_end": at(to_s),
    })
}

/// A square of half-side `h` degrees, 0–500 m, from `from_s` to `to_s`
/// seconds from now.
pub fn square_during(lat: f64, lng: f64, h: f64, from_s: i64, to_s: i64) -> Value {
    polygon_volume(
        &[
            (lat - h, lng - h),
            (lat - h, lng + h),
            (lat + h, lng + h),
            (lat + h, lng - h),
        ],
        (0.0, 500.0),
        from_s,
        to_s,
    )
}

/// A square of half-side `h` degrees, 0–500 m, from now to +1 h.
pub fn square(lat: f64, lng: f64, h: f64) -> Value {
    square_during(lat, lng, h, 0, 3600)
}

/// The same square from a minute ago to +2 h: wide enough in time to cover
/// any `square` made during the test (times are whole seconds).
pub fn long_square(lat: f64, lng: f64, h: f64) -> Value {
    square_during(lat, lng, h, -60, 7200)
}

/// A PutOperationalIntentReferenceParameters body.
pub fn intent_body(extents: Value, key: &[&str], state: &str) -> Value {
    json!({
        "extents": [extents],
        "key": key,
        "state": state,
        "uss_base_url": "https://uss.example/utm",
        "new_subscription": { "uss_base_url": "https://uss.example/utm", "notify_for_constraints": false },
    })
}

/// A fresh UUIDv4 for entity ids.
pub fn new_id() -> String {
    #[allow(clippy::disallowed_methods)]
    let id = uuid::Uuid::new_v4();
    id.to_string()
}

/// PUTs each `(url, token, body)` at once, from tasks of their own, and
/// answers the status codes sorted (racing writers).
pub async fn race_puts(puts: Vec<(String, String, Value)>) -> Vec<u16> {
    let tasks: Vec<_> = puts
        .into_iter()
        .map(|(url, tok, body)| {
            tokio::spawn(async move {
                http()
                    .put(url)
                    .bearer_auth(tok)
                    .json(&body)
                    .send()
                    .await
                    .expect("a racing PUT")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("a racing writer"));
    }
    got.sort_unstable();
    got
}

/// Writer `w` creates small non-intersecting intents through `base` (each
/// writer in its own row) while `go(i)` holds or until the node stops
/// answering, adding the id of each one acknowledged (201) to `acked`;
/// with `refused`, a 500 (a storage failure: nothing of that write kept)
/// or a 503 (the store unavailable until it has reloaded: nothing tried) is
/// counted there; any other answer fails the test.
pub async fn create_until(
    base: String,
    w: usize,
    acked: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    refused: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    go: impl Fn(u64) -> bool,
) {
    let t = token(&format!("uss{w}"), "utm.strategic_coordination");
    let client = http();
    let mut i = 0u64;
    while go(i) {
        let id = new_id();
        let body = intent_body(
            square(0.02 * w as f64, 0.0005 * i as f64, 0.0001),
            &[],
            "Accepted",
        );
        i += 1;
        match client
            .put(format!("{base}/dss/v1/operational_intent_references/{id}"))
            .bearer_auth(&t)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status() == 201 => {
                acked.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
            }
            Ok(r) if (r.status() == 500 || r.status() == 503) && refused.is_some() => {
                if let Some(n) = &refused {
                    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Ok(r) => panic!("unexpected {}", r.status()),
            Err(_) => break, // the node is gone
        }
    }
}

/// The node's newest checkpoint, verified with its key: (size, root, note).
pub async fn log_checkpoint(node: &TestNode, key: &tlog::Verifier) -> (u64, tlog::Hash, String) {
    let note = get_text(&node.url("/log/checkpoint")).await;
    let (n, _) = tlog::note::open(note.as_bytes(), std::slice::from_ref(key))
        .expect("a checkpoint signed by the node's key");
    let c = tlog::Checkpoint::parse(&n.text).expect("a checkpoint");
    (c.size, c.root, note)
}

/// The entries of the node's log its process has committed or seen
/// committed (`detente_log_size` on `/metrics`).
pub async fn committed_log_size(node: &TestNode) -> u64 {
    let text = get_text(&node.url("/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix("detente_log_size "))
        .and_then(|v| v.trim().parse().ok())
        .expect("detente_log_size on /metrics")
}

/// Waits until the node's checkpoint covers every entry its process had
/// committed when called and then stops growing (one is signed every 0.5 s
/// while the log grows), and answers its size and root.
pub async fn settled_checkpoint(node: &TestNode, key: &tlog::Verifier) -> (u64, tlog::Hash) {
    let committed = committed_log_size(node).await;
    let size_root = |c: (u64, tlog::Hash, String)| (c.0, c.1);
    let mut last = size_root(log_checkpoint(node, key).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let now = size_root(log_checkpoint(node, key).await);
        if now == last && now.0 >= committed {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint covered the {committed} committed entries within 120 s (the newest: {})",
            now.0
        );
        last = now;
    }
}

/// The node's log entries `0..size`: (leaf bytes, parsed entry). A signed
/// one is verified with `key`; an unattested one must be the node's own
/// and not the line's (`tlog::entry`).
pub async fn log_entries(
    node: &TestNode,
    size: u64,
    key: &tlog::Verifier,
) -> Vec<(Vec<u8>, tlog::entry::SignedEntry)> {
    let all = raw_log_entries(node, size).await;
    for (_, s) in &all {
        if s.is_signed() {
            s.verify(key).expect("signed by the node");
        } else {
            assert_eq!(
                s.entry.origin, key.name,
                "an unattested entry is the node's own"
            );
            assert!(
                !s.entry.kind.starts_with("line."),
                "line entries are signed"
            );
        }
    }
    all
}

/// The entries `0..size` of a node on the line whose origin is the node
/// itself (its peers' records, appended verbatim, left out), each signed
/// one verified with `key`.
pub async fn own_log_entries(
    node: &TestNode,
    size: u64,
    key: &tlog::Verifier,
) -> Vec<(Vec<u8>, tlog::entry::SignedEntry)> {
    let mut all = raw_log_entries(node, size).await;
    all.retain(|(_, s)| s.entry.origin == key.name);
    for (_, s) in &all {
        if s.is_signed() {
            s.verify(key).expect("signed by the node");
        }
    }
    all
}

pub async fn raw_log_entries(
    node: &TestNode,
    size: u64,
) -> Vec<(Vec<u8>, tlog::entry::SignedEntry)> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + 1000).min(size);
        let v: Value = serde_json::from_str(
            &get_text(&node.url(&format!("/log/entries?start={start}&end={end}"))).await,
        )
        .expect("entries as JSON");
        for e in v["entries"].as_array().expect("an entries array") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(e.as_str().expect("base64 text"))
                .expect("base64");
            let s = tlog::entry::SignedEntry::parse(&bytes).expect("a log entry");
            out.push((bytes, s));
        }
        start = end;
    }
    out
}

/// The `id` in an entry's body, if it has one.
pub fn entry_id(s: &tlog::entry::SignedEntry) -> Option<String> {
    let tlog::cbor::Value::Map(pairs) = &s.entry.body else {
        return None;
    };
    pairs.iter().find_map(|(k, v)| match (k, v) {
        (tlog::cbor::Value::Text(k), tlog::cbor::Value::Text(v)) if k == "id" => Some(v.clone()),
        _ => None,
    })
}

/// Waits up to `timeout` for `f` to return true, polling.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A tmpfs of `mb` MiB (a small disk to fill), unmounted when dropped.
/// Mounting needs root: without it the test `test` is skipped, saying so,
/// unless `DETENTE_REQUIRE_TMPFS` is set (CI sets it as root), which makes
/// that a failure.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(mb: u32, test: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("detente-full-{}", new_id()));
        std::fs::create_dir_all(&dir).expect("a folder for the tmpfs");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(Tmpfs(dir));
        }
        let _ = std::fs::remove_dir(&dir);
        assert!(
            std::env::var_os("DETENTE_REQUIRE_TMPFS").is_none(),
            "DETENTE_REQUIRE_TMPFS is set but a tmpfs cannot be mounted (root is needed)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: cannot mount a tmpfs (root is needed); set DETENTE_REQUIRE_TMPFS=1 to make this a failure"
        );
        None
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the file system holding `dir` to the last byte; answers the
/// filler file (remove it to free the space).
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("the filler file");
    let block = vec![0xa5u8; 64 * 1024];
    let mut small = vec![0xa5u8; 512];
    while f.write_all(&block).is_ok() {}
    // The last partial block.
    while f.write_all(&small).is_ok() {}
    small.truncate(1);
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

/// The armed pattern of [`CuttableProxy::lose_reply_after`] and its
/// kin, and what becomes of the link once a request carries it.
type LoseAfter = Arc<Mutex<Option<(Vec<u8>, Then)>>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// That connection drops; others go on.
    Drop,
    /// That connection drops, and the link is cut.
    Cut,
    /// The link goes silent, that connection still open.
    Stall,
}

/// A TCP proxy to `target` that can be cut (every open connection reset,
/// new ones closed at once) and restored: a database link going down. It
/// can also lose one answer: the first request carrying a given pattern
/// reaches the server, and the connection drops before its reply comes back
/// (a commit the database took but whose acknowledgement was lost); and it
/// can go silent (a link that drops packets without resetting anything).
pub struct CuttableProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    lose_after: LoseAfter,
}

impl CuttableProxy {
    pub fn start(target: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let lose_after: LoseAfter = Arc::default();
        let (c, st, o, l) = (
            cut.clone(),
            stalled.clone(),
            open.clone(),
            lose_after.clone(),
        );
        std::thread::spawn(move || {
            let mut parked = Vec::new();
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    // Refused: closed at once.
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if st.load(Ordering::SeqCst) {
                    // Silent: connected, never answered.
                    parked.push(client);
                    continue;
                }
                parked.clear();
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut o = o.lock().unwrap_or_else(|p| p.into_inner());
                for s in [&client, &server] {
                    o.push(s.try_clone().expect("clone a socket"));
                }
                let deaf = Arc::new(AtomicBool::new(false));
                let clone = |s: &TcpStream| s.try_clone().expect("clone a socket");
                let up = Pipe {
                    from: clone(&client),
                    to: clone(&server),
                    deaf: deaf.clone(),
                    stalled: st.clone(),
                    lose_after: Some(l.clone()),
                    cut: c.clone(),
                };
                let down = Pipe {
                    from: server,
                    to: client,
                    deaf,
                    stalled: st.clone(),
                    lose_after: None,
                    cut: c.clone(),
                };
                up.spawn();
                down.spawn();
            }
        });
        CuttableProxy {
            addr,
            cut,
            stalled,
            open,
            lose_after,
        }
    }

    /// Resets every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Goes silent: what either side sends is dropped, and new
    /// connections are accepted but never answered — until restored.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// The next request (one read from the client) that contains
    /// `pattern` goes to the server, and its connection then drops with
    /// nothing more passed back to the client.
    pub fn lose_reply_after(&self, pattern: &[u8]) {
        *self.lose_after.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((pattern.to_vec(), Then::Drop));
    }

    /// [`Self::lose_reply_after`], and new connections are refused from
    /// then on (as after [`Self::cut`]) until restored: the client cannot
    /// ask what became of its request.
    pub fn lose_reply_and_cut(&self, pattern: &[u8]) {
        *self.lose_after.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((pattern.to_vec(), Then::Cut));
    }

    /// The next request that contains `pattern` goes to the server, and
    /// the link then goes silent (as after [`Self::stall`]) before the
    /// answer comes back: a link that dies in the middle of a query.
    pub fn stall_after(&self, pattern: &[u8]) {
        *self.lose_after.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((pattern.to_vec(), Then::Stall));
    }

    /// Whether the armed [`Self::lose_reply_after`] has fired.
    pub fn reply_lost(&self) -> bool {
        self.lose_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

/// One direction of a proxied connection.
struct Pipe {
    from: TcpStream,
    to: TcpStream,
    /// Set once a reply is to be lost: nothing more goes to the client.
    deaf: Arc<AtomicBool>,
    /// While set, what is read is dropped.
    stalled: Arc<AtomicBool>,
    /// Client to server only: the armed pattern.
    lose_after: Option<LoseAfter>,
    /// Set when a lost reply is to cut the link too.
    cut: Arc<AtomicBool>,
}

impl Pipe {
    fn spawn(mut self) {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match self.from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                if self.stalled.load(Ordering::SeqCst) {
                    continue;
                }
                let then = self.lose_after.as_ref().and_then(|l| {
                    let mut armed = l.lock().unwrap_or_else(|p| p.into_inner());
                    let hit = armed
                        .as_ref()
                        .is_some_and(|(p, _)| chunk.windows(p.len()).any(|w| w == p.as_slice()));
                    if hit {
                        armed.take().map(|(_, then)| then)
                    } else {
                        None
                    }
                });
                if then == Some(Then::Stall) {
                    // Silent before the request passes: no byte of the
                    // answer gets back.
                    self.stalled.store(true, Ordering::SeqCst);
                    if self.to.write_all(chunk).is_err() {
                        break;
                    }
                    continue;
                }
                if then == Some(Then::Cut) {
                    self.cut.store(true, Ordering::SeqCst);
                }
                if then.is_some() {
                    // Deaf first, so that no byte of the reply gets through.
                    self.deaf.store(true, Ordering::SeqCst);
                    let _ = self.to.write_all(chunk);
                    let _ = self.from.shutdown(Shutdown::Both);
                    // The server has the request whole; let it run it.
                    std::thread::sleep(Duration::from_millis(500));
                    break;
                }
                if self.deaf.load(Ordering::SeqCst) || self.to.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = self.to.shutdown(Shutdown::Both);
            let _ = self.from.shutdown(Shutdown::Both);
        });
    }
}

/// A free address on 127.0.0.1 for a node that will be restarted on it.
///
/// Not one the kernel hands out for port 0: those come from the range it
/// also gives outgoing connections their local ports from, and while a
/// node is down between a kill and its restart, any test's outgoing
/// connection can take its port (a restart then failed with "address
/// already in use" in CI). Ports below that range are never
/// taken that way; one is drawn at random and checked free — and never
/// one this process handed out before: the tests of one binary run
/// side by side, and another test drawing the port of a node that is down
/// for a restart took it (a restart failed "address already in use" in CI).
pub fn free_local_addr() -> SocketAddr {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOWEST: u16 = 10_000;
    if ephemeral_from > LOWEST + 1_000 {
        let span = u64::from(ephemeral_from - LOWEST);
        let random = RandomState::new();
        for attempt in 0u64..200 {
            let port = LOWEST + (random.hash_one(attempt) % span) as u16;
            if handed.contains(&port) {
                continue;
            }
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                handed.push(port);
                return l.local_addr().expect("a bound address");
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// `url` with its host and port replaced by `addr` (user, password,
/// database and parameters kept).
pub fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (auth, rest) = match rest.split_once('@') {
        Some((a, r)) => (format!("{a}@"), r),
        None => (String::new(), rest),
    };
    let path = rest.find(['/', '?']).map_or("", |i| &rest[i..]);
    format!("{scheme}://{auth}{addr}{path}")
}

/// Where a PostgreSQL `url` points (its first address).
pub fn postgres_target(url: &str) -> SocketAddr {
    let (host, port) = postgres_host_port(url);
    (host.as_str(), port)
        .to_socket_addrs()
        .expect("resolve the database host")
        .next()
        .expect("an address for the database host")
}

/// The host and port of a `postgres://` URL (5432 when none is given).
fn postgres_host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse().expect("a port number"),
        ),
        _ => (
            if hostport.is_empty() {
                "localhost".into()
            } else {
                hostport.to_string()
            },
            5432,
        ),
    }
}

/// One request an [`HttpRecorder`] took.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A plain HTTP/1.1 server on 127.0.0.1 standing for a USS (or a token
/// endpoint): it records every request and answers each with the next
/// status of `statuses` (the last one repeated), an empty body, the
/// connection closed.
pub struct HttpRecorder {
    pub base: String,
    taken: Arc<Mutex<Vec<Recorded>>>,
}

impl HttpRecorder {
    pub fn start(statuses: Vec<u16>) -> HttpRecorder {
        HttpRecorder::answering(statuses.into_iter().map(|s| (s, String::new())).collect())
    }

    /// The same, each answer with a JSON body of its own.
    pub fn answering(answers: Vec<(u16, String)>) -> HttpRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the recorder");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let record = taken.clone();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().expect("a clone of the stream"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                );
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_lowercase(), v.trim().to_string()));
                    }
                }
                let len = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                record.lock().expect("the record").push(Recorded {
                    method,
                    path,
                    headers,
                    body,
                });
                let (status, body) = answers
                    .get(n)
                    .or(answers.last())
                    .cloned()
                    .unwrap_or((204, String::new()));
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.shutdown(Shutdown::Both);
            }
        });
        HttpRecorder { base, taken }
    }

    /// What it has taken so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.taken.lock().expect("the record").clone()
    }
}

/// The (methods, path) of every `.route(…)` in the API crate's source.
pub fn api_routes() -> Vec<(Vec<&'static str>, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("reading the API's source")
        .map(|e| e.expect("reading the API's source").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let src = std::fs::read_to_string(&f).expect("reading the API's source");
        let mut rest = src.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            // The call's arguments: up to the matching parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(j, _)| j)
                .expect("reading the API's source");
            let args = &rest[..end];
            let path = args
                .split('"')
                .nth(1)
                .expect("reading the API's source")
                .to_string();
            let mut methods = Vec::new();
            for (name, m) in [
                ("get(", "GET"),
                ("post(", "POST"),
                ("put(", "PUT"),
                ("delete(", "DELETE"),
                ("patch(", "PATCH"),
            ] {
                let called = args.match_indices(name).any(|(k, _)| {
                    k == 0
                        || !args[..k]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if called {
                    methods.push(m);
                }
            }
            assert!(!methods.is_empty(), "{}: no method for {path}", f.display());
            out.push((methods, path));
        }
    }
    out
}

/// Runs Prometheus's `promtool` with `args` in `dir`, `stdin` fed to it;
/// `None` (the check skipped, saying so) where promtool cannot run, unless
/// `DETENTE_REQUIRE_PROMTOOL` is set (CI sets it), which makes that a
/// failure. Debian: `apt install prometheus`.
pub fn promtool(args: &[&str], dir: &Path, stdin: &str) -> Option<std::process::Output> {
    use std::io::Write as _;
    let child = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("DETENTE_REQUIRE_PROMTOOL").is_none(),
                "DETENTE_REQUIRE_PROMTOOL is set but promtool cannot run: {e}"
            );
            // Straight to the terminal: the test harness would hide eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED promtool {}: promtool cannot run ({e}; apt install prometheus); set DETENTE_REQUIRE_PROMTOOL=1 to make this a failure",
                args.join(" ")
            );
            return None;
        }
    };
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .expect("writing to promtool");
    }
    Some(child.wait_with_output().expect("promtool's output"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_postgres_url_is_pointed_through_the_proxy_keeping_the_rest() {
        let a: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert_eq!(
            through("postgres://u:p@db.example:5433/test?sslmode=disable", a),
            "postgres://u:p@127.0.0.1:6000/test?sslmode=disable"
        );
        assert_eq!(
            through("postgres://postgres@127.0.0.1/test", a),
            "postgres://postgres@127.0.0.1:6000/test"
        );
        assert_eq!(
            postgres_host_port("postgres://u:p@db.example:5433/test"),
            ("db.example".to_string(), 5433)
        );
        assert_eq!(
            postgres_host_port("postgres://postgres@127.0.0.1/test"),
            ("127.0.0.1".to_string(), 5432)
        );
        assert_eq!(
            postgres_host_port("postgres://[::1]:5434/x"),
            ("::1".to_string(), 5434)
        );
    }
}
