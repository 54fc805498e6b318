//! Subscriptions of one STOMP session: SUBSCRIBE and UNSUBSCRIBE, and the session's temporary
//! reply queues (`reply-to:/temp-queue/<name>` on a SEND). Each subscription is a consumer on
//! a channel of its own, so its `prefetch-count` and its unacknowledged messages are its own.

use super::destination::{Destination, Source};
use super::frame::{Frame, Refused};
use super::session::{fatal, outcome, AckMode, Session, Step, Subscription};
use crate::core::declare::QueueSpec;
use crate::core::deliver::ConsumeSpec;
use crate::core::{ChanKey, ConnId, Core, Destination as Bound};
use crate::error::AmqpError;
use amq_protocol::types::FieldTable;

/// The channel SENDs publish on; subscriptions take the ones after it.
pub(super) const SEND_CHANNEL: u16 = 1;
/// Most subscriptions (temporary reply queues included) one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 1024;

/// Declares (and binds) a subscription's queue and starts consuming it; the queue's name.
fn consume(
    core: &mut Core,
    ck: ChanKey,
    source: Source,
    tag: &str,
    no_ack: bool,
) -> Result<String, AmqpError> {
    let queue = match source {
        Source::Queue(spec) => core.queue_declare(ck, spec)?.name,
        Source::Bound {
            queue,
            exchange,
            pattern,
        } => {
            let name = core.queue_declare(ck, queue)?.name;
            let bound = Bound::Queue(name.clone());
            core.bind(ck, &exchange, bound, &pattern, FieldTable::default())?;
            name
        }
    };
    core.basic_consume(
        ck,
        ConsumeSpec {
            queue: queue.clone(),
            tag: tag.to_string(),
            no_ack,
            exclusive: false,
            nowait: true,
        },
    )?;
    Ok(queue)
}

/// The consumer tag of the subscription a SUBSCRIBE or UNSUBSCRIBE names, as RabbitMQ makes
/// it (it is also the front of each MESSAGE's `message-id`): `T_<id>`, or `Q_<destination>`
/// for a frame without `id`.
fn consumer_tag(frame: &Frame) -> Option<String> {
    match (frame.header("id"), frame.header("destination")) {
        (Some(id), _) => Some(format!("T_{id}")),
        (None, Some(d)) => Some(format!("Q_{d}")),
        (None, None) => None,
    }
}

impl Session {
    /// A channel no subscription is using.
    fn free_channel(&mut self) -> u16 {
        loop {
            let channel = self.next_channel;
            self.next_channel = self.next_channel.wrapping_add(1).max(SEND_CHANNEL + 1);
            if !self.subscriptions.values().any(|s| s.channel == channel) {
                return channel;
            }
        }
    }

    /// Opens a channel, consumes `source` on it and records the subscription.
    fn start(
        &mut self,
        conn: ConnId,
        id: Option<String>,
        tag: String,
        source: Source,
        ack: AckMode,
        prefetch: Option<u16>,
    ) -> Result<String, AmqpError> {
        let durable = matches!(&source, Source::Bound { queue, .. } if queue.durable);
        let channel = self.free_channel();
        let ck = ChanKey { conn, channel };
        let shared = self.shared.clone();
        let mut core = shared.lock();
        core.open_channel(ck);
        if let Some(n) = prefetch {
            core.basic_qos(ck, n, false);
        }
        match consume(&mut core, ck, source, &tag, ack == AckMode::Auto) {
            Ok(queue) => {
                let subscription = Subscription {
                    id,
                    channel,
                    ack,
                    queue: queue.clone(),
                    durable,
                };
                self.subscriptions.insert(tag, subscription);
                Ok(queue)
            }
            Err(e) => {
                core.close_channel(ck);
                Err(e)
            }
        }
    }

    fn room(&self) -> Result<(), Refused> {
        match self.subscriptions.len() < MAX_SUBSCRIPTIONS {
            true => Ok(()),
            false => Err(Refused::new(
                "Too many subscriptions",
                format!("At most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            )),
        }
    }

    pub(super) fn subscribe(&mut self, conn: ConnId, frame: &Frame) -> Step {
        if let Some(tag) = consumer_tag(frame).filter(|t| self.subscriptions.contains_key(t)) {
            // RabbitMQ ends the session here.
            let refused = Refused::new(
                "Duplicated subscription identifier",
                format!("A subscription identified by '{tag}' already exists."),
            );
            return Step {
                frames: vec![refused.frame()],
                close: true,
                ..Default::default()
            };
        }
        outcome(self.try_subscribe(conn, frame), |()| Step::default())
    }

    fn try_subscribe(
        &mut self,
        conn: ConnId,
        frame: &Frame,
    ) -> Result<Result<(), AmqpError>, Refused> {
        let dest = self.destination(frame)?;
        let Some(tag) = consumer_tag(frame) else {
            return Err(Refused::new(
                "Missing destination",
                "The frame has no destination header",
            ));
        };
        self.room()?;
        let ack = match frame.header("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            other => {
                return Err(Refused::new(
                    "Invalid ack header",
                    format!("'{other}' is not auto, client or client-individual"),
                ))
            }
        };
        let prefetch = frame
            .header("prefetch-count")
            .and_then(|p| p.parse::<u16>().ok());
        let id = frame.header("id").map(str::to_string);
        let source = dest.source(frame, id.as_deref().unwrap_or(""))?;
        Ok(self.start(conn, id, tag, source, ack, prefetch).map(drop))
    }

    /// Ends a subscription; its unacknowledged messages go back to the queue. With
    /// `durable:true` a durable subscription's queue is deleted too (as RabbitMQ does).
    pub(super) fn unsubscribe(&mut self, conn: ConnId, frame: &Frame) -> Step {
        let tag = consumer_tag(frame).unwrap_or_default();
        let Some(sub) = self.subscriptions.remove(&tag) else {
            let named = match (frame.header("id"), frame.header("destination")) {
                (Some(id), _) => format!("id='{id}'"),
                (None, d) => format!("destination='{}'", d.unwrap_or("")),
            };
            return Step::send(vec![Refused::new(
                "No subscription found",
                format!(
                    "UNSUBSCRIBE must refer to an existing subscription.\n\
                     Subscription to \"{named}\" not found."
                ),
            )
            .frame()]);
        };
        self.temp_queues.retain(|_, q| *q != sub.queue);
        let ck = ChanKey {
            conn,
            channel: sub.channel,
        };
        let shared = self.shared.clone();
        let mut core = shared.lock();
        core.basic_cancel(ck, &tag);
        let forget =
            frame.header("durable") == Some("true") || frame.header("persistent") == Some("true");
        let deleted = match sub.durable && forget {
            true => core.queue_delete(ck, &sub.queue, false, false).map(drop),
            false => Ok(()),
        };
        core.close_channel(ck);
        self.unacked.retain(|_, (ch, _)| *ch != sub.channel);
        match deleted {
            Ok(()) => Step::default(),
            Err(e) => fatal(&e),
        }
    }

    /// The queue a `reply-to:/temp-queue/<name>` stands for: on first use in this session
    /// a server-named exclusive queue, consumed at once by a subscription named after the
    /// temp-queue destination.
    pub(super) fn temp_queue(
        &mut self,
        conn: ConnId,
        name: &str,
    ) -> Result<Result<String, AmqpError>, Refused> {
        if let Some(queue) = self.temp_queues.get(name) {
            return Ok(Ok(queue.clone()));
        }
        self.room()?;
        let source = Source::Queue(QueueSpec {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        });
        let id = format!("/temp-queue/{name}");
        let tag = format!("T_{id}");
        let queue = self.start(conn, Some(id), tag, source, AckMode::Auto, None);
        if let Ok(queue) = &queue {
            self.temp_queues.insert(name.to_string(), queue.clone());
        }
        Ok(queue)
    }

    pub(super) fn destination(&self, frame: &Frame) -> Result<Destination, Refused> {
        let d = frame.header("destination").ok_or_else(|| {
            Refused::new("Missing destination", "The frame has no destination header")
        })?;
        Destination::parse(d)
    }
}
