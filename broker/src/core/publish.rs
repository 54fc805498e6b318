//! Publishing: route a message through its exchange (following exchange-to-exchange bindings
//! and alternate exchanges), apply each queue's length limit, write persistent messages for
//! durable queues to the log, enqueue, dispatch, or return it.

use super::access::{Perm, Resource};
use super::args::Overflow;
use super::deadletter::{is_cycle, Reason};
use super::exchange::Destination;
use super::permitted;
use super::queue::Entry;
use super::{ChanKey, Core, Message, Outbound};
use crate::error::{code, exchange_ref, AmqpError};
use smallvec::SmallVec;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The queues a message routes to, sorted, each once.
pub(crate) type Routed = SmallVec<[String; 2]>;

/// How a publish went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Queues the message was enqueued on (0: unroutable, returned if mandatory).
    pub queues: usize,
    /// A queue refused it (`reject-publish` overflow, or the log could not be written):
    /// a confirming publisher gets `basic.nack`.
    pub rejected: bool,
    /// The log position that must be durable before the publish is confirmed.
    pub wait_for: Option<u64>,
}

/// Dead-lettering that leads to more dead-lettering stops this deep.
const MAX_DEAD_LETTER_DEPTH: u32 = 16;

impl Core {
    pub fn publish(
        &mut self,
        ck: ChanKey,
        mandatory: bool,
        message: Message,
    ) -> Result<Published, AmqpError> {
        let vname = self.vhost_name(ck);
        permitted(
            &self.conns,
            ck,
            Perm::Write,
            Resource::Exchange,
            &message.exchange,
        )?;
        super::topic_permitted(
            self,
            ck,
            Perm::Write,
            &message.exchange,
            &message.routing_key,
        )?;
        let queues = self.route(&vname, &message)?;
        let message = Arc::new(message);
        self.totals.received += 1;
        if queues.is_empty() {
            match mandatory {
                true => self.totals.unroutable_returned += 1,
                false => self.totals.unroutable_dropped += 1,
            }
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
            return Ok(Published::default());
        }
        self.totals.routed += 1;
        Ok(self.enqueue(&vname, message, queues, 0))
    }

    /// Puts a routed message on its queues.
    pub(super) fn enqueue(
        &mut self,
        vname: &str,
        message: Arc<Message>,
        queues: Routed,
        depth: u32,
    ) -> Published {
        let now = (self.clock)();
        let size = message.body.len() as u64;
        let mut out = Published::default();
        let mut accepted: SmallVec<[(String, bool); 2]> = SmallVec::new();
        let mut refused_dlx = Vec::new();
        let Some(vhost) = self.vhosts.get(vname) else {
            return out;
        };
        for name in queues {
            let Some(q) = vhost.queues.get(&name) else {
                continue;
            };
            if q.full_for(size) && q.args.overflow != Overflow::DropHead {
                out.rejected = true;
                if q.args.overflow == Overflow::RejectPublishDlx {
                    refused_dlx.push(name);
                }
                continue;
            }
            let durable = q.durable && q.exclusive_owner.is_none();
            accepted.push((name, durable));
        }
        let persistent = message.properties.delivery_mode() == &Some(2);
        let mut msg_id = None;
        if persistent && accepted.iter().any(|(_, d)| *d) {
            if let Some(log) = self.log.as_mut() {
                let holders: Vec<(&str, &str)> = accepted
                    .iter()
                    .filter(|(_, d)| *d)
                    .map(|(q, _)| (vname, q.as_str()))
                    .collect();
                match log.publish(&message, now, &holders) {
                    Ok(id) => {
                        msg_id = Some(id);
                        out.wait_for = Some(log.lsn());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "writing to the message log failed");
                        out.rejected = true;
                        accepted.retain(|(_, d)| !*d);
                    }
                }
            }
        }
        let over_budget =
            self.resident.load(std::sync::atomic::Ordering::Relaxed) > self.limits.resident_bytes;
        let page_out = msg_id.is_some() && over_budget;
        // Past the budget, what the durable log does not hold goes to the spill file.
        let spilled = match over_budget {
            true => {
                let unlogged: super::spill::Names = accepted
                    .iter()
                    .filter(|(_, d)| !(*d && msg_id.is_some()))
                    .map(|(q, _)| q.as_str())
                    .collect();
                self.spill_message(vname, &message, now, &unlogged)
            }
            false => None,
        };
        let expiration = message
            .properties
            .expiration()
            .as_ref()
            .and_then(|e| e.as_str().parse::<u64>().ok());
        for (name, durable) in &accepted {
            let spill_id = spilled
                .as_ref()
                .filter(|(_, queues)| queues.contains(&name.as_str()))
                .map(|(id, _)| *id);
            let persisted = match (*durable, spill_id) {
                (true, _) if msg_id.is_some() => msg_id,
                (_, spilled) => spilled,
            };
            let mut entry = Entry::new(message.clone(), persisted);
            if let Some(q) = self
                .vhosts
                .get_mut(vname)
                .and_then(|v| v.queues.get_mut(name))
            {
                // Past the memory budget, a message keeps only its place in a queue, unless a
                // consumer can take it now (it would be read straight back).
                let behind_others = !q.is_empty() || q.consumer_count() == 0;
                if spill_id.is_some() || (persisted.is_some() && page_out && behind_others) {
                    entry.message = None;
                }
                q.push(entry, now, expiration);
                q.stats.publish += 1;
                out.queues += 1;
            }
            self.drop_over_limit(vname, name, depth);
            self.dispatch_at(vname, name, now);
        }
        for name in refused_dlx {
            let entry = Entry::new(message.clone(), None);
            self.discard(vname, &name, vec![entry], Some(Reason::MaxLen), depth);
        }
        out
    }

    /// `drop-head` overflow: the oldest messages leave (dead-lettered) until the queue fits.
    pub(super) fn drop_over_limit(&mut self, vname: &str, name: &str, depth: u32) {
        let mut dropped = Vec::new();
        if let Some(q) = self
            .vhosts
            .get_mut(vname)
            .and_then(|v| v.queues.get_mut(name))
        {
            while q.over_limit() {
                match q.pop() {
                    Some(e) => dropped.push(e),
                    None => break,
                }
            }
        }
        if !dropped.is_empty() {
            self.discard(vname, name, dropped, Some(Reason::MaxLen), depth);
        }
    }

    /// Routes a message made inside the broker (dead-lettering) from `exchange`.
    pub(super) fn republish(&mut self, vname: &str, message: Message, depth: u32) {
        if depth >= MAX_DEAD_LETTER_DEPTH {
            tracing::warn!("dead-lettering chain too deep; message dropped");
            return;
        }
        match self.route(vname, &message) {
            Ok(mut queues) => {
                queues.retain(|q| !is_cycle(&message, q));
                if queues.is_empty() {
                    return;
                }
                self.enqueue(vname, Arc::new(message), queues, depth + 1);
            }
            Err(e) => tracing::debug!(error = %e, "dead-letter exchange unusable; message dropped"),
        }
    }

    /// The queues a message reaches, each once.
    pub(crate) fn route(&self, vname: &str, message: &Message) -> Result<Routed, AmqpError> {
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
        let mut queues = Routed::new();
        if name.is_empty() {
            if vhost.queues.contains_key(&message.routing_key) {
                queues.push(message.routing_key.clone());
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
                                if let Err(at) = queues.binary_search(&q) {
                                    queues.insert(at, q);
                                }
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
