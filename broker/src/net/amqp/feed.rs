//! A session driven by bytes alone, for fuzzing and property tests: frames are decoded from
//! the input and handed to a session of a fresh in-memory broker, as a connection's reader
//! task would after the handshake. Whatever the input, it must end in a connection error or
//! the end of the input, never a panic, and leave the core consistent.

use super::session::Session;
use crate::config::BrokerConfig;
use crate::core::{Core, Outlet};
use crate::core::{Peer, Protocol};
use crate::net::{alarm, Shared, OUTLET_BUDGET};
use crate::wire::decode_frame;
use bytes::BytesMut;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Feeds `data` (frames, as after `connection.open-ok`) to one session; returns how many
/// frames it took before the input ended or the session closed the connection.
pub fn feed_frames(data: &[u8]) -> usize {
    let config = BrokerConfig::default();
    let core = Core::new(config.limits.clone());
    let (_alarm_tx, alarm) = watch::channel(None);
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        pressure: Arc::new(alarm::Pressure::new(config.memory_high_watermark)),
        config,
        alarm,
        amqp_connections: Default::default(),
        users: Default::default(),
        logins: Default::default(),
        confirmed: Default::default(),
    });
    let (outlet, mut outbox) = Outlet::new(OUTLET_BUDGET);
    let peer = Peer {
        user: "guest".into(),
        vhost: "/".into(),
        protocol: Protocol::Amqp091,
        addr: None,
        cancel_notify: true,
        access: crate::core::access::Access::all("guest", "/"),
        details: Default::default(),
    };
    let mut session = Session::new(shared.clone(), outlet, peer, 16);
    let mut buf = BytesMut::from(data);
    let mut taken = 0;
    while let Ok(Some(frame)) = decode_frame(&mut buf, 131_072) {
        taken += 1;
        match session.handle_frame(frame) {
            Ok(true) => session.flush_confirms(),
            Ok(false) | Err(_) => break,
        }
        while outbox.try_recv().is_ok() {}
    }
    session.close_core();
    shared.lock().close_connection(session.conn);
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_content, encode_method};
    use amq_protocol::protocol::{basic, channel, confirm, exchange, queue, tx, AMQPClass};
    use amq_protocol::types::FieldTable;
    use proptest::prelude::*;

    /// Methods a client may send, with a few names and tags so that they meet each other.
    fn method() -> impl Strategy<Value = (u16, AMQPClass, Option<Vec<u8>>)> {
        let name = prop_oneof![Just("a"), Just("b"), Just("")];
        let ch = 1u16..4;
        prop_oneof![
            ch.clone().prop_map(|c| (
                c,
                AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
                None
            )),
            ch.clone().prop_map(|c| (
                c,
                AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    class_id: 0,
                    method_id: 0,
                })),
                None
            )),
            ch.clone().prop_map(|c| (
                c,
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                None
            )),
            (ch.clone(), name.clone(), any::<bool>(), any::<bool>()).prop_map(
                |(c, n, durable, auto_delete)| (
                    c,
                    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                        queue: n.into(),
                        passive: false,
                        durable,
                        exclusive: false,
                        auto_delete,
                        nowait: false,
                        arguments: FieldTable::default(),
                    })),
                    None
                )
            ),
            (ch.clone(), name.clone()).prop_map(|(c, n)| (
                c,
                AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                    queue: n.into(),
                    exchange: "amq.topic".into(),
                    routing_key: "#".into(),
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
                None
            )),
            (ch.clone(), name.clone()).prop_map(|(c, n)| (
                c,
                AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                    queue: n.into(),
                    if_unused: false,
                    if_empty: false,
                    nowait: false,
                })),
                None
            )),
            (ch.clone(), name.clone()).prop_map(|(c, n)| (
                c,
                AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
                    queue: n.into(),
                    nowait: false,
                })),
                None
            )),
            (ch.clone(), name.clone()).prop_map(|(c, n)| (
                c,
                AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                    exchange: n.into(),
                    kind: "fanout".into(),
                    passive: false,
                    durable: false,
                    auto_delete: false,
                    internal: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
                None
            )),
            (
                ch.clone(),
                name.clone(),
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(c, n, mandatory, body)| (
                    c,
                    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                        exchange: "amq.topic".into(),
                        routing_key: n.into(),
                        mandatory,
                        immediate: false,
                    })),
                    Some(body)
                )),
            (ch.clone(), name.clone(), any::<bool>()).prop_map(|(c, n, no_ack)| (
                c,
                AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                    queue: n.into(),
                    consumer_tag: "t".into(),
                    no_local: false,
                    no_ack,
                    exclusive: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
                None
            )),
            (ch.clone(), name.clone(), any::<bool>()).prop_map(|(c, n, no_ack)| (
                c,
                AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                    queue: n.into(),
                    no_ack,
                })),
                None
            )),
            (ch.clone(), 0u64..6, any::<bool>()).prop_map(|(c, tag, multiple)| (
                c,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: tag,
                    multiple,
                })),
                None
            )),
            (ch.clone(), 0u64..6, any::<bool>()).prop_map(|(c, tag, requeue)| (
                c,
                AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: tag,
                    multiple: false,
                    requeue,
                })),
                None
            )),
            ch.clone().prop_map(|c| (
                c,
                AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: "t".into(),
                    nowait: false
                })),
                None
            )),
            ch.clone().prop_map(|c| (
                c,
                AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                    prefetch_count: 2,
                    global: false
                })),
                None
            )),
            ch.clone().prop_map(|c| (
                c,
                AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                    nowait: false
                })),
                None
            )),
            ch.clone().prop_map(|c| (
                c,
                AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})),
                None
            )),
            ch.clone().prop_map(|c| (
                c,
                AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {})),
                None
            )),
            ch.prop_map(|c| (
                c,
                AMQPClass::Tx(tx::AMQPMethod::Rollback(tx::Rollback {})),
                None
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any sequence of client methods ends in a channel or connection error or goes
        /// through; none panics.
        #[test]
        fn method_sequences_never_panic(methods in proptest::collection::vec(method(), 1..40)) {
            let mut bytes = BytesMut::new();
            // Channels 1 to 3 open first, so that most sequences get past the first frame.
            for channel in 1..4 {
                encode_method(&mut bytes, channel, &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
            }
            for (channel, method, body) in &methods {
                encode_method(&mut bytes, *channel, method);
                if let Some(body) = body {
                    encode_content(&mut bytes, *channel, &[0, 0], body, 131_072);
                }
            }
            let taken = feed_frames(&bytes);
            prop_assert!(taken >= 3);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            feed_frames(&data);
        }
    }
}
