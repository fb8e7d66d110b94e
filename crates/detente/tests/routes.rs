//! Every route the node serves is behind authentication unless it is
//! declared here, with the reason. The routes are read from the router's
//! own source (`crates/api/src`), so a new endpoint cannot slip in
//! unauthenticated: each is called with no credential at all, and must be
//! refused with 401 — or, if declared public, answer; if declared as taking
//! only signed input, refuse the unsigned request with a 4xx.
//! Also: `/metrics` made private (`--private-metrics`) needs its own scope.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use reqwest::Method;
use serde_json::Value;
use std::path::Path;
use test_support::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

/// Reachable without any credential, and why.
const PUBLIC: &[(&str, &str)] = &[
    (
        "/",
        "a browser pointed at the node is sent to the console's login",
    ),
    ("/healthz", "liveness for load balancers and operators"),
    (
        "/statements/feed.json",
        "a party's public statements: publication is for anyone",
    ),
    (
        "/detente/v1/openapi.json",
        "the description of the node's own APIs: what any client may read",
    ),
    (
        "/aux/v1/version",
        "the build's version, for DSS pool tooling (open in the reference DSS too)",
    ),
    ("/metrics", "public unless --private-metrics (below)"),
    (
        "/log/key",
        "the evidence log is public: anyone may verify it",
    ),
    ("/log/checkpoint", "the evidence log is public"),
    ("/log/entries", "the evidence log is public"),
    ("/log/proof/inclusion", "the evidence log is public"),
    ("/log/proof/consistency", "the evidence log is public"),
    (
        "/log/tile/{*path}",
        "the evidence log is public (C2SP tlog-tiles)",
    ),
    ("/witness/key", "a witness's key is public"),
    (
        "/peer/v1/witness/key",
        "the witness key as a note signed by the node key: public, checked by the pinning peer",
    ),
    (
        "/witness/misbehaviour",
        "evidence of a log's misbehaviour is public",
    ),
    ("/console", "the console page: logging in happens there"),
    ("/console/", "the console page"),
    ("/console/{*path}", "the console's static files"),
    (
        "/console/api/challenge",
        "login, step 1: a challenge to sign",
    ),
    (
        "/console/api/login",
        "login, step 2: the member-signed challenge",
    ),
    (
        "/console/api/logout",
        "ends whatever session the cookie names",
    ),
];

/// Reachable without a token, but they take only input signed by a key
/// the node pins; unsigned input is refused.
const SIGNED: &[(&str, &str)] = &[
    (
        "/peer/v1/records",
        "records signed by a pinned peer's node key (and mutual TLS on the peer listener)",
    ),
    (
        "/witness/add-checkpoint",
        "checkpoints signed by a log this node witnesses",
    ),
    (
        "/peer/v1/witness/add-checkpoint",
        "checkpoints signed by a pinned peer's node key",
    ),
];

/// The (methods, path) of every `.route(…)` in the API crate's source.
fn routes() -> Vec<(Vec<Method>, String)> {
    test_support::api_routes()
        .into_iter()
        .map(|(methods, path)| {
            let methods = methods
                .iter()
                .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                .collect();
            (methods, path)
        })
        .collect()
}

/// A concrete URL path for a route template.
fn concrete(template: &str) -> String {
    let uuid = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b";
    template
        .split('/')
        .map(|seg| match seg {
            "{entityid}" | "{subscriptionid}" | "{id}" | "{constraint}" => uuid.to_string(),
            "{key}" => "00".repeat(32),
            "{sphere}" => "military".into(),
            "{*path}" => "0/000".into(),
            "{z}" | "{x}" | "{y}" | "{version}" | "{ovn}" => "1".into(),
            s if s.starts_with('{') => "someone".into(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

both_backends! {
#[tokio::test]
async fn every_route_needs_a_credential_unless_declared_public_or_signed() {
    let routes = routes();
    // The parser found the router: DSS, line, log, console, peer, own.
    assert!(routes.len() >= 45, "only {} routes found", routes.len());
    for (list, what) in [(PUBLIC, "public"), (SIGNED, "signed")] {
        for (p, _) in list {
            assert!(
                routes.iter().any(|(_, r)| r == p),
                "{p} is declared {what} but is no route any more"
            );
        }
    }
    let n = TestNode::start(bin());
    let http = test_support::http();
    let mut checked = 0;
    for (methods, template) in &routes {
        let path = concrete(template);
        for m in methods {
            let mut req = http.request(m.clone(), n.url(&path));
            if *m != Method::GET {
                req = req.header("content-type", "application/json").body("{}");
            }
            let r = req.send().await.unwrap();
            let s = r.status().as_u16();
            let body = r.text().await.unwrap();
            let what = format!("{m} {path} without a credential: {s} {body}");
            if PUBLIC.iter().any(|(p, _)| p == template) {
                assert!(s != 401 && s != 403 && s < 500, "{what}");
            } else if SIGNED.iter().any(|(p, _)| p == template) {
                assert!((400..500).contains(&s) && s != 404, "{what}");
            } else {
                assert_eq!(s, 401, "{what}");
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                assert!(v["message"].is_string(), "{what}: machine-readable body");
            }
            checked += 1;
        }
    }
    assert!(checked >= routes.len());
}
}

both_backends! {
#[tokio::test]
async fn private_metrics_need_their_own_scope() {
    let n = TestNode::start_with(bin(), &["--private-metrics"]);
    let http = test_support::http();
    let get = |tok: Option<String>| {
        let mut r = http.get(n.url("/metrics"));
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get(None).await.0, 401);
    assert_eq!(
        get(Some(token("ops", "detente.line.admin utm.strategic_coordination")))
            .await
            .0,
        403,
        "another scope is not enough"
    );
    let (s, body) = get(Some(token("prometheus", "detente.metrics"))).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("detente_live_operational_intents"), "{body}");
    // Health stays public.
    assert_eq!(
        http.get(n.url("/healthz")).send().await.unwrap().status(),
        200
    );
}
}
