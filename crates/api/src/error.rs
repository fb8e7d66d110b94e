//! The one mapping from errors to HTTP: status plus a machine-readable body.
//! F3548 endpoints answer with the spec's `ErrorResponse` (`message`), to
//! which Detente adds `code` and, where one field is at fault, `field`
//! (unknown fields are ignored by F3548 clients). A key-check refusal answers
//! with `AirspaceConflictResponse`. A 500 says nothing internal; the detail
//! goes to the log.

use crate::wire;
use airspace::DomainError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use liaison::LineError;
use node::{NodeError, StoreError};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    /// 401: no usable bearer token.
    Unauthenticated(String),
    /// 403: authenticated, not allowed.
    Forbidden(String),
    /// 400 naming the field.
    BadRequest {
        field: String,
        message: String,
    },
    /// 413.
    TooLarge {
        field: String,
        message: String,
    },
    /// 404 with its reason.
    NotFound(String),
    /// 408: the request did not arrive in time.
    Timeout(String),
    /// 429, with the seconds to wait.
    TooManyRequests {
        retry_after_s: u64,
    },
    Node(NodeError),
    /// The key check failed: 409 `AirspaceConflictResponse`, already rendered
    /// for the caller (OVNs shown only to their manager).
    KeyCheck(serde_json::Value),
}

impl ApiError {
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, its field named inside an enclosing one (`prefix`
    /// ends with the separator: `messages[1].`).
    pub fn prefixed(self, prefix: &str) -> Self {
        match self {
            ApiError::BadRequest { field, message } => ApiError::BadRequest {
                field: format!("{prefix}{field}"),
                message,
            },
            other => other,
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        ApiError::Node(e)
    }
}

fn body(status: StatusCode, code: &str, message: String, field: Option<String>) -> Response {
    let mut b = json!({ "message": message, "code": code });
    if let Some(f) = field.filter(|f| !f.is_empty()) {
        b["field"] = json!(f);
    }
    (status, Json(b)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use StatusCode as S;
        match self {
            ApiError::Unauthenticated(m) => body(S::UNAUTHORIZED, "unauthenticated", m, None),
            ApiError::Forbidden(m) => body(S::FORBIDDEN, "forbidden", m, None),
            ApiError::BadRequest { field, message } => {
                body(S::BAD_REQUEST, "invalid_input", message, Some(field))
            }
            ApiError::TooLarge { field, message } => {
                body(S::PAYLOAD_TOO_LARGE, "too_large", message, Some(field))
            }
            ApiError::NotFound(m) => body(S::NOT_FOUND, "not_found", m, None),
            ApiError::Timeout(m) => body(S::REQUEST_TIMEOUT, "timeout", m, Some("body".into())),
            ApiError::KeyCheck(v) => (S::CONFLICT, Json(v)).into_response(),
            ApiError::TooManyRequests { retry_after_s } => {
                let mut r = body(
                    S::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many requests from this client; retry in {retry_after_s} s"),
                    None,
                );
                if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_s.to_string()) {
                    r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
                }
                r
            }
            ApiError::Node(NodeError::Forbidden(m)) => body(S::FORBIDDEN, "forbidden", m, None),
            ApiError::Node(NodeError::Line(e)) => {
                let (status, b) = line_error(&e);
                (status, Json(b)).into_response()
            }
            ApiError::Node(NodeError::Store(e)) if e.is_unavailable() => {
                tracing::warn!(error = %e, "store unavailable, answered with 503");
                let mut r = body(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the node cannot reach its database; nothing was changed, retry shortly".into(),
                    None,
                );
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
                r
            }
            ApiError::Node(NodeError::Store(StoreError::OutcomeUnknown(m))) => {
                tracing::warn!(error = %m, "a write of unknown outcome, answered with 503");
                let mut r = body(
                    S::SERVICE_UNAVAILABLE,
                    "outcome_unknown",
                    "the node lost its database while committing this write: it may or may not have taken effect; read it back once the node answers again before retrying"
                        .into(),
                    None,
                );
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
                r
            }
            ApiError::Node(NodeError::Store(e)) => {
                tracing::error!(error = %e, "storage failure answered with 500");
                body(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the node could not store or read this; nothing was changed".into(),
                    None,
                )
            }
            ApiError::Node(NodeError::Domain(d)) => {
                let m = d.to_string();
                match d {
                    DomainError::InvalidInput { field, message } => {
                        body(S::BAD_REQUEST, "invalid_input", message, Some(field))
                    }
                    DomainError::Geometry(g) if g.too_large => body(
                        S::PAYLOAD_TOO_LARGE,
                        "area_too_large",
                        g.message,
                        Some(g.field),
                    ),
                    DomainError::Geometry(g) => {
                        body(S::BAD_REQUEST, "invalid_geometry", g.message, Some(g.field))
                    }
                    DomainError::QuotaExceeded { field, message } => {
                        body(S::TOO_MANY_REQUESTS, "quota_exceeded", message, Some(field))
                    }
                    DomainError::TooLarge { field, message } => {
                        body(S::PAYLOAD_TOO_LARGE, "too_large", message, Some(field))
                    }
                    DomainError::NotFound { .. } => body(S::NOT_FOUND, "not_found", m, None),
                    DomainError::AlreadyExists { .. } => {
                        body(S::CONFLICT, "already_exists", m, None)
                    }
                    DomainError::OvnMismatch { .. } => {
                        body(S::CONFLICT, "ovn_mismatch", m, Some("ovn".into()))
                    }
                    DomainError::VersionMismatch { .. } => {
                        body(S::CONFLICT, "version_mismatch", m, Some("version".into()))
                    }
                    DomainError::AvailabilityVersionMismatch { .. } => body(
                        S::CONFLICT,
                        "version_mismatch",
                        m,
                        Some("old_version".into()),
                    ),
                    DomainError::NotManager { .. } => body(S::FORBIDDEN, "not_manager", m, None),
                    DomainError::UssDown { .. } => {
                        body(S::PRECONDITION_FAILED, "uss_down", m, None)
                    }
                    DomainError::InvalidTransition { .. } => body(
                        S::BAD_REQUEST,
                        "invalid_transition",
                        m,
                        Some("state".into()),
                    ),
                    DomainError::SubscriptionInUse { .. } => body(
                        S::BAD_REQUEST,
                        "subscription_in_use",
                        m,
                        Some("subscriptionid".into()),
                    ),
                    DomainError::KeyCheckFailed {
                        missing_operational_intents,
                        missing_constraints,
                    } => {
                        // Callers render this with their own view; this path is a fallback.
                        let v = wire::conflict_response(
                            &m,
                            &missing_operational_intents,
                            &missing_constraints,
                            &wire::View {
                                viewer: "",
                                copies_at: "",
                            },
                            &|_| airspace::UssAvailabilityState::Unknown,
                        );
                        (S::CONFLICT, Json(v)).into_response()
                    }
                }
            }
        }
    }
}

/// The status and machine-readable body of a refusal by the line:
/// `{code, message, field?, expected?}`.
pub fn line_error(e: &LineError) -> (StatusCode, serde_json::Value) {
    use StatusCode as S;
    let (status, code) = match e {
        LineError::Malformed { .. } | LineError::Invalid { .. } => {
            (S::BAD_REQUEST, "invalid_input")
        }
        LineError::BadSignature { .. } => (S::BAD_REQUEST, "bad_signature"),
        LineError::UnknownPeer(_) => (S::NOT_FOUND, "unknown_peer"),
        LineError::NotFound { .. } => (S::NOT_FOUND, "not_found"),
        LineError::UnknownMember { .. } => (S::FORBIDDEN, "unknown_member"),
        LineError::NotAccredited { .. } => (S::FORBIDDEN, "not_accredited"),
        LineError::ChannelNotOpen { .. } => (S::CONFLICT, "channel_not_open"),
        LineError::QuotaExceeded { .. } => (S::CONFLICT, "quota_exceeded"),
        LineError::OutOfSequence { .. } => (S::CONFLICT, "out_of_sequence"),
        LineError::Gap { .. } => (S::CONFLICT, "gap"),
        LineError::Waiting { .. } => (S::CONFLICT, "waiting"),
        LineError::Conflict(_) => (S::CONFLICT, "conflict"),
        LineError::ActivationHeld { .. } => (S::CONFLICT, "activation_held"),
        LineError::RecordRefused(_) => (S::FORBIDDEN, "record_refused"),
    };
    let mut b = json!({ "code": code, "message": e.to_string() });
    if let Some(f) = e.field().filter(|f| !f.is_empty()) {
        b["field"] = json!(f);
    }
    match e {
        LineError::OutOfSequence { expected, .. } | LineError::Gap { expected, .. } => {
            b["expected"] = json!(expected);
        }
        _ => {}
    }
    (status, b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn store_failures_are_told_apart() {
        for (e, status, code, retry) in [
            (StoreError::Failed("disk".into()), 500, "internal", false),
            (
                StoreError::Unavailable("down".into()),
                503,
                "unavailable",
                true,
            ),
            (
                StoreError::OutcomeUnknown("lost".into()),
                503,
                "outcome_unknown",
                true,
            ),
        ] {
            let r = ApiError::Node(NodeError::Store(e)).into_response();
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers().contains_key("retry-after"), retry);
            let bytes = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["code"], code, "{v}");
            assert!(
                !v["message"].as_str().unwrap().contains("disk"),
                "nothing internal: {v}"
            );
        }
    }
}
