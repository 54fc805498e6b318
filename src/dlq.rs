//! `bloodbank dlq list|show|replay|purge`: dead-letter triage. `list` asks the management API
//! which queues hold dead letters; the others work over AMQP, so they also work against a
//! RabbitMQ. A dead letter's reason, attempts and error come from the kits' headers
//! (`retry.rs`) or, for one the broker dead-lettered, from its `x-death`.

use crate::manage::Api;
use anyhow::Context;
use bloodbank_gateway::retry::{self, int, string};
use lapin::message::BasicGetMessage;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{json, Value};

/// Where the AMQP commands connect.
#[derive(clap::Args, Debug, Clone)]
pub struct Amqp {
    /// The broker [default: as `bloodbank tail` finds it].
    #[arg(long, env = "BLOODBANK_AMQP_URL", hide_env_values = true)]
    pub amqp: Option<String>,
    #[arg(long, env = "BLOODBANK_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// Queues holding dead letters (named `*.dlq` or `*_dlq`, or another queue's
    /// dead-letter target) and how many each holds.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: Api,
    },
    /// The first dead letters of a queue with reason, attempts and error; they stay queued.
    Show {
        queue: String,
        #[arg(long, default_value_t = 20)]
        count: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        amqp: Amqp,
    },
    /// Publish dead letters back to the exchange and routing key they first came with, as a
    /// first attempt again (all of them, or the first --count).
    Replay {
        queue: String,
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        amqp: Amqp,
    },
    /// Remove every dead letter of a queue.
    Purge {
        queue: String,
        #[command(flatten)]
        amqp: Amqp,
    },
}

pub fn run(command: DlqCommand) -> anyhow::Result<()> {
    if let DlqCommand::List { json, api } = &command {
        return list(api, *json);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            DlqCommand::List { .. } => Ok(()),
            DlqCommand::Show {
                queue,
                count,
                json,
                amqp,
            } => show(&amqp, &queue, count, json).await,
            DlqCommand::Replay { queue, count, amqp } => replay(&amqp, &queue, count).await,
            DlqCommand::Purge { queue, amqp } => {
                let (_conn, ch) = connect(&amqp).await?;
                let n = ch
                    .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                    .await
                    .with_context(|| format!("purging {queue}"))?;
                println!("purged {n} dead letters from {queue}");
                Ok(())
            }
        }
    })
}

fn list(api: &Api, as_json: bool) -> anyhow::Result<()> {
    let queues = api.call("GET", "/queues", None)?;
    let queues = queues.as_array().cloned().unwrap_or_default();
    let targets: Vec<String> = queues
        .iter()
        .filter_map(|q| q["arguments"]["x-dead-letter-routing-key"].as_str())
        .map(str::to_string)
        .collect();
    let dead: Vec<Value> = queues
        .into_iter()
        .filter(|q| {
            let name = q["name"].as_str().unwrap_or_default();
            name.ends_with(".dlq") || name.ends_with("_dlq") || targets.iter().any(|t| t == name)
        })
        .map(|q| json!({"vhost": q["vhost"], "name": q["name"], "messages": q["messages"]}))
        .collect();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&dead)?);
        return Ok(());
    }
    println!("{:<8} {:<48} {:>8}", "vhost", "queue", "messages");
    for q in &dead {
        println!(
            "{:<8} {:<48} {:>8}",
            q["vhost"].as_str().unwrap_or_default(),
            q["name"].as_str().unwrap_or_default(),
            q["messages"]
        );
    }
    Ok(())
}

async fn connect(amqp: &Amqp) -> anyhow::Result<(Connection, Channel)> {
    let url = crate::config::amqp_url(amqp.amqp.as_deref(), amqp.config.as_deref())?;
    let conn = bloodbank_gateway::connect(&url)
        .await
        .with_context(|| format!("connecting to {}", bloodbank_gateway::redact(&url)))?;
    let ch = conn.create_channel().await?;
    Ok((conn, ch))
}

/// What a dead letter says about itself.
fn describe(m: &BasicGetMessage) -> Value {
    let d = &m.delivery;
    let headers = d.properties.headers().clone().unwrap_or_default();
    let h = |k: &str| headers.inner().get(k);
    let death = first_death(&headers);
    let from_death = |k: &str| death.as_ref().and_then(|t| t.inner().get(k).cloned());
    let reason = h(retry::DEAD_REASON)
        .and_then(string)
        .or_else(|| from_death("reason").as_ref().and_then(string));
    let attempts = h(retry::ATTEMPTS)
        .and_then(int)
        .or_else(|| from_death("count").as_ref().and_then(int));
    let (exchange, key) = origin(&headers).unwrap_or_default();
    let body: Value = serde_json::from_slice(&d.data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&d.data).into()));
    let event_type = d
        .properties
        .kind()
        .as_ref()
        .map(|s| s.to_string())
        .or_else(|| body["event_type"].as_str().map(str::to_string))
        .or_else(|| body["type"].as_str().map(str::to_string));
    json!({
        "reason": reason,
        "attempts": attempts,
        "error": h(retry::ERROR).and_then(string),
        "exchange": exchange,
        "routing_key": key,
        "event_type": event_type,
        "message_id": d.properties.message_id().as_ref().map(|s| s.to_string()),
        "body": body,
    })
}

fn first_death(headers: &FieldTable) -> Option<FieldTable> {
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(deaths) => match deaths.as_slice().last()? {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The exchange and routing key a dead letter was first published with.
fn origin(headers: &FieldTable) -> Option<(String, String)> {
    let h = |k: &str| headers.inner().get(k).and_then(string);
    if let Some(key) = h(retry::ORIGINAL_ROUTING_KEY) {
        return Some((h(retry::ORIGINAL_EXCHANGE).unwrap_or_default(), key));
    }
    let death = first_death(headers)?;
    let exchange = death.inner().get("exchange").and_then(string)?;
    let key = match death.inner().get("routing-keys")? {
        AMQPValue::FieldArray(keys) => keys.as_slice().first().and_then(string)?,
        _ => return None,
    };
    Some((exchange, key))
}

async fn show(amqp: &Amqp, queue: &str, count: usize, as_json: bool) -> anyhow::Result<()> {
    let (conn, ch) = connect(amqp).await?;
    let mut shown = Vec::new();
    while shown.len() < count {
        let got = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .with_context(|| format!("reading {queue}"))?;
        let Some(m) = got else { break };
        shown.push(describe(&m));
    }
    // Closing the channel puts them all back, in their places.
    let _ = conn.close(200, "bye".into()).await;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    for d in &shown {
        println!(
            "{} {} -> {}:{} reason={} attempts={}\n    {}",
            d["message_id"].as_str().unwrap_or("-"),
            d["event_type"].as_str().unwrap_or("-"),
            d["exchange"].as_str().unwrap_or_default(),
            d["routing_key"].as_str().unwrap_or("-"),
            d["reason"].as_str().unwrap_or("-"),
            d["attempts"],
            d["error"].as_str().unwrap_or("")
        );
    }
    eprintln!("{} dead letters shown from {queue}", shown.len());
    Ok(())
}

async fn replay(amqp: &Amqp, queue: &str, count: Option<u64>) -> anyhow::Result<()> {
    let (conn, ch) = connect(amqp).await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut replayed = 0u64;
    let mut kept = 0u64;
    // Only what is there now: a replay that fails again must not be replayed twice.
    let waiting = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("no queue {queue}"))?
        .message_count();
    let limit = count.unwrap_or(u64::MAX).min(waiting.into());
    while replayed + kept < limit {
        let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let headers = m.delivery.properties.headers().clone().unwrap_or_default();
        let Some((exchange, key)) = origin(&headers) else {
            // Held unacknowledged until the end (so the next get moves on), then put back.
            eprintln!("a dead letter without its origin stays in {queue}");
            kept += 1;
            continue;
        };
        let mut clean = FieldTable::default();
        for (k, v) in headers.inner() {
            let k_str = k.as_str();
            if !retry::BOOKKEEPING.contains(&k_str)
                && k_str != retry::ORIGINAL_ROUTING_KEY
                && k_str != retry::ORIGINAL_EXCHANGE
            {
                clean.insert(k.clone(), v.clone());
            }
        }
        let props: BasicProperties = m.delivery.properties.clone().with_headers(clean);
        let confirm = ch
            .basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                &m.delivery.data,
                props,
            )
            .await?
            .await?;
        anyhow::ensure!(confirm.is_ack(), "the broker refused the replay to {key}");
        m.delivery.ack(BasicAckOptions::default()).await?;
        replayed += 1;
    }
    let _ = conn.close(200, "bye".into()).await;
    println!("replayed {replayed} dead letters from {queue}");
    if kept > 0 {
        println!("{kept} without an origin stayed");
    }
    Ok(())
}
