//! The gateway's embedded store (redb under the data directory, or in memory): idempotency
//! records and the correlation graph, both with a time to live. Its methods do file I/O and
//! fsync; async code calls them through [`Store::run`], on the blocking pool.

use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use serde_json::Value;

const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("correlation_events");
/// Webhook subscriptions by id (their JSON).
const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhooks");
const CHILDREN: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("correlation_children");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("gateway store")]
    Redb(#[from] redb::Error),
    #[error("gateway store: a record does not parse")]
    Json(#[from] serde_json::Error),
    #[error("gateway store: the blocking task did not finish")]
    Task(#[from] tokio::task::JoinError),
    #[error("redis")]
    Redis(#[from] redis::RedisError),
}

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Redb(e.into())
}

/// One published event as the correlation graph keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub message_id: Uuid,
    pub event_type: String,
    pub timestamp: String,
    pub source: String,
    pub parent_id: Option<Uuid>,
    pub recorded_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Remembered {
    stored_ms: u64,
    /// What was published (and answered) the first time.
    body: Value,
}

/// redb's page cache for this store. Its default, 1 GiB, is a ceiling the cache grows
/// towards as correlation links and idempotency keys are written: a one-hour soak saw the
/// process's RSS climb with every publish.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// `None`: in memory (a broker without a data directory).
    pub fn open(path: Option<&Path>) -> Result<Store, StoreError> {
        let db = match path {
            Some(path) => Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)
                .map_err(err)?,
            None => Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(err)?,
        };
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(IDEMPOTENCY).map_err(err)?;
        tx.open_table(EVENTS).map_err(err)?;
        tx.open_multimap_table(CHILDREN).map_err(err)?;
        tx.open_table(WEBHOOKS).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Store { db: Arc::new(db) })
    }

    /// Runs `f` on the blocking pool: redb reads files and its commits fsync, which must not
    /// stall an async worker.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store)).await?
    }

    /// What was first published under `key`, if that was less than `window_ms` ago.
    pub fn remembered(
        &self,
        key: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<Option<Value>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(IDEMPOTENCY).map_err(err)?;
        let Some(raw) = table.get(key).map_err(err)? else {
            return Ok(None);
        };
        let remembered: Remembered = serde_json::from_slice(raw.value())?;
        Ok((now_ms.saturating_sub(remembered.stored_ms) < window_ms).then_some(remembered.body))
    }

    /// Remembers what was published under `key`, on disk before it returns (a replay after a
    /// crash must still find it).
    pub fn remember(&self, key: &str, now_ms: u64, body: &Value) -> Result<(), StoreError> {
        let raw = serde_json::to_vec(&Remembered {
            stored_ms: now_ms,
            body: body.clone(),
        })?;
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(IDEMPOTENCY)
            .map_err(err)?
            .insert(key, raw.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Every stored webhook subscription.
    pub fn webhooks(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(WEBHOOKS).map_err(err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(err)? {
            let (_, value) = entry.map_err(err)?;
            out.push(value.value().to_vec());
        }
        Ok(out)
    }

    /// Stores a webhook subscription, on disk before it returns.
    pub fn put_webhook(&self, id: uuid::Uuid, raw: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(WEBHOOKS)
            .map_err(err)?
            .insert(id.to_string().as_str(), raw)
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    pub fn delete_webhook(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(WEBHOOKS)
            .map_err(err)?
            .remove(id.to_string().as_str())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Records a published event and, when it has one, its parent.
    pub fn record(&self, node: &Node) -> Result<(), StoreError> {
        let raw = serde_json::to_vec(node)?;
        let id = node.message_id.to_string();
        let mut tx = self.db.begin_write().map_err(err)?;
        // Losing the newest links in a crash costs lineage, not events: no sync per request.
        tx.set_durability(Durability::None).map_err(err)?;
        tx.open_table(EVENTS)
            .map_err(err)?
            .insert(id.as_str(), raw.as_slice())
            .map_err(err)?;
        if let Some(parent) = node.parent_id {
            tx.open_multimap_table(CHILDREN)
                .map_err(err)?
                .insert(parent.to_string().as_str(), id.as_str())
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn node(&self, id: Uuid, now_ms: u64, ttl_ms: u64) -> Result<Option<Node>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(EVENTS).map_err(err)?;
        let Some(raw) = table.get(id.to_string().as_str()).map_err(err)? else {
            return Ok(None);
        };
        let node: Node = serde_json::from_slice(raw.value())?;
        Ok((now_ms.saturating_sub(node.recorded_ms) < ttl_ms).then_some(node))
    }

    pub fn children(&self, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_multimap_table(CHILDREN).map_err(err)?;
        let mut out = Vec::new();
        for child in table.get(id.to_string().as_str()).map_err(err)? {
            if let Ok(id) = Uuid::parse_str(child.map_err(err)?.value()) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Deletes idempotency records and correlation nodes older than their windows, and makes
    /// everything written so far durable.
    pub fn prune(
        &self,
        now_ms: u64,
        idempotency_window_ms: u64,
        correlation_ttl_ms: u64,
    ) -> Result<usize, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let mut removed = 0;
        {
            let mut table = tx.open_table(IDEMPOTENCY).map_err(err)?;
            let old = table
                .extract_if(|_, raw| {
                    serde_json::from_slice::<Remembered>(raw).map_or(true, |r| {
                        now_ms.saturating_sub(r.stored_ms) >= idempotency_window_ms
                    })
                })
                .map_err(err)?;
            removed += old.count();
        }
        {
            let mut events = tx.open_table(EVENTS).map_err(err)?;
            let old: Vec<String> = events
                .extract_if(|_, raw| {
                    serde_json::from_slice::<Node>(raw).map_or(true, |n| {
                        now_ms.saturating_sub(n.recorded_ms) >= correlation_ttl_ms
                    })
                })
                .map_err(err)?
                .filter_map(|entry| entry.ok().map(|(k, _)| k.value().to_string()))
                .collect();
            let mut children = tx.open_multimap_table(CHILDREN).map_err(err)?;
            for id in &old {
                children.remove_all(id.as_str()).map_err(err)?;
            }
            removed += old.len();
        }
        tx.commit().map_err(err)?;
        Ok(removed)
    }
}
