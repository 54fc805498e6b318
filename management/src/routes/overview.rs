//! The node as a whole: overview, nodes, health checks, aliveness test.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::render::NODE;
use crate::{system, App};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bloodbank_broker::{AckMode, QueueSpec};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Shared = State<Arc<App>>;

/// The RabbitMQ version whose management API this one follows (clients branch on it).
pub const RABBITMQ_VERSION: &str = "3.13.0";

fn rate(r: f64) -> Value {
    json!({ "rate": r })
}

pub async fn overview(
    State(app): Shared,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let admin = &app.admin;
    let totals = admin.totals();
    let now = app.rates.now();
    let queues: Vec<_> = admin
        .queues()
        .into_iter()
        .filter(|x| caller.sees(&app, &x.vhost))
        .collect();
    let (ready, unacked) = queues
        .iter()
        .fold((0, 0), |(r, u), x| (r + x.ready, u + x.unacked));
    let history = q
        .get("msg_rates_age")
        .and_then(|a| a.parse::<u64>().ok())
        .map(|age| app.rates.history(age));
    let mut message_stats = json!({
        "publish": totals.received,
        "publish_details": rate(now.publish),
        "confirm": admin.confirmed(),
        "confirm_details": rate(now.confirm),
        "deliver_get": totals.delivered(),
        "deliver_get_details": rate(now.deliver_get),
        "deliver": totals.delivered_consume_manual_ack,
        "deliver_no_ack": totals.delivered_consume_auto_ack,
        "get": totals.delivered_get_manual_ack,
        "get_no_ack": totals.delivered_get_auto_ack,
        "get_empty": totals.get_empty,
        "redeliver": totals.redelivered,
        "ack": totals.acknowledged,
        "ack_details": rate(now.ack),
        "return_unroutable": totals.unroutable_returned,
        "drop_unroutable": totals.unroutable_dropped,
    });
    if let Some(points) = history {
        message_stats["samples"] = json!(points);
    }
    let listeners: Vec<Value> = app
        .listeners
        .iter()
        .map(|(protocol, addr)| {
            json!({
                "node": NODE,
                "protocol": protocol,
                "ip_address": addr.ip().to_string(),
                "port": addr.port(),
                "socket_opts": {},
            })
        })
        .collect();
    let exchange_types: Vec<Value> = ["direct", "fanout", "headers", "topic"]
        .iter()
        .map(|t| json!({"name": t, "description": format!("AMQP {t} exchange"), "enabled": true}))
        .collect();
    Json(json!({
        "management_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "Bloodbank",
        "product_version": env!("CARGO_PKG_VERSION"),
        "rates_mode": "basic",
        "cluster_name": NODE,
        "node": NODE,
        "erlang_version": "none (Rust)",
        "erlang_full_version": "none (Rust)",
        "disable_stats": false,
        "enable_queue_totals": true,
        "exchange_types": exchange_types,
        "message_stats": message_stats,
        "churn_rates": {
            "connection_created": totals.connections_opened,
            "connection_closed": totals.connections_closed,
            "channel_created": totals.channels_opened,
            "channel_closed": totals.channels_closed,
            "queue_declared": totals.queues_declared,
            "queue_created": totals.queues_created,
            "queue_deleted": totals.queues_deleted,
        },
        "queue_totals": {
            "messages": ready + unacked,
            "messages_ready": ready,
            "messages_unacknowledged": unacked,
        },
        "object_totals": {
            "connections": admin.connections().iter().filter(|c| caller.sees_all() || c.user == caller.user).count(),
            "channels": admin.channels().iter().filter(|c| caller.sees_all() || c.user == caller.user).count(),
            "consumers": admin.consumers().iter().filter(|c| caller.sees(&app, &c.vhost)).count(),
            "exchanges": admin.exchanges().iter().filter(|e| caller.sees(&app, &e.vhost)).count(),
            "queues": queues.len(),
        },
        "statistics_db_event_queue": 0,
        "listeners": listeners,
        "contexts": [{"node": NODE, "description": "RabbitMQ Management", "path": "/", "port": app.management_port.to_string()}],
    }))
}

pub async fn nodes(State(app): Shared, _caller: Caller) -> Json<Value> {
    Json(json!([node_json(&app)]))
}

pub async fn node(
    State(app): Shared,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match name == NODE {
        true => Ok(Json(node_json(&app))),
        false => Err(ApiError::NotFound),
    }
}

fn node_json(app: &App) -> Value {
    let config = app.admin.config();
    let alarm = app.admin.alarm().unwrap_or_default();
    let disk_free = config.data_dir.as_deref().map_or(0, system::disk_free);
    json!({
        "name": NODE,
        "type": "disc",
        "running": true,
        "being_drained": false,
        "os_pid": std::process::id().to_string(),
        "uptime": app.started.elapsed().as_millis() as u64,
        "mem_used": system::resident_bytes(),
        "mem_limit": config.memory_high_watermark,
        "mem_alarm": alarm.contains("memory"),
        "disk_free": disk_free,
        "disk_free_limit": config.disk_free_limit,
        "disk_free_alarm": alarm.contains("disk"),
        "fd_used": system::open_fds(),
        "fd_total": system::max_fds(),
        "sockets_used": app.admin.amqp_connections(),
        "proc_used": 0,
        "proc_total": 0,
        "rates_mode": "basic",
        "applications": [],
        "partitions": [],
    })
}

/// `/api/health/checks/alarms` and `local-alarms`: 200 `{"status":"ok"}`, or 503 with the
/// alarms in force.
pub async fn alarms(State(app): Shared, _caller: Caller) -> Response {
    match app.admin.alarm() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(alarm) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "failed",
                "reason": "resource alarm(s) in effect in the cluster",
                "alarms": [{"node": NODE, "resource": alarm}],
            })),
        )
            .into_response(),
    }
}

/// `/api/health/checks/certificate-expiration/{within}/{unit}`: 503 when the TLS certificate
/// in use expires within that time (`unit`: days, weeks, months or years, as RabbitMQ).
pub async fn certificate_expiration(
    State(app): Shared,
    _caller: Caller,
    Path((within, unit)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let days: u64 = match unit.as_str() {
        "days" => 1,
        "weeks" => 7,
        "months" => 30,
        "years" => 365,
        _ => return Err(ApiError::bad("unit must be days, weeks, months or years")),
    };
    let within: u64 = within
        .parse()
        .map_err(|_| ApiError::bad("within must be a whole number"))?;
    let horizon = std::time::SystemTime::now()
        + std::time::Duration::from_secs(within.saturating_mul(days).saturating_mul(86_400));
    let expiring = app.tls.as_ref().filter(|tls| tls.not_after() <= horizon);
    Ok(match expiring {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(tls) => {
            let not_after = tls
                .not_after()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "failed",
                    "reason": "Certificates expiring",
                    "expired": [{
                        "node": NODE,
                        "certfile": tls.settings().cert.display().to_string(),
                        "expires_at": bloodbank_broker::clock::rfc3339(not_after * 1000),
                    }],
                })),
            )
                .into_response()
        }
    })
}

/// `/api/health/checks/port-listener/{port}`: whether some listener of the node is on it.
pub async fn port_listener(State(app): Shared, _caller: Caller, Path(port): Path<u16>) -> Response {
    let ports: Vec<u16> = app.listeners.iter().map(|(_, a)| a.port()).collect();
    match ports.contains(&port) {
        true => Json(json!({"status": "ok", "port": port})).into_response(),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "failed",
                "reason": "No active listener",
                "missing": port,
                "ports": ports,
            })),
        )
            .into_response(),
    }
}

/// A check that always passes on a single node that answers at all (RabbitMQ's
/// `virtual-hosts`, `node-is-quorum-critical`... on one node).
pub async fn ok(_caller: Caller) -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Declares `aliveness-test` in the vhost, publishes to it and reads the message back.
pub async fn aliveness(
    State(app): Shared,
    caller: Caller,
    Path(vhost): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.known_vhost(&vhost)?;
    let mut session = app.admin.session(&caller.user, &vhost)?;
    session
        .declare_queue(QueueSpec {
            name: "aliveness-test".into(),
            durable: false,
            ..Default::default()
        })
        .await?;
    session
        .publish(
            "",
            "aliveness-test",
            Default::default(),
            Bytes::from_static(b"test_message"),
        )
        .await?;
    let got = session.get("aliveness-test", 1, AckMode::Ack).await?;
    match got
        .first()
        .is_some_and(|g| &g.message.body[..] == b"test_message")
    {
        true => Ok(Json(json!({"status": "ok"}))),
        false => Err(ApiError::Unavailable(
            "the test message did not come back".into(),
        )),
    }
}
