//! Ready messages in memory, in id order. A queue with nothing paged out (the usual case)
//! keeps whole entries, with no allocation per message; once a message that is only in the
//! log arrives, the queue keeps [`Slot`]s (24 bytes for such a message) until it is empty.

use super::slot::{Head, Slot};
use super::QueueStore;
use crate::core::queue::Entry;
use crate::message::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) enum MemoryQueue {
    Whole(List<Entry>),
    Compact(List<Slot>),
}

impl Default for MemoryQueue {
    fn default() -> Self {
        MemoryQueue::Whole(List::default())
    }
}

/// `$body` with `$list` bound to the list, whichever kind it is.
macro_rules! each {
    ($queue:expr, $list:ident => $body:expr) => {
        match $queue {
            MemoryQueue::Whole($list) => $body,
            MemoryQueue::Compact($list) => $body,
        }
    };
}

impl MemoryQueue {
    pub(super) fn slots(&self) -> Box<dyn Iterator<Item = Head> + '_> {
        match self {
            MemoryQueue::Whole(l) => Box::new(l.items.iter().map(Item::head)),
            MemoryQueue::Compact(l) => Box::new(l.items.iter().map(Item::head)),
        }
    }

    /// [`QueueStore::fill`], counting the bodies placed into `placed` and stopping once every
    /// one is (they were asked for from the head, so the scan stays short).
    pub(super) fn fill_from(
        &mut self,
        bodies: &HashMap<u64, Arc<Message>>,
        placed: &mut usize,
    ) -> (u64, u64) {
        each!(self, l => l.fill(bodies, placed))
    }

    /// Back to whole entries once empty.
    fn settle(&mut self) {
        if let MemoryQueue::Compact(l) = self {
            if l.items.is_empty() {
                *self = MemoryQueue::default();
            }
        }
    }

    /// Switches to slots, with room for `more`.
    fn compact(&mut self, more: usize) -> &mut List<Slot> {
        if let MemoryQueue::Whole(l) = self {
            let mut items = VecDeque::with_capacity(l.items.len() + more);
            items.extend(std::mem::take(&mut l.items).into_iter().map(Slot::from));
            *self = MemoryQueue::Compact(List { items });
        }
        match self {
            MemoryQueue::Compact(l) => l,
            MemoryQueue::Whole(_) => unreachable!("switched above"),
        }
    }
}

impl QueueStore for MemoryQueue {
    fn len(&self) -> usize {
        each!(self, l => l.items.len())
    }

    fn reserve(&mut self, n: usize) {
        self.compact(n);
    }

    fn push(&mut self, entry: Entry) {
        match self {
            MemoryQueue::Whole(l) if !Slot::compacts(&entry) => l.push(entry),
            _ => self.compact(1).push(Slot::from(entry)),
        }
    }

    fn pop(&mut self) -> Option<Entry> {
        let entry = each!(self, l => l.items.pop_front().map(Item::into_entry));
        self.settle();
        entry
    }

    fn peek(&self) -> Option<Head> {
        each!(self, l => l.items.front().map(Item::head))
    }

    fn requeue(&mut self, entry: Entry) {
        match self {
            MemoryQueue::Whole(l) => l.requeue(entry),
            MemoryQueue::Compact(l) => l.requeue(Slot::from(entry)),
        }
    }

    fn drain(&mut self) -> Vec<Entry> {
        let all = each!(self, l => std::mem::take(&mut l.items).into_iter().map(Item::into_entry).collect());
        *self = MemoryQueue::default();
        all
    }

    fn paged_out(&self, scan: usize, max: usize) -> Vec<u64> {
        super::paged_out(self.slots(), scan, max)
    }

    fn fill(&mut self, bodies: &HashMap<u64, Arc<Message>>) -> (u64, u64) {
        let mut placed = 0;
        self.fill_from(bodies, &mut placed)
    }

    fn take_persisted(&mut self, ids: &[u64]) -> Vec<Entry> {
        let taken = each!(self, l => l.take_persisted(ids));
        self.settle();
        taken
    }
}

/// What a list holds: an [`Entry`], or a [`Slot`].
pub(crate) trait Item: Sized {
    fn into_entry(self) -> Entry;
    fn id(&self) -> u64;
    fn head(&self) -> Head;
    fn persisted(&self) -> Option<u64>;
    /// Puts a body read back in place; its size if it was not in memory.
    fn fill(&mut self, body: &Arc<Message>) -> Option<u64>;
}

impl Item for Entry {
    fn into_entry(self) -> Entry {
        self
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn head(&self) -> Head {
        Head::of(self)
    }

    fn persisted(&self) -> Option<u64> {
        Entry::persisted(self)
    }

    fn fill(&mut self, body: &Arc<Message>) -> Option<u64> {
        Entry::fill(self, body)
    }
}

impl Item for Slot {
    fn into_entry(self) -> Entry {
        Entry::from(self)
    }

    fn id(&self) -> u64 {
        Slot::id(self)
    }

    fn head(&self) -> Head {
        Slot::head(self)
    }

    fn persisted(&self) -> Option<u64> {
        Slot::persisted(self)
    }

    fn fill(&mut self, body: &Arc<Message>) -> Option<u64> {
        Slot::fill(self, body)
    }
}

#[derive(Debug)]
pub(crate) struct List<T> {
    items: VecDeque<T>,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            items: VecDeque::new(),
        }
    }
}

impl<T: Item> List<T> {
    /// Grows by a quarter when full instead of doubling: a backlog of millions keeps at most
    /// a quarter of its size spare.
    fn make_room(&mut self) {
        if self.items.len() == self.items.capacity() {
            let more = (self.items.capacity() / 4).max(16);
            self.items.reserve_exact(more);
        }
    }

    fn push(&mut self, item: T) {
        self.make_room();
        self.items.push_back(item);
    }

    fn requeue(&mut self, item: T) {
        let at = self.items.partition_point(|s| s.id() < item.id());
        self.make_room();
        self.items.insert(at, item);
    }

    fn fill(&mut self, bodies: &HashMap<u64, Arc<Message>>, placed: &mut usize) -> (u64, u64) {
        let (mut bytes, mut count) = (0, 0);
        for item in self.items.iter_mut() {
            if *placed == bodies.len() {
                break;
            }
            let Some(body) = item.persisted().and_then(|id| bodies.get(&id)) else {
                continue;
            };
            *placed += 1;
            if let Some(size) = item.fill(body) {
                bytes += size;
                count += 1;
            }
        }
        (bytes, count)
    }

    fn take_persisted(&mut self, ids: &[u64]) -> Vec<Entry> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.items.capacity());
        for item in std::mem::take(&mut self.items) {
            match item.persisted().is_some_and(|id| ids.contains(&id)) {
                true => taken.push(item.into_entry()),
                false => kept.push_back(item),
            }
        }
        self.items = kept;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::num::NonZeroU64;

    fn body(text: &'static str) -> Arc<Message> {
        let m = Message::new(
            "",
            "q",
            Default::default(),
            Bytes::from_static(text.as_bytes()),
        );
        Arc::new(m)
    }

    impl MemoryQueue {
        fn kinds(&self) -> Vec<&'static str> {
            match self {
                MemoryQueue::Whole(l) => l.items.iter().map(|_| "entry").collect(),
                MemoryQueue::Compact(l) => l
                    .items
                    .iter()
                    .map(|s| match s {
                        Slot::Whole(_) => "whole",
                        Slot::Paged(_) => "paged",
                    })
                    .collect(),
            }
        }
    }

    /// A persistent message on a durable queue, paged out unless `resident`.
    fn entry(id: u64, msg_id: u64, resident: bool) -> Entry {
        let mut e = Entry::new(body("xyz"), Some(msg_id));
        e.id = id;
        if !resident {
            e.message = None;
        }
        e
    }

    #[test]
    fn paged_out_messages_are_compact_and_come_back_whole() {
        let mut q = MemoryQueue::default();
        q.push(entry(0, 10, true));
        q.push(entry(1, 11, false));
        let mut with_ttl = entry(2, 12, false);
        with_ttl.expires_at = NonZeroU64::new(5);
        q.push(with_ttl);
        q.push(entry(3, 13, false));
        assert_eq!(q.kinds(), ["whole", "paged", "whole", "paged"]);
        assert_eq!(q.paged_out(10, 10), [11, 12, 13]);
        assert_eq!(q.paged_out(2, 10), [11]);
        assert_eq!(q.paged_out(10, 1), [11]);
        let head = q.peek().unwrap();
        assert!(head.resident && head.persisted == Some(10));

        let bodies = HashMap::from([(11, body("one")), (13, body("abc"))]);
        assert_eq!(q.fill(&bodies), (6, 2), "sizes as published: 3 bytes each");
        assert_eq!(q.paged_out(10, 10), [12]);
        let lost = q.take_persisted(&[12]);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].expires_at, NonZeroU64::new(5));

        let first = q.pop().unwrap();
        let second = q.pop().unwrap();
        assert_eq!(
            (second.id, second.persisted(), second.size),
            (1, Some(11), 3)
        );
        assert_eq!(
            second.message.as_ref().unwrap().body,
            Bytes::from_static(b"one")
        );
        // Delivered and back: whole, before the rest.
        q.requeue(second);
        q.requeue(first);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|e| e.id).collect();
        assert_eq!(order, [0, 1, 3]);
    }

    #[test]
    fn a_redelivered_paged_message_keeps_its_flag_and_room_grows_by_a_quarter() {
        let mut q = MemoryQueue::default();
        q.push(entry(0, 1, true));
        assert_eq!(q.kinds(), ["entry"], "nothing paged out: whole entries");
        let mut e = entry(1, 2, false);
        e.redelivered = true;
        q.push(e);
        assert_eq!(q.kinds(), ["whole", "paged"]);
        q.pop();
        assert!(q.pop().unwrap().redelivered);
        assert!(
            matches!(q, MemoryQueue::Whole(_)),
            "empty: back to whole entries"
        );
        for id in 0..1000 {
            q.push(entry(id, id + 1, false));
        }
        let MemoryQueue::Compact(list) = &q else {
            panic!("paged-out messages are kept compact");
        };
        assert!(list.items.capacity() <= 1000 * 5 / 4 + 16);
        assert_eq!(q.drain().len(), 1000);
        assert!(q.is_empty());
    }
}
