//! A queue's ready messages in the order they are delivered: `MemoryQueue` is one list,
//! `PriorityQueue` one list per priority level. (What is only on disk is the log's; these hold
//! the entries, with or without their bodies, paged-out ones as compact [`Slot`]s.)

mod memory;
mod priority;
mod slot;

pub(crate) use memory::MemoryQueue;
pub(crate) use priority::PriorityQueue;
pub(crate) use slot::Head;

use super::queue::Entry;
use crate::message::Message;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) trait QueueStore: Send + std::fmt::Debug {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `n` more messages that are only in the log (recovery knows how many
    /// are coming).
    fn reserve(&mut self, n: usize);

    /// Appends a newly published message (ids grow with each push).
    fn push(&mut self, entry: Entry);

    /// Takes the next message to deliver.
    fn pop(&mut self) -> Option<Entry>;

    /// What `pop` would return.
    fn peek(&self) -> Option<Head>;

    /// Puts a delivered message back at the place its id gives it.
    fn requeue(&mut self, entry: Entry);

    /// Takes every ready message.
    fn drain(&mut self) -> Vec<Entry>;

    /// The log ids of the messages among the next `scan` to deliver whose bodies are only in
    /// the log, in delivery order, at most `max`.
    fn paged_out(&self, scan: usize, max: usize) -> Vec<u64>;

    /// Puts bodies read back from the log in place (by log id): the body bytes and count of
    /// the messages that were not in memory.
    fn fill(&mut self, bodies: &HashMap<u64, Arc<Message>>) -> (u64, u64);

    /// Takes the messages with these log ids, wherever they are.
    fn take_persisted(&mut self, ids: &[u64]) -> Vec<Entry>;
}

/// The log ids of the messages among the first `scan` of `heads` whose bodies are only in the
/// log, at most `max` ([`QueueStore::paged_out`]).
fn paged_out(heads: impl Iterator<Item = Head>, scan: usize, max: usize) -> Vec<u64> {
    heads
        .take(scan)
        .filter(|h| !h.resident)
        .filter_map(|h| h.persisted)
        .take(max)
        .collect()
}
