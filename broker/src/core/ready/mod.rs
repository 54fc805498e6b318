//! A queue's ready messages in the order they are delivered: `MemoryQueue` is one list,
//! `PriorityQueue` one list per priority level. (What is only on disk is the log's; these hold
//! the entries, with or without their bodies.)

mod memory;
mod priority;

pub(crate) use memory::MemoryQueue;
pub(crate) use priority::PriorityQueue;

use super::queue::Entry;

pub(crate) trait QueueStore: Send + std::fmt::Debug {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `n` more messages at once (recovery knows how many are coming).
    fn reserve(&mut self, _n: usize) {}

    /// Appends a newly published message (ids grow with each push).
    fn push(&mut self, entry: Entry);

    /// Takes the next message to deliver.
    fn pop(&mut self) -> Option<Entry>;

    /// The next message `pop` would return.
    fn peek(&self) -> Option<&Entry>;

    /// Puts a delivered message back at the place its id gives it.
    fn requeue(&mut self, entry: Entry);

    /// Takes every ready message.
    fn drain(&mut self) -> Vec<Entry>;

    /// The ready messages in the order `pop` takes them.
    fn iter_mut(&mut self) -> Box<dyn Iterator<Item = &mut Entry> + '_>;

    /// Takes the ready messages `take` picks, wherever they are.
    fn remove_where(&mut self, take: &mut dyn FnMut(&Entry) -> bool) -> Vec<Entry>;
}
