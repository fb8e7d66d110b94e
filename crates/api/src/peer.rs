//! The outbound peer client: one delivery task per peer and lane (FLASH,
//! IMMEDIATE, PRIORITY, ROUTINE — so urgent records never wait behind a
//! routine backlog). Each takes the lane's committed, unreceipted records
//! in sequence order, posts them to the peer's `/peer/v1/records`, and
//! keeps the signed receipts; on any failure it retries the same records
//! with exponential back-off and jitter. Records stay pending until
//! receipted, so after any outage everything above the peer's
//! acknowledged high-water mark is sent again.

use crate::tls::Identities;
use crate::wire::line::{RecordsBody, RecordsReply};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use liaison::Precedence;
use node::line::Line;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Most records posted at once.
pub const BATCH: usize = 512;

/// Lane tasks, aborted with their supervisor.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// One HTTP/1.1 connection to a peer, plain or over pinned TLS, kept open
/// between requests and made again after any failure. Public for test
/// harnesses that speak to a node as one of its peers.
pub struct PeerConn {
    url: String,
    tls: Option<tokio_rustls::TlsConnector>,
    host: String,
    port: u16,
    authority: String,
    base_path: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    /// When the connection last answered: one idle longer than
    /// [`PeerConn::idle_limit`] is replaced before use, so that this side
    /// closes it before the server does (a request sent as the server
    /// closes would fail and wait for a retry).
    last_used: Option<std::time::Instant>,
}

/// How long a kept-alive connection may idle before this side replaces it:
/// under the server's limit (10 s on a node's client listener,
/// [`crate::PEER_IDLE`] on its node-to-node listener).
const CLIENT_LISTENER_IDLE: Duration = Duration::from_secs(8);
const PEER_LISTENER_IDLE: Duration = Duration::from_secs(240);

impl PeerConn {
    pub fn new(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url}: not an http(s) URL"));
        };
        if https != tls.is_some() {
            return Err(format!("{url}: TLS settings do not match the scheme"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse::<u16>().map_err(|_| format!("{url}: bad port"))?,
            ),
            _ => (authority.to_string(), if https { 443 } else { 80 }),
        };
        Ok(PeerConn {
            url: url.to_string(),
            tls: tls.map(tokio_rustls::TlsConnector::from),
            host,
            port,
            authority: authority.to_string(),
            base_path: path.to_string(),
            sender: None,
            last_used: None,
        })
    }

    async fn connect(&mut self) -> Result<(), String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.url))?;
        let _ = tcp.set_nodelay(true);
        let sender = if let Some(tls) = &self.tls {
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| format!("{}: {e}", self.url))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", self.url))?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
        } else {
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
        };
        self.sender = Some(sender);
        Ok(())
    }

    /// POSTs a JSON `body` to `path` under the peer's URL: (status, body).
    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        self.send(hyper::Method::POST, path, body).await
    }

    /// GETs `path` under the peer's URL: (status, body).
    pub async fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        self.send(hyper::Method::GET, path, Vec::new()).await
    }

    async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), String> {
        let idle_limit = if self.tls.is_some() {
            PEER_LISTENER_IDLE
        } else {
            CLIENT_LISTENER_IDLE
        };
        let stale = self.last_used.is_none_or(|t| t.elapsed() >= idle_limit);
        if stale || self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err("no connection".into());
        };
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, bytes.to_vec()))
        })
        .await
        .unwrap_or_else(|_| Err(format!("{}: no answer within 10 s", self.url)));
        if result.is_err() {
            self.sender = None;
        } else {
            self.last_used = Some(std::time::Instant::now());
        }
        result
    }
}

/// Starts delivering to every peer, present and added later, over pinned
/// TLS to `https://` peers (with this node's `identity`). Aborting the
/// returned handle stops every delivery task.
pub fn spawn(
    line: Arc<Line>,
    me: String,
    identity: Option<Identities>,
    metrics: crate::metrics::LineMetrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut started: HashSet<String> = HashSet::new();
        let mut tasks = Tasks(Vec::new());
        loop {
            let notified = line.queued().notified();
            match line.peers() {
                Ok(peers) => {
                    for (peer, _) in peers {
                        if started.insert(peer.clone()) {
                            for lane in Precedence::ALL {
                                tasks.0.push(tokio::spawn(deliver(
                                    line.clone(),
                                    identity.clone(),
                                    me.clone(),
                                    peer.clone(),
                                    *lane,
                                    metrics.clone(),
                                )));
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading peers failed"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    })
}

/// The text of the note in which a node states its witness key.
pub fn witness_key_text(vkey: &str) -> String {
    format!("detente witness key\n{vkey}\n")
}

/// The witness key a peer states in `note`, checked against the peer's
/// pinned node key.
pub fn peer_witness_key(
    note: &[u8],
    pinned: &node::tlog::Verifier,
) -> Result<node::tlog::Verifier, String> {
    let (n, ok) = node::tlog::note::open(note, std::slice::from_ref(pinned))
        .map_err(|e| format!("its witness key note: {e}"))?;
    if ok.is_empty() {
        return Err("its witness key note is not signed by its pinned key".into());
    }
    let vkey = n
        .text
        .strip_prefix("detente witness key\n")
        .and_then(|t| t.strip_suffix('\n'))
        .ok_or("its witness key note is not a Detente witness key")?;
    let v = node::tlog::Verifier::parse(vkey).map_err(|e| format!("its witness key: {e}"))?;
    if v.kind != 0x04 {
        return Err("its witness key is not a cosignature/v1 key".into());
    }
    Ok(v)
}

/// Peering is mutual witnessing: every pinned peer, present and added
/// later, is asked (by the leader, every second while this log grows) to
/// cosign this node's checkpoints at its `/peer/v1/witness/…`, over the
/// same connection as the line. Aborting the handle stops them all.
pub fn spawn_cosigning(st: crate::Shared, identity: Option<Identities>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut started: HashSet<String> = HashSet::new();
        let mut tasks = Tasks(Vec::new());
        loop {
            if let Ok(peers) = st.line.peers() {
                for (peer, _) in peers {
                    if started.insert(peer.clone()) {
                        tasks
                            .0
                            .push(tokio::spawn(cosign(st.clone(), identity.clone(), peer)));
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn cosign(st: crate::Shared, identity: Option<Identities>, peer: String) {
    let mut conn: Option<PeerConn> = None;
    let mut made_for: Option<Target> = None;
    let mut key: Option<node::tlog::Verifier> = None;
    let mut last = 0u64;
    let mut warned = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !st.line.is_peer(&peer).unwrap_or(false) {
            (conn, key, last) = (None, None, 0);
            continue;
        }
        if !st.log.is_leader() {
            conn = None;
            continue;
        }
        let wanted = target(&st.line, identity.as_ref(), &peer);
        if conn.is_none() || made_for != wanted {
            made_for = wanted;
            conn = connection(&st.line, identity.as_ref(), &peer).ok();
            key = None;
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let outcome: Result<(), String> = async {
            if key.is_none() {
                let pinned = st
                    .line
                    .read(|s| s.peer(&peer).map(|p| p.verifier.clone()))
                    .map_err(|e| e.to_string())?
                    .ok_or("no longer a peer")?;
                let (status, body) = c.get("/peer/v1/witness/key").await?;
                if status != 200 {
                    return Err(format!("its witness key: {status}"));
                }
                key = Some(peer_witness_key(&body, &pinned)?);
            }
            let Some(k) = key.clone() else {
                return Ok(());
            };
            let post = |body: String| async move {
                c.post("/peer/v1/witness/add-checkpoint", body.into_bytes())
                    .await
                    .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
            };
            match st.log.submit_to_witness(&k, last, post).await {
                Ok(n) => {
                    if n > last {
                        st.metrics
                            .witnesses
                            .cosigned(&k.name, n, (st.line.now_ms() / 1000) as i64);
                    }
                    last = n;
                    Ok(())
                }
                Err(e) => {
                    st.metrics.witnesses.failed(&k.name);
                    Err(e.to_string())
                }
            }
        }
        .await;
        match outcome {
            Ok(()) => warned.clear(),
            Err(e) => {
                if e != warned {
                    tracing::warn!(%peer, error = %e, "cosigning by this peer failed; retrying");
                    warned = e;
                }
                // Its witness key is fetched again (a peer's key hand-over
                // changes it).
                (conn, key) = (None, None);
            }
        }
    }
}

/// Back-off after `failures` consecutive failures: 100 ms doubling up to
/// 30 s, times a jitter in [0.5, 1.5).
fn backoff(failures: u32, jitter: u128) -> Duration {
    let base = 100u64.saturating_mul(1 << failures.min(9)).min(30_000);
    let factor = 500 + (jitter % 1000) as u64;
    Duration::from_millis(base * factor / 1000)
}

/// POSTs a batch; `answered` tells whether the peer gave any HTTP answer.
async fn post(
    conn: &mut PeerConn,
    body: &RecordsBody,
    answered: &mut bool,
) -> Result<RecordsReply, String> {
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let (status, text) = conn.post("/peer/v1/records", bytes).await?;
    *answered = true;
    if (200..300).contains(&status) || status == 409 {
        serde_json::from_slice(&text).map_err(|e| format!("{status}: unreadable reply: {e}"))
    } else {
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&text).trim()
        ))
    }
}

/// The records named by `receipts` (each a peer's `line.receipt` entry) and
/// how many of them the peer refused.
fn receipted(receipts: &[Vec<u8>]) -> (u64, u64) {
    let (mut n, mut refused) = (0, 0);
    for r in receipts {
        if let Some(Ok((_, entry))) = liaison::decide::line_entry(r)
            && let liaison::Record::Receipt(rc) = entry.record
        {
            n += rc.items.len() as u64;
            refused += rc.items.iter().filter(|i| i.refused.is_some()).count() as u64;
        }
    }
    (n, refused)
}

/// What a connection to `peer` is made for: its URL and pinned keys as its
/// record now says, and whether this node presents its old identity (a
/// connection is made again when any of these changes).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    url: String,
    pin: crate::tls::Pin,
    old_identity: bool,
}

fn target(line: &Line, identity: Option<&Identities>, peer: &str) -> Option<Target> {
    line.read(|s| {
        s.peer(peer).map(|p| Target {
            url: p.url.clone(),
            pin: crate::tls::Pin::of_peer(p),
            old_identity: identity.is_some_and(|i| i.presents_old()),
        })
    })
    .ok()
    .flatten()
}

/// The connection to `peer` as its record now says (URL and pinned key).
fn connection(line: &Line, identity: Option<&Identities>, peer: &str) -> Result<PeerConn, String> {
    let Target { url, pin: key, .. } =
        target(line, identity, peer).ok_or_else(|| format!("{peer} is not a peer"))?;
    let tls = if url.starts_with("https://") {
        let id = identity.ok_or("this node has no TLS identity")?;
        Some(crate::tls::client_config(id.current(), key)?)
    } else {
        None
    };
    PeerConn::new(&url, tls)
}

async fn deliver(
    line: Arc<Line>,
    identity: Option<Identities>,
    me: String,
    peer: String,
    lane: Precedence,
    metrics: crate::metrics::LineMetrics,
) {
    let mut failures = 0u32;
    let mut conn: Option<PeerConn> = None;
    let mut made_for: Option<Target> = None;
    let mut warned_plain = false;
    loop {
        let notified = line.queued().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // A peer removed waits here, quietly, in case it is pinned again.
        if !line.is_peer(&peer).unwrap_or(true) {
            conn = None;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Of several replicas of a node, only the leader delivers.
        if !line.is_leader() {
            conn = None;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let batch = match line.outbox(&peer, lane, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%peer, %lane, error = %e, "reading the outbox failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            continue;
        }
        let wanted = target(&line, identity.as_ref(), &peer);
        if conn.is_none() || made_for != wanted {
            made_for = wanted;
            conn = match connection(&line, identity.as_ref(), &peer) {
                Ok(c) => {
                    if c.tls.is_none() && !warned_plain {
                        warned_plain = true;
                        tracing::warn!(%peer, url = %c.url, "this peer is reached over plain HTTP: its records are signed but travel in the clear; give it an https:// URL");
                    }
                    Some(c)
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "cannot reach this peer");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let body = RecordsBody {
            from: me.clone(),
            records: batch.iter().map(|(_, b)| B64.encode(b)).collect(),
        };
        let first = batch[0].0;
        let mut waiting = false;
        let mut answered = false;
        let posted = post(c, &body, &mut answered).await;
        metrics.reached(&peer, answered);
        let outcome = match posted {
            Ok(reply) => {
                let receipts: Result<Vec<Vec<u8>>, _> =
                    reply.receipts.iter().map(|r| B64.decode(r)).collect();
                match receipts {
                    Ok(r) if !r.is_empty() => {
                        let n = r.len();
                        let (records, refused) = receipted(&r);
                        match line
                            .keep_receipts(&peer, r, lane == Precedence::Flash)
                            .await
                        {
                            Ok(_) => {
                                metrics.receipted(&peer, lane.as_str(), records, refused);
                                if let Some(s) = reply.stopped {
                                    tracing::warn!(%peer, %lane, stopped = %s, "the peer took only part of a batch");
                                }
                                tracing::debug!(%peer, %lane, first, receipted = n, "records delivered");
                                Ok(())
                            }
                            Err(e) => Err(format!("its receipts were refused: {e}")),
                        }
                    }
                    Ok(_) => {
                        waiting = reply
                            .stopped
                            .as_ref()
                            .is_some_and(|s| s["code"] == "waiting");
                        Err(format!(
                            "no record was taken: {}",
                            reply.stopped.map(|s| s.to_string()).unwrap_or_default()
                        ))
                    }
                    Err(_) => Err("the receipts are not base64".into()),
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => failures = 0,
            // Waiting for a higher lane to catch up: no back-off needed.
            Err(e) if waiting => {
                tracing::debug!(%peer, %lane, first, error = %e, "waiting for a higher lane");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                failures += 1;
                metrics.failed(&peer, lane.as_str());
                let wait = backoff(failures, line.new_id().as_u128());
                tracing::warn!(%peer, %lane, first, records = batch.len(), failures, retry_ms = wait.as_millis() as u64, error = %e, "delivery failed; will resend");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds_with_jitter() {
        assert_eq!(backoff(1, 500), Duration::from_millis(200));
        assert_eq!(backoff(2, 500), Duration::from_millis(400));
        assert_eq!(backoff(30, 500), Duration::from_millis(30_000));
        assert_eq!(backoff(1, 0), Duration::from_millis(100));
        assert_eq!(backoff(1, 999), Duration::from_millis(299));
    }
}
