//! `--redis-url`: correlation links in a real redis-server under the original service's keys;
//! publishing keeps working while Redis is away and tracking resumes when it is back.

mod common;

use std::time::{Duration, Instant};

use common::http::{get, post_json, Json};
use common::redis::Redis;
use serde_json::json;

fn entry(summary: &str) -> serde_json::Value {
    json!({"summary": summary, "start_time": "2024-01-15T10:00:00Z", "end_time": "2024-01-15T11:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_in_redis_with_the_original_keys_and_outages_survived() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = Redis::start(port);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{port}/");
    let server = common::process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--redis-url", &url],
    );

    let parent = post_json(&server.http, "/events/calendar", &entry("parent"), &[]).json();
    let parent_id = parent["id"].as_str().unwrap().to_string();
    let child = post_json(
        &server.http,
        "/events/calendar",
        &entry("child"),
        &[("X-Correlation-ID", &parent_id)],
    )
    .json();
    let child_id = child["id"].as_str().unwrap().to_string();

    let forward: serde_json::Value = serde_json::from_str(
        &redis.cli(&["GET", &format!("bloodbank:correlation:forward:{child_id}")]),
    )
    .unwrap();
    assert_eq!(forward["parent_ids"], json!([parent_id]));
    assert_eq!(forward["event_type"], "calendar.event.created");
    assert_eq!(
        redis.cli(&[
            "SMEMBERS",
            &format!("bloodbank:correlation:reverse:{parent_id}")
        ]),
        child_id
    );
    let ttl: i64 = redis
        .cli(&["TTL", &format!("bloodbank:correlation:forward:{child_id}")])
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 24 * 3600, "{ttl}");
    let chain = get(&server.http, &format!("/correlation/{child_id}")).json();
    assert_eq!(
        (chain["parent_id"].as_str(), chain["depth"].as_u64()),
        (Some(parent_id.as_str()), Some(1))
    );
    let health = get(&server.http, "/health").json();
    assert_eq!(
        (health["status"].as_str(), health["redis"].as_str()),
        (Some("healthy"), Some("connected"))
    );

    drop(redis);
    let during = post_json(
        &server.http,
        "/events/calendar",
        &entry("during the outage"),
        &[],
    );
    assert_eq!(during.status, 200, "publishing keeps working without Redis");
    let health = get(&server.http, "/health").json();
    assert_eq!(
        (health["status"].as_str(), health["redis"].as_str()),
        (Some("degraded"), Some("disconnected"))
    );
    let r = get(&server.http, &format!("/correlation/{child_id}"));
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));

    let _redis = Redis::start(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let after = post_json(
            &server.http,
            "/events/calendar",
            &entry(&format!("after {:?}", Instant::now())),
            &[],
        )
        .json();
        let id = after["id"].as_str().unwrap().to_string();
        if get(&server.http, &format!("/correlation/{id}")).status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "tracking did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(&server.http, "/health").json()["status"], "healthy");
}

/// Two gateways with one Redis share idempotency keys: a retry against the other instance
/// gets the first answer and publishes nothing, and the same key sent to both at once is
/// published once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_idempotency_keys_through_redis() {
    let redis = Redis::start_any();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        common::process::start(
            &dir.path().join(name),
            &dir.path().join(format!("{name}.log")),
            &["--redis-url", &redis.url()],
        )
    };
    let (a, b) = (start("a"), start("b"));
    // Each instance has a broker of its own here: count what reaches each.
    let mut channels = Vec::new();
    for server in [&a, &b] {
        let conn = lapin::Connection::connect(&server.url, Default::default())
            .await
            .unwrap();
        let ch = common::channel(&conn).await;
        let q = common::declare_queue(&ch, "seen").await;
        common::bind_queue(&ch, &q, "events", "#").await.unwrap();
        channels.push((conn, ch));
    }
    let depths = || async {
        let mut depths = Vec::new();
        for (_, ch) in &channels {
            let q = common::passive_queue(ch, "seen").await.unwrap();
            depths.push(q.message_count());
        }
        depths
    };

    let first = post_json(
        &a.http,
        "/events/calendar",
        &entry("once"),
        &[("Idempotency-Key", "k1")],
    );
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.header("idempotent-replay"), None);
    let retry = post_json(
        &b.http,
        "/events/calendar",
        &entry("once"),
        &[("Idempotency-Key", "k1")],
    );
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header("idempotent-replay"), Some("true"));
    assert_eq!(
        retry.json(),
        first.json(),
        "the other instance answers with the first envelope"
    );
    assert_eq!(
        depths().await,
        vec![1, 0],
        "published once, by the first instance"
    );
    let id = first.json()["id"].as_str().unwrap().to_string();
    let keys = redis.cli(&["KEYS", "bloodbank:idempotency:*"]);
    assert_eq!(
        keys.lines().count(),
        1,
        "one answer and no lease left: {keys}"
    );
    let ttl: i64 = redis.cli(&["TTL", keys.trim()]).parse().unwrap();
    assert!(
        ttl > 23 * 3600 && ttl <= 24 * 3600,
        "kept for the window: {ttl}"
    );

    // The same key sent to both instances at once: one publish, one envelope for everybody.
    let answers: Vec<_> = (0..16)
        .map(|i| {
            let http = if i % 2 == 0 {
                a.http.clone()
            } else {
                b.http.clone()
            };
            std::thread::spawn(move || {
                post_json(
                    &http,
                    "/events/calendar",
                    &entry("race"),
                    &[("Idempotency-Key", "k2")],
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(answers.iter().all(|r| r.status == 200));
    let fresh = answers
        .iter()
        .filter(|r| r.header("idempotent-replay").is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one request published");
    assert!(answers.iter().all(|r| r.json() == answers[0].json()));
    assert_ne!(answers[0].json()["id"].as_str(), Some(id.as_str()));
    let depths = depths().await;
    assert_eq!(depths.iter().sum::<u32>(), 2, "{depths:?}");
}
