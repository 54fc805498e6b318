//! Message counters, as RabbitMQ's management and Prometheus plugins report them: totals for
//! the whole broker and per queue. Plain numbers, changed under the core lock; the management
//! API samples them and computes rates.

/// Broker-wide message counters (RabbitMQ's `rabbitmq_global_messages_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages published (before routing).
    pub received: u64,
    /// Published messages that reached at least one queue.
    pub routed: u64,
    /// Unroutable messages dropped (not mandatory).
    pub unroutable_dropped: u64,
    /// Unroutable mandatory messages returned to their publisher.
    pub unroutable_returned: u64,
    /// Deliveries to consumers that acknowledge.
    pub delivered_consume_manual_ack: u64,
    /// Deliveries to no-ack consumers.
    pub delivered_consume_auto_ack: u64,
    /// `basic.get` answers that must be acknowledged.
    pub delivered_get_manual_ack: u64,
    /// `basic.get` answers with no-ack.
    pub delivered_get_auto_ack: u64,
    /// Deliveries and gets of messages delivered before.
    pub redelivered: u64,
    /// Acknowledgements from consumers.
    pub acknowledged: u64,
    /// `basic.get` on an empty queue.
    pub get_empty: u64,
    pub dead_lettered_expired: u64,
    pub dead_lettered_rejected: u64,
    pub dead_lettered_maxlen: u64,
    pub dead_lettered_delivery_limit: u64,
    pub queues_declared: u64,
    pub queues_created: u64,
    pub queues_deleted: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub channels_opened: u64,
    pub channels_closed: u64,
}

impl Totals {
    /// Every delivery and get (RabbitMQ's `deliver_get`).
    pub fn delivered(&self) -> u64 {
        self.delivered_consume_manual_ack
            + self.delivered_consume_auto_ack
            + self.delivered_get_manual_ack
            + self.delivered_get_auto_ack
    }
}

/// One queue's message counters (RabbitMQ's per-queue `message_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages enqueued (RabbitMQ's `publish`).
    pub publish: u64,
    /// Deliveries to consumers that acknowledge.
    pub deliver: u64,
    pub deliver_no_ack: u64,
    pub get: u64,
    pub get_no_ack: u64,
    pub redeliver: u64,
    pub ack: u64,
}

impl QueueStats {
    /// Every delivery and get (RabbitMQ's `deliver_get`).
    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }
}
