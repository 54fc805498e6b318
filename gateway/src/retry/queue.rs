//! A retry topology's work queue on the broker in this process (an in-process session) or on
//! an external RabbitMQ (lapin with publisher confirms): declare the topology, take messages
//! one at a time, publish retry and dead-letter copies, acknowledge.

use super::Topology;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::FieldTable;
use bloodbank_broker::{Publisher, QueueSpec, Session};
use bytes::Bytes;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::{Channel, Connection, ExchangeKind};

/// Where the broker is.
#[derive(Clone)]
pub enum Broker {
    Embedded(Publisher),
    /// AMQP URLs, comma-separated: the first node that answers.
    External(String),
}

/// A message taken from the work queue.
pub struct Item {
    pub tag: u64,
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Bytes,
}

/// The work queue, being consumed.
pub enum WorkQueue {
    Embedded(Session),
    External(Box<External>),
}

pub struct External {
    _conn: Connection,
    ch: Channel,
    consumer: lapin::Consumer,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl WorkQueue {
    /// Declares the topology's queues (the work queue bound to `exchange` by each of
    /// `patterns`) and consumes the work queue, one message at a time.
    pub async fn open(
        broker: &Broker,
        topology: &Topology,
        exchange: &str,
        patterns: &[String],
    ) -> Result<WorkQueue, String> {
        let mut queues = vec![(topology.dlq(), topology.dlq_args())];
        for ms in topology.delays() {
            queues.push((topology.retry_queue(ms), topology.retry_args(ms)));
        }
        queues.push((topology.queue.clone(), topology.work_args()));
        match broker {
            Broker::Embedded(publisher) => {
                let session = publisher.system_session();
                for (name, arguments) in queues {
                    let spec = QueueSpec {
                        name,
                        passive: false,
                        durable: true,
                        exclusive: false,
                        auto_delete: false,
                        arguments,
                    };
                    session.declare_queue(spec).await.map_err(err)?;
                }
                let no_args = serde_json::json!({});
                for pattern in patterns {
                    session
                        .bind(exchange, &topology.queue, false, pattern, &no_args)
                        .await
                        .map_err(err)?;
                }
                session.consume(&topology.queue, 1).map_err(err)?;
                Ok(WorkQueue::Embedded(session))
            }
            Broker::External(url) => {
                let conn = crate::sink::connect(url).await.map_err(err)?;
                let ch = conn.create_channel().await.map_err(err)?;
                ch.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(err)?;
                ch.basic_qos(1, BasicQosOptions::default())
                    .await
                    .map_err(err)?;
                let durable = ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                ch.exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
                let durable = QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                for (name, arguments) in queues {
                    ch.queue_declare(name.as_str().into(), durable, arguments)
                        .await
                        .map_err(err)?;
                }
                let queue = topology.queue.as_str();
                for pattern in patterns {
                    ch.queue_bind(
                        queue.into(),
                        exchange.into(),
                        pattern.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(err)?;
                }
                let consumer = ch
                    .basic_consume(
                        queue.into(),
                        "".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(err)?;
                Ok(WorkQueue::External(Box::new(External {
                    _conn: conn,
                    ch,
                    consumer,
                })))
            }
        }
    }

    /// The next message; an error means the connection is gone.
    pub async fn next(&mut self) -> Result<Item, String> {
        match self {
            WorkQueue::Embedded(session) => {
                let taken = session
                    .next_delivery()
                    .await
                    .ok_or("the broker is shutting down")?;
                let m = taken.message;
                Ok(Item {
                    tag: taken.tag,
                    exchange: m.exchange.clone(),
                    routing_key: m.routing_key.clone(),
                    properties: m.properties.clone(),
                    body: m.body.clone(),
                })
            }
            WorkQueue::External(external) => {
                let d = external
                    .consumer
                    .next()
                    .await
                    .ok_or("the broker ended the consumer")?
                    .map_err(err)?;
                Ok(Item {
                    tag: d.delivery_tag,
                    exchange: d.exchange.to_string(),
                    routing_key: d.routing_key.to_string(),
                    properties: d.properties,
                    body: Bytes::from(d.data),
                })
            }
        }
    }

    pub async fn ack(&self, tag: u64) -> Result<(), String> {
        match self {
            WorkQueue::Embedded(session) => session.settle(tag, true, false).map_err(err),
            WorkQueue::External(external) => external
                .ch
                .basic_ack(tag, BasicAckOptions::default())
                .await
                .map_err(err),
        }
    }

    /// Publishes a copy to `queue` (through the default exchange) and returns once the broker
    /// has it durably.
    pub async fn publish(
        &self,
        queue: &str,
        properties: BasicProperties,
        body: Bytes,
    ) -> Result<(), String> {
        let properties = properties.with_delivery_mode(2);
        match self {
            WorkQueue::Embedded(session) => {
                match session.publish("", queue, properties, body).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!("no queue {queue}")),
                    Err(e) => Err(e.to_string()),
                }
            }
            WorkQueue::External(external) => {
                let confirm = external
                    .ch
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await
                    .map_err(err)?
                    .await
                    .map_err(err)?;
                match confirm.is_ack() {
                    true => Ok(()),
                    false => Err(format!("the broker refused the copy for {queue}")),
                }
            }
        }
    }
}

/// Deletes a topology's queues (its consumer is gone for good).
pub async fn delete(broker: &Broker, topology: &Topology) -> Result<(), String> {
    let mut names = vec![topology.queue.clone(), topology.dlq()];
    names.extend(
        topology
            .delays()
            .into_iter()
            .map(|ms| topology.retry_queue(ms)),
    );
    match broker {
        Broker::Embedded(publisher) => {
            let session = publisher.system_session();
            for name in names {
                // Already gone is fine.
                let _ = session.delete_queue(&name, false, false).await;
            }
        }
        Broker::External(url) => {
            let conn = crate::sink::connect(url).await.map_err(err)?;
            let ch = conn.create_channel().await.map_err(err)?;
            for name in names {
                ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(err)?;
            }
            let _ = conn.close(200, "bye".into()).await;
        }
    }
    Ok(())
}
