//! Transactions (`tx.select`, `tx.commit`, `tx.rollback`): publishes and acks held back
//! until commit, applied together, `commit-ok` once the committed messages are durable.

use super::confirms::Deferred;
use super::{ChannelIo, Mode, Session};
use crate::core::{ChanKey, Message};
use crate::error::AmqpError;
use amq_protocol::protocol::{tx, AMQPClass};

/// Work a transaction holds back until `tx.commit`.
pub(super) enum TxOp {
    Publish {
        mandatory: bool,
        message: Box<Message>,
    },
    Ack {
        tag: u64,
        multiple: bool,
    },
    Nack {
        tag: u64,
        multiple: bool,
        requeue: bool,
    },
}

impl Session {
    pub(super) fn tx_push(&mut self, ch: u16, op: TxOp) {
        if let Some(ChannelIo {
            mode: Mode::Tx(ops),
            ..
        }) = self.channels.get_mut(&ch)
        {
            ops.push(op);
        }
    }

    pub(super) fn tx_method(&mut self, key: ChanKey, m: tx::AMQPMethod) -> Result<(), AmqpError> {
        let ch = key.channel;
        let state = self.channels.entry(ch).or_default();
        match m {
            tx::AMQPMethod::Select(_) => {
                match state.mode {
                    Mode::Confirm(_) => {
                        return Err(AmqpError::precondition(
                            "cannot switch from confirm to tx mode",
                        ))
                    }
                    Mode::Tx(_) => {}
                    Mode::Plain => state.mode = Mode::Tx(Vec::new()),
                }
                self.reply(ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
            }
            tx::AMQPMethod::Commit(_) => {
                let Mode::Tx(held) = &mut state.mode else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                let ops = std::mem::take(held);
                let mut core = self.core();
                let mut wait_for = 0;
                for op in ops {
                    match op {
                        TxOp::Publish { mandatory, message } => {
                            let published = core.publish(key, mandatory, *message)?;
                            wait_for = wait_for.max(published.wait_for.unwrap_or(0));
                        }
                        TxOp::Ack { tag, multiple } => core.basic_ack(key, tag, multiple)?,
                        TxOp::Nack {
                            tag,
                            multiple,
                            requeue,
                        } => core.basic_nack(key, tag, multiple, requeue)?,
                    }
                }
                drop(core);
                self.published = true;
                // Committed persistent messages are on disk before commit-ok.
                let floor = self.deferred.back().map_or(0, |d| d.log);
                self.deferred.push_back(Deferred {
                    log: wait_for.max(floor),
                    defs: (0, 0),
                    channel: ch,
                    reply: AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                });
                self.flush_confirms();
            }
            tx::AMQPMethod::Rollback(_) => {
                let Mode::Tx(ops) = &mut state.mode else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                ops.clear();
                self.reply(
                    ch,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
            }
            _ => return Err(AmqpError::command_invalid("method is sent by servers")),
        }
        Ok(())
    }
}
