//! Messages leaving a queue for good: dead-lettered through the queue's
//! `x-dead-letter-exchange` when there is a reason and an exchange, and forgotten by the log.
//!
//! A dead-lettered message carries RabbitMQ's `x-death` header (one table per queue and
//! reason, newest first, with a count) and `x-first-death-*` headers; its `expiration` is
//! removed (kept in `x-death` as `original-expiration`) so it does not expire again.

use super::paging::PageFor;
use super::queue::Entry;
use super::{Core, Message};
use crate::store::SPILL_BASE;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// `basic.reject` or `basic.nack` with `requeue=false`.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// The queue's length limit pushed it out (or refused it, with `reject-publish-dlx`).
    MaxLen,
    /// It came back more often than the quorum queue's `x-delivery-limit` allows.
    DeliveryLimit,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::MaxLen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

impl Core {
    /// `entries` have left queue `queue` for good.
    pub(super) fn discard(
        &mut self,
        vname: &str,
        queue: &str,
        entries: Vec<Entry>,
        reason: Option<Reason>,
        depth: u32,
    ) {
        let target = self
            .vhosts
            .get(vname)
            .and_then(|v| v.queues.get(queue))
            .and_then(|q| {
                let dlx = q.args.dead_letter_exchange.clone()?;
                Some((dlx, q.args.dead_letter_routing_key.clone()))
            });
        let Some((reason, (dlx, dlrk))) = reason.zip(target) else {
            let persisted = entries.iter().filter_map(|e| e.persisted()).collect();
            return self.forget(vname, queue, persisted);
        };
        let counter = match reason {
            Reason::Expired => &mut self.totals.dead_lettered_expired,
            Reason::Rejected => &mut self.totals.dead_lettered_rejected,
            Reason::MaxLen => &mut self.totals.dead_lettered_maxlen,
            Reason::DeliveryLimit => &mut self.totals.dead_lettered_delivery_limit,
        };
        *counter += entries.len() as u64;
        let now = (self.clock)();
        let mut persisted = Vec::new();
        let mut on_disk = Vec::new();
        for entry in &entries {
            match (&entry.message, entry.persisted()) {
                // Only in the log: the pager reads it for the dead-letter exchange.
                (None, Some(id)) if self.has_pager() => on_disk.push(id),
                _ => {
                    if let Some(message) = self.load(entry) {
                        let dead =
                            dead_lettered(&message, queue, reason, &dlx, dlrk.as_deref(), now);
                        self.republish(vname, dead, depth);
                    }
                    persisted.extend(entry.persisted());
                }
            }
        }
        // Written after the dead-lettered copies, so a crash never loses both.
        self.forget(vname, queue, persisted);
        if !on_disk.is_empty() {
            let then = PageFor::DeadLetter {
                vhost: vname.to_string(),
                queue: queue.to_string(),
                reason,
                dlx,
                dlrk,
                depth,
                at: now,
            };
            self.request_dead_letter(on_disk, then);
        }
    }

    /// Tells the logs (durable and spill) that `queue` no longer holds these messages.
    pub(super) fn forget(&mut self, vname: &str, queue: &str, persisted: Vec<u64>) {
        if persisted.is_empty() {
            return;
        }
        let (spilled, logged): (Vec<u64>, Vec<u64>) =
            persisted.into_iter().partition(|&id| id >= SPILL_BASE);
        for (log, ids) in [(self.log.as_mut(), logged), (self.spill.as_mut(), spilled)] {
            if let Some(log) = log.filter(|_| !ids.is_empty()) {
                if let Err(e) = log.ack(vname, queue, ids) {
                    tracing::error!(error = %e, "writing an ack to the message log failed");
                }
            }
        }
    }

    /// The message of an entry, read back from the log if only the log holds it.
    pub(super) fn load(&mut self, entry: &Entry) -> Option<Arc<Message>> {
        if let Some(m) = &entry.message {
            return Some(m.clone());
        }
        let id = entry.persisted()?;
        match self.store_of(id)?.read(id) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::error!(error = %e, "reading a message back from the log failed");
                None
            }
        }
    }
}

/// The message as it goes to the dead-letter exchange.
pub(crate) fn dead_lettered(
    message: &Message,
    queue: &str,
    reason: Reason,
    dlx: &str,
    dlrk: Option<&str>,
    now_ms: u64,
) -> Message {
    let props = &message.properties;
    let mut headers = props.headers().clone().unwrap_or_default();
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |t: &FieldTable| {
        str_field(t, "queue").as_deref() == Some(queue)
            && str_field(t, "reason").as_deref() == Some(reason.as_str())
    };
    let previous = deaths
        .iter()
        .position(|d| matches!(d, AMQPValue::FieldTable(t) if same(t)));
    let count = match previous.map(|i| deaths.remove(i)) {
        Some(AMQPValue::FieldTable(t)) => match t.inner().get("count") {
            Some(AMQPValue::LongLongInt(n)) => n + 1,
            _ => 1,
        },
        _ => 1,
    };
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(count));
    death.insert("reason".into(), long_str(reason.as_str()));
    death.insert("queue".into(), long_str(queue));
    death.insert("time".into(), AMQPValue::Timestamp(now_ms / 1000));
    death.insert("exchange".into(), long_str(&message.exchange));
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![long_str(&message.routing_key)])),
    );
    if let Some(exp) = props.expiration() {
        death.insert("original-expiration".into(), long_str(exp.as_str()));
    }
    deaths.insert(0, AMQPValue::FieldTable(death));
    headers.insert("x-death".into(), AMQPValue::FieldArray(deaths.into()));
    for (key, value) in [
        ("x-first-death-reason", reason.as_str()),
        ("x-first-death-queue", queue),
        ("x-first-death-exchange", message.exchange.as_str()),
    ] {
        if !headers.contains_key(key) {
            headers.insert(key.into(), long_str(value));
        }
    }
    Message::new(
        dlx,
        dlrk.unwrap_or(&message.routing_key),
        without_expiration(props).with_headers(headers),
        message.body.clone(),
    )
}

/// Whether a dead-lettered message would come back to `queue` in a cycle with no rejection
/// in it (RabbitMQ drops it rather than loop forever).
pub(crate) fn is_cycle(message: &Message, queue: &str) -> bool {
    let Some(AMQPValue::FieldArray(deaths)) = message
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-death"))
    else {
        return false;
    };
    let tables: Vec<&FieldTable> = deaths
        .as_slice()
        .iter()
        .filter_map(|d| match d {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        })
        .collect();
    tables
        .iter()
        .any(|t| str_field(t, "queue").as_deref() == Some(queue))
        && !tables
            .iter()
            .any(|t| str_field(t, "reason").as_deref() == Some(Reason::Rejected.as_str()))
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn str_field(t: &FieldTable, key: &str) -> Option<String> {
    match t.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// The same properties with no `expiration`.
fn without_expiration(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    let short = |s: &ShortString| s.clone();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(short(v));
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(short(v));
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(short(v));
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(short(v));
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(short(v));
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(short(v));
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(short(v));
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(short(v));
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(short(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn x_death_counts_per_queue_and_reason_and_first_death_stays() {
        let original = Message::new(
            "events",
            "a.b",
            BasicProperties::default().with_expiration("500".into()),
            Bytes::from_static(b"x"),
        );
        let once = dead_lettered(&original, "q", Reason::Expired, "dlx", None, 5_000);
        assert_eq!(once.exchange, "dlx");
        assert_eq!(once.routing_key, "a.b");
        assert!(once.properties.expiration().is_none());
        let twice = dead_lettered(&once, "q", Reason::Expired, "dlx", Some("k"), 9_000);
        let headers = twice.properties.headers().clone().unwrap();
        let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
            panic!("no x-death");
        };
        assert_eq!(deaths.as_slice().len(), 1);
        let AMQPValue::FieldTable(d) = &deaths.as_slice()[0] else {
            panic!("x-death entry is not a table");
        };
        assert_eq!(d.inner().get("count"), Some(&AMQPValue::LongLongInt(2)));
        assert_eq!(str_field(d, "exchange").as_deref(), Some("dlx"));
        assert_eq!(
            str_field(&headers, "x-first-death-exchange").as_deref(),
            Some("events")
        );
        assert_eq!(twice.routing_key, "k");
        assert!(is_cycle(&twice, "q"));
        let rejected = dead_lettered(&twice, "q", Reason::Rejected, "dlx", None, 9_500);
        assert!(!is_cycle(&rejected, "q"));
    }
}
