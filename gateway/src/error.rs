//! Every error the API returns, as the spec's `Error` body: `{error, message, details}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the payload does not satisfy the contract of {event_type} v{version}")]
    Invalid {
        event_type: String,
        version: u32,
        violations: Vec<(String, String)>,
    },
    #[error("no contract for event type {0:?}")]
    UnknownEventType(String),
    #[error("content type {0:?} is not application/json")]
    UnsupportedMediaType(String),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed on {path}; use {}", allowed.join(" or "))]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: Vec<&'static str>,
    },
    #[error("the body did not arrive within {0} s")]
    RequestTimeout(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Value) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST", Value::Null),
            ApiError::Invalid {
                event_type,
                version,
                violations,
            } => (
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                json!({
                    "event_type": event_type,
                    "schema_version": version,
                    "violations": violations.iter().map(|(p, r)| json!({"pointer": p, "reason": r})).collect::<Vec<_>>(),
                }),
            ),
            ApiError::UnknownEventType(t) => (
                StatusCode::NOT_FOUND,
                "UNKNOWN_EVENT_TYPE",
                json!({"event_type": t}),
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                Value::Null,
            ),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                json!({"limit_bytes": limit}),
            ),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", Value::Null),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN", Value::Null),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", Value::Null),
            ApiError::MethodNotAllowed { allowed, .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                json!({"allowed": allowed}),
            ),
            ApiError::RequestTimeout(secs) => (
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                json!({"timeout_secs": secs}),
            ),
            ApiError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", Value::Null)
            }
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                Value::Null,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, details) = self.parts();
        let mut body = json!({"error": code, "message": self.to_string()});
        if !details.is_null() {
            body["details"] = details;
        }
        let mut response = (status, Json(body)).into_response();
        if let ApiError::MethodNotAllowed { allowed, .. } = &self {
            if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub(crate) use bloodbank_broker::error::chain;
