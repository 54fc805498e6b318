//! A real `bloodbank serve` child process, for tests that kill it or watch its memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The HTTP gateway's address (host:port).
    pub http: String,
    /// The management API's URL (none without an embedded broker).
    pub management: Option<String>,
    pub log: PathBuf,
}

/// Starts `bloodbank serve` on a free port with `data` as its data directory, appending its
/// log to `log`, with `extra` flags.
pub fn start(data: &Path, log: &Path, extra: &[&str]) -> Server {
    start_in(Path::new("."), data, log, extra)
}

/// `bloodbank serve` on `data`, every listener on a free port of 127.0.0.1.
pub fn serve_command(data: &Path) -> Command {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_bloodbank"));
    serve.args(["serve", "--data-dir"]).arg(data);
    for listener in [
        "amqp",
        "gateway",
        "speech",
        "management",
        "stomp",
        "stomp-ws",
    ] {
        serve.arg(format!("--{listener}-listen")).arg("127.0.0.1:0");
    }
    serve
}

/// [`start`] with `cwd` as the working directory.
pub fn start_in(cwd: &Path, data: &Path, log: &Path, extra: &[&str]) -> Server {
    let ready = data.with_extension("ready");
    let _ = std::fs::remove_file(&ready);
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = serve_command(data)
        .arg("--ready-file")
        .arg(&ready)
        .args(extra)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("bloodbank starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "no ready file: {}", read(log));
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = std::fs::read_to_string(&ready).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    Server {
        child,
        // No embedded broker (--broker-url) means no AMQP address.
        url: json["amqp"]
            .as_str()
            .map(|a| format!("amqp://guest:guest@{a}/%2f"))
            .unwrap_or_default(),
        http: json["http"].as_str().unwrap().to_string(),
        management: json["management"].as_str().map(|a| format!("http://{a}")),
        log: log.to_path_buf(),
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn kill9(server: &mut Server) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    let _ = server.child.wait();
}

/// SIGTERM, and the process must exit 0.
pub fn stop(server: &mut Server) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit {status}: {}", read(&server.log));
}

/// The process's resident memory in bytes.
pub fn rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

impl Drop for Server {
    /// A test that fails half-way must not leave its broker running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when the test ends, passed or failed.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
