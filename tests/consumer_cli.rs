//! `bloodbank consume` and `bloodbank dlq` against a real `bloodbank serve`: a command per
//! event, a failing one retried with backoff then dead-lettered with its stderr, a body that
//! is not JSON dead at once; the dead letters listed, shown, replayed to their routing key once
//! the command is fixed, and purged; a graceful stop.

mod common;

use common::process::*;
use common::*;
use lapin::options::*;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bloodbank(args: &[&str], server: &Server) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(args)
        .env("BLOODBANK_AMQP_URL", &server.url)
        .env(
            "BLOODBANK_MANAGEMENT_URL",
            server.management.as_deref().unwrap(),
        )
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lines(path: &Path) -> Vec<String> {
    read(path).lines().map(str::to_string).collect()
}

fn start_consumer(server: &Server, dir: &Path) -> Child {
    // Handles an event by appending its body to out.txt; a "poison" event fails until the
    // file `fixed` exists.
    let script = format!(
        "body=$(cat); if echo \"$body\" | grep -q poison && [ ! -e {dir}/fixed ]; then \
         echo \"cannot digest $BLOODBANK_ROUTING_KEY attempt $BLOODBANK_ATTEMPT\" >&2; exit 3; fi; \
         echo \"$BLOODBANK_ROUTING_KEY $body\" >> {dir}/out.txt",
        dir = dir.display()
    );
    Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["consume", "--queue", "cli.main", "--bind", "theboard.#"])
        .args([
            "--exec",
            &script,
            "--max-attempts",
            "3",
            "--backoff-ms",
            "100,200",
        ])
        .env("BLOODBANK_AMQP_URL", &server.url)
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("consume.log")).unwrap(),
        ))
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_runs_a_command_per_event_and_dlq_triages_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &dir.path().join("log"), &[]);
    let mut consumer = start_consumer(&server, dir.path());
    let conn = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = confirm_channel(&conn).await;
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
    // The consumer has declared its queue and consumes.
    loop {
        let probe = channel(&conn).await;
        if let Ok(q) = passive_queue(&probe, "cli.main").await {
            if q.consumer_count() == 1 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let props = || BasicProperties::default().with_message_id("m1".into());
    for (key, body) in [
        (
            "theboard.meeting.created",
            &br#"{"id": "1", "event_type": "a", "data": {}}"#[..],
        ),
        (
            "theboard.meeting.failed",
            br#"{"id": "2", "event_type": "poison", "data": {}}"#,
        ),
        ("theboard.meeting.started", b"not json at all"),
    ] {
        assert!(publish_confirmed(&ch, "events", key, body, props()).await);
    }
    let out = dir.path().join("out.txt");
    wait_until("the good event", || !lines(&out).is_empty());
    assert_eq!(
        lines(&out),
        vec![r#"theboard.meeting.created {"id": "1", "event_type": "a", "data": {}}"#]
    );
    wait_until("two dead letters", || {
        passive_queue_count(&server, "cli.main.dlq") == 2
    });

    let listed = stdout(&bloodbank(&["dlq", "list", "--json"], &server));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let dlq = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "cli.main.dlq")
        .unwrap_or_else(|| panic!("cli.main.dlq not listed: {listed}"));
    assert_eq!(dlq["messages"], 2);

    let shown = stdout(&bloodbank(
        &["dlq", "show", "cli.main.dlq", "--json"],
        &server,
    ));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let by_reason = |r: &str| {
        shown
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["reason"] == r)
            .unwrap_or_else(|| panic!("no {r} in {shown}"))
            .clone()
    };
    let failed = by_reason("handler_failed");
    assert_eq!(failed["attempts"], 3);
    assert_eq!(failed["routing_key"], "theboard.meeting.failed");
    assert_eq!(failed["exchange"], "events");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("cannot digest theboard.meeting.failed attempt 3"),
        "{error}"
    );
    assert!(error.contains("exit status: 3"), "{error}");
    assert_eq!(by_reason("invalid_envelope")["attempts"], 1);
    // Showing leaves them queued.
    assert_eq!(passive_queue_count(&server, "cli.main.dlq"), 2);

    // Fixed: a replay sends both back to their routing keys as first attempts; the poison
    // event is handled now, the non-JSON body comes back to the DLQ.
    std::fs::write(dir.path().join("fixed"), b"").unwrap();
    let replayed = stdout(&bloodbank(&["dlq", "replay", "cli.main.dlq"], &server));
    assert!(replayed.contains("replayed 2"), "{replayed}");
    wait_until("the replayed event", || lines(&out).len() == 2);
    assert!(lines(&out)[1].starts_with("theboard.meeting.failed "));
    wait_until("the bad body back in the DLQ", || {
        passive_queue_count(&server, "cli.main.dlq") == 1
    });
    let purged = stdout(&bloodbank(&["dlq", "purge", "cli.main.dlq"], &server));
    assert!(purged.contains("purged 1"), "{purged}");
    assert_eq!(passive_queue_count(&server, "cli.main.dlq"), 0);

    // SIGTERM: it stops, exit 0.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(consumer.id() as i32, libc::SIGTERM) };
    let status = consumer.wait().unwrap();
    let log = read(&dir.path().join("consume.log"));
    assert!(status.success(), "{status}: {log}");
    eprintln!("{log}");
}

fn passive_queue_count(server: &Server, queue: &str) -> u32 {
    let url = server.url.clone();
    let queue = queue.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let conn = Connection::connect(&url, ConnectionProperties::default())
                .await
                .unwrap();
            let ch = channel(&conn).await;
            let n = passive_queue(&ch, &queue)
                .await
                .map_or(0, |q| q.message_count());
            let _ = conn.close(200, "".into()).await;
            n
        })
    })
    .join()
    .unwrap()
}
