//! Reading and checking the `x-` arguments of declarations, with RabbitMQ's names.

use crate::error::AmqpError;
use amq_protocol::types::{AMQPValue, FieldTable};

/// A string-valued argument (clients send short or long strings).
pub(crate) fn string_arg(args: &FieldTable, key: &str) -> Option<String> {
    match args.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// An integer-valued argument of any AMQP integer width.
pub(crate) fn int_value(value: &AMQPValue) -> Option<i128> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => *n as i128,
        AMQPValue::ShortShortUInt(n) => *n as i128,
        AMQPValue::ShortInt(n) => *n as i128,
        AMQPValue::ShortUInt(n) => *n as i128,
        AMQPValue::LongInt(n) => *n as i128,
        AMQPValue::LongUInt(n) => *n as i128,
        AMQPValue::LongLongInt(n) => *n as i128,
        _ => return None,
    })
}

/// Renders an argument value as RabbitMQ's error texts do.
pub(crate) fn render(value: Option<&AMQPValue>) -> String {
    match value {
        None => "none".into(),
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        Some(AMQPValue::Boolean(b)) => b.to_string(),
        Some(other) => match int_value(other) {
            Some(n) => n.to_string(),
            None => format!("{other:?}"),
        },
    }
}

/// How RabbitMQ's `inequivalent arg` error shows the two values of an argument; None when
/// they are equivalent.
pub(crate) fn argument_difference(
    received: Option<&AMQPValue>,
    current: Option<&AMQPValue>,
) -> Option<String> {
    let (r, c) = (render(received), render(current));
    if r == c {
        return None;
    }
    Some(match (received, current) {
        (None, Some(c)) => format!(
            "received none but current is the value '{r}' of type '{}'",
            type_name(c),
            r = render(current)
        ),
        (Some(v), None) => format!(
            "received the value '{r}' of type '{}' but current is none",
            type_name(v)
        ),
        _ => format!("received '{r}' but current is '{c}'"),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// What happens when a queue with a length limit is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest messages.
    #[default]
    DropHead,
    /// Refuse the new message (publisher confirms get a nack).
    RejectPublish,
    /// Refuse it and dead-letter it.
    RejectPublishDlx,
}

/// A queue's behaviour as its arguments set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueArgs {
    pub quorum: bool,
    pub message_ttl: Option<u64>,
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// `x-delivery-limit` of a quorum queue: how many times a message may come back
    /// (rejected or nacked with requeue, or left unacknowledged by a closing channel) before
    /// it is dead-lettered with reason `delivery_limit` (or dropped).
    pub delivery_limit: Option<u64>,
}

impl QueueArgs {
    pub fn kind(&self) -> QueueType {
        if self.quorum {
            QueueType::Quorum
        } else {
            QueueType::Classic
        }
    }
}

/// Arguments whose values must match when a queue is declared again (RabbitMQ's list).
pub(crate) const EQUIVALENCE_CHECKED: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-single-active-consumer",
    "x-delivery-limit",
];

/// Every `x-` queue argument this broker knows. `x-dead-letter-strategy`, `x-queue-mode` and
/// `x-queue-version` are accepted for compatibility: dead-lettering here is always
/// at-least-once (it happens inside one process), and every durable queue pages to disk.
/// `x-delivery-limit` is a quorum queue's argument: a classic queue refuses it, as in RabbitMQ.
const KNOWN: &[&str] = &[
    "x-queue-type",
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-overflow",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-priority",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-queue-mode",
    "x-queue-version",
];

/// Parses and checks a queue's arguments; `what` names the queue in error texts.
pub(crate) fn parse_queue_args(args: &FieldTable, what: &str) -> Result<QueueArgs, AmqpError> {
    let invalid = |key: &str, why: String| {
        AmqpError::precondition(format!("invalid arg '{key}' for {what}: {why}"))
    };
    let mut parsed = QueueArgs::default();
    for (key, value) in args.inner() {
        let key = key.as_str();
        if !key.starts_with("x-") {
            continue;
        }
        if !KNOWN.contains(&key) {
            return Err(AmqpError::precondition(format!(
                "unknown argument '{key}' for {what}"
            )));
        }
        let int = |min: i128, max: i128| -> Result<u64, AmqpError> {
            match int_value(value) {
                Some(n) if n >= min && n <= max => Ok(n as u64),
                Some(n) => Err(invalid(key, format!("{n} is out of range {min}..={max}"))),
                // RabbitMQ's own words, quotes included.
                None => Err(invalid(
                    key,
                    format!("\"expected integer, got {}\"", type_name(value)),
                )),
            }
        };
        let string = || -> Result<String, AmqpError> {
            match value {
                AMQPValue::LongString(s) => Ok(String::from_utf8_lossy(s.as_bytes()).into()),
                AMQPValue::ShortString(s) => Ok(s.as_str().to_string()),
                _ => Err(invalid(
                    key,
                    format!("\"expected string, got {}\"", type_name(value)),
                )),
            }
        };
        let short = |s: String| -> Result<String, AmqpError> {
            match s.len() <= crate::error::SHORT_STRING_MAX {
                true => Ok(s),
                false => Err(invalid(key, "longer than 255 bytes".to_string())),
            }
        };
        let one_of = |allowed: &[&str]| -> Result<String, AmqpError> {
            let s = string()?;
            if allowed.contains(&s.as_str()) {
                Ok(s)
            } else {
                Err(invalid(
                    key,
                    format!("'{s}' is not one of {}", allowed.join(", ")),
                ))
            }
        };
        match key {
            "x-queue-type" => {
                parsed.quorum = match string()?.as_str() {
                    "classic" => false,
                    "quorum" => true,
                    other => {
                        let reason = format!("\"unsupported queue type '{other}'\"");
                        return Err(invalid(key, reason));
                    }
                }
            }
            "x-message-ttl" => parsed.message_ttl = Some(int(0, u32::MAX as i128)?),
            "x-expires" => parsed.expires = Some(int(1, u32::MAX as i128)?),
            "x-max-length" => parsed.max_length = Some(int(0, i64::MAX as i128)?),
            "x-max-length-bytes" => parsed.max_length_bytes = Some(int(0, i64::MAX as i128)?),
            "x-overflow" => {
                parsed.overflow =
                    match one_of(&["drop-head", "reject-publish", "reject-publish-dlx"])?.as_str() {
                        "reject-publish" => Overflow::RejectPublish,
                        "reject-publish-dlx" => Overflow::RejectPublishDlx,
                        _ => Overflow::DropHead,
                    }
            }
            // Both become short strings on the wire when a message is dead-lettered.
            "x-dead-letter-exchange" => parsed.dead_letter_exchange = Some(short(string()?)?),
            "x-dead-letter-routing-key" => parsed.dead_letter_routing_key = Some(short(string()?)?),
            "x-dead-letter-strategy" => {
                one_of(&["at-most-once", "at-least-once"])?;
            }
            "x-max-priority" => parsed.max_priority = Some(int(0, 255)? as u8),
            "x-single-active-consumer" => match value {
                AMQPValue::Boolean(b) => parsed.single_active_consumer = *b,
                _ => return Err(invalid(key, format!("expected a boolean, got {value:?}"))),
            },
            "x-delivery-limit" => parsed.delivery_limit = Some(int(0, i64::MAX as i128)?),
            "x-queue-mode" => {
                one_of(&["default", "lazy"])?;
            }
            "x-queue-version" => {
                int(1, 2)?;
            }
            _ => {}
        }
    }
    if parsed.dead_letter_routing_key.is_some() && parsed.dead_letter_exchange.is_none() {
        return Err(AmqpError::precondition(format!(
            "invalid arg 'x-dead-letter-routing-key' for {what}: Key \
             x-dead-letter-exchange must be present when x-dead-letter-routing-key is"
        )));
    }
    if !parsed.quorum && parsed.delivery_limit.is_some() {
        return Err(AmqpError::precondition(format!(
            "invalid arg 'x-delivery-limit' for {what} of queue type rabbit_classic_queue"
        )));
    }
    if parsed.quorum && parsed.max_priority.is_some() {
        return Err(invalid(
            "x-max-priority",
            "quorum queues do not support priorities here".into(),
        ));
    }
    Ok(parsed)
}

/// A field's type as RabbitMQ names it in error texts.
fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => "byte",
        AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => "short",
        AMQPValue::LongInt(_) | AMQPValue::LongUInt(_) => "signedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "bytes",
        AMQPValue::Void => "void",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    #[test]
    fn reads_every_argument() {
        let args = parse_queue_args(
            &table(&[
                ("x-message-ttl", AMQPValue::LongInt(1000)),
                ("x-expires", AMQPValue::ShortInt(5)),
                ("x-max-length", AMQPValue::LongLongInt(3)),
                ("x-overflow", AMQPValue::LongString("reject-publish".into())),
                (
                    "x-dead-letter-exchange",
                    AMQPValue::LongString("dlx".into()),
                ),
                ("x-max-priority", AMQPValue::ShortShortUInt(9)),
                ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ]),
            "queue 'q'",
        )
        .unwrap();
        assert_eq!(args.message_ttl, Some(1000));
        assert_eq!(args.expires, Some(5));
        assert_eq!(args.max_length, Some(3));
        assert_eq!(args.overflow, Overflow::RejectPublish);
        assert_eq!(args.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(args.max_priority, Some(9));
        assert!(args.single_active_consumer);
    }

    #[test]
    fn refuses_bad_values_naming_the_argument() {
        for (key, value) in [
            ("x-message-ttl", AMQPValue::LongInt(-1)),
            ("x-expires", AMQPValue::LongInt(0)),
            ("x-max-length", AMQPValue::LongString("ten".into())),
            ("x-overflow", AMQPValue::LongString("explode".into())),
            ("x-max-priority", AMQPValue::LongInt(256)),
            ("x-single-active-consumer", AMQPValue::LongInt(1)),
            ("x-no-such-thing", AMQPValue::LongInt(1)),
        ] {
            let err = parse_queue_args(&table(&[(key, value)]), "queue 'q'").unwrap_err();
            assert_eq!(err.code, 406);
            assert!(err.text.contains(key), "{}", err.text);
        }
    }
}
