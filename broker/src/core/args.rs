//! Reading and checking the `x-` arguments of declarations.

use amq_protocol::types::{AMQPValue, FieldTable};

/// A string-valued argument (clients send short or long strings).
pub fn string_arg(args: &FieldTable, key: &str) -> Option<String> {
    match args.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// Renders an argument value as RabbitMQ's error texts do.
pub fn render(value: Option<&AMQPValue>) -> String {
    match value {
        None => "none".into(),
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        Some(AMQPValue::Boolean(b)) => b.to_string(),
        Some(AMQPValue::LongLongInt(n)) => n.to_string(),
        Some(AMQPValue::LongInt(n)) => n.to_string(),
        Some(AMQPValue::ShortInt(n)) => n.to_string(),
        Some(AMQPValue::LongUInt(n)) => n.to_string(),
        Some(AMQPValue::ShortUInt(n)) => n.to_string(),
        Some(AMQPValue::ShortShortInt(n)) => n.to_string(),
        Some(AMQPValue::ShortShortUInt(n)) => n.to_string(),
        Some(other) => format!("{other:?}"),
    }
}
