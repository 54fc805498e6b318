//! Scenarios that the clients' own test suites (rabbitmq/amqp091-go, amqplib, aio-pika) failed
//! on against Bloodbank while passing against RabbitMQ 3.10, kept as regression tests.

mod common;

use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use bloodbank_broker::wire::{decode_frame, encode_method, Frame};
use common::raw::Raw;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// amqp091-go: a passive declare of a missing queue with a 250-character name made a reply
/// text over 255 bytes, which panicked the connection task and left the client hanging.
#[tokio::test]
async fn a_reply_text_longer_than_a_short_string_is_cut_not_fatal() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let name = "q".repeat(250);
    let declare = ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    );
    let err = tokio::time::timeout(Duration::from_secs(5), declare)
        .await
        .expect("an answer, not a hang")
        .unwrap_err();
    assert_eq!(reply_code(&err), 404);
    let text = reply_text(&err);
    assert!(text.len() <= 255 && text.ends_with("..."), "{text}");
    // The connection carries on.
    let ch = channel(&conn).await;
    declare_queue(&ch, "after-long-text").await;
}

/// amqplib: an auto-delete queue went away when a channel holding an unacked `basic.get`
/// message closed; RabbitMQ deletes it only when its last consumer goes.
#[tokio::test]
async fn closing_a_channel_that_only_fetched_keeps_an_auto_delete_queue() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    ch.queue_declare(
        "fetched".into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "", "fetched", b"once").await;
    let getter = channel(&conn).await;
    let got = getter
        .basic_get("fetched".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(got.delivery.data, b"once");
    getter.close(200, "bye".into()).await.unwrap();
    let q = ch
        .queue_declare(
            "fetched".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue is still there");
    assert_eq!(q.message_count(), 1, "the message came back");

    // A consumer that goes away does delete it.
    let consumer = channel(&conn).await;
    consume(&consumer, "fetched", false).await;
    consumer.close(200, "bye".into()).await.unwrap();
    let err = ch
        .queue_declare(
            "fetched".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 404);
}

/// amqp091-go: a client `channel.close` crossing the server's own `channel.close` killed the
/// connection with 504 "expected 'channel.open'". Each side answers the other's close; the
/// channel is gone once the server's close is answered.
#[tokio::test]
async fn crossing_channel_closes_leave_the_connection_open() {
    let b = broker().await;
    let mut raw = Raw::open(b.addr(), 131_072, 0).await;
    let open = || AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));
    raw.method(1, open()).await;
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(
            1,
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))
        ))
    ));
    // An unknown delivery tag is a channel error (406); our close goes out before we read it.
    raw.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 99,
            multiple: false,
        })),
    )
    .await;
    raw.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match raw.frame().await {
        Some(Frame::Method(1, AMQPClass::Channel(channel::AMQPMethod::Close(c)))) => {
            assert_eq!(c.reply_code, 406)
        }
        other => panic!("expected channel.close, got {other:?}"),
    }
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(
            1,
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))
        ))
    ));
    raw.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    )
    .await;
    // The channel number is free again and the connection is alive.
    raw.method(1, open()).await;
    match raw.frame().await {
        Some(Frame::Method(1, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) => {}
        other => panic!("expected channel.open-ok, got {other:?}"),
    }
}

/// amqplib: the server closed the socket right after `connection.close-ok` while the client
/// was still writing (publishes queued behind its close), so the client got a reset instead
/// of its close completing. The server reads on until the client closes.
#[tokio::test]
async fn after_close_ok_the_server_waits_for_the_client_to_hang_up() {
    let b = broker().await;
    let raw = Raw::open(b.addr(), 131_072, 0).await;
    let mut out = bytes::BytesMut::new();
    encode_method(
        &mut out,
        0,
        &AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    );
    // 16 MB of frames behind the close: more than the socket buffers hold, so the client is
    // still writing when the server has answered.
    for _ in 0..65536 {
        encode_method(
            &mut out,
            1,
            &AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "events".into(),
                routing_key: "x".repeat(200).as_str().into(),
                mandatory: false,
                immediate: false,
            })),
        );
    }
    let (mut rd, mut wr) = raw.sock.into_split();
    let writer = tokio::spawn(async move {
        let written = wr.write_all(&out).await;
        let _ = wr.shutdown().await;
        written
    });
    let mut buf = raw.buf;
    let close_ok = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(frame) = decode_frame(&mut buf, 0).unwrap() {
                return frame;
            }
            let n = rd
                .read_buf(&mut buf)
                .await
                .expect("no reset before close-ok");
            assert!(n > 0, "closed before close-ok");
        }
    })
    .await
    .expect("close-ok within 5 s");
    assert!(matches!(
        close_ok,
        Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))
    ));
    let written = tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("the server keeps reading")
        .unwrap();
    assert!(written.is_ok(), "the client's writes failed: {written:?}");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut rest))
        .await
        .expect("the server hangs up once the client has");
    assert!(read.is_ok(), "the connection was reset: {read:?}");
}

/// RabbitMQ's `connection_max`: one connection too many is refused at `connection.open` with
/// 530 and RabbitMQ's text; when one closes, the next gets in.
#[tokio::test]
async fn connections_past_connection_max_are_refused_with_530() {
    let b = broker_with(bloodbank_broker::BrokerConfig {
        connection_max: Some(2),
        ..Default::default()
    })
    .await;
    let first = connect(&b).await;
    let _second = connect(&b).await;
    let err = lapin::Connection::connect(&url(&b), lapin::ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 530, "{err}");
    assert_eq!(
        reply_text(&err),
        "NOT_ALLOWED - connection refused: node connection limit (2) is reached"
    );
    first.close(200, "bye".into()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match lapin::Connection::connect(&url(&b), lapin::ConnectionProperties::default()).await {
            Ok(_) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Limits on queues per vhost (RabbitMQ's `max-queues`) and consumers per channel
/// (`consumer_max_per_channel`): the declare past the first is 406 and the channel goes on
/// elsewhere; the consume past the second is 530 with RabbitMQ's texts. Redeclaring an
/// existing queue is not a new queue, and a deleted one frees its place.
#[tokio::test]
async fn queues_and_consumers_past_their_limits_are_refused() {
    let mut config = bloodbank_broker::BrokerConfig::default();
    config.limits.max_queues = Some(3);
    config.limits.consumer_max_per_channel = Some(2);
    let b = broker_with(config).await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    for q in ["q1", "q2", "q3", "q3"] {
        declare_queue(&ch, q).await;
    }
    let err = declare_queue_with(&ch, "q4", false, FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406, "{err}");
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - cannot declare queue 'q4': queue limit in vhost '/' (3) is reached"
    );
    let ch = channel(&conn).await;
    ch.queue_delete("q1".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    declare_queue(&ch, "q4").await;

    // Held: lapin cancels a consumer it drops.
    let _q2 = consume(&ch, "q2", false).await;
    let _q3 = consume(&ch, "q3", false).await;
    let err = ch
        .basic_consume(
            "q4".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 530, "{err}");
    assert_eq!(
        reply_text(&err),
        "NOT_ALLOWED - reached maximum (2) of consumers per channel"
    );
    // A hard error closes the connection; a new one consumes again.
    let conn = connect(&b).await;
    consume(&channel(&conn).await, "q4", false).await;
}

/// A no-ack consumer that does not read its socket cannot make the broker hold the queue in
/// memory for it: deliveries stop at the connection's outlet budget and go on as it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_does_not_read_is_not_sent_the_whole_queue() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "slow").await;
    let body = vec![b'x'; 100 * 1024];
    for _ in 0..1000 {
        publish(&ch, "", "slow", &body).await;
    }
    let count = |ch: lapin::Channel| async move {
        passive_queue(&ch, "slow").await.unwrap().message_count()
    };
    assert_eq!(count(ch.clone()).await, 1000);

    let mut raw = Raw::open(b.addr(), 131_072, 0).await;
    raw.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    raw.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "slow".into(),
            consumer_tag: "lazy".into(),
            no_local: false,
            no_ack: true,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    // It reads nothing for a while: the queue keeps most of its 100 MB.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = count(ch.clone()).await;
    assert!(
        left > 800,
        "only {left} of 1000 left: the broker queued the rest for the socket"
    );

    // Once it reads, everything arrives.
    let mut delivered = 0;
    while delivered < 1000 {
        match raw.frame().await {
            Some(Frame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Deliver(_)))) => {
                delivered += 1
            }
            Some(_) => {}
            None => panic!("closed after {delivered}"),
        }
    }
    assert_eq!(count(ch).await, 0);
}
