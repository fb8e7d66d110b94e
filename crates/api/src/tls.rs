//! Node-to-node TLS with pinned keys, no certificate authority.
//!
//! Each node presents a self-signed X.509 certificate made from its own
//! Ed25519 node key (the key whose verifier string peers pin). Each side
//! accepts the other only if the TLS 1.3 handshake signature verifies with
//! a pinned node key whose SubjectPublicKeyInfo is the certificate's — so
//! only the holder of the pinned private key can complete the handshake,
//! whatever else the certificate says. The server requires a client
//! certificate of one of its pinned peers (mutual TLS). Only TLS 1.3 and
//! Ed25519 are offered; the provider (ring) is named in every config, so no
//! process-wide default is needed.

use ed25519_dalek::{Signature, VerifyingKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

/// A node's TLS identity: the certificate and key made from its node key.
#[derive(Debug)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// PKCS#8 v1 (RFC 8410 §7) of an Ed25519 private key from its seed.
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// The DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410 §4).
fn spki(key: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(key);
    der
}

impl Identity {
    /// The self-signed certificate of the node key with this `seed`; the
    /// node's name is its subject common name.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Identity, String> {
        let key = PrivatePkcs8KeyDer::from(pkcs8(seed));
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)
            .map_err(|e| format!("the node key as a TLS key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(vec!["detente-node".to_string()])
            .map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params
            .self_signed(&pair)
            .map_err(|e| format!("making the node's certificate: {e}"))?;
        Ok(Identity {
            cert: cert.der().clone(),
            key,
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `Ok` if `cert` carries `key` as its public key and the handshake
/// signature verifies with it.
fn verify_with(
    key: &[u8; 32],
    cert: &CertificateDer<'_>,
    message: &[u8],
    dss: &DigitallySignedStruct,
) -> bool {
    if dss.scheme != SignatureScheme::ED25519 || !contains(cert.as_ref(), &spki(key)) {
        return false;
    }
    let (Ok(vk), Ok(sig)) = (
        VerifyingKey::from_bytes(key),
        <[u8; 64]>::try_from(dss.signature()),
    ) else {
        return false;
    };
    node::tlog::ed25519::verify_strict(&vk, &[message], &Signature::from_bytes(&sig))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn refused(why: &str) -> rustls::Error {
    rustls::Error::General(why.to_string())
}

/// A node's TLS identity through a key hand-over: the previous key's while
/// the hand-over is under way (peers that have not taken it yet pin that
/// one), the new key's from the moment every peer has receipted it.
#[derive(Clone)]
pub struct Identities {
    now: Identity,
    old: Option<Identity>,
    handing_over: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("handing_over", &self.old.is_some())
            .finish_non_exhaustive()
    }
}

impl Identities {
    /// One identity, no hand-over.
    pub fn single(id: Identity) -> Self {
        Identities {
            now: id,
            old: None,
            handing_over: Arc::new(|| false),
        }
    }

    /// `old` while `handing_over()` says so, then `now`.
    pub fn handing_over(
        now: Identity,
        old: Identity,
        handing_over: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Self {
        Identities {
            now,
            old: Some(old),
            handing_over,
        }
    }

    /// Whether the old identity is presented now.
    pub fn presents_old(&self) -> bool {
        self.old.is_some() && (self.handing_over)()
    }

    /// The identity to present now.
    pub fn current(&self) -> &Identity {
        match &self.old {
            Some(old) if (self.handing_over)() => old,
            _ => &self.now,
        }
    }
}

/// Previous keys of peers that have since completed a handshake with their
/// new key: not taken for a handshake again (by this process).
fn retired() -> &'static std::sync::Mutex<std::collections::HashSet<[u8; 32]>> {
    static RETIRED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> =
        std::sync::OnceLock::new();
    RETIRED.get_or_init(Default::default)
}

fn is_retired(key: &[u8; 32]) -> bool {
    retired().lock().is_ok_and(|r| r.contains(key))
}

/// A peer's pinned key, and the key it handed over from while that one
/// may still open a connection: until the peer shows its new key in a
/// handshake, after which the previous one is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    pub key: [u8; 32],
    pub previous: Option<[u8; 32]>,
}

impl Pin {
    pub fn of(key: [u8; 32]) -> Self {
        Pin {
            key,
            previous: None,
        }
    }

    /// The keys `peer`'s record pins: its node key and the key it handed
    /// over from, if any.
    pub fn of_peer(peer: &liaison::state::Peer) -> Self {
        Pin {
            key: peer.verifier.key.to_bytes(),
            previous: peer.previous.as_ref().map(|h| h.verifier.key.to_bytes()),
        }
    }

    /// The keys a handshake may be signed with now.
    fn keys(&self) -> impl Iterator<Item = [u8; 32]> {
        std::iter::once(self.key).chain(self.previous.filter(|p| !is_retired(p)))
    }

    /// Whether `cert` carries one of [`Pin::keys`].
    fn names(&self, cert: &CertificateDer<'_>) -> bool {
        self.keys().any(|k| contains(cert.as_ref(), &spki(&k)))
    }

    /// Whether the handshake verifies with one of [`Pin::keys`]; one with
    /// the new key retires the previous.
    fn verifies(
        &self,
        cert: &CertificateDer<'_>,
        message: &[u8],
        dss: &DigitallySignedStruct,
    ) -> bool {
        if verify_with(&self.key, cert, message, dss) {
            if let (Some(p), Ok(mut r)) = (self.previous, retired().lock()) {
                r.insert(p);
            }
            return true;
        }
        self.previous
            .is_some_and(|p| !is_retired(&p) && verify_with(&p, cert, message, dss))
    }
}

/// The client's check of a server: the peer's pinned node key.
#[derive(Debug)]
struct PinnedServer {
    pin: Pin,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pin.names(end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(refused("the peer's certificate is not for its pinned key"))
        }
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(refused("TLS 1.2 is not offered"))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.pin.verifies(cert, message, dss) {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(refused(
                "the handshake is not signed by the peer's pinned key",
            ))
        }
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The keys a server accepts clients of (its pinned peers, read at each
/// handshake so that peers added later are accepted at once).
pub type PinnedKeys = Arc<dyn Fn() -> Vec<Pin> + Send + Sync>;

struct PinnedClients {
    keys: PinnedKeys,
}

impl std::fmt::Debug for PinnedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinnedClients")
    }
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let matches = (self.keys)().iter().filter(|p| p.names(end_entity)).count();
        // Exactly one: a certificate naming two pinned peers names nobody.
        if matches == 1 {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(refused("the client is not a pinned peer"))
        }
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(refused("TLS 1.2 is not offered"))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if (self.keys)()
            .iter()
            .any(|p| p.names(cert) && p.verifies(cert, message, dss))
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(refused(
                "the handshake is not signed by a pinned peer's key",
            ))
        }
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The server's certificate as [`Identities::current`] has it at each
/// handshake.
struct Resolver {
    ids: Identities,
    now: Arc<rustls::sign::CertifiedKey>,
    old: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        match &self.old {
            Some(old) if std::ptr::eq(self.ids.current(), self.ids.old.as_ref()?) => {
                Some(old.clone())
            }
            _ => Some(self.now.clone()),
        }
    }
}

fn certified(id: &Identity) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let key = provider()
        .key_provider
        .load_private_key(id.key())
        .map_err(|e| format!("the node's TLS identity: {e}"))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![id.cert.clone()],
        key,
    )))
}

/// The server side: this node's identity, clients pinned to `keys`.
pub fn server_config(
    ids: &Identities,
    keys: PinnedKeys,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let resolver = Resolver {
        ids: ids.clone(),
        now: certified(&ids.now)?,
        old: ids.old.as_ref().map(certified).transpose()?,
    };
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(PinnedClients { keys }))
        .with_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(cfg))
}

/// The client side towards one peer: its pinned node key (and the key it
/// handed over from); this node's identity as the client certificate.
pub fn client_config(id: &Identity, peer: Pin) -> Result<Arc<rustls::ClientConfig>, String> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer { pin: peer }))
        .with_client_auth_cert(vec![id.cert.clone()], id.key())
        .map_err(|e| format!("the node's TLS identity: {e}"))?;
    Ok(Arc::new(cfg))
}

/// How long a peer has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Most handshakes under way at once; connections beyond it are closed at
/// once (each waiting one costs a socket and a small task).
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Most handshakes under way at once from one source address
/// ([`crate::source::Source`]), so that one source cannot take all of
/// [`MAX_PENDING_HANDSHAKES`].
pub const MAX_PENDING_PER_SOURCE: usize = 32;

/// A TLS listener (served by [`crate::serve_tls`]). The accept loop only
/// accepts: each connection's handshake runs in a task of its own (within
/// [`HANDSHAKE_TIMEOUT`], at most [`MAX_PENDING_HANDSHAKES`] at once and
/// [`MAX_PENDING_PER_SOURCE`] from one source), and
/// the connections that complete one are handed to the server. Sockets
/// that never send a ClientHello therefore hold up nobody else. Failed
/// handshakes are logged with the reason and dropped.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream, std::net::SocketAddr)>,
    addr: Option<std::net::SocketAddr>,
    accepting: tokio::task::JoinHandle<()>,
}

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

impl TlsListener {
    pub fn new(tcp: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        let addr = tcp.local_addr().ok();
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(
            tcp,
            tokio_rustls::TlsAcceptor::from(config),
            tx,
        ));
        TlsListener {
            ready,
            addr,
            accepting,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    ready: tokio::sync::mpsc::Sender<(TlsStream, std::net::SocketAddr)>,
) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    let per_source = crate::source::PerSource::new(MAX_PENDING_PER_SOURCE);
    loop {
        let (conn, addr) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many peer TLS handshakes under way; closed a new connection");
            continue;
        };
        let source = crate::source::Source::of(addr.ip());
        let Some(held) = per_source.take(source) else {
            tracing::warn!(%source, "too many TLS handshakes under way from one source; closed its new connection");
            continue;
        };
        let _ = conn.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                Ok(Ok(tls)) => {
                    drop((permit, held));
                    let _ = tx.send((tls, addr)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%addr, error = %e, "refused a peer connection (TLS)")
                }
                Err(_) => tracing::warn!(%addr, "a peer's TLS handshake timed out"),
            }
        });
        if ready.is_closed() {
            return;
        }
    }
}

impl TlsListener {
    /// The next connection whose handshake completed; `None` once the
    /// accept loop has ended.
    pub async fn next(&mut self) -> Option<(TlsStream, std::net::SocketAddr)> {
        self.ready.recv().await
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.addr
            .ok_or_else(|| std::io::Error::other("the peer listener has no local address"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn handshake(
        server_id: &Identity,
        server_pins: Vec<[u8; 32]>,
        client_id: &Identity,
        client_pin: [u8; 32],
    ) -> bool {
        let pins = server_pins.into_iter().map(Pin::of).collect();
        handshake_with(
            &Identities::single(server_id.clone()),
            pins,
            client_id,
            Pin::of(client_pin),
        )
        .await
    }

    async fn handshake_with(
        server_id: &Identities,
        server_pins: Vec<Pin>,
        client_id: &Identity,
        client_pin: Pin,
    ) -> bool {
        let server = server_config(server_id, Arc::new(move || server_pins.clone())).unwrap();
        let client = client_config(client_id, client_pin).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from("detente-node").unwrap();
        let (s, c) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
        s.is_ok() && c.is_ok()
    }

    fn key_of(seed: u8) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes()
    }

    /// Sockets that never start a handshake hold up nobody: a peer's
    /// handshake behind 50 of them completes while they are still open
    /// (one at a time, each would hold the accept loop for
    /// [`HANDSHAKE_TIMEOUT`]: over 4 minutes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_sockets_do_not_hold_up_a_peers_handshake() {
        let (mut listener, addr) = alliance_listener().await;
        let mut idle = Vec::new();
        // From two other sources: one source may hold at most
        // MAX_PENDING_PER_SOURCE handshakes.
        for i in 0..50 {
            let from = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
            idle.push(connect_from(from, addr).await);
        }
        let client = federation_client();
        let connecting = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("detente-node").unwrap();
            client.connect(name, tcp).await.is_ok()
        });
        let (conn, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT * 3, listener.next())
            .await
            .expect("the peer's connection is handed over while the idle sockets wait")
            .unwrap();
        assert!(
            connecting.await.unwrap(),
            "the client completed its handshake"
        );
        drop((conn, idle));
    }

    /// A stop lets the request in hand finish and closes the connections,
    /// idle ones too, before the listener's task ends: a node closes its
    /// store only then, so no peer's request meets a closed store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_finishes_the_request_in_hand_and_closes_every_connection_first() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (listener, addr) = alliance_listener().await;
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, f) = (gate.clone(), finished.clone());
        // Every request, whatever its path, waits at the gate.
        let router = axum::Router::new().fallback(move || {
            let (g, f, started) = (g.clone(), f.clone(), started_tx.clone());
            async move {
                let _ = started.send(());
                let _permit = g.acquire().await;
                f.store(true, std::sync::atomic::Ordering::SeqCst);
                "done"
            }
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve_tls(listener, router, async move {
            let _ = stop_rx.await;
        }));
        let connect = || async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("detente-node").unwrap();
            federation_client().connect(name, tcp).await.unwrap()
        };
        let mut busy = connect().await;
        let mut idle = connect().await;
        busy.write_all(b"GET /slow HTTP/1.1\r\nhost: alliance\r\n\r\n")
            .await
            .unwrap();
        let mut started_rx = started_rx;
        started_rx
            .recv()
            .await
            .expect("the request reached its handler");
        stop_tx.send(()).unwrap();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            !server.is_finished(),
            "the listener waits for the request in hand"
        );
        gate.add_permits(1);
        server.await.unwrap().unwrap();
        assert!(
            finished.load(std::sync::atomic::Ordering::SeqCst),
            "the request was answered before the listener's task ended"
        );
        let mut answer = Vec::new();
        let _ = busy.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "the idle connection was closed: {rest:?}");
    }

    /// Alliance's listener, pinning Federation's key, on a free port.
    async fn alliance_listener() -> (TlsListener, std::net::SocketAddr) {
        let alliance = Identity::from_seed("alliance", &[1; 32]).unwrap();
        let server = server_config(
            &Identities::single(alliance),
            Arc::new(|| vec![Pin::of(key_of(2))]),
        )
        .unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = TlsListener::new(tcp, server);
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// Federation's client side, pinning Alliance's key.
    fn federation_client() -> tokio_rustls::TlsConnector {
        let federation = Identity::from_seed("federation", &[2; 32]).unwrap();
        tokio_rustls::TlsConnector::from(client_config(&federation, Pin::of(key_of(1))).unwrap())
    }

    async fn connect_from(source: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{source}:0").parse().unwrap()).unwrap();
        s.connect(to).await.unwrap()
    }

    /// One source holds at most MAX_PENDING_PER_SOURCE handshakes: its
    /// connections beyond are closed at once, while another source's
    /// handshake still completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_source_holds_at_most_its_share_of_handshakes() {
        use tokio::io::AsyncReadExt;
        let (mut listener, addr) = alliance_listener().await;
        let mut idle = Vec::new();
        for _ in 0..MAX_PENDING_PER_SOURCE {
            idle.push(connect_from("127.0.0.2", addr).await);
        }
        // The next one from that source is closed without a handshake: its
        // read sees the end of the stream while the first idle one, older,
        // is still open (a handshake timeout would have closed it first).
        let mut over = connect_from("127.0.0.2", addr).await;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(HANDSHAKE_TIMEOUT * 3, over.read(&mut buf))
            .await
            .expect("a connection over the source's share is closed");
        assert!(matches!(n, Ok(0) | Err(_)), "closed, not served: {n:?}");
        assert!(
            matches!(idle[0].try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the source's first connections are still waiting for their handshake"
        );
        let client = federation_client();
        let connecting = tokio::spawn(async move {
            let tcp = connect_from("127.0.0.1", addr).await;
            let name = ServerName::try_from("detente-node").unwrap();
            client.connect(name, tcp).await.is_ok()
        });
        let (conn, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT * 3, listener.next())
            .await
            .expect("another source's connection is handed over")
            .unwrap();
        assert!(connecting.await.unwrap());
        drop((conn, idle));
    }

    #[tokio::test]
    async fn only_pinned_keys_complete_the_handshake_both_ways() {
        let alliance = Identity::from_seed("alliance", &[1; 32]).unwrap();
        let federation = Identity::from_seed("federation", &[2; 32]).unwrap();
        let impostor = Identity::from_seed("federation", &[3; 32]).unwrap();
        // Each pins the other: it works.
        assert!(handshake(&alliance, vec![key_of(2)], &federation, key_of(1)).await);
        // A client that is not pinned by the server is refused.
        assert!(!handshake(&alliance, vec![key_of(2)], &impostor, key_of(1)).await);
        // A server that is not the pinned one is refused by the client.
        assert!(!handshake(&impostor, vec![key_of(2)], &federation, key_of(1)).await);
    }

    /// A key hand-over: the node presents its old identity while handing
    /// over, its new one after; a peer takes either while it holds both,
    /// and the old one no more once it has seen the new one.
    #[tokio::test]
    async fn a_handed_over_key_opens_connections_until_the_new_one_is_seen() {
        let alliance = Identity::from_seed("alliance", &[11; 32]).unwrap();
        let old = Identity::from_seed("federation", &[12; 32]).unwrap();
        let new = Identity::from_seed("federation", &[13; 32]).unwrap();
        let handing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let h = handing.clone();
        let federation = Identities::handing_over(
            new.clone(),
            old.clone(),
            Arc::new(move || h.load(std::sync::atomic::Ordering::SeqCst)),
        );
        let pin = Pin {
            key: key_of(13),
            previous: Some(key_of(12)),
        };
        // Handing over: Federation's server shows the old key, its client
        // the old key; Alliance, holding both, takes them.
        assert_eq!(federation.current().cert, old.cert);
        assert!(handshake_with(&federation, vec![Pin::of(key_of(11))], &alliance, pin).await);
        assert!(
            handshake_with(
                &Identities::single(alliance.clone()),
                vec![pin],
                federation.current(),
                Pin::of(key_of(11)),
            )
            .await
        );
        // A peer that only pins the old key still connects meanwhile.
        assert!(
            handshake_with(
                &federation,
                vec![Pin::of(key_of(11))],
                &alliance,
                Pin::of(key_of(12))
            )
            .await
        );
        // Every peer has it: the new identity, and once Alliance has seen
        // it the old key opens nothing more.
        handing.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(federation.current().cert, new.cert);
        assert!(handshake_with(&federation, vec![Pin::of(key_of(11))], &alliance, pin).await);
        let stale = Identities::single(old.clone());
        assert!(!handshake_with(&stale, vec![Pin::of(key_of(11))], &alliance, pin).await);
        assert!(
            !handshake_with(
                &Identities::single(alliance.clone()),
                vec![pin],
                &old,
                Pin::of(key_of(11)),
            )
            .await
        );
    }
}
