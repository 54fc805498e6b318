//! `tls_cost`: what TLS costs a broker, plain beside TLS: new connections per second (connect,
//! open a channel, close; 4 clients at once) and the latency of a persistent publish with its
//! confirm (one publisher, one message at a time). Run against Bloodbank and RabbitMQ in the
//! same run by `benches/compare`.
//!
//!     tls_cost --name Bloodbank --plain amqp://guest:guest@127.0.0.1:5690/%2f \
//!         --tls amqps://guest:guest@localhost:5691/%2f --ca ca.crt --seconds 5

use clap::Parser;
use hdrhistogram::Histogram;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    name: String,
    #[arg(long)]
    plain: String,
    #[arg(long)]
    tls: String,
    /// PEM CA the broker's certificate chains to.
    #[arg(long)]
    ca: std::path::PathBuf,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print the table's header first.
    #[arg(long)]
    header: bool,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn connect(url: &str, ca: &str) -> Result<Connection, Error> {
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: Some(ca.to_string()),
    };
    let runtime = lapin::runtime::default_runtime()?;
    let props = ConnectionProperties::default();
    Ok(Connection::connect_with_config(url, props, tls, runtime).await?)
}

/// Connections per second: 4 clients, each connecting, opening a channel and closing.
async fn connections(url: &str, ca: &str, seconds: u64) -> Result<f64, Error> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let clients = (0..4).map(|_| {
        let (url, ca) = (url.to_string(), ca.to_string());
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let conn = connect(&url, &ca).await?;
                // Kept until the connection closes: a dropped channel closes itself, racing
                // the connection's close.
                let _channel = conn.create_channel().await?;
                conn.close(200, "bye".into()).await?;
                n += 1;
            }
            Ok::<u64, Error>(n)
        })
    });
    let started = Instant::now();
    let mut total = 0;
    for client in clients.collect::<Vec<_>>() {
        total += client.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Publish-to-confirm latency of persistent 1 KiB messages, one at a time (us: p50, p99).
async fn confirm_latency(url: &str, ca: &str, seconds: u64) -> Result<(u64, u64), Error> {
    let conn = connect(url, ca).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let queue = ch
        .queue_declare(
            "tls_cost".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let body = vec![b'x'; 1024];
    let mut histogram = Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let sent = Instant::now();
        ch.basic_publish(
            "".into(),
            queue.name().as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
        histogram.record(sent.elapsed().as_micros() as u64)?;
    }
    ch.queue_purge(queue.name().as_str().into(), Default::default())
        .await?;
    conn.close(200, "bye".into()).await?;
    Ok((
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let ca = std::fs::read_to_string(&args.ca)?;
    let s = args.seconds;
    let plain_conns = connections(&args.plain, &ca, s).await?;
    let tls_conns = connections(&args.tls, &ca, s).await?;
    let (plain_p50, plain_p99) = confirm_latency(&args.plain, &ca, s).await?;
    let (tls_p50, tls_p99) = confirm_latency(&args.tls, &ca, s).await?;
    if args.header {
        println!(
            "| broker | connections/s plain | connections/s TLS | TLS keeps | confirm p50 plain / TLS (us) | confirm p99 plain / TLS (us) |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
    }
    println!(
        "| {} | {plain_conns:.0} | {tls_conns:.0} | {:.0}% | {plain_p50} / {tls_p50} | {plain_p99} / {tls_p99} |",
        args.name,
        100.0 * tls_conns / plain_conns.max(1e-9)
    );
    Ok(())
}
