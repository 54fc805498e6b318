//! Publishing: route a message through its exchange (following exchange-to-exchange bindings
//! and alternate exchanges), enqueue it on every matched queue, dispatch, or return it.

use super::exchange::Destination;
use super::{ChanKey, Core, Message, Outbound};
use crate::error::{code, exchange_ref, AmqpError};
use std::collections::BTreeSet;
use std::sync::Arc;

/// How a publish went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Enqueued on this many queues.
    Queues(usize),
    /// Matched no queue (returned to the publisher if it was mandatory).
    Unroutable,
}

impl Core {
    pub fn publish(
        &mut self,
        ck: ChanKey,
        mandatory: bool,
        message: Message,
    ) -> Result<Routed, AmqpError> {
        let vname = self.vhost_name(ck);
        let queues = self.route(&vname, &message)?;
        let message = Arc::new(message);
        if queues.is_empty() {
            if mandatory {
                self.send(
                    ck,
                    Outbound::Return {
                        channel: ck.channel,
                        reply_code: code::NO_ROUTE,
                        reply_text: "NO_ROUTE".into(),
                        message,
                    },
                );
            }
            return Ok(Routed::Unroutable);
        }
        for q in &queues {
            if let Some(queue) = self
                .vhosts
                .get_mut(&vname)
                .and_then(|v| v.queues.get_mut(q))
            {
                queue.push(message.clone());
            }
            self.dispatch(&vname, q);
        }
        Ok(Routed::Queues(queues.len()))
    }

    /// The queues a message reaches, each once.
    pub fn route(&self, vname: &str, message: &Message) -> Result<BTreeSet<String>, AmqpError> {
        let vhost = self
            .vhosts
            .get(vname)
            .ok_or_else(|| super::declare::no_vhost(vname))?;
        let name = message.exchange.as_str();
        let exchange = vhost
            .exchanges
            .get(name)
            .ok_or_else(|| AmqpError::not_found(format!("no {}", exchange_ref(name, vname))))?;
        if exchange.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal {}",
                exchange_ref(name, vname)
            )));
        }
        let mut queues = BTreeSet::new();
        if name.is_empty() {
            if vhost.queues.contains_key(&message.routing_key) {
                queues.insert(message.routing_key.clone());
            }
            return Ok(queues);
        }
        let headers = message.properties.headers().as_ref();
        let mut visited = BTreeSet::new();
        let mut next = Some(name.to_string());
        // Follow the alternate exchange chain while nothing is routed.
        while let Some(start) = next.take() {
            if !visited.insert(start.clone()) {
                break;
            }
            let mut stack = vec![start.clone()];
            let mut seen = BTreeSet::from([start.clone()]);
            while let Some(ename) = stack.pop() {
                let Some(e) = vhost.exchanges.get(&ename) else {
                    continue;
                };
                for dest in e.route(&message.routing_key, headers) {
                    match dest {
                        Destination::Queue(q) => {
                            if vhost.queues.contains_key(&q) {
                                queues.insert(q);
                            }
                        }
                        Destination::Exchange(x) => {
                            if seen.insert(x.clone()) {
                                stack.push(x);
                            }
                        }
                    }
                }
            }
            if queues.is_empty() {
                next = vhost
                    .exchanges
                    .get(&start)
                    .and_then(|e| e.alternate_exchange());
            }
        }
        Ok(queues)
    }
}
