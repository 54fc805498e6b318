//! Which event contracts `serve` validates against: a directory given with `--schemas`
//! (watched for changes), or else the project's own, built into the binary.

use anyhow::Context;
use bloodbank_registry::live::{Live, Source};
use bloodbank_registry::Contracts;
use std::path::Path;
use std::time::Duration;

mod built_in {
    include!(concat!(env!("OUT_DIR"), "/contracts.rs"));
}

/// How often a `--schemas` directory is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The contracts for `serve`, with one log line saying where they come from and how many.
pub fn load(dir: Option<&Path>) -> anyhow::Result<Live> {
    let live = match dir {
        Some(dir) => Live::start(dir, RELOAD_EVERY)
            .with_context(|| format!("loading the event contracts in {}", dir.display()))?,
        None => Live::fixed(built_in_contracts()?, Source::BuiltIn),
    };
    let status = live.status();
    match &status.problem {
        None => tracing::info!(
            source = %status.source,
            event_types = status.event_types,
            "event contracts loaded"
        ),
        Some(problem) => tracing::warn!(
            source = %status.source,
            event_types = status.event_types,
            "event contracts degraded: {problem}; events of unknown types are refused"
        ),
    }
    Ok(live)
}

/// The project's `schemas/` as it was when the binary was built.
pub fn built_in_contracts() -> anyhow::Result<Contracts> {
    let texts = built_in::CONTRACTS
        .iter()
        .map(|(rel, text)| (rel.to_string(), text.to_string()))
        .collect();
    Contracts::from_texts(texts).context("the built-in event contracts do not load")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_contracts_are_the_project_schemas() {
        let contracts = super::built_in_contracts().unwrap();
        let on_disk = bloodbank_registry::Contracts::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"),
        )
        .unwrap();
        assert_eq!(contracts.event_types(), on_disk.event_types());
        assert!(contracts.latest("theboard.meeting.created").is_some());
    }
}
