//! STOMP headers and AMQP properties, both ways, as RabbitMQ's STOMP plugin maps them: a
//! SEND's headers become properties (the rest go to the header table as strings), and a
//! delivery's properties and string or integer table entries become MESSAGE headers.

use crate::message::Message;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Headers that become properties on SEND (everything else goes to the AMQP header table).
const MAPPED: &[&str] = &[
    "content-type",
    "content-encoding",
    "persistent",
    "priority",
    "correlation-id",
    "reply-to",
    "expiration",
    "amqp-message-id",
    "timestamp",
    "type",
    "user-id",
    "app-id",
    "destination",
];

/// The properties of a message sent with these headers, as RabbitMQ builds them.
pub(crate) fn properties(headers: &[(String, String)]) -> BasicProperties {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let short = |v: &str| ShortString::from(v.chars().take(255).collect::<String>());
    let mut p = BasicProperties::default();
    if let Some(v) = get("content-type") {
        p = p.with_content_type(short(v));
    }
    if let Some(v) = get("content-encoding") {
        p = p.with_content_encoding(short(v));
    }
    if get("persistent") == Some("true") {
        p = p.with_delivery_mode(2);
    }
    if let Some(n) = get("priority").and_then(|v| v.parse::<u8>().ok()) {
        p = p.with_priority(n);
    }
    if let Some(v) = get("correlation-id") {
        p = p.with_correlation_id(short(v));
    }
    if let Some(v) = get("reply-to") {
        p = p.with_reply_to(short(v));
    }
    if let Some(v) = get("expiration") {
        p = p.with_expiration(short(v));
    }
    if let Some(v) = get("amqp-message-id") {
        p = p.with_message_id(short(v));
    }
    if let Some(n) = get("timestamp").and_then(|v| v.parse::<u64>().ok()) {
        p = p.with_timestamp(n);
    }
    if let Some(v) = get("type") {
        p = p.with_type(short(v));
    }
    if let Some(v) = get("user-id") {
        p = p.with_user_id(short(v));
    }
    if let Some(v) = get("app-id") {
        p = p.with_app_id(short(v));
    }
    let mut table = FieldTable::default();
    for (k, v) in headers {
        if MAPPED.contains(&k.as_str()) || table.inner().contains_key(k.as_str()) {
            continue;
        }
        table.insert(
            short(k),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    if !table.inner().is_empty() {
        p = p.with_headers(table);
    }
    p
}

/// A delivered message's headers after the fixed ones (`subscription`, `destination`,
/// `message-id`, `redelivered`, `ack`): the string and integer entries of its header table,
/// then its properties, as RabbitMQ writes them (the table's entries in key order, where
/// RabbitMQ keeps the order they came in).
pub(crate) fn message_headers(message: &Message) -> Vec<(String, String)> {
    let p = &message.properties;
    let mut out = Vec::new();
    if let Some(table) = p.headers() {
        for (k, v) in table.inner() {
            let value = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                _ => continue,
            };
            out.push((k.as_str().to_string(), value));
        }
    }
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push((k.to_string(), v));
        }
    };
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_string());
    // RabbitMQ lists the properties last to first.
    put("app-id", s(p.app_id()));
    put("user-id", s(p.user_id()));
    put("type", s(p.kind()));
    put("timestamp", p.timestamp().map(|n| n.to_string()));
    put("amqp-message-id", s(p.message_id()));
    put("expiration", s(p.expiration()));
    put(
        "reply-to",
        s(p.reply_to()).map(|r| match r.starts_with('/') {
            true => r,
            false => format!("/reply-queue/{r}"),
        }),
    );
    put("correlation-id", s(p.correlation_id()));
    put("priority", p.priority().map(|n| n.to_string()));
    // Mode 2 is `true`; any other mode set shows as its number, as in RabbitMQ.
    put(
        "persistent",
        p.delivery_mode().map(|m| match m {
            2 => "true".to_string(),
            m => m.to_string(),
        }),
    );
    put("content-encoding", s(p.content_encoding()));
    put("content-type", s(p.content_type()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn headers_become_properties_and_come_back() {
        let h = |k: &str, v: &str| (k.to_string(), v.to_string());
        let sent = [
            h("destination", "/queue/q"),
            h("content-type", "application/json"),
            h("persistent", "true"),
            h("priority", "5"),
            h("reply-to", "replies"),
            h("amqp-message-id", "m1"),
            h("receipt", "r1"),
            h("custom", "12"),
        ];
        let p = properties(&sent);
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(p.priority(), &Some(5));
        let table = p.headers().clone().unwrap();
        assert_eq!(
            table.inner().len(),
            2,
            "receipt and custom leak into the table, as in RabbitMQ"
        );
        let message = Message::new("", "q", p, Bytes::new());
        let back = message_headers(&message);
        assert!(back.contains(&h("custom", "12")));
        assert!(back.contains(&h("content-type", "application/json")));
        assert!(back.contains(&h("persistent", "true")));
        assert!(back.contains(&h("reply-to", "/reply-queue/replies")));
        assert!(back.contains(&h("amqp-message-id", "m1")));
    }
}
