//! `amqp_load`: one load scenario against a broker, and optionally the same scenario against
//! a second broker with the results side by side.
//!
//!     amqp_load --url amqp://127.0.0.1:5672 --against amqp://127.0.0.1:5680 \
//!         --publishers 4 --persistent --confirm-window 256

use bloodbank_bench::load::{self, report, Scenario};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// The broker under test.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    #[arg(long, default_value = "Bloodbank")]
    name: String,
    /// Run the same scenario against this broker too, and compare.
    #[arg(long)]
    against: Option<String>,
    #[arg(long, default_value = "RabbitMQ")]
    against_name: String,
    /// Title of the printed table.
    #[arg(long)]
    title: Option<String>,
    /// Instead of one run: search for the highest rate each broker sustains (consumers keep
    /// up, backlog flat), doubling from --rate (default 2000) then bisecting.
    #[arg(long)]
    find_sustained: bool,
    #[command(flatten)]
    scenario: Scenario,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| args.scenario.describe());
    if args.find_sustained {
        let a = sustained(&args.url, &args.scenario).await?;
        let mut out = format!(
            "**{title}: highest sustained rate**\n\n| broker | msg/s |\n|---|---:|\n| {} | {a} |\n",
            args.name
        );
        if let Some(url) = &args.against {
            let b = sustained(url, &args.scenario).await?;
            out.push_str(&format!("| {} | {b} |\n", args.against_name));
            out.push_str(&format!(
                "| {} advantage | {:.1}x |\n",
                args.name,
                a as f64 / b.max(1) as f64
            ));
        }
        println!("{out}");
        return Ok(());
    }
    let a = load::run(&args.url, &args.scenario).await?;
    match &args.against {
        Some(url) => {
            let b = load::run(url, &args.scenario).await?;
            println!(
                "{}",
                report::side_by_side(&title, &args.name, &a, &args.against_name, &b)
            );
        }
        None => println!("{}", report::single(&title, &args.name, &a)),
    }
    Ok(())
}

/// Whether a run kept up: consumers took (nearly) everything published and the backlog did
/// not grow by more than a sliver of it.
fn kept_up(r: &load::Report, rate: u64) -> bool {
    let published = r.published_per_s * r.seconds;
    r.published_per_s >= 0.95 * rate as f64
        && r.consumed_per_s >= 0.95 * r.published_per_s
        && (r.backlog_growth as f64) < 0.02 * published
}

/// The highest rate that kept up: double until one does not, then bisect four times.
async fn sustained(url: &str, base: &Scenario) -> Result<u64, lapin::Error> {
    let mut scenario = base.clone();
    let mut good = 0u64;
    let mut bad = None;
    let mut rate = if base.rate > 0 { base.rate } else { 2000 };
    for _ in 0..12 {
        scenario.rate = rate;
        let r = load::run(url, &scenario).await?;
        let ok = kept_up(&r, rate);
        eprintln!(
            "{url}: {rate} msg/s -> consumed {:.0}/s, backlog {:+} ({})",
            r.consumed_per_s,
            r.backlog_growth,
            if ok { "kept up" } else { "fell behind" }
        );
        if ok {
            good = rate;
        } else {
            bad = Some(rate);
        }
        rate = match bad {
            None => rate * 2,
            Some(b) if b - good > good / 16 => (good + b) / 2,
            Some(_) => break,
        };
    }
    Ok(good)
}
