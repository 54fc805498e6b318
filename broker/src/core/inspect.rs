//! What the management API and the metrics endpoint see of the core: plain copies of its
//! vhosts, exchanges, queues, bindings, connections, channels and consumers, taken under the
//! lock in one pass each.

use super::exchange::Destination;
use super::stats::{QueueStats, Totals};
use super::{Core, Details, Protocol};
use crate::store::json_args::table_to_json;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ExchangeView {
    pub vhost: String,
    pub name: String,
    pub kind: &'static str,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Value,
    pub policy: Option<String>,
}

#[derive(Debug, Clone)]
pub struct QueueView {
    pub vhost: String,
    pub name: String,
    /// "classic" or "quorum".
    pub kind: &'static str,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    pub arguments: Value,
    pub ready: u64,
    pub ready_bytes: u64,
    pub unacked: u64,
    pub unacked_bytes: u64,
    pub consumers: usize,
    pub stats: QueueStats,
    /// Last declare, consume or get (ms since the Unix epoch).
    pub last_used_ms: u64,
    pub policy: Option<String>,
    pub operator_policy: Option<String>,
    /// The settings the policy and operator policy give together.
    pub policy_definition: Value,
}

#[derive(Debug, Clone)]
pub struct BindingView {
    pub vhost: String,
    /// "" is the default exchange.
    pub source: String,
    pub destination: String,
    /// "queue" or "exchange".
    pub destination_type: &'static str,
    pub routing_key: String,
    pub arguments: Value,
}

#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub user: String,
    pub vhost: String,
    pub protocol: Protocol,
    pub addr: Option<SocketAddr>,
    pub details: Arc<Details>,
    pub channels: usize,
}

#[derive(Debug, Clone)]
pub struct ChannelView {
    /// The connection's name.
    pub connection: String,
    pub number: u16,
    pub user: String,
    pub vhost: String,
    pub consumers: usize,
    pub unacked: usize,
    pub prefetch: u16,
    pub global_prefetch: u16,
}

#[derive(Debug, Clone)]
pub struct ConsumerView {
    pub vhost: String,
    pub queue: String,
    pub tag: String,
    /// The connection's name.
    pub connection: String,
    pub channel: u16,
    pub ack_required: bool,
    pub prefetch: u16,
    pub exclusive: bool,
}

impl Core {
    /// Message counters for the whole broker.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub fn vhost_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.vhosts.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn exchange_views(&self) -> Vec<ExchangeView> {
        let mut out: Vec<ExchangeView> = self
            .vhosts
            .values()
            .flat_map(|v| {
                v.exchanges.values().map(|e| ExchangeView {
                    vhost: v.name.clone(),
                    name: e.name.clone(),
                    kind: e.kind.as_str(),
                    durable: e.durable,
                    auto_delete: e.auto_delete,
                    internal: e.internal,
                    arguments: table_to_json(&e.arguments),
                    policy: e.policy.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
        out
    }

    pub fn queue_views(&self) -> Vec<QueueView> {
        // Unacknowledged messages live on channels; count them per queue in one pass.
        let mut unacked: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
        for ch in self.channels.values() {
            for u in ch.unacked.values() {
                let n = unacked.entry((&ch.vhost, &u.queue)).or_default();
                n.0 += 1;
                n.1 += u.entry.size;
            }
        }
        let mut out: Vec<QueueView> = self
            .vhosts
            .values()
            .flat_map(|v| {
                let unacked = &unacked;
                v.queues.values().map(move |q| {
                    let (n, bytes) = unacked
                        .get(&(v.name.as_str(), q.name.as_str()))
                        .copied()
                        .unwrap_or_default();
                    QueueView {
                        vhost: v.name.clone(),
                        name: q.name.clone(),
                        kind: q.kind().as_str(),
                        durable: q.durable,
                        auto_delete: q.auto_delete,
                        exclusive: q.exclusive_owner.is_some(),
                        arguments: table_to_json(&q.arguments),
                        ready: q.len() as u64,
                        ready_bytes: q.ready_bytes(),
                        unacked: n,
                        unacked_bytes: bytes,
                        consumers: q.consumer_count(),
                        stats: q.stats,
                        last_used_ms: q.last_used_ms,
                        policy: q.policy.clone(),
                        operator_policy: q.operator_policy.clone(),
                        policy_definition: Value::Object(q.policy_definition.clone()),
                    }
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
        out
    }

    /// Every binding, the default exchange's implicit ones included (as RabbitMQ lists them).
    pub fn binding_views(&self) -> Vec<BindingView> {
        let mut out = Vec::new();
        for v in self.vhosts.values() {
            let mut queues: Vec<&String> = v.queues.keys().collect();
            queues.sort();
            for q in queues {
                out.push(BindingView {
                    vhost: v.name.clone(),
                    source: String::new(),
                    destination: q.clone(),
                    destination_type: "queue",
                    routing_key: q.clone(),
                    arguments: Value::Object(Default::default()),
                });
            }
            let mut exchanges: Vec<_> = v
                .exchanges
                .values()
                .filter(|e| !e.name.is_empty())
                .collect();
            exchanges.sort_by(|a, b| a.name.cmp(&b.name));
            for e in exchanges {
                for b in e.bindings() {
                    let (destination, destination_type) = match &b.destination {
                        Destination::Queue(q) => (q.clone(), "queue"),
                        Destination::Exchange(x) => (x.clone(), "exchange"),
                    };
                    out.push(BindingView {
                        vhost: v.name.clone(),
                        source: e.name.clone(),
                        destination,
                        destination_type,
                        routing_key: b.key.clone(),
                        arguments: table_to_json(&b.arguments),
                    });
                }
            }
        }
        out
    }

    /// Network connections (not the gateway's and speech's own).
    pub fn connection_views(&self) -> Vec<ConnectionView> {
        let mut channels: HashMap<super::ConnId, usize> = HashMap::new();
        for ck in self.channels.keys() {
            *channels.entry(ck.conn).or_default() += 1;
        }
        let mut out: Vec<ConnectionView> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer.protocol != Protocol::InProcess)
            .map(|(id, c)| ConnectionView {
                user: c.peer.user.clone(),
                vhost: c.peer.vhost.clone(),
                protocol: c.peer.protocol,
                addr: c.peer.addr,
                details: c.peer.details.clone(),
                channels: channels.get(id).copied().unwrap_or(0),
            })
            .collect();
        out.sort_by(|a, b| a.details.name.cmp(&b.details.name));
        out
    }

    pub fn channel_views(&self) -> Vec<ChannelView> {
        let mut out: Vec<ChannelView> = self
            .channels
            .iter()
            .filter_map(|(ck, ch)| {
                let conn = self.conns.get(&ck.conn)?;
                (conn.peer.protocol != Protocol::InProcess).then(|| ChannelView {
                    connection: conn.peer.details.name.clone(),
                    number: ck.channel,
                    user: conn.peer.user.clone(),
                    vhost: ch.vhost.to_string(),
                    consumers: ch.consumers.len(),
                    unacked: ch.unacked.len(),
                    prefetch: ch.consumer_prefetch,
                    global_prefetch: ch.channel_prefetch,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.connection, a.number).cmp(&(&b.connection, b.number)));
        out
    }

    pub fn consumer_views(&self) -> Vec<ConsumerView> {
        let mut out = Vec::new();
        for v in self.vhosts.values() {
            for q in v.queues.values() {
                for c in q.consumers() {
                    let (Some(ch), Some(conn)) = (
                        self.channels.get(&c.channel),
                        self.conns.get(&c.channel.conn),
                    ) else {
                        continue;
                    };
                    let Some(consumer) = ch.consumers.get(&c.tag) else {
                        continue;
                    };
                    if conn.peer.protocol == Protocol::InProcess {
                        continue;
                    }
                    out.push(ConsumerView {
                        vhost: v.name.clone(),
                        queue: q.name.clone(),
                        tag: c.tag.to_string(),
                        connection: conn.peer.details.name.clone(),
                        channel: c.channel.channel,
                        ack_required: !consumer.no_ack,
                        prefetch: consumer.prefetch,
                        exclusive: c.exclusive,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.vhost, &a.queue, &a.tag).cmp(&(&b.vhost, &b.queue, &b.tag)));
        out
    }
}
