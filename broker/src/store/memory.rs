//! Ready messages in memory, in id order.

use super::QueueStore;
use crate::core::queue::Entry;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct MemoryQueue {
    entries: VecDeque<Entry>,
}

impl QueueStore for MemoryQueue {
    fn len(&self) -> usize {
        self.entries.len()
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
}
