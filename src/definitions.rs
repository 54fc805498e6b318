//! `bloodbank definitions export|import`: the durable definitions of a data directory as
//! RabbitMQ's definitions JSON. On a stopped broker the store is opened directly; while a
//! broker runs on the data directory, through its management API (`/api/definitions`).

use anyhow::Context;
use bloodbank_broker::definitions::{Definitions, DefinitionsFile};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum DefinitionsCommand {
    /// Write every user, permission, durable vhost, exchange, queue and binding to FILE.
    Export(DefinitionsArgs),
    /// Add the users, permissions, vhosts, exchanges, queues and bindings of FILE; they exist
    /// at the next start. Users with a password hash that cannot be checked here are refused.
    Import(DefinitionsArgs),
}

#[derive(clap::Args, Debug)]
pub struct DefinitionsArgs {
    /// The JSON file.
    pub file: PathBuf,
    /// The broker's data directory.
    #[arg(long, env = "BLOODBANK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Used when a broker is running on the data directory.
    #[command(flatten)]
    pub api: crate::manage::Api,
}

/// Whether a `bloodbank serve` holds the data directory (then its API is the way in).
fn running(data_dir: &Path) -> bool {
    matches!(
        bloodbank_broker::PidLock::try_acquire(data_dir, "bloodbank.pid"),
        Err(bloodbank_broker::PidLockError::Held { .. })
    )
}

pub fn run(command: DefinitionsCommand) -> anyhow::Result<()> {
    match command {
        DefinitionsCommand::Export(args) => {
            let file: DefinitionsFile = match running(&args.data_dir) {
                true => serde_json::from_value(args.api.call("GET", "/definitions", None)?)
                    .context(
                        "the management API answered something that is not a definitions file",
                    )?,
                false => open(&args.data_dir)?.load()?,
            };
            let text = serde_json::to_string_pretty(&file)?;
            std::fs::write(&args.file, text + "\n")
                .with_context(|| format!("writing {}", args.file.display()))?;
            eprintln!(
                "exported {} users, {} permissions, {} exchanges, {} queues, {} bindings to {}",
                file.users.len(),
                file.permissions.len(),
                file.exchanges.len(),
                file.queues.len(),
                file.bindings.len(),
                args.file.display()
            );
        }
        DefinitionsCommand::Import(args) => {
            let text = std::fs::read_to_string(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let mut de = serde_json::Deserializer::from_str(&text);
            let file: DefinitionsFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                anyhow::anyhow!(
                    "{}: field '{}': {}",
                    args.file.display(),
                    e.path(),
                    e.inner()
                )
            })?;
            bloodbank_broker::check_import(&file)
                .with_context(|| format!("{} cannot be imported", args.file.display()))?;
            if running(&args.data_dir) {
                let value = serde_json::to_value(&file)?;
                args.api.call("POST", "/definitions", Some(&value))?;
            } else {
                std::fs::create_dir_all(&args.data_dir)?;
                open(&args.data_dir)?.import(&file)?;
            }
            eprintln!(
                "imported {} users, {} permissions, {} exchanges, {} queues, {} bindings into {}",
                file.users.len(),
                file.permissions.len(),
                file.exchanges.len(),
                file.queues.len(),
                file.bindings.len(),
                args.data_dir.display()
            );
        }
    }
    Ok(())
}

fn open(data_dir: &Path) -> anyhow::Result<Definitions> {
    Definitions::open(&data_dir.join("definitions.redb")).with_context(|| {
        format!(
            "opening the definitions in {} (is a broker running on it? stop it first)",
            data_dir.display()
        )
    })
}
