//! One STOMP connection's protocol state: CONNECT, then subscriptions as consumers on the
//! core (each on a channel of its own, so `prefetch-count` is its own), SENDs as publishes,
//! ACK/NACK as settlements, deliveries turned into MESSAGE frames. No I/O: the connection
//! task feeds frames in and writes what comes out.

use super::destination::{self, Destination};
use super::frame::Frame;
use crate::core::declare::QueueSpec;
use crate::core::deliver::ConsumeSpec;
use crate::core::{
    ChanKey, ConnId, Core, Destination as Bound, Details, Message, Outbound, Outlet, Peer, Protocol,
};
use crate::error::AmqpError;
use crate::net::Shared;
use amq_protocol::types::FieldTable;
use rand::distr::{Alphanumeric, SampleString};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};

/// The channel SENDs publish on; subscriptions take the ones after it.
const SEND_CHANNEL: u16 = 1;
/// Most subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 1024;
/// Most transactions open at once, and frames one transaction may hold.
const MAX_TRANSACTIONS: usize = 64;
const MAX_TRANSACTION_FRAMES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckMode {
    Auto,
    /// An ACK settles that message and every earlier one of the subscription.
    Client,
    ClientIndividual,
}

#[derive(Debug)]
struct Subscription {
    channel: u16,
    ack: AckMode,
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
    fn send(frames: Vec<Frame>) -> Step {
        Step {
            frames,
            ..Default::default()
        }
    }
}

#[derive(Debug)]
enum State {
    AwaitingConnect,
    Connected {
        conn: ConnId,
        vhost: String,
        session: String,
    },
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    outlet: Outlet,
    addr: SocketAddr,
    local: Option<SocketAddr>,
    state: State,
    pub(crate) version: Version,
    pub(crate) heart_beats: HeartBeats,
    subscriptions: HashMap<String, Subscription>,
    next_channel: u16,
    /// `ack` header value -> (channel, delivery tag), for client ack modes.
    unacked: HashMap<String, (u16, u64)>,
    next_message: u64,
    /// The switch an operator closes the connection with (set once connected).
    pub(crate) details: Option<Arc<Details>>,
    /// Open transactions: the SENDs, ACKs and NACKs held until COMMIT.
    transactions: HashMap<String, Vec<Frame>>,
}

fn error_frame(message: &str, body: &str) -> Frame {
    Frame::new("ERROR")
        .with("message", message)
        .with("content-type", "text/plain")
        .with_body(bytes::Bytes::from(format!("{body}\n")))
}

/// An AMQP error from the core as RabbitMQ's STOMP adapter reports it, ending the session.
fn fatal(e: &AmqpError) -> Step {
    let message = crate::error::code::name(e.code).to_ascii_lowercase();
    Step {
        frames: vec![error_frame(&message, &e.text)],
        close: true,
        ..Default::default()
    }
}

fn receipt(frame: &Frame) -> Option<Frame> {
    frame
        .header("receipt")
        .map(|r| Frame::new("RECEIPT").with("receipt-id", r))
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        outlet: Outlet,
        addr: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Session {
        Session {
            shared,
            outlet,
            addr,
            local,
            state: State::AwaitingConnect,
            version: Version::V12,
            heart_beats: HeartBeats::default(),
            subscriptions: HashMap::new(),
            next_channel: SEND_CHANNEL + 1,
            unacked: HashMap::new(),
            next_message: 0,
            details: None,
            transactions: HashMap::new(),
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
        let (conn, vhost) = match &self.state {
            State::Connected { conn, vhost, .. } => (*conn, vhost.clone()),
            State::AwaitingConnect => {
                return match frame.command.as_str() {
                    "CONNECT" | "STOMP" => self.connect(&frame),
                    _ => Step {
                        frames: vec![error_frame(
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
            let step = self.hold(tx.to_string(), frame.clone());
            return self.with_receipt(step, &frame);
        }
        let step = match frame.command.as_str() {
            "SEND" => self.send(conn, &vhost, &frame),
            "SUBSCRIBE" => self.subscribe(conn, &frame),
            "UNSUBSCRIBE" => self.unsubscribe(conn, &frame),
            "ACK" => self.settle(conn, &frame, true),
            "NACK" => self.settle(conn, &frame, false),
            "DISCONNECT" => Step {
                frames: receipt(&frame).into_iter().collect(),
                close: true,
                ..Default::default()
            },
            "BEGIN" => self.begin(&frame),
            "COMMIT" => self.commit(&frame),
            "ABORT" => self.abort(&frame),
            "CONNECT" | "STOMP" => Step::send(vec![error_frame(
                "Already connected",
                "This session is already connected",
            )]),
            other => Step::send(vec![error_frame(
                "Bad command",
                &format!("Could not interpret command {other}"),
            )]),
        };
        self.with_receipt(step, &frame)
    }

    fn transaction_id<'f>(&self, frame: &'f Frame) -> Result<&'f str, Step> {
        frame.header("transaction").ok_or_else(|| {
            Step::send(vec![error_frame(
                "Missing transaction",
                &format!("{} must include a 'transaction' header", frame.command),
            )])
        })
    }

    fn begin(&mut self, frame: &Frame) -> Step {
        let tx = match self.transaction_id(frame) {
            Ok(tx) => tx,
            Err(step) => return step,
        };
        if self.transactions.contains_key(tx) {
            return Step::send(vec![error_frame(
                "Bad transaction",
                &format!("Transaction '{tx}' is already open"),
            )]);
        }
        if self.transactions.len() >= MAX_TRANSACTIONS {
            return Step::send(vec![error_frame(
                "Too many transactions",
                &format!("At most {MAX_TRANSACTIONS} transactions at once"),
            )]);
        }
        self.transactions.insert(tx.to_string(), Vec::new());
        Step::default()
    }

    /// Holds a SEND, ACK or NACK of a transaction until COMMIT.
    fn hold(&mut self, tx: String, mut frame: Frame) -> Step {
        let Some(held) = self.transactions.get_mut(&tx) else {
            return Step::send(vec![error_frame(
                "Bad transaction",
                &format!("Invalid transaction identifier: {tx}"),
            )]);
        };
        if held.len() >= MAX_TRANSACTION_FRAMES {
            return Step::send(vec![error_frame(
                "Transaction too large",
                &format!("At most {MAX_TRANSACTION_FRAMES} frames in one transaction"),
            )]);
        }
        frame
            .headers
            .retain(|(k, _)| k != "transaction" && k != "receipt");
        held.push(frame);
        Step::default()
    }

    /// Applies a transaction's frames in order.
    fn commit(&mut self, frame: &Frame) -> Step {
        let tx = match self.transaction_id(frame) {
            Ok(tx) => tx,
            Err(step) => return step,
        };
        let Some(held) = self.transactions.remove(tx) else {
            return Step::send(vec![error_frame(
                "Bad transaction",
                &format!("Invalid transaction identifier: {tx}"),
            )]);
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

    fn abort(&mut self, frame: &Frame) -> Step {
        let tx = match self.transaction_id(frame) {
            Ok(tx) => tx,
            Err(step) => return step,
        };
        match self.transactions.remove(tx) {
            Some(_) => Step::default(),
            None => Step::send(vec![error_frame(
                "Bad transaction",
                &format!("Invalid transaction identifier: {tx}"),
            )]),
        }
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
                frames: vec![error_frame(
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
        let ip = self.addr.ip();
        let users = self.shared.users.read().unwrap_or_else(|p| p.into_inner());
        let access = match users.authenticate(&login, passcode, ip) {
            true => users.access(&login, &vhost),
            false => None,
        };
        drop(users);
        let Some(access) = access else {
            self.shared.logins.failed(ip, std::time::Instant::now());
            // As RabbitMQ: the socket stays open for another CONNECT.
            return Step::send(vec![error_frame(
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
        let name = match self.local {
            Some(local) => format!("{} -> {local}", self.addr),
            None => self.addr.to_string(),
        };
        let details = Arc::new(Details {
            name,
            client_properties: serde_json::json!({
                "product": "STOMP client",
                "version": version.as_str(),
            }),
            heartbeat: (self.heart_beats.expect / 1000) as u16,
            local: self.local,
            ..Default::default()
        });
        let peer = Peer {
            user: login.clone(),
            vhost: vhost.clone(),
            protocol: Protocol::Stomp,
            addr: Some(self.addr),
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
            vhost,
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

    fn destination(&self, frame: &Frame) -> Result<Destination, Step> {
        let Some(d) = frame.header("destination") else {
            return Err(Step::send(vec![error_frame(
                "Missing destination",
                "The frame has no destination header",
            )]));
        };
        Destination::parse(d)
            .ok_or_else(|| Step::send(vec![error_frame("Unknown destination", destination::VALID)]))
    }

    /// Declares a `/queue/` destination's queue as RabbitMQ's plugin does: durable.
    fn declare_queue(core: &mut Core, ck: ChanKey, name: &str) -> Result<(), AmqpError> {
        core.queue_declare(
            ck,
            QueueSpec {
                name: name.to_string(),
                durable: true,
                ..Default::default()
            },
        )
        .map(drop)
    }

    fn send(&mut self, conn: ConnId, _vhost: &str, frame: &Frame) -> Step {
        if frame.header("message-id").is_some() {
            return Step::send(vec![error_frame(
                "Invalid header",
                "'message-id' is not allowed on 'SEND'.",
            )]);
        }
        let dest = match self.destination(frame) {
            Ok(d) => d,
            Err(step) => return step,
        };
        let ck = ChanKey {
            conn,
            channel: SEND_CHANNEL,
        };
        let (exchange, key) = dest.publish_to();
        let properties = destination::properties(&frame.headers);
        let message = Message::new(exchange, key, properties, frame.body.clone());
        let mut core = self.core();
        if let Destination::Queue(q) = &dest {
            if let Err(e) = Self::declare_queue(&mut core, ck, q) {
                return fatal(&e);
            }
        }
        match core.publish(ck, false, message) {
            Ok(published) => {
                if published.wait_for.is_some() {
                    core.flush_log();
                }
                Step {
                    wait_for: published.wait_for,
                    ..Default::default()
                }
            }
            Err(e) => fatal(&e),
        }
    }

    fn subscribe(&mut self, conn: ConnId, frame: &Frame) -> Step {
        let dest = match self.destination(frame) {
            Ok(d) => d,
            Err(step) => return step,
        };
        let id = match (frame.header("id"), self.version) {
            (Some(id), _) => id.to_string(),
            (None, Version::V10) => frame.header("destination").unwrap_or("").to_string(),
            (None, _) => {
                return Step::send(vec![error_frame(
                    "Missing 'id' header",
                    "SUBSCRIBE needs an 'id' header",
                )])
            }
        };
        if self.subscriptions.contains_key(&id) {
            return Step::send(vec![error_frame(
                "Duplicated subscription identifier",
                &format!("A subscription identified by '{id}' already exists."),
            )]);
        }
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Step::send(vec![error_frame(
                "Too many subscriptions",
                &format!("At most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            )]);
        }
        let ack = match frame.header("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            other => {
                return Step::send(vec![error_frame(
                    "Invalid ack header",
                    &format!("'{other}' is not auto, client or client-individual"),
                )])
            }
        };
        let prefetch = frame
            .header("prefetch-count")
            .and_then(|p| p.parse::<u16>().ok());
        let channel = self.next_channel;
        self.next_channel = self.next_channel.wrapping_add(1).max(SEND_CHANNEL + 1);
        let ck = ChanKey { conn, channel };
        let shared = self.shared.clone();
        let mut core = shared.lock();
        core.open_channel(ck);
        if let Some(n) = prefetch {
            core.basic_qos(ck, n, false);
        }
        let consumed = (|| {
            let queue = match &dest {
                Destination::Queue(q) => {
                    Self::declare_queue(&mut core, ck, q)?;
                    q.clone()
                }
                Destination::AmqQueue(q) => {
                    core.queue_declare(
                        ck,
                        QueueSpec {
                            name: q.clone(),
                            passive: true,
                            ..Default::default()
                        },
                    )?
                    .name
                }
                Destination::Exchange { .. } | Destination::Topic(_) => {
                    let (exchange, pattern) = dest.publish_to();
                    let name = format!(
                        "stomp-subscription-{}",
                        Alphanumeric.sample_string(&mut rand::rng(), 22)
                    );
                    core.queue_declare(
                        ck,
                        QueueSpec {
                            name: name.clone(),
                            auto_delete: true,
                            ..Default::default()
                        },
                    )?;
                    core.bind(
                        ck,
                        exchange,
                        Bound::Queue(name.clone()),
                        pattern,
                        FieldTable::default(),
                    )?;
                    name
                }
            };
            core.basic_consume(
                ck,
                ConsumeSpec {
                    queue,
                    tag: id.clone(),
                    no_ack: ack == AckMode::Auto,
                    exclusive: false,
                    nowait: true,
                },
            )
        })();
        match consumed {
            Ok(_) => {
                self.subscriptions.insert(id, Subscription { channel, ack });
                Step::default()
            }
            Err(e) => {
                core.close_channel(ck);
                fatal(&e)
            }
        }
    }

    fn unsubscribe(&mut self, conn: ConnId, frame: &Frame) -> Step {
        let id = frame
            .header("id")
            .or_else(|| frame.header("destination"))
            .unwrap_or("");
        let Some(sub) = self.subscriptions.remove(id) else {
            return Step::send(vec![error_frame(
                "Missing subscription",
                &format!("Subscription to '{id}' not found."),
            )]);
        };
        let ck = ChanKey {
            conn,
            channel: sub.channel,
        };
        let shared = self.shared.clone();
        let mut core = shared.lock();
        core.basic_cancel(ck, id);
        // Its unacknowledged messages go back to the queue, as when a channel closes.
        core.close_channel(ck);
        self.unacked.retain(|_, (ch, _)| *ch != sub.channel);
        Step::default()
    }

    fn settle(&mut self, conn: ConnId, frame: &Frame, ack: bool) -> Step {
        let name = match self.version {
            Version::V12 => "id",
            _ => "message-id",
        };
        let Some(id) = frame.header(name) else {
            return Step::send(vec![error_frame(
                &format!("Missing '{name}' header"),
                &format!("{} needs a '{name}' header", frame.command),
            )]);
        };
        let Some(&(channel, tag)) = self.unacked.get(id) else {
            return Step::send(vec![error_frame(
                "Unknown message",
                &format!("No message to {} with id '{id}'", frame.command),
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
                let id = format!("T_{consumer_tag}@@{session}@@{}", self.next_message);
                let mut f = Frame::new("MESSAGE")
                    .with("subscription", &*consumer_tag)
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
                for (k, v) in destination::message_headers(&message) {
                    f = f.with(&k, v);
                }
                Some(f.with_body(message.body.clone()))
            }
            Outbound::Cancelled { consumer_tag, .. } => {
                self.subscriptions.remove(&*consumer_tag)?;
                Some(error_frame(
                    "Server cancelled subscription",
                    &format!("The queue of subscription '{consumer_tag}' was deleted"),
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
