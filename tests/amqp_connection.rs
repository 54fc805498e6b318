//! Connection-level behaviour over raw TCP and lapin: protocol header, authentication, tuning,
//! frame limits, heartbeats, hard errors and graceful shutdown.

mod common;

use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use bloodbank_broker::wire::{Frame, PROTOCOL_HEADER};
use common::raw::Raw;
use common::*;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back_and_a_close() {
    let b = broker().await;
    let mut raw = Raw::connect(b.addr()).await;
    raw.send(b"AMQP\x01\x01\x00\x0a").await;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.sock.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, PROTOCOL_HEADER);
    let mut raw = Raw::connect(b.addr()).await;
    raw.send(b"GET / HTTP/1.1\r\n\r\n").await;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.sock.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, PROTOCOL_HEADER);
    b.shutdown().await;
}

#[tokio::test]
async fn server_properties_advertise_capabilities() {
    let b = broker().await;
    let mut raw = Raw::connect(b.addr()).await;
    raw.send(PROTOCOL_HEADER).await;
    let Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(start)))) =
        raw.frame().await
    else {
        panic!("expected connection.start");
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(start.mechanisms.to_string(), "PLAIN AMQPLAIN");
    let props = start.server_properties;
    let caps = match props.inner().get("capabilities") {
        Some(lapin::types::AMQPValue::FieldTable(t)) => t.clone(),
        other => panic!("no capabilities: {other:?}"),
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        assert_eq!(
            caps.inner().get(cap),
            Some(&lapin::types::AMQPValue::Boolean(true)),
            "{cap}"
        );
    }
    assert!(props.inner().contains_key("product") && props.inner().contains_key("version"));
    b.shutdown().await;
}

#[tokio::test]
async fn bad_credentials_and_unknown_vhost_are_refused() {
    let b = broker().await;
    let err = Connection::connect(
        &format!("amqp://guest:wrong@{}/%2f", b.addr()),
        ConnectionProperties::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), 403, "{err:?}");
    let err = Connection::connect(
        &format!("amqp://nobody:guest@{}/%2f", b.addr()),
        ConnectionProperties::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), 403);
    let err = Connection::connect(
        &format!("amqp://guest:guest@{}/elsewhere", b.addr()),
        ConnectionProperties::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&err), 530);
    b.shutdown().await;
}

#[tokio::test]
async fn frames_larger_than_frame_max_close_the_connection_with_501() {
    let b = broker().await;
    let mut raw = Raw::open(b.addr(), 4096, 0).await;
    // A header announcing a 1 MiB frame is refused before its payload is read.
    let mut frame = vec![1u8, 0, 1];
    frame.extend_from_slice(&(1024u32 * 1024).to_be_bytes());
    raw.send(&frame).await;
    assert_eq!(raw.expect_connection_close().await, 501);
    b.shutdown().await;
}

#[tokio::test]
async fn frame_max_below_minimum_is_refused() {
    let b = broker().await;
    let mut raw = Raw::until_tune(b.addr()).await;
    raw.tune_ok(1024, 0).await;
    assert_eq!(raw.expect_connection_close().await, 530);
    b.shutdown().await;
}

#[tokio::test]
async fn garbage_frames_get_protocol_errors_not_panics() {
    let b = broker().await;
    // Unknown frame type.
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    raw.send(&[9, 0, 0, 0, 0, 0, 0, 0xCE]).await;
    assert_eq!(raw.expect_connection_close().await, 501);
    // Bad frame end.
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    raw.send(&[8, 0, 0, 0, 0, 0, 0, 0x00]).await;
    assert_eq!(raw.expect_connection_close().await, 501);
    // Unknown method.
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    raw.send(&[1, 0, 0, 0, 0, 0, 4, 0, 99, 0, 1, 0xCE]).await;
    assert_eq!(raw.expect_connection_close().await, 540);
    // Truncated method arguments (queue.declare with nothing after its ids).
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    raw.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    raw.frame().await;
    raw.send(&[1, 0, 1, 0, 0, 0, 5, 0, 50, 0, 10, 0, 0xCE])
        .await;
    assert_eq!(raw.expect_connection_close().await, 502);
    // A method on a channel that was never opened.
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    raw.method(
        7,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    )
    .await;
    assert_eq!(raw.expect_connection_close().await, 504);
    // Content body with no publish before it.
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    raw.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    raw.frame().await;
    raw.send(&[3, 0, 1, 0, 0, 0, 1, b'x', 0xCE]).await;
    assert_eq!(raw.expect_connection_close().await, 505);
    // A content body longer than its header announced (5 bytes, then 10 arrive).
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    raw.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    raw.frame().await;
    // basic.publish to the default exchange, routing key "q".
    raw.send(&[
        1, 0, 1, 0, 0, 0, 10, 0, 60, 0, 40, 0, 0, 0, 1, b'q', 0, 0xCE,
    ])
    .await;
    // Content header: class 60, weight 0, body size 5, no properties.
    raw.send(&[
        2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0xCE,
    ])
    .await;
    let mut body = vec![3, 0, 1, 0, 0, 0, 10];
    body.extend_from_slice(b"0123456789");
    body.push(0xCE);
    raw.send(&body).await;
    assert_eq!(raw.expect_connection_close().await, 501);
    // A channel number above the channel_max the connection negotiated (2047).
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    raw.method(
        3000,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    assert_eq!(raw.expect_connection_close().await, 504);
    // The broker still serves everyone else.
    let conn = connect(&b).await;
    channel(&conn).await;
    b.shutdown().await;
}

#[tokio::test]
async fn silent_peer_is_dropped_after_missed_heartbeats() {
    let b = broker().await;
    let mut raw = Raw::open(b.addr(), 0, 1).await;
    // The broker sends heartbeats, then hangs up on a peer that sends none.
    let mut saw_heartbeat = false;
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match raw.frame().await {
                Some(Frame::Heartbeat(0)) => saw_heartbeat = true,
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection should be dropped");
    assert!(saw_heartbeat);
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_with_connection_forced() {
    let b = broker().await;
    let mut raw = Raw::open(b.addr(), 0, 0).await;
    let addr = b.addr();
    let stopping = tokio::spawn(b.shutdown());
    assert_eq!(raw.expect_connection_close().await, 320);
    raw.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
    )
    .await;
    stopping.await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener is closed"
    );
}

#[tokio::test]
async fn many_brokers_start_in_process_on_port_zero() {
    let brokers = futures_lite::future::zip(broker(), broker()).await;
    assert_ne!(brokers.0.addr().port(), brokers.1.addr().port());
    for b in [brokers.0, brokers.1] {
        let conn = connect(&b).await;
        channel(&conn).await;
        b.shutdown().await;
    }
}

/// Slow-loris handshakes: a socket that sends nothing, one that sends half the protocol
/// header, and one that sends the header and never answers `connection.start`. Each is
/// closed after the handshake timeout (10 s, RabbitMQ's), and meanwhile others connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_are_closed_and_others_connect_meanwhile() {
    use tokio::io::AsyncWriteExt;
    let b = broker().await;
    let silent = TcpStream::connect(b.addr()).await.unwrap();
    let mut half = TcpStream::connect(b.addr()).await.unwrap();
    half.write_all(b"AMQP").await.unwrap();
    let mut mute = TcpStream::connect(b.addr()).await.unwrap();
    mute.write_all(PROTOCOL_HEADER).await.unwrap();
    // Hundreds of half-open sockets cost a task each, not the listener.
    let mut crowd = Vec::new();
    for _ in 0..200 {
        crowd.push(TcpStream::connect(b.addr()).await.unwrap());
    }

    let conn = connect(&b).await;
    channel(&conn).await;

    let started = std::time::Instant::now();
    for (name, mut sock) in [("silent", silent), ("half header", half), ("mute", mute)] {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), sock.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("{name}: still open after 15 s"));
        // The mute one was sent connection.start before it was closed.
        assert!(closed.is_ok() || name == "mute", "{name}: {closed:?}");
    }
    eprintln!("stalled handshakes closed after {:?}", started.elapsed());
    assert!(conn.status().connected(), "the good connection was dropped");
    b.shutdown().await;
}
