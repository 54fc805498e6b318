//! The envelope every HTTP-published event travels in, and the AMQP message made of it.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Namespace of envelope ids (UUIDv5): a fixed UUID of our own.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b0e_93a4_4c51_8d2e_b10d_b4a1_0001);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    pub event_type: String,
    pub timestamp: String,
    pub source: String,
    pub data: Value,
    pub correlation_id: Option<Uuid>,
    /// Major version of the contract the data was validated against (null: unregistered).
    pub schema_version: Option<u32>,
}

/// The deterministic id: the same event type, payload and correlation id give the same id, so a
/// retried request is recognisably the same event.
pub fn deterministic_id(event_type: &str, data: &Value, correlation_id: Option<Uuid>) -> Uuid {
    // serde_json's maps are sorted, so `to_string` is a canonical form.
    let canonical = format!(
        "{event_type}\n{}\n{}",
        data,
        correlation_id.map(|c| c.to_string()).unwrap_or_default()
    );
    Uuid::new_v5(&ID_NAMESPACE, canonical.as_bytes())
}

impl Envelope {
    /// The metadata the AMQP message carries: the envelope's, the producer's own CloudEvents
    /// source and id if it sent a CloudEvent, and headers to copy (trace context).
    pub(crate) fn meta(
        &self,
        cloud_event: Option<(String, String)>,
        extra_headers: Vec<(String, String)>,
    ) -> Meta {
        Meta {
            id: self.id,
            event_type: self.event_type.clone(),
            source: self.source.clone(),
            timestamp: self.timestamp.clone(),
            correlation_id: self.correlation_id,
            cloud_event,
            extra_headers,
        }
    }
}

/// What the AMQP properties of a published event say about it.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: Uuid,
    pub event_type: String,
    pub source: String,
    pub timestamp: String,
    pub correlation_id: Option<Uuid>,
    /// The producer's own CloudEvents source and id, when it sent a CloudEvent.
    pub cloud_event: Option<(String, String)>,
    /// W3C trace context and the like, copied into the headers.
    pub extra_headers: Vec<(String, String)>,
}

impl Meta {
    /// Persistent JSON whose properties repeat the metadata, with the CloudEvents attributes
    /// as `cloudEvents_*` headers.
    pub fn amqp_properties(&self, timestamp_secs: u64) -> BasicProperties {
        let mut headers = FieldTable::default();
        let mut put = |k: &str, v: String| {
            headers.insert(ShortString::from(k), AMQPValue::LongString(v.into()));
        };
        let (ce_source, ce_id) = self
            .cloud_event
            .clone()
            .unwrap_or_else(|| (self.source.clone(), self.id.to_string()));
        put("cloudEvents_specversion", "1.0".into());
        put("cloudEvents_id", ce_id);
        put("cloudEvents_type", self.event_type.clone());
        put("cloudEvents_source", ce_source);
        put("cloudEvents_time", self.timestamp.clone());
        put("cloudEvents_datacontenttype", "application/json".into());
        for (k, v) in &self.extra_headers {
            put(k, v.clone());
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(self.id.to_string()))
            .with_timestamp(timestamp_secs)
            .with_type(ShortString::from(self.event_type.clone()))
            .with_app_id(ShortString::from(self.source.clone()))
            .with_headers(headers);
        if let Some(c) = self.correlation_id {
            props = props.with_correlation_id(ShortString::from(c.to_string()));
        }
        props
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_depend_on_type_payload_and_correlation_only() {
        let a = deterministic_id("x.y.z", &json!({"b": 1, "a": 2}), None);
        let key_order = serde_json::from_str::<Value>(r#"{"a": 2, "b": 1}"#).unwrap();
        assert_eq!(a, deterministic_id("x.y.z", &key_order, None));
        assert_ne!(a, deterministic_id("x.y.w", &key_order, None));
        assert_ne!(a, deterministic_id("x.y.z", &json!({"a": 3, "b": 1}), None));
        assert_ne!(a, deterministic_id("x.y.z", &key_order, Some(Uuid::nil())));
        assert_eq!(a.get_version_num(), 5);
    }
}
