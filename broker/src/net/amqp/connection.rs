//! One client connection after the handshake: reads frames, assembles published content,
//! applies methods to the core, batches publisher confirms, enforces heartbeats, and closes
//! channels or the connection with the right reply codes.

use super::handshake::Negotiated;
use super::reader::FrameReader;
use super::session::Session;
use crate::core::Outbound;
use crate::error::{code, AmqpError};
use crate::wire::Frame;
use amq_protocol::protocol::{connection, AMQPClass};
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::sync::watch;
use tokio::time::timeout;

/// How often a connection held back by memory pressure looks again.
const PRESSURE_RECHECK: Duration = Duration::from_millis(20);

/// How long a closing peer gets to answer `connection.close`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) async fn run_session<R: AsyncRead + Unpin>(
    mut session: Session,
    reader: &mut FrameReader<R>,
    negotiated: &Negotiated,
    mut shutdown: watch::Receiver<bool>,
    mut closed: watch::Receiver<Option<String>>,
) {
    // A peer that sends nothing for two heartbeat intervals is dead.
    let read_timeout = match negotiated.heartbeat {
        0 => Duration::from_secs(u64::MAX / 4),
        hb => Duration::from_secs(hb as u64 * 2),
    };
    let mut durable = session.durable_positions();
    let mut defs = session.defs_positions();
    let window = session.tx.window();
    let mut alarm = session.alarm();
    let mut told_blocked = false;
    loop {
        loop {
            match reader.try_frame() {
                Ok(Some(frame)) => match session.handle_frame(frame) {
                    Ok(true) => {}
                    // The client closed (its close is answered and released in the core).
                    Ok(false) => return reader.drain(CLOSE_TIMEOUT).await,
                    Err(err) => {
                        session.flush_confirms();
                        return close_with_error(session, reader, err).await;
                    }
                },
                Ok(None) => break,
                Err(err) => return close_with_error(session, reader, err).await,
            }
        }
        session.flush_confirms();
        if let Some(err) = session.take_failure() {
            return close_with_error(session, reader, err).await;
        }
        // A resource alarm (or memory pressure since the last look) stops reading from
        // connections that publish.
        let pressed = session.pressure.over();
        let blocked = session.published && (alarm.borrow().is_some() || pressed);
        if blocked != told_blocked && negotiated.blocked_notify {
            let method = if blocked {
                let reason = alarm.borrow().clone().unwrap_or_else(|| "memory".into());
                connection::AMQPMethod::Blocked(connection::Blocked {
                    reason: format!("low on {reason}").into(),
                })
            } else {
                connection::AMQPMethod::Unblocked(connection::Unblocked {})
            };
            let _ = session
                .tx
                .send(Outbound::Method(0, AMQPClass::Connection(method)));
            told_blocked = blocked;
        }
        let waiting = session.waiting();
        tokio::select! {
            read = timeout(read_timeout, reader.fill()), if !blocked => match read {
                Ok(Ok(n)) if n > 0 => session.pressure.note_read(n),
                Ok(_) => return,
                Err(_) => {
                    tracing::info!(conn = session.conn, "missed heartbeats, closing connection");
                    return;
                }
            },
            _ = changed(&mut durable), if waiting => {}
            _ = changed(&mut defs), if waiting => {}
            // The socket took what was queued: deliveries held back for it go again.
            _ = window.drained() => session.resume_deliveries(),
            // An alarm that comes on while a publisher is idle is announced at once.
            _ = alarm.changed(), if session.published => {}
            _ = tokio::time::sleep(PRESSURE_RECHECK), if blocked && pressed => {}
            _ = shutdown.changed() => {
                let err = AmqpError::new(
                    code::CONNECTION_FORCED,
                    "broker forced connection closure with reason 'shutdown'",
                );
                return close_with_error(session, reader, err).await;
            }
            // An operator closed it (the management API).
            Ok(()) = closed.changed() => {
                let reason = closed.borrow().clone().unwrap_or_default();
                let err = AmqpError::new(code::CONNECTION_FORCED, reason);
                return close_with_error(session, reader, err).await;
            }
        }
    }
}

/// Waits for a durable position (the log's, or the definitions store's) to move.
async fn changed<T>(durable: &mut Option<watch::Receiver<T>>) {
    match durable {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Sends `connection.close` and waits (bounded) for `close-ok`, ignoring everything else.
async fn close_with_error<R: AsyncRead + Unpin>(
    session: Session,
    reader: &mut FrameReader<R>,
    err: AmqpError,
) {
    tracing::info!(conn = session.conn, error = %err, "closing connection");
    session.close_core();
    let _ = session.tx.send(Outbound::Method(0, err.connection_close()));
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Ok(Some(frame)) = reader.next_frame().await {
            match frame {
                Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {
                    break
                }
                // Both sides closed at once: each answers the other's close.
                Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                    let _ = session.tx.send(Outbound::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    ));
                    break;
                }
                _ => {}
            }
        }
    })
    .await;
}
