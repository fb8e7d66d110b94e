//! The public evidence-log endpoints (no authentication: the log is meant to
//! be checked by anyone). Formats: the checkpoint is the C2SP signed note,
//! byte for byte (`text/plain`); hashes and entries are standard base64 in
//! JSON.

use crate::Shared;
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/log/checkpoint", get(checkpoint))
        .route("/log/key", get(key))
        .route("/log/entries", get(entries))
        .route("/log/proof/inclusion", get(inclusion))
        .route("/log/proof/consistency", get(consistency))
        .route(
            "/witness/add-checkpoint",
            axum::routing::post(add_checkpoint),
        )
        .route("/witness/key", get(witness_key))
        .route("/witness/misbehaviour", get(misbehaviour))
}

/// Every pair of signed checkpoints this witness saw that cannot both be
/// true: each is a transferable proof against the log that signed them.
async fn misbehaviour(State(st): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    let list = st.witness.misbehaviour().await?;
    Ok(Json(json!({
        "misbehaviour": list.iter().map(|(origin, a, b, ms)| json!({ "origin": origin, "found_ms": ms, "checkpoint_a": a, "checkpoint_b": b })).collect::<Vec<_>>()
    })))
}

async fn witness_key(State(st): State<Shared>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", st.witness.verifier_key()),
    )
}

/// C2SP tlog-witness v1.0.0 `add-checkpoint`: the statuses and bodies the
/// spec prescribes (409 carries the latest cosigned size as
/// `text/x.tlog.size`).
async fn add_checkpoint(
    State(st): State<Shared>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    use node::WitnessOutcome;
    use node::tlog::witness::Refusal;
    let outcome = st.witness.add_checkpoint(&body).await?;
    let refusal = match outcome {
        WitnessOutcome::Cosigned(lines) => {
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                lines,
            )
                .into_response());
        }
        WitnessOutcome::Refused(r) => r,
        WitnessOutcome::Misbehaviour { origin, refusal } => {
            tracing::error!(%origin, "ALERT: this log signed two checkpoints that cannot both be true; both are kept as evidence");
            refusal
        }
    };
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    Ok(match &refusal {
        Refusal::Conflict { size, .. } => (
            status,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        )
            .into_response(),
        other => (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{other}\n"),
        )
            .into_response(),
    })
}

async fn checkpoint(State(st): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    let note = st.log.checkpoint().await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        note,
    ))
}

async fn key(State(st): State<Shared>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", st.log.verifier_key()),
    )
}

#[derive(Deserialize)]
struct Range {
    start: u64,
    end: u64,
}

async fn entries(
    State(st): State<Shared>,
    q: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(r) = q.map_err(|e| {
        ApiError::bad(
            "start",
            format!("start and end are required non-negative integers: {e}"),
        )
    })?;
    let list = st.log.entries(r.start, r.end).await?;
    Ok(Json(
        json!({ "start": r.start, "entries": list.iter().map(|e| B64.encode(e)).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

async fn inclusion(
    State(st): State<Shared>,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad(
            "index",
            format!("index and size are required non-negative integers: {e}"),
        )
    })?;
    let proof = st.log.inclusion_proof(q.index, q.size).await?;
    Ok(Json(
        json!({ "index": q.index, "size": q.size, "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    first: u64,
    second: u64,
}

async fn consistency(
    State(st): State<Shared>,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad(
            "first",
            format!("first and second are required non-negative integers: {e}"),
        )
    })?;
    let proof = st.log.consistency_proof(q.first, q.second).await?;
    Ok(Json(
        json!({ "first": q.first, "second": q.second, "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>() }),
    ))
}
