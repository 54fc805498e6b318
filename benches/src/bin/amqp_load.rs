//! `amqp-load`: confirmed-publish throughput against any AMQP 0.9.1 broker.
//!
//! N publishers, each on its own connection and channel in confirm mode, publish fixed-size
//! messages to one durable queue for a fixed time, keeping up to `window` publishes
//! unconfirmed. Prints confirmed messages per second. The queue is deleted afterwards.

use clap::Parser;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Broker URL.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// delivery_mode 2.
    #[arg(long)]
    persistent: bool,
    /// How long to publish, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unconfirmed publishes allowed per publisher.
    #[arg(long, default_value_t = 256)]
    window: usize,
    #[arg(long, default_value = "amqp-load")]
    queue: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let setup = Connection::connect(&args.url, ConnectionProperties::default()).await?;
    let ch = setup.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_delete(args.queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    ch.queue_declare(args.queue.as_str().into(), durable, FieldTable::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.publishers)
        .map(|_| tokio::spawn(publisher(args.clone(), deadline)))
        .collect();
    let mut confirmed = 0u64;
    for t in tasks {
        confirmed += t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    ch.queue_delete(args.queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    println!(
        "publishers={} size={} persistent={} confirmed={} seconds={:.2} msgs_per_sec={:.0}",
        args.publishers,
        args.size,
        args.persistent,
        confirmed,
        elapsed,
        confirmed as f64 / elapsed
    );
    Ok(())
}

async fn publisher(args: Args, deadline: Instant) -> Result<u64, lapin::Error> {
    let conn = Connection::connect(&args.url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = vec![b'x'; args.size];
    let props = if args.persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let mut inflight = VecDeque::new();
    let mut confirmed = 0u64;
    while Instant::now() < deadline {
        let confirm = ch
            .basic_publish(
                "".into(),
                args.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props.clone(),
            )
            .await?;
        inflight.push_back(confirm);
        if inflight.len() >= args.window {
            if let Some(c) = inflight.pop_front() {
                if c.await?.is_ack() {
                    confirmed += 1;
                }
            }
        }
    }
    for c in inflight {
        if c.await?.is_ack() {
            confirmed += 1;
        }
    }
    conn.close(200, "done".into()).await?;
    Ok(confirmed)
}
