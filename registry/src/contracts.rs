//! Compiled validators, one per event type and major version, looked up by routing key.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde_json::Value;

use crate::error::Error;
use crate::tree::{EventName, SchemaFile, SchemaSet};
use crate::{check, refs};

/// Why an instance does not satisfy its contract, at one place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// JSON pointer into the instance ("" for the whole instance).
    pub pointer: String,
    pub message: String,
}

/// One event type at one major version.
pub struct Contract {
    pub name: EventName,
    pub rel: String,
    pub schema: Value,
    validator: Validator,
    /// Every property name the contract declares, at any depth and through `$ref`s.
    declared: HashSet<String>,
}

fn unexpected_message(names: &[&String]) -> String {
    let list = names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    match names.len() {
        1 => format!("{list} is not a property of this contract"),
        _ => format!("{list} are not properties of this contract"),
    }
}

/// The property names declared in `node` and in everything it references.
fn declared_properties(set: &SchemaSet, file: &SchemaFile) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut seen = HashSet::new();
    let mut pending = vec![(file, &file.doc)];
    while let Some((file, node)) = pending.pop() {
        match node {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    names.extend(props.keys().cloned());
                }
                if let Some(Value::String(reference)) = map.get("$ref") {
                    if let Ok(target) = refs::resolve(set, file, reference) {
                        if seen.insert((target.file.rel.clone(), target.pointer.clone())) {
                            pending.push((target.file, target.node));
                        }
                    }
                }
                pending.extend(map.values().map(|v| (file, v)));
            }
            Value::Array(items) => pending.extend(items.iter().map(|v| (file, v))),
            _ => {}
        }
    }
    names
}

impl Contract {
    /// Every violation, each with the JSON pointer of the value at fault. When a property
    /// of an `allOf` branch fails, JSON Schema also reports the branch's other properties as
    /// "unevaluated" (a failed branch evaluates nothing): that echo is left out, so only a
    /// property the contract declares nowhere is reported as unexpected.
    pub fn validate(&self, instance: &Value) -> Result<(), Vec<Rejection>> {
        let errors: Vec<_> = self.validator.iter_errors(instance).collect();
        let unevaluated = |kind: &ValidationErrorKind| {
            matches!(kind, ValidationErrorKind::UnevaluatedProperties { .. })
        };
        let others_failed = errors.iter().any(|e| !unevaluated(e.kind()));
        let mut rejections = Vec::new();
        for e in &errors {
            let message = match e.kind() {
                ValidationErrorKind::UnevaluatedProperties { unexpected } if others_failed => {
                    let real: Vec<&String> = unexpected
                        .iter()
                        .filter(|p| !self.declared.contains(p.as_str()))
                        .collect();
                    if real.is_empty() {
                        continue;
                    }
                    unexpected_message(&real)
                }
                _ => e.to_string(),
            };
            rejections.push(Rejection {
                pointer: e.instance_path().to_string(),
                message,
            });
        }
        match rejections.is_empty() {
            true => Ok(()),
            false => Err(rejections),
        }
    }

    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }
}

/// A checked schema tree, compiled.
#[derive(Default)]
pub struct Contracts {
    /// Versions of each event type, oldest first.
    by_type: HashMap<String, Vec<Contract>>,
    pub set: SchemaSet,
}

impl Contracts {
    /// Loads, checks and compiles `dir`; any problem at all refuses the whole tree.
    pub fn load(dir: &Path) -> Result<Contracts, Error> {
        let (set, problems) = SchemaSet::load(dir)?;
        Contracts::compile(set, problems)
    }

    /// Checks and compiles `(relative path, text)` pairs: a tree carried inside a binary.
    pub fn from_texts(texts: Vec<(String, String)>) -> Result<Contracts, Error> {
        let (set, problems) = SchemaSet::from_texts(texts);
        Contracts::compile(set, problems)
    }

    fn compile(set: SchemaSet, mut problems: Vec<crate::Problem>) -> Result<Contracts, Error> {
        let (found, mut validators) = check::check_and_compile(&set);
        problems.extend(found);
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let mut by_type: HashMap<String, Vec<Contract>> = HashMap::new();
        for (name, file) in set.events() {
            // A checked set has a validator for every file.
            let Some(validator) = validators.remove(&file.rel) else {
                continue;
            };
            by_type
                .entry(name.event_type())
                .or_default()
                .push(Contract {
                    name: name.clone(),
                    rel: file.rel.clone(),
                    schema: file.doc.clone(),
                    validator,
                    declared: declared_properties(&set, file),
                });
        }
        for versions in by_type.values_mut() {
            versions.sort_by_key(|c| c.name.version);
        }
        Ok(Contracts { by_type, set })
    }

    /// The newest major version of an event type (the routing key).
    pub fn latest(&self, event_type: &str) -> Option<&Contract> {
        self.by_type.get(event_type).and_then(|v| v.last())
    }

    pub fn version(&self, event_type: &str, version: u32) -> Option<&Contract> {
        self.by_type
            .get(event_type)?
            .iter()
            .find(|c| c.name.version == version)
    }

    /// Every version of an event type, oldest first.
    pub fn versions(&self, event_type: &str) -> &[Contract] {
        self.by_type
            .get(event_type)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn event_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.by_type.keys().map(String::as_str).collect();
        types.sort();
        types
    }
}

/// Every document of a set, reachable both by its `$id` and by its path: what references
/// resolve against. Nothing is fetched from anywhere else.
#[derive(Clone)]
pub(crate) struct Documents(Arc<HashMap<String, Value>>);

impl Documents {
    pub(crate) fn of(set: &SchemaSet) -> Documents {
        let mut map = HashMap::new();
        for file in &set.files {
            map.insert(file.path_uri(), file.doc.clone());
        }
        for file in &set.files {
            if let Some(id) = file.declared_id() {
                map.entry(id.trim_end_matches('#').to_string())
                    .or_insert_with(|| file.doc.clone());
            }
        }
        Documents(Arc::new(map))
    }
}

impl Retrieve for Documents {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let key = uri.as_str().trim_end_matches('#');
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| format!("no schema in the tree is {key}").into())
    }
}

/// Formats are assertions here (`uuid`, `date-time`...), as in the generated models.
pub(crate) fn validator(documents: &Documents, file: &SchemaFile) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .with_base_uri(file.path_uri())
        .with_retriever(documents.clone())
        .build(&file.doc)
        .map_err(|e| format!("does not compile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meeting_created() -> (Contracts, Value) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        let event = json!({
            "event_type": "theboard.meeting.created",
            "timestamp": "2024-01-15T10:30:00Z",
            "meeting_id": "550e8400-e29b-41d4-a716-446655440000",
            "topic": "t",
            "strategy": "simple",
            "max_rounds": 5
        });
        (Contracts::load(&dir).unwrap(), event)
    }

    fn rejections(contracts: &Contracts, event: &Value) -> Vec<(String, String)> {
        let contract = contracts.latest("theboard.meeting.created").unwrap();
        match contract.validate(event) {
            Ok(()) => Vec::new(),
            Err(r) => r.into_iter().map(|r| (r.pointer, r.message)).collect(),
        }
    }

    #[test]
    fn a_bad_field_is_reported_alone_not_with_its_valid_neighbours() {
        let (contracts, mut event) = meeting_created();
        assert!(rejections(&contracts, &event).is_empty());
        event["timestamp"] = json!("yesterday");
        let found = rejections(&contracts, &event);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "/timestamp");
    }

    #[test]
    fn an_unknown_field_is_still_reported_beside_another_failure() {
        let (contracts, mut event) = meeting_created();
        event["bogus"] = json!(1);
        let alone = rejections(&contracts, &event);
        assert_eq!(alone.len(), 1, "{alone:?}");
        assert!(alone[0].1.contains("bogus"), "{alone:?}");

        event["timestamp"] = json!("yesterday");
        let both = rejections(&contracts, &event);
        assert_eq!(both.len(), 2, "{both:?}");
        let unexpected = both.iter().find(|(p, _)| p.is_empty()).unwrap();
        assert_eq!(unexpected.1, "\"bogus\" is not a property of this contract");
        assert!(both.iter().any(|(p, _)| p == "/timestamp"));
    }
}
