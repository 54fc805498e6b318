//! Content assembly: a `basic.publish`, its content header and body frames, put together
//! into a message (checked against the announced size and `max_message_size`) and published
//! (or held by a transaction).

use super::confirms::Unconfirmed;
use super::tx::TxOp;
use super::{ChannelIo, Mode, Session};
use crate::error::AmqpError;
use crate::message::Message;
use crate::wire::method_ids::{self, BASIC_PUBLISH};
use crate::wire::ContentHeader;
use amq_protocol::protocol::basic;
use bytes::{Bytes, BytesMut};

/// Bodies this large are copied out of the read buffer.
pub(super) const COPY_BODIES_FROM: u64 = 4096;

/// A publish whose header or body frames are still arriving.
pub(super) struct Pending {
    pub(super) publish: basic::Publish,
    pub(super) header: Option<ContentHeader>,
    pub(super) parts: Vec<Bytes>,
    pub(super) received: u64,
}

impl Session {
    pub(super) fn handle_header(
        &mut self,
        ch: u16,
        header: Box<ContentHeader>,
    ) -> Result<(), AmqpError> {
        let max = self.core().limits.max_message_size;
        let Some(pending) = self.channels.get_mut(&ch).and_then(|s| s.pending.as_mut()) else {
            return Err(AmqpError::unexpected_frame(
                "content header without basic.publish",
            ));
        };
        if pending.header.is_some() {
            return Err(AmqpError::unexpected_frame(
                "second content header for one message",
            ));
        }
        if header.class_id != method_ids::BASIC {
            return Err(AmqpError::frame_error(format!(
                "content header for class {}",
                header.class_id
            )));
        }
        if header.body_size > max {
            if let Some(state) = self.channels.get_mut(&ch) {
                state.pending = None;
            }
            return Err(AmqpError::precondition(format!(
                "message size {} is larger than configured max size {max}",
                header.body_size
            ))
            .on(BASIC_PUBLISH));
        }
        let complete = header.body_size == 0;
        pending.header = Some(*header);
        if complete {
            self.complete_publish(ch)?;
        }
        Ok(())
    }

    pub(super) fn handle_body(&mut self, ch: u16, body: Bytes) -> Result<(), AmqpError> {
        let Some(pending) = self.channels.get_mut(&ch).and_then(|s| s.pending.as_mut()) else {
            return Err(AmqpError::unexpected_frame(
                "content body without basic.publish",
            ));
        };
        let Some(header) = &pending.header else {
            return Err(AmqpError::unexpected_frame(
                "content body before content header",
            ));
        };
        pending.received += body.len() as u64;
        if pending.received > header.body_size {
            return Err(AmqpError::frame_error(format!(
                "content body of {} bytes exceeds the {} announced",
                pending.received, header.body_size
            )));
        }
        let complete = pending.received == header.body_size;
        pending.parts.push(body);
        if complete {
            self.complete_publish(ch)?;
        }
        Ok(())
    }

    pub(super) fn complete_publish(&mut self, ch: u16) -> Result<(), AmqpError> {
        let Some(state) = self.channels.get_mut(&ch) else {
            return Ok(());
        };
        let Some(pending) = state.pending.take() else {
            return Ok(());
        };
        let Some(header) = pending.header else {
            return Ok(());
        };
        let body = match pending.parts.len() {
            0 => Bytes::new(),
            // A large body gets an allocation of its own rather than pin the read buffer
            // around it (and the slack in it) for as long as the message is queued.
            1 if pending.received >= COPY_BODIES_FROM => Bytes::copy_from_slice(&pending.parts[0]),
            1 => pending.parts.into_iter().next().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(pending.received as usize);
                for part in pending.parts {
                    all.extend_from_slice(&part);
                }
                all.freeze()
            }
        };
        let message = Message {
            exchange: pending.publish.exchange.into(),
            routing_key: pending.publish.routing_key.into(),
            properties: header.properties,
            // Small, and a slice of the read buffer: copied so it pins nothing.
            raw_properties: Bytes::copy_from_slice(&header.raw_properties),
            body,
        };
        let mandatory = pending.publish.mandatory;
        if let Mode::Tx(ops) = &mut state.mode {
            ops.push(TxOp::Publish {
                mandatory,
                message: Box::new(message),
            });
            return Ok(());
        }
        let key = self.key(ch);
        self.published = true;
        let published = self
            .core()
            .publish(key, mandatory, message)
            .map_err(|e| e.on(BASIC_PUBLISH))?;
        if let Some(ChannelIo {
            mode: Mode::Confirm(c),
            ..
        }) = self.channels.get_mut(&ch)
        {
            c.assigned += 1;
            let floor = c.pending.back().map_or(0, |p| p.wait_for);
            c.pending.push_back(Unconfirmed {
                seq: c.assigned,
                wait_for: published.wait_for.unwrap_or(0).max(floor),
                nack: published.rejected,
            });
        }
        Ok(())
    }
}
