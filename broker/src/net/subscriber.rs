//! Subscribing from inside the process (the gateway's WebSocket stream): an exclusive queue
//! bound to an exchange by a pattern, consumed with a prefetch window, deleted when the
//! subscription is dropped. A slow reader does not hold messages in memory without bound: at
//! most `PREFETCH` are in flight and the queue keeps the newest `BACKLOG` messages, at most
//! `BACKLOG_BYTES` of them; an idle subscription holds nothing but its queue's bookkeeping.

use crate::core::Peer;
use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use tokio::sync::mpsc;

use super::Shared;
use crate::core::declare::QueueSpec;
use crate::core::deliver::ConsumeSpec;
use crate::core::{ChanKey, Destination, Message, Outbound, Outlet, Window};
use crate::error::AmqpError;

const PREFETCH: u16 = 64;
const BACKLOG: i64 = 10_000;
const BACKLOG_BYTES: i64 = 1024 * 1024;

/// A live subscription; messages arrive with [`Subscription::next`].
pub struct Subscription {
    shared: Arc<Shared>,
    ck: ChanKey,
    deliveries: mpsc::UnboundedReceiver<Outbound>,
    window: Arc<Window>,
}

impl Subscription {
    pub(super) fn open(
        shared: Arc<Shared>,
        exchange: &str,
        pattern: &str,
    ) -> Result<Subscription, AmqpError> {
        let (outlet, deliveries) = Outlet::new(super::OUTLET_BUDGET);
        let window = outlet.window();
        let mut core = shared.lock();
        let conn = core.register_connection(outlet, Peer::in_process());
        let ck = ChanKey { conn, channel: 1 };
        core.open_channel(ck);
        let opened = (|| {
            let mut arguments = FieldTable::default();
            arguments.insert(
                ShortString::from("x-max-length"),
                AMQPValue::LongLongInt(BACKLOG),
            );
            arguments.insert(
                ShortString::from("x-max-length-bytes"),
                AMQPValue::LongLongInt(BACKLOG_BYTES),
            );
            arguments.insert(
                ShortString::from("x-overflow"),
                AMQPValue::LongString(LongString::from("drop-head")),
            );
            let queue = core.queue_declare(
                ck,
                QueueSpec {
                    name: String::new(),
                    passive: false,
                    durable: false,
                    exclusive: true,
                    auto_delete: true,
                    arguments,
                },
            )?;
            core.bind(
                ck,
                exchange,
                Destination::Queue(queue.name.clone()),
                pattern,
                FieldTable::default(),
            )?;
            core.basic_qos(ck, PREFETCH, false);
            core.basic_consume(
                ck,
                ConsumeSpec {
                    queue: queue.name,
                    tag: "subscription".into(),
                    no_ack: false,
                    exclusive: true,
                    nowait: true,
                },
            )
        })();
        if let Err(e) = opened {
            core.close_connection(conn);
            return Err(e);
        }
        drop(core);
        Ok(Subscription {
            shared,
            ck,
            deliveries,
            window,
        })
    }

    /// The next message (acknowledged as it is handed over); `None` once the broker is gone.
    pub async fn next(&mut self) -> Option<(String, Arc<Message>)> {
        loop {
            let out = self.deliveries.recv().await?;
            // Handed over: it no longer counts against the outlet (before the ack, whose
            // dispatch may send the next one).
            self.window.written(out.content_bytes());
            match out {
                Outbound::Deliver {
                    delivery_tag,
                    message,
                    ..
                } => {
                    let _ = self.shared.lock().basic_ack(self.ck, delivery_tag, false);
                    return Some((message.routing_key.clone(), message));
                }
                Outbound::Shutdown => return None,
                _ => {}
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.lock().close_connection(self.ck.conn);
    }
}
