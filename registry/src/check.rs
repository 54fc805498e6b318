//! `bloodbank schemas validate`: everything that must hold of a schema tree.

use std::collections::HashMap;

use jsonschema::Validator;
use serde_json::Value;

use crate::contracts::{validator, Documents};
use crate::error::Problem;
use crate::refs;
use crate::tree::{SchemaFile, SchemaSet, DRAFT_2020_12};

pub const COUNTER_EXAMPLES: &str = "x-invalid-examples";

/// All problems of a parsed set, sorted by file.
pub fn check(set: &SchemaSet) -> Vec<Problem> {
    check_and_compile(set).0
}

/// The problems, and the validator of every file that compiled (by relative path), so that
/// loading a tree compiles each schema once.
pub(crate) fn check_and_compile(set: &SchemaSet) -> (Vec<Problem>, HashMap<String, Validator>) {
    let mut problems = Vec::new();
    let mut validators = HashMap::new();
    let documents = Documents::of(set);
    for file in &set.files {
        problems.extend(declaration(file));
        problems.extend(meta(file));
        let broken_refs = refs::check(set, file);
        match validator(&documents, file) {
            Ok(v) => {
                problems.extend(examples(file, &v));
                validators.insert(file.rel.clone(), v);
            }
            // A reference that resolves to nothing is already reported where it is written.
            Err(_) if !broken_refs.is_empty() => {}
            Err(why) => problems.push(Problem::new(&file.rel, "", why)),
        }
        problems.extend(broken_refs);
    }
    problems.sort();
    problems.dedup();
    (problems, validators)
}

/// `$schema`, `$id` and the event type agree with the path.
fn declaration(file: &SchemaFile) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem =
        |pointer: &str, reason: String| out.push(Problem::new(&file.rel, pointer, reason));
    match file.doc.get("$schema").and_then(Value::as_str) {
        Some(DRAFT_2020_12) => {}
        Some(other) => problem(
            "/$schema",
            format!("{other:?} is not JSON Schema 2020-12 ({DRAFT_2020_12})"),
        ),
        None => problem("", format!("no $schema; contracts declare {DRAFT_2020_12}")),
    }
    match file.declared_id() {
        Some(id) if id.trim_end_matches('#') == file.path_uri() => {}
        Some(id) => problem(
            "/$id",
            format!(
                "{id:?} does not match the file's path: expected {:?}",
                file.path_uri()
            ),
        ),
        None => problem("", format!("no $id; expected {:?}", file.path_uri())),
    }
    if let Some(name) = file.event() {
        let declared = file
            .doc
            .pointer("/properties/event_type/const")
            .and_then(Value::as_str);
        if let Some(declared) = declared.filter(|d| *d != name.event_type()) {
            problem(
                "/properties/event_type/const",
                format!(
                    "{declared:?} is not the event type the path names ({:?})",
                    name.event_type()
                ),
            );
        }
        if file
            .doc
            .get("examples")
            .and_then(Value::as_array)
            .is_none_or(|e| e.is_empty())
        {
            problem(
                "",
                "an event contract carries at least one entry in examples".into(),
            );
        }
    }
    out
}

fn meta(file: &SchemaFile) -> Vec<Problem> {
    match jsonschema::meta::validate(&file.doc) {
        Ok(()) => Vec::new(),
        Err(e) => vec![Problem::new(
            &file.rel,
            e.instance_path().to_string(),
            format!("not a valid schema: {e}"),
        )],
    }
}

fn examples(file: &SchemaFile, validator: &jsonschema::Validator) -> Vec<Problem> {
    let mut out = Vec::new();
    let list = |key: &str| {
        file.doc
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for (i, example) in list("examples").iter().enumerate() {
        for error in validator.iter_errors(example) {
            let pointer = format!("/examples/{i}{}", error.instance_path());
            out.push(Problem::new(
                &file.rel,
                pointer,
                format!("example rejected: {error}"),
            ));
        }
    }
    for (i, example) in list(COUNTER_EXAMPLES).iter().enumerate() {
        if validator.is_valid(example) {
            let pointer = format!("/{COUNTER_EXAMPLES}/{i}");
            out.push(Problem::new(
                &file.rel,
                pointer,
                "counter-example accepted; it must be rejected".to_string(),
            ));
        }
    }
    out
}
