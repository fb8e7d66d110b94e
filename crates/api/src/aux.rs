//! The DSS auxiliary interface that InterUSS pool tooling calls
//! (`/aux/v1`): the build's version, and a check of a bearer token as the
//! DSS endpoints would make it. Nothing here reads or changes the airspace.

use crate::Shared;
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use node::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

/// The scopes `/aux/v1/validate_oauth` accepts: the reference DSS asks for
/// remote ID's ISA scopes; a strategic-coordination client holds only F3548
/// ones, so those count too.
const VALIDATE: &[Scope] = &[
    Scope::IsaRead,
    Scope::IsaWrite,
    Scope::StrategicCoordination,
    Scope::ConstraintManagement,
    Scope::ConstraintProcessing,
    Scope::ConformanceMonitoringSa,
    Scope::AvailabilityArbitration,
];

/// The version string: the crate's version and the commit it was built
/// from (`unknown` when built outside a git checkout).
pub fn version() -> String {
    format!(
        "detente-{}+{}",
        env!("CARGO_PKG_VERSION"),
        option_env!("DETENTE_BUILD_COMMIT").unwrap_or("unknown")
    )
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/aux/v1/version", get(get_version))
        .route("/aux/v1/validate_oauth", get(validate_oauth))
}

/// Open to anyone, like `/healthz`: the reference DSS asks no scope for it.
async fn get_version() -> Json<Value> {
    Json(json!({ "version": { "as_string": version() } }))
}

#[derive(Debug, Deserialize)]
struct ValidateParams {
    owner: Option<String>,
}

/// 200 when the token is one this node accepts for a DSS call (signature,
/// audience, expiry, a scope) and, if `owner` is given, names that client;
/// otherwise 401 or 403 with the reason.
async fn validate_oauth(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ValidateParams>,
) -> Result<Json<Value>, ApiError> {
    let caller = st.require(&headers, VALIDATE)?;
    if let Some(owner) = q.owner.filter(|o| !o.is_empty())
        && owner != caller.sub
    {
        return Err(ApiError::Forbidden(format!(
            "owner mismatch: the token is for {:?}, not {owner:?}",
            caller.sub
        )));
    }
    Ok(Json(json!({
        "owner": caller.sub,
        "scopes": caller.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    })))
}
