//! Users from RabbitMQ: a real RabbitMQ node gets users with `rabbitmqctl add_user`, exports
//! its definitions, and Bloodbank imports them. The same passwords log in (RabbitMQ's salted
//! hashes are checked as they are), a wrong one is refused as RabbitMQ refuses it, a user
//! without permissions on the vhost is refused with RabbitMQ's own answer, a user with narrow
//! permissions is allowed and refused operation by operation exactly as RabbitMQ allows and
//! refuses her (same reply codes and texts), and the export gives the hashes back unchanged.

mod common;

use common::process::{start, stop};
use common::rabbitmq::RabbitMq;
use common::{passive_queue, reply_code, reply_text};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Command;

fn definitions(action: &str, file: &Path, data: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["definitions", action])
        .arg(file)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "definitions {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Connects as `user`; the refusal's reply code and text if refused.
async fn login(port: u16, user: &str, password: &str) -> Result<(), (u16, String)> {
    let url = format!("amqp://{user}:{password}@127.0.0.1:{port}/%2f");
    match Connection::connect(&url, ConnectionProperties::default()).await {
        Ok(conn) => {
            let _ = conn.close(200, "bye".into()).await;
            Ok(())
        }
        Err(e) => Err((reply_code(&e), reply_text(&e))),
    }
}

type Operation = for<'a> fn(&'a Channel) -> Pin<Box<dyn Future<Output = lapin::Result<()>> + 'a>>;

/// What carol (configure `^carol\.`, write `^carol\.|amq\.default`, read `^carol\.|shared`)
/// tries, each on a fresh channel.
const OPERATIONS: &[(&str, Operation)] = &[
    ("declare her queue", |ch| {
        Box::pin(async move { declare(ch, "carol.q").await })
    }),
    ("declare another queue", |ch| {
        Box::pin(async move { declare(ch, "other.q2").await })
    }),
    ("declare her exchange", |ch| {
        Box::pin(async move {
            ch.exchange_declare(
                "carol.x".into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
        })
    }),
    ("declare another exchange", |ch| {
        Box::pin(async move {
            ch.exchange_declare(
                "other.x".into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
        })
    }),
    ("bind her queue to her exchange", |ch| {
        Box::pin(async move {
            ch.queue_bind(
                "carol.q".into(),
                "carol.x".into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
    }),
    ("bind her queue to amq.topic (no read on it)", |ch| {
        Box::pin(async move {
            ch.queue_bind(
                "carol.q".into(),
                "amq.topic".into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
    }),
    ("get from a shared queue (read allowed)", |ch| {
        Box::pin(async move {
            ch.basic_get("shared.q".into(), BasicGetOptions::default())
                .await
                .map(drop)
        })
    }),
    ("get from another queue", |ch| {
        Box::pin(async move {
            ch.basic_get("other.q".into(), BasicGetOptions::default())
                .await
                .map(drop)
        })
    }),
    ("consume from another queue", |ch| {
        Box::pin(async move {
            ch.basic_consume(
                "other.q".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(drop)
        })
    }),
    ("purge another queue", |ch| {
        Box::pin(async move {
            ch.queue_purge("other.q".into(), QueuePurgeOptions::default())
                .await
                .map(drop)
        })
    }),
    ("delete another queue", |ch| {
        Box::pin(async move {
            ch.queue_delete("other.q".into(), QueueDeleteOptions::default())
                .await
                .map(drop)
        })
    }),
    ("publish to the default exchange, confirmed", |ch| {
        Box::pin(async move { publish_confirmed(ch, "").await })
    }),
    ("publish to amq.topic (no write on it), confirmed", |ch| {
        Box::pin(async move { publish_confirmed(ch, "amq.topic").await })
    }),
    (
        "declare her exchange with amq.topic as alternate (no write on it)",
        |ch| {
            Box::pin(async move {
                ch.exchange_declare(
                    "carol.ae".into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions::default(),
                    args("alternate-exchange", "amq.topic"),
                )
                .await
            })
        },
    ),
    (
        "declare her queue dead-lettering to amq.direct (no write on it)",
        |ch| {
            Box::pin(async move {
                ch.queue_declare(
                    "carol.dl".into(),
                    QueueDeclareOptions::default(),
                    args("x-dead-letter-exchange", "amq.direct"),
                )
                .await
                .map(drop)
            })
        },
    ),
    (
        "declare her queue dead-lettering to the default exchange",
        |ch| {
            Box::pin(async move {
                ch.queue_declare(
                    "carol.dl2".into(),
                    QueueDeclareOptions::default(),
                    args("x-dead-letter-exchange", ""),
                )
                .await
                .map(drop)
            })
        },
    ),
    ("declare her topic exchange", |ch| {
        Box::pin(async move {
            ch.exchange_declare(
                "carol.t".into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
        })
    }),
    ("publish to her topic exchange with her key", |ch| {
        Box::pin(async move { publish_with_key(ch, "carol.t", "carol.news").await })
    }),
    ("publish to her topic exchange with another key", |ch| {
        Box::pin(async move { publish_with_key(ch, "carol.t", "other.news").await })
    }),
    ("bind to her topic exchange with her key", |ch| {
        Box::pin(async move { bind_with_key(ch, "carol.#").await })
    }),
    ("bind to her topic exchange with another key", |ch| {
        Box::pin(async move { bind_with_key(ch, "other.#").await })
    }),
    ("delete her queue", |ch| {
        Box::pin(async move {
            ch.queue_delete("carol.q".into(), QueueDeleteOptions::default())
                .await
                .map(drop)
        })
    }),
];

fn args(key: &str, value: &str) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert(
        key.into(),
        lapin::types::AMQPValue::LongString(value.into()),
    );
    table
}

async fn declare(ch: &Channel, name: &str) -> lapin::Result<()> {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .map(drop)
}

async fn bind_with_key(ch: &Channel, key: &str) -> lapin::Result<()> {
    ch.queue_bind(
        "carol.q".into(),
        "carol.t".into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

async fn publish_confirmed(ch: &Channel, exchange: &str) -> lapin::Result<()> {
    publish_with_key(ch, exchange, "carol.q").await
}

async fn publish_with_key(ch: &Channel, exchange: &str, key: &str) -> lapin::Result<()> {
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        b"hi",
        BasicProperties::default(),
    )
    .await?
    .await?;
    // A refused publish closes the channel: the next call says why.
    ch.basic_qos(1, BasicQosOptions::default()).await
}

/// Runs one operation as carol on its own connection: Ok, or the reply code and text.
async fn as_carol(port: u16, op: Operation) -> Result<(), (u16, String)> {
    let url = format!("amqp://carol:pw@127.0.0.1:{port}/%2f");
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let result = op(&ch).await.map_err(|e| (reply_code(&e), reply_text(&e)));
    let _ = conn.close(200, "bye".into()).await;
    result
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_users_log_in_unchanged_and_are_refused_as_rabbitmq_refuses_them() {
    let rabbit = RabbitMq::start();
    rabbit.rabbitmqctl(&["add_user", "alice", "s3cret pass"]);
    rabbit.rabbitmqctl(&["set_permissions", "-p", "/", "alice", ".*", ".*", ".*"]);
    rabbit.rabbitmqctl(&["set_user_tags", "alice", "monitoring"]);
    rabbit.rabbitmqctl(&["add_user", "bob", "pw"]);
    rabbit.rabbitmqctl(&["add_user", "carol", "pw"]);
    rabbit.rabbitmqctl(&[
        "set_permissions",
        "-p",
        "/",
        "carol",
        "^carol\\.",
        "^carol\\.|amq\\.default",
        "^carol\\.|shared",
    ]);
    rabbit.rabbitmqctl(&[
        "set_topic_permissions",
        "-p",
        "/",
        "carol",
        "carol.t",
        "^carol\\.",
        "^{username}\\.",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("rabbit.json");
    // To stdout: the node (Debian runs it as user rabbitmq) cannot write in our temp dir.
    let json = rabbit.rabbitmqctl(&["export_definitions", "-"]);
    std::fs::write(&exported, json).unwrap();

    let data = dir.path().join("data");
    definitions("import", &exported, &data);
    let mut server = start(&data, &dir.path().join("log"), &[]);
    let ours = port_of(&server.url);

    for port in [rabbit.port(), ours] {
        assert_eq!(login(port, "alice", "s3cret pass").await, Ok(()));
        assert_eq!(login(port, "guest", "guest").await, Ok(()));
    }
    let wrong_password = login(ours, "alice", "s3cret").await.unwrap_err();
    let unknown_user = login(ours, "mallory", "s3cret pass").await.unwrap_err();
    assert_eq!(wrong_password.0, 403);
    assert_eq!(
        wrong_password, unknown_user,
        "a wrong password and an unknown user get the same answer"
    );
    assert_eq!(
        login(rabbit.port(), "alice", "s3cret").await.unwrap_err().0,
        403
    );
    let theirs = login(rabbit.port(), "bob", "pw").await.unwrap_err();
    let ours_bob = login(ours, "bob", "pw").await.unwrap_err();
    assert_eq!(ours_bob, theirs, "no permissions on the vhost");
    assert_eq!(ours_bob.0, 530);

    // Per operation, carol is allowed and refused the same way on both brokers.
    for port in [rabbit.port(), ours] {
        let guest = Connection::connect(
            &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let ch = guest.create_channel().await.unwrap();
        for q in ["shared.q", "other.q"] {
            common::declare_queue(&ch, q).await;
        }
    }
    let mut differences = Vec::new();
    for (name, op) in OPERATIONS {
        let theirs = as_carol(rabbit.port(), *op).await;
        let got = as_carol(ours, *op).await;
        eprintln!("{name:<50} bloodbank {got:?} / rabbitmq {theirs:?}");
        if got != theirs {
            differences.push(format!("{name}: bloodbank {got:?}, rabbitmq {theirs:?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));

    stop(&mut server);
    let back = dir.path().join("back.json");
    definitions("export", &back, &data);
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let user = |file: &serde_json::Value, name: &str| {
        file["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("user {name} missing"))
    };
    let (theirs, ours) = (read(&exported), read(&back));
    for name in ["alice", "bob", "carol", "guest"] {
        let (a, b) = (user(&theirs, name), user(&ours, name));
        assert_eq!(a["password_hash"], b["password_hash"]);
        assert_eq!(a["hashing_algorithm"], b["hashing_algorithm"]);
        assert_eq!(a["tags"], b["tags"]);
    }
    let sorted = |file: &serde_json::Value| {
        let mut all = file["permissions"].as_array().unwrap().clone();
        all.sort_by_key(|p| (p["vhost"].to_string(), p["user"].to_string()));
        all
    };
    assert_eq!(sorted(&theirs), sorted(&ours));
}

#[tokio::test]
async fn a_fresh_data_dir_has_guest_as_rabbitmq_does_and_an_md5_hash_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data, &dir.path().join("log"), &[]);
    assert_eq!(login(port_of(&server.url), "guest", "guest").await, Ok(()));
    stop(&mut server);

    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        r#"{"users":[{"name":"legacy","password_hash":"aGVsbG8gd29ybGQh","hashing_algorithm":"rabbit_password_hashing_md5","tags":""}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["definitions", "import"])
        .arg(&old)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("legacy") && err.contains("rabbit_password_hashing_md5"),
        "{err}"
    );
}

#[tokio::test]
async fn an_address_that_keeps_failing_to_log_in_is_slowed_down_and_the_right_password_still_works()
{
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &dir.path().join("log"), &[]);
    let port = port_of(&server.url);
    for _ in 0..5 {
        assert_eq!(login(port, "guest", "wrong").await.unwrap_err().0, 403);
    }
    // Past five failures a minute, every attempt from the address waits first.
    let began = std::time::Instant::now();
    assert_eq!(login(port, "guest", "wrong").await.unwrap_err().0, 403);
    assert!(
        began.elapsed() >= std::time::Duration::from_millis(400),
        "the sixth failure was answered without a pause"
    );
    assert_eq!(login(port, "guest", "guest").await, Ok(()));
}

/// Vhosts come from a definitions file as RabbitMQ exports them: each is its own namespace
/// with its own `amq.*` exchanges, reached by the users permitted there, and what is declared
/// in it durably survives a restart in it.
#[tokio::test]
async fn vhosts_from_definitions_are_separate_namespaces_for_their_users() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("defs.json");
    let defs = serde_json::json!({
        // guest as a RabbitMQ 3.10 node exported it (the password is "guest").
        "users": [{"name": "guest", "password_hash": "8sFIvpzV8wmDSTX5C4Inr1Wg/FBEV2IAwjqjulp8Dkd6y9NP", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]}],
        "vhosts": [{"name": "/"}, {"name": "prod"}],
        "permissions": [
            {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "guest", "vhost": "prod", "configure": ".*", "write": ".*", "read": ".*"}
        ]
    });
    std::fs::write(&file, defs.to_string()).unwrap();
    definitions("import", &file, &data);
    let log = dir.path().join("log");
    let mut server = start(&data, &log, &[]);
    let port = port_of(&server.url);
    let connect = |vhost: &'static str| async move {
        Connection::connect(
            &format!("amqp://guest:guest@127.0.0.1:{port}/{vhost}"),
            ConnectionProperties::default(),
        )
        .await
        .unwrap()
    };
    let (root, prod) = (connect("%2f").await, connect("prod").await);
    let (root_ch, prod_ch) = (
        root.create_channel().await.unwrap(),
        prod.create_channel().await.unwrap(),
    );
    for ch in [&root_ch, &prod_ch] {
        ch.queue_declare(
            "jobs".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let confirm = ConfirmSelectOptions::default();
    prod_ch.confirm_select(confirm).await.unwrap();
    prod_ch
        .basic_publish(
            "amq.direct".into(),
            "none".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    prod_ch
        .basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            b"in prod",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let count = |ch: &Channel| {
        let ch = ch.clone();
        async move { passive_queue(&ch, "jobs").await.unwrap().message_count() }
    };
    assert_eq!((count(&root_ch).await, count(&prod_ch).await), (0, 1));
    let missing = Connection::connect(
        &format!("amqp://guest:guest@127.0.0.1:{port}/staging"),
        ConnectionProperties::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(reply_code(&missing), 530);
    drop((root, prod));
    stop(&mut server);

    let server = start(&data, &log, &[]);
    let port = port_of(&server.url);
    let prod = Connection::connect(
        &format!("amqp://guest:guest@127.0.0.1:{port}/prod"),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let got = prod
        .create_channel()
        .await
        .unwrap()
        .basic_get("jobs".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the persistent message of vhost prod");
    assert_eq!(got.delivery.data, b"in prod");
}
