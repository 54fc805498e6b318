//! Contract tests: the generated Pydantic models (real pydantic) and Zod schemas (real zod,
//! compiled by tsc) give the verdict the `jsonschema` crate gives, on every example, every
//! counter-example and random instances sampled from the schemas.
//!
//! Needs the venv of `scripts/test` (`BLOODBANK_PYTHON`, default `.venv/bin/python`) and
//! `npm ci` in `tests/contracts`. It fails, rather than skips, when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use bloodbank_registry::gen::{self, Lang};
use bloodbank_registry::model;
use bloodbank_registry::sample::{Rng, Sampler};
use bloodbank_registry::Contracts;
use serde_json::{json, Value};

const RANDOM_PER_CONTRACT: u64 = 300;

struct Case {
    component: String,
    event_type: String,
    version: u32,
    instance: Value,
    origin: String,
    valid: bool,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn pydantic_zod_and_jsonschema_agree() {
    let contracts = Contracts::load(&root().join("schemas")).expect("schemas/ is valid");
    let cases = cases(&contracts);
    let work = root().join("tests/contracts/.generated");
    let _ = std::fs::remove_dir_all(&work);
    gen::write(
        &work.join("bb_contracts"),
        &gen::generate(&contracts.set, Lang::Python).unwrap(),
    )
    .unwrap();
    gen::write(
        &work.join("ts"),
        &gen::generate(&contracts.set, Lang::TypeScript).unwrap(),
    )
    .unwrap();
    let listing: Vec<Value> = cases
        .iter()
        .map(|c| json!({"component": c.component, "event_type": c.event_type, "version": c.version, "instance": c.instance}))
        .collect();
    let cases_file = work.join("cases.json");
    std::fs::write(&cases_file, serde_json::to_string(&listing).unwrap()).unwrap();

    compile_typescript(&work);
    let python = std::env::var("BLOODBANK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".venv/bin/python"));
    let by_python = verdicts(
        Command::new(python)
            .arg(root().join("tests/contracts/verdicts.py"))
            .arg(work.join("bb_contracts"))
            .arg(&cases_file),
    );
    let by_zod = verdicts(
        Command::new("node")
            .arg(root().join("tests/contracts/verdicts.mjs"))
            .arg(work.join("js"))
            .arg(&cases_file),
    );

    let mut disagreements = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        for (who, verdicts) in [("pydantic", &by_python), ("zod", &by_zod)] {
            let (valid, error) = &verdicts[i];
            if *valid != case.valid {
                disagreements.push(format!(
                    "{} ({}): jsonschema says {}, {who} says {valid} {error}\n    {}",
                    case.event_type, case.origin, case.valid, case.instance
                ));
            }
        }
    }
    let random: Vec<&Case> = cases
        .iter()
        .filter(|c| c.origin.starts_with("random"))
        .collect();
    let accepted = random.iter().filter(|c| c.valid).count();
    eprintln!(
        "{} cases, {} random of which {accepted} valid",
        cases.len(),
        random.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The sampler must exercise both verdicts, or the comparison proves little.
    assert!(
        accepted * 5 > random.len() && (random.len() - accepted) * 5 > random.len(),
        "{accepted} of {} valid",
        random.len()
    );
}

fn cases(contracts: &Contracts) -> Vec<Case> {
    let modules = model::build(&contracts.set).expect("the model builds");
    let mut cases = Vec::new();
    for event_type in contracts.event_types() {
        for contract in contracts.versions(event_type) {
            let name = &contract.name;
            let mut push = |instance: Value, origin: String, expected: Option<bool>| {
                let valid = contract.is_valid(&instance);
                if let Some(expected) = expected {
                    assert_eq!(valid, expected, "{event_type} {origin}: jsonschema disagrees with the contract's own listing");
                }
                cases.push(Case {
                    component: name.component.clone(),
                    event_type: event_type.to_string(),
                    version: name.version,
                    instance,
                    origin,
                    valid,
                });
            };
            for (i, example) in contract.schema["examples"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                push(example.clone(), format!("examples/{i}"), Some(true));
            }
            let counter = contract
                .schema
                .get("x-invalid-examples")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, example) in counter.into_iter().enumerate() {
                push(example, format!("x-invalid-examples/{i}"), Some(false));
            }
            let module = modules
                .iter()
                .find(|m| m.component == name.component)
                .unwrap();
            let type_name = &module
                .events
                .iter()
                .find(|e| e.name == *name)
                .unwrap()
                .type_name;
            for seed in 0..RANDOM_PER_CONTRACT {
                let mut sampler = Sampler {
                    module,
                    rng: Rng::new(seed),
                    wrong: [0, 1, 3, 8][(seed % 4) as usize],
                };
                push(
                    sampler.object(type_name),
                    format!("random seed {seed}"),
                    None,
                );
            }
        }
    }
    cases
}

fn compile_typescript(work: &Path) {
    let contracts_dir = root().join("tests/contracts");
    let tsc = contracts_dir.join("node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "run `npm ci` in tests/contracts first (scripts/test does)"
    );
    // The consumer runtime needs amqplib and Node's types; the kit's example type-checks it
    // (tests/python/test_consumer_kit.py). Here: the types, the index and the envelope.
    let sources: Vec<PathBuf> = std::fs::read_dir(work.join("ts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("consumer.ts"))
        .collect();
    let status = Command::new(tsc)
        .args([
            "--strict",
            "--target",
            "es2022",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            "--skipLibCheck",
        ])
        .arg("--outDir")
        .arg(work.join("js"))
        .args(&sources)
        .current_dir(&contracts_dir)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the generated TypeScript does not type-check"
    );
    // Node reads the compiled .js as ES modules.
    std::fs::write(work.join("js/package.json"), r#"{"type": "module"}"#).unwrap();
}

fn verdicts(command: &mut Command) -> Vec<(bool, String)> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&output.stdout).expect("a JSON list of verdicts");
    list.into_iter()
        .map(|v| {
            (
                v["valid"].as_bool().unwrap(),
                v["error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}
