//! Resource alarms against a real process: past the memory high watermark (or below the disk
//! free limit) publishers get `connection.blocked` and are not read from; consumers keep
//! draining; once below, `connection.unblocked`, and nothing accepted was lost.

mod common;

use common::process::*;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, Event};
use std::time::Duration;

const WATERMARK: u64 = 96 * 1024 * 1024;

async fn wait_for_event(
    events: &mut (impl futures_lite::Stream<Item = Event> + Unpin),
    want: fn(&Event) -> bool,
) -> Event {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = events.next().await.expect("events stream open");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .expect("the event within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_flood_is_blocked_at_the_watermark_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let watermark = WATERMARK.to_string();
    let mut server = start(
        &dir.path().join("data"),
        &dir.path().join("stderr.log"),
        &["--memory-high-watermark", &watermark],
    );
    let publisher = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let mut events = Box::pin(publisher.events_listener());
    let ch = channel(&publisher).await;
    declare_queue_with(&ch, "flood", false, FieldTable::default())
        .await
        .unwrap();
    let padding = vec![7u8; 64 * 1024];
    // Publish until the broker says it is blocked, then some more (those wait in the client
    // and the socket, since the broker stops reading).
    let flood = {
        let ch = ch.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                let mut body = sent.to_be_bytes().to_vec();
                body.extend_from_slice(&padding);
                let publish = ch.basic_publish(
                    "".into(),
                    "flood".into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                );
                match tokio::time::timeout(Duration::from_millis(500), publish).await {
                    Ok(Ok(_)) => sent += 1,
                    _ => return sent,
                }
                if sent > 4000 {
                    return sent;
                }
            }
        })
    };
    let blocked = wait_for_event(&mut events, |e| matches!(e, Event::ConnectionBlocked(_))).await;
    assert!(
        matches!(&blocked, Event::ConnectionBlocked(r) if r.contains("memory")),
        "{blocked:?}"
    );
    let sent = flood.await.unwrap();
    assert!(sent < 4000, "the publisher was never held back");
    // Give the broker time to take in whatever was already in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = rss(&server);
    eprintln!(
        "blocked after {sent} messages of 64 KiB; broker RSS {peak} bytes, watermark {WATERMARK}"
    );
    assert!(
        peak < WATERMARK + 24 * 1024 * 1024,
        "broker at {peak} bytes, watermark {WATERMARK}"
    );

    // A consumer on another connection drains; the alarm clears; everything arrives.
    let consumer_conn = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let cch = channel(&consumer_conn).await;
    let mut consumer = consume(&cch, "flood", true).await;
    let unblocked = tokio::spawn(async move {
        wait_for_event(&mut events, |e| matches!(e, Event::ConnectionUnblocked)).await;
    });
    // Every message taken in arrives once, in order; the one publish that timed out in the
    // client may follow once the connection is unblocked.
    let mut received = 0u64;
    loop {
        let d = match tokio::time::timeout(Duration::from_secs(2), consumer.next()).await {
            Ok(Some(d)) => d.unwrap(),
            _ => break,
        };
        let seq = u64::from_be_bytes(d.data[..8].try_into().unwrap());
        assert_eq!(seq, received, "out of order or lost");
        received += 1;
    }
    unblocked.await.unwrap();
    assert!(
        received == sent || received == sent + 1,
        "sent {sent}, received {received}"
    );
    // And the publisher is read from again.
    let confirm = confirm_channel(&publisher).await;
    assert!(publish_confirmed(&confirm, "", "flood", b"after", BasicProperties::default()).await);
    assert_eq!(next(&mut consumer).await.data, b"after");
    stop(&mut server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_free_disk_blocks_publishers_but_not_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        &dir.path().join("data"),
        &dir.path().join("stderr.log"),
        &["--disk-free-limit", "1000000000000000000"],
    );
    let conn = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let mut events = Box::pin(conn.events_listener());
    let ch = confirm_channel(&conn).await;
    declare_queue_with(&ch, "d", false, FieldTable::default())
        .await
        .unwrap();
    // The first publish is taken; after it the connection is blocked.
    assert!(publish_confirmed(&ch, "", "d", b"one", BasicProperties::default()).await);
    let blocked = wait_for_event(&mut events, |e| matches!(e, Event::ConnectionBlocked(_))).await;
    assert!(
        matches!(&blocked, Event::ConnectionBlocked(r) if r.contains("disk")),
        "{blocked:?}"
    );
    // lapin itself holds publishes while blocked; either way nothing is confirmed.
    let second = async {
        ch.basic_publish(
            "".into(),
            "d".into(),
            BasicPublishOptions::default(),
            b"two",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(500), second)
            .await
            .is_err(),
        "a blocked connection's publish was confirmed"
    );
    // A consumer on its own connection still gets what is there.
    let other = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let och = channel(&other).await;
    let mut c = consume(&och, "d", true).await;
    assert_eq!(next(&mut c).await.data, b"one");
    kill9(&mut server);
}
