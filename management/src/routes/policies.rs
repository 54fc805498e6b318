//! Policies and operator policies: `/api/policies` and `/api/operator-policies`.

use super::{created_or_updated, per_vhost};
use crate::auth::Caller;
use crate::body::Fields;
use crate::error::ApiError;
use crate::listing::ListQuery;
use crate::App;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use bloodbank_broker::definitions::PolicyDef;
use serde_json::{json, Value};
use std::sync::Arc;

type Shared = State<Arc<App>>;

fn policy_json(p: &PolicyDef) -> Value {
    json!({
        "vhost": p.vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to,
        "priority": p.priority,
        "definition": p.definition,
    })
}

/// Policies need `policymaker` or `administrator`; seeing them, access to the vhost.
fn may_change(caller: &Caller) -> Result<(), ApiError> {
    match caller.is_admin() || caller.tags.iter().any(|t| t == "policymaker") {
        true => Ok(()),
        false => Err(ApiError::Unauthorized("Not policymaker user".into())),
    }
}

fn listing(
    app: &App,
    caller: &Caller,
    operator: bool,
    vhost: Option<Path<String>>,
    q: &ListQuery,
) -> Result<Json<Value>, ApiError> {
    let all = app.admin.policies(operator);
    per_vhost(app, caller, vhost, &all, |p| &p.vhost, policy_json, q)
}

async fn put(
    app: &App,
    caller: &Caller,
    operator: bool,
    vhost: String,
    name: String,
    body: &bytes::Bytes,
) -> Result<Response, ApiError> {
    match operator {
        true => caller.require_admin()?,
        false => may_change(caller)?,
    }
    app.known_vhost(&vhost)?;
    let f = Fields::parse(body)?;
    let priority = match f.raw("priority") {
        None => 0,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) if s.parse::<i64>().is_ok() => s.parse().unwrap_or(0),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "priority must be an integer, not {other}"
            )))
        }
    };
    let def = PolicyDef {
        vhost,
        name,
        pattern: f.required("pattern")?,
        apply_to: f.string("apply-to")?.unwrap_or_else(|| "all".into()),
        priority,
        definition: f.object("definition")?,
    };
    Ok(created_or_updated(
        app.admin.put_policy(&def, operator).await?,
    ))
}

async fn delete(
    app: &App,
    caller: &Caller,
    operator: bool,
    vhost: &str,
    name: &str,
) -> Result<StatusCode, ApiError> {
    match operator {
        true => caller.require_admin()?,
        false => may_change(caller)?,
    }
    app.admin.delete_policy(vhost, name, operator).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn one(
    app: &App,
    caller: &Caller,
    operator: bool,
    vhost: &str,
    name: &str,
) -> Result<Json<Value>, ApiError> {
    caller.require_vhost(app, vhost)?;
    app.admin
        .policies(operator)
        .iter()
        .find(|p| p.vhost == vhost && p.name == name)
        .map(|p| Json(policy_json(p)))
        .ok_or(ApiError::NotFound)
}

pub async fn policies(
    State(app): Shared,
    caller: Caller,
    vhost: Option<Path<String>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    listing(&app, &caller, false, vhost, &q)
}

pub async fn operator_policies(
    State(app): Shared,
    caller: Caller,
    vhost: Option<Path<String>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    listing(&app, &caller, true, vhost, &q)
}

pub async fn policy(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    one(&app, &caller, false, &vhost, &name)
}

pub async fn operator_policy(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    one(&app, &caller, true, &vhost, &name)
}

pub async fn put_policy(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    put(&app, &caller, false, vhost, name, &body).await
}

pub async fn put_operator_policy(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    put(&app, &caller, true, vhost, name, &body).await
}

pub async fn delete_policy(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete(&app, &caller, false, &vhost, &name).await
}

pub async fn delete_operator_policy(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete(&app, &caller, true, &vhost, &name).await
}
