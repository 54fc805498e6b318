//! Ready messages in memory, in id order.

use super::slot::{Head, Slot};
use super::QueueStore;
use crate::core::queue::Entry;
use crate::message::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct MemoryQueue {
    slots: VecDeque<Slot>,
}

impl MemoryQueue {
    /// Grows by a quarter when full instead of doubling: a backlog of millions keeps at most
    /// a quarter of its size spare.
    fn make_room(&mut self) {
        if self.slots.len() == self.slots.capacity() {
            let more = (self.slots.capacity() / 4).max(16);
            self.slots.reserve_exact(more);
        }
    }

    pub(super) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }

    /// [`QueueStore::fill`], counting the bodies placed into `placed` and stopping once every
    /// one is (they were asked for from the head, so the scan stays short).
    pub(super) fn fill_from(
        &mut self,
        bodies: &HashMap<u64, Arc<Message>>,
        placed: &mut usize,
    ) -> (u64, u64) {
        let (mut bytes, mut count) = (0, 0);
        for slot in self.slots.iter_mut() {
            if *placed == bodies.len() {
                break;
            }
            let Some(body) = slot.persisted().and_then(|id| bodies.get(&id)) else {
                continue;
            };
            *placed += 1;
            if let Some(size) = slot.fill(body) {
                bytes += size;
                count += 1;
            }
        }
        (bytes, count)
    }
}

impl QueueStore for MemoryQueue {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn reserve(&mut self, n: usize) {
        self.slots.reserve_exact(n);
    }

    fn push(&mut self, entry: Entry) {
        self.make_room();
        self.slots.push_back(Slot::from(entry));
    }

    fn pop(&mut self) -> Option<Entry> {
        self.slots.pop_front().map(Entry::from)
    }

    fn peek(&self) -> Option<Head> {
        self.slots.front().map(Slot::head)
    }

    fn requeue(&mut self, entry: Entry) {
        let at = self.slots.partition_point(|s| s.id() < entry.id);
        self.make_room();
        self.slots.insert(at, Slot::from(entry));
    }

    fn drain(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.slots)
            .into_iter()
            .map(Entry::from)
            .collect()
    }

    fn paged_out(&self, scan: usize, max: usize) -> Vec<u64> {
        self.slots
            .iter()
            .take(scan)
            .filter_map(Slot::paged_out)
            .take(max)
            .collect()
    }

    fn fill(&mut self, bodies: &HashMap<u64, Arc<Message>>) -> (u64, u64) {
        let mut placed = 0;
        self.fill_from(bodies, &mut placed)
    }

    fn take_persisted(&mut self, ids: &[u64]) -> Vec<Entry> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.slots.capacity());
        for slot in std::mem::take(&mut self.slots) {
            match slot.persisted().is_some_and(|id| ids.contains(&id)) {
                true => taken.push(Entry::from(slot)),
                false => kept.push_back(slot),
            }
        }
        self.slots = kept;
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
        let kinds: Vec<bool> = q.slots().map(|s| matches!(s, Slot::Paged(_))).collect();
        assert_eq!(kinds, [false, true, false, true]);
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
        let mut e = entry(0, 1, false);
        e.redelivered = true;
        q.push(e);
        assert!(matches!(q.slots().next(), Some(Slot::Paged(_))));
        assert!(q.pop().unwrap().redelivered);
        for id in 0..1000 {
            q.push(entry(id, id + 1, false));
        }
        assert!(q.slots.capacity() <= 1000 * 5 / 4 + 16);
        assert_eq!(q.drain().len(), 1000);
        assert!(q.is_empty());
    }
}
