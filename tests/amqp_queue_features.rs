//! Queue arguments over real AMQP: dead-lettering, TTLs, queue expiry, length limits,
//! priorities, single active consumer, argument checks.

mod common;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use std::time::Duration;

/// A work queue that dead-letters to `<queue>_dlq` through a fanout exchange, as 33GOD's
/// consumers set it up.
async fn with_dlq(ch: &lapin::Channel, queue: &str, extra: &[(&str, AMQPValue)]) {
    let dlx = format!("{queue}.dlx");
    declare_exchange(ch, &dlx, ExchangeKind::Fanout, Default::default())
        .await
        .unwrap();
    declare_queue_with(ch, &format!("{queue}_dlq"), true, FieldTable::default())
        .await
        .unwrap();
    bind_queue(ch, &format!("{queue}_dlq"), &dlx, "")
        .await
        .unwrap();
    let mut a = vec![("x-dead-letter-exchange", text(&dlx))];
    a.extend(extra.iter().cloned());
    declare_queue_with(ch, queue, true, args(&a)).await.unwrap();
}

fn x_death(d: &lapin::message::Delivery) -> Vec<FieldTable> {
    match d
        .properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .get("x-death")
    {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry {other:?}"),
            })
            .collect(),
        other => panic!("x-death is {other:?}"),
    }
}

fn field(t: &FieldTable, key: &str) -> AMQPValue {
    t.inner().get(key).cloned().unwrap_or(AMQPValue::Void)
}

#[tokio::test]
async fn rejected_messages_are_dead_lettered_with_x_death() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    with_dlq(&ch, "work", &[]).await;
    publish(&ch, "", "work", b"job-1").await;
    let mut work = consume(&ch, "work", false).await;
    let d = next(&mut work).await;
    d.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let mut dlq = consume(&ch, "work_dlq", false).await;
    let dead = next(&mut dlq).await;
    assert_eq!(dead.data, b"job-1");
    assert_eq!(dead.exchange.as_str(), "work.dlx");
    let deaths = x_death(&dead);
    assert_eq!(deaths.len(), 1);
    assert_eq!(field(&deaths[0], "reason"), text("rejected"));
    assert_eq!(field(&deaths[0], "queue"), text("work"));
    assert_eq!(field(&deaths[0], "exchange"), text(""));
    assert_eq!(field(&deaths[0], "count"), AMQPValue::LongLongInt(1));
    assert_eq!(
        field(&deaths[0], "routing-keys"),
        AMQPValue::FieldArray(vec![text("work")].into())
    );
    assert_eq!(
        header_str(&dead, "x-first-death-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(
        header_str(&dead, "x-first-death-queue").as_deref(),
        Some("work")
    );
    assert_eq!(
        header_str(&dead, "x-first-death-exchange").as_deref(),
        Some("")
    );
    // A nack without requeue dead-letters too; with requeue it does not.
    publish(&ch, "", "work", b"job-2").await;
    let d = next(&mut work).await;
    d.nack(BasicNackOptions {
        requeue: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let again = next(&mut work).await;
    assert!(again.redelivered);
    again
        .nack(BasicNackOptions {
            requeue: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next(&mut dlq).await.data, b"job-2");
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_and_expiration_is_removed() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    with_dlq(&ch, "ttl", &[("x-message-ttl", AMQPValue::LongInt(50))]).await;
    publish(&ch, "", "ttl", b"queue-ttl").await;
    ch.basic_publish(
        "".into(),
        "ttl".into(),
        BasicPublishOptions::default(),
        b"message-ttl",
        BasicProperties::default().with_expiration("10".into()),
    )
    .await
    .unwrap();
    let mut dlq = consume(&ch, "ttl_dlq", false).await;
    let first = next(&mut dlq).await;
    let second = next(&mut dlq).await;
    assert_eq!(first.data, b"queue-ttl");
    assert_eq!(second.data, b"message-ttl");
    assert_eq!(field(&x_death(&first)[0], "reason"), text("expired"));
    assert!(second.properties.expiration().is_none());
    assert_eq!(
        field(&x_death(&second)[0], "original-expiration"),
        text("10")
    );
    assert_eq!(passive_queue(&ch, "ttl").await.unwrap().message_count(), 0);
}

#[tokio::test]
async fn a_consumer_gets_a_message_before_its_ttl_runs_out() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue_with(
        &ch,
        "quick",
        false,
        args(&[("x-message-ttl", AMQPValue::LongInt(0))]),
    )
    .await
    .unwrap();
    let mut c = consume(&ch, "quick", true).await;
    publish(&ch, "", "quick", b"now").await;
    assert_eq!(next(&mut c).await.data, b"now");
}

#[tokio::test]
async fn unused_queues_expire() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue_with(
        &ch,
        "brief",
        false,
        args(&[("x-expires", AMQPValue::LongInt(100))]),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = passive_queue(&ch, "brief").await.unwrap_err();
    assert_eq!(reply_code(&err), 404);
}

#[tokio::test]
async fn max_length_drops_the_oldest_into_the_dead_letter_queue() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    with_dlq(&ch, "capped", &[("x-max-length", AMQPValue::LongInt(3))]).await;
    for i in 1..=5 {
        publish(&ch, "", "capped", format!("m{i}").as_bytes()).await;
    }
    assert_eq!(
        drain(&ch, "capped").await,
        vec![b"m3".to_vec(), b"m4".to_vec(), b"m5".to_vec()]
    );
    let mut dlq = consume(&ch, "capped_dlq", true).await;
    let dropped = next(&mut dlq).await;
    assert_eq!(dropped.data, b"m1");
    assert_eq!(field(&x_death(&dropped)[0], "reason"), text("maxlen"));
    assert_eq!(next(&mut dlq).await.data, b"m2");
}

#[tokio::test]
async fn max_length_bytes_counts_body_bytes() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue_with(
        &ch,
        "bytes",
        false,
        args(&[("x-max-length-bytes", AMQPValue::LongInt(10))]),
    )
    .await
    .unwrap();
    for body in [b"aaaa", b"bbbb", b"cccc"] {
        publish(&ch, "", "bytes", body).await;
    }
    assert_eq!(
        drain(&ch, "bytes").await,
        vec![b"bbbb".to_vec(), b"cccc".to_vec()]
    );
}

#[tokio::test]
async fn reject_publish_overflow_nacks_the_publisher() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = confirm_channel(&conn).await;
    with_dlq(
        &ch,
        "full",
        &[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", text("reject-publish-dlx")),
        ],
    )
    .await;
    assert!(publish_confirmed(&ch, "", "full", b"kept", BasicProperties::default()).await);
    assert!(!publish_confirmed(&ch, "", "full", b"refused", BasicProperties::default()).await);
    assert!(publish_confirmed(&ch, "", "full_dlq", b"direct", BasicProperties::default()).await);
    assert_eq!(drain(&ch, "full").await, vec![b"kept".to_vec()]);
    assert_eq!(
        drain(&ch, "full_dlq").await,
        vec![b"refused".to_vec(), b"direct".to_vec()]
    );
}

#[tokio::test]
async fn priority_queues_deliver_the_highest_priority_first() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue_with(
        &ch,
        "prio",
        false,
        args(&[("x-max-priority", AMQPValue::ShortShortUInt(5))]),
    )
    .await
    .unwrap();
    for (body, p) in [
        ("low", 1u8),
        ("none", 0),
        ("high", 5),
        ("huge", 9),
        ("mid", 3),
    ] {
        ch.basic_publish(
            "".into(),
            "prio".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_priority(p),
        )
        .await
        .unwrap();
    }
    let order: Vec<String> = drain(&ch, "prio")
        .await
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    // Priorities above the maximum count as the maximum; equal ones keep publish order.
    assert_eq!(order, ["high", "huge", "mid", "low", "none"]);
}

#[tokio::test]
async fn single_active_consumer_gets_everything_until_it_goes() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_queue_with(
        &ch,
        "sac",
        false,
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await
    .unwrap();
    let mut first = consume(&ch, "sac", true).await;
    let mut second = consume(&ch, "sac", true).await;
    for i in 0..4 {
        publish(&ch, "", "sac", format!("{i}").as_bytes()).await;
    }
    for i in 0..4 {
        assert_eq!(next(&mut first).await.data, format!("{i}").as_bytes());
    }
    nothing_within(&mut second, 100).await;
    ch.basic_cancel(first.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish(&ch, "", "sac", b"after").await;
    assert_eq!(next(&mut second).await.data, b"after");
}

#[tokio::test]
async fn invalid_and_unknown_arguments_are_precondition_failed() {
    let b = broker().await;
    let conn = connect(&b).await;
    for (key, value) in [
        ("x-message-ttl", AMQPValue::LongInt(-5)),
        ("x-max-length", text("many")),
        ("x-overflow", text("explode")),
        ("x-max-priority", AMQPValue::LongInt(1000)),
        ("x-made-up", AMQPValue::LongInt(1)),
    ] {
        let ch = channel(&conn).await;
        let err = declare_queue_with(&ch, "bad", false, args(&[(key, value)]))
            .await
            .unwrap_err();
        assert_eq!(reply_code(&err), 406, "{key}");
        assert!(reply_text(&err).contains(key), "{}", reply_text(&err));
    }
}

#[tokio::test]
async fn redeclaring_with_other_arguments_is_precondition_failed() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let ttl = |n| args(&[("x-message-ttl", AMQPValue::LongInt(n))]);
    declare_queue_with(&ch, "same", true, ttl(1000))
        .await
        .unwrap();
    declare_queue_with(&ch, "same", true, ttl(1000))
        .await
        .unwrap();
    let err = declare_queue_with(&ch, "same", true, ttl(2000))
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    assert!(reply_text(&err).contains("inequivalent arg 'x-message-ttl'"));
    let ch = channel(&conn).await;
    let err = declare_queue_with(&ch, "same", true, FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
}
