//! A priority queue (`x-max-priority`): one list per level, the highest non-empty level first,
//! publish order within a level. Priorities above the maximum count as the maximum.

use super::slot::Head;
use super::{MemoryQueue, QueueStore};
use crate::core::queue::Entry;
use crate::message::Message;
use std::collections::HashMap;
use std::sync::Arc;

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

    fn reserve(&mut self, _n: usize) {}

    fn push(&mut self, entry: Entry) {
        self.len += 1;
        self.level(&entry).push(entry);
    }

    fn pop(&mut self) -> Option<Entry> {
        let entry = self.levels.iter_mut().rev().find_map(|l| l.pop())?;
        self.len -= 1;
        Some(entry)
    }

    fn peek(&self) -> Option<Head> {
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

    fn paged_out(&self, scan: usize, max: usize) -> Vec<u64> {
        let heads = self.levels.iter().rev().flat_map(|l| l.heads());
        super::paged_out(heads, scan, max)
    }

    fn fill(&mut self, bodies: &HashMap<u64, Arc<Message>>) -> (u64, u64) {
        let mut placed = 0;
        let (mut bytes, mut count) = (0, 0);
        for level in self.levels.iter_mut().rev() {
            let (b, c) = level.fill_from(bodies, &mut placed);
            bytes += b;
            count += c;
        }
        (bytes, count)
    }

    fn take_persisted(&mut self, ids: &[u64]) -> Vec<Entry> {
        let mut taken = Vec::new();
        for level in self.levels.iter_mut().rev() {
            level.take_persisted_into(ids, &mut taken);
        }
        self.len -= taken.len();
        taken
    }
}
