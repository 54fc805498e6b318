//! Compatibility verdicts on small trees, one rule each.

use bloodbank_registry::compat::{compare, Level, Outcome};
use bloodbank_registry::SchemaSet;
use serde_json::{json, Value};

const PATH: &str = "demo/thing.happened.v1.json";

fn tree(schema: Value) -> SchemaSet {
    let mut schema = schema;
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema["$id"] = json!(format!("https://33god.dev/schemas/{PATH}"));
    let (set, problems) = SchemaSet::from_texts(vec![(PATH.to_string(), schema.to_string())]);
    assert!(problems.is_empty(), "{problems:?}");
    set
}

/// (BACKWARD, FORWARD) kept, and the changes' descriptions.
fn verdict(old: Value, new: Value) -> (bool, bool, Vec<String>) {
    let reports = compare(&tree(old), &tree(new)).unwrap();
    let Outcome::Changed(changes) = &reports[0].outcome else {
        panic!("{reports:?}")
    };
    (
        reports[0].holds(Level::Backward),
        reports[0].holds(Level::Forward),
        changes.iter().map(|c| c.to_string()).collect(),
    )
}

fn object(properties: Value, required: &[&str], closed: bool) -> Value {
    let mut o = json!({"type": "object", "properties": properties, "required": required});
    if closed {
        o["additionalProperties"] = json!(false);
    }
    o
}

#[test]
fn optional_property_added_to_closed_model_breaks_forward_only() {
    let old = object(json!({"a": {"type": "string"}}), &["a"], true);
    let new = object(
        json!({"a": {"type": "string"}, "b": {"type": "integer"}}),
        &["a"],
        true,
    );
    let (backward, forward, changes) = verdict(old, new);
    assert!(backward && !forward, "{changes:?}");
    assert!(changes[0].starts_with("/b: optional property added to a closed content model"));
}

#[test]
fn property_added_to_open_model_breaks_backward_only() {
    let old = object(json!({"a": {"type": "string"}}), &["a"], false);
    let new = object(
        json!({"a": {"type": "string"}, "b": {"type": "integer"}}),
        &["a"],
        false,
    );
    let (backward, forward, _) = verdict(old, new);
    assert!(!backward && forward);
}

#[test]
fn required_property_added_to_closed_model_breaks_both() {
    let old = object(json!({"a": {"type": "string"}}), &["a"], true);
    let new = object(
        json!({"a": {"type": "string"}, "b": {"type": "integer"}}),
        &["a", "b"],
        true,
    );
    let (backward, forward, _) = verdict(old, new);
    assert!(!backward && !forward);
}

#[test]
fn bounds_and_enums_narrow_or_widen() {
    let p = |max: u64, values: Value| {
        object(
            json!({"n": {"type": "integer", "maximum": max}, "e": {"enum": values}}),
            &["n", "e"],
            true,
        )
    };
    assert!(verdict(p(10, json!(["x"])), p(20, json!(["x", "y"]))).0);
    assert!(!verdict(p(10, json!(["x"])), p(20, json!(["x", "y"]))).1);
    assert!(!verdict(p(10, json!(["x", "y"])), p(5, json!(["x"]))).0);
    assert_eq!(
        verdict(p(10, json!(["x"])), p(10, json!(["x"]))),
        (true, true, vec![])
    );
}

#[test]
fn nullability_and_type_changes() {
    let p = |ty: Value| object(json!({"v": {"type": ty}}), &["v"], true);
    assert!(verdict(p(json!("string")), p(json!(["string", "null"]))).0);
    assert!(!verdict(p(json!(["string", "null"])), p(json!("string"))).0);
    let (b, f, changes) = verdict(p(json!("string")), p(json!("integer")));
    assert!(!b && !f, "{changes:?}");
    assert!(verdict(p(json!("integer")), p(json!("number"))).0);
}

#[test]
fn union_variants_added_and_removed() {
    let variant = |tag: &str| json!({"type": "object", "properties": {"k": {"const": tag}}, "required": ["k"], "additionalProperties": false});
    let u = |tags: &[&str]| {
        object(
            json!({"u": {"oneOf": tags.iter().map(|t| variant(t)).collect::<Vec<_>>()}}),
            &["u"],
            true,
        )
    };
    let (b, f, changes) = verdict(u(&["a", "b"]), u(&["a", "b", "c"]));
    assert!(b && !f, "{changes:?}");
    let (b, f, _) = verdict(u(&["a", "b"]), u(&["a"]));
    assert!(!b && f);
}

#[test]
fn new_and_removed_contracts() {
    let (empty, _) = SchemaSet::from_texts(vec![]);
    let one = tree(object(json!({"a": {"type": "string"}}), &[], true));
    assert_eq!(compare(&empty, &one).unwrap()[0].outcome, Outcome::Added);
    let removed = &compare(&one, &empty).unwrap()[0];
    assert_eq!(removed.outcome, Outcome::Removed);
    assert!(!removed.holds(Level::Backward));
}
