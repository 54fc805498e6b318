//! Paging persistent messages back in without reading files under the lock: when a queue's
//! next message is only in the log and a consumer could take it, the core asks the pager
//! thread for it (and a few after it, in order) and stops delivering from that queue; the
//! pager's answer comes back through [`Core::paged_in`], which puts the bodies in place and
//! delivers. Messages that cannot be read are dropped and reported, as before.

use super::Core;
use crate::store::{PageRequest, Paged, PagedIn, Pager};
use std::collections::HashMap;
use std::sync::Arc;

/// Messages read back per request: enough to keep a consumer busy while the next read runs.
const READ_AHEAD: usize = 64;

impl Core {
    /// From now on, messages (and compaction's copies) are read back by a pager thread that
    /// hands them to `done`, which is to give them to [`Core::paged`].
    pub fn start_pager(&mut self, done: Box<dyn Fn(Paged) + Send>) -> std::io::Result<()> {
        self.pager = Some(Pager::start(done)?);
        if let Some(log) = self.log.as_mut() {
            log.offload_copies();
        }
        Ok(())
    }

    /// What the pager read: messages for a queue, or records to copy forward.
    pub fn paged(&mut self, paged: Paged) {
        match paged {
            Paged::Messages(messages) => self.paged_in(messages),
            Paged::Copied { segment, records } => {
                if let Some(log) = self.log.as_mut() {
                    if let Err(e) = log.finish_copy(segment, records) {
                        tracing::error!(error = %e, segment, "copying live messages forward failed; the segment stays");
                    }
                }
            }
        }
    }

    /// Hands compaction's reads, if it wants some, to the pager.
    pub(super) fn send_copy_job(&mut self) {
        let (Some(pager), Some(log)) = (self.pager.as_ref(), self.log.as_mut()) else {
            return;
        };
        if let Some(job) = log.take_copy_job() {
            if !pager.copy(job) {
                tracing::error!("the pager has stopped");
            }
        }
    }

    /// Asks the pager for the head of a queue whose next message is only in the log.
    /// Returns false when there is no pager (the caller reads it back itself).
    pub(super) fn request_page_in(&mut self, vname: &str, queue: &str) -> bool {
        let (Some(pager), Some(log)) = (self.pager.as_ref(), self.log.as_mut()) else {
            return false;
        };
        let Some(q) = self
            .vhosts
            .get_mut(vname)
            .and_then(|v| v.queues.get_mut(queue))
        else {
            return true;
        };
        let ids = q.start_page_in(READ_AHEAD);
        let mut refs = Vec::with_capacity(ids.len());
        let mut lost = Vec::new();
        for id in ids {
            match log.locate(id) {
                Ok(r) => refs.push(r),
                Err(e) => {
                    tracing::error!(error = %e, "a paged-out message cannot be found in the log");
                    lost.push(id);
                }
            }
        }
        let request = PageRequest {
            vhost: vname.to_string(),
            queue: queue.to_string(),
            refs,
        };
        if !pager.request(request) {
            tracing::error!("the pager has stopped");
        }
        if !lost.is_empty() {
            let dropped = q.paged_in(&HashMap::new(), &lost);
            q.start_page_in(0);
            let ids = dropped.iter().filter_map(|e| e.persisted).collect();
            self.forget(vname, queue, ids);
        }
        true
    }

    /// The pager's answer: bodies go in place, unreadable messages are dropped (reported),
    /// and the queue delivers again.
    fn paged_in(&mut self, paged: PagedIn) {
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
        let Some(q) = self
            .vhosts
            .get_mut(&paged.vhost)
            .and_then(|v| v.queues.get_mut(&paged.queue))
        else {
            return;
        };
        let dropped = q.paged_in(&bodies, &lost);
        let ids = dropped.iter().filter_map(|e| e.persisted).collect();
        self.forget(&paged.vhost, &paged.queue, ids);
        self.dispatch(&paged.vhost, &paged.queue);
    }
}
