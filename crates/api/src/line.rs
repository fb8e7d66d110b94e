//! The line over HTTP: `/line/v1/*` for the party's administrators
//! (scope `detente.line.admin`) and duty officers (`detente.line`), and
//! `/peer/v1/records`, where peers deliver their signed records (no bearer
//! token: a record is taken only if its origin's pinned key signed it).
//!
//! Messages and acknowledgements arrive already signed by their member
//! (the node never holds a member's key); the JSON here is the member's
//! map field for field, and the node re-derives the canonical bytes that
//! were signed.

use crate::Shared;
use crate::error::ApiError;
use crate::extract::Body;
use crate::wire::line::*;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use liaison::state::Delivery;
use liaison::{ChannelState, Member, Precedence, Signed, Sphere};
use node::{NodeError, Scope};
use serde_json::{Value, json};
use uuid::Uuid;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/line/v1/peers", get(list_peers).post(add_peer))
        .route("/line/v1/peers/{name}/area", put(set_area))
        .route("/line/v1/mesh", get(mesh))
        .route("/line/v1/peers/{name}/{what}/accept", post(accept_proposal))
        .route("/line/v1/peers/{name}/remove", post(remove_peer))
        .route("/line/v1/contact/{constraint}", put(designate_contact))
        .route("/line/v1/contact-line", post(contact_line))
        .route("/line/v1/members", get(list_members).post(register_member))
        .route("/line/v1/members/{key}", delete(remove_member))
        .route("/line/v1/members/{key}/replace", post(replace_member))
        .route(
            "/line/v1/members/{key}/compromised",
            post(declare_compromised),
        )
        .route("/line/v1/missions", get(list_missions))
        .route("/line/v1/missions/{guest}/quota", put(set_quota))
        .route("/line/v1/missions/{guest}/accreditations", post(accredit))
        .route("/line/v1/missions/{guest}/close", post(close_mission))
        .route("/line/v1/accreditations/{id}/revoke", post(revoke))
        .route("/line/v1/channels", get(list_channels))
        .route("/line/v1/channels/{peer}/{sphere}", post(channel_notice))
        .route(
            "/line/v1/channels/{peer}/{sphere}/deadlines",
            put(set_deadlines),
        )
        .route("/line/v1/messages", get(list_messages).post(send))
        .route("/line/v1/messages/group", post(send_group))
        .route("/line/v1/acks", post(acknowledge))
        .route("/line/v1/status", get(status))
        .route("/line/v1/access", get(list_access))
}

/// Where peers deliver their records.
pub fn peer_routes() -> Router<Shared> {
    Router::new()
        .route("/peer/v1/records", post(records))
        .route("/peer/v1/witness/key", get(peer_witness_key))
        .route("/peer/v1/witness/add-checkpoint", post(peer_add_checkpoint))
}

/// C2SP tlog-witness `add-checkpoint` for a pinned peer's log, on the line's
/// own connection (pinned mutual TLS on the peer listener).
#[utoipa::path(post, path = "/peer/v1/witness/add-checkpoint", tag = "peer", summary = "A pinned peer submits its checkpoint for this node's cosignature (C2SP tlog-witness)", request_body(content = String, content_type = "text/plain"), responses((status = 200, description = "The cosignature lines (text/plain)", body = String), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 404, description = "Not a log this node witnesses", body = crate::openapi::ErrorBody), (status = 409, description = "Not the latest cosigned size (text/x.tlog.size)", body = String)))]
async fn peer_add_checkpoint(
    st: State<Shared>,
    body: crate::extract::RawBody,
) -> Result<axum::response::Response, ApiError> {
    crate::evidence::add_checkpoint(st, body).await
}

/// This node's witness key (C2SP vkey, cosignature/v1) as a note signed by
/// the node key, which peers have pinned: how a peer learns, from the
/// pinning alone, whose cosignatures to expect from this node.
#[utoipa::path(get, path = "/peer/v1/witness/key", tag = "peer", summary = "This node's witness key as a note signed by its node key", responses((status = 200, description = "The signed note (text/plain)", body = String)))]
async fn peer_witness_key(State(st): State<Shared>) -> impl IntoResponse {
    (
        axum::http::StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        st.log
            .sign_note(&crate::peer::witness_key_text(&st.witness.verifier_key())),
    )
}

const ADMIN: &[Scope] = &[Scope::LineAdmin];
const MEMBER: &[Scope] = &[Scope::LineMember, Scope::LineAdmin];

fn spheres(v: &[String], field: &str) -> Result<Vec<Sphere>, ApiError> {
    v.iter()
        .enumerate()
        .map(|(i, s)| sphere(s, &format!("{field}[{i}]")))
        .collect()
}

fn signature(s: &str) -> Result<[u8; 64], ApiError> {
    liaison::from_hex(s)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad("signature", "128 hex digits (an Ed25519 signature)"))
}

// ---- peers and members ----

#[utoipa::path(post, path = "/line/v1/peers", tag = "line", summary = "Pin a peer by name, URL and log key", request_body = PeerBody, responses((status = 200, description = "Pinned", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn add_peer(
    State(st): State<Shared>,
    h: HeaderMap,
    Body(b): Body<PeerBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    st.line
        .add_peer(
            b.name.clone(),
            b.url.trim_end_matches('/').to_string(),
            b.key,
        )
        .await?;
    tracing::info!(peer = %b.name, url = %b.url, "peer added");
    Ok(Json(json!({ "name": b.name })))
}

#[utoipa::path(get, path = "/line/v1/peers", tag = "line", summary = "This node and its pinned peers, with their deconfliction areas", responses((status = 200, description = "The peers", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn list_peers(State(st): State<Shared>, h: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, MEMBER)?;
    let me = st.log.origin().to_string();
    let peers = st.line.read(|s| {
        s.peers()
            .map(|p| {
                json!({
                    "name": p.name,
                    "url": p.url,
                    "key": p.vkey,
                    "area": polygons_json(s.area(&p.name)),
                    "area_agreement": area_json(s.area_state(&p.name)),
                    "contact_line": crate::contact::agreement_json(s, &me, &p.name),
                    "key_handed_over": p.previous.as_ref().map(|h| json!({
                        "from": h.vkey,
                        "at": liaison::record::rfc3339(h.at_ms),
                        "index": h.index,
                    })),
                })
            })
            .collect::<Vec<_>>()
    })?;
    let key = own_key_json(&st)?;
    Ok(Json(
        json!({ "me": st.log.origin(), "key": key, "peers": peers }),
    ))
}

/// This node's key and its last hand-over: from which key, when, and which
/// peers have receipted it.
fn own_key_json(st: &Shared) -> Result<Value, ApiError> {
    let vkey = st.log.verifier_key();
    let handover = st.line.read(|s| {
        s.handovers().last().map(|h| {
            let receipts = s.handover_receipts();
            json!({
                "from": h.old,
                "to": h.new,
                "at": liaison::record::rfc3339(h.at_ms),
                "index": h.index,
                "receipted_by": receipts.iter().filter(|(_, d)| *d).map(|(p, _)| p).collect::<Vec<_>>(),
                "awaiting": receipts.iter().filter(|(_, d)| !*d).map(|(p, _)| p).collect::<Vec<_>>(),
                "complete": receipts.iter().all(|(_, d)| *d),
            })
        })
    })?;
    Ok(json!({ "vkey": vkey, "handing_over": st.log.handing_over(), "handover": handover }))
}

/// Designates a constraint as the line of contact: this party's operations
/// touching it are notified to peers and held from activation until
/// acknowledged.
#[utoipa::path(put, path = "/line/v1/contact/{constraint}", tag = "line", summary = "Designate a constraint as the line of contact", params(("constraint" = String, Path, description = "The constraint id (UUID)")), responses((status = 200, description = "Designated", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn designate_contact(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(constraint): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let id = uuid(&constraint, "constraint")?;
    st.line.designate_contact(id).await?;
    tracing::info!(constraint = %id, "constraint designated as the line of contact");
    Ok(Json(
        json!({ "constraint": id.to_string(), "line_of_contact": true }),
    ))
}

/// A line of contact from a polyline and a buffer width: the node buffers
/// it on the WGS-84 ellipsoid (`airspace::geometry::buffer_line`),
/// declares the outline as a constraint of its own (manager: the node) and
/// designates it as the line of contact.
#[utoipa::path(post, path = "/line/v1/contact-line", tag = "line", summary = "Declare the line of contact as a polyline with a buffer width; the node buffers it on the ellipsoid", request_body = ContactLineBody, responses((status = 200, description = "The constraint (its details and OVN for planners at /uss/v1/constraints/{id}) and its outline's size", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 413, description = "Too large", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn contact_line(
    State(st): State<Shared>,
    h: HeaderMap,
    Body(b): Body<ContactLineBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let terms = crate::contact::terms_of(&b, st.line.now_ms())?;
    // Buffered here first: a line that cannot be buffered is refused
    // before anything is proposed or declared.
    let outline = if terms.line.is_empty() {
        Vec::new()
    } else {
        crate::contact::outline(&terms)?
    };
    let vertices = outline.len();
    if let Some(peer) = &b.peer {
        if b.id.is_some() {
            return Err(ApiError::bad(
                "id",
                "a line agreed with a peer takes its constraint's id from the agreement",
            ));
        }
        st.line.propose_contact(peer.clone(), terms).await?;
        let me = st.log.origin().to_string();
        let agreement = st
            .line
            .read(|s| crate::contact::agreement_json(s, &me, peer))?;
        tracing::info!(%peer, points = b.line.len(), buffer_m = b.buffer_m, status = %agreement["status"], "line of contact proposed");
        return Ok(Json(json!({
            "peer": peer,
            "contact_line": agreement,
            "vertices": vertices,
            "buffer_m": b.buffer_m,
        })));
    }
    let id = match &b.id {
        Some(s) => uuid(s, "id")?,
        None => st.line.new_id(),
    };
    // This party's own line: the node manages its constraint.
    let caller = node::Caller {
        sub: st.log.origin().to_string(),
        scopes: vec![Scope::ConstraintManagement],
    };
    let existing = st.dss.get_constraint(id).await.ok().map(|c| c.ovn);
    let (c, _) = st
        .dss
        .put_constraint(
            &caller,
            id,
            existing,
            vec![crate::contact::volume(&terms, outline)],
            st.uss_base_url.clone(),
        )
        .await?;
    st.line.designate_contact(id).await?;
    tracing::info!(constraint = %id, points = b.line.len(), buffer_m = b.buffer_m, vertices, "line of contact declared");
    Ok(Json(json!({
        "constraint": id.to_string(),
        "version": c.version,
        "vertices": vertices,
        "buffer_m": b.buffer_m,
        "line_of_contact": true,
    })))
}

/// Proposes exactly what the peer last proposed — the deconfliction area
/// or the line of contact — so that it is agreed.
#[utoipa::path(post, path = "/line/v1/peers/{name}/{what}/accept", tag = "line", summary = "Agree to the peer's latest proposal of the deconfliction area (`area`) or the line of contact (`contact-line`) by proposing the same", params(("name" = String, Path, description = "The peer"), ("what" = String, Path, description = "`area` or `contact-line`")), responses((status = 200, description = "Proposed; the agreement as it now stands", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, or nothing proposed by it", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn accept_proposal(
    State(st): State<Shared>,
    h: HeaderMap,
    Path((name, what)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let contact = match what.as_str() {
        "area" => false,
        "contact-line" => true,
        _ => {
            return Err(ApiError::NotFound(format!(
                "{what}: one of area, contact-line"
            )));
        }
    };
    st.line.accept(name.clone(), contact).await?;
    let me = st.log.origin().to_string();
    let v = st.line.read(|s| {
        if contact {
            json!({ "peer": name, "contact_line": crate::contact::agreement_json(s, &me, &name) })
        } else {
            json!({ "peer": name, "area": polygons_json(s.area(&name)), "area_agreement": area_json(s.area_state(&name)) })
        }
    })?;
    tracing::info!(peer = %name, %what, "peer's proposal accepted");
    Ok(Json(v))
}

/// Who is peered with whom: this party's own pins and those each peer last
/// announced, every pair of parties known with whether each pins the
/// other, and any party pinned under different keys by different parties.
#[utoipa::path(get, path = "/line/v1/mesh", tag = "line", summary = "Who is peered with whom, as every party last announced its pins, and whether all pin the same keys", responses((status = 200, description = "The parties, their pins and every pair", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn mesh(State(st): State<Shared>, h: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, MEMBER)?;
    let me = st.log.origin().to_string();
    let my_key = st.log.verifier_key();
    Ok(Json(st.line.read(|s| mesh_view(s, &me, &my_key))?))
}

fn mesh_view(s: &liaison::LineState, me: &str, my_key: &str) -> Value {
    use std::collections::{BTreeMap, BTreeSet};
    // Whom each party pins, where known: this party's own, and each
    // peer's last announcement.
    let mut pins: BTreeMap<String, (BTreeMap<String, String>, Option<u64>)> = BTreeMap::new();
    pins.insert(
        me.to_string(),
        (
            s.peers()
                .map(|p| (p.name.clone(), p.vkey.clone()))
                .collect(),
            None,
        ),
    );
    for p in s.peers() {
        if let Some((announced, at)) = s.announced_peers(&p.name) {
            pins.insert(
                p.name.clone(),
                (announced.iter().cloned().collect(), Some(*at)),
            );
        }
    }
    let mut parties: BTreeSet<String> = pins.keys().cloned().collect();
    for (list, _) in pins.values() {
        parties.extend(list.keys().cloned());
    }
    // The keys each party is pinned under (its own, for this node).
    let mut keys: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    keys.entry(me.to_string())
        .or_default()
        .entry(my_key.to_string())
        .or_default()
        .push(format!("{me} (its own key)"));
    for (by, (list, _)) in &pins {
        for (party, key) in list {
            keys.entry(party.clone())
                .or_default()
                .entry(key.clone())
                .or_default()
                .push(by.clone());
        }
    }
    let pinned = |a: &str, b: &str| pins.get(a).map(|(l, _)| l.contains_key(b));
    let parties: Vec<String> = parties.into_iter().collect();
    let mut links = Vec::new();
    let mut complete = true;
    for (i, a) in parties.iter().enumerate() {
        for b in &parties[i + 1..] {
            let (ab, ba) = (pinned(a, b), pinned(b, a));
            let status = match (ab, ba) {
                (Some(true), Some(true)) => "mutual",
                (Some(true), Some(false)) | (Some(false), Some(true)) => "one-way",
                (Some(false), Some(false)) => "missing",
                _ => "unknown",
            };
            complete &= status == "mutual";
            links.push(json!({ "a": a, "b": b, "a_pins_b": ab, "b_pins_a": ba, "status": status }));
        }
    }
    let conflicts: Vec<Value> = keys
        .iter()
        .filter(|(_, by_key)| by_key.len() > 1)
        .map(|(party, by_key)| json!({ "party": party, "keys": by_key }))
        .collect();
    complete &= conflicts.is_empty();
    json!({
        "me": me,
        "parties": parties,
        "pins": pins.iter().map(|(by, (list, at))| (by.clone(), json!({
            "peers": list.keys().collect::<Vec<_>>(),
            "announced_ms": at,
        }))).collect::<serde_json::Map<String, Value>>(),
        "links": links,
        "key_conflicts": conflicts,
        "full_mesh": complete,
    })
}

fn polygons_json(polygons: &[Vec<(f64, f64)>]) -> Value {
    json!(
        polygons
            .iter()
            .map(|poly| poly.iter().map(|(a, b)| [*a, *b]).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    )
}

/// Both parties' latest proposals and the agreement, as the API shows
/// them (`terms` renders what is agreed on).
pub(crate) fn agreement_json<T: liaison::state::Terms>(
    a: Option<&liaison::state::Agreement<T>>,
    terms: impl Fn(&T) -> Value,
) -> Value {
    let proposal = |p: &Option<liaison::state::Proposal<T>>| {
        p.as_ref().map_or(
            Value::Null,
            |p| json!({ "terms": terms(&p.terms), "at_ms": p.at_ms, "index": p.index }),
        )
    };
    match a {
        None => json!({ "status": "none", "ours": null, "theirs": null, "agreed_index": null }),
        Some(a) => json!({
            "status": a.status(),
            "ours": proposal(&a.ours),
            "theirs": proposal(&a.theirs),
            "agreed_index": a.agreed.as_ref().map(|(_, i)| *i),
        }),
    }
}

/// Both parties' proposals of a deconfliction area and the agreement.
fn area_json(a: Option<&liaison::state::Area>) -> Value {
    agreement_json(a, |p| polygons_json(p))
}

/// Proposes the deconfliction area shared with a peer: it binds (this
/// party's intents and constraints that touch it are shared with the
/// peer) once the peer proposes the same polygons.
#[utoipa::path(put, path = "/line/v1/peers/{name}/area", tag = "line", summary = "Propose the deconfliction area shared with a peer; it binds once both parties propose the same polygons", params(("name" = String, Path, description = "The peer")), request_body = AreaBody, responses((status = 200, description = "Proposed; `area_agreement.status` says whether it is agreed", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn set_area(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    Body(b): Body<AreaBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let polygons: Vec<Vec<(f64, f64)>> = b
        .polygons
        .iter()
        .map(|p| p.iter().map(|[a, b]| (*a, *b)).collect())
        .collect();
    let n = polygons.len();
    st.line.set_area(name.clone(), polygons).await?;
    let agreement = st.line.read(|s| area_json(s.area_state(&name)))?;
    tracing::info!(peer = %name, polygons = n, status = %agreement["status"], "deconfliction area proposed");
    Ok(Json(
        json!({ "peer": name, "polygons": n, "area_agreement": agreement }),
    ))
}

#[utoipa::path(post, path = "/line/v1/members", tag = "line", summary = "Register a member of this party by public key", request_body = MemberBody, responses((status = 200, description = "Registered", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn register_member(
    State(st): State<Shared>,
    h: HeaderMap,
    Body(b): Body<MemberBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let m = Member {
        key: member_key(&b.key, "key")?,
        name: b.name,
        role: b.role,
        spheres: spheres(&b.spheres, "spheres")?,
    };
    let key = m.key;
    st.line.register_member(m).await?;
    Ok(Json(json!({ "key": key.to_hex() })))
}

#[utoipa::path(delete, path = "/line/v1/members/{key}", tag = "line", summary = "Remove a member of this party", params(("key" = String, Path, description = "The member key, hex")), responses((status = 200, description = "Removed", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn remove_member(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    st.line.remove_member(member_key(&key, "key")?).await?;
    Ok(Json(json!({ "key": key })))
}

/// Replaces a member's key (lost or retired): the old key is removed and
/// the new one registered in one record every peer receives.
#[utoipa::path(post, path = "/line/v1/members/{key}/replace", tag = "line", summary = "Replace the key of a member of this party", params(("key" = String, Path, description = "The old member key, hex")), request_body = ReplaceMemberBody, responses((status = 200, description = "Replaced", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn replace_member(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(key): Path<String>,
    Body(b): Body<ReplaceMemberBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let old = member_key(&key, "old key")?;
    let new_key = member_key(&b.key, "key")?;
    let current = st
        .line
        .read(|s| s.member(&old).map(|e| e.member.clone()))?
        .ok_or_else(|| ApiError::NotFound(format!("member {key} not found")))?;
    let new = Member {
        key: new_key,
        name: b.name.unwrap_or(current.name),
        role: b.role.unwrap_or(current.role),
        spheres: match &b.spheres {
            Some(v) => spheres(v, "spheres")?,
            None => current.spheres,
        },
    };
    let new_key = new.key.to_hex();
    st.line.replace_member(old, new).await?;
    tracing::info!(old = %key, new = %new_key, "member key replaced");
    Ok(Json(json!({ "old": key, "key": new_key })))
}

/// Declares a member's key compromised from a time: nothing it signs is
/// taken any more, what it signed from then on is shown as suspect.
#[utoipa::path(post, path = "/line/v1/members/{key}/compromised", tag = "line", summary = "Declare a member key of this party compromised from a stated time", params(("key" = String, Path, description = "The member key, hex")), request_body = CompromisedBody, responses((status = 200, description = "Declared", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn declare_compromised(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(key): Path<String>,
    Body(b): Body<CompromisedBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let k = member_key(&key, "key")?;
    let from_ms = match &b.from {
        Some(s) => {
            let t = crate::export::parse_instant(s, "from")?;
            Some(
                u64::try_from(t.unix_micros() / 1000)
                    .map_err(|_| ApiError::bad("from", "after 1970-01-01T00:00:00Z"))?,
            )
        }
        None => None,
    };
    st.line
        .declare_compromised(k, from_ms, b.reason.clone())
        .await?;
    let from = st.line.read(|s| {
        s.member(&k)
            .and_then(|e| e.compromised.as_ref().map(|(f, _)| *f))
    })?;
    tracing::warn!(key = %key, from_ms = ?from, reason = %b.reason, "member key declared compromised");
    Ok(Json(json!({ "key": key, "compromised_from_ms": from })))
}

#[utoipa::path(get, path = "/line/v1/members", tag = "line", summary = "Registered members of every party", responses((status = 200, description = "The members", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn list_members(
    State(st): State<Shared>,
    h: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, MEMBER)?;
    let mut v = st.line.read(|s| {
        s.members()
            .map(|m| {
                json!({
                    "party": m.party, "key": m.member.key.to_hex(), "name": m.member.name,
                    "role": m.member.role,
                    "spheres": m.member.spheres.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                    "removed_ms": m.removed_at, "last_seq": s.sender_seq(&m.member.key),
                    "replaces": m.replaces.map(|k| k.to_hex()),
                    "replaced_by": m.replaced_by.map(|k| k.to_hex()),
                    "compromised": m.compromised.as_ref().map(|(from, reason)| json!({ "from_ms": from, "reason": reason })),
                })
            })
            .collect::<Vec<_>>()
    })?;
    v.sort_by(|a, b| {
        (a["party"].as_str(), a["name"].as_str()).cmp(&(b["party"].as_str(), b["name"].as_str()))
    });
    Ok(Json(json!({ "members": v })))
}

// ---- missions ----

#[utoipa::path(put, path = "/line/v1/missions/{guest}/quota", tag = "line", summary = "As host: set a guest mission's positions quota", params(("guest" = String, Path, description = "The guest party")), request_body = QuotaBody, responses((status = 200, description = "Set", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn set_quota(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(guest): Path<String>,
    Body(b): Body<QuotaBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let ending = b
        .ending
        .iter()
        .enumerate()
        .map(|(i, s)| uuid(s, &format!("ending[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    st.line.set_quota(guest.clone(), b.quota, ending).await?;
    tracing::info!(%guest, quota = b.quota, "mission quota set");
    Ok(Json(json!({ "guest": guest, "quota": b.quota })))
}

#[utoipa::path(post, path = "/line/v1/missions/{guest}/accreditations", tag = "line", summary = "As host: accredit a guest's member", params(("guest" = String, Path, description = "The guest party")), request_body = AccreditBody, responses((status = 200, description = "Accredited", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn accredit(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(guest): Path<String>,
    Body(b): Body<AccreditBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let a = liaison::decide::Accredit {
        id: Uuid::nil(),
        guest: guest.clone(),
        member: member_key(&b.member, "member")?,
        name: b.name,
        role: b.role,
        spheres: spheres(&b.spheres, "spheres")?,
        valid_from: b.valid_from_ms.unwrap_or_else(|| st.line.now_ms()),
        valid_until: b.valid_until_ms,
    };
    let id = st.line.accredit(a).await?;
    tracing::info!(%guest, accreditation = %id, member = %b.member, "member accredited");
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({ "id": id.to_string() })),
    ))
}

/// Unpins a peer: only once the direct line with it is closed by both
/// parties (409 naming the channel otherwise).
#[utoipa::path(post, path = "/line/v1/peers/{name}/remove", tag = "line", summary = "Unpin a peer (only once both parties closed the direct line)", params(("name" = String, Path, description = "The peer")), request_body = ReasonBody, responses((status = 200, description = "Removed", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn remove_peer(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    Body(b): Body<ReasonBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    if b.effective_ms.is_some() {
        return Err(ApiError::bad("effective_ms", "a peer is removed at once"));
    }
    st.line.remove_peer(name.clone(), b.reason.clone()).await?;
    tracing::warn!(peer = %name, reason = %b.reason, "peer removed");
    Ok(Json(json!({ "peer": name, "removed": true })))
}

#[utoipa::path(post, path = "/line/v1/accreditations/{id}/revoke", tag = "line", summary = "As host: revoke an accreditation, at once or with notice (effective_ms): its member may act until then", params(("id" = String, Path, description = "The accreditation id (UUID)")), request_body = ReasonBody, responses((status = 200, description = "Revoked", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn revoke(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(id): Path<String>,
    Body(b): Body<ReasonBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let id = uuid(&id, "id")?;
    st.line.revoke(id, b.reason.clone(), b.effective_ms).await?;
    let effective = b.effective_ms.unwrap_or_else(|| st.line.now_ms());
    tracing::warn!(accreditation = %id, reason = %b.reason, effective_ms = effective, "accreditation revoked");
    Ok(Json(
        json!({ "id": id.to_string(), "revoked": true, "effective_ms": effective }),
    ))
}

#[utoipa::path(post, path = "/line/v1/missions/{guest}/close", tag = "line", summary = "As host: close a guest's mission, effective at a time", params(("guest" = String, Path, description = "The guest party")), request_body = ReasonBody, responses((status = 200, description = "Closed", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn close_mission(
    State(st): State<Shared>,
    h: HeaderMap,
    Path(guest): Path<String>,
    Body(b): Body<ReasonBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    st.line
        .close_mission(guest.clone(), b.effective_ms, b.reason.clone())
        .await?;
    tracing::warn!(%guest, reason = %b.reason, "mission closed");
    Ok(Json(json!({ "guest": guest, "closed": true })))
}

#[utoipa::path(get, path = "/line/v1/missions", tag = "line", summary = "Missions: quotas, accreditations, closures", responses((status = 200, description = "The missions", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn list_missions(
    State(st): State<Shared>,
    h: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, MEMBER)?;
    let now = st.line.now_ms();
    let v = st.line.read(|s| {
        s.missions()
            .map(|((host, guest), m)| {
                let accs: Vec<Value> = s
                    .accreditations()
                    .filter(|a| a.accreditation.host == *host && a.accreditation.guest == *guest)
                    .map(|a| {
                        let x = &a.accreditation;
                        json!({
                            "id": x.id.to_string(), "member": x.member.to_hex(), "name": x.name,
                            "role": x.role, "spheres": x.spheres.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                            "valid_from_ms": x.valid_from, "valid_until_ms": x.valid_until,
                            // With notice: `leaves_in_ms` counts down to it.
                            "revoked": a.revoked.as_ref().map(|(at, r)| json!({
                                "at_ms": at, "reason": r, "in_effect": *at <= now,
                                "leaves_in_ms": at.saturating_sub(now) })),
                            "ended": a.ended.as_ref().map(|(at, r)| json!({ "at_ms": at, "reason": r })),
                            "active": s.inactive_reason(a, now).is_none(),
                            "inactive_reason": s.inactive_reason(a, now),
                        })
                    })
                    .collect();
                json!({
                    "host": host, "guest": guest, "quota": m.quota,
                    "active": s.active_accreditations(host, guest, now).len(),
                    "closed": m.closed.as_ref().map(|(at, r)| json!({
                        "effective_ms": at, "reason": r, "in_effect": *at <= now,
                        "leaves_in_ms": at.saturating_sub(now) })),
                    "accreditations": accs,
                })
            })
            .collect::<Vec<_>>()
    })?;
    Ok(Json(json!({ "missions": v })))
}

// ---- channels ----

#[utoipa::path(post, path = "/line/v1/channels/{peer}/{sphere}", tag = "line", summary = "Open, suspend or close a channel (the direct line closes only on both parties' closures)", params(("peer" = String, Path, description = "The peer"), ("sphere" = String, Path, description = "diplomatic, information, military or direct-line")), request_body = ChannelBody, responses((status = 200, description = "Noticed", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn channel_notice(
    State(st): State<Shared>,
    h: HeaderMap,
    Path((peer, sph)): Path<(String, String)>,
    Body(b): Body<ChannelBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let sphere = sphere(&sph, "sphere")?;
    let state = ChannelState::parse(&b.state)
        .ok_or_else(|| ApiError::bad("state", format!("one of {}", ChannelState::expected())))?;
    st.line
        .channel_notice(peer.clone(), sphere, state, b.effective_ms, b.reason)
        .await?;
    tracing::info!(%peer, %sphere, %state, "channel notice given");
    let now = st.line.now_ms();
    let now_state = st.line.read(|s| s.channel_state(&peer, sphere, now).0)?;
    Ok(Json(
        json!({ "peer": peer, "sphere": sphere.as_str(), "state": now_state.as_str() }),
    ))
}

/// A channel's acknowledgement deadlines per precedence, for messages
/// created from `effective_ms` (default now) on; replicated to the peer so
/// that both compute the same deadlines.
#[utoipa::path(put, path = "/line/v1/channels/{peer}/{sphere}/deadlines", tag = "line", summary = "Set a channel's acknowledgement deadlines per precedence", params(("peer" = String, Path, description = "The peer"), ("sphere" = String, Path, description = "diplomatic, information, military or direct-line")), request_body = DeadlinesBody, responses((status = 200, description = "Set", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn set_deadlines(
    State(st): State<Shared>,
    h: HeaderMap,
    Path((peer, sph)): Path<(String, String)>,
    Body(b): Body<DeadlinesBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, ADMIN)?;
    let sphere = sphere(&sph, "sphere")?;
    use liaison::decide::{DEADLINE_MAX_MS, DEADLINE_MIN_MS};
    let given = [
        ("flash_s", b.flash_s),
        ("immediate_s", b.immediate_s),
        ("priority_s", b.priority_s),
        ("routine_s", b.routine_s),
    ];
    if let Some((field, s)) = given
        .iter()
        .find(|(_, s)| !(DEADLINE_MIN_MS..=DEADLINE_MAX_MS).contains(&s.saturating_mul(1000)))
    {
        return Err(ApiError::bad(
            *field,
            format!(
                "{s} s: a deadline is between {} and {} seconds (one minute to seven days)",
                DEADLINE_MIN_MS / 1000,
                DEADLINE_MAX_MS / 1000
            ),
        ));
    }
    let d: Vec<u64> = given.iter().map(|(_, s)| s.saturating_mul(1000)).collect();
    st.line
        .set_deadlines(peer.clone(), sphere, d.clone(), b.effective_ms)
        .await?;
    Ok(Json(
        json!({ "peer": peer, "sphere": sphere.as_str(), "deadlines_ms": d }),
    ))
}

#[utoipa::path(get, path = "/line/v1/channels", tag = "line", summary = "Channel states and notices with each peer", responses((status = 200, description = "The channels", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn list_channels(
    State(st): State<Shared>,
    h: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, MEMBER)?;
    let now = st.line.now_ms();
    let v = st.line.read(|s| {
        let mut out = Vec::new();
        for p in s.peers() {
            for sphere in Sphere::ALL {
                let (state, by) = s.channel_state(&p.name, *sphere, now);
                let notices: Vec<Value> = s
                    .channel_notices(&p.name, *sphere)
                    .iter()
                    .map(|n| json!({ "by": n.by, "state": n.state.as_str(), "effective_ms": n.effective_ms, "reason": n.reason }))
                    .collect();
                let deadlines: serde_json::Map<String, Value> = Precedence::ALL
                    .iter()
                    .map(|pr| (pr.as_str().to_string(), json!(s.ack_deadline(&p.name, *sphere, *pr, now))))
                    .collect();
                out.push(json!({
                    "peer": p.name, "sphere": sphere.as_str(), "state": state.as_str(),
                    "ack_deadlines_ms": deadlines,
                    "since": by.map(|n| json!({ "by": n.by, "effective_ms": n.effective_ms, "reason": n.reason })),
                    "notices": notices,
                }));
            }
        }
        out
    })?;
    Ok(Json(json!({ "channels": v })))
}

// ---- messages and acknowledgements ----

#[utoipa::path(post, path = "/line/v1/messages", tag = "line", summary = "Send a member-signed message (idempotent by id)", request_body = SendBody, responses((status = 200, description = "Committed (201 the first time)", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 413, description = "Too large", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn send(
    State(st): State<Shared>,
    h: HeaderMap,
    Body(b): Body<SendBody>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = st.require(&h, MEMBER)?;
    let m = Signed {
        value: b.message.to_domain()?,
        signature: signature(&b.signature)?,
    };
    own_key(&caller, &m.value.sender, "message.sender")?;
    let id = m.value.id;
    let outcome = st.line.send(m).await?;
    let view = view_of(&st, &id).await?;
    let status = if outcome == liaison::LineOutcome::Committed {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// A group's messages in one request and one commit: each decided in
/// order, each with its own outcome.
#[utoipa::path(post, path = "/line/v1/messages/group", tag = "line", summary = "Send one member's message to several peers at once: the group's messages (one per peer, each signed, all naming the group) in one commit", request_body = GroupSendBody, responses((status = 201, description = "Every message committed (or already there): each message's view", body = serde_json::Value), (status = 200, description = "Some refused: per message, its view or its refusal `{code, message}`; `refused` counts them", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn send_group(
    State(st): State<Shared>,
    h: HeaderMap,
    Body(b): Body<GroupSendBody>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = st.require(&h, MEMBER)?;
    if b.messages.len() < 2 || b.messages.len() > liaison::MAX_GROUP {
        return Err(ApiError::bad(
            "messages",
            format!("a group has 2 to {} messages", liaison::MAX_GROUP),
        ));
    }
    let mut ms = Vec::with_capacity(b.messages.len());
    for (i, m) in b.messages.iter().enumerate() {
        let f = |x: &str| format!("messages[{i}].{x}");
        let signed = Signed {
            value: m
                .message
                .to_domain()
                .map_err(|e| e.prefixed(&format!("messages[{i}].")))?,
            signature: signature(&m.signature).map_err(|_| {
                ApiError::bad(f("signature"), "128 hex digits (an Ed25519 signature)")
            })?,
        };
        own_key(&caller, &signed.value.sender, &f("message.sender"))?;
        ms.push(signed);
    }
    // One member's one message: the same group, sender and text for all.
    let first = &ms[0].value;
    let Some(group) = first.group.clone() else {
        return Err(ApiError::bad(
            "messages[0].message.group",
            "a group's messages name it",
        ));
    };
    for (i, m) in ms.iter().enumerate() {
        let v = &m.value;
        if v.group.as_ref() != Some(&group) {
            return Err(ApiError::bad(
                format!("messages[{i}].message.group"),
                "every message names the same group",
            ));
        }
        if v.sender != first.sender || v.body != first.body || v.precedence != first.precedence {
            return Err(ApiError::bad(
                format!("messages[{i}].message"),
                "a group is one member's one message: the same sender, precedence and body",
            ));
        }
    }
    let ids: Vec<(Uuid, String)> = ms
        .iter()
        .map(|m| (m.value.id, m.value.to.clone()))
        .collect();
    let results = st.line.send_group(ms).await?;
    let mut refused = 0;
    let mut committed = 0;
    let mut out = Vec::with_capacity(ids.len());
    for ((id, to), r) in ids.iter().zip(results) {
        match r {
            Ok(o) => {
                if o == liaison::LineOutcome::Committed {
                    committed += 1;
                }
                out.push(view_of(&st, id).await?);
            }
            Err(NodeError::Line(e)) => {
                refused += 1;
                let (_, body) = crate::error::line_error(&e);
                out.push(json!({ "to": to, "id": id.to_string(), "refused": body }));
            }
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(group = %group.id, committed, refused, "group message sent");
    let status = if refused > 0 {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({ "group": group.id.to_string(), "refused": refused, "messages": out })),
    ))
}

#[utoipa::path(post, path = "/line/v1/acks", tag = "line", summary = "Send a member-signed acknowledgement", request_body = AckBody, responses((status = 200, description = "Committed", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn acknowledge(
    State(st): State<Shared>,
    h: HeaderMap,
    Body(b): Body<AckBody>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = st.require(&h, MEMBER)?;
    let a = Signed {
        value: b.ack.to_domain()?,
        signature: signature(&b.signature)?,
    };
    own_key(&caller, &a.value.by, "ack.by")?;
    let id = a.value.message;
    st.line.acknowledge(a).await?;
    let view = view_of(&st, &id).await?;
    Ok(Json(view))
}

/// A console session signs only as its own member.
fn own_key(caller: &node::Caller, key: &liaison::MemberKey, field: &str) -> Result<(), ApiError> {
    match crate::console::session_member(caller) {
        Some(k) if k != key.to_hex() => Err(ApiError::Forbidden(format!(
            "{field}: a console session signs only with its own member key"
        ))),
        _ => Ok(()),
    }
}

/// A message as the line's endpoints show it (null if unknown).
async fn view_of(st: &Shared, id: &Uuid) -> Result<Value, ApiError> {
    let now = st.line.now_ms();
    with_whole(st, |w| {
        w.s.held(id)
            .and_then(|h| w.get(h))
            .map(|e| message_view(w, e, now))
            .unwrap_or(Value::Null)
    })
    .await
}

/// Settled messages read back from the log, by their log index.
type ReadBack = std::collections::HashMap<u64, liaison::state::MessageEntry>;

/// The line's state with the settled messages a view needs made whole:
/// what [`Whole::get`] finds missing is read back from the log and the
/// view made again (settled messages never change, so it converges).
struct Whole<'a> {
    s: &'a liaison::LineState,
    back: &'a ReadBack,
    missing: std::cell::RefCell<Vec<liaison::state::Settled>>,
}

impl<'a> Whole<'a> {
    fn get(&self, h: liaison::state::Held<'a>) -> Option<&'a liaison::state::MessageEntry> {
        match h {
            liaison::state::Held::Whole(e) => Some(e),
            liaison::state::Held::Settled(stub) => {
                let got = self.back.get(&stub.index);
                if got.is_none() {
                    self.missing.borrow_mut().push(*stub);
                }
                got
            }
        }
    }
}

/// Runs `f` on the line's state with every settled message it asks for
/// whole: at most a few rounds (one for the messages, one for their
/// groups' other messages, one more if a message settled in between).
async fn with_whole<T>(st: &Shared, f: impl Fn(&Whole<'_>) -> T) -> Result<T, ApiError> {
    let mut back = ReadBack::new();
    for _ in 0..8 {
        let (out, missing) = st.line.read(|s| {
            let w = Whole {
                s,
                back: &back,
                missing: Default::default(),
            };
            let out = f(&w);
            (out, w.missing.into_inner())
        })?;
        if missing.is_empty() {
            return Ok(out);
        }
        back.extend(st.line.read_back(missing).await?);
    }
    Err(ApiError::Node(NodeError::Store(
        node::StoreError::Unavailable(
            "messages kept settling while they were read back from the log; retry".into(),
        ),
    )))
}

fn delivery_of(d: &Delivery) -> Value {
    match d {
        Delivery::Queued => json!({ "state": "queued" }),
        Delivery::Delivered { index } => json!({ "state": "delivered", "index": index }),
        Delivery::Refused { reason } => json!({ "state": "refused", "reason": reason }),
    }
}

fn message_view(w: &Whole<'_>, e: &liaison::state::MessageEntry, now: u64) -> Value {
    let s = w.s;
    let m = &e.signed.value;
    let sender = s.member(&m.sender).map(|x| x.member.name.clone());
    let delivery = delivery_of(&e.delivery);
    let ack = e.ack.as_ref().map(|a| {
        json!({
            "suspect": s.suspect(&a.value.by, a.value.at_ms).is_some(),
            "by": a.value.by.to_hex(),
            "by_name": s.member(&a.value.by).map(|x| x.member.name.clone()),
            "verdict": a.value.verdict.as_str(), "text": a.value.text, "at_ms": a.value.at_ms,
        })
    });
    // A group's messages shown together: each addressee's delivery,
    // acknowledgement and deadline (on the sender's side: all of them).
    let group = m.group.as_ref().map(|g| {
        let members: Vec<Value> = s
            .group(&g.id)
            .filter_map(|x| w.get(x))
            .map(|x| {
                json!({
                    "to": x.signed.value.to,
                    "id": x.signed.value.id.to_string(),
                    "delivery": delivery_of(&x.delivery)["state"],
                    "ack": x.ack.as_ref().map(|a| a.value.verdict.as_str()),
                    "deadline_ms": s.deadline_ms(x),
                    "overdue": s.overdue(x, now),
                })
            })
            .collect();
        json!({
            "id": g.id.to_string(),
            "to": g.to,
            "messages": members,
            "acknowledged": members.iter().filter(|x| !x["ack"].is_null()).count(),
        })
    });
    json!({
        "direction": if e.outgoing { "out" } else { "in" },
        "message": MessageWire::from_domain(m),
        "group": group,
        "sender_name": sender,
        "signature": e.signed.signature.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "index": e.index,
        "delivery": delivery,
        "ack": ack,
        "deadline_ms": s.deadline_ms(e),
        "overdue": s.overdue(e, now),
        // Signed by a key declared compromised from then or earlier.
        "suspect": s.suspect(&m.sender, m.created_ms).map(|(from, reason)| json!({
            "compromised_from_ms": from, "reason": reason,
        })),
        // Who of this party it was first shown to, and when (console).
        "seen": s.seen(&m.id).iter().map(|(k, at)| json!({
            "member": k.to_hex(), "name": s.member(k).map(|x| x.member.name.clone()), "at_ms": at,
        })).collect::<Vec<_>>(),
    })
}

/// Who saw what: console logins and logouts, evidence exports, messages
/// first shown to members — newest first.
#[utoipa::path(get, path = "/line/v1/access", tag = "line", summary = "Who saw what: console logins and logouts, evidence exports, messages first shown to a member (newest first)", responses((status = 200, description = "The access records", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn list_access(
    State(st): State<Shared>,
    h: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, MEMBER)?;
    let list = st.line.read(|s| {
        s.access()
            .rev()
            .take(1000)
            .map(|(index, a)| {
                json!({
                    "index": index, "what": a.what, "member": a.member.to_hex(),
                    "name": s.member(&a.member).map(|x| x.member.name.clone()),
                    "subject": a.subject, "at_ms": a.at_ms, "signed_by_member": a.signed.is_some(),
                })
            })
            .collect::<Vec<_>>()
    })?;
    Ok(Json(json!({ "access": list })))
}

#[utoipa::path(get, path = "/line/v1/messages", tag = "line", summary = "Messages with delivery, receipt, acknowledgement and deadline", params(MessagesQuery), responses((status = 200, description = "The messages", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn list_messages(
    State(st): State<Shared>,
    h: HeaderMap,
    Query(q): Query<MessagesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, MEMBER)?;
    let out = match q.direction.as_deref() {
        None => None,
        Some("in") => Some(false),
        Some("out") => Some(true),
        Some(_) => return Err(ApiError::bad("direction", "in or out")),
    };
    let now = st.line.now_ms();
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let (v, overdue) = with_whole(&st, |w| {
        let s = w.s;
        let wanted = |m: &liaison::state::Held<'_>| {
            out.is_none_or(|o| m.outgoing() == o)
                && q.peer.as_ref().is_none_or(|p| s.peer_of(*m) == p)
                && q.after.is_none_or(|a| m.index() > a)
        };
        // Overdue counts every matching message (settled ones are
        // acknowledged); the views are the newest `limit`, oldest first.
        // Both skip the runs of the history that cannot match (settled
        // out of memory, or all at or below `after`): a poll with `after`
        // reads what is new, not every message ever held.
        let overdue = s
            .messages_where(None, true)
            .filter(wanted)
            .filter_map(|m| m.whole())
            .filter(|e| s.overdue(e, now))
            .count();
        let mut v: Vec<Value> = s
            .messages_where(q.after, false)
            .rev()
            .filter(wanted)
            .take(limit)
            .filter_map(|m| w.get(m))
            .map(|e| message_view(w, e, now))
            .collect();
        v.reverse();
        (v, overdue)
    })
    .await?;
    Ok(Json(
        json!({ "now_ms": now, "overdue": overdue, "messages": v }),
    ))
}

#[utoipa::path(get, path = "/line/v1/status", tag = "line", summary = "The line's lanes per peer: sequence numbers, pending records", responses((status = 200, description = "The status", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line"]), ("bearer" = ["detente.line.admin"])))]
async fn status(State(st): State<Shared>, h: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, MEMBER)?;
    let v = st.line.read(|s| {
        s.peers()
            .map(|p| {
                let lanes: Vec<Value> = Precedence::ALL
                    .iter()
                    .map(|l| {
                        let o = s.out_lane(&p.name, *l);
                        let i = s.in_lane(&p.name, *l);
                        json!({
                            "lane": l.as_str(),
                            "sent": o.map(|o| o.last_seq).unwrap_or(0),
                            "receipted": o.map(|o| o.delivered).unwrap_or(0),
                            "pending": o.map(|o| o.pending.len()).unwrap_or(0),
                            "received": i.map(|i| i.received).unwrap_or(0),
                        })
                    })
                    .collect();
                json!({ "peer": p.name, "lanes": lanes })
            })
            .collect::<Vec<_>>()
    })?;
    Ok(Json(json!({ "me": st.log.origin(), "peers": v })))
}

// ---- node to node ----

#[utoipa::path(post, path = "/peer/v1/records", tag = "peer", summary = "A peer delivers its signed records; answered with this node's signed receipts", request_body = RecordsBody, responses((status = 200, description = "The receipts", body = RecordsReply), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody), (status = 413, description = "Too large", body = crate::openapi::ErrorBody), (status = 429, description = "Rate limited; `Retry-After` says when to retry", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
async fn records(
    State(st): State<Shared>,
    ext: axum::http::Extensions,
    Body(b): Body<RecordsBody>,
) -> Result<impl IntoResponse, ApiError> {
    // No bearer token here (the records are signed): limited per claimed
    // peer *and* source address, so that nobody can make this node check
    // signatures without end, nor spend a real peer's allowance by claiming
    // its name. A name that is no peer is refused before anything else is
    // done, charged to its source.
    let source = crate::source_key(&ext);
    if st.line.is_peer(&b.from)? {
        st.limiter.check(&format!("peer:{}@{source}", b.from))?;
    } else {
        st.limiter.check(&format!("not-a-peer@{source}"))?;
    }
    let records = b
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            B64.decode(r)
                .map_err(|_| ApiError::bad(format!("records[{i}]"), "not base64"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = records.len();
    let got = st.line.receive(&b.from, records).await?;
    let stopped = got.stopped.map(|e| {
        tracing::warn!(peer = %b.from, error = %e, taken = got.receipts.len(), of = n, "refused a peer's record");
        crate::error::line_error(&e)
    });
    if got.receipts.is_empty()
        && let Some((status, s)) = stopped
    {
        return Ok((status, Json(json!({ "receipts": [], "stopped": s }))));
    }
    let stopped = stopped.map(|(_, s)| s);
    Ok((
        axum::http::StatusCode::OK,
        Json(json!({
            "receipts": got.receipts.iter().map(|r| B64.encode(r)).collect::<Vec<_>>(),
            "stopped": stopped,
        })),
    ))
}
