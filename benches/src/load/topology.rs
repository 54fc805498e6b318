//! The exchange and queues of a run: a topic exchange, `fanout` queues bound with a pattern
//! that matches every published key, and optional bindings that match nothing.

use super::Scenario;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

pub const EXCHANGE: &str = "bench.topic";
pub const ROUTING_KEY: &str = "bench.event.created";

pub async fn declare(url: &str, s: &Scenario) -> Result<Vec<String>, lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let durable = s.persistent;
    ch.exchange_declare(
        EXCHANGE.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let mut queues = Vec::new();
    for i in 0..s.fanout {
        let name = format!("bench.q{i}");
        ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await?;
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        let pattern = if i % 2 == 0 {
            "bench.#"
        } else {
            "bench.*.created"
        };
        ch.queue_bind(
            name.as_str().into(),
            EXCHANGE.into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        queues.push(name);
    }
    if s.idle_bindings > 0 {
        let idle = "bench.idle";
        ch.queue_declare(
            idle.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for i in 0..s.idle_bindings {
            ch.queue_bind(
                idle.into(),
                EXCHANGE.into(),
                format!("other.{i}.*").as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
    }
    conn.close(200, "setup done".into()).await?;
    Ok(queues)
}

/// Messages ready in the queues.
pub async fn backlog(url: &str, queues: &[String]) -> Result<u64, lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let mut total = 0;
    for q in queues {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        total += ch
            .queue_declare(q.as_str().into(), passive, FieldTable::default())
            .await?
            .message_count() as u64;
    }
    conn.close(200, "counted".into()).await?;
    Ok(total)
}

pub async fn delete(url: &str, queues: &[String], s: &Scenario) -> Result<(), lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in queues {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    if s.idle_bindings > 0 {
        ch.queue_delete("bench.idle".into(), QueueDeleteOptions::default())
            .await?;
    }
    conn.close(200, "cleaned up".into()).await?;
    Ok(())
}
