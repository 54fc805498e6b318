//! Rebuilding the log's index from its records, oldest first. Pure: records in, state out.
//!
//! The index knows, for every live persistent message, where its newest copy is and which
//! queues still hold it; and, per queue, the messages it holds in publish (id) order.

use super::live::{fits, LiveIndex};
use super::record::{Holder, Record};
use super::segment::Location;
use crate::wire::parse_properties;
use crate::Map;
use std::collections::BTreeMap;

/// A queue as the log names it, interned as a small number.
pub(crate) type QueueId = u32;

/// Looked up on every append (publish, ack, delivery mark): vhost first, then queue, so a
/// lookup borrows the names instead of allocating a key.
#[derive(Debug, Default)]
pub(crate) struct Names {
    ids: Map<String, Map<String, QueueId>>,
    names: Vec<(String, String)>,
}

impl Names {
    pub(crate) fn id(&mut self, vhost: &str, queue: &str) -> QueueId {
        if let Some(id) = self.get(vhost, queue) {
            return id;
        }
        let id = self.names.len() as QueueId;
        self.names.push((vhost.to_string(), queue.to_string()));
        self.ids
            .entry(vhost.to_string())
            .or_default()
            .insert(queue.to_string(), id);
        id
    }

    pub(crate) fn get(&self, vhost: &str, queue: &str) -> Option<QueueId> {
        self.ids.get(vhost)?.get(queue).copied()
    }

    pub(crate) fn name(&self, id: QueueId) -> (&str, &str) {
        let (v, q) = &self.names[id as usize];
        (v, q)
    }
}

/// What a queue needs to know of a recovered message without reading its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub delivered: bool,
    pub published_ms: u64,
    pub priority: u8,
    /// The per-message `expiration` property, in ms.
    pub expiration: Option<u64>,
    pub size: u64,
}

/// A queue's messages while the log is replayed, in id order. Publishes arrive with growing ids
/// and are appended; settled messages leave a gap, closed up once gaps are half the list. An id
/// older than the newest (a copy carried forward whose original record is gone) waits aside.
#[derive(Debug, Default)]
pub(crate) struct Held {
    in_order: Vec<(u64, Option<Meta>)>,
    gaps: usize,
    late: BTreeMap<u64, Meta>,
}

impl Held {
    fn find(&self, id: u64) -> Result<usize, usize> {
        self.in_order.binary_search_by_key(&id, |m| m.0)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Meta> {
        match self.find(id) {
            Ok(at) => self.in_order[at].1.as_mut(),
            Err(_) => self.late.get_mut(&id),
        }
    }

    fn insert(&mut self, id: u64, meta: Meta) {
        if self.in_order.last().is_none_or(|m| m.0 < id) {
            self.in_order.push((id, Some(meta)));
            return;
        }
        match self.find(id) {
            Ok(at) => {
                if self.in_order[at].1.replace(meta).is_none() {
                    self.gaps -= 1;
                }
            }
            Err(_) => {
                self.late.insert(id, meta);
            }
        }
    }

    fn remove(&mut self, id: u64) {
        match self.find(id) {
            Ok(at) => {
                if self.in_order[at].1.take().is_some() {
                    self.gaps += 1;
                }
            }
            Err(_) => {
                self.late.remove(&id);
            }
        }
        if self.gaps > 1024 && self.gaps * 2 > self.in_order.len() {
            self.in_order.retain(|m| m.1.is_some());
            self.gaps = 0;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.in_order.len() == self.gaps && self.late.is_empty()
    }

    /// The messages, in id order.
    pub(crate) fn into_sorted(self) -> Vec<(u64, Meta)> {
        let mut out: Vec<(u64, Meta)> = self
            .in_order
            .into_iter()
            .filter_map(|(id, m)| Some((id, m?)))
            .collect();
        if !self.late.is_empty() {
            out.extend(self.late);
            out.sort_unstable_by_key(|m| m.0);
        }
        out
    }
}

#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub names: Names,
    pub live: LiveIndex,
    pub queues: Map<QueueId, Held>,
    pub max_id: Option<u64>,
    /// Records whose place in their segment is past what the index can hold.
    pub unindexable: Vec<(u64, Location)>,
    /// The holders of the record being applied (kept to save an allocation per record).
    held: Vec<(QueueId, bool)>,
}

impl Replay {
    pub(crate) fn apply(&mut self, record: Record, loc: Location) {
        match record {
            Record::Publish {
                msg_id,
                published_ms,
                properties,
                body,
                holders,
                ..
            } => {
                self.max_id = Some(self.max_id.map_or(msg_id, |m| m.max(msg_id)));
                let props = parse_properties(&properties).unwrap_or_default();
                let meta = Meta {
                    delivered: false,
                    published_ms,
                    priority: props.priority().unwrap_or(0),
                    expiration: props
                        .expiration()
                        .as_ref()
                        .and_then(|e| e.as_str().parse().ok()),
                    size: body.len() as u64,
                };
                if !fits(&loc) {
                    self.unindexable.push((msg_id, loc));
                    return;
                }
                let mut held = std::mem::take(&mut self.held);
                held.clear();
                for Holder {
                    vhost,
                    queue,
                    delivered,
                } in holders
                {
                    let q = self.names.id(&vhost, &queue);
                    let m = self.queues.entry(q).or_default();
                    let was_delivered = m.get_mut(msg_id).is_some_and(|x| x.delivered);
                    m.insert(
                        msg_id,
                        Meta {
                            delivered: delivered || was_delivered,
                            ..meta.clone()
                        },
                    );
                    held.push((q, delivered || was_delivered));
                }
                // A copy carried forward lists exactly the queues holding it at that time.
                self.live.insert(msg_id, loc, &held);
                self.held = held;
            }
            Record::Ack {
                vhost,
                queue,
                msg_ids,
            } => {
                let q = self.names.id(&vhost, &queue);
                for id in msg_ids {
                    if let Some(m) = self.queues.get_mut(&q) {
                        m.remove(id);
                    }
                    self.release(id, q);
                }
            }
            Record::Delivered {
                vhost,
                queue,
                msg_id,
            } => {
                let q = self.names.id(&vhost, &queue);
                if let Some(meta) = self.queues.get_mut(&q).and_then(|m| m.get_mut(msg_id)) {
                    meta.delivered = true;
                }
                self.live.mark_delivered(msg_id, q);
            }
            Record::Drop { vhost, queue } => {
                let q = self.names.id(&vhost, &queue);
                if let Some(m) = self.queues.remove(&q) {
                    for (id, _) in m.into_sorted() {
                        self.release(id, q);
                    }
                }
            }
        }
    }

    /// Queue `q` no longer holds message `id`; the message dies with its last holder.
    fn release(&mut self, id: u64, q: QueueId) {
        self.live.release(id, q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn loc(offset: u64) -> Location {
        Location {
            segment: 0,
            offset,
            len: 1,
        }
    }

    fn publish(id: u64, queues: &[&str]) -> Record {
        Record::Publish {
            msg_id: id,
            published_ms: 0,
            exchange: String::new(),
            routing_key: String::new(),
            properties: Bytes::new(),
            body: Bytes::from_static(b"x"),
            holders: queues
                .iter()
                .map(|q| Holder {
                    vhost: "/".into(),
                    queue: q.to_string(),
                    delivered: false,
                })
                .collect(),
        }
    }

    fn ack(q: &str, ids: &[u64]) -> Record {
        Record::Ack {
            vhost: "/".into(),
            queue: q.into(),
            msg_ids: ids.to_vec(),
        }
    }

    #[test]
    fn a_message_lives_until_every_queue_has_settled_it() {
        let mut r = Replay::default();
        r.apply(publish(1, &["a", "b"]), loc(0));
        r.apply(publish(2, &["a"]), loc(1));
        r.apply(ack("a", &[1]), loc(2));
        assert!(r.live.contains(1));
        r.apply(ack("b", &[1]), loc(3));
        assert!(!r.live.contains(1));
        let a = r.names.get("/", "a").unwrap();
        let held: Vec<u64> = r
            .queues
            .remove(&a)
            .unwrap()
            .into_sorted()
            .into_iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(held, vec![2]);
        assert_eq!(r.max_id, Some(2));
    }

    #[test]
    fn delivered_marks_survive_a_copy_forward_and_drop_clears_a_queue() {
        let mut r = Replay::default();
        r.apply(publish(1, &["a"]), loc(0));
        r.apply(
            Record::Delivered {
                vhost: "/".into(),
                queue: "a".into(),
                msg_id: 1,
            },
            loc(1),
        );
        r.apply(publish(1, &["a"]), loc(2));
        let a = r.names.get("/", "a").unwrap();
        assert!(r.queues.get_mut(&a).unwrap().get_mut(1).unwrap().delivered);
        assert_eq!(r.live.location(1), Some(loc(2)));
        r.apply(
            Record::Drop {
                vhost: "/".into(),
                queue: "a".into(),
            },
            loc(3),
        );
        assert!(r.live.is_empty());
    }

    #[test]
    fn a_queue_keeps_id_order_through_gaps_and_late_copies() {
        let meta = |size| Meta {
            delivered: false,
            published_ms: 0,
            priority: 0,
            expiration: None,
            size,
        };
        let mut h = Held::default();
        for id in 10..3000 {
            h.insert(id, meta(id));
        }
        for id in 10..2500 {
            h.remove(id);
        }
        assert!(h.in_order.len() < 2000, "gaps are closed up");
        h.insert(5, meta(5));
        h.insert(2600, meta(1));
        h.remove(2700);
        h.get_mut(2601).unwrap().delivered = true;
        assert!(!h.is_empty());
        let held = h.into_sorted();
        let ids: Vec<u64> = held.iter().map(|m| m.0).collect();
        let want: Vec<u64> = [5]
            .into_iter()
            .chain((2500..3000).filter(|&id| id != 2700))
            .collect();
        assert_eq!(ids, want);
        assert_eq!(held.iter().find(|m| m.0 == 2600).unwrap().1.size, 1);
        assert!(held.iter().find(|m| m.0 == 2601).unwrap().1.delivered);
        let mut h = Held::default();
        h.insert(1, meta(1));
        h.remove(1);
        assert!(h.is_empty());
    }
}
