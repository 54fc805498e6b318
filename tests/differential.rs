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

/// What a client sees of a quorum queue's `x-delivery-limit`: the `x-delivery-count` header of
/// each delivery while a consumer keeps returning the message (nack with requeue, then a
/// channel closed with it unacknowledged), and the `x-death` entry of the dead letter.
async fn delivery_limit_story(url: &str, limit: i64) -> Vec<String> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connects");
    let ch = confirm_channel(&conn).await;
    let (work, dlq) = ("diff-dl-work", "diff-dl-work.dlq");
    let _ = ch
        .queue_delete(work.into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .queue_delete(dlq.into(), QueueDeleteOptions::default())
        .await;
    declare_queue_with(&ch, dlq, true, FieldTable::default())
        .await
        .expect("dlq");
    let quorum = args(&[
        ("x-queue-type", text("quorum")),
        ("x-delivery-limit", AMQPValue::LongLongInt(limit)),
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text(dlq)),
    ]);
    declare_queue_with(&ch, work, true, quorum)
        .await
        .expect("quorum queue");
    assert!(publish_confirmed(&ch, "", work, b"poison", persistent()).await);
    let mut story = Vec::new();
    let count = |d: &lapin::message::Delivery| -> String {
        match d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delivery-count").cloned())
        {
            Some(AMQPValue::LongLongInt(n)) => format!("delivery-count {n}"),
            Some(other) => format!("delivery-count {other:?}"),
            None => "no delivery-count".into(),
        }
    };
    // Returned by nack-requeue up to the limit's worth, then once more by a closing channel.
    let consumer_ch = channel(&conn).await;
    consumer_ch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume(&consumer_ch, work, false).await;
    for _ in 0..limit {
        let d = next(&mut consumer).await;
        story.push(format!("{} redelivered={}", count(&d), d.redelivered));
        d.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let d = next(&mut consumer).await;
    story.push(format!("{} redelivered={}", count(&d), d.redelivered));
    consumer_ch.close(200, "bye".into()).await.unwrap();
    // The dead letter arrives shortly after the return that went over the limit.
    let mut dead = None;
    for _ in 0..100 {
        if let Some(m) = ch
            .basic_get(dlq.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            dead = Some(m.delivery);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dead = dead.expect("the message was dead-lettered");
    story.push(format!(
        "dead letter body {:?}",
        String::from_utf8_lossy(&dead.data)
    ));
    let headers = dead.properties.headers().clone().unwrap_or_default();
    let show = |v: Option<&AMQPValue>| match v {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => format!("{other:?}"),
    };
    for key in ["x-first-death-reason", "x-first-death-queue"] {
        story.push(format!("{key} {}", show(headers.inner().get(key))));
    }
    if let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") {
        if let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() {
            for key in ["reason", "queue", "count"] {
                story.push(format!("x-death {key} {}", show(first.inner().get(key))));
            }
        }
    }
    let left = passive_queue(&ch, work).await.unwrap().message_count();
    story.push(format!("left in the work queue {left}"));
    // A redeclare with another limit, and the limit on a classic queue.
    let other = args(&[
        ("x-queue-type", text("quorum")),
        ("x-delivery-limit", AMQPValue::LongLongInt(limit + 5)),
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text(dlq)),
    ]);
    let again = declare_queue_with(&ch, work, true, other).await;
    let answer = |r: lapin::Result<lapin::Queue>| match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{} {}", reply_code(&e), reply_text(&e)),
    };
    story.push(format!("redeclare with another limit: {}", answer(again)));
    let ch = channel(&conn).await;
    let classic = args(&[("x-delivery-limit", AMQPValue::LongLongInt(1))]);
    let classic = declare_queue_with(&ch, "diff-dl-classic", false, classic).await;
    story.push(format!("classic queue with a limit: {}", answer(classic)));
    story
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_limits_dead_letter_as_rabbitmq_does() {
    let rabbit = RabbitMq::start();
    let bloodbank = broker().await;
    let ours = delivery_limit_story(&url(&bloodbank), 2).await;
    let theirs = delivery_limit_story(&rabbit.url(), 2).await;
    for (a, b) in ours.iter().zip(&theirs) {
        eprintln!("{a:<60} | {b}");
    }
    assert_eq!(ours, theirs, "bloodbank (left) and rabbitmq (right) differ");
}

/// A vhost queue limit (RabbitMQ's `max-queues`, set with `rabbitmqctl set_vhost_limits`;
/// Bloodbank's `max_queues`): the declare past it gets the same code and text from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_limit_refuses_as_rabbitmq_does() {
    let rabbit = RabbitMq::start();
    rabbit.rabbitmqctl(&["set_vhost_limits", "-p", "/", r#"{"max-queues": 2}"#]);
    let mut config = bloodbank_broker::BrokerConfig::default();
    config.limits.max_queues = Some(2);
    let bloodbank = broker_with(config).await;
    let mut answers = Vec::new();
    for url in [url(&bloodbank), rabbit.url()] {
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("connects");
        let ch = channel(&conn).await;
        for q in ["limited-1", "limited-2", "limited-2"] {
            declare_queue(&ch, q).await;
        }
        let refused = declare_queue_with(&ch, "limited-3", false, FieldTable::default())
            .await
            .unwrap_err();
        answers.push((reply_code(&refused), reply_text(&refused)));
    }
    eprintln!("bloodbank {:?} / rabbitmq {:?}", answers[0], answers[1]);
    assert_eq!(answers[0], answers[1]);
}
