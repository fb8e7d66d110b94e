//! The line between two real nodes over HTTP: peering with pinned keys,
//! accreditation, member-signed messages delivered with signed receipts,
//! acknowledgements, refusal after revocation, and resending after the
//! receiver was down.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use api::wire::line::{AccreditBody, AreaBody, MemberBody, PeerBody, QuotaBody};
use liaison::{Ack, AckVerdict, Body, MemberSigner, Message, Precedence, Sphere};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use test_support::*;
use test_support::{Signer, TokenSpec};
use uuid::Uuid;

const A: &str = "alliance.test";
const F: &str = "federation.test";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

fn admin() -> String {
    token("line-admin", "detente.line.admin")
}

fn officer() -> String {
    token("duty-officer", "detente.line")
}

async fn call(method: &str, url: String, tok: &str, body: Option<Value>) -> (u16, Value) {
    let c = test_support::http();
    let mut r = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        _ => c.post(url),
    }
    .bearer_auth(tok);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn ok(method: &str, url: String, tok: &str, body: Option<Value>) -> Value {
    let (s, v) = call(method, url.clone(), tok, body).await;
    assert!((200..300).contains(&s), "{method} {url}: {s} {v}");
    v
}

async fn log_key(n: &TestNode) -> String {
    get_text(&n.url("/log/key")).await.trim().to_string()
}

struct Pair {
    a: TestNode,
    f: TestNode,
    /// Alliance's duty officer.
    a1: MemberSigner,
    /// Federation's liaison officer, accredited by Alliance for military.
    f1: MemberSigner,
    accreditation: String,
}

async fn register(n: &TestNode, s: &MemberSigner, name: &str) {
    n.client(&admin())
        .register_member(&MemberBody {
            key: s.key().to_hex(),
            name: name.into(),
            role: "duty officer".into(),
            spheres: vec!["military".into(), "direct-line".into()],
        })
        .await
        .unwrap();
}

/// `n` pins the peer `name` at `url` with its log key.
async fn pin(n: &TestNode, name: &str, url: &str, key: &str) {
    n.client(&admin())
        .add_peer(&PeerBody {
            name: name.into(),
            url: url.into(),
            key: key.into(),
        })
        .await
        .unwrap();
}

async fn peered() -> Pair {
    let a = TestNode::start_with(bin(), &["--name", A]);
    let f = TestNode::start_with(bin(), &["--name", F]);
    let a1 = MemberSigner::from_seed(&[11; 32]);
    let f1 = MemberSigner::from_seed(&[22; 32]);
    register(&a, &a1, "Cdr. Alliance").await;
    register(&f, &f1, "Maj. Federation").await;
    let (ka, kf) = (log_key(&a).await, log_key(&f).await);
    pin(&a, F, &f.base, &kf).await;
    pin(&f, A, &a.base, &ka).await;
    let host = a.client(&admin());
    host.set_quota(
        F,
        &QuotaBody {
            quota: 2,
            ending: Vec::new(),
        },
    )
    .await
    .unwrap();
    let acc = host
        .accredit(
            F,
            &AccreditBody {
                member: f1.key().to_hex(),
                name: "Maj. Federation".into(),
                role: "liaison officer".into(),
                spheres: vec!["military".into()],
                valid_from_ms: None,
                valid_until_ms: 4_000_000_000_000,
            },
        )
        .await
        .unwrap();
    let accreditation = acc["id"].as_str().unwrap().to_string();
    // Federation learns of its accreditation.
    assert!(
        until(&f.base, "/line/v1/missions", 10, |v| {
            v["missions"][0]["accreditations"][0]["active"] == json!(true)
        })
        .await,
        "the accreditation never reached Federation"
    );
    Pair {
        a,
        f,
        a1,
        f1,
        accreditation,
    }
}

/// Polls `base` + `path` (as a duty officer) until `pred` holds, for up
/// to `secs` seconds.
async fn until(base: &str, path: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if pred(&ok("GET", format!("{base}{path}"), &officer(), None).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[allow(clippy::disallowed_methods)] // the member's own clock, as a client would read it
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn message(
    from: &str,
    to: &str,
    s: &MemberSigner,
    seq: u64,
    sphere: Sphere,
    p: Precedence,
    text: &str,
) -> Value {
    #[allow(clippy::disallowed_methods)]
    let id = Uuid::new_v4();
    let signed = s.sign_message(Message {
        id,
        from: from.into(),
        to: to.into(),
        sphere,
        precedence: p,
        sender: s.key(),
        seq,
        created_ms: now_ms(),
        body: Body::Text { text: text.into() },
        group: None,
    });
    json!({
        "message": api::MessageWire::from_domain(&signed.value),
        "signature": signed.signature.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    })
}

fn ack(from: &str, to: &str, s: &MemberSigner, id: &str) -> Value {
    let signed = s.sign_ack(Ack {
        message: Uuid::parse_str(id).unwrap(),
        from: from.into(),
        to: to.into(),
        by: s.key(),
        verdict: AckVerdict::Accept,
        text: "wilco".into(),
        at_ms: now_ms(),
    });
    json!({
        "ack": api::AckWire::from_domain(&signed.value),
        "signature": signed.signature.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    })
}

async fn messages(n: &TestNode, direction: &str) -> Vec<Value> {
    ok(
        "GET",
        n.url(&format!("/line/v1/messages?direction={direction}")),
        &officer(),
        None,
    )
    .await["messages"]
        .as_array()
        .unwrap()
        .clone()
}

async fn leaf(n: &TestNode, index: u64) -> String {
    let v = ok(
        "GET",
        n.url(&format!("/log/entries?start={index}&end={}", index + 1)),
        &officer(),
        None,
    )
    .await;
    v["entries"][0].as_str().unwrap().to_string()
}

both_backends! {
#[tokio::test]
async fn a_flash_message_is_delivered_receipted_and_acknowledged_between_two_nodes() {
    let p = peered().await;
    let m = message(
        F,
        A,
        &p.f1,
        1,
        Sphere::Military,
        Precedence::Flash,
        "request deconfliction of sector 4",
    );
    let id = m["message"]["id"].as_str().unwrap().to_string();
    let sent = ok(
        "POST",
        p.f.url("/line/v1/messages"),
        &officer(),
        Some(m.clone()),
    )
    .await;
    assert_eq!(sent["message"]["precedence"], "FLASH");
    // Idempotent: the same signed message again changes nothing.
    let (s, _) = call("POST", p.f.url("/line/v1/messages"), &officer(), Some(m)).await;
    assert_eq!(s, 200);

    let fu = p.f.clone_base();
    assert!(
        until(&fu, "/line/v1/messages?direction=out", 10, |v| {
            v["messages"][0]["delivery"]["state"] == "delivered"
        })
        .await,
        "never receipted"
    );
    let inbox = messages(&p.a, "in").await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["message"]["id"], id.as_str());
    assert_eq!(inbox[0]["sender_name"], "Maj. Federation");
    assert_eq!(inbox[0]["ack"], Value::Null);
    let deadline = inbox[0]["deadline_ms"].as_u64().unwrap()
        - inbox[0]["message"]["created_ms"].as_u64().unwrap();
    assert_eq!(deadline, 10 * 60_000, "FLASH: 10 minutes to acknowledge");
    // Both logs hold the same bytes for the message: the receipt's index is
    // where Alliance's log holds it.
    let outbox = messages(&p.f, "out").await;
    let a_index = outbox[0]["delivery"]["index"].as_u64().unwrap();
    assert_eq!(a_index, inbox[0]["index"].as_u64().unwrap());
    assert_eq!(
        leaf(&p.a, a_index).await,
        leaf(&p.f, outbox[0]["index"].as_u64().unwrap()).await
    );

    ok(
        "POST",
        p.a.url("/line/v1/acks"),
        &officer(),
        Some(ack(A, F, &p.a1, &id)),
    )
    .await;
    let fu = p.f.clone_base();
    assert!(
        until(&fu, "/line/v1/messages?direction=out", 10, |v| {
            v["messages"][0]["ack"]["verdict"] == "accept"
        })
        .await,
        "the acknowledgement never came back"
    );
    // An unauthenticated caller sees nothing of the line.
    let (s, _) = call("GET", p.a.url("/line/v1/messages"), "garbage", None).await;
    assert_eq!(s, 401);
    // A duty officer cannot act as the host.
    let (s, _) = call(
        "POST",
        p.a.url(&format!(
            "/line/v1/accreditations/{}/revoke",
            p.accreditation
        )),
        &officer(),
        Some(json!({ "reason": "x" })),
    )
    .await;
    assert_eq!(s, 403);
}
}

both_backends! {
#[tokio::test]
async fn member_signed_writes_from_strangers_the_other_party_removed_members_and_replays_are_refused() {
    let p = peered().await;
    let stranger = MemberSigner::from_seed(&[99; 32]);
    let removed = MemberSigner::from_seed(&[33; 32]);
    register(&p.f, &removed, "Lt. Removed").await;
    ok(
        "DELETE",
        p.f.url(&format!("/line/v1/members/{}", removed.key().to_hex())),
        &admin(),
        None,
    )
    .await;
    let duty = officer();
    let send = |m: Value| call("POST", p.f.url("/line/v1/messages"), &duty, Some(m));
    // Messages relayed by Federation's node: only its own, registered members'.
    for (who, signer) in [
        ("a key no one registered", &stranger),
        ("the other party's member", &p.a1),
        ("a removed member", &removed),
    ] {
        let m = message(F, A, signer, 1, Sphere::DirectLine, Precedence::Flash, "x");
        let (s, v) = send(m).await;
        assert_eq!(s, 403, "a message signed by {who}: {v}");
        assert!(v["message"].is_string() && v["code"].is_string(), "{v}");
    }
    // A signature over other bytes.
    let mut forged = message(F, A, &p.f1, 1, Sphere::Military, Precedence::Flash, "x");
    forged["message"]["body"]["text"] = json!("y");
    let (s, v) = send(forged).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("signature")), "{v}");
    // The right member: taken; the same signed message again (a replay):
    // taken once; the same sequence number under another id: refused.
    let m = message(F, A, &p.f1, 1, Sphere::Military, Precedence::Flash, "x");
    let id = m["message"]["id"].as_str().unwrap().to_string();
    assert_eq!(send(m.clone()).await.0, 201);
    let (s, v) = send(m).await;
    assert_eq!(s, 200, "a replay is answered, not taken twice: {v}");
    let again = message(F, A, &p.f1, 1, Sphere::Military, Precedence::Flash, "other");
    let (s, v) = send(again).await;
    assert_eq!(s, 409, "sequence number 1 again, another id: {v}");
    let au = p.a.clone_base();
    assert!(
        until(&au, "/line/v1/messages?direction=in", 10, |v| {
            v["messages"].as_array().unwrap().len() == 1
        })
        .await
    );
    assert_eq!(messages(&p.a, "in").await[0]["message"]["id"], id.as_str());
    // Acknowledgements at Alliance's node: only its own members'.
    let ack_at_a = |a: Value| call("POST", p.a.url("/line/v1/acks"), &duty, Some(a));
    for (who, signer) in [
        ("a key no one registered", &stranger),
        ("the other party's member", &p.f1),
    ] {
        let (s, v) = ack_at_a(ack(A, F, signer, &id)).await;
        assert_eq!(s, 403, "an acknowledgement signed by {who}: {v}");
    }
    let a = ack(A, F, &p.a1, &id);
    let (s, v) = ack_at_a(a.clone()).await;
    assert!(s == 200 || s == 201, "{s} {v}");
    let (s, v) = ack_at_a(a).await;
    assert_eq!(s, 200, "a replayed acknowledgement is answered, not taken twice: {v}");
    let inbox = messages(&p.a, "in").await;
    assert_eq!(inbox[0]["ack"]["verdict"], "accept", "{}", inbox[0]);
}
}

both_backends! {
#[tokio::test]
async fn a_revoked_member_is_refused_and_what_they_sent_before_stays() {
    let p = peered().await;
    let first = message(
        F,
        A,
        &p.f1,
        1,
        Sphere::Military,
        Precedence::Routine,
        "before",
    );
    ok(
        "POST",
        p.f.url("/line/v1/messages"),
        &officer(),
        Some(first),
    )
    .await;
    let au = p.a.clone_base();
    assert!(
        until(&au, "/line/v1/messages?direction=in", 10, |v| {
            v["messages"].as_array().unwrap().len() == 1
        })
        .await
    );
    ok(
        "POST",
        p.a.url(&format!(
            "/line/v1/accreditations/{}/revoke",
            p.accreditation
        )),
        &admin(),
        Some(json!({ "reason": "persona non grata" })),
    )
    .await;
    // Once Federation knows (the revocation replicates to the guest), its
    // own node refuses at once, with the reason.
    let fu = p.f.clone_base();
    assert!(
        until(&fu, "/line/v1/missions", 10, |v| {
            v["missions"][0]["accreditations"][0]["active"] == json!(false)
        })
        .await,
        "the revocation never reached Federation"
    );
    let second = message(
        F,
        A,
        &p.f1,
        2,
        Sphere::Military,
        Precedence::Routine,
        "after",
    );
    let mut last = (0, Value::Null);
    let mut refused = false;
    for _ in 0..200 {
        last = call(
            "POST",
            p.f.url("/line/v1/messages"),
            &officer(),
            Some(second.clone()),
        )
        .await;
        if last.0 == 403 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "still accepted: {last:?}");
    assert_eq!(last.1["code"], "not_accredited");
    assert!(
        last.1["message"]
            .as_str()
            .unwrap()
            .contains("persona non grata"),
        "{}",
        last.1
    );
    // The message from before is still there, accepted, on both sides.
    let inbox = messages(&p.a, "in").await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["delivery"]["state"], "delivered");
    // The direct line stays open to a registered member.
    let dl = message(
        F,
        A,
        &p.f1,
        2,
        Sphere::DirectLine,
        Precedence::Flash,
        "direct line check",
    );
    ok("POST", p.f.url("/line/v1/messages"), &officer(), Some(dl)).await;
}
}

both_backends! {
#[tokio::test]
async fn records_queued_while_the_receiver_is_down_arrive_in_order_exactly_once() {
    let mut p = peered().await;
    p.a.kill();
    for seq in 1..=40u64 {
        let prec = if seq % 10 == 0 {
            Precedence::Flash
        } else {
            Precedence::Routine
        };
        let m = message(
            F,
            A,
            &p.f1,
            seq,
            Sphere::Military,
            prec,
            &format!("message {seq}"),
        );
        let (s, v) = call("POST", p.f.url("/line/v1/messages"), &officer(), Some(m)).await;
        assert_eq!(s, 201, "{v}");
    }
    p.a.start_again();
    let au = p.a.clone_base();
    assert!(
        until(&au, "/line/v1/messages?direction=in", 30, |v| {
            v["messages"].as_array().unwrap().len() >= 40
        })
        .await,
        "not everything arrived after the restart"
    );
    let inbox = messages(&p.a, "in").await;
    assert_eq!(inbox.len(), 40, "no duplicate");
    // Per sender and precedence lane, in sequence order.
    for lane in ["FLASH", "ROUTINE"] {
        let seqs: Vec<u64> = inbox
            .iter()
            .filter(|m| m["message"]["precedence"] == lane)
            .map(|m| m["message"]["seq"].as_u64().unwrap())
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "lane {lane} out of order");
    }
    assert!(inbox.iter().all(|m| m["delivery"]["state"] == "delivered"));
    // The sender sees every one receipted, and the lanes' counters agree.
    let fu = p.f.clone_base();
    assert!(
        until(&fu, "/line/v1/status", 10, |v| {
            v["peers"][0]["lanes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["pending"] == 0)
        })
        .await
    );
    let st = ok("GET", p.a.url("/line/v1/status"), &officer(), None).await;
    let received: u64 = st["peers"][0]["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["received"].as_u64().unwrap())
        .sum();
    // 40 messages plus the member registration and the two accreditation records' lanes.
    assert!(received >= 40, "{st}");
}
}

both_backends! {
#[tokio::test]
async fn a_peer_record_with_another_key_is_refused_with_a_reason() {
    let p = peered().await;
    // A third node calling itself Federation, with its own key.
    let impostor = TestNode::start_with(bin(), &["--name", F]);
    let i1 = MemberSigner::from_seed(&[33; 32]);
    register(&impostor, &i1, "Impostor").await;
    pin(&impostor, A, &p.a.base, &log_key(&p.a).await).await;
    // Its records never get a receipt from Alliance.
    let st = impostor.url("/line/v1/status");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = ok("GET", st, &officer(), None).await;
    let flash = &v["peers"][0]["lanes"][0];
    assert_eq!(flash["lane"], "FLASH");
    assert!(flash["pending"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(flash["receipted"], 0);
    // Posting one directly gets a machine-readable refusal.
    let (s, body) = call(
        "POST",
        p.a.url("/peer/v1/records"),
        "",
        Some(json!({ "from": F, "records": ["AAAA"] })),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["stopped"]["code"], "invalid_input");
}
}

trait Base {
    fn clone_base(&self) -> String;
}
impl Base for TestNode {
    fn clone_base(&self) -> String {
        self.base.clone()
    }
}

fn cli(node: &TestNode, tok: &str, args: &[&str]) -> (bool, String) {
    run_cli(
        bin(),
        args,
        &[("DETENTE_NODE", &node.base), ("DETENTE_TOKEN", tok)],
    )
}

both_backends! {
#[tokio::test]
async fn a_duty_officer_works_the_line_from_the_cli() {
    let a = TestNode::start_with(bin(), &["--name", A]);
    let f = TestNode::start_with(bin(), &["--name", F]);
    let dir = tempfile::tempdir().unwrap();
    let key_a = dir.path().join("a.key");
    let key_f = dir.path().join("f.key");
    let (ok_a, pub_a) = cli(
        &a,
        "",
        &["member", "keygen", "--out", key_a.to_str().unwrap()],
    );
    let (ok_f, pub_f) = cli(
        &f,
        "",
        &["member", "keygen", "--out", key_f.to_str().unwrap()],
    );
    assert!(ok_a && ok_f, "{pub_a}{pub_f}");
    let pub_a = pub_a.lines().next().unwrap().trim().to_string();
    let pub_f = pub_f.lines().next().unwrap().trim().to_string();
    // A key file is never overwritten.
    let (again, why) = cli(
        &a,
        "",
        &["member", "keygen", "--out", key_a.to_str().unwrap()],
    );
    assert!(!again && why.contains("exists"), "{why}");
    let adm = admin();
    for (n, k, name) in [
        (&a, &pub_a, "Cdr. Alliance"),
        (&f, &pub_f, "Maj. Federation"),
    ] {
        let (ok, out) = cli(
            n,
            &adm,
            &[
                "member",
                "add",
                "--key",
                k,
                "--name",
                name,
                "--role",
                "duty officer",
                "--spheres",
                "military,direct-line",
            ],
        );
        assert!(ok, "{out}");
    }
    let (ka, kf) = (log_key(&a).await, log_key(&f).await);
    assert!(
        cli(
            &a,
            &adm,
            &["peer", "add", F, "--url", &f.base, "--key", &kf]
        )
        .0
    );
    assert!(
        cli(
            &f,
            &adm,
            &["peer", "add", A, "--url", &a.base, "--key", &ka]
        )
        .0
    );
    // The deconfliction area, from the CLI; a malformed polygon is refused.
    let (ok, out) = cli(
        &a,
        &adm,
        &[
            "peer",
            "area",
            F,
            "--polygon",
            "44.5,9.5 44.5,11 45.5,11 45.5,9.5",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&a, &adm, &["peer", "area", F, "--polygon", "44.5;9.5"]);
    assert!(!ok && out.contains("--polygon"), "{out}");
    let (ok, out) = cli(&a, &adm, &["peer", "list"]);
    assert!(
        ok && out.contains(&format!(
            "deconfliction area: 1 polygon(s) proposed, awaiting {F}'s same proposal; nothing shared until agreed"
        )),
        "{out}"
    );
    // The lists also print the node's JSON, for scripts.
    for what in ["peer", "member", "mission", "channel"] {
        let (ok, out) = cli(&a, &adm, &[what, "list", "--json"]);
        assert!(ok, "{what} list --json: {out}");
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{what} list --json is not JSON ({e}): {out}"));
        assert!(v.is_object(), "{what}: {v}");
        if what == "peer" {
            assert_eq!(v["me"], A, "{v}");
            assert_eq!(v["peers"][0]["name"], F, "{v}");
            assert_eq!(v["peers"][0]["area"].as_array().map(Vec::len), Some(0), "{v}");
            assert_eq!(v["peers"][0]["area_agreement"]["status"], "proposed", "{v}");
            assert_eq!(
                v["peers"][0]["area_agreement"]["ours"]["terms"][0][0],
                json!([44.5, 9.5]),
                "{v}"
            );
        }
    }
    // A channel's own deadlines and the line of contact, from the CLI.
    for (flash, accepted, says) in [
        ("5m", true, "FLASH 5m"),
        ("5 minutes", false, "--flash"),
        ("10s", false, "--flash 10s: a deadline is between 1m and 7d"),
    ] {
        let args = [
            "channel",
            "deadlines",
            "--peer",
            F,
            "--sphere",
            "military",
            "--flash",
            flash,
        ];
        let (ok, out) = cli(&a, &adm, &args);
        assert!(
            ok == accepted && out.contains(says),
            "--flash {flash}: {out}"
        );
    }
    let (ok, out) = cli(
        &a,
        &adm,
        &["channel", "contact", "2f8343be-6482-4d1b-a474-16847e01af1e"],
    );
    assert!(ok && out.contains("line of contact"), "{out}");
    // A wrong key is refused with the field named.
    let (ok, out) = cli(
        &a,
        &adm,
        &["peer", "add", "other", "--url", &f.base, "--key", &kf],
    );
    assert!(!ok && out.contains("[field name]"), "{out}");

    let off = officer();
    let (ok, out) = cli(
        &a,
        &off,
        &[
            "send",
            "--as",
            key_a.to_str().unwrap(),
            "--to",
            F,
            "--sphere",
            "direct-line",
            "--precedence",
            "FLASH",
            "--text",
            "hotline check",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.starts_with("FLASH "), "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    // The second message takes the next sequence number by itself.
    let (ok, out) = cli(
        &a,
        &off,
        &[
            "send",
            "--as",
            key_a.to_str().unwrap(),
            "--to",
            F,
            "--sphere",
            "direct-line",
            "--text",
            "routine traffic",
        ],
    );
    assert!(ok && out.contains("seq 2"), "{out}");
    // Not accredited for the military channel at Federation.
    let (ok, out) = cli(
        &a,
        &off,
        &[
            "send",
            "--as",
            key_a.to_str().unwrap(),
            "--to",
            F,
            "--sphere",
            "military",
            "--text",
            "x",
        ],
    );
    assert!(!ok && out.contains("not_accredited"), "{out}");

    let mut inbox = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            inbox = cli(&f, &off, &["inbox", "--direction", "in"]).1;
            inbox.contains("hotline check") && inbox.contains("routine traffic")
        }),
        "{inbox}"
    );
    assert!(
        inbox.contains("FLASH") && inbox.contains("ack due in"),
        "{inbox}"
    );
    let (ok, out) = cli(
        &f,
        &off,
        &[
            "ack",
            &id,
            "--as",
            key_f.to_str().unwrap(),
            "--text",
            "received",
        ],
    );
    assert!(ok, "{out}");
    let mut outbox = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            outbox = cli(&a, &off, &["inbox", "--direction", "out"]).1;
            outbox.contains("ack accept by Maj. Federation")
        }),
        "{outbox}"
    );
    assert!(outbox.contains("receipted@"), "{outbox}");
    // Every command explains itself.
    for c in [
        "send", "inbox", "ack", "accredit", "revoke", "quota", "mission", "channel", "peer",
        "member",
    ] {
        let (ok, out) = cli(&a, "", &[c, "--help"]);
        assert!(ok && out.contains("Usage"), "{c}: {out}");
    }
}
}

both_backends! {
#[tokio::test]
async fn intents_in_the_deconfliction_area_are_shared_and_take_part_in_key_checks_and_conflicts() {
    let p = peered().await;
    let area = json!({ "polygons": [[[44.5, 9.5], [44.5, 11.0], [45.5, 11.0], [45.5, 9.5]]] });
    ok(
        "PUT",
        p.a.url(&format!("/line/v1/peers/{F}/area")),
        &admin(),
        Some(area.clone()),
    )
    .await;
    ok(
        "PUT",
        p.f.url(&format!("/line/v1/peers/{A}/area")),
        &admin(),
        Some(area),
    )
    .await;
    let alliance = token("alliance-uss", "utm.strategic_coordination");
    let federation = token("federation-uss", "utm.strategic_coordination");
    // A Federation USS watching the area: no USS of Federation notifies it
    // of Alliance's changes, so its notification index tells it.
    let watch = new_id();
    let watch_url = p.f.url(&format!("/dss/v1/subscriptions/{watch}"));
    let v = ok(
        "PUT",
        watch_url.clone(),
        &federation,
        Some(json!({"extents": long_square(45.0, 10.2, 0.1), "uss_base_url": "https://federation.example", "notify_for_operational_intents": true})),
    )
    .await;
    assert_eq!(v["subscription"]["notification_index"], 0);
    let index = |v: &Value| v["subscription"]["notification_index"].as_i64().unwrap();
    // Far outside the area: never shared.
    let far = new_id();
    ok(
        "PUT",
        p.a.url(&format!("/dss/v1/operational_intent_references/{far}")),
        &alliance,
        Some(intent_body(square(10.0, 10.0, 0.01), &[], "Accepted")),
    )
    .await;
    let alpha = new_id();
    let v = ok(
        "PUT",
        p.a.url(&format!("/dss/v1/operational_intent_references/{alpha}")),
        &alliance,
        Some(intent_body(square(45.0, 10.2, 0.02), &[], "Accepted")),
    )
    .await;
    let alpha_ovn = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();

    // Federation's node holds a read-only copy, without the OVN.
    let url =
        p.f.url(&format!("/dss/v1/operational_intent_references/{alpha}"));
    let mut copy = Value::Null;
    for _ in 0..200 {
        let (s, v) = call("GET", url.clone(), &federation, None).await;
        if s == 200 {
            copy = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        copy["operational_intent_reference"]["manager"],
        format!("peer:{A}:alliance-uss"),
        "{copy}"
    );
    assert!(
        copy["operational_intent_reference"]["ovn"].is_null()
            || copy["operational_intent_reference"]["ovn"] == "",
        "{copy}"
    );
    let (s, _) = call(
        "GET",
        p.f.url(&format!("/dss/v1/operational_intent_references/{far}")),
        &federation,
        None,
    )
    .await;
    assert_eq!(s, 404, "an intent outside the area is not shared");
    let v = ok("GET", watch_url.clone(), &federation, None).await;
    assert_eq!(index(&v), 1, "the copy's arrival bumps the watcher's index: {v}");

    // A Federation write across it must prove knowledge of Alliance's operation.
    let bravo = new_id();
    let (s, v) = call(
        "PUT",
        p.f.url(&format!("/dss/v1/operational_intent_references/{bravo}")),
        &federation,
        Some(intent_body(square(45.0, 10.21, 0.02), &[], "Accepted")),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        v["missing_operational_intents"][0]["id"],
        alpha.as_str(),
        "{v}"
    );
    // The copy's reference names Federation's own node as where to get it:
    // to Federation's planners, their node is the copy's managing USS.
    assert_eq!(
        v["missing_operational_intents"][0]["uss_base_url"],
        p.f.base.as_str(),
        "{v}"
    );
    // Alliance's own OVN proves nothing here: it never crossed.
    let (s, v) = call(
        "PUT",
        p.f.url(&format!("/dss/v1/operational_intent_references/{bravo}")),
        &federation,
        Some(intent_body(
            square(45.0, 10.21, 0.02),
            &[&alpha_ovn],
            "Accepted",
        )),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    // A copy cannot be changed or deleted by a local client.
    let (s, _) = call(
        "DELETE",
        p.f.url(&format!(
            "/dss/v1/operational_intent_references/{alpha}/{alpha_ovn}"
        )),
        &federation,
        None,
    )
    .await;
    assert!(s == 403 || s == 409, "{s}");
    // Federation's planner asks its own node for ALPHA's details, as it
    // would ask any managing USS, and plans with the OVN it answers.
    let details = |n: &TestNode, id: &str, tok: &str| {
        let (url, tok) = (n.url(&format!("/uss/v1/operational_intents/{id}")), tok.to_string());
        async move { ok("GET", url, &tok, None).await }
    };
    let d = details(&p.f, &alpha, &federation).await;
    let alpha_here = d["operational_intent"]["reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(alpha_here, alpha_ovn);
    assert_eq!(d["operational_intent"]["reference"]["id"], alpha.as_str());
    assert_eq!(d["operational_intent"]["reference"]["uss_base_url"], p.f.base.as_str());
    assert_eq!(
        d["operational_intent"]["details"]["volumes"].as_array().map(Vec::len),
        Some(1),
        "{d}"
    );
    let v = ok(
        "PUT",
        p.f.url(&format!("/dss/v1/operational_intent_references/{bravo}")),
        &federation,
        Some(intent_body(
            square(45.0, 10.21, 0.02),
            &[&alpha_here],
            "Accepted",
        )),
    )
    .await;
    let bravo_ovn = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    // Local operations are not served there: their manager serves them.
    let (s, v) = call(
        "GET",
        p.f.url(&format!("/uss/v1/operational_intents/{bravo}")),
        &federation,
        None,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    // Both nodes report the conflict.
    for n in [&p.a, &p.f] {
        let mut found = false;
        for _ in 0..200 {
            let v = ok("GET", n.url("/detente/v1/conflicts"), &federation, None).await;
            if v["conflicts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["kind"] == "intent-intent")
            {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(found, "{} reports no conflict", n.base);
    }
    // Alliance moves ALPHA, proving BRAVO with the OVN its own node answers
    // for BRAVO's copy there; the copy at Federation changes version.
    let bravo_at_alliance = copy_ovn(&p.a, &bravo, &alliance).await;
    let v = ok(
        "PUT",
        p.a.url(&format!(
            "/dss/v1/operational_intent_references/{alpha}/{alpha_ovn}"
        )),
        &alliance,
        Some(intent_body(
            square(45.0, 10.2, 0.025),
            &[&bravo_at_alliance],
            "Accepted",
        )),
    )
    .await;
    let alpha_ovn = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    let mut alpha_now = alpha_here.clone();
    for _ in 0..200 {
        let d = details(&p.f, &alpha, &federation).await;
        alpha_now = d["operational_intent"]["reference"]["ovn"]
            .as_str()
            .unwrap()
            .to_string();
        if alpha_now != alpha_here {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(alpha_now, alpha_here, "the copy's new version never arrived");
    // The OVN of the copy's old version proves nothing any more; the new one does.
    let bravo_update = |key: &str| {
        Some(intent_body(square(45.0, 10.21, 0.02), &[key], "Accepted"))
    };
    let bravo_url = p.f.url(&format!(
        "/dss/v1/operational_intent_references/{bravo}/{bravo_ovn}"
    ));
    let (s, v) = call("PUT", bravo_url.clone(), &federation, bravo_update(&alpha_here)).await;
    assert_eq!(s, 409, "{v}");
    ok("PUT", bravo_url, &federation, bravo_update(&alpha_now)).await;
    // Alliance ends ALPHA: Federation drops its copy.
    let before = index(&ok("GET", watch_url.clone(), &federation, None).await);
    ok(
        "DELETE",
        p.a.url(&format!(
            "/dss/v1/operational_intent_references/{alpha}/{alpha_ovn}"
        )),
        &alliance,
        None,
    )
    .await;
    let mut gone = false;
    for _ in 0..200 {
        let (s, _) = call("GET", url.clone(), &federation, None).await;
        if s == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the copy outlived the original");
    let v = ok("GET", watch_url.clone(), &federation, None).await;
    assert_eq!(index(&v), before + 1, "the copy's removal bumps it too: {v}");
}
}

both_backends! {
#[tokio::test]
async fn peers_talk_over_mutually_pinned_tls_and_an_impostor_gets_no_handshake() {
    let a = TestNode::start_with(bin(), &["--name", A, "--peer-listen", "127.0.0.1:0"]);
    let f = TestNode::start_with(bin(), &["--name", F, "--peer-listen", "127.0.0.1:0"]);
    let (a_tls, f_tls) = (a.peer_base.clone().unwrap(), f.peer_base.clone().unwrap());
    assert!(a_tls.starts_with("https://"), "{a_tls}");
    let f1 = MemberSigner::from_seed(&[22; 32]);
    register(&f, &f1, "Maj. Federation").await;
    let (ka, kf) = (log_key(&a).await, log_key(&f).await);
    pin(&a, F, &f_tls, &kf).await;
    pin(&f, A, &a_tls, &ka).await;
    let m = message(
        F,
        A,
        &f1,
        1,
        Sphere::DirectLine,
        Precedence::Flash,
        "over TLS",
    );
    ok("POST", f.url("/line/v1/messages"), &officer(), Some(m)).await;
    let au = a.base.clone();
    assert!(
        until(&au, "/line/v1/messages?direction=in", 10, |v| {
            v["messages"].as_array().unwrap().len() == 1
        })
        .await,
        "nothing arrived over TLS"
    );

    // Another node calling itself Federation, with its own key, pinning
    // Alliance correctly: Alliance refuses its TLS client certificate.
    let impostor = TestNode::start_with(bin(), &["--name", F]);
    let i1 = MemberSigner::from_seed(&[33; 32]);
    register(&impostor, &i1, "Impostor").await;
    pin(&impostor, A, &a_tls, &ka).await;
    let fake = message(
        F,
        A,
        &i1,
        1,
        Sphere::DirectLine,
        Precedence::Flash,
        "let me in",
    );
    ok(
        "POST",
        impostor.url("/line/v1/messages"),
        &officer(),
        Some(fake),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = ok("GET", impostor.url("/line/v1/status"), &officer(), None).await;
    assert_eq!(st["peers"][0]["lanes"][0]["receipted"], 0, "{st}");
    assert!(
        st["peers"][0]["lanes"][0]["pending"].as_u64().unwrap() >= 1,
        "{st}"
    );
    let inbox = messages(&a, "in").await;
    assert_eq!(inbox.len(), 1, "only the pinned peer's message arrived");
    // With a TLS listener, the plain listener takes no peer records at all.
    let (s, _) = call(
        "POST",
        a.url("/peer/v1/records"),
        "",
        Some(json!({ "from": F, "records": [] })),
    )
    .await;
    assert_eq!(s, 404);
    // (That a client refuses a server whose key is not the pinned one is
    // shown by api::tls's handshake test.)
}
}

both_backends! {
#[tokio::test]
async fn an_operation_touching_the_line_of_contact_is_notified_and_held_until_acknowledged() {
    let p = peered().await;
    let commission = token("joint-commission", "utm.constraint_management");
    let alliance = token("alliance-uss", "utm.strategic_coordination");
    // The buffer along the line of contact, designated as such at Alliance.
    let buffer = new_id();
    ok("PUT", p.a.url(&format!("/dss/v1/constraint_references/{buffer}")), &commission,
        Some(json!({ "extents": [long_square(45.0, 10.2, 0.01)], "uss_base_url": "https://commission.example/utm" }))).await;
    ok(
        "PUT",
        p.a.url(&format!("/line/v1/contact/{buffer}")),
        &admin(),
        None,
    )
    .await;
    // An operation across it, planned.
    let op = new_id();
    // One set of extents for every write: the notice is about exactly these
    // (a time window moved by a second would be new extents, needing a new
    // notice and a new acknowledgement).
    let extents = square(45.0, 10.2, 0.02);
    let body = |state: &str, key: &[&str]| {
        let mut b = intent_body(extents.clone(), key, state);
        b["new_subscription"]["notify_for_constraints"] = json!(false);
        b
    };
    let v = ok(
        "PUT",
        p.a.url(&format!("/dss/v1/operational_intent_references/{op}")),
        &alliance,
        Some(body("Accepted", &[])),
    )
    .await;
    let ovn = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    // Activation is held: Federation has not acknowledged.
    let (s, v) = call(
        "PUT",
        p.a.url(&format!("/dss/v1/operational_intent_references/{op}/{ovn}")),
        &alliance,
        Some(body("Activated", &[])),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "activation_held", "{v}");
    // The node itself notified Federation, on the direct line.
    let fu = p.f.clone_base();
    let mut notice = Value::Null;
    for _ in 0..200 {
        let v = ok(
            "GET",
            format!("{fu}/line/v1/messages?direction=in"),
            &officer(),
            None,
        )
        .await;
        if let Some(m) = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["message"]["body"]["type"] == "operation-notification")
        {
            notice = m.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(notice["message"]["body"]["intent"], op.as_str(), "{notice}");
    assert_eq!(notice["message"]["sphere"], "direct-line");
    assert_eq!(notice["sender_name"], format!("{A} (automatic notices)"));
    // Federation's duty officer acknowledges; the activation then goes through.
    let id = notice["message"]["id"].as_str().unwrap().to_string();
    ok(
        "POST",
        p.f.url("/line/v1/acks"),
        &officer(),
        Some(ack(F, A, &p.f1, &id)),
    )
    .await;
    let mut activated = false;
    for _ in 0..200 {
        let (s, _) = call(
            "PUT",
            p.a.url(&format!("/dss/v1/operational_intent_references/{op}/{ovn}")),
            &alliance,
            Some(body("Activated", &[])),
        )
        .await;
        if s == 200 {
            activated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(activated, "still held after the acknowledgement");
}
}

/// Every line endpoint: (method, path, body, a scope that is not enough).
fn line_endpoints() -> Vec<(&'static str, String, Option<Value>, &'static str)> {
    let id = "2f8343be-6482-4d1b-a474-16847e01af1e";
    let key = MemberSigner::from_seed(&[5; 32]).key().to_hex();
    const MEMBER: &str = "detente.line";
    const NOT_LINE: &str = "utm.strategic_coordination";
    vec![
        ("GET", "/line/v1/peers".into(), None, NOT_LINE),
        (
            "POST",
            "/line/v1/peers".into(),
            Some(json!({ "name": "x", "url": "http://x", "key": "k" })),
            MEMBER,
        ),
        (
            "PUT",
            "/line/v1/peers/x/area".into(),
            Some(json!({ "polygons": [] })),
            MEMBER,
        ),
        ("PUT", format!("/line/v1/contact/{id}"), None, MEMBER),
        ("GET", "/line/v1/members".into(), None, NOT_LINE),
        (
            "POST",
            "/line/v1/members".into(),
            Some(json!({ "key": key, "name": "n", "role": "r", "spheres": ["military"] })),
            MEMBER,
        ),
        ("DELETE", format!("/line/v1/members/{key}"), None, MEMBER),
        ("GET", "/line/v1/missions".into(), None, NOT_LINE),
        (
            "PUT",
            "/line/v1/missions/x/quota".into(),
            Some(json!({ "quota": 1 })),
            MEMBER,
        ),
        (
            "POST",
            "/line/v1/missions/x/accreditations".into(),
            Some(
                json!({ "member": key, "name": "n", "role": "r", "spheres": ["military"], "valid_until_ms": 4_000_000_000_000u64 }),
            ),
            MEMBER,
        ),
        (
            "POST",
            "/line/v1/missions/x/close".into(),
            Some(json!({ "reason": "r" })),
            MEMBER,
        ),
        (
            "POST",
            format!("/line/v1/accreditations/{id}/revoke"),
            Some(json!({ "reason": "r" })),
            MEMBER,
        ),
        ("GET", "/line/v1/channels".into(), None, NOT_LINE),
        (
            "POST",
            "/line/v1/channels/x/military".into(),
            Some(json!({ "state": "closed" })),
            MEMBER,
        ),
        ("GET", "/line/v1/messages".into(), None, NOT_LINE),
        (
            "POST",
            "/line/v1/messages".into(),
            Some(message(
                F,
                A,
                &MemberSigner::from_seed(&[5; 32]),
                1,
                Sphere::Military,
                Precedence::Routine,
                "x",
            )),
            NOT_LINE,
        ),
        (
            "POST",
            "/line/v1/acks".into(),
            Some(ack(A, F, &MemberSigner::from_seed(&[5; 32]), id)),
            NOT_LINE,
        ),
        ("GET", "/line/v1/status".into(), None, NOT_LINE),
        (
            "PUT",
            "/line/v1/channels/x/military/deadlines".into(),
            Some(
                json!({ "flash_s": 300, "immediate_s": 900, "priority_s": 3600, "routine_s": 7200 }),
            ),
            MEMBER,
        ),
    ]
}

both_backends! {
#[tokio::test]
async fn every_line_endpoint_needs_a_valid_token_with_its_scope() {
    let n = TestNode::start_with(bin(), &["--name", A]);
    let expired = TokenSpec {
        expires_in: -3600,
        ..TokenSpec::new("x", "detente.line.admin detente.line")
    }
    .mint();
    let wrong_aud = TokenSpec {
        audience: "elsewhere.example".into(),
        ..TokenSpec::new("x", "detente.line.admin detente.line")
    }
    .mint();
    let wrong_key = TokenSpec {
        signer: Signer::Other,
        ..TokenSpec::new("x", "detente.line.admin detente.line")
    }
    .mint();
    let all = token("x", "detente.line.admin detente.line");
    for (method, path, body, weak) in line_endpoints() {
        let what = format!("{method} {path}");
        for (tok, why) in [
            ("", "no token"),
            ("garbage", "garbage"),
            (expired.as_str(), "expired"),
            (wrong_aud.as_str(), "wrong audience"),
            (wrong_key.as_str(), "wrong key"),
        ] {
            let (s, v) = call(method, n.url(&path), tok, body.clone()).await;
            assert_eq!(s, 401, "{what} with {why}: {v}");
            assert!(
                v["message"].is_string(),
                "{what}: machine-readable body: {v}"
            );
        }
        let (s, v) = call(method, n.url(&path), &token("x", weak), body.clone()).await;
        assert_eq!(s, 403, "{what} with only {weak}: {v}");
        let (s, v) = call(method, n.url(&path), &all, body.clone()).await;
        assert!(s != 401 && s != 403, "{what} with the right scope: {s} {v}");
    }
    // The peer endpoint takes no token: a record is taken only from a
    // pinned peer's key, and anyone else gets a reason.
    let (s, v) = call(
        "POST",
        n.url("/peer/v1/records"),
        "",
        Some(json!({ "from": "nobody", "records": [] })),
    )
    .await;
    assert!(s == 200 || s == 403, "{s} {v}");
}
}

both_backends! {
#[tokio::test]
async fn malformed_line_requests_get_a_400_naming_the_field_and_change_nothing() {
    let n = TestNode::start_with(bin(), &["--name", A]);
    let adm = admin();
    let key = MemberSigner::from_seed(&[5; 32]).key().to_hex();
    let good_msg = message(
        A,
        F,
        &MemberSigner::from_seed(&[5; 32]),
        1,
        Sphere::Military,
        Precedence::Routine,
        "x",
    );
    let mut bad_prec = good_msg.clone();
    bad_prec["message"]["precedence"] = json!("URGENT");
    let mut bad_sig = good_msg.clone();
    bad_sig["signature"] = json!("zz");
    let mut bad_sender = good_msg.clone();
    bad_sender["message"]["sender"] = json!("12");
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "POST",
            "/line/v1/members",
            json!({ "key": "nothex", "name": "n", "role": "r", "spheres": ["military"] }),
            "key",
        ),
        (
            "POST",
            "/line/v1/members",
            json!({ "key": key, "name": "n", "role": "r", "spheres": ["naval"] }),
            "spheres[0]",
        ),
        (
            "POST",
            "/line/v1/members",
            json!({ "key": key, "name": "", "role": "r", "spheres": ["military"] }),
            "name",
        ),
        (
            "POST",
            "/line/v1/members",
            json!({ "key": key, "name": "n", "role": "r" }),
            "spheres",
        ),
        (
            "POST",
            "/line/v1/members",
            json!({ "key": key, "name": "n", "role": "r", "spheres": ["military"], "extra": 1 }),
            "",
        ),
        (
            "POST",
            "/line/v1/peers",
            json!({ "name": "x", "url": "ftp://x", "key": "x+00000000+AAAA" }),
            "key",
        ),
        ("POST", "/line/v1/messages", bad_prec, "message.precedence"),
        ("POST", "/line/v1/messages", bad_sig, "signature"),
        ("POST", "/line/v1/messages", bad_sender, "message.sender"),
        (
            "POST",
            "/line/v1/messages",
            json!({ "message": 3, "signature": "" }),
            "message",
        ),
        (
            "POST",
            "/line/v1/acks",
            json!({ "ack": { "message": "not-a-uuid", "from": "a", "to": "b", "by": key, "verdict": "accept", "at_ms": 1 }, "signature": "00" }),
            "ack.message",
        ),
        (
            "POST",
            "/line/v1/channels/x/military",
            json!({ "state": "half-open" }),
            "state",
        ),
    ];
    let before = ok("GET", n.url("/line/v1/members"), &adm, None).await;
    for (method, path, body, field) in cases {
        let (s, v) = call(method, n.url(path), &adm, Some(body.clone())).await;
        assert_eq!(s, 400, "{method} {path} {body}: {v}");
        assert!(v["message"].is_string(), "{v}");
        if !field.is_empty() {
            assert_eq!(v["field"], field, "{method} {path} {body}: {v}");
        }
    }
    // A body that is not JSON at all.
    let r = test_support::http()
        .post(n.url("/line/v1/members"))
        .bearer_auth(&adm)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        ok("GET", n.url("/line/v1/members"), &adm, None).await,
        before,
        "nothing was written"
    );
    let st = ok("GET", n.url("/line/v1/peers"), &adm, None).await;
    assert_eq!(st["peers"], json!([]), "no peer was added");
}
}

both_backends! {
#[tokio::test]
async fn a_channel_s_own_deadlines_are_set_by_one_party_and_apply_on_both() {
    let p = peered().await;
    let url =
        p.a.url(&format!("/line/v1/channels/{F}/military/deadlines"));
    let (s, v) = call(
        "PUT",
        url.clone(),
        &admin(),
        Some(json!({ "flash_s": 10, "immediate_s": 900, "priority_s": 3600, "routine_s": 7200 })),
    )
    .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("flash_s")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("between 60 and 604800 seconds"), "{v}");
    ok(
        "PUT",
        url,
        &admin(),
        Some(json!({ "flash_s": 120, "immediate_s": 900, "priority_s": 3600, "routine_s": 7200 })),
    )
    .await;
    let fu = p.f.clone_base();
    assert!(
        until(&fu, "/line/v1/channels", 10, |v| {
            v["channels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["sphere"] == "military" && c["ack_deadlines_ms"]["FLASH"] == 120_000)
        })
        .await,
        "Federation never learned the channel's deadlines"
    );
    // The military channel's own FLASH deadline; the direct line keeps the default.
    for (seq, sphere, deadline) in [
        (1, Sphere::Military, 120_000),
        (2, Sphere::DirectLine, 600_000),
    ] {
        let m = message(
            F,
            A,
            &p.f1,
            seq,
            sphere,
            Precedence::Flash,
            "deadline check",
        );
        let sent = ok("POST", p.f.url("/line/v1/messages"), &officer(), Some(m)).await;
        let created = sent["message"]["created_ms"].as_u64().unwrap();
        assert_eq!(
            sent["deadline_ms"].as_u64().unwrap(),
            created + deadline,
            "{sent}"
        );
    }
}
}

both_backends! {
#[tokio::test]
async fn a_message_s_evidence_verifies_offline_only_with_the_peer_s_key() {
    let p = peered().await;
    let m = message(
        F,
        A,
        &p.f1,
        1,
        Sphere::Military,
        Precedence::Flash,
        "evidence",
    );
    let id = m["message"]["id"].as_str().unwrap().to_string();
    ok("POST", p.f.url("/line/v1/messages"), &officer(), Some(m)).await;
    assert!(
        until(
            &p.a.base,
            "/line/v1/messages?direction=in",
            10,
            |v| v["messages"].as_array().unwrap().len() == 1
        )
        .await
    );
    ok(
        "POST",
        p.a.url("/line/v1/acks"),
        &officer(),
        Some(ack(A, F, &p.a1, &id)),
    )
    .await;
    assert!(
        until(
            &p.f.base,
            "/line/v1/messages?direction=out",
            10,
            |v| v["messages"][0]["ack"]["verdict"] == "accept"
        )
        .await
    );
    let (kf, ka) = (log_key(&p.f).await, log_key(&p.a).await);
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // Export from Federation's log once a checkpoint covers the message,
    // Alliance's receipt and acknowledgement, and Federation's receipt for it.
    let data = p.f.data.to_str().unwrap().to_string();
    let mut bundle = dir.path().join("b0");
    let mut out = String::new();
    for i in 0..100 {
        bundle = dir.path().join(format!("b{i}"));
        let r = run(&[
            "evidence",
            "export",
            "--data",
            &data,
            "--out",
            bundle.to_str().unwrap(),
            "--entity",
            &id,
        ]);
        out = r.1;
        if r.0 && out.contains("wrote 4 entries") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(out.contains("wrote 4 entries"), "{out}");
    let b = bundle.to_str().unwrap();
    let (okay, out) = run(&["verify", b, "--key", &kf]);
    assert!(
        !okay && out.contains("--peer"),
        "Alliance's records need Alliance's key: {out}"
    );
    let wrong = tlog::NoteSigner::from_seed(A, &[9; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let (okay, out) = run(&["verify", b, "--key", &kf, "--peer", &wrong]);
    assert!(!okay, "a wrong peer key must fail: {out}");
    let (okay, out) = run(&["verify", b, "--key", &kf, "--peer", &ka]);
    assert!(okay, "{out}");
    // Alliance's receipt, kept in Federation's log, names Alliance's log
    // root right after the message: recompute it from Alliance's entries.
    let mut checked = 0;
    for f in std::fs::read_dir(&bundle).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_none_or(|e| e != "entry") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let Some(Ok((e, l))) = liaison::decide::line_entry(&bytes) else {
            continue;
        };
        let liaison::Record::Receipt(r) = l.record else {
            continue;
        };
        if e.entry.origin != A {
            continue;
        }
        let mut tree = tlog::tree::MemoryTree::new();
        let v = ok(
            "GET",
            p.a.url(&format!("/log/entries?start=0&end={}", r.tree_size)),
            &officer(),
            None,
        )
        .await;
        for x in v["entries"].as_array().unwrap() {
            use base64::Engine;
            tree.append(
                &base64::engine::general_purpose::STANDARD
                    .decode(x.as_str().unwrap())
                    .unwrap(),
            );
        }
        assert_eq!(
            tree.root(r.tree_size).unwrap(),
            r.root,
            "the receipt's root is Alliance's"
        );
        checked += 1;
    }
    assert_eq!(checked, 1, "one receipt by Alliance in the bundle");
    assert!(
        out.contains(&format!("line.receipt by {A}")) && out.contains(&format!("line.ack by {A}")),
        "{out}"
    );
}
}

/// The leader among replicas, by their /healthz (waits for the lock to
/// settle).
async fn leader_of(nodes: &[&TestNode]) -> usize {
    for _ in 0..100 {
        for (i, n) in nodes.iter().enumerate() {
            let v: Value = serde_json::from_str(&get_text(&n.url("/healthz")).await).unwrap();
            if v["leader"] == true {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no replica leads");
}

/// PostgreSQL only: a sending party with two replicas. Messages are
/// posted through either; only the leader delivers; the leader is
/// SIGKILLed halfway and the other takes over — the peer gets every
/// record once, in order.
#[tokio::test]
async fn a_replicated_sender_delivers_each_record_once_in_order_across_a_leader_kill() {
    let Some(_pg) = OnPostgres::enter("a_replicated_sender_delivers_each_record_once") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let fdata = tmp.path().join("federation");
    let mut fed = [
        TestNode::start_in(bin(), &fdata, &["--name", F]),
        TestNode::start_in(bin(), &fdata, &["--name", F]),
    ];
    let a = TestNode::start_with(bin(), &["--name", A]);
    let sender = MemberSigner::from_seed(&[33; 32]);
    let a1 = MemberSigner::from_seed(&[11; 32]);
    register(&fed[0], &sender, "Gen. Federation").await;
    register(&a, &a1, "Cdr. Alliance").await;
    let (ka, kf) = (log_key(&a).await, log_key(&fed[0]).await);
    pin(&a, F, &fed[0].base, &kf).await;
    pin(&fed[1], A, &a.base, &ka).await;
    let post = |n: &TestNode, seq: u64| {
        let url = n.url("/line/v1/messages");
        let m = message(
            F,
            A,
            &sender,
            seq,
            Sphere::DirectLine,
            Precedence::Routine,
            &format!("message {seq}"),
        );
        async move {
            let (s, v) = call("POST", url, &officer(), Some(m)).await;
            assert_eq!(s, 201, "{v}");
        }
    };
    for seq in 1..=15u64 {
        post(&fed[(seq % 2) as usize], seq).await;
    }
    let leader = leader_of(&[&fed[0], &fed[1]]).await;
    fed[leader].kill();
    let survivor = &fed[1 - leader];
    for seq in 16..=30u64 {
        post(survivor, seq).await;
    }
    assert!(
        until(&a.base, "/line/v1/messages?direction=in", 30, |v| {
            v["messages"].as_array().unwrap().len() >= 30
        })
        .await,
        "not everything arrived"
    );
    let inbox = messages(&a, "in").await;
    let mut seqs: Vec<u64> = inbox
        .iter()
        .map(|m| m["message"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 30, "no duplicate: {seqs:?}");
    let arrived = seqs.clone();
    seqs.sort();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    assert!(
        arrived.windows(2).all(|w| w[0] > w[1]) || arrived.windows(2).all(|w| w[0] < w[1]),
        "in order: {arrived:?}"
    );
    // The survivor (now the leader) saw every record receipted.
    let su = survivor.base.clone();
    assert!(
        until(&su, "/line/v1/status", 10, |v| {
            v["peers"][0]["lanes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["pending"] == 0)
        })
        .await,
        "the survivor still has records pending"
    );
}

/// The OVN `n` answers for a peer's operation at its F3548 USS interface,
/// once the copy has arrived.
async fn copy_ovn(n: &TestNode, id: &str, tok: &str) -> String {
    let url = n.url(&format!("/uss/v1/operational_intents/{id}"));
    for _ in 0..200 {
        let (s, v) = call("GET", url.clone(), tok, None).await;
        if s == 200 {
            return v["operational_intent"]["reference"]["ovn"]
                .as_str()
                .unwrap()
                .to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never reached {}", n.base)
}

#[tokio::test]
async fn three_parties_plan_in_one_box_each_asking_only_its_own_node() {
    const C: &str = "commonwealth.test";
    let nodes = [
        (A, TestNode::start_with(bin(), &["--name", A])),
        (F, TestNode::start_with(bin(), &["--name", F])),
        (C, TestNode::start_with(bin(), &["--name", C])),
    ];
    let mut keys = Vec::new();
    for (_, n) in &nodes {
        keys.push(log_key(n).await);
    }
    // A full mesh, one deconfliction area (the same box) per pair.
    let area = AreaBody {
        polygons: vec![vec![[44.5, 9.5], [44.5, 11.0], [45.5, 11.0], [45.5, 9.5]]],
    };
    for (i, (_, n)) in nodes.iter().enumerate() {
        for (j, (peer, other)) in nodes.iter().enumerate() {
            if i != j {
                pin(n, peer, &other.base, &keys[j]).await;
                n.client(&admin()).set_area(peer, &area).await.unwrap();
            }
        }
    }
    let planner = |sub: &str| token(sub, "utm.strategic_coordination");
    let (ta, tf, tc) = (planner("a-uss"), planner("f-uss"), planner("c-uss"));
    let put = |n: &TestNode, id: &str, tok: &str, lng: f64, key: &[&str]| {
        let url = n.url(&format!("/dss/v1/operational_intent_references/{id}"));
        let (tok, body) = (
            tok.to_string(),
            intent_body(square(45.0, lng, 0.02), key, "Accepted"),
        );
        async move { call("PUT", url, &tok, Some(body)).await }
    };
    let (alliance, federation, commonwealth) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);
    // Alliance plans ALPHA; both others hold a copy of it.
    let alpha = new_id();
    let (s, v) = put(alliance, &alpha, &ta, 10.2, &[]).await;
    assert_eq!(s, 201, "{v}");
    // Commonwealth plans across ALPHA with what its own node answers.
    let alpha_at_c = copy_ovn(commonwealth, &alpha, &tc).await;
    let charlie = new_id();
    let (s, v) = put(commonwealth, &charlie, &tc, 10.21, &[]).await;
    assert_eq!(s, 409, "without a key: {v}");
    assert_eq!(
        v["missing_operational_intents"][0]["uss_base_url"],
        commonwealth.base.as_str(),
        "{v}"
    );
    let (s, v) = put(commonwealth, &charlie, &tc, 10.21, &[&alpha_at_c]).await;
    assert_eq!(s, 201, "{v}");
    // Federation plans across both: two copies, two OVNs, one node asked.
    let alpha_at_f = copy_ovn(federation, &alpha, &tf).await;
    let charlie_at_f = copy_ovn(federation, &charlie, &tf).await;
    assert_ne!(alpha_at_f, alpha_at_c, "each node mints its own");
    // Alliance stops answering anyone: Federation's planning goes on.
    nodes[0].1.pause();
    let bravo = new_id();
    let (s, v) = put(federation, &bravo, &tf, 10.205, &[&alpha_at_f]).await;
    assert_eq!(s, 409, "Commonwealth's CHARLIE is missing too: {v}");
    let (s, v) = put(
        federation,
        &bravo,
        &tf,
        10.205,
        &[&alpha_at_f, &charlie_at_f],
    )
    .await;
    assert_eq!(s, 201, "with Alliance silent: {v}");
    nodes[0].1.resume();
    // BRAVO reaches both others as a copy.
    copy_ovn(alliance, &bravo, &ta).await;
    copy_ovn(commonwealth, &bravo, &tc).await;
}

/// Alliance and Federation peered, both sharing one box (44.5–45.5 N,
/// 9.5–11 E); Federation's node started with `f_args` too. Answers the
/// nodes and Federation's log key.
async fn peered_in_one_area(f_args: &[&str]) -> (TestNode, TestNode, String) {
    let a = TestNode::start_with(bin(), &["--name", A]);
    let mut args = vec!["--name", F];
    args.extend_from_slice(f_args);
    let f = TestNode::start_with(bin(), &args);
    let (ka, kf) = (log_key(&a).await, log_key(&f).await);
    pin(&a, F, &f.base, &kf).await;
    pin(&f, A, &a.base, &ka).await;
    let area = AreaBody {
        polygons: vec![vec![[44.5, 9.5], [44.5, 11.0], [45.5, 11.0], [45.5, 9.5]]],
    };
    a.client(&admin()).set_area(F, &area).await.unwrap();
    f.client(&admin()).set_area(A, &area).await.unwrap();
    (a, f, kf)
}

/// Federation's subscription `watch` covering (45.0 N, 10.2 E) for a USS at `uss`.
async fn watch_at(f: &TestNode, uss: &str, tok: &str) -> String {
    let watch = new_id();
    ok(
        "PUT",
        f.url(&format!("/dss/v1/subscriptions/{watch}")),
        tok,
        Some(json!({"extents": long_square(45.0, 10.2, 0.1), "uss_base_url": uss, "notify_for_operational_intents": true})),
    )
    .await;
    watch
}

#[tokio::test]
async fn local_subscribers_are_notified_of_a_peers_change_by_their_own_node_with_its_token() {
    // Federation's USS, subscribed at Federation's node: the first
    // notification finds it down (503), the next ones are taken.
    let uss = HttpRecorder::start(vec![503, 204]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("uss.token");
    std::fs::write(&token_file, "federation-node-token\n").unwrap();
    let (a, f, kf) = peered_in_one_area(&["--uss-token-file", token_file.to_str().unwrap()]).await;
    let federation = token("federation-uss", "utm.strategic_coordination");
    let alliance = token("alliance-uss", "utm.strategic_coordination");
    let watch = watch_at(&f, &uss.base, &federation).await;
    let alpha = new_id();
    let v = ok(
        "PUT",
        a.url(&format!("/dss/v1/operational_intent_references/{alpha}")),
        &alliance,
        Some(intent_body(square(45.0, 10.2, 0.02), &[], "Accepted")),
    )
    .await;
    let alpha_ovn = v["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    let taken = |n: usize| {
        let uss = &uss;
        async move {
            for _ in 0..400 {
                let r = uss.requests();
                if r.len() >= n {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("{} notification(s) expected, got {:?}", n, uss.requests())
        }
    };
    // Refused once, then taken: the same notification twice.
    let r = taken(2).await;
    assert_eq!(r[0].json(), r[1].json());
    let n = &r[1];
    assert_eq!(
        (n.method.as_str(), n.path.as_str()),
        ("POST", "/uss/v1/operational_intents")
    );
    assert_eq!(
        n.header("authorization"),
        Some("Bearer federation-node-token")
    );
    let body = n.json();
    assert_eq!(body["operational_intent_id"], alpha.as_str(), "{body}");
    assert_eq!(
        body["subscriptions"][0]["subscription_id"],
        watch.as_str(),
        "{body}"
    );
    assert_eq!(body["subscriptions"][0]["notification_index"], 1, "{body}");
    let reference = &body["operational_intent"]["reference"];
    assert_eq!(reference["uss_base_url"], f.base.as_str(), "{body}");
    assert_eq!(
        reference["ovn"],
        copy_ovn(&f, &alpha, &federation).await.as_str()
    );
    assert_ne!(
        reference["ovn"],
        alpha_ovn.as_str(),
        "Alliance's own OVN never crosses"
    );
    assert_eq!(
        body["operational_intent"]["details"]["volumes"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{body}"
    );
    // Alliance withdraws ALPHA: the subscriber hears of the removal.
    ok(
        "DELETE",
        a.url(&format!(
            "/dss/v1/operational_intent_references/{alpha}/{alpha_ovn}"
        )),
        &alliance,
        None,
    )
    .await;
    let r = taken(3).await;
    let body = r[2].json();
    assert_eq!(body["operational_intent_id"], alpha.as_str(), "{body}");
    assert!(
        body.get("operational_intent").is_none(),
        "a removal carries no intent: {body}"
    );
    assert_eq!(body["subscriptions"][0]["notification_index"], 2, "{body}");
    // Federation's log keeps each notification: what went to whom, and
    // how it was answered (the first after two attempts).
    let key = tlog::Verifier::parse(&kf).unwrap();
    let mut notified = vec![];
    for _ in 0..400 {
        let (size, _, _) = test_support::log_checkpoint(&f, &key).await;
        notified = test_support::own_log_entries(&f, size, &key)
            .await
            .into_iter()
            .filter(|(_, e)| e.entry.kind == "line.uss.notified")
            .map(|(_, e)| {
                liaison::LineEntry::from_value(&e.entry.kind, &e.entry.body)
                    .unwrap()
                    .record
            })
            .collect();
        if notified.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let notified: Vec<liaison::UssNotification> = notified
        .into_iter()
        .map(|r| match r {
            liaison::Record::UssNotified(n) => n,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(notified.len(), 2, "{notified:?}");
    let uuid = |s: &str| uuid::Uuid::parse_str(s).unwrap();
    for (n, version, attempts) in [(&notified[0], Some(1), 2), (&notified[1], None, 1)] {
        assert_eq!(n.entity_kind, "operational_intent");
        assert_eq!(n.entity, uuid(&alpha));
        assert_eq!(n.version, version, "{n:?}");
        assert_eq!(n.subscriber, uss.base);
        assert_eq!(
            (n.status, n.attempts, &n.error),
            (Some(204), attempts, &None)
        );
    }
    assert_eq!(notified[0].subscriptions, vec![(uuid(&watch), 1)]);
    assert_eq!(notified[1].subscriptions, vec![(uuid(&watch), 2)]);
}

#[tokio::test]
async fn a_party_gone_silent_blocks_nothing_its_copy_ends_with_its_time_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("federation.toml");
    std::fs::write(&cfg, "expiry_sweep_seconds = 1\nexpiry_grace_seconds = 0\n").unwrap();
    let (a, f, _) = peered_in_one_area(&["--config", cfg.to_str().unwrap()]).await;
    let (ta, tf) = (
        token("a-uss", "utm.strategic_coordination"),
        token("f-uss", "utm.strategic_coordination"),
    );
    // Alliance plans ALPHA for the next few seconds; Federation holds it.
    let alpha = new_id();
    ok(
        "PUT",
        a.url(&format!("/dss/v1/operational_intent_references/{alpha}")),
        &ta,
        Some(intent_body(
            square_during(45.0, 10.2, 0.02, 0, 4),
            &[],
            "Accepted",
        )),
    )
    .await;
    copy_ovn(&f, &alpha, &tf).await;
    // Alliance goes silent for good.
    drop(a);
    let bravo = new_id();
    let bravo_url = f.url(&format!("/dss/v1/operational_intent_references/{bravo}"));
    let body = intent_body(square(45.0, 10.2, 0.02), &[], "Accepted");
    let (s, v) = call("PUT", bravo_url.clone(), &tf, Some(body.clone())).await;
    if s == 409 {
        // While ALPHA lasts the key check names it, and where to fetch it:
        // Federation's own node.
        let missing = &v["missing_operational_intents"][0];
        assert_eq!(missing["id"], alpha.as_str(), "{v}");
        assert_eq!(missing["uss_base_url"], f.base.as_str(), "{v}");
    }
    // Once ALPHA's time is over, nobody's answer is needed: the copy is
    // swept like any ended entity and BRAVO is planned with no key.
    let mut planned = s == 201;
    for _ in 0..300 {
        if planned {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, v) = call("PUT", bravo_url.clone(), &tf, Some(body.clone())).await;
        assert!(s == 201 || s == 409, "{s} {v}");
        planned = s == 201;
    }
    assert!(planned, "BRAVO planned once ALPHA ended, Alliance silent");
    let copy = f.url(&format!("/uss/v1/operational_intents/{alpha}"));
    let mut gone = false;
    for _ in 0..300 {
        let (s, _) = call("GET", copy.clone(), &tf, None).await;
        if s == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the ended copy is swept");
}

#[tokio::test]
async fn the_node_notifies_with_a_token_from_the_pools_oauth_endpoint() {
    let authority = HttpRecorder::answering(vec![(
        200,
        json!({"access_token": "from-the-authority", "token_type": "Bearer", "expires_in": 3600})
            .to_string(),
    )]);
    let uss = HttpRecorder::start(vec![204]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let token_url = format!("{}/oauth/token", authority.base);
    let (a, f, _) = peered_in_one_area(&[
        "--uss-oauth-token-url",
        &token_url,
        "--uss-oauth-client-id",
        "federation-node",
        "--uss-oauth-client-secret-file",
        secret.to_str().unwrap(),
    ])
    .await;
    let federation = token("federation-uss", "utm.strategic_coordination");
    watch_at(&f, &uss.base, &federation).await;
    let alpha = new_id();
    ok(
        "PUT",
        a.url(&format!("/dss/v1/operational_intent_references/{alpha}")),
        &token("alliance-uss", "utm.strategic_coordination"),
        Some(intent_body(square(45.0, 10.2, 0.02), &[], "Accepted")),
    )
    .await;
    let mut sent = vec![];
    for _ in 0..400 {
        sent = uss.requests();
        if !sent.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(sent.len(), 1, "one notification");
    assert_eq!(
        sent[0].header("authorization"),
        Some("Bearer from-the-authority")
    );
    // The token was asked for as a pool's USS asks: client credentials,
    // Basic-authenticated with the configured id and secret.
    let asked = authority.requests();
    assert_eq!(asked.len(), 1, "one token, kept");
    assert_eq!(
        (asked[0].method.as_str(), asked[0].path.as_str()),
        ("POST", "/oauth/token")
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("federation-node:s3cret");
    assert_eq!(
        asked[0].header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    let form = String::from_utf8(asked[0].body.clone()).unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope="), "{form}");
}

/// Federation's liaison officer sends its first military message to
/// Alliance; waits until Alliance's receipt says it was taken.
/// The view of message `id` in node `n`'s list of every message.
async fn view_in(n: &TestNode, id: &str) -> Value {
    let all = ok(
        "GET",
        n.url("/line/v1/messages?limit=10000"),
        &officer(),
        None,
    )
    .await;
    all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message"]["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

both_backends! {
#[tokio::test]
async fn settled_messages_leave_memory_and_are_shown_from_the_log_as_before() {
    let mut p = peered().await;
    // The line keeps the newest 512 settled messages whole: 520 leave 8
    // to be read back from the log.
    const N: u64 = 520;
    let sent: Vec<Value> = (1..=N)
        .map(|seq| {
            message(F, A, &p.f1, seq, Sphere::Military, Precedence::Routine, &format!("message {seq}"))
        })
        .collect();
    for m in &sent {
        let (s, _) = call("POST", p.f.url("/line/v1/messages"), &officer(), Some(m.clone())).await;
        assert_eq!(s, 201);
    }
    let id = |i: usize| sent[i]["message"]["id"].as_str().unwrap().to_string();
    let au = p.a.clone_base();
    assert!(
        until(&au, "/line/v1/messages?direction=in&limit=10000", 60, |v| {
            v["messages"].as_array().is_some_and(|m| m.len() == N as usize)
        })
        .await,
        "not every message arrived"
    );
    // The first acknowledged first; its views, whole, on both sides.
    let first_ack = ack(A, F, &p.a1, &id(0));
    ok("POST", p.a.url("/line/v1/acks"), &officer(), Some(first_ack.clone())).await;
    let fu = p.f.clone_base();
    assert!(
        until(&fu, "/line/v1/messages?direction=out&limit=10000", 30, |v| {
            v["messages"][0]["ack"]["verdict"] == "accept"
        })
        .await,
        "the first acknowledgement never came back"
    );
    let (in_before, out_before) = (view_in(&p.a, &id(0)).await, view_in(&p.f, &id(0)).await);
    assert_eq!(in_before["ack"]["text"], "wilco");
    assert_eq!(out_before["delivery"]["state"], "delivered");
    // Every other one acknowledged, 32 at a time.
    let acks: Vec<Value> = (1..N as usize).map(|i| ack(A, F, &p.a1, &id(i))).collect();
    for chunk in acks.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for a in chunk {
            let (url, a) = (p.a.url("/line/v1/acks"), a.clone());
            set.spawn(async move { call("POST", url, &officer(), Some(a)).await });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap().0, 200);
        }
    }
    let settled = "detente_line_messages{held=\"settled\"}";
    let whole = "detente_line_messages{held=\"whole\"}";
    let mut held = (None, None);
    for _ in 0..600 {
        held = (sample(&p.f, settled).await, sample(&p.f, whole).await);
        if held.0 == Some(8.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held, (Some(8.0), Some(512.0)), "Federation: (settled, whole)");
    assert_eq!(sample(&p.a, settled).await, Some(8.0));
    assert_eq!(sample(&p.a, whole).await, Some(512.0));
    // Out of memory, the first message shows exactly as it did whole.
    assert_eq!(view_in(&p.a, &id(0)).await, in_before);
    assert_eq!(view_in(&p.f, &id(0)).await, out_before);
    let out = ok("GET", p.f.url("/line/v1/messages?direction=out&limit=10000"), &officer(), None).await;
    let out = out["messages"].as_array().unwrap();
    assert_eq!(out.len(), N as usize);
    for (i, v) in out.iter().enumerate() {
        assert_eq!(v["message"]["id"], id(i).as_str());
        assert_eq!(v["message"]["body"]["text"], format!("message {}", i + 1));
        assert_eq!(v["ack"]["verdict"], "accept", "message {i}");
    }
    // The same signed message and acknowledgement again change nothing and
    // answer the same view; another acknowledgement is refused.
    let (s, v) = call("POST", p.f.url("/line/v1/messages"), &officer(), Some(sent[0].clone())).await;
    assert_eq!((s, v), (200, out_before.clone()));
    let (s, v) = call("POST", p.a.url("/line/v1/acks"), &officer(), Some(first_ack)).await;
    assert_eq!((s, v), (200, in_before.clone()));
    let mut other = ack(A, F, &p.a1, &id(0));
    other["ack"]["text"] = json!("changed my mind");
    let (s, _) = call("POST", p.a.url("/line/v1/acks"), &officer(), Some(other)).await;
    assert!(s == 400 || s == 409, "{s}");
    // Rebuilt from the log at start, the line puts the same ones away.
    p.a.restart();
    assert_eq!(sample(&p.a, settled).await, Some(8.0));
    assert_eq!(view_in(&p.a, &id(0)).await, in_before);
}
}

async fn federation_sends_first_and_it_is_delivered(p: &Pair, precedence: Precedence, text: &str) {
    let m = message(F, A, &p.f1, 1, Sphere::Military, precedence, text);
    ok("POST", p.f.url("/line/v1/messages"), &officer(), Some(m)).await;
    let fu = p.f.clone_base();
    assert!(
        until(&fu, "/line/v1/messages?direction=out", 10, |v| {
            v["messages"][0]["delivery"]["state"] == "delivered"
        })
        .await,
        "{text}: never receipted"
    );
}

/// The value of the sample `series` (name and labels as exposed) in a
/// node's `/metrics`, if present.
async fn sample(n: &TestNode, series: &str) -> Option<f64> {
    let text = test_support::get_text(&n.url("/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_line_is_watched_per_peer_and_lane_in_the_metrics() {
    let p = peered().await;
    federation_sends_first_and_it_is_delivered(&p, Precedence::Flash, "sector 4").await;
    let to_a = |name: &str, lane: Option<&str>| match lane {
        Some(l) => format!("{name}{{peer=\"{A}\",lane=\"{l}\"}}"),
        None => format!("{name}{{peer=\"{A}\"}}"),
    };
    let delivered = sample(
        &p.f,
        &to_a("detente_line_records_delivered_total", Some("FLASH")),
    )
    .await;
    assert!(delivered.is_some_and(|n| n >= 1.0), "{delivered:?}");
    assert_eq!(
        sample(&p.f, &to_a("detente_line_peer_reachable", None)).await,
        Some(1.0)
    );
    assert_eq!(
        sample(&p.f, &to_a("detente_line_outbox_records", Some("FLASH"))).await,
        Some(0.0)
    );
    assert_eq!(
        sample(
            &p.f,
            &to_a("detente_line_oldest_undelivered_seconds", Some("FLASH"))
        )
        .await,
        Some(0.0)
    );
    assert_eq!(
        sample(&p.f, &to_a("detente_line_awaiting_acknowledgements", None)).await,
        Some(1.0)
    );
    assert_eq!(
        sample(&p.f, &to_a("detente_line_overdue_acknowledgements", None)).await,
        Some(0.0)
    );
    // Alliance goes away: the next message waits, and the metrics say so.
    let Pair { a, f, f1, .. } = p;
    drop(a);
    let m = message(
        F,
        A,
        &f1,
        2,
        Sphere::Military,
        Precedence::Routine,
        "still there?",
    );
    ok("POST", f.url("/line/v1/messages"), &officer(), Some(m)).await;
    let mut seen = None;
    for _ in 0..200 {
        let (reachable, waiting, age, failed) = (
            sample(&f, &to_a("detente_line_peer_reachable", None)).await,
            sample(&f, &to_a("detente_line_outbox_records", Some("ROUTINE"))).await,
            sample(
                &f,
                &to_a("detente_line_oldest_undelivered_seconds", Some("ROUTINE")),
            )
            .await,
            sample(
                &f,
                &to_a("detente_line_delivery_failures_total", Some("ROUTINE")),
            )
            .await,
        );
        seen = Some((reachable, waiting, age, failed));
        if reachable == Some(0.0) && age.is_some_and(|a| a > 0.0) && failed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (reachable, waiting, age, failed) = seen.unwrap();
    assert_eq!(reachable, Some(0.0), "{seen:?}");
    assert_eq!(waiting, Some(1.0), "{seen:?}");
    assert!(age.is_some_and(|a| a > 0.0), "{seen:?}");
    assert!(failed.is_some_and(|n| n >= 1.0), "{seen:?}");
}

#[tokio::test]
async fn a_peer_is_removed_only_after_both_parties_closed_the_direct_line() {
    let p = peered().await;
    let admin = admin();
    let remove = |n: &TestNode| {
        run_cli(
            bin(),
            &[
                "peer",
                "remove",
                F,
                "--reason",
                "relations downgraded",
                "--node",
                &n.base,
                "--token",
                &admin,
            ],
            &[],
        )
    };
    // The direct line closes only by mutual consent: one side cannot
    // unpin the other while it is open.
    let (ok, out) = remove(&p.a);
    assert!(!ok && out.contains("channel_not_open"), "{out}");
    for (n, other) in [(&p.a, F), (&p.f, A)] {
        n.client(&admin)
            .channel_notice(
                other,
                "direct-line",
                &api::wire::line::ChannelBody {
                    state: "closed".into(),
                    reason: "relations downgraded by agreement".into(),
                    effective_ms: None,
                },
            )
            .await
            .unwrap();
    }
    // Once Alliance has Federation's closure too, the peer may go.
    let mut removed = (false, String::new());
    for _ in 0..100 {
        removed = remove(&p.a);
        if removed.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        removed.0 && removed.1.contains("peer federation.test removed"),
        "{removed:?}"
    );
    let peers = p.a.client(&admin).peers().await.unwrap();
    assert_eq!(peers["peers"], json!([]), "{peers}");
    // What Federation sends now is not taken: Alliance no longer knows it.
    let records = json!({ "from": F, "records": [] });
    let (s, v) = call(
        "POST",
        p.a.url("/peer/v1/records"),
        &officer(),
        Some(records),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("record_refused")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("not a peer"), "{v}");
}

#[tokio::test]
async fn peering_is_mutual_witnessing_without_a_restart() {
    let a = TestNode::start_with(bin(), &["--name", A]);
    let f = TestNode::start_with(bin(), &["--name", F]);
    let (ka, kf) = (log_key(&a).await, log_key(&f).await);
    pin(&a, F, &f.base, &kf).await;
    pin(&f, A, &a.base, &ka).await;
    let witness_key = |n: &TestNode| {
        let url = n.url("/witness/key");
        async move { tlog::Verifier::parse(get_text(&url).await.trim()).unwrap() }
    };
    let (wa, wf) = (witness_key(&a).await, witness_key(&f).await);
    // Something to checkpoint on both sides.
    for n in [&a, &f] {
        ok(
            "PUT",
            n.url(&format!(
                "/dss/v1/operational_intent_references/{}",
                new_id()
            )),
            &token("uss1", "utm.strategic_coordination"),
            Some(intent_body(square(1.0, 1.0, 0.01), &[], "Accepted")),
        )
        .await;
    }
    // Each node's newest checkpoint comes to carry the other's
    // cosignature: no --witness flag, no restart.
    for (n, own, other) in [(&a, &ka, &wf), (&f, &kf, &wa)] {
        let own = tlog::Verifier::parse(own).unwrap();
        let mut cosigned = false;
        for _ in 0..100 {
            let note = get_text(&n.url("/log/checkpoint")).await;
            if let Ok((_, ok)) = tlog::note::open(note.as_bytes(), &[own.clone(), other.clone()])
                && ok.len() == 2
            {
                cosigned = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            cosigned,
            "{} has no cosignature by {}",
            own.name, other.name
        );
        let health: Value = serde_json::from_str(&get_text(&n.url("/healthz")).await).unwrap();
        assert_eq!(
            health["witnesses"][0]["name"],
            other.name.as_str(),
            "{health}"
        );
    }
    // A note of the witness key signed by another key is not believed.
    let forged = tlog::NoteSigner::from_seed(F, &[7; 32]).unwrap();
    let text = format!("detente witness key\n{}\n", wa.to_vkey());
    let note = tlog::Note {
        signatures: vec![forged.sign(&text)],
        text,
    }
    .to_text();
    let pinned = tlog::Verifier::parse(&kf).unwrap();
    assert!(api::peer::peer_witness_key(note.as_bytes(), &pinned).is_err());
    let real = get_text(&f.url("/peer/v1/witness/key")).await;
    assert_eq!(
        api::peer::peer_witness_key(real.as_bytes(), &pinned)
            .unwrap()
            .to_vkey(),
        wf.to_vkey()
    );
}

#[tokio::test]
async fn an_expulsion_with_notice_counts_down_on_both_sides_and_the_member_acts_until_then() {
    let p = peered().await;
    let admin = admin();
    let (done, out) = run_cli(
        bin(),
        &[
            "revoke",
            &p.accreditation,
            "--reason",
            "leave within three days",
            "--within",
            "3d",
            "--node",
            &p.a.base,
            "--token",
            &admin,
        ],
        &[],
    );
    assert!(
        done && out.contains("revoked with notice, effective in"),
        "{out}"
    );
    let (done, out) = run_cli(
        bin(),
        &[
            "revoke",
            &p.accreditation,
            "--reason",
            "x",
            "--within",
            "3 weeks",
            "--node",
            &p.a.base,
            "--token",
            &admin,
        ],
        &[],
    );
    assert!(!done && out.contains("--within 3 weeks"), "{out}");
    // Federation, the guest, sees the countdown once the record arrives.
    let mut shown = String::new();
    for _ in 0..100 {
        let (_, out) = run_cli(
            bin(),
            &[
                "mission",
                "list",
                "--node",
                &p.f.base,
                "--token",
                &officer(),
            ],
            &[],
        );
        shown = out;
        if shown.contains("EXPELLED with notice: leaves in") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        shown.contains("EXPELLED with notice: leaves in")
            && shown.contains("leave within three days"),
        "{shown}"
    );
    // Until then the member still sends on its mission's channel.
    federation_sends_first_and_it_is_delivered(&p, Precedence::Routine, "packing").await;
}

#[tokio::test]
async fn statements_are_published_answered_by_hash_and_verified_offline() {
    let p = peered().await;
    let admin = admin();
    let cli = |args: &[&str]| run_cli(bin(), args, &[]);
    let (done, out) = cli(&[
        "statement",
        "publish",
        "--text",
        "Federation aircraft entered the buffer at 10:42Z.",
        "--node",
        &p.a.base,
        "--token",
        &admin,
    ]);
    assert!(done, "{out}");
    let claim = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(claim.starts_with(&format!("{A}/")), "{claim}");
    // Federation closes the information channel: private exchange stops,
    // publication does not.
    p.f.client(&admin)
        .channel_notice(
            A,
            "information",
            &api::wire::line::ChannelBody {
                state: "closed".into(),
                reason: "the information office is closed".into(),
                effective_ms: None,
            },
        )
        .await
        .unwrap();
    let (done, out) = cli(&[
        "statement",
        "publish",
        "--text",
        "No evidence has been produced.",
        "--lang",
        "en",
        "--answers",
        &claim,
        "--node",
        &p.f.base,
        "--token",
        &admin,
    ]);
    assert!(done, "{out}");
    // Anyone reads Federation's feed: the answer names Alliance's exact entry.
    let feed: Value =
        serde_json::from_str(&get_text(&p.f.url("/statements/feed.json")).await).unwrap();
    let item = &feed["items"][0];
    assert_eq!(item["content_text"], "No evidence has been produced.");
    let r = &item["_detente"]["answers"][0];
    assert_eq!(
        format!(
            "{}/{}/{}",
            r["origin"].as_str().unwrap(),
            r["index"],
            r["leaf_hash"].as_str().unwrap()
        ),
        claim
    );
    // … which is the hash of the entry Alliance's feed serves for it.
    let theirs: Value =
        serde_json::from_str(&get_text(&p.a.url("/statements/feed.json")).await).unwrap();
    assert_eq!(theirs["items"][0]["_detente"]["leaf_hash"], r["leaf_hash"]);
    // Alliance's statements as a bundle, verified offline against its key.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("alliance-statements");
    let mut fetched = (false, String::new());
    for _ in 0..100 {
        let _ = std::fs::remove_dir_all(&bundle);
        fetched = cli(&[
            "statement",
            "fetch",
            "--out",
            bundle.to_str().unwrap(),
            "--node",
            &p.a.base,
        ]);
        if fetched.1.contains("1 statement(s)") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        fetched.0 && fetched.1.contains("1 statement(s)"),
        "{fetched:?}"
    );
    let key = log_key(&p.a).await;
    let (done, out) = cli(&["verify", bundle.to_str().unwrap(), "--key", &key]);
    assert!(done && out.contains("line.statement"), "{out}");
    // A word changed is caught.
    let entry = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "entry"))
        .unwrap();
    let bytes = std::fs::read(&entry).unwrap();
    let at = bytes.windows(5).position(|w| w == b"10:42").unwrap();
    let mut forged = bytes.clone();
    forged[at..at + 5].copy_from_slice(b"11:42");
    std::fs::write(&entry, forged).unwrap();
    let (done, out) = cli(&["verify", bundle.to_str().unwrap(), "--key", &key]);
    assert!(!done, "{out}");
    // An answer to one's own statement must carry that entry's hash.
    let own = claim[..claim.len() - 45].to_string();
    let wrong = format!("{own}/{}", "A".repeat(43) + "=");
    let (done, out) = cli(&[
        "statement",
        "publish",
        "--text",
        "Correction.",
        "--answers",
        &wrong,
        "--node",
        &p.a.base,
        "--token",
        &admin,
    ]);
    assert!(!done && out.contains("answers[0].leaf_hash"), "{out}");
}

/// The area agreement with `peer` as `n`'s peer list shows it.
async fn area_agreement(n: &TestNode, peer: &str) -> Value {
    let v = ok("GET", n.url("/line/v1/peers"), &officer(), None).await;
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == peer)
        .map(|p| json!({ "area": p["area"], "agreement": p["area_agreement"] }))
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_deconfliction_area_binds_once_both_parties_propose_it_and_what_is_inside_is_shared_then()
{
    let a = TestNode::start_with(bin(), &["--name", A]);
    let f = TestNode::start_with(bin(), &["--name", F]);
    let (ka, kf) = (log_key(&a).await, log_key(&f).await);
    pin(&a, F, &f.base, &kf).await;
    pin(&f, A, &a.base, &ka).await;
    let alliance = token("alliance-uss", "utm.strategic_coordination");
    let federation = token("federation-uss", "utm.strategic_coordination");
    // Alliance's operation exists before any area.
    let alpha = new_id();
    ok(
        "PUT",
        a.url(&format!("/dss/v1/operational_intent_references/{alpha}")),
        &alliance,
        Some(intent_body(square(45.0, 10.2, 0.02), &[], "Accepted")),
    )
    .await;
    let held_at_f = || {
        let url = f.url(&format!("/dss/v1/operational_intent_references/{alpha}"));
        let tok = federation.clone();
        async move { call("GET", url, &tok, None).await.0 == 200 }
    };
    let box1 = json!({ "polygons": [[[44.5, 9.5], [44.5, 11.0], [45.5, 11.0], [45.5, 9.5]]] });
    let box2 = json!({ "polygons": [[[44.0, 9.0], [44.0, 12.0], [46.0, 12.0], [46.0, 9.0]]] });
    let propose = |n: &TestNode, peer: &str, area: &Value| {
        let (url, area) = (n.url(&format!("/line/v1/peers/{peer}/area")), area.clone());
        async move { ok("PUT", url, &admin(), Some(area)).await }
    };
    // Alliance's proposal alone: Federation sees it offered, nothing binds.
    let v = propose(&a, F, &box1).await;
    assert_eq!(v["area_agreement"]["status"], "proposed", "{v}");
    assert!(
        until(
            &f.base,
            "/line/v1/peers",
            10,
            |v| v["peers"][0]["area_agreement"]["status"] == "offered"
        )
        .await,
        "{}",
        area_agreement(&f, A).await
    );
    // Federation answers with other polygons: still nothing agreed.
    let v = propose(&f, A, &box2).await;
    assert_eq!(v["area_agreement"]["status"], "proposed", "{v}");
    assert!(
        until(
            &a.base,
            "/line/v1/peers",
            10,
            |v| v["peers"][0]["area_agreement"]["status"] == "offered"
        )
        .await
    );
    assert!(!held_at_f().await, "nothing is shared before an agreement");
    assert_eq!(area_agreement(&a, F).await["area"], json!([]));
    // The same polygons: agreed on both sides, and Alliance's operation,
    // inside the area since before, is shared at that moment.
    let v = propose(&f, A, &box1).await;
    assert_eq!(v["area_agreement"]["status"], "agreed", "{v}");
    assert!(
        until(
            &a.base,
            "/line/v1/peers",
            10,
            |v| v["peers"][0]["area_agreement"]["status"] == "agreed"
        )
        .await
    );
    let mut held = false;
    for _ in 0..200 {
        held = held_at_f().await;
        if held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        held,
        "the operation inside the agreed area reached Federation"
    );
    let (at_a, at_f) = (area_agreement(&a, F).await, area_agreement(&f, A).await);
    assert_eq!(at_a["area"], box1["polygons"], "{at_a}");
    assert_eq!(at_a["area"], at_f["area"], "the same area on both sides");
    let (ok_cli, out) = cli(&f, &admin(), &["peer", "list"]);
    assert!(
        ok_cli && out.contains("1 polygon(s), agreed at index"),
        "{out}"
    );
    // Every proposal of both parties is an entry of Alliance's log: its
    // own, signed by it, and Federation's two, kept verbatim.
    // (The checkpoint comes a moment after the entries.)
    let key = tlog::Verifier::parse(&ka).unwrap();
    let mut origins: Vec<String> = vec![];
    for _ in 0..400 {
        let (size, _, _) = test_support::log_checkpoint(&a, &key).await;
        origins = test_support::raw_log_entries(&a, size)
            .await
            .into_iter()
            .filter(|(_, e)| e.entry.kind == "line.area.proposed")
            .map(|(_, e)| e.entry.origin)
            .collect();
        if origins.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(origins, [A, F, F], "{origins:?}");
    // Alliance withdraws: nothing is agreed, Federation's copy goes.
    propose(&a, F, &json!({ "polygons": [] })).await;
    let mut gone = false;
    for _ in 0..200 {
        gone = !held_at_f().await;
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "a withdrawn area shares nothing any more");
    assert_eq!(area_agreement(&f, A).await["area"], json!([]));
}

/// Three parties' nodes in a full mesh, a registered member on each.
async fn mesh_of_three() -> ([TestNode; 3], [MemberSigner; 3]) {
    let names = [A, F, C3];
    let nodes = names.map(|n| TestNode::start_with(bin(), &["--name", n]));
    let members = [31u8, 32, 33].map(|s| MemberSigner::from_seed(&[s; 32]));
    let mut keys = Vec::new();
    for (n, m) in nodes.iter().zip(&members) {
        register(n, m, "Duty officer").await;
        keys.push(log_key(n).await);
    }
    for (i, n) in nodes.iter().enumerate() {
        for (j, other) in nodes.iter().enumerate() {
            if i != j {
                pin(n, names[j], &other.base, &keys[j]).await;
            }
        }
    }
    (nodes, members)
}

const C3: &str = "commonwealth.test";

#[tokio::test]
async fn a_flash_to_several_peers_is_one_message_each_acknowledged_on_its_own_and_shown_together() {
    let ([a, f, c], [a1, f1, c1]) = mesh_of_three().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a1.key");
    std::fs::write(&key, format!("{}\n", "1f".repeat(32))).unwrap();
    let group = Uuid::from_u128(0x5eed);
    let send = [
        "send",
        "--as",
        key.to_str().unwrap(),
        "--to",
        &format!("{F},{C3}"),
        "--sphere",
        "direct-line",
        "--precedence",
        "FLASH",
        "--text",
        "Unannounced formation crossing sector 4: hold all departures",
        "--id",
        &group.to_string(),
    ];
    let (sent, out) = cli(&a, &officer(), &send);
    assert!(sent, "{out}");
    assert_eq!(out.matches(&format!("(group {group})")).count(), 2, "{out}");
    // Sending the group again changes nothing: its messages' ids derive
    // from the group's.
    let (again, out) = cli(&a, &officer(), &send);
    assert!(again, "{out}");
    assert_eq!(out.matches("was already sent").count(), 2, "{out}");
    assert_eq!(messages(&a, "out").await.len(), 2);
    // Each addressee gets its own message, naming the group and both.
    let mut ids = Vec::new();
    for n in [&f, &c] {
        let mut inbox = Vec::new();
        for _ in 0..200 {
            inbox = messages(n, "in").await;
            if !inbox.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(inbox.len(), 1, "{inbox:?}");
        let g = &inbox[0]["group"];
        assert_eq!(g["id"], group.to_string(), "{g}");
        assert_eq!(g["to"], json!([F, C3]), "{g}");
        assert_eq!(inbox[0]["message"]["precedence"], "FLASH");
        assert_eq!(inbox[0]["sender_name"], "Duty officer");
        ids.push(inbox[0]["message"]["id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    // The sender sees the group together: each addressee's receipt and
    // deadline, then each acknowledgement as it comes.
    // Alliance's outbox shows both messages of the group with both
    // deliveries and `n` acknowledgements.
    let acknowledged = |n: u64| {
        let base = a.base.clone();
        async move {
            until(&base, "/line/v1/messages?direction=out", 10, |v| {
                v["messages"].as_array().is_some_and(|ms| {
                    ms.len() == 2
                        && ms.iter().all(|m| {
                            m["group"]["acknowledged"] == n
                                && m["group"]["messages"].as_array().is_some_and(|g| {
                                    g.len() == 2 && g.iter().all(|x| x["delivery"] == "delivered")
                                })
                        })
                })
            })
            .await
        }
    };
    assert!(acknowledged(0).await);
    let acks = [(&f, F, &f1, &ids[0]), (&c, C3, &c1, &ids[1])];
    for (i, (node, party, member, id)) in acks.into_iter().enumerate() {
        ok(
            "POST",
            node.url("/line/v1/acks"),
            &officer(),
            Some(ack(party, A, member, id)),
        )
        .await;
        assert!(acknowledged(i as u64 + 1).await);
        if i == 0 {
            let (listed, out) = cli(&a, &officer(), &["inbox", "--direction", "out"]);
            assert!(listed, "{out}");
            assert!(
                out.contains(&format!(
                    "group of 2: 1 acknowledged — {F} ack accept; {C3} delivered"
                )),
                "{out}"
            );
        }
    }
    // Sent in one request, a group is one member's one message: a message
    // of another text is refused naming it, and nothing is sent.
    let grouped = |to: &str, text: &str, seq: u64| {
        let signed = a1.sign_message(Message {
            id: Uuid::from_u128(100 + seq as u128),
            from: A.into(),
            to: to.into(),
            sphere: Sphere::DirectLine,
            precedence: Precedence::Flash,
            sender: a1.key(),
            seq,
            created_ms: now_ms(),
            body: Body::Text { text: text.into() },
            group: Some(liaison::Group {
                id: Uuid::from_u128(99),
                to: vec![F.into(), C3.into()],
            }),
        });
        json!({
            "message": api::MessageWire::from_domain(&signed.value),
            "signature": signed.signature.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        })
    };
    let (s, v) = call(
        "POST",
        a.url("/line/v1/messages/group"),
        &officer(),
        Some(json!({ "messages": [grouped(F, "hold", 3), grouped(C3, "go", 4)] })),
    )
    .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (400, Some("messages[1].message")),
        "{v}"
    );
    assert_eq!(messages(&a, "out").await.len(), 2, "nothing sent");
    // A group that does not name the addressee, or names the sender, is
    // refused with the field.
    for (to, bad) in [
        (vec![C3.to_string(), "x".into()], F),
        (vec![A.into(), C3.into()], C3),
    ] {
        let signed = a1.sign_message(Message {
            id: Uuid::from_u128(7),
            from: A.into(),
            to: bad.into(),
            sphere: Sphere::DirectLine,
            precedence: Precedence::Flash,
            sender: a1.key(),
            seq: 3,
            created_ms: now_ms(),
            body: Body::Text { text: "x".into() },
            group: Some(liaison::Group {
                id: Uuid::from_u128(8),
                to,
            }),
        });
        let body = json!({
            "message": api::MessageWire::from_domain(&signed.value),
            "signature": signed.signature.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        });
        let (s, v) = call("POST", a.url("/line/v1/messages"), &officer(), Some(body)).await;
        assert_eq!((s, v["field"].as_str()), (400, Some("group")), "{v}");
    }
}

#[tokio::test]
async fn the_nth_party_joins_with_one_command_per_party_and_every_node_shows_the_mesh() {
    let names = [A, F, C3];
    let nodes = names.map(|n| TestNode::start_with(bin(), &["--name", n]));
    let [a, f, c] = &nodes;
    let mut keys = Vec::new();
    for n in &nodes {
        keys.push(log_key(n).await);
    }
    pin(a, F, &f.base, &keys[1]).await;
    pin(f, A, &a.base, &keys[0]).await;
    let mesh_at = |n: &TestNode| {
        let url = n.url("/line/v1/mesh");
        async move { ok("GET", url, &officer(), None).await }
    };
    let link = |v: &Value, x: &str, y: &str| {
        v["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| (l["a"] == x && l["b"] == y) || (l["a"] == y && l["b"] == x))
            .map(|l| l["status"].as_str().unwrap_or("").to_string())
    };
    // Two parties: each knows the other's pins once announced.
    assert!(until(&a.base, "/line/v1/mesh", 10, |v| v["full_mesh"] == true).await);
    // Commonwealth joins: one command on each existing party's node and one
    // per existing party on its own (each also proposing the area).
    let area = "44.5,9.5 44.5,11 45.5,11 45.5,9.5";
    for (n, peer, url, key) in [
        (a, C3, &c.base, &keys[2]),
        (f, C3, &c.base, &keys[2]),
        (c, A, &a.base, &keys[0]),
    ] {
        let (joined, out) = cli(
            n,
            &admin(),
            &[
                "peer",
                "add",
                peer,
                "--url",
                url,
                "--key",
                key,
                "--polygon",
                area,
            ],
        );
        assert!(joined && out.contains("deconfliction area:"), "{out}");
    }
    // Commonwealth has not pinned Federation yet: every node says so.
    assert!(
        until(&a.base, "/line/v1/mesh", 10, |v| link(v, F, C3).as_deref()
            == Some("one-way")
            && link(v, A, C3).as_deref() == Some("mutual"))
        .await,
        "{}",
        mesh_at(a).await
    );
    let (shown, out) = cli(a, &officer(), &["peer", "mesh"]);
    assert!(shown, "{out}");
    assert!(
        out.contains(&format!(
            "{C3} ⇄ {F}: one-way ({F} pins {C3}, not the reverse)"
        )),
        "{out}"
    );
    assert!(out.contains("not a full mesh yet"), "{out}");
    let (joined, out) = cli(
        c,
        &admin(),
        &[
            "peer",
            "add",
            F,
            "--url",
            &f.base,
            "--key",
            &keys[1],
            "--polygon",
            area,
        ],
    );
    assert!(joined, "{out}");
    for n in &nodes {
        assert!(
            until(&n.base, "/line/v1/mesh", 10, |v| v["full_mesh"] == true).await,
            "{}",
            mesh_at(n).await
        );
    }
    let v = mesh_at(c).await;
    assert_eq!(v["parties"], json!([A, C3, F]), "{v}");
    // The area Commonwealth proposed to each is agreed with neither until
    // they propose it too; Alliance does.
    cli(a, &admin(), &["peer", "area", C3, "--polygon", area]);
    assert!(
        until(&c.base, "/line/v1/peers", 10, |v| v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |p| p["name"] == A && p["area_agreement"]["status"] == "agreed"
            ))
        .await
    );
    // A party pinned under another key somewhere (here Federation pins a
    // Dominion that is not the one Alliance pinned) shows as a key conflict
    // at every node that hears both.
    let d = TestNode::start_with(bin(), &["--name", "dominion.test"]);
    let dk = log_key(&d).await;
    pin(a, "dominion.test", &d.base, &dk).await;
    let fake_d = TestNode::start_with(bin(), &["--name", "dominion.test"]);
    let fake_dk = log_key(&fake_d).await;
    pin(f, "dominion.test", &fake_d.base, &fake_dk).await;
    assert!(
        until(&a.base, "/line/v1/mesh", 10, |v| v["key_conflicts"]
            .as_array()
            .is_some_and(|c| c
                .iter()
                .any(|x| x["party"] == "dominion.test")))
        .await,
        "{}",
        mesh_at(a).await
    );
    let (_, out) = cli(a, &officer(), &["peer", "mesh"]);
    assert!(
        out.contains("!! dominion.test is pinned under different keys"),
        "{out}"
    );
}

/// `n`'s view of the line of contact with `peer` (its peer list).
async fn contact_with(n: &TestNode, peer: &str) -> Value {
    let v = ok("GET", n.url("/line/v1/peers"), &officer(), None).await;
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == peer)
        .map(|p| p["contact_line"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_line_of_contact_binds_only_once_both_parties_sign_the_same_geometry() {
    let (a, f, _) = peered_in_one_area(&[]).await;
    let planner = token("alliance-uss", "utm.strategic_coordination");
    // An Alliance operation across the line, before any is agreed: planned
    // freely (nothing binds yet).
    let plan = |lat: f64| {
        let (url, tok) = (
            a.url(&format!(
                "/dss/v1/operational_intent_references/{}",
                new_id()
            )),
            planner.clone(),
        );
        async move {
            call(
                "PUT",
                url,
                &tok,
                Some(intent_body(square(lat, 10.2, 0.005), &[], "Accepted")),
            )
            .await
        }
    };
    // Alliance draws the line (a GeoJSON file) and proposes it to Federation.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("line.geojson");
    let draw = |coords: Value| {
        std::fs::write(
            &file,
            json!({ "type": "LineString", "coordinates": coords }).to_string(),
        )
        .unwrap();
    };
    draw(json!([[9.8, 45.0], [10.8, 45.0]]));
    let propose = || {
        cli(
            &a,
            &admin(),
            &[
                "airspace",
                "import",
                file.to_str().unwrap(),
                "--as",
                "contact",
                "--peer",
                F,
                "--buffer-m",
                "2000",
                "--from",
                "2030-01-01T00:00:00Z",
                "--to",
                "2030-01-02T00:00:00Z",
            ],
        )
    };
    let (proposed, out) = propose();
    assert!(proposed, "{out}");
    assert!(
        out.contains(&format!("awaiting {F}'s same proposal; nothing binds")),
        "{out}"
    );
    assert!(
        until(
            &f.base,
            "/line/v1/peers",
            10,
            |v| v["peers"][0]["contact_line"]["status"] == "offered"
        )
        .await
    );
    let (s, v) = plan(45.0).await;
    assert_eq!(s, 201, "nothing binds before both agree: {v}");
    // Federation agrees by proposing exactly the same (one command).
    let (accepted, out) = cli(&f, &admin(), &["peer", "accept", A, "--contact-line"]);
    assert!(accepted && out.contains("agreed at index"), "{out}");
    // Both nodes show the same agreed line; each binds it as its own
    // constraint (their ids differ), designated as the line of contact.
    let mut bound = Vec::new();
    for (n, peer) in [(&a, F), (&f, A)] {
        let mut c = Value::Null;
        for _ in 0..200 {
            c = contact_with(n, peer).await;
            if c["bound"] == true {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(c["status"], "agreed", "{c}");
        assert_eq!(c["bound"], true, "{c}");
        assert_eq!(
            c["agreed"]["line"],
            json!([[45.0, 9.8], [45.0, 10.8]]),
            "{c}"
        );
        assert_eq!(c["agreed"]["buffer_m"], 2000.0, "{c}");
        bound.push((
            c["constraint"].as_str().unwrap().to_string(),
            c["agreed"].clone(),
        ));
    }
    assert_ne!(bound[0].0, bound[1].0);
    assert_eq!(bound[0].1, bound[1].1, "the same geometry on both sides");
    // Alliance's planners now meet the line: its constraint, with the OVN
    // from Alliance's own node as its managing USS.
    let cp = token("planner", "utm.constraint_processing");
    let c = ok(
        "GET",
        a.url(&format!("/uss/v1/constraints/{}", bound[0].0)),
        &cp,
        None,
    )
    .await;
    assert_eq!(
        c["constraint"]["reference"]["uss_base_url"],
        a.base.as_str(),
        "{c}"
    );
    // A new line proposed by Federation: the agreed one binds meanwhile;
    // once Alliance accepts, the old constraint goes and the new one binds.
    let (proposed, out) = cli(
        &f,
        &admin(),
        &[
            "peer",
            "contact-line",
            A,
            "--line",
            "45.1,9.8 45.1,10.8",
            "--buffer-m",
            "1500",
            "--from",
            "2030-01-01T00:00:00Z",
            "--to",
            "2030-01-02T00:00:00Z",
        ],
    );
    assert!(proposed, "{out}");
    assert!(
        out.contains("a new line proposed") && out.contains("binds meanwhile, bound as constraint"),
        "{out}"
    );
    assert!(
        until(
            &a.base,
            "/line/v1/peers",
            10,
            |v| v["peers"][0]["contact_line"]["status"] == "offered"
        )
        .await
    );
    let (accepted, out) = cli(&a, &admin(), &["peer", "accept", F, "--contact-line"]);
    assert!(accepted, "{out}");
    let mut gone = false;
    for _ in 0..200 {
        let (s, _) = call(
            "GET",
            a.url(&format!("/uss/v1/constraints/{}", bound[0].0)),
            &cp,
            None,
        )
        .await;
        let c = contact_with(&a, F).await;
        if s == 404 && c["bound"] == true {
            gone = true;
            assert_ne!(c["constraint"], bound[0].0.as_str());
            assert_eq!(c["agreed"]["buffer_m"], 1500.0, "{c}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "the replaced line's constraint is removed: {}",
        contact_with(&a, F).await
    );
    let (_, out) = cli(&a, &officer(), &["peer", "list"]);
    assert!(out.contains("line of contact: agreed at index"), "{out}");
    // A malformed proposal is refused naming the field, and proposes nothing.
    let (s, v) = call(
        "POST",
        a.url("/line/v1/contact-line"),
        &admin(),
        Some(
            json!({ "peer": F, "line": [[45.1, 9.8], [45.1, 10.8]], "buffer_m": -1,
                     "time_end": "2030-01-02T00:00:00Z" }),
        ),
    )
    .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("buffer_m")), "{v}");
    assert_eq!(contact_with(&a, F).await["status"], "agreed");
    // Alliance withdraws (no line): nothing binds any more, on either side.
    let bound_now = contact_with(&a, F).await["constraint"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = call(
        "POST",
        a.url("/line/v1/contact-line"),
        &admin(),
        Some(json!({ "peer": F, "line": [], "buffer_m": 0 })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut unbound = false;
    for _ in 0..200 {
        let (s, _) = call(
            "GET",
            a.url(&format!("/uss/v1/constraints/{bound_now}")),
            &cp,
            None,
        )
        .await;
        if s == 404 && contact_with(&f, A).await["agreed"].is_null() {
            unbound = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        unbound,
        "a withdrawn line binds nothing: {}",
        contact_with(&f, A).await
    );
}

/// `m` as sent by `s`, created `ago_ms` before now.
fn message_created(s: &MemberSigner, seq: u64, ago_ms: u64, text: &str) -> Value {
    let signed = s.sign_message(Message {
        id: Uuid::from_u128(u128::from(seq) << 32 | u128::from(s.key().0[0])),
        from: F.into(),
        to: A.into(),
        sphere: Sphere::DirectLine,
        precedence: Precedence::Priority,
        sender: s.key(),
        seq,
        created_ms: now_ms() - ago_ms,
        body: Body::Text { text: text.into() },
        group: None,
    });
    json!({
        "message": api::MessageWire::from_domain(&signed.value),
        "signature": signed.signature.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    })
}

#[tokio::test]
async fn a_member_key_is_replaced_or_declared_compromised_and_what_it_signed_before_stands() {
    let p = peered().await;
    // Two messages of Maj. Federation: one signed ten minutes ago, one now.
    let send = |m: Value| {
        let url = p.f.url("/line/v1/messages");
        async move { call("POST", url, &officer(), Some(m)).await }
    };
    assert_eq!(
        send(message_created(&p.f1, 1, 600_000, "before")).await.0,
        201
    );
    assert_eq!(send(message_created(&p.f1, 2, 0, "after")).await.0, 201);
    assert!(
        until(&p.a.base, "/line/v1/messages?direction=in", 10, |v| {
            v["messages"].as_array().is_some_and(|m| m.len() == 2)
        })
        .await
    );
    // Federation learns his key was stolen five minutes ago.
    let key = p.f1.key().to_hex();
    let from = liaison::rfc3339(now_ms() - 300_000);
    let (done, out) = cli(
        &p.f,
        &admin(),
        &[
            "member",
            "compromised",
            &key,
            "--from",
            &from,
            "--reason",
            "laptop stolen",
        ],
    );
    assert!(done && out.contains("declared compromised from"), "{out}");
    // Alliance marks what the key signed from then on, and only that.
    let suspect = |v: &Value, text: &str| {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["message"]["body"]["text"] == text)
            .map(|m| m["suspect"].clone())
    };
    assert!(
        until(&p.a.base, "/line/v1/messages?direction=in", 10, |v| {
            suspect(v, "after").is_some_and(|s| s["reason"] == "laptop stolen")
        })
        .await
    );
    let v = ok(
        "GET",
        p.a.url("/line/v1/messages?direction=in"),
        &officer(),
        None,
    )
    .await;
    assert_eq!(suspect(&v, "before"), Some(Value::Null), "{v}");
    let (_, out) = cli(&p.a, &officer(), &["inbox", "--direction", "in"]);
    assert!(
        out.contains("!! SUSPECT: signed by a key declared compromised from"),
        "{out}"
    );
    // Nothing the key signs is taken any more, at its own node or at the
    // peer's; and it cannot be registered again.
    let (s, v) = send(message_created(&p.f1, 3, 0, "again")).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("declared compromised"),
        "{v}"
    );
    let (s, v) = call(
        "POST",
        p.f.url("/line/v1/members"),
        &admin(),
        Some(json!({ "key": key, "name": "Maj. Federation", "role": "x", "spheres": ["direct-line"] })),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (_, out) = cli(&p.a, &officer(), &["member", "list"]);
    assert!(out.contains("COMPROMISED from"), "{out}");
    // A key replaced: Federation's duty officer moves to a new key, one
    // command; Alliance takes the new key's messages and no more the old's.
    let old = MemberSigner::from_seed(&[41; 32]);
    let new = MemberSigner::from_seed(&[42; 32]);
    register(&p.f, &old, "Lt. Federation").await;
    let (done, out) = cli(
        &p.f,
        &admin(),
        &[
            "member",
            "replace",
            &old.key().to_hex(),
            "--new",
            &new.key().to_hex(),
        ],
    );
    assert!(done, "{out}");
    assert!(
        until(&p.a.base, "/line/v1/members", 10, |v| v["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["key"] == new.key().to_hex()
                && m["replaces"] == old.key().to_hex()
                && m["name"] == "Lt. Federation"))
        .await
    );
    assert_eq!(
        send(message_created(&new, 1, 0, "from the new key"))
            .await
            .0,
        201
    );
    assert!(
        until(&p.a.base, "/line/v1/messages?direction=in", 10, |v| {
            v["messages"].as_array().unwrap().iter().any(|m| {
                m["message"]["body"]["text"] == "from the new key"
                    && m["delivery"]["state"] == "delivered"
            })
        })
        .await
    );
    let (s, _) = send(message_created(&old, 1, 0, "from the old key")).await;
    assert_eq!(s, 403);
    // What the old and the compromised keys signed before still verifies in
    // an exported bundle, offline.
    let id = Uuid::from_u128(1u128 << 32 | u128::from(p.f1.key().0[0])).to_string();
    let dir = tempfile::tempdir().unwrap();
    // (Once a checkpoint covers the message: they follow the log.)
    let mut exported = (false, String::new());
    let mut bundle = dir.path().join("before");
    for attempt in 0..100 {
        bundle = dir.path().join(format!("before-{attempt}"));
        exported = run_cli(
            bin(),
            &[
                "evidence",
                "export",
                "--data",
                p.a.data.to_str().unwrap(),
                "--entity",
                &id,
                "--out",
                bundle.to_str().unwrap(),
            ],
            &[],
        );
        if exported.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exported.0, "{}", exported.1);
    let (ka, kf) = (log_key(&p.a).await, log_key(&p.f).await);
    let (verified, out) = run_cli(
        bin(),
        &[
            "verify",
            bundle.to_str().unwrap(),
            "--key",
            &ka,
            "--peer",
            &kf,
        ],
        &[],
    );
    assert!(verified, "{out}");
}

both_backends! {
#[tokio::test]
async fn a_node_key_is_rotated_without_losing_the_log_and_every_peer_follows() {
    // Over mutually pinned TLS, Federation's peer listener on an address
    // that stays across its restarts.
    let f_peer = free_local_addr().to_string();
    let a = TestNode::start_with(bin(), &["--name", A, "--peer-listen", "127.0.0.1:0"]);
    let mut f = TestNode::start_with(bin(), &["--name", F, "--peer-listen", &f_peer]);
    let (a_tls, f_tls) = (a.peer_base.clone().unwrap(), f.peer_base.clone().unwrap());
    let a1 = MemberSigner::from_seed(&[11; 32]);
    let f1 = MemberSigner::from_seed(&[22; 32]);
    register(&a, &a1, "Cdr. Alliance").await;
    register(&f, &f1, "Maj. Federation").await;
    let (ka, old) = (log_key(&a).await, log_key(&f).await);
    pin(&a, F, &f_tls, &old).await;
    pin(&f, A, &a_tls, &ka).await;
    let say = |from: &str, to: &str, who: &MemberSigner, seq: u64, text: &str| {
        message(from, to, who, seq, Sphere::DirectLine, Precedence::Flash, text)
    };
    ok("POST", f.url("/line/v1/messages"), &officer(), Some(say(F, A, &f1, 1, "before"))).await;
    let arrived = |n: &TestNode, k: usize| {
        let base = n.base.clone();
        async move {
            until(&base, "/line/v1/messages?direction=in", 10, |v| {
                v["messages"].as_array().unwrap().len() == k
            })
            .await
        }
    };
    assert!(arrived(&a, 1).await, "the first message never arrived");

    // The next key is prepared while Federation is stopped; a second
    // preparation is refused.
    f.kill();
    let data = f.data.to_str().unwrap().to_string();
    let (done, out) = run_cli(bin(), &["key", "rotate", "--data", &data], &[]);
    assert!(done, "{out}");
    let new = out.lines().next().unwrap().trim().to_string();
    assert!(new.starts_with(&format!("{F}+")) && new != old, "{out}");
    let (done, out) = run_cli(bin(), &["key", "rotate", "--data", &data], &[]);
    assert!(!done && out.contains("already prepared"), "{out}");
    f.start_again();
    assert_eq!(log_key(&f).await, new, "the node signs with the new key");

    // Alliance took the hand-over: it pins the new key, knows the old.
    assert!(
        until(&a.base, "/line/v1/peers", 10, |v| v["peers"][0]["key"] == json!(new)).await,
        "Alliance never took the new key"
    );
    let peers = ok("GET", a.url("/line/v1/peers"), &officer(), None).await;
    assert_eq!(peers["peers"][0]["key_handed_over"]["from"], json!(old), "{peers}");
    // Federation sees every peer has receipted it, and stops using the old key.
    assert!(
        until(&f.base, "/line/v1/peers", 10, |v| v["key"]["handover"]["complete"] == json!(true)
            && v["key"]["handing_over"] == json!(false))
        .await,
        "the hand-over was never receipted"
    );
    let peers = ok("GET", f.url("/line/v1/peers"), &officer(), None).await;
    assert_eq!(peers["key"]["handover"]["from"], json!(old), "{peers}");
    assert_eq!(peers["key"]["handover"]["receipted_by"], json!([A]), "{peers}");
    assert!(
        eventually(Duration::from_secs(10), || !f.data.join("node.key.previous").exists()),
        "the previous key was never removed"
    );
    let (done, out) = run_cli(bin(), &["key", "--data", &data], &[]);
    assert!(done && out.trim() == new, "{out}");

    // The line works both ways under the new key (the new TLS identity).
    ok("POST", f.url("/line/v1/messages"), &officer(), Some(say(F, A, &f1, 2, "after"))).await;
    assert!(arrived(&a, 2).await, "a message under the new key never arrived");
    ok("POST", a.url("/line/v1/messages"), &officer(), Some(say(A, F, &a1, 1, "received"))).await;
    assert!(arrived(&f, 1).await, "Alliance's message never reached Federation");

    // Federation's log: the hand-over signed by the old key, what follows
    // by the new one; nothing was lost.
    let (ov, nv) = (
        tlog::Verifier::parse(&old).unwrap(),
        tlog::Verifier::parse(&new).unwrap(),
    );
    let own_line = |b: &Vec<u8>| {
        let e = tlog::entry::SignedEntry::parse(b).unwrap();
        (e.entry.origin == F && e.entry.kind.starts_with("line.")).then_some(e)
    };
    // A checkpoint is signed every 0.5 s while the log grows, so the
    // latest may not cover the message sent under the new key yet: read
    // the log up to the checkpoint until one does.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (entries, at) = loop {
        let (size, _, _) = log_checkpoint(&f, &nv).await;
        let entries: Vec<Vec<u8>> = raw_log_entries(&f, size)
            .await
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        let at = entries
            .iter()
            .position(|b| {
                tlog::entry::SignedEntry::parse(b).unwrap().entry.kind == "line.key.rotated"
            })
            .expect("the hand-over is in Federation's log");
        if entries[at + 1..]
            .iter()
            .filter_map(own_line)
            .any(|e| e.entry.kind == "line.message")
        {
            break (entries, at);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Federation's checkpoint never covered the message it sent under the new key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let handover = tlog::entry::SignedEntry::parse(&entries[at]).unwrap();
    assert!(handover.verify(&ov).is_ok() && handover.verify(&nv).is_err());
    for e in entries[..at].iter().filter_map(own_line) {
        assert!(e.verify(&ov).is_ok(), "before the hand-over: the old key ({})", e.entry.kind);
    }
    let after: Vec<_> = entries[at + 1..].iter().filter_map(own_line).collect();
    assert!(!after.is_empty());
    for e in after.iter().filter(|e| e.entry.kind != "line.key.rotated") {
        assert!(e.verify(&nv).is_ok(), "after the hand-over: the new key ({})", e.entry.kind);
    }

    // Mutual witnessing goes on across the hand-over: Alliance cosigns
    // Federation's checkpoints of the new key, and Federation, under its
    // new witness key (which did not exist before), Alliance's.
    let cosigned_after = |node: &TestNode, log: tlog::Verifier, witness: String, beyond: u64| {
        let url = node.url("/log/checkpoint");
        async move {
            let w = tlog::Verifier::parse(&witness).unwrap();
            for _ in 0..100 {
                let note = get_text(&url).await;
                if let Ok((n, ok)) = tlog::note::open(note.as_bytes(), &[log.clone(), w.clone()])
                    && ok.len() == 2
                    && tlog::Checkpoint::parse(&n.text).unwrap().size > beyond
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    let (a_witness, f_witness) = (
        get_text(&a.url("/witness/key")).await.trim().to_string(),
        get_text(&f.url("/witness/key")).await.trim().to_string(),
    );
    assert!(
        cosigned_after(&f, nv.clone(), a_witness, at as u64).await,
        "Alliance stopped cosigning Federation's checkpoints"
    );
    let ka_v = tlog::Verifier::parse(&ka).unwrap();
    assert!(
        cosigned_after(&a, ka_v, f_witness, 0).await,
        "Federation's new witness key never cosigned Alliance's checkpoints"
    );

    // An evidence bundle verifies with either key: the verifier follows the
    // hand-over.
    let out_dir = tempfile::tempdir().unwrap();
    let bundle = out_dir.path().join("bundle");
    let (done, out) = run_cli(
        bin(),
        &["evidence", "export", "--data", &data, "--out", bundle.to_str().unwrap(), "--all"],
        &[],
    );
    assert!(done, "{out}");
    let keys = std::fs::read_to_string(bundle.join("keys.txt")).unwrap();
    assert!(keys.contains(&format!("handover {F} {old} {new}")), "{keys}");
    for key in [&old, &new] {
        let (done, out) = run_cli(
            bin(),
            &["verify", bundle.to_str().unwrap(), "--key", key, "--peer", &ka],
            &[],
        );
        assert!(done, "with {key}: {out}");
        assert!(out.contains("handed its key over") || out.contains("up to its hand-over"), "{out}");
    }
    // A stranger's key follows nothing.
    let stranger = tlog::NoteSigner::from_seed(F, &[99; 32]).unwrap().verifier().to_vkey();
    let (done, _) = run_cli(bin(), &["verify", bundle.to_str().unwrap(), "--key", &stranger, "--peer", &ka], &[]);
    assert!(!done);

    // Restarted once more, without the old key: the store still opens.
    f.restart();
    assert_eq!(log_key(&f).await, new);
    ok("POST", f.url("/line/v1/messages"), &officer(), Some(say(F, A, &f1, 3, "again"))).await;
    assert!(arrived(&a, 3).await, "nothing arrived after the second restart");
}
}
