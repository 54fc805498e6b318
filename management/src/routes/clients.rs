//! Connections, channels and consumers; closing a connection.

use super::per_vhost;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::listing::{list, ListQuery};
use crate::render;
use crate::App;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::Value;
use std::sync::Arc;

type Shared = State<Arc<App>>;

/// Connections the caller may see: all for administrators and monitors, else their own.
fn visible(app: &App, caller: &Caller) -> Vec<bloodbank_broker::ConnectionView> {
    app.admin
        .connections()
        .into_iter()
        .filter(|c| caller.sees_all() || c.user == caller.user)
        .collect()
}

pub async fn connections(
    State(app): Shared,
    caller: Caller,
    vhost: Option<Path<String>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let only = vhost.map(|Path(v)| v);
    if let Some(v) = &only {
        app.known_vhost(v)?;
    }
    let items = visible(&app, &caller)
        .iter()
        .filter(|c| only.as_ref().is_none_or(|v| &c.vhost == v))
        .map(render::connection)
        .collect();
    Ok(Json(list(items, &q)?))
}

pub async fn connection(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    visible(&app, &caller)
        .iter()
        .find(|c| c.details.name == name)
        .map(|c| Json(render::connection(c)))
        .ok_or(ApiError::NotFound)
}

/// Closes a connection with 320 CONNECTION_FORCED; the reason is the `X-Reason` header, as
/// with RabbitMQ, or "Closed via management plugin".
pub async fn close_connection(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let mine = visible(&app, &caller)
        .iter()
        .any(|c| c.details.name == name);
    if !mine {
        return Err(ApiError::NotFound);
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin");
    match app.admin.close_connection(&name, reason) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound),
    }
}

pub async fn connection_channels(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !visible(&app, &caller)
        .iter()
        .any(|c| c.details.name == name)
    {
        return Err(ApiError::NotFound);
    }
    let items = app
        .admin
        .channels()
        .iter()
        .filter(|ch| ch.connection == name)
        .map(render::channel)
        .collect();
    Ok(Json(Value::Array(items)))
}

pub async fn channels(
    State(app): Shared,
    caller: Caller,
    vhost: Option<Path<String>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let only = vhost.map(|Path(v)| v);
    let items = app
        .admin
        .channels()
        .iter()
        .filter(|ch| caller.sees_all() || ch.user == caller.user)
        .filter(|ch| only.as_ref().is_none_or(|v| &ch.vhost == v))
        .map(render::channel)
        .collect();
    Ok(Json(list(items, &q)?))
}

pub async fn channel(
    State(app): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.admin
        .channels()
        .iter()
        .filter(|ch| caller.sees_all() || ch.user == caller.user)
        .map(render::channel)
        .find(|ch| ch["name"] == name.as_str())
        .map(Json)
        .ok_or(ApiError::NotFound)
}

pub async fn consumers(
    State(app): Shared,
    caller: Caller,
    vhost: Option<Path<String>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let all = app.admin.consumers();
    per_vhost(
        &app,
        &caller,
        vhost,
        &all,
        |x| &x.vhost,
        render::consumer,
        &q,
    )
}
