//! The line of contact as the parties agree it: terms from a request, the
//! outline the node buffers from them on the WGS-84 ellipsoid, the id of
//! the constraint that binds an agreed line on this node, and the task that
//! binds it (and unbinds what an agreement replaced).

use crate::Shared;
use crate::error::ApiError;
use crate::wire::line::ContactLineBody;
use node::Scope;
use node::airspace::geometry::{LatLng, buffer_line, geodesic_distance_m};
use node::airspace::{Outline, Timestamp, Volume4D};
use node::liaison::{ContactTerms, Millis};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// The terms a request declares (times in ms; the start defaults to `now`).
pub fn terms_of(b: &ContactLineBody, now: Millis) -> Result<ContactTerms, ApiError> {
    // No line, to a peer: a withdrawal.
    if b.line.is_empty() && b.peer.is_some() {
        return Ok(ContactTerms::withdrawal());
    }
    if b.time_end.is_empty() {
        return Err(ApiError::bad("time_end", "required: until when (RFC 3339)"));
    }
    let instant = |s: &str, field: &str| -> Result<Millis, ApiError> {
        let t = crate::export::parse_instant(s, field)?;
        u64::try_from(t.unix_micros() / 1000)
            .map_err(|_| ApiError::bad(field, "after 1970-01-01T00:00:00Z"))
    };
    let terms = ContactTerms {
        line: b.line.iter().map(|[a, b]| (*a, *b)).collect(),
        buffer_m: b.buffer_m,
        altitude_lower_m: b.altitude_lower_m.unwrap_or(0.0),
        altitude_upper_m: b.altitude_upper_m.unwrap_or(20_000.0),
        time_start_ms: match &b.time_start {
            Some(s) => instant(s, "time_start")?,
            None => now,
        },
        time_end_ms: instant(&b.time_end, "time_end")?,
    };
    if terms.line.is_empty() {
        return Err(ApiError::bad("line", "2 to 10,000 points"));
    }
    terms
        .check()
        .map_err(|(field, message)| ApiError::bad(field, message))?;
    Ok(terms)
}

/// The buffered outline of a line of contact: refused (naming the point)
/// if the line turns back on itself within the buffer.
pub fn outline(t: &ContactTerms) -> Result<Vec<LatLng>, ApiError> {
    let line: Vec<LatLng> = t
        .line
        .iter()
        .map(|(lat, lng)| LatLng {
            lat: *lat,
            lng: *lng,
        })
        .collect();
    let length: f64 = line
        .windows(2)
        .map(|w| geodesic_distance_m(w[0], w[1]))
        .sum();
    // About 4,000 vertices along the sides at most, a kilometre apart at least.
    let step = (length / 2_000.0).max(1_000.0);
    buffer_line(&line, t.buffer_m, step).map_err(|e| ApiError::bad(e.field, e.message))
}

/// The constraint's 4D volume for the terms and their outline.
pub fn volume(t: &ContactTerms, outline: Vec<LatLng>) -> Volume4D {
    let at = |ms: Millis| Timestamp::from_unix_micros((ms as i64).saturating_mul(1000));
    Volume4D {
        outline: Outline::Polygon { vertices: outline },
        altitude_lower_m: Some(t.altitude_lower_m),
        altitude_upper_m: Some(t.altitude_upper_m),
        time_start: Some(at(t.time_start_ms)),
        time_end: Some(at(t.time_end_ms)),
    }
}

/// The id of the constraint by which this node (`me`) binds the line agreed
/// with `peer` on these terms: derived from them, so each node's constraint
/// is its own (their ids differ) and binding again finds it.
pub fn constraint_id(me: &str, peer: &str, t: &ContactTerms) -> Uuid {
    let mut src = format!("detente line of contact v1\n{me}\n{peer}\n").into_bytes();
    src.extend_from_slice(&t.digest());
    let d = node::tlog::hash::sha256(&src);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

fn terms_json(t: &ContactTerms) -> Value {
    json!({
        "line": t.line.iter().map(|(a, b)| [*a, *b]).collect::<Vec<_>>(),
        "buffer_m": t.buffer_m,
        "altitude_lower_m": t.altitude_lower_m,
        "altitude_upper_m": t.altitude_upper_m,
        "time_start_ms": t.time_start_ms,
        "time_end_ms": t.time_end_ms,
    })
}

/// The line of contact with `peer` as the API shows it: its status, both
/// parties' latest proposals, and the agreed line with the constraint that
/// binds it here.
pub fn agreement_json(s: &node::liaison::LineState, me: &str, peer: &str) -> Value {
    let a = s.contact_line(peer);
    let mut v = crate::line::agreement_json(a, terms_json);
    if let Some((terms, _)) = a.and_then(|a| a.agreed.as_ref()) {
        let id = constraint_id(me, peer, terms);
        v["agreed"] = terms_json(terms);
        v["constraint"] = json!(id.to_string());
        v["bound"] = json!(s.contact_constraints().any(|c| *c == id));
    }
    v
}

/// The node itself, managing the constraints of the lines it binds.
fn node_caller(st: &Shared) -> node::Caller {
    node::Caller {
        sub: st.log.origin().to_string(),
        scopes: vec![Scope::ConstraintManagement],
    }
}

/// Binds every agreed line of contact (on the leader): the node declares
/// the buffered outline as its own constraint and designates it as the
/// line of contact; the constraints of lines an agreement replaced or that
/// were withdrawn are removed.
pub fn spawn_binding(st: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            if st.log.is_leader()
                && let Err(e) = bind_once(&st).await
            {
                tracing::warn!(error = %e, "binding an agreed line of contact failed; retrying");
            }
        }
    })
}

async fn bind_once(st: &Shared) -> Result<(), String> {
    let me = st.log.origin().to_string();
    let work = st
        .line
        .read(|s| {
            s.contact_lines()
                .map(|(peer, a)| {
                    (
                        peer.clone(),
                        a.agreed.as_ref().map(|(t, _)| t.clone()),
                        a.history.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .map_err(|e| e.to_string())?;
    let caller = node_caller(st);
    let now = st.line.now_ms();
    for (peer, current, history) in work {
        let current_id = current.as_ref().map(|t| constraint_id(&me, &peer, t));
        for t in &history {
            let id = constraint_id(&me, &peer, t);
            if Some(id) == current_id {
                continue;
            }
            if let Ok(c) = st.dss.get_constraint(id).await {
                st.dss
                    .delete_constraint(&caller, id, c.ovn)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(%peer, constraint = %id, "a line of contact no longer agreed: its constraint removed");
            }
        }
        let (Some(t), Some(id)) = (current, current_id) else {
            continue;
        };
        if t.time_end_ms <= now {
            continue;
        }
        if st.dss.get_constraint(id).await.is_err() {
            let outline = outline(&t).map_err(|e| format!("{e:?}"))?;
            let vertices = outline.len();
            st.dss
                .put_constraint(
                    &caller,
                    id,
                    None,
                    vec![volume(&t, outline)],
                    st.uss_base_url.clone(),
                )
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(%peer, constraint = %id, vertices, "the line of contact agreed with the peer is bound");
        }
        let designated = st
            .line
            .read(|s| s.contact_constraints().any(|c| *c == id))
            .map_err(|e| e.to_string())?;
        if !designated {
            st.line
                .designate_contact(id)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
