//! STOMP 1.0-1.2 with RabbitMQ's STOMP semantics, over TCP and over WebSocket (`ws`, as
//! RabbitMQ's Web-STOMP): `frame` splits and writes frames, `destination` maps destinations
//! onto exchanges and queues, `headers` maps headers to properties and back, `session` drives
//! the core with `subscribe` and `transaction` beside it, and one task per connection (`run`)
//! reads, writes and keeps heart-beats over either transport.

mod destination;
mod frame;
mod headers;
mod session;
mod subscribe;
mod transaction;
mod waiting;
mod ws;

pub(crate) use frame::parse as parse_frame;
pub(super) use ws::serve_websocket;

use super::stream::Stream;
use super::{Shared, OUTLET_BUDGET};
use crate::core::{Outbound, Outlet};
use crate::store::Progress;
use bytes::BytesMut;
use frame::{Frame, Parsed};
use session::Session;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use waiting::{NotStored, Waiting};

/// How long a client has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most body bytes of one frame.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// A client that promised heart-beats is gone after this many intervals of silence.
const MISSED_BEATS: u32 = 3;

/// A byte stream STOMP frames travel over.
pub(super) trait Transport {
    /// Appends what arrived to `buf`; 0: the peer is gone. Cancel-safe.
    async fn read(&mut self, buf: &mut BytesMut) -> std::io::Result<usize>;
    /// Sends one frame's bytes (or a heart-beat's).
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    async fn close(&mut self);
}

impl<S: Stream> Transport for S {
    async fn read(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        self.read_buf(buf).await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await
    }

    async fn close(&mut self) {
        let _ = timeout(Duration::from_secs(1), self.shutdown()).await;
    }
}

/// One TCP (or TLS) connection from the first byte to close.
pub(super) async fn serve<S: Stream>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let local = stream.local_addr();
    let tls = stream.is_tls();
    run(stream, Origin { peer, local, tls }, shared, shutdown).await;
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin {
    pub peer: SocketAddr,
    /// The server address it reached.
    pub local: Option<SocketAddr>,
    pub tls: bool,
}

/// One STOMP connection over any transport, from CONNECT to close.
pub(super) async fn run<T: Transport>(
    mut stream: T,
    origin: Origin,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (outlet, mut outbox) = Outlet::new(OUTLET_BUDGET);
    let window = outlet.window();
    let mut session = Session::new(shared, outlet, origin);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = BytesMut::new();
    let opened = Instant::now();
    let mut last_read = Instant::now();
    let mut last_write = Instant::now();
    let mut closed: Option<watch::Receiver<Option<String>>> = None;
    let mut waiting = Waiting::default();
    let mut progress: Option<watch::Receiver<Progress>> = None;
    // The message log's writer, taken from the core at the first persistent SEND.
    let mut writer: Option<Arc<crate::store::LogWriter>> = None;
    let mut closing = false;
    'conn: loop {
        // Frames already buffered first, while there is room for replies that must wait.
        while !closing && !waiting.is_full() {
            let f = match frame::parse(&mut buf, MAX_BODY, session.escapes()) {
                Ok(Some(Parsed::HeartBeat)) => continue,
                Ok(Some(Parsed::Frame(f))) => f,
                Ok(None) => break,
                Err(e) => {
                    let f = frame::error("Invalid frame", &e.to_string());
                    write(&mut stream, &mut out, &f, session.escapes()).await;
                    break 'conn;
                }
            };
            let step = session.handle(f);
            if closed.is_none() {
                closed = session.details.as_ref().map(|d| d.close.subscribe());
            }
            // A SEND's RECEIPT goes out after its message is on disk.
            if step.wait_for.is_some() && writer.is_none() {
                writer = session_core(&session).log_writer();
            }
            let wait_for = match (step.wait_for, &writer) {
                (Some(position), Some(writer)) => {
                    writer.request(position);
                    progress.get_or_insert_with(|| writer.subscribe());
                    Some(position)
                }
                _ => None,
            };
            closing = step.close;
            if let Some(frames) = waiting.admit(wait_for, step.frames) {
                for f in &frames {
                    if !write(&mut stream, &mut out, f, session.escapes()).await {
                        break 'conn;
                    }
                }
                last_write = Instant::now();
            }
        }
        if let Some(now) = progress.as_mut().map(|p| *p.borrow_and_update()) {
            let released = match waiting.release(&now) {
                Ok(frames) => frames,
                Err(NotStored) => {
                    let e = frame::error("not stored", "The message could not be written to disk");
                    write(&mut stream, &mut out, &e, session.escapes()).await;
                    break 'conn;
                }
            };
            for f in &released {
                if !write(&mut stream, &mut out, f, session.escapes()).await {
                    break 'conn;
                }
                last_write = Instant::now();
            }
        }
        if closing && waiting.is_empty() {
            break 'conn;
        }
        let beats = session.heart_beats;
        let send_beat = match beats.send {
            0 => Duration::MAX,
            ms => Duration::from_millis(ms).saturating_sub(last_write.elapsed()),
        };
        let silence = match (session.details.is_some(), beats.expect) {
            (false, _) => CONNECT_TIMEOUT.saturating_sub(opened.elapsed()),
            (true, 0) => Duration::MAX,
            (true, ms) => {
                (Duration::from_millis(ms) * MISSED_BEATS).saturating_sub(last_read.elapsed())
            }
        };
        tokio::select! {
            read = stream.read(&mut buf), if !closing && !waiting.is_full() => match read {
                Ok(n) if n > 0 => last_read = Instant::now(),
                _ => break 'conn,
            },
            Some(delivery) = outbox.recv() => {
                let bytes = delivery.content_bytes();
                let shutdown_asked = matches!(delivery, Outbound::Shutdown);
                if let Some(f) = session.outbound(delivery) {
                    if !write(&mut stream, &mut out, &f, session.escapes()).await {
                        break 'conn;
                    }
                    last_write = Instant::now();
                }
                window.written(bytes);
                if shutdown_asked {
                    break 'conn;
                }
            }
            _ = window.drained() => {
                if let Some(conn) = session.conn() {
                    session_core(&session).dispatch_connection(conn);
                }
            }
            _ = sleep(send_beat) => {
                if stream.write(b"\n").await.is_err() {
                    break 'conn;
                }
                last_write = Instant::now();
            }
            _ = sleep(silence) => break 'conn,
            Some(()) = changed(&mut progress), if !waiting.is_empty() => {}
            Some(()) = changed(&mut closed) => {
                let reason = closed
                    .as_ref()
                    .and_then(|c| c.borrow().clone())
                    .unwrap_or_default();
                let f = frame::error("Connection closed", &reason);
                write(&mut stream, &mut out, &f, session.escapes()).await;
                break 'conn;
            }
            _ = shutdown.changed() => {
                let f = frame::error("Server shutdown", "The broker is shutting down");
                write(&mut stream, &mut out, &f, session.escapes()).await;
                break 'conn;
            }
        }
    }
    session.close();
    stream.close().await;
}

/// Waits for a change (never, without a receiver: an operator's close before CONNECT, the
/// log's progress before the first persistent SEND).
async fn changed<T>(watched: &mut Option<watch::Receiver<T>>) -> Option<()> {
    match watched {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

fn session_core(session: &Session) -> std::sync::MutexGuard<'_, crate::core::Core> {
    session.shared().lock()
}

/// Writes one frame; false if the peer is gone (or has not read for 30 s).
async fn write<T: Transport>(stream: &mut T, out: &mut BytesMut, f: &Frame, escapes: bool) -> bool {
    out.clear();
    frame::encode(f, escapes, out);
    timeout(Duration::from_secs(30), stream.write(out))
        .await
        .is_ok_and(|r| r.is_ok())
}
