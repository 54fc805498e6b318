//! Administration from inside the process (the management API): views of the core, changes to
//! users, permissions and vhosts, and exchange and queue operations done as a given user, on
//! an in-process connection that has exactly that user's permissions, so every check and
//! error text is the one an AMQP client gets.

use super::publisher::publish_durably;
use super::{PublishError, Shared};
use crate::core::declare::{ExchangeSpec, QueueSpec};
use crate::core::deliver::ConsumeSpec;
use crate::core::inspect::{
    BindingView, ChannelView, ConnectionView, ConsumerView, ExchangeView, QueueView,
};
use crate::core::policy::Policy;
use crate::core::stats::Totals;
use crate::core::{ChanKey, Core, Destination, Message, Outbound, Outlet, Peer, Protocol, Window};
use crate::error::AmqpError;
use crate::store::definitions::{DefOp, PermissionDef, PolicyDef, TopicPermissionDef, UserDef};
use crate::store::json_args::json_to_table;
use crate::users::{PasswordHash, UserError, Users};
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a `get` waits for a message being read back from disk.
const GET_WAIT: Duration = Duration::from_secs(10);

/// Why an administrative operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// What an AMQP client would have been told (not found, access refused, inequivalent...).
    #[error("{0}")]
    Amqp(AmqpError),
    #[error("{0}")]
    NotFound(String),
    #[error("no vhost '{0}'")]
    NoVhost(String),
    #[error(transparent)]
    Policy(#[from] crate::core::policy::PolicyError),
    #[error(transparent)]
    User(#[from] UserError),
    /// The definitions store did not take the change.
    #[error("storing the change failed: {0}")]
    Store(String),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl From<AmqpError> for AdminError {
    fn from(e: AmqpError) -> Self {
        AdminError::Amqp(e)
    }
}

/// A message taken by [`Session::get`].
#[derive(Debug, Clone)]
pub struct Got {
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Messages left in the queue after this one.
    pub message_count: u32,
}

/// A message delivered to a session's consumer ([`Session::consume`]); settle it by `tag`.
#[derive(Debug, Clone)]
pub struct Taken {
    pub tag: u64,
    pub redelivered: bool,
    pub message: Arc<Message>,
}

/// What a `get` does with the messages it takes (RabbitMQ's `ackmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Put them back (marked redelivered).
    Requeue,
    /// Remove them.
    Ack,
    /// Reject them: dead-lettered, or requeued.
    Reject { requeue: bool },
}

/// The broker as its administrator sees it. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    shared: Arc<Shared>,
}

impl Admin {
    pub(super) fn new(shared: Arc<Shared>) -> Admin {
        Admin { shared }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.shared.lock()
    }

    fn users(&self) -> std::sync::RwLockReadGuard<'_, Users> {
        self.shared.users.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn totals(&self) -> Totals {
        self.core().totals()
    }
    pub fn vhosts(&self) -> Vec<String> {
        self.core().vhost_names()
    }
    pub fn exchanges(&self) -> Vec<ExchangeView> {
        self.core().exchange_views()
    }
    pub fn queues(&self) -> Vec<QueueView> {
        self.core().queue_views()
    }
    pub fn bindings(&self) -> Vec<BindingView> {
        self.core().binding_views()
    }
    pub fn connections(&self) -> Vec<ConnectionView> {
        self.core().connection_views()
    }
    pub fn channels(&self) -> Vec<ChannelView> {
        self.core().channel_views()
    }
    pub fn consumers(&self) -> Vec<ConsumerView> {
        self.core().consumer_views()
    }

    /// Publishes confirmed to AMQP publishers.
    pub fn confirmed(&self) -> u64 {
        self.shared
            .confirmed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The broker's settings (memory and disk limits, listeners, data directory).
    pub fn config(&self) -> &crate::BrokerConfig {
        &self.shared.config
    }

    /// The AMQP connections open now.
    pub fn amqp_connections(&self) -> usize {
        self.shared
            .amqp_connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The resource alarm in force, if any (memory or disk).
    pub fn alarm(&self) -> Option<String> {
        self.shared.alarm.borrow().clone()
    }

    pub fn users_list(&self) -> Vec<UserDef> {
        self.users().defs.users.clone()
    }
    pub fn permissions(&self) -> Vec<PermissionDef> {
        self.users().defs.permissions.clone()
    }
    pub fn topic_permissions(&self) -> Vec<TopicPermissionDef> {
        self.users().defs.topics.clone()
    }

    /// The user's tags if `password` is theirs (and, for `guest`, `from` is loopback).
    /// Repeated failures from one address are slowed down as AMQP logins are.
    pub async fn login(&self, user: &str, password: &str, from: IpAddr) -> Option<Vec<String>> {
        let pause = self.shared.logins.pause(from, std::time::Instant::now());
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let users = self.users();
        if users.authenticate(user, password, from) {
            self.shared.logins.succeeded(from);
            return users.tags(user).map(<[String]>::to_vec);
        }
        self.shared.logins.failed(from, std::time::Instant::now());
        None
    }

    /// Whether `user` has a permission entry in `vhost`.
    pub fn may_access(&self, user: &str, vhost: &str) -> bool {
        self.users().access(user, vhost).is_some()
    }

    /// Creates or replaces a user: with `password` hashed, or a RabbitMQ `password_hash`, or
    /// (neither) keeping the old hash. Returns whether it was created.
    pub async fn put_user(
        &self,
        mut def: UserDef,
        password: Option<&str>,
    ) -> Result<bool, AdminError> {
        if let Some(password) = password {
            let hash = PasswordHash::new(password);
            def.password_hash = hash.encoded();
            def.hashing_algorithm = hash.algorithm().into();
        }
        let mut created = true;
        self.change_users(DefOp::PutUser(def.clone()), |defs| {
            match defs.users.iter_mut().find(|u| u.name == def.name) {
                Some(old) => {
                    created = false;
                    if password.is_none() && def.password_hash.is_empty() {
                        def.password_hash = old.password_hash.clone();
                        def.hashing_algorithm = old.hashing_algorithm.clone();
                    }
                    *old = def.clone();
                }
                None => defs.users.push(def.clone()),
            }
        })
        .await?;
        Ok(created)
    }

    /// Deletes a user with its permissions and closes its connections (320, as RabbitMQ).
    pub async fn delete_user(&self, name: &str) -> Result<(), AdminError> {
        if !self.users().defs.users.iter().any(|u| u.name == name) {
            return Err(AdminError::NotFound(format!("user '{name}'")));
        }
        self.change_users(DefOp::DeleteUser(name.into()), |defs| {
            defs.users.retain(|u| u.name != name);
            defs.permissions.retain(|p| p.user != name);
            defs.topics.retain(|p| p.user != name);
        })
        .await?;
        self.close_where(|c| c.user == name, &format!("user '{name}' is deleted"));
        Ok(())
    }

    /// Sets a user's permissions in a vhost. Returns whether they were new.
    pub async fn put_permission(&self, def: PermissionDef) -> Result<bool, AdminError> {
        if !self.core().has_vhost(&def.vhost) {
            return Err(AdminError::NoVhost(def.vhost.clone()));
        }
        if !self.users().defs.users.iter().any(|u| u.name == def.user) {
            return Err(AdminError::NotFound(format!("user '{}'", def.user)));
        }
        let mut created = true;
        self.change_users(DefOp::PutPermission(def.clone()), |defs| {
            let same = |p: &PermissionDef| p.user == def.user && p.vhost == def.vhost;
            created = !defs.permissions.iter().any(same);
            defs.permissions.retain(|p| !same(p));
            defs.permissions.push(def.clone());
        })
        .await?;
        Ok(created)
    }

    /// Sets a user's topic permissions on one exchange of a vhost.
    pub async fn put_topic_permission(&self, def: TopicPermissionDef) -> Result<(), AdminError> {
        if !self.core().has_vhost(&def.vhost) {
            return Err(AdminError::NoVhost(def.vhost.clone()));
        }
        self.change_users(DefOp::PutTopicPermission(def.clone()), |defs| {
            defs.topics.retain(|p| {
                !(p.user == def.user && p.vhost == def.vhost && p.exchange == def.exchange)
            });
            defs.topics.push(def.clone());
        })
        .await
    }

    pub async fn delete_permission(&self, vhost: &str, user: &str) -> Result<(), AdminError> {
        let same = |p: &PermissionDef| p.user == user && p.vhost == vhost;
        if !self.users().defs.permissions.iter().any(same) {
            return Err(AdminError::NotFound(format!(
                "permissions of user '{user}' in vhost '{vhost}'"
            )));
        }
        let op = DefOp::DeletePermission {
            vhost: vhost.into(),
            user: user.into(),
        };
        self.change_users(op, |defs| {
            defs.permissions.retain(|p| !same(p));
            defs.topics
                .retain(|p| !(p.user == user && p.vhost == vhost));
        })
        .await
    }

    /// The policies (or, with `operator`, operator policies) of every vhost.
    pub fn policies(&self, operator: bool) -> Vec<PolicyDef> {
        self.core()
            .policies(operator)
            .iter()
            .map(Policy::to_def)
            .collect()
    }

    /// Sets a policy (checked first: a pattern that is not a regex, an unknown apply-to or a
    /// setting Bloodbank does not honour is refused by name) and applies it to the matching
    /// queues and exchanges. Returns whether it was new.
    pub async fn put_policy(&self, def: &PolicyDef, operator: bool) -> Result<bool, AdminError> {
        let policy = Policy::from_def(def, operator)?;
        let (created, seq) = {
            let mut core = self.core();
            if !core.has_vhost(&def.vhost) {
                return Err(AdminError::NoVhost(def.vhost.clone()));
            }
            (core.set_policy(policy, operator), core.defs_seq())
        };
        self.committed(seq).await?;
        Ok(created)
    }

    pub async fn delete_policy(
        &self,
        vhost: &str,
        name: &str,
        operator: bool,
    ) -> Result<(), AdminError> {
        let seq = {
            let mut core = self.core();
            if !core.clear_policy(vhost, name, operator) {
                return Err(AdminError::NotFound(format!(
                    "policy '{name}' in '{vhost}'"
                )));
            }
            core.defs_seq()
        };
        self.committed(seq).await
    }

    /// Creates a vhost; returns whether it was new.
    pub async fn put_vhost(&self, name: &str) -> Result<bool, AdminError> {
        let (created, seq) = {
            let mut core = self.core();
            (core.add_vhost(name), core.defs_seq())
        };
        self.committed(seq).await?;
        Ok(created)
    }

    /// Deletes a vhost with everything in it, and the permissions to it.
    pub async fn delete_vhost(&self, name: &str) -> Result<(), AdminError> {
        let seq = {
            let mut core = self.core();
            if !core.delete_vhost(name) {
                return Err(AdminError::NoVhost(name.to_string()));
            }
            core.defs_seq()
        };
        self.committed(seq).await?;
        let changed = self.users().changed(|defs| {
            defs.permissions.retain(|p| p.vhost != name);
            defs.topics.retain(|p| p.vhost != name);
        })?;
        *self.shared.users.write().unwrap_or_else(|p| p.into_inner()) = changed;
        Ok(())
    }

    /// Closes a network connection by name with 320 CONNECTION_FORCED and `reason`; false if
    /// there is no such connection.
    pub fn close_connection(&self, name: &str, reason: &str) -> bool {
        self.close_where(|c| c.details.name == name, reason) > 0
    }

    fn close_where(&self, which: impl Fn(&ConnectionView) -> bool, reason: &str) -> usize {
        let doomed: Vec<ConnectionView> = self.connections().into_iter().filter(which).collect();
        for c in &doomed {
            c.details.close.send_replace(Some(reason.to_string()));
        }
        doomed.len()
    }

    /// Applies a change to the users (checked before anything is stored) and stores it.
    async fn change_users(
        &self,
        op: DefOp,
        change: impl FnOnce(&mut crate::users::UserDefs),
    ) -> Result<(), AdminError> {
        let seq = {
            let mut users = self.shared.users.write().unwrap_or_else(|p| p.into_inner());
            let changed = users.changed(change)?;
            let mut core = self.core();
            core.store_def(op);
            *users = changed;
            core.refresh_access(|user, vhost| users.access(user, vhost));
            core.defs_seq()
        };
        self.committed(seq).await
    }

    /// Waits until the definitions writer has stored change `seq`.
    async fn committed(&self, seq: u64) -> Result<(), AdminError> {
        let Some(writer) = self.core().defs_writer() else {
            return Ok(());
        };
        let mut done = writer.subscribe();
        while *done.borrow_and_update() < seq {
            if done.changed().await.is_err() {
                return Err(AdminError::Store("the definitions writer stopped".into()));
            }
        }
        match writer.failure(seq.saturating_sub(1), seq) {
            Some(why) => Err(AdminError::Store(why)),
            None => Ok(()),
        }
    }

    /// A live subscription to `exchange` in vhost `/` by a topic `pattern` (the dashboard's
    /// tail of events); see [`super::Subscription`].
    pub fn subscribe(
        &self,
        exchange: &str,
        pattern: &str,
    ) -> Result<super::Subscription, AdminError> {
        Ok(super::Subscription::open(
            self.shared.clone(),
            exchange,
            pattern,
        )?)
    }

    /// A session acting as `user` in `vhost`, with that user's permissions there.
    pub fn session(&self, user: &str, vhost: &str) -> Result<Session, AdminError> {
        if !self.core().has_vhost(vhost) {
            return Err(AdminError::NoVhost(vhost.to_string()));
        }
        let access = self.users().access(user, vhost).ok_or_else(|| {
            AdminError::Amqp(AmqpError::access_refused(format!(
                "access to vhost '{vhost}' refused for user '{user}'"
            )))
        })?;
        Ok(self.open_session(user, vhost, access))
    }

    /// A session with every permission in `vhost` (importing definitions, as RabbitMQ's
    /// import is not limited by the importing user's permissions).
    pub fn system_session(&self, vhost: &str) -> Result<Session, AdminError> {
        if !self.core().has_vhost(vhost) {
            return Err(AdminError::NoVhost(vhost.to_string()));
        }
        let access = crate::core::access::Access::all("bloodbank", vhost);
        Ok(self.open_session("bloodbank", vhost, access))
    }

    /// [`Admin::system_session`] on a vhost known to exist (`/` is never deleted while the
    /// process runs).
    pub(super) fn system_session_on(&self, vhost: &str) -> Session {
        let access = crate::core::access::Access::all("bloodbank", vhost);
        self.open_session("bloodbank", vhost, access)
    }

    fn open_session(
        &self,
        user: &str,
        vhost: &str,
        access: crate::core::access::Access,
    ) -> Session {
        let (outlet, outbox) = Outlet::new(super::OUTLET_BUDGET);
        let window = outlet.window();
        let peer = Peer {
            user: user.into(),
            vhost: vhost.into(),
            protocol: Protocol::InProcess,
            addr: None,
            cancel_notify: false,
            access,
            details: Arc::default(),
        };
        let ck = {
            let mut core = self.core();
            let conn = core.register_connection(outlet, peer);
            let ck = ChanKey { conn, channel: 1 };
            core.open_channel(ck);
            ck
        };
        Session {
            admin: self.clone(),
            ck,
            outbox,
            window,
        }
    }
}

/// Operations as one user in one vhost; the in-process connection closes when it is dropped
/// (anything it took and did not settle goes back to its queue).
pub struct Session {
    admin: Admin,
    ck: ChanKey,
    outbox: UnboundedReceiver<Outbound>,
    /// The bytes of messages handed to this session and not yet taken from `outbox`.
    window: Arc<Window>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.admin.core().close_connection(self.ck.conn);
    }
}

impl Session {
    /// Runs `op` on the core and waits for the definition changes it made to be stored.
    async fn durably<T>(
        &self,
        op: impl FnOnce(&mut Core, ChanKey) -> Result<T, AmqpError>,
    ) -> Result<T, AdminError> {
        let (out, seq) = {
            let mut core = self.admin.core();
            let out = op(&mut core, self.ck)?;
            (out, core.defs_seq())
        };
        self.admin.committed(seq).await?;
        Ok(out)
    }

    pub async fn declare_exchange(&self, spec: ExchangeSpec) -> Result<(), AdminError> {
        self.durably(|core, ck| core.exchange_declare(ck, spec))
            .await
    }

    pub async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), AdminError> {
        self.durably(|core, ck| core.exchange_delete(ck, name, if_unused))
            .await
    }

    /// Declares a queue; returns whether it was created.
    pub async fn declare_queue(&self, spec: QueueSpec) -> Result<bool, AdminError> {
        let name = spec.name.clone();
        self.durably(|core, ck| {
            let existed = core
                .vhost(&core.vhost_name(ck))
                .is_some_and(|v| v.queues.contains_key(&name));
            core.queue_declare(ck, spec).map(|_| !existed)
        })
        .await
    }

    pub async fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<(), AdminError> {
        self.exists(name)?;
        self.durably(|core, ck| core.queue_delete(ck, name, if_unused, if_empty))
            .await
            .map(drop)
    }

    pub async fn purge_queue(&self, name: &str) -> Result<u32, AdminError> {
        self.durably(|core, ck| core.queue_purge(ck, name)).await
    }

    /// Binds `destination` (a queue, or an exchange with `to_exchange`) to `source`.
    pub async fn bind(
        &self,
        source: &str,
        destination: &str,
        to_exchange: bool,
        key: &str,
        arguments: &Value,
    ) -> Result<(), AdminError> {
        let dest = destination_of(destination, to_exchange);
        let args = json_to_table(arguments);
        self.durably(|core, ck| core.bind(ck, source, dest, key, args))
            .await
    }

    pub async fn unbind(
        &self,
        source: &str,
        destination: &str,
        to_exchange: bool,
        key: &str,
        arguments: &Value,
    ) -> Result<(), AdminError> {
        let dest = destination_of(destination, to_exchange);
        let args = json_to_table(arguments);
        self.durably(|core, ck| core.unbind(ck, source, dest, key, args))
            .await
    }

    /// Publishes and waits until the message is durable where it must be; returns whether
    /// it reached a queue.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: Bytes,
    ) -> Result<bool, AdminError> {
        let message = Message::new(exchange, routing_key, properties, body);
        match publish_durably(&self.admin.shared, self.ck, message).await {
            Ok(queues) => Ok(queues > 0),
            // Refused by permissions: what an AMQP client would be told.
            Err(PublishError::Refused(e)) => Err(AdminError::Amqp(e)),
            Err(e) => Err(AdminError::Publish(e)),
        }
    }

    /// Takes up to `count` messages from the head of a queue, then settles them by `mode`.
    pub async fn get(
        &mut self,
        queue: &str,
        count: usize,
        mode: AckMode,
    ) -> Result<Vec<Got>, AdminError> {
        self.exists(queue)?;
        let mut got = Vec::new();
        let mut last_tag = 0;
        for _ in 0..count {
            self.admin.core().basic_get(self.ck, queue, false)?;
            let answer = tokio::time::timeout(GET_WAIT, self.outbox.recv()).await;
            if let Ok(Some(out)) = &answer {
                self.window.written(out.content_bytes());
            }
            match answer {
                Ok(Some(Outbound::GetOk {
                    delivery_tag,
                    redelivered,
                    message_count,
                    message,
                    ..
                })) => {
                    last_tag = delivery_tag;
                    got.push(Got {
                        message,
                        redelivered,
                        message_count,
                    });
                }
                _ => break,
            }
        }
        if last_tag > 0 {
            let mut core = self.admin.core();
            match mode {
                AckMode::Ack => core.basic_ack(self.ck, last_tag, true)?,
                AckMode::Requeue => core.basic_nack(self.ck, last_tag, true, true)?,
                AckMode::Reject { requeue } => core.basic_nack(self.ck, last_tag, true, requeue)?,
            }
        }
        Ok(got)
    }

    /// Consumes `queue` with manual acknowledgements, at most `prefetch` unsettled at a time
    /// (a session has one consumer); messages arrive with [`Session::next_delivery`].
    pub fn consume(&self, queue: &str, prefetch: u16) -> Result<(), AdminError> {
        self.exists(queue)?;
        let mut core = self.admin.core();
        core.basic_qos(self.ck, prefetch, false);
        core.basic_consume(
            self.ck,
            ConsumeSpec {
                queue: queue.into(),
                tag: "session".into(),
                no_ack: false,
                exclusive: false,
                nowait: true,
            },
        )?;
        Ok(())
    }

    /// The consumer's next message; `None` once the broker has shut down.
    pub async fn next_delivery(&mut self) -> Option<Taken> {
        loop {
            let out = self.outbox.recv().await?;
            self.window.written(out.content_bytes());
            match out {
                Outbound::Deliver {
                    delivery_tag,
                    redelivered,
                    message,
                    ..
                } => {
                    return Some(Taken {
                        tag: delivery_tag,
                        redelivered,
                        message,
                    })
                }
                Outbound::Shutdown => return None,
                _ => {}
            }
        }
    }

    /// Settles a delivery: acknowledged, or rejected (back to the queue with `requeue`).
    pub fn settle(&self, tag: u64, ack: bool, requeue: bool) -> Result<(), AdminError> {
        let mut core = self.admin.core();
        match ack {
            true => core.basic_ack(self.ck, tag, false)?,
            false => core.basic_nack(self.ck, tag, false, requeue)?,
        }
        Ok(())
    }

    fn exists(&self, queue: &str) -> Result<(), AdminError> {
        let core = self.admin.core();
        let vname = core.vhost_name(self.ck);
        match core
            .vhost(&vname)
            .is_some_and(|v| v.queues.contains_key(queue))
        {
            true => Ok(()),
            false => Err(AdminError::NotFound(format!(
                "queue '{queue}' in vhost '{vname}'"
            ))),
        }
    }
}

fn destination_of(name: &str, to_exchange: bool) -> Destination {
    match to_exchange {
        true => Destination::Exchange(name.into()),
        false => Destination::Queue(name.into()),
    }
}
