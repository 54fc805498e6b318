//! Crash safety of a real `bloodbank serve` process: publishers with confirms, consumers,
//! dead-lettering and definition changes, SIGKILL at a
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

const ITERATIONS: usize = 20;
const PUBLISHERS: usize = 4;
const QUEUES: [&str; 2] = ["crash-a", "crash-b"];
/// Where crash-b's rejected messages go.
const DEAD_LETTERS: &str = "crash-dlq";
/// The direct exchange the definition changes bind their queues to.
const DEFINITIONS: &str = "crash-defs";

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
    declare_exchange(&ch, DEFINITIONS, ExchangeKind::Direct, durable)
        .await
        .unwrap();
    declare_queue_with(&ch, DEAD_LETTERS, true, FieldTable::default())
        .await
        .unwrap();
    let dead_letter = args(&[
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text(DEAD_LETTERS)),
    ]);
    for (q, arguments) in [(QUEUES[0], FieldTable::default()), (QUEUES[1], dead_letter)] {
        declare_queue_with(&ch, q, true, arguments).await.unwrap();
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

/// A message's (iteration, publisher, seq).
type Id = (usize, usize, u64);

/// Every message in a queue, acknowledged, by id.
async fn drain_ids(url: &str, queue: &str) -> Vec<Id> {
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

/// Twenty SIGKILLs at random moments while four publishers publish with confirms into a
/// fanout, a consumer acks nine messages in ten from one queue, another rejects everything from
/// a queue that dead-letters, and a client declares, binds and deletes durable queues. After
/// each restart: every confirmed message is in its queue (or, for the rejecting queue, in the
/// queue or its dead-letter queue) unless it was acked, nothing unpublished is, per-publisher
/// order holds, and every answered definition change is there, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_under_mixed_load_lose_nothing_confirmed_and_half_apply_no_definition() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let mut server = start(&data, &log, &[]);
    declare_topology(&server.url).await;
    let mut rng = rand::rng();
    let (mut changes, mut dead_lettered) = (0, 0);
    for iteration in 0..ITERATIONS {
        let confirmed: Vec<_> = (0..PUBLISHERS)
            .map(|_| Arc::new(Mutex::new(BTreeSet::new())))
            .collect();
        let sent: Vec<_> = (0..PUBLISHERS)
            .map(|_| Arc::new(Mutex::new(0u64)))
            .collect();
        let acked: Arc<Mutex<BTreeSet<(usize, u64)>>> = Arc::default();
        let answered: Arc<Mutex<Answered>> = Arc::default();
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
        let url = server.url.clone();
        tasks.push(tokio::spawn(ack_nine_in_ten(
            url.clone(),
            QUEUES[0],
            acked.clone(),
        )));
        tasks.push(tokio::spawn(reject_all(url.clone(), QUEUES[1])));
        tasks.push(tokio::spawn(churn_definitions(
            url,
            iteration,
            answered.clone(),
        )));
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
        // Whatever they were waiting for will never be answered now.
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
        let acked = acked.lock().unwrap().clone();
        let a = drain_ids(&server.url, QUEUES[0]).await;
        let b = drain_ids(&server.url, QUEUES[1]).await;
        let dlq = drain_ids(&server.url, DEAD_LETTERS).await;
        eprintln!(
            "iteration {iteration}: {total_confirmed} confirmed, {} acked, back: {} in {}, {} in {}, {} in {DEAD_LETTERS}",
            acked.len(),
            a.len(),
            QUEUES[0],
            b.len(),
            QUEUES[1],
            dlq.len()
        );
        dead_lettered += dlq.len();
        check_round(&[(QUEUES[0], a)], iteration, &sent, &confirmed, &acked);
        let none = BTreeSet::new();
        check_round(
            &[(QUEUES[1], b), (DEAD_LETTERS, dlq)],
            iteration,
            &sent,
            &confirmed,
            &none,
        );
        let answered = std::mem::take(&mut *answered.lock().unwrap());
        changes += check_definitions(&server.url, &answered).await;
    }
    eprintln!("{ITERATIONS} kills: {changes} answered definition changes and {dead_lettered} dead-lettered messages checked");
    assert!(
        changes > 0 && dead_lettered > 0,
        "the kills never met a definition change or a dead-lettering"
    );
    assert_no_damage(&log);
    stop(&mut server);
}

/// A consumer (acking) on `queue` over a connection of its own; None once the broker is gone.
async fn consumer_on(url: &str, queue: &str) -> Option<(Connection, lapin::Consumer)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .ok()?;
    let ch = conn.create_channel().await.ok()?;
    let consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .ok()?;
    Some((conn, consumer))
}

/// Consumes from `queue` and rejects every message without requeueing: it is dead-lettered.
async fn reject_all(url: String, queue: &str) {
    use futures_lite::StreamExt;
    let Some((_conn, mut consumer)) = consumer_on(&url, queue).await else {
        return;
    };
    while let Some(Ok(d)) = consumer.next().await {
        if d.reject(BasicRejectOptions { requeue: false })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Definition changes the broker answered before the kill.
#[derive(Default)]
struct Answered {
    /// Queues whose declare and bind were both answered.
    bound: BTreeSet<String>,
    /// Queues whose delete was sent: each may be gone even if the answer never came.
    deleting: BTreeSet<String>,
    /// Queues whose delete was answered.
    deleted: BTreeSet<String>,
}

/// Declares a durable queue and binds it, then deletes the one before, over and over,
/// recording each answer.
async fn churn_definitions(url: String, iteration: usize, answered: Arc<Mutex<Answered>>) {
    let Ok(conn) = Connection::connect(&url, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    for n in 0.. {
        let q = format!("defs-{iteration}-{n}");
        if declare_queue_with(&ch, &q, true, FieldTable::default())
            .await
            .is_err()
            || bind_queue(&ch, &q, DEFINITIONS, &q).await.is_err()
        {
            return;
        }
        answered.lock().unwrap().bound.insert(q);
        if n % 2 == 1 {
            let before = format!("defs-{iteration}-{}", n - 1);
            answered.lock().unwrap().deleting.insert(before.clone());
            if ch
                .queue_delete(before.as_str().into(), QueueDeleteOptions::default())
                .await
                .is_err()
            {
                return;
            }
            answered.lock().unwrap().deleted.insert(before);
        }
    }
}

/// Every answered declare-and-bind whose delete was not sent is there with its binding (a
/// message routed by it arrives), every answered delete is gone; returns how many changes
/// were checked.
async fn check_definitions(url: &str, answered: &Answered) -> usize {
    let conn = connect_url(url).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    for q in answered.bound.difference(&answered.deleting) {
        let ch = channel(&conn).await;
        ch.queue_declare(q.as_str().into(), passive, FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("{q} was declared and answered, and is gone: {e}"));
        publish(&ch, DEFINITIONS, q, b"routed").await;
        let got = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        assert!(got.is_some(), "{q}: its answered binding is gone");
    }
    for q in &answered.deleted {
        let ch = channel(&conn).await;
        let err = ch
            .queue_declare(q.as_str().into(), passive, FieldTable::default())
            .await
            .expect_err(&format!("{q} was deleted and answered, and is back"));
        assert_eq!(reply_code(&err), 404, "{q}");
    }
    let _ = conn.close(200, "bye".into()).await;
    answered.bound.len() + answered.deleted.len()
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
        check_round(&[(QUEUES[0], got)], iteration, &sent, &confirmed, &acked);
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
    let Some((_conn, mut consumer)) = consumer_on(&url, queue).await else {
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
/// messages, nothing never sent, per-publisher order in each queue, and every confirmed
/// message present in one of the queues unless it was acked.
fn check_round(
    queues: &[(&str, Vec<Id>)],
    iteration: usize,
    sent: &[Arc<Mutex<u64>>],
    confirmed: &[Arc<Mutex<BTreeSet<u64>>>],
    acked: &BTreeSet<(usize, u64)>,
) {
    let mut have: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    for (queue, got) in queues {
        let mut by_publisher: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for &(it, p, seq) in got {
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
        for (p, seqs) in by_publisher {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{queue}: publisher {p} out of order: {seqs:?}"
            );
            have.entry(p).or_default().extend(seqs);
        }
    }
    let names: Vec<&str> = queues.iter().map(|(q, _)| *q).collect();
    let queue = names.join(" + ");
    for (p, confirmed) in confirmed.iter().enumerate() {
        let have = have.remove(&p).unwrap_or_default();
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
