//! `bloodbank schemas ...`: the event contracts of a `schemas/` tree.

use anyhow::bail;
use bloodbank_registry::tree::SchemaSet;
use bloodbank_registry::{check, gen, Contracts};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum SchemasCommand {
    /// Check a tree: meta-schema, references (by $id and by path), naming, examples.
    Validate {
        /// The schema tree.
        #[arg(default_value = "schemas")]
        dir: PathBuf,
    },
    /// Generate Pydantic v2 models, Zod schemas or Rust serde types, one module per component.
    Generate {
        #[arg(long, value_enum)]
        lang: Lang,
        /// Output directory (created; files of the same names are replaced).
        #[arg(long)]
        out: PathBuf,
        /// The schema tree.
        #[arg(default_value = "schemas")]
        dir: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Lang {
    Python,
    Typescript,
    Rust,
}

pub fn run(command: SchemasCommand) -> anyhow::Result<()> {
    match command {
        SchemasCommand::Validate { dir } => validate(&dir),
        SchemasCommand::Generate { lang, out, dir } => generate(lang, &out, &dir),
    }
}

fn validate(dir: &Path) -> anyhow::Result<()> {
    let (set, mut problems) = SchemaSet::load(dir)?;
    problems.extend(check::check(&set));
    problems.sort();
    for problem in &problems {
        println!("{}/{problem}", dir.display());
    }
    let events = set.events().count();
    if !problems.is_empty() {
        bail!(
            "{}: {} problem(s) in {} file(s)",
            dir.display(),
            problems.len(),
            set.files.len()
        );
    }
    eprintln!(
        "{}: {} files ({events} event contracts) valid",
        dir.display(),
        set.files.len()
    );
    Ok(())
}

fn generate(lang: Lang, out: &Path, dir: &Path) -> anyhow::Result<()> {
    let contracts = Contracts::load(dir)?;
    let lang = match lang {
        Lang::Python => gen::Lang::Python,
        Lang::Typescript => gen::Lang::TypeScript,
        Lang::Rust => gen::Lang::Rust,
    };
    let files = gen::generate(&contracts.set, lang)?;
    gen::write(out, &files)?;
    eprintln!("wrote {} files to {}", files.len(), out.display());
    Ok(())
}
