//! Errors as RabbitMQ's management API answers them: a status and `{"error", "reason"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bloodbank_broker::{AdminError, AmqpError, PublishError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials: the client is asked for them (`WWW-Authenticate`).
    #[error("{0}")]
    NoCredentials(String),
    /// Wrong credentials (RabbitMQ spells this one `not_authorized`).
    #[error("Login failed")]
    LoginFailed,
    /// A refusal RabbitMQ answers with 401.
    #[error("{0}")]
    Unauthorized(String),
    #[error("Not Found")]
    NotFound,
    /// A named thing is missing (`{"error": "not_found", "reason": ...}`).
    #[error("{0}")]
    Missing(String),
    /// RabbitMQ's answer to a bad page number or size.
    #[error("{0}")]
    Pagination(String),
    #[error("{0}")]
    BadRequest(String),
    /// The body was larger than [`crate::body::MAX_BODY`].
    #[error("the request body is larger than {} bytes", crate::body::MAX_BODY)]
    TooLarge,
    /// The body did not arrive within [`crate::body::BODY_TIMEOUT`].
    #[error("the request body did not arrive within {} s", crate::body::BODY_TIMEOUT.as_secs())]
    BodyTimeout,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad(reason: impl Into<String>) -> ApiError {
        ApiError::BadRequest(reason.into())
    }
}

/// An AMQP error's text without its code name (`NOT_FOUND - no queue...` -> `no queue...`).
fn amqp_reason(e: &AmqpError) -> String {
    match e.text.split_once(" - ") {
        Some((_, reason)) => reason.to_string(),
        None => e.text.clone(),
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Amqp(e) => match e.code {
                403 => ApiError::Unauthorized(amqp_reason(&e)),
                404 => ApiError::Missing(amqp_reason(&e)),
                _ => ApiError::BadRequest(amqp_reason(&e)),
            },
            AdminError::Policy(e) => ApiError::BadRequest(format!("Validation failed\n\n{e}\n")),
            AdminError::NotFound(_) => ApiError::NotFound,
            AdminError::NoVhost(_) => ApiError::Missing("vhost_not_found".into()),
            AdminError::User(e) => ApiError::BadRequest(e.to_string()),
            AdminError::Store(why) => ApiError::Internal(why),
            AdminError::Publish(PublishError::Blocked(why)) => ApiError::Unavailable(why),
            AdminError::Publish(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, reason) = match &self {
            ApiError::NoCredentials(r) | ApiError::Unauthorized(r) => {
                (StatusCode::UNAUTHORIZED, "not_authorised", r.clone())
            }
            ApiError::LoginFailed => (
                StatusCode::UNAUTHORIZED,
                "not_authorized",
                "Login failed".into(),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "Object Not Found",
                "Not Found".into(),
            ),
            ApiError::Missing(r) => (StatusCode::NOT_FOUND, "not_found", r.clone()),
            ApiError::Pagination(r) => (
                StatusCode::BAD_REQUEST,
                "invalid_pagination_parameters",
                r.clone(),
            ),
            ApiError::BadRequest(r) => (StatusCode::BAD_REQUEST, "bad_request", r.clone()),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                self.to_string(),
            ),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                self.to_string(),
            ),
            ApiError::Unavailable(r) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", r.clone()),
            ApiError::Internal(r) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                r.clone(),
            ),
        };
        let mut response = (
            status,
            axum::Json(json!({"error": error, "reason": reason})),
        )
            .into_response();
        if matches!(self, ApiError::NoCredentials(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        response
    }
}
