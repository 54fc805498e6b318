//! Every file of `corpus/<target>/` (the seeds, what fuzzing runs kept, and the inputs of past
//! findings) through its target's function: a finding that comes back fails here, on stable,
//! in CI.

use std::path::Path;

#[test]
fn every_corpus_file_goes_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in bloodbank_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name} has no corpus");
        for file in &files {
            let data = std::fs::read(file).unwrap();
            eprintln!("{name}: {}", file.display());
            target(&data);
        }
        println!("{name}: {} inputs", files.len());
    }
}
