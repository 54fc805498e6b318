//! A disk that stops taking writes, made real with the process's file size limit (set from
//! outside with `prlimit`, so the log's next append fails with EFBIG as on a full disk):
//! confirms become nacks, HTTP publishes get 503, nothing confirmed is lost, and once writes
//! work again publishing resumes without a restart. The server's log is on that disk too.

mod common;

use common::http::post_json;
use common::process::{kill9, read, start, Server};
use common::{bind_queue, confirm_channel, declare_queue_with, drain, persistent};
use common::{channel, publish_confirmed};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Sets the soft file size limit of the server's process (`unlimited` or bytes).
fn limit_file_size(server: &Server, limit: &str) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", server.child.id()))
        .arg(format!("--fsize={limit}:"))
        .status()
        .expect("prlimit runs");
    assert!(status.success(), "prlimit --fsize={limit}");
}

/// The size of the largest log segment: the one being appended to never shrinks below it.
fn largest_segment(data: &Path) -> u64 {
    std::fs::read_dir(data.join("messages"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap()
}

fn calendar(summary: &str) -> serde_json::Value {
    json!({"summary": summary, "start_time": "2024-01-15T10:00:00Z", "end_time": "2024-01-15T11:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fails_writes_nacks_and_blocks_publishers_until_it_works_again() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("log"));
    let mut server = start(&data, &log, &[]);
    let conn = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
    declare_queue_with(&ch, "kept", true, FieldTable::default())
        .await
        .unwrap();
    bind_queue(&ch, "kept", "events", "#").await.unwrap();
    for i in 0..3 {
        let body = format!("before-{i}");
        assert!(publish_confirmed(&ch, "", "kept", body.as_bytes(), persistent()).await);
    }

    limit_file_size(&server, &largest_segment(&data).to_string());
    let during = publish_confirmed(&ch, "", "kept", b"during", persistent());
    let acked = tokio::time::timeout(Duration::from_secs(20), during)
        .await
        .expect("a publish the disk cannot take is answered, not left waiting");
    assert!(!acked, "a message the disk did not take is nacked");
    let refused = post_json(&server.http, "/events/calendar", &calendar("during"), &[]);
    assert_eq!(
        refused.status,
        503,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );

    limit_file_size(&server, "unlimited");
    // The writer retries with pauses of up to 5 s; the alarm clears once a write goes through.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = post_json(&server.http, "/events/calendar", &calendar("after"), &[]);
        if r.status == 201 || r.status == 200 || r.status == 202 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "publishing never resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(publish_confirmed(&ch, "", "kept", b"after", persistent()).await);
    drop(conn);
    // The server's own log is on the same disk: what it wrote while the disk failed is lost,
    // but the process lived through it and says so once writes work again.
    let text = read(&log);
    assert!(
        text.contains("writing to the message log works again"),
        "{text}"
    );

    kill9(&mut server);
    let server = start(&data, &log, &[]);
    let conn = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let bodies: Vec<String> = drain(&channel(&conn).await, "kept")
        .await
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    for confirmed in ["before-0", "before-1", "before-2", "after"] {
        assert!(
            bodies.iter().any(|b| b == confirmed),
            "{confirmed} was confirmed and is lost: {bodies:?}"
        );
    }
    assert!(
        bodies.iter().any(|b| b.contains("\"after\"")),
        "the event the gateway answered 2xx for is kept: {bodies:?}"
    );
}
