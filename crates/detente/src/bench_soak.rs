//! `detente bench-soak`: a load profile that stays inside the machine for as
//! long as it is asked to (an hour by default). Two parties' node processes,
//! peered over mutual TLS with an agreed deconfliction area, take at fixed
//! rates at once: F3548 creates (each followed, a window later, by the
//! intent's removal, so the live count stays put), 4D area queries, and the
//! line's messages (ROUTINE with a FLASH every second), while both nodes
//! sign checkpoints and cosign each other's. Every minute it prints the p99
//! of each operation, the errors, the line's backlog and each node's
//! resident memory; at the end it writes them as CSV and plots them to a
//! PNG (`plot.rs`), and says whether anything drifted.

use crate::demo::{Client, NodeProcess};
use anyhow::{Context, Result, anyhow, bail};
use api::wire::line::{AreaBody, MemberBody, PeerBody};
use clap::Args;
use liaison::{MemberSigner, Precedence};
use node::{Clock, Ids};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchSoakArgs {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Intent creates per second (each removed again `--live` creates later).
    #[arg(long, default_value_t = 50)]
    creates: u64,
    /// 4D area queries per second.
    #[arg(long, default_value_t = 100)]
    queries: u64,
    /// ROUTINE messages per second from one party to the other (plus one
    /// FLASH a second).
    #[arg(long, default_value_t = 20)]
    messages: u64,
    /// Live intents kept by the creates (the oldest is removed once there
    /// are more).
    #[arg(long, default_value_t = 10_000)]
    live: usize,
    /// Where to write soak.csv and soak.png.
    #[arg(long, default_value = "soak")]
    out: PathBuf,
    /// Only plot an earlier run's soak.csv (to --out) and summarise it.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Most operations in flight at once; one that would exceed it is counted
/// as shed (the machine could not keep up), never queued.
const IN_FLIGHT: u64 = 512;

/// Latencies (µs) and errors of one kind of operation in the current minute.
#[derive(Default)]
struct Window {
    lat_us: std::sync::Mutex<Vec<u64>>,
    errors: AtomicU64,
    shed: AtomicU64,
}

impl Window {
    fn record(&self, us: u64) {
        self.lat_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(us);
    }

    /// (count, p50 ms, p99 ms, errors, shed) of the minute, emptied.
    fn take(&self) -> (usize, f64, f64, u64, u64) {
        let mut v = std::mem::take(&mut *self.lat_us.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort_unstable();
        let at = |p: f64| {
            if v.is_empty() {
                f64::NAN
            } else {
                v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
            }
        };
        (
            v.len(),
            at(0.5),
            at(0.99),
            self.errors.swap(0, Ordering::Relaxed),
            self.shed.swap(0, Ordering::Relaxed),
        )
    }
}

/// One minute's row of the CSV.
pub(crate) const COLUMNS: &[&str] = &[
    "minute",
    "creates",
    "create_p50_ms",
    "create_p99_ms",
    "queries",
    "query_p50_ms",
    "query_p99_ms",
    "messages",
    "message_p50_ms",
    "message_p99_ms",
    "errors",
    "shed",
    "line_backlog",
    "log_size",
    "rss_a_mib",
    "rss_f_mib",
    "acks",
    "ack_p99_ms",
];

fn resident_mib(pid: u32) -> f64 {
    crate::bench::resident(pid).map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0))
}

/// A fixed-rate schedule: calls `op` `per_s` times a second until `stop`,
/// each in its own task, at most [`IN_FLIGHT`] of all kinds at once.
fn every<F, Fut>(
    per_s: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    in_flight: Arc<AtomicU64>,
    w: Arc<Window>,
    mut op: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        if per_s == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_s));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            n += 1;
            if in_flight.fetch_add(1, Ordering::SeqCst) >= IN_FLIGHT {
                in_flight.fetch_sub(1, Ordering::SeqCst);
                w.shed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let (fut, w, in_flight) = (op(n), w.clone(), in_flight.clone());
            tokio::spawn(async move {
                let t0 = Instant::now();
                match fut.await {
                    Ok(()) => w.record(t0.elapsed().as_micros() as u64),
                    Err(e) => {
                        if w.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("soak: {e:#}");
                        }
                    }
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
    })
}

/// A small xorshift generator: the workload's places, not its security.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A ~200 m square somewhere in the 10° × 10° soak region (40–50 N, 0–10 E),
/// flown within the next day, as F3548 wire JSON.
fn volume(rng: &mut Rng, now_s: i64, h: f64) -> Value {
    let (lat, lng) = (40.0 + 10.0 * rng.unit(), 10.0 * rng.unit());
    let start = now_s + 120 + (rng.unit() * 80_000.0) as i64;
    let t =
        |s: i64| api::wire::format_time(node::airspace::Timestamp::from_unix_micros(s * 1_000_000));
    json!({
        "volume": {
            "outline_polygon": { "vertices": [
                {"lat": lat, "lng": lng}, {"lat": lat, "lng": lng + h},
                {"lat": lat + h, "lng": lng + h}, {"lat": lat + h, "lng": lng}] },
            "altitude_lower": { "value": 0, "reference": "W84", "units": "M" },
            "altitude_upper": { "value": 500, "reference": "W84", "units": "M" },
        },
        "time_start": t(start),
        "time_end": t(start + 3600),
    })
}

pub async fn run(a: BenchSoakArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    if let Some(csv) = &a.plot {
        let rows = crate::plot::read_csv(csv)?;
        return finish(&a, &rows);
    }
    let root = std::env::temp_dir().join(format!("detente-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let jwt = root.join("jwt.pem");
    std::fs::write(&jwt, crate::demo::DEMO_PUBLIC_KEY_PEM)?;
    let names = [crate::bench_line::A, crate::bench_line::F];
    let nodes = [
        NodeProcess::start(names[0], &root.join(names[0]), "127.0.0.1:0", &jwt, &[])?,
        NodeProcess::start(names[1], &root.join(names[1]), "127.0.0.1:0", &jwt, &[])?,
    ];
    const ADMIN: (&str, &str) = ("soak-admin", "detente.line.admin detente.line");
    let mut clients = [Client::new(&nodes[0].base)?, Client::new(&nodes[1].base)?];
    let keys = [
        clients[0].node.log_key().await.map_err(|e| anyhow!(e))?,
        clients[1].node.log_key().await.map_err(|e| anyhow!(e))?,
    ];
    let region = AreaBody {
        polygons: vec![vec![[40.0, 0.0], [40.0, 10.0], [50.0, 10.0], [50.0, 0.0]]],
    };
    for i in 0..2 {
        let c = clients[i].as_who(ADMIN)?;
        c.add_peer(&PeerBody {
            name: names[1 - i].into(),
            url: nodes[1 - i].peer_base.clone(),
            key: keys[1 - i].clone(),
        })
        .await
        .map_err(|e| anyhow!(e))?;
        c.set_area(names[1 - i], &region)
            .await
            .map_err(|e| anyhow!(e))?;
    }
    // The line's traffic: Federation's members to Alliance, whose duty
    // officer acknowledges what arrives.
    let seed = node::RandomIds.seed().map_err(|e| anyhow!(e))?;
    let routine = MemberSigner::from_seed(&seed);
    let seed = node::RandomIds.seed().map_err(|e| anyhow!(e))?;
    let flash = MemberSigner::from_seed(&seed);
    let seed = node::RandomIds.seed().map_err(|e| anyhow!(e))?;
    let officer = MemberSigner::from_seed(&seed);
    for (node, s, n) in [
        (1, &routine, "routine sender"),
        (1, &flash, "flash sender"),
        (0, &officer, "duty officer"),
    ] {
        clients[node]
            .as_who(ADMIN)?
            .register_member(&MemberBody {
                key: s.key().to_hex(),
                name: n.into(),
                role: "soak".into(),
                spheres: vec!["direct-line".into()],
            })
            .await
            .map_err(|e| anyhow!(e))?;
    }
    println!(
        "soak: {} min; per second {} creates (live kept at {}), {} area queries, {} ROUTINE + 1 FLASH messages, each acknowledged by the receiving side's duty officer; two nodes over mutual TLS, checkpoints and cosigning as configured",
        a.minutes, a.creates, a.live, a.queries, a.messages
    );
    println!("{}", COLUMNS.join(" "));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let dss_token = crate::demo::token_for(("soak-uss", "utm.strategic_coordination"))?;
    let line_token = crate::demo::token_for(("soak-line", "detente.line"))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let (wc, wq, wm, wa) = (
        Arc::new(Window::default()),
        Arc::new(Window::default()),
        Arc::new(Window::default()),
        Arc::new(Window::default()),
    );
    let now_s = || node::SystemClock.now().unix_micros() / 1_000_000;
    let mut tasks = Vec::new();
    // Creates on Alliance (shared with Federation: the area is agreed),
    // each removing the oldest beyond the live window.
    let live: Arc<std::sync::Mutex<std::collections::VecDeque<(String, String)>>> = Arc::default();
    {
        let (http, base, tok, live, keep) = (
            http.clone(),
            nodes[0].base.clone(),
            dss_token.clone(),
            live.clone(),
            a.live,
        );
        let rng = Arc::new(std::sync::Mutex::new(Rng(0x9e37_79b9_7f4a_7c15)));
        tasks.push(every(
            a.creates,
            stop.clone(),
            in_flight.clone(),
            wc.clone(),
            move |_| {
                let (http, base, tok, live) =
                    (http.clone(), base.clone(), tok.clone(), live.clone());
                let v = volume(
                    &mut rng.lock().unwrap_or_else(|e| e.into_inner()),
                    now_s(),
                    0.002,
                );
                async move {
                    let id = node::RandomIds.uuid_v4().to_string();
                    let body = json!({ "extents": [v], "key": [], "state": "Accepted",
                        "uss_base_url": "https://soak.example/utm",
                        "new_subscription": { "uss_base_url": "https://soak.example/utm" } });
                    let r = http
                        .put(format!("{base}/dss/v1/operational_intent_references/{id}"))
                        .bearer_auth(&tok)
                        .json(&body)
                        .send()
                        .await?;
                    let status = r.status().as_u16();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    // A conflict with another soak intent (a key check) is
                    // the DSS working, not an error: nothing was created.
                    if status == 409 {
                        return Ok(());
                    }
                    if status != 201 {
                        bail!("create answered {status}: {v}");
                    }
                    let ovn = v["operational_intent_reference"]["ovn"]
                        .as_str()
                        .context("no ovn")?
                        .to_string();
                    let old = {
                        let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
                        l.push_back((id, ovn));
                        (l.len() > keep).then(|| l.pop_front()).flatten()
                    };
                    if let Some((old, ovn)) = old {
                        let r = http
                            .delete(format!(
                                "{base}/dss/v1/operational_intent_references/{old}/{ovn}"
                            ))
                            .bearer_auth(&tok)
                            .send()
                            .await?;
                        if r.status() != 200 {
                            bail!("removal answered {}", r.status());
                        }
                    }
                    Ok(())
                }
            },
        ));
    }
    // Area queries, half on each node (Federation's answer includes the
    // copies of Alliance's intents).
    {
        let (http, bases, tok) = (
            http.clone(),
            [nodes[0].base.clone(), nodes[1].base.clone()],
            dss_token.clone(),
        );
        let rng = Arc::new(std::sync::Mutex::new(Rng(0x2545_f491_4f6c_dd1d)));
        tasks.push(every(
            a.queries,
            stop.clone(),
            in_flight.clone(),
            wq.clone(),
            move |n| {
                let (http, tok) = (http.clone(), tok.clone());
                let base = bases[(n % 2) as usize].clone();
                let v = volume(
                    &mut rng.lock().unwrap_or_else(|e| e.into_inner()),
                    now_s(),
                    0.1,
                );
                async move {
                    let r = http
                        .post(format!("{base}/dss/v1/operational_intent_references/query"))
                        .bearer_auth(&tok)
                        .json(&json!({ "area_of_interest": v }))
                        .send()
                        .await?;
                    if r.status() != 200 {
                        bail!("query answered {}", r.status());
                    }
                    r.bytes().await?;
                    Ok(())
                }
            },
        ));
    }
    // The line: member-signed messages in each member's sequence (a send
    // waits for the one before it of the same member).
    for (signer, per_s, lane) in [
        (routine, a.messages, Precedence::Routine),
        (flash, 1, Precedence::Flash),
    ] {
        let (http, base, tok) = (http.clone(), nodes[1].base.clone(), line_token.clone());
        let order = Arc::new(tokio::sync::Mutex::new(0u64));
        let signer = Arc::new(signer);
        tasks.push(every(
            per_s,
            stop.clone(),
            in_flight.clone(),
            wm.clone(),
            move |_| {
                let (http, base, tok, order, signer) = (
                    http.clone(),
                    base.clone(),
                    tok.clone(),
                    order.clone(),
                    signer.clone(),
                );
                async move {
                    let mut seq = order.lock().await;
                    *seq += 1;
                    let body = crate::bench_line::wire(&signer, *seq, lane, names[0], None)?;
                    crate::bench_line::post(&http, &base, &tok, body).await
                }
            },
        ));
    }
    // The acknowledgements: Alliance's duty officer polls its inbox and
    // acknowledges each new message, as the line's members do — which is
    // what settles a message.
    {
        let (http, base, tok, stop, wa) = (
            http.clone(),
            nodes[0].base.clone(),
            line_token.clone(),
            stop.clone(),
            wa.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut after = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match acknowledge_new(&http, &base, &tok, &officer, &mut after, &wa).await {
                    Ok(()) => {}
                    Err(e) => {
                        if wa.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("soak: {e:#}");
                        }
                    }
                }
            }
        }));
    }
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let started = Instant::now();
    for minute in 1..=a.minutes {
        let until = started + Duration::from_secs(60 * minute);
        tokio::time::sleep_until(until.into()).await;
        let c = wc.take();
        let q = wq.take();
        let m = wm.take();
        let k = wa.take();
        let backlog = crate::bench_line::line_backlog(&mut clients[1]).await?;
        let log_size = checkpoint_size(&http, &nodes[0].base).await;
        let row = vec![
            minute as f64,
            c.0 as f64,
            c.1,
            c.2,
            q.0 as f64,
            q.1,
            q.2,
            m.0 as f64,
            m.1,
            m.2,
            (c.3 + q.3 + m.3 + k.3) as f64,
            (c.4 + q.4 + m.4) as f64,
            backlog as f64,
            log_size as f64,
            resident_mib(nodes[0].pid()),
            resident_mib(nodes[1].pid()),
            k.0 as f64,
            k.2,
        ];
        println!("{}", crate::plot::csv_row(&row));
        rows.push(row);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // The operations the schedules started last finish before the nodes
    // stop: one cut off by the stop is not the node's error.
    let drained = Instant::now() + Duration::from_secs(30);
    while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stopped as an operator stops them: what each folder then holds is
    // what the run left on disk.
    for (node, name) in nodes.into_iter().zip(names) {
        match node.terminate(Duration::from_secs(60)).await {
            Ok(()) => {
                let mib = crate::bench::disk_bytes(&root.join(name))? as f64 / 1048576.0;
                println!(
                    "{name}: stopped cleanly; on disk {mib:.1} MiB after {} min, ~{:.0} MiB a day at this load (the evidence log grows; the live intents' rows are bounded by --live)",
                    a.minutes,
                    mib * 1440.0 / a.minutes.max(1) as f64
                );
            }
            Err(e) => println!("{name}: {e:#}"),
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    let mut csv = COLUMNS.join(",");
    csv.push('\n');
    for r in &rows {
        csv.push_str(&crate::plot::csv_row(r).replace(' ', ","));
        csv.push('\n');
    }
    std::fs::write(a.out.join("soak.csv"), csv)?;
    finish(&a, &rows)
}

/// Acknowledges, as `officer`, every message that came in after log
/// index `after` without one (advancing `after`); each acknowledgement's
/// latency goes to `w`.
async fn acknowledge_new(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    officer: &MemberSigner,
    after: &mut u64,
    w: &Window,
) -> Result<()> {
    let v: Value = http
        .get(format!(
            "{base}/line/v1/messages?direction=in&limit=1000&after={after}"
        ))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    for m in v["messages"].as_array().into_iter().flatten() {
        *after = (*after).max(m["index"].as_u64().unwrap_or(0));
        if !m["ack"].is_null() {
            continue;
        }
        let id = m["message"]["id"].as_str().unwrap_or_default();
        let a = officer.sign_ack(liaison::Ack {
            message: uuid::Uuid::parse_str(id)?,
            from: m["message"]["to"].as_str().unwrap_or_default().into(),
            to: m["message"]["from"].as_str().unwrap_or_default().into(),
            by: officer.key(),
            verdict: liaison::AckVerdict::Accept,
            text: "wilco".into(),
            at_ms: crate::bench_line::now_ms(),
        });
        let body = serde_json::to_vec(&api::wire::line::AckBody::signed(&a))?;
        let t0 = Instant::now();
        crate::bench_line::post_to(http, base, "/line/v1/acks", token, body, 200).await?;
        w.record(t0.elapsed().as_micros() as u64);
    }
    Ok(())
}

/// The newest checkpoint's size (0 if unreadable).
async fn checkpoint_size(http: &reqwest::Client, base: &str) -> u64 {
    let Ok(r) = http.get(format!("{base}/log/checkpoint")).send().await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

/// Plots the rows to soak.png and prints the drift summary.
fn finish(a: &BenchSoakArgs, rows: &[Vec<f64>]) -> Result<()> {
    if rows.is_empty() {
        bail!("no minute was measured");
    }
    let col = |name: &str| {
        let i = COLUMNS.iter().position(|c| *c == name).unwrap_or(0);
        rows.iter()
            .map(|r| r.get(i).copied().unwrap_or(f64::NAN))
            .collect::<Vec<f64>>()
    };
    let png = crate::plot::chart(&[
        (
            "p99 ms per minute",
            vec![
                ("create", col("create_p99_ms")),
                ("query", col("query_p99_ms")),
                ("message", col("message_p99_ms")),
            ],
        ),
        (
            "resident MiB per minute",
            vec![
                ("alliance", col("rss_a_mib")),
                ("federation", col("rss_f_mib")),
            ],
        ),
    ]);
    let path = a.out.join("soak.png");
    std::fs::write(&path, png)?;
    println!(
        "wrote {} and {} (top: p99 ms per minute — create blue, query red, message green; bottom: resident MiB — alliance purple, federation orange; x: minutes)",
        a.out.join("soak.csv").display(),
        path.display()
    );
    // Drift: after a warm-up of a fifth of the run, the resident memory's
    // least-squares slope, and each p99's second half against its first.
    let skip = rows.len() / 5;
    for (name, series) in [
        ("alliance", col("rss_a_mib")),
        ("federation", col("rss_f_mib")),
    ] {
        let s = crate::plot::slope(&series[skip..]);
        println!(
            "resident memory, {name}: {:.0} → {:.0} MiB, trend {:+.1} MiB/hour after the first {skip} min",
            series[skip],
            series[series.len() - 1],
            s * 60.0
        );
    }
    for (name, series) in [
        ("create", col("create_p99_ms")),
        ("query", col("query_p99_ms")),
        ("message", col("message_p99_ms")),
        ("acknowledgement", col("ack_p99_ms")),
    ] {
        let rest = &series[skip..];
        let half = rest.len() / 2;
        let median = |v: &[f64]| {
            let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let worst = rest
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max);
        println!(
            "{name} p99 per minute: median {:.1} ms in the first half, {:.1} ms in the second; worst minute {worst:.1} ms",
            median(&rest[..half.max(1).min(rest.len())]),
            median(&rest[half..])
        );
    }
    let errors: f64 = col("errors").iter().sum();
    let shed: f64 = col("shed").iter().sum();
    let backlog = col("line_backlog");
    println!(
        "errors {errors:.0}, shed {shed:.0}, line backlog at the end {:.0} (largest {:.0})",
        backlog[backlog.len() - 1],
        backlog.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}
