//! A real RabbitMQ node (Debian's `rabbitmq-server`) on free ports in a directory of its
//! own, stopped when dropped. `scripts/test` installs the package.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RabbitMq {
    pub port: u16,
    node: String,
    dist_port: u16,
    dir: tempfile::TempDir,
    /// A rabbitmq.conf of its own, if any.
    config: Option<std::path::PathBuf>,
    child: Option<Child>,
}

/// A port nothing listens on, and that this process has not handed out before: nodes
/// started side by side must not be given one another's AMQP or distribution port (the
/// kernel may give a port just released to the next `bind`).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

impl RabbitMq {
    pub fn start() -> RabbitMq {
        let mut rabbit = RabbitMq::prepare();
        rabbit.start_node();
        rabbit
    }

    /// A node not started yet: its name, ports and directory.
    fn prepare() -> RabbitMq {
        assert!(
            Path::new("/usr/sbin/rabbitmq-server").exists(),
            "these tests need Debian's rabbitmq-server (scripts/test installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        // Debian's rabbitmq-server drops to the rabbitmq user when started as root.
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:"])
            .arg(dir.path())
            .status();
        let (port, dist_port) = (free_port(), free_port());
        // Tests of one binary run in parallel: each node needs a name of its own.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let node = format!("bbtest{}n{n}@localhost", std::process::id());
        RabbitMq {
            port,
            node,
            dist_port,
            dir,
            config: None,
            child: None,
        }
    }

    /// `n` nodes that form one cluster by themselves, as deploy/compose.yaml's do: each boots
    /// with `conf` (a rabbitmq.conf in which `rabbit@rabbitmq-N` names the nodes and
    /// `/etc/rabbitmq/definitions.json` the definitions file) and `definitions`. They start
    /// one after the other, each joining the ones before (two nodes joining at once were seen
    /// to lose sight of each other once the first went down).
    pub fn cluster_from(conf: &str, definitions: &Path, n: usize) -> Vec<RabbitMq> {
        let mut nodes: Vec<RabbitMq> = (0..n).map(|_| RabbitMq::prepare()).collect();
        let mut conf = conf.to_string();
        for (i, node) in nodes.iter().enumerate() {
            conf = conf.replace(&format!("rabbit@rabbitmq-{}", i + 1), &node.node);
        }
        for node in &mut nodes {
            let defs = node.dir.path().join("definitions.json");
            std::fs::copy(definitions, &defs).unwrap();
            let file = node.dir.path().join("rabbitmq.conf");
            let text = conf.replace("/etc/rabbitmq/definitions.json", defs.to_str().unwrap());
            std::fs::write(&file, text).unwrap();
            let _ = Command::new("chmod")
                .arg("644")
                .arg(&defs)
                .arg(&file)
                .status();
            node.config = Some(file);
        }
        for node in &mut nodes {
            node.start_node();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = nodes[0].rabbitmqctl(&["cluster_status", "--formatter", "json"]);
            let status: serde_json::Value = serde_json::from_str(&status).unwrap();
            if status["running_nodes"].as_array().map_or(0, |r| r.len()) == n {
                break;
            }
            assert!(Instant::now() < deadline, "no cluster of {n}: {status}");
            std::thread::sleep(Duration::from_millis(200));
        }
        nodes
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.path().join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.path().join("plugins"),
            );
        if let Some(config) = &self.config {
            c.env("RABBITMQ_CONFIG_FILE", config);
        }
        c
    }

    pub fn url(&self) -> String {
        self.url_as("guest", "guest")
    }

    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("amqp://{user}:{password}@127.0.0.1:{}/%2f", self.port)
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "rabbitmq-server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The listener opens before the node has finished booting (the first publish of a
        // test was once refused): wait for the boot to complete as well.
        let booted = self
            .command("rabbitmqctl")
            .args(["-q", "await_startup"])
            .output()
            .unwrap();
        assert!(
            booted.status.success(),
            "{} did not boot: {}",
            self.node,
            String::from_utf8_lossy(&booted.stderr)
        );
    }

    /// `rabbitmqctl` with these arguments, which must succeed; what it printed.
    pub fn rabbitmqctl(&self, args: &[&str]) -> String {
        let out = self
            .command("rabbitmqctl")
            .arg("-q")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether this value started the node and has not stopped it.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The last `lines` lines of the node's log, for a failing test to show.
    pub fn log_tail(&self, lines: usize) -> String {
        let dir = self.dir.path().join("log");
        let mut text = String::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            text += &format!("== {} ==\n", entry.path().display());
            text += &all[all.len().saturating_sub(lines)..].join("\n");
            text += "\n";
        }
        text
    }

    /// The node's AMQP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the whole node (`rabbitmqctl stop`), as a machine going down would.
    pub fn stop_node(&mut self) {
        if let Some(mut child) = self.halt() {
            let _ = child.wait();
        }
    }

    /// SIGKILL to the node's Erlang VM (the process Debian's script starts as the rabbitmq
    /// user, found by the node name in its environment), as a crash or the OOM killer would.
    pub fn kill_node(&mut self) {
        let name = format!("RABBITMQ_NODENAME={}", self.node);
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let ours = environ.split(|b| *b == 0).any(|v| v == name.as_bytes());
            if ours && String::from_utf8_lossy(&cmdline).contains("beam") {
                // SAFETY: kill(2) on a process of the node this value started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "{} outlived SIGKILL", self.node);
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `rabbitmqctl stop`; the node's process, if it was running.
    fn halt(&mut self) -> Option<Child> {
        let _ = self
            .command("rabbitmqctl")
            .args(["-q", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.child.take()
    }

    /// Starts the node (again, with its data, after [`RabbitMq::stop_node`]).
    pub fn start_node(&mut self) {
        self.spawn();
        self.wait_until_up();
    }

    fn spawn(&mut self) {
        self.child = Some(
            self.command("rabbitmq-server")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    /// `rabbitmqctl stop_app` (the node stays, AMQP goes away) or `start_app`.
    pub fn ctl(&self, action: &str) {
        let ok = self
            .command("rabbitmqctl")
            .args(["-q", action])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "rabbitmqctl {action}");
        if action == "start_app" {
            self.wait_until_up();
        }
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        if let Some(mut child) = self.halt() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
