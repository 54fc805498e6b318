//! The `channel` class: close, flow.

use super::Session;
use crate::error::AmqpError;
use amq_protocol::protocol::{channel, AMQPClass};

impl Session {
    pub(super) fn channel_method(
        &mut self,
        ch: u16,
        m: channel::AMQPMethod,
    ) -> Result<(), AmqpError> {
        let key = self.key(ch);
        match m {
            channel::AMQPMethod::Open(_) => {
                Err(AmqpError::channel_error("second 'channel.open' seen"))
            }
            channel::AMQPMethod::Close(_) => {
                self.flush_confirms();
                self.core().close_channel(key);
                self.channels.remove(&ch);
                self.reply(
                    ch,
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                Ok(())
            }
            channel::AMQPMethod::CloseOk(_) => Ok(()),
            // RabbitMQ answers `active=false` with 540, closing the connection, and clients'
            // suites expect exactly that; consumers pause with prefetch instead.
            channel::AMQPMethod::Flow(flow) if !flow.active => {
                Err(AmqpError::not_implemented("active=false"))
            }
            channel::AMQPMethod::Flow(flow) => {
                self.reply(
                    ch,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: flow.active,
                    })),
                );
                Ok(())
            }
            channel::AMQPMethod::FlowOk(_) => Ok(()),
            channel::AMQPMethod::OpenOk(_) => Err(AmqpError::command_invalid(
                "channel.open-ok is sent by servers",
            )),
        }
    }
}
