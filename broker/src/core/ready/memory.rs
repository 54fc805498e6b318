//! Ready messages in memory, in id order, in two lists: whole entries, then, from the first
//! message that arrived only in the log (a backlog past `message_memory`), [`Slot`]s, 24 bytes
//! for such a message. A queue with nothing paged out (the usual case) uses only the first,
//! with no allocation per message; nothing is ever moved from one list to the other.

use super::slot::{Head, Slot};
use super::QueueStore;
use crate::core::queue::Entry;
use crate::message::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Invariant: every id in `whole` is below every id in `slots`.
#[derive(Debug, Default)]
pub(crate) struct MemoryQueue {
    whole: List<Entry>,
    slots: List<Slot>,
}

impl MemoryQueue {
    pub(super) fn heads(&self) -> impl Iterator<Item = Head> + '_ {
        let whole = self.whole.items.iter().map(Item::head);
        whole.chain(self.slots.items.iter().map(Item::head))
    }

    /// [`QueueStore::take_persisted`] into `taken`, stopping once every id is found.
    pub(super) fn take_persisted_into(&mut self, ids: &[u64], taken: &mut Vec<Entry>) {
        self.whole.take_persisted(ids, taken);
        self.slots.take_persisted(ids, taken);
    }

    /// [`QueueStore::fill`], counting the bodies placed into `placed` and stopping once every
    /// one is (they were asked for from the head, so the scan stays short).
    pub(super) fn fill_from(
        &mut self,
        bodies: &HashMap<u64, Arc<Message>>,
        placed: &mut usize,
    ) -> (u64, u64) {
        let (b1, c1) = self.whole.fill(bodies, placed);
        let (b2, c2) = self.slots.fill(bodies, placed);
        (b1 + b2, c1 + c2)
    }
}

impl QueueStore for MemoryQueue {
    fn len(&self) -> usize {
        self.whole.items.len() + self.slots.items.len()
    }

    fn reserve(&mut self, n: usize) {
        self.slots.items.reserve_exact(n);
    }

    fn push(&mut self, entry: Entry) {
        match self.slots.items.is_empty() && !Slot::compacts(&entry) {
            true => self.whole.push(entry),
            false => self.slots.push(Slot::from(entry)),
        }
    }

    fn pop(&mut self) -> Option<Entry> {
        match self.whole.items.pop_front() {
            Some(entry) => Some(entry),
            None => self.slots.items.pop_front().map(Item::into_entry),
        }
    }

    fn peek(&self) -> Option<Head> {
        self.heads().next()
    }

    fn requeue(&mut self, entry: Entry) {
        match self.slots.items.front() {
            Some(first) if first.id() < entry.id => self.slots.requeue(Slot::from(entry)),
            _ => self.whole.requeue(entry),
        }
    }

    fn drain(&mut self) -> Vec<Entry> {
        let whole = std::mem::take(&mut self.whole.items);
        let slots = std::mem::take(&mut self.slots.items);
        whole
            .into_iter()
            .chain(slots.into_iter().map(Item::into_entry))
            .collect()
    }

    fn paged_out(&self, scan: usize, max: usize) -> Vec<u64> {
        super::paged_out(self.heads(), scan, max)
    }

    fn fill(&mut self, bodies: &HashMap<u64, Arc<Message>>) -> (u64, u64) {
        let mut placed = 0;
        self.fill_from(bodies, &mut placed)
    }

    fn take_persisted(&mut self, ids: &[u64]) -> Vec<Entry> {
        let mut taken = Vec::new();
        self.take_persisted_into(ids, &mut taken);
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

    /// Moves the messages with these log ids into `taken`, in place. They were asked for from
    /// the head (a page-in that failed), so the scan stops once all are found.
    fn take_persisted(&mut self, ids: &[u64], taken: &mut Vec<Entry>) {
        let mut at = 0;
        while at < self.items.len() && taken.len() < ids.len() {
            if !self.items[at]
                .persisted()
                .is_some_and(|id| ids.contains(&id))
            {
                at += 1;
                continue;
            }
            if let Some(item) = self.items.remove(at) {
                taken.push(item.into_entry());
            }
        }
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
            let whole = self.whole.items.iter().map(|_| "entry");
            let slots = self.slots.items.iter().map(|s| match s {
                Slot::Whole(_) => "whole",
                Slot::Paged(_) => "paged",
            });
            whole.chain(slots).collect()
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
        assert_eq!(q.kinds(), ["entry", "paged", "whole", "paged"]);
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
        // Delivered and back: both come before every slot left, so among the whole entries.
        q.requeue(second);
        q.requeue(first);
        assert_eq!(q.kinds(), ["entry", "entry", "whole"]);
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
        q.push(entry(2, 3, true));
        assert_eq!(
            q.kinds(),
            ["entry", "paged", "whole"],
            "after a paged one: slots"
        );
        q.pop();
        assert!(q.pop().unwrap().redelivered);
        q.pop();
        q.push(entry(3, 4, true));
        assert_eq!(q.kinds(), ["entry"], "empty again: whole entries");
        q.pop();
        for id in 0..1000 {
            q.push(entry(id, id + 1, false));
        }
        assert!(q.slots.items.capacity() <= 1000 * 5 / 4 + 16);
        assert_eq!(q.drain().len(), 1000);
        assert!(q.is_empty());
    }

    #[test]
    fn requeues_keep_id_order_across_both_lists() {
        let mut q = MemoryQueue::default();
        q.push(entry(0, 1, false));
        q.push(entry(1, 2, true));
        q.push(entry(2, 3, false));
        q.fill(&HashMap::from([(1, body("abc"))]));
        let (first, second) = (q.pop().unwrap(), q.pop().unwrap());
        // Taken in order, they are older than every slot left: back among whole entries.
        q.requeue(second);
        q.requeue(first);
        assert_eq!(q.kinds(), ["entry", "entry", "paged"]);
        // One newer than the first slot goes among the slots, at its place.
        let mut late = entry(5, 9, true);
        late.redelivered = true;
        q.push(entry(6, 10, false));
        q.requeue(late);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|e| e.id).collect();
        assert_eq!(order, [0, 1, 2, 5, 6]);
    }
}
