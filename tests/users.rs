//! Users from RabbitMQ: a real RabbitMQ node gets users with `rabbitmqctl add_user`, exports
//! its definitions, and Bloodbank imports them. The same passwords log in (RabbitMQ's salted
//! hashes are checked as they are), a wrong one is refused as RabbitMQ refuses it, a user
//! without permissions on the vhost is refused with RabbitMQ's own answer, and the export
//! gives the hashes back unchanged.

mod common;

use common::process::{start, stop};
use common::rabbitmq::RabbitMq;
use common::{reply_code, reply_text};
use lapin::{Connection, ConnectionProperties};
use std::path::Path;
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
    for name in ["alice", "bob", "guest"] {
        let (a, b) = (user(&theirs, name), user(&ours, name));
        assert_eq!(a["password_hash"], b["password_hash"]);
        assert_eq!(a["hashing_algorithm"], b["hashing_algorithm"]);
        assert_eq!(a["tags"], b["tags"]);
    }
    assert_eq!(theirs["permissions"], ours["permissions"]);
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
