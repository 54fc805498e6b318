//! The broker's outside: `Broker`, the handle to a running broker (also for embedding in
//! tests), the state every connection shares, resource alarms, and the ways in: AMQP 0.9.1
//! over TCP (`amqp/`) and the in-process publisher and subscription.

mod admin;
mod alarm;
mod amqp;
mod auth;
mod listener;
mod publisher;
mod stomp;
mod stream;
mod subscriber;

pub use admin::{AckMode, Admin, AdminError, Got, Session, Taken};
pub(crate) use alarm::default_memory_high_watermark;
pub use amqp::feed_frames;
pub use auth::same_secret;
pub use publisher::{Delivered, PublishError, Publisher};
pub(crate) use stomp::parse_frame as stomp_parse;
pub use subscriber::Subscription;

use crate::config::BrokerConfig;
use crate::core::declare::ExchangeSpec;
use crate::core::{ChanKey, Core, Outlet, Peer};
use crate::error::BrokerError;
use crate::store::definitions::Definitions;
use crate::store::MessageLog;
use crate::users::Users;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::watch;

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
    /// Who may log in, and to which vhosts.
    pub(crate) users: RwLock<Users>,
    /// Failed logins per source address.
    pub(crate) logins: auth::LoginThrottle,
    /// Publishes confirmed to AMQP publishers (`basic.ack`).
    pub(crate) confirmed: std::sync::atomic::AtomicU64,
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
    /// Every listener's address by protocol as RabbitMQ names them (`amqp`, `amqp/ssl`,
    /// `stomp`, `stomp/ssl`, `http/web-stomp`, `https/web-stomp`).
    listeners: Vec<(&'static str, SocketAddr)>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Broker {
    /// Binds the AMQP listener (port 0 picks a free port) and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let mut core = Core::new(config.limits.clone());
        let users = match &config.data_dir {
            Some(dir) => open_store(&mut core, dir, config.segment_bytes)?,
            None => {
                let (user, permission) = Users::default_definitions();
                Users::from_defs(&[user], &[permission], &[])?
            }
        };
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
        let tls = config.tls.clone();
        let with_tls = |listen: &Option<crate::Listen>| listen.clone().filter(|_| tls.is_some());
        let others = [
            ("stomp", config.stomp_listen.clone()),
            ("http/web-stomp", config.stomp_ws_listen.clone()),
            ("amqp/ssl", with_tls(&config.amqps_listen)),
            ("stomp/ssl", with_tls(&config.stomps_listen)),
            ("https/web-stomp", with_tls(&config.stomp_wss_listen)),
        ];
        let mut bound = Vec::new();
        for (protocol, listen) in others {
            let Some(listen) = listen else { continue };
            let map = |source| BrokerError::OtherListen { protocol, source };
            let sockets = listen.bind().await.map_err(map)?;
            let local = listen.local_addrs(&sockets).map_err(map)?;
            bound.push((protocol, sockets, local));
        }
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
            users: RwLock::new(users),
            logins: Default::default(),
            confirmed: Default::default(),
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
        let mut servers: Vec<_> = listeners
            .into_iter()
            .map(|l| {
                let accept =
                    listener::accept_loop(l, shared.clone(), shutdown_rx.clone(), amqp::serve);
                tokio::spawn(accept)
            })
            .collect();
        let mut named: Vec<_> = addrs.iter().map(|a| ("amqp", *a)).collect();
        for (protocol, sockets, local) in bound {
            named.extend(local.into_iter().map(|a| (protocol, a)));
            for l in sockets {
                let (shared, stop) = (shared.clone(), shutdown_rx.clone());
                let tls = tls.clone();
                let server = match (protocol, tls) {
                    ("stomp", _) => {
                        tokio::spawn(listener::accept_loop(l, shared, stop, stomp::serve))
                    }
                    ("http/web-stomp", _) => {
                        tokio::spawn(stomp::serve_websocket(l, None, shared, stop))
                    }
                    ("amqp/ssl", Some(tls)) => {
                        tokio::spawn(listener::accept_tls_loop(l, tls, shared, stop, amqp::serve))
                    }
                    ("stomp/ssl", Some(tls)) => tokio::spawn(listener::accept_tls_loop(
                        l,
                        tls,
                        shared,
                        stop,
                        stomp::serve,
                    )),
                    (_, tls) => tokio::spawn(stomp::serve_websocket(l, tls, shared, stop)),
                };
                servers.push(server);
            }
        }

        tokio::spawn(ticker(shared.clone(), shutdown_rx.clone()));
        alarm::start(alarm_config, alarm_tx, pressure, shutdown_rx)
            .map_err(|e| BrokerError::Thread("alarm", e))?;
        Ok(Broker {
            addrs,
            listeners: named,
            shared,
            shutdown,
            servers,
        })
    }

    /// The address the (first) AMQP listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        let amqps = self.listening("amqp/ssl").first().copied();
        (self.addrs.first().copied().or(amqps)).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Every address the AMQP listeners are bound to.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every listener's protocol (as RabbitMQ names them: `amqp`, `amqp/ssl`, `stomp`,
    /// `stomp/ssl`, `http/web-stomp`, `https/web-stomp`) and address.
    pub fn listeners(&self) -> &[(&'static str, SocketAddr)] {
        &self.listeners
    }

    /// The addresses of one protocol's listeners (none when it is off).
    pub fn listening(&self, protocol: &str) -> Vec<SocketAddr> {
        (self.listeners.iter())
            .filter(|(p, _)| *p == protocol)
            .map(|(_, a)| *a)
            .collect()
    }

    /// A publisher inside the process (the gateway's and speech's way in).
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.shared.clone())
    }

    /// The broker as the management API sees and changes it.
    pub fn admin(&self) -> Admin {
        Admin::new(self.shared.clone())
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

/// Opens the definitions database and the message log under `dir` and loads them; returns the
/// users (RabbitMQ's default `guest` is stored first in a store that has none).
fn open_store(
    core: &mut Core,
    dir: &std::path::Path,
    segment_bytes: u64,
) -> Result<Users, BrokerError> {
    std::fs::create_dir_all(dir).map_err(|source| BrokerError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let defs = Definitions::open(&dir.join("definitions.redb"))?;
    let mut stored = defs.load()?;
    if stored.users.is_empty() {
        let (user, permission) = Users::default_definitions();
        defs.put_user(&user, &permission)?;
        (stored.users, stored.permissions) = (vec![user], vec![permission]);
    }
    let users = Users::from_defs(
        &stored.users,
        &stored.permissions,
        &stored.topic_permissions,
    )?;
    let messages = dir.join("messages");
    let (log, recovery) =
        MessageLog::open(&messages, segment_bytes).map_err(|source| BrokerError::Log {
            path: messages,
            source,
        })?;
    core.restore(defs, log, recovery)?;
    let spill = dir.join("spill");
    let spill_log =
        MessageLog::spill(&spill, segment_bytes).map_err(|source| BrokerError::Log {
            path: spill,
            source,
        })?;
    core.attach_spill(spill_log);
    Ok(users)
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
