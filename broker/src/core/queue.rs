//! A queue: ready messages in publish order, and the consumers that take turns receiving them.

use super::args::{QueueArgs, QueueType};
use super::channel::ChanKey;
use super::ready::{Head, MemoryQueue, PriorityQueue, QueueStore};
use super::ConnId;
use crate::message::Message;
use crate::store::Meta;
use amq_protocol::types::FieldTable;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A message as it sits in one queue.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in the queue's publish order; requeued messages go back to it.
    pub id: u64,
    /// The message, or None while only the message log holds its body.
    pub message: Option<Arc<Message>>,
    pub redelivered: bool,
    /// How many times it came back unacknowledged (`x-delivery-count` on quorum queues).
    pub returns: u32,
    /// Its id in the message log (ids start at 1), when it is persistent on a durable queue.
    pub(crate) persisted: Option<NonZeroU64>,
    /// Body size in bytes.
    pub size: u64,
    pub priority: u8,
    /// When its TTL runs out (ms since the Unix epoch).
    pub(crate) expires_at: Option<NonZeroU64>,
}

impl Entry {
    /// A message as it enters a queue.
    pub fn new(message: Arc<Message>, persisted: Option<u64>) -> Entry {
        Entry {
            id: 0,
            size: message.body.len() as u64,
            priority: message.properties.priority().unwrap_or(0),
            expires_at: None,
            message: Some(message),
            redelivered: false,
            returns: 0,
            persisted: persisted.and_then(NonZeroU64::new),
        }
    }

    /// A recovered message, only in the log for now. The log keeps whether a message was
    /// delivered, not how often it came back: delivery limits count afresh after a restart.
    pub fn recovered(msg_id: u64, meta: &Meta) -> Entry {
        Entry {
            id: 0,
            message: None,
            redelivered: meta.delivered,
            returns: 0,
            persisted: NonZeroU64::new(msg_id),
            size: meta.size,
            priority: meta.priority,
            expires_at: None,
        }
    }

    /// Its id in the message log, when it is persistent on a durable queue.
    pub fn persisted(&self) -> Option<u64> {
        self.persisted.map(NonZeroU64::get)
    }

    /// Puts its body, read back from the log, in place; the body's size if it was not in
    /// memory.
    pub(crate) fn fill(&mut self, body: &Arc<Message>) -> Option<u64> {
        if self.message.is_some() {
            return None;
        }
        self.message = Some(body.clone());
        Some(self.size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRef {
    pub channel: ChanKey,
    pub tag: Arc<str>,
    pub exclusive: bool,
}

/// What holding a ready message in memory costs besides its body, which paging it out frees:
/// the shared message with its parsed properties and its small allocations (about 550 bytes
/// measured for a 16-byte body). The broker-wide total that `message_memory` bounds counts
/// it, so a backlog of small persistent messages pages out as one of large ones does.
pub(crate) const HELD_OVERHEAD: u64 = 512;

#[derive(Debug)]
pub struct Queue {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive_owner: Option<ConnId>,
    /// The arguments as declared (for equivalence checks and definitions).
    pub arguments: FieldTable,
    /// What the arguments mean.
    pub args: QueueArgs,
    /// Last declare, consume or get (ms since the Unix epoch), for `x-expires`.
    pub last_used_ms: u64,
    messages: Box<dyn QueueStore>,
    next_id: u64,
    /// Body bytes of the ready messages.
    ready_bytes: u64,
    /// Body bytes of the ready messages held in memory.
    resident_bytes: u64,
    /// How many ready messages are held in memory.
    resident_count: u64,
    /// The broker-wide memory held by ready messages ([`Queue::held_memory`] of every queue),
    /// kept as the queue changes so publishing never has to add up every queue.
    total_resident: Arc<AtomicU64>,
    consumers: Vec<ConsumerRef>,
    next_consumer: usize,
    /// The pager is reading messages of this queue back from the log.
    paging_in: bool,
    /// `basic.get`s waiting for that (channel, no-ack).
    getters: Vec<(ChanKey, bool)>,
    /// Message counters.
    pub stats: super::stats::QueueStats,
    /// The policy and operator policy that apply, and the settings they give together.
    pub policy: Option<String>,
    pub operator_policy: Option<String>,
    pub policy_definition: serde_json::Map<String, serde_json::Value>,
}

impl Queue {
    pub fn new(
        name: impl Into<String>,
        durable: bool,
        auto_delete: bool,
        exclusive_owner: Option<ConnId>,
        arguments: FieldTable,
        args: QueueArgs,
        now_ms: u64,
    ) -> Queue {
        let messages: Box<dyn QueueStore> = match args.max_priority {
            Some(max) => Box::new(PriorityQueue::new(max)),
            None => Box::<MemoryQueue>::default(),
        };
        Queue {
            name: name.into(),
            durable,
            auto_delete,
            exclusive_owner,
            arguments,
            args,
            last_used_ms: now_ms,
            messages,
            next_id: 0,
            ready_bytes: 0,
            resident_bytes: 0,
            resident_count: 0,
            total_resident: Arc::default(),
            consumers: Vec::new(),
            next_consumer: 0,
            paging_in: false,
            getters: Vec::new(),
            stats: Default::default(),
            policy: None,
            operator_policy: None,
            policy_definition: Default::default(),
        }
    }

    pub fn kind(&self) -> QueueType {
        self.args.kind()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes
    }

    /// Memory the ready messages held in memory cost: their bodies and, for each,
    /// [`HELD_OVERHEAD`].
    pub fn held_memory(&self) -> u64 {
        self.resident_bytes + self.resident_count * HELD_OVERHEAD
    }

    /// `count` messages of `bytes` bodies in all are now held in memory.
    fn hold(&mut self, bytes: u64, count: u64) {
        self.resident_bytes += bytes;
        self.resident_count += count;
        self.total_resident
            .fetch_add(bytes + count * HELD_OVERHEAD, Ordering::Relaxed);
    }

    /// A message of `size` body bytes is no longer held; the broker-wide total loses exactly
    /// what this queue's counts lose, so it can never wrap below zero.
    fn unhold(&mut self, size: u64) {
        let before = self.held_memory();
        self.resident_bytes -= size.min(self.resident_bytes);
        self.resident_count = self.resident_count.saturating_sub(1);
        self.total_resident
            .fetch_sub(before - self.held_memory(), Ordering::Relaxed);
    }

    /// Counts this queue's resident bytes into `total` as well (set before any message).
    pub fn counting_into(mut self, total: Arc<AtomicU64>) -> Queue {
        self.total_resident = total;
        self
    }

    /// Makes room for `n` more messages at once.
    pub fn reserve(&mut self, n: usize) {
        self.messages.reserve(n);
    }

    /// Appends a message published at `published_ms` in publish order, with the queue's TTL
    /// and the message's `expiration` (ms) applied.
    pub fn push(&mut self, mut entry: Entry, published_ms: u64, expiration: Option<u64>) {
        entry.id = self.next_id;
        self.next_id += 1;
        let ttl = match (self.args.message_ttl, expiration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        entry.expires_at = ttl.and_then(|t| NonZeroU64::new(published_ms.saturating_add(t)));
        self.account_in(&entry);
        self.messages.push(entry);
    }

    pub fn pop(&mut self) -> Option<Entry> {
        let entry = self.messages.pop()?;
        self.account_out(&entry);
        Some(entry)
    }

    pub(crate) fn peek(&self) -> Option<Head> {
        self.messages.peek()
    }

    /// Puts a delivered message back at its original place, marked redelivered. A message
    /// that has now come back more often than the queue's delivery limit allows is handed
    /// back instead, for the caller to dead-letter (reason `delivery_limit`).
    #[must_use]
    pub fn requeue(&mut self, mut entry: Entry) -> Option<Entry> {
        entry.redelivered = true;
        entry.returns = entry.returns.saturating_add(1);
        if self
            .args
            .delivery_limit
            .is_some_and(|limit| u64::from(entry.returns) > limit)
        {
            return Some(entry);
        }
        self.account_in(&entry);
        self.messages.requeue(entry);
        None
    }

    /// A `basic.get` waits for the pager.
    pub fn add_getter(&mut self, ck: ChanKey, no_ack: bool) {
        self.getters.push((ck, no_ack));
    }

    /// The `basic.get`s that waited.
    pub fn take_getters(&mut self) -> Vec<(ChanKey, bool)> {
        std::mem::take(&mut self.getters)
    }

    /// Whether the pager is reading messages of this queue back.
    pub fn paging_in(&self) -> bool {
        self.paging_in
    }

    /// The log ids of up to `max` messages at the head that are only in the log; from now on
    /// the queue waits for them ([`Queue::paged_in`]).
    pub fn start_page_in(&mut self, max: usize) -> Vec<u64> {
        self.paging_in = true;
        self.messages.paged_out(max * 2, max)
    }

    /// Puts bodies read back from the log in place and takes the messages that could not
    /// be read; the queue no longer waits.
    pub fn paged_in(
        &mut self,
        bodies: &std::collections::HashMap<u64, Arc<Message>>,
        lost: &[u64],
    ) -> Vec<Entry> {
        self.paging_in = false;
        let (held_bytes, held_count) = self.messages.fill(bodies);
        self.hold(held_bytes, held_count);
        if lost.is_empty() {
            return Vec::new();
        }
        let taken = self.messages.take_persisted(lost);
        for entry in &taken {
            self.account_out(entry);
        }
        taken
    }

    /// Takes every ready message.
    pub fn drain(&mut self) -> Vec<Entry> {
        self.ready_bytes = 0;
        self.total_resident
            .fetch_sub(self.held_memory(), Ordering::Relaxed);
        self.resident_bytes = 0;
        self.resident_count = 0;
        self.messages.drain()
    }

    /// Whether one more message of `size` bytes would break a length limit.
    pub fn full_for(&self, size: u64) -> bool {
        self.args.max_length.is_some_and(|m| self.len() as u64 >= m)
            || self
                .args
                .max_length_bytes
                .is_some_and(|m| self.ready_bytes + size > m)
    }

    /// Whether the queue holds more than its limits allow.
    pub fn over_limit(&self) -> bool {
        self.args.max_length.is_some_and(|m| self.len() as u64 > m)
            || self
                .args
                .max_length_bytes
                .is_some_and(|m| self.ready_bytes > m)
    }

    fn account_in(&mut self, entry: &Entry) {
        self.ready_bytes += entry.size;
        if entry.message.is_some() {
            self.hold(entry.size, 1);
        }
    }

    fn account_out(&mut self, entry: &Entry) {
        self.ready_bytes = self.ready_bytes.saturating_sub(entry.size);
        if entry.message.is_some() {
            self.unhold(entry.size);
        }
    }

    pub fn consumers(&self) -> &[ConsumerRef] {
        &self.consumers
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    pub fn has_exclusive_consumer(&self) -> bool {
        self.consumers.iter().any(|c| c.exclusive)
    }

    pub fn add_consumer(&mut self, consumer: ConsumerRef) {
        self.consumers.push(consumer);
    }

    /// Removes a consumer; returns whether it was there.
    pub fn remove_consumer(&mut self, channel: ChanKey, tag: &str) -> bool {
        let before = self.consumers.len();
        self.consumers
            .retain(|c| !(c.channel == channel && &*c.tag == tag));
        before != self.consumers.len()
    }

    /// Consumers in round-robin order, starting after the last one served.
    /// With `x-single-active-consumer`, only the longest-standing consumer takes turns.
    pub fn rotation(&self) -> impl Iterator<Item = (usize, &ConsumerRef)> {
        let n = if self.args.single_active_consumer {
            self.consumers.len().min(1)
        } else {
            self.consumers.len()
        };
        let start = if n == 0 { 0 } else { self.next_consumer % n };
        (0..n).map(move |i| {
            let idx = (start + i) % n;
            (idx, &self.consumers[idx])
        })
    }

    /// Records that consumer `idx` was served, so the next delivery starts after it.
    pub fn served(&mut self, idx: usize) {
        self.next_consumer = idx + 1;
    }
}

impl Drop for Queue {
    /// A deleted queue's messages no longer count.
    fn drop(&mut self) {
        self.total_resident
            .fetch_sub(self.held_memory(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(body: &'static str) -> Entry {
        let m = Message::new(
            "",
            "q",
            Default::default(),
            Bytes::from_static(body.as_bytes()),
        );
        Entry::new(Arc::new(m), None)
    }

    #[test]
    fn a_message_past_the_delivery_limit_is_handed_back() {
        let args = QueueArgs {
            quorum: true,
            delivery_limit: Some(2),
            ..QueueArgs::default()
        };
        let mut q = Queue::new("q", true, false, None, FieldTable::default(), args, 0);
        q.push(msg("a"), 0, None);
        for returns in 0..2 {
            let e = q.pop().unwrap();
            assert_eq!(e.returns, returns);
            assert!(q.requeue(e).is_none());
        }
        let e = q.pop().unwrap();
        assert_eq!(e.returns, 2);
        let back = q.requeue(e).expect("a third return is over the limit");
        assert_eq!(back.returns, 3);
        assert!(q.is_empty());
    }

    #[test]
    fn requeue_restores_original_order() {
        let mut q = Queue::new(
            "q",
            false,
            false,
            None,
            FieldTable::default(),
            QueueArgs::default(),
            0,
        );
        q.push(msg("a"), 0, None);
        q.push(msg("b"), 0, None);
        q.push(msg("c"), 0, None);
        let a = q.pop().unwrap();
        let b = q.pop().unwrap();
        assert!(q.requeue(b).is_none());
        assert!(q.requeue(a).is_none());
        let order: Vec<_> = std::iter::from_fn(|| q.pop())
            .map(|e| (e.message.unwrap().body.clone(), e.redelivered))
            .collect();
        assert_eq!(
            order,
            vec![
                (Bytes::from_static(b"a"), true),
                (Bytes::from_static(b"b"), true),
                (Bytes::from_static(b"c"), false)
            ]
        );
    }

    #[test]
    fn the_broker_wide_total_follows_every_queue_change() {
        let total = Arc::new(AtomicU64::new(0));
        let new_queue = || {
            Queue::new(
                "q",
                false,
                false,
                None,
                FieldTable::default(),
                QueueArgs::default(),
                0,
            )
            .counting_into(total.clone())
        };
        let mut a = new_queue();
        let mut b = new_queue();
        a.push(msg("aaaa"), 0, None);
        a.push(msg("bb"), 0, None);
        b.push(msg("c"), 0, None);
        let held = |bodies: u64, messages: u64| bodies + messages * HELD_OVERHEAD;
        assert_eq!(total.load(Ordering::Relaxed), held(7, 3));
        let taken = a.pop().unwrap();
        assert_eq!(total.load(Ordering::Relaxed), held(3, 2));
        assert!(a.requeue(taken).is_none());
        assert_eq!(total.load(Ordering::Relaxed), held(7, 3));
        b.drain();
        assert_eq!(total.load(Ordering::Relaxed), held(6, 2));
        assert_eq!(a.held_memory(), held(6, 2));
        drop(a);
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }
}
