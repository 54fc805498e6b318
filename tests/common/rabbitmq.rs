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
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RabbitMq {
    pub fn start() -> RabbitMq {
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
        let mut rabbit = RabbitMq {
            port,
            node,
            dist_port,
            dir,
            child: Command::new("true").spawn().unwrap(),
        };
        rabbit.child = rabbit
            .command("rabbitmq-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rabbit.wait_until_up();
        rabbit
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
        c
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "rabbitmq-server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The listener opens before the node has finished booting (the first publish of a
        // test was once refused): wait for the boot to complete as well.
        let _ = self
            .command("rabbitmqctl")
            .args(["-q", "await_startup"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
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

    /// The node's AMQP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `n` nodes started side by side, the others joined to the first: one cluster.
    pub fn cluster(n: usize) -> Vec<RabbitMq> {
        let nodes: Vec<RabbitMq> = (0..n)
            .map(|_| std::thread::spawn(RabbitMq::start))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        for node in &nodes[1..] {
            node.rabbitmqctl(&["stop_app"]);
            node.rabbitmqctl(&["join_cluster", &nodes[0].node]);
            node.ctl("start_app");
        }
        nodes
    }

    /// Stops the whole node (`rabbitmqctl stop`), as a machine going down would.
    pub fn stop_node(&mut self) {
        let _ = self
            .command("rabbitmqctl")
            .args(["-q", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }

    /// Starts a node stopped by [`RabbitMq::stop_node`] again, with its data.
    pub fn start_node(&mut self) {
        self.child = self
            .command("rabbitmq-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.wait_until_up();
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
        let _ = self
            .command("rabbitmqctl")
            .args(["-q", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
