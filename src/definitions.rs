//! `bloodbank definitions export|import`: the durable definitions of a data directory as
//! RabbitMQ's definitions JSON. On a stopped broker the store is opened directly; while a
//! broker runs on the data directory, through its management API (`/api/definitions`).

use anyhow::Context;
use bloodbank_broker::definitions::{Definitions, DefinitionsFile};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum DefinitionsCommand {
    /// Write every user, permission, durable vhost, exchange, queue and binding to FILE (a
    /// file `rabbitmqctl import_definitions` takes).
    Export {
        #[command(flatten)]
        args: DefinitionsArgs,
        /// Turn durable classic queues into quorum queues, for a RabbitMQ cluster; a queue
        /// with an argument quorum queues do not take stays classic, and is named.
        #[arg(long)]
        quorum: bool,
    },
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
        DefinitionsCommand::Export { args, quorum } => {
            let mut file: DefinitionsFile = match running(&args.data_dir) {
                true => serde_json::from_value(args.api.call("GET", "/definitions", None)?)
                    .context(
                        "the management API answered something that is not a definitions file",
                    )?,
                false => open(&args.data_dir)?.load()?,
            };
            if quorum {
                for (name, why) in to_quorum(&mut file) {
                    eprintln!("kept {name} classic: {why}");
                }
            }
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

/// Quorum queues refuse these arguments (RabbitMQ 3.10), and why.
const NOT_FOR_QUORUM: &[(&str, &str)] = &[
    ("x-max-priority", "quorum queues have no priorities"),
    ("x-queue-mode", "quorum queues have no queue mode"),
    ("x-queue-version", "quorum queues have no queue version"),
    (
        "x-queue-master-locator",
        "quorum queues use x-queue-leader-locator",
    ),
];

/// Turns the durable classic queues of `file` into quorum queues; returns the ones that stay
/// classic, with why.
fn to_quorum(file: &mut DefinitionsFile) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    for q in &mut file.queues {
        let classic = q.kind.as_deref().is_none_or(|k| k == "classic");
        if !classic {
            continue;
        }
        if !q.durable || q.auto_delete {
            kept.push((
                q.name.clone(),
                "only durable, not auto-delete queues can be quorum queues".into(),
            ));
            continue;
        }
        let args = q.arguments.as_object().cloned().unwrap_or_default();
        if let Some((key, why)) = NOT_FOR_QUORUM.iter().find(|(k, _)| args.contains_key(*k)) {
            kept.push((q.name.clone(), format!("{key}: {why}")));
            continue;
        }
        if args.get("x-overflow").and_then(|v| v.as_str()) == Some("reject-publish-dlx") {
            kept.push((
                q.name.clone(),
                "x-overflow reject-publish-dlx: quorum queues do not take it".into(),
            ));
            continue;
        }
        let mut args = args;
        args.insert("x-queue-type".into(), "quorum".into());
        q.arguments = args.into();
        q.kind = Some("quorum".into());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durable_classic_queues_become_quorum_queues_unless_an_argument_forbids() {
        let mut file: DefinitionsFile = serde_json::from_value(json!({
            "queues": [
                {"name": "work", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {"x-message-ttl": 5}},
                {"name": "ranked", "vhost": "/", "type": "classic", "durable": true, "auto_delete": false, "arguments": {"x-max-priority": 5}},
                {"name": "temp", "vhost": "/", "durable": true, "auto_delete": true, "arguments": {}}
            ]
        }))
        .unwrap();
        let kept = to_quorum(&mut file);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ranked", "temp"]);
        assert!(kept[0].1.contains("x-max-priority"));
        assert_eq!(file.queues[0].kind.as_deref(), Some("quorum"));
        assert_eq!(file.queues[0].arguments["x-queue-type"], "quorum");
        assert_eq!(file.queues[0].arguments["x-message-ttl"], 5);
        assert_eq!(file.queues[1].kind.as_deref(), Some("classic"));
    }
}
