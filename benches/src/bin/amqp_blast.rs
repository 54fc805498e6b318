//! `amqp_blast`: the pipelined load generator, against one broker, optionally a second in
//! the same run, and optionally its own null sink (the generator's ceiling).
//!
//!     amqp_blast --url amqp://guest:guest@127.0.0.1:5690/%2f --pid 1234 \
//!         --against amqp://guest:guest@127.0.0.1:5680/%2f --against-pid 5678 --autoack

use bloodbank_bench::blast::{self, Blast, Outcome};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    url: Option<String>,
    #[arg(long, default_value = "Bloodbank")]
    name: String,
    /// The broker's process id, to report its CPU per message.
    #[arg(long)]
    pid: Option<String>,
    #[arg(long)]
    against: Option<String>,
    #[arg(long, default_value = "RabbitMQ")]
    against_name: String,
    #[arg(long)]
    against_pid: Option<String>,
    /// Also run against the built-in null sink.
    #[arg(long)]
    null_sink: bool,
    #[arg(long)]
    title: Option<String>,
    /// Print the table header.
    #[arg(long)]
    header: bool,
    #[command(flatten)]
    blast: Blast,
}

fn row(name: &str, o: &Outcome) -> String {
    let us = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    let rss = o
        .rss_bytes_per_msg
        .map(|b| format!(" {b:.0} |"))
        .unwrap_or_default();
    let err = o
        .error
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    format!(
        "| {name}{err} | {:.0} | {:.0} | {} | {:.2} |{rss}",
        o.published_per_s,
        o.consumed_per_s,
        us(o.broker_us_per_msg),
        o.generator_us_per_msg
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(title) = &args.title {
        println!("**{title}**\n");
    }
    if args.header || args.title.is_some() {
        let (rss, rule) = match args.blast.count {
            Some(_) => (" broker RSS bytes per queued message |", "---:|"),
            None => ("", ""),
        };
        println!("| target | published msg/s | consumed msg/s | broker CPU us/msg | generator CPU us/msg |{rss}");
        println!("|---|---:|---:|---:|---:|{rule}");
    }
    if args.null_sink {
        let addr = blast::sink::start(args.blast.size)?;
        let o = blast::run(&format!("amqp://guest:guest@{addr}/%2f"), None, &args.blast)?;
        println!("{}", row("null sink (generator ceiling)", &o));
    }
    let mut results = Vec::new();
    if let Some(url) = &args.url {
        let o = blast::run(url, args.pid.as_deref(), &args.blast)?;
        println!("{}", row(&args.name, &o));
        results.push(o);
    }
    if let Some(url) = &args.against {
        let o = blast::run(url, args.against_pid.as_deref(), &args.blast)?;
        println!("{}", row(&args.against_name, &o));
        results.push(o);
    }
    if let [a, b] = &results[..] {
        let rate = |o: &Outcome| {
            if args.blast.consumers > 0 {
                o.consumed_per_s
            } else {
                o.published_per_s
            }
        };
        let less = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) if x > 0.0 => format!("{:.1}x less", y / x),
            _ => "-".into(),
        };
        let cpu = less(a.broker_us_per_msg, b.broker_us_per_msg);
        let rss = match args.blast.count {
            Some(_) => format!(" {} |", less(a.rss_bytes_per_msg, b.rss_bytes_per_msg)),
            None => String::new(),
        };
        println!(
            "| {} advantage | {:.1}x | | {cpu} | |{rss}",
            args.name,
            rate(a) / rate(b).max(1.0)
        );
    }
    Ok(())
}
