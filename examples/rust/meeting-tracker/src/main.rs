//! theboard meeting tracker: a 33GOD consumer built on the generated Rust kit.
//!
//! It follows meetings on the bus: `theboard.meeting.created` starts tracking one,
//! `theboard.meeting.round_completed` counts its rounds and `theboard.meeting.completed`
//! closes it. A round of a meeting it has not seen created fails (the creation may still be
//! on its way): the kit retries it with backoff and, when the meeting never appears,
//! dead-letters it. Rounds are counted by (round, agent), so a redelivered event is not
//! counted twice. Each state change is printed as one JSON line; `--health-port` serves the
//! kit's health report.
//!
//! `src/events/` is what `bloodbank schemas generate --lang rust --out src/events` wrote
//! (`registry/tests/generated_rust.rs` compiles it too and checks it is current).

#[rustfmt::skip]
mod events;

use clap::Parser;
use events::consumer::{Envelope, HandlerResult, Service};
use events::theboard::{MeetingCompletedV1, MeetingCreatedV1, MeetingRoundCompletedV1};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@localhost:5672/%2f")]
    url: String,
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    #[arg(long, num_args = 1.., default_values_t = [1000, 10_000, 60_000])]
    backoff_ms: Vec<u64>,
    #[arg(long)]
    health_port: Option<u16>,
}

#[derive(Default)]
struct Meeting {
    rounds: BTreeSet<(i64, String)>,
    done: bool,
}

type Meetings = Arc<Mutex<HashMap<String, Meeting>>>;

fn emit(line: serde_json::Value) {
    println!("{line}");
}

fn unknown(id: &str) -> HandlerResult {
    Err(format!("meeting {id} is not known (yet)").into())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut service = Service::new("meeting-tracker", args.url);
    service.max_attempts = args.max_attempts;
    service.backoff_ms = args.backoff_ms;
    let meetings: Meetings = Arc::default();

    let m = meetings.clone();
    service.handles(
        "theboard.meeting.created",
        move |event: Envelope<MeetingCreatedV1>| {
            let m = m.clone();
            async move {
                let id = event.data.meeting_id.clone();
                m.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(id.clone())
                    .or_default();
                emit(
                    json!({"event": "created", "meeting": id, "topic": event.data.topic,
                            "shape": event.shape.as_str()}),
                );
                Ok(())
            }
        },
    );
    let m = meetings.clone();
    service.handles(
        "theboard.meeting.round_completed",
        move |event: Envelope<MeetingRoundCompletedV1>| {
            let m = m.clone();
            async move {
                let r = &event.data;
                let mut meetings = m.lock().unwrap_or_else(|p| p.into_inner());
                let Some(meeting) = meetings.get_mut(&r.meeting_id) else {
                    return unknown(&r.meeting_id);
                };
                meeting.rounds.insert((r.round_num, r.agent_name.clone()));
                emit(json!({"event": "round", "meeting": r.meeting_id,
                            "rounds": meeting.rounds.len(), "shape": event.shape.as_str()}));
                Ok(())
            }
        },
    );
    let m = meetings.clone();
    service.handles(
        "theboard.meeting.completed",
        move |event: Envelope<MeetingCompletedV1>| {
            let m = m.clone();
            async move {
                let id = &event.data.meeting_id;
                let mut meetings = m.lock().unwrap_or_else(|p| p.into_inner());
                let Some(meeting) = meetings.get_mut(id) else {
                    return unknown(id);
                };
                meeting.done = true;
                emit(json!({"event": "completed", "meeting": id, "rounds": meeting.rounds.len()}));
                Ok(())
            }
        },
    );

    let health = service.health();
    let running = tokio::spawn(service.run());
    health.connected().await;
    if let Some(port) = args.health_port {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        emit(json!({"event": "health", "port": listener.local_addr()?.port()}));
        tokio::spawn(health.serve(listener));
    }
    emit(json!({"event": "ready"}));
    running.await?;
    Ok(())
}
