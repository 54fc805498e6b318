//! `GET /metrics`: request counts and latencies per route, validation failures and publishes
//! per event type, in Prometheus' text format. Labels are bounded: routes are templates, and
//! event types only those with a contract (others count as `unregistered`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Latency bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, &'static str, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    validation_failures: BTreeMap<String, u64>,
    publishes: BTreeMap<String, u64>,
}

#[derive(Default)]
pub(crate) struct Metrics(Mutex<Inner>);

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn validation_failure(&self, event_type: &str) {
        *self
            .inner()
            .validation_failures
            .entry(event_type.to_string())
            .or_default() += 1;
    }

    /// `registered`: whether the event type has a contract (else it counts as `unregistered`).
    pub fn published(&self, event_type: &str, registered: bool) {
        let label = if registered {
            event_type
        } else {
            "unregistered"
        };
        *self.inner().publishes.entry(label.to_string()).or_default() += 1;
    }

    fn request(&self, route: String, method: &'static str, status: u16, seconds: f64) {
        let mut inner = self.inner();
        *inner
            .requests
            .entry((route.clone(), method, status))
            .or_default() += 1;
        let h = inner.latency.entry(route).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn text(&self) -> String {
        let inner = self.inner();
        let mut out = String::new();
        out.push_str("# HELP bloodbank_http_requests_total HTTP requests by route, method and status.\n# TYPE bloodbank_http_requests_total counter\n");
        for ((route, method, status), n) in &inner.requests {
            let _ = writeln!(out, "bloodbank_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP bloodbank_http_request_duration_seconds HTTP request latency by route.\n# TYPE bloodbank_http_request_duration_seconds histogram\n");
        for (route, h) in &inner.latency {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "bloodbank_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "bloodbank_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(
                out,
                "bloodbank_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "bloodbank_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP bloodbank_validation_failures_total Payloads that did not satisfy their contract.\n# TYPE bloodbank_validation_failures_total counter\n");
        for (event_type, n) in &inner.validation_failures {
            let _ = writeln!(
                out,
                "bloodbank_validation_failures_total{{event_type=\"{event_type}\"}} {n}"
            );
        }
        out.push_str("# HELP bloodbank_http_publishes_total Events published through the gateway.\n# TYPE bloodbank_http_publishes_total counter\n");
        for (event_type, n) in &inner.publishes {
            let _ = writeln!(
                out,
                "bloodbank_http_publishes_total{{event_type=\"{event_type}\"}} {n}"
            );
        }
        out
    }
}

/// Middleware: counts and times every request by its route template.
pub(crate) async fn track(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        _ => "other",
    };
    let start = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(
        route,
        method,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

pub(crate) async fn render(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.text(),
    )
        .into_response()
}
