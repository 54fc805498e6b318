//! Differential tests: each scenario runs against Bloodbank and against a real RabbitMQ node
//! (Debian's `rabbitmq-server`, started by the test), and both must answer the same way:
//! the same success, or the same reply code (and, where RabbitMQ's text is plain words rather
//! than Erlang terms, the same reply text). A table of cases, not copies of test bodies. Only
//! errors a client reads from a synchronous reply are compared: an error raised by an
//! asynchronous method (an ack of an unknown tag) races with the client's next send, and is
//! checked in `amqp_messaging.rs` instead.

mod common;

use common::rabbitmq::RabbitMq;
use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::future::Future;
use std::pin::Pin;

/// What a broker answered: success, or the reply code and text that closed the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Closed(u16, String),
}

/// A scenario gets a connection, a prefix for the names it makes, and the broker's URL (for
/// second connections).
type Scenario = for<'a> fn(
    &'a Connection,
    &'a str,
    &'a str,
) -> Pin<Box<dyn Future<Output = lapin::Result<()>> + 'a>>;

struct Case {
    name: &'static str,
    /// Compare the reply text too, not only the code.
    same_text: bool,
    run: Scenario,
}

async fn outcome(conn: &Connection, prefix: &str, url: &str, run: Scenario) -> Outcome {
    match run(conn, prefix, url).await {
        Ok(()) => Outcome::Ok,
        Err(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(p) => {
                Outcome::Closed(p.get_id(), p.get_message().to_string())
            }
            other => Outcome::Closed(0, format!("{other:?}")),
        },
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

const CASES: &[Case] = &[
    Case {
        name: "passive declare of a missing queue",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                ch.queue_declare(
                    format!("{p}missing").as_str().into(),
                    passive(),
                    FieldTable::default(),
                )
                .await
                .map(drop)
            })
        },
    },
    Case {
        name: "passive declare of a missing queue with a 250-character name",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                let name = format!("{p}{}", "q".repeat(240));
                ch.queue_declare(name.as_str().into(), passive(), FieldTable::default())
                    .await
                    .map(drop)
            })
        },
    },
    Case {
        name: "passive declare of a missing exchange",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                ch.exchange_declare(
                    format!("{p}missing-x").as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
            })
        },
    },
    Case {
        name: "redeclare a queue as durable",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                let name = format!("{p}flip");
                declare_queue_with(&ch, &name, false, FieldTable::default()).await?;
                declare_queue_with(&ch, &name, true, FieldTable::default())
                    .await
                    .map(drop)
            })
        },
    },
    Case {
        name: "redeclare a queue with another x-max-length",
        same_text: false,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                let name = format!("{p}limited");
                let mut a = FieldTable::default();
                a.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
                declare_queue_with(&ch, &name, false, a).await?;
                let mut b = FieldTable::default();
                b.insert("x-max-length".into(), AMQPValue::LongLongInt(20));
                declare_queue_with(&ch, &name, false, b).await.map(drop)
            })
        },
    },
    Case {
        name: "bind a queue to a missing exchange",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                let q = format!("{p}bound");
                declare_queue_with(&ch, &q, false, FieldTable::default()).await?;
                bind_queue(&ch, &q, &format!("{p}nowhere"), "k").await
            })
        },
    },
    Case {
        name: "delete a missing queue",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                ch.queue_delete(
                    format!("{p}never").as_str().into(),
                    QueueDeleteOptions::default(),
                )
                .await
                .map(drop)
            })
        },
    },
    Case {
        name: "declare an exchange with the reserved amq. prefix",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                ch.exchange_declare(
                    format!("amq.{p}custom").as_str().into(),
                    ExchangeKind::Direct,
                    ExchangeDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
            })
        },
    },
    Case {
        name: "consume from a missing queue",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                ch.basic_consume(
                    format!("{p}absent").as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map(drop)
            })
        },
    },
    Case {
        name: "publish to a missing exchange (confirm mode)",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                ch.basic_publish(
                    format!("{p}no-exchange").as_str().into(),
                    "k".into(),
                    BasicPublishOptions::default(),
                    b"x",
                    BasicProperties::default(),
                )
                .await?
                .await
                .map(drop)
            })
        },
    },
    Case {
        name: "an exclusive queue used from another connection",
        same_text: true,
        run: |conn, p, url| {
            Box::pin(async move {
                let ch = channel(conn).await;
                let name = format!("{p}mine");
                ch.queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
                let other = Connection::connect(url, ConnectionProperties::default()).await?;
                let och = other.create_channel().await?;
                och.basic_get(name.as_str().into(), BasicGetOptions::default())
                    .await
                    .map(drop)
            })
        },
    },
    Case {
        name: "a queue argument of the wrong type",
        same_text: true,
        run: |conn, p, _| {
            Box::pin(async move {
                let ch = channel(conn).await;
                let mut a = FieldTable::default();
                a.insert("x-message-ttl".into(), text("soon"));
                declare_queue_with(&ch, &format!("{p}typed"), false, a)
                    .await
                    .map(drop)
            })
        },
    },
    Case {
        name: "channel.flow(active=false), which RabbitMQ does not implement",
        same_text: true,
        run: |_, _, url| {
            Box::pin(async move {
                let conn = Connection::connect(url, ConnectionProperties::default()).await?;
                let ch = channel(&conn).await;
                ch.channel_flow(ChannelFlowOptions { active: false })
                    .await
                    .map(drop)
            })
        },
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bloodbank_answers_as_rabbitmq_does() {
    let rabbit = RabbitMq::start();
    let bloodbank = broker().await;
    let connect = |url: String| async move {
        Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("connects")
    };
    let (ours, theirs) = (connect(url(&bloodbank)).await, connect(rabbit.url()).await);
    let mut differences = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let prefix = format!("diff{i}-");
        let got = outcome(&ours, &prefix, &url(&bloodbank), case.run).await;
        let want = outcome(&theirs, &prefix, &rabbit.url(), case.run).await;
        let same = match (&got, &want) {
            (Outcome::Closed(a, ta), Outcome::Closed(b, tb)) => {
                a == b && (!case.same_text || ta == tb)
            }
            (a, b) => a == b,
        };
        eprintln!("{:<60} bloodbank {got:?} / rabbitmq {want:?}", case.name);
        if !same {
            differences.push(format!(
                "{}: bloodbank {got:?}, rabbitmq {want:?}",
                case.name
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "answers differ from RabbitMQ's:\n{}",
        differences.join("\n")
    );
}
