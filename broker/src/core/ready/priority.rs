//! A priority queue (`x-max-priority`): one list per level, the highest non-empty level first,
//! publish order within a level. Priorities above the maximum count as the maximum.

use super::{MemoryQueue, QueueStore};
use crate::core::queue::Entry;

#[derive(Debug)]
pub(crate) struct PriorityQueue {
    levels: Vec<MemoryQueue>,
    len: usize,
}

impl PriorityQueue {
    pub(crate) fn new(max_priority: u8) -> PriorityQueue {
        PriorityQueue {
            levels: (0..=max_priority).map(|_| MemoryQueue::default()).collect(),
            len: 0,
        }
    }

    fn level(&mut self, entry: &Entry) -> &mut MemoryQueue {
        let top = self.levels.len() - 1;
        &mut self.levels[(entry.priority as usize).min(top)]
    }
}

impl QueueStore for PriorityQueue {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, entry: Entry) {
        self.len += 1;
        self.level(&entry).push(entry);
    }

    fn pop(&mut self) -> Option<Entry> {
        let entry = self.levels.iter_mut().rev().find_map(|l| l.pop())?;
        self.len -= 1;
        Some(entry)
    }

    fn peek(&self) -> Option<&Entry> {
        self.levels.iter().rev().find_map(|l| l.peek())
    }

    fn requeue(&mut self, entry: Entry) {
        self.len += 1;
        self.level(&entry).requeue(entry);
    }

    fn drain(&mut self) -> Vec<Entry> {
        self.len = 0;
        self.levels
            .iter_mut()
            .rev()
            .flat_map(|l| l.drain())
            .collect()
    }

    fn iter_mut(&mut self) -> Box<dyn Iterator<Item = &mut Entry> + '_> {
        Box::new(self.levels.iter_mut().rev().flat_map(|l| l.iter_mut()))
    }

    fn remove_where(&mut self, take: &mut dyn FnMut(&Entry) -> bool) -> Vec<Entry> {
        let taken: Vec<Entry> = self
            .levels
            .iter_mut()
            .rev()
            .flat_map(|l| l.remove_where(take))
            .collect();
        self.len -= taken.len();
        taken
    }
}
