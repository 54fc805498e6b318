//! `GET /api/tail?exchange=events&pattern=#`: a live stream of the messages published to an
//! exchange of vhost `/`, one JSON object per Server-Sent Event, for the dashboard. The
//! subscription (an exclusive, bounded queue) goes away when the client disconnects.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::App;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Payloads are cut to this many bytes in the stream.
const PAYLOAD_SHOWN: usize = 16 * 1024;

#[derive(Deserialize)]
pub struct TailQuery {
    exchange: Option<String>,
    pattern: Option<String>,
}

pub async fn tail(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<TailQuery>,
) -> Result<Response, ApiError> {
    caller.require_vhost(&app, "/")?;
    let exchange = q.exchange.unwrap_or_else(|| "events".into());
    let pattern = q
        .pattern
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "#".into());
    let subscription = app.admin.subscribe(&exchange, &pattern)?;
    let events = futures_lite::stream::unfold(subscription, |mut sub| async move {
        let (routing_key, message) = sub.next().await?;
        let body = &message.body[..message.body.len().min(PAYLOAD_SHOWN)];
        let event = json!({
            "routing_key": routing_key,
            "exchange": message.exchange,
            "size": message.body.len(),
            "payload": String::from_utf8_lossy(body),
            "at": bloodbank_broker::clock::now_ms(),
        });
        let frame = format!("data: {event}\n\n");
        Some((Ok::<_, std::io::Error>(frame), sub))
    });
    Ok((
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response())
}
