//! Restarts on the same data directory: what is durable comes back, what is not does not.

mod common;

use bloodbank_broker::{Broker, BrokerConfig};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use std::path::Path;

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: Some(dir.to_path_buf()),
        ..BrokerConfig::default()
    }
}

async fn start(config: BrokerConfig) -> Broker {
    broker_with(config).await
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("messages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn durable_definitions_and_persistent_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    {
        let conn = connect(&b).await;
        let ch = confirm_channel(&conn).await;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        declare_exchange(&ch, "orders", ExchangeKind::Topic, durable)
            .await
            .unwrap();
        declare_exchange(&ch, "scratch", ExchangeKind::Topic, Default::default())
            .await
            .unwrap();
        declare_queue_with(&ch, "kept", true, args(&[("x-max-priority", 5u8.into())]))
            .await
            .unwrap();
        declare_queue_with(&ch, "temp", false, FieldTable::default())
            .await
            .unwrap();
        bind_queue(&ch, "kept", "orders", "order.*").await.unwrap();
        bind_queue(&ch, "temp", "orders", "order.*").await.unwrap();
        for i in 0..5 {
            let body = format!("persistent-{i}");
            assert!(
                publish_confirmed(&ch, "orders", "order.new", body.as_bytes(), persistent()).await
            );
        }
        assert!(
            publish_confirmed(
                &ch,
                "orders",
                "order.new",
                b"transient",
                BasicProperties::default()
            )
            .await
        );
    }
    b.shutdown().await;

    let b = start(config(dir.path())).await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    assert_eq!(
        reply_code(&passive_queue(&ch, "temp").await.unwrap_err()),
        404
    );
    let ch = channel(&conn).await;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    declare_exchange(&ch, "orders", ExchangeKind::Topic, passive)
        .await
        .unwrap();
    assert_eq!(
        reply_code(
            &declare_exchange(&ch, "scratch", ExchangeKind::Topic, passive)
                .await
                .unwrap_err()
        ),
        404
    );
    let ch = channel(&conn).await;
    // The queue came back with its arguments: redeclaring with them is fine.
    declare_queue_with(&ch, "kept", true, args(&[("x-max-priority", 5u8.into())]))
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = drain(&ch, "kept").await;
    let expected: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("persistent-{i}").into_bytes())
        .collect();
    assert_eq!(bodies, expected);
    // The binding came back too.
    publish(&ch, "orders", "order.paid", b"after").await;
    assert_eq!(drain(&ch, "kept").await, vec![b"after".to_vec()]);
    b.shutdown().await;
}

#[tokio::test]
async fn delivered_but_unacked_messages_come_back_redelivered_and_acked_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    {
        let conn = connect(&b).await;
        let ch = confirm_channel(&conn).await;
        declare_queue_with(&ch, "jobs", true, FieldTable::default())
            .await
            .unwrap();
        for i in 0..3 {
            assert!(
                publish_confirmed(&ch, "", "jobs", format!("{i}").as_bytes(), persistent()).await
            );
        }
        let mut c = consume(&ch, "jobs", false).await;
        let first = next(&mut c).await;
        let _second = next(&mut c).await;
        first.ack(BasicAckOptions::default()).await.unwrap();
        let _third = next(&mut c).await;
        // A round trip on the channel: the ack before it has been applied.
        passive_queue(&ch, "jobs").await.unwrap();
    }
    b.shutdown().await;

    let b = start(config(dir.path())).await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let mut c = consume(&ch, "jobs", false).await;
    let d = next(&mut c).await;
    assert_eq!(d.data, b"1");
    assert!(d.redelivered);
    let d = next(&mut c).await;
    assert_eq!(d.data, b"2");
    assert!(d.redelivered);
    nothing_within(&mut c, 100).await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_backlog_larger_than_memory_drains_in_order_from_disk_and_disk_use_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.resident_bytes = 64 * 1024;
    cfg.segment_bytes = 256 * 1024;
    let b = start(cfg.clone()).await;
    let conn = connect(&b).await;
    let ch = confirm_channel(&conn).await;
    declare_queue_with(&ch, "backlog", true, FieldTable::default())
        .await
        .unwrap();
    let body = vec![b'x'; 1000];
    let n = 3000;
    for i in 0..n {
        let mut m = format!("{i:06}").into_bytes();
        m.extend_from_slice(&body);
        ch.basic_publish(
            "".into(),
            "backlog".into(),
            BasicPublishOptions::default(),
            &m,
            persistent(),
        )
        .await
        .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    let resident = b.shared().lock().vhost("/").unwrap().queues["backlog"].resident_bytes();
    assert!(
        resident <= 66 * 1024,
        "{resident} body bytes held in memory"
    );
    let before = segment_files(dir.path()).len();
    assert!(
        before >= 10,
        "expected the backlog to span segments, got {before}"
    );
    let mut c = consume(&ch, "backlog", false).await;
    ch.basic_qos(100, BasicQosOptions::default()).await.unwrap();
    for i in 0..n {
        let d = next(&mut c).await;
        assert_eq!(&d.data[..6], format!("{i:06}").as_bytes());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    drop(c);
    // Once everything is acked, rolling on to new segments deletes the old ones.
    let ch2 = confirm_channel(&conn).await;
    declare_queue_with(&ch2, "other", true, FieldTable::default())
        .await
        .unwrap();
    for _ in 0..600 {
        ch2.basic_publish(
            "".into(),
            "other".into(),
            BasicPublishOptions::default(),
            &body,
            persistent(),
        )
        .await
        .unwrap();
    }
    ch2.wait_for_confirms().await.unwrap();
    let after = segment_files(dir.path()).len();
    assert!(
        after <= 5,
        "old segments not reclaimed: {after} files remain"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn deleted_queues_take_their_messages_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    {
        let conn = connect(&b).await;
        let ch = confirm_channel(&conn).await;
        declare_queue_with(&ch, "doomed", true, FieldTable::default())
            .await
            .unwrap();
        assert!(publish_confirmed(&ch, "", "doomed", b"old", persistent()).await);
        ch.queue_delete("doomed".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        declare_queue_with(&ch, "doomed", true, FieldTable::default())
            .await
            .unwrap();
        assert!(publish_confirmed(&ch, "", "doomed", b"new", persistent()).await);
        declare_queue_with(&ch, "purged", true, FieldTable::default())
            .await
            .unwrap();
        assert!(publish_confirmed(&ch, "", "purged", b"gone", persistent()).await);
        ch.queue_purge("purged".into(), QueuePurgeOptions::default())
            .await
            .unwrap();
    }
    b.shutdown().await;
    let b = start(config(dir.path())).await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    assert_eq!(drain(&ch, "doomed").await, vec![b"new".to_vec()]);
    assert!(drain(&ch, "purged").await.is_empty());
    b.shutdown().await;
}

#[tokio::test]
async fn a_flipped_byte_loses_only_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    {
        let conn = connect(&b).await;
        let ch = confirm_channel(&conn).await;
        declare_queue_with(&ch, "q", true, FieldTable::default())
            .await
            .unwrap();
        for i in 0..10 {
            let body = format!("message-{i}-{}", "y".repeat(200));
            assert!(publish_confirmed(&ch, "", "q", body.as_bytes(), persistent()).await);
        }
    }
    b.shutdown().await;
    let files = segment_files(dir.path());
    let damaged = files
        .iter()
        .find(|f| std::fs::metadata(f).unwrap().len() > 0)
        .unwrap();
    let mut data = std::fs::read(damaged).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0xFF;
    std::fs::write(damaged, &data).unwrap();

    let b = start(config(dir.path())).await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    let bodies = drain(&ch, "q").await;
    assert_eq!(bodies.len(), 9, "exactly the damaged message is lost");
    assert!(bodies.iter().any(|b| b.starts_with(b"message-0-")));
    assert!(bodies.iter().any(|b| b.starts_with(b"message-9-")));
    b.shutdown().await;
}

/// Messages past `message_memory` live only in the log; `basic.get` and dead-lettering read
/// them back (on the pager thread) like consumers do, in order and complete.
#[tokio::test]
async fn basic_get_and_dead_lettering_read_paged_out_messages_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.resident_bytes = 32 * 1024;
    let b = start(cfg).await;
    let conn = connect(&b).await;
    let ch = confirm_channel(&conn).await;
    declare_queue_with(&ch, "gets", true, FieldTable::default())
        .await
        .unwrap();
    declare_queue_with(&ch, "dead", true, FieldTable::default())
        .await
        .unwrap();
    let aging = args(&[
        ("x-message-ttl", 300i32.into()),
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text("dead")),
    ]);
    declare_queue_with(&ch, "aging", true, aging).await.unwrap();
    let n = 400;
    let pad = vec![b'x'; 1000];
    for queue in ["gets", "aging"] {
        for i in 0..n {
            let mut m = format!("{i:06}").into_bytes();
            m.extend_from_slice(&pad);
            ch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &m,
                persistent(),
            )
            .await
            .unwrap();
        }
    }
    ch.wait_for_confirms().await.unwrap();
    for queue in ["gets", "aging"] {
        let resident = b.shared().lock().vhost("/").unwrap().queues[queue].resident_bytes();
        assert!(resident < 40 * 1024, "{queue}: {resident} bytes in memory");
    }

    for i in 0..n {
        let got = ch
            .basic_get("gets".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(&got.delivery.data[..6], format!("{i:06}").as_bytes());
    }
    let empty = ch
        .basic_get("gets".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert!(empty.is_none());

    let mut dead = consume(&ch, "dead", false).await;
    for i in 0..n {
        let d = next(&mut dead).await;
        assert_eq!(&d.data[..6], format!("{i:06}").as_bytes());
        let death = header_str(&d, "x-first-death-reason");
        assert_eq!(death.as_deref(), Some("expired"));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(
        passive_queue(&ch, "aging").await.unwrap().message_count(),
        0
    );
    b.shutdown().await;
}

fn spill_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("spill"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Transient messages past `message_memory` (on a transient queue, and on a durable one)
/// go to the spill file instead of staying in RAM, come back complete and in order to
/// consumers and `basic.get`, leave the file as they are acked or their queue is deleted,
/// and are gone (as RabbitMQ's transient messages are) after a restart, with the file.
#[tokio::test]
async fn transient_messages_past_the_budget_spill_to_disk_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.resident_bytes = 32 * 1024;
    cfg.segment_bytes = 128 * 1024;
    let b = start(cfg.clone()).await;
    let conn = connect(&b).await;
    let ch = confirm_channel(&conn).await;
    declare_exchange(&ch, "fan", ExchangeKind::Fanout, Default::default())
        .await
        .unwrap();
    declare_queue_with(&ch, "scratch", false, FieldTable::default())
        .await
        .unwrap();
    declare_queue_with(&ch, "kept", true, FieldTable::default())
        .await
        .unwrap();
    for q in ["scratch", "kept"] {
        bind_queue(&ch, q, "fan", "").await.unwrap();
    }
    let n = 2000;
    let pad = vec![b'x'; 1000];
    for i in 0..n {
        let mut m = format!("{i:06}").into_bytes();
        m.extend_from_slice(&pad);
        ch.basic_publish(
            "fan".into(),
            "".into(),
            BasicPublishOptions::default(),
            &m,
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    for q in ["scratch", "kept"] {
        let resident = b.shared().lock().vhost("/").unwrap().queues[q].resident_bytes();
        assert!(resident < 40 * 1024, "{q}: {resident} body bytes in memory");
    }
    // One record for both queues: the file holds each message about once.
    let spilled = spill_bytes(dir.path());
    assert!(
        (n as u64 * 1000..n as u64 * 1500).contains(&spilled),
        "{spilled} bytes spilled for {n} messages of 1 KiB"
    );

    ch.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let mut c = consume(&ch, "scratch", false).await;
    for i in 0..n {
        let d = next(&mut c).await;
        assert_eq!(&d.data[..6], format!("{i:06}").as_bytes());
        assert_eq!(d.data.len(), 1006);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    for i in 0..n / 2 {
        let got = ch
            .basic_get("kept".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(&got.delivery.data[..6], format!("{i:06}").as_bytes());
    }
    ch.queue_delete("scratch".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    // The half "kept" still holds stays on disk; the rest is compacted away.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while spill_bytes(dir.path()) > n as u64 * 1000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let left = spill_bytes(dir.path());
    assert!(
        left <= n as u64 * 1000,
        "{left} bytes still spilled with {} messages left",
        n / 2
    );
    assert_eq!(
        passive_queue(&ch, "kept").await.unwrap().message_count(),
        n / 2
    );
    drop(c);
    b.shutdown().await;

    let b = start(cfg).await;
    let conn = connect(&b).await;
    let ch = channel(&conn).await;
    assert_eq!(passive_queue(&ch, "kept").await.unwrap().message_count(), 0);
    assert_eq!(spill_bytes(dir.path()), 0);
    b.shutdown().await;
}
