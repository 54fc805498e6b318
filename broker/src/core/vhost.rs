//! A virtual host: a namespace of exchanges and queues.

use super::exchange::{Exchange, ExchangeKind};
use super::queue::Queue;
use amq_protocol::types::FieldTable;
use std::collections::HashMap;

#[derive(Debug)]
pub struct VHost {
    pub name: String,
    pub exchanges: HashMap<String, Exchange>,
    pub queues: HashMap<String, Queue>,
}

impl VHost {
    /// A vhost with the default exchange and the `amq.*` exchanges every broker has.
    pub fn new(name: &str) -> VHost {
        let mut exchanges = HashMap::new();
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
            queues: HashMap::new(),
        }
    }
}
