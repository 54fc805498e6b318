//! One AMQP connection's protocol state after the handshake: its channels (open or
//! closing), each in one mode (plain, confirms, or a transaction), content being assembled,
//! and replies waiting for the disk. Frames come in through [`Session::handle_frame`] and
//! become core calls; each class of methods has a file of its own (`channel`, `exchange`,
//! `queue`, `basic`, `tx`), as do content assembly (`content`) and confirms (`confirms`).

mod basic;
mod channel;
mod confirms;
mod content;
mod exchange;
mod queue;
mod tx;

use crate::core::Peer;
use crate::core::{ChanKey, ConnId, Core, Outbound, Outlet};
use crate::error::AmqpError;
use crate::net::Shared;
use crate::store::{DefsWriter, LogWriter};
use crate::wire::Frame;
use crate::Map;
use amq_protocol::protocol::channel as channel_methods;
use amq_protocol::protocol::{access, confirm, connection, AMQPClass};
use confirms::{Confirms, Deferred};
use content::Pending;
use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};
use tx::TxOp;

/// What a channel does with publishes and acks.
#[derive(Default)]
enum Mode {
    /// Published and acked as they come.
    #[default]
    Plain,
    /// `confirm.select`: every publish is confirmed once it is safe.
    Confirm(Confirms),
    /// `tx.select`: held back until `tx.commit`.
    Tx(Vec<TxOp>),
}

#[derive(Default)]
struct ChannelIo {
    /// Sent `channel.close`; waiting for `close-ok`, dropping everything else.
    closing: bool,
    pending: Option<Pending>,
    mode: Mode,
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    pub conn: ConnId,
    pub tx: Outlet,
    channel_max: u16,
    channels: Map<u16, ChannelIo>,
    log_writer: Option<Arc<LogWriter>>,
    defs_writer: Option<Arc<DefsWriter>>,
    /// Replies held until what they promise is on disk, in order.
    deferred: VecDeque<Deferred>,
    /// A promised write failed: the connection closes with this error.
    failure: Option<AmqpError>,
    /// This connection has published (resource alarms block it).
    pub published: bool,
    pub pressure: Arc<crate::net::alarm::Pressure>,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, tx: Outlet, peer: Peer, channel_max: u16) -> Session {
        let (conn, log_writer, defs_writer) = {
            let mut core = shared.lock();
            (
                core.register_connection(tx.clone(), peer),
                core.log_writer(),
                core.defs_writer(),
            )
        };
        Session {
            pressure: shared.pressure.clone(),
            shared,
            conn,
            tx,
            channel_max,
            channels: Map::default(),
            log_writer,
            defs_writer,
            deferred: VecDeque::new(),
            failure: None,
            published: false,
        }
    }

    /// Changes when more of the message log becomes durable (None: there is no log).
    pub(crate) fn durable_positions(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<crate::store::Progress>> {
        self.log_writer.as_ref().map(|w| w.subscribe())
    }

    /// Changes when more definition changes are settled (None: definitions are not stored).
    pub(crate) fn defs_positions(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.defs_writer.as_ref().map(|w| w.subscribe())
    }

    /// The connection's outlet has room again: deliver what waited for it.
    pub(crate) fn resume_deliveries(&self) {
        self.core().dispatch_connection(self.conn);
    }

    /// The error to close the connection with, once a write a reply promised has failed.
    pub(crate) fn take_failure(&mut self) -> Option<AmqpError> {
        self.failure.take()
    }

    /// Why publishers are blocked, while they are.
    pub(crate) fn alarm(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shared.alarm.clone()
    }

    /// Confirms or replies wait for the log.
    pub(crate) fn waiting(&self) -> bool {
        !self.deferred.is_empty()
            || self
                .channels
                .values()
                .any(|c| matches!(&c.mode, Mode::Confirm(c) if !c.pending.is_empty()))
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

    /// The four binding methods (queue and exchange, bind and unbind) in one place.
    fn binding(
        &self,
        key: ChanKey,
        bind: bool,
        source: &str,
        destination: crate::core::Destination,
        routing_key: &str,
        arguments: amq_protocol::types::FieldTable,
    ) -> Result<(), AmqpError> {
        let mut core = self.core();
        match bind {
            true => core.bind(key, source, destination, routing_key, arguments),
            false => core.unbind(key, source, destination, routing_key, arguments),
        }
    }

    /// Releases everything the core holds for this connection (requeues unacked messages).
    pub(crate) fn close_core(&self) {
        self.core().close_connection(self.conn);
    }

    /// Applies one frame. Ok(false): the client closed the connection. Err: a connection error.
    pub(crate) fn handle_frame(&mut self, frame: Frame) -> Result<bool, AmqpError> {
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
                Frame::Method(_, AMQPClass::Channel(channel_methods::AMQPMethod::Open(_))) => {
                    self.channels.insert(ch, ChannelIo::default());
                    let key = self.key(ch);
                    self.core().open_channel(key);
                    self.reply(
                        ch,
                        AMQPClass::Channel(channel_methods::AMQPMethod::OpenOk(
                            channel_methods::OpenOk {},
                        )),
                    );
                    Ok(true)
                }
                _ => Err(AmqpError::channel_error("expected 'channel.open'")),
            };
        };
        if state.closing {
            if let Frame::Method(_, AMQPClass::Channel(m)) = &frame {
                match m {
                    channel_methods::AMQPMethod::CloseOk(_) => {
                        self.channels.remove(&ch);
                    }
                    // The client closed at the same time as we did: answer its close and
                    // stay closing until our own close is answered (RabbitMQ does the same).
                    channel_methods::AMQPMethod::Close(_) => {
                        self.reply(
                            ch,
                            AMQPClass::Channel(channel_methods::AMQPMethod::CloseOk(
                                channel_methods::CloseOk {},
                            )),
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
        self.reply(ch, err.channel_close());
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

    fn handle_method(&mut self, ch: u16, method: AMQPClass) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.get_amqp_class_id(), method.get_amqp_method_id());
        self.apply_method(ch, method).map_err(|e| {
            if e.class_id == 0 {
                e.on((class_id, method_id))
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
                match state.mode {
                    Mode::Tx(_) => {
                        return Err(AmqpError::precondition(
                            "cannot switch from tx to confirm mode",
                        ))
                    }
                    Mode::Confirm(_) => {}
                    Mode::Plain => state.mode = Mode::Confirm(Confirms::default()),
                }
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
}
