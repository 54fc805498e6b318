//! AMQP 0.9.1 over TCP: the listener, one task pair (reader + writer) per connection, the
//! handshake, and the session that turns frames into core operations. Nothing outside this
//! module knows AMQP frames.

mod connection;
mod feed;
mod handshake;
mod reader;
mod session;
mod writer;

pub use feed::feed_frames;

use super::stream::Stream;
use super::{Shared, OUTLET_BUDGET};
use crate::core::{Details, Outbound, Outlet, Peer, Protocol};
use crate::error::AmqpError;
use crate::store::json_args::table_to_json;
use crate::tls::PeerIdentity;
use crate::wire::PROTOCOL_HEADER;
use handshake::HandshakeError;
use reader::FrameReader;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::timeout;

/// How long a client has to complete the handshake (RabbitMQ's default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection (plain TCP or TLS) from protocol header to close.
pub(super) async fn serve<S: Stream>(
    mut stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let mut header = [0u8; 8];
    match timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut header)).await {
        Ok(Ok(_)) if &header == PROTOCOL_HEADER => {}
        Ok(Ok(_)) => {
            // Tell the client which protocol we speak, then hang up (AMQP 0.9.1 section 4.2.2).
            let _ = stream.write_all(PROTOCOL_HEADER).await;
            let _ = stream.shutdown().await;
            return;
        }
        _ => return,
    }
    let local = stream.local_addr();
    let tls = stream.is_tls();
    let certified = stream.peer_certificate().and_then(|cert| {
        let from = shared.config.tls.as_ref()?.settings().login_from;
        Some(PeerIdentity::of(&cert)?.login(from)?.to_string())
    });
    let (rd, wr) = stream.split();
    let (tx, rx) = Outlet::new(OUTLET_BUDGET);
    let writer = tokio::spawn(writer::run_writer(wr, rx, tx.window()));
    let mut reader = FrameReader::new(rd, shared.config.frame_max);
    match timeout(
        HANDSHAKE_TIMEOUT,
        handshake::handshake(&shared, &mut reader, &tx, peer.ip(), certified.as_deref()),
    )
    .await
    {
        Ok(Ok(negotiated)) => {
            shared.amqp_connections.fetch_add(1, Ordering::Relaxed);
            let details = Details {
                name: match local {
                    Some(local) => format!("{peer} -> {local}"),
                    None => peer.to_string(),
                },
                client_properties: table_to_json(&negotiated.client_properties),
                frame_max: negotiated.frame_max,
                heartbeat: negotiated.heartbeat,
                channel_max: negotiated.channel_max,
                local,
                tls,
                auth_mechanism: negotiated.mechanism.clone(),
                ..Default::default()
            };
            let who = Peer {
                user: negotiated.user.clone(),
                vhost: negotiated.vhost.clone(),
                protocol: Protocol::Amqp091,
                addr: Some(peer),
                cancel_notify: negotiated.cancel_notify,
                access: negotiated.access.clone(),
                details: Arc::new(details),
            };
            let who_details = who.details.clone();
            let session =
                session::Session::new(shared.clone(), tx.clone(), who, negotiated.channel_max);
            let conn = session.conn;
            let closed = who_details.close.subscribe();
            tracing::debug!(conn, %peer, user = %negotiated.user, "connection opened");
            connection::run_session(session, &mut reader, &negotiated, shutdown, closed).await;
            shared.lock().close_connection(conn);
            shared.amqp_connections.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(Err(HandshakeError::Refused(err, can_close))) => {
            tracing::info!(%peer, error = %err, "handshake refused");
            if can_close {
                send_close(&tx, &err);
                let _ = timeout(Duration::from_secs(1), reader.next_frame()).await;
            }
        }
        Ok(Err(HandshakeError::Gone)) | Err(_) => {}
    }
    let _ = tx.send(Outbound::Shutdown);
    let _ = timeout(Duration::from_secs(5), writer).await;
}

fn send_close(tx: &Outlet, err: &AmqpError) {
    let _ = tx.send(Outbound::Method(0, err.connection_close()));
}
