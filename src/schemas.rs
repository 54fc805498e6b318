//! `bloodbank schemas ...`: the event contracts of a `schemas/` tree.

use anyhow::bail;
use bloodbank_registry::check;
use bloodbank_registry::tree::SchemaSet;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum SchemasCommand {
    /// Check a tree: meta-schema, references (by $id and by path), naming, examples.
    Validate {
        /// The schema tree.
        #[arg(default_value = "schemas")]
        dir: PathBuf,
    },
}

pub fn run(command: SchemasCommand) -> anyhow::Result<()> {
    match command {
        SchemasCommand::Validate { dir } => validate(&dir),
    }
}

fn validate(dir: &std::path::Path) -> anyhow::Result<()> {
    let (set, mut problems) = SchemaSet::load(dir)?;
    problems.extend(check::check(&set));
    problems.sort();
    for problem in &problems {
        println!("{}/{problem}", dir.display());
    }
    let events = set.events().count();
    if !problems.is_empty() {
        bail!("{}: {} problem(s) in {} file(s)", dir.display(), problems.len(), set.files.len());
    }
    eprintln!("{}: {} files ({events} event contracts) valid", dir.display(), set.files.len());
    Ok(())
}
