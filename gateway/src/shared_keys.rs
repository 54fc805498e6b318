//! Idempotency keys shared by every gateway instance that uses one Redis (`--redis-url`): a
//! client retrying against another instance gets the first answer and publishes nothing.
//!
//! For each key, `bloodbank:idempotency:{id}` holds the first answer (JSON) for the
//! idempotency window, and `bloodbank:idempotency:lease:{id}` names the instance publishing it
//! right now (a token, with a time to live, so a crashed instance holds nobody up for long).
//! An instance takes the lease before it publishes and gives it up once the answer is stored;
//! one that finds the lease taken waits for the answer. If Redis cannot be reached the gateway
//! keeps publishing and remembers keys in its own store only (health says `degraded`).

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::Value;
use uuid::Uuid;

const ANSWER: &str = "bloodbank:idempotency:";
const LEASE: &str = "bloodbank:idempotency:lease:";

/// How long a lease lasts: longer than a publish waits for its confirm.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long a request waits for another instance's answer before giving up with a 503.
const WAIT: Duration = Duration::from_secs(12);
const POLL: Duration = Duration::from_millis(20);

/// Deletes the lease only while it is still ours.
const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

pub(crate) struct SharedKeys(ConnectionManager);

/// What a claim on a key found.
pub(crate) enum Claim {
    /// Some instance published it already: its answer.
    Answered(Value),
    /// This request publishes it, holding the lease (none when Redis is unreachable).
    Mine(Option<Lease>),
    /// Another instance has been publishing it for longer than a request waits.
    Busy,
}

/// The right to publish one key, until the answer is stored or the lease expires.
pub(crate) struct Lease {
    id: Uuid,
    token: String,
}

fn warn(what: &str, e: &redis::RedisError) {
    tracing::warn!(error = %e, "Redis: {what}; idempotency keys are this instance's own meanwhile");
}

impl SharedKeys {
    pub(crate) fn new(conn: ConnectionManager) -> SharedKeys {
        SharedKeys(conn)
    }

    /// Takes the lease on `key` (as [`crate::idempotency::IdempotencyKey::stored`] writes it),
    /// or finds its answer, waiting while another instance holds the lease.
    pub(crate) async fn claim(&self, key: &str) -> Claim {
        let id = Uuid::new_v5(&Uuid::NAMESPACE_X500, key.as_bytes());
        let token = Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut conn = self.0.clone();
            let found: Result<(Option<String>, Option<String>), _> = redis::pipe()
                .cmd("SET")
                .arg(format!("{LEASE}{id}"))
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE_TTL.as_millis() as u64)
                .cmd("GET")
                .arg(format!("{ANSWER}{id}"))
                .query_async(&mut conn)
                .await;
            let (taken, answer) = match found {
                Ok(found) => found,
                Err(e) => {
                    warn("cannot claim an idempotency key", &e);
                    return Claim::Mine(None);
                }
            };
            let lease = taken.map(|_| Lease {
                id,
                token: token.clone(),
            });
            if let Some(answer) = answer.and_then(|a| serde_json::from_str(&a).ok()) {
                if let Some(lease) = lease {
                    self.release(lease).await;
                }
                return Claim::Answered(answer);
            }
            if lease.is_some() {
                return Claim::Mine(lease);
            }
            if tokio::time::Instant::now() >= deadline {
                return Claim::Busy;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stores the answer for the idempotency window and gives the lease up.
    pub(crate) async fn answer(&self, lease: Lease, body: &Value, window: Duration) {
        let mut conn = self.0.clone();
        let stored: Result<(), _> = redis::pipe()
            .cmd("SET")
            .arg(format!("{ANSWER}{}", lease.id))
            .arg(body.to_string())
            .arg("PX")
            .arg(window.as_millis().max(1) as u64)
            .ignore()
            .cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(format!("{LEASE}{}", lease.id))
            .arg(&lease.token)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = stored {
            warn("cannot store an idempotency answer", &e);
        }
    }

    /// Gives the lease up without an answer (the publish failed: a retry may try again).
    pub(crate) async fn release(&self, lease: Lease) {
        let mut conn = self.0.clone();
        let released: Result<i64, _> = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(format!("{LEASE}{}", lease.id))
            .arg(&lease.token)
            .query_async(&mut conn)
            .await;
        if let Err(e) = released {
            warn("cannot release an idempotency lease", &e);
        }
    }
}
