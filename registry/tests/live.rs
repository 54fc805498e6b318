//! Hot reload on a real directory: a new contract appears, a bad edit keeps the last good
//! set (and says why), fixing it recovers.

use std::path::Path;
use std::time::{Duration, Instant};

use bloodbank_registry::live::Live;

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn eventually(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn edits_reload_and_bad_edits_keep_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas"),
        dir.path(),
    );
    let live = Live::start(dir.path(), Duration::from_millis(25)).unwrap();
    assert!(live.current().latest("calendar.event.created").is_some());
    assert!(live.current().latest("calendar.event.moved").is_none());

    let created =
        std::fs::read_to_string(dir.path().join("calendar/event.created.v1.json")).unwrap();
    let moved = created.replace("event.created", "event.moved");
    std::fs::write(dir.path().join("calendar/event.moved.v1.json"), &moved).unwrap();
    eventually("the new contract is loaded", || {
        live.current().latest("calendar.event.moved").is_some()
    });
    let before = live.current();

    std::fs::write(
        dir.path().join("calendar/event.moved.v1.json"),
        "{ not json",
    )
    .unwrap();
    eventually("the bad edit is reported", || live.last_error().is_some());
    assert!(
        live.last_error()
            .unwrap()
            .contains("calendar/event.moved.v1.json"),
        "{:?}",
        live.last_error()
    );
    assert!(
        live.current().latest("calendar.event.moved").is_some(),
        "the last good set stays"
    );
    assert!(std::sync::Arc::ptr_eq(&before, &live.current()));

    std::fs::write(dir.path().join("calendar/event.moved.v1.json"), &moved).unwrap();
    eventually("the fix clears the error", || live.last_error().is_none());
    assert!(live.current().latest("calendar.event.moved").is_some());
}
