//! Reads against replicas: the PostgreSQL backend's replicas as processes
//! of their own (`detente serve` on one schema), answering the bench's 4D
//! area queries over HTTP — one replica, then two.
//!
//! On one machine the replicas and the load generator share its cores, so
//! a second replica process has no CPU of its own to add. Each replica is
//! therefore held to a share of a core by a cgroup (v2 `cpu.max`, or v1
//! `cpu.cfs_quota_us`; root only), as a replica on a small machine of its
//! own would be: with the replicas the limit, what a second one adds is
//! what a deployment adding one gets. Without a writable cgroup the run
//! goes on unlimited and says so.

use crate::bench::{Measured, Rng, measure, square, token, wire_volume};
use crate::demo::NodeProcess;
use anyhow::{Context, Result, bail};
use node::airspace::Timestamp;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Where the replicas run and how hard they are driven.
pub(crate) struct Replicas<'a> {
    pub url: &'a str,
    pub schema: &'a str,
    /// The node's data folder (its key): every replica shares it.
    pub data: &'a Path,
    pub name: &'a str,
    pub concurrency: usize,
    pub seconds: u64,
    /// The CPU each replica may use, in cores (0: unlimited).
    pub cores: f64,
    pub now: Timestamp,
}

/// A cgroup holding one process to a share of the CPU; removed when
/// dropped (after the process has ended).
struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    const PERIOD_US: u64 = 100_000;

    fn apply(name: &str, pid: u32, cores: f64) -> Result<CpuLimit> {
        let quota = ((cores * Self::PERIOD_US as f64).round() as u64).max(1_000);
        let root = Path::new("/sys/fs/cgroup");
        let write = |p: PathBuf, v: String| {
            std::fs::write(&p, v).with_context(|| format!("writing {}", p.display()))
        };
        let dir = if root.join("cgroup.controllers").exists() {
            // v2: the cpu controller must be on for the root's children.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            write(dir.join("cpu.max"), format!("{quota} {}", Self::PERIOD_US))?;
            dir
        } else {
            let dir = root.join("cpu").join(name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            write(dir.join("cpu.cfs_period_us"), Self::PERIOD_US.to_string())?;
            write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
            dir
        };
        let limit = CpuLimit { dir };
        write(limit.dir.join("cgroup.procs"), pid.to_string())?;
        Ok(limit)
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Area queries over HTTP against one replica process and then two,
/// printed with each replica's cores busy and the ratio of two to one.
pub(crate) async fn reads(r: &Replicas<'_>) -> Result<()> {
    let jwt = r.data.join("bench-jwt.pem");
    std::fs::write(&jwt, crate::demo::DEMO_PUBLIC_KEY_PEM)?;
    // No per-client rate limit: the bench is one client.
    let config = r.data.join("bench-replica.toml");
    std::fs::write(&config, "rate_limit_per_second = 0\n")?;
    let extra: Vec<String> = [
        "--database-url",
        r.url,
        "--database-schema",
        r.schema,
        "--config",
        config.to_str().context("a UTF-8 folder name")?,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tok = token("bench-uss", "utm.strategic_coordination")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(r.concurrency)
        .build()?;
    let limit = if r.cores > 0.0 {
        format!("each held to {:.2} of a core", r.cores)
    } else {
        "unlimited".to_string()
    };
    println!(
        "-- replicas as processes (`detente serve` on the schema, {limit}), 4D area queries over HTTP"
    );
    let mut one: Option<f64> = None;
    for n in [1usize, 2] {
        let procs = (0..n)
            .map(|_| NodeProcess::start(r.name, r.data, "127.0.0.1:0", &jwt, &extra))
            .collect::<Result<Vec<_>>>()?;
        let mut limits = Vec::new();
        if r.cores > 0.0 {
            for (i, p) in procs.iter().enumerate() {
                match CpuLimit::apply(&format!("detente-bench-replica-{i}"), p.pid(), r.cores) {
                    Ok(l) => limits.push(l),
                    Err(e) => {
                        println!("  replica {} not held to a share of a core: {e:#}", i + 1);
                    }
                }
            }
        }
        let bases: Arc<Vec<String>> = Arc::new(procs.iter().map(|p| p.base.clone()).collect());
        // Each answers once before the clock starts.
        for b in bases.iter() {
            if !query(&http, b, &tok, r.now, 1).await {
                bail!("replica {b} does not answer an area query");
            }
        }
        let before: Vec<Option<f64>> = procs
            .iter()
            .map(|p| crate::bench_line::cpu_seconds(p.pid()))
            .collect();
        let started = Instant::now();
        let (h, t, bs, now) = (http.clone(), tok.clone(), bases.clone(), r.now);
        let m: Measured = measure(r.concurrency, r.seconds, move |seed| {
            let (h, t, bs) = (h.clone(), t.clone(), bs.clone());
            async move {
                let b = &bs[(seed >> 32) as usize % bs.len()];
                query(&h, b, &t, now, seed).await
            }
        })
        .await;
        let wall = started.elapsed().as_secs_f64();
        println!(
            "{}",
            m.line(
                &format!("4D area query (HTTP), replica processes ×{n}"),
                "-"
            )
        );
        for (i, (p, was)) in procs.iter().zip(&before).enumerate() {
            if let (Some(was), Some(now)) = (was, crate::bench_line::cpu_seconds(p.pid())) {
                println!(
                    "{:<44} replica {}: {:.2} cores busy",
                    "",
                    i + 1,
                    (now - was) / wall
                );
            }
        }
        match one {
            None => one = Some(m.rate()),
            Some(o) => println!(
                "{:<44} ×{n} / ×1: {:.2}× (reads scale with replicas when this nears {n})",
                "",
                m.rate() / o
            ),
        }
        drop(procs);
        drop(limits);
    }
    Ok(())
}

/// One ~1 km², 24 h area query (the in-process bench's) on `base`.
async fn query(http: &reqwest::Client, base: &str, tok: &str, now: Timestamp, seed: u64) -> bool {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let (lat, lng) = (40.0 + 10.0 * rng.unit(), 10.0 * rng.unit());
    let area = wire_volume(&square(lat, lng, 0.0045, now, now.plus_seconds(86_400)));
    let r = http
        .post(format!("{base}/dss/v1/operational_intent_references/query"))
        .bearer_auth(tok)
        .json(&json!({ "area_of_interest": area }))
        .send()
        .await;
    matches!(r, Ok(r) if r.status().is_success())
}
