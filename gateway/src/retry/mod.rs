//! The retry and dead-letter topology every consumer kit shares (docs/CONSUMERS.md): the work
//! queue `Q`, delay queues `Q.retry.<ms>` that dead-letter back into it, and `Q.dlq`. Pure:
//! names, arguments, headers and what to do after an attempt. `queue.rs` is the work queue
//! on a broker and `worker.rs` the consumer loop that webhook deliveries and `bloodbank
//! consume` share; `bloodbank dlq` reads the same headers.

mod queue;
mod worker;

pub use queue::{delete, Broker, Item, WorkQueue};
pub use worker::{Handler, Worker};

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Header: which attempt the next delivery is (absent: the first).
pub const ATTEMPT: &str = "x-attempt";
/// Headers of a dead letter.
pub const DEAD_REASON: &str = "x-dead-reason";
pub const ERROR: &str = "x-error";
pub const ATTEMPTS: &str = "x-attempts";
pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
/// Headers a retried or dead-lettered copy drops (a replay starts afresh).
pub const BOOKKEEPING: &[&str] = &[
    ATTEMPT,
    DEAD_REASON,
    ERROR,
    ATTEMPTS,
    "x-last-error",
    "x-service",
    "x-dead-at",
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-delivery-count",
];

#[derive(Debug, Clone)]
pub struct Topology {
    pub queue: String,
    pub max_attempts: u32,
    /// The wait before attempt n+1 is `backoff_ms[n-1]` (the last one repeats).
    pub backoff_ms: Vec<u64>,
    /// Returns after which the broker dead-letters a message itself (a handler that kills
    /// the process).
    pub delivery_limit: u32,
}

/// What to do with a message after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Ack,
    /// Publish a copy to this delay queue with `x-attempt` = `attempt`, then ack.
    Retry {
        queue: String,
        attempt: u32,
    },
    /// Publish a copy to the DLQ with this reason, then ack.
    Dead {
        queue: String,
        reason: &'static str,
    },
}

impl Topology {
    pub fn dlq(&self) -> String {
        format!("{}.dlq", self.queue)
    }

    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let i = (attempt.max(1) as usize - 1).min(self.backoff_ms.len().saturating_sub(1));
        self.backoff_ms.get(i).copied().unwrap_or(1000)
    }

    pub fn retry_queue(&self, ms: u64) -> String {
        format!("{}.retry.{ms}", self.queue)
    }

    /// The delays in use, each once.
    pub fn delays(&self) -> Vec<u64> {
        let mut delays: Vec<u64> = (1..self.max_attempts).map(|a| self.delay_ms(a)).collect();
        delays.sort_unstable();
        delays.dedup();
        delays
    }

    pub fn work_args(&self) -> FieldTable {
        table(&[
            ("x-queue-type", text("quorum")),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&self.dlq())),
            (
                "x-delivery-limit",
                AMQPValue::LongLongInt(self.delivery_limit.into()),
            ),
        ])
    }

    pub fn retry_args(&self, ms: u64) -> FieldTable {
        table(&[
            ("x-queue-type", text("quorum")),
            (
                "x-message-ttl",
                AMQPValue::LongLongInt(i64::try_from(ms).unwrap_or(i64::MAX)),
            ),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&self.queue)),
        ])
    }

    pub fn dlq_args(&self) -> FieldTable {
        table(&[("x-queue-type", text("quorum"))])
    }

    /// After attempt `attempt` failed (`failure`: why) or succeeded (None).
    pub fn next(&self, attempt: u32, failure: Option<Failure>) -> Next {
        match failure {
            None => Next::Ack,
            Some(Failure::Handler) if attempt < self.max_attempts => Next::Retry {
                queue: self.retry_queue(self.delay_ms(attempt)),
                attempt: attempt + 1,
            },
            Some(f) => Next::Dead {
                queue: self.dlq(),
                reason: f.reason(),
            },
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The handler (or command) failed: retried.
    Handler,
    /// Not JSON or no envelope: dead at once.
    InvalidEnvelope,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Handler => "handler_failed",
            Failure::InvalidEnvelope => "invalid_envelope",
        }
    }
}

/// The attempt a delivery is, from its headers.
pub fn attempt(headers: Option<&FieldTable>) -> u32 {
    headers
        .and_then(|h| h.inner().get(ATTEMPT))
        .and_then(int)
        .map_or(1, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}

pub fn int(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

pub fn string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// A copy's headers: the original's without the bookkeeping, with the original routing key
/// and exchange kept (once), then `extra`.
pub fn copy_headers(
    original: Option<&FieldTable>,
    exchange: &str,
    routing_key: &str,
    extra: &[(&str, AMQPValue)],
) -> FieldTable {
    let mut out = FieldTable::default();
    for (k, v) in original.map(|h| h.inner().iter()).into_iter().flatten() {
        if !BOOKKEEPING.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    if !out.inner().contains_key(ORIGINAL_ROUTING_KEY) {
        out.insert(ORIGINAL_ROUTING_KEY.into(), text(routing_key));
        out.insert(ORIGINAL_EXCHANGE.into(), text(exchange));
    }
    for (k, v) in extra {
        out.insert(ShortString::from(*k), v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology {
            queue: "svc.main".into(),
            max_attempts: 3,
            backoff_ms: vec![1000, 10_000],
            delivery_limit: 20,
        }
    }

    #[test]
    fn failures_retry_with_backoff_then_die() {
        let t = topology();
        assert_eq!(t.next(1, None), Next::Ack);
        assert_eq!(
            t.next(1, Some(Failure::Handler)),
            Next::Retry {
                queue: "svc.main.retry.1000".into(),
                attempt: 2
            }
        );
        assert_eq!(
            t.next(2, Some(Failure::Handler)),
            Next::Retry {
                queue: "svc.main.retry.10000".into(),
                attempt: 3
            }
        );
        assert_eq!(
            t.next(3, Some(Failure::Handler)),
            Next::Dead {
                queue: "svc.main.dlq".into(),
                reason: "handler_failed"
            }
        );
        assert_eq!(
            t.next(1, Some(Failure::InvalidEnvelope)),
            Next::Dead {
                queue: "svc.main.dlq".into(),
                reason: "invalid_envelope"
            }
        );
        assert_eq!(t.delays(), vec![1000, 10_000]);
        assert_eq!(t.delay_ms(9), 10_000);
    }

    #[test]
    fn copies_keep_the_first_origin_and_drop_bookkeeping() {
        let first = copy_headers(None, "events", "a.b", &[(ATTEMPT, AMQPValue::LongInt(2))]);
        assert_eq!(attempt(Some(&first)), 2);
        let second = copy_headers(Some(&first), "", "svc.main", &[]);
        assert_eq!(attempt(Some(&second)), 1);
        let key = second.inner().get(ORIGINAL_ROUTING_KEY).and_then(string);
        assert_eq!(key.as_deref(), Some("a.b"));
        assert_eq!(attempt(None), 1);
    }
}
