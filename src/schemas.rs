//! `bloodbank schemas ...`: the event contracts of a `schemas/` tree.

use anyhow::bail;
use bloodbank_registry::compat::{self, Outcome};
use bloodbank_registry::tree::SchemaSet;
use bloodbank_registry::{catalog, check, gen, source, Contracts};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum SchemasCommand {
    /// Check a tree: meta-schema, references (by $id and by path), naming, examples.
    Validate {
        /// The schema tree.
        #[arg(default_value = "schemas")]
        dir: PathBuf,
    },
    /// Generate Pydantic v2 models, Zod schemas or Rust serde types, one module per component,
    /// with the consumer kit (envelope and consumer runtime) beside them.
    Generate {
        #[arg(long, value_enum)]
        lang: Lang,
        /// Output directory (created; files of the same names are replaced).
        #[arg(long)]
        out: PathBuf,
        /// The schema tree [default: ./schemas, else the contracts built into bloodbank, the
        /// ones `serve` validates against].
        dir: Option<PathBuf>,
    },
    /// Compare every contract with its namesake in OLD (a directory or a git revision) at
    /// Confluent's BACKWARD / FORWARD / FULL levels; fail when one breaks --level.
    CheckCompat {
        /// The tree to compare against: a directory, or a git revision of DIR.
        #[arg(long)]
        base: String,
        /// The level every contract must keep within its major version.
        #[arg(long, value_enum, default_value = "full")]
        level: Level,
        /// The schema tree.
        #[arg(default_value = "schemas")]
        dir: PathBuf,
    },
    /// Print the event catalog: every event type, its versions and fields.
    Catalog {
        #[arg(long, value_enum, default_value = "md")]
        format: CatalogFormat,
        /// The schema tree.
        #[arg(default_value = "schemas")]
        dir: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CatalogFormat {
    Md,
    Json,
    Html,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Level {
    Backward,
    Forward,
    Full,
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
        SchemasCommand::Generate { lang, out, dir } => generate(lang, &out, dir.as_deref()),
        SchemasCommand::CheckCompat { base, level, dir } => check_compat(&base, level, &dir),
        SchemasCommand::Catalog { format, dir } => {
            let value = catalog::json(&Contracts::load(&dir)?.set)?;
            match format {
                CatalogFormat::Json => println!("{}", serde_json::to_string_pretty(&value)?),
                CatalogFormat::Md => print!("{}", catalog::markdown(&value)),
                CatalogFormat::Html => print!("{}", catalog::html(&value)),
            }
            Ok(())
        }
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

fn generate(lang: Lang, out: &Path, dir: Option<&Path>) -> anyhow::Result<()> {
    let local = Path::new("schemas");
    let contracts = match dir {
        Some(dir) => Contracts::load(dir)?,
        None if local.is_dir() => Contracts::load(local)?,
        None => {
            eprintln!("no ./schemas here: generating from the contracts built into bloodbank");
            crate::contracts::built_in_contracts()?
        }
    };
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

fn check_compat(base: &str, level: Level, dir: &Path) -> anyhow::Result<()> {
    let level = match level {
        Level::Backward => compat::Level::Backward,
        Level::Forward => compat::Level::Forward,
        Level::Full => compat::Level::Full,
    };
    let tree = Contracts::load(dir)?.set;
    let (old, problems) = match Path::new(base).is_dir() {
        true => SchemaSet::load(Path::new(base))?,
        false => source::at_revision(dir, base)?,
    };
    if !problems.is_empty() {
        bail!(
            "the base {base} does not load: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let mut broken = 0;
    for report in compat::compare(&old, &tree)? {
        let levels = [
            compat::Level::Backward,
            compat::Level::Forward,
            compat::Level::Full,
        ]
        .map(|l| format!("{l} {}", if report.holds(l) { "ok" } else { "broken" }))
        .join(", ");
        match &report.outcome {
            Outcome::Added => println!("{}: new", report.name),
            Outcome::Removed => println!(
                "{}: removed (breaks producers still sending it)",
                report.name
            ),
            Outcome::Changed(changes) if changes.is_empty() => {
                println!("{}: unchanged", report.name)
            }
            Outcome::Changed(changes) => {
                println!("{}: {levels}", report.name);
                for change in changes {
                    println!("    {change}");
                }
            }
        }
        if !report.holds(level) {
            broken += 1;
        }
    }
    if broken > 0 {
        bail!("{broken} contract(s) break {level} compatibility within their major version; publish a new major version (<entity>.<action>.v<N+1>.json) instead");
    }
    Ok(())
}
