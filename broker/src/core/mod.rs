//! The broker's state as plain data and state machines: exchanges, bindings, queues, consumers,
//! acknowledgements. No sockets, no async: the network layer calls these methods under one lock
//! and the core writes what each connection must send to that connection's outlet, in order.

pub(crate) mod access;
pub(crate) mod args;
pub(crate) mod channel;
pub mod clock;
mod deadletter;
mod durable;
pub(crate) mod exchange;
mod expiry;
pub(crate) mod headers;
pub(crate) mod inspect;
pub(crate) mod queue;
mod ready;
pub(crate) mod stats;
pub mod topic;

pub(crate) mod declare;
pub(crate) mod deliver;
mod lifecycle;
mod outbound;
mod paging;
pub(crate) mod policy;
pub(crate) mod publish;
mod spill;
mod vhost;

#[cfg(test)]
mod tests;

pub(crate) use crate::message::Message;
pub(crate) use channel::ChanKey;
pub(crate) use exchange::Destination;
pub(crate) use outbound::{Outbound, Outlet, Window};
pub(crate) use vhost::VHost;

use crate::store::{DefsWriter, LogWriter, MessageLog, Pager};
pub(crate) use crate::Map;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub(crate) type ConnId = u64;

/// Limits the core enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message body accepted, in bytes.
    pub max_message_size: u64,
    /// Past this much memory held by ready messages (bodies, and per message what its body
    /// does not count: `queue::HELD_OVERHEAD`), persistent messages on durable queues keep
    /// only their place in the queue; their bodies are read back from the log.
    pub resident_bytes: u64,
    /// Most queues in one vhost (RabbitMQ's vhost limit `max-queues`); None: no limit.
    pub max_queues: Option<usize>,
    /// Most consumers on one channel (RabbitMQ's `consumer_max_per_channel`); None: no limit.
    pub consumer_max_per_channel: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 128 * 1024 * 1024,
            resident_bytes: 256 * 1024 * 1024,
            max_queues: None,
            consumer_max_per_channel: None,
        }
    }
}

/// Who a connection is, in no protocol's terms: every protocol registers its connections
/// with the core this way, and the core's operations act for this user in this vhost.
#[derive(Debug, Clone)]
pub struct Peer {
    pub user: String,
    pub vhost: String,
    pub protocol: Protocol,
    /// The client's address (none for in-process connections).
    pub addr: Option<std::net::SocketAddr>,
    /// The client wants to hear when the broker ends one of its consumers.
    pub cancel_notify: bool,
    /// What the user may do in the vhost.
    pub access: access::Access,
    /// What the management API shows of the connection, and its way to close it.
    pub details: Arc<Details>,
}

/// A connection as the management API shows it, and the switch an operator closes it with.
#[derive(Debug)]
pub struct Details {
    /// RabbitMQ's connection name: `client address -> server address`.
    pub name: String,
    /// The client's properties (`connection.start-ok`), as JSON.
    pub client_properties: serde_json::Value,
    /// When it connected (ms since the Unix epoch).
    pub connected_at: u64,
    pub frame_max: u32,
    pub heartbeat: u16,
    pub channel_max: u16,
    /// The server address the client connected to.
    pub local: Option<std::net::SocketAddr>,
    /// The connection runs over TLS.
    pub tls: bool,
    /// How the client logged in (`PLAIN`, `AMQPLAIN`, `EXTERNAL`).
    pub auth_mechanism: String,
    /// Set to a reason when an operator closes the connection; its task watches this.
    pub close: tokio::sync::watch::Sender<Option<String>>,
}

impl Default for Details {
    fn default() -> Self {
        Details {
            name: String::new(),
            client_properties: serde_json::Value::Object(Default::default()),
            connected_at: clock::now_ms(),
            frame_max: 0,
            heartbeat: 0,
            channel_max: 0,
            local: None,
            tls: false,
            auth_mechanism: "PLAIN".into(),
            close: tokio::sync::watch::channel(None).0,
        }
    }
}

impl Peer {
    /// The in-process publisher and subscriptions (the gateway and speech), in vhost `/`.
    pub(crate) fn in_process() -> Peer {
        Peer {
            user: "bloodbank".into(),
            vhost: "/".into(),
            protocol: Protocol::InProcess,
            addr: None,
            cancel_notify: false,
            access: access::Access::all("bloodbank", "/"),
            details: Arc::default(),
        }
    }
}

/// How a connection reaches the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Amqp091,
    Stomp,
    InProcess,
}

/// A connection as the core sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub outlet: Outlet,
    pub peer: Peer,
}

#[derive(Debug)]
pub struct Core {
    vhosts: Map<String, VHost>,
    channels: Map<ChanKey, channel::Channel>,
    conns: Map<ConnId, Conn>,
    next_conn: ConnId,
    pub limits: Limits,
    log: Option<MessageLog>,
    /// Transient messages past the memory budget (`spill.rs`).
    spill: Option<MessageLog>,
    defs: Option<Arc<DefsWriter>>,
    /// The number of the last definition change queued for the writer.
    defs_seq: u64,
    /// Reads paged-out messages back off the lock (absent: they are read in place).
    pager: Option<Pager<paging::PageFor>>,
    /// Milliseconds since the Unix epoch: the wall clock, or a test's.
    clock: fn() -> u64,
    /// Body bytes of ready messages held in memory, across all queues.
    resident: Arc<AtomicU64>,
    /// Message counters for the whole broker.
    totals: stats::Totals,
    /// Policies and operator policies of every vhost.
    policies: Vec<policy::Policy>,
    operator_policies: Vec<policy::Policy>,
}

impl Core {
    /// A core with the default vhost `/` and its standard exchanges.
    pub fn new(limits: Limits) -> Core {
        let mut vhosts = Map::default();
        vhosts.insert("/".to_string(), VHost::new("/"));
        Core {
            vhosts,
            channels: Map::default(),
            conns: Map::default(),
            next_conn: 1,
            limits,
            log: None,
            spill: None,
            defs: None,
            defs_seq: 0,
            pager: None,
            clock: clock::now_ms,
            resident: Arc::default(),
            totals: stats::Totals::default(),
            policies: Vec::new(),
            operator_policies: Vec::new(),
        }
    }

    /// A core whose time is `clock` (tests drive TTLs and expiry with it).
    pub fn with_clock(limits: Limits, clock: fn() -> u64) -> Core {
        Core {
            clock,
            ..Core::new(limits)
        }
    }

    /// Now, in milliseconds since the Unix epoch, by the core's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The message log's writer (durable positions, sync requests), when there is a log.
    pub fn log_writer(&self) -> Option<Arc<LogWriter>> {
        self.log.as_ref().map(|l| l.writer().clone())
    }

    /// The position after the last log record, if there is a log.
    pub fn log_position(&self) -> Option<u64> {
        self.log.as_ref().map(|l| l.lsn())
    }

    /// Hands buffered log records to the writer (before asking for a sync; periodically).
    pub fn flush_log(&mut self) {
        for log in self.stores() {
            log.flush();
        }
    }

    /// Makes everything logged durable and closes the log (at shutdown).
    pub fn close_store(&mut self) {
        // The pager ends after the request in hand (not waited for: it may be waiting for
        // this very lock to hand its answer in).
        self.pager = None;
        for mut log in self.log.take().into_iter().chain(self.spill.take()) {
            if let Err(e) = log.close() {
                tracing::error!(error = %e, "closing the message log failed");
            }
        }
        if let Some(defs) = self.defs.take() {
            defs.stop();
        }
    }

    /// The definitions store's writer (commit positions), when definitions are stored.
    pub fn defs_writer(&self) -> Option<Arc<DefsWriter>> {
        self.defs.clone()
    }

    /// The number of the last definition change queued: a reply to a method that changed
    /// durable definitions waits until the writer has settled this far.
    pub fn defs_seq(&self) -> u64 {
        self.defs_seq
    }

    pub fn has_vhost(&self, name: &str) -> bool {
        self.vhosts.contains_key(name)
    }

    pub fn vhost(&self, name: &str) -> Option<&VHost> {
        self.vhosts.get(name)
    }
}

/// 403 ACCESS_REFUSED unless the user of `ck`'s connection has `perm` on the resource. A free
/// function over the connections, so that it can be called while a vhost is borrowed.
pub(crate) fn permitted(
    conns: &Map<ConnId, Conn>,
    ck: ChanKey,
    perm: access::Perm,
    kind: access::Resource,
    name: &str,
) -> Result<(), crate::error::AmqpError> {
    match conns.get(&ck.conn) {
        Some(conn) => conn.peer.access.check(perm, kind, name),
        None => Ok(()),
    }
}

/// 403 unless the topic permission (if any) of topic exchange `exchange` lets the user of
/// `ck`'s connection use routing key `key`; other exchange types are not checked.
pub(crate) fn topic_permitted(
    core: &Core,
    ck: ChanKey,
    perm: access::Perm,
    exchange: &str,
    key: &str,
) -> Result<(), crate::error::AmqpError> {
    let Some(conn) = core.conns.get(&ck.conn) else {
        return Ok(());
    };
    if !conn.peer.access.has_topics() {
        return Ok(());
    }
    let topic = core
        .vhosts
        .get(&conn.peer.vhost)
        .and_then(|v| v.exchanges.get(exchange))
        .is_some_and(|e| e.kind == exchange::ExchangeKind::Topic);
    match topic {
        true => conn.peer.access.check_topic(perm, exchange, key),
        false => Ok(()),
    }
}
