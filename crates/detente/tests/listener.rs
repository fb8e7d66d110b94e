//! The client listener holds against clients that send nothing, send
//! slowly, hold connections, or declare more than they may: a few sockets
//! or a few bytes cost the node nothing it cannot take back.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;
use test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SC: &str = "utm.strategic_coordination";

/// Longest any of these waits may take before the test fails: far past
/// the node's 10 s limit on a request head, so a slow machine still passes.
const GUARD: Duration = Duration::from_secs(60);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

fn addr(node: &TestNode) -> String {
    node.base.trim_start_matches("http://").to_string()
}

/// Reads until the node closes the connection; what it sent before.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the node kept the connection open; it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let node = TestNode::start(bin());
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    let head = format!(
        "POST /dss/v1/operational_intent_references/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n",
        token("uss1", SC)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // Not one byte of the body is sent: the answer comes anyway.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(GUARD, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"field\":\"Content-Length\""), "{answer}");
    assert!(
        answer.contains("connection: close\r\n"),
        "the unread gigabyte ends the connection, and the answer says so: {answer}"
    );
}

/// One whole answer (head, and a body of its `content-length`) from `s`.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        match tokio::time::timeout(GUARD, s.read(&mut buf)).await {
            Err(_) => panic!("no whole answer; got {text:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed before a whole answer; got {text:?}"),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request refused before its body is read (403: a token without the
/// scope), the body sent after the head as most clients send it.
fn refused_delete(body: &str, expect_continue: bool) -> String {
    format!(
        "DELETE /dss/v1/constraint_references/4348c8e5-0b1c-43cf-9114-2e67a4532765/ovn1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        token("uss1", SC),
        body.len(),
        if expect_continue {
            "Expect: 100-continue\r\n"
        } else {
            ""
        }
    )
}

/// An answer given before the request's body was read leaves the
/// kept-alive connection usable: the rest of the body is read before the
/// answer goes out, so the next request on the connection is answered.
#[tokio::test]
async fn a_request_refused_before_its_body_leaves_the_connection_usable() {
    let node = TestNode::start(bin());
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    let body = "{\"key\":[],\"old_version\":1,\"uss_base_url\":\"https://uss2.example\"}";
    s.write_all(refused_delete(body, false).as_bytes())
        .await
        .unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        !answer.contains("connection: close"),
        "the body was read, the connection kept: {answer}"
    );
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let next = read_answer(&mut s).await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
}

/// A client that waits for `100 Continue` before sending its body is not
/// invited to send a body the handler did not want: the answer comes at
/// once and says that the connection closes, and it does. (Without the
/// `Connection: close` a client would reuse a connection that is closing.)
#[tokio::test]
async fn a_body_awaiting_continue_is_not_invited_when_refused_and_the_answer_closes() {
    let node = TestNode::start(bin());
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    s.write_all(refused_delete("{\"key\":[]}", true).as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut s).await).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "no 100 Continue first: {answer}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_surplus_connections_are_closed_and_the_node_answers_after() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("detente.toml");
    std::fs::write(&config, "max_connections = 8\n").unwrap();
    let node = TestNode::start_with(bin(), &["--config", config.to_str().unwrap()]);
    let at = addr(&node);
    let health = node.url("/healthz");
    // (No request before the idle ones: a client's kept-alive connection
    // closes when it likes, and would hold a slot for a moment.)

    // Eight connections that send nothing take every slot…
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(&at).await.unwrap());
    }
    // …so a ninth is closed at once, unread and unanswered.
    let mut surplus = TcpStream::connect(&at).await.unwrap();
    let _ = surplus
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        until_closed(&mut surplus).await.is_empty(),
        "no answer past the limit"
    );
    // The silent ones are closed once a request head is overdue (10 s).
    for s in &mut idle {
        until_closed(s).await;
    }
    drop(idle);
    assert!(
        test_support::http()
            .get(&health)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // A head sent a line at a time never completes: closed all the same,
    // while it is still sending.
    let mut slow = TcpStream::connect(&at).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let (mut r, mut w) = slow.into_split();
    let drip = tokio::spawn(async move {
        for i in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if w.write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return true;
            }
        }
        false
    });
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(GUARD, r.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => {}
        }
    };
    assert!(closed, "a head dripped a line a second was never cut off");
    drip.abort();

    // A kept-alive connection that asks nothing more is closed too.
    let mut kept = TcpStream::connect(&at).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = until_closed(&mut kept).await;
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"),
        "answered first, then closed when idle: {}",
        String::from_utf8_lossy(&answered)
    );
    assert!(
        test_support::http()
            .get(&health)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

async fn connect_from(source: &str, to: &str) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{source}:0").parse().unwrap()).unwrap();
    s.connect(to.parse().unwrap()).await.unwrap()
}

fn client_from(source: &str) -> reqwest::Client {
    test_support::http_builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// One source address holds at most `max_connections_per_source`: its
/// surplus is closed unread while another source is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_take_every_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("detente.toml");
    std::fs::write(
        &config,
        "max_connections = 64\nmax_connections_per_source = 4\n",
    )
    .unwrap();
    let node = TestNode::start_with(bin(), &["--config", config.to_str().unwrap()]);
    let at = addr(&node);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from("127.0.0.2", &at).await);
    }
    let mut surplus = connect_from("127.0.0.2", &at).await;
    let _ = surplus
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        until_closed(&mut surplus).await.is_empty(),
        "no answer past the source's share"
    );
    // Another source still has its connections (64 in all were allowed).
    let health = node.url("/healthz");
    for _ in 0..3 {
        let r = client_from("127.0.0.3").get(&health).send().await.unwrap();
        assert!(r.status().is_success());
    }
    drop(idle);
}

/// Rate limits key on what cannot be made up: claimed peer names and failed
/// authentications are charged to the source address, so a source rotating
/// names or tokens is limited, and a client elsewhere is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_names_and_bad_tokens_are_limited_by_their_source() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("detente.toml");
    // One token a second, three at once: twenty requests in a row cannot all
    // pass unless they take 17 s.
    std::fs::write(&config, "rate_limit_per_second = 1\nrate_limit_burst = 3\n").unwrap();
    let node = TestNode::start_with(bin(), &["--config", config.to_str().unwrap()]);
    let attacker = client_from("127.0.0.2");

    let mut statuses = Vec::new();
    for i in 0..20 {
        let r = attacker
            .post(node.url("/peer/v1/records"))
            .json(&serde_json::json!({ "from": format!("made-up-{i}"), "records": [] }))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 403 || *s == 429) && statuses.contains(&429),
        "every made-up name is refused, and the source is limited: {statuses:?}"
    );

    let mut statuses = Vec::new();
    for i in 0..20 {
        let r = attacker
            .get(node.url("/dss/v1/subscriptions/00000000-0000-4000-8000-000000000000"))
            .bearer_auth(format!("not.a-token.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429) && statuses.contains(&429),
        "bad tokens are refused, and their source is limited: {statuses:?}"
    );
    assert_eq!(statuses[0], 401, "the first bad token is answered 401");

    // A client with a valid token from another source is not held up.
    let ok = client_from("127.0.0.3")
        .post(node.url("/dss/v1/subscriptions/query"))
        .bearer_auth(token("uss1", "utm.strategic_coordination"))
        .json(&serde_json::json!({ "area_of_interest": square(40.0, -105.0, 0.1) }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200, "{}", ok.text().await.unwrap());
}
