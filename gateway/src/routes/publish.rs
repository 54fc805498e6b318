//! The publishing routes: `POST /events/{event_type}` (plain JSON or a binary-mode
//! CloudEvent), `POST /events` (CloudEvents), `POST /events/calendar`, and the original
//! service's `POST /publish` with its v0.2 envelope.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::cloudevents::{self, CloudEvent};
use crate::envelope::{deterministic_id, Meta};
use crate::error::ApiError;
use crate::idempotency::{IdempotencyKey, Same};
use crate::publishing::{deliver, envelope, validate, Event, Outgoing};
use crate::AppState;
use bloodbank_broker::clock::{now_ms, rfc3339};

pub(crate) const CALENDAR_EVENT_TYPE: &str = "calendar.event.created";

pub(crate) async fn event(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(event_type): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let data = read_json(&headers, body, state.config.body_bounds(), false).await?;
    match cloudevents::binary(&headers, &data)? {
        Some(ce) if ce.event_type != event_type => Err(ApiError::BadRequest(format!(
            "ce-type {:?} does not match the path's event type {event_type:?}",
            ce.event_type
        ))),
        Some(ce) => cloud_event(&state, caller, &headers, ce).await,
        None => plain(&state, caller, &event_type, &headers, data).await,
    }
}

pub(crate) async fn calendar(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let data = read_json(&headers, body, state.config.body_bounds(), false).await?;
    plain(&state, caller, CALENDAR_EVENT_TYPE, &headers, data).await
}

/// `POST /events`: a CloudEvent, structured (`application/cloudevents+json`) or binary.
pub(crate) async fn cloud(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let data = read_json(&headers, body, state.config.body_bounds(), true).await?;
    let ce = match cloudevents::binary(&headers, &data)? {
        Some(ce) => ce,
        None if media_type(&headers) == cloudevents::STRUCTURED => cloudevents::structured(&data)?,
        None => {
            return Err(ApiError::BadRequest(
                "POST /events takes a CloudEvent (ce-* headers or application/cloudevents+json); use /events/{event_type} for plain JSON".into(),
            ))
        }
    };
    cloud_event(&state, caller, &headers, ce).await
}

async fn plain(
    state: &AppState,
    caller: Caller,
    event_type: &str,
    headers: &HeaderMap,
    data: Value,
) -> Result<Response, ApiError> {
    check_event_type(event_type)?;
    caller.may_publish(event_type)?;
    let correlation_id = correlation_id(
        headers,
        data.get("correlation_id").and_then(Value::as_str),
        "field correlation_id",
    )?;
    // Without a key the event's deterministic id is its key: the same event again within
    // the window is the same event, answered with the first envelope, not published twice
    // under one id.
    let same = match header_text(headers, "idempotency-key")? {
        Some(key) => Same::Given(key.to_string()),
        None => Same::Content(deterministic_id(event_type, &data, correlation_id)),
    };
    let event = Event {
        event_type: event_type.to_string(),
        data,
        correlation_id,
        key: IdempotencyKey::new(caller.source.clone(), same),
        source: caller.source,
        cloud_event: None,
        extra_headers: trace_headers(headers),
    };
    deliver(state, envelope(state, event)?).await
}

async fn cloud_event(
    state: &AppState,
    caller: Caller,
    headers: &HeaderMap,
    ce: CloudEvent,
) -> Result<Response, ApiError> {
    check_event_type(&ce.event_type)?;
    caller.may_publish(&ce.event_type)?;
    let correlation_id = correlation_id(
        headers,
        ce.correlation_id.as_deref(),
        "CloudEvents correlationid",
    )?;
    // CloudEvents says source + id identify an event: that is its idempotency key.
    let same = Same::CloudEvent {
        source: ce.source.clone(),
        id: ce.id.clone(),
    };
    let event = Event {
        event_type: ce.event_type,
        data: ce.data,
        correlation_id,
        key: IdempotencyKey::new(caller.source.clone(), same),
        source: caller.source,
        cloud_event: Some((ce.source, ce.id)),
        extra_headers: trace_headers(headers),
    };
    deliver(state, envelope(state, event)?).await
}

/// `POST /publish`: the original service's v0.2 envelope, published as it is (with its
/// defaults filled in) so its consumers keep working; `event_id` is its idempotency key.
pub(crate) async fn legacy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut envelope = read_json(&headers, body, state.config.body_bounds(), false).await?;
    let Some(fields) = envelope.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "the v0.2 envelope must be a JSON object".into(),
        ));
    };
    let event_type = fields
        .get("event_type")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::BadRequest("field event_type (a string) is required".into()))?;
    check_event_type(&event_type)?;
    caller.may_publish(&event_type)?;
    let payload = fields
        .get("payload")
        .cloned()
        .ok_or_else(|| ApiError::BadRequest("field payload is required".into()))?;
    let (_, warning) = validate(&state, &event_type, &payload)?;
    let now = now_ms();
    let id = match fields.get("event_id") {
        None | Some(Value::Null) => Uuid::new_v4(),
        Some(v) => v
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| ApiError::BadRequest(format!("field event_id {v} is not a UUID")))?,
    };
    let correlation_ids: Vec<Uuid> = match fields.get("correlation_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("correlation_ids entry {v} is not a UUID"))
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "field correlation_ids must be a list of UUIDs, not {other}"
            )))
        }
    };
    fields.insert("event_id".into(), json!(id));
    fields
        .entry("timestamp")
        .or_insert_with(|| json!(rfc3339(now)));
    fields.entry("version").or_insert_with(|| json!("0.2.0"));
    fields.entry("source").or_insert_with(
        || json!({"host": caller.peer.ip().to_string(), "type": "http", "app": caller.source}),
    );
    fields.entry("correlation_ids").or_insert_with(|| json!([]));
    let timestamp = fields
        .get("timestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let meta = Meta {
        id,
        event_type,
        source: caller.source.clone(),
        timestamp,
        correlation_id: correlation_ids.first().copied(),
        cloud_event: None,
        extra_headers: trace_headers(&headers),
    };
    deliver(
        &state,
        Outgoing {
            meta,
            body: envelope,
            now_ms: now,
            key: IdempotencyKey::new(caller.source.clone(), Same::EventId(id)),
            warning,
        },
    )
    .await
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

fn media_type(headers: &HeaderMap) -> String {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    (limit, timeout): (usize, std::time::Duration),
    cloud_events: bool,
) -> Result<Value, ApiError> {
    let media = media_type(headers);
    let json = media == "application/json" || (cloud_events && media == cloudevents::STRUCTURED);
    if !json {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        return Err(ApiError::UnsupportedMediaType(given));
    }
    // A body that trickles in must not hold its connection (and a task) for ever.
    let bytes = tokio::time::timeout(timeout, to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout(timeout.as_secs()))?
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

/// `X-Correlation-ID`, else the request's own field (`fallback`, named `whence`).
fn correlation_id(
    headers: &HeaderMap,
    fallback: Option<&str>,
    whence: &str,
) -> Result<Option<Uuid>, ApiError> {
    let (text, whence) = match header_text(headers, "x-correlation-id")? {
        Some(h) => (Some(h), "header X-Correlation-ID"),
        None => (fallback, whence),
    };
    text.map(|t| {
        Uuid::parse_str(t.trim())
            .map_err(|_| ApiError::BadRequest(format!("{whence} {t:?} is not a UUID")))
    })
    .transpose()
}

/// W3C trace context, carried into the AMQP headers so traces span producer, broker and consumers.
fn trace_headers(headers: &HeaderMap) -> Vec<(String, String)> {
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
