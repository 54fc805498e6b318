//! Web-STOMP: STOMP over WebSocket at `/ws`, as RabbitMQ's `rabbitmq_web_stomp` serves it:
//! the client's `v12.stomp`/`v11.stomp`/`v10.stomp` sub-protocol echoed back (browsers and
//! the `ws` package refuse a server that ignores it), one frame per text message followed by
//! an LF, heart-beats as messages holding only an LF.

use super::{run, Origin, Transport};
use crate::net::Shared;
use crate::tls::{Tls, TlsListener};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Most bytes of one WebSocket message from a client.
const MAX_MESSAGE: usize = 16 * 1024 * 1024 + 64 * 1024;

struct Ws {
    socket: WebSocket,
}

impl Transport for Ws {
    async fn read(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        loop {
            match self.socket.recv().await {
                Some(Ok(Message::Text(text))) => {
                    buf.extend_from_slice(text.as_bytes());
                    return Ok(text.len().max(1));
                }
                Some(Ok(Message::Binary(data))) => {
                    buf.extend_from_slice(&data);
                    return Ok(data.len().max(1));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => return Ok(0),
                Some(Err(e)) => {
                    crate::websocket::close_if_too_big(&mut self.socket, &e, MAX_MESSAGE).await;
                    return Err(std::io::Error::other(e));
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // A frame is a text message followed by an LF, as RabbitMQ sends it (binary only when
        // its body is not UTF-8).
        let mut framed = bytes.to_vec();
        if framed.last() == Some(&0) {
            framed.push(b'\n');
        }
        let message = match String::from_utf8(framed) {
            Ok(text) => Message::Text(text.into()),
            Err(e) => Message::Binary(Bytes::from(e.into_bytes())),
        };
        self.socket
            .send(message)
            .await
            .map_err(std::io::Error::other)
    }

    async fn close(&mut self) {
        let close = CloseFrame {
            code: 1000,
            reason: "STOMP died".into(),
        };
        let _ = self.socket.send(Message::Close(Some(close))).await;
    }
}

struct WsState {
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    local: Option<SocketAddr>,
    /// Served over TLS (`wss://`).
    tls: bool,
}

async fn upgrade(
    State(state): State<Arc<WsState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let (shared, shutdown) = (state.shared.clone(), state.shutdown.clone());
    let (local, tls) = (state.local, state.tls);
    ws.protocols(["v12.stomp", "v11.stomp", "v10.stomp"])
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let origin = Origin { peer, local, tls };
            run(Ws { socket }, origin, shared, shutdown)
        })
}

/// Serves Web-STOMP on one listener until shutdown; over TLS (`wss://`) with `tls`.
pub(in crate::net) async fn serve_websocket(
    listener: TcpListener,
    tls: Option<Tls>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let state = Arc::new(WsState {
        shared,
        shutdown: shutdown.clone(),
        local: listener.local_addr().ok(),
        tls: tls.is_some(),
    });
    let app = Router::new()
        .route("/ws", get(upgrade))
        .with_state(state)
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut stop = shutdown;
    let stopped = async move {
        let _ = stop.changed().await;
    };
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(tls) => match TlsListener::new(listener, tls) {
            // tap_io: axum gives the client's address to any listener wrapped so.
            Ok(listener) => {
                axum::serve(listener.tap_io(|_| ()), app)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "Web-STOMP listener stopped");
    }
}
