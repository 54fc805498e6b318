//! The steps every publish shares, whatever the route: validate the data against its
//! contract and wrap it in the envelope ([`envelope`]), then one request per idempotency key
//! at a time (across gateway instances too, through Redis), replay of a remembered key,
//! publish and wait for the broker's confirm, remember the key, record the correlation link,
//! answer.

use std::sync::Arc;

use crate::sink::SinkError;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::Value;

use crate::envelope::{Envelope, Meta};
use crate::error::{chain, ApiError};
use crate::idempotency::IdempotencyKey;
use crate::shared_keys::Claim;
use crate::store::Node;
use crate::AppState;

/// One event ready to publish: its metadata and the JSON body consumers receive (and the
/// caller gets back).
pub(crate) struct Outgoing {
    pub meta: Meta,
    pub body: Value,
    pub now_ms: u64,
    pub key: IdempotencyKey,
    pub warning: Option<&'static str>,
}

/// An event to wrap in the envelope.
pub(crate) struct Event {
    pub event_type: String,
    pub data: Value,
    pub correlation_id: Option<uuid::Uuid>,
    /// Who publishes (the envelope's `source`).
    pub source: String,
    pub key: IdempotencyKey,
    /// The producer's own CloudEvents source and id, when it sent a CloudEvent.
    pub cloud_event: Option<(String, String)>,
    /// Headers to copy (trace context).
    pub extra_headers: Vec<(String, String)>,
}

/// The one way an event becomes an envelope: validated against the newest contract of its
/// type, its id from its idempotency key, stamped now.
pub(crate) fn envelope(state: &AppState, event: Event) -> Result<Outgoing, ApiError> {
    let (schema_version, warning) = validate(state, &event.event_type, &event.data)?;
    let now_ms = bloodbank_broker::clock::now_ms();
    let envelope = Envelope {
        id: event.key.event_id(),
        event_type: event.event_type,
        timestamp: bloodbank_broker::clock::rfc3339(now_ms),
        source: event.source,
        data: event.data,
        correlation_id: event.correlation_id,
        schema_version,
    };
    let meta = envelope.meta(event.cloud_event, event.extra_headers);
    let body = serde_json::to_value(&envelope).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Outgoing {
        meta,
        body,
        now_ms,
        key: event.key,
        warning,
    })
}

/// Checks data against the newest contract of its event type: its major version, and a
/// warning when the type has no contract and unregistered types are allowed.
pub(crate) fn validate(
    state: &AppState,
    event_type: &str,
    data: &Value,
) -> Result<(Option<u32>, Option<&'static str>), ApiError> {
    let contracts = state.contracts.current();
    match contracts.latest(event_type) {
        Some(contract) => match contract.validate(data) {
            Ok(()) => Ok((Some(contract.name.version), None)),
            Err(rejections) => Err({
                state.metrics.validation_failure(event_type);
                ApiError::Invalid {
                    event_type: event_type.into(),
                    version: contract.name.version,
                    violations: rejections
                        .into_iter()
                        .map(|r| (r.pointer, r.message))
                        .collect(),
                }
            }),
        },
        None if state.config.allow_unregistered => Ok((
            None,
            Some("unregistered event type: published without validation"),
        )),
        None => Err(ApiError::UnknownEventType(event_type.into())),
    }
}

/// What `publish` did: the body published (or first published, on a replay).
pub(crate) struct Published {
    pub body: Value,
    pub replayed: bool,
    pub warning: Option<&'static str>,
}

/// The HTTP answer to a publish.
pub(crate) async fn deliver(state: &AppState, out: Outgoing) -> Result<Response, ApiError> {
    let published = publish(state, out).await?;
    let mut response = Json(published.body).into_response();
    if published.replayed {
        response
            .headers_mut()
            .insert("idempotent-replay", HeaderValue::from_static("true"));
    }
    if let Some(warning) = published.warning {
        response
            .headers_mut()
            .insert("x-bloodbank-warning", HeaderValue::from_static(warning));
    }
    Ok(response)
}

pub(crate) async fn publish(state: &AppState, out: Outgoing) -> Result<Published, ApiError> {
    let key = out.key.stored();
    let _turn = KeyTurn::take(state, &key).await;
    let window = state.config.idempotency_window.as_millis() as u64;
    let (stored, now_ms) = (key.clone(), out.now_ms);
    if let Some(first) = state
        .store
        .run(move |s| s.remembered(&stored, now_ms, window))
        .await
        .map_err(|e| ApiError::Internal(chain(&e)))?
    {
        return Ok(Published {
            body: first,
            replayed: true,
            warning: None,
        });
    }
    let lease = match &state.shared_keys {
        None => None,
        Some(shared) => match shared.claim(&key).await {
            Claim::Mine(lease) => lease,
            Claim::Answered(first) => {
                return Ok(Published {
                    body: first,
                    replayed: true,
                    warning: None,
                })
            }
            Claim::Busy => {
                return Err(ApiError::Unavailable(
                    "another gateway instance is still publishing this idempotency key".into(),
                ))
            }
        },
    };
    let published = send(state, &out).await;
    if let Err(e) = published {
        if let (Some(shared), Some(lease)) = (&state.shared_keys, lease) {
            shared.release(lease).await;
        }
        return Err(e);
    }
    state
        .metrics
        .published(&out.meta.event_type, out.warning.is_none());
    let (now_ms, body) = (out.now_ms, out.body.clone());
    if let Err(e) = state
        .store
        .run(move |s| s.remember(&key, now_ms, &body))
        .await
    {
        tracing::warn!(error = %chain(&e), "remembering an idempotency key failed");
    }
    if let (Some(shared), Some(lease)) = (&state.shared_keys, lease) {
        shared
            .answer(lease, &out.body, state.config.idempotency_window)
            .await;
    }
    let node = Node {
        message_id: out.meta.id,
        event_type: out.meta.event_type.clone(),
        timestamp: out.meta.timestamp.clone(),
        source: out.meta.source.clone(),
        parent_id: out.meta.correlation_id,
        recorded_ms: out.now_ms,
    };
    if let Err(e) = state
        .correlation
        .record(&state.store, &node, state.config.correlation_ttl)
        .await
    {
        tracing::warn!(error = %e, "recording correlation failed; the event is published");
    }
    Ok(Published {
        body: out.body,
        replayed: false,
        warning: out.warning,
    })
}

/// Publishes the event and waits for the broker's confirm.
async fn send(state: &AppState, out: &Outgoing) -> Result<(), ApiError> {
    let bytes =
        Bytes::from(serde_json::to_vec(&out.body).map_err(|e| ApiError::Internal(e.to_string()))?);
    let properties = out.meta.amqp_properties(out.now_ms / 1000);
    state
        .sink
        .publish(
            &state.config.exchange,
            &out.meta.event_type,
            properties,
            bytes,
        )
        .await
        .map_err(|e| match e {
            SinkError::Unavailable(why) => ApiError::Unavailable(why),
            SinkError::Failed(why) => ApiError::Internal(why),
        })
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
