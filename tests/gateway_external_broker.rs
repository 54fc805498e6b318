//! `--broker-url`: the gateway publishes to a real external RabbitMQ, with confirms, and
//! reconnects (redeclaring the exchange) after the broker goes away and comes back.

mod common;

use common::http::{get, post_json, Json};
use common::rabbitmq::RabbitMq;
use common::{bind_queue, channel, consume, declare_queue, next};
use lapin::options::ExchangeDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

fn entry(summary: &str) -> serde_json::Value {
    json!({"summary": summary, "start_time": "2024-01-15T10:00:00Z", "end_time": "2024-01-15T11:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_rabbitmq_and_recovers_when_it_comes_back() {
    let rabbit = RabbitMq::start();
    let dir = tempfile::tempdir().unwrap();
    let server = common::process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--broker-url", &rabbit.url()],
    );
    assert!(
        server.url.is_empty(),
        "no embedded broker runs with --broker-url"
    );

    assert_eq!(
        post_json(&server.http, "/events/calendar", &entry("first"), &[]).status,
        200,
        "declares the exchange"
    );
    let conn = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = channel(&conn).await;
    let q = declare_queue(&ch, "").await;
    bind_queue(&ch, &q, "events", "calendar.#").await.unwrap();
    let mut consumer = consume(&ch, &q, true).await;

    let r = post_json(&server.http, "/events/calendar", &entry("second"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let d = next(&mut consumer).await;
    assert_eq!(d.routing_key.as_str(), "calendar.event.created");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&d.data).unwrap(),
        r.json()
    );
    assert_eq!(*d.properties.delivery_mode(), Some(2));
    assert_eq!(get(&server.http, "/health").json()["rabbitmq"], "connected");

    // The exchange disappears: the failed publish drops the link, the next one redeclares.
    ch.exchange_delete("events".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            post_json(
                &server.http,
                "/events/calendar",
                &entry("after delete"),
                &[],
            )
            .status,
        );
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    drop(conn);

    // The broker goes away: 503 with Retry-After, health says so; then it comes back.
    rabbit.ctl("stop_app");
    let r = post_json(&server.http, "/events/calendar", &entry("while down"), &[]);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    let health = get(&server.http, "/health").json();
    assert_eq!(
        (health["status"].as_str(), health["rabbitmq"].as_str()),
        (Some("unhealthy"), Some("disconnected"))
    );
    rabbit.ctl("start_app");
    let r = post_json(&server.http, "/events/calendar", &entry("back"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(get(&server.http, "/health").json()["status"], "healthy");

    // A webhook subscription works the same through RabbitMQ: its quorum queues live there.
    let (addr, received) = receive_one_post();
    let sub = json!({"pattern": "calendar.#", "url": format!("http://{addr}/hook"), "secret": "k"});
    let r = post_json(&server.http, "/subscriptions", &sub, &[]);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let published = post_json(&server.http, "/events/calendar", &entry("hooked"), &[]);
    assert_eq!(published.status, 200);
    let body = received
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the webhook POST arrives");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        published.json()
    );
    let queues = rabbit.rabbitmqctl(&["list_queues", "name", "type"]);
    let queue = r.json()["queue"].as_str().unwrap().to_string();
    assert!(
        queues
            .lines()
            .any(|l| l.starts_with(&queue) && l.ends_with("quorum")),
        "{queues}"
    );
}

/// A one-shot HTTP receiver: answers the first POST with 200 and hands over its body.
fn receive_one_post() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let body = loop {
            let n = stream.read(&mut buf).unwrap();
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data).to_string();
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if rest.len() >= length || n == 0 {
                    break rest.as_bytes().to_vec();
                }
            }
        };
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let _ = tx.send(body);
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_broker_urls_fail_over_to_the_next_node() {
    let (a, b) = (RabbitMq::start(), RabbitMq::start());
    let dir = tempfile::tempdir().unwrap();
    let urls = format!("{},{}", a.url(), b.url());
    let server = common::process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--broker-url", &urls],
    );
    // A queue on each node, bound to what the gateway publishes.
    let mut queues = Vec::new();
    for node in [&a, &b] {
        let conn = Connection::connect(&node.url(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = channel(&conn).await;
        common::declare_exchange(
            &ch,
            "events",
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let q = declare_queue(&ch, "failover").await;
        bind_queue(&ch, &q, "events", "calendar.#").await.unwrap();
        queues.push((conn, ch));
    }
    let depth = |i: usize| {
        let ch = queues[i].1.clone();
        async move {
            common::passive_queue(&ch, "failover")
                .await
                .unwrap()
                .message_count()
        }
    };
    let r = post_json(&server.http, "/events/calendar", &entry("to a"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        (depth(0).await, depth(1).await),
        (1, 0),
        "the first URL is used first"
    );

    // The first node goes away: the very next publish lands on the second, confirmed.
    drop(queues.remove(0));
    a.ctl("stop_app");
    let r = post_json(&server.http, "/events/calendar", &entry("to b"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let on_b = common::passive_queue(&queues[0].1, "failover")
        .await
        .unwrap()
        .message_count();
    assert_eq!(on_b, 1);
    assert_eq!(get(&server.http, "/health").json()["rabbitmq"], "connected");

    // No node left: 503 with Retry-After.
    b.ctl("stop_app");
    let r = post_json(&server.http, "/events/calendar", &entry("nowhere"), &[]);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
}

/// Four clients publish over HTTP with idempotency keys, through a gateway on an external
/// RabbitMQ with Redis for keys and correlation, while Redis is SIGKILLed and restarted (empty)
/// and then the RabbitMQ node is SIGKILLed and restarted. Every event that got a 2xx is in the
/// durable queue afterwards; the others were told 503 (or failed to connect) and were never
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_rabbitmq_and_redis_under_load_loses_no_acknowledged_event() {
    use common::redis::Redis;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let mut rabbit = RabbitMq::start();
    let mut redis = Redis::start_any();
    let dir = tempfile::tempdir().unwrap();
    let server = common::process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--broker-url", &rabbit.url(), "--redis-url", &redis.url()],
    );
    assert_eq!(
        post_json(&server.http, "/events/calendar", &entry("first"), &[]).status,
        200,
        "declares the exchange"
    );
    {
        let conn = Connection::connect(&rabbit.url(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = channel(&conn).await;
        common::declare_queue_with(&ch, "kept", true, lapin::types::FieldTable::default())
            .await
            .unwrap();
        bind_queue(&ch, "kept", "events", "calendar.#")
            .await
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, accepted, refused) = (stop.clone(), accepted.clone(), refused.clone());
            let http = server.http.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("client-{c}-{i}");
                    let body = entry(&key);
                    let headers = [("Idempotency-Key", key.as_str())];
                    match bloodbank_gateway::client::request(
                        &http,
                        "POST",
                        "/events/calendar",
                        &[("Content-Type", "application/json"), headers[0]],
                        body.to_string().as_bytes(),
                    ) {
                        Ok(r) if r.status == 200 => {
                            let id = r.json()["id"].as_str().unwrap().to_string();
                            accepted.lock().unwrap().push(id);
                        }
                        Ok(r) => *refused.lock().unwrap().entry(r.status).or_default() += 1,
                        Err(_) => *refused.lock().unwrap().entry(0).or_default() += 1,
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let count = || accepted.lock().unwrap().len();
    let settle = |what: &str| {
        let before = count();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while count() < before + 50 {
            assert!(
                std::time::Instant::now() < deadline,
                "publishing did not resume after {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    settle("the start");
    redis.kill_and_restart();
    settle("Redis was killed");
    rabbit.kill_node();
    std::thread::sleep(Duration::from_millis(500));
    rabbit.start_node();
    settle("RabbitMQ was killed");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let conn = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let kept: std::collections::HashSet<String> = common::drain(&channel(&conn).await, "kept")
        .await
        .iter()
        .map(|b| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let accepted = accepted.lock().unwrap().clone();
    let lost: Vec<_> = accepted.iter().filter(|id| !kept.contains(*id)).collect();
    eprintln!(
        "{} answered 200, {} in the queue, refused by status (0: no connection): {:?}",
        accepted.len(),
        kept.len(),
        refused.lock().unwrap()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {lost:?}",
        lost.len()
    );
}
