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

#[derive(Args, Debug)]
pub struct BenchLineArgs {
    /// ROUTINE messages to send.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Concurrent senders (each a member sending in sequence).
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// The NATS server binary ("" skips the comparison).
    #[arg(long, default_value = "nats-server")]
    nats_server: String,
    /// Folder for the nodes' data and the NATS store (default: a temporary folder).
    #[arg(long)]
    data: Option<PathBuf>,
}

const A: &str = "alliance.bench";
const F: &str = "federation.bench";
const ADMIN: (&str, &str) = ("bench-admin", "detente.line.admin detente.line");

fn now_ms() -> u64 {
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
    let ours = detente_line(&a, &root).await?;
    println!(
        "detente (signed, logged, fsynced both sides, receipted; mutual TLS): {:.0} messages/s; FLASH latency p50 {:.1} ms, p99 {:.1} ms ({} FLASH)",
        ours.per_s, ours.flash_p50_ms, ours.flash_p99_ms, ours.flash_n
    );
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
                "NATS JetStream ({label}; publish, wait for ack): {:.0} messages/s; probe latency p50 {:.1} ms, p99 {:.1} ms — detente/NATS throughput ratio {:.2}",
                n.per_s,
                n.flash_p50_ms,
                n.flash_p99_ms,
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

async fn detente_line(a: &BenchLineArgs, root: &Path) -> Result<Outcome> {
    let jwt = root.join("jwt.pem");
    std::fs::write(&jwt, crate::demo::DEMO_PUBLIC_KEY_PEM)?;
    let fed_data = root.join("federation");
    let na = NodeProcess::start(A, &root.join("alliance"), "127.0.0.1:0", &jwt, &[])?;
    let nf = NodeProcess::start(F, &fed_data, "127.0.0.1:0", &jwt, &[])?;
    let mut ca = Client::new(&na.base)?;
    let mut cf = Client::new(&nf.base)?;
    let ka = ca.node.log_key().await.map_err(|e| anyhow!(e))?;
    let kf = cf.node.log_key().await.map_err(|e| anyhow!(e))?;
    ca.as_who(ADMIN)?
        .add_peer(&PeerBody {
            name: F.into(),
            url: nf.peer_base.clone(),
            key: kf,
        })
        .await
        .map_err(|e| anyhow!(e))?;
    cf.as_who(ADMIN)?
        .add_peer(&PeerBody {
            name: A.into(),
            url: na.peer_base.clone(),
            key: ka,
        })
        .await
        .map_err(|e| anyhow!(e))?;
    let mut senders = Vec::new();
    for i in 0..=a.senders {
        let seed = node::RandomIds.seed().map_err(|e| anyhow!(e))?;
        let s = MemberSigner::from_seed(&seed);
        cf.as_who(ADMIN)?
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
    // Registration records reach the peer before the load starts.
    wait_drained(&mut cf).await?;
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
                .map(|seq| wire(s, seq, Precedence::Routine))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, messages) in signed.into_iter().enumerate() {
        // Each sender is its own client (the per-client rate limit applies to each).
        let token = crate::demo::token_for((&format!("bench-sender-{i}"), "detente.line"))?;
        let (http, base) = (http.clone(), nf.base.clone());
        tasks.push(tokio::spawn(async move {
            for body in messages {
                post(&http, &base, &token, body).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let (http2, base2, token2, done2) =
        (http.clone(), nf.base.clone(), token.clone(), done.clone());
    let probe = tokio::spawn(async move {
        let mut seq = 0;
        while !done2.load(std::sync::atomic::Ordering::SeqCst) {
            seq += 1;
            send(
                &http2,
                &base2,
                &token2,
                &flash_sender,
                seq,
                Precedence::Flash,
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, anyhow::Error>(seq)
    });
    for t in tasks {
        t.await??;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let flashes_sent = probe.await??;
    wait_drained(&mut cf).await?;
    let wall = started.elapsed().as_secs_f64();
    // From the sender's log: message entry time → receipt entry time.
    let (entries, _) = store::read_log(&fed_data).await.map_err(|e| anyhow!(e))?;
    let mut sent_at = std::collections::HashMap::new();
    let mut flash_lat = Vec::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    for bytes in &entries {
        let Some(Ok((e, l))) = liaison::decide::line_entry(bytes) else {
            continue;
        };
        match (&l.record, &l.envelope) {
            (liaison::Record::Message(m), Some(env)) if e.entry.origin == F => {
                sent_at.insert(tlog::leaf_hash(bytes), (e.entry.timestamp_ms, env.lane));
                if m.value.precedence == Precedence::Routine {
                    first = first.min(e.entry.timestamp_ms);
                }
            }
            (liaison::Record::Receipt(r), None) if e.entry.origin == A => {
                for item in &r.items {
                    if let Some((t0, lane)) = sent_at.get(&item.leaf_hash) {
                        let dt = e.entry.timestamp_ms.saturating_sub(*t0) as f64;
                        if *lane == Precedence::Flash {
                            flash_lat.push(dt);
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
    let n = flash_lat.len();
    if n as u64 != flashes_sent {
        bail!("{flashes_sent} FLASH messages were sent but {n} receipted");
    }
    drop((na, nf));
    Ok(Outcome {
        per_s,
        flash_p50_ms: percentile(&mut flash_lat, 0.5),
        flash_p99_ms: percentile(&mut flash_lat, 0.99),
        flash_n: n,
    })
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    s: &MemberSigner,
    seq: u64,
    precedence: Precedence,
) -> Result<()> {
    post(http, base, token, wire(s, seq, precedence)?).await
}

/// A member-signed message as the API takes it (JSON bytes).
fn wire(s: &MemberSigner, seq: u64, precedence: Precedence) -> Result<Vec<u8>> {
    let m = s.sign_message(Message {
        id: node::RandomIds.uuid_v4(),
        from: F.into(),
        to: A.into(),
        sphere: Sphere::DirectLine,
        precedence,
        sender: s.key(),
        seq,
        created_ms: now_ms(),
        body: Body::Text {
            text: "routine traffic of a realistic size: position report, sector 4, no change to the plan; next report in 15 minutes".into(),
        },
        group: None,
    });
    Ok(serde_json::to_vec(&api::wire::line::SendBody::signed(&m))?)
}

/// The measured path: pre-encoded bodies on a shared connection pool, so
/// that the load generator spends nothing on encoding while the clock runs.
async fn post(http: &reqwest::Client, base: &str, token: &str, body: Vec<u8>) -> Result<()> {
    let r = http
        .post(format!("{base}/line/v1/messages"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    if r.status() != 201 {
        bail!("sending answered {}: {}", r.status(), r.text().await?);
    }
    Ok(())
}

/// Waits until the node has nothing left to deliver.
async fn wait_drained(c: &mut Client) -> Result<()> {
    for _ in 0..6000 {
        let v = c
            .as_who(ADMIN)?
            .line_status()
            .await
            .map_err(|e| anyhow!(e))?;
        let pending: u64 = v["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["lanes"].as_array().cloned().unwrap_or_default())
            .map(|l| l["pending"].as_u64().unwrap_or(0))
            .sum();
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
        Ok(Outcome {
            per_s,
            flash_p50_ms: percentile(&mut lat, 0.5),
            flash_p99_ms: percentile(&mut lat, 0.99),
            flash_n: n,
        })
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    result
}
