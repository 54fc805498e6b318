//! Policies and operator policies as RabbitMQ has them: a regular expression over queue or
//! exchange names, what they apply to, a priority, and a definition of settings. Of the
//! policies matching an object the one with the highest priority applies (one policy, and
//! one operator policy). A queue's effective settings combine its own `x-` arguments, its
//! policy and its operator policy with RabbitMQ's rules: the numeric limits (`message-ttl`,
//! `expires`, `max-length`, `max-length-bytes`, `delivery-limit`) take the smallest value any of them sets; for
//! the rest (`dead-letter-exchange`, `dead-letter-routing-key`, `overflow`,
//! `alternate-exchange`) an argument wins over the policy.

use crate::store::definitions::{DefOp, PolicyDef};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::{Map, Value};

/// Policy keys with an effect here, the `x-` argument each becomes, and what kind of value it
/// takes.
const HONOURED: &[(&str, &str, Kind)] = &[
    ("message-ttl", "x-message-ttl", Kind::Int { min: 0 }),
    ("expires", "x-expires", Kind::Int { min: 1 }),
    ("max-length", "x-max-length", Kind::Int { min: 0 }),
    (
        "max-length-bytes",
        "x-max-length-bytes",
        Kind::Int { min: 0 },
    ),
    ("dead-letter-exchange", "x-dead-letter-exchange", Kind::Text),
    (
        "dead-letter-routing-key",
        "x-dead-letter-routing-key",
        Kind::Text,
    ),
    ("overflow", "x-overflow", Kind::Overflow),
    ("delivery-limit", "x-delivery-limit", Kind::Int { min: 0 }),
    ("alternate-exchange", "alternate-exchange", Kind::Text),
];

/// Keys RabbitMQ users carry over that mean nothing on one node that pages every durable
/// queue to disk (classic mirroring, queue mode and version, queue placement): accepted,
/// shown, without effect.
const MEANINGLESS_HERE: &[&str] = &[
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "queue-mode",
    "queue-version",
    "queue-master-locator",
    "queue-leader-locator",
    "dead-letter-strategy",
];

/// The keys an operator policy may set (RabbitMQ 3.10's list, less the ones not honoured).
const OPERATOR_KEYS: &[&str] = &[
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "delivery-limit",
];

/// Numeric keys: the smallest value among argument, policy and operator policy applies.
const SMALLEST_WINS: &[&str] = &[
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "delivery-limit",
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Int { min: i64 },
    Text,
    Overflow,
}

/// What a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApplyTo {
    Queues,
    ClassicQueues,
    QuorumQueues,
    Exchanges,
    All,
}

impl ApplyTo {
    fn parse(s: &str) -> Option<ApplyTo> {
        Some(match s {
            "queues" => ApplyTo::Queues,
            "classic_queues" => ApplyTo::ClassicQueues,
            "quorum_queues" => ApplyTo::QuorumQueues,
            "exchanges" => ApplyTo::Exchanges,
            "all" => ApplyTo::All,
            _ => return None,
        })
    }
}

/// What a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    ClassicQueue,
    QuorumQueue,
    Exchange,
}

/// Why a policy is refused, in words for an HTTP 400 or an import error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("policy '{name}': pattern is not a regular expression: {source}")]
    Pattern {
        name: String,
        #[source]
        source: regex::Error,
    },
    #[error("policy '{name}': apply-to must be queues, classic_queues, quorum_queues, exchanges or all, not '{given}'")]
    ApplyTo { name: String, given: String },
    #[error("policy '{name}': the definition is empty")]
    Empty { name: String },
    #[error("policy '{name}': {key} is not a setting Bloodbank honours")]
    Unsupported { name: String, key: String },
    #[error("policy '{name}': {key} cannot be set by an operator policy (only message-ttl, expires, max-length, max-length-bytes, delivery-limit)")]
    NotForOperators { name: String, key: String },
    #[error("policy '{name}': {key} {why}")]
    Value {
        name: String,
        key: String,
        why: String,
    },
}

/// A checked policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) vhost: String,
    pub(crate) name: String,
    pub(crate) pattern: String,
    regex: regex::Regex,
    pub(crate) apply_to: ApplyTo,
    pub(crate) priority: i64,
    pub(crate) definition: Map<String, Value>,
}

impl Policy {
    /// Checks a policy's fields; `operator` limits the keys to an operator policy's.
    pub(crate) fn new(
        vhost: &str,
        name: &str,
        pattern: &str,
        apply_to: &str,
        priority: i64,
        definition: &Value,
        operator: bool,
    ) -> Result<Policy, PolicyError> {
        let regex = regex::Regex::new(pattern).map_err(|source| PolicyError::Pattern {
            name: name.into(),
            source,
        })?;
        let apply_to = ApplyTo::parse(apply_to).ok_or_else(|| PolicyError::ApplyTo {
            name: name.into(),
            given: apply_to.into(),
        })?;
        let definition = match definition {
            Value::Object(d) if !d.is_empty() => d.clone(),
            _ => return Err(PolicyError::Empty { name: name.into() }),
        };
        for (key, value) in &definition {
            if operator && !OPERATOR_KEYS.contains(&key.as_str()) {
                return Err(PolicyError::NotForOperators {
                    name: name.into(),
                    key: key.clone(),
                });
            }
            if MEANINGLESS_HERE.contains(&key.as_str()) {
                continue;
            }
            let Some((_, _, kind)) = HONOURED.iter().find(|(k, _, _)| k == key) else {
                return Err(PolicyError::Unsupported {
                    name: name.into(),
                    key: key.clone(),
                });
            };
            check(*kind, value).map_err(|why| PolicyError::Value {
                name: name.into(),
                key: key.clone(),
                why,
            })?;
        }
        Ok(Policy {
            vhost: vhost.into(),
            name: name.into(),
            pattern: pattern.into(),
            regex,
            apply_to,
            priority,
            definition,
        })
    }

    /// A stored or imported policy, checked.
    pub(crate) fn from_def(def: &PolicyDef, operator: bool) -> Result<Policy, PolicyError> {
        Policy::new(
            &def.vhost,
            &def.name,
            &def.pattern,
            &def.apply_to,
            def.priority,
            &def.definition,
            operator,
        )
    }

    /// The policy in its definitions shape.
    pub(crate) fn to_def(&self) -> PolicyDef {
        let apply_to = match self.apply_to {
            ApplyTo::Queues => "queues",
            ApplyTo::ClassicQueues => "classic_queues",
            ApplyTo::QuorumQueues => "quorum_queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        };
        PolicyDef {
            vhost: self.vhost.clone(),
            name: self.name.clone(),
            pattern: self.pattern.clone(),
            apply_to: apply_to.into(),
            priority: self.priority,
            definition: Value::Object(self.definition.clone()),
        }
    }

    fn applies(&self, vhost: &str, target: Target, name: &str) -> bool {
        let kind = matches!(
            (self.apply_to, target),
            (ApplyTo::All, _)
                | (ApplyTo::Exchanges, Target::Exchange)
                | (ApplyTo::Queues, Target::ClassicQueue | Target::QuorumQueue)
                | (ApplyTo::ClassicQueues, Target::ClassicQueue)
                | (ApplyTo::QuorumQueues, Target::QuorumQueue)
        );
        kind && self.vhost == vhost && self.regex.is_match(name)
    }
}

fn check(kind: Kind, value: &Value) -> Result<(), String> {
    match kind {
        Kind::Int { min } => match value.as_i64() {
            Some(n) if n >= min => Ok(()),
            _ => Err(format!("must be an integer of at least {min}, not {value}")),
        },
        Kind::Text => match value {
            Value::String(s) if s.len() <= 255 => Ok(()),
            _ => Err(format!(
                "must be a string of at most 255 bytes, not {value}"
            )),
        },
        Kind::Overflow => match value.as_str() {
            Some("drop-head" | "reject-publish" | "reject-publish-dlx") => Ok(()),
            _ => Err(format!(
                "must be drop-head, reject-publish or reject-publish-dlx, not {value}"
            )),
        },
    }
}

/// The policy that applies among `policies`: the highest priority, then the first name.
pub(crate) fn pick<'a>(
    policies: &'a [Policy],
    vhost: &str,
    target: Target,
    name: &str,
) -> Option<&'a Policy> {
    policies
        .iter()
        .filter(|p| p.applies(vhost, target, name))
        .max_by(|a, b| a.priority.cmp(&b.priority).then(b.name.cmp(&a.name)))
}

/// The settings a policy and an operator policy give together (RabbitMQ's
/// `effective_policy_definition`): the operator policy's numeric limits win when smaller.
pub(crate) fn effective_definition(
    policy: Option<&Policy>,
    op: Option<&Policy>,
) -> Map<String, Value> {
    let mut out = policy.map(|p| p.definition.clone()).unwrap_or_default();
    for (key, value) in op.map(|p| &p.definition).into_iter().flatten() {
        let smaller = match (out.get(key).and_then(Value::as_i64), value.as_i64()) {
            (Some(mine), Some(theirs)) => theirs < mine,
            _ => true,
        };
        if smaller {
            out.insert(key.clone(), value.clone());
        }
    }
    out
}

/// An object's declared arguments with its effective policy folded in, as the arguments the
/// broker acts on.
pub(crate) fn effective_arguments(
    arguments: &FieldTable,
    definition: &Map<String, Value>,
) -> FieldTable {
    let mut out = arguments.clone();
    for (key, value) in definition {
        let Some((_, arg, _)) = HONOURED.iter().find(|(k, _, _)| k == key) else {
            continue;
        };
        let declared = arguments.inner().get(*arg);
        let policy_value = match value {
            Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            other => match other.as_i64() {
                Some(n) => AMQPValue::LongLongInt(n),
                None => continue,
            },
        };
        let take_policy = match declared {
            None => true,
            Some(d) if SMALLEST_WINS.contains(&key.as_str()) => {
                let mine = super::args::int_value(d);
                mine.is_none_or(|m| value.as_i64().is_some_and(|p| (p as i128) < m))
            }
            Some(_) => false,
        };
        if take_policy {
            out.insert(ShortString::from(*arg), policy_value);
        }
    }
    out
}

/// Policies in the core: kept per kind, applied to every matching queue and exchange when
/// a policy changes and to each queue or exchange when it is declared.
impl super::Core {
    fn policy_list(&mut self, operator: bool) -> &mut Vec<Policy> {
        match operator {
            true => &mut self.operator_policies,
            false => &mut self.policies,
        }
    }

    /// The policies (or operator policies) of every vhost.
    pub(crate) fn policies(&self, operator: bool) -> &[Policy] {
        match operator {
            true => &self.operator_policies,
            false => &self.policies,
        }
    }

    /// Adds or replaces a policy (stored) and applies it; returns whether it was new.
    pub(crate) fn set_policy(&mut self, policy: Policy, operator: bool) -> bool {
        let vhost = policy.vhost.clone();
        let def = policy.to_def();
        let list = self.policy_list(operator);
        let created = match list
            .iter_mut()
            .find(|p| p.vhost == policy.vhost && p.name == policy.name)
        {
            Some(old) => {
                *old = policy;
                false
            }
            None => {
                list.push(policy);
                true
            }
        };
        self.store_def(DefOp::PutPolicy {
            policy: def,
            operator,
        });
        self.apply_policies(&vhost);
        created
    }

    /// Removes a policy (stored) and re-applies what is left; false if there was none.
    pub(crate) fn clear_policy(&mut self, vhost: &str, name: &str, operator: bool) -> bool {
        let list = self.policy_list(operator);
        let before = list.len();
        list.retain(|p| !(p.vhost == vhost && p.name == name));
        if list.len() == before {
            return false;
        }
        self.store_def(DefOp::DeletePolicy {
            vhost: vhost.into(),
            name: name.into(),
            operator,
        });
        self.apply_policies(vhost);
        true
    }

    /// Re-applies the policies to every queue and exchange of a vhost; a queue whose limits
    /// shrank drops (or dead-letters) what is now over them.
    pub(crate) fn apply_policies(&mut self, vname: &str) {
        let Some(vhost) = self.vhosts.get(vname) else {
            return;
        };
        let queues: Vec<String> = vhost.queues.keys().cloned().collect();
        let exchanges: Vec<String> = vhost.exchanges.keys().cloned().collect();
        for name in &exchanges {
            self.apply_exchange_policy(vname, name);
        }
        for name in &queues {
            self.apply_queue_policy(vname, name);
            self.drop_over_limit(vname, name, 0);
        }
    }

    pub(crate) fn apply_exchange_policy(&mut self, vname: &str, name: &str) {
        let p = pick(&self.policies, vname, Target::Exchange, name);
        let (policy, alternate) = match p {
            Some(p) => (
                Some(p.name.clone()),
                p.definition
                    .get("alternate-exchange")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            None => (None, None),
        };
        if let Some(e) = self
            .vhosts
            .get_mut(vname)
            .and_then(|v| v.exchanges.get_mut(name))
        {
            e.policy = policy;
            e.policy_alternate = alternate;
        }
    }

    pub(crate) fn apply_queue_policy(&mut self, vname: &str, name: &str) {
        let Some(q) = self.vhosts.get(vname).and_then(|v| v.queues.get(name)) else {
            return;
        };
        let target = match q.kind() {
            super::args::QueueType::Quorum => Target::QuorumQueue,
            super::args::QueueType::Classic => Target::ClassicQueue,
        };
        let p = pick(&self.policies, vname, target, name);
        let op = pick(&self.operator_policies, vname, target, name);
        let definition = effective_definition(p, op);
        // `delivery-limit` is a quorum queue's setting; a classic queue's policy shows it
        // without effect, as in RabbitMQ.
        let mut acted_on = definition.clone();
        if target == Target::ClassicQueue {
            acted_on.remove("delivery-limit");
        }
        let arguments = effective_arguments(&q.arguments, &acted_on);
        let what = crate::error::queue_ref(name, vname);
        let parsed = super::args::parse_queue_args(&arguments, &what);
        let (policy, operator_policy) = (p.map(|p| p.name.clone()), op.map(|p| p.name.clone()));
        let Some(q) = self
            .vhosts
            .get_mut(vname)
            .and_then(|v| v.queues.get_mut(name))
        else {
            return;
        };
        match parsed {
            Ok(args) => q.args = args,
            // Policies are checked when set; a queue's own arguments were checked when it
            // was declared, so this would be a bug. Keep the queue's own settings.
            Err(e) => tracing::error!(queue = %name, error = %e, "policy not applied"),
        }
        q.policy = policy;
        q.operator_policy = operator_policy;
        q.policy_definition = definition;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, pattern: &str, priority: i64, definition: Value) -> Policy {
        Policy::new("/", name, pattern, "queues", priority, &definition, false).unwrap()
    }

    #[test]
    fn the_highest_priority_matching_policy_applies() {
        let all = [
            policy("low", ".*", 0, json!({"message-ttl": 1000})),
            policy("high", "^orders", 5, json!({"max-length": 3})),
            policy("other", "^x", 9, json!({"max-length": 1})),
        ];
        assert_eq!(
            pick(&all, "/", Target::ClassicQueue, "orders.eu")
                .unwrap()
                .name,
            "high"
        );
        assert_eq!(
            pick(&all, "/", Target::ClassicQueue, "billing")
                .unwrap()
                .name,
            "low"
        );
        assert!(pick(&all, "/", Target::Exchange, "orders.eu").is_none());
        assert!(pick(&all, "other-vhost", Target::ClassicQueue, "orders").is_none());
    }

    #[test]
    fn limits_take_the_smallest_and_arguments_win_otherwise() {
        let p = policy(
            "p",
            ".*",
            0,
            json!({"max-length": 5, "message-ttl": 100, "dead-letter-exchange": "dlx"}),
        );
        let op = Policy::new(
            "/",
            "op",
            ".*",
            "queues",
            0,
            &json!({"max-length": 3, "message-ttl": 500}),
            true,
        )
        .unwrap();
        let definition = effective_definition(Some(&p), Some(&op));
        assert_eq!(
            Value::Object(definition.clone()),
            json!({"max-length": 3, "message-ttl": 100, "dead-letter-exchange": "dlx"})
        );
        let mut declared = FieldTable::default();
        declared.insert("x-max-length".into(), AMQPValue::LongInt(10));
        declared.insert("x-message-ttl".into(), AMQPValue::LongInt(50));
        declared.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("mine".into()),
        );
        let args = effective_arguments(&declared, &definition);
        let get = |k: &str| args.inner().get(k).cloned();
        assert_eq!(get("x-max-length"), Some(AMQPValue::LongLongInt(3)));
        assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongInt(50)));
        assert_eq!(
            get("x-dead-letter-exchange"),
            Some(AMQPValue::LongString("mine".into()))
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let bad = |def: Value, operator| {
            Policy::new("/", "p", ".*", "queues", 0, &def, operator)
                .unwrap_err()
                .to_string()
        };
        assert!(bad(json!({"federation-upstream-set": "all"}), false)
            .contains("federation-upstream-set"));
        assert!(bad(json!({"dead-letter-exchange": "x"}), true).contains("operator"));
        assert!(bad(json!({"max-length": -1}), false).contains("max-length"));
        assert!(bad(json!({}), false).contains("empty"));
        assert!(Policy::new("/", "p", "(", "queues", 0, &json!({"max-length": 1}), false).is_err());
        assert!(Policy::new(
            "/",
            "p",
            ".*",
            "streams",
            0,
            &json!({"max-length": 1}),
            false
        )
        .is_err());
        assert!(Policy::new(
            "/",
            "p",
            ".*",
            "queues",
            0,
            &json!({"ha-mode": "all"}),
            false
        )
        .is_ok());
    }
}
