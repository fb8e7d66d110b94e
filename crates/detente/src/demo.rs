//! `detente demo`: a node on the embedded store, and a scenario of two
//! parties' flight-planning clients around a line of contact, driven over
//! real HTTP with real RS256 bearer tokens (signed with the committed demo
//! key). Every step states what it expects; a surprise stops the demo.

use crate::demo_line::{LineDemo, Person, person};
use anyhow::{Context, Result, anyhow, bail};
use api::wire::format_time;
use clap::Args;
use liaison::{Body, Precedence, Sphere, Verdict};
use node::Clock;
use node::airspace::Timestamp;
use reqwest::Method as M;
use serde_json::{Value, json};
use std::path::PathBuf;
use uuid::Uuid;

pub(crate) const DEMO_PUBLIC_KEY_PEM: &str = DEMO_PUBLIC_KEY;
const DEMO_PRIVATE_KEY: &str = include_str!("../demo-keys/demo-private.pem");
const DEMO_PUBLIC_KEY: &str = include_str!("../demo-keys/demo-public.pem");
const AUDIENCE: &str = "localhost";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Data folder for the demo node (default: a fresh temporary folder).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address for the demo node.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Keep the node running after the scenario, for curl (Ctrl-C stops it).
    #[arg(long)]
    keep_running: bool,
}

/// A party's client of a node: the typed client (`client::Client`) with a
/// demo-key bearer token minted per call for whoever acts.
pub struct Client {
    pub node: client::Client,
    pub base: String,
    pub key: jsonwebtoken::EncodingKey,
    pub requests: usize,
}

const ALLIANCE_NODE: &str = "alliance.detente.demo";
const FEDERATION_NODE: &str = "federation.detente.demo";
const COMMONWEALTH_NODE: &str = "commonwealth.detente.demo";

/// A `detente serve` child process, killed when dropped.
pub(crate) struct NodeProcess {
    pub(crate) base: String,
    /// The node-to-node listener (mutual TLS with pinned keys).
    pub(crate) peer_base: String,
    child: std::process::Child,
}

impl NodeProcess {
    pub(crate) fn start(
        name: &str,
        data: &std::path::Path,
        listen: &str,
        jwt: &std::path::Path,
        extra: &[String],
    ) -> Result<Self> {
        use std::io::BufRead;
        let exe = std::env::current_exe().context("locating the detente binary")?;
        let mut child = std::process::Command::new(exe)
            .args([
                "serve",
                "--name",
                name,
                "--listen",
                listen,
                "--peer-listen",
                "127.0.0.1:0",
                "--jwt-audience",
                AUDIENCE,
                "--console-admin-role",
                "Alliance duty officer",
                "--console-admin-role",
                "Federation chief of staff",
            ])
            .arg("--data")
            .arg(data)
            .arg("--jwt-public-key")
            .arg(jwt)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var_os("RUST_LOG").unwrap_or_else(|| "error".into()),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {name} node"))?;
        let stdout = child.stdout.take().context("the node's stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut peer_base = String::new();
        let base = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.strip_prefix("detente peer listener on ") {
                        peer_base = a.trim().to_string();
                    }
                    if let Some(a) = l.strip_prefix("detente listening on ") {
                        break a.trim().to_string();
                    }
                }
                _ => bail!("the {name} node exited before listening"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(NodeProcess {
            base,
            peer_base,
            child,
        })
    }
}

/// Starts both nodes so that each witnesses the other's log: once to create
/// their keys and learn them (log key, cosigner key), then again on the same
/// addresses with `--witness-log` and `--witness` naming the other.
async fn start_witnessing(
    alliance: (&std::path::Path, &str),
    federation: &std::path::Path,
    jwt: &std::path::Path,
) -> Result<(NodeProcess, NodeProcess)> {
    let a = NodeProcess::start(ALLIANCE_NODE, alliance.0, alliance.1, jwt, &[])?;
    let f = NodeProcess::start(FEDERATION_NODE, federation, "127.0.0.1:0", jwt, &[])?;
    let keys = |base: &str| {
        let base = base.to_string();
        async move {
            let n = client::Client::new(&base, std::time::Duration::from_secs(10))?;
            let log = n.log_key().await?;
            let cosigner = n.text(&["witness", "key"]).await?.trim().to_string();
            Ok::<(String, String), client::Error>((log, cosigner))
        }
    };
    let (a_log, a_cosigner) = keys(&a.base).await.map_err(|e| anyhow!(e))?;
    let (f_log, f_cosigner) = keys(&f.base).await.map_err(|e| anyhow!(e))?;
    let (a_addr, f_addr) = (
        a.base.trim_start_matches("http://").to_string(),
        f.base.trim_start_matches("http://").to_string(),
    );
    let (a_base, f_base) = (a.base.clone(), f.base.clone());
    drop(a);
    drop(f);
    let witness = |log: &str, cosigner: &str, base: &str| {
        vec![
            "--witness-log".to_string(),
            log.to_string(),
            "--witness".to_string(),
            format!("{cosigner}@{base}"),
        ]
    };
    let a = NodeProcess::start(
        ALLIANCE_NODE,
        alliance.0,
        &a_addr,
        jwt,
        &witness(&f_log, &f_cosigner, &f_base),
    )?;
    let f = NodeProcess::start(
        FEDERATION_NODE,
        federation,
        &f_addr,
        jwt,
        &witness(&a_log, &a_cosigner, &a_base),
    )?;
    Ok((a, f))
}

impl NodeProcess {
    /// The node's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the node as an operator does, with SIGTERM (it commits, closes
    /// its store, folding the WAL into the database, and writes its state
    /// snapshot), and waits up to `within` for it to exit; past that, or if
    /// it exits with an error, says so (and dropping it kills it).
    pub(crate) async fn terminate(mut self, within: std::time::Duration) -> Result<()> {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -TERM {pid}: {sent}");
        }
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                bail!("node {pid} stopped with {status}");
            }
            if std::time::Instant::now() > deadline {
                bail!("node {pid} did not stop within {within:?} of SIGTERM");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(
    key: &jsonwebtoken::EncodingKey,
    sub: &str,
    scope: &str,
    now: Timestamp,
) -> Result<String> {
    let exp = now.unix_micros() / 1_000_000 + 3600;
    let claims = json!({ "sub": sub, "scope": scope, "aud": AUDIENCE, "iss": "detente-demo", "exp": exp, "jti": Uuid::from_u128(now.unix_micros() as u128).to_string() });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        key,
    )?)
}

/// A demo-key bearer token for `who` (sub, scopes), valid for an hour.
pub(crate) fn token_for(who: (&str, &str)) -> Result<String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(DEMO_PRIVATE_KEY.as_bytes())?;
    token(&key, who.0, who.1, node::SystemClock.now())
}

impl Client {
    pub fn new(base: &str) -> Result<Self> {
        Ok(Client {
            node: client::Client::new(base, std::time::Duration::from_secs(30))
                .map_err(|e| anyhow!(e))?,
            base: base.to_string(),
            key: jsonwebtoken::EncodingKey::from_rsa_pem(DEMO_PRIVATE_KEY.as_bytes())?,
            requests: 0,
        })
    }

    /// The typed client acting as `who` (sub, scopes).
    pub fn as_who(&mut self, who: (&str, &str)) -> Result<client::Client> {
        self.requests += 1;
        let t = token(&self.key, who.0, who.1, node::SystemClock.now())?;
        Ok(self.node.with_token(t))
    }

    /// One request as `who`, whatever it answers: the status and body.
    pub async fn call(
        &mut self,
        method: M,
        path: &str,
        who: (&str, &str),
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let url = reqwest::Url::parse(&format!("{}{path}", self.node.base()))?;
        let a = self
            .as_who(who)?
            .exchange(method, url, body.as_ref())
            .await
            .with_context(|| format!("calling {path}"))?;
        Ok((a.status, a.body))
    }

    pub async fn expect(
        &mut self,
        want: u16,
        method: M,
        path: &str,
        who: (&str, &str),
        body: Option<Value>,
    ) -> Result<Value> {
        let (status, v) = self.call(method, path, who, body).await?;
        if status != want {
            bail!("demo step {path} answered {status}, expected {want}: {v}");
        }
        Ok(v)
    }
}

fn polygon(
    vertices: &[(f64, f64)],
    lower: f64,
    upper: f64,
    start: Timestamp,
    end: Timestamp,
) -> Value {
    json!({
        "volume": {
            "outline_polygon": { "vertices": vertices.iter().map(|(lat, lng)| json!({"lat": lat, "lng": lng})).collect::<Vec<_>>() },
            "altitude_lower": { "value": lower, "reference": "W84", "units": "M" },
            "altitude_upper": { "value": upper, "reference": "W84", "units": "M" },
        },
        "time_start": format_time(start),
        "time_end": format_time(end),
    })
}

/// The buffer along a polyline: the line shifted `half_width_deg` of latitude
/// north and south (a narrow band along an east–west line of contact).
fn buffer(line: &[(f64, f64)], half_width_deg: f64) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = line
        .iter()
        .map(|(lat, lng)| (lat + half_width_deg, *lng))
        .collect();
    v.extend(
        line.iter()
            .rev()
            .map(|(lat, lng)| (lat - half_width_deg, *lng)),
    );
    v
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

const ALLIANCE: (&str, &str) = (
    "alliance-uss",
    "utm.strategic_coordination utm.constraint_processing",
);
const FEDERATION: (&str, &str) = (
    "federation-uss",
    "utm.strategic_coordination utm.constraint_processing",
);
const COMMISSION: (&str, &str) = (
    "joint-commission",
    "utm.constraint_management utm.constraint_processing",
);
const ARBITER: (&str, &str) = ("arbiter", "utm.availability_arbitration");

/// Runs the demo until it ends or the process is told to stop (SIGINT,
/// SIGTERM): either way both node processes are stopped, and the temporary
/// folder is removed (a folder given with `--data` is kept).
pub async fn run(mut args: DemoArgs) -> Result<()> {
    let (data, temporary) = match args.data.take() {
        Some(d) => (d, false),
        None => {
            let tmp = std::env::temp_dir().join(format!("detente-demo-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            (tmp, true)
        }
    };
    let result = tokio::select! {
        r = demo(args, &data) => r,
        signal = stop_signal() => {
            println!("\nstopped ({signal}): the nodes are shut down");
            Ok(())
        }
    };
    // The demo's future is gone by now, and with it the node processes
    // (killed and waited for when dropped).
    if temporary {
        let _ = std::fs::remove_dir_all(&data);
    }
    result
}

/// Completes on SIGINT or SIGTERM, naming which.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// The demo's scenario: both nodes, each party's clients and members, and
/// what the steps have learned so far (ids, OVNs, keys).
struct Scenario {
    data: PathBuf,
    alliance_data: PathBuf,
    node: NodeProcess,
    fed_node: NodeProcess,
    base: String,
    fed_base: String,
    /// Alliance's and Federation's flight planners (F3548 over HTTP).
    c: Client,
    cf: Client,
    /// The line between the parties' nodes.
    line: LineDemo,
    /// The demo's time zero, on a whole second.
    now: Timestamp,
    adams: Person,
    baker: Person,
    volkov: Person,
    orlov: Person,
    sokolov: Person,
    /// The nodes' log keys, as the other node pinned them.
    ka: String,
    kf: String,
    constraint_id: String,
    constraint_ovn: String,
    alpha: String,
    alpha_ovn: String,
    bravo: String,
    bravo_ovn: String,
    orlov_acc: String,
    flash: Uuid,
    vkey: String,
    /// The third party's node, once it joined.
    commonwealth: Option<NodeProcess>,
}

/// ALPHA's area, north of the line of contact.
const ALPHA_AREA: [(f64, f64); 4] = [
    (45.05, 10.10),
    (45.05, 10.30),
    (45.10, 10.30),
    (45.10, 10.10),
];
/// BRAVO's area, across the buffer.
const BRAVO_AREA: [(f64, f64); 4] = [
    (44.95, 10.20),
    (44.95, 10.26),
    (45.06, 10.26),
    (45.06, 10.20),
];
/// BRAVO moved south, out of the buffer.
const BRAVO_SOUTH: [(f64, f64); 4] = [
    (44.90, 10.20),
    (44.90, 10.26),
    (44.95, 10.26),
    (44.95, 10.20),
];

/// BRAVO as Federation plans it, with `key`.
fn bravo_body(now: Timestamp, key: Vec<String>) -> Value {
    let h = |n: i64| now.plus_seconds(n * 3600);
    json!({
        "extents": [polygon(&BRAVO_AREA, 500.0, 4_000.0, h(2), h(4))],
        "key": key,
        "state": "Accepted",
        "uss_base_url": "https://federation.example/utm",
        "new_subscription": { "uss_base_url": "https://federation.example/utm", "notify_for_constraints": true },
    })
}

/// The scenario, step by step; each step states what it expects, and a
/// surprise stops the demo.
async fn demo(args: DemoArgs, data: &std::path::Path) -> Result<()> {
    let mut s = Scenario::start(&args, data).await?;
    s.peer_the_nodes().await?;
    s.declare_the_line_of_contact().await?;
    s.alliance_plans_alpha().await?;
    s.federation_is_refused_without_a_key().await?;
    s.federation_plans_bravo_with_the_ovns().await?;
    s.both_nodes_report_the_conflicts().await?;
    s.members_and_accreditation().await?;
    s.negotiate_on_the_military_channel().await?;
    s.alliance_activates_alpha().await?;
    s.federation_moves_bravo_south().await?;
    s.arbiter_marks_federation_down().await?;
    s.bad_input_is_refused().await?;
    s.flash_on_the_direct_line().await?;
    s.expel_a_member().await?;
    s.close_the_mission().await?;
    s.statement_and_its_answer().await?;
    s.a_third_party_joins().await?;
    s.evidence_of_alpha().await?;
    s.evidence_of_the_flash().await?;
    s.charlie_stays_on_the_maps().await?;
    s.finish(args.keep_running).await
}

impl Scenario {
    /// Starts both nodes (each witnessing the other) under `data`, and the
    /// parties' clients and members.
    async fn start(args: &DemoArgs, data: &std::path::Path) -> Result<Scenario> {
        let data = data.to_path_buf();
        std::fs::create_dir_all(&data)?;
        let pubkey = data.join("demo-jwt-public.pem");
        std::fs::write(&pubkey, DEMO_PUBLIC_KEY)?;
        // Two parties, two nodes: separate processes, separate data folders.
        let alliance_data = data.join("alliance");
        let federation_data = data.join("federation");
        let (node, fed_node) = start_witnessing(
            (&alliance_data, &args.listen.to_string()),
            &federation_data,
            &pubkey,
        )
        .await?;
        let base = node.base.clone();
        let fed_base = fed_node.base.clone();
        let c = Client::new(&base)?;

        println!("== Detente demo: two parties deconflicting around a line of contact ==");
        println!(
            "nodes: {ALLIANCE_NODE} at {base}, {FEDERATION_NODE} at {fed_base} — separate processes, embedded stores under {}, RS256 bearer tokens signed with the demo key",
            data.display()
        );
        println!(
            "Each party's flight planners use the ASTM F3548 API of their own party's node; the nodes keep the line between them.\n"
        );
        let cf = Client::new(&fed_base)?;
        let line = LineDemo::new(
            Client::new(&base)?,
            Client::new(&fed_base)?,
            ALLIANCE_NODE,
            FEDERATION_NODE,
            (&node.peer_base, &fed_node.peer_base),
        );
        let now = Timestamp::from_unix_micros(
            node::SystemClock.now().unix_micros() / 1_000_000 * 1_000_000,
        );
        Ok(Scenario {
            alliance_data,
            node,
            fed_node,
            base,
            fed_base,
            c,
            cf,
            line,
            now,
            adams: person("Col. Adams")?,
            baker: person("Maj. Baker")?,
            volkov: person("Lt.Col. Volkov")?,
            orlov: person("Capt. Orlov")?,
            sokolov: person("Gen. Sokolov")?,
            data,
            ka: String::new(),
            kf: String::new(),
            constraint_id: String::new(),
            constraint_ovn: String::new(),
            alpha: String::new(),
            alpha_ovn: String::new(),
            bravo: String::new(),
            bravo_ovn: String::new(),
            orlov_acc: String::new(),
            flash: Uuid::nil(),
            vkey: String::new(),
            commonwealth: None,
        })
    }

    /// 1. The nodes pin each other's keys and agree the deconfliction area.
    async fn peer_the_nodes(&mut self) -> Result<()> {
        let Scenario { line, .. } = self;
        let (ka, kf) = line.peer().await?;
        // The deconfliction area: a band around the line of contact.
        let area = json!({ "polygons": [[[44.7, 9.8], [44.7, 10.8], [45.3, 10.8], [45.3, 9.8]]] });
        line.a
            .expect(
                200,
                M::PUT,
                &format!("/line/v1/peers/{FEDERATION_NODE}/area"),
                crate::demo_line::ADMIN,
                Some(area.clone()),
            )
            .await?;
        line.f
            .expect(
                200,
                M::PUT,
                &format!("/line/v1/peers/{ALLIANCE_NODE}/area"),
                crate::demo_line::ADMIN,
                Some(area),
            )
            .await?;
        // Agreed once each node holds both signed proposals.
        for n in [&mut line.a, &mut line.f] {
            let mut status = Value::Null;
            for _ in 0..200 {
                let v = n
                    .expect(200, M::GET, "/line/v1/peers", crate::demo_line::ADMIN, None)
                    .await?;
                status = v["peers"][0]["area_agreement"]["status"].clone();
                if status == "agreed" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if status != "agreed" {
                bail!(
                    "the deconfliction area is {status} at {}, not agreed",
                    n.base
                );
            }
        }
        println!(
            "1. The two nodes pin each other's log keys (exchanged out of band; `detente peer add`); they talk over"
        );
        println!(
            "   mutual TLS 1.3 with certificates made from those keys, no certificate authority. Each proposes the"
        );
        println!(
            "   deconfliction area (44.7–45.3N, 9.8–10.8E); both logs hold both signed proposals of the same polygons,"
        );
        println!(
            "   so the area is agreed on both sides: operations and constraints inside it are shared."
        );
        println!("   {ka}\n   {kf}\n");
        self.ka = ka;
        self.kf = kf;
        Ok(())
    }

    /// 2. The joint commission declares the line-of-contact buffer as a constraint.
    async fn declare_the_line_of_contact(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario { c, .. } = self;
        let h = |n: i64| now.plus_seconds(n * 3600);
        let contact = [
            (45.000, 10.00),
            (45.020, 10.20),
            (44.990, 10.40),
            (45.010, 10.60),
        ];
        let constraint_id = Uuid::from_u128(0x4000_0000_0000_4000_8000_0000_0000_0001).to_string();
        let v = c
            .expect(201, M::PUT, &format!("/dss/v1/constraint_references/{constraint_id}"), COMMISSION,
                Some(json!({ "extents": [polygon(&buffer(&contact, 0.018), 0.0, 15_000.0, now, h(24))], "uss_base_url": "https://commission.example/utm" })))
            .await?;
        let constraint_ovn = v["constraint_reference"]["ovn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!(
            "2. The joint commission declares the line-of-contact buffer (±2 km, 0–15,000 m, 24 h)."
        );
        println!(
            "   → 201 constraint {} version {}\n",
            short(&constraint_id),
            v["constraint_reference"]["version"]
        );

        self.constraint_id = constraint_id;
        self.constraint_ovn = constraint_ovn;
        Ok(())
    }

    /// 3. Alliance plans patrol ALPHA north of the line, on its own node.
    async fn alliance_plans_alpha(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario {
            c,
            cf,
            line,
            constraint_id,
            ..
        } = self;
        let h = |n: i64| now.plus_seconds(n * 3600);
        let alpha = Uuid::from_u128(0xa1a1_0000_0000_4000_8000_0000_0000_0001).to_string();
        let v = c
            .expect(201, M::PUT, &format!("/dss/v1/operational_intent_references/{alpha}"), ALLIANCE,
                Some(json!({
                    "extents": [polygon(&ALPHA_AREA, 0.0, 3_000.0, h(1), h(3))],
                    "state": "Accepted",
                    "uss_base_url": "https://alliance.example/utm",
                    "new_subscription": { "uss_base_url": "https://alliance.example/utm", "notify_for_constraints": false },
                })))
            .await?;
        let alpha_ovn = v["operational_intent_reference"]["ovn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        until_present(
            cf,
            &format!("/dss/v1/operational_intent_references/{alpha}"),
            FEDERATION,
        )
        .await?;
        until_present(
            cf,
            &format!("/dss/v1/constraint_references/{constraint_id}"),
            FEDERATION,
        )
        .await?;
        // Both parties treat the buffer as the line of contact.
        for n in [&mut line.a, &mut line.f] {
            n.expect(
                200,
                M::PUT,
                &format!("/line/v1/contact/{constraint_id}"),
                crate::demo_line::ADMIN,
                None,
            )
            .await?;
        }
        println!(
            "3. Alliance plans patrol ALPHA north of the line, +1 h to +3 h, 0–3,000 m, on its own node."
        );
        println!(
            "   → 201 Accepted, version 1; its OVN is shown to alliance-uss only. ALPHA and the buffer are inside"
        );
        println!(
            "     the deconfliction area: Federation's node receives them (OVNs only as hashes) and receipts them.\n"
        );

        self.alpha = alpha;
        self.alpha_ovn = alpha_ovn;
        Ok(())
    }

    /// 4. Federation plans BRAVO across the buffer without a key: refused, with what is missing.
    async fn federation_is_refused_without_a_key(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario { cf, .. } = self;
        let bravo = Uuid::from_u128(0xb2b2_0000_0000_4000_8000_0000_0000_0002).to_string();
        let path_bravo = format!("/dss/v1/operational_intent_references/{bravo}");
        let v = cf
            .expect(
                409,
                M::PUT,
                &path_bravo,
                FEDERATION,
                Some(bravo_body(now, vec![])),
            )
            .await?;
        println!(
            "4. Federation plans reconnaissance BRAVO across the buffer, +2 h to +4 h, 500–4,000 m, on its own node, with no key."
        );
        println!(
            "   → 409 key check failed: {}",
            v["message"].as_str().unwrap_or_default()
        );
        for i in v["missing_operational_intents"]
            .as_array()
            .into_iter()
            .flatten()
        {
            println!(
                "     missing operational intent {} managed by {} (no OVN shown to federation)",
                short(i["id"].as_str().unwrap_or("")),
                i["manager"].as_str().unwrap_or("")
            );
        }
        for k in v["missing_constraints"].as_array().into_iter().flatten() {
            println!(
                "     missing constraint {} managed by {}",
                short(k["id"].as_str().unwrap_or("")),
                k["manager"].as_str().unwrap_or("")
            );
        }
        println!();

        self.bravo = bravo;
        Ok(())
    }

    /// 5. Federation retries with the OVNs in its key; activating across the line of contact is held.
    async fn federation_plans_bravo_with_the_ovns(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario {
            c,
            cf,
            constraint_id,
            alpha,
            bravo,
            ..
        } = self;
        let h = |n: i64| now.plus_seconds(n * 3600);
        // Federation's planner asks its own node for what it must prove:
        // to it, its node is the managing USS of Alliance's copies.
        let alpha_ovn = ovn_of(cf, "operational_intents", alpha, FEDERATION).await?;
        let constraint_ovn = ovn_of(cf, "constraints", constraint_id, FEDERATION).await?;
        let path_bravo = format!("/dss/v1/operational_intent_references/{bravo}");
        let v = cf
            .expect(
                201,
                M::PUT,
                &path_bravo,
                FEDERATION,
                Some(bravo_body(
                    now,
                    vec![alpha_ovn.clone(), constraint_ovn.clone()],
                )),
            )
            .await?;
        until_present(c, &path_bravo, ALLIANCE).await?;
        let bravo_ovn = v["operational_intent_reference"]["ovn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!(
            "5. Federation's planner asks its own node for ALPHA's and the buffer's details (the F3548 USS interface:"
        );
        println!(
            "   for Alliance's operations its node is the managing USS) and retries with the OVNs it answers in its key."
        );
        // BRAVO crosses the line of contact: held until Alliance acknowledges.
        let (held_status, held) = cf
            .call(
                M::PUT,
                &format!("/dss/v1/operational_intent_references/{bravo}/{bravo_ovn}"),
                FEDERATION,
                Some(json!({
                    "extents": [polygon(&BRAVO_AREA, 500.0, 4_000.0, h(2), h(4))],
                    "key": [alpha_ovn.clone(), constraint_ovn.clone()],
                    "state": "Activated",
                    "uss_base_url": "https://federation.example/utm",
                    "new_subscription": { "uss_base_url": "https://federation.example/utm", "notify_for_constraints": true },
                })),
            )
            .await?;
        if held_status != 409 {
            bail!("activating BRAVO across the line of contact answered {held_status}: {held}");
        }
        let subscribers = v["subscribers"].as_array().cloned().unwrap_or_default();
        println!(
            "   → 201 Accepted; subscribers it must notify on its node: {}",
            if subscribers.is_empty() { "none" } else { "" }
        );
        for s in &subscribers {
            for sub in s["subscriptions"].as_array().into_iter().flatten() {
                println!(
                    "     {} (subscription {}, notification index {})",
                    s["uss_base_url"].as_str().unwrap_or(""),
                    short(sub["subscription_id"].as_str().unwrap_or("")),
                    sub["notification_index"]
                );
            }
        }
        println!(
            "   BRAVO crosses the buffer, which both parties designated as the line of contact: Federation's node notified"
        );
        println!(
            "   Alliance by itself (signed notice on the direct line), and activating BRAVO now → 409 {}",
            held["code"].as_str().unwrap_or("")
        );
        println!();

        self.bravo_ovn = bravo_ovn;
        Ok(())
    }

    /// 6. Both parties' nodes report the same conflicts.
    async fn both_nodes_report_the_conflicts(&mut self) -> Result<()> {
        let Scenario { c, cf, .. } = self;
        let list = until_conflicts(cf, FEDERATION, 2).await?;
        until_conflicts(c, ALLIANCE, 2).await?;
        println!(
            "6. Conflicts each node reports (GET /detente/v1/conflicts), here Federation's — Alliance's node finds the same {}:",
            list.len()
        );
        for k in &list {
            let o = &k["overlaps"][0];
            println!(
                "   {}: {} ({}) × {} ({}) from {} to {}, {}–{} m",
                k["kind"].as_str().unwrap_or(""),
                short(k["a"]["id"].as_str().unwrap_or("")),
                k["a"]["manager"].as_str().unwrap_or(""),
                short(k["b"]["id"].as_str().unwrap_or("")),
                k["b"]["manager"].as_str().unwrap_or(""),
                o["time_start"]["value"].as_str().unwrap_or(""),
                o["time_end"]["value"].as_str().unwrap_or(""),
                o["altitude_lower"]["value"],
                o["altitude_upper"]["value"],
            );
        }
        if list.len() != 2 {
            bail!(
                "expected 2 conflicts (ALPHA×BRAVO and BRAVO×buffer), got {}",
                list.len()
            );
        }
        println!();

        Ok(())
    }

    /// 7. Members sign with their own keys; each host accredits the other's liaison officers.
    async fn members_and_accreditation(&mut self) -> Result<()> {
        let Scenario {
            line,
            adams,
            baker,
            volkov,
            orlov,
            sokolov,
            ..
        } = self;
        line.register(
            true,
            adams,
            "Alliance duty officer",
            &["military", "direct-line"],
        )
        .await?;
        line.register(
            true,
            baker,
            "Alliance liaison officer",
            &["military", "diplomatic"],
        )
        .await?;
        line.register(
            false,
            volkov,
            "Federation liaison officer",
            &["military", "diplomatic"],
        )
        .await?;
        line.register(false, orlov, "Federation liaison officer", &["military"])
            .await?;
        line.register(
            false,
            sokolov,
            "Federation chief of staff",
            &["direct-line"],
        )
        .await?;
        line.quota(true, 2).await?;
        let _volkov_acc = line
            .accredit(true, volkov, "liaison officer", &["military", "diplomatic"])
            .await?;
        let orlov_acc = line
            .accredit(true, orlov, "liaison officer", &["military"])
            .await?;
        line.quota(false, 1).await?;
        line.accredit(false, baker, "liaison officer", &["military", "diplomatic"])
            .await?;
        line.guest_sees(false, |v| {
            v["missions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["active"] == 2)
        })
        .await?;
        // Baker sends next, from Alliance's node: it must hold his accreditation.
        line.guest_sees(true, |v| {
            v["missions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["host"] == FEDERATION_NODE && m["active"] == 1)
        })
        .await?;
        println!(
            "7. Members sign with their own Ed25519 keys (the nodes never hold them). Alliance, as host, accredits"
        );
        println!(
            "   Lt.Col. Volkov and Capt. Orlov to the Federation mission (quota 2); Federation accredits Maj. Baker (quota 1)."
        );
        println!(
            "   Each accreditation is a signed record, logged and replicated: Federation's node shows both as active.\n"
        );
        self.orlov_acc = orlov_acc;
        Ok(())
    }

    /// 8. An IMMEDIATE deconfliction request, receipted, acknowledged and answered.
    async fn negotiate_on_the_military_channel(&mut self) -> Result<()> {
        let Scenario {
            line,
            alpha,
            bravo,
            baker,
            volkov,
            ..
        } = self;
        let (req, _) = line
            .send(
                true,
                baker,
                Sphere::Military,
                Precedence::Immediate,
                crate::demo_line::deconfliction(
                    alpha,
                    bravo,
                    "BRAVO crosses the buffer into ALPHA's area at +2 h; move BRAVO south of 44.95N",
                )?,
                201,
            )
            .await?;
        let r = line.delivered(true, req).await?;
        let (rep_id, _) = line
            .send(
                false,
                volkov,
                Sphere::Military,
                Precedence::Immediate,
                Body::Reply {
                    in_reply_to: req,
                    verdict: Verdict::Accept,
                    text: "BRAVO will stay south of 44.95N".into(),
                },
                201,
            )
            .await?;
        line.delivered(false, rep_id).await?;
        line.ack(false, volkov, req, "").await?;
        line.acknowledged(true, req).await?;
        println!(
            "8. On the military channel, Maj. Baker (Alliance) sends an IMMEDIATE deconfliction request (ALPHA × BRAVO);"
        );
        println!(
            "   Federation's node receipts it (signed, at index {} of its log); Lt.Col. Volkov acknowledges it and replies: accept.\n",
            r["delivery"]["index"]
        );

        Ok(())
    }

    /// 9. Alliance activates ALPHA once its key holds BRAVO's OVN.
    async fn alliance_activates_alpha(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario {
            c,
            alpha,
            alpha_ovn,
            bravo,
            ..
        } = self;
        // Alliance's planner proves BRAVO with the OVN its own node answers.
        let bravo_ovn = ovn_of(c, "operational_intents", bravo, ALLIANCE).await?;
        let h = |n: i64| now.plus_seconds(n * 3600);
        let alpha_update = |key: Vec<String>| {
            json!({
                "extents": [polygon(&ALPHA_AREA, 0.0, 3_000.0, h(1), h(3))],
                "key": key,
                "state": "Activated",
                "uss_base_url": "https://alliance.example/utm",
                "new_subscription": { "uss_base_url": "https://alliance.example/utm", "notify_for_constraints": false },
            })
        };
        let path_alpha = format!("/dss/v1/operational_intent_references/{alpha}/{alpha_ovn}");
        c.expect(
            409,
            M::PUT,
            &path_alpha,
            ALLIANCE,
            Some(alpha_update(vec![])),
        )
        .await?;
        let v = c
            .expect(
                200,
                M::PUT,
                &path_alpha,
                ALLIANCE,
                Some(alpha_update(vec![bravo_ovn.clone()])),
            )
            .await?;
        *alpha_ovn = v["operational_intent_reference"]["ovn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!(
            "9. Alliance activates ALPHA: refused (409) until its key holds the OVN its node answers for BRAVO, then → 200 Activated, version {}.\n",
            v["operational_intent_reference"]["version"]
        );

        Ok(())
    }

    /// 10. Federation moves BRAVO south of the buffer: no conflicts remain.
    async fn federation_moves_bravo_south(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario {
            c,
            cf,
            bravo,
            bravo_ovn,
            ..
        } = self;
        let h = |n: i64| now.plus_seconds(n * 3600);
        let v = cf
            .expect(200, M::PUT, &format!("/dss/v1/operational_intent_references/{bravo}/{bravo_ovn}"), FEDERATION,
                Some(json!({
                    "extents": [polygon(&BRAVO_SOUTH, 500.0, 4_000.0, h(2), h(4))],
                    "key": [],
                    "state": "Accepted",
                    "uss_base_url": "https://federation.example/utm",
                    "new_subscription": { "uss_base_url": "https://federation.example/utm", "notify_for_constraints": true },
                })))
            .await?;
        *bravo_ovn = v["operational_intent_reference"]["ovn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        until_conflicts(c, ALLIANCE, 0).await?;
        let after = cf
            .expect(200, M::GET, "/detente/v1/conflicts", FEDERATION, None)
            .await?;
        let n_after = after["conflicts"].as_array().map(|a| a.len()).unwrap_or(0);
        println!(
            "10. Federation moves BRAVO south of the buffer (update with its OVN) → 200; conflicts now, on both nodes: {n_after}.\n"
        );
        if n_after != 0 {
            bail!("expected no conflicts after BRAVO moved, got {after}");
        }

        Ok(())
    }

    /// 11. The arbiter marks Federation's USS down: its next planning write is refused.
    async fn arbiter_marks_federation_down(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario {
            cf,
            bravo,
            bravo_ovn,
            ..
        } = self;
        let h = |n: i64| now.plus_seconds(n * 3600);
        cf.expect(
            200,
            M::PUT,
            "/dss/v1/uss_availability/federation-uss",
            ARBITER,
            Some(json!({ "old_version": "", "availability": "Down" })),
        )
        .await?;
        let v = cf
            .expect(
                412,
                M::PUT,
                &format!("/dss/v1/operational_intent_references/{bravo}/{bravo_ovn}"),
                FEDERATION,
                Some(json!({
                    "extents": [polygon(&BRAVO_SOUTH, 500.0, 4_000.0, h(2), h(4))],
                    "state": "Accepted",
                    "uss_base_url": "https://federation.example/utm",
                })),
            )
            .await?;
        println!(
            "11. The arbiter marks federation-uss Down; its next planning write → 412: {}\n",
            v["message"].as_str().unwrap_or("")
        );

        Ok(())
    }

    /// 12. A self-intersecting polygon is refused with the field named.
    async fn bad_input_is_refused(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario { c, .. } = self;
        let h = |n: i64| now.plus_seconds(n * 3600);
        let v = c
            .expect(400, M::PUT, &format!("/dss/v1/operational_intent_references/{}", Uuid::from_u128(0xc3c3_0000_0000_4000_8000_0000_0000_0003)), ALLIANCE,
                Some(json!({
                    "extents": [polygon(&[(45.0, 10.0), (45.1, 10.1), (45.1, 10.0), (45.0, 10.1)], 0.0, 100.0, h(1), h(2))],
                    "state": "Accepted",
                    "uss_base_url": "https://alliance.example/utm",
                })))
            .await?;
        println!(
            "12. A self-intersecting polygon → 400 naming {}: {}\n",
            v["field"].as_str().unwrap_or(""),
            v["message"].as_str().unwrap_or("")
        );

        Ok(())
    }

    /// 13. A FLASH on the direct line, receipted and acknowledged within its deadline.
    async fn flash_on_the_direct_line(&mut self) -> Result<()> {
        let Scenario {
            line,
            adams,
            sokolov,
            ..
        } = self;
        let (flash, _) = line
            .send(
                true,
                adams,
                Sphere::DirectLine,
                Precedence::Flash,
                Body::Text {
                    text: "ALPHA activates at +1 h; confirm BRAVO holds south of 44.95N".into(),
                },
                201,
            )
            .await?;
        let d = line.delivered(true, flash).await?;
        let deadline_min = (d["deadline_ms"].as_u64().unwrap_or(0)
            - d["message"]["created_ms"].as_u64().unwrap_or(0))
            / 60_000;
        line.ack(false, sokolov, flash, "confirmed").await?;
        let acked = line.acknowledged(true, flash).await?;
        println!(
            "13. Col. Adams sends a FLASH on the direct line (acknowledgement due within {deadline_min} min): receipted by"
        );
        println!(
            "    Federation's node at index {}, acknowledged by {} (\"{}\").\n",
            acked["delivery"]["index"],
            acked["ack"]["by_name"].as_str().unwrap_or(""),
            acked["ack"]["text"].as_str().unwrap_or("")
        );

        self.flash = flash;
        Ok(())
    }

    /// 14. Alliance revokes an accreditation: the member's next message is refused.
    async fn expel_a_member(&mut self) -> Result<()> {
        let Scenario {
            line,
            orlov,
            orlov_acc,
            ..
        } = self;
        // "Leave within three days": the revocation takes effect then.
        let notice = node::SystemClock.now().unix_micros() / 1000 + 3 * 86_400_000;
        line.a
            .expect(
                200,
                M::POST,
                &format!("/line/v1/accreditations/{orlov_acc}/revoke"),
                crate::demo_line::ADMIN,
                Some(json!({ "reason": "activities incompatible with his status", "effective_ms": notice })),
            )
            .await?;
        let orlov_at = |v: &Value| -> Option<Value> {
            v["missions"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|m| m["accreditations"].as_array().into_iter().flatten())
                .find(|a| a["name"] == "Capt. Orlov")
                .cloned()
        };
        let seen = line
            .guest_sees(false, |v| {
                orlov_at(v).is_some_and(|a| a["revoked"]["in_effect"] == false)
            })
            .await?;
        let leaves_in = orlov_at(&seen)
            .and_then(|a| a["revoked"]["leaves_in_ms"].as_u64())
            .unwrap_or(0);
        // Under notice he still works: his message is delivered.
        let (during, _) = line
            .send(
                false,
                orlov,
                Sphere::Military,
                Precedence::Routine,
                Body::Text {
                    text: "handing over my files before I leave".into(),
                },
                201,
            )
            .await?;
        let delivered = line.delivered(false, during).await?;
        // The notice shortened to now: he leaves at once.
        line.a
            .expect(
                200,
                M::POST,
                &format!("/line/v1/accreditations/{orlov_acc}/revoke"),
                crate::demo_line::ADMIN,
                Some(json!({ "reason": "activities incompatible with his status; notice withdrawn" })),
            )
            .await?;
        line.guest_sees(false, |v| orlov_at(v).is_some_and(|a| a["active"] == false))
            .await?;
        let (_, refused) = line
            .send(
                false,
                orlov,
                Sphere::Military,
                Precedence::Routine,
                Body::Text {
                    text: "request meeting".into(),
                },
                403,
            )
            .await?;
        println!(
            "14. Alliance expels Capt. Orlov with notice: \"leave within 3 days\". Both nodes count down (Federation's shows him"
        );
        println!(
            "    leaving in {}); meanwhile he still works — his message is {} by Alliance. Alliance then shortens",
            crate::line_cli::countdown(leaves_in),
            delivered["delivery"]["state"].as_str().unwrap_or("")
        );
        println!(
            "    the notice to now (notice is shortened, never lengthened); once replicated, his own node refuses his next message:"
        );
        println!(
            "    403 {}: {}\n",
            refused["code"].as_str().unwrap_or(""),
            refused["message"].as_str().unwrap_or("")
        );

        Ok(())
    }

    /// 15. Alliance closes Federation's mission; the direct line stays up.
    async fn close_the_mission(&mut self) -> Result<()> {
        let Scenario {
            line,
            adams,
            volkov,
            sokolov,
            ..
        } = self;
        line.a
            .expect(
                200,
                M::POST,
                &format!("/line/v1/missions/{FEDERATION_NODE}/close"),
                crate::demo_line::ADMIN,
                Some(json!({ "reason": "relations downgraded" })),
            )
            .await?;
        line.guest_sees(false, |v| {
            v["missions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| !m["closed"].is_null())
        })
        .await?;
        let (_, closed) = line
            .send(
                false,
                volkov,
                Sphere::Diplomatic,
                Precedence::Priority,
                Body::Text {
                    text: "protest".into(),
                },
                403,
            )
            .await?;
        let (dl, _) = line
            .send(
                false,
                sokolov,
                Sphere::DirectLine,
                Precedence::Flash,
                Body::Text {
                    text: "the direct line remains our channel".into(),
                },
                201,
            )
            .await?;
        line.delivered(false, dl).await?;
        line.ack(true, adams, dl, "agreed").await?;
        line.acknowledged(false, dl).await?;
        println!(
            "15. Alliance closes the Federation mission: Lt.Col. Volkov's next message → 403 ({})",
            closed["message"].as_str().unwrap_or("")
        );
        println!(
            "    while the direct line stays up: Gen. Sokolov's FLASH is delivered and acknowledged by Col. Adams.\n"
        );

        Ok(())
    }

    /// Step 16, the information offices: a public statement and its
    /// answer, which quotes it by hash.
    async fn statement_and_its_answer(&mut self) -> Result<()> {
        let Scenario { line, fed_base, .. } = self;
        let claim = line
            .a
            .expect(
                200,
                M::POST,
                "/line/v1/statements",
                crate::demo_line::ADMIN,
                Some(json!({ "language": "en",
                    "text": "A Federation aircraft entered the agreed buffer zone near 45.02N 10.31E this morning." })),
            )
            .await?;
        let answer = line
            .f
            .expect(
                200,
                M::POST,
                "/line/v1/statements",
                crate::demo_line::ADMIN,
                Some(json!({ "language": "en", "text": "No evidence has been produced.",
                    "answers": [{ "origin": claim["origin"], "index": claim["index"], "leaf_hash": claim["leaf_hash"] }] })),
            )
            .await?;
        // Anyone reads Federation's feed, without a credential.
        let feed: Value = client::Client::new(fed_base, std::time::Duration::from_secs(10))
            .map_err(|e| anyhow!(e))?
            .text(&["statements", "feed.json"])
            .await
            .map_err(|e| anyhow!(e))
            .and_then(|t| Ok(serde_json::from_str(&t)?))?;
        let quoted = feed["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["_detente"]["index"] == answer["index"])
            .map(|i| i["_detente"]["answers"][0].clone())
            .unwrap_or(Value::Null);
        if quoted["leaf_hash"] != claim["leaf_hash"] || quoted["index"] != claim["index"] {
            bail!("Federation's feed does not quote Alliance's statement: {quoted}");
        }
        println!(
            "16. The information offices: Alliance publishes a statement (entry {} of its log); Federation answers",
            claim["index"]
        );
        println!(
            "    \"No evidence has been produced.\", quoting it as {}/{}/{} (origin, index, leaf hash): the answer",
            claim["origin"].as_str().unwrap_or(""),
            claim["index"],
            claim["leaf_hash"].as_str().unwrap_or("")
        );
        println!(
            "    proves which exact words it answers. Both are public feeds ({fed_base}/statements/feed.json), each entry"
        );
        println!(
            "    with its inclusion proof; `detente statement fetch` verifies them offline. Closing the information channel\n    never stops publication.\n"
        );
        Ok(())
    }

    /// 17. A third party joins the mesh; one FLASH reaches both peers.
    async fn a_third_party_joins(&mut self) -> Result<()> {
        let jwt = self.data.join("demo-jwt-public.pem");
        let c_node = NodeProcess::start(
            COMMONWEALTH_NODE,
            &self.data.join("commonwealth"),
            "127.0.0.1:0",
            &jwt,
            &[],
        )?;
        let mut c = Client::new(&c_node.base)?;
        let kc = c.node.log_key().await.map_err(|e| anyhow!(e))?;
        let Scenario {
            line,
            adams,
            sokolov,
            ka,
            kf,
            node,
            fed_node,
            ..
        } = self;
        let hale = person("Air Cdre. Hale")?;
        // One command on each existing party's node, one per existing party
        // on the new one.
        for (at, name, url, key) in [
            (0, COMMONWEALTH_NODE, &c_node.peer_base, &kc),
            (1, COMMONWEALTH_NODE, &c_node.peer_base, &kc),
            (2, ALLIANCE_NODE, &node.peer_base, &*ka),
            (2, FEDERATION_NODE, &fed_node.peer_base, &*kf),
        ] {
            let n = match at {
                0 => &mut line.a,
                1 => &mut line.f,
                _ => &mut c,
            };
            n.as_who(crate::demo_line::ADMIN)?
                .add_peer(&api::wire::line::PeerBody {
                    name: name.into(),
                    url: url.clone(),
                    key: key.clone(),
                })
                .await
                .map_err(|e| anyhow!(e))?;
        }
        c.as_who(crate::demo_line::ADMIN)?
            .register_member(&api::wire::line::MemberBody {
                key: hale.signer.key().to_hex(),
                name: hale.name.into(),
                role: "duty officer".into(),
                spheres: vec!["direct-line".into()],
            })
            .await
            .map_err(|e| anyhow!(e))?;
        let mut mesh = Value::Null;
        for _ in 0..200 {
            mesh = line
                .a
                .expect(
                    200,
                    M::GET,
                    "/line/v1/mesh",
                    crate::demo_line::OFFICER,
                    None,
                )
                .await?;
            if mesh["full_mesh"] == true {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if mesh["full_mesh"] != true {
            bail!("the three nodes never formed a full mesh: {mesh}");
        }
        // Commonwealth's member is known to Alliance before the FLASH goes.
        let ids = line
            .send_group(
                adams,
                &[FEDERATION_NODE.to_string(), COMMONWEALTH_NODE.to_string()],
                Precedence::Flash,
                "Unidentified formation crossing sector 4 westbound: hold all departures",
            )
            .await?;
        line.delivered(true, ids[0]).await?;
        line.delivered(true, ids[1]).await?;
        line.ack(false, sokolov, ids[0], "holding").await?;
        // Hale sees the FLASH on Commonwealth's node, then acknowledges.
        for _ in 0..200 {
            let v = c
                .expect(
                    200,
                    M::GET,
                    "/line/v1/messages?direction=in",
                    crate::demo_line::OFFICER,
                    None,
                )
                .await?;
            if v["messages"].as_array().is_some_and(|m| !m.is_empty()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        crate::demo_line::ack_at(
            &mut c,
            &hale,
            COMMONWEALTH_NODE,
            ALLIANCE_NODE,
            ids[1],
            "holding",
        )
        .await?;
        let mut group = Value::Null;
        for _ in 0..200 {
            let m = line.delivered(true, ids[0]).await?;
            group = m["group"].clone();
            if group["acknowledged"] == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if group["acknowledged"] != 2 {
            bail!("the group FLASH was not acknowledged by both: {group}");
        }
        println!(
            "17. A third party joins: Commonwealth's node is pinned with one command on each node (`detente peer add`), and"
        );
        println!(
            "    every node announces whom it pins, so each shows the mesh: {} pairs, all mutual, every key the same.",
            mesh["links"].as_array().map_or(0, Vec::len)
        );
        println!(
            "    Col. Adams sends one FLASH to Federation and Commonwealth at once: one signed message per peer, each"
        );
        println!(
            "    receipted, acknowledged and timed on its own, shown together: {} of {} acknowledged ({}).\n",
            group["acknowledged"],
            group["to"].as_array().map_or(0, Vec::len),
            group["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| format!(
                    "{} {}",
                    m["to"].as_str().unwrap_or(""),
                    m["ack"].as_str().unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.commonwealth = Some(c_node);
        Ok(())
    }

    /// 18. The evidence on ALPHA, exported and verified offline.
    async fn evidence_of_alpha(&mut self) -> Result<()> {
        let Scenario {
            data,
            alliance_data,
            c,
            kf,
            alpha,
            ..
        } = self;
        let vkey = c.node.log_key().await.map_err(|e| anyhow!(e))?;
        // Wait for a checkpoint covering everything so far (the node signs
        // one every 0.5 s while its log grows).
        let size = checkpoint_covering_all(alliance_data).await?;
        println!(
            "18. Every change above is an entry of the node's signed Merkle log: {size} entries under a checkpoint signed by"
        );
        println!("    {vkey}");
        println!(
            "    Exporting the evidence on ALPHA and checking it offline, as a third party would:"
        );
        let bundle = data.join("evidence-alpha");
        let _ = std::fs::remove_dir_all(&bundle);
        export_and_verify(alliance_data, &bundle, alpha, &vkey, kf).await?;
        println!(
            "    (detente verify {} --key <the key above> --peer <federation key>)\n",
            bundle.display()
        );

        self.vkey = vkey;
        Ok(())
    }

    /// 17. The evidence of the FLASH: the message, the peer's receipt and acknowledgement.
    async fn evidence_of_the_flash(&mut self) -> Result<()> {
        let Scenario {
            data,
            alliance_data,
            kf,
            flash,
            vkey,
            ..
        } = self;
        checkpoint_covering_all(alliance_data).await?;
        let line_bundle = data.join("evidence-flash");
        let _ = std::fs::remove_dir_all(&line_bundle);
        println!(
            "19. Alliance exports the evidence of its FLASH: its own signed message, and Federation's signed receipt and"
        );
        println!(
            "    acknowledgement as Federation's node signed them, each proven in Alliance's log; checked offline:"
        );
        export_and_verify(alliance_data, &line_bundle, &flash.to_string(), vkey, kf).await?;
        println!(
            "    (detente verify {} --key <alliance key> --peer <federation key>)\n",
            line_bundle.display()
        );
        Ok(())
    }

    /// 18. CHARLIE crosses the buffer tomorrow, planned with the buffer's OVN: the conflict stays on the maps.
    async fn charlie_stays_on_the_maps(&mut self) -> Result<()> {
        let now = self.now;
        let Scenario {
            c,
            cf,
            constraint_ovn,
            ..
        } = self;
        let h = |n: i64| now.plus_seconds(n * 3600);
        // 18. A conflict the duty officers keep on their maps: CHARLIE crosses
        // the buffer tomorrow, planned with the buffer's OVN in its key.
        let charlie = Uuid::from_u128(0xc3c3_0000_0000_4000_8000_0000_0000_0003).to_string();
        let charlie_area = [
            (44.96, 10.44),
            (44.96, 10.52),
            (45.05, 10.52),
            (45.05, 10.44),
        ];
        c.expect(
            201,
            M::PUT,
            &format!("/dss/v1/operational_intent_references/{charlie}"),
            ALLIANCE,
            Some(json!({
                "extents": [polygon(&charlie_area, 500.0, 2_500.0, h(20), h(22))],
                "key": [constraint_ovn.clone()],
                "state": "Accepted",
                "uss_base_url": "https://alliance.example/utm",
                "new_subscription": { "uss_base_url": "https://alliance.example/utm", "notify_for_constraints": true },
            })),
        )
        .await?;
        until_conflicts(cf, FEDERATION, 1).await?;
        println!(
            "20. Alliance plans patrol CHARLIE across the buffer for tomorrow (+20 h to +22 h), with the buffer's OVN in its key:"
        );
        println!(
            "    201 Accepted; the conflict with the line of contact stays on both nodes' maps until it is resolved.\n"
        );
        Ok(())
    }

    /// The summary, the members' key files, and (with `--keep-running`) how
    /// to drive the nodes from the CLI; then both nodes stop.
    async fn finish(self, keep_running: bool) -> Result<()> {
        let Scenario {
            data,
            base,
            fed_base,
            mut c,
            cf,
            line,
            alpha_ovn,
            adams,
            baker,
            volkov,
            orlov,
            sokolov,
            node,
            fed_node,
            ..
        } = self;
        c.requests += line.requests() + cf.requests;

        let health = c.node.healthz().await.map_err(|e| anyhow!(e))?;
        println!(
            "Done: {} requests over HTTP. The node holds {} operational intents, {} constraint(s), {} conflicts.",
            c.requests, health["operational_intents"], health["constraints"], health["conflicts"]
        );
        println!(
            "ALPHA's current OVN (alliance's secret): {}…",
            alpha_ovn.get(..12).unwrap_or("")
        );
        println!(
            "\nThe API: {base}/dss/v1/… (ASTM F3548-21), {base}/detente/v1/conflicts, {base}/metrics, {base}/healthz"
        );
        // The members' key files, to log in to the consoles with.
        let keys = data.join("keys");
        std::fs::create_dir_all(&keys)?;
        for (file, p) in [
            ("adams.key", &adams),
            ("baker.key", &baker),
            ("volkov.key", &volkov),
            ("orlov.key", &orlov),
            ("sokolov.key", &sokolov),
        ] {
            std::fs::write(keys.join(file), format!("{}\n", p.seed_hex))?;
        }
        println!(
            "\nThe operator consoles: {ALLIANCE_NODE} {base}/console/ and {FEDERATION_NODE} {fed_base}/console/"
        );
        println!(
            "    log in with a member's key file from {}: adams.key (Alliance duty officer, administrator),",
            keys.display()
        );
        println!(
            "    baker.key; on Federation's console sokolov.key (chief of staff, administrator), volkov.key, orlov.key (revoked)"
        );
        if keep_running {
            let private = keys.join("demo-jwt-private.pem");
            std::fs::write(&private, DEMO_PRIVATE_KEY)?;
            let token = |who: (&str, &str)| {
                format!(
                    "$(detente dev-token --private-key {} --audience {AUDIENCE} --sub {} --scope '{}')",
                    private.display(),
                    who.0,
                    who.1
                )
            };
            println!("Drive Alliance's node from the CLI (tokens signed with the demo's key):");
            println!(
                "    export DETENTE_NODE={base} DETENTE_TOKEN={}",
                token((crate::demo_line::ADMIN.0, "detente.line detente.line.admin"))
            );
            println!("    detente inbox ; detente channel list ; detente mission list");
            println!(
                "    curl -s -H \"Authorization: Bearer {}\" {base}/detente/v1/conflicts",
                token(ALLIANCE)
            );
            println!(
                "Keeping both nodes up; Ctrl-C or SIGTERM stops them and removes the demo's files."
            );
            std::future::pending::<()>().await;
        }
        drop(fed_node);
        drop(node);
        Ok(())
    }
}

/// The OVN `c`'s node answers for a peer's copy (`kind`: `operational_intents`
/// or `constraints`) at its F3548 USS interface, as `who`.
async fn ovn_of(c: &mut Client, kind: &str, id: &str, who: (&str, &str)) -> Result<String> {
    let v = c
        .expect(200, M::GET, &format!("/uss/v1/{kind}/{id}"), who, None)
        .await?;
    let reference = if kind == "constraints" {
        &v["constraint"]["reference"]
    } else {
        &v["operational_intent"]["reference"]
    };
    reference["ovn"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no OVN for {id}: {v}"))
}

/// Waits until `path` answers 200 on `c` (a shared record arrived).
async fn until_present(c: &mut Client, path: &str, who: (&str, &str)) -> Result<()> {
    for _ in 0..200 {
        let (status, _) = c.call(M::GET, path, who, None).await?;
        if status == 200 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("{path} did not reach {} within 10 s", c.base)
}

/// Waits until the node reports `n` conflicts; returns them.
async fn until_conflicts(c: &mut Client, who: (&str, &str), n: usize) -> Result<Vec<Value>> {
    let mut last = Vec::new();
    for _ in 0..200 {
        let v = c
            .expect(200, M::GET, "/detente/v1/conflicts", who, None)
            .await?;
        last = v["conflicts"].as_array().cloned().unwrap_or_default();
        if last.len() == n {
            return Ok(last);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!(
        "{} reports {} conflicts, expected {n}: {last:?}",
        c.base,
        last.len()
    )
}

/// The size of the node's newest checkpoint once it covers every entry of
/// its log (waiting up to 12 s for the node to sign one).
async fn checkpoint_covering_all(data: &std::path::Path) -> Result<u64> {
    let mut covered = 0;
    for _ in 0..40 {
        let (entries, latest) = store::read_log(data)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        covered = latest.map_or(0, |(s, _)| s);
        if covered as usize >= entries.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    Ok(covered)
}

/// Exports the entries about `entity` from a node's data folder and checks
/// the bundle offline with the log's and the peer's keys, printing both.
async fn export_and_verify(
    data: &std::path::Path,
    out: &std::path::Path,
    entity: &str,
    vkey: &str,
    peer_key: &str,
) -> Result<()> {
    crate::evidence::export(crate::evidence::ExportArgs {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        entity: Some(entity.to_string()),
        since: None,
        until: None,
        all: false,
    })
    .await?;
    crate::evidence::verify(crate::evidence::VerifyArgs {
        paths: vec![out.to_path_buf()],
        key: vkey.to_string(),
        witness: vec![],
        min_witnesses: 0,
        peer: vec![peer_key.to_string()],
        policy: None,
    })
}
