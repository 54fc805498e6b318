//! `bloodbank consume --queue Q --bind PATTERN --exec CMD`: a consumer service without a
//! client library. Each event is handed to `sh -c CMD` (the message body on stdin); exit 0
//! acks, anything else retries through the kits' delay queues and finally dead-letters
//! (`retry.rs`, docs/CONSUMERS.md). Reconnects with backoff; SIGTERM or Ctrl-C stops after
//! the event in hand.

use anyhow::Context;
use bloodbank_gateway::retry::{self, Failure, Next, Topology};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Why a session ended.
enum End {
    /// Asked to stop, or --count reached.
    Done,
    Lost(anyhow::Error),
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let url = match &args.amqp {
        Some(url) => url.clone(),
        None => crate::config::local_amqp_url(args.config.as_deref())?,
    };
    let topology = Topology {
        queue: args.queue.clone(),
        max_attempts: args.max_attempts,
        backoff_ms: args.backoff_ms.clone(),
        delivery_limit: args.delivery_limit,
    };
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = stop_tx.send(true);
    });
    let mut handled = 0u64;
    let mut wait = Duration::from_millis(500);
    loop {
        match session(&args, &url, &topology, &mut handled, &mut stop).await {
            End::Done => return Ok(()),
            End::Lost(e) => {
                eprintln!("consume: {e:#}; reconnecting in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return Ok(()),
                }
                wait = (wait * 2).min(Duration::from_secs(15));
            }
        }
    }
}

async fn session(
    args: &ConsumeArgs,
    url: &str,
    topology: &Topology,
    handled: &mut u64,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let (conn, ch, mut consumer) = match open(args, url, topology).await {
        Ok(open) => open,
        Err(e) => return End::Lost(e),
    };
    eprintln!(
        "consuming {} (bound to {} on {}); Ctrl-C to stop",
        args.queue,
        args.binds.join(", "),
        args.exchange
    );
    let end = loop {
        if *stop.borrow() || args.count.is_some_and(|c| *handled >= c) {
            break End::Done;
        }
        let delivery = tokio::select! {
            d = consumer.next() => d,
            _ = stop.changed() => continue,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => break End::Lost(e.into()),
            None => break End::Lost(anyhow::anyhow!("the broker ended the consumer")),
        };
        if let Err(e) = handle(args, topology, &ch, delivery).await {
            break End::Lost(e);
        }
        *handled += 1;
    };
    let _ = conn.close(200, "bye".into()).await;
    end
}

async fn open(
    args: &ConsumeArgs,
    url: &str,
    topology: &Topology,
) -> anyhow::Result<(Connection, Channel, lapin::Consumer)> {
    let shown = crate::tail::redact(url);
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to {shown}"))?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.basic_qos(1, BasicQosOptions::default()).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        args.exchange.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(topology.dlq().as_str().into(), durable, topology.dlq_args())
        .await?;
    for ms in topology.delays() {
        let name = topology.retry_queue(ms);
        ch.queue_declare(name.as_str().into(), durable, topology.retry_args(ms))
            .await?;
    }
    ch.queue_declare(args.queue.as_str().into(), durable, topology.work_args())
        .await?;
    for pattern in &args.binds {
        ch.queue_bind(
            args.queue.as_str().into(),
            args.exchange.as_str().into(),
            pattern.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    let consumer = ch
        .basic_consume(
            args.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((conn, ch, consumer))
}

/// One event: run the command, then ack, retry or dead-letter. An error is the connection's.
async fn handle(
    args: &ConsumeArgs,
    topology: &Topology,
    ch: &Channel,
    delivery: Delivery,
) -> anyhow::Result<()> {
    let headers = delivery.properties.headers().clone();
    let attempt = retry::attempt(headers.as_ref());
    // A retried event arrives through its delay queue: its own routing key is in a header.
    let key = headers
        .as_ref()
        .and_then(|h| h.inner().get(retry::ORIGINAL_ROUTING_KEY))
        .and_then(retry::string)
        .unwrap_or_else(|| delivery.routing_key.to_string());
    let is_envelope =
        serde_json::from_slice::<serde_json::Value>(&delivery.data).is_ok_and(|v| v.is_object());
    let outcome = match is_envelope {
        false => Err((
            Failure::InvalidEnvelope,
            "the body is not a JSON object".to_string(),
        )),
        true => run_command(args, &delivery, &key, attempt)
            .await
            .map_err(|why| (Failure::Handler, why)),
    };
    let (failure, error) = match outcome {
        Ok(()) => (None, String::new()),
        Err((f, why)) => (Some(f), why),
    };
    let exchange = delivery.exchange.to_string();
    let copy = |extra: &[(&str, AMQPValue)]| {
        let headers = retry::copy_headers(headers.as_ref(), &exchange, &key, extra);
        delivery.properties.clone().with_headers(headers)
    };
    match topology.next(attempt, failure) {
        Next::Ack => eprintln!("ok {key} (attempt {attempt})"),
        Next::Retry { queue, attempt: n } => {
            eprintln!("failed {key} (attempt {attempt}): {error}; retrying");
            let props = copy(&[
                (retry::ATTEMPT, AMQPValue::LongLongInt(n.into())),
                ("x-last-error", retry::text(&error)),
            ]);
            publish(ch, &queue, &delivery.data, props).await?;
        }
        Next::Dead { queue, reason } => {
            eprintln!("dead-lettering {key} to {queue} ({reason}): {error}");
            let props = copy(&[
                (retry::DEAD_REASON, retry::text(reason)),
                (retry::ERROR, retry::text(&error)),
                (retry::ATTEMPTS, AMQPValue::LongLongInt(attempt.into())),
                ("x-service", retry::text(&args.queue)),
            ]);
            publish(ch, &queue, &delivery.data, props).await?;
        }
    }
    delivery.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// Publishes to a queue through the default exchange and waits for the broker's confirm.
pub async fn publish(
    ch: &Channel,
    queue: &str,
    body: &[u8],
    props: BasicProperties,
) -> anyhow::Result<()> {
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            props.with_delivery_mode(2),
        )
        .await?
        .await?;
    anyhow::ensure!(confirm.is_ack(), "the broker refused the copy for {queue}");
    Ok(())
}

/// Runs the command for one delivery; Err says why it failed (exit status and the end of
/// its stderr).
async fn run_command(
    args: &ConsumeArgs,
    delivery: &Delivery,
    key: &str,
    attempt: u32,
) -> Result<(), String> {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&args.exec)
        .env("BLOODBANK_ROUTING_KEY", key)
        .env("BLOODBANK_ATTEMPT", attempt.to_string())
        .env("BLOODBANK_MESSAGE_ID", message_id)
        .env("BLOODBANK_QUEUE", &args.queue)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `sh -c {}`: {e}", args.exec))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is its own business.
        let _ = stdin.write_all(&delivery.data).await;
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
    let status = tokio::time::timeout(Duration::from_secs(args.timeout), child.wait()).await;
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
        Err(_) => Err(format!("timed out after {} s: {tail}", args.timeout)),
    }
}
