//! Where messages are kept.
//!
//! - `MessageLog`: the append-only segment log that makes persistent messages on durable
//!   queues survive restarts and crashes (records, segments, replay, group commit); the same
//!   structure, unsynced, is the spill file of transient messages past the memory budget.
//! - `Definitions`: durable exchanges, queues and bindings in `redb`, shaped like RabbitMQ's
//!   definitions JSON; `DefsWriter` is the thread that commits changes to it off the lock.

pub mod definitions;
mod defs_writer;
pub(crate) mod json_args;
mod live;
mod log;
mod paged;
mod pager;
pub(crate) mod record;
mod replay;
pub(crate) mod segment;
mod writer;

pub(crate) use defs_writer::DefsWriter;
pub(crate) use log::Recovery;
pub(crate) use log::{Kind, SPILL_BASE};
pub use log::{MessageLog, SEGMENT_BYTES};
pub(crate) use paged::PagedRef;
pub(crate) use pager::{PageRequest, Paged, PagedIn, Pager};
pub(crate) use replay::Meta;
pub(crate) use writer::{LogWriter, Outcome, Progress};
