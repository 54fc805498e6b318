//! The broker's objects in the JSON shapes of RabbitMQ's management API.

use crate::rates::Rates;
use bloodbank_broker::{
    BindingView, ChannelView, ConnectionView, ConsumerView, ExchangeView, Protocol, QueueView,
};
use serde_json::{json, Value};

/// The node name RabbitMQ would show.
pub const NODE: &str = "bloodbank@localhost";

fn rate(r: f64) -> Value {
    json!({ "rate": r })
}

/// Seconds-resolution RabbitMQ time: `2026-12-02 18:05:20`.
fn datetime(ms: u64) -> String {
    bloodbank_broker::clock::rfc3339(ms)
        .replace('T', " ")
        .chars()
        .take(19)
        .collect()
}

pub fn exchange(e: &ExchangeView) -> Value {
    json!({
        "name": e.name,
        "vhost": e.vhost,
        "type": e.kind,
        "durable": e.durable,
        "auto_delete": e.auto_delete,
        "internal": e.internal,
        "arguments": e.arguments,
        "policy": e.policy,
        "user_who_performed_action": "",
    })
}

pub fn queue(q: &QueueView, rates: &Rates) -> Value {
    let (message_stats, depth) = rates.queue(&q.vhost, &q.name, &q.stats);
    json!({
        "name": q.name,
        "vhost": q.vhost,
        "type": q.kind,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive,
        "arguments": q.arguments,
        "node": NODE,
        "state": "running",
        "policy": q.policy,
        "operator_policy": q.operator_policy,
        "effective_policy_definition": q.policy_definition,
        "consumers": q.consumers,
        "consumer_capacity": if q.consumers > 0 { 1.0 } else { 0.0 },
        "consumer_utilisation": if q.consumers > 0 { 1.0 } else { 0.0 },
        "messages": q.ready + q.unacked,
        "messages_details": rate(depth[0]),
        "messages_ready": q.ready,
        "messages_ready_details": rate(depth[1]),
        "messages_unacknowledged": q.unacked,
        "messages_unacknowledged_details": rate(depth[2]),
        "message_bytes": q.ready_bytes + q.unacked_bytes,
        "message_bytes_ready": q.ready_bytes,
        "message_bytes_unacknowledged": q.unacked_bytes,
        "message_stats": message_stats,
        "idle_since": datetime(q.last_used_ms),
        "exclusive_consumer_tag": null,
    })
}

/// RabbitMQ's `properties_key`: what names a binding in a URL (the routing key, URL-encoded,
/// `~` for an empty one, with a digest of the arguments when there are any).
pub fn properties_key(routing_key: &str, arguments: &Value) -> String {
    let empty = arguments.as_object().is_none_or(|a| a.is_empty());
    let routing_key = encode(routing_key);
    match (routing_key.is_empty(), empty) {
        (true, true) => "~".into(),
        (false, true) => routing_key,
        (_, false) => {
            let mut h: u32 = 0x811c9dc5;
            for b in arguments.to_string().bytes() {
                h = (h ^ b as u32).wrapping_mul(0x01000193);
            }
            format!("{routing_key}~{h:08x}")
        }
    }
}

pub fn binding(b: &BindingView) -> Value {
    json!({
        "source": b.source,
        "vhost": b.vhost,
        "destination": b.destination,
        "destination_type": b.destination_type,
        "routing_key": b.routing_key,
        "arguments": b.arguments,
        "properties_key": properties_key(&b.routing_key, &b.arguments),
    })
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Amqp091 => "AMQP 0-9-1",
        Protocol::Stomp => "STOMP",
        Protocol::InProcess => "Direct 0-9-1",
    }
}

pub fn connection(c: &ConnectionView) -> Value {
    let d = &c.details;
    let (peer_host, peer_port) = c
        .addr
        .map_or((String::new(), 0), |a| (a.ip().to_string(), a.port()));
    let (host, port) = d
        .local
        .map_or((String::new(), 0), |a| (a.ip().to_string(), a.port()));
    json!({
        "name": d.name,
        "node": NODE,
        "type": "network",
        "state": "running",
        "protocol": protocol(c.protocol),
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "host": host,
        "port": port,
        "peer_host": peer_host,
        "peer_port": peer_port,
        "ssl": d.tls,
        "auth_mechanism": d.auth_mechanism,
        "channels": c.channels,
        "channel_max": d.channel_max,
        "frame_max": d.frame_max,
        "timeout": d.heartbeat,
        "client_properties": d.client_properties,
        "connected_at": d.connected_at,
    })
}

pub fn channel(ch: &ChannelView) -> Value {
    json!({
        "name": format!("{} ({})", ch.connection, ch.number),
        "number": ch.number,
        "node": NODE,
        "state": "running",
        "user": ch.user,
        "vhost": ch.vhost,
        "connection_details": { "name": ch.connection },
        "consumer_count": ch.consumers,
        "messages_unacknowledged": ch.unacked,
        "prefetch_count": ch.prefetch,
        "global_prefetch_count": ch.global_prefetch,
        "confirm": false,
        "transactional": false,
    })
}

pub fn consumer(c: &ConsumerView) -> Value {
    json!({
        "consumer_tag": c.tag,
        "queue": { "name": c.queue, "vhost": c.vhost },
        "channel_details": {
            "name": format!("{} ({})", c.connection, c.channel),
            "number": c.channel,
            "connection_name": c.connection,
        },
        "ack_required": c.ack_required,
        "prefetch_count": c.prefetch,
        "exclusive": c.exclusive,
        "active": true,
        "activity_status": "up",
        "arguments": {},
    })
}

/// Percent-encodes a URL path segment (RabbitMQ writes vhost `/` as `%2F`).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether a `properties_key` from a URL (decoded once by the router, so either the key
/// itself or the key decoded) names the binding with `key`.
pub fn same_properties_key(from_url: &str, key: &str) -> bool {
    from_url == key || encode(from_url) == key
}
