//! Message rates, sampled the way RabbitMQ's management plugin does: every few seconds the
//! counters are read, and a rate is the change since the previous sample per second. The
//! last hour of samples of the broker-wide rates is kept for the dashboard's charts.

use bloodbank_broker::{Admin, QueueStats, Totals};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// RabbitMQ's default `collect_statistics_interval`.
pub const INTERVAL: Duration = Duration::from_secs(5);
const HISTORY: usize = 720;

/// One reading of the counters.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    totals: Totals,
    confirmed: u64,
    queues: HashMap<(String, String), (QueueStats, u64, u64, u64)>,
}

impl Sample {
    fn take(admin: &Admin) -> Sample {
        let queues = admin
            .queues()
            .into_iter()
            .map(|q| {
                (
                    (q.vhost, q.name),
                    (q.stats, q.ready + q.unacked, q.ready, q.unacked),
                )
            })
            .collect();
        Sample {
            at: Instant::now(),
            totals: admin.totals(),
            confirmed: admin.confirmed(),
            queues,
        }
    }
}

/// The broker-wide rates at one moment, per second.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    pub publish: f64,
    pub deliver_get: f64,
    pub ack: f64,
    pub confirm: f64,
}

#[derive(Debug, Default)]
struct State {
    previous: Option<Sample>,
    latest: Option<Sample>,
    history: VecDeque<Point>,
}

/// The sampler's readings; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    state: Arc<RwLock<State>>,
}

fn per_second(now: u64, before: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    let rate = (now as f64 - before as f64) / seconds;
    (rate * 10.0).round() / 10.0
}

impl Rates {
    /// Samples now and then every [`INTERVAL`] while the returned task runs.
    pub fn start(admin: Admin) -> (Rates, tokio::task::JoinHandle<()>) {
        let rates = Rates::default();
        rates.sample(&admin);
        let task = {
            let rates = rates.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(INTERVAL);
                every.tick().await;
                loop {
                    every.tick().await;
                    rates.sample(&admin);
                }
            })
        };
        (rates, task)
    }

    fn sample(&self, admin: &Admin) {
        let sample = Sample::take(admin);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if let Some(latest) = state.latest.take() {
            let dt = sample.at.duration_since(latest.at).as_secs_f64();
            let (t, p) = (&sample.totals, &latest.totals);
            let point = Point {
                at: bloodbank_broker::clock::now_ms(),
                publish: per_second(t.received, p.received, dt),
                deliver_get: per_second(t.delivered(), p.delivered(), dt),
                ack: per_second(t.acknowledged, p.acknowledged, dt),
                confirm: per_second(sample.confirmed, latest.confirmed, dt),
            };
            if state.history.len() == HISTORY {
                state.history.pop_front();
            }
            state.history.push_back(point);
            state.previous = Some(latest);
        }
        state.latest = Some(sample);
    }

    /// The broker-wide rates of the last interval.
    pub fn now(&self) -> Point {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.history.back().copied().unwrap_or_default()
    }

    /// The broker-wide rates over the last `seconds`.
    pub fn history(&self, seconds: u64) -> Vec<Point> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let n = (seconds / INTERVAL.as_secs()).max(1) as usize;
        let skip = state.history.len().saturating_sub(n);
        state.history.iter().skip(skip).copied().collect()
    }

    /// A queue's `message_stats` (with `*_details.rate`) and the rates of its depths
    /// (`messages`, `messages_ready`, `messages_unacknowledged`), from the last two samples.
    pub fn queue(&self, vhost: &str, name: &str, stats: &QueueStats) -> (Value, [f64; 3]) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let key = (vhost.to_string(), name.to_string());
        let pair = state
            .previous
            .as_ref()
            .zip(state.latest.as_ref())
            .and_then(|(p, l)| {
                let dt = l.at.duration_since(p.at).as_secs_f64();
                Some((p.queues.get(&key)?, l.queues.get(&key)?, dt))
            });
        let (before, after, dt) = match pair {
            Some((p, l, dt)) => (p.0, l.0, dt),
            None => (QueueStats::default(), QueueStats::default(), 0.0),
        };
        let depth = match pair {
            Some((p, l, dt)) => [
                per_second(l.1, p.1, dt),
                per_second(l.2, p.2, dt),
                per_second(l.3, p.3, dt),
            ],
            None => [0.0; 3],
        };
        let field = |now: u64, then: u64| json!({"rate": per_second(now, then, dt)});
        let stats = json!({
            "publish": stats.publish,
            "publish_details": field(after.publish, before.publish),
            "deliver_get": stats.deliver_get(),
            "deliver_get_details": field(after.deliver_get(), before.deliver_get()),
            "deliver": stats.deliver,
            "deliver_details": field(after.deliver, before.deliver),
            "deliver_no_ack": stats.deliver_no_ack,
            "deliver_no_ack_details": field(after.deliver_no_ack, before.deliver_no_ack),
            "get": stats.get,
            "get_details": field(after.get, before.get),
            "get_no_ack": stats.get_no_ack,
            "get_no_ack_details": field(after.get_no_ack, before.get_no_ack),
            "redeliver": stats.redeliver,
            "redeliver_details": field(after.redeliver, before.redeliver),
            "ack": stats.ack,
            "ack_details": field(after.ack, before.ack),
        });
        (stats, depth)
    }
}
