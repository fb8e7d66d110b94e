//! The line under faults, over real processes: two nodes, clients sending
//! thousands of member-signed messages from Federation to Alliance, while a
//! seeded schedule SIGKILLs and restarts the receiver (and now and then the
//! sender), pauses either with SIGSTOP, and cuts and restores the link
//! through a TCP proxy of the test's own; the nodes' wall clocks disagree
//! (libfaketime), the sender's by a new offset at each of its restarts, and
//! one sender writes on a mission channel under an accreditation made by
//! the receiver's clock. The schedule also fills the receiver's disk, slows
//! the link, flips a byte in flight, and — acting as a network that
//! duplicates and reorders — replays the sender's records to the receiver
//! shuffled and twice, some ahead of the sender's own delivery. Meanwhile a
//! USS plans (and deletes) operations in the shared area on the sender's
//! node, and the receiver accredits and revokes the sender's liaison
//! officers. At the end every message a client was told was accepted is
//! classified as ok / lost / duplicated / reordered (the Jepsen queue
//! checker's categories), every acknowledged operation and accreditation
//! change must be on the other node as acknowledged, and both logs must
//! verify and carry the other's cosignature.
//! Runs on both backends (the PostgreSQL one when DATABASE_URL is set).
//!
//! `DETENTE_FAULT_SEED` replays a schedule; `DETENTE_FAULT_MESSAGES` sets
//! the number of messages (default 2,000).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use liaison::{Body, MemberSigner, Message, Precedence, Sphere};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use test_support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

const A: &str = "alliance.faults";
const F: &str = "federation.faults";
/// Federation's liaison officers, accredited and revoked during the faults.
const LIAISONS: usize = 3;
/// The USS planning operations on Federation's node during the faults.
const FED_USS: &str = "federation-uss";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var_os(name).and_then(|s| s.to_str().and_then(|s| s.parse().ok()))
}

/// The environment that runs a node with its wall clock offset by
/// `offset_s` (libfaketime, monotonic time untouched so timers behave), or
/// none when libfaketime is missing: the clock offsets are then skipped
/// (said on the terminal), unless `DETENTE_REQUIRE_FAKETIME` is set.
fn clock(offset_s: i64) -> Vec<(String, String)> {
    let lib = std::env::var_os("DETENTE_FAKETIME_LIB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1".into());
    if !lib.exists() {
        assert!(
            std::env::var_os("DETENTE_REQUIRE_FAKETIME").is_none(),
            "DETENTE_REQUIRE_FAKETIME is set but {} does not exist (apt install faketime)",
            lib.display()
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED clock offsets: {} does not exist (apt install faketime)",
            lib.display()
        );
        return Vec::new();
    }
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), format!("{offset_s:+}s")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// xorshift64*: a replayable schedule needs nothing more.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A TCP proxy that can cut every connection and refuse new ones, slow
/// the link down (every chunk held for a delay, in order) and corrupt a
/// byte in flight (the TLS between the nodes runs through it, end to end:
/// its integrity check must catch that). Loss, duplication and reordering
/// of packets happen below TCP and need `tc netem`, which this kernel
/// lacks ("qdisc kind is unknown"); TCP turns them into delay anyway.
/// Duplication and reordering of whole records is [`replay`]'s.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    delay_ms: Arc<AtomicU64>,
    corrupt: Arc<AtomicBool>,
}

/// Copies `from` to `to` chunk by chunk, holding each for the proxy's
/// current delay and flipping a byte when asked.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
    corrupt: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let d = delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d)).await;
        }
        if corrupt.swap(false, Ordering::SeqCst) {
            buf[n / 2] ^= 0x40;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let delay_ms = Arc::new(AtomicU64::new(0));
        let corrupt = Arc::new(AtomicBool::new(false));
        let (up2, cut2) = (up.clone(), cut.clone());
        let (delay2, corrupt2) = (delay_ms.clone(), corrupt.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = l.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut rx = cut2.subscribe();
                let (delay, corrupt) = (delay2.clone(), corrupt2.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::join!(
                                pump(in_r, out_w, delay.clone(), corrupt.clone()),
                                pump(out_r, in_w, delay, corrupt),
                            )
                        } => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            cut,
            delay_ms,
            corrupt,
        }
    }
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }
    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
    fn slow(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
    fn corrupt_next(&self) {
        self.corrupt.store(true, Ordering::SeqCst);
    }
}

async fn call(
    method: &str,
    url: &str,
    tok: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let c = test_support::http_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = c.request(method, url).bearer_auth(tok);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.map_err(|e| e.to_string())?;
    let s = r.status().as_u16();
    let t = r.text().await.map_err(|e| e.to_string())?;
    Ok((s, serde_json::from_str(&t).unwrap_or(Value::String(t))))
}

async fn must(method: &str, url: &str, tok: &str, body: Option<Value>) -> Value {
    let (s, v) = call(method, url, tok, body).await.unwrap();
    assert!((200..300).contains(&s), "{method} {url}: {s} {v}");
    v
}

async fn text(url: &str) -> String {
    get_text(url).await.trim().to_string()
}

#[allow(clippy::disallowed_methods)] // a client's own clock
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sends a request until the node answers (a killed or paused node does
/// not; a 5xx — a node reloading after a failed commit — counts as no
/// answer). Answers whether an earlier try went unanswered (it may still
/// have been taken), the status and the body.
async fn until_answered(
    method: &str,
    url: &str,
    tok: &str,
    body: Option<Value>,
) -> (bool, u16, Value) {
    let mut unanswered = false;
    for _ in 0..600 {
        match call(method, url, tok, body.clone()).await {
            Ok((s, v)) if s < 500 => return (unanswered, s, v),
            _ => {
                unanswered = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("{method} {url}: the node never came back");
}

/// Plans operation `k` on Federation's node, inside the shared area and
/// clear of every other, and deletes every fourth again. Answers its id and
/// whether it was deleted; panics on any refusal.
async fn plan_operation(f_base: &str, uss: &str, seed: u64, k: u64) -> (String, bool) {
    let mut b = [0u8; 16];
    // k in the first half, clear of the version and variant bits (k < 4096).
    b[..8].copy_from_slice(&k.to_be_bytes());
    b[8..].copy_from_slice(&(seed ^ 0x0be7_a710).to_le_bytes());
    let id = uuid::Builder::from_random_bytes(b).into_uuid().to_string();
    let (lat, lng) = (44.6 + (k / 40) as f64 * 0.02, 9.6 + (k % 40) as f64 * 0.03);
    let url = format!("{f_base}/dss/v1/operational_intent_references/{id}");
    // Starting in 5 min: in the future by either node's clock.
    let body = intent_body(square_during(lat, lng, 0.002, 300, 7200), &[], "Accepted");
    let (retried, s, v) = until_answered("PUT", &url, uss, Some(body)).await;
    let ovn = match s {
        201 => v["operational_intent_reference"]["ovn"].clone(),
        // An earlier try was taken, its answer lost with the node.
        409 if retried => {
            let (_, s, v) = until_answered("GET", &url, uss, None).await;
            assert_eq!(s, 200, "operation {k}: 409 on a retry, yet not there: {v}");
            v["operational_intent_reference"]["ovn"].clone()
        }
        _ => panic!("operation {k} refused: {s} {v}"),
    };
    let ovn = ovn.as_str().expect("the manager sees its OVN").to_string();
    if k % 4 != 3 {
        return (id, false);
    }
    let (retried, s, v) = until_answered("DELETE", &format!("{url}/{ovn}"), uss, None).await;
    assert!(
        s == 200 || (s == 404 && retried),
        "deleting operation {k}: {s} {v}"
    );
    (id, true)
}

/// The first accreditation in a node's missions view that `pick` takes.
async fn find_accreditation(
    base: &str,
    admin: &str,
    pick: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let (_, s, v) = until_answered("GET", &format!("{base}/line/v1/missions"), admin, None).await;
    assert_eq!(s, 200, "{v}");
    v["missions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["accreditations"].as_array().cloned().unwrap_or_default())
        .find(|a| pick(a))
}

/// Alliance accredits Federation's `member`; answers the accreditation id.
async fn accredit(a_base: &str, admin: &str, member: &str, name: &str) -> String {
    let (retried, s, v) = until_answered(
        "POST",
        &format!("{a_base}/line/v1/missions/{F}/accreditations"),
        admin,
        Some(json!({ "member": member, "name": name, "role": "liaison officer", "spheres": ["military"], "valid_until_ms": now_ms() + 86_400_000 })),
    )
    .await;
    match s {
        201 => v["id"].as_str().unwrap().to_string(),
        409 if retried => find_accreditation(a_base, admin, |x| {
            x["member"] == member && x["revoked"].is_null()
        })
        .await
        .unwrap_or_else(|| panic!("accrediting {name}: 409 on a retry, yet no accreditation: {v}"))
            ["id"]
            .as_str()
            .unwrap()
            .to_string(),
        _ => panic!("accrediting {name} refused: {s} {v}"),
    }
}

/// Alliance revokes accreditation `id`.
async fn revoke(a_base: &str, admin: &str, id: &str, reason: &str) {
    let (retried, s, v) = until_answered(
        "POST",
        &format!("{a_base}/line/v1/accreditations/{id}/revoke"),
        admin,
        Some(json!({ "reason": reason })),
    )
    .await;
    if s == 200 {
        return;
    }
    assert!(retried, "revoking {id} refused: {s} {v}");
    let x = find_accreditation(a_base, admin, |x| x["id"] == id)
        .await
        .unwrap_or_else(|| panic!("revoking {id}: {s} {v}, and it is gone"));
    assert!(
        !x["revoked"].is_null(),
        "revoking {id}: {s} {v} on a retry, and it is not revoked"
    );
}

/// The network duplicating and reordering records: replays a handful of
/// Federation's recent records for Alliance, drawn at random (so shuffled,
/// some twice, some not yet delivered), straight to Alliance's peer
/// endpoint under Federation's own TLS identity. Answers what each post
/// got back.
async fn replay(
    f_data: &Path,
    f_base: &str,
    admin: &str,
    a_peer: SocketAddr,
    a_key: [u8; 32],
    rng: &mut Rng,
) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    let (name, seed) = detente::key::load_seed(f_data).unwrap();
    let id = api::tls::Identity::from_seed(&name, &seed).unwrap();
    let Ok((200, cp)) = call("GET", &format!("{f_base}/log/checkpoint"), admin, None).await else {
        return Vec::new();
    };
    let size: u64 = cp
        .as_str()
        .and_then(|t| t.lines().nth(1))
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let start = size.saturating_sub(20 + rng.below(300));
    let Ok((200, v)) = call(
        "GET",
        &format!("{f_base}/log/entries?start={start}&end={size}"),
        admin,
        None,
    )
    .await
    else {
        return Vec::new();
    };
    let records: Vec<Vec<u8>> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| B64.decode(e.as_str().unwrap()).unwrap())
        .filter(|b| {
            matches!(liaison::decide::line_entry(b), Some(Ok((_, l)))
                if l.envelope.as_ref().is_some_and(|e| e.to == A))
        })
        .collect();
    if records.is_empty() {
        return Vec::new();
    }
    let tls = api::tls::client_config(&id, api::tls::Pin::of(a_key)).unwrap();
    let mut conn = api::peer::PeerConn::new(&format!("https://{a_peer}"), Some(tls)).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let batch: Vec<String> = (0..4)
            .map(|_| B64.encode(&records[rng.below(records.len() as u64) as usize]))
            .collect();
        let body = serde_json::to_vec(&json!({ "from": F, "records": batch })).unwrap();
        statuses.push(match conn.post("/peer/v1/records", body).await {
            Ok((s, reply)) => {
                let v: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
                let receipts = v["receipts"].as_array().map_or(0, |r| r.len());
                match v["stopped"]["code"].as_str() {
                    Some(why) => format!("{s}: {receipts} receipts, then {why}"),
                    None => format!("{s}: {receipts} receipts"),
                }
            }
            Err(_) => "no answer".into(),
        });
    }
    statuses
}

#[derive(Clone, Debug)]
struct Sent {
    id: Uuid,
    sender: usize,
    seq: u64,
    lane: Precedence,
}

both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_message_is_lost_duplicated_or_reordered_through_kills_and_partitions() {
    let seed: u64 = env_u64("DETENTE_FAULT_SEED").unwrap_or(0x5eed_2026_1129);
    let total: u64 = env_u64("DETENTE_FAULT_MESSAGES").unwrap_or(2000);
    let seconds: u64 = env_u64("DETENTE_FAULT_SECONDS").unwrap_or(15);
    eprintln!(
        "fault schedule seed {seed} (DETENTE_FAULT_SEED replays it), {total} messages over {seconds} s"
    );
    let admin = token("admin", "detente.line.admin detente.line");

    // First start: learn the keys; then restart each witnessing the other.
    // Node-to-node traffic is mutual TLS on fixed ports (kept across restarts).
    let (a_tls, f_tls) = (
        test_support::free_local_addr(),
        test_support::free_local_addr(),
    );
    let (a_tls_arg, f_tls_arg) = (a_tls.to_string(), f_tls.to_string());
    // The receiver's data folder is a small disk of its own (a tmpfs, as
    // root) that the schedule fills now and then — on the embedded store,
    // whose database lives there; a PostgreSQL node's database does not.
    let disk = if postgres_url().is_none() {
        Tmpfs::mount(
            128,
            "no_message_is_lost_duplicated_or_reordered_through_kills_and_partitions (its disk-full faults)",
        )
    } else {
        None
    };
    let mut a = match &disk {
        Some(d) => TestNode::start_in(
            bin(),
            &d.path().join("alliance"),
            &["--name", A, "--peer-listen", &a_tls_arg],
        ),
        None => TestNode::start_with(bin(), &["--name", A, "--peer-listen", &a_tls_arg]),
    };
    let mut f = TestNode::start_with(bin(), &["--name", F, "--peer-listen", &f_tls_arg]);
    let a_log = text(&a.url("/log/key")).await;
    let f_log = text(&f.url("/log/key")).await;
    let a_wit = text(&a.url("/witness/key")).await;
    let f_wit = text(&f.url("/witness/key")).await;
    let proxy = Proxy::start(a_tls).await;
    let proxied_a = format!("https://{}", proxy.addr);
    // The nodes' clocks disagree: Alliance's runs up to 15 s ahead, and
    // Federation's up to 100 s behind, drawn again at each of its restarts.
    let mut clocks = Rng(seed ^ 0xc10c);
    let a_offset = clocks.below(16) as i64;
    a.env = clock(a_offset);
    f.env = clock(-(clocks.below(101) as i64));
    a.restart_with(&[
        "--name",
        A,
        "--peer-listen",
        &a_tls_arg,
        "--witness-log",
        &f_log,
        "--witness",
        &format!("{f_wit}@{}", f.base),
    ]);
    f.restart_with(&[
        "--name",
        F,
        "--peer-listen",
        &f_tls_arg,
        "--witness-log",
        &a_log,
        "--witness",
        &format!("{a_wit}@{}", a.base),
    ]);

    // Federation reaches Alliance only through the proxy.
    must(
        "POST",
        &f.url("/line/v1/peers"),
        &admin,
        Some(json!({ "name": A, "url": proxied_a, "key": a_log })),
    )
    .await;
    must(
        "POST",
        &a.url("/line/v1/peers"),
        &admin,
        Some(json!({ "name": F, "url": format!("https://{f_tls}"), "key": f_log })),
    )
    .await;
    let senders: Vec<MemberSigner> = (0..2u8)
        .map(|i| MemberSigner::from_seed(&[40 + i; 32]))
        .collect();
    for (i, s) in senders.iter().enumerate() {
        must(
            "POST",
            &f.url("/line/v1/members"),
            &admin,
            Some(json!({ "key": s.key().to_hex(), "name": format!("sender {i}"), "role": "duty officer", "spheres": ["direct-line", "military"] })),
        )
        .await;
    }
    // Federation's liaison officers, whom Alliance accredits and revokes
    // while the faults run.
    let liaisons: Vec<String> = (0..LIAISONS as u8)
        .map(|i| MemberSigner::from_seed(&[60 + i; 32]).key().to_hex())
        .collect();
    for (i, k) in liaisons.iter().enumerate() {
        must(
            "POST",
            &f.url("/line/v1/members"),
            &admin,
            Some(json!({ "key": k, "name": format!("liaison {i}"), "role": "liaison officer", "spheres": ["military"] })),
        )
        .await;
    }
    // Sender 1 writes on the military channel: Alliance accredits it (by
    // Alliance's clock), and Federation's node, whose clock is behind, must
    // take its messages at once.
    let sender1 = senders[1].key().to_hex();
    for tries in 0.. {
        let (s, v) = call("GET", &a.url("/line/v1/members"), &admin, None)
            .await
            .unwrap();
        let known = |k: &String| {
            v["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["key"] == *k))
        };
        if s == 200 && known(&sender1) && liaisons.iter().all(known) {
            break;
        }
        assert!(tries < 400, "Federation's members never reached Alliance");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    must(
        "PUT",
        &a.url(&format!("/line/v1/missions/{F}/quota")),
        &admin,
        Some(json!({ "quota": 1 + LIAISONS })),
    )
    .await;
    // Operations inside this area are shared between the two nodes.
    let area = json!({ "polygons": [[[44.5, 9.5], [44.5, 11.0], [45.5, 11.0], [45.5, 9.5]]] });
    for (n, peer) in [(&a, F), (&f, A)] {
        must(
            "PUT",
            &n.url(&format!("/line/v1/peers/{peer}/area")),
            &admin,
            Some(area.clone()),
        )
        .await;
    }
    must(
        "POST",
        &a.url(&format!("/line/v1/missions/{F}/accreditations")),
        &admin,
        Some(json!({ "member": sender1, "name": "sender 1", "role": "liaison officer", "spheres": ["military"], "valid_until_ms": now_ms() + 86_400_000 })),
    )
    .await;
    for tries in 0.. {
        let v = must("GET", &f.url("/line/v1/missions"), &admin, None).await;
        // Present, though perhaps not yet started by Federation's clock.
        if v["missions"].as_array().unwrap().iter().any(|m| {
            m["accreditations"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        }) {
            break;
        }
        assert!(tries < 400, "the accreditation never reached Federation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let a = Arc::new(Mutex::new(a));
    let f = Arc::new(Mutex::new(f));
    let f_base = f.lock().await.base.clone();
    let a_base = a.lock().await.base.clone();
    let accepted: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));

    // Clients: one per sender, each in sequence order; a failed send (the
    // node was killed) is retried with the same signed message.
    let mut clients = Vec::new();
    for (i, s) in senders.into_iter().enumerate() {
        let (accepted, f_base, admin) = (accepted.clone(), f_base.clone(), admin.clone());
        let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        clients.push(tokio::spawn(async move {
            // Paced so that the faults fall while messages flow.
            let pace = Duration::from_micros(seconds * 1_000_000 * 2 / total.max(1));
            let started = tokio::time::Instant::now();
            for seq in 1..=total / 2 {
                tokio::time::sleep_until(started + pace * (seq as u32 - 1)).await;
                let lane = Precedence::ALL[if rng.below(10) == 0 {
                    0
                } else {
                    1 + rng.below(3) as usize
                }];
                let id = Uuid::from_u64_pair(seed, (i as u64) << 32 | seq);
                let m = s.sign_message(Message {
                    id,
                    from: F.into(),
                    to: A.into(),
                    sphere: if i == 1 {
                        Sphere::Military
                    } else {
                        Sphere::DirectLine
                    },
                    precedence: lane,
                    sender: s.key(),
                    seq,
                    created_ms: now_ms(),
                    body: Body::Text {
                        text: format!("sender {i} message {seq}"),
                    },
                    group: None,
                });
                let body = json!({
                    "message": api::MessageWire::from_domain(&m.value),
                    "signature": m.signature.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                });
                let mut tries = 0;
                loop {
                    match call(
                        "POST",
                        &format!("{f_base}/line/v1/messages"),
                        &admin,
                        Some(body.clone()),
                    )
                    .await
                    {
                        Ok((201 | 200, _)) => break,
                        Ok((s, v)) => panic!("message {seq} of sender {i} refused: {s} {v}"),
                        Err(_) => {
                            tries += 1;
                            assert!(tries < 600, "the sender node never came back");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                accepted.lock().await.push(Sent {
                    id,
                    sender: i,
                    seq,
                    lane,
                });
            }
        }));
    }

    // Meanwhile a USS plans operations on Federation's node inside the
    // shared area (each reaches Alliance's node as a copy)...
    let operations = (total / 20).max(10);
    let (f_base2, seed2) = (f_base.clone(), seed);
    let planner = tokio::spawn(async move {
        let uss = token(FED_USS, "utm.strategic_coordination");
        let pace = Duration::from_micros(seconds * 1_000_000 / operations);
        let started = tokio::time::Instant::now();
        let mut planned = Vec::new();
        for k in 0..operations {
            tokio::time::sleep_until(started + pace * k as u32).await;
            planned.push(plan_operation(&f_base2, &uss, seed2, k).await);
        }
        planned
    });
    // ...and Alliance accredits and revokes Federation's liaison officers.
    let changes = (total / 100).max(6);
    let (a_base2, admin2, liaisons2) = (a_base.clone(), admin.clone(), liaisons.clone());
    let host = tokio::spawn(async move {
        let pace = Duration::from_micros(seconds * 1_000_000 / changes);
        let started = tokio::time::Instant::now();
        let mut rng = Rng(seed ^ 0xacc2);
        let mut current: Vec<Option<String>> = vec![None; LIAISONS];
        // Every accreditation made, and whether it was revoked.
        let mut made: Vec<(String, bool)> = Vec::new();
        for k in 0..changes {
            tokio::time::sleep_until(started + pace * k as u32).await;
            let j = rng.below(LIAISONS as u64) as usize;
            match current[j].take() {
                None => {
                    let id = accredit(&a_base2, &admin2, &liaisons2[j], &format!("liaison {j}")).await;
                    current[j] = Some(id.clone());
                    made.push((id, false));
                }
                Some(id) => {
                    revoke(&a_base2, &admin2, &id, &format!("rotation {k}")).await;
                    if let Some(m) = made.iter_mut().find(|(x, _)| *x == id) {
                        m.1 = true;
                    }
                }
            }
        }
        made
    });

    // The schedule: kill/restart the receiver, cut/restore the link, fill
    // the receiver's disk, and now and then kill/restart the sender.
    let (a2, f2, done2) = (a.clone(), f.clone(), done.clone());
    let disk_path = disk.as_ref().map(|d| d.path().to_path_buf());
    let f_data = f.lock().await.data.clone();
    let a_key = tlog::Verifier::parse(&a_log).unwrap().key.to_bytes();
    let (f_base3, admin3) = (f_base.clone(), admin.clone());
    let mut rng = Rng(seed);
    let chaos = tokio::spawn(async move {
        let mut log = Vec::new();
        while !done2.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
            // Every run has at least one of the rarer kinds: its first four
            // faults are a full disk, a slow link, a flipped byte and
            // records duplicated and reordered.
            let drawn = rng.below(18);
            match [12, 14, 16, 17].get(log.len()).copied().unwrap_or(drawn) {
                17 => {
                    // Behind a partition, so that some of the records are
                    // not yet at the receiver: those arrive out of order.
                    proxy.cut();
                    tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
                    let statuses =
                        replay(&f_data, &f_base3, &admin3, a_tls, a_key, &mut rng).await;
                    eprintln!("records replayed, shuffled and duplicated: answers {statuses:?}");
                    proxy.restore();
                    log.push("partition; records duplicated and reordered in flight; heal");
                }
                14 | 15 => {
                    proxy.slow(50 + rng.below(350));
                    tokio::time::sleep(Duration::from_millis(rng.below(3000))).await;
                    proxy.slow(0);
                    log.push("slow link (50–400 ms a chunk), then normal");
                }
                16 => {
                    proxy.corrupt_next();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    log.push("a byte flipped in flight");
                }
                12 | 13 => {
                    let hold = Duration::from_millis(rng.below(2000));
                    match &disk_path {
                        Some(p) => {
                            let filler = fill(p);
                            tokio::time::sleep(hold).await;
                            std::fs::remove_file(filler).unwrap();
                            log.push("receiver's disk full, freed");
                        }
                        None => log.push("receiver's disk full (skipped: no disk of its own)"),
                    }
                }
                10 | 11 => {
                    let n = if rng.below(2) == 0 { &a2 } else { &f2 };
                    n.lock().await.pause();
                    tokio::time::sleep(Duration::from_millis(rng.below(2000))).await;
                    n.lock().await.resume();
                    log.push("SIGSTOP a node, SIGCONT");
                }
                0..=4 => {
                    a2.lock().await.kill();
                    tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
                    a2.lock().await.start_again();
                    log.push("kill -9 receiver, restart");
                }
                5..=8 => {
                    proxy.cut();
                    tokio::time::sleep(Duration::from_millis(rng.below(2000))).await;
                    proxy.restore();
                    log.push("partition, heal");
                }
                _ => {
                    f2.lock().await.kill();
                    tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
                    let mut f = f2.lock().await;
                    f.env = clock(-(rng.below(101) as i64));
                    f.start_again();
                    log.push("kill -9 sender, restart with another clock offset");
                }
            }
        }
        proxy.restore();
        log
    });
    for c in clients {
        c.await.unwrap();
    }
    let planned = planner.await.unwrap();
    let accreditations = host.await.unwrap();
    done.store(true, Ordering::SeqCst);
    let faults = chaos.await.unwrap();
    eprintln!("{} faults: {:?}", faults.len(), {
        let mut n: BTreeMap<&str, usize> = BTreeMap::new();
        for x in &faults {
            *n.entry(x).or_default() += 1;
        }
        n
    });
    assert!(
        faults.len() as u64 >= seconds / 2,
        "the schedule applied too few faults: {faults:?}"
    );

    // Everything drains, both ways.
    let drained = async {
        for _ in 0..1200 {
            let mut empty = true;
            for base in [&f_base, &a_base] {
                empty &= matches!(
                    call("GET", &format!("{base}/line/v1/status"), &admin, None).await,
                    Ok((200, v)) if v["peers"][0]["lanes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|l| l["pending"] == 0)
                );
            }
            if empty {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
    .await;
    assert!(
        drained,
        "the outboxes did not drain within 120 s after the faults stopped"
    );

    // Every operation Federation's node acknowledged is at Alliance's as
    // Federation's, and every acknowledged deletion is gone there.
    let alliance_uss = token("alliance-uss", "utm.strategic_coordination");
    let mut wrong = Vec::new();
    for (id, deleted) in &planned {
        let (_, s, v) = until_answered(
            "GET",
            &format!("{a_base}/dss/v1/operational_intent_references/{id}"),
            &alliance_uss,
            None,
        )
        .await;
        let as_acknowledged = if *deleted {
            s == 404
        } else {
            s == 200 && v["operational_intent_reference"]["manager"] == format!("peer:{F}:{FED_USS}")
        };
        if !as_acknowledged {
            wrong.push(format!("{id} (deleted: {deleted}): {s} {v}"));
        }
    }
    eprintln!(
        "operations: {} planned on Federation's node ({} deleted again), {} not as acknowledged at Alliance's",
        planned.len(),
        planned.iter().filter(|p| p.1).count(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "operations lost or stale at Alliance's node: {wrong:#?}");
    // Every accreditation change Alliance acknowledged is known to Federation's node.
    for (id, revoked) in &accreditations {
        let x = find_accreditation(&f_base, &admin, |x| x["id"] == id.as_str())
            .await
            .unwrap_or_else(|| panic!("accreditation {id} never reached Federation's node"));
        assert_eq!(
            !x["revoked"].is_null(),
            *revoked,
            "accreditation {id} at Federation's node: {x}"
        );
    }
    eprintln!(
        "accreditations: {} made, {} revoked, all as acknowledged at Federation's node",
        accreditations.len(),
        accreditations.iter().filter(|a| a.1).count()
    );

    // The checker.
    let sent = accepted.lock().await.clone();
    assert_eq!(sent.len() as u64, total);
    let inbox = must(
        "GET",
        &format!("{a_base}/line/v1/messages?direction=in&limit=10000"),
        &admin,
        None,
    )
    .await;
    let got = inbox["messages"].as_array().unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut seq_of: HashMap<String, u64> = HashMap::new();
    for m in got {
        let id = m["message"]["id"].as_str().unwrap().to_string();
        seq_of.insert(id.clone(), m["message"]["seq"].as_u64().unwrap());
        *seen.entry(id).or_default() += 1;
    }
    // What arrived is what was sent: each id carries its sender's sequence number.
    for s in &sent {
        if let Some(q) = seq_of.get(&s.id.to_string()) {
            assert_eq!(
                *q, s.seq,
                "message {} arrived with another sequence number",
                s.id
            );
        }
    }
    let lost = sent
        .iter()
        .filter(|s| !seen.contains_key(&s.id.to_string()))
        .count();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    let refused: Vec<&Value> = got
        .iter()
        .filter(|m| m["delivery"]["state"] != "delivered")
        .collect();
    for r in &refused {
        eprintln!("refused: {}", r["delivery"]);
    }
    let refused = refused.len();
    // Per sender and lane, the receiver's log order is the sequence order.
    let mut last: HashMap<(String, String), u64> = HashMap::new();
    let mut reordered = 0;
    let mut by_index: Vec<&Value> = got.iter().collect();
    by_index.sort_by_key(|m| m["index"].as_u64().unwrap());
    for m in by_index {
        let k = (
            m["message"]["sender"].as_str().unwrap().to_string(),
            m["message"]["precedence"].as_str().unwrap().to_string(),
        );
        let seq = m["message"]["seq"].as_u64().unwrap();
        if last.get(&k).is_some_and(|l| *l >= seq) {
            reordered += 1;
        }
        last.insert(k, seq);
    }
    let ok = sent.len() - lost;
    eprintln!(
        "checker: ok {ok}, lost {lost}, duplicated {duplicated}, reordered {reordered}, refused {refused}"
    );
    assert_eq!((lost, duplicated, reordered, refused), (0, 0, 0, 0));
    assert_eq!(
        got.len() as u64,
        total,
        "the receiver holds exactly what was accepted"
    );
    let per_lane: BTreeMap<&str, usize> = sent.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.lane.as_str()).or_default() += 1;
        m
    });
    eprintln!(
        "messages per lane: {per_lane:?}; senders: {}",
        sent.iter().map(|s| s.sender).max().unwrap() + 1
    );

    // Both logs verify, and each carries the other's cosignature.
    for (base, log_key, witness_key) in [(&a_base, &a_log, &f_wit), (&f_base, &f_log, &a_wit)] {
        let log_v = tlog::Verifier::parse(log_key).unwrap();
        let wit_v = tlog::Verifier::parse(witness_key).unwrap();
        let mut cosigned = false;
        for _ in 0..100 {
            let note = text(&format!("{base}/log/checkpoint")).await;
            let note = format!("{note}\n");
            let (_, ok) =
                tlog::note::open(note.as_bytes(), &[log_v.clone(), wit_v.clone()]).unwrap();
            if ok.len() == 2 {
                cosigned = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            cosigned,
            "{base}'s checkpoint never carried the peer's cosignature"
        );
        // Every entry is in the tree the checkpoint commits to.
        let note = text(&format!("{base}/log/checkpoint")).await;
        let (n, _) =
            tlog::note::open(format!("{note}\n").as_bytes(), std::slice::from_ref(&log_v)).unwrap();
        let cp = tlog::Checkpoint::parse(&n.text).unwrap();
        let mut tree = tlog::tree::MemoryTree::new();
        let mut start = 0;
        while start < cp.size {
            let end = (start + 1000).min(cp.size);
            let v = must(
                "GET",
                &format!("{base}/log/entries?start={start}&end={end}"),
                &admin,
                None,
            )
            .await;
            for e in v["entries"].as_array().unwrap() {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(e.as_str().unwrap())
                    .unwrap();
                tree.append(&bytes);
            }
            start = end;
        }
        assert_eq!(
            tree.root(cp.size).unwrap(),
            cp.root,
            "{base}: the entries do not hash to the signed root"
        );
    }
}
}
