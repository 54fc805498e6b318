//! `bloodbank definitions export|import` with RabbitMQ's definitions JSON: a file exported by
//! a real RabbitMQ 3.10 imports, and an export from Bloodbank imports into a fresh data dir.

mod common;

use common::process::*;
use common::*;
use lapin::options::*;
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use std::path::Path;
use std::process::Command;

fn definitions(action: &str, file: &Path, data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["definitions", action])
        .arg(file)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

async fn check_orders_topology(url: &str) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = channel(&conn).await;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    declare_exchange(&ch, "orders", ExchangeKind::Topic, passive)
        .await
        .unwrap();
    // Same arguments as RabbitMQ stored them: an equivalent redeclare is accepted.
    declare_queue_with(
        &ch,
        "orders-work",
        true,
        args(&[
            ("x-dead-letter-exchange", text("orders.dlx")),
            ("x-message-ttl", AMQPValue::LongInt(60000)),
            ("x-max-length", AMQPValue::LongInt(1000)),
        ]),
    )
    .await
    .unwrap();
    // Queue and exchange-to-exchange bindings work.
    publish(&ch, "orders", "order.created", b"o").await;
    publish(&ch, "orders", "audit.x", b"a").await;
    assert_eq!(drain(&ch, "orders-work").await, vec![b"o".to_vec()]);
    assert_eq!(drain(&ch, "orders_dlq").await, vec![b"a".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_export_imports_and_exports_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rabbitmq-3.10-definitions.json");
    let out = definitions("import", &fixture, &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("imported 1 users, 1 permissions, 2 exchanges, 2 queues, 3 bindings"));

    let log = dir.path().join("stderr.log");
    let mut server = start(&data, &log, &[]);
    check_orders_topology(&server.url).await;
    // While the broker runs, export goes through its management API (and says where it
    // looked when that is not where the API is).
    let exported = dir.path().join("export.json");
    let lost = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["definitions", "export"])
        .arg(&exported)
        .arg("--data-dir")
        .arg(&data)
        .args(["--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!lost.status.success());
    assert!(String::from_utf8_lossy(&lost.stderr).contains("BLOODBANK_MANAGEMENT_URL"));
    let live = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["definitions", "export"])
        .arg(&exported)
        .arg("--data-dir")
        .arg(&data)
        .args(["--url", server.management.as_deref().unwrap()])
        .output()
        .unwrap();
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    let from_api: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    stop(&mut server);

    let out = definitions("export", &exported, &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    let queue = json["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "orders-work")
        .unwrap();
    assert_eq!(queue["arguments"]["x-message-ttl"], 60000);
    assert_eq!(queue["type"], "classic");
    // The running broker's export and the stopped store's agree on the topology.
    for key in ["exchanges", "queues", "bindings", "users", "permissions"] {
        let names = |v: &serde_json::Value| {
            let mut all: Vec<String> = v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.to_string())
                .collect();
            all.sort();
            all
        };
        assert_eq!(names(&json), names(&from_api), "{key}");
    }
    assert!(json["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["destination_type"] == "exchange"
            && b["source"] == "orders"
            && b["routing_key"] == "audit.*"));

    // The export brings the same topology up in a fresh data directory.
    let fresh = dir.path().join("fresh");
    let out = definitions("import", &exported, &fresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut server = start(&fresh, &log, &[]);
    check_orders_topology(&server.url).await;
    stop(&mut server);
}

#[test]
fn a_malformed_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"queues\": 7}").unwrap();
    let out = definitions("import", &bad, &dir.path().join("data"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("queues"),
        "{stderr}"
    );
}

/// What this broker cannot honour is refused by name, and nothing of the file is stored.
#[test]
fn what_cannot_be_honoured_is_refused_by_name_and_nothing_is_imported() {
    let cases = [
        (
            r#"{"policies":[{"vhost":"/","name":"fed","pattern":".*","apply-to":"exchanges","definition":{"federation-upstream-set":"all"},"priority":0}]}"#,
            "policy 'fed': federation-upstream-set is not a setting Bloodbank honours",
        ),
        (
            r#"{"parameters":[{"vhost":"/","component":"shovel","name":"move","value":{}}]}"#,
            "shovel 'move'",
        ),
        (
            r#"{"exchanges":[{"name":"later","vhost":"/","type":"x-delayed-message","durable":true,"auto_delete":false,"internal":false,"arguments":{}}]}"#,
            "x-delayed-message",
        ),
        (
            r#"{"queues":[{"name":"log","vhost":"/","type":"stream","durable":true,"auto_delete":false,"arguments":{"x-queue-type":"stream"}}]}"#,
            "queue 'log' in vhost '/' has type 'stream'",
        ),
    ];
    for (json, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("defs.json");
        std::fs::write(&file, json).unwrap();
        let data = dir.path().join("data");
        let out = definitions("import", &file, &data);
        assert!(!out.status.success(), "{json} was imported");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{named}: {stderr}");
        assert!(!data.join("definitions.redb").exists());
    }
}

#[test]
fn an_export_for_a_rabbitmq_cluster_brings_quorum_queues_up_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rabbitmq-3.10-definitions.json");
    assert!(definitions("import", &fixture, &data).status.success());
    let exported = dir.path().join("for-rabbitmq.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["definitions", "export", "--quorum"])
        .arg(&exported)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    for q in json["queues"].as_array().unwrap() {
        assert_eq!(q["type"], "quorum", "{q}");
        assert_eq!(q["arguments"]["x-queue-type"], "quorum", "{q}");
    }
    // A real RabbitMQ takes the file, and the queues are quorum queues there.
    let rabbit = common::rabbitmq::RabbitMq::start();
    // The CLI reads the file as the rabbitmq user may; hand it a copy it can read.
    let shared = std::env::temp_dir().join(format!("bb-defs-{}.json", std::process::id()));
    std::fs::copy(&exported, &shared).unwrap();
    let _ = Command::new("chmod").arg("644").arg(&shared).status();
    rabbit.rabbitmqctl(&["import_definitions", shared.to_str().unwrap()]);
    let _ = std::fs::remove_file(&shared);
    let queues = rabbit.rabbitmqctl(&["list_queues", "name", "type"]);
    for name in ["orders-work", "orders_dlq"] {
        assert!(
            queues
                .lines()
                .any(|l| l.starts_with(name) && l.trim_end().ends_with("quorum")),
            "{queues}"
        );
    }
}
