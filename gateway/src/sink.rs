//! Where the gateway publishes: the broker in this process, or an external RabbitMQ (with
//! publisher confirms, reconnecting and redeclaring the exchange after a failure).

use std::sync::Arc;

use amq_protocol::protocol::BasicProperties;
use bloodbank_broker::{PublishError, Publisher, Subscription};
use bytes::Bytes;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Not accepting now (resource alarm, external broker down): 503 and retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

pub enum Sink {
    Embedded(Publisher),
    External(Arc<External>),
}

/// A message as a subscriber sees it: routing key, properties, body.
pub struct Received {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

pub enum Stream {
    Embedded(Subscription),
    External(Box<(lapin::Consumer, Connection)>),
}

impl Stream {
    pub async fn next(&mut self) -> Option<Received> {
        match self {
            Stream::Embedded(s) => s.next().await.map(|(routing_key, m)| Received {
                routing_key,
                properties: m.properties.clone(),
                body: m.body.to_vec(),
            }),
            Stream::External(external) => {
                let consumer = &mut external.0;
                let delivery = consumer.next().await?.ok()?;
                Some(Received {
                    routing_key: delivery.routing_key.to_string(),
                    properties: delivery.properties,
                    body: delivery.data,
                })
            }
        }
    }
}

impl Sink {
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: Bytes,
    ) -> Result<(), SinkError> {
        match self {
            Sink::Embedded(p) => p
                .publish(exchange, routing_key, properties, body)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    PublishError::Blocked(_) | PublishError::Rejected | PublishError::ShutDown => {
                        SinkError::Unavailable(e.to_string())
                    }
                    PublishError::Refused(amqp) => {
                        SinkError::Failed(format!("the broker refused the publish: {amqp}"))
                    }
                }),
            Sink::External(x) => x.publish(exchange, routing_key, properties, body).await,
        }
    }

    /// `(status of the broker, detail)`: "accepting", "blocked" or "disconnected".
    pub async fn state(&self) -> (&'static str, Option<String>) {
        match self {
            Sink::Embedded(p) => match p.blocked() {
                Some(why) => ("blocked", Some(why)),
                None => ("accepting", None),
            },
            Sink::External(x) => match x.connected().await {
                Ok(()) => ("accepting", None),
                Err(e) => ("disconnected", Some(e.to_string())),
            },
        }
    }

    pub async fn subscribe(&self, exchange: &str, pattern: &str) -> Result<Stream, SinkError> {
        match self {
            Sink::Embedded(p) => p
                .subscribe(exchange, pattern)
                .map(Stream::Embedded)
                .map_err(|e| SinkError::Failed(e.to_string())),
            Sink::External(x) => x.subscribe(exchange, pattern).await,
        }
    }
}

/// An external AMQP broker (one URL, or several nodes of a cluster, comma-separated), connected
/// on first use and again after a failure, to the first node that answers.
pub struct External {
    url: String,
    exchange: String,
    link: Mutex<Option<Link>>,
}

/// The connection to one node, and the channel publishes go out on (none after a nack: the
/// next publish opens a fresh one).
struct Link {
    conn: Connection,
    channel: Option<Channel>,
}

fn lost(e: lapin::Error) -> SinkError {
    SinkError::Unavailable(format!("external broker: {e}"))
}

impl External {
    /// The broker's URLs, comma-separated (with their credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn new(url: String, exchange: String) -> External {
        External {
            url,
            exchange,
            link: Mutex::new(None),
        }
    }

    /// A channel in confirm mode, connecting (and declaring the exchange) when there is none.
    async fn channel(&self) -> Result<Channel, SinkError> {
        let mut link = self.link.lock().await;
        match link.as_mut() {
            Some(l) if l.conn.status().connected() => match &l.channel {
                Some(ch) if ch.status().connected() => return Ok(ch.clone()),
                _ => {
                    let ch = self.confirming_channel(&l.conn).await?;
                    l.channel = Some(ch.clone());
                    return Ok(ch);
                }
            },
            _ => *link = None,
        }
        let conn = connect(&self.url).await.map_err(lost)?;
        let ch = self.confirming_channel(&conn).await?;
        *link = Some(Link {
            conn,
            channel: Some(ch.clone()),
        });
        tracing::info!("connected to the external broker");
        Ok(ch)
    }

    async fn confirming_channel(&self, conn: &Connection) -> Result<Channel, SinkError> {
        let ch = conn.create_channel().await.map_err(lost)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(lost)?;
        ch.exchange_declare(
            self.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(lost)?;
        Ok(ch)
    }

    /// Publishes with a confirm. When the node it was connected to has gone away or the
    /// message was nacked, it tries once more on a fresh connection or channel (the next node
    /// of a cluster takes over) before giving up: at least once, as a confirm lost with its
    /// connection may mean the first copy landed.
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: Bytes,
    ) -> Result<(), SinkError> {
        match self
            .publish_once(exchange, routing_key, properties.clone(), body.clone())
            .await
        {
            Err(SinkError::Unavailable(first)) => {
                tracing::warn!(error = %first, "publishing to the external broker failed; trying once more");
                self.publish_once(exchange, routing_key, properties, body)
                    .await
            }
            other => other,
        }
    }

    async fn publish_once(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: Bytes,
    ) -> Result<(), SinkError> {
        let ch = self.channel().await?;
        let confirm = ch
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(|e| self.forget(e))?
            .await
            .map_err(|e| self.forget(e))?;
        match confirm.is_nack() {
            true => {
                self.retire(&ch).await;
                Err(SinkError::Unavailable(
                    "the external broker refused the message (basic.nack)".into(),
                ))
            }
            false => Ok(()),
        }
    }

    /// After a nack the channel is not used again: RabbitMQ 3.10 was seen to nack every later
    /// publish on a channel that first published to a quorum queue while the queue was
    /// electing a new leader (a node had just stopped), while fresh channels were served. The
    /// channel closes when the publishes still waiting on it are done.
    async fn retire(&self, ch: &Channel) {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_mut() {
            if l.channel.as_ref().is_some_and(|c| c.id() == ch.id()) {
                tracing::warn!(
                    channel = ch.id(),
                    "basic.nack: the next publish opens a fresh channel"
                );
                l.channel = None;
            }
        }
    }

    /// Drops the link after an error, so the next publish reconnects.
    fn forget(&self, e: lapin::Error) -> SinkError {
        if let Ok(mut link) = self.link.try_lock() {
            *link = None;
        }
        lost(e)
    }

    async fn connected(&self) -> Result<(), SinkError> {
        self.channel().await.map(|_| ())
    }

    async fn subscribe(&self, exchange: &str, pattern: &str) -> Result<Stream, SinkError> {
        let (conn, consumer) = amqp_subscription(&self.url, exchange, pattern)
            .await
            .map_err(lost)?;
        Ok(Stream::External(Box::new((consumer, conn))))
    }
}

/// How long one node may take to accept a connection before the next is tried.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects to the first node of `urls` (AMQP URLs, comma-separated: the nodes of a cluster)
/// that answers, in their order; the error is the last node's.
pub async fn connect(urls: &str) -> Result<Connection, lapin::Error> {
    let mut last = None;
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let attempt = Connection::connect(url, ConnectionProperties::default());
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => {
                tracing::debug!(url = %redact(url), "connected");
                return Ok(conn);
            }
            Ok(Err(e)) => e,
            Err(_) => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{} did not answer within {CONNECT_TIMEOUT:?}", redact(url)),
            )
            .into(),
        };
        tracing::debug!(url = %redact(url), error = %error, "broker node unreachable");
        last = Some(error);
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no broker URL given").into()
    }))
}

/// A subscription on any AMQP broker (`urls` as [`connect`] takes them): an exclusive queue
/// of its own, bound to `exchange` by a topic `pattern`, consumed without acknowledgements. It
/// goes away with the connection.
pub async fn amqp_subscription(
    urls: &str,
    exchange: &str,
    pattern: &str,
) -> Result<(Connection, lapin::Consumer), lapin::Error> {
    let conn = connect(urls).await?;
    let ch = conn.create_channel().await?;
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("".into(), options, FieldTable::default())
        .await?;
    ch.queue_bind(
        q.name().clone(),
        exchange.into(),
        pattern.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let consume = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let consumer = ch
        .basic_consume(q.name().clone(), "".into(), consume, FieldTable::default())
        .await?;
    Ok((conn, consumer))
}

/// URLs (one, or comma-separated) with their passwords hidden, for logs and messages.
pub fn redact(urls: &str) -> String {
    let one = |url: &str| match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    };
    urls.split(',')
        .map(|u| one(u.trim()))
        .collect::<Vec<_>>()
        .join(",")
}
