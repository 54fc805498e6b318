//! Connections and channels coming and going, and the removal of queues and exchanges with
//! everything that depends on them (bindings, consumers, auto-delete cascades).

use super::channel::Channel;
use super::exchange::Destination;
use super::{ChanKey, Conn, ConnId, Core, Outbound, Outlet, Peer, Protocol};
use rand::distr::{Alphanumeric, SampleString};

/// A server-generated name such as `amq.gen-Xb4...` or `amq.ctag-...`.
pub(crate) fn generated_name(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 22)
    )
}

impl Core {
    pub fn register_connection(&mut self, outlet: Outlet, peer: Peer) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        if peer.protocol != Protocol::InProcess {
            self.totals.connections_opened += 1;
        }
        self.conns.insert(id, Conn { outlet, peer });
        id
    }

    /// Opens a channel of a registered connection, in the connection's vhost.
    pub fn open_channel(&mut self, ck: ChanKey) {
        let Some(conn) = self.conns.get(&ck.conn) else {
            return;
        };
        if conn.peer.protocol != Protocol::InProcess {
            self.totals.channels_opened += 1;
        }
        self.channels
            .insert(ck, Channel::new(conn.peer.vhost.as_str()));
    }

    /// Closes a channel: its consumers go away and its unacknowledged messages are requeued.
    /// An auto-delete queue goes when its last consumer does, not when a channel that only
    /// fetched from it (`basic.get`) closes, as in RabbitMQ.
    pub fn close_channel(&mut self, ck: ChanKey) {
        let Some(channel) = self.channels.remove(&ck) else {
            return;
        };
        if self.is_remote(ck.conn) {
            self.totals.channels_closed += 1;
        }
        let vname = channel.vhost.clone();
        let mut requeued: Vec<String> = Vec::new();
        let mut lost_consumers: Vec<String> = Vec::new();
        let mut over_limit = Vec::new();
        if let Some(vhost) = self.vhosts.get_mut(&*vname) {
            // Requeue newest first so each lands in front of the ones after it.
            for (_, u) in channel.unacked.into_iter().rev() {
                if let Some(q) = vhost.queues.get_mut(&u.queue) {
                    over_limit.extend(q.requeue(u.entry).map(|e| (u.queue.clone(), e)));
                    requeued.push(u.queue);
                }
            }
            for (tag, consumer) in channel.consumers {
                if let Some(q) = vhost.queues.get_mut(&consumer.queue) {
                    q.remove_consumer(ck, &tag);
                    lost_consumers.push(consumer.queue);
                }
            }
        }
        self.discard_over_limit(&vname, over_limit);
        lost_consumers.sort();
        lost_consumers.dedup();
        requeued.retain(|q| !lost_consumers.contains(q));
        requeued.sort();
        requeued.dedup();
        for q in lost_consumers {
            if !self.auto_delete_queue_if_unused(&vname, &q) {
                self.dispatch(&vname, &q);
            }
        }
        for q in requeued {
            self.dispatch(&vname, &q);
        }
    }

    /// Closes every channel of a connection and deletes the queues it exclusively owned.
    /// The open channels of a connection, in channel order.
    pub(super) fn channels_of(&self, conn: ConnId) -> Vec<ChanKey> {
        let mut keys: Vec<ChanKey> = self
            .channels
            .keys()
            .filter(|k| k.conn == conn)
            .copied()
            .collect();
        keys.sort();
        keys
    }

    pub fn close_connection(&mut self, conn: ConnId) {
        for ck in self.channels_of(conn) {
            self.close_channel(ck);
        }
        let owned: Vec<(String, String)> = self
            .vhosts
            .values()
            .flat_map(|v| {
                v.queues
                    .values()
                    .filter(|q| q.exclusive_owner == Some(conn))
                    .map(|q| (v.name.clone(), q.name.clone()))
            })
            .collect();
        for (vname, q) in owned {
            self.remove_queue(&vname, &q);
        }
        if self.is_remote(conn) {
            self.totals.connections_closed += 1;
        }
        self.conns.remove(&conn);
        // What the connection acknowledged reaches the kernel before it is gone.
        self.flush_log();
    }

    /// Gives every network connection its user's permissions as they are now (after a
    /// permission changed): the next operation is checked against them, as in RabbitMQ.
    pub(crate) fn refresh_access(
        &mut self,
        access: impl Fn(&str, &str) -> Option<super::access::Access>,
    ) {
        for conn in self.conns.values_mut() {
            if conn.peer.protocol == Protocol::InProcess {
                continue;
            }
            let (user, vhost) = (&conn.peer.user, &conn.peer.vhost);
            conn.peer.access =
                access(user, vhost).unwrap_or_else(|| super::access::Access::none(user, vhost));
        }
    }

    /// Whether a connection came over the network (not the gateway's or speech's own).
    fn is_remote(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.peer.protocol != Protocol::InProcess)
    }

    /// Deletes an auto-delete queue whose last consumer has gone; returns whether it did.
    pub(super) fn auto_delete_queue_if_unused(&mut self, vname: &str, name: &str) -> bool {
        let unused = self
            .vhosts
            .get(vname)
            .and_then(|v| v.queues.get(name))
            .is_some_and(|q| q.auto_delete && q.consumer_count() == 0);
        if unused {
            self.remove_queue(vname, name);
        }
        unused
    }

    /// Removes a queue, its bindings and its consumers (who are told, if they asked to be).
    /// Returns how many ready messages it held.
    pub(super) fn remove_queue(&mut self, vname: &str, name: &str) -> usize {
        let Some(vhost) = self.vhosts.get_mut(vname) else {
            return 0;
        };
        let Some(queue) = vhost.queues.remove(name) else {
            return 0;
        };
        self.totals.queues_deleted += 1;
        let dest = Destination::Queue(name.to_string());
        let mut sources = Vec::new();
        for exchange in vhost.exchanges.values_mut() {
            if exchange.unbind_destination(&dest) > 0 {
                sources.push(exchange.name.clone());
            }
        }
        let mut queue = queue;
        for (ck, _) in queue.take_getters() {
            let asked = self
                .channels
                .get_mut(&ck)
                .is_some_and(|ch| ch.take_waiting_get(name));
            if asked {
                self.send_get_empty(ck);
            }
        }
        for consumer in queue.consumers() {
            if let Some(ch) = self.channels.get_mut(&consumer.channel) {
                ch.consumers.remove(&consumer.tag);
            }
            let Some(conn) = self.conns.get(&consumer.channel.conn) else {
                continue;
            };
            if conn.peer.cancel_notify {
                let _ = conn.outlet.send(Outbound::Cancelled {
                    channel: consumer.channel.channel,
                    consumer_tag: consumer.tag.clone(),
                });
            }
        }
        if queue.durable {
            self.unpersist(vname, "queue", name);
        }
        for log in self.stores() {
            if let Err(e) = log.drop_queue(vname, name) {
                tracing::error!(error = %e, "writing to the message log failed");
            }
        }
        for source in sources {
            self.auto_delete_exchange_if_unused(vname, &source);
        }
        queue.len()
    }

    /// Removes an exchange and the bindings that lead to it.
    pub(super) fn remove_exchange(&mut self, vname: &str, name: &str) {
        let Some(vhost) = self.vhosts.get_mut(vname) else {
            return;
        };
        let Some(removed) = vhost.exchanges.remove(name) else {
            return;
        };
        let dest = Destination::Exchange(name.to_string());
        let mut sources = Vec::new();
        for exchange in vhost.exchanges.values_mut() {
            if exchange.unbind_destination(&dest) > 0 {
                sources.push(exchange.name.clone());
            }
        }
        if removed.durable {
            self.unpersist(vname, "exchange", name);
        }
        for source in sources {
            self.auto_delete_exchange_if_unused(vname, &source);
        }
    }

    /// An auto-delete exchange goes away when its last binding does.
    pub(super) fn auto_delete_exchange_if_unused(&mut self, vname: &str, name: &str) {
        let unused = self
            .vhosts
            .get(vname)
            .and_then(|v| v.exchanges.get(name))
            .is_some_and(|e| e.auto_delete && e.bindings().is_empty());
        if unused {
            self.remove_exchange(vname, name);
        }
    }
}
