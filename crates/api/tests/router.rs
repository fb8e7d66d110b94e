//! Every route's status codes and error bodies, in process: the node's
//! router (`api::router`) over a real embedded store in a temporary folder,
//! called with `tower::ServiceExt::oneshot` — no listener, no process. What
//! needs a process (kill, restart, disk, partitions, the browser, the
//! listener's own limits) is tested in `crates/detente/tests`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use api::{AppState, AuthConfig, Authenticator, KeySource, Metrics, RateLimiter};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use node::entries::LogSigner;
use node::{Dss, RandomIds, Settings, SystemClock};
use serde_json::{Value, json};
use std::sync::Arc;
use test_support::{Signer, TokenSpec, intent_body, new_id, square};
use tower::ServiceExt;

use Method as M;

const SC: &str = "utm.strategic_coordination";
const CM: &str = "utm.constraint_management";
const CP: &str = "utm.constraint_processing";
const AA: &str = "utm.availability_arbitration";
const CMSA: &str = "utm.conformance_monitoring_sa";
const LINE: &str = "detente.line";
const ADMIN: &str = "detente.line.admin";

/// One node's HTTP surface over its own store.
struct App {
    router: axum::Router,
    store: Arc<dyn node::Store>,
    /// Every (method, path) called, for the coverage check.
    seen: std::sync::Mutex<Vec<(Method, String)>>,
    _dir: tempfile::TempDir,
}

impl App {
    async fn start() -> App {
        App::with_rate(1_000_000, 1_000_000).await
    }

    /// The node as `detente serve` wires it, with this rate limit.
    async fn with_rate(per_second: u32, burst: u32) -> App {
        let dir = tempfile::tempdir().unwrap();
        let seed = [7u8; 32];
        let name = "router.test";
        let signer = node::tlog::NoteSigner::from_seed(name, &seed).unwrap();
        let cosigner = node::tlog::cosignature::Cosigner::from_seed(name, &[8u8; 32]).unwrap();
        let log_signer = LogSigner {
            previous: None,
            signer,
            clock: Arc::new(SystemClock),
            member: None,
        };
        let store: Arc<dyn node::Store> = Arc::new(
            store::open_sqlite(dir.path(), log_signer.clone())
                .await
                .unwrap(),
        );
        let dss = Dss::new(
            store.clone(),
            Arc::new(SystemClock),
            Arc::new(RandomIds),
            Settings::default(),
        );
        let auth = Authenticator::new(&AuthConfig {
            keys: vec![KeySource::Pem(
                test_support::keys_dir().join("test-public.pem"),
            )],
            audience: test_support::AUDIENCE.into(),
            insecure_dev: false,
        })
        .unwrap();
        let state = Arc::new(AppState {
            dss,
            log: node::Log::new(store.clone(), log_signer),
            witness: node::Witness::new(store.clone(), cosigner, Vec::new(), Arc::new(SystemClock)),
            line: Arc::new(node::line::Line::new(
                store.clone(),
                Arc::new(SystemClock),
                Arc::new(RandomIds),
            )),
            auth,
            limiter: RateLimiter::new(per_second, burst),
            metrics: Metrics::new(false),
            console: api::console::Console::new(&seed, name, Vec::new()),
            tiles: None,
            uss_base_url: "https://router.test".into(),
        });
        App {
            router: api::router(state),
            store,
            seen: Default::default(),
            _dir: dir,
        }
    }

    /// Sends one request with a JSON body; the status and the body (JSON,
    /// or the text as a JSON string).
    async fn call(
        &self,
        method: Method,
        path: &str,
        scope: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send(method, path, scope, body.map(|b| b.to_string()))
            .await
    }

    /// Sends one request with this bearer token (any text), or none.
    async fn call_as(
        &self,
        method: Method,
        path: &str,
        bearer: Option<String>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.exchange(method, path, bearer, body.map(|b| b.to_string()))
            .await
    }

    /// Sends one request with a body given as text, labelled JSON.
    async fn send(
        &self,
        method: Method,
        path: &str,
        scope: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        self.exchange(method, path, scope.map(|s| token("uss1", s)), body)
            .await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        bearer: Option<String>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        self.seen
            .lock()
            .unwrap()
            .push((method.clone(), path.to_string()));
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Tokens are minted once per (sub, scope): RSA signing is slow in a dev
/// build and the table below makes many calls.
fn token(sub: &str, scope: &str) -> String {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static TOKENS: Mutex<Option<HashMap<(String, String), String>>> = Mutex::new(None);
    let mut t = TOKENS.lock().unwrap();
    t.get_or_insert_with(HashMap::new)
        .entry((sub.into(), scope.into()))
        .or_insert_with(|| test_support::token(sub, scope))
        .clone()
}

fn intent(lat: f64) -> Value {
    test_support::intent_body(test_support::square(lat, 10.0, 0.01), &[], "Accepted")
}

/// What one request must answer: a status, the body's `code` and (for a
/// refusal of one field) its `field`.
struct Case {
    method: Method,
    path: String,
    scope: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    code: Option<&'static str>,
    field: Option<&'static str>,
}

fn case(method: Method, path: impl Into<String>, scope: Option<&'static str>) -> Case {
    Case {
        method,
        path: path.into(),
        scope,
        body: None,
        status: 200,
        code: None,
        field: None,
    }
}

impl Case {
    fn body(mut self, b: Value) -> Case {
        self.body = Some(b);
        self
    }
    fn is(mut self, status: u16, code: &'static str) -> Case {
        self.status = status;
        self.code = Some(code);
        self
    }
    fn naming(mut self, field: &'static str) -> Case {
        self.field = Some(field);
        self
    }
    fn ok(mut self, status: u16) -> Case {
        self.status = status;
        self
    }
}

async fn check(app: &App, cases: Vec<Case>) {
    let mut wrong = Vec::new();
    for c in cases {
        let (status, v) = app
            .call(c.method.clone(), &c.path, c.scope, c.body.clone())
            .await;
        let what = format!("{} {} ({:?})", c.method, c.path, c.scope);
        if status.as_u16() != c.status {
            wrong.push(format!("{what}: {status}, expected {}: {v}", c.status));
            continue;
        }
        if let Some(code) = c.code
            && v["code"] != code
        {
            wrong.push(format!("{what}: code {}, expected {code}: {v}", v["code"]));
        }
        if c.code.is_some() && v["message"].as_str().is_none_or(|m| m.is_empty()) {
            wrong.push(format!("{what}: a refusal without a message: {v}"));
        }
        if let Some(field) = c.field
            && v["field"] != field
        {
            wrong.push(format!(
                "{what}: field {}, expected {field}: {v}",
                v["field"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn id() -> String {
    test_support::new_id()
}

/// Whether a concrete path (query ignored) is one the route template
/// `/a/{b}/{*c}` takes.
fn matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(seg), Some(_)) if seg.starts_with("{*") => return true,
            (Some(seg), Some(got)) if seg.starts_with('{') && !got.is_empty() => {}
            (Some(seg), Some(got)) if seg == got => {}
            _ => return false,
        }
    }
}

#[tokio::test]
async fn every_route_answers_its_statuses_and_error_bodies() {
    let app = App::start().await;
    dss_routes_answer_the_statuses_and_bodies_f3548_lists(&app).await;
    the_nodes_own_routes_answer_and_refuse_as_documented(&app).await;
    line_routes_check_scopes_and_name_the_field_at_fault(&app).await;
    console_routes_refuse_without_a_session(&app).await;
    let seen = app.seen.lock().unwrap().clone();
    let mut untested = Vec::new();
    for (methods, template) in test_support::api_routes() {
        for m in methods {
            if !seen
                .iter()
                .any(|(sm, path)| sm.as_str() == m && matches(&template, path))
            {
                untested.push(format!("{m} {template}"));
            }
        }
    }
    assert!(
        untested.is_empty(),
        "routes with no case here: {untested:?}"
    );
}

async fn dss_routes_answer_the_statuses_and_bodies_f3548_lists(app: &App) {
    use Method as M;
    // An intent of uss1's to refer to.
    let mine = id();
    let (s, v) = app
        .call(
            M::PUT,
            &format!("/dss/v1/operational_intent_references/{mine}"),
            Some(SC),
            Some(intent(40.0)),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let ovn = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    let oir = "/dss/v1/operational_intent_references";
    let cr = "/dss/v1/constraint_references";
    let subs = "/dss/v1/subscriptions";
    let area = json!({ "area_of_interest": test_support::square(40.0, 10.0, 0.5) });
    check(
        app,
        vec![
            // Operational intents.
            case(M::GET, format!("{oir}/{mine}"), Some(SC)),
            case(M::GET, format!("{oir}/{mine}"), None).is(401, "unauthenticated"),
            case(M::GET, format!("{oir}/{mine}"), Some(CM)).is(403, "forbidden"),
            case(M::GET, format!("{oir}/{}", id()), Some(SC)).is(404, "not_found"),
            case(M::GET, format!("{oir}/not-a-uuid"), Some(SC))
                .is(400, "invalid_input")
                .naming("entityid"),
            case(M::PUT, format!("{oir}/{}", id()), Some(SC))
                .body(json!({ "extents": [] }))
                .is(400, "invalid_input"),
            case(M::PUT, format!("{oir}/{}", id()), Some(SC))
                .body(intent(40.0))
                .is(409, "key_check_failed"),
            case(M::PUT, format!("{oir}/{mine}/{}", "x".repeat(16)), Some(SC))
                .body(intent(40.0))
                .is(409, "ovn_mismatch"),
            case(M::PUT, format!("{oir}/{mine}/{ovn}"), Some(SC))
                .body(test_support::intent_body(
                    test_support::square(40.0, 10.0, 0.01),
                    &[],
                    "Flying",
                ))
                .is(400, "invalid_input")
                .naming("state"),
            case(M::PUT, format!("{oir}/{mine}/"), Some(SC))
                .body(intent(40.0))
                .is(400, "invalid_input")
                .naming("ovn"),
            case(M::DELETE, format!("{oir}/{}/{}", id(), "x".repeat(16)), Some(SC))
                .is(404, "not_found"),
            case(M::DELETE, format!("{oir}/{mine}/"), Some(SC))
                .is(400, "invalid_input")
                .naming("ovn"),
            case(M::POST, format!("{oir}/query"), Some(SC)).body(area.clone()),
            case(M::POST, format!("{oir}/query"), Some(SC))
                .body(json!({}))
                .is(400, "invalid_input")
                .naming("area_of_interest"),
            // Constraints.
            case(M::GET, format!("{cr}/{}", id()), Some(CM)).is(404, "not_found"),
            case(M::GET, format!("{cr}/{}", id()), Some(CMSA)).is(403, "forbidden"),
            case(M::PUT, format!("{cr}/{}", id()), Some(SC))
                .body(json!({ "extents": [test_support::square(40.0, 10.0, 0.01)], "uss_base_url": "https://uss1.example" }))
                .is(403, "forbidden"),
            case(M::PUT, format!("{cr}/{}/", id()), Some(CM))
                .body(json!({}))
                .is(400, "invalid_input")
                .naming("ovn"),
            case(M::POST, format!("{cr}/query"), Some(CM)).body(area.clone()),
            case(M::PUT, format!("{cr}/{}/{}", id(), "x".repeat(16)), Some(CM))
                .body(json!({ "extents": [test_support::square(40.0, 10.0, 0.01)], "uss_base_url": "https://uss1.example" }))
                .is(404, "not_found"),
            case(M::DELETE, format!("{cr}/{}/{}", id(), "x".repeat(16)), Some(CM))
                .is(404, "not_found"),
            case(M::DELETE, format!("{cr}/{}/", id()), Some(CM))
                .is(400, "invalid_input")
                .naming("ovn"),
            // Subscriptions.
            case(M::GET, format!("{subs}/{}", id()), Some(SC)).is(404, "not_found"),
            case(M::PUT, format!("{subs}/{}", id()), Some(SC))
                .body(json!({ "extents": test_support::square(40.0, 10.0, 0.01), "uss_base_url": "https://uss1.example" }))
                .is(400, "invalid_input")
                .naming("notify_for_operational_intents"),
            case(M::PUT, format!("{subs}/{}/", id()), Some(SC))
                .body(json!({}))
                .is(400, "invalid_input")
                .naming("version"),
            case(M::DELETE, format!("{subs}/{}/v1", id()), Some(SC)).is(404, "not_found"),
            case(M::PUT, format!("{subs}/{}/v1", id()), Some(SC))
                .body(json!({ "extents": test_support::square(40.0, 10.0, 0.01), "uss_base_url": "https://uss1.example", "notify_for_operational_intents": true }))
                .is(404, "not_found"),
            case(M::DELETE, format!("{subs}/{}/", id()), Some(SC))
                .is(400, "invalid_input")
                .naming("version"),
            case(M::POST, format!("{subs}/query"), Some(SC)).body(area.clone()),
            // The USS interface: only for the peers' copies held here.
            case(M::GET, format!("/uss/v1/operational_intents/{mine}"), Some(SC))
                .is(404, "not_found"),
            case(M::GET, format!("/uss/v1/operational_intents/{}", id()), Some(SC))
                .is(404, "not_found"),
            case(M::GET, format!("/uss/v1/operational_intents/{}", id()), Some(CM))
                .is(403, "forbidden"),
            case(M::GET, "/uss/v1/operational_intents/not-a-uuid", Some(SC))
                .is(400, "invalid_input")
                .naming("entityid"),
            case(M::GET, format!("/uss/v1/constraints/{}", id()), Some(CP))
                .is(404, "not_found"),
            case(M::GET, format!("/uss/v1/constraints/{}", id()), Some(SC))
                .is(403, "forbidden"),
            // Availability and reports.
            case(M::GET, "/dss/v1/uss_availability/uss9", Some(SC)),
            case(M::PUT, "/dss/v1/uss_availability/uss9", Some(SC))
                .body(json!({ "old_version": "", "availability": "Down" }))
                .is(403, "forbidden"),
            case(M::PUT, "/dss/v1/uss_availability/uss9", Some(AA))
                .body(json!({ "old_version": "", "availability": "Sideways" }))
                .is(400, "invalid_input")
                .naming("availability"),
            case(M::POST, "/dss/v1/reports", Some(SC))
                .body(json!({ "report": 5 }))
                .is(400, "invalid_input")
                .naming("exchange"),
            // Bodies that are not JSON at all.
            case(M::POST, format!("{oir}/query"), Some(SC))
                .body(json!("not an object"))
                .is(400, "invalid_input"),
        ],
    )
    .await;
    // Nothing refused above changed anything: uss1's one intent is all.
    let mut intents = 0;
    app.store
        .read(&mut |s| intents = s.intents().count())
        .unwrap();
    assert_eq!(intents, 1);
}

async fn the_nodes_own_routes_answer_and_refuse_as_documented(app: &App) {
    use Method as M;
    check(
        app,
        vec![
            case(M::GET, "/healthz", None),
            case(M::GET, "/metrics", None),
            case(M::GET, "/aux/v1/version", None),
            case(M::GET, "/aux/v1/validate_oauth", Some(SC)),
            case(M::GET, "/aux/v1/validate_oauth", None).is(401, "unauthenticated"),
            case(M::GET, "/detente/v1/conflicts", Some(SC)),
            case(M::GET, "/detente/v1/conflicts", None).is(401, "unauthenticated"),
            case(M::GET, "/detente/v1/openapi.json", None),
            case(M::GET, "/statements/feed.json", None),
            case(M::GET, "/statements/feed.json?before=x", None)
                .is(400, "invalid_input")
                .naming("before"),
            case(
                M::GET,
                "/detente/v1/export/airspace.geojson?bbox=9,44,11,46",
                Some(SC),
            ),
            case(M::GET, "/detente/v1/export/airspace.geojson", None).is(401, "unauthenticated"),
            case(
                M::GET,
                "/detente/v1/export/airspace.geojson?bbox=1,2,3",
                Some(SC),
            )
            .is(400, "invalid_input")
            .naming("bbox"),
            case(
                M::GET,
                "/detente/v1/export/airspace.geojson?bbox=11,44,9,46",
                Some(SC),
            )
            .is(400, "invalid_input")
            .naming("bbox"),
            case(
                M::GET,
                "/detente/v1/export/airspace.kml?from=yesterday",
                Some(SC),
            )
            .is(400, "invalid_input")
            .naming("from"),
            case(
                M::GET,
                "/detente/v1/export/airspace.kml?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z",
                Some(SC),
            )
            .is(400, "invalid_input")
            .naming("to"),
            case(M::GET, "/detente/v1/export/airspace.kml", Some(SC)),
            case(M::GET, "/nowhere", None).is(401, "unauthenticated"),
            // The public evidence log.
            case(M::GET, "/log/key", None),
            case(M::GET, "/log/checkpoint", None),
            case(M::GET, "/log/proof/consistency?first=2&second=1", None)
                .is(400, "invalid_input")
                .naming("first"),
            case(M::GET, "/log/entries?start=5&end=2", None)
                .is(400, "invalid_input")
                .naming("end"),
            case(M::GET, "/log/proof/inclusion?index=0&size=99", None)
                .is(400, "invalid_input")
                .naming("size"),
            case(M::GET, "/log/tile/0/x999", None)
                .is(400, "invalid_input")
                .naming("path"),
            case(M::GET, "/log/tile/0/999", None).is(404, "not_found"),
            case(M::GET, "/witness/key", None),
            case(M::GET, "/peer/v1/witness/key", None),
            case(M::POST, "/peer/v1/witness/add-checkpoint", None)
                .body(json!("old 0\n"))
                .ok(400),
            case(M::GET, "/witness/misbehaviour", None),
            case(M::POST, "/witness/add-checkpoint", None)
                .body(json!("old 0\n"))
                .ok(400),
        ],
    )
    .await;
}

async fn line_routes_check_scopes_and_name_the_field_at_fault(app: &App) {
    use Method as M;
    let member = node::liaison::MemberSigner::from_seed(&[1; 32]).key();
    let peer = json!({ "name": "alliance", "url": "https://alliance.example", "key": "not a key" });
    check(
        app,
        vec![
            case(M::GET, "/line/v1/peers", Some(LINE)),
            case(M::GET, "/line/v1/peers", Some(SC)).is(403, "forbidden"),
            case(M::GET, "/line/v1/mesh", Some(LINE)),
            case(M::POST, "/line/v1/messages/group", Some(LINE))
                .body(json!({ "messages": [] }))
                .is(400, "invalid_input")
                .naming("messages"),
            case(M::POST, "/line/v1/messages/group", Some(SC))
                .body(json!({ "messages": [] }))
                .is(403, "forbidden"),
            case(M::GET, "/line/v1/mesh", Some(SC)).is(403, "forbidden"),
            case(M::POST, "/line/v1/peers", Some(LINE))
                .body(peer.clone())
                .is(403, "forbidden"),
            case(M::POST, "/line/v1/peers", Some(ADMIN))
                .body(peer)
                .is(400, "invalid_input")
                .naming("key"),
            case(M::POST, "/line/v1/peers", Some(ADMIN))
                .body(json!({ "name": "x", "url": "https://x", "key": "k", "extra": 1 }))
                .is(400, "invalid_input")
                .naming("extra"),
            case(M::PUT, "/line/v1/peers/nobody/area", Some(ADMIN))
                .body(json!({ "polygons": [] }))
                .is(404, "unknown_peer"),
            case(M::POST, "/line/v1/peers/nobody/remove", Some(ADMIN))
                .body(json!({ "reason": "relations downgraded" }))
                .is(404, "unknown_peer"),
            case(M::POST, "/line/v1/peers/nobody/remove", Some(LINE))
                .body(json!({ "reason": "x" }))
                .is(403, "forbidden"),
            case(M::POST, "/line/v1/peers/nobody/remove", Some(ADMIN))
                .body(json!({ "reason": "x", "effective_ms": 5 }))
                .is(400, "invalid_input")
                .naming("effective_ms"),
            case(M::POST, "/line/v1/statements", Some(ADMIN))
                .body(json!({ "language": "en", "text": "No evidence has been produced." })),
            case(M::POST, "/line/v1/statements", Some(LINE))
                .body(json!({ "language": "en", "text": "x" }))
                .is(403, "forbidden"),
            case(M::POST, "/line/v1/statements", Some(ADMIN))
                .body(json!({ "language": "not a tag", "text": "x" }))
                .is(400, "invalid_input")
                .naming("language"),
            case(M::POST, "/line/v1/statements", Some(ADMIN))
                .body(json!({ "language": "en", "text": "x", "answers": [{ "origin": "a", "index": 1, "leaf_hash": "short" }] }))
                .is(400, "invalid_input")
                .naming("answers[0].leaf_hash"),
            case(M::POST, "/line/v1/contact-line", Some(LINE))
                .body(json!({ "line": [[45.0, 10.0], [45.1, 10.2]], "buffer_m": 1000, "time_end": "2099-01-01T00:00:00Z" }))
                .is(403, "forbidden"),
            case(M::POST, "/line/v1/contact-line", Some(ADMIN))
                .body(json!({ "line": [[45.0, 10.0], [45.1, 10.2]], "buffer_m": 0, "time_end": "2099-01-01T00:00:00Z" }))
                .is(400, "invalid_input")
                .naming("buffer_m"),
            case(M::POST, "/line/v1/contact-line", Some(ADMIN))
                .body(json!({ "line": [[45.0, 10.0]], "buffer_m": 1000, "time_end": "2099-01-01T00:00:00Z" }))
                .is(400, "invalid_input")
                .naming("line"),
            case(M::POST, "/line/v1/contact-line", Some(ADMIN))
                .body(json!({ "line": [[45.0, 10.0], [45.1, 10.2]], "buffer_m": 1000, "time_end": "tomorrow" }))
                .is(400, "invalid_input")
                .naming("time_end"),
            case(M::POST, "/line/v1/contact-line", Some(ADMIN))
                .body(json!({ "line": [[45.0, 10.0], [45.1, 10.2]], "buffer_m": 1000, "time_end": "2099-01-01T00:00:00Z" })),
            case(M::POST, "/line/v1/contact-line", Some(ADMIN))
                .body(json!({ "peer": "nobody", "line": [[45.0, 10.0], [45.1, 10.2]], "buffer_m": 1000, "time_end": "2099-01-01T00:00:00Z" }))
                .is(404, "unknown_peer"),
            case(M::POST, "/line/v1/contact-line", Some(ADMIN))
                .body(json!({ "peer": "nobody", "id": "2f8343be-6482-4d1b-a474-16847e01af1e", "line": [[45.0, 10.0], [45.1, 10.2]], "buffer_m": 1000, "time_end": "2099-01-01T00:00:00Z" }))
                .is(400, "invalid_input")
                .naming("id"),
            case(M::POST, "/line/v1/peers/nobody/area/accept", Some(ADMIN)).is(404, "unknown_peer"),
            case(M::POST, "/line/v1/peers/nobody/contact-line/accept", Some(LINE))
                .is(403, "forbidden"),
            case(M::POST, "/line/v1/peers/nobody/treaty/accept", Some(ADMIN)).is(404, "not_found"),
            case(M::PUT, "/line/v1/contact/not-a-uuid", Some(ADMIN))
                .is(400, "invalid_input")
                .naming("constraint"),
            case(M::GET, "/line/v1/members", Some(LINE)),
            case(M::POST, format!("/line/v1/members/{}/replace", member.to_hex()), Some(ADMIN))
                .body(json!({ "key": "zz" }))
                .is(400, "invalid_input")
                .naming("key"),
            case(M::POST, format!("/line/v1/members/{}/replace", member.to_hex()), Some(LINE))
                .body(json!({ "key": member.to_hex() }))
                .is(403, "forbidden"),
            case(M::POST, format!("/line/v1/members/{}/compromised", member.to_hex()), Some(ADMIN))
                .body(json!({ "reason": "stolen", "from": "yesterday" }))
                .is(400, "invalid_input")
                .naming("from"),
            case(M::POST, format!("/line/v1/members/{}/compromised", member.to_hex()), Some(ADMIN))
                .body(json!({ "reason": "stolen" }))
                .is(404, "not_found"),
            case(M::POST, "/line/v1/members", Some(ADMIN))
                .body(json!({ "key": "00", "name": "a", "role": "b", "spheres": [] }))
                .is(400, "invalid_input")
                .naming("key"),
            case(M::POST, "/line/v1/members", Some(ADMIN))
                .body(json!({ "key": member.to_hex(), "name": "a", "role": "b", "spheres": ["nowhere"] }))
                .is(400, "invalid_input")
                .naming("spheres[0]"),
            case(M::DELETE, format!("/line/v1/members/{}", member.to_hex()), Some(ADMIN))
                .is(404, "not_found"),
            case(M::DELETE, "/line/v1/members/00", Some(ADMIN))
                .is(400, "invalid_input")
                .naming("key"),
            case(M::GET, "/line/v1/missions", Some(LINE)),
            case(M::PUT, "/line/v1/missions/nobody/quota", Some(ADMIN))
                .body(json!({ "quota": "many" }))
                .is(400, "invalid_input")
                .naming("quota"),
            case(M::POST, "/line/v1/missions/nobody/accreditations", Some(ADMIN))
                .body(json!({ "member": "00", "name": "a", "role": "b", "spheres": [], "valid_until_ms": 1 }))
                .is(400, "invalid_input")
                .naming("member"),
            case(M::POST, "/line/v1/missions/nobody/close", Some(ADMIN))
                .body(json!({ "reason": "relations downgraded" }))
                .is(404, "unknown_peer"),
            case(M::PUT, "/line/v1/channels/nobody/direct-line/deadlines", Some(ADMIN))
                .body(json!({ "flash_s": 5, "immediate_s": 600, "priority_s": 3600, "routine_s": 86400 }))
                .is(400, "invalid_input")
                .naming("flash_s"),
            case(M::POST, "/line/v1/accreditations/not-a-uuid/revoke", Some(ADMIN))
                .body(json!({ "reason": "expelled" }))
                .is(400, "invalid_input")
                .naming("id"),
            case(M::POST, format!("/line/v1/accreditations/{}/revoke", id()), Some(ADMIN))
                .body(json!({ "reason": "expelled", "effective_ms": 5 }))
                .is(400, "invalid_input")
                .naming("effective_ms"),
            case(M::POST, format!("/line/v1/accreditations/{}/revoke", id()), Some(ADMIN))
                .body(json!({ "reason": "leave within three days", "effective_ms": 4_102_444_800_000u64 }))
                .is(404, "not_found"),
            case(M::POST, format!("/line/v1/accreditations/{}/revoke", id()), Some(LINE))
                .body(json!({ "reason": "expelled" }))
                .is(403, "forbidden"),
            case(M::GET, "/line/v1/missions", None)
                .is(401, "unauthenticated")
                ,
            case(M::GET, "/line/v1/channels", Some(LINE)),
            case(M::GET, "/line/v1/access", Some(LINE)),
            case(M::GET, "/line/v1/access", Some(SC)).is(403, "forbidden"),
            case(M::POST, "/line/v1/channels/nobody/nowhere", Some(ADMIN))
                .is(400, "invalid_input"),
            case(M::GET, "/line/v1/messages", Some(LINE)),
            case(M::POST, "/line/v1/messages", Some(LINE))
                .body(json!({}))
                .is(400, "invalid_input"),
            case(M::POST, "/line/v1/acks", Some(LINE))
                .body(json!({}))
                .is(400, "invalid_input"),
            case(M::GET, "/line/v1/status", Some(LINE)),
            case(M::POST, "/peer/v1/records", None)
                .body(json!({ "from": "nobody", "records": [] }))
                .ok(403),
        ],
    )
    .await;
}

async fn console_routes_refuse_without_a_session(app: &App) {
    use Method as M;
    check(
        app,
        vec![
            case(M::GET, "/console/api/challenge", None),
            case(M::POST, "/console/api/login", None)
                .body(json!({}))
                .is(400, "invalid_input"),
            case(M::GET, "/console/api/session", None).is(401, "unauthenticated"),
            case(M::POST, "/console/api/seen", None)
                .body(json!({ "message": "x", "at_ms": 1, "signature": "00" }))
                .is(401, "unauthenticated"),
            case(M::GET, "/console/api/airspace", None).is(401, "unauthenticated"),
            case(M::GET, "/console/api/evidence", None).is(401, "unauthenticated"),
            case(M::GET, "/console/api/events", None).is(401, "unauthenticated"),
            case(M::GET, "/console/api/basemap", None).is(401, "unauthenticated"),
            case(M::GET, "/console/api/tiles/1/0/0", None).is(401, "unauthenticated"),
            case(M::POST, "/console/api/logout", None).ok(204),
            case(M::GET, "/", None).ok(307),
            case(M::GET, "/console", None).ok(308),
            case(M::GET, "/console/", None),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_client_past_its_rate_is_answered_429_with_retry_after() {
    let app = App::with_rate(1, 3).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (s, v) = app
            .call(Method::GET, "/detente/v1/conflicts", Some(SC), None)
            .await;
        if s == 429 {
            assert_eq!(v["code"], "rate_limited", "{v}");
        }
        statuses.push(s.as_u16());
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn impossible_geometry_and_malformed_bodies_are_400_naming_the_field_and_change_nothing() {
    let app = App::start().await;
    let scopes = format!("{SC} {CM}");
    let put = |body: Value| {
        let (app, scopes) = (&app, &scopes);
        async move {
            app.call(
                Method::PUT,
                &format!("/dss/v1/operational_intent_references/{}", id()),
                Some(scopes),
                Some(body),
            )
            .await
        }
    };
    let bowtie = test_support::polygon_volume(
        &[(0.0, 0.0), (0.1, 0.1), (0.1, 0.0), (0.0, 0.1)],
        (0.0, 100.0),
        0,
        3600,
    );
    let two = test_support::polygon_volume(&[(0.0, 0.0), (0.1, 0.1)], (0.0, 100.0), 0, 3600);
    let many: Vec<(f64, f64)> = (0..10_001)
        .map(|i| {
            let a = i as f64 / 10_001.0 * std::f64::consts::TAU;
            (0.05 * a.sin(), 0.05 * a.cos())
        })
        .collect();
    let too_many = test_support::polygon_volume(&many, (0.0, 100.0), 0, 3600);
    let upside_down = test_support::polygon_volume(
        &[(0.0, 0.0), (0.0, 0.1), (0.1, 0.1)],
        (500.0, 100.0),
        0,
        3600,
    );
    let backwards = test_support::polygon_volume(
        &[(0.0, 0.0), (0.0, 0.1), (0.1, 0.1)],
        (0.0, 100.0),
        3600,
        60,
    );
    let huge = test_support::polygon_volume(
        &[(0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0)],
        (0.0, 100.0),
        0,
        3600,
    );
    let past = test_support::polygon_volume(
        &[(0.0, 0.0), (0.0, 0.1), (0.1, 0.1)],
        (0.0, 100.0),
        -7200,
        -3600,
    );
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            test_support::intent_body(bowtie, &[], "Accepted"),
            400,
            "extents[0].volume.outline_polygon.vertices",
        ),
        (
            test_support::intent_body(two, &[], "Accepted"),
            400,
            "extents[0].volume.outline_polygon.vertices",
        ),
        (
            test_support::intent_body(too_many, &[], "Accepted"),
            400,
            "extents[0].volume.outline_polygon.vertices",
        ),
        (
            test_support::intent_body(upside_down, &[], "Accepted"),
            400,
            "extents[0].volume.altitude_lower.value",
        ),
        (
            test_support::intent_body(backwards, &[], "Accepted"),
            400,
            "extents[0].time_end",
        ),
        (
            test_support::intent_body(huge, &[], "Accepted"),
            413,
            "extents[0].volume.outline_polygon.vertices",
        ),
        (
            test_support::intent_body(past, &[], "Accepted"),
            400,
            "extents[0].time_end",
        ),
        (
            test_support::intent_body(test_support::square(0.0, 0.0, 0.01), &[], "Ended"),
            400,
            "state",
        ),
        (
            test_support::intent_body(test_support::square(0.0, 0.0, 0.01), &["short"], "Accepted"),
            400,
            "key[0]",
        ),
        (
            json!({"state": "Accepted", "uss_base_url": "https://x.example"}),
            400,
            "extents",
        ),
        (
            json!({"extents": [], "state": "Accepted", "uss_base_url": "https://x.example"}),
            400,
            "extents",
        ),
        (
            json!({"extents": [test_support::square(0.0, 0.0, 0.01)], "state": "Accepted", "uss_base_url": "ftp://x.example"}),
            400,
            "uss_base_url",
        ),
        (
            json!({"extents": [{"volume": {"outline_polygon": {"vertices": [{"lat": "north", "lng": 0}]}}}], "state": "Accepted", "uss_base_url": "https://x.example"}),
            400,
            "extents[0].volume.outline_polygon.vertices[0].lat",
        ),
        (
            json!({"extents": [{"volume": {"outline_circle": {"center": {"lat": 0, "lng": 0}, "radius": {"value": 10, "units": "M"}}, "outline_polygon": {"vertices": []}}}], "state": "Accepted", "uss_base_url": "https://x.example"}),
            400,
            "extents[0].volume",
        ),
        (
            json!({"extents": [{"volume": {"outline_circle": {"center": {"lat": 0, "lng": 0}, "radius": {"value": 10, "units": "FT"}}}}], "state": "Accepted", "uss_base_url": "https://x.example"}),
            400,
            "extents[0].volume.outline_circle.radius.units",
        ),
    ];
    for (body, status, want_field) in cases {
        let (s, v) = put(body).await;
        assert_eq!(s.as_u16(), status, "{want_field}: {v}");
        assert_eq!(v["field"], want_field, "{v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    // Syntax errors and non-finite numbers.
    let raw = |text: String| {
        let (app, scopes) = (&app, &scopes);
        async move {
            let (s, v) = app
                .send(
                    Method::PUT,
                    &format!("/dss/v1/operational_intent_references/{}", id()),
                    Some(scopes),
                    Some(text),
                )
                .await;
            (s.as_u16(), v)
        }
    };
    let (s, v) = raw("{\"extents\": [".into()).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = raw("{\"extents\": [{\"volume\": {\"outline_circle\": {\"center\": {\"lat\": 1e999, \"lng\": 0}}}}]}".into()).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["field"]
            .as_str()
            .unwrap()
            .starts_with("extents[0].volume.outline_circle.center"),
        "{v}"
    );
    // Bad ids.
    let (s, v) = app
        .call(
            Method::GET,
            "/dss/v1/operational_intent_references/not-a-uuid",
            Some(&scopes),
            None,
        )
        .await;
    assert_eq!((s.as_u16(), v["field"].as_str()), (400, Some("entityid")));
    // An oversized body is 413.
    let (s, _) = raw("x".repeat(5 * 1024 * 1024)).await;
    assert_eq!(s, 413);
    // Nothing was written by any of it.
    let (_, h) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(h["operational_intents"], 0, "{h}");
}

/// Every DSS endpoint, with a body where it takes one, and the scopes that
/// are *not* enough for it.
fn endpoints() -> Vec<(M, String, Option<Value>, &'static str)> {
    let id = new_id();
    let q = json!({ "area_of_interest": square(10.0, 10.0, 0.1) });
    let sub = json!({ "extents": square(10.0, 10.0, 0.1), "uss_base_url": "https://uss.example/utm", "notify_for_operational_intents": true });
    let ovn = "x".repeat(20);
    vec![
        (
            M::POST,
            "/dss/v1/operational_intent_references/query".into(),
            Some(q.clone()),
            AA,
        ),
        (
            M::GET,
            format!("/dss/v1/operational_intent_references/{id}"),
            None,
            CM,
        ),
        (
            M::PUT,
            format!("/dss/v1/operational_intent_references/{id}"),
            Some(intent_body(square(10.0, 10.0, 0.01), &[], "Accepted")),
            CM,
        ),
        (
            M::PUT,
            format!("/dss/v1/operational_intent_references/{id}/{ovn}"),
            Some(intent_body(square(10.0, 10.0, 0.01), &[], "Accepted")),
            AA,
        ),
        (
            M::DELETE,
            format!("/dss/v1/operational_intent_references/{id}/{ovn}"),
            None,
            CP,
        ),
        (
            M::POST,
            "/dss/v1/constraint_references/query".into(),
            Some(q.clone()),
            SC,
        ),
        (
            M::GET,
            format!("/dss/v1/constraint_references/{id}"),
            None,
            SC,
        ),
        (
            M::PUT,
            format!("/dss/v1/constraint_references/{id}"),
            Some(
                json!({"extents": [square(10.0, 10.0, 0.01)], "uss_base_url": "https://a.example"}),
            ),
            CP,
        ),
        (
            M::PUT,
            format!("/dss/v1/constraint_references/{id}/{ovn}"),
            Some(
                json!({"extents": [square(10.0, 10.0, 0.01)], "uss_base_url": "https://a.example"}),
            ),
            SC,
        ),
        (
            M::DELETE,
            format!("/dss/v1/constraint_references/{id}/{ovn}"),
            None,
            CP,
        ),
        (M::POST, "/dss/v1/subscriptions/query".into(), Some(q), CM),
        (M::GET, format!("/dss/v1/subscriptions/{id}"), None, CMSA),
        (
            M::PUT,
            format!("/dss/v1/subscriptions/{id}"),
            Some(sub.clone()),
            AA,
        ),
        (
            M::PUT,
            format!("/dss/v1/subscriptions/{id}/1"),
            Some(sub),
            CM,
        ),
        (
            M::DELETE,
            format!("/dss/v1/subscriptions/{id}/1"),
            None,
            CMSA,
        ),
        (
            M::POST,
            "/dss/v1/reports".into(),
            Some(json!({"exchange": {}})),
            "none",
        ),
        (
            M::PUT,
            "/dss/v1/uss_availability/uss1".into(),
            Some(json!({"old_version": "", "availability": "Down"})),
            SC,
        ),
        (M::GET, "/dss/v1/uss_availability/uss1".into(), None, CP),
        (M::GET, "/detente/v1/conflicts".into(), None, CM),
    ]
}

#[tokio::test]
async fn every_endpoint_refuses_missing_bad_expired_foreign_and_underscoped_tokens() {
    let app = App::start().await;
    for (method, path, body, weak_scope) in endpoints() {
        let what = format!("{method} {path}");
        let (s, v) = app.call_as(method.clone(), &path, None, body.clone()).await;
        assert_eq!(s, 401, "{what} without a token: {v}");
        assert!(
            v["message"].as_str().is_some(),
            "{what}: ErrorResponse body"
        );
        let (s, _) = app
            .call_as(
                method.clone(),
                &path,
                Some("not.a.jwt".into()),
                body.clone(),
            )
            .await;
        assert_eq!(s, 401, "{what} with garbage");
        let expired = TokenSpec {
            expires_in: -3600,
            ..TokenSpec::new("uss1", &Scope::all())
        }
        .mint();
        assert_eq!(
            app.call_as(method.clone(), &path, Some(expired.clone()), body.clone())
                .await
                .0,
            401,
            "{what} expired"
        );
        let wrong_aud = TokenSpec {
            audience: "someone-else.example".into(),
            ..TokenSpec::new("uss1", &Scope::all())
        }
        .mint();
        assert_eq!(
            app.call_as(method.clone(), &path, Some(wrong_aud.clone()), body.clone())
                .await
                .0,
            401,
            "{what} wrong audience"
        );
        let wrong_key = TokenSpec {
            signer: Signer::Other,
            ..TokenSpec::new("uss1", &Scope::all())
        }
        .mint();
        assert_eq!(
            app.call_as(method.clone(), &path, Some(wrong_key.clone()), body.clone())
                .await
                .0,
            401,
            "{what} wrong key"
        );
        let (s, v) = app
            .call_as(
                method.clone(),
                &path,
                Some(token("uss1", weak_scope)),
                body.clone(),
            )
            .await;
        assert_eq!(s, 403, "{what} with only {weak_scope}: {v}");
        // With every scope, authentication is no longer the problem.
        let (s, v) = app
            .call_as(
                method.clone(),
                &path,
                Some(token("uss1", &Scope::all())),
                body.clone(),
            )
            .await;
        assert!(s != 401 && s != 403, "{what} with all scopes: {s} {v}");
    }
}

struct Scope;
impl Scope {
    fn all() -> String {
        [SC, CP, CM, AA, CMSA].join(" ")
    }
}
