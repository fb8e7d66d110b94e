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
        .route(
            "/detente/v1/openapi.json",
            get(crate::openapi::openapi_json),
        )
}

#[utoipa::path(get, path = "/healthz", tag = "node", summary = "Liveness: counts, log and checkpoint sizes, leadership, witnesses, the version", responses((status = 200, description = "The node answers", body = serde_json::Value), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
async fn healthz(State(st): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    let c = st.dss.counts()?;
    let now_s = st.line.now_ms() / 1000;
    let witnesses: Vec<_> = st
        .metrics
        .witnesses
        .last()
        .into_iter()
        .map(|(name, size, at)| {
            json!({ "name": name, "cosigned_size": size, "cosigned_at": at,
                    "age_s": (now_s as i64).saturating_sub(at).max(0) })
        })
        .collect();
    Ok(Json(
        json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION"),
                "operational_intents": c.intents, "constraints": c.constraints, "conflicts": c.conflicts,
                "log_size": st.log.size(), "checkpoint_size": st.log.checkpoint_size(),
                "leader": st.log.is_leader(), "witnesses": witnesses,
                "witnessed": st.log.witnessed().map(|w| json!({
                    "latest_size": w.latest_size, "latest": w.latest, "size": w.size,
                    "cosigned_by": w.cosigned_by })) }),
    ))
}

#[utoipa::path(get, path = "/metrics", tag = "node", summary = "Prometheus text exposition (format 0.0.4)", responses((status = 200, description = "The metrics (text/plain)", body = String), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody)))]
async fn metrics(
    State(st): State<Shared>,
    h: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if st.metrics.private {
        st.require(&h, &[node::Scope::Metrics])?;
    }
    let _one_at_a_time = st.metrics.scraping.lock().await;
    let s = &st.metrics.scraped;
    // While the store is unavailable the counts are unknown (the node
    // refuses to answer from its in-memory state); the rest still renders,
    // so that monitoring sees the outage.
    let available = st.dss.store_available();
    let counts = [
        &s.intents,
        &s.constraints,
        &s.subscriptions,
        &s.conflicts,
        &s.reports,
    ];
    match st.dss.counts() {
        Ok(c) => {
            for (f, v) in counts.into_iter().zip([
                c.intents,
                c.constraints,
                c.subscriptions,
                c.conflicts,
                c.reports,
            ]) {
                f.get_or_create(&crate::metrics::Unlabelled)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        }
        Err(node::NodeError::Store(e)) if e.is_unavailable() => {
            for f in counts {
                f.clear();
            }
        }
        Err(e) => return Err(e.into()),
    }
    s.store_available.set(i64::from(available));
    s.leader.set(i64::from(st.log.is_leader()));
    s.log_size
        .set(i64::try_from(st.log.size()).unwrap_or(i64::MAX));
    s.checkpoint_size
        .set(i64::try_from(st.log.checkpoint_size()).unwrap_or(i64::MAX));
    if let Some(w) = st.log.witnessed() {
        s.witnessed_size
            .get_or_create(&crate::metrics::Unlabelled)
            .set(i64::try_from(w.size).unwrap_or(i64::MAX));
    }
    // The line, as this process's state has it (peers removed since the
    // last scrape drop out).
    let now = st.line.now_ms();
    s.outbox.clear();
    s.oldest_undelivered.clear();
    s.overdue_acks.clear();
    s.awaiting_acks.clear();
    if let Ok(health) = st.line.health(now) {
        for (peer, lane, n, first) in health.lanes {
            let l = crate::metrics::PeerLane {
                peer,
                lane: lane.as_str(),
            };
            s.outbox
                .get_or_create(&l)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            let age = match first {
                Some(i) => st
                    .log
                    .entry_time_ms(i)
                    .await
                    .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
                None => 0.0,
            };
            s.oldest_undelivered.get_or_create(&l).set(age);
        }
        for (held, n) in [("whole", health.messages.0), ("settled", health.messages.1)] {
            s.messages
                .get_or_create(&crate::metrics::HeldAs { held })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (peer, awaiting, overdue) in health.acks {
            let p = crate::metrics::Peer { peer };
            s.awaiting_acks
                .get_or_create(&p)
                .set(i64::try_from(awaiting).unwrap_or(i64::MAX));
            s.overdue_acks
                .get_or_create(&p)
                .set(i64::try_from(overdue).unwrap_or(i64::MAX));
        }
    }
    let body = st.metrics.render();
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        body,
    ))
}

/// Current conflicts (both parties see the same list; ids and managers only,
/// never OVNs).
#[utoipa::path(get, path = "/detente/v1/conflicts", tag = "airspace", summary = "Current conflicts (ids and managers, never OVNs)", responses((status = 200, description = "The conflicts", body = serde_json::Value), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["utm.strategic_coordination"]), ("bearer" = ["utm.conformance_monitoring_sa"]), ("bearer" = ["utm.constraint_processing"])))]
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
