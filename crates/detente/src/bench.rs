//! `detente bench`: measures what the project sets targets for
//! (docs/benchmarks.md restates them), on the
//! embedded store with real fsyncs, and prints each result beside its target
//! and beside the published figure of the reference DSS it is compared with.
//!
//! 1. At each live-intent count: intent create with key check (through the
//!    node's use case: prepare, decide, group-committed write) and 4D area
//!    queries, in process and over real HTTP.
//! 2. The congested area over real HTTP: N clients planning in the same
//!    ~1 km² (query → create with the keys they learnt → retry on 409).

use crate::config::NodeConfig;
use crate::run;
use anyhow::{Context, Result, bail};
use clap::Args;
use node::airspace::decide::ImplicitSubscription;
use node::airspace::{
    DomainError, LatLng, OperationalIntentState, Outline, Ovn, Timestamp, Volume4D,
};
use node::{Caller, Clock, Dss, IntentRequest, NodeError, RandomIds, Scope, Settings, SystemClock};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const DEMO_PRIVATE_KEY: &str = include_str!("../demo-keys/demo-private.pem");
const DEMO_PUBLIC_KEY: &str = include_str!("../demo-keys/demo-public.pem");

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Live operational intents to measure at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    live: Vec<usize>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent writers / readers for the create and query measurements.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Clients planning in the same ~1 km² in the congested-area workload (0 skips it).
    #[arg(long, default_value_t = 200)]
    congested_clients: usize,
    /// After the closed loop (each client starts its next transaction as
    /// soon as one ends: the capacity), the same clients are offered this
    /// many transactions per second between them, each on its own
    /// schedule, latency counted from the scheduled start (open loop: the
    /// latency at the target's rate; 0 skips it).
    #[arg(long, default_value_t = 1000)]
    congested_rate: u64,
    /// After the closed-loop creates (the capacity), creates offered at
    /// this rate from 256 schedules (open loop, latency from the scheduled
    /// start: the latency at the target's rate; 0 skips it).
    #[arg(long, default_value_t = 10_000)]
    create_rate: u64,
    /// Entries for the evidence-log measurements (0 skips them).
    #[arg(long, default_value_t = 1_000_000)]
    log_entries: u64,
    /// Also run the 4D area query as hand-written SQL on PostGIS (GiST over
    /// geometry, tstzrange and numrange), same intents, same areas, and print
    /// the ratio: a PostgreSQL URL (its table detente_bench_intents is replaced).
    #[arg(long, env = "DETENTE_BENCH_POSTGIS")]
    postgis: Option<String>,
    /// Also run the create and area-query measurements on the PostgreSQL
    /// backend, with one replica and with two (two stores on one schema in
    /// this process, each with its own writer connection, watcher and
    /// leader lock): a PostgreSQL URL (its schema detente_bench is replaced).
    #[arg(long, env = "DETENTE_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// With --postgres, last: area queries over HTTP against replicas as
    /// processes of their own (`detente serve` on the schema), one and then
    /// two, each held to this share of a core by a cgroup (root only; 0:
    /// unlimited) — a replica on a machine of its own.
    #[arg(long, default_value_t = 0.25)]
    replica_cores: f64,
    /// Seconds of the disk probe run first (commit-like syncs alone, then
    /// beside a checkpoint-like writer: the floor under the create p99 on
    /// this disk; 0 skips it).
    #[arg(long, default_value_t = 4)]
    disk_seconds: u64,
    /// Folder for the benchmark's stores (default: a temporary folder, removed
    /// after; a folder given here is kept, to restart a node on it).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// The same 4D area queries as hand-written PostGIS SQL on the same intents:
/// the answers are compared on sample areas, then the rate is measured with
/// the same concurrency and printed beside the embedded one's.
async fn postgis_baseline(
    url: &str,
    dss: &Dss,
    embedded: &Measured,
    concurrency: usize,
    seconds: u64,
    now: Timestamp,
) -> Result<(Measured, Measured)> {
    let intents: Vec<(Uuid, Vec<Volume4D>)> = dss.view(|s| {
        s.intents()
            .map(|i| (i.id, i.extents.iter().map(|p| p.volume.clone()).collect()))
            .collect()
    })?;
    let pg = Arc::new(
        store::PostgisBaseline::connect(url, concurrency.min(32) as u32)
            .await
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let started = Instant::now();
    pg.load(&intents).await.map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "{:<44} loaded {} intents into PostGIS and indexed them in {:.1} s",
        "",
        intents.len(),
        started.elapsed().as_secs_f64()
    );
    let area = move |seed: u64| {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let (lat, lng) = (40.0 + 10.0 * rng.unit(), 10.0 * rng.unit());
        square(lat, lng, 0.0045, now, now.plus_seconds(86_400))
    };
    // Same answers? (PostGIS here is planar on lat/lng; the node's edges are
    // geodesics: at this size they agree but for slivers.)
    let (mut same, mut hits) = (0, 0);
    for seed in 0..200u64 {
        let a = area(seed + 1);
        let mut mine: Vec<Uuid> = dss
            .query_intents(Some(a.clone()))
            .await?
            .iter()
            .map(|i| i.id)
            .collect();
        let mut theirs = pg.query(&a).await.map_err(|e| anyhow::anyhow!(e))?;
        mine.sort();
        theirs.sort();
        hits += mine.len();
        same += usize::from(mine == theirs);
    }
    let p = pg.clone();
    let m = measure(concurrency, seconds, move |seed| {
        let p = p.clone();
        async move { p.query(&area(seed)).await.is_ok() }
    })
    .await;
    // Creates with the key check, by hand: a SERIALIZABLE transaction each.
    let p = pg.clone();
    let created = measure(concurrency, seconds, move |seed| {
        let p = p.clone();
        async move {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 5);
            p.create(Uuid::from_u128(rand_u128()), &random_volume(&mut rng, now))
                .await
                .is_ok()
        }
    })
    .await;
    println!(
        "{}",
        created.line("intent create with key check, hand-written PostGIS", "-")
    );
    println!(
        "{}",
        m.line("4D area query, hand-written PostGIS + GiST", "-")
    );
    println!(
        "{:<44} embedded / PostGIS: {:.1}× (target ≥ 10×); same answers on {same} of 200 sample areas ({hits} hits)",
        "",
        embedded.rate() / m.rate()
    );
    Ok((m, created))
}

/// Resident memory of a process, bytes (Linux `VmRSS`).
pub(crate) fn resident(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

/// The disk a folder takes: the blocks allocated to every file under it
/// (what `du` counts), bytes.
pub(crate) fn disk_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                todo.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// Copies the files of a folder (not its subfolders).
fn copy_files(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            match std::fs::copy(e.path(), to.join(e.file_name())) {
                Ok(_) => {}
                // Renamed or removed since it was listed (a temporary file
                // the store's keeper finished): a crash could have come
                // before it as well.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("copying {}", e.path().display()));
                }
            }
        }
    }
    Ok(())
}

/// `detente serve` on `dir` (closed) as its own process: seconds from
/// exec to its listener, its resident memory then, and an empty node's.
fn served_memory(root: &std::path::Path, dir: &std::path::Path) -> Result<(f64, u64, u64)> {
    let jwt = root.join("bench-jwt.pem");
    std::fs::write(&jwt, crate::demo::DEMO_PUBLIC_KEY_PEM)?;
    let empty_dir = root.join("empty-node");
    let _ = std::fs::remove_dir_all(&empty_dir);
    let empty = {
        let n =
            crate::demo::NodeProcess::start("detente.bench", &empty_dir, "127.0.0.1:0", &jwt, &[])?;
        // Settled: what a node holds once up, not its start's peak.
        std::thread::sleep(Duration::from_millis(500));
        resident(n.pid())?
    };
    let started = Instant::now();
    let n = crate::demo::NodeProcess::start("detente.bench", dir, "127.0.0.1:0", &jwt, &[])?;
    let secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let rss = resident(n.pid())?;
    drop(n);
    let _ = std::fs::remove_dir_all(&empty_dir);
    Ok((secs, rss, empty))
}

async fn preload(dss: &[Arc<Dss>], caller: &Caller, live: usize, now: Timestamp) -> Result<()> {
    let per = live / 256 + 1;
    let mut tasks = Vec::new();
    for t in 0..256u64 {
        let dss = dss[t as usize % dss.len()].clone();
        let caller = caller.clone();
        let n = per.min(live.saturating_sub(t as usize * per));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1).wrapping_mul(0x1234_5678_9abc_def1));
            for _ in 0..n {
                create_with_key(&dss, &caller, random_volume(&mut rng, now)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// A replica's group commits, counted as its writer reports them.
#[derive(Default)]
struct Batches {
    batches: AtomicU64,
    writes: AtomicU64,
    micros: AtomicU64,
}

#[derive(Clone, Copy)]
struct BatchTally {
    batches: u64,
    writes: u64,
    seconds: f64,
}

impl BatchTally {
    fn since(&self, was: &BatchTally) -> BatchTally {
        BatchTally {
            batches: self.batches - was.batches,
            writes: self.writes - was.writes,
            seconds: self.seconds - was.seconds,
        }
    }
}

impl Batches {
    fn tally(&self) -> BatchTally {
        BatchTally {
            batches: self.batches.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            seconds: self.micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

impl node::CommitObserver for Batches {
    fn committed(&self, writes: usize, seconds: f64, ok: bool) {
        if ok {
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.writes.fetch_add(writes as u64, Ordering::Relaxed);
            self.micros
                .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        }
    }
}

/// The embedded store's rates (and the hand-written PostGIS query's) that
/// the PostgreSQL backend's are compared with.
struct Rates {
    create: f64,
    query: f64,
    by_hand: Option<f64>,
    by_hand_create: Option<f64>,
}

/// The same create and area-query workloads on the PostgreSQL backend,
/// with one replica and then two on the same schema, printed beside the
/// embedded store's (and the hand-written PostGIS query's, when measured).
#[allow(clippy::too_many_arguments)]
async fn postgres_backend(
    url: &str,
    dir: &std::path::Path,
    live: usize,
    args: &BenchArgs,
    caller: &Caller,
    now: Timestamp,
    rates: &Rates,
) -> Result<()> {
    let at = store::Location::new(url, "detente_bench").map_err(|e| anyhow::anyhow!(e))?;
    // A fresh schema: dropped first (the benchmark owns it).
    store::postgres::drop_schema(&at)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let signer = crate::key::load_or_create(&dir.join("pg"), "detente.bench")?;
    let open = || async {
        let log_signer = node::entries::LogSigner {
            previous: None,
            signer: signer.clone(),
            clock: Arc::new(SystemClock),
            member: None,
        };
        let store = store::open_postgres(&at, log_signer)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let batches = Arc::new(Batches::default());
        node::Store::observe_commits(&store, batches.clone());
        anyhow::Ok((dss_over(Arc::new(store)), batches))
    };
    let (first, first_batches) = open().await?;
    let started = Instant::now();
    preload(std::slice::from_ref(&first), caller, live, now).await?;
    println!(
        "-- PostgreSQL backend: {} live intents (preloaded in {:.1} s through the write path)",
        first.counts()?.intents,
        started.elapsed().as_secs_f64()
    );
    for replicas in [1, 2] {
        // The second replica starts only for its own measurement.
        let (nodes, batches) = if replicas == 1 {
            (vec![first.clone()], vec![first_batches.clone()])
        } else {
            let (second, second_batches) = open().await?;
            (
                vec![first.clone(), second],
                vec![first_batches.clone(), second_batches],
            )
        };
        let before: Vec<BatchTally> = batches.iter().map(|b| b.tally()).collect();
        let ds = nodes.clone();
        let c = caller.clone();
        let m = measure(args.concurrency, args.seconds, move |seed| {
            let d = ds[(seed >> 32) as usize % ds.len()].clone();
            let c = c.clone();
            async move {
                // Each run creates intents of its own: the same seeds as
                // the one-replica run would recreate its volumes, and every
                // create would first fail the key check on its twin.
                let seed = seed + ((replicas as u64) << 60);
                let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 3);
                create_with_key(&d, &c, random_volume(&mut rng, now))
                    .await
                    .is_ok()
            }
        })
        .await;
        println!(
            "{}",
            m.line(
                &format!("intent create with key check, PostgreSQL ×{replicas}"),
                "-"
            )
        );
        // What each replica's writer committed meanwhile: the group
        // commits that the creates shared.
        for (i, (b, was)) in batches.iter().zip(&before).enumerate() {
            let t = b.tally().since(was);
            println!(
                "{:<44} replica {}: {} group commits, {:.1} writes each, {:.2} ms each to durable, {:.0}% of the run committing",
                "",
                i + 1,
                t.batches,
                t.writes as f64 / t.batches.max(1) as f64,
                t.seconds * 1e3 / t.batches.max(1) as f64,
                100.0 * t.seconds / args.seconds as f64,
            );
        }
        match rates.by_hand_create {
            Some(h) => println!(
                "{:<44} PostgreSQL ×{replicas} / embedded: {:.2}×; / hand-written PostGIS: {:.2}× (target: not below 1/1.5)",
                "",
                m.rate() / rates.create,
                m.rate() / h
            ),
            None => println!(
                "{:<44} PostgreSQL ×{replicas} / embedded: {:.2}×",
                "",
                m.rate() / rates.create
            ),
        }
        let ds = nodes.clone();
        let m = measure(args.concurrency, args.seconds, move |seed| {
            let d = ds[(seed >> 32) as usize % ds.len()].clone();
            async move {
                let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
                let (lat, lng) = (40.0 + 10.0 * rng.unit(), 10.0 * rng.unit());
                let area = square(lat, lng, 0.0045, now, now.plus_seconds(86_400));
                d.query_intents(Some(area)).await.is_ok()
            }
        })
        .await;
        println!(
            "{}",
            m.line(&format!("4D area query, PostgreSQL ×{replicas}"), "-")
        );
        // The same query on what the replica holds, without first taking in
        // what other replicas committed: the cost of read-your-writes.
        let ds = nodes.clone();
        let unsettled = measure(args.concurrency, args.seconds, move |seed| {
            let d = ds[(seed >> 32) as usize % ds.len()].clone();
            async move {
                let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
                let (lat, lng) = (40.0 + 10.0 * rng.unit(), 10.0 * rng.unit());
                let area = square(lat, lng, 0.0045, now, now.plus_seconds(86_400));
                match node::airspace::geometry::prepare(area, &node::airspace::Limits::default()) {
                    Ok(p) => d.view(|s| s.intents_intersecting(&[p]).len()).is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        println!(
            "{}",
            unsettled.line(
                &format!("  the same, not settled, PostgreSQL ×{replicas}"),
                "-"
            )
        );
        println!(
            "{:<44} settled / not settled: {:.2}× (the price of read-your-writes across replicas)",
            "",
            m.rate() / unsettled.rate()
        );
        match rates.by_hand {
            Some(h) => println!(
                "{:<44} PostgreSQL ×{replicas} / embedded: {:.2}×; / hand-written PostGIS: {:.1}× (target: not below 1/1.5)",
                "",
                m.rate() / rates.query,
                m.rate() / h
            ),
            None => println!(
                "{:<44} PostgreSQL ×{replicas} / embedded: {:.2}× (add --postgis URL for the hand-written PostGIS ratio)",
                "",
                m.rate() / rates.query
            ),
        }
    }
    // The in-process replicas end before the processes start on the schema.
    first.close().await;
    drop(first);
    crate::bench_replicas::reads(&crate::bench_replicas::Replicas {
        url,
        schema: "detente_bench",
        data: &dir.join("pg"),
        name: "detente.bench",
        concurrency: args.concurrency,
        seconds: args.seconds,
        cores: args.replica_cores,
        now,
    })
    .await
}

/// The node's use cases over `store`, on the system clock.
fn dss_over(store: Arc<dyn node::Store>) -> Arc<Dss> {
    Arc::new(Dss::new(
        store,
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        // One client writes everything here: no quota applies.
        Settings {
            max_subscriptions_per_area: usize::MAX,
            max_reports_per_day: usize::MAX,
            max_stored_points_per_client: usize::MAX,
            ..Settings::default()
        },
    ))
}

/// xorshift64*: deterministic, dependency-free.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub(crate) fn square(lat: f64, lng: f64, h: f64, start: Timestamp, end: Timestamp) -> Volume4D {
    Volume4D::square(LatLng { lat, lng }, h, (0.0, 500.0), (start, end))
}

/// A random ~200 m intent somewhere in the 10° × 10° bench region, in the next day.
fn random_volume(rng: &mut Rng, now: Timestamp) -> Volume4D {
    let (lat, lng) = (40.0 + 10.0 * rng.unit(), 10.0 * rng.unit());
    let start = now.plus_seconds(60 + (rng.unit() * 82_800.0) as i64);
    square(lat, lng, 0.001, start, start.plus_seconds(3600))
}

fn request(v: Volume4D, key: Vec<Ovn>) -> IntentRequest {
    IntentRequest {
        extents: vec![v],
        key,
        state: OperationalIntentState::Accepted,
        uss_base_url: "https://bench.example/utm".into(),
        subscription_id: None,
        new_subscription: Some(ImplicitSubscription {
            uss_base_url: "https://bench.example/utm".into(),
            notify_for_constraints: false,
        }),
        requested_ovn_suffix: None,
    }
}

/// Creates an intent, presenting whatever OVNs the key check asks for (the
/// bench plays every USS, so it knows them all).
async fn create_with_key(dss: &Dss, caller: &Caller, v: Volume4D) -> Result<()> {
    let mut key = Vec::new();
    for _ in 0..5 {
        match dss
            .put_intent(
                caller,
                Uuid::from_u128(rand_u128()),
                None,
                request(v.clone(), key.clone()),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(NodeError::Domain(DomainError::KeyCheckFailed {
                missing_operational_intents,
                ..
            })) => {
                key.extend(missing_operational_intents.into_iter().map(|i| i.ovn));
            }
            Err(e) => bail!("create failed: {e}"),
        }
    }
    bail!("create kept failing the key check")
}

fn rand_u128() -> u128 {
    use node::Ids;
    // A v4 uuid's bits are random; only the id format matters here.
    RandomIds.uuid_v4().as_u128()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

pub(crate) struct Measured {
    ops: u64,
    secs: f64,
    lat_us: Vec<u64>,
    errors: u64,
    /// What the measurement cost the machine, when `/proc` tells.
    cpu: Option<CpuUse>,
}

/// CPU time spent over a measurement.
struct CpuUse {
    /// This process's (server and load generator together), user and
    /// system, per operation.
    process_us_per_op: f64,
    /// The share of the whole machine's cores not idle (steal counts as
    /// busy: the cores were not ours).
    machine_busy: f64,
}

/// Clock ticks of CPU so far (USER_HZ, 100 a second on Linux): this
/// process's user + system, and the whole machine's busy and total.
fn cpu_ticks() -> Option<(u64, u64, u64)> {
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name's ")": the state (field 3) first, so
    // utime (field 14) and stime (15) at 11 and 12.
    let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    let process = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let all = std::fs::read_to_string("/proc/stat").ok()?;
    // "cpu  user nice system idle iowait irq softirq steal …"
    let ticks: Vec<u64> = all
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((process, total - idle, total))
}

/// Waits (at most 15 s) until the machine's cores are ≥ 90% idle over a
/// fifth of a second: a start is timed on a quiet machine, not beside the
/// freeing of the state a node before it held (gigabytes at 1M).
async fn quiet_machine() {
    for _ in 0..75 {
        let Some((_, busy0, total0)) = cpu_ticks() else {
            return;
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some((_, busy1, total1)) = cpu_ticks() else {
            return;
        };
        if (busy1 - busy0) * 10 <= (total1 - total0) {
            return;
        }
    }
}

impl CpuUse {
    fn between(before: Option<(u64, u64, u64)>, ops: u64) -> Option<CpuUse> {
        let (p0, b0, t0) = before?;
        let (p1, b1, t1) = cpu_ticks()?;
        let ticks = t1.checked_sub(t0).filter(|t| *t > 0)?;
        Some(CpuUse {
            process_us_per_op: (p1.saturating_sub(p0) as f64 * 10_000.0) / ops.max(1) as f64,
            machine_busy: b1.saturating_sub(b0) as f64 / ticks as f64,
        })
    }
}

impl Measured {
    pub(crate) fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    pub(crate) fn line(&self, what: &str, target: &str) -> String {
        let cpu = self.cpu.as_ref().map_or(String::new(), |c| {
            format!(
                "\n{:<44} CPU {:.0} µs per operation (server and load generator), cores {:.0}% busy",
                "",
                c.process_us_per_op,
                100.0 * c.machine_busy
            )
        });
        format!(
            "{what:<44} {:>10.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ops, {} errors)   target {target}{cpu}",
            self.rate(),
            percentile(&self.lat_us, 0.50),
            percentile(&self.lat_us, 0.99),
            self.ops,
            self.errors
        )
    }
}

/// Runs `op` from `concurrency` tasks for `secs` seconds, each starting
/// its next operation as soon as one ends (closed loop).
pub(crate) async fn measure<F, Fut>(concurrency: usize, secs: u64, op: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    lanes(concurrency, secs, None, op).await
}

/// Offers `op` at `rate` per second for `secs` seconds from `lanes`
/// schedules (each lane one operation every `lanes / rate` s, the lanes'
/// phases spread evenly; a lane still busy starts its next operation late).
/// An operation's latency runs from its scheduled start, so a server that
/// falls behind is not excused by the load waiting for it (no coordinated
/// omission). The starts are released by a [`Pacer`] (here ~0.1 ms late at
/// the median, ~0.3 ms at p99).
async fn measure_open<F, Fut>(lanes_n: usize, rate: u64, secs: u64, op: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let every = Duration::from_secs_f64(lanes_n as f64 / rate.max(1) as f64);
    lanes(lanes_n, secs, Some(every), op).await
}

/// Releases the starts of open-loop schedules on time. tokio's timers
/// tick by the millisecond, so a task sleeping until its start woke up to
/// ~1 ms late, and every latency counted from the scheduled start carried
/// that lateness of the load generator's own. A thread sleeps instead
/// (nanosleep) until each start in turn and wakes the lane whose start it
/// is; a lane still busy at its start takes it late, counted so.
struct Pacer;

/// One schedule's side of the [`Pacer`]: the number of its starts released
/// so far, and the wake-up.
#[derive(Default)]
struct PacedLane {
    released: AtomicU64,
    wake: tokio::sync::Notify,
}

impl Pacer {
    /// Starts the pacer for schedules whose first starts are `firsts`, one
    /// start every `every` after, until `deadline`; a lane per schedule.
    fn start(firsts: &[Instant], every: Duration, deadline: Instant) -> Vec<Arc<PacedLane>> {
        use std::cmp::Reverse;
        let lanes: Vec<Arc<PacedLane>> = firsts.iter().map(|_| Arc::default()).collect();
        let mut due: std::collections::BinaryHeap<Reverse<(Instant, usize, u64)>> = firsts
            .iter()
            .enumerate()
            .map(|(lane, at)| Reverse((*at, lane, 1)))
            .collect();
        let woken = lanes.clone();
        std::thread::spawn(move || {
            let mut late_us = Vec::new();
            while let Some(Reverse((at, lane, n))) = due.pop() {
                if at >= deadline {
                    continue;
                }
                if let Some(wait) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                woken[lane].released.store(n, Ordering::Release);
                woken[lane].wake.notify_one();
                late_us.push(at.elapsed().as_micros() as u64);
                due.push(Reverse((at + every, lane, n + 1)));
            }
            late_us.sort_unstable();
            tracing::debug!(
                starts = late_us.len(),
                p50_ms = percentile(&late_us, 0.50),
                p99_ms = percentile(&late_us, 0.99),
                max_us = late_us.last().copied().unwrap_or(0),
                "open-loop starts released, this late"
            );
        });
        lanes
    }

    /// [`start`](Self::start)s a pacer and gives each lane its schedule.
    fn schedules(firsts: Vec<Instant>, every: Duration, deadline: Instant) -> Vec<Schedule> {
        Self::start(&firsts, every, deadline)
            .into_iter()
            .zip(firsts)
            .map(|(lane, first)| Schedule::paced(lane, first, every))
            .collect()
    }
}

/// A load task's schedule: back to back (closed loop), or one start every
/// `every` released by a [`Pacer`] (open loop).
struct Schedule {
    paced: Option<(Arc<PacedLane>, Duration)>,
    next: Instant,
    taken: u64,
}

impl Schedule {
    fn closed() -> Self {
        Schedule {
            paced: None,
            next: Instant::now(),
            taken: 0,
        }
    }

    fn paced(lane: Arc<PacedLane>, first: Instant, every: Duration) -> Self {
        Schedule {
            paced: Some((lane, every)),
            next: first,
            taken: 0,
        }
    }

    /// When the task starts its next operation: now (closed loop), or at
    /// its next start, once the pacer released it (open loop); `None` once
    /// that is past `deadline` (waiting for a start past the end would
    /// count idle time in the elapsed).
    async fn next_start(&mut self, deadline: Instant) -> Option<Instant> {
        let at = match &self.paced {
            Some((lane, every)) => {
                let at = self.next;
                if at >= deadline {
                    return None;
                }
                self.next += *every;
                self.taken += 1;
                // A wake-up stored for a start already taken only loops.
                while lane.released.load(Ordering::Acquire) < self.taken {
                    lane.wake.notified().await;
                }
                at
            }
            None => Instant::now(),
        };
        (at < deadline).then_some(at)
    }
}

/// `n` tasks running `op` until `secs` have passed: back to back, or each
/// on a schedule of one start `every` (its latencies then counted from the
/// scheduled starts).
async fn lanes<F, Fut>(n: usize, secs: u64, every: Option<Duration>, op: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let cpu_before = cpu_ticks();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let schedules: Vec<Schedule> = match every {
        Some(e) => {
            let firsts: Vec<Instant> = (0..n)
                .map(|t| started + e.mul_f64(t as f64 / n as f64))
                .collect();
            Pacer::schedules(firsts, e, deadline)
        }
        None => (0..n).map(|_| Schedule::closed()).collect(),
    };
    let mut tasks = Vec::new();
    for (t, mut schedule) in schedules.into_iter().enumerate() {
        let op = op.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while let Some(at) = schedule.next_start(deadline).await {
                if op((t as u64) << 32 | i).await {
                    lat.push(at.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            lat
        }));
    }
    let mut lat_us = Vec::new();
    for t in tasks {
        lat_us.extend(t.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    lat_us.sort_unstable();
    Measured {
        ops: lat_us.len() as u64,
        secs,
        cpu: CpuUse::between(cpu_before, lat_us.len() as u64),
        lat_us,
        errors: errors.load(Ordering::Relaxed),
    }
}

pub(crate) fn token(sub: &str, scope: &str) -> Result<String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(DEMO_PRIVATE_KEY.as_bytes())?;
    let now = SystemClock.now().unix_micros() / 1_000_000;
    let claims = json!({ "sub": sub, "scope": scope, "aud": "localhost", "exp": now + 3600 });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )?)
}

pub(crate) fn wire_volume(v: &Volume4D) -> Value {
    let Outline::Polygon { vertices } = &v.outline else {
        return Value::Null;
    };
    json!({
        "volume": {
            "outline_polygon": { "vertices": vertices.iter().map(|p| json!({"lat": p.lat, "lng": p.lng})).collect::<Vec<_>>() },
            "altitude_lower": { "value": v.altitude_lower_m, "reference": "W84", "units": "M" },
            "altitude_upper": { "value": v.altitude_upper_m, "reference": "W84", "units": "M" },
        },
        "time_start": v.time_start.map(api::wire::format_time),
        "time_end": v.time_end.map(api::wire::format_time),
    })
}

async fn node_config(dir: PathBuf) -> Result<NodeConfig> {
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("bench-jwt-public.pem");
    std::fs::write(&key, DEMO_PUBLIC_KEY)?;
    Ok(NodeConfig {
        name: "detente.demo".into(),
        data: dir,
        listen: "127.0.0.1:0".parse()?,
        public_url: None,
        peer_listen: None,
        ca_file: None,
        uss_tokens: None,
        jwt_public_key: Some(key),
        jwt_jwks: None,
        jwt_audience: "localhost".into(),
        insecure_dev_auth: false,
        max_area_km2: 100_000.0,
        max_vertices: 10_000,
        default_subscription_hours: 24,
        expiry_sweep_seconds: 3600,
        expiry_grace_seconds: 300,
        rate_limit_per_second: 0,
        rate_limit_burst: 2000,
        max_subscriptions_per_area: usize::MAX,
        max_reports_per_day: usize::MAX,
        max_stored_points_per_client: usize::MAX,
        max_connections: None,
        max_connections_per_source: None,
        witness_logs: vec![],
        witnesses: vec![],
        witness_policy: None,
        console_admin_roles: vec![],
        basemap_mbtiles: None,
        private_metrics: false,
        database: None,
    })
}

/// Runs the disk probe in the benchmark's folder and prints what it found.
fn disk_floor(root: &std::path::Path, seconds: u64) -> Result<()> {
    use crate::bench_disk::{CHECKPOINT_EVERY, CHECKPOINT_PAGES};
    let p = crate::bench_disk::run(
        &root.join("disk-probe"),
        std::time::Duration::from_secs(seconds),
    )?;
    let line = |what: &str, lat: &[u64]| {
        println!(
            "{what:<44} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} syncs)",
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            percentile(lat, 1.0),
            lat.len()
        );
    };
    println!(
        "== the disk under {}: a commit's sync (64 KiB overwritten, fdatasync), back to back,\n   alone, then beside checkpoint-like passes ({CHECKPOINT_PAGES} random 4 KiB pages of another file + its sync, every {} ms)",
        root.display(),
        CHECKPOINT_EVERY.as_millis()
    );
    line("commit sync alone", &p.alone);
    line(
        "commit sync beside checkpoint-like passes",
        &p.beside_checkpoints,
    );
    line("  the passes' own syncs", &p.checkpoint_syncs);
    println!(
        "   a create waits for one such sync: the create p99 cannot go below the second line's p99 on this disk\n"
    );
    Ok(())
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let root = args.data.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("detente-bench-{}", std::process::id()))
    });
    println!(
        "detente bench — embedded store (SQLite WAL, synchronous=FULL, group commit), {} s per measurement",
        args.seconds
    );
    println!(
        "machine: {} logical CPUs; server and load generator share them",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("reference DSS (CockroachDB) figures are published ones, not measured here\n");
    if args.disk_seconds > 0 {
        disk_floor(&root, args.disk_seconds)?;
    }
    let keep = args.data.is_some();
    let caller = Caller {
        sub: "bench-uss".into(),
        scopes: vec![Scope::StrategicCoordination],
    };
    for &live in &args.live {
        let dir = root.join(format!("live-{live}"));
        let _ = std::fs::remove_dir_all(&dir);
        let signer = crate::key::load_or_create(&dir, "detente.bench")?;
        let log_signer = node::entries::LogSigner {
            previous: None,
            signer,
            clock: Arc::new(SystemClock),
            member: None,
        };
        let open = || async {
            let store = store::open_sqlite(&dir, log_signer.clone())
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            anyhow::Ok(dss_over(Arc::new(store)))
        };
        let dss = open().await?;
        let now = SystemClock.now();
        // Preload through the same write path, many writers at once.
        let started = Instant::now();
        preload(std::slice::from_ref(&dss), &caller, live, now).await?;
        let loaded = dss.counts()?.intents;
        println!(
            "== {loaded} live intents (preloaded in {:.1} s through the write path)",
            started.elapsed().as_secs_f64()
        );
        // The node's cold start on exactly these intents, closed as a node
        // closes it when it stops (what a restart finds).
        let cfg = NodeConfig {
            data: dir.clone(),
            ..node_config(dir.join("http")).await?
        };
        dss.close().await;
        drop(dss);
        quiet_machine().await;
        let cold = Instant::now();
        let node = run::start(&cfg).await?;
        let cold = cold.elapsed().as_secs_f64();
        let stopping = Instant::now();
        node.stop().await?;
        let stopping = stopping.elapsed().as_secs_f64();
        println!(
            "{:<44} {cold:>10.3} s   (open the store, load {loaded} intents from the state snapshot the close left, rebuild index and conflicts)   target ≤ 1 s at 100k, ≤ 5 s at 1M",
            "cold start"
        );
        println!(
            "{:<44} {stopping:>10.3} s   (commit, close the database, write the state snapshot)",
            "clean stop"
        );
        let disk = disk_bytes(&dir)?;
        println!(
            "{:<44} {:>10.1} MiB (the database with the evidence log, the state snapshot): {:.0} bytes per live intent",
            "on disk after the clean stop",
            disk as f64 / 1048576.0,
            disk as f64 / loaded.max(1) as f64
        );
        // No snapshot at all (a folder from before them, or one refused):
        // every row read.
        let snapshot = dir.join("airspace.snapshot");
        std::fs::remove_file(&snapshot)
            .with_context(|| format!("the clean stop left no {}", snapshot.display()))?;
        quiet_machine().await;
        let cold = Instant::now();
        let node = run::start(&cfg).await?;
        let cold = cold.elapsed().as_secs_f64();
        node.stop().await?;
        println!(
            "{:<44} {cold:>10.3} s   (the same from the rows alone)",
            "cold start without a snapshot"
        );
        // The same as its own process (`detente serve`): from exec to its
        // listener, and its resident memory there beside an empty node's.
        quiet_machine().await;
        match served_memory(&root, &dir) {
            Ok((secs, rss, empty)) => println!(
                "{:<44} {secs:>10.3} s   resident {:.0} MiB (an empty node {:.0} MiB): {:.0} bytes per live intent",
                "detente serve: start to listening",
                rss as f64 / 1048576.0,
                empty as f64 / 1048576.0,
                rss.saturating_sub(empty) as f64 / loaded.max(1) as f64
            ),
            Err(e) => println!("detente serve: not measured: {e:#}"),
        }
        let dss = open().await?;

        // Creates at random places; each measurement its own volumes.
        let creates = |mix: u64| {
            let (d, c) = (dss.clone(), caller.clone());
            move |seed: u64| {
                let (d, c) = (d.clone(), c.clone());
                async move {
                    let mut rng = Rng(seed.wrapping_mul(mix) | 1);
                    create_with_key(&d, &c, random_volume(&mut rng, now))
                        .await
                        .is_ok()
                }
            }
        };
        let m = measure(
            args.concurrency,
            args.seconds,
            creates(0x9e37_79b9_7f4a_7c15),
        )
        .await;
        let target = if live >= 100_000 {
            "≥ 10,000/s, p99 ≤ 5 ms"
        } else {
            "(target set at 100k)"
        };
        println!(
            "{}",
            m.line("intent create with key check (in process)", target)
        );
        println!(
            "{:<44} ratio to the reference DSS's ≈150 creates/s: {:.0}×",
            "",
            m.rate() / 150.0
        );
        let embedded_create = m.rate();
        if args.create_rate > 0 {
            let m = measure_open(
                256,
                args.create_rate,
                args.seconds,
                creates(0xbf58_476d_1ce4_e5b9),
            )
            .await;
            println!(
                "{}",
                m.line(
                    &format!("  the same, {} offered/s (open loop)", args.create_rate),
                    target
                )
            );
        }

        let d = dss.clone();
        let m = measure(args.concurrency, args.seconds, move |seed| {
            let d = d.clone();
            async move {
                let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
                let (lat, lng) = (40.0 + 10.0 * rng.unit(), 10.0 * rng.unit());
                let area = square(lat, lng, 0.0045, now, now.plus_seconds(86_400)); // ≈ 1 km × 0.7 km
                d.query_intents(Some(area)).await.is_ok()
            }
        })
        .await;
        println!(
            "{}",
            m.line(
                "4D area query ~1 km², 24 h (in process)",
                if live >= 1_000_000 {
                    "≥ 50,000/s"
                } else {
                    "(target set at 1M)"
                }
            )
        );

        let embedded_query = m;
        let mut by_hand = None;
        if let Some(url) = &args.postgis {
            by_hand = Some(
                postgis_baseline(
                    url,
                    &dss,
                    &embedded_query,
                    args.concurrency,
                    args.seconds,
                    now,
                )
                .await?,
            );
        }
        if let Some(url) = &args.postgres {
            let rates = Rates {
                create: embedded_create,
                query: embedded_query.rate(),
                by_hand: by_hand.as_ref().map(|(q, _)| q.rate()),
                by_hand_create: by_hand.as_ref().map(|(_, c)| c.rate()),
            };
            postgres_backend(url, &dir, live, &args, &caller, now, &rates).await?;
        }

        // The same over HTTP (RS256 bearer token, JSON both ways).
        dss.close().await;
        drop(dss);
        let node = run::start(&cfg).await?;
        let base = format!("http://{}", node.addr);
        let tok = token("bench-uss", "utm.strategic_coordination")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()?;
        let (b, t, h) = (base.clone(), tok.clone(), http.clone());
        let m = measure(args.concurrency, args.seconds, move |seed| {
            let (b, t, h) = (b.clone(), t.clone(), h.clone());
            async move {
                let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
                let (lat, lng) = (40.0 + 10.0 * rng.unit(), 10.0 * rng.unit());
                let area = wire_volume(&square(lat, lng, 0.0045, now, now.plus_seconds(86_400)));
                let r = h
                    .post(format!("{b}/dss/v1/operational_intent_references/query"))
                    .bearer_auth(&t)
                    .json(&json!({ "area_of_interest": area }))
                    .send()
                    .await;
                matches!(r, Ok(r) if r.status().is_success())
            }
        })
        .await;
        println!("{}", m.line("4D area query ~1 km², 24 h (HTTP)", "-"));
        node.stop().await?;
        // Last, as it adds intents: the start after a crash or a kill, from
        // the snapshot the store last wrote (here the clean stop's) and the
        // rows changed since, as many as the store lets pile up before it
        // writes a new one while running (an eighth of the records: a
        // ninth of the intents stays below).
        {
            let dss = open().await?;
            let changes = (loaded / 9) as u64;
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let mut tasks = Vec::new();
            for t in 0..64u64 {
                let (d, c) = (dss.clone(), caller.clone());
                let mut rng = Rng((rng.next() ^ t) | 1);
                let n = changes / 64 + u64::from(t < changes % 64);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..n {
                        create_with_key(&d, &c, random_volume(&mut rng, now)).await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            // The folder as a crash leaves it: copied while nothing is
            // being written (the WAL holds every commit).
            let crashed = root.join(format!("live-{live}-crashed"));
            let _ = std::fs::remove_dir_all(&crashed);
            copy_files(&dir, &crashed)?;
            dss.close().await;
            drop(dss);
            let cfg = NodeConfig {
                data: crashed.clone(),
                ..node_config(crashed.join("http")).await?
            };
            quiet_machine().await;
            let cold = Instant::now();
            let node = run::start(&cfg).await?;
            let cold = cold.elapsed().as_secs_f64();
            node.stop().await?;
            let _ = std::fs::remove_dir_all(&crashed);
            println!(
                "{:<44} {cold:>10.3} s   (the snapshot and the rows of {changes} creates since it)",
                "cold start after a crash"
            );
        }
        println!();
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if args.log_entries > 0 {
        log_bench(args.log_entries);
    }
    if args.congested_clients > 0 {
        let secs = args.seconds.max(5);
        congested(&root.join("closed"), args.congested_clients, 0, secs).await?;
        if args.congested_rate > 0 {
            congested(
                &root.join("open"),
                args.congested_clients,
                args.congested_rate,
                secs,
            )
            .await?;
        }
    }
    if !keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

/// The targets' congested area: every client plans 100 m boxes and
/// 10-minute slots inside the same ~1 km² over the next two hours: query the
/// area, learn the OVNs it does not know (from the shared map that stands in
/// for USS-to-USS detail requests), create with the key, retry on 409. Each
/// client keeps its five most recent intents and deletes older ones, so the
/// area stays full (≈ 5 × clients live intents). With a `rate`, clients
/// start transactions on a schedule (open loop) and a transaction's latency
/// runs from its scheduled start, so a server that falls behind is not
/// excused by the clients waiting for it.
async fn congested(root: &std::path::Path, clients: usize, rate: u64, secs: u64) -> Result<()> {
    let cfg = node_config(root.join("congested")).await?;
    let node = run::start(&cfg).await?;
    let base = format!("http://{}", node.addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let ovns: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(HashMap::new()));
    // The clients' tokens are signed (RS256, ~1 ms each) before the clock
    // starts: signed inside the loop, they made the last clients start a
    // few hundred ms late, and the rates low by as much.
    let tokens = (0..clients)
        .map(|c| token(&format!("uss-{c}"), "utm.strategic_coordination"))
        .collect::<Result<Vec<_>>>()?;
    let now = SystemClock.now();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cpu_before = cpu_ticks();
    let started = Instant::now();
    let retries = Arc::new(AtomicU64::new(0));
    // Each client's generator, and its schedule: open loop at a random
    // phase of its period.
    let mut rngs: Vec<Rng> = (0..clients)
        .map(|c| Rng((c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let schedules: Vec<Schedule> = if rate > 0 {
        let every = Duration::from_secs_f64(clients as f64 / rate as f64);
        let firsts: Vec<Instant> = rngs
            .iter_mut()
            .map(|rng| started + every.mul_f64(rng.unit()))
            .collect();
        Pacer::schedules(firsts, every, deadline)
    } else {
        (0..clients).map(|_| Schedule::closed()).collect()
    };
    let mut tasks = Vec::new();
    for ((tok, mut rng), mut schedule) in tokens.into_iter().zip(rngs).zip(schedules) {
        let (http, base, ovns, retries) =
            (http.clone(), base.clone(), ovns.clone(), retries.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine: Vec<(String, String)> = Vec::new();
            let mut lat_us = Vec::new();
            while let Some(t0) = schedule.next_start(deadline).await {
                let (lat, lng) = (45.0 + 0.0081 * rng.unit(), 10.0 + 0.0116 * rng.unit()); // ~1 km × 1 km at 45°N
                let start = now.plus_seconds(60 + (rng.unit() * 6600.0) as i64);
                let v = wire_volume(&square(lat, lng, 0.00045, start, start.plus_seconds(600)));
                let id = Uuid::from_u128(rand_u128()).to_string();
                let mut ok = false;
                for attempt in 0..20 {
                    if attempt > 0 {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                    let q = http.post(format!("{base}/dss/v1/operational_intent_references/query")).bearer_auth(&tok).json(&json!({ "area_of_interest": v })).send().await;
                    let Ok(q) = q else { continue };
                    let refs: Value = q.json().await.unwrap_or(Value::Null);
                    let key: Vec<String> = {
                        let known = ovns.lock().unwrap_or_else(|e| e.into_inner());
                        refs["operational_intent_references"].as_array().into_iter().flatten().filter_map(|r| r["id"].as_str().and_then(|i| known.get(i).cloned())).collect()
                    };
                    let body = json!({ "extents": [v], "key": key, "state": "Accepted", "uss_base_url": "https://bench.example/utm",
                        "new_subscription": { "uss_base_url": "https://bench.example/utm" } });
                    let Ok(r) = http.put(format!("{base}/dss/v1/operational_intent_references/{id}")).bearer_auth(&tok).json(&body).send().await else { continue };
                    if r.status().as_u16() == 201 {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        if let Some(o) = v["operational_intent_reference"]["ovn"].as_str() {
                            ovns.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), o.to_string());
                            mine.push((id.clone(), o.to_string()));
                        }
                        ok = true;
                        break;
                    }
                }
                if ok {
                    lat_us.push(t0.elapsed().as_micros() as u64);
                }
                if mine.len() > 5 {
                    let (old, ovn) = mine.remove(0);
                    let _ = http.delete(format!("{base}/dss/v1/operational_intent_references/{old}/{ovn}")).bearer_auth(&tok).send().await;
                    ovns.lock().unwrap_or_else(|e| e.into_inner()).remove(&old);
                }
            }
            lat_us
        }));
    }
    let mut per_client = Vec::new();
    let mut all = Vec::new();
    for t in tasks {
        let l = t.await.context("client task")?;
        per_client.push(l.len());
        all.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let m = Measured {
        ops: all.len() as u64,
        secs: elapsed,
        cpu: CpuUse::between(cpu_before, all.len() as u64),
        lat_us: all,
        errors: 0,
    };
    let offered = if rate > 0 {
        format!(", {rate} transactions/s offered (open loop)")
    } else {
        String::new()
    };
    println!(
        "== congested area: {clients} clients in the same ~1 km² over HTTP, {secs} s{offered}"
    );
    println!(
        "{}",
        m.line(
            "successful creates (query → create → retry)",
            "≥ 1,000/s, p99 ≤ 50 ms"
        )
    );
    println!(
        "{:<44} retries on 409: {}; fewest successes of one client: {} (no starvation if > 0); ratio to the reference DSS's 5–25/s: {:.0}×",
        "",
        retries.load(Ordering::Relaxed),
        per_client.iter().min().copied().unwrap_or(0),
        m.rate() / 25.0
    );
    node.stop().await?;
    Ok(())
}

/// The evidence log's pure costs at `n` entries: appending (hashing the
/// complete subtrees), generating and verifying inclusion and consistency
/// proofs, and verifying a signed checkpoint. (Durable appends are part of
/// every create above: each create commits one entry.)
fn log_bench(n: u64) {
    use tlog::tree::MemoryTree;
    println!("== evidence log: {n} entries (in memory, one core)");
    let started = Instant::now();
    let mut tree = MemoryTree::new();
    for i in 0..n {
        tree.append(&i.to_le_bytes());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>10.0}/s",
        "append (leaf + subtree hashing)",
        n as f64 / secs
    );
    let root = match tree.root(n) {
        Ok(r) => r,
        Err(e) => {
            println!("tree: {e}");
            return;
        }
    };
    let mut rng = Rng(0x5151_5151_5151_5151);
    let samples = 10_000u64;
    let picks: Vec<u64> = (0..samples).map(|_| rng.next() % n).collect();
    let started = Instant::now();
    let proofs: Vec<Vec<tlog::Hash>> = picks
        .iter()
        .filter_map(|i| {
            tlog::proof::inclusion_proof(&tree, *i, n)
                .ok()
                .and_then(|p| p.ok())
        })
        .collect();
    let gen_us = started.elapsed().as_secs_f64() * 1e6 / samples as f64;
    let leaves: Vec<tlog::Hash> = picks
        .iter()
        .map(|i| tlog::leaf_hash(&i.to_le_bytes()))
        .collect();
    let started = Instant::now();
    let mut ok = 0;
    for ((i, p), l) in picks.iter().zip(&proofs).zip(&leaves) {
        if tlog::proof::verify_inclusion(l, *i, n, p, &root).is_ok() {
            ok += 1;
        }
    }
    let ver_us = started.elapsed().as_secs_f64() * 1e6 / samples as f64;
    println!(
        "{:<44} {:>10.2} µs   ({} of {samples} verified)",
        "inclusion proof: generate", gen_us, ok
    );
    println!(
        "{:<44} {:>10.2} µs   target ≤ 50 µs (ratio {:.0}× under)",
        "inclusion proof: verify",
        ver_us,
        50.0 / ver_us
    );
    // The same log as the node keeps it: tiles, the full ones "stored"
    // (here in a map), a cache of one, so that every proof first names and
    // reads the tiles it needs (the database read itself is not timed).
    let started = Instant::now();
    let mut tiled = tlog::tiles::TiledTree::new(1);
    let mut stored = std::collections::HashMap::new();
    for i in 0..n {
        tiled.append(&i.to_le_bytes());
        for t in tiled.take_completed() {
            stored.insert((t.level, t.index), t);
        }
    }
    println!(
        "{:<44} {:>10.0}/s   ({} full tiles stored, {:.1} MB; the whole tree in memory would be {:.1} MB)",
        "append, tiled (tiles handed out to store)",
        n as f64 / started.elapsed().as_secs_f64(),
        stored.len(),
        stored.len() as f64 * 8192.0 / 1e6,
        (2 * n) as f64 * 32.0 / 1e6
    );
    let started = Instant::now();
    let mut same = 0;
    let mut tiles_read = 0;
    for (i, want) in picks.iter().zip(&proofs) {
        let need = tiled.missing(|r| tlog::proof::inclusion_proof(r, *i, n));
        let read: Vec<tlog::tiles::Tile> =
            need.iter().filter_map(|k| stored.get(k).cloned()).collect();
        tiles_read += read.len();
        if let Ok(Ok(p)) = tlog::proof::inclusion_proof(&tiled.overlay(&read), *i, n)
            && &p == want
        {
            same += 1;
        }
    }
    println!(
        "{:<44} {:>10.2} µs   ({same} of {samples} equal to the in-memory tree's; {:.1} tiles read each)",
        "inclusion proof from stored tiles: generate",
        started.elapsed().as_secs_f64() * 1e6 / samples as f64,
        tiles_read as f64 / samples as f64
    );
    let first = n / 3;
    let started = Instant::now();
    let mut verified = 0;
    for _ in 0..1000 {
        if let (Ok(Ok(p)), Ok(r1)) = (
            tlog::proof::consistency_proof(&tree, first, n),
            tree.root(first),
        ) && tlog::proof::verify_consistency(first, n, &p, &r1, &root).is_ok()
        {
            verified += 1;
        }
    }
    println!(
        "{:<44} {:>10.2} µs   ({verified} of 1000 verified)",
        "consistency proof: generate + verify",
        started.elapsed().as_secs_f64() * 1e6 / 1000.0
    );
    if let Ok(signer) = tlog::NoteSigner::from_seed("detente.bench", &[1; 32]) {
        let text = tlog::Checkpoint {
            origin: "detente.bench".into(),
            size: n,
            root,
            extensions: vec![],
        }
        .to_text();
        let note = tlog::Note {
            signatures: vec![signer.sign(&text)],
            text,
        }
        .to_text();
        let started = Instant::now();
        for _ in 0..1000 {
            let _ = tlog::note::open(note.as_bytes(), &[signer.verifier()]);
        }
        println!(
            "{:<44} {:>10.2} µs",
            "checkpoint: parse + verify signature",
            started.elapsed().as_secs_f64() * 1e6 / 1000.0
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_a_folder_takes_counts_every_file_beneath_it() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(dir.path().join("top"), vec![1u8; 10_000]).unwrap();
        std::fs::write(nested.join("deep"), vec![2u8; 50_000]).unwrap();
        let bytes = disk_bytes(dir.path()).unwrap();
        // Blocks are allocated whole: at least the bytes written, less than
        // a block's worth more per file (4 KiB, or 64 KiB on the largest).
        assert!(bytes >= 60_000, "{bytes}");
        assert!(bytes < 60_000 + 2 * 65_536, "{bytes}");
        std::fs::remove_file(nested.join("deep")).unwrap();
        assert!(disk_bytes(dir.path()).unwrap() < 60_000);
        assert!(disk_bytes(&dir.path().join("absent")).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paced_starts_come_in_order_never_early_and_stop_at_the_deadline() {
        let every = Duration::from_millis(4);
        let started = Instant::now() + Duration::from_millis(5);
        let deadline = started + Duration::from_millis(200);
        let firsts: Vec<Instant> = (0..4u32).map(|t| started + every * t / 4).collect();
        let lanes = Pacer::start(&firsts, every, deadline);
        let mut tasks = Vec::new();
        for (t, (lane, first)) in lanes.into_iter().zip(firsts.clone()).enumerate() {
            let mut schedule = Schedule::paced(lane, first, every);
            tasks.push(tokio::spawn(async move {
                let mut starts = Vec::new();
                while let Some(at) = schedule.next_start(deadline).await {
                    let now = Instant::now();
                    assert!(now >= at, "lane {t} started {:?} early", at - now);
                    starts.push(at);
                    // Lane 0 is busy for three periods once: its next starts
                    // are taken late, none skipped.
                    if t == 0 && starts.len() == 3 {
                        tokio::time::sleep(every * 3).await;
                    }
                }
                starts
            }));
        }
        for (t, task) in tasks.into_iter().enumerate() {
            let starts = task.await.expect("lane task");
            let expected: Vec<Instant> = (0..)
                .map(|k| firsts[t] + every * k)
                .take_while(|at| *at < deadline)
                .collect();
            assert_eq!(
                starts, expected,
                "lane {t}: every start of its schedule, in order"
            );
        }
    }
}
