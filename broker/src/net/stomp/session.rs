//! One STOMP connection's protocol state: CONNECT, then subscriptions as consumers on the
//! core (each on a channel of its own, so `prefetch-count` is its own), SENDs as publishes,
//! ACK/NACK as settlements, deliveries turned into MESSAGE frames. No I/O: the connection
//! task feeds frames in and writes what comes out.

use super::destination::{self, Destination};
use super::frame::{error, Frame, Refused};
use super::headers;
use super::subscribe::SEND_CHANNEL;
use super::transaction::Transactions;
use super::Origin;
use crate::core::{ChanKey, ConnId, Core, Details, Message, Outbound, Outlet, Peer, Protocol};
use crate::error::AmqpError;
use crate::net::Shared;
use rand::distr::{Alphanumeric, SampleString};
use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckMode {
    Auto,
    /// An ACK settles that message and every earlier one of the subscription.
    Client,
    ClientIndividual,
}

#[derive(Debug)]
pub(super) struct Subscription {
    /// The `id` header it was made with (MESSAGE frames then carry it as `subscription`).
    pub id: Option<String>,
    pub channel: u16,
    pub ack: AckMode,
    /// The queue it consumes.
    pub queue: String,
    /// A durable subscription's queue (deleted by UNSUBSCRIBE with `durable:true`).
    pub durable: bool,
}

/// The negotiated protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Version {
    V10,
    V11,
    V12,
}

impl Version {
    fn as_str(self) -> &'static str {
        match self {
            Version::V10 => "1.0",
            Version::V11 => "1.1",
            Version::V12 => "1.2",
        }
    }
}

/// Heart-beat intervals agreed in CONNECT/CONNECTED, in milliseconds (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeartBeats {
    /// How often the server sends one.
    pub send: u64,
    /// How often the client promised one.
    pub expect: u64,
}

/// What to do after a frame.
#[derive(Debug, Default)]
pub(crate) struct Step {
    pub frames: Vec<Frame>,
    /// Send `frames` only once the message log is durable past this position.
    pub wait_for: Option<u64>,
    /// Close the connection after sending `frames`.
    pub close: bool,
}

impl Step {
    pub(super) fn send(frames: Vec<Frame>) -> Step {
        Step {
            frames,
            ..Default::default()
        }
    }
}

#[derive(Debug)]
enum State {
    AwaitingConnect,
    Connected { conn: ConnId, session: String },
}

pub(crate) struct Session {
    pub(super) shared: Arc<Shared>,
    outlet: Outlet,
    origin: Origin,
    state: State,
    pub(crate) version: Version,
    pub(crate) heart_beats: HeartBeats,
    /// By consumer tag.
    pub(super) subscriptions: HashMap<String, Subscription>,
    pub(super) next_channel: u16,
    /// `/temp-queue/<name>` -> the queue made for it in this session.
    pub(super) temp_queues: HashMap<String, String>,
    /// `ack` header value -> (channel, delivery tag), for client ack modes.
    pub(super) unacked: HashMap<String, (u16, u64)>,
    next_message: u64,
    /// The switch an operator closes the connection with (set once connected).
    pub(crate) details: Option<Arc<Details>>,
    transactions: Transactions,
}

/// An AMQP error from the core as RabbitMQ's STOMP adapter reports it, ending the session.
pub(super) fn fatal(e: &AmqpError) -> Step {
    let message = crate::error::code::name(e.code).to_ascii_lowercase();
    Step {
        frames: vec![error(&message, &e.text)],
        close: true,
        ..Default::default()
    }
}

/// What a frame came to: a refusal sends its ERROR and the session goes on, an error from
/// the core ends it, and success is turned into a step by `ok`.
pub(super) fn outcome<T>(
    result: Result<Result<T, AmqpError>, Refused>,
    ok: impl FnOnce(T) -> Step,
) -> Step {
    match result {
        Ok(Ok(done)) => ok(done),
        Ok(Err(e)) => fatal(&e),
        Err(refused) => Step::send(vec![refused.frame()]),
    }
}

/// A refusal as a step that sends its ERROR and goes on.
fn refusal(result: Result<(), Refused>) -> Step {
    match result {
        Ok(()) => Step::default(),
        Err(refused) => Step::send(vec![refused.frame()]),
    }
}

/// The `transaction` header BEGIN, COMMIT and ABORT need.
fn transaction(frame: &Frame) -> Result<&str, Refused> {
    frame.header("transaction").ok_or_else(|| {
        Refused::new(
            "Missing transaction",
            format!("\"{}\" must include a 'transaction' header", frame.command),
        )
    })
}

fn receipt(frame: &Frame) -> Option<Frame> {
    frame
        .header("receipt")
        .map(|r| Frame::new("RECEIPT").with("receipt-id", r))
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, outlet: Outlet, origin: Origin) -> Session {
        Session {
            shared,
            outlet,
            origin,
            state: State::AwaitingConnect,
            version: Version::V12,
            heart_beats: HeartBeats::default(),
            subscriptions: HashMap::new(),
            next_channel: SEND_CHANNEL + 1,
            temp_queues: HashMap::new(),
            unacked: HashMap::new(),
            next_message: 0,
            details: None,
            transactions: Transactions::default(),
        }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.shared.lock()
    }

    /// Whether header values are escaped (STOMP 1.1 and later).
    pub(crate) fn escapes(&self) -> bool {
        self.version >= Version::V11
    }

    pub(crate) fn handle(&mut self, frame: Frame) -> Step {
        let conn = match &self.state {
            State::Connected { conn, .. } => *conn,
            State::AwaitingConnect => {
                return match frame.command.as_str() {
                    "CONNECT" | "STOMP" => self.connect(&frame),
                    _ => Step {
                        frames: vec![error(
                            "Illegal command",
                            "You must log in using CONNECT first",
                        )],
                        close: true,
                        ..Default::default()
                    },
                };
            }
        };
        let held = matches!(frame.command.as_str(), "SEND" | "ACK" | "NACK");
        if let (true, Some(tx)) = (held, frame.header("transaction")) {
            let step = refusal(self.transactions.hold(tx, frame.clone()));
            return self.with_receipt(step, &frame);
        }
        let step = match frame.command.as_str() {
            "SEND" => self.send(conn, &frame),
            "SUBSCRIBE" => self.subscribe(conn, &frame),
            "UNSUBSCRIBE" => self.unsubscribe(conn, &frame),
            "ACK" => self.settle(conn, &frame, true),
            "NACK" => self.settle(conn, &frame, false),
            "DISCONNECT" => {
                // Out of the core before the RECEIPT: once the client has it, nothing more is
                // delivered to this session (what it left unacknowledged is back in its queues).
                self.close();
                Step {
                    frames: receipt(&frame).into_iter().collect(),
                    close: true,
                    ..Default::default()
                }
            }
            "BEGIN" => refusal(transaction(&frame).and_then(|tx| self.transactions.begin(tx))),
            "COMMIT" => self.commit(&frame),
            "ABORT" => refusal(transaction(&frame).and_then(|tx| self.transactions.abort(tx))),
            "CONNECT" | "STOMP" => Step::send(vec![error(
                "Already connected",
                "This session is already connected",
            )]),
            other => Step::send(vec![error(
                "Bad command",
                &format!("Could not interpret command \"{other}\""),
            )]),
        };
        self.with_receipt(step, &frame)
    }

    /// Applies a transaction's frames in order.
    fn commit(&mut self, frame: &Frame) -> Step {
        let held = match transaction(frame).and_then(|tx| self.transactions.commit(tx)) {
            Ok(held) => held,
            Err(refused) => return Step::send(vec![refused.frame()]),
        };
        let mut out = Step::default();
        for f in held {
            let step = self.handle(f);
            out.frames.extend(step.frames);
            out.wait_for = out.wait_for.max(step.wait_for);
            if step.close {
                out.close = true;
                break;
            }
        }
        out
    }

    /// Adds the RECEIPT a frame asked for to a step that went well.
    fn with_receipt(&self, mut step: Step, frame: &Frame) -> Step {
        let failed = step.frames.iter().any(|f| f.command == "ERROR");
        if !failed && frame.command != "DISCONNECT" {
            step.frames.extend(receipt(frame));
        }
        step
    }

    fn connect(&mut self, frame: &Frame) -> Step {
        let accepted = frame.header("accept-version").unwrap_or("1.0");
        let version = [Version::V12, Version::V11, Version::V10]
            .into_iter()
            .find(|v| accepted.split(',').any(|a| a.trim() == v.as_str()));
        let Some(version) = version else {
            return Step {
                frames: vec![error(
                    "Version mismatch",
                    "Supported protocol versions are 1.0,1.1,1.2",
                )
                .with("version", "1.0,1.1,1.2")],
                close: true,
                ..Default::default()
            };
        };
        let login = frame.header("login").unwrap_or("").to_string();
        let passcode = frame.header("passcode").unwrap_or("");
        let vhost = frame
            .header("host")
            .filter(|h| self.core().has_vhost(h))
            .unwrap_or("/")
            .to_string();
        let ip = self.origin.peer.ip();
        let users = self.shared.users.read().unwrap_or_else(|p| p.into_inner());
        let access = match users.authenticate(&login, passcode, ip) {
            true => users.access(&login, &vhost),
            false => None,
        };
        drop(users);
        let Some(access) = access else {
            self.shared.logins.failed(ip, std::time::Instant::now());
            // As RabbitMQ: the socket stays open for another CONNECT.
            return Step::send(vec![error(
                "Bad CONNECT",
                &format!("Access refused for user '{login}'"),
            )
            .with("version", "1.0,1.1,1.2")]);
        };
        self.shared.logins.succeeded(ip);
        self.version = version;
        let (cx, cy) = frame
            .header("heart-beat")
            .and_then(|h| h.split_once(','))
            .map(|(x, y)| {
                (
                    x.trim().parse::<u64>().unwrap_or(0),
                    y.trim().parse::<u64>().unwrap_or(0),
                )
            })
            .unwrap_or((0, 0));
        let round = |ms: u64| if ms == 0 { 0 } else { ms.max(1000) };
        self.heart_beats = HeartBeats {
            send: round(cy),
            expect: round(cx),
        };
        let name = match self.origin.local {
            Some(local) => format!("{} -> {local}", self.origin.peer),
            None => self.origin.peer.to_string(),
        };
        let details = Arc::new(Details {
            name,
            client_properties: serde_json::json!({
                "product": "STOMP client",
                "version": version.as_str(),
            }),
            heartbeat: (self.heart_beats.expect / 1000) as u16,
            local: self.origin.local,
            tls: self.origin.tls,
            ..Default::default()
        });
        let peer = Peer {
            user: login.clone(),
            vhost,
            protocol: Protocol::Stomp,
            addr: Some(self.origin.peer),
            cancel_notify: true,
            access,
            details: details.clone(),
        };
        let conn = {
            let mut core = self.core();
            let conn = core.register_connection(self.outlet.clone(), peer);
            core.open_channel(ChanKey {
                conn,
                channel: SEND_CHANNEL,
            });
            conn
        };
        self.details = Some(details);
        let session = format!(
            "session-{}",
            Alphanumeric.sample_string(&mut rand::rng(), 22)
        );
        self.state = State::Connected {
            conn,
            session: session.clone(),
        };
        let connected = Frame::new("CONNECTED")
            .with("server", format!("Bloodbank/{}", env!("CARGO_PKG_VERSION")))
            .with("session", session)
            .with(
                "heart-beat",
                format!("{},{}", self.heart_beats.send, self.heart_beats.expect),
            )
            .with("version", version.as_str());
        Step::send(vec![connected])
    }

    fn send(&mut self, conn: ConnId, frame: &Frame) -> Step {
        outcome(self.try_send(conn, frame), |wait_for| Step {
            wait_for,
            ..Default::default()
        })
    }

    /// Publishes a SEND; the log position its RECEIPT waits for.
    fn try_send(
        &mut self,
        conn: ConnId,
        frame: &Frame,
    ) -> Result<Result<Option<u64>, AmqpError>, Refused> {
        if frame.header("message-id").is_some() {
            return Err(Refused::new(
                "Invalid header",
                "'message-id' is not allowed on 'SEND'.",
            ));
        }
        let dest = self.destination(frame)?;
        let (exchange, key, declare) = dest.send_target(frame)?;
        let mut sent = headers::properties(&frame.headers);
        if let Some(reply_to) = frame
            .header("reply-to")
            .filter(|r| r.starts_with("/temp-queue/"))
        {
            let Destination::TempQueue(name) = Destination::parse(reply_to)? else {
                return Err(destination::unknown(reply_to));
            };
            match self.temp_queue(conn, &name)? {
                Ok(queue) => sent = sent.with_reply_to(queue.into()),
                Err(e) => return Ok(Err(e)),
            }
        }
        let message = Message::new(exchange, key, sent, frame.body.clone());
        let ck = ChanKey {
            conn,
            channel: SEND_CHANNEL,
        };
        let mut core = self.core();
        if let Some(queue) = declare {
            if let Err(e) = core.queue_declare(ck, queue) {
                return Ok(Err(e));
            }
        }
        Ok(core.publish(ck, false, message).map(|published| {
            if published.wait_for.is_some() {
                core.flush_log();
            }
            published.wait_for
        }))
    }

    fn settle(&mut self, conn: ConnId, frame: &Frame, ack: bool) -> Step {
        let name = match self.version {
            Version::V12 => "id",
            _ => "message-id",
        };
        let Some(id) = frame.header(name) else {
            return Step::send(vec![error(
                &format!("Missing '{name}' header"),
                &format!("{} needs a '{name}' header", frame.command),
            )]);
        };
        let Some(&(channel, tag)) = self.unacked.get(id) else {
            return Step::send(vec![error(
                "Invalid header",
                &format!(
                    "\"{}\" must include a valid \"{name}\" header",
                    frame.command
                ),
            )]);
        };
        let cumulative = self
            .subscriptions
            .values()
            .any(|s| s.channel == channel && s.ack == AckMode::Client);
        let ck = ChanKey { conn, channel };
        // NACK requeues unless told `requeue:false`, as RabbitMQ reads it.
        let requeue = frame.header("requeue") != Some("false");
        let settled = {
            let mut core = self.core();
            match ack {
                true => core.basic_ack(ck, tag, cumulative),
                false => core.basic_nack(ck, tag, cumulative, requeue),
            }
        };
        match settled {
            Ok(()) => {
                self.unacked.retain(|_, (c, t)| {
                    !(*c == channel && (*t == tag || (cumulative && *t < tag)))
                });
                Step::default()
            }
            Err(e) => fatal(&e),
        }
    }

    /// A message the core sends this connection, as a frame (None: nothing to send).
    pub(crate) fn outbound(&mut self, out: Outbound) -> Option<Frame> {
        let State::Connected { session, .. } = &self.state else {
            return None;
        };
        let session = session.clone();
        match out {
            Outbound::Deliver {
                consumer_tag,
                delivery_tag,
                redelivered,
                message,
                channel,
            } => {
                let sub = self.subscriptions.get(&*consumer_tag)?;
                self.next_message += 1;
                let id = format!("{consumer_tag}@@{session}@@{}", self.next_message);
                let mut f = Frame::new("MESSAGE");
                if let Some(sub_id) = &sub.id {
                    f = f.with("subscription", sub_id);
                }
                f = f
                    .with(
                        "destination",
                        destination::message_destination(&message.exchange, &message.routing_key),
                    )
                    .with("message-id", id.clone())
                    .with("redelivered", redelivered.to_string());
                if sub.ack != AckMode::Auto {
                    f = f.with("ack", id.clone());
                    self.unacked.insert(id, (channel, delivery_tag));
                }
                for (k, v) in headers::message_headers(&message) {
                    f = f.with(&k, v);
                }
                Some(f.with_body(message.body.clone()))
            }
            Outbound::Cancelled { consumer_tag, .. } => {
                let sub = self.subscriptions.remove(&*consumer_tag)?;
                // A temp queue deleted under us is made anew at its next use.
                self.temp_queues.retain(|_, q| *q != sub.queue);
                if let State::Connected { conn, .. } = self.state {
                    let ck = ChanKey {
                        conn,
                        channel: sub.channel,
                    };
                    self.core().close_channel(ck);
                }
                self.unacked.retain(|_, (ch, _)| *ch != sub.channel);
                let name = sub.id.unwrap_or_else(|| consumer_tag.to_string());
                Some(error(
                    "Server cancelled subscription",
                    &format!("The queue of subscription '{name}' was deleted"),
                ))
            }
            _ => None,
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The core's id of this connection, once connected.
    pub(crate) fn conn(&self) -> Option<ConnId> {
        match self.state {
            State::Connected { conn, .. } => Some(conn),
            State::AwaitingConnect => None,
        }
    }

    /// Leaves the core: subscriptions end and unacknowledged messages go back to their
    /// queues.
    pub(crate) fn close(&mut self) {
        if let State::Connected { conn, .. } = self.state {
            self.core().close_connection(conn);
        }
        self.state = State::AwaitingConnect;
    }
}
