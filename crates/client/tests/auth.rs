//! The node's bearer tokens for calls to USSs, against a real OAuth 2.0
//! token endpoint started here (client credentials, RFC 6749 §4.4) and
//! real token files.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use client::auth::{TokenSource, Tokens};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A token endpoint on 127.0.0.1 for client `node-a` with secret `s3cret`:
/// it checks the client's Basic credentials and the form, answers token
/// `t<n>` (n counting issued tokens) living `expires_in` seconds. Answers
/// its URL and the count.
async fn token_endpoint(expires_in: u64) -> (String, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
    let counter = issued.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            // base64("node-a:s3cret")
                            let authorised = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                == Some("Basic bm9kZS1hOnMzY3JldA==");
                            let form_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let path_ok =
                                req.uri().path() == "/oauth/token" && req.method() == "POST";
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let form = String::from_utf8_lossy(&body).to_string();
                            let (status, answer) = if !path_ok {
                                (404, r#"{"error":"not_found"}"#.to_string())
                            } else if !authorised {
                                (401, r#"{"error":"invalid_client","message":"bad client credentials"}"#.to_string())
                            } else if form_type.as_deref()
                                != Some("application/x-www-form-urlencoded")
                                || !form.contains("grant_type=client_credentials")
                                || !form.contains(
                                    "scope=utm.strategic_coordination+utm.constraint_processing",
                                )
                                || !form.contains("audience=uss.example")
                            {
                                (
                                    400,
                                    format!(r#"{{"error":"invalid_request","form":{form:?}}}"#),
                                )
                            } else {
                                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                                (
                                    200,
                                    format!(
                                        r#"{{"access_token":"t{n}","token_type":"Bearer","expires_in":{expires_in}}}"#
                                    ),
                                )
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(http_body_util::Full::new(hyper::body::Bytes::from(
                                        answer,
                                    )))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (url, issued)
}

fn credentials(url: &str, secret: &str) -> TokenSource {
    TokenSource::ClientCredentials {
        token_url: url.into(),
        client_id: "node-a".into(),
        client_secret: secret.into(),
        scope: "utm.strategic_coordination utm.constraint_processing".into(),
        audience: Some("uss.example".into()),
    }
}

#[tokio::test]
async fn client_credentials_are_exchanged_once_and_the_token_kept_while_it_lives() {
    let (url, issued) = token_endpoint(3600).await;
    let tokens = Tokens::new(credentials(&url, "s3cret"), Duration::from_secs(10), &[]).unwrap();
    assert_eq!(tokens.bearer().await.unwrap(), "t1");
    assert_eq!(
        tokens.bearer().await.unwrap(),
        "t1",
        "kept, not fetched again"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    // A USS refused it: the next call fetches a new one.
    tokens.invalidate();
    assert_eq!(tokens.bearer().await.unwrap(), "t2");
}

#[tokio::test]
async fn a_token_about_to_expire_is_fetched_again() {
    // Living less than the refresh margin: every call needs a new one.
    let (url, issued) = token_endpoint(30).await;
    let tokens = Tokens::new(credentials(&url, "s3cret"), Duration::from_secs(10), &[]).unwrap();
    assert_eq!(tokens.bearer().await.unwrap(), "t1");
    assert_eq!(tokens.bearer().await.unwrap(), "t2");
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refused_credentials_say_what_the_endpoint_answered() {
    let (url, issued) = token_endpoint(3600).await;
    let tokens = Tokens::new(credentials(&url, "wrong"), Duration::from_secs(10), &[]).unwrap();
    let e = tokens.bearer().await.unwrap_err();
    let r = e.refusal().expect("a refusal");
    assert_eq!(
        (r.status, r.message.as_str()),
        (401, "bad client credentials"),
        "{e}"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 0);
    // An endpoint nobody listens at is unreachable, named.
    let gone = Tokens::new(
        credentials("http://127.0.0.1:9/oauth/token", "s3cret"),
        Duration::from_secs(5),
        &[],
    )
    .unwrap();
    let e = gone.bearer().await.unwrap_err();
    assert!(matches!(e, client::Error::Unreachable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_token_file_is_read_at_each_use_and_must_hold_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("uss.token");
    std::fs::write(&file, "eyJhbGciOi.first.token\n").unwrap();
    let tokens = Tokens::new(TokenSource::File(file.clone()), Duration::from_secs(5), &[]).unwrap();
    assert_eq!(tokens.bearer().await.unwrap(), "eyJhbGciOi.first.token");
    // Rotated in place: followed at once.
    std::fs::write(&file, "eyJhbGciOi.second.token").unwrap();
    assert_eq!(tokens.bearer().await.unwrap(), "eyJhbGciOi.second.token");
    for bad in ["", "  \n", "two tokens"] {
        std::fs::write(&file, bad).unwrap();
        let e = tokens.bearer().await.unwrap_err();
        assert!(
            matches!(e, client::Error::Token(_)) && e.to_string().contains("one token"),
            "{bad:?}: {e}"
        );
    }
    std::fs::remove_file(&file).unwrap();
    let e = tokens.bearer().await.unwrap_err();
    assert!(e.to_string().contains("uss.token"), "{e}");
}
