//! `/api/definitions`: the running broker's definitions as RabbitMQ exports them, and
//! importing a RabbitMQ definitions file into it (checked first, refusing by name what the
//! broker cannot honour).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bloodbank_broker::definitions::{BindingDef, DefinitionsFile, ExchangeDef, QueueDef, VhostDef};
use bloodbank_broker::{check_import, ExchangeSpec, QueueSpec};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

type Shared = State<Arc<App>>;

/// Everything durable, as a definitions file (all vhosts, or one).
fn export(app: &App, only: Option<&str>) -> DefinitionsFile {
    let admin = &app.admin;
    let here = |v: &str| only.is_none_or(|o| o == v);
    let queues = admin.queues();
    let exchanges = admin.exchanges();
    let durable_queue = |vhost: &str, name: &str| {
        queues
            .iter()
            .any(|q| q.vhost == vhost && q.name == name && q.durable && !q.exclusive)
    };
    let durable_exchange = |vhost: &str, name: &str| {
        exchanges
            .iter()
            .any(|e| e.vhost == vhost && e.name == name && e.durable)
    };
    let system = |name: &str| name.is_empty() || name.starts_with("amq.");
    let all = only.is_none();
    DefinitionsFile {
        rabbit_version: crate::routes::overview::RABBITMQ_VERSION.into(),
        product_name: "Bloodbank".into(),
        product_version: env!("CARGO_PKG_VERSION").into(),
        users: if all { admin.users_list() } else { Vec::new() },
        vhosts: if all {
            admin
                .vhosts()
                .into_iter()
                .map(|name| VhostDef { name })
                .collect()
        } else {
            Vec::new()
        },
        permissions: if all { admin.permissions() } else { Vec::new() },
        topic_permissions: if all {
            admin.topic_permissions()
        } else {
            Vec::new()
        },
        parameters: Vec::new(),
        policies: admin
            .policies(false)
            .into_iter()
            .filter(|p| here(&p.vhost))
            .collect(),
        operator_policies: if all {
            admin.policies(true)
        } else {
            Vec::new()
        },
        queues: queues
            .iter()
            .filter(|q| here(&q.vhost) && q.durable && !q.exclusive)
            .map(|q| QueueDef {
                name: q.name.clone(),
                vhost: q.vhost.clone(),
                kind: Some(q.kind.into()),
                durable: true,
                auto_delete: q.auto_delete,
                arguments: q.arguments.clone(),
            })
            .collect(),
        exchanges: exchanges
            .iter()
            .filter(|e| here(&e.vhost) && e.durable && !system(&e.name))
            .map(|e| ExchangeDef {
                name: e.name.clone(),
                vhost: e.vhost.clone(),
                kind: e.kind.into(),
                durable: true,
                auto_delete: e.auto_delete,
                internal: e.internal,
                arguments: e.arguments.clone(),
            })
            .collect(),
        bindings: admin
            .bindings()
            .into_iter()
            .filter(|b| here(&b.vhost) && !b.source.is_empty())
            .filter(|b| durable_exchange(&b.vhost, &b.source))
            .filter(|b| match b.destination_type {
                "queue" => durable_queue(&b.vhost, &b.destination),
                _ => durable_exchange(&b.vhost, &b.destination),
            })
            .map(|b| BindingDef {
                source: b.source,
                vhost: b.vhost,
                destination: b.destination,
                destination_type: b.destination_type.into(),
                routing_key: b.routing_key,
                arguments: b.arguments,
            })
            .collect(),
    }
}

pub async fn get_all(
    State(app): Shared,
    caller: Caller,
) -> Result<Json<DefinitionsFile>, ApiError> {
    caller.require_admin()?;
    Ok(Json(export(&app, None)))
}

pub async fn get_vhost(
    State(app): Shared,
    caller: Caller,
    Path(vhost): Path<String>,
) -> Result<Json<DefinitionsFile>, ApiError> {
    caller.require_admin()?;
    app.known_vhost(&vhost)?;
    Ok(Json(export(&app, Some(&vhost))))
}

pub async fn post_all(
    State(app): Shared,
    caller: Caller,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    import(&app, None, &body).await
}

pub async fn post_vhost(
    State(app): Shared,
    caller: Caller,
    Path(vhost): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    app.known_vhost(&vhost)?;
    import(&app, Some(&vhost), &body).await
}

/// Applies a definitions file to the running broker: vhosts, users and permissions first,
/// then exchanges, queues and bindings. With `into`, every object goes to that vhost.
async fn import(app: &App, into: Option<&str>, body: &Bytes) -> Result<StatusCode, ApiError> {
    let mut file: DefinitionsFile = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("not a definitions file: {e}")))?;
    if let Some(v) = into {
        for q in &mut file.queues {
            q.vhost = v.into();
        }
        for e in &mut file.exchanges {
            e.vhost = v.into();
        }
        for b in &mut file.bindings {
            b.vhost = v.into();
        }
        for p in &mut file.policies {
            p.vhost = v.into();
        }
    }
    check_import(&file).map_err(|e| ApiError::bad(e.to_string()))?;
    let admin = &app.admin;
    for v in &file.vhosts {
        admin.put_vhost(&v.name).await?;
    }
    for u in &file.users {
        admin.put_user(u.clone(), None).await?;
    }
    for p in &file.permissions {
        admin.put_permission(p.clone()).await?;
    }
    for t in &file.topic_permissions {
        admin.put_topic_permission(t.clone()).await?;
    }
    for (policies, operator) in [(&file.policies, false), (&file.operator_policies, true)] {
        for p in policies {
            admin.put_policy(p, operator).await?;
        }
    }
    let vhost_of = |v: &str| -> Result<bloodbank_broker::Session, ApiError> {
        if !admin.vhosts().iter().any(|x| x == v) {
            return Err(ApiError::bad(format!(
                "vhost '{v}' is not in the file nor in the broker"
            )));
        }
        Ok(admin.system_session(v)?)
    };
    for e in &file.exchanges {
        vhost_of(&e.vhost)?
            .declare_exchange(ExchangeSpec {
                name: e.name.clone(),
                kind: e.kind.clone(),
                passive: false,
                durable: e.durable,
                auto_delete: e.auto_delete,
                internal: e.internal,
                arguments: bloodbank_broker::arguments_from_json(&e.arguments),
            })
            .await?;
    }
    for q in &file.queues {
        let mut arguments = q.arguments.clone();
        // A quorum queue's type is an argument here (RabbitMQ exports it as a field).
        if let (Some("quorum"), Some(args)) = (q.kind.as_deref(), arguments.as_object_mut()) {
            args.entry("x-queue-type")
                .or_insert(Value::String("quorum".into()));
        }
        vhost_of(&q.vhost)?
            .declare_queue(QueueSpec {
                name: q.name.clone(),
                passive: false,
                durable: q.durable,
                exclusive: false,
                auto_delete: q.auto_delete,
                arguments: bloodbank_broker::arguments_from_json(&arguments),
            })
            .await?;
    }
    for b in &file.bindings {
        vhost_of(&b.vhost)?
            .bind(
                &b.source,
                &b.destination,
                b.destination_type == "exchange",
                &b.routing_key,
                &b.arguments,
            )
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
