//! Compiled validators, one per event type and major version, looked up by routing key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde_json::Value;

use crate::check;
use crate::error::Error;
use crate::tree::{EventName, SchemaFile, SchemaSet};

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
}

impl Contract {
    pub fn validate(&self, instance: &Value) -> Result<(), Vec<Rejection>> {
        let rejections: Vec<Rejection> = self
            .validator
            .iter_errors(instance)
            .map(|e| Rejection {
                pointer: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
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
        let (set, mut problems) = SchemaSet::load(dir)?;
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
