//! Publishing from inside the process (the HTTP gateway, speech): the path an AMQP client's
//! publish takes, without a socket, with the publisher-confirm semantics: `publish` returns
//! once every durable queue's copy is on disk.

use crate::core::Peer;
use std::sync::Arc;

use crate::core::Outlet;
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;

use super::Shared;
use crate::core::{ChanKey, Message};
use crate::error::AmqpError;
use crate::store::Outcome;

/// Why a publish was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A resource alarm blocks publishers (memory or disk); retry later.
    #[error("the broker is not accepting publishes: {0}")]
    Blocked(String),
    /// A queue refused the message (`reject-publish` overflow) or the log could not take it:
    /// what a confirming AMQP publisher sees as `basic.nack`.
    #[error("a queue refused the message, or the disk could not store it")]
    Rejected,
    #[error("{0}")]
    Refused(AmqpError),
    /// The message log stopped before the message was durable (shutdown).
    #[error("the broker shut down before the message was stored")]
    ShutDown,
}

/// How a publish went: the number of queues it reached (0: unroutable, dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub queues: usize,
}

/// An in-process publisher on vhost `/`. Cheap to clone; safe to use from many tasks.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    ck: ChanKey,
}

impl Publisher {
    pub(super) fn new(shared: Arc<Shared>) -> Publisher {
        // Nothing is sent to an in-process publisher (no mandatory returns, no consumers).
        let (outlet, _) = Outlet::new(super::OUTLET_BUDGET);
        let ck = {
            let mut core = shared.lock();
            let conn = core.register_connection(outlet, Peer::in_process());
            let ck = ChanKey { conn, channel: 1 };
            core.open_channel(ck);
            ck
        };
        Publisher { shared, ck }
    }

    /// A subscription to `exchange` by a topic `pattern` (see [`super::Subscription`]).
    pub fn subscribe(
        &self,
        exchange: &str,
        pattern: &str,
    ) -> Result<super::Subscription, AmqpError> {
        super::Subscription::open(self.shared.clone(), exchange, pattern)
    }

    /// A session with every permission in vhost `/`, for what the process itself consumes
    /// and declares (webhook deliveries).
    pub fn system_session(&self) -> super::Session {
        super::Admin::new(self.shared.clone()).system_session_on("/")
    }

    /// Whether publishes are refused now, and why.
    pub fn blocked(&self) -> Option<String> {
        self.shared.alarm.borrow().clone()
    }

    /// Routes and enqueues the message; returns once it is durable wherever it must be.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: Bytes,
    ) -> Result<Delivered, PublishError> {
        let message = Message::new(exchange, routing_key, properties, body);
        let queues = publish_durably(&self.shared, self.ck, message).await?;
        Ok(Delivered { queues })
    }
}

/// Publishes on an in-process channel and waits until the message is durable wherever it
/// must be; returns how many queues it reached. Refused while a resource alarm is on.
pub(super) async fn publish_durably(
    shared: &Shared,
    ck: ChanKey,
    message: Message,
) -> Result<usize, PublishError> {
    if let Some(reason) = shared.alarm.borrow().clone() {
        return Err(PublishError::Blocked(reason));
    }
    let (published, writer) = {
        let mut core = shared.lock();
        let published = core
            .publish(ck, false, message)
            .map_err(PublishError::Refused)?;
        if published.wait_for.is_some() {
            core.flush_log();
        }
        (published, core.log_writer())
    };
    if published.rejected {
        return Err(PublishError::Rejected);
    }
    if let (Some(position), Some(writer)) = (published.wait_for, writer) {
        wait_durable(&writer, position).await?;
    }
    Ok(published.queues)
}

/// Waits until the log is durable past `position`.
pub(super) async fn wait_durable(
    writer: &crate::store::LogWriter,
    position: u64,
) -> Result<(), PublishError> {
    let mut progress = writer.subscribe();
    writer.request(position);
    loop {
        match progress.borrow_and_update().outcome(position) {
            Outcome::Durable => return Ok(()),
            Outcome::Failed => return Err(PublishError::Rejected),
            Outcome::Pending => {}
        }
        progress
            .changed()
            .await
            .map_err(|_| PublishError::ShutDown)?;
    }
}
