//! The F3548 USS interface for the peers' operations and constraints this
//! node holds as copies. Between rival parties the managing USS of a
//! peer's operation is out of reach or unwilling; to this node's own
//! clients, this node is its managing USS: it answers the details and the
//! reference, with the OVN it minted for the copy's current version
//! (`node::share::with_local_ovn`) — the OVN its key check takes. The
//! node also serves the constraints it manages itself (the line of contact
//! declared with `/line/v1/contact-line`). Anything else is answered 404,
//! naming where its manager serves it.

use crate::Shared;
use crate::error::ApiError;
use crate::wire::{self, View};
use airspace::{
    Constraint, OperationalIntent, OperationalIntentState, PreparedVolume, UssAvailabilityState,
};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use node::Scope;
use serde_json::{Value, json};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/uss/v1/operational_intents/{entityid}",
            get(intent_details),
        )
        .route("/uss/v1/constraints/{entityid}", get(constraint_details))
}

/// The scopes F3548 names for these endpoints.
const INTENT_DETAILS: &[Scope] = &[Scope::StrategicCoordination];
const CONSTRAINT_DETAILS: &[Scope] = &[Scope::ConstraintProcessing];

fn volumes(v: &[PreparedVolume]) -> Vec<Value> {
    v.iter().map(|p| wire::volume_out(&p.volume)).collect()
}

fn availability(st: &Shared, manager: &str) -> UssAvailabilityState {
    st.dss
        .get_availability(manager)
        .map(|a| a.availability)
        .unwrap_or(UssAvailabilityState::Unknown)
}

fn not_held_here(kind: &str, id: &str, manager: &str, at: &str) -> ApiError {
    ApiError::NotFound(format!(
        "{kind} {id} is managed by {manager}, not held here as a peer's copy: its details are at its manager's USS, {at}"
    ))
}

/// F3548 `OperationalIntent` (reference and details) of a copy, its OVN
/// shown, its `uss_base_url` this node's (`copies_at`).
pub fn intent_json(i: &OperationalIntent, copies_at: &str, a: UssAvailabilityState) -> Value {
    let view = View {
        viewer: &i.manager,
        copies_at,
    };
    let (nominal, off_nominal) = match i.state {
        OperationalIntentState::Accepted | OperationalIntentState::Activated => {
            (volumes(&i.extents), vec![])
        }
        OperationalIntentState::Nonconforming => (volumes(&i.extents), volumes(&i.extents)),
        OperationalIntentState::Contingent => (vec![], volumes(&i.extents)),
    };
    json!({
        "reference": wire::intent(i, &view, a),
        "details": { "volumes": nominal, "off_nominal_volumes": off_nominal, "priority": 0 },
    })
}

/// F3548 `Constraint` (reference and details) of a copy, as
/// [`intent_json`].
pub fn constraint_json(c: &Constraint, copies_at: &str, a: UssAvailabilityState) -> Value {
    let view = View {
        viewer: &c.manager,
        copies_at,
    };
    json!({
        "reference": wire::constraint(c, &view, a),
        "details": { "volumes": volumes(&c.extents) },
    })
}

async fn intent_details(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&headers, INTENT_DETAILS)?;
    let id = wire::entity_id(&id, "entityid")?;
    let i = st.dss.get_intent(id).await?;
    if !node::share::is_peer_copy(&i.manager) {
        return Err(not_held_here(
            "operational intent",
            &id.to_string(),
            &i.manager,
            &i.uss_base_url,
        ));
    }
    // The managing USS shows the OVN: the view is the manager's.
    let a = availability(&st, &i.manager);
    Ok(Json(
        json!({ "operational_intent": intent_json(&i, &st.uss_base_url, a) }),
    ))
}

async fn constraint_details(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&headers, CONSTRAINT_DETAILS)?;
    let id = wire::entity_id(&id, "entityid")?;
    let c = st.dss.get_constraint(id).await?;
    // A peer's copy, or the node's own (its line of contact).
    if !node::share::is_peer_copy(&c.manager) && c.manager != st.log.origin() {
        return Err(not_held_here(
            "constraint",
            &id.to_string(),
            &c.manager,
            &c.uss_base_url,
        ));
    }
    let a = availability(&st, &c.manager);
    Ok(Json(
        json!({ "constraint": constraint_json(&c, &st.uss_base_url, a) }),
    ))
}
