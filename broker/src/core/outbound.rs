//! What the core asks a connection to send, in no protocol's terms: the connection's writer
//! turns these into its protocol's frames. (`Method` is the one exception: a reply an AMQP
//! session composed itself, queued on the same outlet so that it keeps its place in line. The
//! core never builds one.)

use crate::message::Message;
use amq_protocol::protocol::AMQPClass;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{self, error::SendError, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

#[derive(Debug)]
pub enum Outbound {
    Method(u16, AMQPClass),
    /// A consumer was started.
    Consuming {
        channel: u16,
        consumer_tag: Arc<str>,
    },
    /// The broker ended a consumer (its queue went away).
    Cancelled {
        channel: u16,
        consumer_tag: Arc<str>,
    },
    /// A `get` found the queue empty.
    GetEmpty {
        channel: u16,
    },
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

impl Outbound {
    /// The message bytes this carries (what a slow reader makes the broker hold).
    pub fn content_bytes(&self) -> u64 {
        match self {
            Outbound::Deliver { message, .. }
            | Outbound::GetOk { message, .. }
            | Outbound::Return { message, .. } => {
                (message.body.len() + message.raw_properties.len()) as u64
            }
            _ => 0,
        }
    }
}

/// A connection's queue of outbound work. Sending never blocks; a closed connection's outlet
/// drops what it is sent. It counts the message bytes queued and not yet written: past its
/// budget the core delivers nothing more to the connection ([`Outlet::has_room`]) until the
/// writer has drained it to half, and then says so ([`Window::drained`]).
#[derive(Debug, Clone)]
pub struct Outlet {
    tx: UnboundedSender<Outbound>,
    window: Arc<Window>,
}

/// The bytes queued on an outlet, shared by the core (which adds) and the writer (which
/// takes away).
#[derive(Debug)]
pub struct Window {
    queued: AtomicU64,
    budget: u64,
    /// The core held deliveries back; the writer wakes it when there is room again.
    paused: AtomicBool,
    drained: Notify,
}

impl Outlet {
    /// An outlet holding at most about `budget` bytes of messages, and its receiving end.
    pub fn new(budget: u64) -> (Outlet, UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let window = Arc::new(Window {
            queued: AtomicU64::new(0),
            budget,
            paused: AtomicBool::new(false),
            drained: Notify::new(),
        });
        (Outlet { tx, window }, rx)
    }

    pub fn send(&self, out: Outbound) -> Result<(), SendError<Outbound>> {
        let bytes = out.content_bytes();
        if bytes > 0 {
            self.window.queued.fetch_add(bytes, Ordering::Relaxed);
        }
        self.tx.send(out)
    }

    /// Whether one more message may be queued (one may always be, however large, when
    /// nothing is queued). When not, the writer says when there is room again.
    pub fn has_room(&self) -> bool {
        let room = self.window.queued.load(Ordering::Relaxed) < self.window.budget;
        if !room {
            self.window.paused.store(true, Ordering::Relaxed);
        }
        room
    }

    pub fn window(&self) -> Arc<Window> {
        self.window.clone()
    }
}

impl Window {
    /// The writer handed `bytes` of messages to the socket (or dropped them).
    pub fn written(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let before = self.queued.fetch_sub(bytes, Ordering::Relaxed);
        let left = before.saturating_sub(bytes);
        if left <= self.budget / 2 && self.paused.swap(false, Ordering::Relaxed) {
            self.drained.notify_one();
        }
    }

    /// Completes once deliveries held back for want of room can go again.
    pub async fn drained(&self) {
        self.drained.notified().await
    }

    /// Message bytes queued and not yet written.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
}
