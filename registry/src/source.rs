//! Reading a schema tree as it was at a git revision (for `check-compat --base <ref>`).

use std::path::Path;
use std::process::Command;

use crate::error::{Error, GitError, Problem};
use crate::tree::SchemaSet;

/// The tree at `dir` as it is in `revision`.
pub fn at_revision(dir: &Path, revision: &str) -> Result<(SchemaSet, Vec<Problem>), Error> {
    let listing = git(dir, &["ls-tree", "-r", "--name-only", revision, "."])?;
    let mut texts = Vec::new();
    for rel in listing.lines().filter(|l| l.ends_with(".json")) {
        texts.push((
            rel.to_string(),
            git(dir, &["show", &format!("{revision}:./{rel}")])?,
        ));
    }
    if texts.is_empty() {
        return Err(GitError::NoSchemas {
            revision: revision.to_string(),
            dir: dir.display().to_string(),
        }
        .into());
    }
    Ok(SchemaSet::from_texts(texts))
}

fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|source| GitError::Spawn {
            dir: dir.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    String::from_utf8(output.stdout).map_err(|source| GitError::NotUtf8 {
        args: args.join(" "),
        source,
    })
}
