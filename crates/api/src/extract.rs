//! Request body extraction that names the field at fault.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A JSON body; a malformed one is a 400 naming the path of the bad field,
/// an oversized one a 413.
pub struct Body<T>(pub T);

/// `missing field `x`` at path `a.b` → field `a.b.x`.
fn field_of(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(name) = rest.split('`').next()
    {
        return if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
    }
    path.to_string()
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let field = field_of(&path, &message);
        ApiError::bad(field, format!("malformed request body: {message}"))
    })
}

/// How long a request body may take to arrive, once its handler reads it.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn too_large() -> ApiError {
    ApiError::TooLarge {
        field: "Content-Length".into(),
        message: format!(
            "the request body is larger than {} bytes",
            crate::MAX_BODY_BYTES
        ),
    }
}

/// The whole body: 413 past [`crate::MAX_BODY_BYTES`], 408 if it has not
/// arrived within [`BODY_TIMEOUT`] (a client sending a byte now and then
/// holds nothing for long).
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, state)).await {
        Err(_) => Err(ApiError::Timeout(format!(
            "the request body did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        ))),
        Ok(Err(r)) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
        Ok(Err(r)) => Err(ApiError::bad("", format!("unreadable request body: {r}"))),
        Ok(Ok(b)) => Ok(b),
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        Ok(Body(parse(&bytes)?))
    }
}

/// A body taken as it is (within the same size and time limits as [`Body`]).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(RawBody(read_body(req, state).await?))
    }
}

/// A body declared larger than this is refused unread. One declared
/// between [`crate::MAX_BODY_BYTES`] and this is read up to the limit and
/// then refused (413 all the same): a client that sends its whole body
/// before reading the answer — most do — still gets the 413 rather than a
/// broken pipe, and what it costs the node stays bounded.
pub const REFUSE_UNREAD_ABOVE: u64 = 4 * crate::MAX_BODY_BYTES as u64;

/// Middleware: a request that declares a body larger than
/// [`REFUSE_UNREAD_ABOVE`] is answered 413 at once, before anything of it
/// is read or waited for.
pub async fn refuse_declared_oversize(
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > REFUSE_UNREAD_ABOVE) {
        return too_large().into_response();
    }
    next.run(req).await
}
