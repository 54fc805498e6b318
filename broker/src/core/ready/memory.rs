//! Ready messages in memory, in id order.

use super::QueueStore;
use crate::core::queue::Entry;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct MemoryQueue {
    entries: VecDeque<Entry>,
}

impl QueueStore for MemoryQueue {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn reserve(&mut self, n: usize) {
        self.entries.reserve_exact(n);
    }

    fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
    }

    fn pop(&mut self) -> Option<Entry> {
        self.entries.pop_front()
    }

    fn peek(&self) -> Option<&Entry> {
        self.entries.front()
    }

    fn requeue(&mut self, entry: Entry) {
        let at = self.entries.partition_point(|e| e.id < entry.id);
        self.entries.insert(at, entry);
    }

    fn drain(&mut self) -> Vec<Entry> {
        self.entries.drain(..).collect()
    }

    fn iter_mut(&mut self) -> Box<dyn Iterator<Item = &mut Entry> + '_> {
        Box::new(self.entries.iter_mut())
    }

    fn remove_where(&mut self, take: &mut dyn FnMut(&Entry) -> bool) -> Vec<Entry> {
        let mut taken = Vec::new();
        self.entries.retain(|e| match take(e) {
            true => {
                taken.push(e.clone());
                false
            }
            false => true,
        });
        taken
    }
}
