//! The console's HTTP side without a browser: bad login input gets a 4xx
//! naming the field, a wrong or unregistered key gets no session, a
//! challenge works once, forged or missing cookies reach nothing, and a
//! session's CSRF token and role are enforced.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use test_support::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn challenge(c: &reqwest::Client, n: &TestNode) -> Value {
    c.get(n.url("/console/api/challenge"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A login answering `ch` with `key`: (status, body, set-cookie).
async fn login(
    c: &reqwest::Client,
    n: &TestNode,
    key: &SigningKey,
    ch: &Value,
) -> (u16, Value, String) {
    let msg = format!(
        "{}{}\n{}",
        ch["domain"].as_str().unwrap(),
        ch["node"].as_str().unwrap(),
        ch["challenge"].as_str().unwrap()
    );
    let body = json!({
        "member": hex(key.verifying_key().as_bytes()),
        "challenge": ch["challenge"],
        "signature": hex(&key.sign(msg.as_bytes()).to_bytes()),
    });
    let r = c
        .post(n.url("/console/api/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        r.status().as_u16(),
        r.json().await.unwrap_or(Value::Null),
        cookie,
    )
}

both_backends! {
#[tokio::test]
async fn console_logins_sessions_csrf_and_roles() {
    let n = TestNode::start(bin());
    let c = test_support::http();
    let admin = token("line-admin", "detente.line.admin");
    let (officer, chief) = (
        SigningKey::from_bytes(&[3; 32]),
        SigningKey::from_bytes(&[4; 32]),
    );
    for (k, name, role) in [
        (&officer, "Lt. Officer", "duty officer"),
        (&chief, "Col. Chief", "line administrator"),
    ] {
        let r = c
            .post(n.url("/line/v1/members"))
            .bearer_auth(&admin)
            .json(&json!({ "key": hex(k.verifying_key().as_bytes()), "name": name, "role": role, "spheres": ["direct-line"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // Malformed input: 400 naming the field.
    for (body, field) in [
        (
            json!({ "member": "zz", "challenge": "x", "signature": "00" }),
            "member",
        ),
        (
            json!({ "member": hex(officer.verifying_key().as_bytes()), "challenge": "x", "signature": "nothex" }),
            "signature",
        ),
        (
            json!({ "member": hex(officer.verifying_key().as_bytes()), "challenge": "1.2.3", "signature": "00".repeat(64) }),
            "challenge",
        ),
    ] {
        let r = c
            .post(n.url("/console/api/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["field"], field, "{v}");
    }
    let r = c
        .post(n.url("/console/api/login"))
        .json(&json!({ "member": "aa", "surprise": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown fields are refused");

    // A key that is not a member, or a signature by another key: no session.
    let stranger = SigningKey::from_bytes(&[9; 32]);
    let (s, _, cookie) = login(&c, &n, &stranger, &challenge(&c, &n).await).await;
    assert_eq!((s, cookie.is_empty()), (403, true));
    let ch = challenge(&c, &n).await;
    let msg = format!(
        "{}{}\n{}",
        ch["domain"].as_str().unwrap(),
        ch["node"].as_str().unwrap(),
        ch["challenge"].as_str().unwrap()
    );
    let r = c
        .post(n.url("/console/api/login"))
        .json(&json!({
            "member": hex(officer.verifying_key().as_bytes()),
            "challenge": ch["challenge"],
            "signature": hex(&stranger.sign(msg.as_bytes()).to_bytes()),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "signed by another key");

    // The officer logs in; the same challenge does not work twice.
    let ch = challenge(&c, &n).await;
    let (s, session, cookie) = login(&c, &n, &officer, &ch).await;
    assert_eq!(s, 200, "{session}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert_eq!(session["admin"], false);
    let (s, _, _) = login(&c, &n, &officer, &ch).await;
    assert_eq!(s, 400, "a challenge answers once");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let csrf = session["csrf"].as_str().unwrap().to_string();

    let get = |path: &str, cookie: &str| {
        c.get(n.url(path))
            .header("cookie", cookie.to_string())
            .send()
    };
    assert_eq!(
        get("/line/v1/members", &cookie).await.unwrap().status(),
        200
    );
    assert_eq!(
        get("/console/api/airspace", &cookie)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(get("/console/api/session", "").await.unwrap().status(), 401);
    let forged = cookie.replace(
        &hex(officer.verifying_key().as_bytes()),
        &hex(chief.verifying_key().as_bytes()),
    );
    assert_eq!(
        get("/console/api/session", &forged).await.unwrap().status(),
        401,
        "a forged cookie"
    );
    let r = get("/console/api/tiles/0/0/0", &cookie).await.unwrap();
    assert_eq!(r.status(), 404, "no tile source configured");
    let r = get("/console/api/evidence?entity=no%20such", &cookie)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "entity");

    // A change needs the CSRF token; the officer's role may not take the
    // host's decisions; removing the member ends the session.
    let quota = |cookie: String, csrf: Option<String>| {
        let mut r = c
            .put(n.url("/line/v1/missions/peer.example/quota"))
            .header("cookie", cookie)
            .json(&json!({ "quota": 1 }));
        if let Some(t) = csrf {
            r = r.header("x-detente-csrf", t);
        }
        r.send()
    };
    assert_eq!(
        quota(cookie.clone(), None).await.unwrap().status(),
        403,
        "no CSRF token"
    );
    assert_eq!(
        quota(cookie.clone(), Some("0".repeat(64)))
            .await
            .unwrap()
            .status(),
        403,
        "a wrong CSRF token"
    );
    let r = quota(cookie.clone(), Some(csrf.clone())).await.unwrap();
    assert_eq!(r.status(), 403, "a duty officer is not an administrator");
    assert!(r.text().await.unwrap().contains("administrators"));
    // The officer's console is listening for changes when the member is
    // removed: its stream ends, and reconnecting is refused.
    let mut stream = get("/console/api/events", &cookie).await.unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("event: state"),
        "{first:?}"
    );
    let r = c
        .delete(n.url(&format!(
            "/line/v1/members/{}",
            hex(officer.verifying_key().as_bytes())
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        get("/line/v1/members", &cookie).await.unwrap().status(),
        403,
        "removed: the session ends"
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        // The removal itself may still arrive as a change first.
        while stream.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the removed member's event stream ends");
    assert_eq!(
        get("/console/api/events", &cookie).await.unwrap().status(),
        403,
        "and does not come back"
    );

    // The administrator's session passes the role check (the peer is unknown: 404).
    let (s, session, cookie) = login(&c, &n, &chief, &challenge(&c, &n).await).await;
    assert_eq!((s, session["admin"].clone()), (200, json!(true)));
    let cookie = cookie.split(';').next().unwrap().to_string();
    let r = quota(cookie, Some(session["csrf"].as_str().unwrap().to_string()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "{}", r.text().await.unwrap());
}
}

/// Posts a login body as it is (to replay one).
async fn post_login(c: &reqwest::Client, n: &TestNode, body: &Value) -> (u16, Value) {
    let r = c
        .post(n.url("/console/api/login"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn login_body(key: &SigningKey, ch: &Value) -> Value {
    let msg = format!(
        "{}{}\n{}",
        ch["domain"].as_str().unwrap(),
        ch["node"].as_str().unwrap(),
        ch["challenge"].as_str().unwrap()
    );
    json!({
        "member": hex(key.verifying_key().as_bytes()),
        "challenge": ch["challenge"],
        "signature": hex(&key.sign(msg.as_bytes()).to_bytes()),
    })
}

async fn session_status(c: &reqwest::Client, n: &TestNode, cookie: &str) -> u16 {
    c.get(n.url("/console/api/session"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

both_backends! {
#[tokio::test]
async fn a_used_challenge_and_a_logout_hold_on_every_replica_and_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let mut a = TestNode::start_in(bin(), &data, &[]);
    let c = test_support::http();
    let officer = SigningKey::from_bytes(&[3; 32]);
    let r = c
        .post(a.url("/line/v1/members"))
        .bearer_auth(token("line-admin", "detente.line.admin"))
        .json(&json!({ "key": hex(officer.verifying_key().as_bytes()), "name": "Lt. Officer", "role": "duty officer", "spheres": ["direct-line"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = login_body(&officer, &challenge(&c, &a).await);
    let (s, v) = post_login(&c, &a, &body).await;
    assert_eq!(s, 200, "{v}");
    // On PostgreSQL a second replica of the same node; on the embedded
    // store the same node after a restart (each forgot nothing).
    let on_postgres = postgres_url().is_some();
    let b = if on_postgres {
        Some(TestNode::start_in(bin(), &data, &[]))
    } else {
        a.restart();
        None
    };
    let c = test_support::http(); // no pooled connection to a killed process
    let other = b.as_ref().unwrap_or(&a);
    let (s, v) = post_login(&c, other, &body).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("challenge")), "replayed: {v}");

    // A session made on one, logged out there, is ended on the other.
    let r = c
        .post(a.url("/console/api/login"))
        .json(&login_body(&officer, &challenge(&c, &a).await))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let session: Value = r.json().await.unwrap();
    assert_eq!(session_status(&c, other, &cookie).await, 200);
    let r = c
        .post(a.url("/console/api/logout"))
        .header("cookie", &cookie)
        .header("x-detente-csrf", session["csrf"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(session_status(&c, &a, &cookie).await, 401);
    if !on_postgres {
        a.restart();
    }
    let c = test_support::http();
    let other = b.as_ref().unwrap_or(&a);
    let t = std::time::Instant::now();
    while session_status(&c, other, &cookie).await != 401 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the logged-out session still works there after {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
}
