//! What the core asks a connection to send. The connection's writer turns these into frames.

use super::message::Message;
use amq_protocol::protocol::AMQPClass;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug)]
pub enum Outbound {
    Method(u16, AMQPClass),
    Deliver {
        channel: u16,
        consumer_tag: Arc<str>,
        delivery_tag: u64,
        redelivered: bool,
        message: Arc<Message>,
    },
    GetOk {
        channel: u16,
        delivery_tag: u64,
        redelivered: bool,
        message_count: u32,
        message: Arc<Message>,
    },
    Return {
        channel: u16,
        reply_code: u16,
        reply_text: String,
        message: Arc<Message>,
    },
    /// The negotiated frame size and heartbeat interval (seconds, 0 = off) take effect.
    Tune {
        frame_max: u32,
        heartbeat: u16,
    },
    /// Flush and close the socket (after connection.close-ok or a connection error).
    Shutdown,
}

/// A connection's queue of outbound work. Sending never blocks; a closed connection's outlet
/// drops what it is sent.
pub type Outlet = UnboundedSender<Outbound>;
