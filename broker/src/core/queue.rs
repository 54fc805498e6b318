//! A queue: ready messages in publish order, and the consumers that take turns receiving them.

use super::channel::ChanKey;
use super::message::Message;
use super::ConnId;
use crate::store::{MemoryQueue, QueueStore};
use amq_protocol::types::FieldTable;
use std::sync::Arc;

/// A message as it sits in one queue.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in the queue's publish order; requeued messages go back to it.
    pub id: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRef {
    pub channel: ChanKey,
    pub tag: Arc<str>,
    pub exclusive: bool,
}

#[derive(Debug)]
pub struct Queue {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive_owner: Option<ConnId>,
    pub kind: QueueType,
    pub arguments: FieldTable,
    messages: Box<dyn QueueStore>,
    next_id: u64,
    consumers: Vec<ConsumerRef>,
    next_consumer: usize,
}

impl Queue {
    pub fn new(
        name: impl Into<String>,
        durable: bool,
        auto_delete: bool,
        exclusive_owner: Option<ConnId>,
        kind: QueueType,
        arguments: FieldTable,
    ) -> Queue {
        Queue {
            name: name.into(),
            durable,
            auto_delete,
            exclusive_owner,
            kind,
            arguments,
            messages: Box::<MemoryQueue>::default(),
            next_id: 0,
            consumers: Vec::new(),
            next_consumer: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn push(&mut self, message: Arc<Message>) {
        let id = self.next_id;
        self.next_id += 1;
        self.messages.push(Entry {
            id,
            message,
            redelivered: false,
        });
    }

    pub fn pop(&mut self) -> Option<Entry> {
        self.messages.pop()
    }

    /// Puts a delivered message back at its original place, marked redelivered.
    pub fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        self.messages.requeue(entry);
    }

    pub fn purge(&mut self) -> usize {
        self.messages.purge()
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
    pub fn rotation(&self) -> impl Iterator<Item = (usize, &ConsumerRef)> {
        let n = self.consumers.len();
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(body: &'static str) -> Arc<Message> {
        Arc::new(Message::new(
            "",
            "q",
            Default::default(),
            Bytes::from_static(body.as_bytes()),
        ))
    }

    #[test]
    fn requeue_restores_original_order() {
        let mut q = Queue::new(
            "q",
            false,
            false,
            None,
            QueueType::Classic,
            FieldTable::default(),
        );
        q.push(msg("a"));
        q.push(msg("b"));
        q.push(msg("c"));
        let a = q.pop().unwrap();
        let b = q.pop().unwrap();
        q.requeue(b);
        q.requeue(a);
        let order: Vec<_> = std::iter::from_fn(|| q.pop())
            .map(|e| (e.message.body.clone(), e.redelivered))
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
}
