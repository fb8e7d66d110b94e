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

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge {
                    field: String::new(),
                    message: format!(
                        "the request body is larger than {} bytes",
                        crate::MAX_BODY_BYTES
                    ),
                }
            } else {
                ApiError::bad("", format!("unreadable request body: {r}"))
            }
        })?;
        Ok(Body(parse(&bytes)?))
    }
}
