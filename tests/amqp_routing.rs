//! Exchanges and routing over real AMQP with lapin: direct, fanout, topic, headers, default
//! exchange, exchange-to-exchange bindings, alternate exchanges, internal exchanges.

mod common;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

async fn bound_queue(ch: &lapin::Channel, exchange: &str, key: &str) -> String {
    let q = declare_queue(ch, "").await;
    bind_queue(ch, &q, exchange, key).await.unwrap();
    q
}

#[tokio::test]
async fn events_exchange_exists_and_routes_by_topic_pattern() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    // Exists and is a durable topic exchange: a passive and an equivalent declare both pass.
    declare_exchange(
        &ch,
        "events",
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    declare_exchange(
        &ch,
        "events",
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let meetings = bound_queue(&ch, "events", "theboard.meeting.*").await;
    let all = bound_queue(&ch, "events", "theboard.#").await;
    publish(&ch, "events", "theboard.meeting.created", b"m1").await;
    publish(&ch, "events", "theboard.round.completed", b"r1").await;
    publish(&ch, "events", "theboard.meeting", b"short").await;
    publish(&ch, "events", "other.meeting.created", b"x").await;
    assert_eq!(drain(&ch, &meetings).await, vec![b"m1".to_vec()]);
    assert_eq!(
        drain(&ch, &all).await,
        vec![b"m1".to_vec(), b"r1".to_vec(), b"short".to_vec()]
    );
    b.shutdown().await;
}

#[tokio::test]
async fn direct_fanout_and_default_exchange() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let qa = bound_queue(&ch, "amq.direct", "a").await;
    let qb = bound_queue(&ch, "amq.direct", "b").await;
    let f1 = bound_queue(&ch, "amq.fanout", "ignored").await;
    let f2 = bound_queue(&ch, "amq.fanout", "").await;
    publish(&ch, "amq.direct", "a", b"to-a").await;
    publish(&ch, "amq.fanout", "whatever", b"to-all").await;
    publish(&ch, "", &qb, b"by-name").await;
    assert_eq!(drain(&ch, &qa).await, vec![b"to-a".to_vec()]);
    assert_eq!(drain(&ch, &qb).await, vec![b"by-name".to_vec()]);
    assert_eq!(drain(&ch, &f1).await, vec![b"to-all".to_vec()]);
    assert_eq!(drain(&ch, &f2).await, vec![b"to-all".to_vec()]);
    b.shutdown().await;
}

#[tokio::test]
async fn topic_wildcards_follow_rabbitmq_semantics() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let cases: &[(&str, &str, bool)] = &[
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.c", false),
        ("a.#", "a", true),
        ("#.c", "a.b.c", true),
        ("*", "", false),
        ("#", "", true),
        ("a.*", "a.", true),
        ("a..b", "a..b", true),
    ];
    for (i, (pattern, key, expected)) in cases.iter().enumerate() {
        let ex = format!("topic-{i}");
        ch.exchange_declare(
            ex.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let q = bound_queue(&ch, &ex, pattern).await;
        publish(&ch, &ex, key, b"m").await;
        let got = drain(&ch, &q).await.len() == 1;
        assert_eq!(got, *expected, "pattern {pattern:?} key {key:?}");
    }
    // A 255-byte routing key is routed.
    let long_key = format!("{}.z", "k".repeat(253));
    let q = bound_queue(&ch, "amq.topic", "*.z").await;
    publish(&ch, "amq.topic", &long_key, b"long").await;
    assert_eq!(drain(&ch, &q).await, vec![b"long".to_vec()]);
    b.shutdown().await;
}

#[tokio::test]
async fn headers_exchange_all_and_any() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let mut all = FieldTable::default();
    all.insert("format".into(), AMQPValue::LongString("pdf".into()));
    all.insert("type".into(), AMQPValue::LongString("report".into()));
    let mut any = all.clone();
    any.insert("x-match".into(), AMQPValue::LongString("any".into()));
    let q_all = declare_queue(&ch, "").await;
    let q_any = declare_queue(&ch, "").await;
    ch.queue_bind(
        q_all.as_str().into(),
        "amq.headers".into(),
        "".into(),
        QueueBindOptions::default(),
        all,
    )
    .await
    .unwrap();
    ch.queue_bind(
        q_any.as_str().into(),
        "amq.match".into(),
        "".into(),
        QueueBindOptions::default(),
        any.clone(),
    )
    .await
    .unwrap();
    bind_exchange(&ch, "amq.match", "amq.headers", "")
        .await
        .unwrap();
    let send = |format: &'static str, kind: &'static str| {
        let mut h = FieldTable::default();
        h.insert("format".into(), AMQPValue::LongString(format.into()));
        h.insert("type".into(), AMQPValue::LongString(kind.into()));
        BasicProperties::default().with_headers(h)
    };
    for (body, props) in [
        (&b"both"[..], send("pdf", "report")),
        (&b"one"[..], send("pdf", "log")),
        (&b"none"[..], send("zip", "log")),
    ] {
        ch.basic_publish(
            "amq.headers".into(),
            "".into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .unwrap();
    }
    assert_eq!(drain(&ch, &q_all).await, vec![b"both".to_vec()]);
    assert_eq!(
        drain(&ch, &q_any).await,
        vec![b"both".to_vec(), b"one".to_vec()]
    );
    b.shutdown().await;
}

#[tokio::test]
async fn exchange_to_exchange_bindings_and_unbind() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_exchange(
        &ch,
        "e2e-dest",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
    )
    .await
    .unwrap();
    bind_exchange(&ch, "e2e-dest", "events", "theboard.#")
        .await
        .unwrap();
    // A cycle back to the source must not loop or duplicate.
    bind_exchange(&ch, "events", "e2e-dest", "").await.unwrap();
    let q = bound_queue(&ch, "e2e-dest", "").await;
    publish(&ch, "events", "theboard.meeting.created", b"via").await;
    publish(&ch, "events", "other.thing", b"not").await;
    assert_eq!(drain(&ch, &q).await, vec![b"via".to_vec()]);
    ch.exchange_unbind(
        "e2e-dest".into(),
        "events".into(),
        "theboard.#".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "events", "theboard.meeting.created", b"after").await;
    assert!(drain(&ch, &q).await.is_empty());
    b.shutdown().await;
}

#[tokio::test]
async fn alternate_exchange_takes_unroutable_messages() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_exchange(
        &ch,
        "ae",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
    )
    .await
    .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString("ae".into()),
    );
    ch.exchange_declare(
        "with-ae".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .unwrap();
    let routed = bound_queue(&ch, "with-ae", "known").await;
    let fallback = bound_queue(&ch, "ae", "").await;
    publish(&ch, "with-ae", "known", b"direct").await;
    publish(&ch, "with-ae", "unknown", b"fallback").await;
    assert_eq!(drain(&ch, &routed).await, vec![b"direct".to_vec()]);
    assert_eq!(drain(&ch, &fallback).await, vec![b"fallback".to_vec()]);
    b.shutdown().await;
}

#[tokio::test]
async fn internal_exchange_refuses_publishes_but_receives_from_exchanges() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_exchange(
        &ch,
        "inner",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    bind_exchange(&ch, "inner", "amq.fanout", "").await.unwrap();
    let q = bound_queue(&ch, "inner", "").await;
    publish(&ch, "amq.fanout", "", b"through").await;
    assert_eq!(drain(&ch, &q).await, vec![b"through".to_vec()]);
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "inner".into(),
            "".into(),
            BasicPublishOptions::default(),
            b"direct",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await;
    let err = match confirm {
        Err(e) => e,
        Ok(_) => ch
            .basic_get(q.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap_err(),
    };
    assert_eq!(reply_code(&err), 403);
    b.shutdown().await;
}

#[tokio::test]
async fn exchange_declare_and_delete_rules() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let err = declare_exchange(
        &ch,
        "amq.custom",
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), 403);
    let ch = channel(&conn).await;
    let err = declare_exchange(
        &ch,
        "events",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    assert!(
        reply_text(&err).contains("inequivalent arg 'type'"),
        "{}",
        reply_text(&err)
    );
    let ch = channel(&conn).await;
    let err = declare_exchange(
        &ch,
        "nope",
        ExchangeKind::Custom("nonsense".into()),
        ExchangeDeclareOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    let ch = channel(&conn).await;
    let err = declare_exchange(
        &ch,
        "missing",
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), 404);
    assert_eq!(
        reply_text(&err),
        "NOT_FOUND - no exchange 'missing' in vhost '/'"
    );
    // if-unused refuses while bound; plain delete works; deleting again is fine.
    let ch = channel(&conn).await;
    declare_exchange(
        &ch,
        "used",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
    )
    .await
    .unwrap();
    bound_queue(&ch, "used", "").await;
    let err = ch
        .exchange_delete(
            "used".into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 406);
    let ch = channel(&conn).await;
    ch.exchange_delete("used".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    ch.exchange_delete("used".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let err = ch
        .exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 403);
    b.shutdown().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    declare_exchange(
        &ch,
        "ephemeral",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let q = bound_queue(&ch, "ephemeral", "").await;
    ch.queue_unbind(
        q.as_str().into(),
        "ephemeral".into(),
        "".into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = declare_exchange(
        &ch,
        "ephemeral",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), 404);
    b.shutdown().await;
}
