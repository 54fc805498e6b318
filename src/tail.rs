//! `bloodbank tail [PATTERN]`: print events from the `events` exchange as they arrive, through
//! a queue of its own that goes away with it.

use anyhow::Context;
use bloodbank_gateway::{amqp_subscription, redact};
use futures_lite::StreamExt;

#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// Topic pattern of the event types to show.
    #[arg(default_value = "#")]
    pub pattern: String,
    /// The broker [default: the one `bloodbank serve` runs with the same configuration
    /// (--config, BLOODBANK_AMQP_LISTEN, BLOODBANK_BROKER_URL), else 127.0.0.1:5672 as guest].
    #[arg(long, env = "BLOODBANK_AMQP_URL", hide_env_values = true)]
    pub amqp: Option<String>,
    /// The TOML file `serve` is started with, to find its broker.
    #[arg(long, env = "BLOODBANK_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    #[arg(long, default_value = "events")]
    pub exchange: String,
    /// One JSON object per event and line, for machines.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tail(args))
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let url = crate::config::amqp_url(args.amqp.as_deref(), args.config.as_deref())?;
    let shown = redact(&url);
    let (_conn, mut consumer) = amqp_subscription(&url, &args.exchange, &args.pattern)
        .await
        .with_context(|| format!("subscribing to {} on {shown}", args.exchange))?;
    eprintln!(
        "tailing {} on {} ({shown}); Ctrl-C to stop",
        args.pattern, args.exchange
    );
    let mut seen = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let body: serde_json::Value = serde_json::from_slice(&delivery.data)
            .unwrap_or_else(|_| String::from_utf8_lossy(&delivery.data).into());
        let p = &delivery.properties;
        let text = |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.to_string());
        if args.json {
            let line = serde_json::json!({
                "routing_key": delivery.routing_key.to_string(),
                "message_id": text(p.message_id()),
                "correlation_id": text(p.correlation_id()),
                "app_id": text(p.app_id()),
                "timestamp": p.timestamp(),
                "body": body,
            });
            println!("{line}");
        } else {
            let id = text(p.message_id()).unwrap_or_default();
            println!(
                "{} {id}\n{}",
                delivery.routing_key,
                serde_json::to_string_pretty(&body)?
            );
        }
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(())
}
