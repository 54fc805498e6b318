//! What a new user meets when starting `bloodbank serve`: the README's configuration block
//! works, contracts are there from any directory, and a start that cannot work says why in
//! terms the user can act on.

mod common;

use common::http::{get, post_json, request, Json};
use common::process::{self, start_in};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn meeting() -> serde_json::Value {
    json!({
        "event_type": "theboard.meeting.created",
        "timestamp": "2024-01-15T10:30:00Z",
        "meeting_id": "550e8400-e29b-41d4-a716-446655440000",
        "topic": "From anywhere",
        "strategy": "simple",
        "max_rounds": 3
    })
}

/// `serve` with `args` that must fail at start: its stderr.
fn failing_serve(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .arg("serve")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const FREE_PORTS: &[&str] = &[
    "--amqp-listen",
    "127.0.0.1:0",
    "--gateway-listen",
    "127.0.0.1:0",
    "--speech-listen",
    "127.0.0.1:0",
    "--management-listen",
    "127.0.0.1:0",
    "--stomp-listen",
    "127.0.0.1:0",
    "--stomp-ws-listen",
    "127.0.0.1:0",
];

#[test]
fn the_readme_configuration_block_starts_a_server() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("README has a TOML block") + 8;
    let end = readme[start..].find("```").unwrap() + start;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bloodbank.toml");
    std::fs::write(&config, &readme[start..end]).unwrap();
    // The block's addresses and data dir are a production machine's: flags win over the file.
    let server = process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--config", config.to_str().unwrap()],
    );
    // Its API key is in force.
    let denied = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(denied.status, 401);
    let ok = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[("X-API-Key", "change-me")],
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["source"], "theboard");
}

#[test]
fn contracts_are_built_in_wherever_serve_starts() {
    let elsewhere = tempfile::tempdir().unwrap();
    let server = start_in(
        elsewhere.path(),
        &elsewhere.path().join("data"),
        &elsewhere.path().join("log"),
        &[],
    );
    let health = get(&server.http, "/health").json();
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["schemas"]["source"], "built-in");
    assert!(health["schemas"]["event_types"].as_u64().unwrap() >= 12);
    let r = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let log = process::read(&server.log);
    assert!(log.contains("event contracts loaded"), "{log}");
    assert!(log.contains("source=built-in"), "{log}");
}

#[test]
fn a_missing_contracts_directory_is_degraded_not_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-schemas");
    let server = process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--schemas", missing.to_str().unwrap()],
    );
    let health = get(&server.http, "/health").json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["schemas"]["status"], "degraded");
    assert_eq!(health["schemas"]["event_types"], 0);
    assert!(health["schemas"]["problem"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    let r = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(r.status, 404);
}

#[test]
fn a_second_serve_on_one_data_dir_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = process::start(&data, &dir.path().join("log"), &[]);
    let mut args = vec!["--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(FREE_PORTS);
    let err = failing_serve(dir.path(), &args);
    assert!(
        err.contains(&format!(
            "another bloodbank is running with data dir {} (pid {})",
            data.display(),
            first.child.id()
        )),
        "{err}"
    );
}

#[test]
fn a_busy_port_names_the_setting_that_moves_it_and_errors_say_things_once() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    for (flag, env) in [
        ("--amqp-listen", "BLOODBANK_AMQP_LISTEN"),
        ("--gateway-listen", "BLOODBANK_GATEWAY_LISTEN"),
        ("--speech-listen", "BLOODBANK_SPEECH_LISTEN"),
        ("--management-listen", "BLOODBANK_MANAGEMENT_LISTEN"),
        ("--stomp-listen", "BLOODBANK_STOMP_LISTEN"),
        ("--stomp-ws-listen", "BLOODBANK_STOMP_WS_LISTEN"),
    ] {
        let data = dir.path().join(flag.trim_start_matches('-'));
        let mut args = vec!["--data-dir", data.to_str().unwrap()];
        args.extend_from_slice(FREE_PORTS);
        args.extend_from_slice(&[flag, &busy]);
        let err = failing_serve(dir.path(), &args);
        assert!(err.contains(flag) && err.contains(env), "{err}");
        assert!(err.contains(&busy), "{err}");
        assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["schemas", "validate", "no-such-dir"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn listen_settings_take_host_names_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let server = process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        // Later flags win: the gateway listens on a host name and on a second address.
        &["--gateway-listen", "localhost:0,127.0.0.1:0"],
    );
    assert_eq!(get(&server.http, "/health").status, 200);
    let err = failing_serve(dir.path(), &["--amqp-listen", "nowhere:port"]);
    assert!(err.contains("--amqp-listen"), "{err}");
    assert!(err.contains("is not host:port"), "{err}");
}

#[test]
fn a_wrong_method_gets_405_with_the_json_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = process::start(&dir.path().join("data"), &dir.path().join("log"), &[]);
    let r = request(
        &server.http,
        "GET",
        "/events/theboard.meeting.created",
        &[],
        b"",
    );
    assert_eq!(r.status, 405);
    let body = r.json();
    assert_eq!(body["error"], "METHOD_NOT_ALLOWED");
    assert_eq!(body["details"]["allowed"], json!(["POST"]));
    let r = request(&server.http, "DELETE", "/v1/health", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["details"]["allowed"], json!(["GET"]));
}

#[test]
fn tail_finds_the_broker_its_configuration_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = process::start(&dir.path().join("data"), &dir.path().join("log"), &[]);
    let amqp = server.url.trim_start_matches("amqp://guest:guest@");
    let listen = amqp.trim_end_matches("/%2f");
    let config = dir.path().join("bloodbank.toml");
    std::fs::write(&config, format!("amqp_listen = \"{listen}\"\n")).unwrap();
    let tail = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["tail", "theboard.#", "--json", "--count", "1", "--config"])
        .arg(&config)
        .env_remove("BLOODBANK_AMQP_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Publish until tail's queue exists and it has printed the event and exited.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (done, http, pid) = (done.clone(), server.http.clone(), tail.id() as i32);
        std::thread::spawn(move || {
            for i in 0..50 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                // A new event each time (the same one again would be a replay, not published).
                let mut event = meeting();
                event["topic"] = json!(format!("tail test {i}"));
                let r = post_json(&http, "/events/theboard.meeting.created", &event, &[]);
                assert_eq!(r.status, 200);
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            // Ten seconds without a line: stop tail so that the test fails instead of hanging.
            // SAFETY: kill(2) on the test's own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })
    };
    let output = tail.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["routing_key"], "theboard.meeting.created");
}

/// A service manager may stop `serve` the moment its ready file appears: that is a clean stop
/// (exit 0), not death by SIGTERM (the handlers were once installed after the ready file was
/// written; CI caught it once).
#[test]
fn sigterm_as_soon_as_ready_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let ready = dir.path().join(format!("ready-{i}"));
        let mut child = process::serve_command(&dir.path().join(format!("data-{i}")))
            .arg("--ready-file")
            .arg(&ready)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // No sleep between looks: the signal follows the file as closely as it can.
        while !ready.exists() {
            assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "stop {i}: {status}");
    }
}

/// A segment size the message log cannot index is refused at start, naming the key and range.
#[test]
fn a_segment_size_past_1_gib_is_refused_with_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bloodbank.toml");
    std::fs::write(&config, "segment_bytes = 2147483648\n").unwrap();
    let data = dir.path().join("data");
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend(["--data-dir", data.to_str().unwrap()]);
    args.extend(FREE_PORTS);
    let err = failing_serve(dir.path(), &args);
    assert!(
        err.contains("segment_bytes 2147483648 is outside 4096..=1073741824"),
        "{err}"
    );
}
