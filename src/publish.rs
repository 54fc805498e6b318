//! `bloodbank publish EVENT_TYPE --data JSON|@FILE`: publish through a gateway over HTTP and
//! print the envelope it answers with (or its error, with a non-zero exit).

use anyhow::{bail, Context};
use bloodbank_gateway::client;

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// The event type (routing key), e.g. theboard.meeting.created.
    pub event_type: String,
    /// The payload: JSON text, or @FILE to read it from a file (@- for stdin).
    #[arg(long)]
    pub data: String,
    /// The event this one follows from (X-Correlation-ID).
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Publish once even if retried (Idempotency-Key).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// The gateway.
    #[arg(long, env = "BLOODBANK_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    #[arg(long, env = "BLOODBANK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

pub fn run(args: PublishArgs) -> anyhow::Result<()> {
    let data = match args.data.strip_prefix('@') {
        Some("-") => {
            std::io::read_to_string(std::io::stdin()).context("reading the payload from stdin")?
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the payload from {path}"))?,
        None => args.data.clone(),
    };
    let payload: serde_json::Value =
        serde_json::from_str(&data).context("the payload is not JSON")?;
    let (addr, prefix) = client::split_url(&args.url).map_err(anyhow::Error::msg)?;
    let mut headers = vec![("Content-Type", "application/json")];
    for (name, value) in [
        ("X-Correlation-ID", &args.correlation_id),
        ("Idempotency-Key", &args.idempotency_key),
        ("X-API-Key", &args.api_key),
    ] {
        if let Some(v) = value {
            headers.push((name, v.as_str()));
        }
    }
    let path = format!("{prefix}/v1/events/{}", args.event_type);
    let response = client::request(
        &addr,
        "POST",
        &path,
        &headers,
        payload.to_string().as_bytes(),
    )
    .with_context(|| format!("talking to the gateway at {}", args.url))?;
    let body: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| String::from_utf8_lossy(&response.body).into());
    println!("{}", serde_json::to_string_pretty(&body)?);
    if response.status != 200 {
        bail!("the gateway answered {}", response.status);
    }
    Ok(())
}
