//! The duty officer's and the line administrator's commands: they talk to
//! a node's `/line/v1` API with a bearer token. Members sign what they send
//! and acknowledge here, with their own key file (`detente member keygen`);
//! the node never sees a member's private key.

use anyhow::{Context, Result, anyhow, bail};
use api::wire::line::{
    AccreditBody, AckBody, AreaBody, ChannelBody, DeadlinesBody, MemberBody, MessagesQuery,
    PeerBody, QuotaBody, ReasonBody, SendBody,
};
use clap::{Args, Subcommand};
use liaison::{Ack, AckVerdict, Body, MemberSigner, Message, Precedence, Sphere, Verdict};
use node::Ids;
use serde_json::Value;
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The node's base URL.
    #[arg(long, env = "DETENTE_NODE", default_value = "http://127.0.0.1:8080")]
    node: String,
    /// Bearer token (scope detente.line for duty officers, detente.line.admin for the host's decisions).
    #[arg(long, env = "DETENTE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificates to trust for an https:// node, beside the system's (a private certificate authority).
    #[arg(long, env = "DETENTE_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl Conn {
    /// The typed client of the node, with the token if one was given.
    fn client(&self) -> Result<client::Client> {
        let roots = match &self.ca_file {
            Some(p) => std::fs::read(p).with_context(|| format!("--ca-file {}", p.display()))?,
            None => Vec::new(),
        };
        let c = client::Client::trusting(&self.node, std::time::Duration::from_secs(30), &roots)
            .map_err(|e| anyhow!("--node: {e}"))?;
        Ok(match &self.token {
            Some(t) => c.with_token(t.clone()),
            None => c,
        })
    }
}

/// A client error as the CLI reports it, with its exit code: a refusal
/// (4xx) or an unreachable or failing node.
fn failure(e: client::Error) -> anyhow::Error {
    use detente::exit::{Failure, Kind};
    match &e {
        client::Error::Refused(r) => {
            let hint = if r.status == 401 {
                " (give a token with --token or DETENTE_TOKEN)"
            } else {
                ""
            };
            let kind = if (400..500).contains(&r.status) {
                Kind::Refused
            } else {
                Kind::Unreachable
            };
            Failure::error(kind, format!("{r}{hint}"))
        }
        client::Error::Unreachable { .. } => Failure::error(Kind::Unreachable, e.to_string()),
        client::Error::Url(_) => Failure::error(Kind::Usage, e.to_string()),
        client::Error::Token(_) => Failure::error(Kind::Refused, e.to_string()),
    }
}

#[derive(Subcommand, Debug)]
pub enum PeerCommand {
    /// Pin a peer node: its name, URL and log verifier key (`detente key` on the peer, obtained out of band).
    Add {
        name: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        key: String,
        /// Also propose the deconfliction area with it (as `peer area`): a polygon as "lat,lng lat,lng lat,lng ..." (repeatable). Adding the Nth party is then one command on each existing party's node.
        #[arg(long)]
        polygon: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Propose the deconfliction area shared with a peer: once the peer proposes the same polygons it binds, and this party's intents and constraints touching it are shared.
    Area {
        name: String,
        /// A polygon as "lat,lng lat,lng lat,lng ..." (repeatable); none withdraws this party from the area.
        #[arg(long)]
        polygon: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Unpin a peer: once both parties have closed the direct line with it (`channel close --peer PEER --sphere direct-line` on each side).
    Remove {
        name: String,
        /// Why, kept in the log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Propose the line of contact with a peer as points and a buffer width: the node buffers it on the ellipsoid; it binds once the peer proposes the same (`peer accept … --contact-line`). An empty --line withdraws.
    ContactLine {
        name: String,
        /// The line's points, "lat,lng lat,lng ..." in order.
        #[arg(long)]
        line: String,
        /// The buffer each side, metres.
        #[arg(long)]
        buffer_m: f64,
        /// From when (RFC 3339; default now).
        #[arg(long)]
        from: Option<String>,
        /// Until when (RFC 3339).
        #[arg(long)]
        to: String,
        /// Altitude band, metres above the WGS-84 ellipsoid (default 0 to 20,000).
        #[arg(long)]
        altitude_lower: Option<f64>,
        #[arg(long)]
        altitude_upper: Option<f64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Agree to the peer's latest proposal by proposing exactly the same: the deconfliction area (--area) or the line of contact (--contact-line).
    Accept {
        name: String,
        #[arg(
            long,
            conflicts_with = "contact_line",
            required_unless_present = "contact_line"
        )]
        area: bool,
        #[arg(long)]
        contact_line: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Who is peered with whom: this party's pins and those every peer announced, each pair's state, and any party pinned under different keys.
    Mesh {
        /// Print the JSON the node returned.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// The node's peers.
    List {
        /// Print the JSON the node returned.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Make a member key pair: the private key goes into FILE (mode 0600), the public key is printed.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Register one of this party's members by public key.
    Add {
        #[arg(long)]
        key: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// Comma-separated: diplomatic, information, military, direct-line.
        #[arg(long, value_delimiter = ',', required = true)]
        spheres: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove one of this party's members (what they sent stays).
    Remove {
        key: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace a member's key (lost or retired) by a new one: the old key is removed and the new one registered in one record every peer receives; name, role and spheres stay unless given.
    Replace {
        /// The old key.
        key: String,
        /// The new key (`member keygen`).
        #[arg(long = "new")]
        new_key: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long, value_delimiter = ',')]
        spheres: Option<Vec<String>>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Declare a member's key compromised from a time (RFC 3339, default now): nothing it signs is taken any more, what it signed from then on is marked suspect on every node, what it signed before stands.
    Compromised {
        key: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Members known to the node: this party's and its peers'.
    List {
        /// Print the JSON the node returned.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand, Debug)]
pub enum MissionCommand {
    /// Close a guest party's mission: every accreditation of it ends at the effective time.
    Close {
        #[arg(long)]
        guest: String,
        #[arg(long)]
        reason: String,
        /// Effective time (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Missions hosted here and this party's missions at its peers.
    List {
        /// Print the JSON the node returned.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Give notice that a channel is open.
    Open(ChannelArgs),
    /// Give notice that a mission channel is suspended (not the direct line).
    Suspend(ChannelArgs),
    /// Give notice of closure; the direct line closes only when both parties have.
    Close(ChannelArgs),
    /// Every channel with every peer and its state now.
    List {
        /// Print the JSON the node returned.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a channel's acknowledgement deadlines (e.g. 10m, 30m, 3h, 6h), for messages from --at (default now) on.
    Deadlines(DeadlineArgs),
    /// Designate a constraint as the line of contact: operations touching it are notified to peers and held until acknowledged.
    Contact {
        /// The constraint's id.
        constraint: Uuid,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args, Debug)]
pub struct DeadlineArgs {
    #[arg(long)]
    peer: String,
    /// diplomatic, information, military or direct-line.
    #[arg(long)]
    sphere: String,
    #[arg(long, default_value = "10m")]
    flash: String,
    #[arg(long, default_value = "30m")]
    immediate: String,
    #[arg(long, default_value = "3h")]
    priority: String,
    #[arg(long, default_value = "6h")]
    routine: String,
    /// Effective time (RFC 3339); default now.
    #[arg(long)]
    at: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// "90s", "10m", "3h", "2d" or plain seconds, in seconds.
fn seconds(s: &str, flag: &str) -> Result<u64> {
    let s = s.trim();
    let (n, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow!("{flag}: a duration like 90s, 10m, 3h or 2d"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("{flag}: a duration like 90s, 10m, 3h or 2d"),
    };
    Ok(n.saturating_mul(mult))
}

/// An acknowledgement deadline flag, in seconds, within the limits every
/// channel has (a usage error naming the flag otherwise).
fn deadline(s: &str, flag: &str) -> Result<u64> {
    use detente::exit::{Failure, Kind};
    use liaison::decide::{DEADLINE_MAX_MS, DEADLINE_MIN_MS};
    let n = seconds(s, flag).map_err(|e| Failure::error(Kind::Usage, e.to_string()))?;
    if !(DEADLINE_MIN_MS..=DEADLINE_MAX_MS).contains(&n.saturating_mul(1000)) {
        return Err(Failure::error(
            Kind::Usage,
            format!("{flag} {s}: a deadline is between 1m and 7d"),
        ));
    }
    Ok(n)
}

#[derive(Args, Debug)]
pub struct ChannelArgs {
    #[arg(long)]
    peer: String,
    /// diplomatic, information, military or direct-line.
    #[arg(long)]
    sphere: String,
    #[arg(long, default_value = "")]
    reason: String,
    /// Effective time (RFC 3339); default now.
    #[arg(long)]
    at: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// The sending member's key file (`detente member keygen`).
    #[arg(long = "as")]
    key: PathBuf,
    /// The peer party; several (`--to a --to b` or `--to a,b`) send the same message to each at once, each with its own receipt, acknowledgement and deadline.
    #[arg(long, required = true, value_delimiter = ',')]
    to: Vec<String>,
    /// diplomatic, information, military or direct-line.
    #[arg(long)]
    sphere: String,
    /// FLASH, IMMEDIATE, PRIORITY or ROUTINE.
    #[arg(long, default_value = "ROUTINE")]
    precedence: String,
    /// Free text (or the text accompanying a structured body).
    #[arg(long, default_value = "")]
    text: String,
    /// Operation notification: the operational intent concerned.
    #[arg(long, conflicts_with_all = ["deconflict", "reply_to"])]
    notify_intent: Option<Uuid>,
    /// Deconfliction request: the two conflicting intents (give twice); --text is the proposal.
    #[arg(long, num_args = 1)]
    deconflict: Vec<Uuid>,
    /// Reply to a message (with --verdict).
    #[arg(long, requires = "verdict")]
    reply_to: Option<Uuid>,
    /// accept, counter-proposal or refuse.
    #[arg(long)]
    verdict: Option<String>,
    /// Idempotency id (default: a fresh one); resending with the same id is safe. With several peers, the group's id (each peer's message id is derived from it).
    #[arg(long)]
    id: Option<Uuid>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args, Debug)]
pub struct InboxArgs {
    /// Only messages with this peer.
    #[arg(long)]
    peer: Option<String>,
    /// in, out, or all.
    #[arg(long, default_value = "all")]
    direction: String,
    /// Only the newest N.
    #[arg(long, default_value_t = 50)]
    last: usize,
    /// Print the JSON the node returned.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args, Debug)]
pub struct AckArgs {
    /// The message's id.
    message: Uuid,
    /// The acknowledging member's key file.
    #[arg(long = "as")]
    key: PathBuf,
    /// Acknowledge with an objection instead of acceptance.
    #[arg(long)]
    object: bool,
    #[arg(long, default_value = "")]
    text: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args, Debug)]
pub struct AccreditArgs {
    /// The guest party (a peer).
    #[arg(long)]
    guest: String,
    /// The member's public key (hex).
    #[arg(long)]
    member: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    role: String,
    /// Comma-separated mission spheres: diplomatic, information, military.
    #[arg(long, value_delimiter = ',', required = true)]
    spheres: Vec<String>,
    /// End of validity (RFC 3339).
    #[arg(long, conflicts_with = "days")]
    until: Option<String>,
    /// Validity in days from now.
    #[arg(long, default_value_t = 90)]
    days: u64,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The accreditation's id.
    id: Uuid,
    #[arg(long)]
    reason: String,
    /// Expulsion with notice: effective at this time (RFC 3339) instead of at once.
    #[arg(long, conflicts_with = "within")]
    at: Option<String>,
    /// Expulsion with notice: effective after this long ("72h", "3d", "90m").
    #[arg(long)]
    within: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args, Debug)]
pub struct QuotaArgs {
    #[arg(long)]
    guest: String,
    /// Positions the mission may hold.
    quota: u32,
    /// Accreditations that end with a lowered quota (repeatable).
    #[arg(long)]
    ending: Vec<Uuid>,
    #[command(flatten)]
    conn: Conn,
}

impl AccreditArgs {
    pub fn guest(&self) -> &str {
        &self.guest
    }
}

fn now_ms() -> u64 {
    use node::Clock;
    (node::SystemClock.now().unix_micros() / 1000).max(0) as u64
}

fn rfc3339(ms: u64) -> String {
    api::wire::format_time(node::airspace::Timestamp::from_unix_micros(
        ms as i64 * 1000,
    ))
    .value
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a member key file: 64 hex digits (the Ed25519 seed).
pub fn read_member_key(path: &Path) -> Result<MemberSigner> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the member key {}", path.display()))?;
    let seed: [u8; 32] = liaison::from_hex(text.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("{}: not a member key file", path.display()))?;
    Ok(MemberSigner::from_seed(&seed))
}

/// Writes a fresh member key file; returns the signer.
pub fn keygen(out: &Path) -> Result<MemberSigner> {
    if out.exists() {
        bail!("{} exists; not overwriting a key", out.display());
    }
    let seed = node::RandomIds.seed().map_err(|e| anyhow!(e))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| format!("creating {}", out.display()))?;
        writeln!(f, "{}", hex(&seed))?;
    }
    #[cfg(not(unix))]
    std::fs::write(out, format!("{}\n", hex(&seed)))?;
    Ok(MemberSigner::from_seed(&seed))
}

fn sphere(s: &str) -> Result<Sphere> {
    Sphere::parse(s).ok_or_else(|| anyhow!("--sphere: one of {}", Sphere::expected()))
}

pub async fn peer(c: PeerCommand) -> Result<()> {
    match c {
        PeerCommand::Add {
            name,
            url,
            key,
            polygon,
            conn,
        } => {
            let polygons = polygons(&polygon)?;
            let node = conn.client()?;
            node.add_peer(&PeerBody {
                name: name.clone(),
                url: url.clone(),
                key,
            })
            .await
            .map_err(failure)?;
            println!("peer {name} pinned ({url})");
            if !polygons.is_empty() {
                let v = node
                    .set_area(&name, &AreaBody { polygons })
                    .await
                    .map_err(failure)?;
                println!(
                    "deconfliction area: {}",
                    area_status(&name, &v["area_agreement"])
                );
            }
        }
        PeerCommand::ContactLine {
            name,
            line,
            buffer_m,
            from,
            to,
            altitude_lower,
            altitude_upper,
            conn,
        } => {
            let points = polygons(std::slice::from_ref(&line))
                .map_err(|_| anyhow!("--line: expected \"lat,lng lat,lng ...\""))?
                .pop()
                .unwrap_or_default();
            let v = conn
                .client()?
                .contact_line(&api::wire::line::ContactLineBody {
                    peer: Some(name.clone()),
                    line: points,
                    buffer_m,
                    id: None,
                    altitude_lower_m: altitude_lower,
                    altitude_upper_m: altitude_upper,
                    time_start: from,
                    time_end: to,
                })
                .await
                .map_err(failure)?;
            println!(
                "line of contact proposed to {name}: buffered {buffer_m} m each side, {} vertices; {}",
                v["vertices"],
                contact_status(&name, &v["contact_line"])
            );
        }
        PeerCommand::Accept {
            name,
            area,
            contact_line: _,
            conn,
        } => {
            let what = if area { "area" } else { "contact-line" };
            let v = conn
                .client()?
                .accept_proposal(&name, what)
                .await
                .map_err(failure)?;
            if area {
                println!(
                    "deconfliction area with {name}: {}",
                    area_status(&name, &v["area_agreement"])
                );
            } else {
                println!(
                    "line of contact with {name}: {}",
                    contact_status(&name, &v["contact_line"])
                );
            }
        }
        PeerCommand::Mesh { json, conn } => {
            let v = conn.client()?.mesh().await.map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_mesh(&v);
            }
        }
        PeerCommand::Area {
            name,
            polygon,
            conn,
        } => {
            let polygons = polygons(&polygon)?;
            let v = conn
                .client()?
                .set_area(
                    &name,
                    &AreaBody {
                        polygons: polygons.clone(),
                    },
                )
                .await
                .map_err(failure)?;
            println!(
                "deconfliction area proposed to {name}: {} polygon(s); {}",
                polygons.len(),
                area_status(&name, &v["area_agreement"])
            );
        }
        PeerCommand::Remove { name, reason, conn } => {
            conn.client()?
                .remove_peer(
                    &name,
                    &ReasonBody {
                        reason,
                        effective_ms: None,
                    },
                )
                .await
                .map_err(failure)?;
            println!("peer {name} removed");
        }
        PeerCommand::List { json, conn } => {
            let v = conn.client()?.peers().await.map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "this node: {}  {}",
                v["me"].as_str().unwrap_or("?"),
                v["key"]["vkey"].as_str().unwrap_or("")
            );
            let h = &v["key"]["handover"];
            if !h.is_null() {
                let awaiting: Vec<&str> = h["awaiting"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str())
                    .collect();
                println!(
                    "    key handed over at {} from {}: {}",
                    h["at"].as_str().unwrap_or("?"),
                    h["from"].as_str().unwrap_or("?"),
                    if awaiting.is_empty() {
                        "every peer has receipted it".to_string()
                    } else {
                        format!("not yet receipted by {}", awaiting.join(", "))
                    }
                );
            }
            for p in v["peers"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap_or("");
                println!(
                    "{name}  {}  {}  deconfliction area: {}",
                    p["url"].as_str().unwrap_or(""),
                    p["key"].as_str().unwrap_or(""),
                    area_status(name, &p["area_agreement"])
                );
                if p["contact_line"]["status"] != "none" {
                    println!(
                        "    line of contact: {}",
                        contact_status(name, &p["contact_line"])
                    );
                }
                if let Some(from) = p["key_handed_over"]["from"].as_str() {
                    println!(
                        "    key handed over at {} from {from}",
                        p["key_handed_over"]["at"].as_str().unwrap_or("?")
                    );
                }
            }
        }
    }
    Ok(())
}

/// `--polygon` values ("lat,lng lat,lng lat,lng ...") as [lat, lng] lists.
fn polygons(given: &[String]) -> Result<Vec<Vec<[f64; 2]>>> {
    given
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.split_whitespace()
                .map(|pair| {
                    let (a, b) = pair.split_once(',')?;
                    Some([a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?])
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    anyhow!(
                        "--polygon #{}: expected \"lat,lng lat,lng lat,lng ...\"",
                        i + 1
                    )
                })
        })
        .collect()
}

/// The strings of a JSON array (none if it is not one).
fn texts(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The mesh as a table: one row per pair of parties known.
fn print_mesh(v: &Value) {
    let me = v["me"].as_str().unwrap_or("");
    let parties = texts(&v["parties"]);
    println!("parties known to {me}: {}", parties.join(", "));
    for (party, p) in v["pins"].as_object().into_iter().flatten() {
        let peers = texts(&p["peers"]);
        let when = p["announced_ms"]
            .as_u64()
            .map(|t| format!(" (announced {})", liaison::rfc3339(t)))
            .unwrap_or_else(|| " (this node)".to_string());
        println!("  {party} pins {}{when}", peers.join(", "));
    }
    for l in v["links"].as_array().into_iter().flatten() {
        let (a, b) = (l["a"].as_str().unwrap_or(""), l["b"].as_str().unwrap_or(""));
        let detail = match l["status"].as_str() {
            Some("one-way") if l["a_pins_b"] == true => format!(" ({a} pins {b}, not the reverse)"),
            Some("one-way") => format!(" ({b} pins {a}, not the reverse)"),
            Some("unknown") => " (neither has announced to this node)".to_string(),
            _ => String::new(),
        };
        println!(
            "  {a} ⇄ {b}: {}{detail}",
            l["status"].as_str().unwrap_or("")
        );
    }
    for c in v["key_conflicts"].as_array().into_iter().flatten() {
        println!(
            "!! {} is pinned under different keys: {}",
            c["party"].as_str().unwrap_or(""),
            c["keys"]
        );
    }
    println!(
        "{}",
        if v["full_mesh"] == true {
            "full mesh: every pair pins each other, all under the same keys"
        } else {
            "not a full mesh yet"
        }
    );
}

/// Where the line of contact with `peer` stands, in words.
fn contact_status(peer: &str, c: &Value) -> String {
    let bound = match (c["constraint"].as_str(), c["bound"] == true) {
        (Some(id), true) => format!(", bound as constraint {id}"),
        (Some(id), false) => format!(", to be bound as constraint {id}"),
        _ => String::new(),
    };
    match c["status"].as_str() {
        Some("agreed") => format!("agreed at index {}{bound}", c["agreed_index"]),
        Some("proposed") if c["agreed"].is_null() => {
            format!("proposed, awaiting {peer}'s same proposal; nothing binds until agreed")
        }
        Some("proposed") => format!(
            "a new line proposed, awaiting {peer}'s same proposal (the one agreed at index {} binds meanwhile{bound})",
            c["agreed_index"]
        ),
        Some("offered") => format!(
            "{peer} proposes a line ({} points, {} m each side): `detente peer accept {peer} --contact-line` agrees to it",
            c["theirs"]["terms"]["line"].as_array().map_or(0, Vec::len),
            c["theirs"]["terms"]["buffer_m"]
        ),
        _ => "none".to_string(),
    }
}

/// Where the deconfliction area with `peer` stands, in words.
fn area_status(peer: &str, a: &Value) -> String {
    let count = |p: &Value| p["terms"].as_array().map_or(0, Vec::len);
    let agreed = a["agreed_index"]
        .as_u64()
        .map(|i| format!("agreed at index {i}"));
    let pending = match a["status"].as_str() {
        Some("proposed") => Some(format!(
            "{} polygon(s) proposed, awaiting {peer}'s same proposal",
            count(&a["ours"])
        )),
        Some("offered") => Some(format!(
            "{peer} proposes {} polygon(s), awaiting this party's same proposal",
            count(&a["theirs"])
        )),
        _ => None,
    };
    match (agreed, pending) {
        (Some(g), None) => format!("{} polygon(s), {g}", count(&a["ours"])),
        (Some(g), Some(p)) => format!("{p} (the area {g} binds meanwhile)"),
        (None, Some(p)) => format!("{p}; nothing shared until agreed"),
        (None, None) => "none (nothing shared)".to_string(),
    }
}

pub async fn member(c: MemberCommand) -> Result<()> {
    match c {
        MemberCommand::Keygen { out } => {
            let s = keygen(&out)?;
            println!("{}", s.key().to_hex());
            eprintln!(
                "private key written to {} — keep it with the member only",
                out.display()
            );
        }
        MemberCommand::Add {
            key,
            name,
            role,
            spheres,
            conn,
        } => {
            conn.client()?
                .register_member(&MemberBody {
                    key,
                    name: name.clone(),
                    role,
                    spheres,
                })
                .await
                .map_err(failure)?;
            println!("member {name} registered");
        }
        MemberCommand::Remove { key, conn } => {
            conn.client()?.remove_member(&key).await.map_err(failure)?;
            println!("member {key} removed");
        }
        MemberCommand::Replace {
            key,
            new_key,
            name,
            role,
            spheres,
            conn,
        } => {
            conn.client()?
                .replace_member(
                    &key,
                    &api::wire::line::ReplaceMemberBody {
                        key: new_key.clone(),
                        name,
                        role,
                        spheres,
                    },
                )
                .await
                .map_err(failure)?;
            println!("member key {key} replaced by {new_key}");
        }
        MemberCommand::Compromised {
            key,
            from,
            reason,
            conn,
        } => {
            let v = conn
                .client()?
                .declare_compromised(
                    &key,
                    &api::wire::line::CompromisedBody {
                        reason: reason.clone(),
                        from,
                    },
                )
                .await
                .map_err(failure)?;
            println!(
                "member key {key} declared compromised from {}: nothing it signs is taken any more; what it signed from then on is suspect",
                v["compromised_from_ms"]
                    .as_u64()
                    .map(liaison::rfc3339)
                    .unwrap_or_default()
            );
        }
        MemberCommand::List { json, conn } => {
            let v = conn.client()?.members().await.map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for m in v["members"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<24} {:<20} {:<40} seq {}{}  {}",
                    m["party"].as_str().unwrap_or(""),
                    m["name"].as_str().unwrap_or(""),
                    m["role"].as_str().unwrap_or(""),
                    texts(&m["spheres"]).join(","),
                    m["last_seq"],
                    if !m["compromised"].is_null() {
                        format!(
                            " COMPROMISED from {} ({})",
                            liaison::rfc3339(m["compromised"]["from_ms"].as_u64().unwrap_or(0)),
                            m["compromised"]["reason"].as_str().unwrap_or("")
                        )
                    } else if let Some(by) = m["replaced_by"].as_str() {
                        format!(" REPLACED by {}…", &by[..by.len().min(12)])
                    } else if m["removed_ms"].is_null() {
                        String::new()
                    } else {
                        " REMOVED".to_string()
                    },
                    m["key"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// Signs and sends a message, to each peer given (several: one message per
/// peer, all naming the group); retries with the sequence number the node
/// expects if another send by the same member got there first.
pub async fn send(a: SendArgs) -> Result<Vec<Value>> {
    let signer = read_member_key(&a.key)?;
    let precedence = Precedence::parse(&a.precedence.to_uppercase())
        .ok_or_else(|| anyhow!("--precedence: one of {}", Precedence::expected()))?;
    let sphere = sphere(&a.sphere)?;
    let body = if let Some(intent) = a.notify_intent {
        Body::OperationNotification {
            intent,
            extents_sha256: None,
            text: a.text.clone(),
        }
    } else if !a.deconflict.is_empty() {
        let intents: [Uuid; 2] = a
            .deconflict
            .clone()
            .try_into()
            .map_err(|_| anyhow!("--deconflict: give exactly two intents"))?;
        Body::DeconflictionRequest {
            intents,
            proposal: a.text.clone(),
        }
    } else if let Some(to) = a.reply_to {
        let v = a.verdict.as_deref().unwrap_or_default();
        Body::Reply {
            in_reply_to: to,
            verdict: Verdict::parse(v)
                .ok_or_else(|| anyhow!("--verdict: one of {}", Verdict::expected()))?,
            text: a.text.clone(),
        }
    } else {
        if a.text.is_empty() {
            bail!("give --text, or a structured body (--notify-intent, --deconflict, --reply-to)");
        }
        Body::Text {
            text: a.text.clone(),
        }
    };
    let node = a.conn.client()?;
    let me = node.peers().await.map_err(failure)?["me"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let members = node.members().await.map_err(failure)?;
    let key = signer.key().to_hex();
    let mine = members["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["key"] == key.as_str())
        .ok_or_else(|| {
            anyhow!(
                "the key in {} is not a registered member of {me}",
                a.key.display()
            )
        })?;
    let mut seq = mine["last_seq"].as_u64().unwrap_or(0) + 1;
    let id = a.id.unwrap_or_else(|| node::RandomIds.uuid_v4());
    let created_ms = now_ms();
    let mut to = a.to.clone();
    to.dedup();
    let group = (to.len() > 1).then(|| liaison::Group { id, to: to.clone() });
    let mut sent = Vec::new();
    let mut pending: Vec<String> = to.clone();
    // A group goes in one request and one commit; what it could not send
    // (a message already there from an earlier try takes no sequence
    // number, so the ones after it are out of sequence) goes one by one.
    if let Some(g) = &group {
        let messages = to
            .iter()
            .enumerate()
            .map(|(i, peer)| {
                SendBody::signed(&signer.sign_message(Message {
                    id: group_message_id(&g.id, peer),
                    from: me.clone(),
                    to: peer.clone(),
                    sphere,
                    precedence,
                    sender: signer.key(),
                    seq: seq + i as u64,
                    created_ms,
                    body: body.clone(),
                    group: group.clone(),
                }))
            })
            .collect();
        let v = node
            .send_group(&api::wire::line::GroupSendBody { messages })
            .await
            .map_err(failure)?;
        pending.clear();
        for (peer, m) in to
            .iter()
            .zip(v["messages"].as_array().into_iter().flatten())
        {
            match m["refused"]["code"].as_str() {
                None => {
                    seq += 1;
                    sent.push(m.clone());
                }
                Some("conflict") => sent.push(serde_json::json!({
                    "already_sent": peer, "id": group_message_id(&g.id, peer).to_string(),
                })),
                Some(_) => pending.push(peer.clone()),
            }
        }
    }
    for peer in &pending {
        let message_id = match &group {
            Some(g) => group_message_id(&g.id, peer),
            None => id,
        };
        let mut done = None;
        for _ in 0..5 {
            let m = signer.sign_message(Message {
                id: message_id,
                from: me.clone(),
                to: peer.clone(),
                sphere,
                precedence,
                sender: signer.key(),
                seq,
                created_ms,
                body: body.clone(),
                group: group.clone(),
            });
            match node.send(&SendBody::signed(&m)).await {
                Ok(v) => {
                    done = Some(v);
                    break;
                }
                Err(e) => {
                    // Another send by this member took the sequence number:
                    // the node says which one it expects.
                    if let Some(r) = e.refusal()
                        && r.code == "out_of_sequence"
                        && let Some(n) = r.body["expected"].as_u64()
                        && n > seq
                    {
                        seq = n;
                        continue;
                    }
                    // The group sent again: this peer's message is there.
                    if group.is_some()
                        && let Some(r) = e.refusal()
                        && r.code == "conflict"
                    {
                        done = Some(
                            serde_json::json!({ "already_sent": peer, "id": message_id.to_string() }),
                        );
                        break;
                    }
                    return Err(failure(e));
                }
            }
        }
        let v = done.ok_or_else(|| anyhow!("the member's sequence kept moving; try again"))?;
        if v["already_sent"].is_null() {
            seq += 1;
        }
        sent.push(v);
    }
    Ok(sent)
}

/// The id of a group's message to `peer`: derived from the group's id, so
/// that sending the group again is idempotent.
fn group_message_id(group: &Uuid, peer: &str) -> Uuid {
    let mut src = b"detente group message v1\n".to_vec();
    src.extend_from_slice(group.as_bytes());
    src.extend_from_slice(peer.as_bytes());
    let d = tlog::hash::sha256(&src);
    uuid::Builder::from_random_bytes(d[..16].try_into().unwrap_or([0; 16])).into_uuid()
}

pub fn print_sent(v: &Value) {
    if let Some(peer) = v["already_sent"].as_str() {
        println!(
            "the group's message to {peer} was already sent (message {})",
            v["id"].as_str().unwrap_or("")
        );
        return;
    }
    let m = &v["message"];
    println!(
        "{} {} seq {} {} → {} on {}: {}{}",
        m["precedence"].as_str().unwrap_or(""),
        m["id"].as_str().unwrap_or(""),
        m["seq"],
        m["from"].as_str().unwrap_or(""),
        m["to"].as_str().unwrap_or(""),
        m["sphere"].as_str().unwrap_or(""),
        v["delivery"]["state"].as_str().unwrap_or(""),
        m["group"]["id"]
            .as_str()
            .map(|g| format!(" (group {g})"))
            .unwrap_or_default()
    );
}

pub async fn inbox(a: InboxArgs) -> Result<()> {
    let direction = match a.direction.as_str() {
        "all" => None,
        "in" | "out" => Some(a.direction.clone()),
        _ => bail!("--direction: in, out or all"),
    };
    let q = MessagesQuery {
        peer: a.peer.clone(),
        direction,
        after: None,
        limit: Some(a.last),
    };
    let v = a.conn.client()?.messages(&q).await.map_err(failure)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let now = v["now_ms"].as_u64().unwrap_or(0);
    for e in v["messages"].as_array().into_iter().flatten() {
        println!("{}", inbox_line(e, now));
    }
    let overdue = v["overdue"].as_u64().unwrap_or(0);
    if overdue > 0 {
        println!("!! {overdue} message(s) overdue for acknowledgement");
    }
    Ok(())
}

/// One message as a line of the inbox.
pub fn inbox_line(e: &Value, now: u64) -> String {
    let m = &e["message"];
    let dir = if e["direction"] == "in" { "IN " } else { "OUT" };
    let peer = if e["direction"] == "in" {
        &m["from"]
    } else {
        &m["to"]
    };
    let delivery = match e["delivery"]["state"].as_str() {
        Some("delivered") => format!("receipted@{}", e["delivery"]["index"]),
        Some("refused") => format!(
            "REFUSED ({})",
            e["delivery"]["reason"].as_str().unwrap_or("")
        ),
        Some(s) => s.to_string(),
        None => String::new(),
    };
    let ack = if let Some(by) = e["ack"]["by_name"].as_str() {
        format!("ack {} by {by}", e["ack"]["verdict"].as_str().unwrap_or(""))
    } else if e["delivery"]["state"] == "refused" {
        String::new()
    } else {
        let deadline = e["deadline_ms"].as_u64().unwrap_or(0);
        if e["overdue"] == true {
            format!("OVERDUE by {}", duration(now.saturating_sub(deadline)))
        } else {
            format!("ack due in {}", duration(deadline.saturating_sub(now)))
        }
    };
    let body = &m["body"];
    let text = match body["type"].as_str() {
        Some("operation-notification") => format!(
            "[operation {}] {}",
            body["intent"].as_str().unwrap_or(""),
            body["text"].as_str().unwrap_or("")
        ),
        Some("deconfliction-request") => format!(
            "[deconfliction {}] {}",
            texts(&body["intents"]).join(" × "),
            body["proposal"].as_str().unwrap_or("")
        ),
        Some("reply") => format!(
            "[reply to {}: {}] {}",
            body["in_reply_to"].as_str().unwrap_or(""),
            body["verdict"].as_str().unwrap_or(""),
            body["text"].as_str().unwrap_or("")
        ),
        _ => body["text"].as_str().unwrap_or("").to_string(),
    };
    let text = match e["suspect"]["compromised_from_ms"].as_u64() {
        Some(from) => format!(
            "!! SUSPECT: signed by a key declared compromised from {} ({}) — {text}",
            rfc3339(from),
            e["suspect"]["reason"].as_str().unwrap_or("")
        ),
        None => text,
    };
    format!(
        "{} {dir} {:<9} {:<11} {:<20} {} #{} {} | {} | {} | {}{}",
        rfc3339(m["created_ms"].as_u64().unwrap_or(0)),
        m["precedence"].as_str().unwrap_or(""),
        m["sphere"].as_str().unwrap_or(""),
        peer.as_str().unwrap_or(""),
        e["sender_name"].as_str().unwrap_or("?"),
        m["seq"],
        m["id"].as_str().unwrap_or(""),
        delivery,
        ack,
        text,
        group_line(&e["group"], e["direction"] == "out")
    )
}

/// A group message's companions: on the sender's side each addressee's
/// state, on an addressee's side who else it went to.
fn group_line(g: &Value, outgoing: bool) -> String {
    if g.is_null() {
        return String::new();
    }
    let to = texts(&g["to"]);
    if !outgoing {
        return format!("\n    (one of a group sent to {})", to.join(", "));
    }
    let each: Vec<String> = g["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let state = match (m["ack"].as_str(), m["overdue"] == true) {
                (Some(v), _) => format!("ack {v}"),
                (None, true) => "OVERDUE".to_string(),
                (None, false) => m["delivery"].as_str().unwrap_or("").to_string(),
            };
            format!("{} {state}", m["to"].as_str().unwrap_or(""))
        })
        .collect();
    format!(
        "\n    group of {}: {} acknowledged — {}",
        to.len(),
        g["acknowledged"],
        each.join("; ")
    )
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

pub async fn ack(a: AckArgs) -> Result<Value> {
    let signer = read_member_key(&a.key)?;
    let node = a.conn.client()?;
    let me = node.peers().await.map_err(failure)?["me"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let v = node
        .messages(&MessagesQuery {
            direction: Some("in".into()),
            limit: Some(10_000),
            ..MessagesQuery::default()
        })
        .await
        .map_err(failure)?;
    let id = a.message.to_string();
    let m = v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["message"]["id"] == id.as_str())
        .ok_or_else(|| anyhow!("no received message {id} at {me}"))?;
    let signed = signer.sign_ack(Ack {
        message: a.message,
        from: me,
        to: m["message"]["from"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        by: signer.key(),
        verdict: if a.object {
            AckVerdict::Object
        } else {
            AckVerdict::Accept
        },
        text: a.text,
        at_ms: now_ms(),
    });
    node.ack(&AckBody::signed(&signed)).await.map_err(failure)
}

pub async fn accredit(a: AccreditArgs) -> Result<String> {
    let until = match &a.until {
        Some(u) => crate::evidence::ms(u, "--until")?,
        None => now_ms() + a.days * 86_400_000,
    };
    let v = a
        .conn
        .client()?
        .accredit(
            &a.guest,
            &AccreditBody {
                member: a.member.clone(),
                name: a.name.clone(),
                role: a.role.clone(),
                spheres: a.spheres.clone(),
                valid_from_ms: None,
                valid_until_ms: until,
            },
        )
        .await
        .map_err(failure)?;
    Ok(v["id"].as_str().unwrap_or_default().to_string())
}

pub async fn revoke(a: RevokeArgs) -> Result<()> {
    use node::Clock;
    let now = (node::SystemClock.now().unix_micros() / 1000).max(0) as u64;
    let effective = match (&a.at, &a.within) {
        (Some(at), _) => Some(crate::evidence::ms(at, "--at")?),
        (None, Some(w)) => Some(now.saturating_add(notice(w)?)),
        (None, None) => None,
    };
    let v = a
        .conn
        .client()?
        .revoke(
            &a.id.to_string(),
            &ReasonBody {
                reason: a.reason.clone(),
                effective_ms: effective,
            },
        )
        .await
        .map_err(failure)?;
    match effective {
        None => println!("accreditation {} revoked: {}", a.id, a.reason),
        Some(_) => println!(
            "accreditation {} revoked with notice, effective in {} (at {} ms): {}",
            a.id,
            countdown(
                v["effective_ms"]
                    .as_u64()
                    .unwrap_or(now)
                    .saturating_sub(now)
            ),
            v["effective_ms"],
            a.reason
        ),
    }
    Ok(())
}

/// A notice period: a number with a unit, m, h or d.
fn notice(s: &str) -> Result<u64> {
    use detente::exit::{Failure, Kind};
    let bad = || {
        Failure::error(
            Kind::Usage,
            format!("--within {s}: a number and m, h or d (e.g. 72h, 3d), at most 365d"),
        )
    };
    let (n, unit) = s.trim().split_at(s.trim().len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let ms = match unit {
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    if ms > 365 * 86_400_000 {
        return Err(bad());
    }
    Ok(ms)
}

pub async fn quota(a: QuotaArgs) -> Result<()> {
    a.conn
        .client()?
        .set_quota(
            &a.guest,
            &QuotaBody {
                quota: a.quota,
                ending: a.ending.iter().map(|u| u.to_string()).collect(),
            },
        )
        .await
        .map_err(failure)?;
    println!("mission of {}: quota {}", a.guest, a.quota);
    Ok(())
}

pub async fn mission(c: MissionCommand) -> Result<()> {
    match c {
        MissionCommand::Close {
            guest,
            reason,
            at,
            conn,
        } => {
            let effective = at
                .as_deref()
                .map(|s| crate::evidence::ms(s, "--at"))
                .transpose()?;
            conn.client()?
                .close_mission(
                    &guest,
                    &ReasonBody {
                        reason: reason.clone(),
                        effective_ms: effective,
                    },
                )
                .await
                .map_err(failure)?;
            println!("mission of {guest} closed: {reason}");
        }
        MissionCommand::List { json, conn } => {
            let v = conn.client()?.missions().await.map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for m in v["missions"].as_array().into_iter().flatten() {
                println!(
                    "mission of {} at {}: quota {}, {} active{}",
                    m["guest"].as_str().unwrap_or(""),
                    m["host"].as_str().unwrap_or(""),
                    m["quota"],
                    m["active"],
                    match (
                        m["closed"]["reason"].as_str(),
                        m["closed"]["in_effect"] == true
                    ) {
                        (Some(r), true) => format!(", CLOSED ({r})"),
                        (Some(r), false) => format!(
                            ", CLOSING in {} ({r})",
                            countdown(m["closed"]["leaves_in_ms"].as_u64().unwrap_or(0))
                        ),
                        _ => String::new(),
                    }
                );
                for a in m["accreditations"].as_array().into_iter().flatten() {
                    println!(
                        "  {} {} ({}) {} {}",
                        a["id"].as_str().unwrap_or(""),
                        a["name"].as_str().unwrap_or(""),
                        a["role"].as_str().unwrap_or(""),
                        if a["active"] == true {
                            "active"
                        } else {
                            "INACTIVE"
                        },
                        match (a["inactive_reason"].as_str(), &a["revoked"]) {
                            (Some(r), _) => r.to_string(),
                            (None, rev) if rev["in_effect"] == false => format!(
                                "EXPELLED with notice: leaves in {} ({})",
                                countdown(rev["leaves_in_ms"].as_u64().unwrap_or(0)),
                                rev["reason"].as_str().unwrap_or("")
                            ),
                            _ => String::new(),
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

/// `ms` as days, hours and minutes ("2d 3h 5m", "4m").
pub fn countdown(ms: u64) -> String {
    let m = ms.div_ceil(60_000);
    let (d, h, m) = (m / 1440, (m % 1440) / 60, m % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

pub async fn channel(c: ChannelCommand) -> Result<()> {
    let (a, state) = match c {
        ChannelCommand::Open(a) => (a, "open"),
        ChannelCommand::Suspend(a) => (a, "suspended"),
        ChannelCommand::Close(a) => (a, "closed"),
        ChannelCommand::Deadlines(d) => {
            sphere(&d.sphere)?;
            let effective =
                d.at.as_deref()
                    .map(|s| crate::evidence::ms(s, "--at"))
                    .transpose()?;
            let body = DeadlinesBody {
                flash_s: deadline(&d.flash, "--flash")?,
                immediate_s: deadline(&d.immediate, "--immediate")?,
                priority_s: deadline(&d.priority, "--priority")?,
                routine_s: deadline(&d.routine, "--routine")?,
                effective_ms: effective,
            };
            d.conn
                .client()?
                .set_deadlines(&d.peer, &d.sphere, &body)
                .await
                .map_err(failure)?;
            println!(
                "{} channel with {}: acknowledgement deadlines FLASH {}, IMMEDIATE {}, PRIORITY {}, ROUTINE {}",
                d.sphere, d.peer, d.flash, d.immediate, d.priority, d.routine
            );
            return Ok(());
        }
        ChannelCommand::Contact { constraint, conn } => {
            conn.client()?
                .designate_contact(&constraint.to_string())
                .await
                .map_err(failure)?;
            println!("constraint {constraint} is the line of contact");
            return Ok(());
        }
        ChannelCommand::List { json, conn } => {
            let v = conn.client()?.channels().await.map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for ch in v["channels"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<12} {:<10} {}",
                    ch["peer"].as_str().unwrap_or(""),
                    ch["sphere"].as_str().unwrap_or(""),
                    ch["state"].as_str().unwrap_or(""),
                    ch["since"]["reason"].as_str().unwrap_or("")
                );
            }
            return Ok(());
        }
    };
    sphere(&a.sphere)?;
    let effective =
        a.at.as_deref()
            .map(|s| crate::evidence::ms(s, "--at"))
            .transpose()?;
    let v = a
        .conn
        .client()?
        .channel_notice(
            &a.peer,
            &a.sphere,
            &ChannelBody {
                state: state.into(),
                effective_ms: effective,
                reason: a.reason.clone(),
            },
        )
        .await
        .map_err(failure)?;
    println!(
        "notice given: {} channel with {} {state}; it is now {}",
        a.sphere,
        a.peer,
        v["state"].as_str().unwrap_or("?")
    );
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum AirspaceCommand {
    /// Create operational intents or constraints from a GeoJSON file (Polygon or MultiPolygon features; see docs/gis.md).
    Import {
        /// The GeoJSON file (a FeatureCollection or a Feature).
        file: PathBuf,
        /// What to create: constraint, operational-intent, or contact (a LineString buffered by the node into the line of contact).
        #[arg(long = "as", value_parser = ["constraint", "operational-intent", "contact"])]
        kind: String,
        /// For a line of contact: the buffer each side of the line, in metres.
        #[arg(long)]
        buffer_m: Option<f64>,
        /// For a line of contact: the peer it is agreed with (proposed to it; it binds once the peer proposes the same, e.g. with `peer accept PEER --contact-line`). Without: this party's own line.
        #[arg(long)]
        peer: Option<String>,
        /// For a line of contact: its constraint's id, to replace an earlier declaration.
        #[arg(long)]
        id: Option<String>,
        /// Lower altitude (m above the WGS-84 ellipsoid) for features without altitude_lower_m.
        #[arg(long, allow_hyphen_values = true)]
        altitude_lower: Option<f64>,
        /// Upper altitude for features without altitude_upper_m.
        #[arg(long, allow_hyphen_values = true)]
        altitude_upper: Option<f64>,
        /// Start (RFC 3339) for features without time_start.
        #[arg(long)]
        from: Option<String>,
        /// End (RFC 3339) for features without time_end.
        #[arg(long)]
        to: Option<String>,
        /// The USS base URL the entities name (where their details are served); not for a line of contact.
        #[arg(long)]
        uss_base_url: Option<String>,
        /// For operational intents: the state (Accepted, Activated, …).
        #[arg(long, default_value = "Accepted")]
        state: String,
        /// For operational intents: the OVNs that prove awareness of what they intersect (repeatable).
        #[arg(long)]
        key: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Write the node's operational intents, constraints and conflicts as GeoJSON (RFC 7946) or KML, for QGIS, Google Earth or any GIS.
    Export {
        /// geojson or kml.
        #[arg(long, default_value = "geojson", value_parser = ["geojson", "kml"])]
        format: String,
        /// Only what lies in this box: west,south,east,north (degrees).
        #[arg(long, allow_hyphen_values = true)]
        bbox: Option<String>,
        /// Only what lasts beyond this time (RFC 3339; default now).
        #[arg(long)]
        from: Option<String>,
        /// Only what starts before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn airspace(c: AirspaceCommand) -> Result<()> {
    match c {
        AirspaceCommand::Import {
            file,
            kind,
            buffer_m,
            peer,
            id,
            altitude_lower,
            altitude_upper,
            from,
            to,
            uss_base_url,
            state,
            key,
            conn,
        } => {
            use detente::exit::{Failure, Kind};
            let text = std::fs::read_to_string(&file).map_err(|e| {
                Failure::error(
                    Kind::Unreachable,
                    format!("reading {}: {e}", file.display()),
                )
            })?;
            if kind == "contact" {
                let line = api::import::line_string(&text)
                    .map_err(|e| Failure::error(Kind::Usage, format!("{}: {e}", file.display())))?;
                let (Some(buffer_m), Some(time_end)) = (buffer_m, to) else {
                    return Err(Failure::error(
                        Kind::Usage,
                        "a line of contact needs --buffer-m and --to",
                    ));
                };
                let v = conn
                    .client()?
                    .contact_line(&api::wire::line::ContactLineBody {
                        peer: peer.clone(),
                        line,
                        buffer_m,
                        id,
                        altitude_lower_m: altitude_lower,
                        altitude_upper_m: altitude_upper,
                        time_start: from,
                        time_end,
                    })
                    .await
                    .map_err(failure)?;
                if let Some(peer) = peer {
                    println!(
                        "line of contact proposed to {peer}: buffered {buffer_m} m each side, {} vertices; {}",
                        v["vertices"],
                        contact_status(&peer, &v["contact_line"])
                    );
                    return Ok(());
                }
                println!(
                    "line of contact: constraint {} (version {}), buffered {} m each side, {} vertices",
                    v["constraint"].as_str().unwrap_or("?"),
                    v["version"],
                    buffer_m,
                    v["vertices"]
                );
                return Ok(());
            }
            let Some(uss_base_url) = uss_base_url else {
                return Err(Failure::error(
                    Kind::Usage,
                    "--uss-base-url is needed to create operational intents or constraints",
                ));
            };
            let defaults = api::import::Defaults {
                altitude_lower_m: altitude_lower,
                altitude_upper_m: altitude_upper,
                time_start: from,
                time_end: to,
            };
            let entities = api::import::features(&text, &defaults)
                .map_err(|e| Failure::error(Kind::Usage, format!("{}: {e}", file.display())))?;
            let client = conn.client()?;
            for e in entities {
                let id =
                    e.id.clone()
                        .unwrap_or_else(|| node::RandomIds.uuid_v4().to_string());
                let (path, what, body) = if kind == "constraint" {
                    (
                        "constraint_references",
                        "constraint",
                        serde_json::json!({ "extents": e.extents, "uss_base_url": uss_base_url }),
                    )
                } else {
                    (
                        "operational_intent_references",
                        "operational intent",
                        serde_json::json!({
                            "extents": e.extents, "key": key, "state": state,
                            "uss_base_url": uss_base_url,
                            "new_subscription": { "uss_base_url": uss_base_url, "notify_for_constraints": true },
                        }),
                    )
                };
                let v = client.put_entity(path, &id, &body).await.map_err(failure)?;
                let reference = if kind == "constraint" {
                    &v["constraint_reference"]
                } else {
                    &v["operational_intent_reference"]
                };
                println!(
                    "{what} {id}: {} volume(s), version {}, OVN {}",
                    e.extents.len(),
                    reference["version"],
                    reference["ovn"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        AirspaceCommand::Export {
            format,
            bbox,
            from,
            to,
            out,
            conn,
        } => {
            let q = api::export::ExportQuery { bbox, from, to };
            let text = conn
                .client()?
                .airspace_export(&format, &q)
                .await
                .map_err(failure)?;
            match out {
                Some(p) => {
                    std::fs::write(&p, text.as_bytes()).map_err(|e| {
                        detente::exit::Failure::error(
                            detente::exit::Kind::Unreachable,
                            format!("writing {}: {e}", p.display()),
                        )
                    })?;
                    eprintln!("wrote {}", p.display());
                }
                None => println!("{text}"),
            }
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum StatementCommand {
    /// Publish a public statement of this party (an entry of its log, in its feed).
    Publish {
        #[arg(long)]
        text: String,
        /// BCP 47 language tag.
        #[arg(long, default_value = "en")]
        lang: String,
        /// An entry it answers, as ORIGIN/INDEX/LEAF_HASH (as a feed shows it; repeatable).
        #[arg(long)]
        answers: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// A party's statements, newest first, from its node's public feed.
    List {
        /// Print the feed as the node returned it.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Write a party's statements as an evidence bundle (each entry and its inclusion proof) for `detente verify`.
    Fetch {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `ORIGIN/INDEX/LEAF_HASH` as a feed shows an entry. The hash is 44
/// characters of base64 (which may hold '/'), and origins may hold '/'
/// too: it is split from the end.
fn statement_ref(a: &str) -> Result<api::wire::line::StatementRefBody> {
    use detente::exit::{Failure, Kind};
    let parsed = a
        .len()
        .checked_sub(45)
        .filter(|&i| a.is_char_boundary(i) && a.as_bytes()[i] == b'/')
        .and_then(|i| {
            let (head, hash) = (&a[..i], &a[i + 1..]);
            let (origin, index) = head.rsplit_once('/')?;
            Some((origin, index.parse::<u64>().ok()?, hash))
        });
    match parsed {
        Some((origin, index, hash)) if !origin.is_empty() => {
            Ok(api::wire::line::StatementRefBody {
                origin: origin.to_string(),
                index,
                leaf_hash: hash.to_string(),
            })
        }
        _ => Err(Failure::error(
            Kind::Usage,
            format!(
                "--answers {a}: expected ORIGIN/INDEX/LEAF_HASH (the hash as a feed shows it: 44 characters of base64)"
            ),
        )),
    }
}

pub async fn statement(c: StatementCommand) -> Result<()> {
    match c {
        StatementCommand::Publish {
            text,
            lang,
            answers,
            conn,
        } => {
            let answers = answers
                .iter()
                .map(|a| statement_ref(a))
                .collect::<Result<Vec<_>>>()?;
            let v = conn
                .client()?
                .publish_statement(&api::wire::line::StatementBody {
                    id: None,
                    language: lang,
                    text,
                    answers,
                })
                .await
                .map_err(failure)?;
            println!(
                "statement {}/{}/{} published ({})",
                v["origin"].as_str().unwrap_or(""),
                v["index"],
                v["leaf_hash"].as_str().unwrap_or(""),
                v["id"].as_str().unwrap_or("")
            );
        }
        StatementCommand::List { json, conn } => {
            let v = conn.client()?.statements_feed().await.map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for i in v["items"].as_array().into_iter().flatten() {
                let d = &i["_detente"];
                println!(
                    "{}/{}/{}  {}  [{}]",
                    d["origin"].as_str().unwrap_or(""),
                    d["index"],
                    d["leaf_hash"].as_str().unwrap_or(""),
                    i["date_published"].as_str().unwrap_or(""),
                    i["language"].as_str().unwrap_or("")
                );
                for r in d["answers"].as_array().into_iter().flatten() {
                    println!(
                        "  answering {}/{}/{}",
                        r["origin"].as_str().unwrap_or(""),
                        r["index"],
                        r["leaf_hash"].as_str().unwrap_or("")
                    );
                }
                println!("  {}", i["content_text"].as_str().unwrap_or(""));
            }
        }
        StatementCommand::Fetch { out, conn } => {
            use base64::Engine;
            let v = conn.client()?.statements_feed().await.map_err(failure)?;
            let checkpoint = v["_detente"]["checkpoint"]
                .as_str()
                .unwrap_or("")
                .to_string();
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut n = 0;
            for i in v["items"].as_array().into_iter().flatten() {
                let d = &i["_detente"];
                let (Some(index), Some(proof)) = (d["index"].as_u64(), d["proof"].as_array())
                else {
                    continue; // newer than the checkpoint: in the next fetch
                };
                let entry = b64
                    .decode(d["entry"].as_str().unwrap_or(""))
                    .map_err(|e| anyhow!("item {index}: its entry: {e}"))?;
                let proof = proof
                    .iter()
                    .map(|h| {
                        b64.decode(h.as_str().unwrap_or(""))
                            .ok()
                            .and_then(|b| <[u8; 32]>::try_from(b).ok())
                            .ok_or_else(|| {
                                anyhow!("item {index}: a proof hash is not 32 bytes of base64")
                            })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let p = tlog::bundle::TlogProof {
                    extra: None,
                    index,
                    proof,
                    checkpoint: checkpoint.clone(),
                };
                std::fs::write(out.join(format!("{index}.entry")), &entry)
                    .with_context(|| format!("writing into {}", out.display()))?;
                std::fs::write(out.join(format!("{index}.tlog-proof")), p.to_text())
                    .with_context(|| format!("writing into {}", out.display()))?;
                n += 1;
            }
            eprintln!(
                "{n} statement(s) of {} written to {}: detente verify {} --key {}",
                v["_detente"]["origin"].as_str().unwrap_or("?"),
                out.display(),
                out.display(),
                v["_detente"]["log_key"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statement_refs_split_from_the_end_slashes_in_origin_and_hash_included() {
        let hash = "2tb45Gb1/biKmhYvB59YWe4nYuGPw0eGkDCt3qVHBiE=";
        let r = statement_ref(&format!("detente.test/alliance/8/{hash}")).unwrap();
        assert_eq!(
            (r.origin.as_str(), r.index, r.leaf_hash.as_str()),
            ("detente.test/alliance", 8, hash)
        );
        for bad in [
            "a/8/short",
            &format!("/8/{hash}"),
            &format!("a/x/{hash}"),
            "",
            &format!("a8{hash}"),
        ] {
            assert!(statement_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn notice_periods_and_countdowns_read_as_operators_write_them() {
        assert_eq!(notice("90m").unwrap(), 90 * 60_000);
        assert_eq!(notice("3d").unwrap(), 3 * 86_400_000);
        for bad in ["3 weeks", "d", "400d", "-1h", ""] {
            assert!(notice(bad).is_err(), "{bad}");
        }
        assert_eq!(countdown(3 * 86_400_000), "3d 0h 0m");
        assert_eq!(countdown(61 * 60_000), "1h 1m");
        assert_eq!(countdown(1), "1m");
    }
}
