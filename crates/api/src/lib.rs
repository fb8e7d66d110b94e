//! Everything HTTP: the ASTM F3548-21 DSS API under `/dss/v1`, Detente's own
//! endpoints under `/detente/v1`, `/healthz` and `/metrics`; the JSON wire
//! types, bearer-JWT authentication, and the one mapping from errors to
//! status codes and machine-readable bodies.
//!
//! Handlers only parse, authenticate and call a `node` use case. Wire types
//! live here and nowhere else; domain types are not the JSON schema.

pub mod auth;
mod dss;
mod error;
mod extract;
mod metrics;
mod own;
pub mod wire;

pub use auth::{AuthConfig, Authenticator, KeySource};
pub use error::ApiError;
pub use metrics::Metrics;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use node::Dss;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest request body accepted (a 10,000-vertex polygon is about 0.5 MB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every handler shares.
pub struct AppState {
    pub dss: Dss,
    pub auth: Authenticator,
    pub metrics: Metrics,
}

pub type Shared = Arc<AppState>;

/// The node's whole HTTP surface.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(dss::routes())
        .merge(own::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
