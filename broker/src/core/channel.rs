//! What the broker keeps per open channel: delivery tags, unacknowledged messages, consumers
//! and their prefetch limits.

use super::queue::Entry;
use super::ConnId;
use super::Map;
use crate::error::AmqpError;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChanKey {
    pub conn: ConnId,
    pub channel: u16,
}

/// A message delivered on this channel and not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Unacked {
    pub queue: String,
    pub entry: Entry,
    /// None for `basic.get`.
    pub consumer: Option<Arc<str>>,
}

#[derive(Debug)]
pub(crate) struct Consumer {
    pub queue: String,
    pub no_ack: bool,
    /// Per-consumer prefetch (0 = unlimited).
    pub prefetch: u16,
    pub unacked: u32,
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub vhost: Arc<str>,
    next_tag: u64,
    pub unacked: BTreeMap<u64, Unacked>,
    pub consumers: Map<Arc<str>, Consumer>,
    /// Prefetch given to consumers started after `basic.qos(global=false)`.
    pub consumer_prefetch: u16,
    /// Limit shared by all consumers of the channel (`basic.qos(global=true)`).
    pub channel_prefetch: u16,
    /// `basic.get`s waiting for a queue's head to be read back from the log, by queue (a
    /// client may send the next before the first is answered; each gets its reply).
    pub waiting_gets: Map<Arc<str>, u32>,
}

impl Channel {
    /// Takes one waiting `basic.get` on `queue`, if there is one.
    pub(crate) fn take_waiting_get(&mut self, queue: &str) -> bool {
        match self.waiting_gets.get_mut(queue) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.waiting_gets.remove(queue);
                true
            }
            None => false,
        }
    }

    pub(crate) fn new(vhost: impl Into<Arc<str>>) -> Channel {
        Channel {
            vhost: vhost.into(),
            next_tag: 1,
            unacked: BTreeMap::new(),
            consumers: Map::default(),
            consumer_prefetch: 0,
            channel_prefetch: 0,
            waiting_gets: Map::default(),
        }
    }

    /// Whether consumer `tag` may receive one more message now.
    pub(crate) fn can_deliver(&self, tag: &str) -> bool {
        let Some(c) = self.consumers.get(tag) else {
            return false;
        };
        if c.no_ack {
            return true;
        }
        let consumer_ok = c.prefetch == 0 || c.unacked < c.prefetch as u32;
        let channel_ok =
            self.channel_prefetch == 0 || self.unacked.len() < self.channel_prefetch as usize;
        consumer_ok && channel_ok
    }

    /// Assigns the next delivery tag; tracks the message unless it needs no ack.
    pub(crate) fn record_delivery(
        &mut self,
        queue: &str,
        entry: Entry,
        consumer: Option<Arc<str>>,
        no_ack: bool,
    ) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        if !no_ack {
            if let Some(c) = consumer.as_ref().and_then(|t| self.consumers.get_mut(t)) {
                c.unacked += 1;
            }
            self.unacked.insert(
                tag,
                Unacked {
                    queue: queue.to_string(),
                    entry,
                    consumer,
                },
            );
        }
        tag
    }

    /// Removes and returns the messages an ack/nack/reject names. `multiple` takes every
    /// outstanding tag up to `tag`; tag 0 with `multiple` takes all.
    pub(crate) fn settle(&mut self, tag: u64, multiple: bool) -> Result<Vec<Unacked>, AmqpError> {
        let taken: Vec<Unacked> = if multiple {
            let limit = if tag == 0 { u64::MAX } else { tag };
            if tag != 0 && !self.unacked.contains_key(&tag) {
                return Err(unknown_tag(tag));
            }
            let keep = self.unacked.split_off(&limit.saturating_add(1));
            std::mem::replace(&mut self.unacked, keep)
                .into_values()
                .collect()
        } else {
            vec![self.unacked.remove(&tag).ok_or_else(|| unknown_tag(tag))?]
        };
        for u in &taken {
            if let Some(c) = u.consumer.as_ref().and_then(|t| self.consumers.get_mut(t)) {
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        Ok(taken)
    }
}

fn unknown_tag(tag: u64) -> AmqpError {
    AmqpError::precondition(format!("unknown delivery tag {tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;

    fn entry(id: u64) -> Entry {
        let message = Message::new("", "q", Default::default(), Bytes::new());
        let mut entry = Entry::new(Arc::new(message), None);
        entry.id = id;
        entry
    }

    #[test]
    fn prefetch_limits_per_consumer_and_channel() {
        let mut ch = Channel::new("/");
        let tag: Arc<str> = "c1".into();
        ch.consumers.insert(
            tag.clone(),
            Consumer {
                queue: "q".into(),
                no_ack: false,
                prefetch: 2,
                unacked: 0,
            },
        );
        assert!(ch.can_deliver("c1"));
        ch.record_delivery("q", entry(0), Some(tag.clone()), false);
        ch.record_delivery("q", entry(1), Some(tag.clone()), false);
        assert!(!ch.can_deliver("c1"));
        ch.settle(1, false).unwrap();
        assert!(ch.can_deliver("c1"));
        ch.channel_prefetch = 1;
        assert!(!ch.can_deliver("c1"));
    }

    #[test]
    fn multiple_settles_up_to_tag_and_unknown_tags_fail() {
        let mut ch = Channel::new("/");
        for i in 0..5 {
            ch.record_delivery("q", entry(i), None, false);
        }
        assert_eq!(ch.settle(3, true).unwrap().len(), 3);
        assert_eq!(ch.settle(2, false).unwrap_err().code, 406);
        assert_eq!(ch.settle(0, true).unwrap().len(), 2);
        assert!(ch.unacked.is_empty());
    }
}
