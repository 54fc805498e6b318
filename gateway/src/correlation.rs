//! Where correlation links live: the embedded store (default), or Redis with the original
//! service's keys (`bloodbank:correlation:forward:{id}` holds the event as JSON,
//! `bloodbank:correlation:reverse:{id}` the set of its children), both with a time to live.
//! Redis going away never stops publishing: recording fails (health says degraded) and
//! resumes when it is back.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{Node, Store, StoreError};

const FORWARD: &str = "bloodbank:correlation:forward:";
const REVERSE: &str = "bloodbank:correlation:reverse:";

pub enum Correlation {
    Embedded,
    Redis(ConnectionManager),
}

/// The forward record, as the original service kept it.
#[derive(Serialize, Deserialize)]
struct Forward {
    message_id: Uuid,
    event_type: String,
    timestamp: String,
    source: String,
    parent_ids: Vec<Uuid>,
    recorded_ms: u64,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e)
}

impl Correlation {
    /// A Redis store; connects lazily, so the gateway starts while Redis is down.
    pub fn redis(url: &str) -> Result<Correlation, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        client
            .get_connection_manager_lazy(config)
            .map(Correlation::Redis)
            .map_err(unavailable)
    }

    /// The Redis connection, shared with the idempotency keys.
    pub fn redis_connection(&self) -> Option<ConnectionManager> {
        match self {
            Correlation::Embedded => None,
            Correlation::Redis(conn) => Some(conn.clone()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Correlation::Embedded => "embedded",
            Correlation::Redis(_) => "redis",
        }
    }

    /// For health: `not_configured`, `connected` or `disconnected`.
    pub async fn redis_state(&self) -> &'static str {
        match self {
            Correlation::Embedded => "not_configured",
            Correlation::Redis(conn) => {
                let mut conn = conn.clone();
                match redis::cmd("PING").query_async::<String>(&mut conn).await {
                    Ok(_) => "connected",
                    Err(_) => "disconnected",
                }
            }
        }
    }

    pub async fn record(
        &self,
        store: &Store,
        node: &Node,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Correlation::Embedded => {
                let node = node.clone();
                store.run(move |s| s.record(&node)).await
            }
            Correlation::Redis(conn) => {
                let mut conn = conn.clone();
                let forward = Forward {
                    message_id: node.message_id,
                    event_type: node.event_type.clone(),
                    timestamp: node.timestamp.clone(),
                    source: node.source.clone(),
                    parent_ids: node.parent_id.into_iter().collect(),
                    recorded_ms: node.recorded_ms,
                };
                let json = serde_json::to_string(&forward)?;
                let secs = ttl.as_secs().max(1);
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .set_ex(format!("{FORWARD}{}", node.message_id), json, secs)
                    .ignore();
                if let Some(parent) = node.parent_id {
                    let key = format!("{REVERSE}{parent}");
                    pipe.sadd(&key, node.message_id.to_string())
                        .ignore()
                        .expire(&key, secs as i64)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
            }
        }
    }

    pub async fn node(
        &self,
        store: &Store,
        id: Uuid,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<Option<Node>, StoreError> {
        match self {
            Correlation::Embedded => {
                let ttl = ttl.as_millis() as u64;
                store.run(move |s| s.node(id, now_ms, ttl)).await
            }
            Correlation::Redis(conn) => {
                let mut conn = conn.clone();
                let raw: Option<String> = conn
                    .get(format!("{FORWARD}{id}"))
                    .await
                    .map_err(unavailable)?;
                let Some(raw) = raw else { return Ok(None) };
                let f: Forward = serde_json::from_str(&raw)?;
                Ok(Some(Node {
                    message_id: f.message_id,
                    event_type: f.event_type,
                    timestamp: f.timestamp,
                    source: f.source,
                    parent_id: f.parent_ids.first().copied(),
                    recorded_ms: f.recorded_ms,
                }))
            }
        }
    }

    pub async fn children(&self, store: &Store, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        match self {
            Correlation::Embedded => store.run(move |s| s.children(id)).await,
            Correlation::Redis(conn) => {
                let mut conn = conn.clone();
                let members: Vec<String> = conn
                    .smembers(format!("{REVERSE}{id}"))
                    .await
                    .map_err(unavailable)?;
                let mut ids: Vec<Uuid> = members
                    .iter()
                    .filter_map(|m| Uuid::parse_str(m).ok())
                    .collect();
                ids.sort();
                Ok(ids)
            }
        }
    }
}
