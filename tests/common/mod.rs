//! Helpers for the end-to-end tests: an in-process broker on port 0 and lapin clients.
#![allow(dead_code)]

pub mod http;
pub mod process;
pub mod rabbitmq;
pub mod raw;
pub mod redis;

use bloodbank_broker::{Broker, BrokerConfig};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use std::time::Duration;

pub async fn broker() -> Broker {
    broker_with(BrokerConfig::default()).await
}

pub async fn broker_with(mut config: BrokerConfig) -> Broker {
    config.amqp_listen = "127.0.0.1:0".parse().unwrap();
    Broker::start(config).await.expect("broker starts")
}

pub fn url(broker: &Broker) -> String {
    format!("amqp://guest:guest@{}/%2f", broker.addr())
}

pub async fn connect(broker: &Broker) -> Connection {
    Connection::connect(&url(broker), ConnectionProperties::default())
        .await
        .expect("connects")
}

pub async fn channel(conn: &Connection) -> Channel {
    conn.create_channel().await.expect("channel opens")
}

/// The AMQP reply code carried by a lapin error.
pub fn reply_code(err: &lapin::Error) -> u16 {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => e.get_id(),
        other => panic!("expected an AMQP error, got {other:?}"),
    }
}

pub fn reply_text(err: &lapin::Error) -> String {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => e.get_message().to_string(),
        other => panic!("expected an AMQP error, got {other:?}"),
    }
}

pub async fn declare_queue(ch: &Channel, name: &str) -> String {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue declared")
    .name()
    .to_string()
}

pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("published");
}

pub async fn consume(ch: &Channel, queue: &str, no_ack: bool) -> Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("consuming")
}

/// The next delivery, failing the test after 5 s.
pub async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery within 5 s")
        .expect("consumer open")
        .expect("delivery ok")
}

/// Asserts nothing arrives within `ms` milliseconds.
pub async fn nothing_within(consumer: &mut Consumer, ms: u64) {
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(ms), consumer.next()).await {
        let d = d.map(|d| d.data);
        match d {
            Ok(body) if body.len() > 64 => panic!("unexpected delivery of {} bytes", body.len()),
            other => panic!("unexpected delivery: {other:?}"),
        }
    }
}

/// Bodies of all messages currently in a queue, fetched with basic.get (acked).
pub async fn drain(ch: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        out.push(m.delivery.data.clone());
    }
    out
}

/// `queue.declare(passive)`: the queue's counts, or the broker's error.
pub async fn passive_queue(ch: &Channel, name: &str) -> lapin::Result<lapin::Queue> {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), options, FieldTable::default())
        .await
}

/// `exchange.declare` with no arguments.
pub async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: lapin::ExchangeKind,
    options: ExchangeDeclareOptions,
) -> lapin::Result<()> {
    ch.exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
}

/// `queue.bind` with no arguments.
pub async fn bind_queue(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// `exchange.bind` with no arguments.
pub async fn bind_exchange(
    ch: &Channel,
    destination: &str,
    source: &str,
    key: &str,
) -> lapin::Result<()> {
    ch.exchange_bind(
        destination.into(),
        source.into(),
        key.into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// An argument table.
pub fn args(pairs: &[(&str, lapin::types::AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// A string argument value.
pub fn text(s: &str) -> lapin::types::AMQPValue {
    lapin::types::AMQPValue::LongString(s.into())
}

/// `queue.declare` with arguments.
pub async fn declare_queue_with(
    ch: &Channel,
    name: &str,
    durable: bool,
    arguments: FieldTable,
) -> lapin::Result<lapin::Queue> {
    let options = QueueDeclareOptions {
        durable,
        ..Default::default()
    };
    ch.queue_declare(name.into(), options, arguments).await
}

/// Publishes with properties and waits for the confirm (on a channel in confirm mode); returns
/// whether the broker acked (true) or nacked (false).
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> bool {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("published")
        .await
        .expect("confirmed");
    confirm.is_ack()
}

/// A channel in confirm mode.
pub async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = channel(conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    ch
}

/// Persistent delivery mode.
pub fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// The string value of a header of a delivery.
pub fn header_str(d: &Delivery, key: &str) -> Option<String> {
    match d.properties.headers().as_ref()?.inner().get(key)? {
        lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
        lapin::types::AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}
