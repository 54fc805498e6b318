//! Webhook subscriptions (the original `bb subscribe --callback` wish): each subscription is
//! a durable work queue bound to the events exchange by its pattern, with the consumer kits'
//! retry topology (`retry.rs`: delay queues, then a DLQ), and one task that POSTs each event
//! to the subscription's URL, signed with HMAC-SHA256 of the body. At least once: a message
//! is acknowledged only after a 2xx answer or after its copy (retry or dead letter) is
//! durable. Publishing never waits for a delivery: it only routes to the queue. Subscriptions
//! are kept in the gateway's store and their tasks restarted with the gateway.

mod post;

use crate::error::ApiError;
use crate::retry::{self, Broker, Failure, Handler, Item, Next, Topology, WorkQueue, Worker};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use uuid::Uuid;

/// Subscriptions one caller may hold, and all callers together (each is a task and queues).
const PER_OWNER: usize = 100;
const IN_ALL: usize = 1000;
const DEFAULT_BACKOFF_MS: &[u64] = &[1000, 10_000, 60_000, 300_000];

/// A subscription as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Subscription {
    pub id: Uuid,
    pub pattern: String,
    pub url: String,
    pub secret: String,
    pub owner: String,
    pub max_attempts: u32,
    pub backoff_ms: Vec<u64>,
    pub created_at: String,
}

impl Subscription {
    fn topology(&self) -> Topology {
        Topology {
            queue: format!("bloodbank.webhook.{}", self.id),
            max_attempts: self.max_attempts,
            backoff_ms: self.backoff_ms.clone(),
            delivery_limit: 20,
        }
    }
}

/// What a running subscription has done.
#[derive(Default)]
struct Stats {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    dead_lettered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Running {
    subscription: Subscription,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
}

pub(crate) struct Webhooks {
    broker: Broker,
    exchange: String,
    store: Store,
    /// `host:port` or `host` targets allowed; empty: any.
    allow: Vec<String>,
    running: Mutex<HashMap<Uuid, Running>>,
}

impl Webhooks {
    /// Starts a delivery task for every stored subscription.
    pub(crate) async fn start(
        broker: Broker,
        exchange: String,
        store: Store,
        allow: Vec<String>,
    ) -> Result<Webhooks, crate::store::StoreError> {
        let webhooks = Webhooks {
            broker,
            exchange,
            store,
            allow,
            running: Mutex::default(),
        };
        let stored = webhooks.store.run(|s| s.webhooks()).await?;
        for bytes in stored {
            match serde_json::from_slice::<Subscription>(&bytes) {
                Ok(sub) => {
                    let worker = webhooks.worker(&sub, Arc::default());
                    webhooks.spawn(sub, worker, None);
                }
                Err(e) => {
                    tracing::error!(error = %e, "a stored webhook subscription is unreadable")
                }
            }
        }
        Ok(webhooks)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker(&self, subscription: &Subscription, stats: Arc<Stats>) -> Worker<Deliver> {
        Worker {
            broker: self.broker.clone(),
            exchange: self.exchange.clone(),
            patterns: vec![subscription.pattern.clone()],
            topology: subscription.topology(),
            service: subscription.topology().queue,
            handler: Deliver {
                url: subscription.url.clone(),
                secret: subscription.secret.clone(),
                stats,
            },
        }
    }

    fn spawn(
        &self,
        subscription: Subscription,
        worker: Worker<Deliver>,
        opened: Option<WorkQueue>,
    ) {
        let (stop, stopped) = watch::channel(false);
        let stats = worker.handler.stats.clone();
        tokio::spawn(worker.run(opened, stopped));
        self.running().insert(
            subscription.id,
            Running {
                subscription,
                stats,
                stop,
            },
        );
    }

    /// `POST /subscriptions`: checks the request, stores the subscription and starts it.
    pub(crate) async fn create(&self, owner: &str, request: &Value) -> Result<Value, ApiError> {
        let subscription = self.check(owner, request)?;
        let (owned, all) = {
            let running = self.running();
            let owned = running
                .values()
                .filter(|r| r.subscription.owner == owner)
                .count();
            (owned, running.len())
        };
        if owned >= PER_OWNER || all >= IN_ALL {
            return Err(ApiError::Forbidden(format!(
                "at most {PER_OWNER} webhook subscriptions per caller and {IN_ALL} in all"
            )));
        }
        // Its queue exists and is bound before the answer: every event published after it
        // is delivered.
        let worker = self.worker(&subscription, Arc::default());
        let opened = worker
            .open()
            .await
            .map_err(|e| ApiError::Unavailable(format!("the broker: {e}")))?;
        let bytes =
            serde_json::to_vec(&subscription).map_err(|e| ApiError::Internal(e.to_string()))?;
        let id = subscription.id;
        self.store
            .run(move |s| s.put_webhook(id, &bytes))
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        self.spawn(subscription.clone(), worker, Some(opened));
        Ok(self.view(&subscription, None))
    }

    /// The caller's subscriptions.
    pub(crate) fn list(&self, owner: &str) -> Value {
        let running = self.running();
        let mut views: Vec<(String, Value)> = running
            .values()
            .filter(|r| r.subscription.owner == owner)
            .map(|r| {
                (
                    r.subscription.created_at.clone(),
                    self.view(&r.subscription, Some(&r.stats)),
                )
            })
            .collect();
        views.sort_by(|a, b| a.0.cmp(&b.0));
        Value::Array(views.into_iter().map(|(_, v)| v).collect())
    }

    /// `DELETE /subscriptions/{id}`: stops deliveries, forgets it, deletes its queues.
    pub(crate) async fn delete(&self, owner: &str, id: &str) -> Result<(), ApiError> {
        let not_found = || ApiError::NotFound(format!("no webhook subscription {id}"));
        let id = Uuid::parse_str(id).map_err(|_| not_found())?;
        let running = {
            let mut all = self.running();
            match all.get(&id) {
                Some(r) if r.subscription.owner == owner => all.remove(&id),
                _ => None,
            }
        }
        .ok_or_else(not_found)?;
        let _ = running.stop.send(true);
        self.store
            .run(move |s| s.delete_webhook(id))
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        if let Err(e) = retry::delete(&self.broker, &running.subscription.topology()).await {
            tracing::warn!(error = %e, "deleting a webhook subscription's queues failed");
        }
        Ok(())
    }

    fn view(&self, s: &Subscription, stats: Option<&Stats>) -> Value {
        let topology = s.topology();
        let mut view = json!({
            "id": s.id,
            "pattern": s.pattern,
            "url": s.url,
            "max_attempts": s.max_attempts,
            "backoff_ms": s.backoff_ms,
            "created_at": s.created_at,
            "queue": topology.queue,
            "dead_letter_queue": topology.dlq(),
        });
        if let Some(stats) = stats {
            view["delivered"] = stats.delivered.load(Ordering::Relaxed).into();
            view["failed_attempts"] = stats.failed_attempts.load(Ordering::Relaxed).into();
            view["dead_lettered"] = stats.dead_lettered.load(Ordering::Relaxed).into();
            view["last_error"] = stats
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .into();
        }
        view
    }

    /// Reads a request into a subscription; every refusal names the field.
    fn check(&self, owner: &str, request: &Value) -> Result<Subscription, ApiError> {
        let bad = |m: String| ApiError::BadRequest(m);
        let fields = request
            .as_object()
            .ok_or_else(|| bad("the body must be a JSON object".into()))?;
        for key in fields.keys() {
            if !["pattern", "url", "secret", "max_attempts", "backoff_ms"].contains(&key.as_str()) {
                return Err(bad(format!("field {key} is not known")));
            }
        }
        let text = |key: &str, max: usize| -> Result<String, ApiError> {
            match fields.get(key) {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= max => Ok(s.clone()),
                Some(Value::String(_)) => Err(bad(format!("field {key} must be 1 to {max} bytes"))),
                _ => Err(bad(format!("field {key} (a string) is required"))),
            }
        };
        let pattern = text("pattern", 255)?;
        let url = text("url", 2048)?;
        let secret = text("secret", 256)?;
        if !url.starts_with("http://") {
            return Err(bad(format!(
                "field url must be an http:// URL (https targets are not supported yet), not {url:?}"
            )));
        }
        let (addr, _) =
            crate::client::split_url(&url).map_err(|e| bad(format!("field url: {e}")))?;
        if !self.allow.is_empty() {
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            if !self.allow.iter().any(|a| a == &addr || a == host) {
                return Err(ApiError::Forbidden(format!(
                    "field url: {addr} is not one of the allowed webhook targets"
                )));
            }
        }
        let max_attempts =
            match fields.get("max_attempts") {
                None => 5,
                Some(v) => v.as_u64().filter(|n| (1..=20).contains(n)).ok_or_else(|| {
                    bad("field max_attempts must be an integer from 1 to 20".into())
                })? as u32,
            };
        let backoff_ms = match fields.get("backoff_ms") {
            None => DEFAULT_BACKOFF_MS.to_vec(),
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= 10 => items
                .iter()
                .map(|v| v.as_u64().filter(|n| (10..=86_400_000).contains(n)))
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| {
                    bad("field backoff_ms: each wait is an integer from 10 to 86400000".into())
                })?,
            Some(_) => {
                return Err(bad(
                    "field backoff_ms must be a list of 1 to 10 waits in milliseconds".into(),
                ))
            }
        };
        Ok(Subscription {
            id: Uuid::new_v4(),
            pattern,
            url,
            secret,
            owner: owner.to_string(),
            max_attempts,
            backoff_ms,
            created_at: bloodbank_broker::clock::rfc3339(bloodbank_broker::clock::now_ms()),
        })
    }
}

/// A subscription's handler: POST the message to its URL.
struct Deliver {
    url: String,
    secret: String,
    stats: Arc<Stats>,
}

impl Handler for Deliver {
    async fn handle(&self, item: &Item, key: &str, attempt: u32) -> Result<(), (Failure, String)> {
        let failed = |why: String| (Failure::Handler, why);
        let (addr, path) = crate::client::split_url(&self.url).map_err(failed)?;
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let delivery = item
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let target = post::Target {
            addr: &addr,
            path: &path,
            secret: &self.secret,
        };
        let about = post::About {
            event_type: key,
            delivery: &delivery,
            attempt,
        };
        post::post(&target, &about, &item.body)
            .await
            .map_err(failed)
    }

    fn settled(&self, _key: &str, _attempt: u32, next: &Next, error: &str) {
        if !error.is_empty() {
            self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            *self
                .stats
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
        }
        let counter = match next {
            Next::Ack => &self.stats.delivered,
            Next::Retry { .. } => return,
            Next::Dead { .. } => &self.stats.dead_lettered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
