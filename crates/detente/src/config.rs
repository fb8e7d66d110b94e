//! Configuration: one TOML file (every key documented in
//! `detente.example.toml`), overridden by `DETENTE_*` environment variables
//! and flags (clap reads both). The only place that reads the environment.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file's keys. All optional: defaults work on a laptop.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub name: Option<String>,
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub peer_listen: Option<SocketAddr>,
    pub jwt_public_key: Option<PathBuf>,
    pub jwt_jwks: Option<PathBuf>,
    pub jwt_audience: Option<String>,
    pub insecure_dev_auth: Option<bool>,
    pub max_area_km2: Option<f64>,
    pub max_vertices: Option<usize>,
    pub default_subscription_hours: Option<i64>,
    pub expiry_sweep_seconds: Option<u64>,
    pub expiry_grace_seconds: Option<i64>,
    pub rate_limit_per_second: Option<u32>,
    pub rate_limit_burst: Option<u32>,
    pub max_subscriptions_per_area: Option<usize>,
    pub max_reports_per_day: Option<usize>,
    pub max_stored_points_per_client: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_source: Option<usize>,
    pub witness_logs: Option<Vec<String>>,
    pub witnesses: Option<Vec<String>>,
    pub witness_policy: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub uss_token_file: Option<PathBuf>,
    pub uss_oauth_token_url: Option<String>,
    pub uss_oauth_client_id: Option<String>,
    pub uss_oauth_client_secret_file: Option<PathBuf>,
    pub uss_oauth_audience: Option<String>,
    pub console_admin_roles: Option<Vec<String>>,
    pub basemap_mbtiles: Option<PathBuf>,
    pub private_metrics: Option<bool>,
    pub database_url: Option<String>,
    pub database_schema: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {} is not valid", path.display()))
    }

    /// The file's text; unknown keys are errors.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

/// The node's effective settings after merging file, environment and flags.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// How this node's own clients reach it (default `http://` and the
    /// bound listen address): the `uss_base_url` of the peers' copies.
    pub public_url: Option<String>,
    pub peer_listen: Option<SocketAddr>,
    pub jwt_public_key: Option<PathBuf>,
    pub jwt_jwks: Option<PathBuf>,
    pub jwt_audience: String,
    pub insecure_dev_auth: bool,
    pub max_area_km2: f64,
    pub max_vertices: usize,
    pub default_subscription_hours: i64,
    pub expiry_sweep_seconds: u64,
    pub expiry_grace_seconds: i64,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Most live explicit subscriptions of one client meeting one area.
    pub max_subscriptions_per_area: usize,
    /// Most reports one client may file in a day.
    pub max_reports_per_day: usize,
    /// Most outline points one client's live entities may hold.
    pub max_stored_points_per_client: usize,
    /// Most client connections at once (`None`: from the open-files limit).
    pub max_connections: Option<usize>,
    /// Most client connections from one source address (`None`: an eighth
    /// of `max_connections`, at least 16).
    pub max_connections_per_source: Option<usize>,
    pub witness_logs: Vec<String>,
    pub witnesses: Vec<String>,
    /// Which witnesses count (and are submitted to) and the quorum that
    /// makes a checkpoint witnessed (`tlog::policy`).
    pub witness_policy: Option<PathBuf>,
    /// PEM certificates the node trusts for its outbound HTTPS calls
    /// (witnesses, USSs, the token endpoint), beside the system's.
    pub ca_file: Option<PathBuf>,
    /// Where the node's bearer token for calls to USSs comes from (the
    /// notifications of peers' changes): a token file, or OAuth client
    /// credentials; neither: sent without a token.
    pub uss_tokens: Option<client::auth::TokenSource>,
    pub console_admin_roles: Vec<String>,
    pub basemap_mbtiles: Option<PathBuf>,
    /// `/metrics` only for a bearer token with scope `detente.metrics`.
    pub private_metrics: bool,
    /// PostgreSQL instead of the embedded store: its URL and the schema
    /// holding this node's tables.
    pub database: Option<store::Location>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA: &str = "detente-data";
pub const DEFAULT_AUDIENCE: &str = "localhost";
pub const DEFAULT_NAME: &str = "detente.local";
/// The registered member role that may take the host's decisions in the console.
pub const DEFAULT_CONSOLE_ADMIN_ROLE: &str = "line administrator";
pub const DEFAULT_DATABASE_SCHEMA: &str = "detente";

#[cfg(test)]
mod tests {
    use super::*;

    /// The example file documents every key and stays loadable.
    #[test]
    fn example_config_is_valid_and_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../detente.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = FileConfig::load(&path).unwrap();
        assert_eq!(parsed.listen, Some(DEFAULT_LISTEN.parse().unwrap()));
        assert_eq!(parsed.data.as_deref(), Some(Path::new(DEFAULT_DATA)));
        assert_eq!(parsed.jwt_audience.as_deref(), Some(DEFAULT_AUDIENCE));
        let keys = [
            "name",
            "data",
            "listen",
            "jwt_public_key",
            "jwt_jwks",
            "jwt_audience",
            "insecure_dev_auth",
            "private_metrics",
            "max_area_km2",
            "max_vertices",
            "default_subscription_hours",
            "max_connections",
            "max_connections_per_source",
            "max_subscriptions_per_area",
            "max_reports_per_day",
            "max_stored_points_per_client",
            "expiry_sweep_seconds",
            "expiry_grace_seconds",
            "witness_policy",
            "database_url",
            "database_schema",
        ];
        for k in keys {
            assert!(
                text.lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{k} ="))),
                "{k} is not documented"
            );
        }
        // A key the node does not know is an error, not silently ignored.
        assert!(toml::from_str::<FileConfig>("listn = \"127.0.0.1:1\"").is_err());
    }
}
