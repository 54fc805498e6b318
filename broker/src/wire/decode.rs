//! Frame splitting: `decode_frame` looks at the buffered bytes, returns `Ok(None)` while a frame
//! is incomplete, refuses a frame larger than the negotiated `frame_max` as soon as its header
//! is seen, and only then takes the payload out of the buffer.

use super::{frame_type, is_known_method, FRAME_END};
use crate::error::AmqpError;
use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::protocol::{basic, parse_class, AMQPClass, BasicProperties};
use bytes::{Buf, Bytes, BytesMut};

/// Type (1) + channel (2) + size (4).
pub const FRAME_HEADER_SIZE: usize = 7;

/// The only protocol header this broker speaks.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// A frame as the broker receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Method(u16, AMQPClass),
    Header(u16, Box<ContentHeader>),
    Body(u16, Bytes),
    Heartbeat(u16),
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method(c, _) | Frame::Header(c, _) | Frame::Body(c, _) | Frame::Heartbeat(c) => {
                *c
            }
        }
    }
}

/// A content header. The encoded properties are kept verbatim so that a message is
/// forwarded to consumers without encoding its properties again.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    pub properties: BasicProperties,
    pub raw_properties: Bytes,
}

/// Takes one complete frame off the front of `buf`.
///
/// `frame_max` is the negotiated maximum frame size including header and end octet
/// (0 means no limit beyond the u32 size field).
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, AmqpError> {
    match decode_raw(buf, frame_max)? {
        None => Ok(None),
        Some((kind, channel, payload)) => parse_payload(kind, channel, payload).map(Some),
    }
}

/// Decodes a frame whose raw bytes are fully buffered, returning (type, channel, payload).
fn decode_raw(buf: &mut BytesMut, frame_max: u32) -> Result<Option<(u8, u16, Bytes)>, AmqpError> {
    if buf.len() < FRAME_HEADER_SIZE {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if !matches!(
        kind,
        frame_type::METHOD | frame_type::HEADER | frame_type::BODY | frame_type::HEARTBEAT
    ) {
        return Err(AmqpError::frame_error(format!("unknown frame type {kind}")));
    }
    let total = FRAME_HEADER_SIZE as u64 + size as u64 + 1;
    if frame_max != 0 && total > frame_max as u64 {
        return Err(AmqpError::frame_error(format!(
            "frame size {total} larger than negotiated maximum {frame_max}"
        )));
    }
    let total = total as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(AmqpError::frame_error(format!(
            "frame end marker 0x{:02x} is not 0xce",
            buf[total - 1]
        )));
    }
    buf.advance(FRAME_HEADER_SIZE);
    let payload = buf.split_to(size as usize).freeze();
    buf.advance(1);
    Ok(Some((kind, channel, payload)))
}

fn parse_payload(kind: u8, channel: u16, payload: Bytes) -> Result<Frame, AmqpError> {
    match kind {
        frame_type::METHOD => parse_method(channel, &payload),
        frame_type::HEADER => match plain_content_header(&payload) {
            Some(header) => Ok(Frame::Header(channel, Box::new(header))),
            None => parse_full_content_header(channel, payload),
        },
        frame_type::BODY => Ok(Frame::Body(channel, payload)),
        _ => {
            if payload.is_empty() {
                Ok(Frame::Heartbeat(channel))
            } else {
                Err(AmqpError::frame_error("heartbeat frame with a payload"))
            }
        }
    }
}

fn parse_full_content_header(channel: u16, payload: Bytes) -> Result<Frame, AmqpError> {
    match parse_content_header(&payload[..]) {
        Ok(([], header)) => Ok(Frame::Header(
            channel,
            Box::new(ContentHeader {
                class_id: header.class_id,
                body_size: header.body_size,
                properties: header.properties,
                // class id (2) + weight (2) + body size (8) precede the property flags.
                raw_properties: payload.slice(12..),
            }),
        )),
        _ => Err(AmqpError::frame_error("malformed content header frame")),
    }
}

/// The content header of most messages (no properties, or only a delivery mode) read
/// without the general parser: it arrives once per message.
fn plain_content_header(payload: &Bytes) -> Option<ContentHeader> {
    if payload.len() < 14 {
        return None;
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let body_size = u64::from_be_bytes(payload[4..12].try_into().ok()?);
    let properties = plain_properties(&payload[12..])?;
    Some(ContentHeader {
        class_id,
        body_size,
        properties,
        raw_properties: payload.slice(12..),
    })
}

/// Encoded properties that are empty or only a delivery mode, the common case, read without
/// the general parser.
fn plain_properties(raw: &[u8]) -> Option<BasicProperties> {
    match raw {
        [0, 0] => Some(BasicProperties::default()),
        // Property flags with only `delivery-mode` set, and the mode.
        [0x10, 0, mode] => Some(BasicProperties::default().with_delivery_mode(*mode)),
        _ => None,
    }
}

fn parse_method(channel: u16, payload: &[u8]) -> Result<Frame, AmqpError> {
    if payload.len() < 4 {
        return Err(AmqpError::frame_error("method frame shorter than its ids"));
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let method_id = u16::from_be_bytes([payload[2], payload[3]]);
    if !is_known_method(class_id, method_id) {
        return Err(
            AmqpError::not_implemented(format!("unknown method {class_id}.{method_id}"))
                .on((class_id, method_id)),
        );
    }
    // amq-protocol drops basic.qos's prefetch_size; RabbitMQ refuses any value but 0.
    if (class_id, method_id) == (60, 10) && payload.len() >= 8 {
        let prefetch_size = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        if prefetch_size != 0 {
            return Err(
                AmqpError::not_implemented(format!("prefetch_size!=0 ({prefetch_size})"))
                    .on((class_id, method_id)),
            );
        }
    }
    if (class_id, method_id) == (60, 40) {
        return parse_publish(channel, &payload[4..]);
    }
    match parse_class(payload) {
        Ok(([], method)) => Ok(Frame::Method(channel, method)),
        Ok(_) => Err(AmqpError::syntax(format!(
            "method {class_id}.{method_id} has trailing bytes"
        ))
        .on((class_id, method_id))),
        Err(_) => Err(AmqpError::syntax(format!(
            "malformed arguments for method {class_id}.{method_id}"
        ))
        .on((class_id, method_id))),
    }
}

/// `basic.publish`, read without the general parser: it arrives once per message.
fn parse_publish(channel: u16, args: &[u8]) -> Result<Frame, AmqpError> {
    let syntax = |what: &str| AmqpError::syntax(format!("{what} in basic.publish")).on((60, 40));
    let rest = args.get(2..).ok_or_else(|| syntax("truncated arguments"))?;
    let (exchange, rest) = short_string(rest).ok_or_else(|| syntax("malformed exchange"))?;
    let (routing_key, rest) = short_string(rest).ok_or_else(|| syntax("malformed routing key"))?;
    let bits = match rest {
        [bits] => *bits,
        [] => return Err(syntax("truncated arguments")),
        _ => return Err(syntax("trailing bytes")),
    };
    let publish = basic::Publish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: bits & 1 != 0,
        immediate: bits & 2 != 0,
    };
    Ok(Frame::Method(
        channel,
        AMQPClass::Basic(basic::AMQPMethod::Publish(publish)),
    ))
}

/// A short string (length octet, UTF-8 bytes) and what follows it.
fn short_string(input: &[u8]) -> Option<(&str, &[u8])> {
    let (&len, rest) = input.split_first()?;
    let bytes = rest.get(..len as usize)?;
    Some((std::str::from_utf8(bytes).ok()?, &rest[len as usize..]))
}

/// Content properties encoded as in a content header (flags, then the present fields), as the
/// message log keeps them.
pub fn parse_properties(raw: &[u8]) -> Option<BasicProperties> {
    if let Some(plain) = plain_properties(raw) {
        return Some(plain);
    }
    match amq_protocol::protocol::basic::parse_properties(raw) {
        Ok(([], props)) => Some(props),
        _ => None,
    }
}
