//! The API's one error type. Every variant documents its status; the body is always
//! `{"error": {"code", "message", "field"?}}` [API.md]. Internal errors are logged with
//! their detail and shown to callers only as "internal error".

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tare_platform::ServiceError;
use utoipa::ToSchema;

/// Every error body of the API [API.md], the HTTP device API's included: one type, so the
/// document's `ErrorBody` schema is the shape the handlers really write.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_field", "field": "door", "message": "must be between 1 and 16"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`]. Fields stay in alphabetical order: the bytes on the
/// wire are the ones clients saw before the body was typed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine code: `malformed_json` (400), `unauthorized` (401), `forbidden` (403), a
    /// specific not-found code (404, e.g. `cabinet_not_found`, or `route_not_found` for an
    /// unknown path), `method_not_allowed` (405), a specific conflict code (409, e.g.
    /// `cabinet_busy`), `too_large` (413), `invalid_field` (422), `rate_limited` (429),
    /// `overloaded`, `timeout` or `store_unavailable` (503), `internal` (500); the
    /// HTTP device API uses its refusal reasons (`auth_bad_signature`, `rate_limited`, …).
    #[schema(example = "invalid_field")]
    pub code: String,
    /// On 422 (and a device API 400 about one field): the field's path, e.g.
    /// `doors[0].lanes[1].capacity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "doors[0].lanes[1].capacity")]
    pub field: Option<String>,
    /// For people; never carries internal details.
    #[schema(example = "must be between 1 and 16")]
    pub message: String,
}

impl ErrorBody {
    /// The body for `code`, `message` and the field at fault, if one.
    pub fn new(code: impl Into<String>, message: impl Into<String>, field: Option<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                field,
                message: message.into(),
            },
        }
    }
}

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON at all.
    #[error("{0}")]
    Malformed(String),
    /// 401: no token, or a token that is not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{message}")]
    NotFound {
        /// Machine code.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// 405: the path exists, the method does not.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// 409: conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Machine code.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// 413: the body is over 64 KiB.
    #[error("body too large")]
    TooLarge,
    /// 422: a field is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path (`doors[0].lanes[1].capacity`).
        field: String,
        /// Why.
        message: String,
    },
    /// 429: this client is over its request rate; retry after the given seconds.
    #[error("too many requests from this client: retry in {0} s")]
    RateLimited(u64),
    /// 503: the node is at its limit of requests in flight, or a request ran over the
    /// time allowed; retry after the given seconds.
    #[error("{message}")]
    Unavailable {
        /// Machine code: `overloaded`, `timeout` or `store_unavailable`.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// 500.
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound { code, message } => Self::NotFound { code, message },
            ServiceError::Conflict { code, message } => Self::Conflict { code, message },
            ServiceError::Invalid { field, message } => Self::Invalid { field, message },
            ServiceError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unreachable");
                Self::Unavailable {
                    code: "store_unavailable",
                    message: "the store cannot be reached now; retry".into(),
                }
            }
            ServiceError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<tare_domain::ValueError> for ApiError {
    fn from(e: tare_domain::ValueError) -> Self {
        Self::Invalid {
            field: e.field.to_string(),
            message: e.reason,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            Self::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_json", None),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            Self::NotFound { code, .. } => (StatusCode::NOT_FOUND, *code, None),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, *code, None),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
            Self::Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field.clone())),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            Self::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, *code, None),
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        };
        let message = match &self {
            Self::Internal(_) => "internal error".to_string(),
            Self::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let retry_after = match &self {
            Self::RateLimited(s) => Some(*s),
            Self::Unavailable { .. } => Some(1),
            _ => None,
        };
        let mut r = (status, axum::Json(ErrorBody::new(code, message, field))).into_response();
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(s));
        }
        r
    }
}
