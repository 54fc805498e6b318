//! The type model the generators share: a schema tree turned into named objects, unions and
//! field types, one module per component. Keywords the model cannot express are errors that
//! name them; annotations (`title`, `description`, `examples`, `default`...) carry no rule.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Number, Value};

use crate::error::Problem;
use crate::refs;
use crate::tree::{EventName, SchemaFile, SchemaSet};

#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    String(Str),
    Integer(Num),
    Number(Num),
    Boolean,
    Null,
    /// `const`
    Literal(Value),
    /// `enum`: all strings or all integers.
    Enum(Vec<Value>),
    Array(Box<Ty>, Items),
    /// An object with no named properties whose values all have one type.
    Map(Box<Ty>),
    /// An object or union defined in the module.
    Named(String),
    Nullable(Box<Ty>),
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Uuid,
    DateTime,
    Date,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Str {
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub pattern: Option<String>,
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Num {
    pub minimum: Option<Number>,
    pub maximum: Option<Number>,
    pub exclusive_minimum: Option<Number>,
    pub exclusive_maximum: Option<Number>,
    pub multiple_of: Option<Number>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Items {
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub unique: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub required: bool,
    pub doc: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub name: String,
    pub doc: Option<String>,
    pub fields: Vec<Field>,
    /// No properties beyond `fields` (`additionalProperties` or `unevaluatedProperties` false).
    pub closed: bool,
}

/// `oneOf` of objects told apart by one property with a different `const` in each.
#[derive(Debug, Clone, PartialEq)]
pub struct Union {
    pub name: String,
    pub doc: Option<String>,
    pub discriminator: String,
    /// (tag value, object name)
    pub variants: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Def {
    Object(Object),
    Union(Union),
}

impl Def {
    pub fn name(&self) -> &str {
        match self {
            Def::Object(o) => &o.name,
            Def::Union(u) => &u.name,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: EventName,
    /// The root object's name, e.g. `MeetingCreatedV1`.
    pub type_name: String,
}

/// One component's types, each defined before it is used.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub component: String,
    pub defs: Vec<Def>,
    pub events: Vec<Event>,
}

impl Module {
    pub fn def(&self, name: &str) -> Option<&Def> {
        self.defs.iter().find(|d| d.name() == name)
    }
}

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];
const HANDLED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "enum",
    "const",
    "format",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "$ref",
    "allOf",
    "anyOf",
    "oneOf",
];

/// Builds one module per component from a checked set.
pub fn build(set: &SchemaSet) -> Result<Vec<Module>, Vec<Problem>> {
    let mut by_component: BTreeMap<&str, Vec<(&EventName, &SchemaFile)>> = BTreeMap::new();
    for (name, file) in set.events() {
        by_component
            .entry(&name.component)
            .or_default()
            .push((name, file));
    }
    let mut modules = Vec::new();
    let mut problems = Vec::new();
    for (component, mut events) in by_component {
        events.sort_by(|a, b| a.0.cmp(b.0));
        let mut builder = Builder {
            set,
            defs: Vec::new(),
            named: HashMap::new(),
            in_progress: Vec::new(),
        };
        let mut module_events = Vec::new();
        for (name, file) in events {
            let type_name = format!(
                "{}{}V{}",
                pascal(&name.entity),
                pascal(&name.action),
                name.version
            );
            let at = At {
                file,
                pointer: String::new(),
            };
            match builder.named_object(&at, &type_name) {
                Ok(_) => module_events.push(Event {
                    name: name.clone(),
                    type_name,
                }),
                Err(p) => problems.push(p),
            }
        }
        modules.push(Module {
            component: component.to_string(),
            defs: builder.defs,
            events: module_events,
        });
    }
    match problems.is_empty() {
        true => Ok(modules),
        false => Err(problems),
    }
}

pub fn pascal(snake: &str) -> String {
    snake
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[derive(Clone)]
struct At<'a> {
    file: &'a SchemaFile,
    pointer: String,
}

impl<'a> At<'a> {
    fn child(&self, key: &str) -> At<'a> {
        At {
            file: self.file,
            pointer: format!(
                "{}/{}",
                self.pointer,
                key.replace('~', "~0").replace('/', "~1")
            ),
        }
    }
    fn problem(&self, reason: impl Into<String>) -> Problem {
        Problem::new(&self.file.rel, &self.pointer, reason)
    }
}

struct Builder<'a> {
    set: &'a SchemaSet,
    defs: Vec<Def>,
    /// "file#pointer" of a referenced object or union -> its name.
    named: HashMap<String, String>,
    in_progress: Vec<String>,
}

type Built<T> = Result<T, Problem>;

impl<'a> Builder<'a> {
    fn ty(&mut self, at: &At<'a>, schema: &'a Value, hint: &str) -> Built<Ty> {
        let map = match schema {
            Value::Bool(true) => return Ok(Ty::Any),
            Value::Object(map) => map,
            _ => return Err(at.problem("only `true` and objects are supported as schemas here")),
        };
        for key in map.keys() {
            if !ANNOTATIONS.contains(&key.as_str())
                && !HANDLED.contains(&key.as_str())
                && !key.starts_with("x-")
            {
                return Err(at.problem(format!(
                    "keyword {key:?} is not supported by the code generators"
                )));
            }
        }
        let constraints = |except: &[&str]| {
            map.keys()
                .any(|k| HANDLED.contains(&k.as_str()) && !except.contains(&k.as_str()))
        };
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            if constraints(&["$ref"]) {
                return Err(at.problem(
                    "$ref beside other constraints is not supported by the code generators",
                ));
            }
            let target =
                refs::resolve(self.set, at.file, reference).map_err(|why| at.problem(why))?;
            let there = At {
                file: target.file,
                pointer: target.pointer.clone(),
            };
            let name_hint = target
                .pointer
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .map(pascal);
            let name_hint = name_hint.unwrap_or_else(|| hint.to_string());
            return self.ty(&there, target.node, &name_hint);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = map.get(key).and_then(Value::as_array) {
                if constraints(&[key]) {
                    return Err(at.problem(format!(
                        "{key} beside other constraints is not supported by the code generators"
                    )));
                }
                return self.alternatives(&at.child(key), key, branches, hint, doc(map));
            }
        }
        if let Some(value) = map.get("const") {
            return Ok(Ty::Literal(value.clone()));
        }
        if let Some(values) = map.get("enum").and_then(Value::as_array) {
            let strings = values.iter().all(Value::is_string);
            let integers = values.iter().all(|v| v.as_i64().is_some());
            let nullable = types(map).contains(&"null");
            return match (strings || integers, nullable) {
                (true, false) => Ok(Ty::Enum(values.clone())),
                (true, true) => Ok(Ty::Nullable(Box::new(Ty::Enum(values.clone())))),
                (false, _) => Err(at
                    .child("enum")
                    .problem("enum values must be all strings or all integers")),
            };
        }
        let kinds = types(map);
        let object_like = map.contains_key("properties") || map.contains_key("allOf");
        match kinds.as_slice() {
            [kind] => self.single(at, map, kind, hint),
            [a, "null"] | ["null", a] => Ok(Ty::Nullable(Box::new(self.single(at, map, a, hint)?))),
            [] if object_like => self.single(at, map, "object", hint),
            [] => Ok(Ty::Any),
            _ => Err(at.child("type").problem(
                "a type list other than [T, \"null\"] is not supported by the code generators",
            )),
        }
    }

    fn single(
        &mut self,
        at: &At<'a>,
        map: &'a serde_json::Map<String, Value>,
        kind: &str,
        hint: &str,
    ) -> Built<Ty> {
        Ok(match kind {
            "string" => Ty::String(Str {
                min_length: map.get("minLength").and_then(Value::as_u64),
                max_length: map.get("maxLength").and_then(Value::as_u64),
                pattern: map
                    .get("pattern")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                format: match map.get("format").and_then(Value::as_str) {
                    None => None,
                    Some("uuid") => Some(Format::Uuid),
                    Some("date-time") => Some(Format::DateTime),
                    Some("date") => Some(Format::Date),
                    Some(other) => {
                        return Err(at.child("format").problem(format!(
                            "format {other:?} is not supported by the code generators"
                        )))
                    }
                },
            }),
            "integer" => Ty::Integer(num(map)),
            "number" => Ty::Number(num(map)),
            "boolean" => Ty::Boolean,
            "null" => Ty::Null,
            "array" => {
                let items = match map.get("items") {
                    Some(items) => self.ty(&at.child("items"), items, &format!("{hint}Item"))?,
                    None => Ty::Any,
                };
                let limits = Items {
                    min_items: map.get("minItems").and_then(Value::as_u64),
                    max_items: map.get("maxItems").and_then(Value::as_u64),
                    unique: map
                        .get("uniqueItems")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                };
                Ty::Array(Box::new(items), limits)
            }
            "object" => {
                let has_properties = map.contains_key("properties") || map.contains_key("allOf");
                match (has_properties, map.get("additionalProperties")) {
                    (false, Some(v @ Value::Object(_))) => Ty::Map(Box::new(self.ty(&at.child("additionalProperties"), v, &format!("{hint}Value"))?)),
                    (false, None | Some(Value::Bool(true))) if !closed(map) => Ty::Map(Box::new(Ty::Any)),
                    (true, Some(Value::Object(_))) => {
                        return Err(at.problem("properties together with an additionalProperties schema are not supported by the code generators"))
                    }
                    _ => Ty::Named(self.named_object(at, hint)?),
                }
            }
            other => {
                return Err(at
                    .child("type")
                    .problem(format!("type {other:?} is not a JSON Schema type")))
            }
        })
    }

    /// Defines the object at `at` (once, however often it is referenced) and returns its name.
    fn named_object(&mut self, at: &At<'a>, name: &str) -> Built<String> {
        let key = format!("{}#{}", at.file.rel, at.pointer);
        if let Some(existing) = self.named.get(&key) {
            return Ok(existing.clone());
        }
        if self.in_progress.contains(&key) {
            return Err(at.problem("recursive types are not supported by the code generators"));
        }
        if self.defs.iter().any(|d| d.name() == name) {
            return Err(at.problem(format!(
                "two different types would both be named {name}; rename one $defs entry"
            )));
        }
        self.in_progress.push(key.clone());
        let schema = self
            .node(at)
            .ok_or_else(|| at.problem("nothing at this pointer"))?;
        let object = self.object(at, schema, name);
        self.in_progress.pop();
        let object = object?;
        self.named.insert(key, name.to_string());
        self.defs.push(Def::Object(object));
        Ok(name.to_string())
    }

    /// The node `at` points to inside its file (so that it borrows from the set).
    fn node(&self, at: &At<'a>) -> Option<&'a Value> {
        at.file.doc.pointer(&at.pointer)
    }

    fn object(&mut self, at: &At<'a>, schema: &'a Value, name: &str) -> Built<Object> {
        let map = schema
            .as_object()
            .ok_or_else(|| at.problem("an object schema must be a JSON object"))?;
        let mut fields: Vec<Field> = Vec::new();
        if let Some(bases) = map.get("allOf").and_then(Value::as_array) {
            for (i, base) in bases.iter().enumerate() {
                let base_at = at.child("allOf").child(&i.to_string());
                let (file, node) = self.follow(&base_at, base)?;
                let there = At {
                    file: file.0,
                    pointer: file.1,
                };
                if closed(node.as_object().unwrap_or(&Default::default())) {
                    return Err(base_at.problem(
                        "a closed schema under allOf rejects the other branches' properties; close the composed schema with unevaluatedProperties instead",
                    ));
                }
                for field in self.object(&there, node, name)?.fields {
                    upsert(&mut fields, field);
                }
            }
        }
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(properties) = map.get("properties").and_then(Value::as_object) {
            for (prop, sub) in properties {
                let hint = format!("{name}{}", pascal(prop));
                let ty = self.ty(&at.child("properties").child(prop), sub, &hint)?;
                let inherited_required = fields.iter().any(|f| f.name == *prop && f.required);
                upsert(
                    &mut fields,
                    Field {
                        name: prop.clone(),
                        ty,
                        required: inherited_required,
                        doc: sub
                            .get("description")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    },
                );
            }
        }
        for req in &required {
            match fields.iter_mut().find(|f| f.name == *req) {
                Some(field) => field.required = true,
                None => {
                    return Err(at
                        .child("required")
                        .problem(format!("{req:?} is required but not among the properties")))
                }
            }
        }
        Ok(Object {
            name: name.to_string(),
            doc: doc(map),
            fields,
            closed: closed(map),
        })
    }

    /// Follows `$ref`s to the schema a branch stands for.
    fn follow(
        &self,
        at: &At<'a>,
        schema: &'a Value,
    ) -> Built<((&'a SchemaFile, String), &'a Value)> {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let target =
                    refs::resolve(self.set, at.file, reference).map_err(|why| at.problem(why))?;
                let there = At {
                    file: target.file,
                    pointer: target.pointer.clone(),
                };
                self.follow(&there, target.node)
            }
            None => Ok(((at.file, at.pointer.clone()), schema)),
        }
    }

    fn alternatives(
        &mut self,
        at: &At<'a>,
        key: &str,
        branches: &'a [Value],
        hint: &str,
        doc: Option<String>,
    ) -> Built<Ty> {
        let is_null = |v: &Value| {
            v.get("type").and_then(Value::as_str) == Some("null")
                && v.as_object().is_some_and(|m| m.len() == 1)
        };
        let non_null: Vec<(usize, &Value)> = branches
            .iter()
            .enumerate()
            .filter(|(_, b)| !is_null(b))
            .collect();
        if let ([(i, other)], 2) = (non_null.as_slice(), branches.len()) {
            return Ok(Ty::Nullable(Box::new(self.ty(
                &at.child(&i.to_string()),
                other,
                hint,
            )?)));
        }
        if key != "oneOf" {
            return Err(at.problem("anyOf is supported only as [T, {\"type\": \"null\"}]"));
        }
        // A discriminated union: every branch an object with a required property whose const differs.
        let mut resolved = Vec::new();
        for (i, branch) in branches.iter().enumerate() {
            let branch_at = at.child(&i.to_string());
            let ((file, pointer), node) = self.follow(&branch_at, branch)?;
            resolved.push((At { file, pointer }, node));
        }
        let tag_of = |node: &Value, prop: &str| -> Option<String> {
            let required = node.get("required")?.as_array()?.iter().any(|r| r == prop);
            let value = node.get("properties")?.get(prop)?.get("const")?.as_str()?;
            required.then(|| value.to_string())
        };
        let first = resolved
            .first()
            .ok_or_else(|| at.problem("oneOf needs at least one branch"))?;
        let candidates: Vec<&String> = first
            .1
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        let discriminator = candidates
            .into_iter()
            .find(|prop| {
                let tags: Vec<Option<String>> = resolved.iter().map(|(_, n)| tag_of(n, prop)).collect();
                let mut distinct: Vec<&String> = tags.iter().flatten().collect();
                distinct.sort();
                distinct.dedup();
                tags.iter().all(Option::is_some) && distinct.len() == tags.len()
            })
            .ok_or_else(|| at.problem("oneOf is supported only for objects told apart by a required property with a different const in each"))?
            .clone();
        let mut variants = Vec::new();
        for (branch_at, node) in &resolved {
            let Some(tag) = tag_of(node, &discriminator) else {
                return Err(at.problem("a oneOf branch lost its discriminating const"));
            };
            let name = self.named_object(branch_at, &format!("{hint}{}", pascal(&tag)))?;
            variants.push((tag, name));
        }
        if self.defs.iter().any(|d| d.name() == hint) {
            return Err(at.problem(format!("two different types would both be named {hint}")));
        }
        self.defs.push(Def::Union(Union {
            name: hint.to_string(),
            doc,
            discriminator,
            variants,
        }));
        Ok(Ty::Named(hint.to_string()))
    }
}

fn upsert(fields: &mut Vec<Field>, field: Field) {
    match fields.iter_mut().find(|f| f.name == field.name) {
        Some(existing) => *existing = field,
        None => fields.push(field),
    }
}

fn types(map: &serde_json::Map<String, Value>) -> Vec<&str> {
    match map.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn closed(map: &serde_json::Map<String, Value>) -> bool {
    map.get("additionalProperties") == Some(&Value::Bool(false))
        || map.get("unevaluatedProperties") == Some(&Value::Bool(false))
}

fn num(map: &serde_json::Map<String, Value>) -> Num {
    let get = |k: &str| map.get(k).and_then(|v| v.as_number()).cloned();
    Num {
        minimum: get("minimum"),
        maximum: get("maximum"),
        exclusive_minimum: get("exclusiveMinimum"),
        exclusive_maximum: get("exclusiveMaximum"),
        multiple_of: get("multipleOf"),
    }
}

fn doc(map: &serde_json::Map<String, Value>) -> Option<String> {
    map.get("description")
        .or_else(|| map.get("title"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_null_branches_are_an_error_not_a_panic() {
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://33god.dev/schemas/demo/thing.happened.v1.json",
            "type": "object",
            "properties": {"v": {"anyOf": [{"type": "null"}, {"type": "null"}]}}
        });
        let (set, _) = SchemaSet::from_texts(vec![(
            "demo/thing.happened.v1.json".into(),
            schema.to_string(),
        )]);
        let problems = build(&set).unwrap_err();
        assert!(
            problems[0].reason.contains("anyOf is supported only"),
            "{problems:?}"
        );
    }
}
