//! `GET /ws/events?pattern=theboard.#`: a WebSocket stream of the events published to the
//! exchange (over HTTP or AMQP) whose routing keys match the pattern, one JSON text frame each.

use std::collections::HashMap;
use std::sync::Arc;

use crate::sink::Stream;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// How long one event may take to go out before the stream is given up as too slow.
const SLOW_READER: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest WebSocket message a client may send on `/ws/events`.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    _: Caller,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let pattern = query.get("pattern").map(String::as_str).unwrap_or("#");
    check_pattern(pattern)?;
    let subscription = state
        .sink
        .subscribe(&state.config.exchange, pattern)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot subscribe: {e}")))?;
    // Clients only listen here: a message from them is a close or a ping, never large.
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| forward(socket, subscription)))
}

async fn forward(mut socket: WebSocket, mut subscription: Stream) {
    loop {
        tokio::select! {
            next = subscription.next() => {
                let Some(message) = next else { break };
                let routing_key = message.routing_key.clone();
                let p = &message.properties;
                let text = |v: &Option<amq_protocol::types::ShortString>| v.as_ref().map(|s| s.to_string());
                let body: Value = serde_json::from_slice(&message.body).unwrap_or_else(|_| String::from_utf8_lossy(&message.body).into());
                let frame = json!({
                    "routing_key": routing_key,
                    "message_id": text(p.message_id()),
                    "correlation_id": text(p.correlation_id()),
                    "type": text(p.kind()),
                    "body": body,
                });
                let sent = tokio::time::timeout(
                    SLOW_READER,
                    socket.send(Message::Text(frame.to_string().into())),
                )
                .await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    // The client does not read: events pile up (and the oldest are dropped)
                    // behind it. Say so and hang up rather than hold them.
                    Err(_) => {
                        let close = axum::extract::ws::CloseFrame {
                            code: 1008,
                            reason: "too slow: events were dropped while this stream did not read".into(),
                        };
                        let _ = tokio::time::timeout(SLOW_READER, socket.send(Message::Close(Some(close)))).await;
                        break;
                    }
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Err(e)) => {
                    bloodbank_broker::websocket::close_if_too_big(&mut socket, &e, MAX_CLIENT_MESSAGE).await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None => break,
                _ => {}
            },
        }
    }
}

/// A topic pattern: words of lower-case letters, digits, `_` and `-`, or `*` / `#`, joined by dots.
fn check_pattern(pattern: &str) -> Result<(), ApiError> {
    let ok = !pattern.is_empty()
        && pattern.split('.').all(|w| {
            w == "*"
                || w == "#"
                || (!w.is_empty()
                    && w.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    }))
        });
    match ok {
        true => Ok(()),
        false => Err(ApiError::BadRequest(format!(
            "pattern {pattern:?} is not a topic pattern like theboard.# or *.meeting.*"
        ))),
    }
}
