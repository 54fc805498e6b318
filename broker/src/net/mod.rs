//! The network side: a listener, one task pair (reader + writer) per connection, graceful
//! shutdown, and `Broker`, the handle to a running broker (also for embedding in tests).

mod alarm;
mod auth;
mod connection;
mod feed;
mod handshake;
mod publisher;
mod reader;
mod session;
mod subscriber;
mod writer;

pub(crate) use alarm::default_memory_high_watermark;
pub use auth::same_secret;
pub use feed::feed_frames;
pub use publisher::{Delivered, PublishError, Publisher};
pub use subscriber::Subscription;

use crate::config::BrokerConfig;
use crate::core::declare::ExchangeSpec;
use crate::core::{ChanKey, Core, Outbound, Outlet, Peer, Protocol};
use crate::error::{AmqpError, BrokerError};
use crate::store::definitions::Definitions;
use crate::store::MessageLog;
use crate::wire::PROTOCOL_HEADER;
use handshake::HandshakeError;
use reader::FrameReader;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// How long a client has to complete the handshake (RabbitMQ's default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Message bytes a connection may have queued for its socket before the broker stops
/// delivering to it until the socket has taken half of them (a client that does not read
/// cannot make the broker hold more).
pub(crate) const OUTLET_BUDGET: u64 = 4 * 1024 * 1024;

/// How often queue TTLs and `x-expires` are checked.
const TICK: Duration = Duration::from_millis(50);

/// State shared by every connection.
pub struct Shared {
    core: Mutex<Core>,
    pub config: BrokerConfig,
    /// Why publishers are blocked, while they are (a resource alarm).
    pub alarm: watch::Receiver<Option<String>>,
    /// An early estimate of memory use between alarm checks.
    pub pressure: Arc<alarm::Pressure>,
    /// AMQP connections past their handshake (for `connection_max`).
    pub amqp_connections: AtomicUsize,
}

impl Shared {
    /// The core, even if a thread panicked while holding it (its state stays consistent:
    /// every core method leaves it valid before returning).
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running broker.
pub struct Broker {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Broker {
    /// Binds the AMQP listener (port 0 picks a free port) and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let mut core = Core::new(config.limits.clone());
        if let Some(dir) = &config.data_dir {
            open_store(&mut core, dir, config.segment_bytes)?;
        }
        let boot = ChanKey {
            conn: core.register_connection(Outlet::new(0).0, Peer::in_process()),
            channel: 0,
        };
        core.open_channel(boot);
        for decl in &config.exchanges {
            core.exchange_declare(
                boot,
                ExchangeSpec {
                    name: decl.name.clone(),
                    kind: decl.kind.clone(),
                    durable: true,
                    ..Default::default()
                },
            )
            .map_err(|source| BrokerError::Exchange {
                name: decl.name.clone(),
                source,
            })?;
        }
        core.close_connection(boot.conn);
        let listeners = config.amqp_listen.bind().await?;
        let addrs = config.amqp_listen.local_addrs(&listeners)?;
        let (alarm_tx, alarm) = watch::channel(None);
        let alarm_config = alarm::AlarmConfig {
            memory_high_watermark: config.memory_high_watermark,
            disk_free_limit: config.disk_free_limit,
            data_dir: config.data_dir.clone(),
            log: core.log_writer(),
        };
        let pressure = Arc::new(alarm::Pressure::new(config.memory_high_watermark));
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            config,
            alarm,
            pressure: pressure.clone(),
            amqp_connections: AtomicUsize::new(0),
        });
        if shared.config.data_dir.is_some() {
            let weak = Arc::downgrade(&shared);
            shared
                .lock()
                .start_pager(Box::new(move |paged| {
                    if let Some(shared) = weak.upgrade() {
                        shared.lock().paged(paged);
                    }
                }))
                .map_err(|e| BrokerError::Thread("pager", e))?;
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let servers = listeners
            .into_iter()
            .map(|l| tokio::spawn(accept_loop(l, shared.clone(), shutdown_rx.clone())))
            .collect();
        tokio::spawn(ticker(shared.clone(), shutdown_rx.clone()));
        alarm::start(alarm_config, alarm_tx, pressure, shutdown_rx)
            .map_err(|e| BrokerError::Thread("alarm", e))?;
        Ok(Broker {
            addrs,
            shared,
            shutdown,
            servers,
        })
    }

    /// The address the (first) AMQP listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address the AMQP listeners are bound to.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// A publisher inside the process (the gateway's and speech's way in).
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.shared.clone())
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Closes every connection with 320 CONNECTION_FORCED, waits for them to finish, and
    /// makes the message log durable.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        self.shared.lock().close_store();
    }
}

/// Opens the definitions database and the message log under `dir` and loads them.
fn open_store(
    core: &mut Core,
    dir: &std::path::Path,
    segment_bytes: u64,
) -> Result<(), BrokerError> {
    std::fs::create_dir_all(dir).map_err(|source| BrokerError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let defs = Definitions::open(&dir.join("definitions.redb"))?;
    let messages = dir.join("messages");
    let (log, recovery) =
        MessageLog::open(&messages, segment_bytes).map_err(|source| BrokerError::Log {
            path: messages,
            source,
        })?;
    core.restore(defs, log, recovery)
}

/// Runs time-driven expiry until shutdown.
async fn ticker(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = interval.tick() => shared.lock().tick(),
            _ = shutdown.changed() => return,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve(stream, peer, shared.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Serves one TCP connection from protocol header to close.
async fn serve(
    mut stream: TcpStream,
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
    let (rd, wr) = stream.into_split();
    let (tx, rx) = Outlet::new(OUTLET_BUDGET);
    let writer = tokio::spawn(writer::run_writer(wr, rx, tx.window()));
    let mut reader = FrameReader::new(rd, shared.config.frame_max);
    match timeout(
        HANDSHAKE_TIMEOUT,
        handshake::handshake(&shared, &mut reader, &tx, peer.ip()),
    )
    .await
    {
        Ok(Ok(negotiated)) => {
            shared.amqp_connections.fetch_add(1, Ordering::Relaxed);
            let who = Peer {
                user: negotiated.user.clone(),
                vhost: negotiated.vhost.clone(),
                protocol: Protocol::Amqp091,
                addr: Some(peer),
                cancel_notify: negotiated.cancel_notify,
            };
            let session =
                session::Session::new(shared.clone(), tx.clone(), who, negotiated.channel_max);
            let conn = session.conn;
            tracing::debug!(conn, %peer, user = %negotiated.user, "connection opened");
            connection::run_session(session, &mut reader, &negotiated, shutdown).await;
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
