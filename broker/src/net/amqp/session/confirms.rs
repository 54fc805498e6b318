//! Publisher confirms and replies that wait for the disk: a confirm (or `tx.commit-ok`) goes
//! out once the message log is durable past its message, a `declare-ok` of a durable object
//! once the definitions writer has committed it; runs of equal outcomes go as one
//! `basic.ack` / `basic.nack` with `multiple`.

use super::{Mode, Session};
use crate::core::{Outbound, Outlet};
use crate::error::{code, AmqpError};
use crate::store::Outcome;
use amq_protocol::protocol::{basic, AMQPClass};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// A reply that waits for the message log (`tx.commit-ok`) or the definitions store
/// (`declare-ok` of a durable queue) to be on disk.
pub(super) struct Deferred {
    /// The log's durable position it needs.
    pub(super) log: u64,
    /// The definition changes it needs settled: numbers after `.0`, up to `.1`.
    pub(super) defs: (u64, u64),
    pub(super) channel: u16,
    pub(super) reply: AMQPClass,
}

/// A publish not yet confirmed: its sequence number, the log position that must be durable
/// first, and whether it is to be nacked (a queue refused it).
pub(super) struct Unconfirmed {
    pub(super) seq: u64,
    pub(super) wait_for: u64,
    pub(super) nack: bool,
}

/// Publisher confirms of a channel in confirm mode.
#[derive(Default)]
pub(super) struct Confirms {
    /// The last sequence number assigned.
    pub(super) assigned: u64,
    /// In sequence order, with non-decreasing `wait_for`.
    pub(super) pending: VecDeque<Unconfirmed>,
}

impl Session {
    /// Sends every confirm (and deferred reply) whose log position is durable, in runs: one
    /// `basic.ack(multiple)` or `basic.nack(multiple)` per run of equal outcomes. Asks the
    /// log to sync for the rest.
    pub(crate) fn flush_confirms(&mut self) {
        let progress = self.log_writer.as_ref().map(|w| w.progress());
        let outcome = |lsn: u64| progress.map_or(Outcome::Durable, |p| p.outcome(lsn));
        let mut needed = 0;
        let mut confirmed = 0;
        for (ch, state) in self.channels.iter_mut() {
            let Mode::Confirm(c) = &mut state.mode else {
                continue;
            };
            let mut run: Option<(bool, u64, u64)> = None;
            while let Some(front) = c.pending.front() {
                let nack = match outcome(front.wait_for) {
                    Outcome::Pending => {
                        needed = needed.max(c.pending.back().map_or(0, |p| p.wait_for));
                        break;
                    }
                    Outcome::Failed => true,
                    Outcome::Durable => front.nack,
                };
                let seq = front.seq;
                confirmed += !nack as u64;
                c.pending.pop_front();
                run = match run {
                    Some((k, _, n)) if k == nack => Some((k, seq, n + 1)),
                    Some(done) => {
                        send_confirm(&self.tx, *ch, done);
                        Some((nack, seq, 1))
                    }
                    None => Some((nack, seq, 1)),
                };
            }
            if let Some(done) = run {
                send_confirm(&self.tx, *ch, done);
            }
        }
        if confirmed > 0 {
            self.shared
                .confirmed
                .fetch_add(confirmed, Ordering::Relaxed);
        }
        let defs_done = self.defs_writer.as_ref().map_or(u64::MAX, |w| w.done());
        while let Some(front) = self.deferred.front() {
            let logged = outcome(front.log);
            if logged == Outcome::Pending {
                needed = needed.max(self.deferred.back().map_or(0, |d| d.log));
                break;
            }
            if front.defs.1 > defs_done {
                break;
            }
            let Some(done) = self.deferred.pop_front() else {
                break;
            };
            let failed = match logged {
                Outcome::Failed => Some("the message log could not be written".to_string()),
                _ => self
                    .defs_writer
                    .as_ref()
                    .and_then(|w| w.failure(done.defs.0, done.defs.1))
                    .map(|why| format!("the definition could not be stored: {why}")),
            };
            match failed {
                None => self.reply(done.channel, done.reply),
                Some(why) => {
                    self.failure = Some(AmqpError::new(code::INTERNAL_ERROR, why));
                    self.deferred.clear();
                }
            }
        }
        if let (Some(writer), true) = (&self.log_writer, needed > 0) {
            self.shared.lock().flush_log();
            writer.request(needed);
        }
    }

    /// Replies now, or once the definition changes made since `before` are on disk.
    pub(super) fn reply_once_stored(&mut self, ch: u16, before: u64, reply: AMQPClass) {
        let after = self.core().defs_seq();
        if after == before && self.deferred.is_empty() {
            return self.reply(ch, reply);
        }
        let floor = self.deferred.back().map_or(0, |d| d.log);
        self.deferred.push_back(Deferred {
            log: floor,
            defs: (before, after),
            channel: ch,
            reply,
        });
        self.flush_confirms();
    }
}

/// One run of confirms: (nack?, last sequence number, how many).
fn send_confirm(tx: &Outlet, ch: u16, (nack, seq, count): (bool, u64, u64)) {
    let method = if nack {
        basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: seq,
            multiple: count > 1,
            requeue: false,
        })
    } else {
        basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: seq,
            multiple: count > 1,
        })
    };
    let _ = tx.send(Outbound::Method(ch, AMQPClass::Basic(method)));
}
