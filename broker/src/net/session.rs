//! Per-connection protocol state: which channels are open or closing, content being assembled,
//! confirm sequence numbers and transactions. Methods are applied to the shared core here.

use super::Shared;
use crate::core::declare::{ExchangeSpec, QueueSpec};
use crate::core::deliver::ConsumeSpec;
use crate::core::{ChanKey, ConnId, Core, Destination, Message, Outbound, Outlet};
use crate::error::AmqpError;
use crate::store::{DefsWriter, LogWriter};
use crate::wire::{ContentHeader, Frame};
use amq_protocol::protocol::{
    access, basic, channel, confirm, connection, exchange, queue, tx, AMQPClass,
};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, MutexGuard};

/// Bodies this large are copied out of the read buffer.
const COPY_BODIES_FROM: u64 = 4096;

/// A publish whose header or body frames are still arriving.
struct Pending {
    publish: basic::Publish,
    header: Option<ContentHeader>,
    parts: Vec<Bytes>,
    received: u64,
}

/// A reply that waits for the message log (`tx.commit-ok`) or the definitions store
/// (`declare-ok` of a durable queue) to be on disk.
struct Deferred {
    /// The log's durable position it needs.
    log: u64,
    /// The definition changes it needs settled: numbers after `.0`, up to `.1`.
    defs: (u64, u64),
    channel: u16,
    reply: AMQPClass,
}

/// Work a transaction holds back until `tx.commit`.
enum TxOp {
    Publish {
        mandatory: bool,
        message: Box<Message>,
    },
    Ack {
        tag: u64,
        multiple: bool,
    },
    Nack {
        tag: u64,
        multiple: bool,
        requeue: bool,
    },
}

/// A publish not yet confirmed: its sequence number, the log position that must be durable
/// first, and whether it is to be nacked (a queue refused it).
struct Unconfirmed {
    seq: u64,
    wait_for: u64,
    nack: bool,
}

/// Publisher confirms of a channel in confirm mode.
#[derive(Default)]
struct Confirms {
    /// The last sequence number assigned.
    assigned: u64,
    /// In sequence order, with non-decreasing `wait_for`.
    pending: VecDeque<Unconfirmed>,
}

#[derive(Default)]
struct ChannelIo {
    /// Sent `channel.close`; waiting for `close-ok`, dropping everything else.
    closing: bool,
    pending: Option<Pending>,
    confirm: Option<Confirms>,
    tx: Option<Vec<TxOp>>,
}

pub struct Session {
    shared: Arc<Shared>,
    pub conn: ConnId,
    pub tx: Outlet,
    vhost: String,
    channel_max: u16,
    channels: HashMap<u16, ChannelIo>,
    log_writer: Option<Arc<LogWriter>>,
    defs_writer: Option<Arc<DefsWriter>>,
    /// Replies held until what they promise is on disk, in order.
    deferred: VecDeque<Deferred>,
    /// A promised write failed: the connection closes with this error.
    failure: Option<AmqpError>,
    /// This connection has published (resource alarms block it).
    pub published: bool,
    pub pressure: Arc<super::alarm::Pressure>,
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        tx: Outlet,
        vhost: String,
        channel_max: u16,
        cancel_notify: bool,
    ) -> Session {
        let (conn, log_writer, defs_writer) = {
            let mut core = shared.lock();
            (
                core.register_connection(tx.clone(), cancel_notify),
                core.log_writer(),
                core.defs_writer(),
            )
        };
        Session {
            pressure: shared.pressure.clone(),
            shared,
            conn,
            tx,
            vhost,
            channel_max,
            channels: HashMap::new(),
            log_writer,
            defs_writer,
            deferred: VecDeque::new(),
            failure: None,
            published: false,
        }
    }

    /// Changes when more of the message log becomes durable (None: there is no log).
    pub fn durable_positions(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.log_writer.as_ref().map(|w| w.subscribe())
    }

    /// Changes when more definition changes are settled (None: definitions are not stored).
    pub fn defs_positions(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.defs_writer.as_ref().map(|w| w.subscribe())
    }

    /// The connection's outlet has room again: deliver what waited for it.
    pub fn resume_deliveries(&self) {
        self.core().dispatch_connection(self.conn);
    }

    /// The error to close the connection with, once a write a reply promised has failed.
    pub fn take_failure(&mut self) -> Option<AmqpError> {
        self.failure.take()
    }

    /// Why publishers are blocked, while they are.
    pub fn alarm(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shared.alarm.clone()
    }

    /// Confirms or replies wait for the log.
    pub fn waiting(&self) -> bool {
        !self.deferred.is_empty()
            || self
                .channels
                .values()
                .any(|c| c.confirm.as_ref().is_some_and(|c| !c.pending.is_empty()))
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.shared.lock()
    }

    fn key(&self, channel: u16) -> ChanKey {
        ChanKey {
            conn: self.conn,
            channel,
        }
    }

    fn reply(&self, channel: u16, method: AMQPClass) {
        let _ = self.tx.send(Outbound::Method(channel, method));
    }

    /// Releases everything the core holds for this connection (requeues unacked messages).
    pub fn close_core(&self) {
        self.core().close_connection(self.conn);
    }

    /// Applies one frame. Ok(false): the client closed the connection. Err: a connection error.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<bool, AmqpError> {
        let ch = frame.channel();
        if ch == 0 {
            return self.handle_connection_frame(frame);
        }
        if ch > self.channel_max {
            return Err(AmqpError::channel_error(format!(
                "channel {ch} exceeds channel_max {}",
                self.channel_max
            )));
        }
        let Some(state) = self.channels.get_mut(&ch) else {
            return match frame {
                Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Open(_))) => {
                    self.channels.insert(ch, ChannelIo::default());
                    let (vhost, key) = (self.vhost.clone(), self.key(ch));
                    self.core().open_channel(key, &vhost);
                    self.reply(
                        ch,
                        AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                    );
                    Ok(true)
                }
                _ => Err(AmqpError::channel_error("expected 'channel.open'")),
            };
        };
        if state.closing {
            if let Frame::Method(_, AMQPClass::Channel(m)) = &frame {
                match m {
                    channel::AMQPMethod::CloseOk(_) => {
                        self.channels.remove(&ch);
                    }
                    // The client closed at the same time as we did: answer its close and
                    // stay closing until our own close is answered (RabbitMQ does the same).
                    channel::AMQPMethod::Close(_) => {
                        self.reply(
                            ch,
                            AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                        );
                    }
                    _ => {}
                }
            }
            return Ok(true);
        }
        let result = match frame {
            Frame::Method(_, method) => {
                if self.channels.get(&ch).is_some_and(|s| s.pending.is_some()) {
                    Err(AmqpError::unexpected_frame(
                        "expected content header for class 60, got non content header frame instead",
                    ))
                } else {
                    self.handle_method(ch, method)
                }
            }
            Frame::Header(_, header) => self.handle_header(ch, header),
            Frame::Body(_, body) => self.handle_body(ch, body),
            Frame::Heartbeat(_) => Err(AmqpError::frame_error(
                "heartbeat frame on a channel other than 0",
            )),
        };
        match result {
            Ok(()) => Ok(true),
            Err(err) if err.closes_connection() => Err(err),
            Err(err) => {
                self.fail_channel(ch, err);
                Ok(true)
            }
        }
    }

    /// A channel error: close the channel on both sides, releasing its messages.
    fn fail_channel(&mut self, ch: u16, err: AmqpError) {
        tracing::debug!(conn = self.conn, channel = ch, error = %err, "channel error");
        self.flush_confirms();
        let key = self.key(ch);
        self.core().close_channel(key);
        if let Some(state) = self.channels.get_mut(&ch) {
            *state = ChannelIo {
                closing: true,
                ..Default::default()
            };
        }
        self.reply(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: err.code,
                reply_text: err.text.as_str().into(),
                class_id: err.class_id,
                method_id: err.method_id,
            })),
        );
    }

    fn handle_connection_frame(&mut self, frame: Frame) -> Result<bool, AmqpError> {
        match frame {
            Frame::Heartbeat(_) => Ok(true),
            Frame::Method(_, AMQPClass::Connection(m)) => match m {
                connection::AMQPMethod::Close(_) => {
                    self.flush_confirms();
                    self.close_core();
                    self.reply(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    );
                    Ok(false)
                }
                connection::AMQPMethod::UpdateSecret(_) => {
                    self.reply(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                            connection::UpdateSecretOk {},
                        )),
                    );
                    Ok(true)
                }
                connection::AMQPMethod::CloseOk(_) => Ok(false),
                connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_) => {
                    Ok(true)
                }
                _ => Err(AmqpError::command_invalid(
                    "unexpected connection method after open",
                )),
            },
            Frame::Method(_, _) => Err(AmqpError::command_invalid(
                "only connection methods are allowed on channel 0",
            )),
            Frame::Header(..) | Frame::Body(..) => {
                Err(AmqpError::unexpected_frame("content frame on channel 0"))
            }
        }
    }

    fn handle_header(&mut self, ch: u16, header: Box<ContentHeader>) -> Result<(), AmqpError> {
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
        if header.class_id != 60 {
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
            .on(60, 40));
        }
        let complete = header.body_size == 0;
        pending.header = Some(*header);
        if complete {
            self.complete_publish(ch)?;
        }
        Ok(())
    }

    fn handle_body(&mut self, ch: u16, body: Bytes) -> Result<(), AmqpError> {
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

    fn complete_publish(&mut self, ch: u16) -> Result<(), AmqpError> {
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
            exchange: pending.publish.exchange.as_str().to_string(),
            routing_key: pending.publish.routing_key.as_str().to_string(),
            properties: header.properties,
            // Small, and a slice of the read buffer: copied so it pins nothing.
            raw_properties: Bytes::copy_from_slice(&header.raw_properties),
            body,
        };
        let mandatory = pending.publish.mandatory;
        if let Some(ops) = state.tx.as_mut() {
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
            .map_err(|e| e.on(60, 40))?;
        if let Some(c) = self.channels.get_mut(&ch).and_then(|s| s.confirm.as_mut()) {
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

    /// Sends every confirm (and deferred reply) whose log position is durable, in runs: one
    /// `basic.ack(multiple)` or `basic.nack(multiple)` per run of equal outcomes. Asks the
    /// log to sync for the rest.
    pub fn flush_confirms(&mut self) {
        let durable = self.log_writer.as_ref().map_or(u64::MAX, |w| w.durable());
        let mut needed = 0;
        for (ch, state) in self.channels.iter_mut() {
            let Some(c) = state.confirm.as_mut() else {
                continue;
            };
            let mut run: Option<(bool, u64, u64)> = None;
            while let Some(front) = c.pending.front() {
                if front.wait_for > durable {
                    needed = needed.max(c.pending.back().map_or(0, |p| p.wait_for));
                    break;
                }
                let (nack, seq) = (front.nack, front.seq);
                c.pending.pop_front();
                run = match run {
                    Some((k, _, n)) if k == nack => Some((k, seq, n + 1)),
                    Some(done) => {
                        send_confirm(&self.tx, *ch, done);
                        Some((nack, seq, 1))
                    }
                    None => Some((nack, seq, 1)),
                };
            }
            if let Some(done) = run {
                send_confirm(&self.tx, *ch, done);
            }
        }
        let defs_done = self.defs_writer.as_ref().map_or(u64::MAX, |w| w.done());
        while let Some(front) = self.deferred.front() {
            if front.log > durable {
                needed = needed.max(self.deferred.back().map_or(0, |d| d.log));
                break;
            }
            if front.defs.1 > defs_done {
                break;
            }
            let Some(done) = self.deferred.pop_front() else {
                break;
            };
            let failed = self
                .defs_writer
                .as_ref()
                .and_then(|w| w.failure(done.defs.0, done.defs.1));
            match failed {
                None => self.reply(done.channel, done.reply),
                Some(why) => {
                    self.failure = Some(AmqpError::new(
                        crate::error::code::INTERNAL_ERROR,
                        format!("the definition could not be stored: {why}"),
                    ));
                    self.deferred.clear();
                }
            }
        }
        if let (Some(writer), true) = (&self.log_writer, needed > 0) {
            self.shared.lock().flush_log();
            writer.request(needed);
        }
    }

    fn handle_method(&mut self, ch: u16, method: AMQPClass) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.get_amqp_class_id(), method.get_amqp_method_id());
        self.apply_method(ch, method).map_err(|e| {
            if e.class_id == 0 {
                e.on(class_id, method_id)
            } else {
                e
            }
        })
    }

    fn apply_method(&mut self, ch: u16, method: AMQPClass) -> Result<(), AmqpError> {
        let key = self.key(ch);
        match method {
            AMQPClass::Channel(m) => self.channel_method(ch, m),
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.reply(
                    ch,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(m) => self.exchange_method(key, m),
            AMQPClass::Queue(m) => self.queue_method(key, m),
            AMQPClass::Basic(m) => self.basic_method(key, m),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(select)) => {
                let state = self.channels.entry(ch).or_default();
                if state.tx.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                state.confirm.get_or_insert_with(Confirms::default);
                if !select.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Tx(m) => self.tx_method(key, m),
            AMQPClass::Connection(_) => Err(AmqpError::command_invalid(
                "connection methods are only allowed on channel 0",
            )),
            _ => Err(AmqpError::command_invalid(
                "method not allowed from a client",
            )),
        }
    }

    fn channel_method(&mut self, ch: u16, m: channel::AMQPMethod) -> Result<(), AmqpError> {
        let key = self.key(ch);
        match m {
            channel::AMQPMethod::Open(_) => {
                Err(AmqpError::channel_error("second 'channel.open' seen"))
            }
            channel::AMQPMethod::Close(_) => {
                self.flush_confirms();
                self.core().close_channel(key);
                self.channels.remove(&ch);
                self.reply(
                    ch,
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                Ok(())
            }
            channel::AMQPMethod::CloseOk(_) => Ok(()),
            channel::AMQPMethod::Flow(flow) => {
                self.core().channel_flow(key, flow.active);
                self.reply(
                    ch,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: flow.active,
                    })),
                );
                Ok(())
            }
            channel::AMQPMethod::FlowOk(_) => Ok(()),
            channel::AMQPMethod::OpenOk(_) => Err(AmqpError::command_invalid(
                "channel.open-ok is sent by servers",
            )),
        }
    }

    fn exchange_method(&mut self, key: ChanKey, m: exchange::AMQPMethod) -> Result<(), AmqpError> {
        let ch = key.channel;
        let before = self.core().defs_seq();
        let (nowait, ok) = match m {
            exchange::AMQPMethod::Declare(d) => {
                self.core().exchange_declare(
                    key,
                    ExchangeSpec {
                        name: d.exchange.to_string(),
                        kind: d.kind.to_string(),
                        passive: d.passive,
                        durable: d.durable,
                        auto_delete: d.auto_delete,
                        internal: d.internal,
                        arguments: d.arguments,
                    },
                )?;
                (
                    d.nowait,
                    exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}),
                )
            }
            exchange::AMQPMethod::Delete(d) => {
                self.core()
                    .exchange_delete(key, d.exchange.as_str(), d.if_unused)?;
                (
                    d.nowait,
                    exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}),
                )
            }
            exchange::AMQPMethod::Bind(b) => {
                self.core().bind(
                    key,
                    b.source.as_str(),
                    Destination::Exchange(b.destination.to_string()),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                (b.nowait, exchange::AMQPMethod::BindOk(exchange::BindOk {}))
            }
            exchange::AMQPMethod::Unbind(b) => {
                self.core().unbind(
                    key,
                    b.source.as_str(),
                    Destination::Exchange(b.destination.to_string()),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                (
                    b.nowait,
                    exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
                )
            }
            _ => return Err(AmqpError::command_invalid("method is sent by servers")),
        };
        if !nowait {
            self.reply_once_stored(ch, before, AMQPClass::Exchange(ok));
        }
        Ok(())
    }

    /// Replies now, or once the definition changes made since `before` are on disk.
    fn reply_once_stored(&mut self, ch: u16, before: u64, reply: AMQPClass) {
        let after = self.core().defs_seq();
        if after == before && self.deferred.is_empty() {
            return self.reply(ch, reply);
        }
        let floor = self.deferred.back().map_or(0, |d| d.log);
        self.deferred.push_back(Deferred {
            log: floor,
            defs: (before, after),
            channel: ch,
            reply,
        });
        self.flush_confirms();
    }

    fn queue_method(&mut self, key: ChanKey, m: queue::AMQPMethod) -> Result<(), AmqpError> {
        let ch = key.channel;
        let before = self.core().defs_seq();
        let (nowait, ok) = match m {
            queue::AMQPMethod::Declare(d) => {
                let info = self.core().queue_declare(
                    key,
                    QueueSpec {
                        name: d.queue.to_string(),
                        passive: d.passive,
                        durable: d.durable,
                        exclusive: d.exclusive,
                        auto_delete: d.auto_delete,
                        arguments: d.arguments,
                    },
                )?;
                (
                    d.nowait,
                    queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: info.name.into(),
                        message_count: info.messages,
                        consumer_count: info.consumers,
                    }),
                )
            }
            queue::AMQPMethod::Bind(b) => {
                self.core().bind(
                    key,
                    b.exchange.as_str(),
                    Destination::Queue(b.queue.to_string()),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                (b.nowait, queue::AMQPMethod::BindOk(queue::BindOk {}))
            }
            queue::AMQPMethod::Unbind(b) => {
                self.core().unbind(
                    key,
                    b.exchange.as_str(),
                    Destination::Queue(b.queue.to_string()),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                (false, queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))
            }
            queue::AMQPMethod::Purge(p) => {
                let n = self.core().queue_purge(key, p.queue.as_str())?;
                (
                    p.nowait,
                    queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: n }),
                )
            }
            queue::AMQPMethod::Delete(d) => {
                let n = self
                    .core()
                    .queue_delete(key, d.queue.as_str(), d.if_unused, d.if_empty)?;
                (
                    d.nowait,
                    queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: n }),
                )
            }
            _ => return Err(AmqpError::command_invalid("method is sent by servers")),
        };
        if !nowait {
            self.reply_once_stored(ch, before, AMQPClass::Queue(ok));
        }
        Ok(())
    }

    fn basic_method(&mut self, key: ChanKey, m: basic::AMQPMethod) -> Result<(), AmqpError> {
        let ch = key.channel;
        let in_tx = self.channels.get(&ch).is_some_and(|s| s.tx.is_some());
        match m {
            basic::AMQPMethod::Publish(p) => {
                if p.immediate {
                    return Err(AmqpError::not_implemented("immediate=true"));
                }
                if let Some(state) = self.channels.get_mut(&ch) {
                    state.pending = Some(Pending {
                        publish: p,
                        header: None,
                        parts: Vec::new(),
                        received: 0,
                    });
                }
                Ok(())
            }
            basic::AMQPMethod::Qos(q) => {
                self.core().basic_qos(key, q.prefetch_count, q.global);
                self.reply(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => {
                self.core().basic_consume(
                    key,
                    ConsumeSpec {
                        queue: c.queue.to_string(),
                        tag: c.consumer_tag.to_string(),
                        no_ack: c.no_ack,
                        exclusive: c.exclusive,
                        nowait: c.nowait,
                    },
                )?;
                Ok(())
            }
            basic::AMQPMethod::Cancel(c) => {
                self.core().basic_cancel(key, c.consumer_tag.as_str());
                if !c.nowait {
                    self.reply(
                        ch,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag,
                        })),
                    );
                }
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.core().basic_get(key, g.queue.as_str(), g.no_ack),
            basic::AMQPMethod::Ack(a) if in_tx => {
                self.tx_push(
                    ch,
                    TxOp::Ack {
                        tag: a.delivery_tag,
                        multiple: a.multiple,
                    },
                );
                Ok(())
            }
            basic::AMQPMethod::Ack(a) => self.core().basic_ack(key, a.delivery_tag, a.multiple),
            basic::AMQPMethod::Nack(n) if in_tx => {
                self.tx_push(
                    ch,
                    TxOp::Nack {
                        tag: n.delivery_tag,
                        multiple: n.multiple,
                        requeue: n.requeue,
                    },
                );
                Ok(())
            }
            basic::AMQPMethod::Nack(n) => {
                self.core()
                    .basic_nack(key, n.delivery_tag, n.multiple, n.requeue)
            }
            basic::AMQPMethod::Reject(r) if in_tx => {
                self.tx_push(
                    ch,
                    TxOp::Nack {
                        tag: r.delivery_tag,
                        multiple: false,
                        requeue: r.requeue,
                    },
                );
                Ok(())
            }
            basic::AMQPMethod::Reject(r) => {
                self.core()
                    .basic_nack(key, r.delivery_tag, false, r.requeue)
            }
            basic::AMQPMethod::Recover(_) => {
                // Clients drop what they prefetched on recover-ok, so it goes before redeliveries.
                self.reply(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                self.core().basic_recover(key)
            }
            basic::AMQPMethod::RecoverAsync(_) => self.core().basic_recover(key),
            _ => Err(AmqpError::command_invalid("method is sent by servers")),
        }
    }

    fn tx_push(&mut self, ch: u16, op: TxOp) {
        if let Some(ops) = self.channels.get_mut(&ch).and_then(|s| s.tx.as_mut()) {
            ops.push(op);
        }
    }

    fn tx_method(&mut self, key: ChanKey, m: tx::AMQPMethod) -> Result<(), AmqpError> {
        let ch = key.channel;
        let state = self.channels.entry(ch).or_default();
        match m {
            tx::AMQPMethod::Select(_) => {
                if state.confirm.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                state.tx.get_or_insert_with(Vec::new);
                self.reply(ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
            }
            tx::AMQPMethod::Commit(_) => {
                let Some(ops) = state.tx.replace(Vec::new()) else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                let mut core = self.core();
                let mut wait_for = 0;
                for op in ops {
                    match op {
                        TxOp::Publish { mandatory, message } => {
                            let published = core.publish(key, mandatory, *message)?;
                            wait_for = wait_for.max(published.wait_for.unwrap_or(0));
                        }
                        TxOp::Ack { tag, multiple } => core.basic_ack(key, tag, multiple)?,
                        TxOp::Nack {
                            tag,
                            multiple,
                            requeue,
                        } => core.basic_nack(key, tag, multiple, requeue)?,
                    }
                }
                drop(core);
                self.published = true;
                // Committed persistent messages are on disk before commit-ok.
                let floor = self.deferred.back().map_or(0, |d| d.log);
                self.deferred.push_back(Deferred {
                    log: wait_for.max(floor),
                    defs: (0, 0),
                    channel: ch,
                    reply: AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                });
                self.flush_confirms();
            }
            tx::AMQPMethod::Rollback(_) => {
                let Some(ops) = state.tx.as_mut() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                ops.clear();
                self.reply(
                    ch,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
            }
            _ => return Err(AmqpError::command_invalid("method is sent by servers")),
        }
        Ok(())
    }
}

/// One run of confirms: (nack?, last sequence number, how many).
fn send_confirm(tx: &Outlet, ch: u16, (nack, seq, count): (bool, u64, u64)) {
    let method = if nack {
        basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: seq,
            multiple: count > 1,
            requeue: false,
        })
    } else {
        basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: seq,
            multiple: count > 1,
        })
    };
    let _ = tx.send(Outbound::Method(ch, AMQPClass::Basic(method)));
}
