//! Durable definitions (vhosts, exchanges, queues, bindings) in a `redb` database, in the
//! shapes of RabbitMQ's definitions JSON, so exporting and importing is a plain conversion.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Key: JSON of the definition's identity; value: JSON of the whole definition.
const VHOSTS: TableDefinition<&str, &str> = TableDefinition::new("vhosts");
const EXCHANGES: TableDefinition<&str, &str> = TableDefinition::new("exchanges");
const QUEUES: TableDefinition<&str, &str> = TableDefinition::new("queues");
const BINDINGS: TableDefinition<&str, &str> = TableDefinition::new("bindings");

#[derive(Debug, thiserror::Error)]
#[error("definitions store: {0}")]
pub struct DefinitionsError(String);

fn err(e: impl std::fmt::Display) -> DefinitionsError {
    DefinitionsError(e.to_string())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VhostDef {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    pub vhost: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub name: String,
    pub vhost: String,
    /// "classic" or "quorum" (RabbitMQ 3.10+ writes it; older files leave it out).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub durable: bool,
    pub auto_delete: bool,
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    pub source: String,
    pub vhost: String,
    pub destination: String,
    /// "queue" or "exchange".
    pub destination_type: String,
    pub routing_key: String,
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A definitions file as RabbitMQ exports it (the parts this broker has; users and
/// permissions come from the configuration, so they are written empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DefinitionsFile {
    #[serde(default)]
    pub rabbit_version: String,
    #[serde(default)]
    pub product_name: String,
    #[serde(default)]
    pub product_version: String,
    #[serde(default)]
    pub users: Vec<Value>,
    #[serde(default)]
    pub vhosts: Vec<VhostDef>,
    #[serde(default)]
    pub permissions: Vec<Value>,
    #[serde(default)]
    pub parameters: Vec<Value>,
    #[serde(default)]
    pub policies: Vec<Value>,
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    #[serde(default)]
    pub exchanges: Vec<ExchangeDef>,
    #[serde(default)]
    pub bindings: Vec<BindingDef>,
}

pub struct Definitions {
    db: Database,
}

impl std::fmt::Debug for Definitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Definitions")
    }
}

impl Definitions {
    /// Opens (or creates) the database. Fails if another process has it open.
    pub fn open(path: &Path) -> Result<Definitions, DefinitionsError> {
        let db = Database::create(path)
            .map_err(|e| DefinitionsError(format!("cannot open {}: {e}", path.display())))?;
        let defs = Definitions { db };
        defs.write(|_| Ok(()))?;
        Ok(defs)
    }

    pub fn put_vhost(&self, v: &VhostDef) -> Result<(), DefinitionsError> {
        self.put(VHOSTS, &v.name, v)
    }

    pub fn put_exchange(&self, e: &ExchangeDef) -> Result<(), DefinitionsError> {
        self.put(EXCHANGES, &key(&[&e.vhost, &e.name]), e)
    }

    pub fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), DefinitionsError> {
        self.delete(EXCHANGES, &key(&[vhost, name]))
    }

    pub fn put_queue(&self, q: &QueueDef) -> Result<(), DefinitionsError> {
        self.put(QUEUES, &key(&[&q.vhost, &q.name]), q)
    }

    pub fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), DefinitionsError> {
        self.delete(QUEUES, &key(&[vhost, name]))
    }

    pub fn put_binding(&self, b: &BindingDef) -> Result<(), DefinitionsError> {
        self.put(BINDINGS, &binding_key(b), b)
    }

    pub fn delete_binding(&self, b: &BindingDef) -> Result<(), DefinitionsError> {
        self.delete(BINDINGS, &binding_key(b))
    }

    /// Removes every binding to or from an exchange (`kind` "exchange") or to a queue.
    pub fn delete_bindings_of(
        &self,
        vhost: &str,
        kind: &str,
        name: &str,
    ) -> Result<(), DefinitionsError> {
        let doomed: Vec<BindingDef> = self
            .load()?
            .bindings
            .into_iter()
            .filter(|b| {
                b.vhost == vhost
                    && ((b.destination_type == kind && b.destination == name)
                        || (kind == "exchange" && b.source == name))
            })
            .collect();
        self.write(|txn| {
            let mut t = txn.open_table(BINDINGS).map_err(err)?;
            for b in &doomed {
                t.remove(binding_key(b).as_str()).map_err(err)?;
            }
            Ok(())
        })
    }

    /// Everything stored.
    pub fn load(&self) -> Result<DefinitionsFile, DefinitionsError> {
        let txn = self.db.begin_read().map_err(err)?;
        fn all<T: for<'de> Deserialize<'de>>(
            txn: &redb::ReadTransaction,
            table: TableDefinition<&str, &str>,
        ) -> Result<Vec<T>, DefinitionsError> {
            let t = txn.open_table(table).map_err(err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(err)? {
                let (_, v) = row.map_err(err)?;
                out.push(serde_json::from_str(v.value()).map_err(err)?);
            }
            Ok(out)
        }
        Ok(DefinitionsFile {
            rabbit_version: "3.13.0".into(),
            product_name: "Bloodbank".into(),
            product_version: env!("CARGO_PKG_VERSION").into(),
            vhosts: all(&txn, VHOSTS)?,
            exchanges: all(&txn, EXCHANGES)?,
            queues: all(&txn, QUEUES)?,
            bindings: all(&txn, BINDINGS)?,
            ..Default::default()
        })
    }

    /// Adds (or replaces) every definition of a file, in one transaction.
    pub fn import(&self, file: &DefinitionsFile) -> Result<(), DefinitionsError> {
        self.write(|txn| {
            let mut t = txn.open_table(VHOSTS).map_err(err)?;
            for v in &file.vhosts {
                t.insert(v.name.as_str(), json(v)?.as_str()).map_err(err)?;
            }
            drop(t);
            let mut t = txn.open_table(EXCHANGES).map_err(err)?;
            for e in &file.exchanges {
                t.insert(key(&[&e.vhost, &e.name]).as_str(), json(e)?.as_str())
                    .map_err(err)?;
            }
            drop(t);
            let mut t = txn.open_table(QUEUES).map_err(err)?;
            for q in &file.queues {
                let mut q = q.clone();
                // A quorum queue's type lives in its arguments here.
                if q.kind.as_deref() == Some("quorum") {
                    if let Value::Object(args) = &mut q.arguments {
                        args.entry("x-queue-type").or_insert("quorum".into());
                    }
                }
                t.insert(key(&[&q.vhost, &q.name]).as_str(), json(&q)?.as_str())
                    .map_err(err)?;
            }
            drop(t);
            let mut t = txn.open_table(BINDINGS).map_err(err)?;
            for b in &file.bindings {
                t.insert(binding_key(b).as_str(), json(b)?.as_str())
                    .map_err(err)?;
            }
            Ok(())
        })
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &str>,
        k: &str,
        value: &T,
    ) -> Result<(), DefinitionsError> {
        let v = json(value)?;
        self.write(|txn| {
            let mut t = txn.open_table(table).map_err(err)?;
            t.insert(k, v.as_str()).map_err(err)?;
            Ok(())
        })
    }

    fn delete(&self, table: TableDefinition<&str, &str>, k: &str) -> Result<(), DefinitionsError> {
        self.write(|txn| {
            let mut t = txn.open_table(table).map_err(err)?;
            t.remove(k).map_err(err)?;
            Ok(())
        })
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), DefinitionsError>,
    ) -> Result<(), DefinitionsError> {
        let txn = self.db.begin_write().map_err(err)?;
        for table in [VHOSTS, EXCHANGES, QUEUES, BINDINGS] {
            txn.open_table(table).map_err(err)?;
        }
        f(&txn)?;
        txn.commit().map_err(err)
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, DefinitionsError> {
    serde_json::to_string(value).map_err(err)
}

fn key(parts: &[&str]) -> String {
    serde_json::to_string(parts).unwrap_or_default()
}

fn binding_key(b: &BindingDef) -> String {
    let args = serde_json::to_string(&b.arguments).unwrap_or_default();
    key(&[
        &b.vhost,
        &b.source,
        &b.destination_type,
        &b.destination,
        &b.routing_key,
        &args,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_survive_reopening_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("definitions.redb");
        let q = QueueDef {
            name: "orders".into(),
            vhost: "/".into(),
            kind: Some("classic".into()),
            durable: true,
            auto_delete: false,
            arguments: serde_json::json!({"x-dead-letter-exchange": "dlx"}),
        };
        let b = BindingDef {
            source: "events".into(),
            vhost: "/".into(),
            destination: "orders".into(),
            destination_type: "queue".into(),
            routing_key: "order.#".into(),
            arguments: serde_json::json!({}),
        };
        {
            let defs = Definitions::open(&path).unwrap();
            defs.put_queue(&q).unwrap();
            defs.put_binding(&b).unwrap();
            defs.put_queue(&QueueDef {
                name: "gone".into(),
                ..q.clone()
            })
            .unwrap();
            defs.delete_queue("/", "gone").unwrap();
        }
        let defs = Definitions::open(&path).unwrap();
        let file = defs.load().unwrap();
        assert_eq!(file.queues, vec![q]);
        assert_eq!(file.bindings, vec![b]);
    }
}
