//! What a definitions file may hold to be imported: everything in it must be honoured here,
//! and what cannot be is refused by name before anything is stored, never skipped quietly.

use crate::core::exchange::ExchangeKind;
use crate::store::definitions::DefinitionsFile;
use crate::users::{UserError, Users};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("vhost '{vhost}': {source}")]
    Policy {
        vhost: String,
        #[source]
        source: crate::core::policy::PolicyError,
    },
    #[error("runtime parameters are not supported yet ({component} '{name}' in vhost '{vhost}')")]
    Parameter {
        component: String,
        name: String,
        vhost: String,
    },
    #[error(
        "exchange '{name}' in vhost '{vhost}' has type '{kind}', which this broker does not have"
    )]
    ExchangeType {
        name: String,
        vhost: String,
        kind: String,
    },
    #[error(
        "queue '{name}' in vhost '{vhost}' has type '{kind}' (only classic and quorum queues)"
    )]
    QueueType {
        name: String,
        vhost: String,
        kind: String,
    },
}

/// Checks a definitions file before import.
pub fn check_import(file: &DefinitionsFile) -> Result<(), ImportError> {
    Users::from_defs(&file.users, &file.permissions, &file.topic_permissions)?;
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    let policies = file.policies.iter().map(|p| (p, false));
    for (p, operator) in policies.chain(file.operator_policies.iter().map(|p| (p, true))) {
        crate::core::policy::Policy::from_def(p, operator).map_err(|source| {
            ImportError::Policy {
                vhost: p.vhost.clone(),
                source,
            }
        })?;
    }
    if let Some(p) = file.parameters.first() {
        return Err(ImportError::Parameter {
            component: text(p, "component"),
            name: text(p, "name"),
            vhost: text(p, "vhost"),
        });
    }
    if let Some(e) = file
        .exchanges
        .iter()
        .find(|e| ExchangeKind::parse(&e.kind).is_none())
    {
        return Err(ImportError::ExchangeType {
            name: e.name.clone(),
            vhost: e.vhost.clone(),
            kind: e.kind.clone(),
        });
    }
    let queue_type = |q: &crate::store::definitions::QueueDef| {
        q.kind
            .clone()
            .or_else(|| q.arguments["x-queue-type"].as_str().map(str::to_string))
    };
    if let Some((q, kind)) = file
        .queues
        .iter()
        .filter_map(|q| queue_type(q).map(|k| (q, k)))
        .find(|(_, k)| k != "classic" && k != "quorum")
    {
        return Err(ImportError::QueueType {
            name: q.name.clone(),
            vhost: q.vhost.clone(),
            kind,
        });
    }
    Ok(())
}
