//! `POST /events/{event_type}` and `POST /events/calendar`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bloodbank_broker::net::PublishError;
use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{deterministic_id, Envelope, Headers};
use crate::error::ApiError;
use crate::store::Node;
use crate::time::{now_ms, rfc3339};
use crate::AppState;

pub(crate) const CALENDAR_EVENT_TYPE: &str = "calendar.event.created";

pub(crate) async fn event(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(event_type): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    publish(&state, peer, &event_type, &headers, body).await
}

pub(crate) async fn calendar(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    publish(&state, peer, CALENDAR_EVENT_TYPE, &headers, body).await
}

async fn publish(
    state: &AppState,
    peer: SocketAddr,
    event_type: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_event_type(event_type)?;
    let data = read_json(headers, body, state.config.body_limit).await?;
    let contracts = state.contracts.current();
    let (schema_version, warning) = match contracts.latest(event_type) {
        Some(contract) => {
            if let Err(rejections) = contract.validate(&data) {
                let violations = rejections
                    .into_iter()
                    .map(|r| (r.pointer, r.message))
                    .collect();
                return Err(ApiError::Invalid {
                    event_type: event_type.into(),
                    version: contract.name.version,
                    violations,
                });
            }
            (Some(contract.name.version), None)
        }
        None if state.config.allow_unregistered => (
            None,
            Some("unregistered event type: published without validation"),
        ),
        None => return Err(ApiError::UnknownEventType(event_type.into())),
    };
    let correlation_id = correlation_id(headers, &data)?;
    let source = format!("http/{}", peer.ip());
    let idempotency_key =
        header_text(headers, "idempotency-key")?.map(|k| format!("{source}\n{k}"));

    // One request per idempotency key at a time, so a concurrent repeat waits and replays.
    let _turn = match &idempotency_key {
        Some(key) => Some(KeyTurn::take(state, key).await),
        None => None,
    };
    let now = now_ms();
    let window = state.config.idempotency_window.as_millis() as u64;
    if let Some(key) = &idempotency_key {
        if let Some(first) = state
            .store
            .remembered(key, now, window)
            .map_err(|e| ApiError::Internal(e.to_string()))?
        {
            let mut response = Json(first).into_response();
            response
                .headers_mut()
                .insert("idempotent-replay", HeaderValue::from_static("true"));
            return Ok(response);
        }
    }
    let id = match &idempotency_key {
        Some(key) => Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()),
        None => deterministic_id(event_type, &data, correlation_id),
    };
    let envelope = Envelope {
        id,
        event_type: event_type.to_string(),
        timestamp: rfc3339(now),
        source: source.clone(),
        data,
        correlation_id,
        schema_version,
    };
    let body =
        Bytes::from(serde_json::to_vec(&envelope).map_err(|e| ApiError::Internal(e.to_string()))?);
    let properties = envelope.amqp_properties(now / 1000, &trace_headers(headers));
    state
        .publisher
        .publish(&state.config.exchange, event_type, properties, body)
        .await
        .map_err(|e| match e {
            PublishError::Blocked(_) | PublishError::Rejected | PublishError::ShutDown => {
                ApiError::Unavailable(e.to_string())
            }
            PublishError::Refused(amqp) => {
                ApiError::Internal(format!("the broker refused the publish: {amqp}"))
            }
        })?;
    if let Some(key) = &idempotency_key {
        if let Err(e) = state.store.remember(key, now, &envelope) {
            tracing::warn!(error = %e, "remembering an idempotency key failed");
        }
    }
    let node = Node {
        message_id: envelope.id,
        event_type: envelope.event_type.clone(),
        timestamp: envelope.timestamp.clone(),
        source,
        parent_id: correlation_id,
        recorded_ms: now,
    };
    if let Err(e) = state.store.record(&node) {
        tracing::warn!(error = %e, "recording correlation failed; the event is published");
    }
    let mut response = Json(envelope).into_response();
    if let Some(warning) = warning {
        response
            .headers_mut()
            .insert("x-bloodbank-warning", HeaderValue::from_static(warning));
    }
    Ok(response)
}

/// Holding the turn of an idempotency key; the key's lock is forgotten when nobody waits.
struct KeyTurn<'a> {
    state: &'a AppState,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<'a> KeyTurn<'a> {
    async fn take(state: &'a AppState, key: &str) -> KeyTurn<'a> {
        let lock = state
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        KeyTurn {
            state,
            key: key.to_string(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for KeyTurn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut in_flight = self
            .state
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if in_flight
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            in_flight.remove(&self.key);
        }
    }
}

/// The routing key rules of the spec: `component.rest`, lower case.
fn check_event_type(event_type: &str) -> Result<(), ApiError> {
    let (head, rest) = event_type.split_once('.').unwrap_or((event_type, ""));
    let ok_head = !head.is_empty()
        && head
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    match ok_head && ok_rest {
        true => Ok(()),
        false => Err(ApiError::BadRequest(format!(
            "event type {event_type:?} is not a routing key like component.entity.action (lower case, digits, '.', '_')"
        ))),
    }
}

async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/json"
        && !(media.starts_with("application/") && media.ends_with("+json"))
    {
        return Err(ApiError::UnsupportedMediaType(content_type.to_string()));
    }
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge(limit))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("header {name} is not visible ASCII"))),
    }
}

/// `X-Correlation-ID`, else a top-level `correlation_id` in the payload.
fn correlation_id(headers: &HeaderMap, data: &Value) -> Result<Option<Uuid>, ApiError> {
    let (text, whence) = match header_text(headers, "x-correlation-id")? {
        Some(h) => (Some(h), "header X-Correlation-ID"),
        None => (
            data.get("correlation_id").and_then(Value::as_str),
            "field correlation_id",
        ),
    };
    text.map(|t| {
        Uuid::parse_str(t.trim())
            .map_err(|_| ApiError::BadRequest(format!("{whence} {t:?} is not a UUID")))
    })
    .transpose()
}

/// W3C trace context, carried into the AMQP headers so traces span producer, broker and consumers.
fn trace_headers(headers: &HeaderMap) -> Headers {
    ["traceparent", "tracestate"]
        .iter()
        .filter_map(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect()
}
