//! What makes two publishes the same event: one key type for every way of publishing. The
//! first answer for a key is remembered for the idempotency window, and the envelope id is
//! derived from the key, so a retry (by any route) is answered with the first envelope and
//! never published twice.

use uuid::Uuid;

/// A caller's key for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotencyKey {
    /// Who publishes: keys of different callers never meet.
    caller: String,
    same: Same,
}

/// When two publishes of one caller are the same event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Same {
    /// The same `Idempotency-Key` header (or in-process key).
    Given(String),
    /// No key given: the same deterministic id (event type, payload, correlation id).
    Content(Uuid),
    /// A CloudEvent with the same `source` and `id`.
    CloudEvent { source: String, id: String },
    /// A v0.2 envelope with the same `event_id`.
    EventId(Uuid),
}

impl IdempotencyKey {
    pub(crate) fn new(caller: impl Into<String>, same: Same) -> IdempotencyKey {
        IdempotencyKey {
            caller: caller.into(),
            same,
        }
    }

    /// The key as it is remembered (the same text as before the key had a type, so keys
    /// remembered by an older release still match).
    pub(crate) fn stored(&self) -> String {
        let caller = &self.caller;
        match &self.same {
            Same::Given(key) => format!("{caller}\n{key}"),
            Same::Content(id) => format!("{caller}\nevent:{id}"),
            Same::CloudEvent { source, id } => format!("{caller}\nce\n{source}\n{id}"),
            Same::EventId(id) => format!("{caller}\nv0.2\n{id}"),
        }
    }

    /// The id of the event's envelope.
    pub(crate) fn event_id(&self) -> Uuid {
        match &self.same {
            Same::Given(_) => Uuid::new_v5(&Uuid::NAMESPACE_OID, self.stored().as_bytes()),
            Same::CloudEvent { .. } => Uuid::new_v5(&Uuid::NAMESPACE_URL, self.stored().as_bytes()),
            Same::Content(id) | Same::EventId(id) => *id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_caller_and_ids_follow_keys() {
        let given = |caller: &str, key: &str| IdempotencyKey::new(caller, Same::Given(key.into()));
        assert_eq!(given("a", "k").event_id(), given("a", "k").event_id());
        assert_ne!(given("a", "k").event_id(), given("b", "k").event_id());
        assert_ne!(given("a", "k").stored(), given("b", "k").stored());
        let id = Uuid::new_v4();
        assert_eq!(IdempotencyKey::new("a", Same::EventId(id)).event_id(), id);
        let ce = |id: &str| {
            IdempotencyKey::new(
                "a",
                Same::CloudEvent {
                    source: "/s".into(),
                    id: id.into(),
                },
            )
        };
        assert_eq!(ce("1").event_id(), ce("1").event_id());
        assert_ne!(ce("1").event_id(), ce("2").event_id());
    }
}
