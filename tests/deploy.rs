//! `deploy/`: the compose file is one `docker-compose` accepts (no container runtime runs in
//! CI; tests/cluster.rs runs the same topology from Debian's packages), and the systemd unit
//! is one `systemd-analyze verify` accepts, whose command line serves with its configuration.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{get, post_json};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

#[test]
fn the_compose_file_is_valid() {
    assert!(
        Path::new("/usr/bin/docker-compose").exists(),
        "this test needs Debian's docker-compose (scripts/test installs it)"
    );
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(deploy("compose.yaml"))
        .arg("config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let config = String::from_utf8_lossy(&out.stdout);
    for service in [
        "rabbitmq-1:",
        "rabbitmq-2:",
        "rabbitmq-3:",
        "redis:",
        "bloodbank-1:",
        "bloodbank-2:",
    ] {
        assert!(
            config.contains(&format!("\n  {service}\n")),
            "{service}: {config}"
        );
    }
    // The files it mounts are there.
    for file in [
        "rabbitmq/rabbitmq.conf",
        "rabbitmq/definitions.json",
        "bloodbank.toml",
        "Dockerfile",
    ] {
        assert!(deploy(file).exists(), "{file}");
    }
}

#[test]
fn the_systemd_unit_verifies_and_its_command_serves() {
    assert!(
        Path::new("/usr/bin/systemd-analyze").exists(),
        "this test needs systemd-analyze (Debian's systemd; scripts/test installs it)"
    );
    let unit = std::fs::read_to_string(deploy("systemd/bloodbank.service")).unwrap();
    let bin = env!("CARGO_BIN_EXE_bloodbank");
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().join("bloodbank.service");
    std::fs::write(&here, unit.replace("/usr/local/bin/bloodbank", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&here)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");

    // Its ExecStart, with the configuration beside the unit and only the listeners and the
    // data directory moved (flags win over the file) so that it runs here.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/bloodbank"));
    let args: Vec<String> = words
        .map(|w| match w {
            "/etc/bloodbank/bloodbank.toml" => deploy("systemd/bloodbank.toml")
                .to_string_lossy()
                .into_owned(),
            w => w.to_string(),
        })
        .collect();
    let ready = dir.path().join("ready.json");
    let child = Command::new(bin)
        .args(&args)
        .args(["--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--ready-file"])
        .arg(&ready)
        .args([
            "--amqp-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
            "--speech-listen",
            "127.0.0.1:0",
            "--stomp-listen",
            "127.0.0.1:0",
            "--stomp-ws-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = common::process::KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "no ready file");
        std::thread::sleep(Duration::from_millis(10));
    }
    let listening: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let http = listening["http"].as_str().unwrap();
    assert_eq!(get(http, "/health").status, 200);
    let meeting = serde_json::json!({
        "event_type": "theboard.meeting.created", "timestamp": "2024-01-15T10:30:00Z",
        "meeting_id": "550e8400-e29b-41d4-a716-446655440000", "topic": "deploy",
        "strategy": "multi_agent", "max_rounds": 5,
    });
    let without = post_json(http, "/events/theboard.meeting.created", &meeting, &[]);
    assert_eq!(without.status, 401, "the configured API key is required");
    let with = post_json(
        http,
        "/events/theboard.meeting.created",
        &meeting,
        &[("X-API-Key", "change-me")],
    );
    assert_eq!(with.status, 200, "{}", String::from_utf8_lossy(&with.body));

    // SIGTERM (the unit's KillSignal) ends it cleanly.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
}
