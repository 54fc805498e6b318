//! Users, vhosts and permissions.

use super::created_or_updated;
use crate::auth::Caller;
use crate::body::Fields;
use crate::error::ApiError;
use crate::listing::{list, ListQuery};
use crate::App;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use bloodbank_broker::definitions::{PermissionDef, UserDef};
use serde_json::{json, Value};
use std::sync::Arc;

type Shared = State<Arc<App>>;

fn user_json(u: &UserDef) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": u.hashing_algorithm,
        "tags": u.tags,
        "limits": if u.limits.is_object() { u.limits.clone() } else { json!({}) },
    })
}

fn permission_json(p: &PermissionDef) -> Value {
    json!({
        "user": p.user,
        "vhost": p.vhost,
        "configure": p.configure,
        "write": p.write,
        "read": p.read,
    })
}

pub async fn users(
    State(app): Shared,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let items = app.admin.users_list().iter().map(user_json).collect();
    Ok(Json(list(items, &q)?))
}

pub async fn user(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    app.admin
        .users_list()
        .iter()
        .find(|u| u.name == name)
        .map(|u| Json(user_json(u)))
        .ok_or(ApiError::NotFound)
}

/// Tags as a list or RabbitMQ's older comma-separated string.
fn tags(f: &Fields) -> Result<Vec<String>, ApiError> {
    match f.raw("tags") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad("tags must be strings"))
            })
            .collect(),
        Some(other) => Err(ApiError::bad(format!(
            "tags must be a list or a string, not {other}"
        ))),
    }
}

pub async fn put_user(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let f = Fields::parse(&body)?;
    let password = f.string("password")?;
    let hash = f.string("password_hash")?;
    if password.is_none()
        && hash.is_none()
        && !app.admin.users_list().iter().any(|u| u.name == name)
    {
        return Err(ApiError::bad("password or password_hash is missing"));
    }
    let def = UserDef {
        name,
        password_hash: hash.unwrap_or_default(),
        hashing_algorithm: f
            .string("hashing_algorithm")?
            .unwrap_or_else(|| "rabbit_password_hashing_sha256".into()),
        tags: tags(&f)?,
        limits: json!({}),
    };
    let created = app.admin.put_user(def, password.as_deref()).await?;
    Ok(created_or_updated(created))
}

pub async fn delete_user(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    app.admin.delete_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn user_permissions(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    if !app.admin.users_list().iter().any(|u| u.name == name) {
        return Err(ApiError::NotFound);
    }
    let items = app
        .admin
        .permissions()
        .iter()
        .filter(|p| p.user == name)
        .map(permission_json)
        .collect();
    Ok(Json(Value::Array(items)))
}

pub async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({ "name": caller.user, "tags": caller.tags }))
}

pub async fn vhosts(
    State(app): Shared,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let queues = app.admin.queues();
    let items = app
        .admin
        .vhosts()
        .iter()
        .filter(|v| caller.sees(&app, v))
        .map(|v| vhost_json(v, &queues))
        .collect();
    Ok(Json(list(items, &q)?))
}

fn vhost_json(name: &str, queues: &[bloodbank_broker::QueueView]) -> Value {
    let mine = queues.iter().filter(|q| q.vhost == name);
    let (ready, unacked) = mine.fold((0, 0), |(r, u), q| (r + q.ready, u + q.unacked));
    json!({
        "name": name,
        "description": "",
        "tags": [],
        "default_queue_type": "classic",
        "tracing": false,
        "cluster_state": { crate::render::NODE: "running" },
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    })
}

pub async fn vhost(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.known_vhost(&name)?;
    caller.require_vhost(&app, &name)?;
    Ok(Json(vhost_json(&name, &app.admin.queues())))
}

pub async fn put_vhost(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    Fields::parse(&body)?;
    if name.is_empty() {
        return Err(ApiError::bad("a vhost needs a name"));
    }
    let created = app.admin.put_vhost(&name).await?;
    if created {
        // As RabbitMQ's API does: the user who creates a vhost may use it.
        let all = PermissionDef {
            user: caller.user.clone(),
            vhost: name,
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        app.admin.put_permission(all).await?;
    }
    Ok(created_or_updated(created))
}

pub async fn delete_vhost(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    app.admin.delete_vhost(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn vhost_permissions(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    app.known_vhost(&name)?;
    let items = app
        .admin
        .permissions()
        .iter()
        .filter(|p| p.vhost == name)
        .map(permission_json)
        .collect();
    Ok(Json(Value::Array(items)))
}

pub async fn permissions(
    State(app): Shared,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let items = app
        .admin
        .permissions()
        .iter()
        .map(permission_json)
        .collect();
    Ok(Json(list(items, &q)?))
}

pub async fn permission(
    State(app): Shared,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    app.admin
        .permissions()
        .iter()
        .find(|p| p.vhost == vhost && p.user == user)
        .map(|p| Json(permission_json(p)))
        .ok_or(ApiError::NotFound)
}

pub async fn put_permission(
    State(app): Shared,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let f = Fields::parse(&body)?;
    let user_known = app.admin.users_list().iter().any(|u| u.name == user);
    if app.known_vhost(&vhost).is_err() || !user_known {
        return Err(ApiError::bad("vhost_or_user_not_found"));
    }
    let def = PermissionDef {
        user,
        vhost,
        configure: f.required("configure")?,
        write: f.required("write")?,
        read: f.required("read")?,
    };
    for (field, pattern) in [
        ("configure", &def.configure),
        ("write", &def.write),
        ("read", &def.read),
    ] {
        if let Err(e) = regex::Regex::new(pattern) {
            return Err(ApiError::bad(format!(
                "{field} is not a regular expression: {e}"
            )));
        }
    }
    let created = app.admin.put_permission(def).await?;
    Ok(created_or_updated(created))
}

pub async fn delete_permission(
    State(app): Shared,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    app.admin.delete_permission(&vhost, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
