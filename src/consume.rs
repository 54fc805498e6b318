//! `bloodbank consume --queue Q --bind PATTERN --exec CMD`: a consumer service without a
//! client library. Each event is handed to `sh -c CMD` (the message body on stdin); exit 0
//! acks, anything else retries through the kits' delay queues and finally dead-letters (the
//! gateway's `retry::Worker`, which webhook deliveries run on too; docs/CONSUMERS.md).
//! Reconnects with backoff; SIGTERM or Ctrl-C stops after the event in hand.

use bloodbank_gateway::retry::{Broker, Failure, Handler, Item, Next, Topology, Worker};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How much of a failed command's stderr a dead letter keeps (the end of it).
const ERROR_TAIL: usize = 2000;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// The queue (durable, quorum), with its delay queues `Q.retry.<ms>` and `Q.dlq`.
    #[arg(long)]
    pub queue: String,
    /// Bind the queue to the exchange with this topic pattern (repeat for more).
    #[arg(long = "bind", required = true)]
    pub binds: Vec<String>,
    /// Run for each event with `sh -c`: the message body on stdin, BLOODBANK_ROUTING_KEY,
    /// BLOODBANK_ATTEMPT, BLOODBANK_MESSAGE_ID and BLOODBANK_QUEUE in the environment.
    /// Exit 0 acks; anything else is a failure.
    #[arg(long)]
    pub exec: String,
    /// Attempts before an event is dead-lettered.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Waits before the 2nd, 3rd... attempt, in milliseconds (the last repeats).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,60000")]
    pub backoff_ms: Vec<u64>,
    /// A command still running after this many seconds is killed (a failure).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Returns after which the broker itself dead-letters an event (this process died on it).
    #[arg(long, default_value_t = 20)]
    pub delivery_limit: u32,
    /// Stop after this many events (acked, retried or dead-lettered).
    #[arg(long)]
    pub count: Option<u64>,
    /// The broker [default: as `bloodbank tail` finds it].
    #[arg(long, env = "BLOODBANK_AMQP_URL", hide_env_values = true)]
    pub amqp: Option<String>,
    #[arg(long, env = "BLOODBANK_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    #[arg(long, default_value = "events")]
    pub exchange: String,
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.max_attempts >= 1, "--max-attempts must be at least 1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(consume(args))
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let url = crate::config::amqp_url(args.amqp.as_deref(), args.config.as_deref())?;
    let (stop_tx, mut stop) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let on_signal = stop_tx.clone();
    tokio::spawn(async move {
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = on_signal.send(true);
    });
    let worker = Worker {
        broker: Broker::External(url.clone()),
        exchange: args.exchange.clone(),
        patterns: args.binds.clone(),
        topology: Topology {
            queue: args.queue.clone(),
            max_attempts: args.max_attempts,
            backoff_ms: args.backoff_ms.clone(),
            delivery_limit: args.delivery_limit,
        },
        service: args.queue.clone(),
        handler: Command {
            exec: args.exec.clone(),
            queue: args.queue.clone(),
            timeout: Duration::from_secs(args.timeout),
            count: args.count,
            handled: AtomicU64::new(0),
            stop: stop_tx,
        },
    };
    let shown = bloodbank_gateway::redact(&url);
    let mut wait = Duration::from_millis(500);
    let opened = loop {
        match worker.open().await {
            Ok(queue) => break queue,
            Err(e) => {
                eprintln!("consume: {shown}: {e}; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return Ok(()),
                }
                wait = (wait * 2).min(Duration::from_secs(15));
            }
        }
    };
    eprintln!(
        "consuming {} (bound to {} on {}); Ctrl-C to stop",
        args.queue,
        args.binds.join(", "),
        args.exchange
    );
    worker.run(Some(opened), stop).await;
    Ok(())
}

/// Runs the command for each message.
struct Command {
    exec: String,
    queue: String,
    timeout: Duration,
    count: Option<u64>,
    handled: AtomicU64,
    stop: Arc<watch::Sender<bool>>,
}

impl Handler for Command {
    async fn handle(&self, item: &Item, key: &str, attempt: u32) -> Result<(), (Failure, String)> {
        let is_envelope =
            serde_json::from_slice::<serde_json::Value>(&item.body).is_ok_and(|v| v.is_object());
        if !is_envelope {
            let why = "the body is not a JSON object".to_string();
            return Err((Failure::InvalidEnvelope, why));
        }
        self.run_command(item, key, attempt)
            .await
            .map_err(|why| (Failure::Handler, why))
    }

    fn settled(&self, key: &str, attempt: u32, next: &Next, error: &str) {
        match next {
            Next::Ack => eprintln!("ok {key} (attempt {attempt})"),
            Next::Retry { .. } => eprintln!("failed {key} (attempt {attempt}): {error}; retrying"),
            Next::Dead { queue, reason } => {
                eprintln!("dead-lettering {key} to {queue} ({reason}): {error}")
            }
        }
        let handled = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        if self.count.is_some_and(|c| handled >= c) {
            let _ = self.stop.send(true);
        }
    }
}

impl Command {
    /// Runs the command for one message; Err says why it failed (exit status and the end of
    /// its stderr).
    async fn run_command(&self, item: &Item, key: &str, attempt: u32) -> Result<(), String> {
        let message_id = item
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.exec)
            .env("BLOODBANK_ROUTING_KEY", key)
            .env("BLOODBANK_ATTEMPT", attempt.to_string())
            .env("BLOODBANK_MESSAGE_ID", message_id)
            .env("BLOODBANK_QUEUE", &self.queue)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start `sh -c {}`: {e}", self.exec))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input is its own business.
            let _ = stdin.write_all(&item.body).await;
        }
        let mut stderr = child.stderr.take();
        let tail = async move {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Some(Ok(n @ 1..)) = match stderr.as_mut() {
                Some(s) => Some(s.read(&mut buf).await),
                None => None,
            } {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > ERROR_TAIL {
                    kept.drain(..kept.len() - ERROR_TAIL);
                }
            }
            String::from_utf8_lossy(&kept).trim().to_string()
        };
        let reader = tokio::spawn(tail);
        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        if status.is_err() {
            let _ = child.kill().await;
        }
        // A grandchild may still hold stderr open: what came within a second is enough.
        let tail = match tokio::time::timeout(Duration::from_secs(1), reader).await {
            Ok(Ok(tail)) => tail,
            _ => String::new(),
        };
        match status {
            Ok(Ok(s)) if s.success() => Ok(()),
            Ok(Ok(s)) => Err(format!("{s}: {tail}")),
            Ok(Err(e)) => Err(format!("waiting for the command: {e}")),
            Err(_) => Err(format!(
                "timed out after {} s: {tail}",
                self.timeout.as_secs()
            )),
        }
    }
}
