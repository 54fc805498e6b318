//! Paging persistent messages back in without reading files under the lock. When a queue's
//! next message is only in the log and a consumer (or a `basic.get`) could take it, the core
//! asks the pager thread for it (and a few after it, in order) and stops delivering from that
//! queue; when messages that are only in the log are dead-lettered, the pager reads them for
//! the dead-letter exchange (their log records stay until the copies are published). The
//! pager's answers come back through [`Core::paged`]. Messages that cannot be read are dropped
//! and reported.

use super::deadletter::{dead_lettered, Reason};
use super::{ChanKey, Core};
use crate::store::{Kind, PageRequest, Paged, PagedIn, PagedRef, Pager};
use std::collections::HashMap;
use std::sync::Arc;

/// Messages read back per request: enough to keep a consumer busy while the next read runs.
const READ_AHEAD: usize = 64;

/// What messages the pager reads back are for.
#[derive(Debug)]
pub(crate) enum PageFor {
    /// The head of a queue, for its consumers and waiting `basic.get`s.
    Delivery { vhost: String, queue: String },
    /// Messages that left `queue` for good, to go to a dead-letter exchange.
    DeadLetter {
        vhost: String,
        queue: String,
        reason: Reason,
        dlx: String,
        dlrk: Option<String>,
        depth: u32,
        at: u64,
    },
}

impl Core {
    /// From now on, messages (and compaction's copies) are read back by a pager thread that
    /// hands them to `done`, which is to give them to [`Core::paged`].
    pub(crate) fn start_pager(
        &mut self,
        done: Box<dyn Fn(Paged<PageFor>) + Send>,
    ) -> std::io::Result<()> {
        self.pager = Some(Pager::start(done)?);
        for log in self.stores() {
            log.offload_copies();
        }
        Ok(())
    }

    /// What the pager read: messages, or records to copy forward.
    pub(crate) fn paged(&mut self, paged: Paged<PageFor>) {
        match paged {
            Paged::Messages(messages) => self.paged_in(messages),
            Paged::Copied {
                kind,
                segment,
                records,
            } => {
                let log = match kind {
                    Kind::Durable => self.log.as_mut(),
                    Kind::Spill => self.spill.as_mut(),
                };
                if let Some(log) = log {
                    if let Err(e) = log.finish_copy(segment, records) {
                        tracing::error!(error = %e, segment, "copying live messages forward failed; the segment stays");
                    }
                }
            }
        }
    }

    /// Hands compaction's reads, if the logs want some, to the pager.
    pub(super) fn send_copy_job(&mut self) {
        let jobs: Vec<_> = self.stores().filter_map(|l| l.take_copy_job()).collect();
        let Some(pager) = self.pager.as_ref() else {
            return;
        };
        for job in jobs {
            if !pager.copy(job) {
                tracing::error!("the pager has stopped");
            }
        }
    }

    /// Whether messages only in the log are read by the pager (else in place).
    pub(super) fn has_pager(&self) -> bool {
        self.pager.is_some()
    }

    /// Asks the pager for the head of a queue whose next message is only in the log.
    pub(super) fn request_page_in(&mut self, vname: &str, queue: &str) {
        let Some(q) = self
            .vhosts
            .get_mut(vname)
            .and_then(|v| v.queues.get_mut(queue))
        else {
            return;
        };
        let ids = q.start_page_in(READ_AHEAD);
        let (refs, lost) = self.locate(ids);
        self.send_to_pager(
            refs,
            PageFor::Delivery {
                vhost: vname.to_string(),
                queue: queue.to_string(),
            },
        );
        if !lost.is_empty() {
            if let Some(q) = self
                .vhosts
                .get_mut(vname)
                .and_then(|v| v.queues.get_mut(queue))
            {
                let dropped = q.paged_in(&HashMap::new(), &lost);
                q.start_page_in(0);
                let ids = dropped.iter().filter_map(|e| e.persisted()).collect();
                self.forget(vname, queue, ids);
            }
        }
    }

    /// Asks the pager for messages that are to be dead-lettered.
    pub(super) fn request_dead_letter(&mut self, ids: Vec<u64>, then: PageFor) {
        let (refs, lost) = self.locate(ids);
        if let PageFor::DeadLetter { vhost, queue, .. } = &then {
            let (vhost, queue) = (vhost.clone(), queue.clone());
            self.forget(&vhost, &queue, lost);
        }
        self.send_to_pager(refs, then);
    }

    /// Where the records of `ids` are; the ids not in the log (reported) apart.
    fn locate(&mut self, ids: Vec<u64>) -> (Vec<PagedRef>, Vec<u64>) {
        let mut refs = Vec::with_capacity(ids.len());
        let mut lost = Vec::new();
        for id in ids {
            let Some(log) = self.store_of(id) else {
                lost.push(id);
                continue;
            };
            match log.locate(id) {
                Ok(r) => refs.push(r),
                Err(e) => {
                    tracing::error!(error = %e, "a paged-out message cannot be found in the log");
                    lost.push(id);
                }
            }
        }
        (refs, lost)
    }

    fn send_to_pager(&self, refs: Vec<PagedRef>, then: PageFor) {
        if let Some(pager) = &self.pager {
            if !pager.request(PageRequest { refs, then }) {
                tracing::error!("the pager has stopped");
            }
        }
    }

    /// The pager's answer: bodies go in place (or to the dead-letter exchange), unreadable
    /// messages are dropped (reported), and the queue delivers again.
    fn paged_in(&mut self, paged: PagedIn<PageFor>) {
        let mut bodies = HashMap::new();
        let mut lost = Vec::new();
        for (id, read) in paged.bodies {
            match read {
                Ok(message) => {
                    bodies.insert(id, Arc::new(message));
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading a message back from the log failed; it is dropped");
                    lost.push(id);
                }
            }
        }
        match paged.then {
            PageFor::Delivery { vhost, queue } => {
                let Some(q) = self
                    .vhosts
                    .get_mut(&vhost)
                    .and_then(|v| v.queues.get_mut(&queue))
                else {
                    return;
                };
                let dropped = q.paged_in(&bodies, &lost);
                let ids = dropped.iter().filter_map(|e| e.persisted()).collect();
                self.forget(&vhost, &queue, ids);
                self.serve_waiting_gets(&vhost, &queue);
                self.dispatch(&vhost, &queue);
            }
            PageFor::DeadLetter {
                vhost,
                queue,
                reason,
                dlx,
                dlrk,
                depth,
                at,
            } => {
                let mut ids: Vec<u64> = bodies.keys().copied().collect();
                ids.sort_unstable();
                for id in &ids {
                    let dead =
                        dead_lettered(&bodies[id], &queue, reason, &dlx, dlrk.as_deref(), at);
                    self.republish(&vhost, dead, depth);
                }
                // Forgotten after the copies are published, so a crash never loses both.
                ids.extend(lost);
                self.forget(&vhost, &queue, ids);
            }
        }
    }

    /// `basic.get`s that waited for this queue's head to be read back.
    fn serve_waiting_gets(&mut self, vname: &str, queue: &str) {
        let Some(q) = self
            .vhosts
            .get_mut(vname)
            .and_then(|v| v.queues.get_mut(queue))
        else {
            return;
        };
        let getters: Vec<(ChanKey, bool)> = q.take_getters();
        for (ck, no_ack) in getters {
            let asked = self
                .channels
                .get_mut(&ck)
                .is_some_and(|ch| ch.take_waiting_get(queue));
            if asked {
                if let Err(e) = self.basic_get(ck, queue, no_ack) {
                    tracing::debug!(error = %e, "a waiting basic.get failed");
                }
            }
        }
    }
}
