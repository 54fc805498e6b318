//! `bloodbank schemas ...` as a user runs it: exit codes and what it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bloodbank(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn our_tree_validates() {
    let out = bloodbank(&["schemas", "validate"], &root());
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("12 event contracts"));
}

#[test]
fn the_original_holyfields_tree_fails_with_its_known_bugs_named() {
    let original = root().join("../shared/reference/holyfields/main");
    if !original.exists() {
        // The reference tree sits beside the project in the workspace, not in a clone of it.
        let tree = tempfile::tempdir().unwrap();
        write_original_like(tree.path());
        return check_original(tree.path());
    }
    check_original(&original);
}

/// The two bugs of the original trees, reproduced in a few lines: a closed schema composed
/// with allOf rejects its own example, and a $ref that resolves by path but not by $id.
fn write_original_like(dir: &Path) {
    std::fs::create_dir_all(dir.join("common/schemas")).unwrap();
    std::fs::create_dir_all(dir.join("theboard/events")).unwrap();
    std::fs::write(
        dir.join("common/schemas/base_event.json"),
        r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://33god.dev/schemas/common/base_event.json",
            "type": "object", "properties": {"meeting_id": {"type": "string"}}, "required": ["meeting_id"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("theboard/events/meeting_created.json"),
        r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://33god.dev/schemas/theboard/events/meeting_created.json",
            "type": "object", "allOf": [{"$ref": "../../common/schemas/base_event.json"}],
            "properties": {"topic": {"type": "string"}}, "additionalProperties": false,
            "examples": [{"meeting_id": "m", "topic": "t"}]}"#,
    )
    .unwrap();
}

fn check_original(dir: &Path) {
    let out = bloodbank(&["schemas", "validate", dir.to_str().unwrap()], &root());
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("theboard/events/meeting_created.json#/examples/0: example rejected: Additional properties are not allowed"), "{text}");
    assert!(text.contains("meeting_created.json#/allOf/0/$ref: \"../../common/schemas/base_event.json\" resolves to"), "{text}");
    assert!(text.contains("(it resolves only by file path)"), "{text}");
    assert!(text.contains("<entity>.<action>.v<N>.json"), "{text}");
}

#[test]
fn generate_writes_a_module_per_component() {
    let out_dir = tempfile::tempdir().unwrap();
    for (lang, ext) in [("python", "py"), ("typescript", "ts"), ("rust", "rs")] {
        let target = out_dir.path().join(lang);
        let out = bloodbank(
            &[
                "schemas",
                "generate",
                "--lang",
                lang,
                "--out",
                target.to_str().unwrap(),
            ],
            &root(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for component in [
            "calendar",
            "talkytonny",
            "theboard",
            "theboardroom",
            "transcription",
        ] {
            assert!(
                target.join(format!("{component}.{ext}")).exists(),
                "{lang}: {component}"
            );
        }
    }
}

#[test]
fn generate_refuses_keywords_it_cannot_express() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("demo")).unwrap();
    std::fs::write(
        tree.path().join("demo/thing.happened.v1.json"),
        r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://33god.dev/schemas/demo/thing.happened.v1.json",
            "type": "object", "properties": {"n": {"type": "integer", "not": {"const": 3}}}, "examples": [{"n": 1}]}"#,
    )
    .unwrap();
    let out = bloodbank(
        &[
            "schemas",
            "generate",
            "--lang",
            "python",
            "--out",
            "/dev/null/x",
            tree.path().to_str().unwrap(),
        ],
        &root(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("demo/thing.happened.v1.json#/properties/n: keyword \"not\" is not supported"),
        "{err}"
    );
}

#[test]
fn check_compat_against_a_git_revision_lists_the_breaking_change() {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        assert!(
            Command::new("git")
                .args(args)
                .current_dir(repo.path())
                .output()
                .unwrap()
                .status
                .success(),
            "git {args:?}"
        )
    };
    git(&["init", "-q"]);
    let schemas = repo.path().join("schemas");
    std::fs::create_dir_all(schemas.join("calendar")).unwrap();
    std::fs::create_dir_all(schemas.join("_common")).unwrap();
    std::fs::copy(
        root().join("schemas/_common/types.v1.json"),
        schemas.join("_common/types.v1.json"),
    )
    .unwrap();
    let contract =
        std::fs::read_to_string(root().join("schemas/calendar/event.created.v1.json")).unwrap();
    std::fs::write(schemas.join("calendar/event.created.v1.json"), &contract).unwrap();
    git(&["add", "."]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "base",
    ]);

    let unchanged = bloodbank(
        &["schemas", "check-compat", "--base", "HEAD", "schemas"],
        repo.path(),
    );
    assert!(
        unchanged.status.success(),
        "{}",
        String::from_utf8_lossy(&unchanged.stderr)
    );
    assert!(stdout(&unchanged).contains("calendar.event.created v1: unchanged"));

    let narrowed = contract.replace(
        "\"maxLength\": 1024, \"description\": \"Title",
        "\"maxLength\": 100, \"description\": \"Title",
    );
    assert_ne!(narrowed, contract);
    std::fs::write(schemas.join("calendar/event.created.v1.json"), narrowed).unwrap();
    let broken = bloodbank(
        &["schemas", "check-compat", "--base", "HEAD", "schemas"],
        repo.path(),
    );
    assert!(!broken.status.success());
    assert!(
        stdout(&broken).contains("/summary: maxLength lowered from 1024 to 100 (breaks BACKWARD)"),
        "{}",
        stdout(&broken)
    );
    let forward_only = bloodbank(
        &[
            "schemas",
            "check-compat",
            "--base",
            "HEAD",
            "--level",
            "forward",
            "schemas",
        ],
        repo.path(),
    );
    assert!(forward_only.status.success());
}

#[test]
fn catalog_lists_every_event_type_in_each_format() {
    for format in ["md", "json", "html"] {
        let out = bloodbank(&["schemas", "catalog", "--format", format], &root());
        assert!(out.status.success());
        let text = stdout(&out);
        for event in [
            "theboard.meeting.created",
            "theboardroom.meeting.state_changed",
            "talkytonny.transcription.completed",
            "transcription.voice.completed",
            "calendar.event.created",
        ] {
            assert!(text.contains(event), "{format}: {event}");
        }
    }
}
