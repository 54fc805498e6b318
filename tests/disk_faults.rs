//! A disk that stops taking writes, made real with the process's file size limit (set from
//! outside with `prlimit`, so the log's next append fails with EFBIG as on a full disk):
//! confirms become nacks, HTTP publishes get 503, nothing confirmed is lost, and once writes
//! work again publishing resumes without a restart. The server's log is on that disk too.

mod common;

use common::http::post_json;
use common::process::{kill9, read, start, stop, Server};
use common::{bind_queue, confirm_channel, declare_queue_with, drain, persistent};
use common::{channel, publish_confirmed};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;
use std::path::{Path, PathBuf};
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

/// A tmpfs of a given size mounted over a directory for the life of the value: a real
/// filesystem that fills up (ENOSPC) and can grow or turn read-only. Mounting needs root, as CI
/// has; elsewhere the tests that need one say so and skip.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        mount(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"], at);
        Some(Tmpfs {
            at: at.to_path_buf(),
        })
    }

    fn remount(&self, options: &str) {
        mount(&["-o", &format!("remount,{options}")], &self.at);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn mount(args: &[&str], at: &Path) {
    let status = Command::new("mount").args(args).arg(at).status().unwrap();
    assert!(status.success(), "mount {args:?} {}", at.display());
}

enum Outcome {
    Confirmed,
    Nacked,
    /// Not answered within the wait: the publisher is blocked (RabbitMQ's disk alarm).
    Blocked,
}

async fn publish_within(ch: &lapin::Channel, body: &[u8], wait: Duration) -> Outcome {
    match tokio::time::timeout(wait, publish_confirmed(ch, "", "kept", body, persistent())).await {
        Ok(true) => Outcome::Confirmed,
        Ok(false) => Outcome::Nacked,
        Err(_) => Outcome::Blocked,
    }
}

/// A body that names its index, padded to 64 KiB.
fn numbered(i: usize) -> Vec<u8> {
    let mut body = format!("m-{i:06}-").into_bytes();
    body.resize(64 * 1024, b'.');
    body
}

/// The data directory on an 8 MB filesystem, published to until it is full: the publish the
/// disk cannot take is nacked (or its publisher blocked), never confirmed; once the filesystem
/// grows, publishing resumes without a restart; after a SIGKILL every confirmed message is
/// there, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_refuses_publishes_and_they_resume_when_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("log"));
    let Some(disk) = Tmpfs::mount(&data, "8m") else {
        return;
    };
    // The disk alarm is set below what an 8 MB disk can show, so the disk really fills.
    let mut server = start(&data, &log, &["--disk-free-limit", "1"]);
    let conn = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
    declare_queue_with(&ch, "kept", true, FieldTable::default())
        .await
        .unwrap();

    let mut confirmed = Vec::new();
    let mut refused = None;
    for i in 0..400 {
        match publish_within(&ch, &numbered(i), Duration::from_secs(10)).await {
            Outcome::Confirmed => confirmed.push(i),
            Outcome::Nacked => {
                refused = Some("nacked");
                break;
            }
            Outcome::Blocked => {
                refused = Some("blocked");
                break;
            }
        }
    }
    let refused = refused.expect("400 messages of 64 KiB fit on an 8 MB disk");
    eprintln!(
        "disk full after {} confirmed messages: the next was {refused}",
        confirmed.len()
    );
    assert!(confirmed.len() > 10, "only {} fit", confirmed.len());

    disk.remount("size=64m");
    // A new channel: the old one may hold a publish the full disk left unanswered.
    let ch = confirm_channel(&conn).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = 1000;
    loop {
        match publish_within(&ch, &numbered(next), Duration::from_secs(10)).await {
            Outcome::Confirmed => {
                confirmed.push(next);
                next += 1;
                if next == 1010 {
                    break;
                }
            }
            Outcome::Nacked | Outcome::Blocked => {
                assert!(Instant::now() < deadline, "publishing never resumed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    drop(conn);

    kill9(&mut server);
    let mut server = start(&data, &log, &["--disk-free-limit", "1"]);
    let conn = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let bodies = drain(&channel(&conn).await, "kept").await;
    for body in &bodies {
        assert_eq!(body.len(), 64 * 1024, "a damaged body came back");
    }
    let kept: std::collections::BTreeSet<usize> = bodies
        .iter()
        .map(|b| std::str::from_utf8(&b[2..8]).unwrap().parse().unwrap())
        .collect();
    let lost: Vec<_> = confirmed.iter().filter(|i| !kept.contains(i)).collect();
    assert!(lost.is_empty(), "confirmed and lost: {lost:?}");
    drop(conn);
    stop(&mut server);
    let text = read(&log);
    assert!(!text.contains("panicked"), "{text}");
}

/// A data directory that turned read-only (a filesystem remounted after errors): `serve` stops
/// at once with an error naming the directory, not a panic or a half-started server.
#[test]
fn a_read_only_data_dir_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("log"));
    let Some(disk) = Tmpfs::mount(&data, "64m") else {
        return;
    };
    let mut server = start(&data, &log, &[]);
    stop(&mut server);
    disk.remount("ro");
    let out = common::process::serve_command(&data).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started on a read-only disk");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(err.to_lowercase().contains("read-only"), "{err}");
}
