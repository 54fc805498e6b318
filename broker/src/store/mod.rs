//! Where messages are kept.
//!
//! - `QueueStore`: a queue's ready messages in order. `MemoryQueue` is one list;
//!   `PriorityQueue` keeps one list per priority level.
//! - `MessageLog`: the append-only segment log that makes persistent messages on durable
//!   queues survive restarts and crashes (records, segments, replay, group commit).
//! - `Definitions`: durable exchanges, queues and bindings in `redb`, shaped like RabbitMQ's
//!   definitions JSON; `DefsWriter` is the thread that commits changes to it off the lock.

pub mod definitions;
mod defs_writer;
pub(crate) mod json_args;
mod log;
mod memory;
mod paged;
mod pager;
mod priority;
pub(crate) mod record;
mod replay;
pub(crate) mod segment;
mod writer;

pub(crate) use defs_writer::DefsWriter;
pub use log::MessageLog;
pub(crate) use log::Recovery;
pub(crate) use memory::MemoryQueue;
pub(crate) use paged::PagedRef;
pub(crate) use pager::{PageRequest, Paged, PagedIn, Pager};
pub(crate) use priority::PriorityQueue;
pub(crate) use writer::{LogWriter, Outcome, Progress};

use crate::core::queue::Entry;

pub(crate) trait QueueStore: Send + std::fmt::Debug {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

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
