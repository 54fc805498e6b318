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
}
