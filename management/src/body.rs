//! Request bodies as real clients send them: JSON objects whose booleans and numbers may come
//! as strings (`"durable":"true"`, `"count":"1"`, as rabbitmqadmin sends them). A field of the
//! wrong kind is a 400 naming it.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::time::Duration;

/// The largest body accepted (a publish's payload included).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// How long a request's body may take to arrive once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads every request's body (at most [`MAX_BODY`]) within [`BODY_TIMEOUT`] before a
/// handler sees it: a body that trickles in gets 408 and the connection is closed, instead of
/// holding it and its task for as long as the client likes.
pub async fn in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let declared = parts
                .headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            match declared {
                Some(n) if n > MAX_BODY => ApiError::TooLarge.into_response(),
                _ => ApiError::bad(format!("the request body could not be read: {e}"))
                    .into_response(),
            }
        }
        Err(_) => {
            let mut response = ApiError::BodyTimeout.into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

pub struct Fields(Map<String, Value>);

impl Fields {
    /// The body as a JSON object; an empty body is an empty object.
    pub fn parse(body: &Bytes) -> Result<Fields, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields(Map::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err(ApiError::bad("the body must be a JSON object")),
            Err(e) => Err(ApiError::bad(format!("the body is not JSON: {e}"))),
        }
    }

    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.raw(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" => Ok(true),
            Some(Value::String(s)) if s == "false" => Ok(false),
            Some(other) => Err(ApiError::bad(format!(
                "{name} must be true or false, not {other}"
            ))),
        }
    }

    pub fn uint(&self, name: &str, default: u64) -> Result<u64, ApiError> {
        match self.raw(name) {
            None => Ok(default),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or(default)),
            Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().unwrap_or(default)),
            Some(other) => Err(ApiError::bad(format!(
                "{name} must be a non-negative integer, not {other}"
            ))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::bad(format!(
                "{name} must be a string, not {other}"
            ))),
        }
    }

    pub fn required(&self, name: &str) -> Result<String, ApiError> {
        self.string(name)?
            .ok_or_else(|| ApiError::bad(format!("{name} is missing")))
    }

    /// An object field (`arguments`, `properties`); absent is empty.
    pub fn object(&self, name: &str) -> Result<Value, ApiError> {
        match self.raw(name) {
            None => Ok(Value::Object(Map::new())),
            Some(Value::Object(o)) => Ok(Value::Object(o.clone())),
            Some(Value::String(s)) if s.is_empty() => Ok(Value::Object(Map::new())),
            Some(other) => Err(ApiError::bad(format!(
                "{name} must be an object, not {other}"
            ))),
        }
    }
}
