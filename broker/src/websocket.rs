//! What the WebSocket servers (Web-STOMP here, `/ws/events` in the gateway, `/asr` in speech)
//! share: telling a client in WebSocket's own terms that its message was past the bound.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use std::time::Duration;

/// Close code 1009: a message too big to process (RFC 6455, section 7.4.1).
const MESSAGE_TOO_BIG: u16 = 1009;

/// How long the close frame may take to go out: a peer that does not read cannot hold the
/// connection's task with it.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Whether a receive error is a message or frame past the size the socket was given.
fn too_big(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// After a receive error (the connection is over either way): a close frame with 1009 and
/// the bound when the message was too big, so the client learns why.
pub async fn close_if_too_big(socket: &mut WebSocket, error: &axum::Error, limit: usize) {
    if too_big(error) {
        let frame = CloseFrame {
            code: MESSAGE_TOO_BIG,
            reason: format!("message larger than {limit} bytes").into(),
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, socket.send(Message::Close(Some(frame)))).await;
    }
}
