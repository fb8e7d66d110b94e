//! The information office: a party's public statements, published as
//! entries of its log (`line.statement`, signed by the node key) and served
//! to anyone as a JSON Feed 1.1 with each entry's bytes and inclusion proof
//! against the newest checkpoint. An answer names the statements it answers
//! by log origin, index and leaf hash. Closing the information channel
//! stops private exchange, never publication.

use crate::Shared;
use crate::error::ApiError;
use crate::extract::Body;
use crate::wire::line::{StatementBody, StatementRefBody};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use node::Scope;
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/line/v1/statements", post(publish))
        .route("/statements/feed.json", get(feed))
}

/// Most items a feed answers at once (newest first).
pub const MAX_ITEMS: usize = 100;

fn refs(answers: &[StatementRefBody]) -> Result<Vec<node::liaison::StatementRef>, ApiError> {
    answers
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let leaf_hash: [u8; 32] = B64
                .decode(&r.leaf_hash)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    ApiError::bad(
                        format!("answers[{i}].leaf_hash"),
                        "a leaf hash is 32 bytes in base64",
                    )
                })?;
            Ok(node::liaison::StatementRef {
                origin: r.origin.clone(),
                index: r.index,
                leaf_hash,
            })
        })
        .collect()
}

/// Publishes a statement of this party. An answer to this party's own
/// entry is checked against its log (the hash must be that entry's); one
/// to another party's names it by the hash its feed shows.
#[utoipa::path(post, path = "/line/v1/statements", tag = "line", summary = "Publish a public statement of this party (the information office), optionally answering earlier statements by hash", request_body = StatementBody, responses((status = 200, description = "Published: its log origin, index and leaf hash", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["detente.line.admin"])))]
async fn publish(
    State(st): State<Shared>,
    h: HeaderMap,
    Body(b): Body<StatementBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.require(&h, &[Scope::LineAdmin])?;
    let answers = refs(&b.answers)?;
    let me = st.log.origin().to_string();
    for (i, r) in answers.iter().enumerate() {
        if r.origin != me {
            continue;
        }
        let leaf = st
            .log
            .entries(r.index, r.index + 1)
            .await
            .ok()
            .and_then(|mut v| v.pop());
        if leaf.as_deref().map(node::tlog::leaf_hash) != Some(r.leaf_hash) {
            return Err(ApiError::bad(
                format!("answers[{i}].leaf_hash"),
                format!("not the hash of this log's entry {}", r.index),
            ));
        }
    }
    let id =
        b.id.as_deref()
            .map(|s| crate::wire::line::uuid(s, "id"))
            .transpose()?;
    let (id, index) = st
        .line
        .publish_statement(id, b.language.clone(), b.text.clone(), answers)
        .await?;
    let leaf = st
        .log
        .entries(index, index + 1)
        .await?
        .pop()
        .ok_or_else(|| ApiError::NotFound(format!("entry {index}")))?;
    tracing::info!(statement = %id, index, "statement published");
    Ok(Json(json!({
        "id": id.to_string(), "origin": me, "index": index,
        "leaf_hash": B64.encode(node::tlog::leaf_hash(&leaf)),
    })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    /// Only statements at log indices below this one (paging back).
    before: Option<u64>,
}

/// The statements as a JSON Feed 1.1, newest first, each with its entry
/// and its inclusion proof against the checkpoint the feed carries.
#[utoipa::path(get, path = "/statements/feed.json", tag = "statements", summary = "This party's public statements as a JSON Feed 1.1, each with its log entry and inclusion proof (public)", params(FeedQuery), responses((status = 200, description = "The feed (application/feed+json)", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)))]
async fn feed(
    State(st): State<Shared>,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("before", format!("a log index: {e}")))?;
    let note = st.log.checkpoint().await?;
    let size = node::tlog::Note::parse(note.as_bytes())
        .ok()
        .and_then(|n| node::tlog::Checkpoint::parse(&n.text).ok())
        .map_or(0, |c| c.size);
    let list: Vec<(u64, node::liaison::Statement)> = st.line.read(|s| {
        s.statements()
            .rev()
            .filter(|(i, _)| q.before.is_none_or(|b| *i < b))
            .take(MAX_ITEMS)
            .cloned()
            .collect()
    })?;
    let me = st.log.origin().to_string();
    let mut items = Vec::with_capacity(list.len());
    for (index, s) in list {
        let leaf = st
            .log
            .entries(index, index + 1)
            .await?
            .pop()
            .unwrap_or_default();
        // Published since the newest checkpoint: its proof comes with the next.
        let proof = if index < size {
            Some(
                st.log
                    .inclusion_proof(index, size)
                    .await?
                    .iter()
                    .map(|h| B64.encode(h))
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        items.push(json!({
            "id": format!("{me}/{index}"),
            "content_text": s.text,
            "language": s.language,
            "date_published": crate::wire::format_time(node::airspace::Timestamp::from_unix_micros(
                (s.at_ms as i64).saturating_mul(1000))).value,
            "_detente": {
                "statement": s.id.to_string(),
                "origin": me,
                "index": index,
                "leaf_hash": B64.encode(node::tlog::leaf_hash(&leaf)),
                "entry": B64.encode(&leaf),
                "answers": s.answers.iter().map(|r| json!({
                    "origin": r.origin, "index": r.index, "leaf_hash": B64.encode(r.leaf_hash),
                })).collect::<Vec<_>>(),
                "proof": proof,
            },
        }));
    }
    let body = json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": format!("{me}: public statements"),
        "feed_url": format!("{}/statements/feed.json", st.uss_base_url),
        "description": "Each statement is an entry of this party's evidence log, signed by its node key, with its inclusion proof against the checkpoint below (detente statement fetch; detente verify).",
        "_detente": { "origin": me, "log_key": st.log.verifier_key(), "checkpoint": note, "size": size },
        "items": items,
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/feed+json")],
        serde_json::to_string(&body).unwrap_or_default(),
    ))
}
