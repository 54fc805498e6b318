//! The generated Rust package (types and consumer kit): the copy the Rust example service is
//! built from (`examples/rust/meeting-tracker/src/events/`) compiles here too and is kept
//! fresh (regenerating the tree must give the same files), and every example of every
//! contract reads into its type and writes back to the same JSON.

#[rustfmt::skip]
#[path = "../../examples/rust/meeting-tracker/src/events/mod.rs"]
mod generated;

use std::path::Path;

use bloodbank_registry::gen::{self, Lang};
use bloodbank_registry::Contracts;
use serde_json::Value;

fn contracts() -> Contracts {
    Contracts::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas"))
        .expect("schemas/ is valid")
}

#[test]
fn committed_rust_types_are_what_the_generator_writes() {
    let files = gen::generate(&contracts().set, Lang::Rust).unwrap();
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rust/meeting-tracker/src/events");
    for (rel, text) in &files {
        let committed = std::fs::read_to_string(dir.join(rel)).unwrap_or_default();
        assert!(
            committed == *text,
            "examples/rust/meeting-tracker/src/events/{rel} is stale: run `bloodbank schemas generate --lang rust --out examples/rust/meeting-tracker/src/events`"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut written: Vec<String> = files.iter().map(|(rel, _)| rel.clone()).collect();
    written.sort();
    assert_eq!(
        names, written,
        "no file there that the generator does not write"
    );
    assert_eq!(
        files,
        gen::generate(&contracts().set, Lang::Rust).unwrap(),
        "output is deterministic"
    );
}

#[test]
fn every_example_round_trips_through_its_rust_type() {
    let contracts = contracts();
    let mut checked = 0;
    for event_type in contracts.event_types() {
        for contract in contracts.versions(event_type) {
            for example in contract.schema["examples"].as_array().unwrap() {
                let back = round_trip(
                    &contract.name.component,
                    event_type,
                    contract.name.version,
                    example.clone(),
                )
                .unwrap_or_else(|| panic!("no Rust type for {event_type}"))
                .unwrap_or_else(|e| panic!("{event_type}: {e}\n{example}"));
                assert!(
                    same(example, &back),
                    "{event_type}: wrote back\n{back}\nfrom\n{example}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} examples");
}

#[test]
fn closed_objects_refuse_unknown_fields() {
    let contracts = contracts();
    let contract = contracts.latest("calendar.event.created").unwrap();
    let mut example = contract.schema["examples"][0].clone();
    example["attendees"] = Value::from(3);
    let read = round_trip("calendar", "calendar.event.created", 1, example).unwrap();
    assert!(read.unwrap_err().to_string().contains("attendees"));
}

fn round_trip(
    component: &str,
    event_type: &str,
    version: u32,
    value: Value,
) -> Option<Result<Value, serde_json::Error>> {
    match component {
        "calendar" => generated::calendar::round_trip(event_type, version, value),
        "talkytonny" => generated::talkytonny::round_trip(event_type, version, value),
        "theboard" => generated::theboard::round_trip(event_type, version, value),
        "theboardroom" => generated::theboardroom::round_trip(event_type, version, value),
        "transcription" => generated::transcription::round_trip(event_type, version, value),
        other => panic!("a new component {other}: add it here"),
    }
}

/// Equal as JSON, numbers compared by value (an f64 field writes 1 back as 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
