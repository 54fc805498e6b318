//! Durable definitions (users, vhosts, permissions, exchanges, queues, bindings) in a `redb`
//! database, in the shapes of RabbitMQ's definitions JSON, so exporting and importing is a
//! plain conversion.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Key: JSON of the definition's identity; value: JSON of the whole definition.
const VHOSTS: TableDefinition<&str, &str> = TableDefinition::new("vhosts");
const EXCHANGES: TableDefinition<&str, &str> = TableDefinition::new("exchanges");
const QUEUES: TableDefinition<&str, &str> = TableDefinition::new("queues");
const BINDINGS: TableDefinition<&str, &str> = TableDefinition::new("bindings");
const USERS: TableDefinition<&str, &str> = TableDefinition::new("users");
const PERMISSIONS: TableDefinition<&str, &str> = TableDefinition::new("permissions");
const TOPIC_PERMISSIONS: TableDefinition<&str, &str> = TableDefinition::new("topic_permissions");
const POLICIES: TableDefinition<&str, &str> = TableDefinition::new("policies");
const OPERATOR_POLICIES: TableDefinition<&str, &str> = TableDefinition::new("operator_policies");

#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    #[error("definitions store {}", path.display())]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("definitions store")]
    Redb(#[from] redb::Error),
    #[error("definitions store: a stored definition does not parse")]
    Json(#[from] serde_json::Error),
}

fn err(e: impl Into<redb::Error>) -> DefinitionsError {
    DefinitionsError::Redb(e.into())
}

/// One change to the stored definitions.
#[derive(Debug, Clone, PartialEq)]
pub enum DefOp {
    PutExchange(ExchangeDef),
    PutQueue(QueueDef),
    PutBinding(BindingDef),
    DeleteBinding(BindingDef),
    /// The exchange and every binding to or from it.
    DeleteExchange {
        vhost: String,
        name: String,
    },
    /// The queue and every binding to it.
    DeleteQueue {
        vhost: String,
        name: String,
    },
    PutVhost(VhostDef),
    /// The vhost and everything in it: exchanges, queues, bindings, permissions.
    DeleteVhost(String),
    PutUser(UserDef),
    /// The user and its permissions.
    DeleteUser(String),
    PutPermission(PermissionDef),
    PutTopicPermission(TopicPermissionDef),
    /// A policy, or with `operator` an operator policy.
    PutPolicy {
        policy: PolicyDef,
        operator: bool,
    },
    DeletePolicy {
        vhost: String,
        name: String,
        operator: bool,
    },
    DeletePermission {
        vhost: String,
        user: String,
    },
}

/// A user as RabbitMQ exports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDef {
    pub name: String,
    /// Base64 of the salt and the digest; empty: no password login.
    #[serde(default)]
    pub password_hash: String,
    #[serde(default)]
    pub hashing_algorithm: String,
    /// RabbitMQ 3.10+ writes a list; older exports a comma-separated string.
    #[serde(default, deserialize_with = "tag_list")]
    pub tags: Vec<String>,
    #[serde(default = "empty_object")]
    pub limits: Value,
}

/// A user's permissions in one vhost: regular expressions over resource names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// A user's permissions on the routing keys of one topic exchange in one vhost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicPermissionDef {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

fn tag_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Tags::deserialize(d)? {
        Tags::List(tags) => tags,
        Tags::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// A policy as RabbitMQ exports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to", default = "apply_to_all")]
    pub apply_to: String,
    #[serde(default)]
    pub priority: i64,
    pub definition: Value,
}

fn apply_to_all() -> String {
    "all".into()
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

/// A definitions file as RabbitMQ exports it (the parts this broker has; runtime parameters
/// are not kept). Operator policies, which RabbitMQ keeps outside definitions files, are
/// written only when there are some.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DefinitionsFile {
    #[serde(default)]
    pub rabbit_version: String,
    #[serde(default)]
    pub product_name: String,
    #[serde(default)]
    pub product_version: String,
    #[serde(default)]
    pub users: Vec<UserDef>,
    #[serde(default)]
    pub vhosts: Vec<VhostDef>,
    #[serde(default)]
    pub permissions: Vec<PermissionDef>,
    #[serde(default)]
    pub parameters: Vec<Value>,
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_policies: Vec<PolicyDef>,
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermissionDef>,
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
        // redb's default cache (1 GiB) is far above what a set of definitions needs.
        let db = Database::builder()
            .set_cache_size(4 * 1024 * 1024)
            .create(path)
            .map_err(|source| DefinitionsError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let defs = Definitions { db };
        defs.write(|_| Ok(()))?;
        Ok(defs)
    }

    /// Adds (or replaces) a user with one permission, in one transaction.
    pub fn put_user(
        &self,
        user: &UserDef,
        permission: &PermissionDef,
    ) -> Result<(), DefinitionsError> {
        self.write(|txn| {
            put(txn, USERS, &user.name, user)?;
            put(
                txn,
                PERMISSIONS,
                &key(&[&permission.vhost, &permission.user]),
                permission,
            )
        })
    }

    pub fn put_vhost(&self, v: &VhostDef) -> Result<(), DefinitionsError> {
        self.write(|txn| put(txn, VHOSTS, &v.name, v))
    }

    /// Applies `ops` in order, in one transaction: all of them are stored, or none.
    pub fn apply(&self, ops: &[DefOp]) -> Result<(), DefinitionsError> {
        self.write(|txn| {
            for op in ops {
                apply_one(txn, op)?;
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
                out.push(serde_json::from_str(v.value())?);
            }
            Ok(out)
        }
        Ok(DefinitionsFile {
            rabbit_version: "3.13.0".into(),
            product_name: "Bloodbank".into(),
            product_version: env!("CARGO_PKG_VERSION").into(),
            users: all(&txn, USERS)?,
            permissions: all(&txn, PERMISSIONS)?,
            topic_permissions: all(&txn, TOPIC_PERMISSIONS)?,
            vhosts: all(&txn, VHOSTS)?,
            exchanges: all(&txn, EXCHANGES)?,
            queues: all(&txn, QUEUES)?,
            bindings: all(&txn, BINDINGS)?,
            policies: all(&txn, POLICIES)?,
            operator_policies: all(&txn, OPERATOR_POLICIES)?,
            ..Default::default()
        })
    }

    /// Adds (or replaces) every definition of a file, in one transaction.
    pub fn import(&self, file: &DefinitionsFile) -> Result<(), DefinitionsError> {
        self.write(|txn| {
            let mut t = txn.open_table(USERS).map_err(err)?;
            for u in &file.users {
                t.insert(u.name.as_str(), json(u)?.as_str()).map_err(err)?;
            }
            drop(t);
            let mut t = txn.open_table(PERMISSIONS).map_err(err)?;
            for p in &file.permissions {
                t.insert(key(&[&p.vhost, &p.user]).as_str(), json(p)?.as_str())
                    .map_err(err)?;
            }
            drop(t);
            let mut t = txn.open_table(TOPIC_PERMISSIONS).map_err(err)?;
            for p in &file.topic_permissions {
                let k = key(&[&p.vhost, &p.user, &p.exchange]);
                t.insert(k.as_str(), json(p)?.as_str()).map_err(err)?;
            }
            drop(t);
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
            drop(t);
            for (table, policies) in [
                (POLICIES, &file.policies),
                (OPERATOR_POLICIES, &file.operator_policies),
            ] {
                let mut t = txn.open_table(table).map_err(err)?;
                for p in policies {
                    t.insert(key(&[&p.vhost, &p.name]).as_str(), json(p)?.as_str())
                        .map_err(err)?;
                }
            }
            Ok(())
        })
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), DefinitionsError>,
    ) -> Result<(), DefinitionsError> {
        let txn = self.db.begin_write().map_err(err)?;
        for table in [
            VHOSTS,
            EXCHANGES,
            QUEUES,
            BINDINGS,
            USERS,
            PERMISSIONS,
            TOPIC_PERMISSIONS,
            POLICIES,
            OPERATOR_POLICIES,
        ] {
            txn.open_table(table).map_err(err)?;
        }
        f(&txn)?;
        txn.commit().map_err(err)
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, DefinitionsError> {
    Ok(serde_json::to_string(value)?)
}

fn put<T: Serialize>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<&str, &str>,
    k: &str,
    value: &T,
) -> Result<(), DefinitionsError> {
    let v = json(value)?;
    txn.open_table(table)
        .map_err(err)?
        .insert(k, v.as_str())
        .map_err(err)?;
    Ok(())
}

fn delete(
    txn: &redb::WriteTransaction,
    table: TableDefinition<&str, &str>,
    k: &str,
) -> Result<(), DefinitionsError> {
    txn.open_table(table).map_err(err)?.remove(k).map_err(err)?;
    Ok(())
}

/// Removes every row of `table` whose stored JSON matches.
fn delete_where(
    txn: &redb::WriteTransaction,
    table: TableDefinition<&str, &str>,
    doomed: impl Fn(&Value) -> bool,
) -> Result<(), DefinitionsError> {
    let mut t = txn.open_table(table).map_err(err)?;
    let mut keys = Vec::new();
    for row in t.iter().map_err(err)? {
        let (k, v) = row.map_err(err)?;
        if doomed(&serde_json::from_str(v.value())?) {
            keys.push(k.value().to_string());
        }
    }
    for k in keys {
        t.remove(k.as_str()).map_err(err)?;
    }
    Ok(())
}

/// Removes every binding to `name` (a queue or exchange, by `kind`) and, for an exchange,
/// every binding from it.
fn delete_bindings_of(
    txn: &redb::WriteTransaction,
    vhost: &str,
    kind: &str,
    name: &str,
) -> Result<(), DefinitionsError> {
    let mut t = txn.open_table(BINDINGS).map_err(err)?;
    let mut doomed = Vec::new();
    for row in t.iter().map_err(err)? {
        let (k, v) = row.map_err(err)?;
        let b: BindingDef = serde_json::from_str(v.value())?;
        if b.vhost == vhost
            && ((b.destination_type == kind && b.destination == name)
                || (kind == "exchange" && b.source == name))
        {
            doomed.push(k.value().to_string());
        }
    }
    for k in doomed {
        t.remove(k.as_str()).map_err(err)?;
    }
    Ok(())
}

fn apply_one(txn: &redb::WriteTransaction, op: &DefOp) -> Result<(), DefinitionsError> {
    match op {
        DefOp::PutExchange(e) => put(txn, EXCHANGES, &key(&[&e.vhost, &e.name]), e),
        DefOp::PutQueue(q) => put(txn, QUEUES, &key(&[&q.vhost, &q.name]), q),
        DefOp::PutBinding(b) => put(txn, BINDINGS, &binding_key(b), b),
        DefOp::DeleteBinding(b) => delete(txn, BINDINGS, &binding_key(b)),
        DefOp::DeleteExchange { vhost, name } => {
            delete(txn, EXCHANGES, &key(&[vhost, name]))?;
            delete_bindings_of(txn, vhost, "exchange", name)
        }
        DefOp::DeleteQueue { vhost, name } => {
            delete(txn, QUEUES, &key(&[vhost, name]))?;
            delete_bindings_of(txn, vhost, "queue", name)
        }
        DefOp::PutVhost(v) => put(txn, VHOSTS, &v.name, v),
        DefOp::DeleteVhost(name) => {
            delete(txn, VHOSTS, name)?;
            for table in [
                EXCHANGES,
                QUEUES,
                BINDINGS,
                PERMISSIONS,
                TOPIC_PERMISSIONS,
                POLICIES,
                OPERATOR_POLICIES,
            ] {
                delete_where(txn, table, |v| {
                    v.get("vhost").and_then(Value::as_str) == Some(name)
                })?;
            }
            Ok(())
        }
        DefOp::PutUser(u) => put(txn, USERS, &u.name, u),
        DefOp::DeleteUser(name) => {
            delete(txn, USERS, name)?;
            for table in [PERMISSIONS, TOPIC_PERMISSIONS] {
                delete_where(txn, table, |v| {
                    v.get("user").and_then(Value::as_str) == Some(name)
                })?;
            }
            Ok(())
        }
        DefOp::PutPermission(p) => put(txn, PERMISSIONS, &key(&[&p.vhost, &p.user]), p),
        DefOp::PutTopicPermission(p) => put(
            txn,
            TOPIC_PERMISSIONS,
            &key(&[&p.vhost, &p.user, &p.exchange]),
            p,
        ),
        DefOp::DeletePermission { vhost, user } => delete(txn, PERMISSIONS, &key(&[vhost, user])),
        DefOp::PutPolicy { policy, operator } => {
            let table = if *operator {
                OPERATOR_POLICIES
            } else {
                POLICIES
            };
            put(txn, table, &key(&[&policy.vhost, &policy.name]), policy)
        }
        DefOp::DeletePolicy {
            vhost,
            name,
            operator,
        } => {
            let table = if *operator {
                OPERATOR_POLICIES
            } else {
                POLICIES
            };
            delete(txn, table, &key(&[vhost, name]))
        }
    }
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
            let gone = QueueDef {
                name: "gone".into(),
                ..q.clone()
            };
            defs.apply(&[
                DefOp::PutQueue(q.clone()),
                DefOp::PutBinding(b.clone()),
                DefOp::PutQueue(gone.clone()),
                DefOp::PutBinding(BindingDef {
                    destination: "gone".into(),
                    ..b.clone()
                }),
            ])
            .unwrap();
            defs.apply(&[DefOp::DeleteQueue {
                vhost: "/".into(),
                name: "gone".into(),
            }])
            .unwrap();
        }
        let defs = Definitions::open(&path).unwrap();
        let file = defs.load().unwrap();
        assert_eq!(file.queues, vec![q]);
        assert_eq!(file.bindings, vec![b]);
    }
}
