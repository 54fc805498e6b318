//! One ready message as a queue's list holds it. Most of a long backlog is persistent messages
//! paged out to the log, each of which needs only its place, its log id, its size and priority:
//! those are kept in 24 bytes. Anything else (a body in memory, a TTL, a return count) keeps
//! the whole entry, boxed.

use crate::core::queue::Entry;
use crate::message::Message;
use std::num::NonZeroU64;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) enum Slot {
    Whole(Box<Entry>),
    Paged(Paged),
}

/// A persistent message whose body is only in the log, with no TTL and not returned since
/// the broker started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paged {
    id: u64,
    msg_id: NonZeroU64,
    size: u32,
    priority: u8,
    redelivered: bool,
}

// A queue holding millions of paged-out messages costs this much per message (plus the log's
// 16-byte index slot).
const _: () = assert!(std::mem::size_of::<Slot>() == 24);

/// What a ready message is, without taking it: what delivery and expiry look at first, and
/// what the pager is asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub expires_at: Option<NonZeroU64>,
    /// Its body is in memory.
    pub resident: bool,
    /// Its id in the message log.
    pub persisted: Option<u64>,
}

impl Head {
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|at| now_ms > at.get())
    }

    pub(crate) fn of(e: &Entry) -> Head {
        Head {
            expires_at: e.expires_at,
            resident: e.message.is_some(),
            persisted: e.persisted(),
        }
    }
}

impl From<Entry> for Slot {
    fn from(entry: Entry) -> Slot {
        match (Slot::compacts(&entry), entry.persisted) {
            (true, Some(msg_id)) => Slot::Paged(Paged {
                id: entry.id,
                msg_id,
                size: entry.size as u32,
                priority: entry.priority,
                redelivered: entry.redelivered,
            }),
            _ => Slot::Whole(Box::new(entry)),
        }
    }
}

impl From<Slot> for Entry {
    fn from(slot: Slot) -> Entry {
        match slot {
            Slot::Whole(entry) => *entry,
            Slot::Paged(p) => Entry {
                id: p.id,
                message: None,
                redelivered: p.redelivered,
                returns: 0,
                persisted: Some(p.msg_id),
                size: p.size as u64,
                priority: p.priority,
                expires_at: None,
            },
        }
    }
}

impl Slot {
    /// Whether `entry` would be kept in 24 bytes.
    pub(crate) fn compacts(entry: &Entry) -> bool {
        entry.message.is_none()
            && entry.persisted.is_some()
            && entry.expires_at.is_none()
            && entry.returns == 0
            && u32::try_from(entry.size).is_ok()
    }

    pub(crate) fn id(&self) -> u64 {
        match self {
            Slot::Whole(e) => e.id,
            Slot::Paged(p) => p.id,
        }
    }

    pub(crate) fn head(&self) -> Head {
        match self {
            Slot::Whole(e) => Head::of(e),
            Slot::Paged(p) => Head {
                expires_at: None,
                resident: false,
                persisted: Some(p.msg_id.get()),
            },
        }
    }

    /// Its log id, whether its body is in memory or not.
    pub(crate) fn persisted(&self) -> Option<u64> {
        match self {
            Slot::Whole(e) => e.persisted(),
            Slot::Paged(p) => Some(p.msg_id.get()),
        }
    }

    /// Puts a body read back from the log in place; the body's size if it was not in memory.
    pub(crate) fn fill(&mut self, body: &Arc<Message>) -> Option<u64> {
        if let Slot::Paged(p) = *self {
            *self = Slot::Whole(Box::new(Entry::from(Slot::Paged(p))));
        }
        match self {
            Slot::Whole(entry) => entry.fill(body),
            Slot::Paged(_) => None,
        }
    }
}
