//! The `exchange` class: declare, delete, bind, unbind.

use super::Session;
use crate::core::declare::ExchangeSpec;
use crate::core::{ChanKey, Destination};
use crate::error::AmqpError;
use amq_protocol::protocol::{exchange, AMQPClass};

impl Session {
    pub(super) fn exchange_method(
        &mut self,
        key: ChanKey,
        m: exchange::AMQPMethod,
    ) -> Result<(), AmqpError> {
        let ch = key.channel;
        let before = self.core().defs_seq();
        let (nowait, ok) = match m {
            exchange::AMQPMethod::Declare(d) => {
                self.core().exchange_declare(
                    key,
                    ExchangeSpec {
                        name: d.exchange.to_string(),
                        kind: d.kind.to_string(),
                        passive: d.passive,
                        durable: d.durable,
                        auto_delete: d.auto_delete,
                        internal: d.internal,
                        arguments: d.arguments,
                    },
                )?;
                (
                    d.nowait,
                    exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}),
                )
            }
            exchange::AMQPMethod::Delete(d) => {
                self.core()
                    .exchange_delete(key, d.exchange.as_str(), d.if_unused)?;
                (
                    d.nowait,
                    exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}),
                )
            }
            exchange::AMQPMethod::Bind(b) => {
                self.binding(
                    key,
                    true,
                    b.source.as_str(),
                    Destination::Exchange(b.destination.to_string()),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                (b.nowait, exchange::AMQPMethod::BindOk(exchange::BindOk {}))
            }
            exchange::AMQPMethod::Unbind(b) => {
                self.binding(
                    key,
                    false,
                    b.source.as_str(),
                    Destination::Exchange(b.destination.to_string()),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                (
                    b.nowait,
                    exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
                )
            }
            _ => return Err(AmqpError::command_invalid("method is sent by servers")),
        };
        if !nowait {
            self.reply_once_stored(ch, before, AMQPClass::Exchange(ok));
        }
        Ok(())
    }
}
