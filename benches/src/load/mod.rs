//! The end-to-end AMQP load test: publishers and consumers over real connections against one
//! broker, reporting sustained rates, latency percentiles and backlog growth.
//!
//! - `scenario`: what to run (publishers, consumers, size, persistence, confirm window,
//!   prefetch, rate, fan-out, duration)
//! - `topology`: the exchange and queues a run declares and deletes
//! - `publisher`, `consumer`: the clients
//! - `report`: what a run measured, and tables comparing two brokers

pub mod consumer;
pub mod publisher;
pub mod report;
pub mod scenario;
pub mod topology;

pub use report::Report;
pub use scenario::Scenario;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters and histograms shared by every client of one run.
pub struct Meter {
    /// Time base for the timestamps carried in message bodies.
    pub epoch: Instant,
    /// Clients count only while this is set (after the warm-up).
    pub measuring: AtomicBool,
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub consumed: AtomicU64,
    /// Publish-to-consume latency, microseconds.
    pub end_to_end: Mutex<hdrhistogram::Histogram<u64>>,
    /// Publish-to-confirm latency, microseconds.
    pub confirm: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Meter {
    fn new() -> Meter {
        let histogram = || hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        Meter {
            epoch: Instant::now(),
            measuring: AtomicBool::new(false),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            end_to_end: Mutex::new(histogram()),
            confirm: Mutex::new(histogram()),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn on(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    pub fn count(&self, counter: &AtomicU64) {
        if self.on() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record(&self, histogram: &Mutex<hdrhistogram::Histogram<u64>>, micros: u64) {
        if self.on() {
            if let Ok(mut h) = histogram.lock() {
                let _ = h.record(micros.max(1));
            }
        }
    }
}

/// Runs one scenario against the broker at `url`.
pub async fn run(url: &str, scenario: &Scenario) -> Result<Report, lapin::Error> {
    let meter = Arc::new(Meter::new());
    let stop = Arc::new(AtomicBool::new(false));
    let queues = topology::declare(url, scenario).await?;
    let mut consumers = Vec::new();
    for q in &queues {
        for _ in 0..scenario.consumers {
            consumers.push(consumer::start(url, q, scenario, meter.clone(), stop.clone()).await?);
        }
    }
    let mut publishers = Vec::new();
    for i in 0..scenario.publishers {
        publishers.push(tokio::spawn(publisher::run(
            url.to_string(),
            i,
            scenario.clone(),
            meter.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(scenario.warmup)).await;
    let backlog_before = topology::backlog(url, &queues).await?;
    meter.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(scenario.seconds)).await;
    meter.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let backlog_after = topology::backlog(url, &queues).await?;
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        let _ = tokio::time::timeout(Duration::from_secs(30), p).await;
    }
    for c in consumers {
        c.stop().await;
    }
    if !scenario.keep {
        topology::delete(url, &queues, scenario).await?;
    }
    Ok(Report::new(&meter, elapsed, backlog_before, backlog_after))
}
