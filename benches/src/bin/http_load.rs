//! `http_load`: publishes through a Bloodbank gateway over HTTP at a fixed rate (each request
//! validated against its contract and answered after the broker's confirm) and reports the
//! achieved rate and latency percentiles; `--find-sustained` searches for the highest rate
//! it keeps up with (p99 under the seed's 50 ms).
//!
//!     http_load --addr 127.0.0.1:8000 --rate 5000 --connections 32

use bloodbank_bench::http::run::{run, Outcome, Plan};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// The gateway's host:port; several gateways comma-separated (the connections are spread
    /// over them).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// Requests per second in total.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Keep-alive connections sharing the rate.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Search for the highest sustained rate: double from --rate, then bisect.
    #[arg(long)]
    find_sustained: bool,
    /// Before running, declare a durable queue `http_load` (newest 100,000 kept) bound to the
    /// published events on this broker, so every event is stored persistently.
    #[arg(long)]
    amqp: Option<String>,
    /// Declare that queue as a quorum queue (on a RabbitMQ cluster).
    #[arg(long)]
    quorum: bool,
}

async fn declare_sink(url: &str, quorum: bool) -> Result<(), lapin::Error> {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(100_000));
    if quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    ch.queue_declare(
        "http_load".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    ch.queue_bind(
        "http_load".into(),
        "events".into(),
        "calendar.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    conn.close(200, "ok".into()).await
}

fn plan(args: &Args, rate: u64) -> Plan {
    let body = br#"{"summary":"Load test","start_time":"2024-01-15T10:00:00Z","end_time":"2024-01-15T11:00:00Z","location":"Room 1"}"#;
    Plan {
        addrs: args.addr.split(',').map(|a| a.trim().to_string()).collect(),
        path: "/events/calendar".into(),
        body: body.to_vec(),
        connections: args.connections,
        rate,
        seconds: args.seconds,
        warmup: args.warmup,
    }
}

fn row(o: &Outcome) -> String {
    format!(
        "| {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        o.rate,
        o.achieved,
        o.errors,
        o.ms(0.5),
        o.ms(0.9),
        o.ms(0.99),
        o.ms(0.999)
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(url) = &args.amqp {
        if let Err(e) = declare_sink(url, args.quorum).await {
            eprintln!("http_load: declaring the sink queue on {url}: {e}");
            std::process::exit(1);
        }
    }
    println!("| target req/s | achieved req/s | errors | p50 ms | p90 ms | p99 ms | p99.9 ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    if !args.find_sustained {
        println!("{}", row(&run(&plan(&args, args.rate)).await));
        return;
    }
    let (mut good, mut bad) = (0u64, None::<u64>);
    let mut rate = args.rate;
    loop {
        let outcome = run(&plan(&args, rate)).await;
        println!("{}", row(&outcome));
        if outcome.sustained() {
            good = rate;
        } else {
            bad = Some(rate);
        }
        rate = match bad {
            None => rate * 2,
            Some(b) if b - good > (b / 10).max(250) => (good + b) / 2,
            Some(_) => break,
        };
    }
    println!("\nhighest sustained: {good} req/s");
}
