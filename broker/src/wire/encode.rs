//! Frame encoding into a `BytesMut`. Content (header + body frames) is written from the raw
//! properties the publisher sent, so forwarding a message never re-encodes its properties.

use super::{frame_type, FRAME_END, FRAME_HEADER_SIZE};
use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::basic::gen_properties;
use amq_protocol::protocol::{gen_class, AMQPClass, BasicProperties};
use bytes::{BufMut, Bytes, BytesMut};

/// Writes one method frame.
pub fn encode_method(buf: &mut BytesMut, channel: u16, method: &AMQPClass) {
    let payload = gen_class(method)(WriteContext::from(Vec::with_capacity(64)))
        .map(|ctx| ctx.into_inner().0)
        // Generation into a Vec only fails on values that cannot be produced by this broker.
        .unwrap_or_default();
    put_frame(buf, frame_type::METHOD, channel, &payload);
}

/// The method that opens a message on its way out (a delivery, a get-ok or a return),
/// written straight into the buffer: one goes out per message.
#[derive(Debug, Clone, Copy)]
pub enum MessageMethod<'a> {
    Deliver {
        consumer_tag: &'a str,
        delivery_tag: u64,
        redelivered: bool,
    },
    GetOk {
        delivery_tag: u64,
        redelivered: bool,
        message_count: u32,
    },
    Return {
        reply_code: u16,
        reply_text: &'a str,
    },
}

/// Writes the method frame of a message going out: `method`'s own fields, then the message's
/// exchange and routing key.
pub fn encode_message_method(
    buf: &mut BytesMut,
    channel: u16,
    method: MessageMethod,
    exchange: &str,
    routing_key: &str,
) {
    buf.reserve(FRAME_HEADER_SIZE + 32 + exchange.len() + routing_key.len() + 256);
    buf.put_u8(frame_type::METHOD);
    buf.put_u16(channel);
    let size_at = buf.len();
    buf.put_u32(0);
    buf.put_u16(super::method_ids::BASIC);
    match method {
        MessageMethod::Deliver {
            consumer_tag,
            delivery_tag,
            redelivered,
        } => {
            buf.put_u16(60);
            put_short(buf, consumer_tag);
            buf.put_u64(delivery_tag);
            buf.put_u8(redelivered as u8);
        }
        MessageMethod::GetOk {
            delivery_tag,
            redelivered,
            ..
        } => {
            buf.put_u16(71);
            buf.put_u64(delivery_tag);
            buf.put_u8(redelivered as u8);
        }
        MessageMethod::Return {
            reply_code,
            reply_text,
        } => {
            buf.put_u16(50);
            buf.put_u16(reply_code);
            put_short(buf, reply_text);
        }
    }
    put_short(buf, exchange);
    put_short(buf, routing_key);
    if let MessageMethod::GetOk { message_count, .. } = method {
        buf.put_u32(message_count);
    }
    let size = (buf.len() - size_at - 4) as u32;
    buf[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(FRAME_END);
}

/// A short string: at most 255 bytes (longer text, which only the broker itself could make,
/// is cut).
fn put_short(buf: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(255)];
    buf.put_u8(bytes.len() as u8);
    buf.put_slice(bytes);
}

/// Writes a heartbeat frame.
pub fn encode_heartbeat(buf: &mut BytesMut) {
    put_frame(buf, frame_type::HEARTBEAT, 0, &[]);
}

/// Writes a content header frame and as many body frames as `frame_max` requires.
pub fn encode_content(
    buf: &mut BytesMut,
    channel: u16,
    raw_properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    let header_len = 12 + raw_properties.len();
    buf.reserve(FRAME_HEADER_SIZE + header_len + 1 + body.len() + 8 * 2);
    buf.put_u8(frame_type::HEADER);
    buf.put_u16(channel);
    buf.put_u32(header_len as u32);
    buf.put_u16(super::method_ids::BASIC);
    buf.put_u16(0); // weight
    buf.put_u64(body.len() as u64);
    buf.put_slice(raw_properties);
    buf.put_u8(FRAME_END);
    let max_chunk = if frame_max == 0 {
        u32::MAX as usize
    } else {
        frame_max as usize - FRAME_HEADER_SIZE - 1
    };
    for chunk in body.chunks(max_chunk) {
        put_frame(buf, frame_type::BODY, channel, chunk);
    }
}

/// Encodes message properties the way a content header carries them.
pub fn encode_properties(properties: &BasicProperties) -> Bytes {
    gen_properties(properties)(WriteContext::from(Vec::with_capacity(32)))
        .map(|ctx| Bytes::from(ctx.into_inner().0))
        .unwrap_or_else(|_| Bytes::from_static(&[0, 0]))
}

fn put_frame(buf: &mut BytesMut, kind: u8, channel: u16, payload: &[u8]) {
    buf.reserve(FRAME_HEADER_SIZE + payload.len() + 1);
    buf.put_u8(kind);
    buf.put_u16(channel);
    buf.put_u32(payload.len() as u32);
    buf.put_slice(payload);
    buf.put_u8(FRAME_END);
}
