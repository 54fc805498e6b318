//! Crash safety of a real `bloodbank serve` process: publishers with confirms, SIGKILL at a
//! random moment, restart on the same data directory, then check that every confirmed
//! message is there, nothing unpublished is, and per-publisher order holds. Also: damaged
//! segment files are reported with path and offset and the rest is still served.

mod common;

use common::process::*;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ITERATIONS: usize = 8;
const PUBLISHERS: usize = 4;
const QUEUES: [&str; 2] = ["crash-a", "crash-b"];

async fn connect_url(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connects")
}

async fn declare_topology(url: &str) {
    let conn = connect_url(url).await;
    let ch = channel(&conn).await;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    declare_exchange(&ch, "crash", ExchangeKind::Fanout, durable)
        .await
        .unwrap();
    for q in QUEUES {
        declare_queue_with(&ch, q, true, FieldTable::default())
            .await
            .unwrap();
        bind_queue(&ch, q, "crash", "").await.unwrap();
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// Publishes `iteration:publisher:seq` until the broker dies; records what was confirmed
/// and the highest sequence number sent.
async fn publisher(
    url: String,
    iteration: usize,
    id: usize,
    confirmed: Arc<Mutex<BTreeSet<u64>>>,
    sent: Arc<Mutex<u64>>,
) {
    let Ok(conn) = Connection::connect(&url, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let body = "z".repeat(512);
    let mut seq = 0u64;
    loop {
        let mut batch = Vec::new();
        for _ in 0..20 {
            seq += 1;
            *sent.lock().unwrap() = seq;
            let payload = format!("{iteration}:{id}:{seq}:{body}");
            match ch
                .basic_publish(
                    "crash".into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    payload.as_bytes(),
                    persistent(),
                )
                .await
            {
                Ok(confirm) => batch.push((seq, confirm)),
                Err(_) => return,
            }
        }
        for (seq, confirm) in batch {
            match confirm.await {
                Ok(c) if c.is_ack() => {
                    confirmed.lock().unwrap().insert(seq);
                }
                _ => return,
            }
        }
    }
}

/// Every message in a queue, acknowledged, as (iteration, publisher, seq).
async fn drain_ids(url: &str, queue: &str) -> Vec<(usize, usize, u64)> {
    let conn = connect_url(url).await;
    let ch = channel(&conn).await;
    let count = passive_queue(&ch, queue).await.unwrap().message_count();
    ch.basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume(&ch, queue, false).await;
    let mut out = Vec::new();
    for i in 0..count {
        let d = next(&mut consumer).await;
        let text = String::from_utf8(d.data.clone()).unwrap();
        let mut parts = text.splitn(4, ':');
        let it = parts.next().unwrap().parse().unwrap();
        let publisher = parts.next().unwrap().parse().unwrap();
        let seq = parts.next().unwrap().parse().unwrap();
        out.push((it, publisher, seq));
        if i % 500 == 499 || i + 1 == count {
            d.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
    let _ = conn.close(200, "bye".into()).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_confirmed_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let mut server = start(&data, &log, &[]);
    declare_topology(&server.url).await;
    let mut rng = rand::rng();
    for iteration in 0..ITERATIONS {
        let confirmed: Vec<_> = (0..PUBLISHERS)
            .map(|_| Arc::new(Mutex::new(BTreeSet::new())))
            .collect();
        let sent: Vec<_> = (0..PUBLISHERS)
            .map(|_| Arc::new(Mutex::new(0u64)))
            .collect();
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                tokio::spawn(publisher(
                    server.url.clone(),
                    iteration,
                    p,
                    confirmed[p].clone(),
                    sent[p].clone(),
                ))
            })
            .collect();
        // The kill comes at a random moment once publishing is under way (on a loaded
        // machine the first confirm can take longer than the shortest wait).
        let started = Instant::now();
        while confirmed.iter().all(|c| c.lock().unwrap().is_empty()) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "iteration {iteration}: no confirm within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
        kill9(&mut server);
        // Whatever they were waiting for will never be confirmed now.
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        server = start(&data, &log, &[]);
        let total_confirmed: usize = confirmed.iter().map(|c| c.lock().unwrap().len()).sum();
        assert!(
            total_confirmed > 0,
            "iteration {iteration}: nothing was confirmed before the kill"
        );
        for queue in QUEUES {
            let t0 = Instant::now();
            let got = drain_ids(&server.url, queue).await;
            eprintln!(
                "iteration {iteration}: {queue}: {} messages, {total_confirmed} confirmed, drained in {:?}",
                got.len(),
                t0.elapsed()
            );
            check_round(queue, iteration, got, &sent, &confirmed, &BTreeSet::new());
        }
    }
    assert_no_damage(&log);
    stop(&mut server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_are_reported_with_path_and_offset_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let mut server = start(&data, &log, &[]);
    {
        let conn = connect_url(&server.url).await;
        let ch = confirm_channel(&conn).await;
        declare_queue_with(&ch, "fragile", true, FieldTable::default())
            .await
            .unwrap();
        for i in 0..20 {
            let body = format!("{i:02}-{}", "w".repeat(300));
            assert!(publish_confirmed(&ch, "", "fragile", body.as_bytes(), persistent()).await);
        }
    }
    stop(&mut server);
    let segment = std::fs::read_dir(data.join("messages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 1000)
        .expect("a segment with the messages");
    let mut bytes = std::fs::read(&segment).unwrap();
    let flip_at = bytes.len() / 3;
    bytes[flip_at] ^= 0x10;
    // And a record cut short at the end, as a crash mid-write would leave it.
    bytes.extend_from_slice(&[200, 1, 0, 0, 9, 9]);
    std::fs::write(&segment, &bytes).unwrap();

    let mut server = start(&data, &log, &[]);
    let got = drain_bodies(&server.url, "fragile").await;
    assert_eq!(got.len(), 19, "only the damaged record is lost");
    let prefixes: Vec<_> = got.iter().map(|b| b[..2].to_vec()).collect();
    let mut sorted = prefixes.clone();
    sorted.sort();
    assert_eq!(prefixes, sorted, "order kept");
    let stderr = read(&log);
    let path = segment.display().to_string();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&path) && l.contains("skipped")),
        "no report of the flipped byte naming {path}:\n{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.contains(&path)
            && l.contains(&format!("incomplete record at offset {}", bytes.len() - 6))),
        "no report of the torn tail:\n{stderr}"
    );
    stop(&mut server);
}

async fn drain_bodies(url: &str, queue: &str) -> Vec<Vec<u8>> {
    let conn = connect_url(url).await;
    let ch = channel(&conn).await;
    drain(&ch, queue).await
}

/// Small segments and no bodies kept in memory, with a consumer acking half of what it gets
/// while publishers run: kills land in the middle of rolls, copy-forwards and reads from
/// disk. Every confirmed message that was not acked must come back, in per-publisher order;
/// an acked one may come back too (acks are not synced), nothing unpublished may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_compaction_and_paging_loses_nothing_unacked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "segment_bytes = 65536\nmessage_memory = 0\n").unwrap();
    let extra = ["--config", config.to_str().unwrap()];
    let mut server = start(&data, &log, &extra);
    declare_topology(&server.url).await;
    let mut rng = rand::rng();
    for iteration in 0..4 {
        let confirmed: Vec<_> = (0..PUBLISHERS)
            .map(|_| Arc::new(Mutex::new(BTreeSet::new())))
            .collect();
        let sent: Vec<_> = (0..PUBLISHERS)
            .map(|_| Arc::new(Mutex::new(0u64)))
            .collect();
        let acked: Arc<Mutex<BTreeSet<(usize, u64)>>> = Arc::default();
        let mut tasks: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                tokio::spawn(publisher(
                    server.url.clone(),
                    iteration,
                    p,
                    confirmed[p].clone(),
                    sent[p].clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(ack_nine_in_ten(
            server.url.clone(),
            QUEUES[0],
            acked.clone(),
        )));
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
        kill9(&mut server);
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        server = start(&data, &log, &extra);
        let got = drain_ids(&server.url, QUEUES[0]).await;
        let acked = acked.lock().unwrap().clone();
        check_round(QUEUES[0], iteration, got, &sent, &confirmed, &acked);
        drain_ids(&server.url, QUEUES[1]).await;
    }
    assert_no_damage(&log);
    stop(&mut server);
}

/// Consumes without a prefetch limit and acks nine messages in ten, recording which: the
/// tenth stays behind in its segment, so old segments are mostly dead and get compacted
/// (live stragglers copied forward) while the kills come.
async fn ack_nine_in_ten(url: String, queue: &str, acked: Arc<Mutex<BTreeSet<(usize, u64)>>>) {
    use futures_lite::StreamExt;
    let Ok(conn) = Connection::connect(&url, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    let Ok(mut consumer) = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    let mut n = 0u64;
    while let Some(Ok(d)) = consumer.next().await {
        n += 1;
        if n % 10 != 0 {
            let text = String::from_utf8_lossy(&d.data).to_string();
            let mut parts = text.splitn(4, ':');
            let _ = parts.next();
            let p: usize = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let seq: u64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            // Recorded before the ack is sent: if it never arrives, the message is still there.
            acked.lock().unwrap().insert((p, seq));
            if d.ack(BasicAckOptions::default()).await.is_err() {
                return;
            }
        }
    }
}

/// What came back after a kill, checked against what was published: only this round's
/// messages, nothing never sent, per-publisher order, and every confirmed message present
/// unless it was acked.
fn check_round(
    queue: &str,
    iteration: usize,
    got: Vec<(usize, usize, u64)>,
    sent: &[Arc<Mutex<u64>>],
    confirmed: &[Arc<Mutex<BTreeSet<u64>>>],
    acked: &BTreeSet<(usize, u64)>,
) {
    let mut by_publisher: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (it, p, seq) in got {
        assert_eq!(
            it, iteration,
            "{queue}: message from an earlier round came back"
        );
        assert!(p < PUBLISHERS);
        assert!(
            seq <= *sent[p].lock().unwrap(),
            "{queue}: {p}:{seq} was never published"
        );
        by_publisher.entry(p).or_default().push(seq);
    }
    for (p, confirmed) in confirmed.iter().enumerate() {
        let seqs = by_publisher.remove(&p).unwrap_or_default();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{queue}: publisher {p} out of order: {seqs:?}"
        );
        let have: BTreeSet<u64> = seqs.into_iter().collect();
        let missing: Vec<u64> = confirmed
            .lock()
            .unwrap()
            .iter()
            .filter(|s| !have.contains(s) && !acked.contains(&(p, **s)))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "{queue}: publisher {p} lost confirmed, unacked {missing:?}"
        );
    }
}

/// The broker's log after the kills: torn tails are allowed (SIGKILL can cut a write short:
/// Linux stops copying at a page boundary when a fatal signal is pending; such a tail is
/// repaired and held nothing confirmed), damage and errors are not.
fn assert_no_damage(log: &std::path::Path) {
    let stderr = read(log);
    let torn = stderr.matches("a write cut short by a crash").count();
    eprintln!("torn tails repaired: {torn}");
    assert!(
        !stderr.contains("damage") && !stderr.contains("ERROR"),
        "the store reported damage or errors after kills:\n{stderr}"
    );
}

/// A durable declare, bind or delete is answered only once it is stored: SIGKILL right after
/// the answers, and the restarted broker has exactly what was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_definition_changes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let mut server = start(&data, &log, &[]);
    {
        let conn = connect_url(&server.url).await;
        let ch = channel(&conn).await;
        for i in 0..20 {
            let q = format!("kept-{i}");
            declare_queue_with(&ch, &q, true, FieldTable::default())
                .await
                .unwrap();
            bind_queue(&ch, &q, "events", &format!("k.{i}"))
                .await
                .unwrap();
        }
        declare_queue_with(&ch, "dropped", true, FieldTable::default())
            .await
            .unwrap();
        ch.queue_delete("dropped".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        kill9(&mut server);
    }
    let server = start(&data, &log, &[]);
    let conn = connect_url(&server.url).await;
    let ch = channel(&conn).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    for i in 0..20 {
        ch.queue_declare(
            format!("kept-{i}").as_str().into(),
            passive,
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("kept-{i} is gone: {e}"));
    }
    // The bindings came back too: a publish to k.7 reaches kept-7.
    publish(&ch, "events", "k.7", b"routed").await;
    let got = ch
        .basic_get("kept-7".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert!(got.is_some(), "the binding of kept-7 was not stored");
    let ch = channel(&conn).await;
    let err = ch
        .queue_declare("dropped".into(), passive, FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), 404);
}
