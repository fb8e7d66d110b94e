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
        .route("/log/tile/{*path}", get(tile))
        .route(
            "/witness/add-checkpoint",
            axum::routing::post(add_checkpoint),
        )
        .route("/witness/key", get(witness_key))
        .route("/witness/misbehaviour", get(misbehaviour))
}

/// Every pair of signed checkpoints this witness saw that cannot both be
/// true: each is a transferable proof against the log that signed them.
#[utoipa::path(get, path = "/witness/misbehaviour", tag = "witness", summary = "Pairs of checkpoints a witnessed log signed that cannot both be true", responses((status = 200, description = "The pairs", body = serde_json::Value), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
async fn misbehaviour(State(st): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    let list = st.witness.misbehaviour().await?;
    Ok(Json(json!({
        "misbehaviour": list.iter().map(|(origin, a, b, ms)| json!({ "origin": origin, "found_ms": ms, "checkpoint_a": a, "checkpoint_b": b })).collect::<Vec<_>>()
    })))
}

#[utoipa::path(get, path = "/witness/key", tag = "witness", summary = "This node's witness key (cosignature/v1 vkey)", responses((status = 200, description = "The key (text/plain)", body = String)))]
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
#[utoipa::path(post, path = "/witness/add-checkpoint", tag = "witness", summary = "C2SP tlog-witness add-checkpoint (old size, consistency proof, checkpoint)", request_body(content = String, content_type = "text/plain"), responses((status = 200, description = "The cosignature lines (text/plain)", body = String), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 409, description = "Refused by the line's state; `code` says why", body = crate::openapi::ErrorBody)))]
pub(crate) async fn add_checkpoint(
    State(st): State<Shared>,
    crate::extract::RawBody(body): crate::extract::RawBody,
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

#[utoipa::path(get, path = "/log/checkpoint", tag = "log", summary = "The newest checkpoint (C2SP tlog-checkpoint as a signed note, with cosignatures)", responses((status = 200, description = "The signed checkpoint (text/plain)", body = String), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
async fn checkpoint(State(st): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    let note = st.log.checkpoint().await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        note,
    ))
}

#[utoipa::path(get, path = "/log/key", tag = "log", summary = "The log's verifier key (C2SP vkey)", responses((status = 200, description = "The key (text/plain)", body = String)))]
async fn key(State(st): State<Shared>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", st.log.verifier_key()),
    )
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Range {
    /// The first index.
    start: u64,
    /// One past the last index (at most 1000 after start).
    end: u64,
}

#[utoipa::path(get, path = "/log/entries", tag = "log", summary = "Log entries [start, end), base64", params(crate::evidence::Range), responses((status = 200, description = "The entries", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
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

/// The log as C2SP `tlog-tiles` resources under `/log/`: `tile/<L>/<N>`
/// (hashes) and `tile/entries/<N>` (entry bundles), `.p/<W>` for partial
/// ones; immutable, so cacheable for long.
#[utoipa::path(get, path = "/log/tile/{path}", operation_id = "log_tile", tag = "log", summary = "C2SP tlog-tiles: hash tiles and entry bundles", params(("path" = String, Path, description = "tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]")), responses((status = 200, description = "The tile (application/octet-stream)", body = String), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 404, description = "No such peer, member, mission, accreditation or entity", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
async fn tile(
    State(st): State<Shared>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (level, index, width) = node::tlog::tiles::parse_tile_path(&path).ok_or_else(|| {
        ApiError::bad(
            "path",
            "expected tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>] (C2SP tlog-tiles)",
        )
    })?;
    let body = match level {
        Some(l) => st.log.tile(l, index, width).await?,
        None => st.log.entry_bundle(index, width).await?,
    };
    let body = body.ok_or_else(|| {
        ApiError::from(node::NodeError::Domain(
            node::airspace::DomainError::NotFound {
                kind: "tile",
                id: format!("tile/{path} (the log does not hold it yet)"),
            },
        ))
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionQuery {
    /// The entry's index (or give `hash`).
    index: Option<u64>,
    /// The entry's RFC 6962 leaf hash, base64 (instead of `index`).
    hash: Option<String>,
    size: u64,
}

#[utoipa::path(get, path = "/log/proof/inclusion", tag = "log", summary = "An RFC 9162 inclusion proof, by index or leaf hash", params(crate::evidence::InclusionQuery), responses((status = 200, description = "The proof", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
async fn inclusion(
    State(st): State<Shared>,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad(
            "index",
            format!("size (and index) must be non-negative integers: {e}"),
        )
    })?;
    let (index, proof) = match (q.index, &q.hash) {
        (Some(index), None) => (index, st.log.inclusion_proof(index, q.size).await?),
        (None, Some(hash)) => {
            let leaf: node::tlog::Hash = B64
                .decode(hash)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| ApiError::bad("hash", "a leaf hash is 32 bytes in base64"))?;
            st.log.inclusion_proof_by_hash(leaf, q.size).await?
        }
        _ => {
            return Err(ApiError::bad(
                "index",
                "give either index or hash (an entry's leaf hash), not both",
            ));
        }
    };
    Ok(Json(
        json!({ "index": index, "size": q.size, "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyQuery {
    /// The smaller tree size.
    first: u64,
    /// The larger tree size.
    second: u64,
}

#[utoipa::path(get, path = "/log/proof/consistency", tag = "log", summary = "An RFC 9162 consistency proof between two sizes", params(crate::evidence::ConsistencyQuery), responses((status = 200, description = "The proof", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
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
