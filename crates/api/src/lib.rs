//! Everything HTTP: the ASTM F3548-21 DSS API under `/dss/v1`, Detente's own
//! endpoints under `/detente/v1`, `/healthz` and `/metrics`; the JSON wire
//! types, bearer-JWT authentication, and the one mapping from errors to
//! status codes and machine-readable bodies.
//!
//! Handlers only parse, authenticate and call a `node` use case. Wire types
//! live here and nowhere else; domain types are not the JSON schema.

pub mod auth;
pub mod aux;
pub mod console;
pub mod contact;
mod dss;
mod error;
mod evidence;
pub mod export;
mod extract;
pub mod import;
mod limit;
mod line;
mod metrics;
pub mod openapi;
mod own;
pub mod peer;
pub mod source;
mod statements;
pub mod tls;
mod unread;
pub mod uss;
pub mod wire;

pub use auth::{AuthConfig, Authenticator, KeySource};

/// Entry points for fuzzing and corpus regression tests: each parses outside
/// input exactly as the server does and must never panic.
pub mod fuzzing {
    use crate::{extract, wire};

    /// A `PutOperationalIntentReferenceParameters` body, through to the
    /// node's request type.
    pub fn intent_body(bytes: &[u8]) -> bool {
        extract::parse::<wire::PutOperationalIntentReferenceParameters>(bytes)
            .and_then(wire::intent_request)
            .is_ok()
    }

    /// A query body's area of interest, through to the area searched (as
    /// read at a fixed "now", 2026-01-01T00:00:00Z).
    pub fn query_body(bytes: &[u8]) -> bool {
        let Ok(q) = extract::parse::<wire::QueryParameters>(bytes) else {
            return false;
        };
        let Some(a) = q.area_of_interest else {
            return false;
        };
        let Ok(v) = wire::volume(a, "area_of_interest") else {
            return false;
        };
        let now = airspace::Timestamp::from_unix_micros(1_767_225_600_000_000);
        airspace::decide::area_of_interest(v, now, &airspace::Limits::default(), "area_of_interest")
            .is_ok_and(|a| a.is_some())
    }

    /// An export's query (`bbox=…&from=…&to=…`), each value through its
    /// parser.
    pub fn export_query(bytes: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        let mut all = true;
        for pair in text.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            all &= match k {
                "bbox" => crate::export::parse_bbox(v).is_ok(),
                "from" | "to" => crate::export::parse_instant(v, k).is_ok(),
                _ => false,
            };
        }
        all
    }

    /// A GeoJSON file to import: as volumes, and as a line of contact.
    pub fn geojson_import(bytes: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        let d = crate::import::Defaults {
            altitude_lower_m: Some(0.0),
            altitude_upper_m: Some(100.0),
            time_start: Some("2026-01-01T00:00:00Z".into()),
            time_end: Some("2026-01-02T00:00:00Z".into()),
        };
        let volumes = crate::import::features(text, &d).is_ok();
        crate::import::line_string(text).is_ok() || volumes
    }

    /// A `SetUssAvailabilityStatusParameters` body.
    pub fn availability_body(bytes: &[u8]) -> bool {
        extract::parse::<wire::SetUssAvailabilityStatusParameters>(bytes).is_ok()
    }

    /// An Authorization header value.
    pub fn bearer_token(auth: &crate::Authenticator, bytes: &[u8]) -> bool {
        let Ok(v) = axum::http::HeaderValue::from_bytes(bytes) else {
            return false;
        };
        let mut h = axum::http::HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, v);
        auth.require(&h, &node::Scope::ALL).is_ok()
    }

    /// What a peer or a duty officer sends to the line: a peer's record
    /// (signed entry bytes), a `/peer/v1/records` body, a message or an
    /// acknowledgement body; a peer's shared airspace change is taken as
    /// far as the copy it would make. Whatever parses re-encodes to the
    /// same bytes.
    pub fn line_inputs(bytes: &[u8]) -> bool {
        let mut parsed = false;
        let record = |b: &[u8]| {
            let Some(Ok((e, l))) = liaison::decide::line_entry(b) else {
                return false;
            };
            assert_eq!(
                node::tlog::cbor::encode(&l.to_value()),
                node::tlog::cbor::encode(&e.entry.body),
                "a line entry that does not re-encode identically"
            );
            if let liaison::Record::Airspace { kind, body } = &l.record {
                let _ = node::share::incoming(
                    "peer.example",
                    kind,
                    body,
                    &airspace::AirspaceState::default(),
                );
            }
            true
        };
        parsed |= record(bytes);
        if let Ok(b) = extract::parse::<crate::wire::line::RecordsBody>(bytes) {
            use base64::Engine;
            for r in &b.records {
                if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(r) {
                    parsed |= record(&raw);
                }
            }
        }
        if let Ok(v) = extract::parse::<crate::wire::line::SendBody>(bytes) {
            parsed |= v.message.to_domain().is_ok();
        }
        if let Ok(v) = extract::parse::<crate::wire::line::AckBody>(bytes) {
            parsed |= v.ack.to_domain().is_ok();
        }
        parsed
    }

    /// What a browser sends the console: a login body, a session cookie.
    pub fn console_inputs(console: &crate::console::Console, bytes: &[u8]) -> bool {
        let mut parsed = false;
        if let Ok(b) = extract::parse::<crate::console::LoginBodyFuzz>(bytes) {
            parsed |= console.login_shape(&b, 0);
        }
        if let Ok(v) = axum::http::HeaderValue::from_bytes(bytes) {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::COOKIE, v);
            parsed |= console.session(&h, 0).is_some();
        }
        parsed
    }

    /// A subscription body.
    pub fn subscription_body(bytes: &[u8]) -> bool {
        let Ok(s) = extract::parse::<wire::PutSubscriptionParameters>(bytes) else {
            return false;
        };
        s.extents
            .map(|e| wire::volume(e, "extents").is_ok())
            .unwrap_or(false)
    }
}
pub use error::ApiError;
pub use limit::RateLimiter;
pub use metrics::Metrics;
pub use wire::line::{AckWire, BodyWire, MessageWire, RecordsBody, RecordsReply};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use node::Dss;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest request body accepted (a 10,000-vertex polygon is about 0.5 MB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every handler shares.
pub struct AppState {
    pub dss: Dss,
    pub log: node::Log,
    pub witness: node::Witness,
    pub line: Arc<node::line::Line>,
    pub auth: Authenticator,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    pub console: console::Console,
    /// The operator's local raster basemap, if one is configured.
    pub tiles: Option<Arc<dyn node::TileSource>>,
    /// Where this node's own clients reach it (its `public_url`): the
    /// `uss_base_url` of the peers' copies it holds, whose F3548 USS
    /// interface it serves (`/uss/v1/…`).
    pub uss_base_url: String,
}

impl AppState {
    /// Authenticates the request, checks it holds one of `any_of`, and
    /// charges the client's rate limit.
    pub fn require(
        &self,
        headers: &axum::http::HeaderMap,
        any_of: &[node::Scope],
    ) -> Result<node::Caller, ApiError> {
        let caller = match console::session_caller(self, headers) {
            Some(c) => {
                let c = c?;
                if !any_of.iter().any(|s| c.has(*s)) {
                    return Err(ApiError::Forbidden(
                        "your role may not do this: it is for the console's administrators".into(),
                    ));
                }
                c
            }
            None => self.auth.require(headers, any_of)?,
        };
        self.limiter.check(&caller.sub)?;
        Ok(caller)
    }

    /// Who is calling — a console session or a bearer token — scopes
    /// unchecked and no rate charged ([`AppState::require`] does both).
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<node::Caller, ApiError> {
        match console::session_caller(self, headers) {
            Some(c) => c,
            None => self.auth.authenticate(headers),
        }
    }
}

/// The paths served without a credential: health, metrics (which guard
/// themselves when private), the public evidence log and witness, the peer
/// endpoint (it takes only records signed by a pinned key), and the
/// console's page, static files and login. Everything else is refused with
/// 401 before its body is read; tests/routes.rs checks every route.
fn open_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/healthz"
            | "/metrics"
            | "/aux/v1/version"
            | "/peer/v1/records"
            | "/peer/v1/witness/key"
            | "/detente/v1/openapi.json"
            | "/statements/feed.json"
            | "/peer/v1/witness/add-checkpoint"
            | "/console"
            | "/console/api/challenge"
            | "/console/api/login"
            | "/console/api/logout"
    ) || path.starts_with("/log/")
        || path.starts_with("/witness/")
        || (path.starts_with("/console/") && !path.starts_with("/console/api/"))
}

/// Deny by default: a credential before anything else (handlers then check
/// the scope their use case needs). What nobody has authenticated is
/// limited by its source address: failed authentications (a source whose
/// failures have emptied its bucket is answered 429 before its token is
/// even checked) and the open endpoints that take a body (console login,
/// the witness; the peer endpoint limits by claimed peer and source).
async fn credential_first(
    axum::extract::State(st): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    let source = source_key(req.extensions());
    if !open_path(path) {
        let failures = format!("failed-auth@{source}");
        if let Err(e) = st.limiter.peek(&failures) {
            return e.into_response();
        }
        if let Err(e) = st.authenticate(req.headers()) {
            return match st.limiter.check(&failures) {
                Ok(()) => e,
                Err(limited) => limited,
            }
            .into_response();
        }
    } else if req.method() == axum::http::Method::POST
        && path != "/peer/v1/records"
        && let Err(e) = st.limiter.check(&format!("open@{source}"))
    {
        return e.into_response();
    }
    next.run(req).await
}

/// A request's source address as the rate limits key it ("in-process" for
/// a request that came over no connection).
pub(crate) fn source_key(ext: &axum::http::Extensions) -> String {
    source::Source::of_request(ext).map_or_else(|| "in-process".into(), |s| s.to_string())
}

pub type Shared = Arc<AppState>;

/// The node's whole HTTP surface.
pub fn router(state: Shared) -> Router {
    with_peer_endpoint(state, true)
}

/// The HTTP surface, with or without `/peer/v1/records` (a node with a
/// node-to-node TLS listener takes peers' records there only).
pub fn with_peer_endpoint(state: Shared, peer_records: bool) -> Router {
    let mut r = Router::new()
        .merge(dss::routes())
        .merge(uss::routes())
        .merge(aux::routes())
        .merge(own::routes())
        .merge(export::routes())
        .merge(statements::routes())
        .merge(evidence::routes())
        .merge(line::routes())
        .merge(console::routes());
    if peer_records {
        r = r.merge(line::peer_routes());
    }
    r.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        credential_first,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        console::csrf_guard,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        metrics::track,
    ))
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .layer(axum::middleware::from_fn(extract::refuse_declared_oversize))
    .with_state(state)
}

/// Limits on the client-facing listener (F3548 clients, the line's CLI,
/// the console, `/healthz`, `/metrics`).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Most connections open at once; a connection beyond it is closed at
    /// once, before anything is read from it.
    pub max_connections: usize,
    /// Most connections open at once from one source address
    /// ([`source::Source`]: an IPv4 address or an IPv6 /64), so that one
    /// source cannot take every connection; beyond it closed as above.
    pub max_per_source: usize,
    /// A request's head (request line and headers) must arrive whole this
    /// long after the connection starts waiting for it — for a new
    /// connection and between the requests of a kept-alive one alike.
    pub header_timeout: std::time::Duration,
}

/// File descriptors kept for everything but client connections: the
/// database, the peer listener and its connections, files.
const RESERVED_FDS: usize = 256;

impl ConnLimits {
    /// 10 s for a request head; as many connections as this process's
    /// open-files limit leaves beside [`RESERVED_FDS`] (at least 64, at
    /// most 16,384), so that the node never runs out of descriptors for
    /// its database and `/healthz` stays answerable.
    pub fn for_this_process() -> Self {
        let nofile = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| open_files_limit(&t));
        Self::with_max(
            nofile
                .map_or(1024, |n| n.saturating_sub(RESERVED_FDS))
                .clamp(64, 16_384),
        )
    }

    /// `max_connections` in all; an eighth of them (at least 16) per
    /// source; 10 s for a request head.
    pub fn with_max(max_connections: usize) -> Self {
        let max_connections = max_connections.max(1);
        ConnLimits {
            max_connections,
            max_per_source: (max_connections / 8).max(16).min(max_connections),
            header_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The soft "Max open files" limit in `/proc/self/limits`.
fn open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `router` on `listener` until `shutdown` completes, within
/// [`ConnLimits::for_this_process`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_limited(listener, router, shutdown, ConnLimits::for_this_process()).await
}

/// Serves `router` on `listener` until `shutdown` completes: HTTP/1.1, one
/// task per connection, at most `limits.max_connections` at once and
/// `limits.max_per_source` from one source, every request head within `limits.header_timeout` (which also closes idle
/// kept-alive connections and slow-header clients). On shutdown each
/// connection finishes the request it is answering; connections still open
/// after 10 s are dropped.
pub async fn serve_limited(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_source = source::PerSource::new(limits.max_per_source);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused = 0u64;
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        let (tcp, addr) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, most likely: wait, then go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if last_warned.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10)) {
                tracing::warn!(
                    %addr,
                    refused,
                    max = limits.max_connections,
                    "at the connection limit: closing new connections"
                );
                last_warned = Some(std::time::Instant::now());
            }
            continue;
        };
        let Some(held) = per_source.take(source::Source::of(addr.ip())) else {
            refused += 1;
            if last_warned.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10)) {
                tracing::warn!(
                    source = %source::Source::of(addr.ip()),
                    refused,
                    max = limits.max_per_source,
                    "a source at its connection limit: closing its new connections"
                );
                last_warned = Some(std::time::Instant::now());
            }
            continue;
        };
        // Small answers must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        spawn_connection(
            tcp,
            addr,
            router.clone(),
            limits.header_timeout,
            stop_rx.clone(),
            (slot, held),
        );
    }
    drain(stop_tx, &slots, limits.max_connections).await;
    Ok(())
}

/// A listener's shutdown, once it takes no more connections: tells every
/// connection to finish the request it is answering, then waits until all
/// `max` slots are back (every connection closed), at most 10 s.
async fn drain(stop: tokio::sync::watch::Sender<bool>, slots: &tokio::sync::Semaphore, max: usize) {
    let _ = stop.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), slots.acquire_many(all)).await;
}

/// Serves one connection's requests (HTTP/1.1, kept alive, every request
/// head within `header_timeout`), each request carrying the connection's
/// address for the handlers that limit by source; what a handler leaves of
/// a request body is read before its answer goes out, or the answer closes
/// the connection ([`unread::settle`]). On `stop` it finishes the
/// request it is answering. `held` (the connection's slots) is dropped when
/// the connection ends.
fn spawn_connection<I>(
    io: I,
    addr: std::net::SocketAddr,
    router: Router,
    header_timeout: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    held: impl Send + 'static,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let mut router = router.clone();
            let expects_continue = req
                .headers()
                .get(hyper::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(axum::extract::ConnectInfo(addr));
            let (body, left) = unread::track(body);
            let req = hyper::Request::from_parts(parts, axum::body::Body::new(body));
            async move {
                use tower_service::Service;
                let mut answer = router.call(req).await?;
                unread::settle(&mut answer, left, expects_continue).await;
                Ok::<_, std::convert::Infallible>(answer)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
        drop(held);
    });
}

/// Most connections open at once on the node-to-node listener (each from
/// a pinned peer: a peer keeps one per precedence lane).
pub const MAX_PEER_CONNECTIONS: usize = 256;

/// How long a pinned peer's connection may wait for its next request head
/// (idle, kept alive) on the node-to-node listener: long, so that a FLASH
/// after a quiet spell needs no new handshake (a peer replaces its
/// connection after 240 s idle, before this closes it).
pub const PEER_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// Serves `router` to the connections `listener` completes handshakes for
/// (the node-to-node listener), each as [`serve_limited`] serves one, at
/// most [`MAX_PEER_CONNECTIONS`] at once (more are closed). When `shutdown`
/// completes it takes no more connections, lets each finish the request it
/// is answering (idle ones close at once) and returns once they have all
/// closed, or after 10 s: a node closes its store only after that, so a
/// peer's request in hand is answered, never cut off by the closed store.
pub async fn serve_tls(
    mut listener: tls::TlsListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PEER_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tls, addr) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            next = listener.next() => match next {
                Some(x) => x,
                None => break,
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, max = MAX_PEER_CONNECTIONS, "at the peer connection limit: closed a peer's new connection");
            continue;
        };
        spawn_connection(tls, addr, router.clone(), PEER_IDLE, stop_rx.clone(), slot);
    }
    drain(stop_tx, &slots, MAX_PEER_CONNECTIONS).await;
    Ok(())
}

#[cfg(test)]
mod serve_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_open_files_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(text), Some(1024));
        assert_eq!(open_files_limit("nothing here"), None);
    }
}
