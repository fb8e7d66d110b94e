//! Detente's endpoints beyond F3548: health, metrics and the conflicts list.

use crate::Shared;
use crate::error::ApiError;
use crate::wire;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use node::Scope;
use serde_json::json;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/detente/v1/conflicts", get(conflicts))
}

async fn healthz(State(st): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    let c = st.dss.counts()?;
    Ok(Json(
        json!({ "status": "ok", "operational_intents": c.intents, "constraints": c.constraints, "conflicts": c.conflicts,
                "log_size": st.log.size(), "leader": st.log.is_leader() }),
    ))
}

async fn metrics(
    State(st): State<Shared>,
    h: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if st.metrics.private {
        st.require(&h, &[node::Scope::Metrics])?;
    }
    // While the store is unavailable the counts are unknown (the node
    // refuses to answer from its in-memory state); the rest still renders,
    // so that monitoring sees the outage.
    let available = st.dss.store_available();
    let mut gauges = Vec::new();
    match st.dss.counts() {
        Ok(c) => gauges.extend([
            (
                "detente_live_operational_intents",
                "Operational intent references held.",
                c.intents as f64,
            ),
            (
                "detente_live_constraints",
                "Constraint references held.",
                c.constraints as f64,
            ),
            (
                "detente_live_subscriptions",
                "Subscriptions held.",
                c.subscriptions as f64,
            ),
            (
                "detente_conflicts",
                "Current conflicts between intents of different managers or with constraints.",
                c.conflicts as f64,
            ),
            (
                "detente_reports_total",
                "DSS reports archived.",
                c.reports as f64,
            ),
        ]),
        Err(node::NodeError::Store(e)) if e.is_unavailable() => {}
        Err(e) => return Err(e.into()),
    }
    gauges.extend([
        (
            "detente_store_available",
            "1 if the store answers; 0 while it cannot reach its database and refuses requests with 503.",
            f64::from(u8::from(available)),
        ),
        (
            "detente_log_size",
            "Committed entries of the evidence log, as this process sees them.",
            st.log.size() as f64,
        ),
        (
            "detente_leader",
            "1 if this process runs the node's singleton duties (of several replicas, exactly one).",
            f64::from(u8::from(st.log.is_leader())),
        ),
    ]);
    let body = st.metrics.render(&gauges);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    ))
}

/// Current conflicts (both parties see the same list; ids and managers only,
/// never OVNs).
async fn conflicts(
    State(st): State<Shared>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    st.require(
        &headers,
        &[
            Scope::StrategicCoordination,
            Scope::ConformanceMonitoringSa,
            Scope::ConstraintProcessing,
        ],
    )?;
    let list: Vec<_> = st
        .dss
        .conflicts()
        .await?
        .iter()
        .map(wire::conflict)
        .collect();
    Ok(Json(json!({ "conflicts": list })))
}
