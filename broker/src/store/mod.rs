//! Where a queue's ready messages are kept. The core only talks to `QueueStore`; `MemoryQueue`
//! keeps messages in memory, so nothing survives a restart. The durable segment log of
//! `DESIGN.md` is to be the second implementation.

mod memory;

pub use memory::MemoryQueue;

use crate::core::queue::Entry;

pub trait QueueStore: Send + std::fmt::Debug {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a newly published message (ids grow with each push).
    fn push(&mut self, entry: Entry);

    /// Takes the oldest ready message.
    fn pop(&mut self) -> Option<Entry>;

    /// Puts a delivered message back at the place its id gives it.
    fn requeue(&mut self, entry: Entry);

    /// Drops every ready message; returns how many there were.
    fn purge(&mut self) -> usize;
}
