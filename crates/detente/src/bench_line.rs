//! `detente bench-line`: the line's throughput and FLASH latency, measured
//! against NATS JetStream on the same machine in the same run.
//!
//! Ours: two node processes (mutual TLS between them); concurrent clients
//! post member-signed ROUTINE messages to one node, each committed and
//! synced there, delivered, appended and synced at the peer, and receipted
//! (the receipt synced at the sender) — while a FLASH probe sends one
//! message every 10 ms. Throughput and FLASH latency come from the sender's
//! own log afterwards (message entry time → receipt entry time).
//!
//! Theirs: `nats-server -js` with a file-storage stream; the same number of
//! concurrent publishers each publish and wait for JetStream's ack before
//! the next (synchronous acknowledgement), plus a probe measuring publish →
//! ack latency. Run once with the server's default sync settings and once
//! with `sync_interval: always` (a like-for-like fsync per write) where the
//! server supports it (NATS ≥ 2.10). The NATS client is a few lines of the
//! NATS text protocol, written here.

use crate::demo::{Client, NodeProcess};
use anyhow::{Context, Result, anyhow, bail};
use api::wire::line::{MemberBody, PeerBody};
use clap::Args;
use liaison::{Body, MemberSigner, Message, Precedence, Sphere};
use node::{Clock, Ids};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

#[derive(Args, Debug)]
pub struct BenchLineArgs {
    /// ROUTINE messages to send.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Concurrent senders (each a member sending in sequence).
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// Parties, each its own node process, in a full mesh (2 to 10): the
    /// ROUTINE load goes to one peer, each FLASH probe to every peer at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=10))]
    parties: u8,
    /// The NATS server binary ("" skips the comparison).
    #[arg(long, default_value = "nats-server")]
    nats_server: String,
    /// Folder for the nodes' data and the NATS store (default: a temporary folder).
    #[arg(long)]
    data: Option<PathBuf>,
}

pub(crate) const A: &str = "alliance.bench";
pub(crate) const F: &str = "federation.bench";
const ADMIN: (&str, &str) = ("bench-admin", "detente.line.admin detente.line");

pub(crate) fn now_ms() -> u64 {
    (node::SystemClock.now().unix_micros() / 1000).max(0) as u64
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Outcome {
    per_s: f64,
    flash_p50_ms: f64,
    flash_p99_ms: f64,
    flash_n: usize,
    /// The sender node's CPU time per copy delivered to a peer (µs).
    cpu_us_per_copy: f64,
    /// Cores busy over the run, on average: the sender's node, the ROUTINE
    /// load's receiver, and every other node together (what the parties
    /// that only take the FLASH probe cost the machine they share).
    cores: Option<(f64, f64, f64)>,
    /// The data folders after a clean stop, everything they hold (members,
    /// keys, the log with its checkpoints and cosignatures) divided by the
    /// messages: the sender's by the copies it sent, the ROUTINE receiver's
    /// by the messages it took (bytes).
    disk: Option<(f64, f64)>,
}

/// The name of party `i` (0: the sender, 1: the ROUTINE load's receiver).
fn party(i: usize) -> String {
    match i {
        0 => F.to_string(),
        1 => A.to_string(),
        n => format!("party{n}.bench"),
    }
}

/// CPU seconds (user + system) a process has used so far (Linux).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state is field 3; utime and
    // stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

pub async fn run(a: BenchLineArgs) -> Result<()> {
    let root = match &a.data {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("detente-bench-line-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    println!(
        "line benchmark: {} ROUTINE messages from {} concurrent senders, a FLASH every 10 ms meanwhile",
        a.messages, a.senders
    );
    let (check_us, build) = signature_check();
    println!("one strict Ed25519 signature check in this binary ({build}): {check_us:.1} µs");
    let ours = detente_line(&a, &root).await?;
    let peers = usize::from(a.parties) - 1;
    println!(
        "detente, {} parties (signed, logged, fsynced both sides, receipted; mutual TLS): {:.0} messages/s to one peer; FLASH to {peers} peer(s) at once, send → last receipt p50 {:.1} ms, p99 {:.1} ms ({} FLASH); sender CPU {:.0} µs per copy delivered",
        a.parties,
        ours.per_s,
        ours.flash_p50_ms,
        ours.flash_p99_ms,
        ours.flash_n,
        ours.cpu_us_per_copy
    );
    if let Some((sender, receiver, others)) = ours.cores {
        let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
        let rest = if peers > 1 {
            format!(", the other {} nodes together {others:.2}", peers - 1)
        } else {
            String::new()
        };
        println!(
            "  cores busy over the run, on average: sender {sender:.2}, receiver {receiver:.2}{rest} (of {machine} on this machine)"
        );
    }
    if let Some((sender, receiver)) = ours.disk {
        println!(
            "  on disk after a clean stop: sender {sender:.0} bytes per copy sent, receiver {receiver:.0} bytes per message taken (the whole data folder: the log with its receipts, checkpoints and cosignatures, the line's tables)"
        );
    }
    if a.nats_server.is_empty() {
        return Ok(());
    }
    for always in [false, true] {
        let label = if always {
            "sync_interval: always"
        } else {
            "default sync"
        };
        match nats(&a, &root, always).await {
            Ok(n) => println!(
                "NATS JetStream ({label}; publish, wait for ack): {:.0} messages/s; probe latency p50 {:.1} ms, p99 {:.1} ms; server CPU {:.0} µs per message — detente/NATS throughput ratio {:.2}",
                n.per_s,
                n.flash_p50_ms,
                n.flash_p99_ms,
                n.cpu_us_per_copy,
                ours.per_s / n.per_s
            ),
            Err(e) => println!("NATS JetStream ({label}): not measured: {e}"),
        }
    }
    if a.data.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

/// The time of one strict signature check (a signed note's, as the nodes
/// check peers' records and members' messages) in this binary, before any
/// node starts, and what the binary was built for: the check's speed
/// depends on the vector instructions it may use (docs/benchmarks.md).
fn signature_check() -> (f64, &'static str) {
    let build = if cfg!(all(
        target_feature = "avx512ifma",
        target_feature = "avx512vl"
    )) {
        "built for a CPU with AVX-512 IFMA"
    } else if cfg!(target_feature = "avx2") {
        "built for a CPU with AVX2"
    } else {
        "portable build, vector instructions chosen at run time"
    };
    let Ok(signer) = tlog::NoteSigner::from_seed("bench.check", &[7; 32]) else {
        return (f64::NAN, build);
    };
    let verifier = signer.verifier();
    let text = format!("{}\n", "x".repeat(299));
    let sig = signer.sign(&text);
    let rounds = 2_000;
    let started = Instant::now();
    let ok = (0..rounds)
        .filter(|_| verifier.verify(std::hint::black_box(&text), &sig).is_ok())
        .count();
    let us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    (if ok == rounds { us } else { f64::NAN }, build)
}

async fn detente_line(a: &BenchLineArgs, root: &Path) -> Result<Outcome> {
    let jwt = root.join("jwt.pem");
    std::fs::write(&jwt, crate::demo::DEMO_PUBLIC_KEY_PEM)?;
    let n = usize::from(a.parties);
    let names: Vec<String> = (0..n).map(party).collect();
    let sender_data = root.join(&names[0]);
    let mut nodes = Vec::new();
    for name in &names {
        nodes.push(NodeProcess::start(
            name,
            &root.join(name),
            "127.0.0.1:0",
            &jwt,
            &[],
        )?);
    }
    let mut clients = Vec::new();
    let mut keys = Vec::new();
    for node in &nodes {
        let c = Client::new(&node.base)?;
        keys.push(c.node.log_key().await.map_err(|e| anyhow!(e))?);
        clients.push(c);
    }
    // A full mesh: every party pins every other.
    for (i, c) in clients.iter_mut().enumerate() {
        for j in (0..n).filter(|j| *j != i) {
            c.as_who(ADMIN)?
                .add_peer(&PeerBody {
                    name: names[j].clone(),
                    url: nodes[j].peer_base.clone(),
                    key: keys[j].clone(),
                })
                .await
                .map_err(|e| anyhow!(e))?;
        }
    }
    let mut senders = Vec::new();
    for i in 0..=a.senders {
        let seed = node::RandomIds.seed().map_err(|e| anyhow!(e))?;
        let s = MemberSigner::from_seed(&seed);
        clients[0]
            .as_who(ADMIN)?
            .register_member(&MemberBody {
                key: s.key().to_hex(),
                name: format!("sender {i}"),
                role: "bench".into(),
                spheres: vec!["direct-line".into()],
            })
            .await
            .map_err(|e| anyhow!(e))?;
        senders.push(s);
    }
    let flash_sender = senders.pop().context("a FLASH sender")?;
    // Registrations and announcements reach every peer before the load.
    for c in clients.iter_mut() {
        wait_drained(c).await?;
    }
    let sender_base = nodes[0].base.clone();
    let token = crate::demo::token_for(ADMIN)?;
    let http = reqwest::Client::new();
    let per = a.messages / a.senders as u64;
    let total = per * a.senders as u64;
    // Members sign on their own machines: the ROUTINE messages are signed
    // and encoded before the clock starts, so that the load generator's
    // signing does not take the two cores' time from the nodes.
    let signed: Vec<Vec<Vec<u8>>> = senders
        .iter()
        .map(|s| {
            (1..=per)
                .map(|seq| wire(s, seq, Precedence::Routine, A, None))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let cpu_before: Vec<Option<f64>> = nodes.iter().map(|n| cpu_seconds(n.pid())).collect();
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, messages) in signed.into_iter().enumerate() {
        // Each sender is its own client (the per-client rate limit applies to each).
        let token = crate::demo::token_for((&format!("bench-sender-{i}"), "detente.line"))?;
        let (http, base) = (http.clone(), sender_base.clone());
        tasks.push(tokio::spawn(async move {
            for body in messages {
                post(&http, &base, &token, body).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    // The probe: every 10 ms one FLASH to every peer at once (a group of
    // one message per peer when there are several).
    let peers: Vec<String> = names[1..].to_vec();
    let (http2, base2, token2, done2) = (
        http.clone(),
        sender_base.clone(),
        token.clone(),
        done.clone(),
    );
    let probe = tokio::spawn(async move {
        let (mut seq, mut groups) = (0, 0u64);
        while !done2.load(std::sync::atomic::Ordering::SeqCst) {
            groups += 1;
            let group = (peers.len() > 1).then(|| liaison::Group {
                id: node::RandomIds.uuid_v4(),
                to: peers.clone(),
            });
            if group.is_some() {
                // One request, one commit for the whole group.
                let mut messages = Vec::new();
                for to in &peers {
                    seq += 1;
                    messages.push(serde_json::from_slice::<serde_json::Value>(&wire(
                        &flash_sender,
                        seq,
                        Precedence::Flash,
                        to,
                        group.clone(),
                    )?)?);
                }
                let body = serde_json::to_vec(&serde_json::json!({ "messages": messages }))?;
                post_to(
                    &http2,
                    &base2,
                    "/line/v1/messages/group",
                    &token2,
                    body,
                    201,
                )
                .await?;
            } else {
                seq += 1;
                let body = wire(&flash_sender, seq, Precedence::Flash, &peers[0], None)?;
                post(&http2, &base2, &token2, body).await?;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, anyhow::Error>(groups)
    });
    for t in tasks {
        t.await??;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let groups_sent = probe.await??;
    wait_drained(&mut clients[0]).await?;
    let wall = started.elapsed().as_secs_f64();
    let used: Vec<Option<f64>> = nodes
        .iter()
        .zip(&cpu_before)
        .map(|(node, before)| Some(cpu_seconds(node.pid())? - (*before)?))
        .collect();
    let cpu = used[0].unwrap_or(f64::NAN);
    let cores = match (
        used[0],
        used[1],
        used[2..].iter().copied().sum::<Option<f64>>(),
    ) {
        (Some(s), Some(r), Some(o)) => Some((s / wall, r / wall, o / wall)),
        _ => None,
    };
    // From the sender's log: message entry time → receipt entry time; a
    // FLASH group's latency runs to the last of its receipts.
    let (entries, _) = store::read_log(&sender_data)
        .await
        .map_err(|e| anyhow!(e))?;
    let mut sent_at = std::collections::HashMap::new();
    // Per FLASH group (or single FLASH): first send, last receipt, receipts.
    let mut flash: std::collections::HashMap<Uuid, (u64, u64, usize)> =
        std::collections::HashMap::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    for bytes in &entries {
        let Some(Ok((e, l))) = liaison::decide::line_entry(bytes) else {
            continue;
        };
        match (&l.record, &l.envelope) {
            (liaison::Record::Message(m), Some(_)) if e.entry.origin == F => {
                let v = &m.value;
                let key = v.group.as_ref().map_or(v.id, |g| g.id);
                sent_at.insert(
                    tlog::leaf_hash(bytes),
                    (e.entry.timestamp_ms, v.precedence, key),
                );
                if v.precedence == Precedence::Routine {
                    first = first.min(e.entry.timestamp_ms);
                } else {
                    let g = flash.entry(key).or_insert((u64::MAX, 0, 0));
                    g.0 = g.0.min(e.entry.timestamp_ms);
                }
            }
            (liaison::Record::Receipt(r), None) if e.entry.origin != F => {
                for item in &r.items {
                    if let Some((_, lane, key)) = sent_at.get(&item.leaf_hash) {
                        if *lane == Precedence::Flash {
                            let g = flash.entry(*key).or_insert((u64::MAX, 0, 0));
                            g.1 = g.1.max(e.entry.timestamp_ms);
                            g.2 += 1;
                        } else {
                            last = last.max(e.entry.timestamp_ms);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let span = (last.saturating_sub(first)) as f64 / 1000.0;
    let per_s = if span > 0.0 {
        total as f64 / span
    } else {
        total as f64 / wall
    };
    let mut flash_lat: Vec<f64> = flash
        .values()
        .filter(|(_, _, receipts)| *receipts == n - 1)
        .map(|(t0, t1, _)| t1.saturating_sub(*t0) as f64)
        .collect();
    let complete = flash_lat.len();
    if complete as u64 != groups_sent {
        bail!(
            "{groups_sent} FLASH probes were sent to {} peer(s) but {complete} were receipted by all",
            n - 1
        );
    }
    let copies = total + groups_sent * (n as u64 - 1);
    // Stopped as an operator stops them, so that each folder holds what a
    // stopped node keeps (no WAL).
    let mut stopped = true;
    for node in nodes {
        if let Err(e) = node.terminate(Duration::from_secs(60)).await {
            println!("  {e:#}");
            stopped = false;
        }
    }
    let disk = if stopped {
        Some((
            crate::bench::disk_bytes(&sender_data)?,
            crate::bench::disk_bytes(&root.join(&names[1]))?,
        ))
    } else {
        None
    };
    Ok(Outcome {
        per_s,
        flash_p50_ms: percentile(&mut flash_lat, 0.5),
        flash_p99_ms: percentile(&mut flash_lat, 0.99),
        flash_n: complete,
        cpu_us_per_copy: cpu * 1e6 / copies as f64,
        cores,
        disk: disk.map(|(s, r)| {
            (
                s as f64 / copies as f64,
                r as f64 / (total + groups_sent) as f64,
            )
        }),
    })
}

/// A member-signed message of the sender's party to `to`, as the API takes
/// it (JSON bytes).
pub(crate) fn wire(
    s: &MemberSigner,
    seq: u64,
    precedence: Precedence,
    to: &str,
    group: Option<liaison::Group>,
) -> Result<Vec<u8>> {
    let m = s.sign_message(Message {
        id: node::RandomIds.uuid_v4(),
        from: F.into(),
        to: to.into(),
        sphere: Sphere::DirectLine,
        precedence,
        sender: s.key(),
        seq,
        created_ms: now_ms(),
        body: Body::Text {
            text: "routine traffic of a realistic size: position report, sector 4, no change to the plan; next report in 15 minutes".into(),
        },
        group,
    });
    Ok(serde_json::to_vec(&api::wire::line::SendBody::signed(&m))?)
}

/// The measured path: pre-encoded bodies on a shared connection pool, so
/// that the load generator spends nothing on encoding while the clock runs.
pub(crate) async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: Vec<u8>,
) -> Result<()> {
    post_to(http, base, "/line/v1/messages", token, body, 201).await
}

/// Posts `body` to `path`, which must answer `expect`.
pub(crate) async fn post_to(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    body: Vec<u8>,
    expect: u16,
) -> Result<()> {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    if r.status() != expect {
        bail!("{path} answered {}: {}", r.status(), r.text().await?);
    }
    Ok(())
}

/// Records the node has sent and its peers have not yet receipted, over
/// every peer and lane.
pub(crate) async fn line_backlog(c: &mut Client) -> Result<u64> {
    let v = c
        .as_who(ADMIN)?
        .line_status()
        .await
        .map_err(|e| anyhow!(e))?;
    Ok(v["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["lanes"].as_array().into_iter().flatten())
        .filter_map(|l| l["pending"].as_u64())
        .sum())
}

/// Waits until the node has nothing left to deliver.
async fn wait_drained(c: &mut Client) -> Result<()> {
    for _ in 0..6000 {
        let pending = line_backlog(c).await?;
        if pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the outbox did not drain")
}

/// A NATS connection speaking the text protocol: enough for JetStream
/// publish-and-wait-for-ack.
struct Nats {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    n: u64,
}

impl Nats {
    async fn connect(port: u16) -> Result<Nats> {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut n = Nats {
            r: BufReader::new(r),
            w,
            n: 0,
        };
        let mut info = String::new();
        n.r.read_line(&mut info).await?;
        if !info.starts_with("INFO") {
            bail!("not a NATS server: {info}");
        }
        n.w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false}\r\nSUB _INBOX.bench.* 1\r\nPING\r\n")
            .await?;
        loop {
            let mut l = String::new();
            n.r.read_line(&mut l).await?;
            if l.starts_with("PONG") {
                return Ok(n);
            }
            if l.starts_with("-ERR") {
                bail!("NATS: {l}");
            }
        }
    }

    /// Publishes `payload` on `subject` and waits for the reply.
    async fn request(&mut self, subject: &str, payload: &[u8]) -> Result<Vec<u8>> {
        self.n += 1;
        let inbox = format!("_INBOX.bench.{}", self.n);
        let mut out = format!("PUB {subject} {inbox} {}\r\n", payload.len()).into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.w.write_all(&out).await?;
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).await? == 0 {
                bail!("NATS closed the connection");
            }
            if l.starts_with("PING") {
                self.w.write_all(b"PONG\r\n").await?;
                continue;
            }
            if l.starts_with("-ERR") {
                bail!("NATS: {}", l.trim());
            }
            if let Some(rest) = l.strip_prefix("MSG ") {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let size: usize = parts
                    .last()
                    .and_then(|x| x.parse().ok())
                    .context("MSG size")?;
                let mut body = vec![0u8; size + 2];
                self.r.read_exact(&mut body).await?;
                body.truncate(size);
                if parts.first() == Some(&inbox.as_str()) {
                    return Ok(body);
                }
            }
        }
    }
}

async fn nats(a: &BenchLineArgs, root: &Path, always: bool) -> Result<Outcome> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = root.join(format!(
        "nats-{}",
        if always { "always" } else { "default" }
    ));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "port: {port}\njetstream {{\n  store_dir: \"{}\"\n{}}}\n",
            dir.join("js").display(),
            if always {
                "  sync_interval: always\n"
            } else {
                ""
            }
        ),
    )?;
    let mut server = std::process::Command::new(&a.nats_server)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", a.nats_server))?;
    let result = async {
        let mut c = None;
        for _ in 0..100 {
            if let Some(code) = server.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = server.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                bail!("the server exited ({code}): {}", err.trim());
            }
            if let Ok(n) = Nats::connect(port).await {
                c = Some(n);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut c = c.context("the NATS server did not start")?;
        let created = c
            .request(
                "$JS.API.STREAM.CREATE.BENCH",
                br#"{"name":"BENCH","subjects":["bench.>"],"storage":"file","retention":"limits"}"#,
            )
            .await?;
        if String::from_utf8_lossy(&created).contains("\"error\"") {
            bail!("creating the stream: {}", String::from_utf8_lossy(&created));
        }
        let payload = vec![b'x'; 420];
        let per = a.messages / a.senders as u64;
        let total = per * a.senders as u64;
        let cpu_before = cpu_seconds(server.id());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..a.senders {
            let payload = payload.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = Nats::connect(port).await?;
                for _ in 0..per {
                    let ack = n.request("bench.routine", &payload).await?;
                    if !String::from_utf8_lossy(&ack).contains("\"seq\"") {
                        bail!("no ack: {}", String::from_utf8_lossy(&ack));
                    }
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done2 = done.clone();
        let payload2 = payload.clone();
        let probe = tokio::spawn(async move {
            let mut n = Nats::connect(port).await?;
            let mut lat = Vec::new();
            while !done2.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                n.request("bench.flash", &payload2).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, anyhow::Error>(lat)
        });
        for t in tasks {
            t.await??;
        }
        let per_s = total as f64 / started.elapsed().as_secs_f64();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut lat = probe.await??;
        let n = lat.len();
        let cpu = match (cpu_before, cpu_seconds(server.id())) {
            (Some(b), Some(e)) => e - b,
            _ => f64::NAN,
        };
        Ok(Outcome {
            per_s,
            flash_p50_ms: percentile(&mut lat, 0.5),
            flash_p99_ms: percentile(&mut lat, 0.99),
            flash_n: n,
            cpu_us_per_copy: cpu * 1e6 / (total as f64 + n as f64),
            cores: None,
            disk: None,
        })
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    result
}
