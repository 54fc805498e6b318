//! A published message. One `Arc<Message>` is shared by every queue it is routed to: fan-out
//! copies a pointer, never the body.

use crate::wire::encode_properties;
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;

#[derive(Debug)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    /// The properties as encoded in the publisher's content header, forwarded verbatim.
    pub raw_properties: Bytes,
    pub body: Bytes,
}

impl Message {
    /// A message made inside the process (not read off the wire): encodes its properties once.
    pub fn new(
        exchange: impl Into<String>,
        routing_key: impl Into<String>,
        properties: BasicProperties,
        body: Bytes,
    ) -> Message {
        Message {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            raw_properties: encode_properties(&properties),
            properties,
            body,
        }
    }
}
