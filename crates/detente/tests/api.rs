//! The F3548 DSS API over real HTTP against real `detente serve` processes:
//! every endpoint, the error codes the spec lists, auth failures, the key
//! check, concurrency and durability across SIGKILL.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use test_support::*;

const SC: &str = "utm.strategic_coordination";
const CP: &str = "utm.constraint_processing";
const CM: &str = "utm.constraint_management";
const AA: &str = "utm.availability_arbitration";
const CMSA: &str = "utm.conformance_monitoring_sa";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

async fn call(
    node: &TestNode,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = test_support::http().request(method, node.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn field(v: &Value) -> &str {
    v["field"].as_str().unwrap_or("")
}

both_backends! {
#[tokio::test]
async fn health_and_metrics_answer_without_a_token() {
    let node = TestNode::start(bin());
    let (s, v) = call(&node, Method::GET, "/healthz", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "ok");
    let t = token("uss1", SC);
    call(
        &node,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{}", new_id()),
        Some(&t),
        Some(intent_body(square(10.0, 10.0, 0.01), &[], "Accepted")),
    )
    .await;
    let (s, m) = call(&node, Method::GET, "/metrics", None, None).await;
    assert_eq!(s, 200);
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("detente_live_operational_intents 1"), "{m}");
    assert!(m.contains("detente_http_requests_total{route=\"/dss/v1/operational_intent_references/{entityid}\",method=\"PUT\",status=\"201\"} 1"), "{m}");
    assert!(m.contains("detente_http_request_duration_seconds_bucket"));
    assert!(m.contains("detente_conflicts 0"));
    // The build, and the store's group commits (the create was one).
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        m.contains(&format!(
            "detente_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
    let commits = m
        .lines()
        .find_map(|l| l.strip_prefix("detente_store_batch_writes_count "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(commits.is_some_and(|n| n >= 1), "{m}");
    assert!(m.contains("# TYPE detente_http_requests_total counter"), "{m}");
    promtool_accepts(&m);
}
}

/// `promtool check metrics` (Prometheus's own linter of the exposition
/// format) accepts `exposition`.
fn promtool_accepts(exposition: &str) {
    if let Some(out) = test_support::promtool(&["check", "metrics"], Path::new("."), exposition) {
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{exposition}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

both_backends! {
#[tokio::test]
async fn operational_intent_lifecycle_with_ovn_visibility() {
    let node = TestNode::start(bin());
    let (a, b) = (token("alliance", SC), token("federation", SC));
    let id = new_id();
    let path = format!("/dss/v1/operational_intent_references/{id}");
    let (s, v) = call(
        &node,
        Method::PUT,
        &path,
        Some(&a),
        Some(intent_body(square(50.0, 30.0, 0.01), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let oir = &v["operational_intent_reference"];
    let ovn = oir["ovn"]
        .as_str()
        .expect("the manager sees its OVN")
        .to_string();
    assert!((16..=128).contains(&ovn.len()));
    assert_eq!(oir["version"], 1);
    assert_eq!(oir["state"], "Accepted");
    assert_eq!(oir["manager"], "alliance");
    assert_eq!(oir["uss_availability"], "Unknown");
    assert_eq!(oir["time_start"]["format"], "RFC3339");
    assert!(v["subscribers"].is_array());

    let (s, v) = call(
        &node,
        Method::PUT,
        &path,
        Some(&a),
        Some(intent_body(square(50.0, 30.0, 0.01), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 409, "creating twice: {v}");

    let (s, v) = call(&node, Method::GET, &path, Some(&b), None).await;
    assert_eq!(s, 200);
    assert!(
        v["operational_intent_reference"].get("ovn").is_none(),
        "others never see the OVN"
    );
    let (_, v) = call(&node, Method::GET, &path, Some(&a), None).await;
    assert_eq!(v["operational_intent_reference"]["ovn"], ovn.as_str());

    let (s, v) = call(
        &node,
        Method::POST,
        "/dss/v1/operational_intent_references/query",
        Some(&b),
        Some(json!({"area_of_interest": square(50.0, 30.0, 0.05)})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["operational_intent_references"].as_array().unwrap().len(),
        1
    );
    let (_, v) = call(
        &node,
        Method::POST,
        "/dss/v1/operational_intent_references/query",
        Some(&b),
        Some(json!({"area_of_interest": square(-50.0, 30.0, 0.05)})),
    )
    .await;
    assert_eq!(
        v["operational_intent_references"].as_array().unwrap().len(),
        0
    );
    let (s, v) = call(
        &node,
        Method::POST,
        "/dss/v1/operational_intent_references/query",
        Some(&b),
        Some(json!({})),
    )
    .await;
    assert_eq!((s.as_u16(), field(&v)), (400, "area_of_interest"));

    // Update: wrong OVN 409, another manager 403, right OVN 200 with a new OVN.
    let body = intent_body(square(50.0, 30.0, 0.02), &[], "Activated");
    let (s, _) = call(
        &node,
        Method::PUT,
        &format!("{path}/{}", "y".repeat(32)),
        Some(&a),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = call(
        &node,
        Method::PUT,
        &format!("{path}/{ovn}"),
        Some(&b),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = call(
        &node,
        Method::PUT,
        &format!("{path}/{ovn}"),
        Some(&a),
        Some(body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let ovn2 = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(ovn2, ovn);
    assert_eq!(v["operational_intent_reference"]["version"], 2);
    assert_eq!(v["operational_intent_reference"]["state"], "Activated");

    // Illegal transition Activated → Accepted.
    let (s, v) = call(
        &node,
        Method::PUT,
        &format!("{path}/{ovn2}"),
        Some(&a),
        Some(intent_body(square(50.0, 30.0, 0.02), &[], "Accepted")),
    )
    .await;
    assert_eq!((s.as_u16(), field(&v)), (400, "state"), "{v}");

    // Delete: stale OVN 409, then 200, then 404.
    assert_eq!(
        call(
            &node,
            Method::DELETE,
            &format!("{path}/{ovn}"),
            Some(&a),
            None
        )
        .await
        .0,
        409
    );
    let (s, v) = call(
        &node,
        Method::DELETE,
        &format!("{path}/{ovn2}"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["operational_intent_reference"]["id"], id.as_str());
    assert_eq!(call(&node, Method::GET, &path, Some(&a), None).await.0, 404);
    assert_eq!(
        call(
            &node,
            Method::DELETE,
            &format!("{path}/{ovn2}"),
            Some(&a),
            None
        )
        .await
        .0,
        404
    );
}
}

both_backends! {
#[tokio::test]
async fn the_key_check_lists_what_is_missing_and_conflicts_are_reported() {
    let node = TestNode::start(bin());
    let (a, b) = (token("alliance", SC), token("federation", SC));
    let id_a = new_id();
    let (_, v) = call(
        &node,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{id_a}"),
        Some(&a),
        Some(intent_body(square(50.0, 30.0, 0.01), &[], "Accepted")),
    )
    .await;
    let ovn_a = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    let id_b = new_id();
    let path_b = format!("/dss/v1/operational_intent_references/{id_b}");
    let (s, v) = call(
        &node,
        Method::PUT,
        &path_b,
        Some(&b),
        Some(intent_body(square(50.0, 30.01, 0.01), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let missing = v["missing_operational_intents"].as_array().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["id"], id_a.as_str());
    assert!(
        missing[0].get("ovn").is_none(),
        "the refusal must not leak the OVN"
    );
    assert!(v["message"].as_str().unwrap().contains("key"));
    let (s, v) = call(
        &node,
        Method::PUT,
        &path_b,
        Some(&b),
        Some(intent_body(
            square(50.0, 30.01, 0.01),
            &[&ovn_a],
            "Accepted",
        )),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // alliance's implicit subscription is told, with index 1.
    let subs = v["subscribers"].as_array().unwrap();
    assert!(
        subs.iter()
            .any(|s| s["subscriptions"][0]["notification_index"] == 1),
        "{v}"
    );
    let (s, v) = call(&node, Method::GET, "/detente/v1/conflicts", Some(&a), None).await;
    assert_eq!(s, 200);
    let c = &v["conflicts"][0];
    assert_eq!(c["kind"], "intent-intent");
    assert_eq!(v["conflicts"].as_array().unwrap().len(), 1);
    let ids = [
        c["a"]["id"].as_str().unwrap(),
        c["b"]["id"].as_str().unwrap(),
    ];
    assert!(ids.contains(&id_a.as_str()) && ids.contains(&id_b.as_str()));
    assert_eq!(c["overlaps"][0]["altitude_upper"]["value"], 500.0);
}
}

both_backends! {
#[tokio::test]
async fn constraint_lifecycle_and_constraint_keys() {
    let node = TestNode::start(bin());
    let cm = token("authority", &format!("{CM} {CP}"));
    let uss = token("uss1", &format!("{SC} {CP}"));
    let id = new_id();
    let path = format!("/dss/v1/constraint_references/{id}");
    let body =
        json!({"extents": [square(20.0, 20.0, 0.05)], "uss_base_url": "https://authority.example"});
    let (s, v) = call(&node, Method::PUT, &path, Some(&cm), Some(body.clone())).await;
    assert_eq!(s, 201, "{v}");
    let ovn = v["constraint_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        call(&node, Method::PUT, &path, Some(&cm), Some(body.clone()))
            .await
            .0,
        409
    );
    let (s, v) = call(&node, Method::GET, &path, Some(&uss), None).await;
    assert_eq!(s, 200);
    assert!(v["constraint_reference"].get("ovn").is_none());
    let (s, v) = call(
        &node,
        Method::POST,
        "/dss/v1/constraint_references/query",
        Some(&uss),
        Some(json!({"area_of_interest": square(20.0, 20.0, 0.01)})),
    )
    .await;
    assert_eq!(
        (
            s.as_u16(),
            v["constraint_references"].as_array().unwrap().len()
        ),
        (200, 1)
    );

    // An intent whose subscription processes constraints must hold the constraint's OVN.
    let mut ib = intent_body(square(20.0, 20.0, 0.01), &[], "Accepted");
    ib["new_subscription"]["notify_for_constraints"] = json!(true);
    let ipath = format!("/dss/v1/operational_intent_references/{}", new_id());
    let (s, v) = call(&node, Method::PUT, &ipath, Some(&uss), Some(ib.clone())).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["missing_constraints"][0]["id"], id.as_str());
    ib["key"] = json!([ovn]);
    assert_eq!(
        call(&node, Method::PUT, &ipath, Some(&uss), Some(ib.clone()))
            .await
            .0,
        201
    );
    // ... and, as in the reference DSS, a strategic-coordination client may
    // ask for constraint notifications too: not refused for its scope, its
    // key check covers the constraint (whose OVN it holds) and the intent
    // just planned there (whose OVN it lacks).
    let sc_only = token("uss2", SC);
    let (s, v) = call(
        &node,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{}", new_id()),
        Some(&sc_only),
        Some(ib),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["missing_constraints"], json!([]), "{v}");
    assert_eq!(v["missing_operational_intents"].as_array().unwrap().len(), 1, "{v}");

    let (s, v) = call(&node, Method::PUT, &format!("{path}/{ovn}"), Some(&cm), Some(json!({"extents": [square(20.0, 20.0, 0.06)], "uss_base_url": "https://authority.example"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["constraint_reference"]["version"], 2);
    let ovn2 = v["constraint_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !v["subscribers"].as_array().unwrap().is_empty(),
        "the intent's subscription watches constraints"
    );
    assert_eq!(
        call(
            &node,
            Method::DELETE,
            &format!("{path}/{ovn}"),
            Some(&cm),
            None
        )
        .await
        .0,
        409
    );
    assert_eq!(
        call(
            &node,
            Method::DELETE,
            &format!("{path}/{ovn2}"),
            Some(&cm),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&node, Method::GET, &path, Some(&cm), None).await.0,
        404
    );
}
}

both_backends! {
#[tokio::test]
async fn subscriptions_lifecycle_versions_ownership_and_dependents() {
    let node = TestNode::start(bin());
    let (a, b) = (token("alliance", SC), token("federation", SC));
    let id = new_id();
    let path = format!("/dss/v1/subscriptions/{id}");
    let body = json!({"extents": long_square(30.0, 30.0, 0.1), "uss_base_url": "https://alliance.example", "notify_for_operational_intents": true});
    let (s, v) = call(&node, Method::PUT, &path, Some(&a), Some(body.clone())).await;
    assert_eq!(s, 200, "{v}");
    let version = v["subscription"]["version"].as_str().unwrap().to_string();
    assert_eq!(v["subscription"]["notification_index"], 0);
    assert_eq!(v["subscription"]["implicit_subscription"], false);
    assert_eq!(
        call(&node, Method::PUT, &path, Some(&a), Some(body.clone()))
            .await
            .0,
        409,
        "exists"
    );
    assert_eq!(
        call(&node, Method::GET, &path, Some(&b), None).await.0,
        403,
        "not the manager"
    );
    let (s, v) = call(
        &node,
        Method::POST,
        "/dss/v1/subscriptions/query",
        Some(&b),
        Some(json!({"area_of_interest": square(30.0, 30.0, 0.1)})),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["subscriptions"].as_array().unwrap().len()),
        (200, 0),
        "only one's own subscriptions"
    );
    let (_, v) = call(
        &node,
        Method::POST,
        "/dss/v1/subscriptions/query",
        Some(&a),
        Some(json!({"area_of_interest": square(30.0, 30.0, 0.1)})),
    )
    .await;
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 1);
    // Neither flag: 400; constraints only, from a strategic-coordination
    // client: accepted, as the reference DSS does.
    let (s, v) = call(
        &node,
        Method::PUT,
        &format!("/dss/v1/subscriptions/{}", new_id()),
        Some(&a),
        Some(json!({"extents": square(30.0, 30.0, 0.1), "uss_base_url": "https://a.example"})),
    )
    .await;
    assert_eq!(
        (s.as_u16(), field(&v)),
        (400, "notify_for_operational_intents")
    );
    let (s, _) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{}", new_id()), Some(&a), Some(json!({"extents": square(30.0, 30.0, 0.1), "uss_base_url": "https://a.example", "notify_for_constraints": true}))).await;
    assert_eq!(s, 200);

    // An Activated intent depending on it.
    let mut ib = intent_body(square(30.0, 30.0, 0.01), &[], "Activated");
    ib["new_subscription"] = Value::Null;
    ib["subscription_id"] = json!(id);
    let (s, v) = call(
        &node,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{}", new_id()),
        Some(&a),
        Some(ib),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["operational_intent_reference"]["subscription_id"],
        id.as_str()
    );
    let (_, v) = call(&node, Method::GET, &path, Some(&a), None).await;
    assert_eq!(
        v["subscription"]["dependent_operational_intents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        v["subscription"]["notification_index"], 1,
        "its own intent's creation notified it"
    );

    assert_eq!(
        call(
            &node,
            Method::PUT,
            &format!("{path}/stale"),
            Some(&a),
            Some(body.clone())
        )
        .await
        .0,
        409,
        "version mismatch"
    );
    assert_eq!(
        call(
            &node,
            Method::PUT,
            &format!("{path}/{version}"),
            Some(&b),
            Some(body.clone())
        )
        .await
        .0,
        409,
        "another manager"
    );
    let away = json!({"extents": long_square(-30.0, 30.0, 0.1), "uss_base_url": "https://alliance.example", "notify_for_operational_intents": true});
    let (s, v) = call(
        &node,
        Method::PUT,
        &format!("{path}/{version}"),
        Some(&a),
        Some(away),
    )
    .await;
    assert_eq!(s, 400, "uncovering its intent: {v}");
    let (s, v) = call(
        &node,
        Method::DELETE,
        &format!("{path}/{version}"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(s, 400, "deleting with a dependent: {v}");
    let wider = json!({"extents": long_square(30.0, 30.0, 0.2), "uss_base_url": "https://alliance.example", "notify_for_operational_intents": true});
    let (s, v) = call(
        &node,
        Method::PUT,
        &format!("{path}/{version}"),
        Some(&a),
        Some(wider),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["subscription"]["version"].as_str().unwrap(), version);
    assert_eq!(
        v["operational_intent_references"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        call(
            &node,
            Method::GET,
            &format!("/dss/v1/subscriptions/{}", new_id()),
            Some(&a),
            None
        )
        .await
        .0,
        404
    );
}
}

both_backends! {
#[tokio::test]
async fn reports_and_uss_availability() {
    let node = TestNode::start(bin());
    let uss = token("uss1", SC);
    let arbiter = token("arbiter", AA);
    let exchange = json!({"url": "https://x.example/uss/v1/operational_intents/1", "method": "GET", "recorder_role": "Client", "request_time": at(0), "request_source": "uss1"});
    let (s, v) = call(
        &node,
        Method::POST,
        "/dss/v1/reports",
        Some(&uss),
        Some(json!({"exchange": exchange})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(!v["report_id"].as_str().unwrap().is_empty());
    let (s, v) = call(
        &node,
        Method::POST,
        "/dss/v1/reports",
        Some(&uss),
        Some(json!({"exchange": {"url": "x"}})),
    )
    .await;
    assert_eq!((s.as_u16(), field(&v)), (400, "exchange.method"));

    let (s, v) = call(
        &node,
        Method::GET,
        "/dss/v1/uss_availability/uss1",
        Some(&uss),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"]["availability"], "Unknown");
    assert_eq!(v["version"], "");
    let id = new_id();
    let (_, v) = call(
        &node,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{id}"),
        Some(&uss),
        Some(intent_body(square(1.0, 1.0, 0.01), &[], "Accepted")),
    )
    .await;
    let ovn = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = call(
        &node,
        Method::PUT,
        "/dss/v1/uss_availability/uss1",
        Some(&arbiter),
        Some(json!({"old_version": "", "availability": "Down"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let version = v["version"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &node,
            Method::PUT,
            "/dss/v1/uss_availability/uss1",
            Some(&arbiter),
            Some(json!({"old_version": "", "availability": "Normal"}))
        )
        .await
        .0,
        409,
        "stale old_version (F3548 and the reference DSS: a version conflict)"
    );
    let (_, v) = call(
        &node,
        Method::GET,
        &format!("/dss/v1/operational_intent_references/{id}"),
        Some(&uss),
        None,
    )
    .await;
    assert_eq!(
        v["operational_intent_reference"]["uss_availability"],
        "Down"
    );
    let (s, _) = call(
        &node,
        Method::PUT,
        &format!("/dss/v1/operational_intent_references/{}", new_id()),
        Some(&uss),
        Some(intent_body(square(2.0, 2.0, 0.01), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 412);
    assert_eq!(
        call(
            &node,
            Method::DELETE,
            &format!("/dss/v1/operational_intent_references/{id}/{ovn}"),
            Some(&uss),
            None
        )
        .await
        .0,
        412
    );
    let (s, _) = call(
        &node,
        Method::PUT,
        "/dss/v1/uss_availability/uss1",
        Some(&arbiter),
        Some(json!({"old_version": version, "availability": "Normal"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        call(
            &node,
            Method::DELETE,
            &format!("/dss/v1/operational_intent_references/{id}/{ovn}"),
            Some(&uss),
            None
        )
        .await
        .0,
        200
    );
}
}

both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_over_http_exactly_one_wins() {
    let node = TestNode::start(bin());
    for round in 0..5 {
        let puts = (0..16)
            .map(|w| {
                let url = node.url(&format!(
                    "/dss/v1/operational_intent_references/{}",
                    new_id()
                ));
                let body = intent_body(square(40.0 + round as f64, 40.0, 0.01), &[], "Accepted");
                (url, token(&format!("uss{w}"), SC), body)
            })
            .collect();
        let statuses = race_puts(puts).await;
        assert_eq!(
            statuses,
            [vec![201], vec![409; 15]].concat(),
            "round {round}: {statuses:?}"
        );
    }
}
}

both_backends! {
#[tokio::test]
async fn an_acknowledged_write_survives_sigkill() {
    let mut node = TestNode::start(bin());
    let t = token("alliance", SC);
    let mut written = Vec::new();
    for i in 0..20 {
        let id = new_id();
        let (s, v) = call(
            &node,
            Method::PUT,
            &format!("/dss/v1/operational_intent_references/{id}"),
            Some(&t),
            Some(intent_body(square(i as f64, 5.0, 0.01), &[], "Accepted")),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        written.push((
            id,
            v["operational_intent_reference"]["ovn"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    node.restart(); // SIGKILL, then a new process on the same data folder
    for (id, ovn) in &written {
        let (s, v) = call(
            &node,
            Method::GET,
            &format!("/dss/v1/operational_intent_references/{id}"),
            Some(&t),
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v["operational_intent_reference"]["ovn"], ovn.as_str());
    }
    // The rebuilt index answers area queries.
    let (_, v) = call(
        &node,
        Method::POST,
        "/dss/v1/operational_intent_references/query",
        Some(&t),
        Some(json!({"area_of_interest": square(7.0, 5.0, 0.02)})),
    )
    .await;
    assert_eq!(
        v["operational_intent_references"].as_array().unwrap().len(),
        1
    );
}
}

both_backends! {
#[tokio::test]
async fn clients_built_against_the_reference_dss_are_understood() {
    let node = TestNode::start(bin());
    let sc = token("uss1", SC);
    let aa = token("arbiter", AA);
    // A subscription that notifies only for intents, from a client with
    // only the strategic-coordination scope; the answer carries the intents
    // list and no constraints list.
    let sub = new_id();
    let body = json!({ "extents": square(30.0, 30.0, 0.05), "uss_base_url": "https://uss.example/utm/",
                       "notify_for_operational_intents": true, "notify_for_constraints": false });
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{sub}"), Some(&sc), Some(body.clone())).await;
    assert_eq!(s, 200, "a uss_base_url ending in '/' is accepted: {v}");
    assert!(v["operational_intent_references"].is_array(), "{v}");
    assert!(v.get("constraint_references").is_none(), "{v}");
    assert_eq!(v["subscription"]["uss_base_url"], "https://uss.example/utm/");
    // Another client may not delete it: 403, as the reference DSS answers.
    let first = v["subscription"]["version"].as_str().unwrap().to_string();
    let other = token("uss2", SC);
    let (s, v2) = call(&node, Method::DELETE, &format!("/dss/v1/subscriptions/{sub}/{first}"), Some(&other), None).await;
    assert_eq!(s, 403, "{v2}");
    // The same client switches it to constraints only.
    let mut b = body.clone();
    b["notify_for_operational_intents"] = json!(false);
    b["notify_for_constraints"] = json!(true);
    let version = v["subscription"]["version"].as_str().unwrap().to_string();
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{sub}/{version}"), Some(&sc), Some(b)).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["constraint_references"].is_array(), "{v}");
    assert!(v.get("operational_intent_references").is_none(), "{v}");
    // Re-creating it, asking for nothing: the request's own fault, 400.
    let mut b = body.clone();
    b["notify_for_operational_intents"] = json!(false);
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{sub}"), Some(&sc), Some(b)).await;
    assert_eq!((s.as_u16(), field(&v)), (400, "notify_for_operational_intents"), "{v}");

    // An area query for the instant "now" (past on arrival) is answered.
    let aoi = square_during(30.0, 30.0, 0.01, 0, 0);
    assert_eq!(aoi["time_start"], aoi["time_end"]);
    let (s, v) = call(&node, Method::POST, "/dss/v1/subscriptions/query", Some(&sc), Some(json!({"area_of_interest": aoi}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subscriptions"][0]["id"], sub.as_str());
    // One whose end has passed, with no start: 200 and nothing.
    let mut past = square(30.0, 30.0, 0.01);
    past.as_object_mut().unwrap().remove("time_start");
    past["time_end"] = json!({"value": "2020-01-01T00:00:00Z", "format": "RFC3339"});
    let (s, v) = call(&node, Method::POST, "/dss/v1/operational_intent_references/query", Some(&sc), Some(json!({"area_of_interest": past}))).await;
    assert_eq!((s.as_u16(), v["operational_intent_references"].as_array().map(Vec::len)), (200, Some(0)), "{v}");

    // USS availability written in lower case, answered capitalised.
    let (s, v) = call(&node, Method::PUT, "/dss/v1/uss_availability/uss9", Some(&aa), Some(json!({"availability": "normal"}))).await;
    assert_eq!((s.as_u16(), v["status"]["availability"].as_str()), (200, Some("Normal")), "{v}");
    let (s, v) = call(&node, Method::PUT, "/dss/v1/uss_availability/uss9", Some(&aa), Some(json!({"availability": "pUrPlE", "old_version": v["version"]}))).await;
    assert_eq!((s.as_u16(), field(&v)), (400, "availability"), "{v}");

    // Only conformance monitoring may declare an intent Nonconforming.
    let oi = format!("/dss/v1/operational_intent_references/{}", new_id());
    let (s, v) = call(&node, Method::PUT, &oi, Some(&sc), Some(intent_body(square(-30.0, -30.0, 0.01), &[], "Activated"))).await;
    assert_eq!(s, 201, "{v}");
    let ovn = v["operational_intent_reference"]["ovn"].as_str().unwrap().to_string();
    let off_plan = intent_body(square(-30.0, -30.0, 0.01), &[], "Nonconforming");
    let (s, v) = call(&node, Method::PUT, &format!("{oi}/{ovn}"), Some(&sc), Some(off_plan.clone())).await;
    assert_eq!(s, 403, "{v}");
    let monitor = token("uss1", &format!("{SC} {CMSA}"));
    let (s, v) = call(&node, Method::PUT, &format!("{oi}/{ovn}"), Some(&monitor), Some(off_plan)).await;
    assert_eq!((s.as_u16(), v["operational_intent_reference"]["state"].as_str()), (200, Some("Nonconforming")), "{v}");

    // The auxiliary interface pool tooling calls.
    let (s, v) = call(&node, Method::GET, "/aux/v1/version", None, None).await;
    assert_eq!(s, 200);
    assert!(v["version"]["as_string"].as_str().unwrap().starts_with("detente-"), "{v}");
    let (s, v) = call(&node, Method::GET, "/aux/v1/validate_oauth?owner=uss1", Some(&sc), None).await;
    assert_eq!((s.as_u16(), v["owner"].as_str()), (200, Some("uss1")), "{v}");
    let (s, v) = call(&node, Method::GET, "/aux/v1/validate_oauth?owner=someone", Some(&sc), None).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("someone"), "{v}");
    let (s, _) = call(&node, Method::GET, "/aux/v1/validate_oauth", None, None).await;
    assert_eq!(s, 401);

    // A browser at the root lands on the console's login page.
    let r = test_support::http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(node.url("/"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/console/");
}
}

both_backends! {
/// F3548 lifecycle rules the reference suite does not probe: a
/// subscription lasts at most 24 h, an empty version or OVN in the path is
/// named, a report without `request_source` is kept, and what has ended is
/// gone for every read before any sweep.
#[tokio::test]
async fn lifecycle_rules_beyond_the_reference_suite() {
    let node = TestNode::start(bin());
    let uss = token("uss1", SC);
    let authority = token("authority", CM);
    let sub = |extents: Value| {
        json!({"extents": extents, "uss_base_url": "https://uss1.example", "notify_for_operational_intents": true})
    };
    // 24 h 10 min: refused, naming the end; 24 h exactly: accepted.
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{}", new_id()), Some(&uss),
        Some(sub(square_during(1.0, 1.0, 0.01, 0, 24 * 3600 + 600)))).await;
    assert_eq!((s.as_u16(), field(&v)), (400, "extents.time_end"), "{v}");
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{}", new_id()), Some(&uss),
        Some(sub(square_during(1.0, 1.0, 0.01, 0, 24 * 3600)))).await;
    assert_eq!(s, 200, "{v}");
    // A start more than 5 minutes ago is refused, naming the start.
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{}", new_id()), Some(&uss),
        Some(sub(square_during(1.0, 1.0, 0.01, -600, 3600)))).await;
    assert_eq!((s.as_u16(), field(&v)), (400, "extents.time_start"), "{v}");
    // An empty version or OVN: 400 naming it (not a 404 from routing).
    let id = new_id();
    for (method, path, f) in [
        (Method::PUT, format!("/dss/v1/subscriptions/{id}/"), "version"),
        (Method::DELETE, format!("/dss/v1/subscriptions/{id}/"), "version"),
        (Method::PUT, format!("/dss/v1/operational_intent_references/{id}/"), "ovn"),
        (Method::DELETE, format!("/dss/v1/operational_intent_references/{id}/"), "ovn"),
    ] {
        let (s, v) = call(&node, method.clone(), &path, Some(&uss), Some(sub(square(1.0, 1.0, 0.01)))).await;
        assert_eq!((s.as_u16(), field(&v)), (400, f), "{method} {path}: {v}");
    }
    let (s, v) = call(&node, Method::DELETE, &format!("/dss/v1/constraint_references/{id}/"), Some(&authority), None).await;
    assert_eq!((s.as_u16(), field(&v)), (400, "ovn"), "{v}");
    // Still behind the credential check.
    let (s, _) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{id}/"), None, None).await;
    assert_eq!(s, 401);
    // A report without request_source is kept, as the reference DSS does.
    let exchange = json!({"url": "https://x.example/uss/v1/operational_intents/1", "method": "GET", "recorder_role": "Client", "request_time": at(0)});
    let (s, v) = call(&node, Method::POST, "/dss/v1/reports", Some(&uss), Some(json!({"exchange": exchange}))).await;
    assert_eq!(s, 201, "{v}");

    // Ending in a few seconds: a subscription, an intent and a constraint.
    let (sid, iid, cid) = (new_id(), new_id(), new_id());
    let soon = |lng: f64| square_during(-5.0, lng, 0.01, 0, 10);
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{sid}"), Some(&uss), Some(sub(soon(5.0)))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/operational_intent_references/{iid}"), Some(&uss),
        Some(intent_body(soon(6.0), &[], "Accepted"))).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/constraint_references/{cid}"), Some(&authority),
        Some(json!({"extents": [soon(7.0)], "uss_base_url": "https://authority.example"}))).await;
    assert_eq!(s, 201, "{v}");
    // Still there before their end…
    let (s, v) = call(&node, Method::GET, &format!("/dss/v1/subscriptions/{sid}"), Some(&uss), None).await;
    assert_eq!(s, 200, "{v}");
    // …gone once all three have ended (`at` rounds down to whole seconds:
    // 10 s ahead is at most 10 s away). The sweeper keeps them 5 more
    // minutes; reads do not show them.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let reads = [
        (Method::GET, format!("/dss/v1/subscriptions/{sid}"), &uss),
        (Method::GET, format!("/dss/v1/operational_intent_references/{iid}"), &uss),
        (Method::GET, format!("/dss/v1/constraint_references/{cid}"), &authority),
    ];
    for (m, path, tok) in reads {
        let (s, v) = call(&node, m, &path, Some(tok), None).await;
        assert_eq!(s, 404, "{path} after its end: {v}");
    }
    // Queried over a window that includes their past, they are not listed.
    let past = square_during(-5.0, 6.0, 1.05, -120, 3600);
    for (path, tok, list) in [
        ("/dss/v1/subscriptions/query", &uss, "subscriptions"),
        ("/dss/v1/operational_intent_references/query", &uss, "operational_intent_references"),
        ("/dss/v1/constraint_references/query", &authority, "constraint_references"),
    ] {
        let (s, v) = call(&node, Method::POST, path, Some(tok), Some(json!({"area_of_interest": past}))).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v[list], json!([]), "{path}: {v}");
    }
}
}

both_backends! {
#[tokio::test]
async fn quotas_per_client_answer_429_naming_the_field_and_hold_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("detente.toml");
    std::fs::write(
        &config,
        "max_subscriptions_per_area = 2\nmax_reports_per_day = 2\nmax_stored_points_per_client = 12\n",
    )
    .unwrap();
    let mut node = TestNode::start_with(bin(), &["--config", config.to_str().unwrap()]);
    let uss = token("uss1", SC);
    let sub = json!({ "extents": square(12.0, 12.0, 0.01), "uss_base_url": "https://uss.example/utm", "notify_for_operational_intents": true });
    let exchange = json!({"exchange": {"url": "https://x.example/uss/v1/operational_intents/1", "method": "GET", "recorder_role": "Client", "request_time": at(0), "request_source": "uss1"}});
    for _ in 0..2 {
        let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{}", new_id()), Some(&uss), Some(sub.clone())).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = call(&node, Method::POST, "/dss/v1/reports", Some(&uss), Some(exchange.clone())).await;
        assert_eq!(s, 201, "{v}");
    }
    for round in ["before", "after"] {
        let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{}", new_id()), Some(&uss), Some(sub.clone())).await;
        assert_eq!((s.as_u16(), field(&v)), (429, "extents"), "{round} a restart: {v}");
        assert!(v["message"].as_str().unwrap().contains("at most 2"), "{v}");
        let (s, v) = call(&node, Method::POST, "/dss/v1/reports", Some(&uss), Some(exchange.clone())).await;
        assert_eq!((s.as_u16(), field(&v)), (429, "exchange"), "{round} a restart: {v}");
        node.restart();
    }
    // Another client is not held back by the first one's quota.
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/subscriptions/{}", new_id()), Some(&token("uss2", SC)), Some(sub)).await;
    assert_eq!(s, 200, "{v}");
    // What one client stores is bounded: two 4-point subscriptions and a
    // 4-point intent fill its 12 points (the intent's implicit subscription
    // takes 4 more once stored), so the next intent is refused.
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/operational_intent_references/{}", new_id()), Some(&uss), Some(intent_body(square(40.0, 40.0, 0.01), &[], "Accepted"))).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(&node, Method::PUT, &format!("/dss/v1/operational_intent_references/{}", new_id()), Some(&uss), Some(intent_body(square(45.0, 45.0, 0.01), &[], "Accepted"))).await;
    assert_eq!((s.as_u16(), field(&v)), (429, "extents"), "{v}");
    assert!(v["message"].as_str().unwrap().contains("outline points"), "{v}");
    // A report's exchange is bounded in size: 413 naming it.
    let mut big = exchange.clone();
    big["exchange"]["problem"] = json!("x".repeat(70 * 1024));
    let (s, v) = call(&node, Method::POST, "/dss/v1/reports", Some(&token("uss3", SC)), Some(big)).await;
    assert_eq!((s.as_u16(), field(&v)), (413, "exchange"), "{v}");
}
}
