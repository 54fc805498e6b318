//! `--redis-url`: correlation links in a real redis-server under the original service's keys;
//! publishing keeps working while Redis is away and tracking resumes when it is back.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{get, post_json, Json};
use serde_json::json;

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start(port: u16) -> Redis {
        assert!(
            std::path::Path::new("/usr/bin/redis-server").exists(),
            "these tests need Debian's redis-server (scripts/test installs it)"
        );
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, child }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
