//! A virtual host: a namespace of exchanges and queues.

use super::exchange::{Exchange, ExchangeKind};
use super::queue::Queue;
use super::Map;
use crate::store::definitions::{DefOp, VhostDef};
use amq_protocol::types::FieldTable;

#[derive(Debug)]
pub struct VHost {
    pub name: String,
    pub exchanges: Map<String, Exchange>,
    pub queues: Map<String, Queue>,
}

impl VHost {
    /// A vhost with the default exchange and the `amq.*` exchanges every broker has.
    pub fn new(name: &str) -> VHost {
        let mut exchanges = Map::default();
        for (ename, kind) in [
            ("", ExchangeKind::Direct),
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            exchanges.insert(
                ename.to_string(),
                Exchange::new(ename, kind, true, false, false, FieldTable::default()),
            );
        }
        VHost {
            name: name.to_string(),
            exchanges,
            queues: Map::default(),
        }
    }
}

impl super::Core {
    /// Creates a vhost (stored); false if it exists.
    pub(crate) fn add_vhost(&mut self, name: &str) -> bool {
        if self.vhosts.contains_key(name) {
            return false;
        }
        self.vhosts.insert(name.to_string(), VHost::new(name));
        self.store_def(DefOp::PutVhost(VhostDef { name: name.into() }));
        true
    }

    /// Deletes a vhost with its queues (and their messages) and exchanges, and closes the
    /// connections to it, as RabbitMQ does; false if there is none.
    pub(crate) fn delete_vhost(&mut self, name: &str) -> bool {
        let Some(queues) = self
            .vhosts
            .get(name)
            .map(|v| v.queues.keys().cloned().collect::<Vec<_>>())
        else {
            return false;
        };
        for conn in self.conns.values().filter(|c| c.peer.vhost == name) {
            conn.peer
                .details
                .close
                .send_replace(Some(format!("vhost '{name}' is deleted")));
        }
        for q in queues {
            self.remove_queue(name, &q);
        }
        self.vhosts.remove(name);
        self.store_def(DefOp::DeleteVhost(name.to_string()));
        true
    }
}
