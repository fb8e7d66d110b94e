//! `detente`: the one binary. CLI, configuration, tracing and wiring — glue
//! only; every decision lives in the library crates.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod bench_disk;
mod bench_line;
mod bench_replicas;
mod bench_soak;
use detente::config;
mod demo;
mod demo_line;
mod evidence;
use detente::key;
mod line_cli;
mod plot;
mod run;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use config::{
    DEFAULT_AUDIENCE, DEFAULT_DATA, DEFAULT_LISTEN, DEFAULT_NAME, FileConfig, NodeConfig,
};
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc instead of glibc's allocator: per-thread free lists without
/// glibc's arena locks and chunk consolidation, which took ~14% of a line
/// node's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "detente",
    version,
    about = "Detente: the line that stays up — deconfliction (ASTM F3548-21 DSS) between parties that do not trust each other."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "DETENTE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: the F3548 DSS API under /dss/v1, conflicts, /healthz and /metrics.
    Serve(Box<ServeArgs>),
    /// Run the demo scenario: two parties deconflicting around a line of contact.
    Demo(demo::DemoArgs),
    /// Measure intent creation, area queries and the congested-area workload.
    Bench(bench::BenchArgs),
    /// Measure the line: messages/s node to peer and FLASH latency under load, against NATS JetStream.
    BenchLine(bench_line::BenchLineArgs),
    /// A load profile held for an hour (or --minutes): creates, queries, the
    /// line and checkpoints together; p99 and resident memory per minute,
    /// as CSV and a PNG chart, and whether anything drifted.
    BenchSoak(bench_soak::BenchSoakArgs),
    /// Development and testing only: mint a bearer token signed with a private key (PEM).
    DevToken(DevTokenArgs),
    /// Print the node's verifier key (C2SP vkey) — what peers pin and verifiers trust.
    Key(KeyArgs),
    /// Create or upgrade a node's PostgreSQL schema (serve also does it at start).
    Migrate(MigrateArgs),
    /// Print a shell completion script (e.g. `detente completions bash > /etc/bash_completion.d/detente`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `detente man > detente.1 && man ./detente.1`).
    Man,
    /// Print the OpenAPI 3.1 document of Detente's own APIs (as a node serves at /detente/v1/openapi.json).
    Openapi,
    /// Evidence bundles of the node's log.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// Check an evidence bundle offline against trusted keys; non-zero exit with the reason on any failure.
    Verify(evidence::VerifyArgs),
    /// Peers: other parties' nodes, pinned by key.
    #[command(subcommand)]
    Peer(line_cli::PeerCommand),
    /// Members: key generation and this party's member registry.
    #[command(subcommand)]
    Member(line_cli::MemberCommand),
    /// Sign (with a member key) and send a message on the line.
    Send(line_cli::SendArgs),
    /// The line's messages: precedence, delivery, receipt, acknowledgement deadline.
    Inbox(line_cli::InboxArgs),
    /// Sign (with a member key) and send an acknowledgement of a received message.
    Ack(line_cli::AckArgs),
    /// As host: accredit a guest party's member to its mission.
    Accredit(line_cli::AccreditArgs),
    /// As host: revoke an accreditation (expulsion), effective at once.
    Revoke(line_cli::RevokeArgs),
    /// As host: set a guest mission's positions quota.
    Quota(line_cli::QuotaArgs),
    /// As host: missions (close, list).
    #[command(subcommand)]
    Mission(line_cli::MissionCommand),
    /// Channel notices (open, suspend, close) and states.
    #[command(subcommand)]
    Channel(line_cli::ChannelCommand),
    /// The information office: public statements, published, listed and fetched with their proofs.
    #[command(subcommand)]
    Statement(line_cli::StatementCommand),
    /// The airspace for GIS tools: export as GeoJSON or KML.
    #[command(subcommand)]
    Airspace(line_cli::AirspaceCommand),
}

#[derive(Args, Debug)]
struct KeyArgs {
    /// The node's data folder.
    #[arg(long, env = "DETENTE_DATA", default_value = DEFAULT_DATA, global = true)]
    data: PathBuf,
    #[command(subcommand)]
    action: Option<KeyAction>,
}

#[derive(Subcommand, Debug)]
enum KeyAction {
    /// Prepare the node's next key: at its next start the node hands over
    /// to it, telling every peer in a record signed by the current key
    /// (docs/line.md, line.key.rotated). Prints the next key.
    Rotate,
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// The PostgreSQL database, e.g. postgres://detente@db/detente.
    #[arg(long, env = "DETENTE_DATABASE_URL")]
    database_url: String,
    /// The schema holding the node's tables.
    #[arg(long, env = "DETENTE_DATABASE_SCHEMA", default_value = config::DEFAULT_DATABASE_SCHEMA)]
    database_schema: String,
}

#[derive(Args, Debug)]
struct DevTokenArgs {
    /// Private key (RSA PEM) matching the node's --jwt-public-key.
    #[arg(long)]
    private_key: PathBuf,
    /// The client id: the manager of what this token writes.
    #[arg(long)]
    sub: String,
    /// Space-separated scopes, e.g. "utm.strategic_coordination utm.constraint_processing".
    #[arg(long)]
    scope: String,
    /// Audience; must match the node's --jwt-audience.
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// Lifetime in seconds (F3548: at most one hour).
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
}

fn dev_token(a: DevTokenArgs) -> Result<()> {
    use node::Clock;
    let pem = std::fs::read(&a.private_key)
        .with_context(|| format!("reading {}", a.private_key.display()))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem)
        .context("the private key must be an RSA key in PEM")?;
    let now = node::SystemClock.now().unix_micros() / 1_000_000;
    let claims = serde_json::json!({ "sub": a.sub, "scope": a.scope, "aud": a.audience, "iss": "detente-dev-token", "exp": now + a.ttl, "jti": format!("{now}-{}", a.sub) });
    println!(
        "{}",
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key
        )?
    );
    Ok(())
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file (see detente.example.toml).
    #[arg(long, env = "DETENTE_CONFIG")]
    config: Option<PathBuf>,
    /// The node's name: its log origin and key name, fixed when its key is created. [default: detente.local]
    #[arg(long, env = "DETENTE_NAME")]
    name: Option<String>,
    /// Data folder of the embedded store (created if missing). [default: detente-data]
    #[arg(long, env = "DETENTE_DATA")]
    data: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port. [default: 127.0.0.1:8080]
    #[arg(long, env = "DETENTE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Node-to-node listener (HTTPS, mutual TLS with pinned peer keys); peers reach this node at https://ADDR.
    /// The URL this node's own clients reach it at (default http:// and the listen address): where it serves the peers' operations it holds, as their managing USS (F3548 /uss/v1/…).
    #[arg(long, env = "DETENTE_PUBLIC_URL")]
    public_url: Option<String>,
    #[arg(long, env = "DETENTE_PEER_LISTEN")]
    peer_listen: Option<SocketAddr>,
    /// PEM public key (RSA, EC or Ed25519) that verifies bearer tokens.
    #[arg(long, env = "DETENTE_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// JWKS file whose keys verify bearer tokens (alternative or addition to the PEM key).
    #[arg(long, env = "DETENTE_JWT_JWKS")]
    jwt_jwks: Option<PathBuf>,
    /// Audience every token must carry (F3548: the DSS host name). [default: localhost]
    #[arg(long, env = "DETENTE_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// A peer log whose checkpoints this node cosigns as a witness: its verifier key (repeatable).
    #[arg(
        long = "witness-log",
        env = "DETENTE_WITNESS_LOGS",
        value_delimiter = ','
    )]
    witness_logs: Vec<String>,
    /// A witness this node submits its checkpoints to, as COSIGNER_VKEY@URL (repeatable).
    #[arg(long = "witness", env = "DETENTE_WITNESSES", value_delimiter = ',')]
    witnesses: Vec<String>,
    /// A witness policy file: outside witnesses (key and submission URL), groups and the quorum that makes a checkpoint witnessed.
    #[arg(long, env = "DETENTE_WITNESS_POLICY")]
    witness_policy: Option<PathBuf>,
    /// A registered member role whose members may take the host's decisions in the console (repeatable). [default: line administrator]
    #[arg(
        long = "console-admin-role",
        env = "DETENTE_CONSOLE_ADMIN_ROLES",
        value_delimiter = ','
    )]
    console_admin_roles: Vec<String>,
    /// PEM certificates to trust for outbound HTTPS (witnesses), beside the system's: a private certificate authority.
    #[arg(long, env = "DETENTE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// A file holding the node's bearer token for its calls to USSs (notifying local subscribers of peers' changes); read at each use.
    #[arg(long, env = "DETENTE_USS_TOKEN_FILE")]
    uss_token_file: Option<PathBuf>,
    /// Instead of a token file: the OAuth 2.0 token endpoint the node gets its USS token from by client credentials.
    #[arg(long, env = "DETENTE_USS_OAUTH_TOKEN_URL")]
    uss_oauth_token_url: Option<String>,
    /// The node's OAuth client id at that endpoint.
    #[arg(long, env = "DETENTE_USS_OAUTH_CLIENT_ID")]
    uss_oauth_client_id: Option<String>,
    /// A file holding the node's OAuth client secret.
    #[arg(long, env = "DETENTE_USS_OAUTH_CLIENT_SECRET_FILE")]
    uss_oauth_client_secret_file: Option<PathBuf>,
    /// The audience to ask a token for, where the pool's authority wants one.
    #[arg(long, env = "DETENTE_USS_OAUTH_AUDIENCE")]
    uss_oauth_audience: Option<String>,
    /// An MBTiles file of raster tiles (png, jpg or webp) the console's map draws under the Natural Earth borders.
    #[arg(long, env = "DETENTE_BASEMAP_MBTILES")]
    basemap_mbtiles: Option<PathBuf>,
    /// PostgreSQL (with PostGIS) instead of the embedded store, e.g. postgres://detente@db/detente; any number of replicas may share it.
    #[arg(long, env = "DETENTE_DATABASE_URL")]
    database_url: Option<String>,
    /// The schema holding this node's tables in that database. [default: detente]
    #[arg(long, env = "DETENTE_DATABASE_SCHEMA")]
    database_schema: Option<String>,
    /// DANGEROUS, local experiments only: accept tokens without checking their signature.
    #[arg(long)]
    insecure_dev_auth: bool,
    /// Serve /metrics only to a bearer token with scope detente.metrics (default: public, like /healthz).
    #[arg(long, env = "DETENTE_PRIVATE_METRICS")]
    private_metrics: bool,
}

/// The node's USS token source from its settings: a token file, or the
/// whole OAuth client-credentials group; a part of the group alone, or
/// both, is a usage error naming what is missing.
fn uss_tokens(
    file: Option<PathBuf>,
    url: Option<String>,
    id: Option<String>,
    secret_file: Option<PathBuf>,
    audience: Option<String>,
) -> Result<Option<client::auth::TokenSource>> {
    use client::auth::TokenSource;
    let oauth = url.is_some() || id.is_some() || secret_file.is_some();
    match (file, oauth) {
        (Some(_), true) => anyhow::bail!(
            "uss_token_file and uss_oauth_*: give one source of the node's USS token, not both"
        ),
        (Some(f), false) => Ok(Some(TokenSource::File(f))),
        (None, false) => Ok(None),
        (None, true) => {
            let (Some(token_url), Some(client_id), Some(secret_file)) = (url, id, secret_file)
            else {
                anyhow::bail!(
                    "uss_oauth_token_url, uss_oauth_client_id and uss_oauth_client_secret_file go together"
                );
            };
            let client_secret = std::fs::read_to_string(&secret_file)
                .with_context(|| format!("uss_oauth_client_secret_file {}", secret_file.display()))?
                .trim()
                .to_string();
            Ok(Some(TokenSource::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope: "utm.strategic_coordination utm.constraint_processing".into(),
                audience,
            }))
        }
    }
}

impl ServeArgs {
    /// Flags and environment over the file over the defaults.
    fn resolve(self) -> Result<NodeConfig> {
        let file = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Ok(NodeConfig {
            name: self
                .name
                .or(file.name)
                .unwrap_or_else(|| DEFAULT_NAME.into()),
            data: self
                .data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            listen: match self.listen.or(file.listen) {
                Some(a) => a,
                None => DEFAULT_LISTEN.parse().context("default listen address")?,
            },
            public_url: match self.public_url.or(file.public_url) {
                None => None,
                Some(u) => {
                    Some(api::wire::base_url(u, "public_url").map_err(|_| {
                        anyhow::anyhow!("public_url: must be an absolute http(s) URL")
                    })?)
                }
            },
            peer_listen: self.peer_listen.or(file.peer_listen),
            jwt_public_key: self.jwt_public_key.or(file.jwt_public_key),
            jwt_jwks: self.jwt_jwks.or(file.jwt_jwks),
            jwt_audience: self
                .jwt_audience
                .or(file.jwt_audience)
                .unwrap_or_else(|| DEFAULT_AUDIENCE.into()),
            insecure_dev_auth: self.insecure_dev_auth || file.insecure_dev_auth.unwrap_or(false),
            max_area_km2: file.max_area_km2.unwrap_or(100_000.0),
            max_vertices: file.max_vertices.unwrap_or(10_000),
            default_subscription_hours: match file.default_subscription_hours.unwrap_or(24) {
                h @ 1..=24 => h,
                h => anyhow::bail!(
                    "default_subscription_hours = {h}: it must be 1 to 24 (a subscription may last at most 24 hours)"
                ),
            },
            expiry_sweep_seconds: file.expiry_sweep_seconds.unwrap_or(60),
            expiry_grace_seconds: file.expiry_grace_seconds.unwrap_or(300),
            rate_limit_per_second: file.rate_limit_per_second.unwrap_or(1000),
            rate_limit_burst: file.rate_limit_burst.unwrap_or(2000),
            max_subscriptions_per_area: match file.max_subscriptions_per_area {
                Some(0) => anyhow::bail!(
                    "max_subscriptions_per_area = 0: a client needs at least one subscription"
                ),
                n => n.unwrap_or(node::DEFAULT_MAX_SUBSCRIPTIONS_PER_AREA),
            },
            max_reports_per_day: file
                .max_reports_per_day
                .unwrap_or(node::DEFAULT_MAX_REPORTS_PER_DAY),
            max_stored_points_per_client: file
                .max_stored_points_per_client
                .unwrap_or(node::DEFAULT_MAX_STORED_POINTS_PER_CLIENT),
            max_connections: match file.max_connections {
                Some(0) => anyhow::bail!("max_connections = 0: at least one connection is needed"),
                n => n,
            },
            max_connections_per_source: match file.max_connections_per_source {
                Some(0) => anyhow::bail!(
                    "max_connections_per_source = 0: at least one connection per source is needed"
                ),
                n => n,
            },
            witness_logs: if self.witness_logs.is_empty() {
                file.witness_logs.unwrap_or_default()
            } else {
                self.witness_logs
            },
            witnesses: if self.witnesses.is_empty() {
                file.witnesses.unwrap_or_default()
            } else {
                self.witnesses
            },
            console_admin_roles: if self.console_admin_roles.is_empty() {
                file.console_admin_roles
                    .unwrap_or_else(|| vec![config::DEFAULT_CONSOLE_ADMIN_ROLE.into()])
            } else {
                self.console_admin_roles
            },
            basemap_mbtiles: self.basemap_mbtiles.or(file.basemap_mbtiles),
            ca_file: self.ca_file.or(file.ca_file),
            witness_policy: self.witness_policy.or(file.witness_policy),
            uss_tokens: uss_tokens(
                self.uss_token_file.or(file.uss_token_file),
                self.uss_oauth_token_url.or(file.uss_oauth_token_url),
                self.uss_oauth_client_id.or(file.uss_oauth_client_id),
                self.uss_oauth_client_secret_file
                    .or(file.uss_oauth_client_secret_file),
                self.uss_oauth_audience.or(file.uss_oauth_audience),
            )?,
            private_metrics: self.private_metrics || file.private_metrics.unwrap_or(false),
            database: match self.database_url.or(file.database_url) {
                None => None,
                Some(url) => Some(
                    store::Location::new(
                        &url,
                        &self
                            .database_schema
                            .or(file.database_schema)
                            .unwrap_or_else(|| config::DEFAULT_DATABASE_SCHEMA.into()),
                    )
                    .map_err(|e| anyhow::anyhow!(e))?,
                ),
            },
        })
    }
}

/// Writes `text` to stdout; a reader that stops early (`| head`) is no error.
fn print_all(text: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// How `detente` logs on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_tracing(format: &LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if *format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs the command; a failure is printed as its chain of causes (never a
/// backtrace: these are an operator's errors, not the program's) and
/// exits with its kind's code (`detente::exit`).
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider (ring) for every outbound HTTPS connection.
    client::install_crypto();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::from(detente::exit::FAILED);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(detente::exit::code(&e))
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_tracing(&cli.log_format);
            let cfg = args.resolve()?;
            let node = run::start(&cfg).await?;
            if let Some(a) = node.peer_addr {
                println!("detente peer listener on https://{a}");
            }
            // Tests and scripts wait for this line; /healthz answers from now on.
            println!("detente listening on http://{}", node.addr);
            shutdown_signal().await;
            tracing::info!("shutting down");
            node.stop().await
        }
        Command::Demo(args) => {
            if std::env::var_os("RUST_LOG").is_some() {
                init_tracing(&cli.log_format);
            }
            demo::run(args).await
        }
        Command::Bench(args) => {
            if std::env::var_os("RUST_LOG").is_some() {
                init_tracing(&cli.log_format);
            }
            bench::run(args).await
        }
        Command::BenchSoak(args) => bench_soak::run(args).await,
        Command::BenchLine(args) => {
            if std::env::var_os("RUST_LOG").is_some() {
                init_tracing(&cli.log_format);
            }
            bench_line::run(args).await
        }
        Command::DevToken(args) => dev_token(args),
        Command::Evidence(evidence::EvidenceCommand::Export(args)) => evidence::export(args).await,
        Command::Verify(args) => detente::exit::mark(
            evidence::verify(args),
            detente::exit::Kind::NotVerified,
            "the evidence does not verify",
        ),
        Command::Peer(c) => line_cli::peer(c).await,
        Command::Member(c) => line_cli::member(c).await,
        Command::Send(a) => {
            for v in line_cli::send(a).await? {
                line_cli::print_sent(&v);
            }
            Ok(())
        }
        Command::Inbox(a) => line_cli::inbox(a).await,
        Command::Ack(a) => {
            let v = line_cli::ack(a).await?;
            println!(
                "acknowledged {}",
                v["message"]["id"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        Command::Accredit(a) => {
            let guest = a.guest().to_string();
            let id = line_cli::accredit(a).await?;
            println!("accredited to the mission of {guest}: {id}");
            Ok(())
        }
        Command::Revoke(a) => line_cli::revoke(a).await,
        Command::Quota(a) => line_cli::quota(a).await,
        Command::Mission(c) => line_cli::mission(c).await,
        Command::Channel(c) => line_cli::channel(c).await,
        Command::Airspace(c) => line_cli::airspace(c).await,
        Command::Statement(c) => line_cli::statement(c).await,
        Command::Migrate(args) => {
            init_tracing(&cli.log_format);
            let at = store::Location::new(&args.database_url, &args.database_schema)
                .map_err(|e| anyhow::anyhow!(e))?;
            store::postgres::migrate(&at)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("schema {} is up to date", at.schema);
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "detente", &mut text);
            print_all(&text)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut text)?;
            print_all(&text)
        }
        Command::Openapi => {
            let mut text = serde_json::to_vec_pretty(&api::openapi::document())?;
            text.push(b'\n');
            print_all(&text)
        }
        Command::Key(args) => match args.action {
            None => {
                println!("{}", key::verifier_key(&args.data)?);
                Ok(())
            }
            Some(KeyAction::Rotate) => {
                let next = key::rotate(&args.data)?;
                println!("{next}");
                eprintln!(
                    "the next node key is prepared; restart the node to hand over to it (every peer is told, signed by the current key)"
                );
                Ok(())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use client::auth::TokenSource;

    #[test]
    fn the_uss_token_comes_from_one_source_given_whole() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let file = Some(dir.path().join("token"));
        let url = || Some("https://auth.example/token".to_string());
        let id = || Some("node-a".to_string());
        assert!(uss_tokens(None, None, None, None, None).unwrap().is_none());
        assert!(matches!(
            uss_tokens(file.clone(), None, None, None, None).unwrap(),
            Some(TokenSource::File(_))
        ));
        match uss_tokens(None, url(), id(), Some(secret.clone()), Some("dss".into())).unwrap() {
            Some(TokenSource::ClientCredentials {
                client_secret,
                audience,
                ..
            }) => assert_eq!(
                (client_secret.as_str(), audience.as_deref()),
                ("s3cret", Some("dss"))
            ),
            other => panic!("{other:?}"),
        }
        let both = uss_tokens(file, url(), id(), Some(secret), None).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let part = uss_tokens(None, url(), None, None, None).unwrap_err();
        assert!(part.to_string().contains("go together"), "{part}");
    }
}
