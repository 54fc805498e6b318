//! Scaling out (README "Scaling out"): deploy/compose.yaml's topology from Debian's packages.
//! Three RabbitMQ nodes boot with deploy/rabbitmq/ (they form the cluster by themselves and
//! load the `bloodbank` user and the `events` exchange), two gateways run with
//! deploy/bloodbank.toml (only addresses changed) and share one Redis. A consumer's quorum
//! queue comes from a definitions file exported from a single-node Bloodbank with `--quorum`. While clients
//! publish with idempotency keys (retrying against the other instance on any failure), one
//! RabbitMQ node and one gateway are stopped and started again. Afterwards every event that
//! got a 2xx is in the quorum queue, every idempotency key has one envelope, and the only
//! second copies are of publishes the stopped node took without confirming them.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bloodbank_gateway::client;
use common::rabbitmq::RabbitMq;
use common::redis::Redis;
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;

const QUEUE: &str = "calendar.tracker";
const CLIENTS: usize = 6;

/// A gateway process on a fixed port, so clients find it again after a restart.
struct Gateway {
    port: u16,
    args: Vec<String>,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Gateway {
    fn new(dir: &Path, name: &str, broker_urls: &str, redis: &str) -> Gateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/bloodbank.toml");
        let args = [
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--gateway-listen",
            &format!("127.0.0.1:{port}"),
            "--speech-listen",
            "127.0.0.1:0",
            "--broker-url",
            broker_urls,
            "--redis-url",
            redis,
        ];
        let mut gateway = Gateway {
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            data: dir.join(name),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        gateway.start();
        gateway
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let ready = self.data.with_extension("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
            .args(&self.args)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            assert!(
                Instant::now() < deadline,
                "{}",
                common::process::read(&self.log)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// SIGTERM: requests in progress are answered, then it exits 0.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "{}", common::process::read(&self.log));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Idempotency key -> envelope id, for every 2xx.
    accepted: HashMap<String, String>,
    /// 2xx answers that were replays of an earlier attempt's publish.
    replays: u64,
    /// Attempts answered 503 or not answered at all (then retried elsewhere).
    failed_attempts: u64,
}

fn publish_until_accepted(gateways: &[String; 2], i: u64, tally: &Mutex<Tally>) {
    let key = format!("event-{i}");
    let body = serde_json::json!({
        "summary": format!("meeting {i}"),
        "start_time": "2024-01-15T10:00:00Z",
        "end_time": "2024-01-15T11:00:00Z",
    })
    .to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("X-API-Key", "change-me"),
        ("Idempotency-Key", key.as_str()),
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut target = (i % 2) as usize;
    loop {
        let answer = client::request(
            &gateways[target],
            "POST",
            "/events/calendar",
            &headers,
            body.as_bytes(),
        );
        let last = match answer {
            Ok(r) if r.status == 200 => {
                let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                let id = json["id"].as_str().unwrap().to_string();
                let mut tally = tally.lock().unwrap();
                if r.header("idempotent-replay").is_some() {
                    tally.replays += 1;
                }
                tally.accepted.insert(key, id);
                return;
            }
            Ok(r) => {
                let last = format!("{}: {}", r.status, String::from_utf8_lossy(&r.body));
                assert!(r.status == 503, "{last}");
                last
            }
            Err(e) => e.to_string(),
        };
        tally.lock().unwrap().failed_attempts += 1;
        assert!(
            Instant::now() < deadline,
            "{key} was never accepted: {last}"
        );
        target ^= 1;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The topology from a single-node Bloodbank, exported for the cluster with `--quorum`.
fn definitions_for_the_cluster(dir: &Path) -> PathBuf {
    let single = dir.join("single-node.json");
    let definitions = serde_json::json!({
        "vhosts": [{"name": "/"}],
        "exchanges": [{"name": "events", "vhost": "/", "type": "topic", "durable": true,
                       "auto_delete": false, "internal": false, "arguments": {}}],
        "queues": [{"name": QUEUE, "vhost": "/", "durable": true, "auto_delete": false,
                    "arguments": {}}],
        "bindings": [{"source": "events", "vhost": "/", "destination": QUEUE,
                      "destination_type": "queue", "routing_key": "calendar.#", "arguments": {}}],
    });
    std::fs::write(&single, definitions.to_string()).unwrap();
    let data = dir.join("single-node-data");
    let bloodbank = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    bloodbank(&["definitions", "import", single.to_str().unwrap()]);
    // The rabbitmq user reads the file: somewhere it may.
    let exported = std::env::temp_dir().join(format!("bb-cluster-{}.json", std::process::id()));
    bloodbank(&[
        "definitions",
        "export",
        "--quorum",
        exported.to_str().unwrap(),
    ]);
    let _ = Command::new("chmod").arg("644").arg(&exported).status();
    exported
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_in_front_of_a_three_node_cluster_lose_nothing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rabbitmq");
    let conf = std::fs::read_to_string(deploy.join("rabbitmq.conf")).unwrap();
    let mut nodes = RabbitMq::cluster_from(&conf, &deploy.join("definitions.json"), 3);
    let redis = Redis::start_any();
    let definitions = definitions_for_the_cluster(dir.path());
    nodes[0].rabbitmqctl(&["import_definitions", definitions.to_str().unwrap()]);
    let _ = std::fs::remove_file(&definitions);
    let queues = nodes[1].rabbitmqctl(&["list_queues", "name", "type"]);
    assert!(
        queues
            .lines()
            .any(|l| l.starts_with(QUEUE) && l.ends_with("quorum")),
        "{queues}"
    );
    println!(
        "cluster of 3 up with the topology after {:?}",
        started.elapsed()
    );

    // Each gateway knows every node; they start on different ones.
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| n.url_as("bloodbank", "bloodbank"))
        .collect();
    let mut gateways = [
        Gateway::new(dir.path(), "gw-a", &urls.join(","), &redis.url()),
        Gateway::new(
            dir.path(),
            "gw-b",
            &[&urls[1], &urls[2], &urls[0]].map(String::as_str).join(","),
            &redis.url(),
        ),
    ];
    let addrs = [gateways[0].addr(), gateways[1].addr()];

    let tally = Arc::new(Mutex::new(Tally::default()));
    let (next, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (tally, next, done, addrs) =
                (tally.clone(), next.clone(), done.clone(), addrs.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    publish_until_accepted(&addrs, i, &tally);
                }
            })
        })
        .collect();
    let accepted = || tally.lock().unwrap().accepted.len();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while accepted() < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };

    let stalled = |nodes: &[RabbitMq], gateways: &[Gateway]| -> ! {
        for node in nodes.iter().filter(|n| n.is_running()) {
            eprintln!(
                "{}",
                node.rabbitmqctl(&[
                    "list_queues",
                    "name",
                    "type",
                    "leader",
                    "members",
                    "online",
                    "messages"
                ])
            );
            eprintln!("{}", node.log_tail(80));
        }
        for gateway in gateways {
            eprintln!("{}", common::process::read(&gateway.log));
        }
        panic!("publishing stalled at {}", accepted());
    };

    if !wait_for(1000) {
        stalled(&nodes, &gateways);
    }
    // The first gateway's node goes down, then the second gateway; both come back.
    nodes[0].stop_node();
    let at_node_stop = accepted();
    if !wait_for(at_node_stop + 300) {
        stalled(&nodes, &gateways);
    }
    gateways[1].stop();
    let at_gateway_stop = accepted();
    if !wait_for(at_gateway_stop + 300) {
        stalled(&nodes, &gateways);
    }
    nodes[0].start_node();
    gateways[1].start();
    let restarted = accepted();
    if !wait_for(restarted + 1000) {
        stalled(&nodes, &gateways);
    }
    done.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());

    // Drain the quorum queue from a node that stayed up.
    let conn = lapin::Connection::connect(&urls[2], Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            QUEUE.into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen: HashMap<String, u32> = HashMap::new();
    while let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_secs(3), consumer.next()).await
    {
        let delivery = delivery.unwrap();
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        *seen.entry(id).or_default() += 1;
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let drained: u32 = seen.values().sum();
    let ids: HashSet<&String> = tally.accepted.values().collect();
    let missing = ids.iter().filter(|id| !seen.contains_key(**id)).count();
    let key_of: HashMap<&String, &String> = tally.accepted.iter().map(|(k, id)| (id, k)).collect();
    let copies: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (key_of.get(id).copied(), *n))
        .collect();
    let renewed: usize = gateways
        .iter()
        .map(|g| {
            common::process::read(&g.log)
                .matches("opens a fresh channel")
                .count()
        })
        .sum();
    println!(
        "gateways renewed a channel after a basic.nack {renewed} times; accepted {} events ({} as replays of an earlier attempt), {} attempts failed and were \
         retried; node stopped at {at_node_stop}, gateway at {at_gateway_stop}, both back at \
         {restarted}; drained {drained} messages: {} distinct envelopes, {missing} missing, \
         {} in more than one copy {copies:?}; {:?} in all",
        tally.accepted.len(),
        tally.replays,
        tally.failed_attempts,
        seen.len(),
        copies.len(),
        started.elapsed(),
    );
    assert_eq!(missing, 0, "every event that got a 2xx is in the queue");
    assert_eq!(
        ids.len(),
        tally.accepted.len(),
        "one envelope per idempotency key"
    );
    assert_eq!(seen.len(), ids.len(), "no envelope that was not accepted");
    // Publisher confirms are at least once: a publish the stopped node had taken but not yet
    // confirmed when it closed the connection is in doubt, and the retry (on the next node, or
    // the client's against the other gateway) can add a second copy of the same envelope (same
    // message_id, which consumers drop). Only publishes in flight at that moment can be copied.
    assert!(
        copies.len() <= CLIENTS && copies.iter().all(|(key, n)| key.is_some() && *n <= 3),
        "more copies than publishes in flight when the node stopped: {copies:?}"
    );
}
