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
