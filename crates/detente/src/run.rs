//! Wiring of one node: store, use cases, HTTP, the expiry sweeper.

use crate::config::NodeConfig;
use anyhow::{Context, Result, anyhow};
use api::{AppState, AuthConfig, Authenticator, KeySource, Metrics, RateLimiter};
use node::airspace::geometry::Limits;
use node::entries::LogSigner;
use node::{Dss, RandomIds, Settings, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct RunningNode {
    pub addr: SocketAddr,
    /// The node-to-node (TLS) listener's address, if configured.
    pub peer_addr: Option<SocketAddr>,
    /// Set once to stop both listeners.
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
    checkpointer: JoinHandle<()>,
    logouts: JoinHandle<()>,
    submitters: Vec<JoinHandle<()>>,
    deliveries: JoinHandle<()>,
    notifier: Option<JoinHandle<()>>,
    peer_server: Option<JoinHandle<std::io::Result<()>>>,
    store: Arc<dyn node::Store>,
}

impl RunningNode {
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.sweeper.abort();
        self.checkpointer.abort();
        self.logouts.abort();
        self.deliveries.abort();
        if let Some(n) = &self.notifier {
            n.abort();
        }
        for s in &self.submitters {
            s.abort();
        }
        // Both listeners finish the requests in hand (a peer's record, a
        // client's write) before the store closes under them.
        let served = self.server.await.context("server task")?.context("server");
        let peers_served = match self.peer_server {
            Some(p) => p.await.context("peer server task")?.context("peer server"),
            None => Ok(()),
        };
        // Queued writes are committed and the database closed cleanly.
        self.store.close().await;
        served.and(peers_served)
    }
}

pub async fn start(cfg: &NodeConfig) -> Result<RunningNode> {
    // The node key in force, and the one it hands over from while a
    // rotation (`detente key rotate`) is taken up or still under way.
    let node_keys = crate::key::load_for_start(&cfg.data, &cfg.name)?;
    let (key_name, seed) = (node_keys.name.clone(), node_keys.seed);
    let signer = tlog::NoteSigner::from_seed(&key_name, &seed).map_err(|e| anyhow!("{e}"))?;
    let previous = node_keys
        .previous
        .map(|p| tlog::NoteSigner::from_seed(&key_name, &p))
        .transpose()
        .map_err(|e| anyhow!("{e}"))?;
    let cosigner = crate::key::cosigner(&seed, &key_name)?;
    let witness_logs = cfg
        .witness_logs
        .iter()
        .map(|k| tlog::Verifier::parse(k.trim()).map_err(|e| anyhow!("witness_logs: {k}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    // The node's own member key (for the notices it sends by itself),
    // derived from the node seed like the cosigner's.
    let member_of = |seed: &[u8; 32]| {
        let mut m = b"detente node member v1\n".to_vec();
        m.extend_from_slice(seed);
        liaison::MemberSigner::from_seed(&tlog::hash::sha256(&m))
    };
    let node_member = member_of(&seed);
    let log_signer = LogSigner {
        previous: previous.clone(),
        signer,
        clock: Arc::new(SystemClock),
        member: Some(node_member.clone()),
    };
    let store: Arc<dyn node::Store> = match &cfg.database {
        None => Arc::new(
            store::open_sqlite(&cfg.data, log_signer.clone())
                .await
                .map_err(|e| anyhow!(e))
                .context("opening the embedded store")?,
        ),
        Some(at) => {
            // Offline tools (`evidence export --data`) find the store here.
            store::postgres::remember(&cfg.data, at).context("recording the database")?;
            Arc::new(
                store::open_postgres(at, log_signer.clone())
                    .await
                    .map_err(|e| anyhow!(e))
                    .with_context(|| {
                        format!("opening the PostgreSQL store (schema {})", at.schema)
                    })?,
            )
        }
    };
    let settings = Settings {
        limits: Limits {
            max_vertices: cfg.max_vertices,
            max_area_m2: cfg.max_area_km2 * 1e6,
            trusted: false,
        },
        default_subscription_s: cfg.default_subscription_hours * 3600,
        expiry_grace_s: cfg.expiry_grace_seconds,
        max_subscriptions_per_area: cfg.max_subscriptions_per_area,
        max_reports_per_day: cfg.max_reports_per_day,
        max_stored_points_per_client: cfg.max_stored_points_per_client,
        ..Settings::default()
    };
    let dss = Dss::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        settings,
    );
    let mut keys = Vec::new();
    if let Some(p) = &cfg.jwt_public_key {
        keys.push(KeySource::Pem(p.clone()));
    }
    if let Some(p) = &cfg.jwt_jwks {
        keys.push(KeySource::Jwks(p.clone()));
    }
    if keys.is_empty() && !cfg.insecure_dev_auth {
        tracing::warn!(
            "no JWT public key configured (--jwt-public-key or --jwt-jwks): every DSS request will be refused with 401"
        );
    }
    let auth = Authenticator::new(&AuthConfig {
        keys,
        audience: cfg.jwt_audience.clone(),
        insecure_dev: cfg.insecure_dev_auth,
    })
    .map_err(|e| anyhow!(e))?;
    let line = Arc::new(
        node::line::Line::new(store.clone(), Arc::new(SystemClock), Arc::new(RandomIds))
            .with_node_member(liaison::Member {
                key: node_member.key(),
                name: format!("{key_name} (automatic notices)"),
                role: "node".into(),
                spheres: vec![liaison::Sphere::DirectLine],
            }),
    );
    // A key hand-over: every peer told, signed by the old key, before
    // anything else is signed; then the new key becomes node.key.
    if let (Some(old), Some(old_seed)) = (&previous, node_keys.previous) {
        let member = liaison::Member {
            key: node_member.key(),
            name: format!("{key_name} (automatic notices)"),
            role: "node".into(),
            spheres: vec![liaison::Sphere::DirectLine],
        };
        let rotated = line
            .rotate_key(
                &old.verifier().to_vkey(),
                &log_signer.signer.verifier().to_vkey(),
                Some((member_of(&old_seed).key(), member)),
            )
            .await
            .map_err(|e| anyhow!("handing the node key over: {e}"))?;
        if rotated {
            tracing::info!(old = %old.verifier().to_vkey(), new = %log_signer.signer.verifier().to_vkey(), "node key handed over; every peer is told, signed by the old key");
        }
        if node_keys.rotating {
            crate::key::finish_rotation(&cfg.data).context("taking up the next node key")?;
        }
    }
    // The witness cosigns the configured logs and every pinned peer's.
    let witness = node::Witness::new(store.clone(), cosigner, witness_logs, Arc::new(SystemClock))
        .with_peers(line.clone());
    // The node's TLS identity is its node key (TLS 1.3 signs its own
    // context string, distinct from every format the node key signs).
    let identity = {
        let now = api::tls::Identity::from_seed(&key_name, &seed).map_err(|e| anyhow!(e))?;
        match node_keys.previous {
            None => api::tls::Identities::single(now),
            Some(p) => {
                let old = api::tls::Identity::from_seed(&key_name, &p).map_err(|e| anyhow!(e))?;
                let pins = line.clone();
                api::tls::Identities::handing_over(
                    now,
                    old,
                    Arc::new(move || !pins.read(|s| s.handover_complete()).unwrap_or(false)),
                )
            }
        }
    };
    let metrics = Metrics::new(cfg.private_metrics);
    store.observe_commits(metrics.commits());
    let deliveries = api::peer::spawn(
        line.clone(),
        log_signer.origin().to_string(),
        Some(identity.clone()),
        metrics.line.clone(),
    );
    let policy = match &cfg.witness_policy {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("witness_policy {}", p.display()))?;
            Some(
                tlog::policy::Policy::parse(&text)
                    .map_err(|e| anyhow!("witness_policy {}: {e}", p.display()))?,
            )
        }
    };
    let log = node::Log::new(store.clone(), log_signer).with_policy(policy);
    let tiles: Option<Arc<dyn node::TileSource>> = match &cfg.basemap_mbtiles {
        None => None,
        Some(p) => {
            let m = store::Mbtiles::open(p)
                .await
                .map_err(|e| anyhow!("basemap_mbtiles: {e}"))?;
            tracing::info!(file = %p.display(), info = ?node::TileSource::info(&m), "console basemap tiles");
            Some(Arc::new(m))
        }
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    // The peers' copies are served to this node's clients at its own URL.
    let uss_base_url = match &cfg.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{addr}"),
    };
    let state = Arc::new(AppState {
        dss,
        log,
        witness,
        line,
        auth,
        limiter: RateLimiter::new(cfg.rate_limit_per_second, cfg.rate_limit_burst),
        metrics,
        console: api::console::Console::new(&seed, &key_name, cfg.console_admin_roles.clone()),
        tiles,
        uss_base_url,
    });
    // Console sessions logged out through another replica, or before a
    // restart, are ended here before the first request and kept in step.
    let now = state.line.now_ms();
    state.console.absorb_logouts(
        state
            .dss
            .marks(node::Mark::ConsoleLogout, now)
            .await
            .map_err(|e| anyhow!("reading the console's logouts: {e}"))?,
        now,
    );
    let st = state.clone();
    let logouts = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(
            api::console::LOGOUT_SYNC_MS,
        ));
        loop {
            tick.tick().await;
            let now = st.line.now_ms();
            match st.dss.marks(node::Mark::ConsoleLogout, now).await {
                Ok(ended) => st.console.absorb_logouts(ended, now),
                Err(e) => tracing::warn!(error = %e, "reading the console's logouts failed"),
            }
        }
    });
    let (stop, stopped) = watch::channel(false);
    let stopping = |mut rx: watch::Receiver<bool>| async move {
        // A dropped sender stops too.
        let _ = rx.wait_for(|s| *s).await;
    };
    // With a node-to-node TLS listener, peers' records are taken there only.
    let router = api::with_peer_endpoint(state.clone(), cfg.peer_listen.is_none());
    let peer_router = api::router(state.clone());
    let (mut peer_addr, mut peer_server) = (None, None);
    if let Some(a) = cfg.peer_listen {
        let tcp = tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("binding the peer listener {a}"))?;
        peer_addr = Some(tcp.local_addr()?);
        let pins = state.line.clone();
        let keys: api::tls::PinnedKeys = Arc::new(move || {
            pins.read(|s| s.peers().map(api::tls::Pin::of_peer).collect())
                .unwrap_or_default()
        });
        let tls = api::tls::server_config(&identity, keys).map_err(|e| anyhow!(e))?;
        let shutdown = stopping(stopped.clone());
        peer_server = Some(tokio::spawn(async move {
            api::serve_tls(api::tls::TlsListener::new(tcp, tls), peer_router, shutdown).await
        }));
    }
    let mut limits = match cfg.max_connections {
        Some(n) => api::ConnLimits::with_max(n),
        None => api::ConnLimits::for_this_process(),
    };
    if let Some(n) = cfg.max_connections_per_source {
        limits.max_per_source = n;
    }
    let server = tokio::spawn(api::serve_limited(
        listener,
        router,
        stopping(stopped),
        limits,
    ));
    // Each configured witness gets the newest checkpoint every second and its
    // cosignature is kept with it.
    let roots = match &cfg.ca_file {
        Some(p) => std::fs::read(p).with_context(|| format!("ca_file {}", p.display()))?,
        None => Vec::new(),
    };
    let mut submitters = Vec::new();
    // Detente nodes named with --witness (at their /witness prefix), and
    // the policy's witnesses that have a submission URL.
    let mut targets: Vec<(tlog::Verifier, String)> = Vec::new();
    for w in &cfg.witnesses {
        let (key, url) = w
            .rsplit_once('@')
            .ok_or_else(|| anyhow!("witnesses: {w}: expected COSIGNER_VKEY@URL"))?;
        let key = tlog::Verifier::parse(key.trim()).map_err(|e| anyhow!("witnesses: {w}: {e}"))?;
        targets.push((key, format!("{}/witness", url.trim_end_matches('/'))));
    }
    if let Some(p) = state.log.policy() {
        for w in &p.witnesses {
            if let Some(url) = &w.url
                && !targets
                    .iter()
                    .any(|(k, _)| k.key_id == w.verifier.key_id && k.key == w.verifier.key)
            {
                targets.push((w.verifier.clone(), url.clone()));
            }
        }
    }
    for (key, prefix) in targets {
        let witness = client::Client::trusting(&prefix, std::time::Duration::from_secs(10), &roots)
            .map_err(|e| anyhow!("witness {}: {e}", key.name))?;
        let st = state.clone();
        submitters.push(tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if !st.log.is_leader() {
                    continue;
                }
                let post = |body: String| {
                    let witness = witness.clone();
                    async move { witness.add_checkpoint(body).await.map_err(|e| e.to_string()) }
                };
                match st.log.submit_to_witness(&key, last, post).await {
                    Ok(n) => {
                        if n > last {
                            st.metrics.witnesses.cosigned(&key.name, n, (st.line.now_ms() / 1000) as i64);
                        }
                        last = n;
                    }
                    Err(e) => {
                        st.metrics.witnesses.failed(&key.name);
                        tracing::warn!(witness = %key.name, error = %e, "witnessing failed; retrying");
                    }
                }
            }
        }));
    }
    // Every pinned peer is asked to cosign too (peering is mutual
    // witnessing), over the line's own connection.
    submitters.push(api::peer::spawn_cosigning(
        state.clone(),
        Some(identity.clone()),
    ));
    // Lines of contact agreed with peers bind as the node's own constraints.
    submitters.push(api::contact::spawn_binding(state.clone()));
    // Local subscribers hear of the peers' changes from this node, the
    // copies' managing USS (every replica sends what its writer committed).
    let notifier = match store.take_copy_notices() {
        None => None,
        Some(notices) => {
            let tokens = match &cfg.uss_tokens {
                None => None,
                Some(src) => Some(Arc::new(
                    client::auth::Tokens::new(
                        src.clone(),
                        std::time::Duration::from_secs(10),
                        &roots,
                    )
                    .map_err(|e| anyhow!("the USS token source: {e}"))?,
                )),
            };
            let n = client::notify::Notifier::new(
                &state.uss_base_url,
                tokens,
                std::time::Duration::from_secs(10),
                &roots,
            )
            .map_err(|e| anyhow!(e))?;
            // Each notification, delivered or given up, is logged.
            let line = state.line.clone();
            let st = state.clone();
            Some(tokio::spawn(n.run(notices, move |n| {
                st.metrics.notified(n.error.is_none());
                match &n.error {
                    None => tracing::info!(subscriber = %n.subscriber, entity = %n.entity, status = ?n.status, attempts = n.attempts, "notified a local subscriber of a peer's change"),
                    Some(why) => tracing::warn!(subscriber = %n.subscriber, entity = %n.entity, error = %why, "could not notify a local subscriber of a peer's change"),
                }
                let line = line.clone();
                tokio::spawn(async move {
                    if let Err(e) = line.uss_notified(n).await {
                        tracing::warn!(error = %e, "could not log a notification of a local subscriber");
                    }
                });
            })))
        }
    };
    // A checkpoint at least every second while there are new entries.
    let cp_state = state.clone();
    // The key handed over from is removed once every peer has receipted
    // the hand-over and a checkpoint of the new key covers it.
    let mut previous_kept = node_keys.previous.is_some();
    let data = cfg.data.clone();
    let checkpointer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            if previous_kept
                && !cp_state.log.handing_over()
                && cp_state
                    .line
                    .read(|s| s.handovers().last().map(|h| h.index))
                    .ok()
                    .flatten()
                    .is_some_and(|at| cp_state.log.checkpoint_size() > at)
            {
                match crate::key::retire_previous(&data) {
                    Ok(_) => {
                        tracing::info!(
                            "every peer has the new node key: the previous key is removed"
                        );
                        previous_kept = false;
                    }
                    Err(e) => tracing::warn!(error = %e, "removing the previous node key failed"),
                }
            }
            if !cp_state.log.is_leader() {
                continue;
            }
            if let Err(e) = cp_state.log.checkpoint_tick().await {
                tracing::warn!(error = %e, "signing a checkpoint failed");
            }
        }
    });
    let every = std::time::Duration::from_secs(cfg.expiry_sweep_seconds.max(1));
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !state.log.is_leader() {
                continue;
            }
            match state.dss.expire().await {
                Ok((0, 0, 0)) => {}
                Ok((i, c, s)) => tracing::info!(
                    intents = i,
                    constraints = c,
                    subscriptions = s,
                    "expired entities removed"
                ),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    });
    tracing::info!(%addr, data = %cfg.data.display(), "node ready");
    Ok(RunningNode {
        addr,
        stop,
        server,
        sweeper,
        checkpointer,
        logouts,
        submitters,
        deliveries,
        notifier,
        peer_addr,
        peer_server,
        store,
    })
}
