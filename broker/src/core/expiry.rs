//! Time-driven work: messages whose TTL ran out leave the head of their queue (dead-lettered
//! if the queue says so), queues unused for their `x-expires` are deleted, and the message
//! log drops segments nothing refers to any more.

use super::deadletter::Reason;
use super::Core;

impl Core {
    /// Runs expiry; the broker calls this a few times a second.
    pub fn tick(&mut self) {
        let now = (self.clock)();
        let mut expired_queues = Vec::new();
        let mut with_ttl = Vec::new();
        for vhost in self.vhosts.values() {
            for q in vhost.queues.values() {
                let unused = q.consumer_count() == 0
                    && q.args
                        .expires
                        .is_some_and(|e| now.saturating_sub(q.last_used_ms) > e);
                if unused {
                    expired_queues.push((vhost.name.clone(), q.name.clone()));
                } else if q.peek().is_some_and(|e| e.expired(now)) {
                    with_ttl.push((vhost.name.clone(), q.name.clone()));
                }
            }
        }
        for (vname, qname) in with_ttl {
            let mut dead = Vec::new();
            if let Some(q) = self
                .vhosts
                .get_mut(&*vname)
                .and_then(|v| v.queues.get_mut(&qname))
            {
                while q.peek().is_some_and(|e| e.expired(now)) {
                    dead.extend(q.pop());
                }
            }
            self.discard(&vname, &qname, dead, Some(Reason::Expired), 0);
        }
        for (vname, qname) in expired_queues {
            tracing::debug!(queue = %qname, "queue expired (x-expires)");
            self.remove_queue(&vname, &qname);
        }
        self.flush_log();
        for log in self.stores() {
            if let Err(e) = log.compact() {
                tracing::error!(error = %e, "compacting the message log failed");
            }
        }
        self.send_copy_job();
    }
}
