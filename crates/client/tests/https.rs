//! The typed client over HTTPS against a real TLS server started here, with
//! a certificate authority and a server certificate made for the test:
//! trusted through the client's extra roots it answers; otherwise the
//! connection is refused, and the error says it was the certificate.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

/// A certificate authority and a server certificate it signed for
/// 127.0.0.1 and localhost: (the authority's PEM, the server's chain, key).
fn pki() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "detente test authority");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let pem = |der: &[u8]| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    (
        pem(ca_cert.der()),
        vec![leaf_cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
}

/// Serves HTTPS on 127.0.0.1 until the test ends: `/healthz` and
/// `/log/key` as a node answers them. Answers the port.
async fn https_server(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> u16 {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                    let (ctype, body) = match req.uri().path() {
                        "/healthz" => ("application/json", r#"{"status":"ok"}"#.to_string()),
                        "/log/key" => ("text/plain", "test.example+01234567+AAAA\n".to_string()),
                        _ => ("text/plain", "not found\n".to_string()),
                    };
                    let status = if body.starts_with("not found") {
                        404
                    } else {
                        200
                    };
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", ctype)
                            .body(http_body_util::Full::new(bytes_of(body)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

fn bytes_of(s: String) -> hyper::body::Bytes {
    hyper::body::Bytes::from(s)
}

#[tokio::test]
async fn a_node_behind_https_is_reached_when_its_certificate_chains_to_a_trusted_root() {
    let (ca_pem, chain, key) = pki();
    let port = https_server(chain, key).await;
    let base = format!("https://127.0.0.1:{port}");
    let node = client::Client::trusting(&base, Duration::from_secs(10), ca_pem.as_bytes()).unwrap();
    assert_eq!(node.healthz().await.unwrap()["status"], "ok");
    assert_eq!(node.log_key().await.unwrap(), "test.example+01234567+AAAA");
    let refused = node.line_status().await.unwrap_err();
    assert_eq!(refused.refusal().map(|r| r.status), Some(404), "{refused}");
}

#[tokio::test]
async fn a_certificate_nobody_trusts_is_refused_and_the_error_says_so() {
    let (_, chain, key) = pki();
    let port = https_server(chain, key).await;
    let base = format!("https://127.0.0.1:{port}");
    // The system's roots only: the test's authority is not among them.
    let node = client::Client::new(&base, Duration::from_secs(10)).unwrap();
    let e = node.healthz().await.unwrap_err();
    assert!(matches!(e, client::Error::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // Another authority's certificate proves nothing either.
    let (other_ca, _, _) = pki();
    let node =
        client::Client::trusting(&base, Duration::from_secs(10), other_ca.as_bytes()).unwrap();
    assert!(node.healthz().await.is_err());
    // What is not a certificate is refused when the client is made.
    assert!(
        client::Client::trusting(&base, Duration::from_secs(10), b"not a certificate").is_err()
    );
}
