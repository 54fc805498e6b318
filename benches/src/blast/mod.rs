//! `amqp_blast`: a pipelined load generator that is not the bottleneck. Publishers write
//! pre-encoded publish frames in large batches from plain threads; consumers parse deliveries
//! straight from the socket and ack a whole read with one `basic.ack multiple` (or consume
//! with no-ack). `sink` is a null broker that shows the generator's own ceiling.
//!
//! - `frames`: the handful of frames it writes and reads
//! - `client`: handshake and synchronous methods over a blocking socket
//! - `sink`: the null sink

pub mod client;
pub mod frames;
pub mod sink;

use client::{Client, Target};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What one run does.
#[derive(clap::Args, Clone, Debug)]
pub struct Blast {
    /// Publishing connections (0: consume what is there).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Consuming connections (0: publish only).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Consume with no-ack (the broker forgets a message once sent); else the consumer acks
    /// everything it read with one `basic.ack multiple` per read, within `--prefetch`.
    #[arg(long)]
    pub autoack: bool,
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Persistent messages on a durable queue.
    #[arg(long)]
    pub persistent: bool,
    /// Publishers pause while this many messages are published and not yet consumed
    /// (with consumers), so a run measures a rate both sides sustain.
    #[arg(long, default_value_t = 500_000)]
    pub max_backlog: u64,
    /// Caps the queue (`x-max-length`, oldest dropped), for publish-only runs.
    #[arg(long)]
    pub max_length: Option<i32>,
    /// Publishers put their channel in confirm mode and keep at most this many messages
    /// unconfirmed each (0: no confirms).
    #[arg(long, default_value_t = 0)]
    pub confirm: u64,
    /// Messages per second in total (default: flat out).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Messages per write.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    #[arg(long, default_value = "blast")]
    pub queue: String,
    /// Publish exactly this many messages (confirmed, with `--confirm`) and measure the whole
    /// run instead of a window; with the broker's pid, its RSS per queued message too.
    #[arg(long)]
    pub count: Option<u64>,
    /// Leave the queue and what is in it (for recovery timing).
    #[arg(long)]
    pub keep: bool,
}

/// What a run measured over its window.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub published_per_s: f64,
    pub consumed_per_s: f64,
    pub confirmed_per_s: f64,
    /// Broker CPU (user + system) per message, microseconds, when its pid was given.
    pub broker_us_per_msg: Option<f64>,
    /// The generator's own CPU per message, microseconds.
    pub generator_us_per_msg: f64,
    /// With `--count` and a pid: the broker's resident memory growth per queued message.
    pub rss_bytes_per_msg: Option<f64>,
    pub error: Option<String>,
}

#[derive(Default)]
struct Counters {
    /// Messages publishers have claimed to write (`--count` stops them at the count).
    claimed: AtomicU64,
    published: AtomicU64,
    confirmed: AtomicU64,
    consumed: AtomicU64,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Counters {
    fn fail(&self, err: impl std::fmt::Display) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert_with(|| err.to_string());
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resident memory of a process, in bytes, from /proc.
pub fn rss_bytes(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Runs `blast` against `url`; `pid` is the broker's, for its CPU.
pub fn run(url: &str, pid: Option<&str>, blast: &Blast) -> io::Result<Outcome> {
    let target = Target::parse(url).map_err(io::Error::other)?;
    let mut setup = Client::connect(&target)?;
    setup.declare(&blast.queue, blast.persistent, blast.max_length)?;
    let counters = Arc::new(Counters::default());
    let mut threads = Vec::new();
    for _ in 0..blast.consumers {
        let mut c = Client::connect(&target)?;
        c.consume(&blast.queue, blast.autoack, blast.prefetch)?;
        let leftover = c.leftover().to_vec();
        let (counters, autoack) = (counters.clone(), blast.autoack);
        threads.push(thread::spawn(move || {
            if let Err(e) = consume(c.sock, leftover, autoack, &counters) {
                counters.fail(format!("consumer: {e}"));
            }
        }));
    }
    let started = Instant::now();
    for _ in 0..blast.publishers {
        let mut c = Client::connect(&target)?;
        if blast.confirm > 0 {
            c.send(1, 85, 10, frames::Args::default().u8(0))?;
            c.expect(85, 11)?;
        }
        let (counters, blast) = (counters.clone(), blast.clone());
        threads.push(thread::spawn(move || {
            if let Err(e) = publish(c.sock, &blast, started, &counters) {
                counters.fail(format!("publisher: {e}"));
            }
        }));
    }
    if blast.count.is_none() {
        thread::sleep(Duration::from_secs_f64(blast.warmup));
    }
    let rss_before = pid.and_then(rss_bytes);
    let snap = |c: &Counters| {
        (
            c.published.load(Ordering::Relaxed),
            c.consumed.load(Ordering::Relaxed),
            c.confirmed.load(Ordering::Relaxed),
            pid.and_then(cpu_seconds),
            cpu_seconds("self").unwrap_or(0.0),
            Instant::now(),
        )
    };
    let before = snap(&counters);
    let mut rss = None;
    match blast.count {
        None => thread::sleep(Duration::from_secs_f64(blast.seconds)),
        Some(count) => {
            let done = |c: &Counters| {
                let settled = if blast.confirm > 0 {
                    &c.confirmed
                } else {
                    &c.published
                };
                settled.load(Ordering::Relaxed) >= count || c.stop.load(Ordering::Relaxed)
            };
            while !done(&counters) {
                thread::sleep(Duration::from_millis(10));
            }
            // What the broker holds once the last message is in.
            thread::sleep(Duration::from_secs(2));
            rss = match (rss_before, pid.and_then(rss_bytes)) {
                (Some(a), Some(b)) => {
                    Some((b - a) / counters.published.load(Ordering::Relaxed).max(1) as f64)
                }
                _ => None,
            };
        }
    }
    let after = snap(&counters);
    counters.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if !blast.keep {
        let _ = setup.delete(&blast.queue);
    }
    setup.close();
    let secs = after.5.duration_since(before.5).as_secs_f64();
    let published = (after.0 - before.0) as f64;
    let consumed = (after.1 - before.1) as f64;
    let confirmed = (after.2 - before.2) as f64;
    let messages = if blast.consumers > 0 {
        consumed
    } else {
        published
    }
    .max(1.0);
    let broker = match (before.3, after.3) {
        (Some(a), Some(b)) => Some((b - a) * 1e6 / messages),
        _ => None,
    };
    let error = counters.error.lock().ok().and_then(|e| e.clone());
    Ok(Outcome {
        published_per_s: published / secs,
        consumed_per_s: consumed / secs,
        confirmed_per_s: confirmed / secs,
        broker_us_per_msg: broker,
        generator_us_per_msg: (after.4 - before.4) * 1e6 / messages,
        rss_bytes_per_msg: rss,
        error,
    })
}

/// Writes pre-encoded batches of publishes until told to stop; a second thread reads the
/// socket so a `connection.close` (or blocked) from the broker is seen.
fn publish(
    mut sock: TcpStream,
    blast: &Blast,
    started: Instant,
    counters: &Arc<Counters>,
) -> io::Result<()> {
    let body = vec![b'x'; blast.size];
    // In confirm mode a write is at most a quarter of the window, so confirms keep it full.
    let count = match blast.confirm {
        0 => blast.batch,
        window => blast.batch.min((window as usize / 4).max(1)),
    };
    let mut batch = Vec::new();
    for _ in 0..count {
        frames::publish(&mut batch, &blast.queue, &body, blast.persistent);
    }
    let per_batch = count as u64;
    // Delivery tags this publisher's confirms have reached (confirm mode only).
    let confirmed = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (sock, counters, confirmed) = (sock.try_clone()?, counters.clone(), confirmed.clone());
        thread::spawn(move || watch(sock, &counters, &confirmed))
    };
    let share = blast
        .rate
        .map(|r| r as f64 / blast.publishers.max(1) as f64);
    let mut mine: u64 = 0;
    while !counters.stop.load(Ordering::Relaxed) {
        let backlog = counters.published.load(Ordering::Relaxed)
            - counters
                .consumed
                .load(Ordering::Relaxed)
                .min(counters.published.load(Ordering::Relaxed));
        let paced = share.is_some_and(|r| mine as f64 >= r * started.elapsed().as_secs_f64());
        let unconfirmed = mine - confirmed.load(Ordering::Relaxed).min(mine);
        let window_full = blast.confirm > 0 && unconfirmed + per_batch > blast.confirm;
        if paced || window_full || (blast.consumers > 0 && backlog >= blast.max_backlog) {
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        if let Some(count) = blast.count {
            if counters.claimed.fetch_add(per_batch, Ordering::Relaxed) >= count {
                break;
            }
        }
        sock.write_all(&batch)?;
        mine += per_batch;
        counters.published.fetch_add(per_batch, Ordering::Relaxed);
    }
    // The last confirms are still on their way.
    while !counters.stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = sock.shutdown(std::net::Shutdown::Both);
    let _ = watcher.join();
    Ok(())
}

/// Reads what the broker sends a publisher: confirms (counted), and a close, which ends the
/// run with its reason.
fn watch(mut sock: TcpStream, counters: &Counters, confirmed: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    loop {
        loop {
            match frames::split(&buf[start..end]) {
                Ok(Some((frame, n))) => {
                    start += n;
                    match frame.method() {
                        Some((10, 50) | (20, 40)) => {
                            let reason = frames::close_reason(frame.args());
                            return counters.fail(format!("broker closed: {reason}"));
                        }
                        Some((60, 120)) => return counters.fail("the broker nacked a publish"),
                        Some((60, 80)) => {
                            let args = frame.args();
                            let tag = args
                                .get(..8)
                                .map(|t| u64::from_be_bytes(t.try_into().unwrap_or([0; 8])));
                            let multiple = args.get(8).is_some_and(|b| b & 1 != 0);
                            let tag = tag.unwrap_or(0);
                            let before = confirmed.load(Ordering::Relaxed);
                            // A single ack may come out of order; count it once.
                            let newly = if multiple {
                                tag.saturating_sub(before)
                            } else {
                                1
                            };
                            confirmed.store(before.max(tag), Ordering::Relaxed);
                            counters.confirmed.fetch_add(newly, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(e) => return counters.fail(e),
            }
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        match sock.read(&mut buf[end..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
    }
}

/// Counts deliveries as they arrive; acks each read's worth at once unless no-ack.
fn consume(
    mut sock: TcpStream,
    leftover: Vec<u8>,
    autoack: bool,
    counters: &Counters,
) -> io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = vec![0u8; 4 << 20];
    buf[..leftover.len()].copy_from_slice(&leftover);
    let (mut start, mut end) = (0, leftover.len());
    let mut acked = 0;
    let mut last = 0;
    let mut ack = Vec::with_capacity(32);
    while !counters.stop.load(Ordering::Relaxed) {
        let mut n = 0;
        while let Some((frame, len)) = frames::split(&buf[start..end]).map_err(io::Error::other)? {
            start += len;
            match frame.method() {
                Some((60, 60)) => {
                    n += 1;
                    last = frames::delivery_tag(frame.args()).unwrap_or(last);
                }
                Some((10, 50) | (20, 40)) => {
                    return Err(io::Error::other(format!(
                        "broker closed: {}",
                        frames::close_reason(frame.args())
                    )))
                }
                _ => {}
            }
        }
        counters.consumed.fetch_add(n, Ordering::Relaxed);
        if !autoack && last > acked {
            ack.clear();
            frames::method(&mut ack, 1, 60, 80, frames::Args::default().u64(last).u8(1));
            sock.write_all(&ack)?;
            acked = last;
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        match sock.read(&mut buf[end..]) {
            Ok(0) => return Err(io::Error::other("broker closed the socket")),
            Ok(n) => end += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
