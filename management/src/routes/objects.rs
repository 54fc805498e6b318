//! Exchanges, queues and bindings: list, show, declare, delete, purge, publish, get.

use super::{created_or_updated, per_vhost};
use crate::auth::Caller;
use crate::body::Fields;
use crate::error::ApiError;
use crate::listing::ListQuery;
use crate::render::{self, encode, properties_key, same_properties_key};
use crate::App;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::ShortString;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bloodbank_broker::{arguments_from_json, AckMode, ExchangeSpec, QueueSpec};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

type Shared = State<Arc<App>>;

/// RabbitMQ's name for the default exchange in URLs.
fn exchange_name(name: &str) -> &str {
    match name {
        "amq.default" => "",
        other => other,
    }
}

pub async fn exchanges(
    State(app): Shared,
    caller: Caller,
    vhost: Option<Path<String>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let all = app.admin.exchanges();
    per_vhost(
        &app,
        &caller,
        vhost,
        &all,
        |x| &x.vhost,
        render::exchange,
        &q,
    )
}

pub async fn exchange(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_vhost(&app, &vhost)?;
    let name = exchange_name(&name);
    app.admin
        .exchanges()
        .iter()
        .find(|e| e.vhost == vhost && e.name == name)
        .map(|e| Json(render::exchange(e)))
        .ok_or(ApiError::NotFound)
}

pub async fn put_exchange(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let session = app.admin.session(&caller.user, &vhost)?;
    let existed = app
        .admin
        .exchanges()
        .iter()
        .any(|e| e.vhost == vhost && e.name == name);
    let spec = ExchangeSpec {
        name,
        kind: f.required("type")?,
        passive: false,
        durable: f.bool("durable", true)?,
        auto_delete: f.bool("auto_delete", false)?,
        internal: f.bool("internal", false)?,
        arguments: arguments_from_json(&f.object("arguments")?),
    };
    session.declare_exchange(spec).await?;
    Ok(created_or_updated(!existed))
}

pub async fn delete_exchange(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let session = app.admin.session(&caller.user, &vhost)?;
    if !app
        .admin
        .exchanges()
        .iter()
        .any(|e| e.vhost == vhost && e.name == name)
    {
        return Err(ApiError::NotFound);
    }
    let if_unused = q.get("if-unused").is_some_and(|v| v == "true");
    session.delete_exchange(&name, if_unused).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn queues(
    State(app): Shared,
    caller: Caller,
    vhost: Option<Path<String>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let all = app.admin.queues();
    per_vhost(
        &app,
        &caller,
        vhost,
        &all,
        |x| &x.vhost,
        |x| render::queue(x, &app.rates),
        &q,
    )
}

pub async fn queue(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_vhost(&app, &vhost)?;
    app.admin
        .queues()
        .iter()
        .find(|x| x.vhost == vhost && x.name == name)
        .map(|x| Json(render::queue(x, &app.rates)))
        .ok_or(ApiError::NotFound)
}

pub async fn put_queue(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let session = app.admin.session(&caller.user, &vhost)?;
    let mut arguments = f.object("arguments")?;
    // RabbitMQ 3.x also takes the type as a field of its own.
    if let (Some(kind), Some(args)) = (f.string("type")?, arguments.as_object_mut()) {
        args.entry("x-queue-type").or_insert(Value::String(kind));
    }
    let spec = QueueSpec {
        name,
        passive: false,
        durable: f.bool("durable", true)?,
        exclusive: false,
        auto_delete: f.bool("auto_delete", false)?,
        arguments: arguments_from_json(&arguments),
    };
    Ok(created_or_updated(session.declare_queue(spec).await?))
}

pub async fn delete_queue(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let session = app.admin.session(&caller.user, &vhost)?;
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true");
    session
        .delete_queue(&name, flag("if-unused"), flag("if-empty"))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn purge_queue(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let session = app.admin.session(&caller.user, &vhost)?;
    if !app
        .admin
        .queues()
        .iter()
        .any(|x| x.vhost == vhost && x.name == name)
    {
        return Err(ApiError::NotFound);
    }
    session.purge_queue(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/queues/{vhost}/{name}/actions`: RabbitMQ's sync/cancel_sync are for mirrored
/// queues, which do not exist here.
pub async fn queue_actions() -> ApiError {
    ApiError::bad(
        "queue actions (sync, cancel_sync) apply to mirrored queues, which Bloodbank does not have",
    )
}

pub async fn get(
    State(app): Shared,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let f = Fields::parse(&body)?;
    let count = f.uint("count", 1)?.min(10_000) as usize;
    let mode = match f.required("ackmode")?.as_str() {
        "ack_requeue_true" => AckMode::Requeue,
        "ack_requeue_false" => AckMode::Ack,
        "reject_requeue_true" => AckMode::Reject { requeue: true },
        "reject_requeue_false" => AckMode::Reject { requeue: false },
        other => {
            return Err(ApiError::bad(format!(
                "ackmode must be ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false, not '{other}'"
            )))
        }
    };
    let encoding = f.string("encoding")?.unwrap_or_else(|| "auto".into());
    if encoding != "auto" && encoding != "base64" {
        return Err(ApiError::bad(format!(
            "encoding must be auto or base64, not '{encoding}'"
        )));
    }
    let truncate = f.uint("truncate", u64::MAX)? as usize;
    let mut session = app.admin.session(&caller.user, &vhost)?;
    let got = session.get(&name, count, mode).await?;
    let items = got
        .iter()
        .map(|g| {
            let body = &g.message.body;
            let cut = &body[..body.len().min(truncate)];
            let (payload, payload_encoding) = match (encoding.as_str(), std::str::from_utf8(cut)) {
                ("auto", Ok(text)) => (text.to_string(), "string"),
                _ => (STANDARD.encode(cut), "base64"),
            };
            json!({
                "payload_bytes": body.len(),
                "redelivered": g.redelivered,
                "exchange": g.message.exchange,
                "routing_key": g.message.routing_key,
                "message_count": g.message_count,
                "properties": properties_json(&g.message.properties),
                "payload": payload,
                "payload_encoding": payload_encoding,
            })
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

pub async fn publish(
    State(app): Shared,
    caller: Caller,
    Path((vhost, exchange)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let f = Fields::parse(&body)?;
    let routing_key = f.required("routing_key")?;
    let payload = f.string("payload")?.unwrap_or_default();
    let payload = match f.string("payload_encoding")?.as_deref() {
        None | Some("string") => Bytes::from(payload),
        Some("base64") => Bytes::from(
            STANDARD
                .decode(payload.trim())
                .map_err(|e| ApiError::bad(format!("payload is not base64: {e}")))?,
        ),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "payload_encoding must be string or base64, not '{other}'"
            )))
        }
    };
    let properties = properties_from_json(&f.object("properties")?)?;
    let exchange = exchange_name(&exchange);
    app.known_vhost(&vhost)?;
    if !app
        .admin
        .exchanges()
        .iter()
        .any(|e| e.vhost == vhost && e.name == exchange)
    {
        // RabbitMQ's answer: a 400 quoting the AMQP error.
        return Err(ApiError::bad(format!(
            "404 NOT_FOUND - no exchange '{exchange}' in vhost '{vhost}'"
        )));
    }
    let session = app.admin.session(&caller.user, &vhost)?;
    let routed = session
        .publish(exchange, &routing_key, properties, payload)
        .await?;
    Ok(Json(json!({ "routed": routed })))
}

/// Message properties from the API's JSON (`delivery_mode`, `headers`, `content_type`...).
fn properties_from_json(p: &Value) -> Result<BasicProperties, ApiError> {
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(ApiError::bad(format!(
                "properties.{k} must be a string, not {other}"
            ))),
        }
    };
    let int = |k: &str| -> Result<Option<u64>, ApiError> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
            Some(other) => Err(ApiError::bad(format!(
                "properties.{k} must be an integer, not {other}"
            ))),
        }
    };
    let mut props = BasicProperties::default();
    if let Some(v) = text("content_type")? {
        props = props.with_content_type(ShortString::from(v));
    }
    if let Some(v) = text("content_encoding")? {
        props = props.with_content_encoding(ShortString::from(v));
    }
    if let Some(v) = int("delivery_mode")? {
        props = props.with_delivery_mode(v.min(255) as u8);
    }
    if let Some(v) = int("priority")? {
        props = props.with_priority(v.min(255) as u8);
    }
    if let Some(v) = text("correlation_id")? {
        props = props.with_correlation_id(ShortString::from(v));
    }
    if let Some(v) = text("reply_to")? {
        props = props.with_reply_to(ShortString::from(v));
    }
    if let Some(v) = text("expiration")? {
        props = props.with_expiration(ShortString::from(v));
    }
    if let Some(v) = text("message_id")? {
        props = props.with_message_id(ShortString::from(v));
    }
    if let Some(v) = int("timestamp")? {
        props = props.with_timestamp(v);
    }
    if let Some(v) = text("type")? {
        props = props.with_type(ShortString::from(v));
    }
    if let Some(v) = text("user_id")? {
        props = props.with_user_id(ShortString::from(v));
    }
    if let Some(v) = text("app_id")? {
        props = props.with_app_id(ShortString::from(v));
    }
    match p.get("headers") {
        None | Some(Value::Null) => {}
        Some(h @ Value::Object(_)) => props = props.with_headers(arguments_from_json(h)),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "properties.headers must be an object, not {other}"
            )))
        }
    }
    Ok(props)
}

fn properties_json(p: &BasicProperties) -> Value {
    let mut out = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    };
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| Value::String(s.as_str().to_string()));
    put("content_type", s(p.content_type()));
    put("content_encoding", s(p.content_encoding()));
    put("delivery_mode", p.delivery_mode().map(Value::from));
    put("priority", p.priority().map(Value::from));
    put("correlation_id", s(p.correlation_id()));
    put("reply_to", s(p.reply_to()));
    put("expiration", s(p.expiration()));
    put("message_id", s(p.message_id()));
    put("timestamp", p.timestamp().map(Value::from));
    put("type", s(p.kind()));
    put("user_id", s(p.user_id()));
    put("app_id", s(p.app_id()));
    put(
        "headers",
        p.headers()
            .as_ref()
            .map(bloodbank_broker::arguments_to_json),
    );
    Value::Object(out)
}

pub async fn bindings(
    State(app): Shared,
    caller: Caller,
    vhost: Option<Path<String>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let all = app.admin.bindings();
    per_vhost(
        &app,
        &caller,
        vhost,
        &all,
        |x| &x.vhost,
        render::binding,
        &q,
    )
}

/// Which bindings of an object a path asks for.
pub enum Side {
    /// Bindings to this queue.
    Queue,
    /// Bindings from this exchange.
    Source,
    /// Bindings to this exchange.
    Destination,
}

pub async fn bindings_of(
    app: Arc<App>,
    caller: Caller,
    vhost: String,
    name: String,
    side: Side,
) -> Result<Json<Value>, ApiError> {
    caller.require_vhost(&app, &vhost)?;
    let items = app
        .admin
        .bindings()
        .iter()
        .filter(|b| b.vhost == vhost)
        .filter(|b| match side {
            Side::Queue => b.destination_type == "queue" && b.destination == name,
            Side::Source => b.source == exchange_name(&name),
            Side::Destination => b.destination_type == "exchange" && b.destination == name,
        })
        .map(render::binding)
        .collect();
    Ok(Json(Value::Array(items)))
}

/// `/api/bindings/{vhost}/e/{source}/{q|e}/{destination}`: the bindings between two objects.
pub async fn between(
    State(app): Shared,
    caller: Caller,
    Path((vhost, source, kind, destination)): Path<(String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_vhost(&app, &vhost)?;
    let dtype = destination_type(&kind)?;
    let items = app
        .admin
        .bindings()
        .iter()
        .filter(|b| {
            b.vhost == vhost
                && b.source == exchange_name(&source)
                && b.destination_type == dtype
                && b.destination == destination
        })
        .map(render::binding)
        .collect();
    Ok(Json(Value::Array(items)))
}

fn destination_type(kind: &str) -> Result<&'static str, ApiError> {
    match kind {
        "q" => Ok("queue"),
        "e" => Ok("exchange"),
        _ => Err(ApiError::NotFound),
    }
}

pub async fn bind(
    State(app): Shared,
    caller: Caller,
    Path((vhost, source, kind, destination)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let dtype = destination_type(&kind)?;
    let f = Fields::parse(&body)?;
    let key = f.string("routing_key")?.unwrap_or_default();
    let arguments = f.object("arguments")?;
    let session = app.admin.session(&caller.user, &vhost)?;
    session
        .bind(&source, &destination, dtype == "exchange", &key, &arguments)
        .await?;
    let location = format!(
        "/api/bindings/{}/e/{}/{kind}/{}/{}",
        encode(&vhost),
        encode(&source),
        encode(&destination),
        properties_key(&key, &arguments)
    );
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
    )
        .into_response())
}

pub async fn unbind(
    State(app): Shared,
    caller: Caller,
    Path((vhost, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let dtype = destination_type(&kind)?;
    let found = app
        .admin
        .bindings()
        .into_iter()
        .find(|b| {
            b.vhost == vhost
                && b.source == source
                && b.destination_type == dtype
                && b.destination == destination
                && same_properties_key(&props, &properties_key(&b.routing_key, &b.arguments))
        })
        .ok_or(ApiError::NotFound)?;
    let session = app.admin.session(&caller.user, &vhost)?;
    session
        .unbind(
            &source,
            &destination,
            dtype == "exchange",
            &found.routing_key,
            &found.arguments,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn binding(
    State(app): Shared,
    caller: Caller,
    Path((vhost, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_vhost(&app, &vhost)?;
    let dtype = destination_type(&kind)?;
    app.admin
        .bindings()
        .iter()
        .find(|b| {
            b.vhost == vhost
                && b.source == source
                && b.destination_type == dtype
                && b.destination == destination
                && same_properties_key(&props, &properties_key(&b.routing_key, &b.arguments))
        })
        .map(|b| Json(render::binding(b)))
        .ok_or(ApiError::NotFound)
}
