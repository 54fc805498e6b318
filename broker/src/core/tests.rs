//! The core without sockets: a connection is an in-memory outlet, and the tests read what
//! the core asked it to send. A property test runs random sequences of operations and checks
//! after each that every message published is exactly one of ready, unacknowledged or
//! settled, and that the memory accounting adds up.

use super::declare::QueueSpec;
use super::deliver::ConsumeSpec;
use super::Peer;
use super::{ChanKey, Core, Limits, Message, Outbound, Outlet};
use amq_protocol::types::FieldTable;
use bytes::Bytes;
use proptest::prelude::*;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc::UnboundedReceiver;

/// A core with one connection whose outbound work is kept for the test to read.
struct Harness {
    core: Core,
    conn: u64,
    outbox: UnboundedReceiver<Outbound>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Core::new(Limits::default()))
    }

    fn with(mut core: Core) -> Harness {
        let (outlet, outbox) = Outlet::new(u64::MAX);
        let peer = Peer {
            cancel_notify: true,
            ..Peer::in_process()
        };
        let conn = core.register_connection(outlet, peer);
        Harness { core, conn, outbox }
    }

    fn ck(&self, channel: u16) -> ChanKey {
        ChanKey {
            conn: self.conn,
            channel,
        }
    }

    fn open(&mut self, channel: u16) {
        let ck = self.ck(channel);
        self.core.open_channel(ck);
    }

    fn declare(&mut self, channel: u16, name: &str) {
        let ck = self.ck(channel);
        self.core
            .queue_declare(
                ck,
                QueueSpec {
                    name: name.into(),
                    passive: false,
                    durable: false,
                    exclusive: false,
                    auto_delete: false,
                    arguments: FieldTable::default(),
                },
            )
            .unwrap();
    }

    fn publish(&mut self, channel: u16, queue: &str, body: &str) {
        let ck = self.ck(channel);
        let message = Message::new("", queue, Default::default(), Bytes::from(body.to_string()));
        self.core.publish(ck, false, message).unwrap();
    }

    /// (channel, delivery tag, body, from basic.get) of every delivery or get-ok sent since
    /// the last call.
    fn deliveries(&mut self) -> Vec<(u16, u64, Bytes, bool)> {
        let mut out = Vec::new();
        while let Ok(work) = self.outbox.try_recv() {
            match work {
                Outbound::Deliver {
                    channel,
                    delivery_tag,
                    message,
                    ..
                } => out.push((channel, delivery_tag, message.body.clone(), false)),
                Outbound::GetOk {
                    channel,
                    delivery_tag,
                    message,
                    ..
                } => out.push((channel, delivery_tag, message.body.clone(), true)),
                _ => {}
            }
        }
        out
    }

    fn ready(&self, queue: &str) -> usize {
        self.core
            .vhost("/")
            .and_then(|v| v.queues.get(queue))
            .map_or(0, |q| q.len())
    }

    fn unacked(&self) -> usize {
        self.core
            .channels
            .iter()
            .filter(|(k, _)| k.conn == self.conn)
            .map(|(_, c)| c.unacked.len())
            .sum()
    }
}

#[test]
fn a_consumer_gets_what_is_published_in_order_within_its_prefetch() {
    let mut h = Harness::new();
    h.open(1);
    h.declare(1, "q");
    for body in ["a", "b", "c"] {
        h.publish(1, "q", body);
    }
    h.core.basic_qos(h.ck(1), 2, false);
    h.core
        .basic_consume(
            h.ck(1),
            ConsumeSpec {
                queue: "q".into(),
                tag: "c1".into(),
                no_ack: false,
                exclusive: false,
                nowait: true,
            },
        )
        .unwrap();
    let first: Vec<Bytes> = h.deliveries().into_iter().map(|d| d.2).collect();
    assert_eq!(first, vec![Bytes::from("a"), Bytes::from("b")]);
    assert_eq!(h.ready("q"), 1);
    h.core.basic_ack(h.ck(1), 1, false).unwrap();
    let next = h.deliveries();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].2, Bytes::from("c"));
    // Closing the channel puts the unacknowledged back, in their places.
    h.core.close_channel(h.ck(1));
    assert_eq!(h.ready("q"), 2);
}

static FAKE_NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);

fn fake_now() -> u64 {
    FAKE_NOW.load(Ordering::Relaxed)
}

#[test]
fn a_message_ttl_runs_on_the_cores_clock() {
    let mut h = Harness::with(Core::with_clock(Limits::default(), fake_now));
    h.open(1);
    let ck = h.ck(1);
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-message-ttl".into(),
        amq_protocol::types::AMQPValue::LongLongInt(1000),
    );
    h.core
        .queue_declare(
            ck,
            QueueSpec {
                name: "ttl".into(),
                passive: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                arguments,
            },
        )
        .unwrap();
    h.publish(1, "ttl", "soon gone");
    FAKE_NOW.fetch_add(999, Ordering::Relaxed);
    h.core.tick();
    assert_eq!(h.ready("ttl"), 1, "not expired after 999 ms");
    FAKE_NOW.fetch_add(2, Ordering::Relaxed);
    h.core.tick();
    assert_eq!(h.ready("ttl"), 0, "expired after 1001 ms");
}

#[derive(Debug, Clone)]
enum Op {
    Publish(u8),
    Consume { channel: u16, prefetch: u16 },
    Get { channel: u16, no_ack: bool },
    Ack { pick: usize, multiple: bool },
    Nack { pick: usize, requeue: bool },
    Cancel { channel: u16 },
    CloseChannel { channel: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Publish),
        1 => (1u16..3, 0u16..4).prop_map(|(channel, prefetch)| Op::Consume { channel, prefetch }),
        2 => (1u16..3, any::<bool>()).prop_map(|(channel, no_ack)| Op::Get { channel, no_ack }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, multiple)| Op::Ack { pick, multiple }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, requeue)| Op::Nack { pick, requeue }),
        1 => (1u16..3).prop_map(|channel| Op::Cancel { channel }),
        1 => (1u16..3).prop_map(|channel| Op::CloseChannel { channel }),
    ]
}

/// What the test believes: each message (by its body) is ready, delivered on a channel
/// under a tag, or settled.
#[derive(Default)]
struct Model {
    ready: usize,
    /// (channel, tag, body), oldest first per channel.
    outstanding: Vec<(u16, u64, Bytes)>,
    settled: usize,
}

impl Model {
    fn settle(&mut self, channel: u16, tag: u64, multiple: bool, requeue: bool) {
        let before = self.outstanding.len();
        self.outstanding
            .retain(|(c, t, _)| !(*c == channel && (*t == tag || (multiple && *t < tag))));
        let n = before - self.outstanding.len();
        match requeue {
            true => self.ready += n,
            false => self.settled += n,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_message_is_ready_unacked_or_settled(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = Harness::new();
        for channel in 1..3 {
            h.open(channel);
        }
        h.declare(1, "q");
        let mut model = Model::default();
        let mut published = 0usize;
        let mut consuming = [false; 3];
        for op in ops {
            match op {
                Op::Publish(n) => {
                    published += 1;
                    h.publish(1, "q", &format!("{published}:{}", "x".repeat(n as usize)));
                    model.ready += 1;
                }
                Op::Consume { channel, prefetch } => {
                    if !consuming[channel as usize] {
                        h.core.basic_qos(h.ck(channel), prefetch, false);
                        h.core.basic_consume(h.ck(channel), ConsumeSpec {
                            queue: "q".into(),
                            tag: "c".into(),
                            no_ack: false,
                            exclusive: false,
                            nowait: true,
                        }).unwrap();
                        consuming[channel as usize] = true;
                    }
                }
                Op::Get { channel, no_ack } => {
                    h.core.basic_get(h.ck(channel), "q", no_ack).unwrap();
                    // A no-ack get is settled as it is handed over.
                    let (gets, rest): (Vec<_>, Vec<_>) =
                        h.deliveries().into_iter().partition(|d| d.3 && no_ack);
                    model.ready -= gets.len();
                    model.settled += gets.len();
                    for (c, t, body, _) in rest {
                        model.ready -= 1;
                        model.outstanding.push((c, t, body));
                    }
                }
                Op::Ack { pick, multiple } => {
                    if !model.outstanding.is_empty() {
                        let (channel, tag, _) = model.outstanding[pick % model.outstanding.len()].clone();
                        h.core.basic_ack(h.ck(channel), tag, multiple).unwrap();
                        model.settle(channel, tag, multiple, false);
                    }
                }
                Op::Nack { pick, requeue } => {
                    if !model.outstanding.is_empty() {
                        let (channel, tag, _) = model.outstanding[pick % model.outstanding.len()].clone();
                        h.core.basic_nack(h.ck(channel), tag, false, requeue).unwrap();
                        model.settle(channel, tag, false, requeue);
                    }
                }
                Op::Cancel { channel } => {
                    h.core.basic_cancel(h.ck(channel), "c");
                    consuming[channel as usize] = false;
                }
                Op::CloseChannel { channel } => {
                    h.core.close_channel(h.ck(channel));
                    model.settle(channel, u64::MAX, true, true);
                    h.open(channel);
                    consuming[channel as usize] = false;
                }
            }
            // Deliveries to consumers (after a publish, an ack, a requeue...).
            for (c, t, body, _) in h.deliveries() {
                model.ready -= 1;
                model.outstanding.push((c, t, body));
            }
            prop_assert_eq!(model.ready + model.outstanding.len() + model.settled, published);
            prop_assert_eq!(h.ready("q"), model.ready);
            prop_assert_eq!(h.unacked(), model.outstanding.len());
            // The bodies delivered are the ones the core holds as unacknowledged.
            let mut held: Vec<Bytes> = h.core.channels.values()
                .flat_map(|c| c.unacked.values().filter_map(|u| u.entry.message.as_ref().map(|m| m.body.clone())))
                .collect();
            let mut believed: Vec<Bytes> = model.outstanding.iter().map(|o| o.2.clone()).collect();
            held.sort();
            believed.sort();
            prop_assert_eq!(held, believed);
            let q = &h.core.vhost("/").unwrap().queues["q"];
            prop_assert_eq!(q.resident_bytes(), q.ready_bytes());
            prop_assert_eq!(h.core.resident.load(Ordering::Relaxed), q.held_memory());
        }
    }
}
