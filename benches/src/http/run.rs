//! An open-loop run: `connections` keep-alive connections share a fixed total rate; latency
//! is measured from each request's scheduled time (so a stall counts against every request
//! it delays, no coordinated omission).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::Conn;

#[derive(Debug, Clone)]
pub struct Plan {
    /// Gateways (host:port); connection i goes to the i-th modulo their number.
    pub addrs: Vec<String>,
    pub path: String,
    pub body: Vec<u8>,
    pub connections: usize,
    /// Requests per second in total.
    pub rate: u64,
    pub seconds: f64,
    pub warmup: f64,
}

#[derive(Debug)]
pub struct Outcome {
    pub rate: u64,
    pub achieved: f64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

impl Outcome {
    /// Kept up: at least 97% of the target rate, no errors, and p99 within the seed's 50 ms
    /// (requests that queue up behind a saturated server show as latency, not lost rate).
    pub fn sustained(&self) -> bool {
        self.errors == 0
            && self.achieved >= 0.97 * self.rate as f64
            && self.latency_us.value_at_quantile(0.99) < 50_000
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

pub async fn run(plan: &Plan) -> Outcome {
    let per_conn = plan.rate as f64 / plan.connections as f64;
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(plan.warmup);
    let end = measure_from + Duration::from_secs_f64(plan.seconds);
    let mut tasks = Vec::new();
    for i in 0..plan.connections {
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let (mut done, mut errors) = (0u64, 0u64);
            let addr = &plan.addrs[i % plan.addrs.len()];
            let Ok(mut conn) = Conn::open(addr).await else {
                return (hist, 0, 1);
            };
            let interval = Duration::from_secs_f64(1.0 / per_conn);
            // Stagger the connections across one interval.
            let mut due = start + interval.mul_f64(i as f64 / plan.connections as f64);
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let ok = matches!(conn.post_json(&plan.path, &plan.body).await, Ok(200));
                let now = Instant::now();
                if due >= measure_from {
                    if ok {
                        let _ = hist.record(now.duration_since(due).as_micros().max(1) as u64);
                        done += 1;
                    } else {
                        errors += 1;
                    }
                }
                if !ok {
                    match Conn::open(addr).await {
                        Ok(c) => conn = c,
                        Err(_) => break,
                    }
                }
                due += interval;
            }
            (hist, done, errors)
        }));
    }
    let mut latency_us =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let (mut done, mut errors) = (0u64, 0u64);
    for task in tasks {
        if let Ok((h, d, e)) = task.await {
            let _ = latency_us.add(&h);
            done += d;
            errors += e;
        }
    }
    Outcome {
        rate: plan.rate,
        achieved: done as f64 / plan.seconds,
        errors,
        latency_us,
    }
}
