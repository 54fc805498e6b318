//! Which file holds a message that is not in memory, and the spill file. Past
//! `message_memory`, a persistent message on a durable queue keeps only its place in the queue
//! and its id in the durable log; any other message that no consumer can take at once is
//! written to the spill file (an unsynced log, wiped at start) and does the same, so a
//! backlog of transient messages is bounded by disk, not RAM. Both are read back by the pager.
//! Spill ids start at [`SPILL_BASE`]: an entry's id names its file.

use super::Core;
use crate::message::Message;
use crate::store::{MessageLog, SPILL_BASE};
use smallvec::SmallVec;
use std::sync::Arc;

impl Core {
    /// From now on transient messages past the memory budget go to `spill`.
    pub fn attach_spill(&mut self, mut spill: MessageLog) {
        if self.pager.is_some() {
            spill.offload_copies();
        }
        self.spill = Some(spill);
    }

    /// The log that holds message `id`: the spill file or the durable log.
    pub(super) fn store_of(&mut self, id: u64) -> Option<&mut MessageLog> {
        match id >= SPILL_BASE {
            true => self.spill.as_mut(),
            false => self.log.as_mut(),
        }
    }

    /// Both logs, the durable one first (for what is done to each alike).
    pub(super) fn stores(&mut self) -> impl Iterator<Item = &mut MessageLog> {
        self.log.iter_mut().chain(self.spill.iter_mut())
    }

    /// Writes `message` to the spill file for those of `queues` (of vhost `vname`) that are to
    /// keep only its place: ones with messages ahead of it or no consumer. Returns its spill
    /// id and those queues; None when none is, or when there is no spill file or it cannot be
    /// written to now (the message then stays in memory).
    pub(super) fn spill_message<'q>(
        &mut self,
        vname: &str,
        message: &Arc<Message>,
        now: u64,
        queues: &[&'q str],
    ) -> Option<(u64, Names<'q>)> {
        let vhost = self.vhosts.get(vname)?;
        let behind: Names<'q> = queues
            .iter()
            .copied()
            .filter(|name| {
                vhost
                    .queues
                    .get(*name)
                    .is_some_and(|q| !q.is_empty() || q.consumer_count() == 0)
            })
            .collect();
        let spill = self.spill.as_mut()?;
        if behind.is_empty() || spill.writer().failing() {
            return None;
        }
        let holders: SmallVec<[(&str, &str); 2]> = behind.iter().map(|q| (vname, *q)).collect();
        match spill.publish(message, now, &holders) {
            Ok(id) => Some((id, behind)),
            Err(e) => {
                tracing::error!(error = %e, "writing to the spill file failed; the message stays in memory");
                None
            }
        }
    }
}

/// Queue names, most often one.
pub(super) type Names<'q> = SmallVec<[&'q str; 2]>;
