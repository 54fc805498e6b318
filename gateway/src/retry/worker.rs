//! One consumer of a retry topology, whatever it does with a message (a webhook POST, a
//! command): take the next message, hand it to the [`Handler`], then acknowledge it, or first
//! publish its retry or dead-letter copy and wait for the broker to have it. Reopens the work
//! queue with backoff when the broker goes away; stops between messages.

use super::queue::{Broker, Item, WorkQueue};
use super::{attempt, copy_headers, string, text, Failure, Next, Topology};
use super::{ATTEMPT, ATTEMPTS, DEAD_REASON, ERROR, ORIGINAL_ROUTING_KEY};
use amq_protocol::types::AMQPValue;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// What a consumer does with each message.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message; `key` is the routing key it was first published with. `Err`
    /// says why it failed and whether a retry may help.
    fn handle(
        &self,
        item: &Item,
        key: &str,
        attempt: u32,
    ) -> impl Future<Output = Result<(), (Failure, String)>> + Send;

    /// The message is settled as `next` says (`error`: why the attempt failed, or empty).
    fn settled(&self, _key: &str, _attempt: u32, _next: &Next, _error: &str) {}
}

pub struct Worker<H> {
    pub broker: Broker,
    pub exchange: String,
    /// Topic patterns the work queue is bound to `exchange` by.
    pub patterns: Vec<String>,
    pub topology: Topology,
    /// Named in dead letters' `x-service`.
    pub service: String,
    pub handler: H,
}

impl<H: Handler> Worker<H> {
    /// Declares the topology and starts consuming: what is published after this returns is
    /// handled.
    pub async fn open(&self) -> Result<WorkQueue, String> {
        WorkQueue::open(&self.broker, &self.topology, &self.exchange, &self.patterns).await
    }

    /// Handles messages until `stop` turns true (starting with `opened`, if given).
    pub async fn run(self, mut opened: Option<WorkQueue>, mut stop: watch::Receiver<bool>) {
        let mut wait = Duration::from_millis(500);
        while !*stop.borrow() {
            let queue = match opened.take() {
                Some(queue) => Ok(queue),
                None => self.open().await,
            };
            let mut queue = match queue {
                Ok(queue) => queue,
                Err(e) => {
                    tracing::warn!(queue = %self.topology.queue, error = %e, "work queue unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(15));
                    continue;
                }
            };
            wait = Duration::from_millis(500);
            loop {
                let item = tokio::select! {
                    item = queue.next() => item,
                    _ = stop.changed() => return,
                };
                let handled = match item {
                    Ok(item) => self.one(&queue, item).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = handled {
                    tracing::warn!(queue = %self.topology.queue, error = %e, "lost the work queue; reopening");
                    break;
                }
            }
        }
    }

    /// One message: handle it, then settle it. An error is the broker's.
    async fn one(&self, queue: &WorkQueue, item: Item) -> Result<(), String> {
        let headers = item.properties.headers().clone();
        let attempt = attempt(headers.as_ref());
        // A retried message arrives through its delay queue: its own key is in a header.
        let key = headers
            .as_ref()
            .and_then(|h| h.inner().get(ORIGINAL_ROUTING_KEY))
            .and_then(string)
            .unwrap_or_else(|| item.routing_key.clone());
        let (failure, error) = match self.handler.handle(&item, &key, attempt).await {
            Ok(()) => (None, String::new()),
            Err((f, why)) => (Some(f), why),
        };
        let copy = |extra: &[(&str, AMQPValue)]| {
            let h = copy_headers(headers.as_ref(), &item.exchange, &item.routing_key, extra);
            item.properties.clone().with_headers(h)
        };
        let next = self.topology.next(attempt, failure);
        match &next {
            Next::Ack => {}
            Next::Retry { queue: to, attempt } => {
                let props = copy(&[
                    (ATTEMPT, AMQPValue::LongLongInt((*attempt).into())),
                    ("x-last-error", text(&truncate(&error, 1000))),
                ]);
                queue.publish(to, props, item.body.clone()).await?;
            }
            Next::Dead { queue: to, reason } => {
                let props = copy(&[
                    (DEAD_REASON, text(reason)),
                    (ERROR, text(&truncate(&error, 4000))),
                    (ATTEMPTS, AMQPValue::LongLongInt(attempt.into())),
                    ("x-service", text(&self.service)),
                ]);
                queue.publish(to, props, item.body.clone()).await?;
            }
        }
        queue.ack(item.tag).await?;
        self.handler.settled(&key, attempt, &next, &error);
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
