//! The `basic` class: publish (its content follows in frames, see `content`), qos, consume,
//! cancel, get, ack, nack, reject, recover.

use super::content::Pending;
use super::tx::TxOp;
use super::{Mode, Session};
use crate::core::deliver::ConsumeSpec;
use crate::core::ChanKey;
use crate::error::AmqpError;
use amq_protocol::protocol::{basic, AMQPClass};

impl Session {
    pub(super) fn basic_method(
        &mut self,
        key: ChanKey,
        m: basic::AMQPMethod,
    ) -> Result<(), AmqpError> {
        let ch = key.channel;
        let in_tx = self
            .channels
            .get(&ch)
            .is_some_and(|s| matches!(s.mode, Mode::Tx(_)));
        match m {
            basic::AMQPMethod::Publish(p) => {
                if p.immediate {
                    return Err(AmqpError::not_implemented("immediate=true"));
                }
                if let Some(state) = self.channels.get_mut(&ch) {
                    state.pending = Some(Pending {
                        publish: p,
                        header: None,
                        parts: Vec::new(),
                        received: 0,
                    });
                }
                Ok(())
            }
            basic::AMQPMethod::Qos(q) => {
                self.core().basic_qos(key, q.prefetch_count, q.global);
                self.reply(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => {
                self.core().basic_consume(
                    key,
                    ConsumeSpec {
                        queue: c.queue.to_string(),
                        tag: c.consumer_tag.to_string(),
                        no_ack: c.no_ack,
                        exclusive: c.exclusive,
                        nowait: c.nowait,
                    },
                )?;
                Ok(())
            }
            basic::AMQPMethod::Cancel(c) => {
                self.core().basic_cancel(key, c.consumer_tag.as_str());
                if !c.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag,
                        })),
                    );
                }
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.core().basic_get(key, g.queue.as_str(), g.no_ack),
            basic::AMQPMethod::Ack(a) if in_tx => {
                self.tx_push(
                    ch,
                    TxOp::Ack {
                        tag: a.delivery_tag,
                        multiple: a.multiple,
                    },
                );
                Ok(())
            }
            basic::AMQPMethod::Ack(a) => self.core().basic_ack(key, a.delivery_tag, a.multiple),
            basic::AMQPMethod::Nack(n) if in_tx => {
                self.tx_push(
                    ch,
                    TxOp::Nack {
                        tag: n.delivery_tag,
                        multiple: n.multiple,
                        requeue: n.requeue,
                    },
                );
                Ok(())
            }
            basic::AMQPMethod::Nack(n) => {
                self.core()
                    .basic_nack(key, n.delivery_tag, n.multiple, n.requeue)
            }
            basic::AMQPMethod::Reject(r) if in_tx => {
                self.tx_push(
                    ch,
                    TxOp::Nack {
                        tag: r.delivery_tag,
                        multiple: false,
                        requeue: r.requeue,
                    },
                );
                Ok(())
            }
            basic::AMQPMethod::Reject(r) => {
                self.core()
                    .basic_nack(key, r.delivery_tag, false, r.requeue)
            }
            basic::AMQPMethod::Recover(_) => {
                // Clients drop what they prefetched on recover-ok, so it goes before redeliveries.
                self.reply(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                self.core().basic_recover(key)
            }
            basic::AMQPMethod::RecoverAsync(_) => self.core().basic_recover(key),
            _ => Err(AmqpError::command_invalid("method is sent by servers")),
        }
    }
}
