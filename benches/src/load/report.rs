//! What a run measured, and a table putting two brokers side by side.

use super::Meter;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub samples: u64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub seconds: f64,
    pub published_per_s: f64,
    pub confirmed_per_s: f64,
    pub nacked: u64,
    pub consumed_per_s: f64,
    /// Ready messages at the end of the measured window minus at its start.
    pub backlog_growth: i64,
    pub end_to_end: Percentiles,
    pub confirm: Percentiles,
}

fn percentiles(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        samples: h.len(),
    }
}

impl Report {
    pub fn new(meter: &Meter, seconds: f64, backlog_before: u64, backlog_after: u64) -> Report {
        let rate = |n: u64| n as f64 / seconds;
        let lock = |m: &std::sync::Mutex<hdrhistogram::Histogram<u64>>| {
            m.lock().map(|h| percentiles(&h)).unwrap_or_default()
        };
        Report {
            seconds,
            published_per_s: rate(meter.published.load(Ordering::Relaxed)),
            confirmed_per_s: rate(meter.confirmed.load(Ordering::Relaxed)),
            nacked: meter.nacked.load(Ordering::Relaxed),
            consumed_per_s: rate(meter.consumed.load(Ordering::Relaxed)),
            backlog_growth: backlog_after as i64 - backlog_before as i64,
            end_to_end: lock(&meter.end_to_end),
            confirm: lock(&meter.confirm),
        }
    }

    /// The rows of the comparison table: (metric, value, higher is better).
    fn rows(&self) -> Vec<(&'static str, f64, bool)> {
        let mut rows = vec![
            ("published msg/s", self.published_per_s, true),
            ("consumed msg/s", self.consumed_per_s, true),
            ("backlog growth (msgs)", self.backlog_growth as f64, false),
            ("end-to-end p50 ms", self.end_to_end.p50_ms, false),
            ("end-to-end p99 ms", self.end_to_end.p99_ms, false),
            ("end-to-end p99.9 ms", self.end_to_end.p999_ms, false),
        ];
        if self.confirm.samples > 0 {
            rows.extend([
                ("confirmed msg/s", self.confirmed_per_s, true),
                ("confirm p50 ms", self.confirm.p50_ms, false),
                ("confirm p99 ms", self.confirm.p99_ms, false),
            ]);
        }
        rows
    }
}

/// A markdown table of two runs of the same scenario; the last column is how many times
/// better the first broker did (rates: a/b; latencies and backlog: b/a).
pub fn side_by_side(title: &str, a_name: &str, a: &Report, b_name: &str, b: &Report) -> String {
    let mut out = format!(
        "**{title}**\n\n| metric | {a_name} | {b_name} | {a_name} advantage |\n|---|---:|---:|---:|\n"
    );
    for ((metric, va, higher), (_, vb, _)) in a.rows().into_iter().zip(b.rows()) {
        let ratio = if higher { va / vb } else { vb / va };
        let ratio = if ratio.is_finite() && ratio > 0.0 {
            format!("{ratio:.1}x")
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "| {metric} | {} | {} | {ratio} |\n",
            fmt(va),
            fmt(vb)
        ));
    }
    out
}

/// One run alone, as a markdown table.
pub fn single(title: &str, name: &str, r: &Report) -> String {
    let mut out = format!("**{title}**\n\n| metric | {name} |\n|---|---:|\n");
    for (metric, v, _) in r.rows() {
        out.push_str(&format!("| {metric} | {} |\n", fmt(v)));
    }
    out
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
