//! Keeping durable definitions in the definitions store as they change, and rebuilding the
//! broker's state from the store and the message log at start.

use super::args::parse_queue_args;
use super::exchange::{Binding, Destination, Exchange, ExchangeKind};
use super::queue::{Entry, Queue};
use super::{Core, VHost};
use crate::error::{queue_ref, BrokerError};
use crate::store::definitions::{BindingDef, DefOp, Definitions, ExchangeDef, QueueDef, VhostDef};
use crate::store::json_args::{json_to_table, table_to_json};
use crate::store::DefsWriter;
use crate::store::{MessageLog, Recovery};
use std::sync::Arc;

impl Core {
    /// Loads durable definitions and recovered messages; from now on changes are stored.
    pub fn restore(
        &mut self,
        defs: Definitions,
        mut log: MessageLog,
        recovery: Recovery,
    ) -> Result<(), BrokerError> {
        let file = defs.load()?;
        if file.vhosts.is_empty() {
            defs.put_vhost(&VhostDef { name: "/".into() })?;
        }
        for v in &file.vhosts {
            self.vhosts
                .entry(v.name.clone())
                .or_insert_with(|| VHost::new(&v.name));
        }
        for e in file.exchanges {
            let Some(kind) = ExchangeKind::parse(&e.kind) else {
                tracing::warn!(exchange = %e.name, kind = %e.kind, "stored exchange has an unknown type; skipped");
                continue;
            };
            let vhost = self
                .vhosts
                .entry(e.vhost.clone())
                .or_insert_with(|| VHost::new(&e.vhost));
            vhost.exchanges.entry(e.name.clone()).or_insert_with(|| {
                Exchange::new(
                    e.name.clone(),
                    kind,
                    e.durable,
                    e.auto_delete,
                    e.internal,
                    json_to_table(&e.arguments),
                )
            });
        }
        let now = (self.clock)();
        for q in file.queues {
            let arguments = json_to_table(&q.arguments);
            let args = match parse_queue_args(&arguments, &queue_ref(&q.name, &q.vhost)) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(queue = %q.name, error = %e, "stored queue has invalid arguments; skipped");
                    continue;
                }
            };
            let vhost = self
                .vhosts
                .entry(q.vhost.clone())
                .or_insert_with(|| VHost::new(&q.vhost));
            let queue = Queue::new(&q.name, true, q.auto_delete, None, arguments, args, now)
                .counting_into(self.resident.clone());
            vhost.queues.insert(q.name, queue);
        }
        for b in file.bindings {
            let Some(vhost) = self.vhosts.get_mut(&b.vhost) else {
                continue;
            };
            let destination = match b.destination_type.as_str() {
                "exchange" if vhost.exchanges.contains_key(&b.destination) => {
                    Destination::Exchange(b.destination)
                }
                "queue" if vhost.queues.contains_key(&b.destination) => {
                    Destination::Queue(b.destination)
                }
                _ => continue,
            };
            if let Some(e) = vhost.exchanges.get_mut(&b.source) {
                e.bind(Binding {
                    destination,
                    key: b.routing_key,
                    arguments: json_to_table(&b.arguments),
                });
            }
        }
        for (defs, operator) in [(&file.policies, false), (&file.operator_policies, true)] {
            for def in defs {
                match super::policy::Policy::from_def(def, operator) {
                    Ok(p) if operator => self.operator_policies.push(p),
                    Ok(p) => self.policies.push(p),
                    Err(e) => tracing::error!(error = %e, "stored policy does not apply; skipped"),
                }
            }
        }
        for vname in self.vhost_names() {
            self.apply_policies(&vname);
        }
        for torn in &recovery.torn_tails {
            tracing::warn!(
                "message log: {torn} (a write cut short by a crash; it was never confirmed)"
            );
        }
        for problem in &recovery.problems {
            tracing::error!("message log damage: {problem}");
        }
        let mut restored = 0usize;
        for rq in recovery.queues {
            let queue = self
                .vhosts
                .get_mut(&rq.vhost)
                .and_then(|v| v.queues.get_mut(&rq.queue));
            let Some(queue) = queue else {
                // Its queue was deleted (or never stored): the messages go too.
                if let Err(e) = log.drop_queue(&rq.vhost, &rq.queue) {
                    tracing::error!(error = %e, "writing to the message log failed");
                }
                continue;
            };
            queue.reserve(rq.messages.len());
            for (msg_id, meta) in rq.messages {
                restored += 1;
                queue.push(
                    Entry::recovered(msg_id, &meta),
                    meta.published_ms,
                    meta.expiration,
                );
            }
        }
        tracing::info!(messages = restored, "recovered persistent messages");
        let writer =
            DefsWriter::start(defs).map_err(|e| BrokerError::Thread("definitions writer", e))?;
        self.defs = Some(Arc::new(writer));
        self.log = Some(log);
        Ok(())
    }

    /// Queues a change for the definitions writer, numbered in order.
    pub(crate) fn store_def(&mut self, op: DefOp) {
        if let Some(defs) = &self.defs {
            self.defs_seq += 1;
            defs.send(self.defs_seq, op);
        }
    }

    pub(super) fn persist_exchange(&mut self, vname: &str, name: &str) {
        let (Some(_), Some(e)) = (
            &self.defs,
            self.vhosts.get(vname).and_then(|v| v.exchanges.get(name)),
        ) else {
            return;
        };
        if !e.durable || name.is_empty() {
            return;
        }
        let def = ExchangeDef {
            name: name.into(),
            vhost: vname.into(),
            kind: e.kind.as_str().into(),
            durable: true,
            auto_delete: e.auto_delete,
            internal: e.internal,
            arguments: table_to_json(&e.arguments),
        };
        self.store_def(DefOp::PutExchange(def));
    }

    pub(super) fn persist_queue(&mut self, vname: &str, name: &str) {
        let (Some(_), Some(q)) = (
            &self.defs,
            self.vhosts.get(vname).and_then(|v| v.queues.get(name)),
        ) else {
            return;
        };
        if !q.durable || q.exclusive_owner.is_some() {
            return;
        }
        let def = QueueDef {
            name: name.into(),
            vhost: vname.into(),
            kind: Some(q.kind().as_str().into()),
            durable: true,
            auto_delete: q.auto_delete,
            arguments: table_to_json(&q.arguments),
        };
        self.store_def(DefOp::PutQueue(def));
    }

    /// Stores (`add`) or removes a binding; stored only when both ends are durable.
    pub(super) fn persist_binding(&mut self, vname: &str, source: &str, b: &Binding, add: bool) {
        let (Some(_), Some(vhost)) = (&self.defs, self.vhosts.get(vname)) else {
            return;
        };
        let (kind, dest, dest_durable) = match &b.destination {
            Destination::Queue(q) => (
                "queue",
                q,
                vhost
                    .queues
                    .get(q)
                    .is_some_and(|q| q.durable && q.exclusive_owner.is_none()),
            ),
            Destination::Exchange(e) => (
                "exchange",
                e,
                vhost.exchanges.get(e).is_some_and(|e| e.durable),
            ),
        };
        let def = BindingDef {
            source: source.into(),
            vhost: vname.into(),
            destination: dest.clone(),
            destination_type: kind.into(),
            routing_key: b.key.clone(),
            arguments: table_to_json(&b.arguments),
        };
        if !add {
            self.store_def(DefOp::DeleteBinding(def));
            return;
        }
        let source_durable = vhost.exchanges.get(source).is_some_and(|e| e.durable);
        if source_durable && dest_durable {
            self.store_def(DefOp::PutBinding(def));
        }
    }

    /// A queue or exchange is gone: so are its stored definition and bindings.
    pub(super) fn unpersist(&mut self, vname: &str, kind: &str, name: &str) {
        let (vhost, name) = (vname.to_string(), name.to_string());
        self.store_def(match kind {
            "queue" => DefOp::DeleteQueue { vhost, name },
            _ => DefOp::DeleteExchange { vhost, name },
        });
    }
}
