//! Reading a schema tree as it was at a git revision (for `check-compat --base <ref>`).

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Problem};
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
        return Err(Error::Git(format!(
            "{revision} has no schemas under {}",
            dir.display()
        )));
    }
    Ok(SchemaSet::from_texts(texts))
}

fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| Error::Git(format!("running git in {}: {e}", dir.display())))?;
    if !output.status.success() {
        return Err(Error::Git(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    String::from_utf8(output.stdout).map_err(|e| Error::Git(format!("git {}: {e}", args.join(" "))))
}
