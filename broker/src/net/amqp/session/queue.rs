//! The `queue` class: declare, bind, unbind, purge, delete.

use super::Session;
use crate::core::declare::QueueSpec;
use crate::core::{ChanKey, Destination};
use crate::error::AmqpError;
use amq_protocol::protocol::{queue, AMQPClass};

impl Session {
    pub(super) fn queue_method(
        &mut self,
        key: ChanKey,
        m: queue::AMQPMethod,
    ) -> Result<(), AmqpError> {
        let ch = key.channel;
        let before = self.core().defs_seq();
        let (nowait, ok) = match m {
            queue::AMQPMethod::Declare(d) => {
                let info = self.core().queue_declare(
                    key,
                    QueueSpec {
                        name: d.queue.to_string(),
                        passive: d.passive,
                        durable: d.durable,
                        exclusive: d.exclusive,
                        auto_delete: d.auto_delete,
                        arguments: d.arguments,
                    },
                )?;
                (
                    d.nowait,
                    queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: info.name.into(),
                        message_count: info.messages,
                        consumer_count: info.consumers,
                    }),
                )
            }
            queue::AMQPMethod::Bind(b) => {
                self.binding(
                    key,
                    true,
                    b.exchange.as_str(),
                    Destination::Queue(b.queue.to_string()),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                (b.nowait, queue::AMQPMethod::BindOk(queue::BindOk {}))
            }
            queue::AMQPMethod::Unbind(b) => {
                self.binding(
                    key,
                    false,
                    b.exchange.as_str(),
                    Destination::Queue(b.queue.to_string()),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                (false, queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))
            }
            queue::AMQPMethod::Purge(p) => {
                let n = self.core().queue_purge(key, p.queue.as_str())?;
                (
                    p.nowait,
                    queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: n }),
                )
            }
            queue::AMQPMethod::Delete(d) => {
                let n = self
                    .core()
                    .queue_delete(key, d.queue.as_str(), d.if_unused, d.if_empty)?;
                (
                    d.nowait,
                    queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: n }),
                )
            }
            _ => return Err(AmqpError::command_invalid("method is sent by servers")),
        };
        if !nowait {
            self.reply_once_stored(ch, before, AMQPClass::Queue(ok));
        }
        Ok(())
    }
}
