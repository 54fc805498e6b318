//! Consumers, `basic.get`, acknowledgements and the dispatch loop that hands ready messages to
//! consumers in turn while their prefetch allows.

use super::access::{Perm, Resource};
use super::channel::{Consumer, Unacked};
use super::deadletter::Reason;
use super::permitted;
use super::queue::{ConsumerRef, Entry};
use super::ConnId;
use super::{ChanKey, Core, Message, Outbound};
use crate::error::{queue_ref, AmqpError};
use amq_protocol::types::AMQPValue;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The flags of `basic.consume`.
#[derive(Debug, Clone, Default)]
pub struct ConsumeSpec {
    pub queue: String,
    pub tag: String,
    pub no_ack: bool,
    pub exclusive: bool,
    pub nowait: bool,
}

impl Core {
    /// `basic.qos` as RabbitMQ reads it: `global` limits the whole channel, otherwise the limit
    /// applies to each consumer started afterwards.
    pub fn basic_qos(&mut self, ck: ChanKey, prefetch_count: u16, global: bool) {
        let Some(ch) = self.channels.get_mut(&ck) else {
            return;
        };
        if global {
            ch.channel_prefetch = prefetch_count;
        } else {
            ch.consumer_prefetch = prefetch_count;
        }
        self.dispatch_channel_queues(ck);
    }

    /// Starts a consumer; sends `consume-ok` (unless nowait) before any delivery.
    pub fn basic_consume(&mut self, ck: ChanKey, spec: ConsumeSpec) -> Result<String, AmqpError> {
        let vname = self.vhost_name(ck);
        permitted(&self.conns, ck, Perm::Read, Resource::Queue, &spec.queue)?;
        let now = self.now();
        let queue = self.queue_mut(ck, &vname, &spec.queue)?;
        queue.last_used_ms = now;
        if queue.has_exclusive_consumer() || (spec.exclusive && queue.consumer_count() > 0) {
            return Err(AmqpError::access_refused(format!(
                "{} in exclusive use",
                queue_ref(&spec.queue, &vname)
            )));
        }
        let Some(ch) = self.channels.get_mut(&ck) else {
            return Err(AmqpError::channel_error("channel is not open"));
        };
        let tag = if spec.tag.is_empty() {
            super::lifecycle::generated_name("amq.ctag-")
        } else {
            spec.tag.clone()
        };
        let tag: Arc<str> = tag.into();
        if ch.consumers.contains_key(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        if let Some(max) = self.limits.consumer_max_per_channel {
            if ch.consumers.len() >= max {
                return Err(AmqpError::not_allowed(format!(
                    "reached maximum ({max}) of consumers per channel"
                )));
            }
        }
        ch.consumers.insert(
            tag.clone(),
            Consumer {
                queue: spec.queue.clone(),
                no_ack: spec.no_ack,
                prefetch: ch.consumer_prefetch,
                unacked: 0,
            },
        );
        if let Some(q) = self
            .vhosts
            .get_mut(&*vname)
            .and_then(|v| v.queues.get_mut(&spec.queue))
        {
            q.add_consumer(ConsumerRef {
                channel: ck,
                tag: tag.clone(),
                exclusive: spec.exclusive,
            });
        }
        if !spec.nowait {
            self.send(
                ck,
                Outbound::Consuming {
                    channel: ck.channel,
                    consumer_tag: tag.clone(),
                },
            );
        }
        self.dispatch(&vname, &spec.queue);
        Ok(tag.to_string())
    }

    /// Stops a consumer. Its unacknowledged messages stay unacknowledged on the channel.
    pub fn basic_cancel(&mut self, ck: ChanKey, tag: &str) {
        let vname = self.vhost_name(ck);
        let Some(consumer) = self
            .channels
            .get_mut(&ck)
            .and_then(|c| c.consumers.remove(tag))
        else {
            return;
        };
        if let Some(q) = self
            .vhosts
            .get_mut(&*vname)
            .and_then(|v| v.queues.get_mut(&consumer.queue))
        {
            q.remove_consumer(ck, tag);
            q.last_used_ms = (self.clock)();
        }
        // With a single active consumer, the next one in line takes over.
        if !self.auto_delete_queue_if_unused(&vname, &consumer.queue) {
            self.dispatch(&vname, &consumer.queue);
        }
    }

    /// `basic.get`: sends get-ok with the message, or get-empty.
    pub fn basic_get(&mut self, ck: ChanKey, queue: &str, no_ack: bool) -> Result<(), AmqpError> {
        let vname = self.vhost_name(ck);
        permitted(&self.conns, ck, Perm::Read, Resource::Queue, queue)?;
        let now = self.now();
        let q = self.queue_mut(ck, &vname, queue)?;
        q.last_used_ms = now;
        let (entry, message) = match self.take_ready(&vname, queue, (self.clock)()) {
            Next::Ready(entry, message) => (entry, message),
            Next::Empty => {
                self.send_get_empty(ck);
                return Ok(());
            }
            Next::Waiting => {
                // Answered when the pager has read the head back.
                if let Some(ch) = self.channels.get_mut(&ck) {
                    *ch.waiting_gets.entry(Arc::from(queue)).or_default() += 1;
                }
                if let Some(q) = self
                    .vhosts
                    .get_mut(&*vname)
                    .and_then(|v| v.queues.get_mut(queue))
                {
                    q.add_getter(ck, no_ack);
                }
                return Ok(());
            }
        };
        let message_count = self.queue_len(&vname, queue) as u32;
        let redelivered = entry.redelivered;
        let Some(delivery_tag) = self.hand_out(ck, &vname, queue, entry, None, no_ack) else {
            return Ok(());
        };
        self.send(
            ck,
            Outbound::GetOk {
                channel: ck.channel,
                delivery_tag,
                redelivered,
                message_count,
                message,
            },
        );
        Ok(())
    }

    pub fn basic_ack(&mut self, ck: ChanKey, tag: u64, multiple: bool) -> Result<(), AmqpError> {
        self.settle(ck, tag, multiple, false, false)
    }

    /// `basic.nack` and `basic.reject`: requeue, or drop the messages.
    pub fn basic_nack(
        &mut self,
        ck: ChanKey,
        tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> Result<(), AmqpError> {
        self.settle(ck, tag, multiple, requeue, true)
    }

    /// `basic.recover`: every unacknowledged message of the channel goes back to its queue.
    pub fn basic_recover(&mut self, ck: ChanKey) -> Result<(), AmqpError> {
        self.settle(ck, 0, true, true, false)
    }

    fn settle(
        &mut self,
        ck: ChanKey,
        tag: u64,
        multiple: bool,
        requeue: bool,
        reject: bool,
    ) -> Result<(), AmqpError> {
        let vname = self.vhost_name(ck);
        let Some(ch) = self.channels.get_mut(&ck) else {
            return Ok(());
        };
        let settled = ch.settle(tag, multiple)?;
        let mut touched: Vec<String> = Vec::new();
        if requeue {
            let mut over_limit = Vec::new();
            if let Some(vhost) = self.vhosts.get_mut(&*vname) {
                for Unacked { queue, entry, .. } in settled.into_iter().rev() {
                    if let Some(q) = vhost.queues.get_mut(&queue) {
                        over_limit.extend(q.requeue(entry).map(|e| (queue.clone(), e)));
                        touched.push(queue);
                    }
                }
            }
            self.discard_over_limit(&vname, over_limit);
        } else {
            let reason = reject.then_some(Reason::Rejected);
            let mut by_queue: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
            for Unacked { queue, entry, .. } in settled {
                by_queue.entry(queue).or_default().push(entry);
            }
            for (queue, entries) in by_queue {
                if !reject {
                    self.totals.acknowledged += entries.len() as u64;
                    if let Some(q) = self
                        .vhosts
                        .get_mut(&*vname)
                        .and_then(|v| v.queues.get_mut(&queue))
                    {
                        q.stats.ack += entries.len() as u64;
                    }
                }
                if self.queue_exists(&vname, &queue) {
                    self.discard(&vname, &queue, entries, reason, 0);
                }
            }
        }
        touched.sort();
        touched.dedup();
        for q in &touched {
            self.dispatch(&vname, q);
        }
        self.dispatch_channel_queues(ck);
        Ok(())
    }

    /// Re-runs dispatch for every queue this channel consumes from (its credit may have grown).
    fn dispatch_channel_queues(&mut self, ck: ChanKey) {
        let Some(ch) = self.channels.get(&ck) else {
            return;
        };
        let vname = ch.vhost.clone();
        let mut queues: Vec<String> = ch.consumers.values().map(|c| c.queue.clone()).collect();
        queues.sort();
        queues.dedup();
        for q in queues {
            self.dispatch(&vname, &q);
        }
    }

    /// The connection's outlet has room again: its consumers' queues deliver again.
    pub fn dispatch_connection(&mut self, conn: ConnId) {
        for ck in self.channels_of(conn) {
            self.dispatch_channel_queues(ck);
        }
    }

    /// Hands ready messages to consumers with credit, round-robin, until one side runs out.
    pub(super) fn dispatch(&mut self, vname: &str, queue: &str) {
        self.dispatch_at(vname, queue, (self.clock)());
    }

    /// Dispatch as of `now`: a publish dispatches as of its own arrival, so a message a
    /// consumer can take at once is delivered even with a TTL of 0 (as RabbitMQ does), however
    /// the clock ticks meanwhile.
    pub(super) fn dispatch_at(&mut self, vname: &str, queue: &str, now: u64) {
        loop {
            let Some(q) = self
                .vhosts
                .get_mut(vname)
                .and_then(|v| v.queues.get_mut(queue))
            else {
                return;
            };
            if q.is_empty() {
                return;
            }
            let pick = q
                .rotation()
                .find(|(_, c)| {
                    self.channels
                        .get(&c.channel)
                        .is_some_and(|ch| ch.can_deliver(&c.tag))
                        // A connection that does not read what it is sent gets no more.
                        && self
                            .conns
                            .get(&c.channel.conn)
                            .is_some_and(|conn| conn.outlet.has_room())
                })
                .map(|(idx, c)| (idx, c.channel, c.tag.clone()));
            let Some((idx, ck, tag)) = pick else {
                return;
            };
            q.served(idx);
            // A next message only on disk is read by the pager (with a few after it) and
            // delivery resumes when it is back; nothing is read here, under the lock.
            let Next::Ready(entry, message) = self.take_ready(vname, queue, now) else {
                return;
            };
            let no_ack = self
                .channels
                .get(&ck)
                .and_then(|ch| ch.consumers.get(&tag))
                .is_some_and(|c| c.no_ack);
            let redelivered = entry.redelivered;
            let Some(delivery_tag) =
                self.hand_out(ck, vname, queue, entry, Some(tag.clone()), no_ack)
            else {
                return;
            };
            if let Some(conn) = self.conns.get(&ck.conn) {
                let _ = conn.outlet.send(Outbound::Deliver {
                    channel: ck.channel,
                    consumer_tag: tag,
                    delivery_tag,
                    redelivered,
                    message,
                });
            }
        }
    }

    /// The next live message of a queue with its body: expired ones at the head are
    /// dead-lettered on the way, unreadable ones dropped (and reported). A head that is only
    /// in the log is asked of the pager ([`Next::Waiting`]).
    fn take_ready(&mut self, vname: &str, queue: &str, now: u64) -> Next {
        let has_pager = self.has_pager();
        loop {
            let Some(q) = self
                .vhosts
                .get_mut(vname)
                .and_then(|v| v.queues.get_mut(queue))
            else {
                return Next::Empty;
            };
            if q.paging_in() {
                return Next::Waiting;
            }
            let Some(head) = q.peek() else {
                return Next::Empty;
            };
            let expired = head.expired(now);
            if !expired && has_pager && !head.resident && head.persisted.is_some() {
                self.request_page_in(vname, queue);
                return Next::Waiting;
            }
            let quorum = q.args.quorum;
            let Some(mut entry) = q.pop() else {
                return Next::Empty;
            };
            if expired {
                self.discard(vname, queue, vec![entry], Some(Reason::Expired), 0);
                continue;
            }
            match self.load(&entry) {
                Some(message) => {
                    entry.message = Some(message.clone());
                    let message = match (quorum, entry.returns) {
                        (true, n) if n > 0 => Arc::new(with_delivery_count(&message, n)),
                        _ => message,
                    };
                    return Next::Ready(entry, message);
                }
                None => {
                    let lost: Vec<u64> = entry.persisted().into_iter().collect();
                    self.forget(vname, queue, lost);
                }
            }
        }
    }

    /// Records a delivery on the channel (and in the log); returns its delivery tag.
    fn hand_out(
        &mut self,
        ck: ChanKey,
        vname: &str,
        queue: &str,
        entry: Entry,
        consumer: Option<Arc<str>>,
        no_ack: bool,
    ) -> Option<u64> {
        if let Some((id, log)) = entry
            .persisted()
            .and_then(|id| Some((id, self.store_of(id)?)))
        {
            let written = if no_ack {
                log.ack(vname, queue, vec![id])
            } else if !entry.redelivered {
                log.delivered(vname, queue, id)
            } else {
                Ok(())
            };
            if let Err(e) = written {
                tracing::error!(error = %e, "writing to the message log failed");
            }
        }
        let t = &mut self.totals;
        let counter = match (consumer.is_some(), no_ack) {
            (true, false) => &mut t.delivered_consume_manual_ack,
            (true, true) => &mut t.delivered_consume_auto_ack,
            (false, false) => &mut t.delivered_get_manual_ack,
            (false, true) => &mut t.delivered_get_auto_ack,
        };
        *counter += 1;
        t.redelivered += entry.redelivered as u64;
        if let Some(q) = self
            .vhosts
            .get_mut(vname)
            .and_then(|v| v.queues.get_mut(queue))
        {
            let s = &mut q.stats;
            let counter = match (consumer.is_some(), no_ack) {
                (true, false) => &mut s.deliver,
                (true, true) => &mut s.deliver_no_ack,
                (false, false) => &mut s.get,
                (false, true) => &mut s.get_no_ack,
            };
            *counter += 1;
            s.redeliver += entry.redelivered as u64;
        }
        let ch = self.channels.get_mut(&ck)?;
        Some(ch.record_delivery(queue, entry, consumer, no_ack))
    }

    /// Dead-letters (or drops) messages that came back once too often, queue by queue.
    pub(super) fn discard_over_limit(&mut self, vname: &str, over_limit: Vec<(String, Entry)>) {
        let mut by_queue: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (queue, entry) in over_limit {
            by_queue.entry(queue).or_default().push(entry);
        }
        for (queue, entries) in by_queue {
            self.discard(vname, &queue, entries, Some(Reason::DeliveryLimit), 0);
        }
    }

    fn queue_len(&self, vname: &str, queue: &str) -> usize {
        self.vhosts
            .get(vname)
            .and_then(|v| v.queues.get(queue))
            .map_or(0, |q| q.len())
    }

    fn queue_exists(&self, vname: &str, queue: &str) -> bool {
        self.vhosts
            .get(vname)
            .is_some_and(|v| v.queues.contains_key(queue))
    }

    pub(super) fn send_get_empty(&mut self, ck: ChanKey) {
        self.totals.get_empty += 1;
        self.send(
            ck,
            Outbound::GetEmpty {
                channel: ck.channel,
            },
        );
    }

    pub(super) fn send(&self, ck: ChanKey, out: Outbound) {
        if let Some(conn) = self.conns.get(&ck.conn) {
            let _ = conn.outlet.send(out);
        }
    }
}

/// What a queue has for a consumer now.
enum Next {
    Ready(Entry, Arc<Message>),
    Empty,
    /// Its head is being read back from the log.
    Waiting,
}

/// A quorum queue's message that came back `count` times, as the consumer sees it: with an
/// `x-delivery-count` header (a long, as RabbitMQ sends it). The queue keeps the original.
fn with_delivery_count(message: &Message, count: u32) -> Message {
    let mut properties = message.properties.clone();
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        "x-delivery-count".into(),
        AMQPValue::LongLongInt(i64::from(count)),
    );
    properties = properties.with_headers(headers);
    Message::new(
        message.exchange.clone(),
        message.routing_key.clone(),
        properties,
        message.body.clone(),
    )
}
