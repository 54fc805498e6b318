//! Declaring, binding and deleting exchanges and queues, with RabbitMQ's checks and error texts.

use super::access::{Perm, Resource};
use super::args::{argument_difference, parse_queue_args, render, QueueType, EQUIVALENCE_CHECKED};
use super::exchange::{Binding, Destination, Exchange, ExchangeKind};
use super::permitted;
use super::queue::Queue;
use super::{ChanKey, Core};
use crate::error::{exchange_ref, queue_ref, AmqpError};
use amq_protocol::types::{AMQPValue, FieldTable};
use std::sync::Arc;

/// The flags of an exchange declaration.
#[derive(Debug, Clone, Default)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: String,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// The flags of a queue declaration.
#[derive(Debug, Clone, Default)]
pub struct QueueSpec {
    pub name: String,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// What `queue.declare-ok` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub name: String,
    pub messages: u32,
    pub consumers: u32,
}

fn inequivalent(arg: &str, what: &str, received: String, current: String) -> AmqpError {
    AmqpError::precondition(format!(
        "inequivalent arg '{arg}' for {what}: received '{received}' but current is '{current}'"
    ))
}

impl Core {
    pub(crate) fn vhost_name(&self, ck: ChanKey) -> Arc<str> {
        self.channels
            .get(&ck)
            .map(|c| c.vhost.clone())
            .unwrap_or_else(|| "/".into())
    }

    pub fn exchange_declare(&mut self, ck: ChanKey, spec: ExchangeSpec) -> Result<(), AmqpError> {
        let vname = self.vhost_name(ck);
        if !spec.passive {
            permitted(
                &self.conns,
                ck,
                Perm::Configure,
                Resource::Exchange,
                &spec.name,
            )?;
        }
        let what = exchange_ref(&spec.name, &vname);
        let vhost = self
            .vhosts
            .get_mut(&*vname)
            .ok_or_else(|| no_vhost(&vname))?;
        if spec.passive {
            return match vhost.exchanges.contains_key(&spec.name) {
                true => Ok(()),
                false => Err(AmqpError::not_found(format!("no {what}"))),
            };
        }
        if spec.name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        let kind = ExchangeKind::parse(&spec.kind).ok_or_else(|| {
            AmqpError::precondition(format!("invalid exchange type '{}'", spec.kind))
        })?;
        if let Some(ae) = spec.arguments.inner().get("alternate-exchange") {
            let ae = match ae {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                _ => {
                    return Err(AmqpError::precondition(format!(
                        "invalid arg 'alternate-exchange' for {what}: expected a string"
                    )))
                }
            };
            // Unroutable messages go on to the alternate exchange as if published there.
            permitted(&self.conns, ck, Perm::Read, Resource::Exchange, &spec.name)?;
            permitted(&self.conns, ck, Perm::Write, Resource::Exchange, &ae)?;
        }
        match vhost.exchanges.get(&spec.name) {
            Some(existing) => {
                let checks = [
                    (
                        "type",
                        existing.kind.as_str().to_string(),
                        kind.as_str().to_string(),
                    ),
                    (
                        "durable",
                        existing.durable.to_string(),
                        spec.durable.to_string(),
                    ),
                    (
                        "auto_delete",
                        existing.auto_delete.to_string(),
                        spec.auto_delete.to_string(),
                    ),
                    (
                        "internal",
                        existing.internal.to_string(),
                        spec.internal.to_string(),
                    ),
                    (
                        "alternate-exchange",
                        render(existing.arguments.inner().get("alternate-exchange")),
                        render(spec.arguments.inner().get("alternate-exchange")),
                    ),
                ];
                for (arg, current, received) in checks {
                    if current != received {
                        return Err(inequivalent(arg, &what, received, current));
                    }
                }
                Ok(())
            }
            None if spec.name.starts_with("amq.") => Err(AmqpError::access_refused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                spec.name
            ))),
            None => {
                let e = Exchange::new(
                    spec.name.clone(),
                    kind,
                    spec.durable,
                    spec.auto_delete,
                    spec.internal,
                    spec.arguments,
                );
                vhost.exchanges.insert(spec.name.clone(), e);
                self.apply_exchange_policy(&vname, &spec.name);
                self.persist_exchange(&vname, &spec.name);
                Ok(())
            }
        }
    }

    pub fn exchange_delete(
        &mut self,
        ck: ChanKey,
        name: &str,
        if_unused: bool,
    ) -> Result<(), AmqpError> {
        let vname = self.vhost_name(ck);
        permitted(&self.conns, ck, Perm::Configure, Resource::Exchange, name)?;
        check_not_reserved_exchange(name, &vname)?;
        let vhost = self
            .vhosts
            .get_mut(&*vname)
            .ok_or_else(|| no_vhost(&vname))?;
        let Some(exchange) = vhost.exchanges.get(name) else {
            return Ok(());
        };
        if if_unused && !exchange.bindings().is_empty() {
            return Err(AmqpError::precondition(format!(
                "{} in use",
                exchange_ref(name, &vname)
            )));
        }
        self.remove_exchange(&vname, name);
        Ok(())
    }

    /// `exchange.bind` (`destination` is an exchange) and `queue.bind` alike.
    pub fn bind(
        &mut self,
        ck: ChanKey,
        source: &str,
        destination: Destination,
        key: &str,
        arguments: FieldTable,
    ) -> Result<(), AmqpError> {
        let vname = self.vhost_name(ck);
        self.check_binding_access(ck, source, &destination, key)?;
        self.check_binding_ends(ck, &vname, source, &destination)?;
        let vhost = self
            .vhosts
            .get_mut(&*vname)
            .ok_or_else(|| no_vhost(&vname))?;
        let binding = Binding {
            destination,
            key: key.to_string(),
            arguments,
        };
        if let Some(exchange) = vhost.exchanges.get_mut(source) {
            exchange.bind(binding.clone());
        }
        self.persist_binding(&vname, source, &binding, true);
        Ok(())
    }

    /// Binding and unbinding need write on the destination and read on the source.
    fn check_binding_access(
        &self,
        ck: ChanKey,
        source: &str,
        destination: &Destination,
        key: &str,
    ) -> Result<(), AmqpError> {
        match destination {
            Destination::Queue(q) => permitted(&self.conns, ck, Perm::Write, Resource::Queue, q)?,
            Destination::Exchange(e) => {
                permitted(&self.conns, ck, Perm::Write, Resource::Exchange, e)?
            }
        }
        permitted(&self.conns, ck, Perm::Read, Resource::Exchange, source)?;
        super::topic_permitted(self, ck, Perm::Read, source, key)
    }

    /// `exchange.unbind` and `queue.unbind`: as in RabbitMQ, removing a binding that is not
    /// there (or whose exchange is gone) succeeds.
    pub fn unbind(
        &mut self,
        ck: ChanKey,
        source: &str,
        destination: Destination,
        key: &str,
        arguments: FieldTable,
    ) -> Result<(), AmqpError> {
        let vname = self.vhost_name(ck);
        self.check_binding_access(ck, source, &destination, key)?;
        if source.is_empty() || matches!(&destination, Destination::Exchange(e) if e.is_empty()) {
            return Err(default_exchange_refused());
        }
        if let Destination::Queue(q) = &destination {
            if let Some(queue) = self.vhosts.get(&*vname).and_then(|v| v.queues.get(q)) {
                check_exclusive_access(queue, ck, &vname)?;
            }
        }
        let binding = Binding {
            destination,
            key: key.to_string(),
            arguments,
        };
        let removed = self
            .vhosts
            .get_mut(&*vname)
            .and_then(|v| v.exchanges.get_mut(source))
            .is_some_and(|e| e.unbind(&binding));
        if removed {
            self.persist_binding(&vname, source, &binding, false);
            self.auto_delete_exchange_if_unused(&vname, source);
        }
        Ok(())
    }

    fn check_binding_ends(
        &self,
        ck: ChanKey,
        vname: &str,
        source: &str,
        destination: &Destination,
    ) -> Result<(), AmqpError> {
        let vhost = self.vhosts.get(vname).ok_or_else(|| no_vhost(vname))?;
        match destination {
            Destination::Queue(q) => {
                let queue = vhost
                    .queues
                    .get(q)
                    .ok_or_else(|| AmqpError::not_found(format!("no {}", queue_ref(q, vname))))?;
                check_exclusive_access(queue, ck, vname)?;
            }
            Destination::Exchange(e) => {
                if e.is_empty() {
                    return Err(default_exchange_refused());
                }
                if !vhost.exchanges.contains_key(e) {
                    return Err(AmqpError::not_found(format!(
                        "no {}",
                        exchange_ref(e, vname)
                    )));
                }
            }
        }
        if source.is_empty() {
            return Err(default_exchange_refused());
        }
        if !vhost.exchanges.contains_key(source) {
            return Err(AmqpError::not_found(format!(
                "no {}",
                exchange_ref(source, vname)
            )));
        }
        Ok(())
    }

    pub fn queue_declare(&mut self, ck: ChanKey, spec: QueueSpec) -> Result<QueueInfo, AmqpError> {
        let vname = self.vhost_name(ck);
        if !spec.passive {
            self.totals.queues_declared += 1;
        }
        let vhost = self
            .vhosts
            .get_mut(&*vname)
            .ok_or_else(|| no_vhost(&vname))?;
        if spec.passive {
            let queue = vhost.queues.get(&spec.name).ok_or_else(|| {
                AmqpError::not_found(format!("no {}", queue_ref(&spec.name, &vname)))
            })?;
            check_exclusive_access(queue, ck, &vname)?;
            return Ok(info(queue));
        }
        let name = if spec.name.is_empty() {
            super::lifecycle::generated_name("amq.gen-")
        } else if spec.name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                spec.name
            )));
        } else {
            spec.name.clone()
        };
        permitted(&self.conns, ck, Perm::Configure, Resource::Queue, &name)?;
        let what = queue_ref(&name, &vname);
        let args = parse_queue_args(&spec.arguments, &what)?;
        if let Some(dlx) = &args.dead_letter_exchange {
            // Dead letters are published to the exchange as if by the declaring user.
            permitted(&self.conns, ck, Perm::Read, Resource::Queue, &name)?;
            permitted(&self.conns, ck, Perm::Write, Resource::Exchange, dlx)?;
        }
        if let Some(existing) = vhost.queues.get_mut(&name) {
            check_exclusive_access(existing, ck, &vname)?;
            let checks = [
                ("durable", existing.durable, spec.durable),
                ("auto_delete", existing.auto_delete, spec.auto_delete),
            ];
            for (arg, current, received) in checks {
                if current != received {
                    return Err(inequivalent(
                        arg,
                        &what,
                        received.to_string(),
                        current.to_string(),
                    ));
                }
            }
            if existing.exclusive_owner.is_some() != spec.exclusive {
                return Err(exclusive_locked(&name, &vname));
            }
            if existing.kind() != args.kind() {
                return Err(inequivalent(
                    "x-queue-type",
                    &what,
                    args.kind().as_str().into(),
                    existing.kind().as_str().into(),
                ));
            }
            for arg in EQUIVALENCE_CHECKED {
                let current = existing.arguments.inner().get(*arg);
                let received = spec.arguments.inner().get(*arg);
                if let Some(difference) = argument_difference(received, current) {
                    return Err(AmqpError::precondition(format!(
                        "inequivalent arg '{arg}' for {what}: {difference}"
                    )));
                }
            }
            existing.last_used_ms = (self.clock)();
            return Ok(info(existing));
        }
        if args.kind() == QueueType::Quorum {
            let invalid = if !spec.durable {
                Some("non-durable")
            } else if spec.exclusive {
                Some("exclusive-owner")
            } else if spec.auto_delete {
                Some("auto-delete")
            } else {
                None
            };
            if let Some(property) = invalid {
                return Err(AmqpError::precondition(format!(
                    "invalid property '{property}' for {what}"
                )));
            }
        }
        if let Some(max) = self.limits.max_queues {
            if vhost.queues.len() >= max {
                return Err(AmqpError::precondition(format!(
                    "cannot declare queue '{name}': queue limit in vhost '{vname}' ({max}) is reached"
                )));
            }
        }
        let owner = spec.exclusive.then_some(ck.conn);
        let queue = Queue::new(
            name.clone(),
            spec.durable,
            spec.auto_delete,
            owner,
            spec.arguments,
            args,
            (self.clock)(),
        )
        .counting_into(self.resident.clone());
        let result = info(&queue);
        vhost.queues.insert(name.clone(), queue);
        self.totals.queues_created += 1;
        self.apply_queue_policy(&vname, &name);
        self.persist_queue(&vname, &name);
        Ok(result)
    }

    pub fn queue_purge(&mut self, ck: ChanKey, name: &str) -> Result<u32, AmqpError> {
        let vname = self.vhost_name(ck);
        permitted(&self.conns, ck, Perm::Read, Resource::Queue, name)?;
        let queue = self.queue_mut(ck, &vname, name)?;
        let purged = queue.drain();
        let count = purged.len() as u32;
        self.discard(&vname, name, purged, None, 0);
        Ok(count)
    }

    pub fn queue_delete(
        &mut self,
        ck: ChanKey,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, AmqpError> {
        let vname = self.vhost_name(ck);
        permitted(&self.conns, ck, Perm::Configure, Resource::Queue, name)?;
        let Some(queue) = self.vhosts.get(&*vname).and_then(|v| v.queues.get(name)) else {
            return Ok(0);
        };
        check_exclusive_access(queue, ck, &vname)?;
        if if_unused && queue.consumer_count() > 0 {
            return Err(AmqpError::precondition(format!(
                "{} in use",
                queue_ref(name, &vname)
            )));
        }
        if if_empty && !queue.is_empty() {
            return Err(AmqpError::precondition(format!(
                "{} not empty",
                queue_ref(name, &vname)
            )));
        }
        Ok(self.remove_queue(&vname, name) as u32)
    }

    /// A queue the calling connection may use.
    pub(super) fn queue_mut(
        &mut self,
        ck: ChanKey,
        vname: &str,
        name: &str,
    ) -> Result<&mut Queue, AmqpError> {
        let queue = self
            .vhosts
            .get_mut(vname)
            .and_then(|v| v.queues.get_mut(name))
            .ok_or_else(|| AmqpError::not_found(format!("no {}", queue_ref(name, vname))))?;
        check_exclusive_access(queue, ck, vname)?;
        Ok(queue)
    }
}

fn info(queue: &Queue) -> QueueInfo {
    QueueInfo {
        name: queue.name.clone(),
        messages: queue.len() as u32,
        consumers: queue.consumer_count() as u32,
    }
}

fn check_exclusive_access(queue: &Queue, ck: ChanKey, vname: &str) -> Result<(), AmqpError> {
    match queue.exclusive_owner {
        Some(owner) if owner != ck.conn => Err(exclusive_locked(&queue.name, vname)),
        _ => Ok(()),
    }
}

fn exclusive_locked(name: &str, vname: &str) -> AmqpError {
    AmqpError::resource_locked(format!(
        "cannot obtain exclusive access to locked {}. It could be originally declared on \
         another connection or the exclusive property value does not match that of the \
         original declaration.",
        queue_ref(name, vname)
    ))
}

fn check_not_reserved_exchange(name: &str, vname: &str) -> Result<(), AmqpError> {
    if name.is_empty() {
        return Err(default_exchange_refused());
    }
    if name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format!(
            "deletion of system {} not allowed",
            exchange_ref(name, vname)
        )));
    }
    Ok(())
}

fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

pub(super) fn no_vhost(name: &str) -> AmqpError {
    AmqpError::not_allowed(format!("vhost '{name}' not found"))
}
