//! Queues, consumers, acknowledgements, prefetch, confirms and transactions over real AMQP
//! with lapin, checked against what RabbitMQ 3.x does.

mod common;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};
use std::time::Duration;

#[tokio::test]
async fn queue_declare_reports_counts_and_generates_names() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-"), "{}", q.name());
    declare_queue(&ch, "counted").await;
    publish(&ch, "", "counted", b"1").await;
    publish(&ch, "", "counted", b"2").await;
    let again = passive_queue(&ch, "counted").await.unwrap();
    assert_eq!((again.message_count(), again.consumer_count()), (2, 0));
    declare_queue(&ch, "watched").await;
    let _consumer = consume(&channel(&conn).await, "watched", true).await;
    let watched = ch
        .queue_declare(
            "watched".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(watched.consumer_count(), 1);
    b.shutdown().await;
}

#[tokio::test]
async fn queue_errors_carry_rabbitmq_codes() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let err = passive_queue(&ch, "missing").await.unwrap_err();
    assert_eq!(reply_code(&err), 404);
    assert_eq!(
        reply_text(&err),
        "NOT_FOUND - no queue 'missing' in vhost '/'"
    );
    let ch = channel(&conn).await;
    ch.queue_declare(
        "plain".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .queue_declare(
            "plain".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    assert!(reply_text(&err).contains("inequivalent arg 'durable'"));
    let ch = channel(&conn).await;
    let err = ch
        .queue_declare(
            "amq.mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 403);
    let ch = channel(&conn).await;
    let err = bind_queue(&ch, "plain", "missing-exchange", "k")
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 404);
    let ch = channel(&conn).await;
    let err = bind_queue(&ch, "plain", "", "k").await.unwrap_err();
    assert_eq!(reply_code(&err), 403);
    // The connection survives channel errors.
    let ch = channel(&conn).await;
    assert_eq!(
        ch.queue_delete("missing".into(), QueueDeleteOptions::default())
            .await
            .unwrap(),
        0
    );
    b.shutdown().await;
}

#[tokio::test]
async fn quorum_and_classic_queue_types() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        "hello".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        quorum.clone(),
    )
    .await
    .unwrap();
    publish(&ch, "", "hello", b"world").await;
    assert_eq!(drain(&ch, "hello").await, vec![b"world".to_vec()]);
    let mut classic = FieldTable::default();
    classic.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let err = ch
        .queue_declare(
            "hello".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            classic,
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    assert!(reply_text(&err).contains("inequivalent arg 'x-queue-type'"));
    let ch = channel(&conn).await;
    let err = ch
        .queue_declare("q-nd".into(), QueueDeclareOptions::default(), quorum)
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    let ch = channel(&conn).await;
    let mut unknown = FieldTable::default();
    unknown.insert("x-made-up".into(), AMQPValue::LongInt(1));
    let err = ch
        .queue_declare("q-arg".into(), QueueDeclareOptions::default(), unknown)
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    assert!(reply_text(&err).contains("x-made-up"));
    b.shutdown().await;
}

#[tokio::test]
async fn exclusive_queue_is_private_and_dies_with_its_connection() {
    let b = broker().await;
    let owner = connect(&b).await;
    let ch = channel(&owner).await;
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let other = connect(&b).await;
    let och = channel(&other).await;
    let err = och
        .queue_declare(
            "mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 405);
    let och = channel(&other).await;
    let err = och
        .basic_consume(
            "mine".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 405);
    owner.close(200, "bye".into()).await.unwrap();
    let och = channel(&other).await;
    let err = passive_queue(&och, "mine").await.unwrap_err();
    assert_eq!(reply_code(&err), 404);
    b.shutdown().await;
}

#[tokio::test]
async fn purge_and_conditional_delete() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "p").await;
    for _ in 0..3 {
        publish(&ch, "", "p", b"x").await;
    }
    assert_eq!(
        ch.queue_purge("p".into(), QueuePurgeOptions::default())
            .await
            .unwrap(),
        3
    );
    publish(&ch, "", "p", b"x").await;
    let err = ch
        .queue_delete(
            "p".into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    let ch = channel(&conn).await;
    let _c = consume(&ch, "p", false).await;
    let ch2 = channel(&conn).await;
    let err = ch2
        .queue_delete(
            "p".into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    let ch3 = channel(&conn).await;
    assert_eq!(
        ch3.queue_delete("p".into(), QueueDeleteOptions::default())
            .await
            .unwrap(),
        0
    );
    b.shutdown().await;
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_then_confirmed() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "events".into(),
            "nobody.listens".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost?",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    match confirm {
        Confirmation::Ack(Some(returned)) => {
            assert_eq!(returned.reply_code, 312);
            assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(returned.delivery.data, b"lost?");
        }
        other => panic!("expected ack with returned message, got {other:?}"),
    }
    // Not mandatory: confirmed, nothing returned.
    let confirm = ch
        .basic_publish(
            "events".into(),
            "nobody.listens".into(),
            BasicPublishOptions::default(),
            b"dropped",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(confirm, Confirmation::Ack(None)));
    b.shutdown().await;
}

#[tokio::test]
async fn large_bodies_span_frames_and_oversized_messages_are_refused() {
    let mut config = bloodbank_broker::BrokerConfig::default();
    config.limits.max_message_size = 1024 * 1024;
    let b = broker_with(config).await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "big").await;
    let body: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "", "big", &body).await;
    let mut c = consume(&ch, "big", true).await;
    assert_eq!(next(&mut c).await.data, body);
    let ch2 = channel(&conn).await;
    ch2.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let too_big = vec![0u8; 1024 * 1024 + 1];
    let result = ch2
        .basic_publish(
            "".into(),
            "big".into(),
            BasicPublishOptions::default(),
            &too_big,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await;
    let err = result.expect_err("oversized publish must fail");
    assert_eq!(reply_code(&err), 406);
    assert!(reply_text(&err).contains("larger than configured max size"));
    b.shutdown().await;
}

#[tokio::test]
async fn consumers_share_a_queue_round_robin() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "work").await;
    let mut c1 = consume(&ch, "work", true).await;
    let mut c2 = consume(&ch, "work", true).await;
    for i in 0..6 {
        publish(&ch, "", "work", format!("{i}").as_bytes()).await;
    }
    let mut got1 = Vec::new();
    let mut got2 = Vec::new();
    for _ in 0..3 {
        got1.push(String::from_utf8(next(&mut c1).await.data).unwrap());
        got2.push(String::from_utf8(next(&mut c2).await.data).unwrap());
    }
    assert_eq!(got1, ["0", "2", "4"]);
    assert_eq!(got2, ["1", "3", "5"]);
    b.shutdown().await;
}

#[tokio::test]
async fn exclusive_consumer_and_tag_reuse() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "solo").await;
    let _only = ch
        .basic_consume(
            "solo".into(),
            "only".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch2 = channel(&conn).await;
    let err = ch2
        .basic_consume(
            "solo".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 403);
    b.shutdown().await;
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "doomed").await;
    let mut c = consume(&ch, "doomed", false).await;
    let other = channel(&conn).await;
    other
        .queue_delete("doomed".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .expect("consumer ends");
    assert!(end.is_none(), "consumer stream should end on broker cancel");
    b.shutdown().await;
}

#[tokio::test]
async fn get_and_get_empty() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "g").await;
    assert!(ch
        .basic_get("g".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .is_none());
    publish(&ch, "", "g", b"a").await;
    publish(&ch, "", "g", b"b").await;
    let m = ch
        .basic_get("g".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"a");
    assert_eq!(m.message_count, 1);
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let err = ch
        .basic_get("missing".into(), BasicGetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 404);
    b.shutdown().await;
}

#[tokio::test]
async fn nack_requeue_keeps_position_and_marks_redelivered() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "order").await;
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "", "order", body).await;
    }
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut c = consume(&ch, "order", false).await;
    let d1 = next(&mut c).await;
    let d2 = next(&mut c).await;
    assert_eq!(
        (d1.data.as_slice(), d2.data.as_slice()),
        (&b"1"[..], &b"2"[..])
    );
    // Requeue both with one multiple nack: they come back first, in order, redelivered.
    ch.basic_nack(
        d2.delivery_tag,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .unwrap();
    let r1 = next(&mut c).await;
    let r2 = next(&mut c).await;
    assert_eq!((r1.data.as_slice(), r1.redelivered), (&b"1"[..], true));
    assert_eq!((r2.data.as_slice(), r2.redelivered), (&b"2"[..], true));
    // Reject without requeue drops; ack multiple settles the rest.
    ch.basic_reject(r1.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let d3 = next(&mut c).await;
    assert_eq!((d3.data.as_slice(), d3.redelivered), (&b"3"[..], false));
    ch.basic_ack(d3.delivery_tag, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    nothing_within(&mut c, 200).await;
    let count = passive_queue(&ch, "order").await.unwrap().message_count();
    assert_eq!(count, 0);
    b.shutdown().await;
}

#[tokio::test]
async fn unknown_delivery_tag_is_precondition_failed() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    // Both go out before the broker's channel.close comes back, so the pending declare
    // receives the close reason (a method sent after it would only see a closing channel).
    let (ack, declared) = tokio::join!(
        ch.basic_ack(42, BasicAckOptions::default()),
        ch.queue_declare(
            "".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
    );
    ack.unwrap();
    let err = declared.unwrap_err();
    assert_eq!(reply_code(&err), 406);
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - unknown delivery tag 42"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn prefetch_per_consumer_and_global() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "pf").await;
    for i in 0..10 {
        publish(&ch, "", "pf", format!("{i}").as_bytes()).await;
    }
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut c = consume(&ch, "pf", false).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut c).await);
    }
    nothing_within(&mut c, 200).await;
    held.remove(0)
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    held.push(next(&mut c).await);
    nothing_within(&mut c, 200).await;
    // A global limit of 1 on another channel caps two consumers together.
    let ch2 = channel(&conn).await;
    ch2.basic_qos(1, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut a = consume(&ch2, "pf", false).await;
    let mut bb = consume(&ch2, "pf", false).await;
    let first = tokio::select! { d = next(&mut a) => d, d = next(&mut bb) => d };
    nothing_within(&mut a, 200).await;
    nothing_within(&mut bb, 100).await;
    first.ack(BasicAckOptions::default()).await.unwrap();
    let _second = tokio::select! { d = next(&mut a) => d, d = next(&mut bb) => d };
    b.shutdown().await;
}

#[tokio::test]
async fn recover_and_channel_close_requeue_unacked() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "rq").await;
    publish(&ch, "", "rq", b"m").await;
    let mut c = consume(&ch, "rq", false).await;
    let d = next(&mut c).await;
    assert!(!d.redelivered);
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let d = next(&mut c).await;
    assert!(d.redelivered);
    ch.close(200, "done".into()).await.unwrap();
    let ch2 = channel(&conn).await;
    let m = ch2
        .basic_get("rq".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("requeued on close");
    assert!(m.delivery.redelivered);
    // Unacked messages of a closed connection come back too.
    publish(&ch2, "", "rq", b"n").await;
    let conn2 = connect(&b).await;
    let ch3 = channel(&conn2).await;
    let mut c3 = consume(&ch3, "rq", false).await;
    assert_eq!(next(&mut c3).await.data, b"n");
    conn2.close(200, "bye".into()).await.unwrap();
    let m = ch2
        .basic_get("rq".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("requeued on connection close");
    assert_eq!(
        (m.delivery.data.as_slice(), m.delivery.redelivered),
        (&b"n"[..], true)
    );
    b.shutdown().await;
}

#[tokio::test]
async fn confirms_ack_every_publish_in_order() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "c").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..500u32 {
        pending.push(
            ch.basic_publish(
                "".into(),
                "c".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for p in pending {
        assert!(matches!(p.await.unwrap(), Confirmation::Ack(None)));
    }
    let q = passive_queue(&ch, "c").await.unwrap();
    assert_eq!(q.message_count(), 500);
    let err = ch.tx_select().await.unwrap_err();
    assert_eq!(reply_code(&err), 406);
    b.shutdown().await;
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "t").await;
    ch.tx_select().await.unwrap();
    publish(&ch, "", "t", b"rolled-back").await;
    ch.tx_rollback().await.unwrap();
    publish(&ch, "", "t", b"committed").await;
    let observer = channel(&conn).await;
    assert!(
        drain(&observer, "t").await.is_empty(),
        "nothing visible before commit"
    );
    ch.tx_commit().await.unwrap();
    assert_eq!(drain(&observer, "t").await, vec![b"committed".to_vec()]);
    // Acks inside a transaction take effect at commit.
    publish(&observer, "", "t", b"to-ack").await;
    let m = ch
        .basic_get("t".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    ch.tx_rollback().await.unwrap();
    ch.close(200, "".into()).await.unwrap();
    assert_eq!(
        drain(&observer, "t").await,
        vec![b"to-ack".to_vec()],
        "rolled-back ack is requeued on close"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    ch.queue_declare(
        "ad".into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let c = consume(&ch, "ad", true).await;
    ch.basic_cancel(c.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    let err = passive_queue(&ch, "ad").await.unwrap_err();
    assert_eq!(reply_code(&err), 404);
    b.shutdown().await;
}

#[tokio::test]
async fn channel_flow_active_is_acknowledged_and_inactive_is_not_implemented_as_in_rabbitmq() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    ch.channel_flow(ChannelFlowOptions { active: true })
        .await
        .unwrap();
    let err = ch
        .channel_flow(ChannelFlowOptions { active: false })
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 540);
    assert!(!conn.status().connected());
    b.shutdown().await;
}
